"""Remote files: ``https://``, ``s3://``, ``gs://`` and GDAL ``/vsi...`` paths, the GDAL settings that make
reading them fast and robust, and what identifies a remote file's content without downloading it.

* :func:`is_remote` / :func:`gdal_path`: tell remote specs from local paths and map them to GDAL's virtual file
  systems (``https://h/p`` -> ``/vsicurl/https://h/p``, ``s3://b/k`` -> ``/vsis3/b/k``, ``gs://`` ->
  ``/vsigs/``, ``az://`` -> ``/vsiaz/``; ``/vsi...`` and local paths unchanged).
* :func:`configure_remote_gdal`: the defaults of :data:`REMOTE_GDAL_DEFAULTS` (no directory listing on open,
  the extensions lcmodel reads, retries with backoff, merged range requests...) put into ``os.environ`` with
  ``setdefault``. GDAL reads a config option it was not given through ``CPLSetConfigOption`` from the process
  environment, so the defaults hold in every thread, in worker processes (which inherit the environment) and
  under any ``rasterio.Env`` that does not set them; a variable the user set before, and any option the user
  sets through ``rasterio.Env``, wins. (A ``rasterio.Env`` of our own would not do: rasterio 1.4 sets its
  options process-wide only while its block runs, its exit in one thread unsets them for all threads, and
  worker processes never see them.)
* :func:`open_options`: ``NUM_THREADS`` for remote GeoTIFFs and VRTs, so that a window's blocks are fetched
  in one parallel multi-range read (11x faster on the AlphaEarth layout at 20 ms latency).
* :func:`open_remote` / :func:`remote_error`: open a remote raster, GDAL's errors turned into one line.

What identifies a remote file's content for cache keys is :func:`lcmodel.sources.identity.remote_identity`.

No function here logs, stores or returns a credential: URLs are shown through :func:`redact` (no user
information, no signature or token query parameters) and GDAL's own error text, which can quote request
headers or an S3 error body, is never passed on.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from lcmodel.errors import InputFileError

__all__ = [
    "REMOTE_GDAL_DEFAULTS",
    "REMOTE_READ_THREADS",
    "ALLOWED_EXTENSIONS",
    "open_options",
    "is_remote",
    "gdal_path",
    "redact",
    "file_name",
    "configure_remote_gdal",
    "http_url",
    "split_archive",
    "remote_error",
    "safe_detail",
    "open_remote",
]

logger = logging.getLogger(__name__)

#: File extensions GDAL may open remotely (CPL_VSIL_CURL_ALLOWED_EXTENSIONS): rasters, VRTs, point layers
#: (with the Shapefile's sidecars), index tables and archives. GDAL then never probes ``.aux.xml``, ``.msk``,
#: ``.ovr`` sidecars with HEAD requests.
ALLOWED_EXTENSIONS = (
    ".tif", ".tiff", ".vrt", ".jp2", ".img", ".nc",
    ".parquet", ".geoparquet", ".csv", ".gpkg", ".geojson", ".json", ".fgb",
    ".shp", ".shx", ".dbf", ".prj", ".cpg", ".zip",
)

#: The GDAL config options :func:`configure_remote_gdal` sets when the environment does not have them.
REMOTE_GDAL_DEFAULTS: dict[str, str] = {
    # opening a file never lists its folder (a listing of a bucket prefix can cost seconds and megabytes).
    # TRUE, not EMPTY_DIR: EMPTY_DIR holds for local files too and hides their .aux.xml (band metadata);
    # with TRUE the sidecars are probed by name, which the allowed extensions below stop for remote files
    # (no request), so a remote open costs the same as with EMPTY_DIR.
    "GDAL_DISABLE_READDIR_ON_OPEN": "TRUE",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ",".join(ALLOWED_EXTENSIONS),
    # 429 / 5xx / connection errors are retried 5 times, after 1 s, then about twice as long each time
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    # a block read as several adjacent ranges is fetched as one; HTTP/2 streams share one connection
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    # a stalled transfer (under 1 byte/s for 60 s) fails instead of hanging; connections give up after 30 s
    "GDAL_HTTP_LOW_SPEED_TIME": "60",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
}

#: GDAL threads per remote GeoTIFF/VRT dataset (open option NUM_THREADS; GDAL_NUM_THREADS, when the user sets
#: it, wins). With them a window that spans several blocks is fetched with ONE parallel multi-range read
#: instead of one request per block in turn: the AlphaEarth layout (a block per band) is 64 blocks per tile.
REMOTE_READ_THREADS = 4

#: Variables and files that mean AWS credentials are configured (checked for existence only, never read).
_AWS_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "CPL_AWS_CREDENTIALS_FILE",
)
_GS_CREDENTIAL_VARS = (
    "GS_SECRET_ACCESS_KEY", "GS_ACCESS_KEY_ID", "GS_OAUTH2_REFRESH_TOKEN", "GS_OAUTH2_PRIVATE_KEY",
    "GS_OAUTH2_PRIVATE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "CPL_GS_CREDENTIALS_FILE",
)
_SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/"}
_NETWORK_VSI = ("curl", "curl_streaming", "s3", "s3_streaming", "gs", "gs_streaming", "az", "az_streaming",
                "adls", "oss", "oss_streaming", "swift", "swift_streaming", "webhdfs", "hdfs")
_ARCHIVE_VSI = ("zip", "tar", "gzip", "7z", "rar")
_ARCHIVE_END = re.compile(r"\.(zip|tar|tgz|tar\.gz|gz|7z|rar)(?=/|$)", re.IGNORECASE)
#: query parameters that carry a signature, a key or a token (presigned S3/GCS URLs, Azure SAS)
_SECRET_PARAMS = re.compile(r"^(x-amz-.*|x-goog-.*|sig|signature|token|access_token|key|api_key|apikey|"
                            r"awsaccesskeyid|expires|policy|key-pair-id|se|sp|sv|sr|st|spr|skoid|sktid|"
                            r"skt|ske|sks|skv|ss|srt)$", re.IGNORECASE)
#: pathlib collapses "//": Path("https://h/p") is "https:/h/p"; such a spec is repaired
_COLLAPSED = re.compile(r"^(https?|s3|gs|az):/(?!/)", re.IGNORECASE)

_configure_lock = threading.Lock()


def _text(spec: Path | str) -> str:
    s = str(spec)
    s = _COLLAPSED.sub(lambda m: m.group(1) + "://", s)
    if s.startswith("/vsicurl/"):
        s = "/vsicurl/" + _COLLAPSED.sub(lambda m: m.group(1) + "://", s[len("/vsicurl/"):])
    return s


def _scheme(s: str) -> str:
    head, sep, _ = s.partition("://")
    return head.lower() if sep and head.isalnum() else ""


def split_archive(spec: Path | str) -> tuple[str, str] | None:
    """``(archive, member)`` of ``/vsizip/{/vsicurl/.../a.zip}/b.tif`` or ``/vsizip//vsicurl/.../a.zip/b.tif``
    (likewise ``/vsitar/``, ``/vsigzip/``...), else None."""
    s = _text(spec)
    for name in _ARCHIVE_VSI:
        prefix = f"/vsi{name}/"
        if s.startswith(prefix):
            rest = s[len(prefix):]
            if rest.startswith("{"):
                archive, _, member = rest[1:].partition("}")
                return archive, member.lstrip("/")
            m = _ARCHIVE_END.search(rest)
            return (rest[: m.end()], rest[m.end():].lstrip("/")) if m else (rest, "")
    return None


def _archive_inner(s: str) -> str | None:
    parts = split_archive(s)
    return parts[0] if parts else None


def is_remote(spec: Path | str) -> bool:
    """Whether ``spec`` names a file GDAL reads over the network.

    True for ``http(s)://``, ``s3://``, ``gs://``, ``az://`` URLs, GDAL's network file systems
    (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``, ``/vsiadls/``, ``/vsioss/``, ``/vsiswift/``,
    ``/vsiwebhdfs/``, ``/vsihdfs/`` and their ``_streaming`` forms) and an archive (``/vsizip/``, ``/vsitar/``,
    ``/vsigzip/``...) over any of those. A URL that went through ``pathlib.Path`` (``https:/h/p``) counts too.
    """
    s = _text(spec)
    if _scheme(s) in _SCHEMES:
        return True
    inner = _archive_inner(s)
    if inner is not None:
        return is_remote(inner)
    return any(s.startswith(f"/vsi{name}/") or s.startswith(f"/vsi{name}?") for name in _NETWORK_VSI)


def gdal_path(spec: Path | str) -> str:
    """The path GDAL opens for ``spec``: ``https://h/p`` -> ``/vsicurl/https://h/p``, ``s3://b/k`` ->
    ``/vsis3/b/k``, ``gs://b/k`` -> ``/vsigs/b/k``, ``az://c/k`` -> ``/vsiaz/c/k``; ``/vsi...`` paths and local
    paths are returned unchanged (as strings)."""
    s = _text(spec)
    scheme = _scheme(s)
    if scheme in ("http", "https"):
        return "/vsicurl/" + s
    if scheme in _SCHEMES:
        return _SCHEMES[scheme] + s.partition("://")[2]
    return s


def http_url(spec: Path | str) -> str | None:
    """The plain ``http(s)://`` URL of an HTTP spec (``https://...`` or ``/vsicurl/https://...``), else None."""
    s = _text(spec)
    if s.startswith("/vsicurl/"):
        s = s[len("/vsicurl/"):]
    return s if _scheme(s) in ("http", "https") else None


