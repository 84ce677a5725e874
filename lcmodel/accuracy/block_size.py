"""A spatial block size from the data: the range of the empirical label-indicator variogram.

:func:`auto_block_size` picks the block side of :func:`lcmodel.accuracy.spatial_cv.grid_blocks`: the distance
at which two samples' labels stop being more alike than two random samples' (Roberts et al. 2017, Ecography
40:913: blocks at least as large as the range of spatial dependence), then shrinks it until every fold can
get blocks. :class:`BlockSizeEstimate` keeps what it found, the empirical variogram included.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lcmodel.accuracy.spatial_cv import grid_blocks
from lcmodel.errors import InputDataError, InsufficientDataError

__all__ = ["BlockSizeEstimate", "auto_block_size"]

logger = logging.getLogger(__name__)


@dataclass
class BlockSizeEstimate:
    """What :func:`auto_block_size` found.

    Attributes
    ----------
    block_size : the chosen block side (CRS units).
    range : distance at which the label variogram first reaches ``level`` x sill (None if it never does).
    sill : probability that two random samples have different labels (``1 - sum p_c^2``).
    level : the fraction of the sill that defines the range (0.95).
    distances, fractions, n_pairs : the empirical variogram: mean pair distance, fraction of pairs with
        different labels, and pair count per distance bin.
    n_blocks : blocks that hold samples at the chosen size.
    note : why the block size differs from the range, when it does.
    """

    block_size: float
    range: float | None
    sill: float
    level: float
    distances: list[float] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    n_pairs: list[int] = field(default_factory=list)
    n_blocks: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auto_block_size(
    x: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    *,
    n_folds: int = 5,
    level: float = 0.95,
    n_bins: int = 30,
    max_points: int = 4000,
    n_anchors: int = 600,
    min_pairs: int = 30,
    random_state: int = 42,
) -> BlockSizeEstimate:
    """Block size from the range of the empirical label-indicator variogram.

    Method: for pairs of samples, the indicator "labels differ" is averaged by distance class. Its expectation
    for two samples taken at random is the sill ``1 - sum_c p_c^2`` (``p_c`` the class shares). Near each
    other, samples share labels more often, so the curve starts low and rises to the sill; the distance at
    which it first reaches ``level`` (95 %) of the sill is the range beyond which labels are no more alike than
    random, and is the block side (Roberts et al. 2017, Ecography 40:913: blocks at least as large as the
    range of spatial dependence). Pairs are those between up to ``n_anchors`` anchor samples and up to
    ``max_points`` samples (seeded subsamples); distance classes are log-spaced from the median
    nearest-neighbour distance to half the sample's extent; classes with fewer than ``min_pairs`` pairs are
    ignored. If the curve never reaches the level, the largest distance class is used. The size is then
    reduced (by factors of 1.25) until the samples fall in at least ``2 * n_folds`` blocks, so that every
    fold can get blocks.

    Parameters
    ----------
    x, y : sample coordinates in a projected CRS.
    labels : class per sample.
    n_folds : folds the blocks must be spread over.
    level : fraction of the sill that defines the range.
    n_bins : distance classes.
    max_points, n_anchors : subsample sizes (memory is ``n_anchors * max_points`` distances).
    min_pairs : smallest pair count of a distance class that is used.
    random_state : seed of the subsamples.

    Returns
    -------
    BlockSizeEstimate
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    lab = np.asarray(labels)
    if not (xa.shape == ya.shape == lab.shape) or xa.ndim != 1:
        raise InputDataError("x, y and labels must be 1-D arrays of the same length")
    if xa.size < 2 * n_folds:
        raise InsufficientDataError(
            f"{xa.size} samples are too few to choose a block size for {n_folds} folds; give "
            "sampling.block_size or use the 'random' strategy"
        )
    rng = np.random.default_rng(random_state)
    pick = rng.permutation(xa.size)[: min(max_points, xa.size)]
    px, py, pl = xa[pick], ya[pick], lab[pick]
    anchors = np.arange(min(n_anchors, pick.size))
    dx = px[anchors, None] - px[None, :]
    dy = py[anchors, None] - py[None, :]
    dist = np.hypot(dx, dy)
    differ = pl[anchors, None] != pl[None, :]
    dist[np.arange(anchors.size), anchors] = np.nan  # no self pairs
    with np.errstate(invalid="ignore"):
        positive = np.where(dist > 0, dist, np.nan)
    nearest = np.nanmin(positive, axis=1)
    nearest = nearest[np.isfinite(nearest)]
    _, shares = np.unique(lab, return_counts=True)
    p = shares / shares.sum()
    sill = float(1.0 - np.sum(p**2))
    extent = float(math.hypot(np.ptp(xa), np.ptp(ya)))
    if nearest.size == 0 or extent <= 0 or sill <= 0:
        raise InsufficientDataError(
            "the samples have a single location or a single class; give sampling.block_size or use the "
            "'random' strategy"
        )
    lo = float(np.median(nearest))
    hi = max(extent / 2.0, lo * 1.01)
    edges = np.geomspace(lo, hi, n_bins + 1)
    edges[0] = 0.0
    d = dist.ravel()
    f = differ.ravel()
    ok = np.isfinite(d)
    d, f = d[ok], f[ok]
    which = np.digitize(d, edges) - 1
    inside = (which >= 0) & (which < n_bins)
    n_pairs = np.bincount(which[inside], minlength=n_bins)
    sum_d = np.bincount(which[inside], weights=d[inside], minlength=n_bins)
    sum_f = np.bincount(which[inside], weights=f[inside].astype(np.float64), minlength=n_bins)
    used = n_pairs >= min_pairs
    mean_d = sum_d[used] / n_pairs[used]
    frac = sum_f[used] / n_pairs[used]
    reached = np.flatnonzero(frac >= level * sill)
    note = ""
    size: float
    if reached.size:
        rng_dist: float | None = float(mean_d[reached[0]])
        size = float(mean_d[reached[0]])
    else:
        rng_dist = None
        size = float(mean_d[-1]) if mean_d.size else hi
        note = f"the label variogram never reached {level:.0%} of its sill; the largest distance class is used"
    size = max(size, lo)
    n_blocks = int(np.unique(grid_blocks(xa, ya, size)).size)
    shrunk = False
    while n_blocks < 2 * n_folds and size > lo:
        size /= 1.25
        n_blocks = int(np.unique(grid_blocks(xa, ya, size)).size)
        shrunk = True
    if shrunk:
        note = (note + "; " if note else "") + (
            f"reduced to {size:.4g} so that the samples fall in at least {2 * n_folds} blocks"
        )
    if n_blocks < 2 * n_folds:
        logger.warning(
            "only %d spatial blocks for %d folds at block size %.4g", n_blocks, n_folds, size
        )
    logger.info(
        "auto block size %.4g (range %s, sill %.3f, %d blocks)", size, rng_dist, sill, n_blocks
    )
    return BlockSizeEstimate(
        block_size=float(size),
        range=rng_dist,
        sill=sill,
        level=level,
        distances=[float(v) for v in mean_d],
        fractions=[float(v) for v in frac],
        n_pairs=[int(v) for v in n_pairs[used]],
        n_blocks=n_blocks,
        note=note,
    )
