"""The model report and its files: ``report.md`` from the ``metrics.json`` layout, and the written reports.

Outputs (all written atomically): ``metrics.json`` (strict JSON, NaN written as null), ``report.md``,
``classification_report.txt``, ``confusion_matrix.csv``/``.png``, ``feature_importances.csv``/``.png``.
Plots use :class:`matplotlib.figure.Figure` directly (no pyplot, no global state). Every report says which
model its test figures describe (:data:`PRE_REFIT_SENTENCE`); the figures come from :mod:`lcmodel.evaluate`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.classes import ClassTable
from lcmodel.evaluate import assemble_metrics, label_key, label_name
from lcmodel.io import atomic_path, write_json
from lcmodel.markdown import fmt as _fmt
from lcmodel.markdown import md_table as _md_table
from lcmodel.report_assessment import assessment_markdown, cluster_markdown, not_assessed_markdown
from lcmodel.tuning import TuningResult

__all__ = [
    "write_reports",
    "write_feature_importances",
    "PRE_REFIT_SENTENCE",
    "cv_comparison_markdown",
    "split_markdown",
    "assessment_markdown",
    "cluster_markdown",
    "not_assessed_markdown",
    "report_markdown",
]

logger = logging.getLogger(__name__)

#: The sentence every report carries about which model the test figures describe.
PRE_REFIT_SENTENCE = (
    "The test figures describe the model tuned on the training part, scored on the held-out test part "
    "before the final refit on all samples; the delivered model is that refit and has seen the test points."
)


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
    lines += split_markdown((metrics.get("split") or {}).get("summary"), test.get("per_class") or {})

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


def split_markdown(summary: Mapping[str, Any] | None, per_class: Mapping[str, Any]) -> list[str]:
    """Report lines: the test part's overall and per-class shares against ``sampling.test_size`` (the ``split``
    summary of :func:`lcmodel.split.split_summary`), met or not, and by how much and why where not."""
    if not summary:
        return []
    design = "a stratified random draw"
    if summary["strategy"] == "spatial":
        design = "whole spatial blocks"
        if summary.get("block_size"):
            design += f" of {summary['block_size']:.4g} CRS units"
        if summary.get("block_size_refined_from"):
            design += (f" (the automatic {summary['block_size_refined_from']:.4g} gave too few blocks to meet the "
                       "shares; the CV folds keep it)")
    blocks = (f", {summary['n_test_blocks']} of {summary['n_blocks']} blocks" if "n_blocks" in summary else "")
    verdict = ("met" if summary["met"] else "NOT met")
    lines = [
        "## Test split",
        "",
        f"The test part is {design}: {summary['n_test']} of {summary['n_rows']} rows{blocks}, a share of "
        f"{_fmt(summary['test_share'])} for sampling.test_size {summary['target']:g}. Tolerance +/- "
        f"{summary['tolerance']:g} (sampling.split_tolerance; a class too small for it may be one row off): "
        f"{verdict}." + (" These are the split's shares, before the purity filter of the training part "
                         "(sampling.purity_window)." if summary.get("before_purity") else ""),
        "",
    ]
    rows = []
    for value, c in summary["per_class"].items():
        name = (per_class.get(value) or {}).get("name", value)
        rows.append([value, name, c["n"], c["n_test"], c["test_share"], f"{c['test_share'] - summary['target']:+.3f}",
                     "yes" if c["met"] else "no"])
    lines += _md_table(["Value", "Class", "Rows", "Test rows", "Test share", "Off target", "Within tolerance"], rows)
    lines += [""]
    if summary.get("unmet"):
        lines += ["Shares outside the tolerance:", ""] + [f"- {line}" for line in summary["unmet"]] + [""]
    return lines


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
    metrics : the output of :func:`~lcmodel.evaluate.evaluate_model`, or of
        :func:`~lcmodel.evaluate.assemble_metrics`.
    out_dir : output folder (created if needed).
    class_table : fills in class names that ``metrics`` lacks (names equal to the value).
    tuning : merged into ``metrics.json`` as ``cv`` and ``best_params`` (see
        :func:`~lcmodel.evaluate.assemble_metrics`).
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
            label_name(v, class_table) if str(n) == label_key(v) else n
            for v, n in zip(cm["labels"], cm["names"], strict=True)
        ]
        test["per_class"] = {
            k: {**c, "name": label_name(k, class_table) if str(c["name"]) == k else c["name"]}
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
