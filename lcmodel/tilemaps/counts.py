"""Class pixel counts of a tile collection's maps with each location counted once.

Tiles of a collection may overlap (at UTM zone borders the tiles of both zones cover the same ground). The
collection's rule (:mod:`lcmodel.sources.collection`) is that a location belongs to the FIRST tile, in the
collection's order, whose pixel there is valid; the VRT and COG mosaics (:mod:`lcmodel.tilemaps.mosaic`)
show the same. So a pixel of tile ``j`` is counted unless an earlier tile has a classified (not nodata)
pixel under its centre: for each block of ``j``'s map that an earlier tile's footprint overlaps, that
tile's map is warped onto the block's grid with nearest resampling (the pixel under each centre) and masks
it. Blocks no earlier tile reaches are counted as they are, and a tile no earlier tile reaches is not read
at all: its prediction's own counts are used. Memory: one block per tile at a time.

Tiles in different CRSs have slightly different pixel footprints, so "each location once" holds to within
a pixel along the overlap's edge.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import reproject
from rasterio.windows import Window

from lcmodel.sources import Tile

__all__ = ["TileCounts", "count_once", "overlapping_earlier", "covered_by", "window_box", "window_affine"]

#: overlaps smaller than this share of a pixel's area are edges that merely touch
_TOUCH = 1e-3


@dataclass(frozen=True)
class TileCounts:
    """One tile's pixels that count for the collection (those no earlier tile already covers).

    Attributes
    ----------
    class_counts : counted pixels per class value (every class, zeros included).
    n_unclassified : counted pixels with the reserved "unclassified" value.
    n_masked : valid pixels left out because an earlier tile has a valid pixel there.
    masked_by : indices of the earlier tiles that overlap this one.
    """

    class_counts: dict[int, int]
    n_unclassified: int = 0
    n_masked: int = 0
    masked_by: tuple[int, ...] = field(default_factory=tuple)

    @property
    def n_counted(self) -> int:
        return sum(self.class_counts.values()) + self.n_unclassified


def overlapping_earlier(maps: Sequence[Tile]) -> list[list[int]]:
    """For each tile, the earlier tiles whose footprint overlaps it (more than a touching edge)."""
    out: list[list[int]] = []
    for j, tile in enumerate(maps):
        own = tile.footprint(tile.crs_wkt)
        px = abs(tile.transform[0] * tile.transform[4])
        out.append([i for i in range(j) if own.intersection(maps[i].footprint(tile.crs_wkt)).area > _TOUCH * px])
    return out


def count_once(maps: Sequence[Tile], own_counts: Sequence[Mapping[int, int]], own_unclassified: Sequence[int],
               unclassified_value: int | None = None) -> list[TileCounts]:
    """Each tile's counted pixels (see the module docstring), in the collection's order.

    Parameters
    ----------
    maps : the per-tile class maps (their headers), in the collection's order.
    own_counts : each map's own class counts (its prediction summary's ``class_counts``).
    own_unclassified : each map's own "unclassified" pixels.
    unclassified_value : the reserved map value of "unclassified", or None.
    """
    earlier = overlapping_earlier(maps)
    result = []
    for j, tile in enumerate(maps):
        if not earlier[j]:
            result.append(TileCounts({int(k): int(v) for k, v in own_counts[j].items()}, int(own_unclassified[j])))
            continue
        result.append(_count_masked(tile, [maps[i] for i in earlier[j]], list(own_counts[j]), unclassified_value,
                                    tuple(earlier[j])))
    return result


def _count_masked(tile: Tile, before: list[Tile], classes: list[int], unclassified_value: int | None,
                  masked_by: tuple[int, ...]) -> TileCounts:
    values = np.asarray(sorted(int(c) for c in classes), dtype=np.int64)
    counts = np.zeros(values.size, dtype=np.int64)
    n_unclassified = 0
    n_masked = 0
    shapes = [t.footprint(tile.crs_wkt) for t in before]
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(tile.path))
        others = [stack.enter_context(rasterio.open(t.path)) for t in before]
        nodata = src.nodata
        px = abs(src.transform.a * src.transform.e)
        for _, window in src.block_windows(1):
            data = src.read(1, window=window)
            valid = data != nodata if nodata is not None else np.ones(data.shape, dtype=bool)
            box = window_box(window, src.transform)
            for other, shape in zip(others, shapes, strict=True):
                if valid.any() and box.intersection(shape).area > _TOUCH * px:
                    covered = covered_by(other, src, window)
                    n_masked += int((valid & covered).sum())
                    valid &= ~covered
            kept = data[valid].astype(np.int64)
            if unclassified_value is not None:
                hit = kept == unclassified_value
                n_unclassified += int(hit.sum())
                kept = kept[~hit]
            found, n = np.unique(kept, return_counts=True)
            pos = np.searchsorted(values, found)
            known = (pos < values.size) & (values[np.minimum(pos, values.size - 1)] == found)
            counts[pos[known]] += n[known]
    return TileCounts({int(v): int(n) for v, n in zip(values, counts, strict=True)}, n_unclassified, n_masked,
                      masked_by)


def covered_by(other: DatasetReader, src: DatasetReader, window: Window) -> np.ndarray:
    """Where an earlier map has a valid pixel under the centres of ``window``'s pixels of ``src``.

    A map written by a prediction always declares its nodata value (outside its grid counts as nodata).
    """
    fill = other.nodata if other.nodata is not None else 0
    out = np.full((int(window.height), int(window.width)), fill, dtype=other.dtypes[0])
    reproject(rasterio.band(other, 1), out, dst_transform=window_affine(window, src.transform), dst_crs=src.crs,
              src_nodata=fill, dst_nodata=fill, resampling=Resampling.nearest)
    return np.asarray(out != fill)


def window_affine(window: Window, transform: Affine) -> Affine:
    """The transform of a window of a grid."""
    return transform @ Affine.translation(window.col_off, window.row_off)


def window_box(window: Window, transform: Affine) -> shapely.Polygon:
    """A window's outline in its grid's CRS (any orientation)."""
    t = window_affine(window, transform)
    corners = [t @ (c, r) for c, r in ((0, 0), (window.width, 0), (window.width, window.height), (0, window.height))]
    return shapely.Polygon(corners)
