"""Cleaner labels: training on pure reference pixels only, while the test part keeps its design.

With ``sampling.purity_window`` the raster reference's points carry a ``pure`` flag (their whole window holds
one class: :mod:`lcmodel.reference.purity`). The points drawn, the subsample and the train/test split are the
same as without it; then the impure points leave the TRAINING part only. So the test part (and the
area-adjusted assessment built on it) is the same sample of the reference, with its class edges, as in a run
without purity, and test figures with and without purity compare on the same points. ``sampling.purity_test:
true`` filters the test part too (its figures then describe pure pixels only, an optimistic design).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from lcmodel.errors import InputDataError
from lcmodel.reference.purity import PURE_COLUMN

__all__ = ["apply_purity", "purity_note"]

log = logging.getLogger(__name__)


def apply_purity(df: pd.DataFrame, window: int | None, *, test_too: bool = False, min_per_class: int = 0
                 ) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Drop the impure training rows (and test rows with ``test_too``) of a split table; what was done.

    Parameters
    ----------
    df : a table with ``split`` and, when ``window`` is set, the bool column ``pure``.
    window : the purity window (3 or 5), or None (the table is returned as it is, with no record).
    test_too : filter the test part as well.
    min_per_class : a class with fewer pure training points than this keeps its impure ones too (a small
        class is mostly edge: filtering it would leave too few points to tune on); named in the record.

    Raises
    ------
    InputDataError
        ``window`` is set but the table has no purity flags (a points file reference), or no pure training
        row is left.
    """
    if window is None:
        return df.drop(columns=[PURE_COLUMN], errors="ignore"), None
    if PURE_COLUMN not in df.columns:
        raise InputDataError(f"sampling.purity_window {window} needs the purity flags of a raster reference's "
                             "points, which this table lacks; use a class raster as reference.path or set "
                             "sampling.purity_window: null")
    pure = df[PURE_COLUMN].astype(bool)
    train, test = df["split"] == "train", df["split"] == "test"
    drop = train & ~pure
    pure_train = df.loc[train & pure, "value"].value_counts()
    spared = sorted(int(v) for v in df.loc[train, "value"].unique() if pure_train.get(v, 0) < min_per_class)
    drop &= ~df["value"].isin(spared)
    if test_too:
        drop |= test & ~pure
    if not (train & ~drop).any():
        raise InputDataError(f"no training point is pure in a {window}x{window} window ({int(train.sum())} training "
                             "points all sit on class edges); use sampling.purity_window: 3 or null")
    info = {
        "window": window,
        "test_filtered": test_too,
        "train_points": int(train.sum()),
        "train_dropped": int((drop & train).sum()),
        "test_points": int(test.sum()),
        "test_impure": int((test & ~pure).sum()),
        "test_dropped": int((drop & test).sum()),
        "train_dropped_by_class": {str(int(v)): int(n) for v, n in
                                   df.loc[drop & train, "value"].value_counts().sort_index().items()},
        "classes_kept_whole": spared,
        "min_per_class": min_per_class,
    }
    log.info("purity %dx%d: %d of %d training points dropped (on class edges); test part %s", window, window,
             info["train_dropped"], info["train_points"], "filtered too" if test_too else "kept whole")
    out = df.loc[~drop].drop(columns=[PURE_COLUMN]).reset_index(drop=True)
    return out, info


def purity_note(info: dict[str, Any]) -> str:
    """One sentence for the report: what the purity filter did and which design the test figures follow."""
    w = info["window"]
    head = (f"Cleaner labels: {info['train_dropped']} of {info['train_points']} training points were dropped "
            f"because their {w}x{w} reference window holds more than one class (class edges); the model and "
            "its CV scores see pure points only.")
    if info.get("classes_kept_whole"):
        head += (f" Classes {info['classes_kept_whole']} have fewer than {info['min_per_class']} pure training "
                 "points and kept all theirs, edges included.")
    if info["test_filtered"]:
        return head + (f" The test part was filtered the same way ({info['test_dropped']} of "
                       f"{info['test_points']} dropped, sampling.purity_test: true): its figures describe pure "
                       "pixels only and are optimistic for the map, whose edges are not pure.")
    return head + (f" The test part is NOT filtered: it is the same sample as without purity, class edges "
                   f"included ({info['test_impure']} of its {info['test_points']} points are impure), so "
                   "test figures and the area-adjusted assessment describe the whole map.")
