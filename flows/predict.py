"""The `landcover-predict` Prefect flow: a model (bundle or registry URI) applied to an embedding raster.

Steps, one task each: resolve the model (a ``model.skops`` path, or ``models:/NAME@ALIAS`` /
``models:/NAME/VERSION`` downloaded from the MLflow registry), check the raster against it (band count and
names, CRS, nodata rule) before any block is read, predict block-wise into a COG plus a confidence COG. One
MLflow run records the model version (tags ``model_name``, ``model_version``, ``model_uri``; MLflow 3 also
lists the logged model among the run's inputs), the input's SHA-256, pixels and hectares per class, time and
pixels per second.

With ``task_runner="dask"`` the blocks are predicted as Prefect tasks on a Dask cluster (prefect-dask's
``DaskTaskRunner``; ``dask_address`` names an existing scheduler, None starts a local cluster): one task
plans the windows and creates the shared work folder, one task per group of ``blocks_per_task`` windows writes
its own part of it, and a last task assembles the COGs, byte-identical to the single-machine map. Workers need
the same Python environment, the same paths (a shared file system) and a real Prefect API (PREFECT_API_URL).

Run it with ``python -m flows.predict MODEL EMBEDDING OUT`` or through the ``predict`` deployment
(deployments/prefect.yaml).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")  # 2-core machines

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from flows.tasks import IO_RETRIES  # noqa: E402
from lcmodel.errors import ConfigError, LcmodelError  # noqa: E402
from lcmodel.predict import PredictionOptions  # noqa: E402  (runtime: Prefect validates flow parameters by it)
from lcmodel.processes import interrupts_deferred  # noqa: E402

if TYPE_CHECKING:
    from lcmodel.model_io import ModelBundle

__all__ = ["landcover_predict", "predict_distributed", "predict_block_groups"]

_IO_RETRIES: dict[str, Any] = dict(IO_RETRIES, persist_result=False)


@task(name="resolve_model", **_IO_RETRIES)
def resolve_model(model: str, workdir: str, tracking_uri: str | None = None) -> dict[str, str]:
    """A local bundle path and the model's identity (registry name/version, or the bundle's hash)."""
    from lcmodel.io import sha256_file

    if str(model).startswith("models:/"):
        from flows.tracking import download_registered_bundle

        path, info = download_registered_bundle(model, workdir, tracking_uri)
        return {"bundle_path": str(path), **info}
    path = Path(model)
    if not path.is_file():
        from lcmodel.errors import InputFileError

        raise InputFileError(
            f"model {model!r} is neither a bundle file nor a registry URI; give a model.skops path or "
            "models:/NAME@ALIAS"
        )
    return {"bundle_path": str(path), "model_uri": str(path.resolve()), "bundle_sha256": sha256_file(path)}


@task(name="check_compatibility", **_IO_RETRIES)
def check_compatibility(bundle_path: str, embedding: str) -> str:
    """Band count and names, CRS and nodata rule of the raster against the model, before any block."""
    from lcmodel.compatibility import check_compatible
    from lcmodel.io import open_raster
    from lcmodel.model_io import load_bundle

    bundle = load_bundle(bundle_path)
    with open_raster(embedding, "embedding raster") as src:
        rule = check_compatible(bundle, src)
    return rule.describe()


@task(name="predict_blocks", **_IO_RETRIES)
def predict_blocks(bundle_path: str, embedding: str, out: str, confidence: str | None,
                   block_size: int | None, n_jobs: int, memory_mb: int, engine: str = "auto") -> dict[str, Any]:
    """Block-wise prediction into a COG (and a confidence COG); the JSON-friendly summary."""
    from lcmodel.model_io import load_bundle
    from lcmodel.pipeline import summary_to_dict
    from lcmodel.predict import predict_raster

    bundle = load_bundle(bundle_path)
    summary = predict_raster(bundle, embedding, out, confidence_path=confidence, block_size=block_size,
                             n_jobs=n_jobs, memory_mb=memory_mb, engine=engine)
    return summary_to_dict(summary, bundle.class_table)


# --- scale-out: block groups on a Dask cluster ----------------------------------------------------------

_BUNDLES: dict[tuple[str, int, int], Any] = {}


def _bundle(bundle_path: str) -> ModelBundle:
    """The bundle, loaded (and its hash checked) once per process: Dask workers run many group tasks."""
    from lcmodel.model_io import load_bundle

    st = os.stat(bundle_path)
    key = (os.path.abspath(bundle_path), st.st_size, st.st_mtime_ns)
    if key not in _BUNDLES:
        _BUNDLES.clear()
        _BUNDLES[key] = load_bundle(bundle_path)
    return _BUNDLES[key]


@task(name="prepare_prediction", **_IO_RETRIES)
def prepare_prediction_task(bundle_path: str, embedding: str, out: str, options: PredictionOptions,
                            blocks_per_task: int) -> list[list[int]]:
    """Check the raster, plan the windows, create the shared work folder; the groups of windows to predict."""
    from lcmodel.predict import prepare_prediction

    plan = prepare_prediction(_bundle(bundle_path), embedding, out, options)
    return plan.groups(blocks_per_task)


@task(name="predict_block_group", **_IO_RETRIES)
def predict_block_group(bundle_path: str, embedding: str, out: str, indices: list[int],
                        options: PredictionOptions) -> int:
    """Predict one group of windows into its own part of the work folder; the blocks predicted."""
    from lcmodel.predict import predict_blocks as predict_window_group

    return predict_window_group(_bundle(bundle_path), embedding, out, indices, options)


@task(name="assemble_map", **_IO_RETRIES)
def assemble_map(bundle_path: str, embedding: str, out: str, options: PredictionOptions, started: float,
                 n_tasks: int) -> dict[str, Any]:
    """The COGs from all parts (byte-identical to a single-machine run); the JSON-friendly summary."""
    from lcmodel.pipeline import summary_to_dict
    from lcmodel.predict import assemble_prediction

    bundle = _bundle(bundle_path)
    summary = assemble_prediction(bundle, embedding, out, options, started=started, n_jobs=n_tasks)
    return summary_to_dict(summary, bundle.class_table)


@flow(name="predict-block-groups", log_prints=False)
def predict_block_groups(bundle_path: str, embedding: str, out: str, groups: list[list[int]],
                         options: PredictionOptions) -> int:
    """One task per group of windows on this flow's task runner (a DaskTaskRunner); blocks predicted."""
    from prefect import unmapped

    futures = predict_block_group.map(unmapped(bundle_path), unmapped(embedding), unmapped(out), groups,
                                      unmapped(options))
    return sum(f.result() for f in futures)  # collected: a failed group fails this flow


