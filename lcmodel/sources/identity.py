"""What identifies a file's content for cache keys without downloading it (:func:`remote_identity`).

A local file is named by its path, size and modification time; a remote one by the ETag, Last-Modified and
size one HEAD request returns, or, where no HEAD can be made, by a digest of its raster metadata read through
GDAL. See :func:`remote_identity` for what each misses.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from lcmodel.errors import InputFileError
from lcmodel.sources.remote import (
    configure_remote_gdal,
    gdal_path,
    http_url,
    is_remote,
    open_remote,
    redact,
    remote_error,
    split_archive,
)

__all__ = ["remote_identity", "identity_digest"]


def identity_digest(spec: Path | str, *, identity: dict[str, Any] | None = None, timeout: float = 30.0) -> str:
    """SHA-256 (hex) of :func:`remote_identity` (or of ``identity``, when the caller already has it): a
    cache-key component for an input that is not hashed whole (a remote file is never downloaded for its key)."""
    facts = identity if identity is not None else remote_identity(spec, timeout=timeout)
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def remote_identity(spec: Path | str, *, timeout: float = 30.0) -> dict[str, Any]:
    """What identifies a file's content for cache keys, without downloading it.

    * ``http(s)://`` (and ``/vsicurl/``): one HEAD request (urllib): ``etag``, ``last_modified``, ``size``. A
      server that refuses HEAD (405, or 403 as for a presigned URL, which is signed for GET) is asked for
      one byte (``Range: bytes=0-0``) instead. 429 / 5xx / network errors are retried like GDAL's requests.
    * ``s3://`` (and ``/vsis3/``): the same unsigned HEAD to the object's URL on ``AWS_S3_ENDPOINT`` (default
      ``s3.amazonaws.com``, or ``s3.<AWS_REGION>.amazonaws.com``), with ``AWS_HTTPS`` and
      ``AWS_VIRTUAL_HOSTING`` as GDAL reads them: enough for public buckets. ``gs://`` likewise on
      ``storage.googleapis.com``.
    * When that HEAD is refused (a private bucket): for S3 a signed HEAD through boto3 when it is installed
      and credentials are configured (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``...).
    * Otherwise (no boto3, a requester-pays bucket, Azure, other ``/vsi...`` systems):
      the raster's metadata through GDAL (size, bands, types, CRS, transform, tiling, nodata, tags, and the
      offset and size of the first and last block of band 1) as a SHA-256 ``metadata_sha256``.
    * An archive (``/vsizip/{...}/member``): the archive's identity plus ``member``.
    * A local path: ``path``, ``size``, ``mtime_ns``.

    Limits: an ETag is the server's word (S3's is the MD5 of a single-part upload, an opaque value for a
    multipart one); a server that sends neither ETag nor Last-Modified leaves only the size, which misses an
    in-place rewrite of the same length. The metadata digest misses a rewrite that keeps the grid, bands,
    tiling and the byte layout of those two blocks. The result never holds a credential (see :func:`redact`).

    Raises
    ------
    InputFileError
        The file does not exist or cannot be reached (one line naming the redacted URL and the fix).
    """
    s = str(spec)
    if not is_remote(s):
        p = Path(s).resolve()
        try:
            st = p.stat()
        except OSError:
            raise InputFileError(f"file {s!r} does not exist; check the path in the config") from None
        return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    archive = split_archive(s)
    if archive is not None:
        return {**remote_identity(archive[0], timeout=timeout), "member": archive[1]}
    configure_remote_gdal()
    url = _probe_url(s)
    if url is not None:
        facts = _head(url, s, timeout)
        if facts is None and gdal_path(s).startswith("/vsis3"):
            facts = _s3_head_signed(s, timeout)
        if facts is not None:
            return {"url": redact(s), **facts}
    return {"url": redact(s), **_metadata_identity(s)}


def _probe_url(s: str) -> str | None:
    """The plain URL an unsigned HEAD can ask about ``s``, or None (other file systems)."""
    plain = http_url(s)
    if plain is not None:
        return plain
    g = gdal_path(s)
    for prefix, store in (("/vsis3/", "s3"), ("/vsis3_streaming/", "s3"), ("/vsigs/", "gs"),
                          ("/vsigs_streaming/", "gs")):
        if g.startswith(prefix):
            bucket, _, key = g[len(prefix):].partition("/")
            return _s3_url(bucket, key) if store == "s3" else \
                f"https://storage.googleapis.com/{bucket}/{urllib.parse.quote(key, safe='/~')}"
    return None


def _s3_url(bucket: str, key: str) -> str:
    """The object's URL as GDAL's /vsis3/ builds it from AWS_S3_ENDPOINT, AWS_HTTPS, AWS_VIRTUAL_HOSTING."""
    region = _option("AWS_REGION") or _option("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = _option("AWS_S3_ENDPOINT") or (
        "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com")
    scheme = "https" if (_option("AWS_HTTPS") or "YES").upper() in ("YES", "TRUE", "ON", "1") else "http"
    if "://" in endpoint:
        scheme, _, endpoint = endpoint.partition("://")
    virtual = (_option("AWS_VIRTUAL_HOSTING") or "TRUE").upper() in ("YES", "TRUE", "ON", "1")
    path = urllib.parse.quote(key, safe="/~")
    if virtual and "." not in bucket:
        return f"{scheme}://{bucket}.{endpoint.rstrip('/')}/{path}"
    return f"{scheme}://{endpoint.rstrip('/')}/{bucket}/{path}"


def _option(name: str) -> str | None:
    """A GDAL config option as GDAL sees it (a ``rasterio.Env`` value, else the environment)."""
    from rasterio.env import get_gdal_config

    value = get_gdal_config(name, normalize=False)
    return None if value is None else str(value)


def _head(url: str, spec: str, timeout: float) -> dict[str, Any] | None:
    """ETag / Last-Modified / size of ``url`` from a HEAD (or a one-byte GET); None when the server refuses
    (401/403/405). Retries as GDAL does (GDAL_HTTP_MAX_RETRY, GDAL_HTTP_RETRY_DELAY doubling).

    Raises :class:`InputFileError` naming ``spec`` for 404 and for a server that cannot be reached.
    """
    retries = max(0, int(float(_option("GDAL_HTTP_MAX_RETRY") or 0)))
    delay = float(_option("GDAL_HTTP_RETRY_DELAY") or 1)
    for method in ("HEAD", "GET"):
        for attempt in range(retries + 1):
            headers = {"Range": "bytes=0-0"} if method == "GET" else {}
            req = urllib.request.Request(url, method=method, headers={"User-Agent": "lcmodel", **headers})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    return _facts(resp.headers, method)
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403, 405):
                    break  # refused: try the next method, then GDAL
                if exc.code != 429 and exc.code < 500 or attempt == retries:
                    raise remote_error(spec, "remote file", f"HTTP response code: {exc.code}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == retries:
                    reason = getattr(exc, "reason", exc)
                    kind = "resolve host" if "name" in str(reason).lower() else "connect"
                    raise remote_error(spec, "remote file", f"CURL error: {kind}") from None
            time.sleep(delay * 2**attempt)
    return None


def _s3_head_signed(s: str, timeout: float) -> dict[str, Any] | None:
    """HEAD through boto3 with the configured credentials (when boto3 is installed and signing is on)."""
    if (_option("AWS_NO_SIGN_REQUEST") or "NO").upper() in ("YES", "TRUE", "ON", "1"):
        return None
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:
        return None
    bucket, _, key = gdal_path(s).partition("/vsis3/")[2].partition("/")
    endpoint = _option("AWS_S3_ENDPOINT")
    if endpoint and "://" not in endpoint:
        https = (_option("AWS_HTTPS") or "YES").upper() in ("YES", "TRUE", "ON", "1")
        endpoint = f"{'https' if https else 'http'}://{endpoint}"
    virtual = (_option("AWS_VIRTUAL_HOSTING") or "TRUE").upper() in ("YES", "TRUE", "ON", "1")
    config = botocore.config.Config(connect_timeout=timeout, read_timeout=timeout,
                                    s3={"addressing_style": "virtual" if virtual else "path"})
    region = _option("AWS_REGION") or _option("AWS_DEFAULT_REGION")
    try:
        client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)
        head = client.head_object(Bucket=bucket, Key=key)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return None
    modified = head.get("LastModified")
    return {"etag": head.get("ETag"), "last_modified": modified.isoformat() if modified else None,
            "size": head.get("ContentLength")}


def _facts(headers: Any, method: str) -> dict[str, Any]:
    size: int | None = None
    if method == "GET":
        total = (headers.get("Content-Range") or "").rpartition("/")[2]
        size = int(total) if total.isdigit() else None
    elif headers.get("Content-Length", "").isdigit():
        size = int(headers["Content-Length"])
    return {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"), "size": size}


def _metadata_identity(s: str) -> dict[str, Any]:
    """A digest of the raster's metadata through GDAL (when no HEAD can be made)."""
    with open_remote(s, "remote file") as src:
        facts: dict[str, Any] = {
            "driver": src.driver, "width": src.width, "height": src.height, "count": src.count,
            "dtypes": list(src.dtypes), "crs": src.crs.to_wkt() if src.crs else None,
            "transform": list(src.transform)[:6], "nodata": list(src.nodatavals),
            "blocks": [list(b) for b in src.block_shapes], "descriptions": list(src.descriptions),
            "tags": src.tags(),
        }
        if src.driver == "GTiff":
            bh, bw = src.block_shapes[0]
            last = f"{(src.width - 1) // bw}_{(src.height - 1) // bh}"
            facts["block_layout"] = [src.get_tag_item(f"BLOCK_{what}_{xy}", "TIFF", bidx=1)
                                     for what in ("OFFSET", "SIZE") for xy in ("0_0", last)]
    text = json.dumps(facts, sort_keys=True, default=str)
    return {"metadata_sha256": hashlib.sha256(text.encode()).hexdigest()}
