"""The `landcover` Prefect flow: the pipeline's stages as retryable, cached tasks, tracked in MLflow.

Each task wraps one library call (lcmodel.pipeline) and passes paths, never arrays. Retries (exponential
backoff) only for I/O failures: our own errors (LcmodelError: a user's mistake) are never retried. Each
task's cache key covers exactly what the stage depends on (flows/caching.py), with results and cache records
persisted in the output folder, so a rerun skips the stages whose inputs did not change.

Run it with ``lcmodel run CONFIG`` or ``python -m flows.landcover CONFIG``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import TASK_SOURCE, CachePolicy  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from flows.caching import cache_key_fn, write_manifest  # noqa: E402
from lcmodel import pipeline  # noqa: E402
from lcmodel.config import RunConfig, load_config  # noqa: E402
from lcmodel.errors import LcmodelError  # noqa: E402
from lcmodel.io import output_lock  # noqa: E402

__all__ = ["landcover", "retry_on_io_error"]



@contextlib.contextmanager
def _library_logs_to_prefect() -> Iterator[None]:
    """While the flow runs, send the library's log lines (logger "lcmodel") to Prefect's handlers.

    The same as PREFECT_LOGGING_EXTRA_LOGGERS=lcmodel, but independent of import order, with a level (Prefect
    leaves extra loggers at the root's WARNING), without propagation (no line printed twice), and undone when
    the flow ends (outside a flow run, Prefect's API handler would warn on every library line).
    """
    lib = logging.getLogger("lcmodel")
    saved = (lib.level, lib.propagate)
    added = [h for h in logging.getLogger("prefect.extra").handlers if h not in lib.handlers]
    for handler in added:
        lib.addHandler(handler)
    if added:
        lib.propagate = False
    if lib.level == logging.NOTSET or lib.level > logging.INFO:
        lib.setLevel(logging.INFO)
    try:
        yield
    finally:
        for handler in added:
            lib.removeHandler(handler)
        lib.setLevel(saved[0])
        lib.propagate = saved[1]


def retry_on_io_error(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry only I/O failures (a flaky disk or network share); never our own bad-input errors."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, LcmodelError):
        return False
    return isinstance(exc, OSError | TimeoutError)


def _stage_task(stage: str, fn: Callable[..., Any]) -> Any:
    """A task for one stage: retried on I/O errors, cached by the stage's own key."""

    def body(cfg: RunConfig, **upstream: Any) -> Any:
        extra = upstream.pop("_extra", {})
        result = fn(cfg, **upstream, **extra)
        write_manifest(stage, cfg, upstream)
        return result

    body.__name__ = stage
    body.__qualname__ = stage
    body.__doc__ = fn.__doc__
    return task(  # type: ignore[call-overload]  # Prefect's overloads do not cover **kwargs bodies
        body,
        name=stage,
        retries=2,
        retry_delay_seconds=exponential_backoff(backoff_factor=2),
        retry_condition_fn=retry_on_io_error,
        cache_policy=TASK_SOURCE + CachePolicy.from_cache_key_fn(cache_key_fn(stage)),
        persist_result=True,
    )


sample_reference = _stage_task("sample_reference", pipeline.sample_reference)
prepare_points = _stage_task("prepare_points", pipeline.prepare_points)
extract_samples = _stage_task("extract_samples", pipeline.extract_samples)
make_training_table = _stage_task("make_training_table", pipeline.make_training_table)
tune = _stage_task("tune", pipeline.tune)
evaluate = _stage_task("evaluate", pipeline.evaluate)
fit_final = _stage_task("fit_final", pipeline.fit_final)
predict_map = _stage_task("predict_map", pipeline.predict_map)
assess_map = _stage_task("assess_map", pipeline.assess_map)


def _in_folder(t: Any, root: Path) -> Any:
    """Persist the task's results and cache records in the run's output folder."""
    state_dir = root / ".lcmodel"
    return t.with_options(
        result_storage=state_dir / "results",
        cache_policy=t.cache_policy.configure(key_storage=state_dir / "cache"),
    )


class _PredictProgress:
    """Prefect progress artifact for block prediction, updated every 5 %."""

    def __init__(self) -> None:
        self.artifact_id = create_progress_artifact(progress=0.0, key="prediction-progress",
                                                    description="Block prediction")
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        pct = 100.0 * done / max(total, 1)
        if int(pct // 5) != self.last or done == total:
            self.last = int(pct // 5)
            update_progress_artifact(self.artifact_id, progress=pct)  # type: ignore[arg-type]  # sync: a UUID


@flow(name="landcover", log_prints=False)
def landcover(config: RunConfig | str) -> dict[str, Any]:
    """Reference -> points -> extraction -> training table -> tuning -> evaluation -> final fit -> map.

    ``config`` is a validated RunConfig, or the path of a YAML/TOML config file (for deployments).
    """
    cfg = load_config(config) if isinstance(config, str | Path) else config
    logger = get_run_logger()
    root = Path(cfg.output.dir)
    root.mkdir(parents=True, exist_ok=True)
    # one run per output folder; predict_map resumes after a crash or retry
    with output_lock(root), _library_logs_to_prefect():
        return _landcover(cfg, root, logger)


def _landcover(cfg: RunConfig, root: Path, logger: Any) -> dict[str, Any]:
    from flows.tracking import Tracker

    tracker = Tracker(cfg, flow_run_id=str(flow_run.id) if flow_run.id else None)
    logger.info("MLflow run %s in experiment %r (%s)", tracker.run_id, cfg.tracking.experiment, tracker.ui_hint)
    try:
        tracker.log_config()
        tracker.log_inputs({"reference": cfg.reference.path, "embedding": cfg.embedding.path,
                            "classes": cfg.classes.table})
        t = {name: _in_folder(obj, root) for name, obj in {
            "sample_reference": sample_reference, "prepare_points": prepare_points,
            "extract_samples": extract_samples, "make_training_table": make_training_table, "tune": tune,
            "evaluate": evaluate, "fit_final": fit_final, "predict_map": predict_map, "assess_map": assess_map}.items()}
        points = t["sample_reference"](cfg)
        labelled = t["prepare_points"](cfg, points_path=points)
        samples = t["extract_samples"](cfg, labelled_path=labelled)
        table = t["make_training_table"](cfg, samples_path=samples)
        logger.info("training table %s", table)
        tuning = t["tune"](cfg, table_path=table)
        summary = pipeline.read_tuning_summary(cfg)
        for cand in summary.get("candidates", []):
            tracker.log_candidate(cand)
        tracker.log_tuning(summary, pipeline.tuning_files(cfg))
        logger.info("tuning: best %s = %.4f with %s", summary["scoring"], summary["best_score"],
                    summary["best_params"])
        metrics = t["evaluate"](cfg, table_path=table, tuning_path=tuning)
        data = tracker.log_metrics(metrics)
        tracker.log_cv_comparison(metrics)
        bundle = t["fit_final"](cfg, table_path=table, tuning_path=tuning, metrics_path=metrics)
        model = tracker.log_model(bundle, cfg.tracking.register_as)
        if cfg.prediction.task_runner == "dask":  # block groups on a Dask cluster (flows/predict.py)
            from flows.predict import predict_distributed

            prediction = pipeline.record_prediction(cfg, predict_distributed(
                str(bundle), str(cfg.embedding.path), str(pipeline.paths_for(cfg).map),
                pipeline.prediction_options(cfg),
                dask_address=cfg.prediction.dask_address, blocks_per_task=cfg.prediction.blocks_per_task,
                n_workers=cfg.prediction.n_jobs or cfg.n_jobs))
        else:
            prediction = t["predict_map"](cfg, bundle_path=bundle, _extra={"progress": _PredictProgress()})
        tracker.log_prediction(prediction)
        quicklook = pipeline.write_quicklook(cfg)
        assessment = t["assess_map"](cfg, metrics_path=metrics, prediction_path=pipeline.paths_for(cfg).prediction)
        tracker.log_assessment(assessment)
        paths = pipeline.paths_for(cfg)
        tracker.log_artifacts([paths.metrics, root / "report.md", root / "confusion_matrix.png",
                               root / "classification_report.txt", root / "feature_importances.csv",
                               root / "feature_importances.png", paths.training_table, quicklook])
        tracker.log_artifacts(pipeline.tuning_files(cfg), "tuning")
        result = {"mlflow_run_id": tracker.run_id, "map": prediction["map_path"],
                  "confidence": prediction.get("confidence_path"), "metrics": str(metrics),
                  "report": str(root / "report.md"), "bundle": str(bundle), **model}
        create_markdown_artifact(_summary_markdown(cfg, data, prediction, result, tracker),
                                 key="landcover-summary", description="Run summary")
    except BaseException as exc:
        tracker.finish(error=exc)
        raise
    tracker.finish()
    return result


def _summary_markdown(cfg: RunConfig, metrics: dict[str, Any], prediction: dict[str, Any],
                      result: dict[str, Any], tracker: Any) -> str:
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
        f"- map: `{result['map']}`",
        f"- report: `{result['report']}`",
        f"- model bundle: `{result['bundle']}`",
        f"- MLflow run: `{tracker.run_id}` ({tracker.ui_hint})",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.landcover CONFIG``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m flows.landcover CONFIG", file=sys.stderr)
        return 2
    try:
        cfg = load_config(argv[0])
        result = landcover(cfg)
    except LcmodelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"map: {result['map']}\nreport: {result['report']}\nMLflow run: {result['mlflow_run_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
