"""What a landcover flow run records after its stages: MLflow per stage and per mapped year, the Prefect summary.

:func:`track_stage` is what MLflow records after each stage (the same whether it ran or was reused),
:func:`track_years` the child run of each mapped year and the change products (``embedding.years``),
:func:`summary_markdown` the run's Prefect markdown artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.config import FlowConfig
from lcmodel import pipeline
from lcmodel.pipeline import StageOutcome
from lcmodel.pipeline import artifacts as a
from lcmodel.pipeline import change as ch

__all__ = ["track_stage", "track_years", "summary_markdown", "read_json"]


def track_years(tracker: Any, r: pipeline.StageRun) -> None:
    """embedding.years: a child MLflow run per mapped year, the change products on the flow's run."""
    from flows.tracking.years import log_change, log_year

    if not r.cfg.mapped_years:
        return
    for year, run in r.by_year().items():
        prediction: a.Prediction = run.outputs[a.Prediction]  # type: ignore[assignment]
        aoa = run.outputs.get(a.Applicability)
        files = [aoa.summary.path if aoa is not None else None,  # type: ignore[attr-defined]
                 pipeline.paths_for(run.cfg).quicklook]
        log_year(tracker, year, read_json(prediction.summary.path), files)
    changes = r.outputs.get(ch.ChangeProducts)
    if changes is not None:
        log_change(tracker, changes.summary.path, [p.path for p in changes.products])  # type: ignore[attr-defined]


def read_json(path: Path) -> dict[str, Any]:
    import json

    return dict(json.loads(Path(path).read_text()))


def track_stage(tracker: Any, name: str, outcome: StageOutcome, logger: Any) -> None:
    """What MLflow records after a stage (the same whether the stage ran or was reused)."""
    outputs = outcome.outputs
    if name == "tune":
        summary = read_json(outputs.summary.path)  # type: ignore[attr-defined]
        for cand in summary.get("candidates", []):
            tracker.log_candidate(cand)
        tracker.log_tuning(summary, pipeline.tuning_files(outputs))  # type: ignore[arg-type]
        logger.info("tuning: best %s = %.4f with %s", summary["scoring"], summary["best_score"],
                    summary["best_params"])
    elif name == "evaluate":
        tracker.log_metrics(outputs.metrics.path)  # type: ignore[attr-defined]
        tracker.log_cv_comparison(outputs.metrics.path)  # type: ignore[attr-defined]
    elif name == "make_training_table":
        logger.info("training table %s", outputs.table.path)  # type: ignore[attr-defined]
        tracker.log_split(outputs.blocks.path)  # type: ignore[attr-defined]
    elif name == "predict_map":
        tracker.log_prediction(read_json(outputs.summary.path))  # type: ignore[attr-defined]
    elif name == "assess_map":
        tracker.log_assessment(outputs.assessment.path)  # type: ignore[attr-defined]
    elif name == "applicability":
        tracker.log_applicability(outputs.summary.path)  # type: ignore[attr-defined]
    elif name == "postprocess":  # the clean map's summary: what was done, pixels changed
        tracker.log_artifacts([outputs.summary.path])  # type: ignore[attr-defined]


def summary_markdown(cfg: FlowConfig, metrics: dict[str, Any], prediction: dict[str, Any],
                      result: dict[str, Any], r: pipeline.StageRun, tracker: Any) -> str:
    test = metrics.get("test", {})
    cv = metrics.get("cv", {})
    lines = [
        f"# Land-cover run: {cfg.tracking.experiment}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test overall accuracy | {test.get('overall_accuracy', float('nan')):.4f} |",
        f"| test macro-F1 | {test.get('macro_f1', float('nan')):.4f} |",
        f"| test kappa | {test.get('kappa', float('nan')):.4f} |",
        f"| CV {cv.get('scoring', '')} (best) | {cv.get('best_score', float('nan')):.4f} |",
        f"| predicted pixels | {prediction['n_valid']:,} |",
        f"| prediction speed | {prediction['pixels_per_s']:,.0f} px/s |",
        "",
        "Test figures describe the model tuned on the training part, before the final refit on all samples.",
        "",
        "| stage | this run | produced by |",
        "|---|---|---|",
    ]
    for name, outcome in r.outcomes.items():
        who = outcome.record.produced_by
        source = f"MLflow run `{who.get('mlflow_run_id', '-')}`, flow run `{who.get('flow_run_id', '-')}`" \
            if who.get("mlflow_run_id") else ", ".join(f"{k} {v}" for k, v in who.items())
        lines.append(f"| {name} | {'cached' if outcome.cached else 'ran'} | {source} ({outcome.record.finished}) |")
    if not result["executed"]:
        lines += ["", "Nothing changed since the runs above: every stage was reused and no model was registered."]
    lines += [
        "",
        f"- map: `{result['map']}`",
        f"- report: `{result['report']}`",
        f"- model bundle: `{result['bundle']}`",
        f"- MLflow run: `{tracker.run_id}` ({tracker.ui_hint})",
    ]
    return "\n".join(lines) + "\n"