def file_name(spec: Path | str) -> str:
    """The file name of a local path or a remote spec, without any query string (``b.tif`` of
    ``https://h/a/b.tif?sig=...``)."""
    s = _text(spec)
    url = http_url(s)
    if url is not None:
        s = urllib.parse.urlsplit(url).path
    return s.rstrip("/").rpartition("/")[2]


def redact(spec: Path | str) -> str:
    """``spec`` fit for a message or a cache key: no ``user:password@``, and query parameters that carry a
    signature, a key or a token (presigned S3/GCS URLs, Azure SAS) replaced by ``REDACTED``."""
    s = _text(spec)
    m = re.search(r"[a-z][a-z0-9+.-]*://", s, re.IGNORECASE)
    if m is None:
        return s
    head, url = s[: m.start()], s[m.start():]
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{k}={'REDACTED' if _SECRET_PARAMS.match(k) else v}" if v or sep else k
        for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return head + urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _aws_credentials_configured() -> bool:
    if any(os.environ.get(k) for k in _AWS_CREDENTIAL_VARS):
        return True
    files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
             os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")]
    return any(Path(f).expanduser().is_file() for f in files)


def _gs_credentials_configured() -> bool:
    if any(os.environ.get(k) for k in _GS_CREDENTIAL_VARS):
        return True
    files = ("~/.boto", "~/.config/gcloud/application_default_credentials.json")
    return any(Path(f).expanduser().is_file() for f in files)


