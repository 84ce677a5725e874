"""The `landcover` Prefect flow: the declared stages as cached, retried tasks, tracked in MLflow.

One task per stage, each its own function around the library's stage (lcmodel.pipeline), so Prefect's
``TASK_SOURCE`` means something. Tasks pass artifacts (paths with content digests), never arrays. A task's
cache key is the stage's own key (flows/cache.py): its settings, the digests of what it consumes, its code
version and lcmodel's version; results and cache records persist in ``OUTPUT/.lcmodel/``. A stage whose
recorded outputs no longer hold what was recorded runs again. Retries (exponential backoff) only for I/O
failures: our own errors (LcmodelError: a user's mistake) are never retried.

A rerun with nothing changed executes no stage and registers nothing new: the MLflow run and the Prefect
summary say which stages were reused and which run produced them.

Run it with ``lcmodel run CONFIG`` or ``python -m flows.landcover CONFIG``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from flows.cache import stage_cache_policy, state_dir
from flows.config import FlowConfig, flow_config
from flows.reporting import read_json, summary_markdown, track_stage, track_years
from flows.signals import prefect_sigterm
from flows.tasks import STAGE_TASK_OPTIONS, library_logs_to_prefect, quiet_user_errors
from lcmodel import pipeline
from lcmodel.config import RunConfig
from lcmodel.errors import LcmodelError
from lcmodel.io import ensure_output_dir, output_lock
from lcmodel.pipeline import (
    STAGES,
    Artifacts,
    Stage,
    StageOutcome,
    StageSettings,
    cached,
    execute,
    read_record,
    run_or_reuse,
)
from lcmodel.pipeline import artifacts as a
from lcmodel.pipeline import change as ch
from lcmodel.pipeline import postprocessing as pp
from lcmodel.pipeline import settings as s
from lcmodel.processes import interruption, interrupts_deferred
from lcmodel.sources import Collection, is_remote

__all__ = ["landcover", "STAGE_TASKS"]

prefect_sigterm()  # Prefect's SIGTERM handler (active while a flow runs) stops the pool workers first too


# ------------------------------------------------------------------ one task per stage, each its own function
def _execute(name: str, settings: StageSettings, inputs: dict[str, Any], out: Path, produced_by: dict[str, str],
             **runtime: Any) -> Artifacts:
    """The stage's outputs: its valid recorded ones, else those of running it (recorded)."""
    return run_or_reuse(STAGES[name], settings, inputs, root=out, produced_by=produced_by, **runtime).outputs


@task(name="sample_reference", **STAGE_TASK_OPTIONS)
def sample_reference(settings: s.SampleReferenceSettings, reference: a.ReferenceSource,
                     embedding: a.EmbeddingSource, extra: a.ExtraPointsSource | None = None, *, out: Path,
                     produced_by: dict[str, str]) -> a.PointsFile:
    inputs = {"reference": reference, "embedding": embedding, "extra": extra}
    return _execute("sample_reference", settings, inputs, out, produced_by)  # type: ignore[return-value]


@task(name="prepare_points", **STAGE_TASK_OPTIONS)
def prepare_points(settings: s.PreparePointsSettings, points: a.PointsFile, embedding: a.EmbeddingSource,
                   classes: a.ClassTableSource | None = None, *, out: Path,
                   produced_by: dict[str, str]) -> a.LabelledPoints:
    return _execute("prepare_points", settings, {"points": points, "embedding": embedding, "classes": classes},  # type: ignore[return-value]
                    out, produced_by)


@task(name="extract_samples", **STAGE_TASK_OPTIONS)
def extract_samples(settings: s.ExtractSettings, labelled: a.LabelledPoints, embedding: a.EmbeddingSource, *,
                    out: Path, produced_by: dict[str, str]) -> a.Samples:
    return _execute("extract_samples", settings, {"labelled": labelled, "embedding": embedding}, out,  # type: ignore[return-value]
                    produced_by)


@task(name="make_training_table", **STAGE_TASK_OPTIONS)
def make_training_table(settings: s.TrainingTableSettings, samples: a.Samples, *, out: Path,
                        produced_by: dict[str, str]) -> a.TrainingTable:
    return _execute("make_training_table", settings, {"samples": samples}, out, produced_by)  # type: ignore[return-value]


@task(name="tune", **STAGE_TASK_OPTIONS)
def tune(settings: s.TuneSettings, table: a.TrainingTable, *, out: Path, produced_by: dict[str, str]) -> a.Tuning:
    return _execute("tune", settings, {"table": table}, out, produced_by)  # type: ignore[return-value]


