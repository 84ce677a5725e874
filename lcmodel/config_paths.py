"""Paths in a config: resolved against the config file's folder, one file or a collection spec.

``embedding.path`` and ``reference.path`` are path specs (:data:`PathSpec`): a single local file stays a
``Path``; a list, a glob or a URL becomes a tuple of strings (resolved, URLs kept as written), expanded into
files by :mod:`lcmodel.sources`. Every other path key is a :data:`ResolvedPath`. A CRS key that may be left
unset (``prediction.mosaic_crs``) is an :data:`OptionalCrs`, checked when the config is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

__all__ = ["ResolvedPath", "PathSpec", "AoiSpec", "spec_text", "resolve_reference_kind", "POINT_SUFFIXES",
           "OptionalCrs"]


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Make a relative path absolute against the config file's folder (context ``base_dir``)."""
    value = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return Path(os.path.normpath(value)) if value.is_absolute() else value


ResolvedPath = Annotated[Path, AfterValidator(_resolve_path)]

_REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "/vsi")


def _resolve_item(item: Any, info: ValidationInfo) -> str:
    text = str(item)
    if text.startswith(_REMOTE_PREFIXES):
        return text
    return str(_resolve_path(Path(text), info))


def _resolve_spec(value: Any, info: ValidationInfo) -> Any:
    """A path spec: one local file (a Path), or a tuple of files, globs, folders, indexes or URLs."""
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("an empty list names no file; give at least one path")
        return tuple(_resolve_item(v, info) for v in value)
    if isinstance(value, str | os.PathLike):
        text = str(value)
        if text.startswith(_REMOTE_PREFIXES) or any(ch in text for ch in "*?["):
            return (_resolve_item(text, info),)
        return _resolve_path(Path(text), info)
    return value


#: ``embedding.path`` / ``reference.path``: a local file (Path), or a tuple of files, globs, folders, indexes
#: and URLs (see lcmodel.sources.specs).
PathSpec = Annotated[Path | tuple[str, ...], BeforeValidator(_resolve_spec)]


def _check_aoi(value: Any) -> Any:
    """A lon/lat box is checked here; a GeoJSON file when the run reads it."""
    if isinstance(value, list):
        from lcmodel.errors import ConfigError
        from lcmodel.sources import parse_aoi

        try:
            parse_aoi(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("embedding.aoi ")) from None
    return value


#: ``embedding.aoi``: [west, south, east, north] in degrees, a GeoJSON file, or None.
AoiSpec = Annotated[list[float] | ResolvedPath | None, AfterValidator(_check_aoi)]


def spec_text(spec: Path | tuple[str, ...]) -> str:
    """A path spec in one short string for messages and tags."""
    from lcmodel.sources.remote import file_name  # no query string (a presigned URL's signature)

    if isinstance(spec, Path):
        return spec.name
    first = file_name(spec[0])
    return first if len(spec) == 1 else f"{first} (+{len(spec) - 1})"


#: Reference files read as labelled points when ``reference.kind`` is ``auto``; anything else is a raster.
POINT_SUFFIXES = (".csv", ".txt", ".tsv", ".gpkg", ".geojson", ".json", ".shp", ".shz", ".shp.zip", ".fgb")


def resolve_reference_kind(kind: str, path: Path | tuple[str, ...]) -> Literal["raster", "points"]:
    """``reference.kind``, with ``auto`` resolved by the file's name (points for :data:`POINT_SUFFIXES`; not
    .zip: it may hold a raster)."""
    if kind in ("raster", "points"):
        return kind  # type: ignore[return-value]
    first = path if isinstance(path, Path) else Path(path[0].split("?", 1)[0])
    return "points" if first.name.lower().endswith(POINT_SUFFIXES) else "raster"




def _crs_text(value: str | None) -> str | None:
    """A CRS pyproj understands (EPSG code, WKT, PROJ string), or None."""
    if value is None:
        return None
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(value)
    except CRSError:
        raise ValueError(f"{value!r} is not a CRS pyproj understands; give e.g. 'EPSG:4326' or a WKT string") from None
    return value


#: A CRS string (checked by pyproj) or None.
OptionalCrs = Annotated[str | None, AfterValidator(_crs_text)]