def configure_remote_gdal() -> dict[str, str]:
    """Put :data:`REMOTE_GDAL_DEFAULTS` into ``os.environ`` where absent (idempotent, thread-safe).

    Also ``AWS_NO_SIGN_REQUEST=YES`` when no AWS credentials are configured (no ``AWS_*`` credential or
    profile variable, no ``~/.aws/credentials`` or ``~/.aws/config``), so that a public bucket is read without
    GDAL first trying to find credentials; the same for ``GS_NO_SIGN_REQUEST`` and Google Cloud Storage.
    Credentials are only checked for existence, never read.

    Why the environment: GDAL takes a config option from ``CPLSetConfigOption`` (what ``rasterio.Env``
    sets, per thread) first and from the process environment otherwise, so environment defaults reach every
    thread and every worker process started afterwards, and whatever the user set, in the environment or in
    a ``rasterio.Env``, wins. Call it before the first remote file is opened: GDAL reads some options (the
    HTTP cache, HTTP/2) once per process. :func:`lcmodel.io.open_raster` and the thread readers call it.

    Returns
    -------
    dict
        The variables this call set (empty once they are all set, by an earlier call or by the user).
    """
    with _configure_lock:
        wanted = dict(REMOTE_GDAL_DEFAULTS)
        if not _aws_credentials_configured():
            wanted["AWS_NO_SIGN_REQUEST"] = "YES"
        if not _gs_credentials_configured():
            wanted["GS_NO_SIGN_REQUEST"] = "YES"
        applied = {k: v for k, v in wanted.items() if k not in os.environ}
        os.environ.update(applied)
    if applied:
        logger.debug("remote GDAL defaults set: %s", ", ".join(f"{k}={v}" for k, v in sorted(applied.items())))
    return applied


# --- opening --------------------------------------------------------------------------------------------


def _extension_allowed(s: str) -> bool:
    allowed = os.environ.get("CPL_VSIL_CURL_ALLOWED_EXTENSIONS")
    if not allowed:
        return True
    name = s.split("?", 1)[0].lower()
    return any(name.endswith(ext.strip().lower()) for ext in allowed.split(",") if ext.strip())


def remote_error(spec: Path | str, what: str, detail: str) -> InputFileError:
    """A one-line :class:`InputFileError` for a remote file GDAL could not open: ``<what> '<url>' <problem>;
    <fix>``, the file named through :func:`redact` and GDAL's message reduced by :func:`safe_detail`."""
    problem, fix = _diagnose(_text(spec), detail)
    return InputFileError(f"{what} {redact(spec)!r} {problem}; {fix}")