@task(name="evaluate", **STAGE_TASK_OPTIONS)
def evaluate(settings: s.EvaluateSettings, table: a.TrainingTable, tuning: a.Tuning, labelled: a.LabelledPoints,
             samples: a.Samples, *, out: Path, produced_by: dict[str, str]) -> a.Evaluation:
    inputs = {"table": table, "tuning": tuning, "labelled": labelled, "samples": samples}
    return _execute("evaluate", settings, inputs, out, produced_by)  # type: ignore[return-value]


@task(name="fit_final", **STAGE_TASK_OPTIONS)
def fit_final(settings: s.FitSettings, table: a.TrainingTable, tuning: a.Tuning, evaluation: a.Evaluation,
              labelled: a.LabelledPoints, embedding: a.EmbeddingSource, *, out: Path,
              produced_by: dict[str, str]) -> a.Model:
    inputs = {"table": table, "tuning": tuning, "evaluation": evaluation, "labelled": labelled,
              "embedding": embedding}
    return _execute("fit_final", settings, inputs, out, produced_by)  # type: ignore[return-value]


@task(name="predict_map", **STAGE_TASK_OPTIONS)
def predict_map(settings: s.PredictSettings, model: a.Model, embedding: a.EmbeddingSource, *, out: Path,
                produced_by: dict[str, str], progress: Any = None) -> a.Prediction:
    return _execute("predict_map", settings, {"model": model, "embedding": embedding}, out, produced_by,  # type: ignore[return-value]
                    progress=progress)


@task(name="write_quicklook", **STAGE_TASK_OPTIONS)
def write_quicklook(settings: s.NoSettings, prediction: a.Prediction, labelled: a.LabelledPoints, *, out: Path,
                    produced_by: dict[str, str]) -> a.Quicklook:
    return _execute("write_quicklook", settings, {"prediction": prediction, "labelled": labelled}, out,  # type: ignore[return-value]
                    produced_by)


@task(name="assess_map", **STAGE_TASK_OPTIONS)
def assess_map(settings: s.ReportSettings, prediction: a.Prediction, evaluation: a.Evaluation,
               table: a.TrainingTable, labelled: a.LabelledPoints, *, out: Path,
               produced_by: dict[str, str]) -> a.Assessment:
    inputs = {"prediction": prediction, "evaluation": evaluation, "table": table, "labelled": labelled}
    return _execute("assess_map", settings, inputs, out, produced_by)  # type: ignore[return-value]


@task(name="applicability", **STAGE_TASK_OPTIONS)
def applicability(settings: s.AoaSettings, model: a.Model, table: a.TrainingTable, evaluation: a.Evaluation,
                  prediction: a.Prediction, embedding: a.EmbeddingSource, labelled: a.LabelledPoints, *,
                  out: Path, produced_by: dict[str, str]) -> a.Applicability:
    inputs = {"model": model, "table": table, "evaluation": evaluation, "prediction": prediction,
              "embedding": embedding, "labelled": labelled}
    return _execute("applicability", settings, inputs, out, produced_by)  # type: ignore[return-value]


@task(name="postprocess", **STAGE_TASK_OPTIONS)
def postprocess(settings: pp.PostprocessSettings, prediction: a.Prediction, *, out: Path,
                produced_by: dict[str, str]) -> pp.CleanMap:
    return _execute("postprocess", settings, {"prediction": prediction}, out, produced_by)  # type: ignore[return-value]


@task(name="change", **STAGE_TASK_OPTIONS)
def change(settings: ch.ChangeSettings, maps: ch.YearMaps, labelled: a.LabelledPoints, *, out: Path,
           produced_by: dict[str, str]) -> ch.ChangeProducts:
    return _execute("change", settings, {"maps": maps, "labelled": labelled}, out, produced_by)  # type: ignore[return-value]


@task(name="report", **STAGE_TASK_OPTIONS)
def report(settings: s.ReportSettings, evaluation: a.Evaluation, assessment: a.Assessment | None = None,
           applicability: a.Applicability | None = None, clean: pp.CleanMap | None = None,
           changes: ch.ChangeProducts | None = None, *, out: Path, produced_by: dict[str, str]) -> a.Report:
    inputs = {"evaluation": evaluation, "assessment": assessment, "applicability": applicability, "clean": clean,
              "changes": changes}
    return _execute("report", settings, inputs, out, produced_by)  # type: ignore[return-value]


#: stage name -> its Prefect task
STAGE_TASKS: dict[str, Any] = {t.name: t for t in (
    sample_reference, prepare_points, extract_samples, make_training_table, tune, evaluate, fit_final,
    predict_map, write_quicklook, assess_map, applicability, postprocess, change, report)}


