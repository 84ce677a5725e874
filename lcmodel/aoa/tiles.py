"""The area of applicability of a tile collection's per-tile maps, with each location counted once.

Each tile's ``di.tif`` / ``aoa.tif`` are written beside its map (:func:`lcmodel.aoa.write_aoa_rasters` on the
tile's embedding and map, on the tile's own grid and CRS). The collection's shares outside the AOA follow the
collection's counting rule (:mod:`lcmodel.tilemaps.counts`): where tiles overlap, a location belongs to the
FIRST tile, in the collection's order, whose map pixel there is valid. So a pixel of tile ``j`` is counted
unless an earlier tile's map has a classified pixel under its centre (that map warped onto the block's grid
with nearest resampling). A tile no earlier tile overlaps keeps the counts its rasters were written with and
is not read again. Tiles in different CRSs have slightly different pixel footprints, so "each location once"
holds to within a pixel along the overlap's edge, as for the class counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import rasterio

from lcmodel.aoa.raster import AOA_NODATA, AoaCounts
from lcmodel.sources import Tile
from lcmodel.tilemaps import overlapping_earlier
from lcmodel.tilemaps.counts import covered_by, window_box

__all__ = ["aoa_counts_once", "merge_counts"]

#: overlaps smaller than this share of a pixel's area are edges that merely touch (as in the class counts)
_TOUCH = 1e-3


def aoa_counts_once(maps: Sequence[Tile], aoa_paths: Sequence[Path], own: Sequence[AoaCounts]) -> list[AoaCounts]:
    """Each tile's counted pixels per predicted class, all and outside the AOA, in the collection's order.

    Parameters
    ----------
    maps : the per-tile class maps (their headers), in the collection's order.
    aoa_paths : each tile's ``aoa.tif`` (on its map's grid).
    own : the counts of each tile's whole map (what :func:`lcmodel.aoa.write_aoa_rasters` returned).
    """
    earlier = overlapping_earlier(maps)
    return [own[j] if not earlier[j] else _masked(tile, aoa_paths[j], [maps[i] for i in earlier[j]])
            for j, tile in enumerate(maps)]


def merge_counts(parts: Sequence[AoaCounts]) -> AoaCounts:
    """The sum of several tiles' counts."""
    total = AoaCounts()
    for part in parts:
        for v, n in part.pixels.items():
            total.pixels[v] = total.pixels.get(v, 0) + n
        for v, n in part.outside.items():
            total.outside[v] = total.outside.get(v, 0) + n
    return total


def _masked(tile: Tile, aoa_path: Path, before: list[Tile]) -> AoaCounts:
    counts = AoaCounts()
    shapes = [t.footprint(tile.crs_wkt) for t in before]
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(tile.path))
        aoa_src = stack.enter_context(rasterio.open(aoa_path))
        others = [stack.enter_context(rasterio.open(t.path)) for t in before]
        px = abs(src.transform.a * src.transform.e)
        for _, window in src.block_windows(1):
            labels = src.read(1, window=window)
            aoa = aoa_src.read(1, window=window)
            valid = aoa != AOA_NODATA
            if src.nodata is not None:
                valid &= labels != src.nodata
            box = window_box(window, src.transform)
            for other, shape in zip(others, shapes, strict=True):
                if valid.any() and box.intersection(shape).area > _TOUCH * px:
                    valid &= ~covered_by(other, src, window)
            counts.add(labels[valid], aoa[valid] == 0)
    return counts