def safe_detail(spec: Path | str, detail: str) -> str:
    """GDAL's message about ``spec``, fit for an error message: the first line for a local file; for a remote
    one only the HTTP status or the kind of network failure (GDAL's text can quote request headers or an S3
    error body)."""
    if not is_remote(spec):
        return detail.splitlines()[0] if detail else ""
    return _diagnose(_text(spec), detail)[0]


def _diagnose(s: str, detail: str) -> tuple[str, str]:
    """(problem, fix) for GDAL's message ``detail`` about the remote file ``s``."""
    code_match = re.search(r"HTTP (?:response )?code:? *(\d{3})", detail, re.IGNORECASE)
    code = int(code_match.group(1)) if code_match else None
    low = detail.lower()
    if code == 404 or "nosuchkey" in low or "nosuchbucket" in low:
        return "was not found (HTTP 404)", "check the URL (bucket, folder and file name) in the config"
    if code in (401, 403) or "accessdenied" in low or "credentials" in low:
        return f"was refused (access denied{f', HTTP {code}' if code else ''})", _credentials_fix(_store_kind(s))
    if code is not None and (code == 429 or code >= 500):
        return (f"could not be read: the server answered HTTP {code} after GDAL's retries",
                "try again later, or raise GDAL_HTTP_MAX_RETRY / GDAL_HTTP_RETRY_DELAY")
    if code is not None:
        return f"could not be read (HTTP {code})", "check the URL in the config"
    if "resolve host" in low:
        return "cannot be reached (host name not found)", "check the host name and the network (proxy)"
    if "connect" in low or "timed out" in low or "timeout" in low or "curl error" in low:
        return ("cannot be reached (connection failed or timed out)",
                "check that the server is up, the network and any proxy setting, then retry")
    if not _extension_allowed(_network_file(s)):
        return ("has an extension GDAL is not allowed to open remotely",
                "add it to CPL_VSIL_CURL_ALLOWED_EXTENSIONS (or rename the file)")
    if "not recognized as" in low and "supported file format" in low:
        return "is not a raster GDAL can read", "give a GeoTIFF (COG) or another GDAL raster format"
    if "does not exist" in low:
        return "was not found", "check the URL (bucket, folder and file name) in the config"
    return "could not be read", "check the URL and that the file is a complete raster"


def _network_file(s: str) -> str:
    """The GDAL path of the file fetched over the network: an archive's own path, else ``s``'s."""
    g = gdal_path(s)
    inner = _archive_inner(g)
    return _network_file(inner) if inner is not None else g


def _store_kind(s: str) -> str:
    g = _network_file(s)
    for kind in ("s3", "gs", "az", "adls"):
        if g.startswith(f"/vsi{kind}"):
            return kind
    return "http"


def _credentials_fix(store: str) -> str:
    if store == "s3":
        return ("for a private bucket configure AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY) and unset AWS_NO_SIGN_REQUEST; for a public one set AWS_NO_SIGN_REQUEST=YES")
    if store == "gs":
        return ("for a private or requester-pays bucket configure Google Cloud credentials "
                "(GOOGLE_APPLICATION_CREDENTIALS) and unset GS_NO_SIGN_REQUEST; for a public one set "
                "GS_NO_SIGN_REQUEST=YES")
    if store in ("az", "adls"):
        return "configure Azure credentials (AZURE_STORAGE_CONNECTION_STRING or a SAS token)"
    return "the server wants credentials (GDAL_HTTP_AUTH / GDAL_HTTP_HEADERS) or a fresh signed URL"


def open_options(spec: Path | str) -> dict[str, str]:
    """GDAL open options for reading ``spec``: ``NUM_THREADS`` (:data:`REMOTE_READ_THREADS`) for a remote
    GeoTIFF or VRT unless the user set GDAL_NUM_THREADS; nothing for local files and other formats."""
    if not is_remote(spec) or "GDAL_NUM_THREADS" in os.environ:
        return {}
    name = file_name(spec).lower()
    if not name.endswith((".tif", ".tiff", ".vrt")):
        return {}
    return {"NUM_THREADS": str(REMOTE_READ_THREADS)}


def open_remote(spec: Path | str, what: str = "raster") -> Any:
    """Open a remote raster for reading (a ``rasterio`` dataset), with the remote defaults configured, the
    :func:`open_options`, and GDAL's errors turned into one line (:func:`remote_error`)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    configure_remote_gdal()
    try:
        return rasterio.open(gdal_path(spec), **open_options(spec))
    except RasterioIOError as exc:
        raise remote_error(spec, what, str(exc)) from None
