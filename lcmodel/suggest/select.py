"""Points worth labelling: the most uncertain / least familiar pixel of each spatial block, spread and stratified.

The rules (README "Points worth labelling"):

- **score** of a pixel in 0..1: ``margin``: ``1 - margin/100``; ``entropy``: ``entropy/100``; with only
  ``confidence.tif``: ``1 - confidence/100``; ``di``: ``min(DI / (2 t), 1)`` with ``t`` the AOA threshold
  (a pixel at twice the threshold or further scores 1); ``both``: the mean of the uncertainty and DI scores.
- **spread**: the map is cut into square blocks of side ``block_size`` on a grid anchored at the CRS origin
  (the grid of the run's spatial split, :func:`lcmodel.accuracy.grid_blocks`); at most one point per block,
  and no point in a block that holds a point of the exclusion file (the run's training table: blocks already
  sampled).
- **strata**: the predicted classes share ``n`` equally (the remainder one each to the smallest class values);
  a class with too few candidate blocks gives its share to the others. The classes then take turns
  (ascending class value), each its best remaining candidate in a block not yet taken.
- **ties** between equal scores are broken by a hash of (seed, pixel index), so the result does not depend on
  how the rasters are read, and the same seed gives the same points, bit for bit.

The rasters are read window by window, and only the best ``2 n`` blocks of each class so far are kept
(each block at its best pixel so far): a class takes at most ``n`` blocks and the others take at most ``n``
of its blocks away, so it never reaches further down its list, and a block dropped once had ``2 n`` better
ones that only improve: the points are those of a whole-raster pass, in bounded memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rasterio.windows import Window

from lcmodel.geo import pixel_centres
from lcmodel.io import open_raster
from lcmodel.suggest.inputs import SuggestInputs, read_exclusions

__all__ = ["Suggestion", "suggest_points", "allocate_equal", "tie_keys", "WINDOW"]

log = logging.getLogger(__name__)

#: side of the windows the rasters are read in (pixels)
WINDOW = 512
_NODATA_U8 = 255
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Suggestion:
    """The points (one row each, ranked) and what they were chosen from."""

    table: pd.DataFrame
    inputs: SuggestInputs
    #: the blocks among the candidates kept (all free blocks when fewer than n points were found)
    n_candidate_blocks: int
    n_excluded_blocks: int
    allocation: dict[int, int]


def tie_keys(seed: int, index: np.ndarray) -> np.ndarray:
    """A uint64 per pixel index, from (seed, index) alone (splitmix64): the tie-break of equal scores."""
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) + np.uint64(seed) * _GOLD + _GOLD
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _cells(xs: np.ndarray, ys: np.ndarray, side: float) -> np.ndarray:
    """One uint64 per point naming its block of the origin-anchored grid of side ``side``."""
    cx = np.floor(xs / side).astype(np.int64) + (1 << 31)
    cy = np.floor(ys / side).astype(np.int64) + (1 << 31)
    return (cx.astype(np.uint64) << np.uint64(32)) | cy.astype(np.uint64)


def _windows(width: int, height: int) -> Iterator[Window]:
    for row in range(0, height, WINDOW):
        for col in range(0, width, WINDOW):
            yield Window(col, row, min(WINDOW, width - col), min(WINDOW, height - row))


def _read(path: Path | None, window: Window) -> np.ndarray | None:
    if path is None:
        return None
    with open_raster(path, path.name) as src:
        return src.read(1, window=window)


def _window_candidates(inp: SuggestInputs, window: Window, seed: int, excluded: np.ndarray,
                       transform: Any, nodata: Any) -> pd.DataFrame:
    """The best pixel of each (block, class) in one window (a table, possibly empty)."""
    labels = _read(inp.map, window)
    assert labels is not None
    valid = np.ones(labels.shape, dtype=bool) if nodata is None else labels != nodata
    parts: dict[str, np.ndarray] = {}
    score = np.zeros(labels.shape, dtype=np.float64)
    n_terms = 0
    if inp.uncertainty is not None:
        name, path = inp.uncertainty
        raw = _read(path, window)
        assert raw is not None
        valid &= raw != _NODATA_U8
        value = raw.astype(np.float64)
        score += value / 100.0 if name == "entropy" else 1.0 - value / 100.0
        parts[name], n_terms = raw, n_terms + 1
    if inp.di is not None:
        di = _read(inp.di, window)
        assert di is not None and inp.threshold is not None
        valid &= np.isfinite(di) & (di >= 0)
        score += np.minimum(np.where(valid, di, 0.0) / (2.0 * inp.threshold), 1.0)
        parts["di"], n_terms = di, n_terms + 1
    rows, cols = np.nonzero(valid)
    if rows.size == 0:
        return pd.DataFrame()
    rows_g = rows + int(window.row_off)
    cols_g = cols + int(window.col_off)
    xs, ys = pixel_centres(transform, rows_g, cols_g)
    cells = _cells(np.asarray(xs), np.asarray(ys), inp.block_size)
    keep = ~np.isin(cells, excluded)
    frame = pd.DataFrame({
        "cell": cells[keep], "map_class": labels[rows, cols][keep].astype(np.int64),
        "score": (score[rows, cols] / max(n_terms, 1))[keep],
        "tie": tie_keys(seed, rows_g.astype(np.int64) * inp.width + cols_g)[keep],
        "row": rows_g[keep].astype(np.int64), "col": cols_g[keep].astype(np.int64),
        **{name: arr[rows, cols][keep] for name, arr in parts.items()},
    })
    return _best(frame)


def _best(frame: pd.DataFrame) -> pd.DataFrame:
    """The best row (highest score, then highest tie key) of each (cell, class), sorted best first."""
    if frame.empty:
        return frame
    ordered = frame.sort_values(["score", "tie"], ascending=False, kind="mergesort")
    return ordered.drop_duplicates(["cell", "map_class"], keep="first")


def allocate_equal(n: int, available: dict[int, int]) -> dict[int, int]:
    """``n`` shared equally by the classes, none above its ``available`` count, the rest to the others.

    The remainder of an equal share goes one each to the smallest class values.
    """
    quota = dict.fromkeys(available, 0)
    left = min(n, sum(available.values()))
    while left > 0:
        open_ = [c for c in sorted(available) if quota[c] < available[c]]
        share, extra = divmod(left, len(open_))
        for i, c in enumerate(open_):
            take = min(share + (1 if i < extra else 0), available[c] - quota[c])
            quota[c] += take
            left -= take
    return quota


def _take_turns(candidates: pd.DataFrame, quota: dict[int, int], n: int) -> pd.DataFrame:
    """Classes in turn (ascending value) take their best candidate in a block not yet taken: their shares
    first, then, while fewer than ``n`` are taken, any class with a candidate left in a free block."""
    frame = candidates.reset_index(drop=True)
    cells = frame["cell"].to_numpy(np.uint64)
    queues = {int(c): idx for c, idx in frame.groupby("map_class", sort=True).indices.items()}  # best first
    pos = dict.fromkeys(queues, 0)
    taken = dict.fromkeys(queues, 0)
    used: set[int] = set()
    picked: list[int] = []

    def next_free(c: int) -> int | None:
        q = queues[c]
        while pos[c] < len(q):
            i = int(q[pos[c]])
            pos[c] += 1
            if int(cells[i]) not in used:
                return i
        return None

    for limit, target in ((quota, sum(quota.values())), (dict.fromkeys(queues, n), n)):
        progress = True
        while len(picked) < target and progress:
            progress = False
            for c in queues:
                if len(picked) >= target or taken[c] >= limit[c]:
                    continue
                i = next_free(c)
                if i is not None:
                    used.add(int(cells[i]))
                    picked.append(i)
                    taken[c] += 1
                    progress = True
    return frame.iloc[picked]


def suggest_points(inp: SuggestInputs, n: int, *, seed: int = 42,
                   progress: Callable[[int, int], None] | None = None) -> Suggestion:
    """The ``n`` points worth labelling (fewer when the map has fewer free blocks), ranked by score."""
    from pyproj import Transformer

    from lcmodel.reference.points import as_pyproj_crs

    excluded = np.array([], dtype=np.uint64)
    if inp.exclude is not None:
        ex, ey = read_exclusions(inp.exclude, inp.crs)
        excluded = np.unique(_cells(ex, ey, inp.block_size))
    with open_raster(inp.map, "class map") as src:
        transform, nodata, tags = src.transform, src.nodata, src.tags()
    windows = list(_windows(inp.width, inp.height))
    keep = 2 * n  # per class: the others take at most n blocks from its queue, it takes at most n itself
    candidates = pd.DataFrame(columns=["cell", "map_class", "score", "tie", "row", "col"])
    for i, window in enumerate(windows):
        found = _window_candidates(inp, window, seed, excluded, transform, nodata)
        if not found.empty:  # the running best: each class's best `keep` blocks (exact: module docstring)
            merged = _best(found if candidates.empty else pd.concat([candidates, found], ignore_index=True))
            candidates = merged.groupby("map_class", sort=False).head(keep).reset_index(drop=True)
        if progress is not None:
            progress(i + 1, len(windows))
    available = {int(c): int(k) for c, k in candidates.groupby("map_class").size().items()}
    quota = allocate_equal(n, available)
    picked = _take_turns(candidates, quota, n) if available else candidates.iloc[:0]
    picked = picked.sort_values(["score", "tie"], ascending=False, kind="mergesort").reset_index(drop=True)
    rows, cols = picked["row"].to_numpy(np.int64), picked["col"].to_numpy(np.int64)
    xs, ys = pixel_centres(transform, rows, cols)
    lon, lat = Transformer.from_crs(as_pyproj_crs(inp.crs), "EPSG:4326", always_xy=True).transform(xs, ys)
    classes = picked["map_class"].to_numpy(np.int64)
    table = pd.DataFrame({
        "rank": np.arange(1, len(picked) + 1, dtype=np.int64), "x": np.asarray(xs, dtype=np.float64),
        "y": np.asarray(ys, dtype=np.float64), "lon": np.asarray(lon), "lat": np.asarray(lat),
        "row": rows, "col": cols, "map_class": classes,
        "map_name": [tags.get(f"CLASS_{c}", str(c)) for c in classes.tolist()],
        "score": picked["score"].to_numpy(np.float64).round(6),
    })
    for name in ("margin", "entropy", "confidence"):
        if name in picked.columns:
            table[name] = picked[name].to_numpy(np.int64)
    if "di" in picked.columns:
        table["di"] = picked["di"].to_numpy(np.float64)
    table["label"] = pd.Series([""] * len(table), dtype=object)
    counts = {int(c): int(k) for c, k in table["map_class"].value_counts().sort_index().items()}
    log.info("suggest: %d points from %d candidate blocks (%d excluded)", len(table),
             candidates["cell"].nunique(), excluded.size)
    return Suggestion(table, inp, int(candidates["cell"].nunique()), int(excluded.size), counts)
