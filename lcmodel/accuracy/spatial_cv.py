"""Spatial blocks for cross-validation and train/test splits.

Neighbouring embedding pixels are strongly alike (each summarises about a kilometre of context), so a random
split puts near-copies of test pixels in the training part and random CV is optimistic (Ploton et al. 2020,
Nat. Commun. 11:4540). Spatial CV holds out whole blocks instead:

* :func:`grid_blocks` puts every sample in a square block of a grid in the coordinates' CRS (the embedding
  CRS), anchored at the CRS origin, so the same block size always gives the same blocks;
* :func:`assign_groups` assigns whole blocks to folds (or to train/test) with a seeded greedy rule that keeps
  each fold's per-class counts as close as it can to the class's target share: blocks are taken largest
  first (random order among equal sizes) and each goes to the fold where adding it reduces the squared
  deviation from the targets most (each class weighted by 1 / its total, so rare classes count as much as
  common ones, plus a term for the fold's total size). A block is never in two folds;
* :func:`cv_splits` returns the ``(train_idx, test_idx)`` folds of either strategy for the tuning functions.

The block side can be chosen from the data: :func:`lcmodel.accuracy.block_size.auto_block_size`.

Default rule (:func:`resolve_strategy`): spatial when the reference is a raster, and for point sets of at
least :data:`SMALL_POINT_SET` samples; random for smaller point sets (a few hundred scattered points rarely
have enough blocks for stratified spatial folds, and their neighbours are usually far apart anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from sklearn.model_selection import StratifiedKFold

from lcmodel.accuracy.split_balance import DEFAULT_TOLERANCE, balanced_test_blocks
from lcmodel.errors import ConfigError, InputDataError, InsufficientDataError

__all__ = [
    "SMALL_POINT_SET",
    "Strategy",
    "resolve_strategy",
    "grid_blocks",
    "assign_groups",
    "spatial_folds",
    "spatial_test_mask",
    "cv_splits",
]

#: Point sets (CSV references) with fewer samples than this default to random splits and random CV.
SMALL_POINT_SET = 500

Strategy = Literal["random", "spatial"]


def resolve_strategy(value: str, reference_kind: str, n_samples: int) -> Strategy:
    """``auto`` -> ``spatial`` for a raster reference or >= :data:`SMALL_POINT_SET` points, else ``random``.

    Parameters
    ----------
    value : ``auto``, ``random`` or ``spatial`` (``sampling.split`` or ``tuning.cv_strategy``).
    reference_kind : ``raster`` or ``points``.
    n_samples : rows of the training table.
    """
    if value in ("random", "spatial"):
        return value  # type: ignore[return-value]
    if value != "auto":
        raise ConfigError(f"strategy {value!r} is not known; use 'auto', 'random' or 'spatial'")
    if reference_kind == "raster" or n_samples >= SMALL_POINT_SET:
        return "spatial"
    return "random"


def grid_blocks(x: np.ndarray, y: np.ndarray, block_size: float) -> np.ndarray:
    """Block id of each point on a square grid of side ``block_size`` anchored at the CRS origin.

    Parameters
    ----------
    x, y : coordinates in a projected CRS (units of the CRS, e.g. metres).
    block_size : grid cell side, in the same units.

    Returns
    -------
    ndarray of int64
        One id per point; equal ids share a block. Ids are dense (0..n_blocks-1) in sorted cell order.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise InputDataError(f"x {xa.shape} and y {ya.shape} must be 1-D arrays of the same length")
    if not (block_size > 0 and math.isfinite(block_size)):
        raise ConfigError(
            f"block size {block_size!r} is not a positive number; set sampling.block_size or null"
        )
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise InputDataError("x/y hold NaN or infinite coordinates; drop those points first")
    cx = np.floor(xa / block_size).astype(np.int64)
    cy = np.floor(ya / block_size).astype(np.int64)
    cells = np.stack([cx, cy], axis=1)
    _, ids = np.unique(cells, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def assign_groups(
    groups: np.ndarray, labels: np.ndarray, shares: Sequence[float], *, random_state: int = 42
) -> np.ndarray:
    """Assign whole groups (blocks) to parts of given shares, balancing per-class counts (seeded greedy).

    Parameters
    ----------
    groups : group id per sample.
    labels : class per sample.
    shares : target share of each part (e.g. ``[0.2] * 5`` for 5 folds, ``[0.8, 0.2]`` for train/test);
        normalised to sum to 1.
    random_state : seed of the order among equally large groups.

    Returns
    -------
    ndarray of int64
        Part index per sample; all samples of a group get the same part, and every part gets at least one
        group.

    Raises
    ------
    InsufficientDataError
        Fewer groups than parts.
    """
    g = np.asarray(groups)
    lab = np.asarray(labels)
    if g.shape != lab.shape or g.ndim != 1:
        raise InputDataError(
            f"groups {g.shape} and labels {lab.shape} must be 1-D arrays of the same length"
        )
    w = np.asarray(shares, dtype=np.float64)
    if w.ndim != 1 or w.size < 2 or (w <= 0).any():
        raise ConfigError(f"shares {list(shares)} must be at least two positive numbers")
    w = w / w.sum()
    uniq_g, gi = np.unique(g, return_inverse=True)
    uniq_c, ci = np.unique(lab, return_inverse=True)
    n_groups, n_parts = uniq_g.size, w.size
    if n_groups < n_parts:
        raise InsufficientDataError(
            f"{n_groups} spatial block(s) for {n_parts} parts; lower sampling.block_size (or tuning.cv), "
            "or use the 'random' strategy"
        )
    counts = np.zeros((n_groups, uniq_c.size), dtype=np.float64)
    np.add.at(counts, (gi.reshape(-1), ci.reshape(-1)), 1.0)
    class_tot = counts.sum(axis=0)
    sizes = counts.sum(axis=1)
    n = float(sizes.sum())
    target = w[:, None] * class_tot[None, :]  # (parts, classes)
    target_size = w * n
    inv = 1.0 / class_tot**2
    rng = np.random.default_rng(random_state)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, random among equals
    part_counts = np.zeros_like(target)
    part_sizes = np.zeros(n_parts)
    out = np.empty(n_groups, dtype=np.int64)
    by_share = np.argsort(-w, kind="stable")
    for rank, grp in enumerate(order):
        b = counts[grp]
        if rank < n_parts:  # every part gets a group: the largest groups go to the largest parts
            best = int(by_share[rank])
        else:
            before = ((part_counts - target) ** 2 * inv).sum(axis=1) + (
                part_sizes - target_size
            ) ** 2 / n**2
            after = ((part_counts + b - target) ** 2 * inv).sum(axis=1) + (
                part_sizes + sizes[grp] - target_size
            ) ** 2 / n**2
            gain = after - before
            best = int(np.flatnonzero(gain == gain.min())[0])
        out[grp] = best
        part_counts[best] += b
        part_sizes[best] += sizes[grp]
    return out[gi.reshape(-1)]


def spatial_folds(
    x: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    n_folds: int,
    *,
    block_size: float,
    random_state: int = 42,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_folds`` spatial folds: whole blocks held out together, classes balanced as far as possible.

    Returns
    -------
    list of (train_idx, test_idx)
        Index arrays (int64, sorted); every sample is in exactly one test part.
    """
    if n_folds < 2:
        raise ConfigError(
            f"cv={n_folds} folds; cross-validation needs at least 2 folds (tuning.cv)"
        )
    blocks = grid_blocks(x, y, block_size)
    fold = assign_groups(blocks, labels, [1.0] * n_folds, random_state=random_state)
    idx = np.arange(len(fold), dtype=np.int64)
    return [(idx[fold != f], idx[fold == f]) for f in range(n_folds)]


def spatial_test_mask(
    x: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    test_size: float,
    *,
    block_size: float,
    random_state: int = 42,
    tolerance: float = DEFAULT_TOLERANCE,
) -> np.ndarray:
    """Boolean test mask of a block-wise train/test split: whole blocks, the overall and each class's test share
    within ``tolerance`` of ``test_size`` as far as blocks allow (:func:`~lcmodel.accuracy.split_balance.
    balanced_test_blocks`)."""
    if not 0.0 < float(test_size) < 1.0:
        raise ConfigError(
            f"sampling.test_size is {test_size}; it must be between 0 and 1 (e.g. 0.2)"
        )
    blocks = grid_blocks(x, y, block_size)
    return balanced_test_blocks(blocks, labels, test_size, tolerance=tolerance, random_state=random_state)


def cv_splits(
    strategy: Strategy,
    labels: np.ndarray,
    n_folds: int,
    *,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    block_size: float | None = None,
    random_state: int = 42,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The CV folds of a strategy, as ``(train_idx, test_idx)`` pairs.

    ``random`` is ``StratifiedKFold(n_folds, shuffle=False)`` (what the tuning functions use by default, so
    the scores equal GridSearchCV's); ``spatial`` is :func:`spatial_folds` (needs ``x``, ``y``,
    ``block_size``).
    """
    lab = np.asarray(labels)
    if strategy == "random":
        return [
            (np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64))
            for tr, te in StratifiedKFold(n_splits=n_folds, shuffle=False).split(
                np.zeros(lab.size), lab
            )
        ]
    if strategy == "spatial":
        if x is None or y is None or block_size is None:
            raise ConfigError("spatial CV needs the samples' x, y and a block size")
        return spatial_folds(x, y, lab, n_folds, block_size=block_size, random_state=random_state)
    raise ConfigError(f"cv strategy {strategy!r} is not known; use 'random' or 'spatial'")
