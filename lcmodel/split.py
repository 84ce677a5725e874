"""The train/test split of the modelling table: stratified random, or whole spatial blocks in the test part.

The split adds the training table's ``split`` column (``train`` / ``test``; the table is :mod:`lcmodel.dataset`).
A class too small for a stratified split raises an error that names it and the fix, before scikit-learn trips
on it. :func:`split_summary` says how near the test part came to ``test_size`` overall and per class
(:func:`lcmodel.accuracy.split_balance.split_shares`), for either strategy.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from lcmodel.accuracy.split_balance import DEFAULT_TOLERANCE, split_shares
from lcmodel.dataset import require_columns
from lcmodel.errors import ConfigError, DataWarning, InsufficientDataError

__all__ = ["split_train_test", "split_summary", "split_meeting_shares", "REFINE_FACTORS"]


def split_train_test(
    df: pd.DataFrame,
    test_size: float,
    *,
    random_state: int = 42,
    class_column: str = "value",
    strategy: str = "random",
    block_size: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> pd.DataFrame:
    """Stratified train/test split; adds a ``split`` column (``train`` / ``test``) after ``value``.

    The same draw as the notebook's ``train_test_split(X, y, test_size, random_state, stratify=y)``; rows
    keep their order. Before calling scikit-learn every class is checked to get at least one row in each
    part: with ``n_test = ceil(test_size * n)``, a class of c rows needs ``c * n_test >= n`` and
    ``c * (n - n_test) >= n`` (and c >= 2).

    Parameters
    ----------
    df : DataFrame
        Samples.
    test_size : float
        Fraction in the test part (``sampling.test_size``), strictly between 0 and 1.
    random_state : int, default 42
        Seed of the split.
    class_column : str, default "value"
        Column to stratify on.
    strategy : {"random", "spatial"}, default "random"
        ``spatial``: whole blocks of side ``block_size`` (grid in the x/y CRS) go to the test part, chosen by
        :func:`lcmodel.accuracy.spatial_test_mask` so that the overall and each class's test
        share are within ``tolerance`` of ``test_size`` as far as whole blocks allow.
    block_size : float, optional
        Block side for ``spatial`` (e.g. from :func:`lcmodel.accuracy.auto_block_size`).
    tolerance : float, default 0.05
        Allowed deviation of the spatial split's shares (``sampling.split_tolerance``).

    Returns
    -------
    DataFrame
        A copy of ``df`` (fresh RangeIndex) with the ``split`` column.

    Raises
    ------
    InsufficientDataError
        Fewer than 2 classes, or a class too small to have a row in both parts; the message names the class,
        its count and the fix.
    """
    if not 0.0 < float(test_size) < 1.0:
        raise ConfigError(f"sampling.test_size is {test_size}; it must be between 0 and 1 (e.g. 0.2)")
    require_columns(df, [class_column], "samples table", "give the table's class column as class_column")
    n = len(df)
    counts = df[class_column].value_counts()
    if len(counts) < 2:
        raise InsufficientDataError(
            f"a train/test split needs at least 2 classes, got {len(counts)} ({list(counts.index)} in {n} rows); "
            "use reference data with more classes or lower sampling.min_class_fraction"
        )
    if strategy == "spatial":
        return _split_spatial(df, test_size, random_state, class_column, block_size, tolerance)
    if strategy != "random":
        raise ConfigError(f"sampling.split {strategy!r} is not known; use 'random' or 'spatial'")
    n_test = math.ceil(float(test_size) * n)
    n_train = n - n_test
    need = max(2, math.ceil(n / n_test), math.ceil(n / n_train) if n_train > 0 else n + 1)
    small = counts[counts < need]
    if len(small):
        cls = small.index[-1]  # the smallest class
        others = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
        raise InsufficientDataError(
            f"class {class_column}={cls} has {int(small[cls])} sample(s){others}; a stratified split with "
            f"sampling.test_size={test_size:g} of {n} rows needs at least {need} per class; raise "
            "sampling.n_sample / reference.n_points to get more, or raise sampling.min_class_fraction to drop it"
        )
    y = df[class_column].to_numpy()
    _, test_idx = train_test_split(
        np.arange(n), test_size=test_size, random_state=random_state, stratify=y
    )
    split = np.full(n, "train", dtype=object)
    split[test_idx] = "test"
    return _with_split_column(df, split)


def _split_spatial(
    df: pd.DataFrame, test_size: float, random_state: int, class_column: str, block_size: float | None,
    tolerance: float,
) -> pd.DataFrame:
    """The spatial branch of :func:`split_train_test`: whole blocks in the test part."""
    from lcmodel.accuracy import spatial_test_mask

    if block_size is None:
        raise ConfigError("a spatial split needs a block size; set sampling.block_size or let the pipeline choose")
    require_columns(df, ["x", "y"], "samples table", "spatial splits need the x/y columns")
    labels = df[class_column].to_numpy()
    test = spatial_test_mask(df["x"].to_numpy(), df["y"].to_numpy(), labels, test_size, block_size=block_size,
                             random_state=random_state, tolerance=tolerance)
    one_sided = sorted(
        {c.item() if isinstance(c, np.generic) else c for c in np.unique(labels)}
        - ({*np.unique(labels[test]).tolist()} & {*np.unique(labels[~test]).tolist()})
    )
    if one_sided:
        warnings.warn(
            f"spatial split (blocks of {block_size:g}): {class_column} {one_sided} fall only in the train or only "
            "in the test part; lower sampling.block_size or use sampling.split: random",
            DataWarning,
            stacklevel=3,
        )
    split = np.where(test, "test", "train").astype(object)
    return _with_split_column(df, split)


#: Block sides tried for the test split, as fractions of an AUTOMATIC block size (the label variogram's range),
#: while whole blocks cannot meet the shares within the tolerance (Zion: 12 blocks of 15 km missed them; blocks of
#: 3/4 of that met them). A configured ``sampling.block_size`` is used as given.
REFINE_FACTORS = (1.0, 0.75, 0.5)


def split_meeting_shares(
    df: pd.DataFrame, test_size: float, *, strategy: str, block_size: float | None, tolerance: float,
    random_state: int, refine: bool,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`split_train_test` and its :func:`split_summary`; with ``refine`` (an automatic block size), a
    spatial split that misses the tolerance is drawn again on smaller blocks (:data:`REFINE_FACTORS`), and the
    first that meets it is kept (else the full size). The summary's ``block_size`` is the side used and
    ``block_size_refined_from`` the automatic one when it was made smaller."""
    factors = REFINE_FACTORS if refine and strategy == "spatial" and block_size is not None else (1.0,)
    first: tuple[pd.DataFrame, dict[str, Any], list[warnings.WarningMessage]] | None = None
    for factor in factors:
        side = None if block_size is None else block_size * factor
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = split_train_test(df, test_size, random_state=random_state, strategy=strategy, block_size=side,
                                   tolerance=tolerance)
        summary = {**split_summary(out, test_size, strategy=strategy, block_size=side, tolerance=tolerance),
                   "block_size": side}
        if factor != 1.0:
            summary["block_size_refined_from"] = block_size
        first = first or (out, summary, caught)
        if summary["met"]:
            break
    else:  # none met the tolerance: the full (automatic) size, and why
        assert first is not None
        out, summary, caught = first
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out, summary


