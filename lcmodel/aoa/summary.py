"""The run's area-of-applicability figures: the folds of the training DI, the test points' accuracy inside and
outside the AOA, and the summary (``aoa.json``) that the report and MLflow show.

The final model is fitted on every row of the training table (train and test parts), so its training DI is
taken over all of them, with the folds the run used: each training-part row in its CV fold of the tuning
(:func:`lcmodel.accuracy.cv_splits`: spatial blocks or ``StratifiedKFold``, as ``tune`` made them) and the
held-out test part as one more fold. A test point's DI is therefore its distance to the nearest training-part
sample, i.e. to the data of the model that predicted it in ``evaluate``, which is what its inside / outside
accuracy needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lcmodel.aoa.di import TrainingDI
from lcmodel.aoa.raster import AoaCounts
from lcmodel.errors import InputDataError

__all__ = ["fold_ids", "test_accuracy_by_aoa", "applicability_summary"]


def fold_ids(table: pd.DataFrame, strategy: str, n_folds: int, block_size: float | None, random_state: int
             ) -> np.ndarray:
    """The fold of every row of the training table: the tuning's CV fold for ``train`` rows, ``n_folds`` for
    the ``test`` rows (one fold more).

    Parameters
    ----------
    table : the training table (``x``, ``y``, ``value``, ``split``).
    strategy : ``spatial`` or ``random`` (``spatial_blocks.json``'s ``cv_strategy``).
    n_folds : ``tuning.cv``.
    block_size : the spatial blocks' side (``spatial_blocks.json``), for ``spatial``.
    random_state : ``sampling.random_state`` (what the tuning's folds were drawn with).
    """
    from lcmodel.accuracy import cv_splits

    split = table["split"].to_numpy()
    train_rows = np.flatnonzero(split == "train")
    train = table.iloc[train_rows]
    folds = cv_splits(strategy, train["value"].to_numpy(), n_folds, x=train["x"].to_numpy(),  # type: ignore[arg-type]
                      y=train["y"].to_numpy(), block_size=block_size, random_state=random_state)
    out = np.full(len(table), n_folds, dtype=np.int64)
    for k, (_, held_out) in enumerate(folds):
        out[train_rows[held_out]] = k
    return out


def test_accuracy_by_aoa(table: pd.DataFrame, training: TrainingDI, test_predictions: pd.DataFrame
                         ) -> dict[str, Any]:
    """Overall accuracy of the test points inside and outside the AOA (their DI to the training part).

    Raises
    ------
    InputDataError
        The test predictions are not those of the table's test rows (other count or coordinates).
    """
    test_rows = np.flatnonzero(table["split"].to_numpy() == "test")
    if len(test_rows) != len(test_predictions) or not (
        np.array_equal(table["x"].to_numpy()[test_rows], test_predictions["x"].to_numpy())
        and np.array_equal(table["y"].to_numpy()[test_rows], test_predictions["y"].to_numpy())
    ):
        raise InputDataError(f"the {len(test_predictions)} test predictions are not those of the "
                             f"{len(test_rows)} test rows of the training table; rerun the evaluate stage")
    inside = training.train_di[test_rows] <= training.threshold
    correct = test_predictions["reference"].to_numpy() == test_predictions["predicted"].to_numpy()
    out: dict[str, Any] = {}
    for name, part in (("inside", inside), ("outside", ~inside)):
        n = int(part.sum())
        out[name] = {"n_test_points": n, "overall_accuracy": float(correct[part].mean()) if n else None}
    return out


def applicability_summary(training: TrainingDI, counts: AoaCounts, class_names: dict[int, str],
                          test_accuracy: dict[str, Any] | None) -> dict[str, Any]:
    """``aoa.json``: the fit, the share of the map outside the AOA overall and per predicted class, and the
    test points' accuracy inside vs outside."""
    n = counts.n_pixels
    per_class = {
        str(v): {"name": class_names.get(v, str(v)), "pixels": counts.pixels[v],
                 "outside": counts.outside.get(v, 0),
                 "outside_fraction": counts.outside.get(v, 0) / counts.pixels[v]}
        for v in sorted(counts.pixels)
    }
    return {
        "computed": True,
        "method": "Meyer & Pebesma 2021 (CAST trainDI / aoa): DI = distance to the nearest training sample / mean "
                  "distance between training samples, in the training-standardised feature space weighted by the "
                  "final model's feature importances; threshold = upper whisker of the training DI to other CV "
                  "folds (the test part is one more fold)",
        **training.summary(),
        "n_pixels": n,
        "n_outside": counts.n_outside,
        "outside_fraction": counts.n_outside / n if n else None,
        "per_class": per_class,
        "test_accuracy": test_accuracy,
    }
