"""Comparing the training runs of an experiment (``lcmodel compare``)."""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient

from flows.tracking.registry import TrackingLookupError
from flows.tracking.stores import require_existing_store
from flows.tracking.uris import resolve_uri, scrub_uri

__all__ = ["COMPARE_COLUMNS", "compare_runs"]

#: columns of :func:`compare_runs` (and of the MLflow UI's compare view: same tags and metrics)
COMPARE_COLUMNS = ("run_id", "run_name", "method", "n_sample", "reference_kind", "embedding",
                   "test_macro_f1", "cv_macro_f1", "tuning_time_s", "predict_px_per_s", "model")


def compare_runs(experiment: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """The training runs of an experiment, best test macro-F1 first (runs without it last).

    Nested tuning-candidate runs and prediction-flow runs are left out.
    """
    uri, _ = resolve_uri(tracking_uri)
    require_existing_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments(max_results=50))
        raise TrackingLookupError(
            f"experiment {experiment!r} does not exist in {scrub_uri(uri)} (experiments: "
            f"{', '.join(known) or 'none'}); check the name and MLFLOW_TRACKING_URI"
        )
    rows = []
    for run in client.search_runs([exp.experiment_id], max_results=5000):
        tags, metrics = run.data.tags, run.data.metrics
        if "mlflow.parentRunId" in tags or tags.get("lcmodel.kind") in {"tuning-candidate", "prediction"}:
            continue
        rows.append({
            "run_id": run.info.run_id,
            "run_name": run.info.run_name or "",
            "method": tags.get("lcmodel.method", ""),
            "n_sample": tags.get("lcmodel.n_sample", ""),
            "reference_kind": tags.get("lcmodel.reference_kind", ""),
            "embedding": tags.get("lcmodel.embedding", ""),
            "test_macro_f1": metrics.get("test_macro_f1"),
            "cv_macro_f1": metrics.get("cv_macro_f1", metrics.get("cv_best_score")),
            "tuning_time_s": metrics.get("tuning_time_s"),
            "predict_px_per_s": metrics.get("predict_px_per_s"),
            "model": tags.get("lcmodel.registered", ""),
            "start_time": run.info.start_time or 0,
        })
    rows.sort(key=lambda r: (r["test_macro_f1"] is None, -(r["test_macro_f1"] or 0.0), -r["start_time"]))
    return rows
