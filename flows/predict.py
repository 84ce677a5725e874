"""The `landcover-predict` Prefect flow: a model (bundle or registry URI) applied to an embedding raster.

Steps, one task each: resolve the model (a ``model.joblib`` path, or ``models:/NAME@ALIAS`` /
``models:/NAME/VERSION`` downloaded from the MLflow registry), check the raster against it (band count and
names, CRS, nodata rule) before any block is read, predict block-wise into a COG plus a confidence COG. One
MLflow run records the model version (tags ``model_name``, ``model_version``, ``model_uri``; MLflow 3 also
lists the logged model among the run's inputs), the input's SHA-256, pixels and hectares per class, time and
pixels per second.

Run it with ``python -m flows.predict MODEL EMBEDDING OUT`` or through the ``predict`` deployment
(deployments/prefect.yaml).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")  # 2-core machines

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from flows.landcover import retry_on_io_error  # noqa: E402
from lcmodel.errors import LcmodelError  # noqa: E402

__all__ = ["landcover_predict"]

_IO_RETRIES: dict[str, Any] = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
                                   retry_condition_fn=retry_on_io_error, persist_result=False)


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
            f"model {model!r} is neither a bundle file nor a registry URI; give a model.joblib path or "
            "models:/NAME@ALIAS"
        )
    return {"bundle_path": str(path), "model_uri": str(path.resolve()), "bundle_sha256": sha256_file(path)}


@task(name="check_compatibility", **_IO_RETRIES)
def check_compatibility(bundle_path: str, embedding: str) -> str:
    """Band count and names, CRS and nodata rule of the raster against the model, before any block."""
    from lcmodel.io import open_raster
    from lcmodel.model_io import check_compatible, load_bundle

    bundle = load_bundle(bundle_path)
    with open_raster(embedding, "embedding raster") as src:
        rule = check_compatible(bundle, src)
    return rule.describe()


@task(name="predict_blocks", **_IO_RETRIES)
def predict_blocks(bundle_path: str, embedding: str, out: str, confidence: str | None,
                   block_size: int | None, n_jobs: int, memory_mb: int) -> dict[str, Any]:
    """Block-wise prediction into a COG (and a confidence COG); the JSON-friendly summary."""
    from lcmodel.model_io import load_bundle
    from lcmodel.pipeline import summary_to_dict
    from lcmodel.predict import predict_raster

    bundle = load_bundle(bundle_path)
    summary = predict_raster(bundle, embedding, out, confidence_path=confidence, block_size=block_size,
                             n_jobs=n_jobs, memory_mb=memory_mb)
    return summary_to_dict(summary, bundle.class_table)


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
) -> dict[str, Any]:
    """Predict ``embedding`` with ``model`` into the COG ``out`` (and ``confidence``), tracked in MLflow.

    ``model`` is a model.joblib path or ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``;
    ``tracking_uri`` defaults to MLFLOW_TRACKING_URI, else ``sqlite:///<cwd>/mlflow.db``.
    """
    from flows.tracking import PredictionRun

    logger = get_run_logger()
    with tempfile.TemporaryDirectory(prefix="lcmodel-model-") as workdir:
        resolved = resolve_model(model, workdir, tracking_uri)
        rule = check_compatibility(resolved["bundle_path"], embedding)
        logger.info("model %s fits %s (%s)", resolved["model_uri"], embedding, rule)
        identity = {k: v for k, v in resolved.items() if k != "bundle_path"}
        tracker = PredictionRun(experiment=experiment, tracking_uri=tracking_uri, model=identity,
                                embedding_path=embedding,
                                flow_run_id=str(flow_run.id) if flow_run.id else None)
        try:
            summary = predict_blocks(resolved["bundle_path"], embedding, out, confidence, block_size,
                                     n_jobs, memory_mb)
            tracker.log_summary(summary)
        except BaseException as exc:
            tracker.finish(error=exc)
            raise
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
        result = landcover_predict(*argv)
    except LcmodelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"map: {result['map_path']}\nMLflow run: {result['mlflow_run_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