def dask_task_runner(address: str | None, n_workers: int) -> Any:
    """prefect-dask's DaskTaskRunner on ``address``, or on a local cluster of ``n_workers`` processes.

    Raises
    ------
    ConfigError
        prefect-dask is not installed.
    """
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            "task_runner 'dask' needs prefect-dask and dask[distributed]; install them with "
            "pip install -e '.[dask]', or use task_runner 'threads'"
        ) from None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def predict_distributed(bundle_path: str, embedding: str, out: str, options: PredictionOptions, *,
                        dask_address: str | None = None, blocks_per_task: int = 16,
                        n_workers: int = 2) -> dict[str, Any]:
    """Plan, predict the block groups on Dask (a subflow), assemble; call from inside a flow.

    The output folders stay locked by this process for the whole prediction; the group tasks themselves
    take no lock (they write only their own blocks and manifest).
    """
    started = time.time()
    runner = dask_task_runner(dask_address, n_workers)  # before any work: a missing extra fails at once
    folders = {Path(out).resolve().parent}
    if options.confidence_path is not None:
        folders.add(Path(options.confidence_path).resolve().parent)
    with _locks(folders):
        groups = prepare_prediction_task(bundle_path, embedding, out, options, blocks_per_task)
        if groups:
            predict_block_groups.with_options(task_runner=runner)(bundle_path, embedding, out, groups, options)
        return assemble_map(bundle_path, embedding, out, options, started, len(groups))


