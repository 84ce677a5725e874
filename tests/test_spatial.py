"""Spatial blocks and folds: no block in two folds, every sample assigned, a block size that follows the data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from lcmodel.accuracy import (
    assign_groups,
    auto_block_size,
    cv_splits,
    grid_blocks,
    resolve_strategy,
    spatial_folds,
    spatial_test_mask,
)
from lcmodel.errors import InsufficientDataError


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(20, 300),
    n_folds=st.integers(2, 6),
    n_classes=st.integers(1, 5),
    block=st.floats(5.0, 200.0),
    seed=st.integers(0, 10_000),
)
def test_spatial_folds_never_split_a_block(
    n: int, n_folds: int, n_classes: int, block: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-500, 500, n)
    y = rng.uniform(1e6, 1e6 + 1000, n)
    labels = rng.integers(0, n_classes, n)
    blocks = grid_blocks(x, y, block)
    if np.unique(blocks).size < n_folds:
        with pytest.raises(InsufficientDataError, match="spatial block"):
            spatial_folds(x, y, labels, n_folds, block_size=block, random_state=seed)
        return
    folds = spatial_folds(x, y, labels, n_folds, block_size=block, random_state=seed)
    assert len(folds) == n_folds
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(n))  # every sample in exactly one test part
    fold_of = np.empty(n, dtype=int)
    for f, (tr, te) in enumerate(folds):
        assert te.size > 0
        assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(n))
        fold_of[te] = f
    for b in np.unique(blocks):
        assert np.unique(fold_of[blocks == b]).size == 1  # no block in two folds


def test_folds_are_seeded_and_balance_classes() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 10_000, 4000), rng.uniform(0, 10_000, 4000)
    labels = (x > 6000).astype(int) + (y > 8000)
    a = spatial_folds(x, y, labels, 5, block_size=500.0, random_state=3)
    b = spatial_folds(x, y, labels, 5, block_size=500.0, random_state=3)
    assert all(np.array_equal(t1, t2) for (_, t1), (_, t2) in zip(a, b, strict=True))
    for _, te in a:
        share = np.bincount(labels[te], minlength=3) / np.bincount(labels, minlength=3)
        assert np.all(np.abs(share - 0.2) < 0.05)


def test_spatial_test_mask_takes_whole_blocks_near_the_share() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 5000, 2000), rng.uniform(0, 5000, 2000)
    labels = rng.integers(0, 3, 2000)
    test = spatial_test_mask(x, y, labels, 0.2, block_size=250.0, random_state=0)
    blocks = grid_blocks(x, y, 250.0)
    for b in np.unique(blocks):
        assert np.unique(test[blocks == b]).size == 1
    assert abs(test.mean() - 0.2) < 0.03


def test_assign_groups_needs_enough_groups() -> None:
    with pytest.raises(InsufficientDataError, match="2 spatial block"):
        assign_groups(np.array([0, 0, 1]), np.array([1, 2, 1]), [1, 1, 1])


def _field_points(sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.standard_normal((300, 300)), sigma)
    labels = (f > np.quantile(f, 0.5)).astype(int) + (f > np.quantile(f, 0.85))
    r, c = rng.integers(0, 300, 2500), rng.integers(0, 300, 2500)
    return c * 10.0 + 5, -(r * 10.0 + 5), labels[r, c]


def test_auto_block_size_grows_with_the_correlation_length() -> None:
    sizes = [auto_block_size(*_field_points(s), n_folds=5).block_size for s in (1.5, 4.0, 10.0)]
    assert sizes[0] < sizes[1] < sizes[2]
    # a Gaussian-smoothed field decorrelates within a few sigma (10 m pixels)
    assert 10 < sizes[0] < 150 and 150 < sizes[2] < 800


def test_auto_block_size_keeps_enough_blocks_for_the_folds() -> None:
    x, y, labels = _field_points(40.0)
    est = auto_block_size(x, y, labels, n_folds=5)
    assert est.n_blocks >= 10
    assert est.sill == pytest.approx(1 - np.sum((np.bincount(labels) / labels.size) ** 2))


def test_random_cv_splits_equal_stratified_kfold() -> None:
    from sklearn.model_selection import StratifiedKFold

    labels = np.repeat([1, 2, 3], 20)
    ours = cv_splits("random", labels, 4)
    theirs = list(StratifiedKFold(4).split(np.zeros(60), labels))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(ours, theirs, strict=True))


def test_default_strategy_rule() -> None:
    assert resolve_strategy("auto", "raster", 50) == "spatial"
    assert resolve_strategy("auto", "points", 499) == "random"
    assert resolve_strategy("auto", "points", 500) == "spatial"
    assert resolve_strategy("random", "raster", 5000) == "random"
