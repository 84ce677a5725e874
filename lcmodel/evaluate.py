"""Evaluation of the tuned model on the held-out test set, and the reports that go with it.

The figures describe the model tuned on the training part, scored on the test part BEFORE the final
refit on all samples (the delivered model has seen the test points, so it cannot be scored on them; the
notebook reported one model and delivered another). Reports say so in words.

Outputs (all written atomically): ``metrics.json`` (strict JSON, NaN written as null), ``report.md``,
``classification_report.txt``, ``confusion_matrix.csv``/``.png``, ``feature_importances.csv``/``.png``.
Plots use :class:`matplotlib.figure.Figure` directly (no pyplot, no global state).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
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
from lcmodel.io import atomic_path, write_json
from lcmodel.tuning import TuningResult

__all__ = [
    "evaluate_model",
    "assemble_metrics",
    "write_reports",
    "feature_importances",
    "write_feature_importances",
    "PRE_REFIT_SENTENCE",
    "cv_comparison_markdown",
    "assessment_markdown",
    "report_markdown",
]

logger = logging.getLogger(__name__)

#: The sentence every report carries about which model the test figures describe.
PRE_REFIT_SENTENCE = (
    "The test figures describe the model tuned on the training part, scored on the held-out test part "
    "before the final refit on all samples; the delivered model is that refit and has seen the test points."
)


def _label_key(value: Any) -> str:
    """Class value as a JSON key: '10' for 10 (and for 10.0), else str()."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _label_name(value: Any, class_table: ClassTable | None) -> str:
    if class_table is not None:
        try:
            return class_table.name(int(value))
        except (TypeError, ValueError):
            pass
    return _label_key(value)


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
    names = [_label_name(v, class_table) for v in labels]

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0.0
    )
    present = set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist())
    per_class: dict[str, dict[str, Any]] = {}
    for i, value in enumerate(labels):
        absent = value.item() not in present if isinstance(value, np.generic) else value not in present
        per_class[_label_key(value)] = {
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


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def report_markdown(metrics: Mapping[str, Any], notes: Sequence[str]) -> str:
    """The model report (``report.md``) from the ``metrics.json`` layout and the notes."""
    test = metrics["test"]
    cv = metrics.get("cv")
    lines = ["# Land-cover model report", "", PRE_REFIT_SENTENCE, ""]
    for note in notes:
        lines.append(f"> Note: {note}")
        lines.append("")
    lines += ["## Test set", ""]
    head = [
        ("Overall accuracy", test["overall_accuracy"]),
        ("Macro F1", test["macro_f1"]),
        ("Cohen's kappa", test["kappa"]),
        ("Test samples", test["n_test"]),
    ]
    if cv is not None:
        head.append((f"CV {cv['scoring']} ({cv['folds']}-fold, best)", cv["best_score"]))
    lines += _md_table(["Measure", "Value"], head) + [""]

    lines += ["## Per class", ""]
    rows = [
        [value, c["name"], c["precision"], c["recall"], c["f1"], c["support"]]
        for value, c in test["per_class"].items()
    ]
    lines += _md_table(["Value", "Class", "Precision (user's)", "Recall (producer's)", "F1", "Support"], rows)
    lines += [""]

    cm = test["confusion_matrix"]
    lines += ["## Confusion matrix", "", "Rows: reference class; columns: predicted class.", ""]
    header = ["reference \\ predicted", *cm["names"]]
    lines += _md_table(header, [[name, *row] for name, row in zip(cm["names"], cm["counts"], strict=True)])
    lines += [""]

    if cv is not None:
        lines += [
            "## Tuning",
            "",
            f"Method: {cv['method']}; scoring {cv['scoring']}, {cv['folds']} stratified folds; "
            f"best mean CV score {_fmt(cv['best_score'], 4)} (std {_fmt(cv['best_std'], 4)}).",
            "",
        ]
        stage_rows = []
        for s in cv.get("stages") or []:
            params = ", ".join(f"{k}={v!r}" for k, v in s.get("best_params", {}).items())
            n = s.get("n_candidates")
            if s.get("n_distinct") is not None and s["n_distinct"] != n:
                n = f"{n} ({s['n_distinct']} distinct fits)"
            if s.get("n_pruned"):
                n = f"{n} ({s['n_pruned']} pruned)"
            stage_rows.append([s.get("index"), n, params, s.get("best_score")])
        if stage_rows:
            lines += _md_table(["Stage", "Candidates", "Best parameters", "Best CV score"], stage_rows)
            lines += [""]
        if metrics.get("best_params"):
            params = ", ".join(f"{k}={v!r}" for k, v in metrics["best_params"].items())
            lines += [f"Selected parameters: {params}.", ""]

    lines += cv_comparison_markdown(metrics.get("cv_comparison"))
    if test.get("classification_report"):
        lines += ["## Classification report", "", "```", test["classification_report"].rstrip(), "```", ""]
    return "\n".join(lines)


def cv_comparison_markdown(comparison: Mapping[str, Any] | None) -> list[str]:
    """Report lines: random-CV and spatial-CV scores of the selected parameters, side by side."""
    if not comparison:
        return []
    lines = [
        "## Random vs spatial cross-validation",
        "",
        f"The selected parameters scored ({comparison.get('scoring')}, {comparison.get('folds')} folds of the "
        "training part) with random stratified folds and with spatial-block folds. Neighbouring pixels are "
        "alike, so random CV is optimistic; the gap is that optimism (Ploton et al. 2020).",
        "",
    ]
    rows: list[list[Any]] = []
    for name, label in (("random", "Random CV (stratified k-fold)"), ("spatial", "Spatial CV (blocks)")):
        r = comparison.get(name) or {}
        if "error" in r:
            rows.append([label, "n/a", "n/a", f"not computed: {r['error']}"])
        else:
            detail = f"block size {r['block_size']:.4g}" if r.get("block_size") else ""
            rows.append([label, r.get("mean"), r.get("std"), detail])
    lines += _md_table(["Strategy", "Mean score", "Std", "Notes"], rows)
    if comparison.get("optimism") is not None:
        lines += ["", f"Optimism of random CV: {_fmt(comparison['optimism'], 4)} (random minus spatial)."]
    return lines + [""]


def assessment_markdown(result: Mapping[str, Any], heading: str) -> str:
    """Report section of an area-adjusted assessment (:func:`lcmodel.accuracy.stratified_estimates` + design)."""
    lines = [heading, ""]
    lines += [f"> {line}" for line in result.get("design", [])] + [""]
    if not result.get("computed", True):
        lines += [f"Not computed: {result.get('reason')}", ""]
        return "\n".join(lines)
    z = result.get("z", 1.96)
    lines += [
        f"Overall accuracy {_fmt(result['overall_accuracy'], 4)} +/- {_fmt(result['overall_accuracy_ci95'], 4)} "
        f"(95 % CI, z = {z}), from {result['n_samples']} test points; the error matrix is in area proportions.",
        "",
    ]
    names = result.get("class_names", {})
    ha = result.get("pixel_area_m2") is not None
    header = ["Class", "Map share", "n", "User's", "+/- 95 %", "Producer's", "+/- 95 %",
              "Area (ha)" if ha else "Area (px)", "+/- 95 %", "Map area (ha)" if ha else "Map area (px)"]
    rows = []
    for key, c in result["per_class"].items():
        rows.append([
            names.get(key, key), c["map_proportion"], c["n_samples"], c["users_accuracy"], c["users_ci95"],
            c["producers_accuracy"], c["producers_ci95"],
            _fmt(c["area_ha"] if ha else c["area_pixels"], 1),
            _fmt(c["area_ha_ci95"] if ha else c["area_pixels_ci95"], 1),
            _fmt(c["map_area_ha"] if ha else c["map_pixels"], 1),
        ])
    lines += _md_table(header, rows) + [""]
    return "\n".join(lines)


def _confusion_figure(names: Sequence[str], counts: np.ndarray) -> Any:
    from matplotlib.figure import Figure

    n = len(names)
    size = max(4.0, 0.6 * n + 2.5)
    fig = Figure(figsize=(size, size), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(n), labels=list(names), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=list(names))
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("Reference class")
    ax.set_title("Confusion matrix (test set, counts)")
    peak = counts.max() if counts.size else 0
    for i in range(n):
        for j in range(n):
            dark = peak > 0 and counts[i, j] > peak / 2
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center",
                    color="white" if dark else "black", fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def _save_figure(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_reports(
    metrics: Mapping[str, Any],
    out_dir: Path | str,
    *,
    class_table: ClassTable | None = None,
    tuning: TuningResult | Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    markdown: bool = True,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md``, ``classification_report.txt`` and the confusion matrix.

    Parameters
    ----------
    metrics : the output of :func:`evaluate_model`, or of :func:`assemble_metrics`.
    out_dir : output folder (created if needed).
    class_table : fills in class names that ``metrics`` lacks (names equal to the value).
    tuning : merged into ``metrics.json`` as ``cv`` and ``best_params`` (see :func:`assemble_metrics`).
    notes : lines added to the report (e.g. what the reference data can and cannot measure).
    markdown : also write ``report.md`` (the pipeline's ``report`` stage writes it itself, with the assessment).

    Returns
    -------
    dict
        ``metrics``, ``report``, ``classification_report``, ``confusion_matrix_csv``,
        ``confusion_matrix_png`` -> path.
    """
    out = Path(out_dir)
    if "test" in metrics:
        full = dict(metrics)
        if tuning is not None:
            full.update({k: v for k, v in assemble_metrics({}, tuning).items() if k != "test"})
    else:
        full = assemble_metrics(metrics, tuning)
    full.setdefault("cv", None)
    full.setdefault("best_params", None)
    if notes:
        full["notes"] = list(notes)
    test = dict(full["test"])
    cm = dict(test["confusion_matrix"])
    if class_table is not None:
        # names still equal to the bare value get the table's names
        cm["names"] = [
            _label_name(v, class_table) if str(n) == _label_key(v) else n
            for v, n in zip(cm["labels"], cm["names"], strict=True)
        ]
        test["per_class"] = {
            k: {**c, "name": _label_name(k, class_table) if str(c["name"]) == k else c["name"]}
            for k, c in test["per_class"].items()
        }
    test["confusion_matrix"] = cm
    full["test"] = test

    paths: dict[str, Path] = {}
    paths["metrics"] = write_json(full, out / "metrics.json")
    if markdown:
        paths["report"] = out / "report.md"
        with atomic_path(paths["report"]) as tmp:
            tmp.write_text(report_markdown(full, notes) + "\n", encoding="utf-8")
    if test.get("classification_report"):
        paths["classification_report"] = out / "classification_report.txt"
        with atomic_path(paths["classification_report"]) as tmp:
            tmp.write_text(test["classification_report"], encoding="utf-8")
    counts = np.asarray(cm["counts"], dtype=np.int64).reshape(len(cm["names"]), len(cm["names"]))
    paths["confusion_matrix_csv"] = out / "confusion_matrix.csv"
    frame = pd.DataFrame(counts, index=pd.Index(cm["names"], name="reference"), columns=cm["names"])
    with atomic_path(paths["confusion_matrix_csv"]) as tmp:
        frame.to_csv(tmp)
    paths["confusion_matrix_png"] = _save_figure(
        _confusion_figure(cm["names"], counts), out / "confusion_matrix.png"
    )
    logger.info("reports written to %s", out)
    return paths


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


def write_feature_importances(df: pd.DataFrame, out_dir: Path | str) -> dict[str, Path]:
    """Write ``feature_importances.csv`` and a horizontal bar chart ``feature_importances.png``.

    Returns
    -------
    dict
        ``csv`` and ``png`` -> path.
    """
    from matplotlib.figure import Figure

    out = Path(out_dir)
    csv_path = out / "feature_importances.csv"
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    n = len(df)
    fig = Figure(figsize=(6.0, max(3.0, 0.18 * n + 1.2)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    order = df.iloc[::-1]
    # the spread across trees stays in the CSV: single trees vary too much for readable error bars
    ax.barh(order["band"].astype(str), order["importance"], color="#4c72b0")
    ax.margins(y=0.01)
    ax.set_xlabel("Mean decrease in impurity")
    ax.set_title("Band importance")
    ax.tick_params(axis="y", labelsize=7)
    png_path = _save_figure(fig, out / "feature_importances.png")
    return {"csv": csv_path, "png": png_path}