class FlowStageRun(pipeline.StageRun):
    """The plain runner's wiring and order, with every stage run as its cached Prefect task.

    ``prediction.task_runner: dask`` runs ``predict_map`` as block groups on a Dask cluster instead (same
    key, same record, the same map byte for byte). A collection of several tiles is predicted as one task
    per tile (flows/tiles.py), on threads or on the Dask cluster, under the same key and record.
    """

    cfg: FlowConfig

    def __init__(self, cfg: FlowConfig, produced_by: dict[str, str], after_stage: Any = None,
                 year: int | None = None) -> None:
        super().__init__(cfg, produced_by=produced_by, after_stage=after_stage)
        results = state_dir(self.root) / "results"
        # a year run's tasks say their year (embedding.years): predict_map-2022, predict_tile-2022-...
        self.year = year
        self.tasks = {name: t.with_options(result_storage=results, cache_policy=stage_cache_policy(name, self.root),
                                           **({"task_run_name": f"{name}-{year}"} if year is not None else {}))
                      for name, t in STAGE_TASKS.items()}

    def spawn(self, cfg: RunConfig) -> FlowStageRun:
        """Another year's run of the mapping stages, as tasks of this flow run (their names end in the year)."""
        return FlowStageRun(flow_config(cfg), dict(self.produced_by or {}), year=cfg.embedding.year)

    def run_stage(self, st: Stage, settings: StageSettings, inputs: dict[str, Artifacts | None],
                  **runtime: Any) -> StageOutcome:
        runtime = {k: v for k, v in runtime.items() if v is not None}  # no plain-CLI callbacks in the flow
        key = pipeline.stage_key(st, settings, inputs)
        valid = cached(st, key, self.root) is not None
        if st.name == "predict_map" and len(Collection.read(inputs["embedding"].path)) > 1:  # type: ignore[union-attr]
            return self._predict_tiles(st, settings, inputs, valid)
        if st.name == "predict_map" and self.cfg.prediction.task_runner == "dask":
            return self._predict_on_dask(st, settings, inputs, valid)
        if st.name == "predict_map":
            runtime["progress"] = _PredictProgress(cached=valid)
        call = dict(inputs, out=self.root, produced_by=self.produced_by, **runtime)
        before = self._persisted()
        try:
            outputs = self.tasks[st.name].with_options(refresh_cache=not valid)(settings, **call)
        except BaseException:
            # Prefect persists a failed attempt's exception (under a random key) beside the stages' results:
            # a failed stage leaves nothing behind, so those go (a completed attempt is never among them)
            for path in self._persisted() - before:
                path.unlink(missing_ok=True)
            raise
        record = read_record(self.root, st.name)
        assert record is not None  # written by execute, or validated by cached()
        if valid:
            # the files hold what the record says (checked above): they, not Prefect's stored copy of the
            # result (which names the paths of the folder it was made in), are this stage's outputs
            outputs = record.outputs(st, self.root)
        return StageOutcome(outputs, valid, record)

    def _persisted(self) -> set[Path]:
        """The task results and cache records persisted in ``OUTPUT/.lcmodel/`` so far."""
        state = state_dir(self.root)
        return {p for sub in ("results", "cache") for p in (state / sub).glob("*") if p.is_file()}

    def _predict_on_dask(self, st: Stage, settings: StageSettings, inputs: dict[str, Artifacts | None],
                         valid: bool) -> StageOutcome:
        from flows.predict import predict_distributed

        if valid:
            record = read_record(self.root, st.name)
            assert record is not None
            return StageOutcome(record.outputs(st, self.root), True, record)
        cfg, paths = self.cfg, pipeline.paths_for(self.cfg)
        options = pipeline.prediction_options(settings, paths)  # type: ignore[arg-type]

        def distributed(settings: StageSettings, model: a.Model, embedding: a.EmbeddingSource, *, out: Path
                        ) -> a.Prediction:
            tile = Collection.read(embedding.path).first.path
            data = predict_distributed(str(model.bundle.path), tile, str(paths.map), options,
                                       dask_address=cfg.prediction.dask_address,
                                       blocks_per_task=cfg.prediction.blocks_per_task,
                                       n_workers=cfg.prediction.n_jobs or cfg.n_jobs)
            return pipeline.prediction_artifacts(options, paths, data)

        return execute(st, settings, inputs, root=self.root, produced_by=self.produced_by, fn=distributed)


    def _predict_tiles(self, st: Stage, settings: StageSettings, inputs: dict[str, Artifacts | None],
                       valid: bool) -> StageOutcome:
        """A tile collection: one task per tile (flows/tiles.py), under the stage's one key and record."""
        from functools import partial

        from flows.tiles import predict_tiles

        if valid:
            record = read_record(self.root, st.name)
            assert record is not None
            create_progress_artifact(progress=100.0, key="prediction-progress",
                                     description="Tile prediction: cached (maps unchanged)")
            return StageOutcome(record.outputs(st, self.root), True, record)
        return execute(st, settings, inputs, root=self.root, produced_by=self.produced_by,
                       fn=partial(predict_tiles, self.cfg))