@contextlib.contextmanager
def _locks(folders: set[Path]) -> Iterator[None]:
    """Hold every output folder's lock (re-entrant in this process, so the tasks here may lock again)."""
    from lcmodel.io import output_lock

    with contextlib.ExitStack() as stack:
        for folder in sorted(folders):
            stack.enter_context(output_lock(folder))
        yield


@flow(name="landcover-predict", log_prints=False)
def landcover_predict(
    model: str,
    embedding: str,
    out: str,
    confidence: str | None = None,
    block_size: int | None = None,
    n_jobs: int = 1,
    memory_mb: int = 1024,
    experiment: str = "lcmodel-predict",
    tracking_uri: str | None = None,
    task_runner: Literal["threads", "dask"] = "threads",
    dask_address: str | None = None,
    blocks_per_task: int = 16,
    engine: Literal["auto", "sklearn"] = "auto",
) -> dict[str, Any]:
    """Predict ``embedding`` with ``model`` into the COG ``out`` (and ``confidence``), tracked in MLflow.

    ``model`` is a model.skops path or ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``;
    ``tracking_uri`` defaults to MLFLOW_TRACKING_URI, else ``sqlite:///<cwd>/mlflow.db``.
    ``task_runner="threads"`` predicts with ``n_jobs`` workers on this machine; ``"dask"`` maps groups
    of ``blocks_per_task`` windows over the Dask cluster at ``dask_address`` (None: a local cluster of
    ``n_jobs`` processes) and assembles one COG. ``engine``: ``"auto"`` (a random forest runs on lcmodel's
    compiled forest when that is faster, same map) or ``"sklearn"``.
    """
    from flows.tracking import PredictionRun

    logger = get_run_logger()
    with tempfile.TemporaryDirectory(prefix="lcmodel-model-") as workdir:
        resolved = resolve_model(model, workdir, tracking_uri)
        rule = check_compatibility(resolved["bundle_path"], embedding)
        logger.info("model %s fits %s (%s)", resolved["model_uri"], embedding, rule)
        identity = {k: v for k, v in resolved.items() if k != "bundle_path"}
        with interrupts_deferred():  # MLflow's store calls are not cut in the middle (flows/landcover.py)
            tracker = PredictionRun(experiment=experiment, tracking_uri=tracking_uri, model=identity,
                                    embedding_path=embedding,
                                    flow_run_id=str(flow_run.id) if flow_run.id else None)
        try:
            if task_runner == "dask":
                options = PredictionOptions(confidence_path=confidence, block_size=block_size, memory_mb=memory_mb,
                                            engine=engine)
                summary = predict_distributed(resolved["bundle_path"], embedding, out, options,
                                              dask_address=dask_address, blocks_per_task=blocks_per_task,
                                              n_workers=n_jobs)
            else:
                summary = predict_blocks(resolved["bundle_path"], embedding, out, confidence, block_size,
                                         n_jobs, memory_mb, engine)
            with interrupts_deferred():
                tracker.log_summary(summary)
        except BaseException as exc:
            with interrupts_deferred():
                tracker.finish(error=exc)
            raise
        with interrupts_deferred():
            tracker.finish()
    logger.info("%d pixels predicted at %.0f px/s -> %s (MLflow run %s)", summary["n_valid"],
                summary["pixels_per_s"], summary["map_path"], tracker.run_id)
    return {**summary, **identity, "mlflow_run_id": tracker.run_id, "input_sha256": tracker.input_sha256}


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.predict MODEL EMBEDDING OUT [CONFIDENCE]``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (3, 4):
        print("usage: python -m flows.predict MODEL EMBEDDING OUT [CONFIDENCE]", file=sys.stderr)
        return 2
    try:
        result = landcover_predict(*argv)  # type: ignore[call-overload]  # positional CLI strings
    except LcmodelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"map: {result['map_path']}\nMLflow run: {result['mlflow_run_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