def split_summary(
    df: pd.DataFrame, test_size: float, *, strategy: str, block_size: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE, class_column: str = "value",
) -> dict[str, Any]:
    """The test shares of a split table (its ``split`` column) against ``test_size``, overall and per class.

    See :func:`lcmodel.accuracy.split_balance.split_shares`; for a spatial split the blocks of side
    ``block_size`` say why a share could not be met.
    """
    from lcmodel.accuracy import grid_blocks

    require_columns(df, [class_column, "split"], "training table", "split the table first (split_train_test)")
    blocks = None
    if strategy == "spatial" and block_size is not None:
        blocks = grid_blocks(df["x"].to_numpy(), df["y"].to_numpy(), block_size)
    return split_shares(df[class_column].to_numpy(), (df["split"] == "test").to_numpy(), test_size,
                        strategy=strategy, tolerance=tolerance, blocks=blocks)


def _with_split_column(df: pd.DataFrame, split: np.ndarray) -> pd.DataFrame:
    """A copy of ``df`` (fresh RangeIndex) with ``split`` (``train`` / ``test`` per row) after ``value``."""
    out = df.drop(columns=["split"], errors="ignore").reset_index(drop=True)
    position = list(out.columns).index("value") + 1 if "value" in out.columns else len(out.columns)
    out.insert(position, "split", pd.Series(split, dtype="str"))
    return out