class _PredictProgress:
    """Prefect progress artifact for block prediction, updated every 5 %."""

    def __init__(self, cached: bool = False) -> None:
        if cached:  # the map of an earlier run is reused: the artifact says so, at 100 %
            self.artifact_id = create_progress_artifact(progress=100.0, key="prediction-progress",
                                                        description="Block prediction: cached (map unchanged)")
        else:
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
    """Reference -> points -> extraction -> training table -> tuning -> evaluation -> final fit -> map -> report.

    ``config`` is a validated FlowConfig (a plain RunConfig gets the flow's defaults), or the path of a
    YAML/TOML config file (for deployments).
    """
    cfg = flow_config(config)
    pipeline.source_files(cfg, write=False)  # inputs exist, are readable, are no output: before MLflow or any stage
    root = ensure_output_dir(cfg.output.dir)
    # one run per output folder; predict_map resumes after a crash or retry
    with output_lock(root), library_logs_to_prefect():
        return _landcover(cfg, root, get_run_logger())


def _landcover(cfg: FlowConfig, root: Path, logger: Any) -> dict[str, Any]:
    from flows.tracking import Tracker

    flow_run_id = str(flow_run.id) if flow_run.id else None
    # MLflow's calls (SQLAlchemy on its store) run with SIGTERM and Ctrl-C held: one that arrives during them
    # stops the run as the call ends, not inside a database fetch (lcmodel.processes.interrupts_deferred)
    with interrupts_deferred():
        tracker = Tracker(cfg, flow_run_id=flow_run_id)
    logger.info("MLflow run %s in experiment %r (%s)", tracker.run_id, cfg.tracking.experiment, tracker.ui_hint)
    try:
        first = pipeline.embedding_collection(cfg).first.path
        with interrupts_deferred():
            tracker.log_config()
            tracker.log_inputs({"reference": pipeline.reference_raster(cfg, write=False),
                                "embedding": None if is_remote(first) else Path(first),
                                "classes": cfg.classes.table})
        produced_by = {"flow_run_id": flow_run_id or "", "mlflow_run_id": tracker.run_id}
        model: dict[str, Any] = {}

        def track(name: str, outcome: StageOutcome) -> None:
            with interrupts_deferred():
                track_stage(tracker, name, outcome, logger)
                if name == "fit_final":
                    model.update(tracker.log_model(outcome, cfg.tracking.register_as))

        r = pipeline.run_stages(FlowStageRun(cfg, produced_by, after_stage=track), mapping=True)
        paths = pipeline.paths_for(cfg)
        evaluation: a.Evaluation = r.outputs[a.Evaluation]  # type: ignore[assignment]
        with interrupts_deferred():
            tracker.log_artifacts([p.path for _, p in evaluation.files()] + [paths.report, paths.training_table,
                                                                           paths.quicklook])
            tracker.log_artifacts(pipeline.tuning_files(r.outputs[a.Tuning]), "tuning")  # type: ignore[arg-type]
            tracker.log_stages(r.outcomes)
            track_years(tracker, r)
        prediction = r.outputs[a.Prediction]
        data = read_json(prediction.summary.path)  # type: ignore[attr-defined]
        result = {"mlflow_run_id": tracker.run_id, "map": data["map_path"],
                  "confidence": data.get("confidence_path"), "metrics": str(paths.metrics),
                  "report": str(paths.report), "bundle": str(paths.bundle),
                  "executed": r.executed(), "cached": [n for n, o in r.outcomes.items() if o.cached], **model}
        create_markdown_artifact(summary_markdown(cfg, read_json(paths.metrics), data, result, r, tracker),
                                 key="landcover-summary", description="Run summary")
    except BaseException as exc:
        with interrupts_deferred():
            tracker.finish(error=exc)
        if (stop := interruption(exc)) is not None and stop is not exc:
            # SIGTERM as Prefect raises it, or an error a library raised in place of Ctrl-C or SIGTERM: the
            # run was stopped, and it ends as a stopped command does (exit 143 or 130, one line), not a crash
            raise stop from exc
        raise
    with interrupts_deferred():
        tracker.finish()
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.landcover CONFIG``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m flows.landcover CONFIG", file=sys.stderr)
        return 2
    quiet_user_errors()
    try:
        result = landcover(flow_config(argv[0]))
    except LcmodelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"map: {result['map']}\nreport: {result['report']}\nMLflow run: {result['mlflow_run_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
