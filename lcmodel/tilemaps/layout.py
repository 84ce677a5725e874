"""Names of a tile collection's outputs: one folder per tile (its stem), one mosaic per CRS (its tag).

A tile's stem is its file name without the suffix (``emb-0000000000-0000008192.tif`` ->
``emb-0000000000-0000008192``), with characters other than letters, digits, ``.``, ``_`` and ``-``
replaced by ``_``; a stem that an earlier tile of the collection already has gets ``_2``, ``_3``, ... in the
collection's order, so the names are deterministic and distinct. A CRS's tag is its EPSG code (``32631``),
else ``crs-`` and the first 8 hex digits of the SHA-256 of its WKT.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from rasterio.crs import CRS

from lcmodel.sources import Tile

__all__ = ["tile_stem", "tile_stems", "crs_tag", "crs_groups"]

_ODD = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIX = re.compile(r"\.(tif|tiff|vrt|jp2|img)$", re.IGNORECASE)


def tile_stem(path: str) -> str:
    """The file name of a tile (local path, URL or /vsi path) without its raster suffix, made file-name safe."""
    name = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    stem = _ODD.sub("_", _SUFFIX.sub("", name)).strip("._") or "tile"
    return stem


def tile_stems(tiles: Sequence[Tile]) -> list[str]:
    """Distinct stems for the tiles, in order (repeats get ``_2``, ``_3``, ...)."""
    seen: set[str] = set()
    out = []
    for tile in tiles:
        base = tile_stem(tile.path)
        stem, n = base, 1
        while stem in seen:
            n += 1
            stem = f"{base}_{n}"
        seen.add(stem)
        out.append(stem)
    return out


def crs_tag(crs: Any) -> str:
    """A short file-name tag for a CRS: its EPSG code, else ``crs-<8 hex digits of its WKT's SHA-256>``."""
    crs = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    if epsg:
        return str(epsg)
    return "crs-" + hashlib.sha256(crs.to_wkt().encode()).hexdigest()[:8]


def crs_groups(tiles: Sequence[Tile]) -> dict[str, list[int]]:
    """Tile indices per CRS tag, CRSs in order of first appearance, tiles in the collection's order."""
    groups: dict[str, list[int]] = {}
    tags: dict[str, str] = {}
    for i, tile in enumerate(tiles):
        tag = tags.setdefault(tile.crs_wkt, crs_tag(tile.crs))
        groups.setdefault(tag, []).append(i)
    return groups
