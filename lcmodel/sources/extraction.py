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
                       nodata: float | None = None, bands: Any = None, n_threads: int = 2) -> Extraction:
    """Read the embedding vector under each point from the tile that holds it.

    Parameters
    ----------
    collection : the embedding tiles, in order of preference.
    x, y : point coordinates in ``crs``.
    crs : the points' CRS (the collection's, :attr:`Collection.crs`).
    nodata : ``embedding.nodata``, overriding the files' declared value.
    bands : ``embedding.bands`` (names or 1-based indices), or None: each tile drops the bands that carry
        nothing at its sampled pixels, and the collection uses the bands every tile kept.
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
        return extract_values(collection.first.path, x, y, nodata=nodata, bands=bands, n_threads=n_threads)
    n = x.size
    per_tile = [(i, idx, tx, ty) for i, idx, tx, ty in collection.assign(x, y, crs)]
    extractions = {i: extract_values(collection.tiles[i].path, tx, ty, nodata=nodata, bands=bands,
                                     n_threads=n_threads) for i, idx, tx, ty in per_tile}
    # the bands every tile kept (a band that carries nothing in one tile is left out everywhere)
    kept = set.intersection(*(set(e.selection.indexes) for e in extractions.values())) if extractions else set()
    selection = next(iter(extractions.values())).selection if extractions else None
    if selection is not None and len(kept) < len(selection.indexes):
        dropped = tuple(d for e in extractions.values() for d in e.selection.dropped)
        order = sorted(kept)
        names_all = collection.band_names
        selection = type(selection)(tuple(order), tuple(names_all[i - 1] for i in order), selection.n_source,
                                    selection.selected_by, tuple({d.index: d for d in dropped}.values()))
    used = list(selection.names) if selection is not None else list(collection.band_names)
    count = len(used)
    values = np.zeros((n, count), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    inside = np.zeros(n, dtype=bool)
    row = np.full(n, -1, dtype=np.int64)
    col = np.full(n, -1, dtype=np.int64)
    which = np.full(n, -1, dtype=np.int64)
    cx = np.full(n, np.nan)
    cy = np.full(n, np.nan)
    rule = None
    for i, idx, _, _ in per_tile:
        todo = ~valid[idx]
        if not todo.any():
            continue
        tile = collection.tiles[i]
        ex = extractions[i]
        cols = [ex.band_names.index(b) for b in used]
        ex_values, ex_valid, ex_row, ex_col = ex.values[todo][:, cols], ex.valid[todo], ex.row[todo], ex.col[todo]
        idx = idx[todo]
        if rule is None:
            rule = ex.rule
        elif ex.rule != rule:
            raise InputFileError(
                f"embedding.path: tile {tile.name!r} has nodata rule {ex.rule.describe()}, the first tile "
                f"{rule.describe()}; tiles must share one rule: fix the files or set embedding.nodata"
            )
        first_here = ~inside[idx]
        inside[idx] = True
        take = ex_valid | first_here  # a valid pixel wins; an invalid one is kept only as the first seen
        sel = idx[take]
        values[sel] = ex_values[take]
        valid[sel] = ex_valid[take]
        row[sel] = ex_row[take]
        col[sel] = ex_col[take]
        which[sel] = i
        assert ex.transform is not None  # a single raster always has one
        px, py = pixel_centres(ex.transform, ex_row[take], ex_col[take])  # row/col: the north-up grid
        cx[sel], cy[sel] = reproject_xy(tile.crs_wkt, crs, px, py)
    if rule is None:  # no point in any tile: the rule of the first tile, for the message
        rule = extract_values(collection.first.path, x[:0], y[:0], nodata=nodata).rule
    counts = np.bincount(which[valid], minlength=len(collection))
    log.info("extracted %d points from %d tiles: %d inside, %d valid (per tile: %s)", n,
             int((counts > 0).sum()), int(inside.sum()), int(valid.sum()),
             ", ".join(f"{t.name} {k}" for t, k in zip(collection.tiles, counts.tolist(), strict=True) if k))
    return Extraction(values=values, valid=valid, inside=inside, row=row, col=col, band_names=used, rule=rule,
                      transform=None, tile=which, centres=(cx, cy), bands=selection)


def _same_crs(a: Any, b: Any) -> bool:
    from pyproj import CRS

    return bool(CRS.from_user_input(a.to_wkt() if hasattr(a, "to_wkt") else a)
                == CRS.from_user_input(b.to_wkt() if hasattr(b, "to_wkt") else b))
