"""Remote files (placeholder until the remote-reading module lands): which paths are remote."""

from __future__ import annotations

__all__ = ["is_remote", "gdal_path"]

_SCHEMES = ("http://", "https://", "s3://", "gs://", "/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls")


def is_remote(spec: str) -> bool:
    """True for a URL or a GDAL network path."""
    s = str(spec)
    return s.startswith(_SCHEMES) or any(f"/{x.strip('/')}/" in s for x in _SCHEMES if x.startswith("/vsi"))


def gdal_path(spec: str) -> str:
    """The path GDAL opens: https://h/p -> /vsicurl/https://h/p, s3://b/k -> /vsis3/b/k; others unchanged."""
    s = str(spec)
    if s.startswith(("http://", "https://")):
        return f"/vsicurl/{s}"
    if s.startswith("s3://"):
        return "/vsis3/" + s.removeprefix("s3://")
    if s.startswith("gs://"):
        return "/vsigs/" + s.removeprefix("gs://")
    return s
