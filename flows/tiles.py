"""``predict_map`` of a tile collection in the flow: one Prefect task per tile, on threads or a Dask cluster.

The library's stage (:func:`lcmodel.pipeline.tiled.predict_collection`) predicts the tiles in turn; here the
same three steps run with each tile as its own task (``predict_tile``, mapped over the tiles in a subflow
``predict-tiles``): retried on I/O failures (a retry resumes the tile's finished blocks), visible per tile in
the Prefect UI. ``prediction.task_runner``: ``threads`` runs one tile at a time in this process (each with
``prediction.n_jobs`` workers), ``dask`` sends the tiles to the Dask cluster at ``prediction.dask_address``
(None: a local cluster), one tile per task, each predicted single-threaded. The stage keeps ONE record and
key: the flow's ``FlowStageRun`` runs this through :func:`lcmodel.pipeline.execute` with it as the stage's
function.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.tasks import IO_RETRIES
from lcmodel import pipeline
from lcmodel.pipeline import artifacts as a
from lcmodel.pipeline import settings as s

__all__ = ["predict_tiles", "predict_tiles_flow", "predict_tile_task"]

_BUNDLES: dict[tuple[str, int, int], Any] = {}


def _bundle(path: str) -> Any:
    """The bundle, loaded (and its hash checked) once per process: a worker predicts several tiles."""
    from lcmodel.model_io import load_bundle

    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _BUNDLES:
        _BUNDLES.clear()
        _BUNDLES[key] = load_bundle(path)
    return _BUNDLES[key]


@task(name="predict_tile", task_run_name="predict_tile-{job.stem}", cache_policy=NO_CACHE, persist_result=False,
      **IO_RETRIES)
def predict_tile_task(settings: s.PredictSettings, bundle_path: str, job: pipeline.TileJob) -> dict[str, Any]:
    """One tile into ``OUTPUT/tiles/<stem>/`` (reused when finished, resumed when half done); its summary."""
    return pipeline.predict_tile(settings, _bundle(bundle_path), job)


@flow(name="predict-tiles", log_prints=False)
def predict_tiles_flow(settings: s.PredictSettings, bundle_path: str, jobs: list[pipeline.TileJob]
                       ) -> list[dict[str, Any]]:
    """One ``predict_tile`` task per tile on this flow's task runner; the summaries in the tiles' order."""
    progress = create_progress_artifact(progress=0.0, key="prediction-progress",
                                        description=f"Tile prediction ({len(jobs)} tiles)")
    futures = predict_tile_task.map(unmapped(settings), unmapped(bundle_path), jobs)
    summaries = []
    for done, future in enumerate(futures, start=1):
        summaries.append(future.result())  # collected in order: a failed tile fails this flow
        update_progress_artifact(progress, progress=100.0 * done / len(jobs))  # type: ignore[arg-type]
    return summaries


def predict_tiles(cfg: Any, settings: s.PredictSettings, model: a.Model, embedding: a.EmbeddingSource, *,
                  out: Path) -> a.Prediction:
    """The stage's outputs for a collection, its tiles predicted as tasks (see the module docstring)."""
    from lcmodel.sources import Collection

    started = time.time()
    bundle = _bundle(str(model.bundle.path))
    jobs = pipeline.tile_jobs(settings, model, Collection.read(embedding.path), out)
    pipeline.check_tiles(bundle, jobs)  # every tile fits the model, before any tile runs
    runner: Any
    run_settings = settings
    if cfg.prediction.task_runner == "dask":
        from flows.predict import dask_task_runner

        runner = dask_task_runner(cfg.prediction.dask_address, cfg.prediction.n_jobs or cfg.n_jobs)
        run_settings = dataclasses.replace(settings, n_jobs=1)  # a Dask worker runs one tile on one thread
    else:
        runner = ThreadPoolTaskRunner(max_workers=1)  # one tile at a time, each with prediction.n_jobs workers
    summaries = predict_tiles_flow.with_options(task_runner=runner)(run_settings, str(model.bundle.path), jobs)
    return pipeline.finish_tiles(settings, bundle, jobs, summaries, out, started=started)
