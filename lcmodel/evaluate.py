"""Scoring the tuned model on the held-out test set: the metrics, the ``metrics.json`` layout, band importances.

The figures describe the model tuned on the training part, scored on the test part BEFORE the final
refit on all samples (the delivered model has seen the test points, so it cannot be scored on them; the
notebook reported one model and delivered another). The reports say so in words (:mod:`lcmodel.report`
writes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from lcmodel.classes import ClassTable
from lcmodel.errors import InputDataError
from lcmodel.tuning import TuningResult

__all__ = [
    "evaluate_model",
    "assemble_metrics",
    "feature_importances",
    "label_key",
    "label_name",
]


def label_key(value: Any) -> str:
    """Class value as a JSON key: '10' for 10 (and for 10.0), else str()."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def label_name(value: Any, class_table: ClassTable | None) -> str:
    """Class value as a display name: the class table's name when it has one, else :func:`label_key`."""
    if class_table is not None:
        try:
            return class_table.name(int(value))
        except (TypeError, ValueError):
            pass
    return label_key(value)


def evaluate_model(
    estimator: Any, X_test: Any, y_test: Any, class_table: ClassTable | None = None
) -> dict[str, Any]:
    """Score a fitted classifier on the held-out test set.

    Parameters
    ----------
    estimator : fitted classifier (``predict``; ``classes_`` when it has them).
    X_test : array-like (samples, bands).
    y_test : array-like (samples,) of class values.
    class_table : names of the class values (else the values are the names).

    Returns
    -------
    dict
        ``overall_accuracy``, ``macro_f1`` (sklearn's ``f1_score(average="macro")``: over the classes in
        ``y_test`` or predicted), ``kappa`` (Cohen's), ``n_test``, ``per_class`` (class value as a string ->
        ``name, precision, recall, f1, support``), ``confusion_matrix`` (``labels``, ``names``, ``counts``:
        rows = reference, columns = predicted) and ``classification_report`` (sklearn's text). Labels are
        the model's classes plus any other value in ``y_test`` or the predictions, sorted. A class with no
        test sample that is never predicted has precision/recall/F1 ``None``; otherwise an undefined ratio
        (never predicted, or no support) is 0, as sklearn reports it.

    Raises
    ------
    InputDataError
        Empty test set, or X_test and y_test of different lengths.
    """
    y_true = np.asarray(y_test)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise InputDataError(
            f"y_test has shape {y_true.shape}; evaluation needs a non-empty 1-D array of class values "
            "(raise sampling.test_size)"
        )
    if len(X_test) != len(y_true):
        raise InputDataError(
            f"X_test has {len(X_test)} rows but y_test has {len(y_true)}; give one label per row"
        )
    y_pred = np.asarray(estimator.predict(X_test))
    known = list(getattr(estimator, "classes_", []))
    labels = np.unique(np.concatenate([np.asarray(known, dtype=y_true.dtype), y_true, y_pred]))
    names = [label_name(v, class_table) for v in labels]

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0.0
    )
    present = set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist())
    per_class: dict[str, dict[str, Any]] = {}
    for i, value in enumerate(labels):
        absent = value.item() not in present if isinstance(value, np.generic) else value not in present
        per_class[label_key(value)] = {
            "name": names[i],
            "precision": None if absent else float(precision[i]),
            "recall": None if absent else float(recall[i]),
            "f1": None if absent else float(f1[i]),
            "support": int(support[i]),
        }
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=names, zero_division=0.0, digits=3
    )
    return {
        "overall_accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0.0)),
        "kappa": float(cohen_kappa_score(y_true, y_pred)),
        "n_test": int(len(y_true)),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": [_json_label(v) for v in labels],
            "names": names,
            "counts": counts.astype(int).tolist(),
        },
        "classification_report": report,
    }


def _json_label(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _summary_from_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A tuning summary read back from JSON: this module's ``cv`` layout or ``TuningResult`` field names."""
    return {
        "method": data.get("method"),
        "scoring": data.get("scoring"),
        "folds": data.get("folds", data.get("cv")),
        "best_score": data.get("best_score"),
        "best_std": data.get("best_std"),
        "n_candidates": data.get("n_candidates"),
        "n_fits": data.get("n_fits"),
        "elapsed_s": data.get("elapsed_s"),
        "stages": list(data.get("stages") or []),
    }


def assemble_metrics(
    test_metrics: Mapping[str, Any], tuning: TuningResult | Mapping[str, Any] | None
) -> dict[str, Any]:
    """Put the test metrics and the tuning summary together in the ``metrics.json`` layout.

    Parameters
    ----------
    test_metrics : the output of :func:`evaluate_model`.
    tuning : a :class:`~lcmodel.tuning.TuningResult`, or a summary of one read back from JSON (a mapping
        with ``method, scoring, cv`` (or ``folds``), ``best_score, best_std, best_params`` and optionally
        ``stages``), or None.

    Returns
    -------
    dict
        ``{"test": test_metrics, "cv": {method, scoring, folds, best_score, best_std, n_candidates, n_fits,
        elapsed_s, stages: [{index, grid, best_params, best_score, n_candidates, n_distinct|n_pruned}]},
        "best_params": {...}}``; ``cv`` and ``best_params`` are ``None`` without a tuning result.
    """
    if tuning is None:
        cv, best = None, None
    elif isinstance(tuning, TuningResult):
        cv, best = _summary_from_mapping(tuning.summary()), dict(tuning.best_params)
    else:
        cv = _summary_from_mapping(tuning)
        best = dict(tuning["best_params"]) if tuning.get("best_params") is not None else None
    return {"test": dict(test_metrics), "cv": cv, "best_params": best}


def feature_importances(estimator: Any, band_names: Sequence[str]) -> pd.DataFrame:
    """Mean-decrease-in-impurity importance of each band, largest first.

    Parameters
    ----------
    estimator : fitted forest (``feature_importances_``; ``estimators_`` for the spread across trees).
    band_names : one name per feature, in the order the model was fitted on.

    Returns
    -------
    pandas.DataFrame
        Columns ``band``, ``importance`` (sums to 1), ``std`` (across trees, NaN when unknown) and ``rank``
        (1 = most important).

    Raises
    ------
    InputDataError
        The number of band names differs from the model's number of features.
    """
    importances = np.asarray(estimator.feature_importances_, dtype=np.float64)
    names = [str(b) for b in band_names]
    if len(names) != len(importances):
        raise InputDataError(
            f"{len(names)} band names for a model of {len(importances)} features; give the band names "
            "the model was fitted on"
        )
    trees = getattr(estimator, "estimators_", None)
    if trees:
        std = np.std([t.feature_importances_ for t in trees], axis=0)
    else:
        std = np.full(len(names), np.nan)
    df = pd.DataFrame({"band": names, "importance": importances, "std": std})
    df = df.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    return df
