"""From what a user writes in ``embedding.path`` / ``reference.path`` to an ordered list of files.

A path spec is one of:
- a file (GeoTIFF, COG, ``.vrt``), local or remote (``https://``, ``s3://``, ``/vsi...``);
- a list of such files;
- a glob (``tiles/*.tif``, ``**`` allowed) or a folder (every ``.tif``/``.tiff`` in it, not recursive);
- an index: ``aef_index.parquet`` (the AlphaEarth GeoParquet index) or a CSV with the same columns
  (``path``, ``year``, ``wgs84_west``, ``wgs84_south``, ``wgs84_east``, ``wgs84_north``), filtered by the
  area of interest and the year. Relative paths in an index are relative to the index's own location.

The order is deterministic (a list keeps its order; a glob, a folder and an index are sorted by path), and it
is the order in which overlapping tiles are preferred.
"""

from __future__ import annotations

import glob
import io
import logging
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from shapely import Geometry, box

from lcmodel.errors import ConfigError, InputFileError
from lcmodel.sources.remote import http_url, is_remote, redact

__all__ = ["expand_spec", "is_index", "read_index", "index_years", "INDEX_COLUMNS", "RASTER_SUFFIXES", "spec_items"]

log = logging.getLogger(__name__)

#: the columns an index must have
INDEX_COLUMNS = ("path", "wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north")
#: file suffixes taken from a folder
RASTER_SUFFIXES = (".tif", ".tiff")
_GLOB_CHARS = set("*?[")


def spec_items(spec: Any) -> list[str]:
    """The spec as a list of strings (a single path becomes a list of one)."""
    if isinstance(spec, str | os.PathLike):
        return [str(spec)]
    return [str(s) for s in spec]


def is_index(item: str, csv_is_index: bool = True) -> bool:
    """True for an index file: ``.parquet``, or (when ``csv_is_index``) a CSV listing tiles."""
    low = item.lower().split("?", 1)[0]
    return low.endswith((".parquet", ".geoparquet")) or (csv_is_index and low.endswith(".csv"))


