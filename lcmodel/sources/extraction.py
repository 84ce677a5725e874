"""Embedding values at points across the tiles of a collection, each point read from the tile that holds it.

Points are given in one CRS (the collection's); each tile is read in its own CRS: the points inside it are
transformed into that CRS and extracted with :func:`lcmodel.extract.extract_values` (every touched block
read once). Where tiles overlap, a point takes its vector from the FIRST tile in the collection's order
whose pixel under it is valid. The result is one :class:`~lcmodel.extract.Extraction` in input order whose
``tile`` says which tile each point was read from, and whose pixel centres (for de-duplication) are given
back in the points' CRS.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lcmodel.errors import InputFileError
from lcmodel.extract import Extraction, extract_values
from lcmodel.geo import pixel_centres
from lcmodel.sources.collection import Collection
from lcmodel.sources.tiles import reproject_xy

__all__ = ["extract_collection"]

log = logging.getLogger(__name__)


def extract_collection(collection: Collection, x: np.ndarray, y: np.ndarray, crs: Any, *,
                       nodata: float | None = None, n_threads: int = 2) -> Extraction:
    """Read the embedding vector under each point from the tile that holds it.

    Parameters
    ----------
    collection : the embedding tiles, in order of preference.
    x, y : point coordinates in ``crs``.
    crs : the points' CRS (the collection's, :attr:`Collection.crs`).
    nodata : ``embedding.nodata``, overriding the files' declared value.
    n_threads : threads decoding blocks.

    Returns
    -------
    Extraction
        One row per point in input order; ``tile`` holds the tile index (-1 for points outside every tile),
        ``row``/``col`` the pixel in that tile, ``centres`` the pixel centres in ``crs``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(collection) == 1 and _same_crs(crs, collection.first.crs_wkt):
        return extract_values(collection.first.path, x, y, nodata=nodata, n_threads=n_threads)
    n = x.size
    count = collection.first.count
    values = np.zeros((n, count), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    inside = np.zeros(n, dtype=bool)
    row = np.full(n, -1, dtype=np.int64)
    col = np.full(n, -1, dtype=np.int64)
    which = np.full(n, -1, dtype=np.int64)
    cx = np.full(n, np.nan)
    cy = np.full(n, np.nan)
    rule = None
    names: list[str] = list(collection.band_names)
    for i, idx, tx, ty in collection.assign(x, y, crs):
        todo = ~valid[idx]
        if not todo.any():
            continue
        idx, tx, ty = idx[todo], tx[todo], ty[todo]
        tile = collection.tiles[i]
        ex = extract_values(tile.path, tx, ty, nodata=nodata, n_threads=n_threads)
        if rule is None:
            rule = ex.rule
        elif ex.rule != rule:
            raise InputFileError(
                f"embedding.path: tile {tile.name!r} has nodata rule {ex.rule.describe()}, the first tile "
                f"{rule.describe()}; tiles must share one rule: fix the files or set embedding.nodata"
            )
        first_here = ~inside[idx]
        inside[idx] = True
        take = ex.valid | first_here  # a valid pixel wins; an invalid one is kept only as the first seen
        sel = idx[take]
        values[sel] = ex.values[take]
        valid[sel] = ex.valid[take]
        row[sel] = ex.row[take]
        col[sel] = ex.col[take]
        which[sel] = i
        assert ex.transform is not None  # a single raster always has one
        px, py = pixel_centres(ex.transform, ex.row[take], ex.col[take])  # row/col: the north-up grid
        cx[sel], cy[sel] = reproject_xy(tile.crs_wkt, crs, px, py)
    if rule is None:  # no point in any tile: the rule of the first tile, for the message
        rule = extract_values(collection.first.path, x[:0], y[:0], nodata=nodata).rule
    per_tile = np.bincount(which[valid], minlength=len(collection))
    log.info("extracted %d points from %d tiles: %d inside, %d valid (per tile: %s)", n,
             int((per_tile > 0).sum()), int(inside.sum()), int(valid.sum()),
             ", ".join(f"{t.name} {k}" for t, k in zip(collection.tiles, per_tile.tolist(), strict=True) if k))
    return Extraction(values=values, valid=valid, inside=inside, row=row, col=col, band_names=names, rule=rule,
                      transform=None, tile=which, centres=(cx, cy))


def _same_crs(a: Any, b: Any) -> bool:
    from pyproj import CRS

    return bool(CRS.from_user_input(a.to_wkt() if hasattr(a, "to_wkt") else a)
                == CRS.from_user_input(b.to_wkt() if hasattr(b, "to_wkt") else b))