def expand_spec(spec: Any, what: str, key: str, *, aoi: Geometry | None = None,
                year: int | None = None, csv_is_index: bool = True) -> list[str]:
    """Every file a path spec names, in the order of preference.

    Parameters
    ----------
    spec : a path, a URL, or a list of them (see the module docstring).
    what : what the files are, for messages ("embedding raster").
    key : the config key, for messages ("embedding.path").
    aoi : area of interest in lon/lat: index rows and (for indexes) tiles outside it are left out.
    year : keep only this year's rows of an index.
    csv_is_index : a ``.csv`` item is an index (False where a CSV means points).

    Raises
    ------
    InputFileError
        A file, folder or glob finds nothing, or an index lacks columns or matches no tile.
    """
    out: list[str] = []
    for item in spec_items(spec):
        if is_index(item, csv_is_index):
            out.extend(read_index(item, aoi=aoi, year=year, key=key))
        elif is_remote(item):
            if any(ch in item for ch in _GLOB_CHARS) or item.endswith("/"):
                raise InputFileError(
                    f"{key} {redact(item)!r} is a remote folder or pattern; remote files cannot be listed: name each "
                    "file, or use an index (aef_index.parquet)"
                )
            out.append(item)
        elif any(ch in item for ch in _GLOB_CHARS):
            found = sorted(glob.glob(item, recursive=True))
            found = [f for f in found if Path(f).is_file()]
            if not found:
                raise InputFileError(f"{key} pattern {redact(item)!r} matches no file; check the pattern and folder")
            out.extend(found)
        elif Path(item).is_dir():
            out.extend(_folder_files(Path(item), key))
        else:
            if not Path(item).exists():
                raise InputFileError(f"{what} {redact(item)!r} does not exist; check the path in the config ({key})")
            out.append(item)
    seen: set[str] = set()
    unique = [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    if not unique:
        raise InputFileError(f"{key} names no file; give a file, a list, a glob, a folder or an index")
    return unique


def _folder_files(folder: Path, key: str) -> list[str]:
    """The rasters of a folder, sorted; a ``.vrt`` that only flips a ``.tif(f)`` beside it is not taken twice."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        vrts = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".vrt")
        if vrts:
            return [str(p) for p in vrts]
        raise InputFileError(
            f"{key} folder {str(folder)!r} holds no .tif/.tiff file; point at the folder of the tiles"
        )
    skipped = [p.name for p in folder.glob("*.vrt") if p.with_suffix(".tif").exists()
               or p.with_suffix(".tiff").exists()]
    if skipped:
        log.info("%s: %d .vrt files beside their .tif(f) tiles left out (the tiles are read directly)",
                 folder, len(skipped))
    return [str(p) for p in files]


def _read_table(item: str, key: str) -> pd.DataFrame:
    """An index file (local or remote) as a DataFrame."""
    parquet = not item.lower().split("?", 1)[0].endswith(".csv")
    try:
        if is_remote(item):
            if item.startswith(("s3://", "/vsis3/")):
                import pyarrow.fs as pafs

                endpoint = os.environ.get("AWS_S3_ENDPOINT")
                scheme = "http" if os.environ.get("AWS_HTTPS", "YES").upper() in ("NO", "FALSE", "0") else "https"
                fs = pafs.S3FileSystem(anonymous=not os.environ.get("AWS_ACCESS_KEY_ID"),
                                       endpoint_override=endpoint, scheme=scheme if endpoint else "https",
                                       region=os.environ.get("AWS_REGION", "us-west-2"))
                name = item.removeprefix("s3://").removeprefix("/vsis3/")
                with fs.open_input_file(name) as f:
                    data = f.read()
            else:
                url = http_url(item) or item
                with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (a user's URL)
                    data = resp.read()
            buf: Any = io.BytesIO(data)
        else:
            buf = item
        if parquet:
            import pyarrow.parquet as pq

            table = pq.read_table(buf)
            # GeoParquet geometry (WKB) is not needed: the wgs84_* columns give each tile's box
            keep = [c for c in table.column_names if c != "geometry"]
            return table.select(keep).to_pandas()
        return pd.read_csv(buf)
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"{key} index {redact(item)!r} cannot be read ({str(exc).splitlines()[0][:200]}); give an "
            "aef_index.parquet or a CSV with the columns " + ", ".join(INDEX_COLUMNS)
        ) from None


def index_years(item: str, *, key: str) -> list[int]:
    """The distinct years of an index's ``year`` column, sorted ([] when it has no such column)."""
    df = _read_table(item, key)
    if "year" not in df.columns:
        return []
    return sorted({int(y) for y in df["year"].dropna().unique()})


def read_index(item: str, *, aoi: Geometry | None, year: int | None, key: str) -> list[str]:
    """The files of an index that intersect ``aoi`` (lon/lat) in ``year``, sorted by path.

    Raises
    ------
    InputFileError
        Columns missing, several years and no ``year`` given, or no tile matches.
    """
    df = _read_table(item, key)
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise InputFileError(
            f"{key} index {redact(item)!r} lacks the column(s) {missing} (has {list(df.columns)[:12]}); an index needs "
            + ", ".join(INDEX_COLUMNS)
        )
    n_all = len(df)
    if "year" in df.columns:
        years = sorted({int(y) for y in df["year"].dropna().unique()})
        if year is not None:
            df = df[df["year"] == year]
            if df.empty:
                raise InputFileError(
                    f"{key} index {redact(item)!r} has no tile of year {year} (years: {_short(years)}); set "
                    "embedding.year to one of them"
                )
        elif len(years) > 1:
            raise ConfigError(
                f"{key} index {redact(item)!r} holds {len(years)} years ({_short(years)}); set embedding.year to "
                "the year to map"
            )
    if aoi is not None:
        boxes = [box(w, s, e, n) for w, s, e, n in
                 df[["wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north"]].itertuples(index=False)]
        hits = [aoi.intersects(b) for b in boxes]
        df = df[hits]
    if df.empty:
        raise InputFileError(
            f"{key} index {redact(item)!r}: none of its {n_all} tiles intersects embedding.aoi {_aoi_text(aoi)}"
            + (f" in {year}" if year is not None else "")
            + "; check the AOI (lon/lat: west, south, east, north)"
        )
    base = _parent(item)
    paths = sorted({_join(base, str(p)) for p in df["path"]})
    log.info("%s: %d of %d index rows selected (year %s, AOI %s)", redact(item), len(paths), n_all, year,
             _aoi_text(aoi))
    return paths


def _short(values: Sequence[Any]) -> str:
    return ", ".join(map(str, values[:8])) + (" ..." if len(values) > 8 else "")


def _aoi_text(aoi: Geometry | None) -> str:
    if aoi is None:
        return "(none)"
    w, s, e, n = aoi.bounds
    return f"({w:.4f}, {s:.4f}, {e:.4f}, {n:.4f})"


def _parent(item: str) -> str:
    """The location an index's relative paths are relative to."""
    if is_remote(item):
        return item.rsplit("/", 1)[0]
    return str(Path(item).resolve().parent)


def _join(base: str, path: str) -> str:
    if is_remote(path) or os.path.isabs(path):
        return path
    if is_remote(base):
        return f"{base}/{path}"
    return os.path.normpath(os.path.join(base, path))
