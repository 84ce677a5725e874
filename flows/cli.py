"""The `lcmodel` console command: the plain commands of :mod:`lcmodel.cli` plus the orchestration ones.

- ``run CONFIG`` and ``demo``: through the Prefect flow `landcover`, tracked in MLflow (the plain pipeline with
  --plain);
- ``predict --model models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``): the bundle of a registered model
  version, downloaded from the MLflow registry (a bundle path works as in the plain command);
- ``promote NAME VERSION`` and ``compare EXPERIMENT``: the registry's aliases and the experiment's runs.

Prefect and MLflow are imported by the commands that use them only, so the plain commands start as fast here
as in ``python -m lcmodel.cli``. A user's mistake is one ``error:`` line and exit code 2, as there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from flows.config import FlowConfig
from lcmodel.cli import (
    TRACKING_URI_OPTION,
    demo_options,
    load_run_config,
    make_cli,
    predict_bundle,
    predict_options,
    print_demo_outputs,
    print_prediction,
    print_training,
    run_command,
    run_options,
    run_plain,
    write_demo_inputs,
)
from lcmodel.io import ensure_output_dir

__all__ = ["cli", "main", "DEMO_TRACKING"]

#: the demo's tracking: its own experiment and registered model, promoted when it beats the champion
DEMO_TRACKING = {"experiment": "lcmodel-demo", "register_as": "lcmodel-demo", "promote_if_better": True}


def _run_flow(cfg: Any) -> dict[str, Any]:
    from flows.landcover import landcover
    from flows.tasks import quiet_user_errors

    quiet_user_errors()
    return landcover(cfg)


def _run(cfg: Any, plain: bool) -> None:
    from lcmodel import pipeline

    if plain:
        if getattr(cfg.prediction, "task_runner", "threads") == "dask":
            logging.getLogger("lcmodel.cli").warning(
                "prediction.task_runner 'dask' applies to the Prefect flow only; --plain predicts with local workers")
        run_plain(cfg)
        return
    import os

    from flows.credentials import check_environment_uri

    check_environment_uri(os.environ)  # an MLflow URI that cannot work: one line, before any compute
    # the inputs and the output folder, checked before the Prefect server starts (the flow checks them again)
    pipeline.source_files(cfg, write=False)
    ensure_output_dir(cfg.output.dir)
    result = _run_flow(cfg)
    print_training(cfg, Path(result["bundle"]))
    print_prediction(json.loads(pipeline.paths_for(cfg).prediction.read_text()))
    click.echo(f"MLflow run: {result['mlflow_run_id']}")
    if not result.get("executed"):
        click.echo("nothing changed since the last run in this folder: every stage was reused (the MLflow run's tag "
                   "lcmodel.cached_from_runs names the run that produced them)")
    if result.get("version") and result.get("reused_from_run"):
        click.echo(f"model: models:/{result['name']}/{result['version']} (this bundle is already registered; "
                   "nothing new registered)")
    elif result.get("version"):
        click.echo(f"registered model: models:/{result['name']}/{result['version']} (alias 'candidate')")
    if result.get("promotion"):
        click.echo(f"champion: {result['promotion']}")


@click.command()
@run_options
def run(config: str, plain: bool) -> None:
    """Train, then predict the config's embedding into OUTPUT/map.tif and OUTPUT/confidence.tif.

    Runs the Prefect flow `landcover` with MLflow tracking (embedded defaults: a temporary local Prefect
    server and ./mlflow.db), unless --plain.
    """
    _run(load_run_config(config), plain)


@click.command()
@demo_options
def demo(directory: str, size: int, years: bool, plain: bool) -> None:
    """Write a small synthetic case into DIR and run the whole flow on it."""
    cfg = write_demo_inputs(directory, size, sections={"tracking": DEMO_TRACKING}, years=years)
    _run(cfg, plain)
    print_demo_outputs(cfg)
    if not plain:
        click.echo("MLflow UI: mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 "
                   "(then open http://127.0.0.1:5000)")


@click.command()
@predict_options
def predict(model: str, embedding: str, out: str, confidence: str | None, block_size: int | None, n_jobs: int,
            memory_mb: int, engine: str, trust_model: bool, tracking_uri: str | None) -> None:
    """Predict a whole embedding raster block by block into a Cloud-Optimized GeoTIFF.

    MODEL is a bundle path or a registry reference (models:/NAME@ALIAS, models:/NAME/VERSION).
    Resumable: rerun the same command after a crash and only the unfinished blocks are predicted.
    """
    predict_bundle(_load_model(model, tracking_uri, trust=trust_model), embedding, out, confidence=confidence,
                   block_size=block_size, n_jobs=n_jobs, memory_mb=memory_mb, engine=engine)


def _load_model(model: str, tracking_uri: str | None, *, trust: bool = False) -> Any:
    """A bundle from a path, or from the MLflow registry for ``models:/`` URIs (imports mlflow only then).

    Nothing from the file runs (a pickled bundle of an older lcmodel loads only with ``trust``); a registered
    bundle must have the SHA-256 that training recorded in the tracking store.
    """
    from lcmodel.model_io import load_bundle

    if not model.startswith("models:/"):
        return load_bundle(model, trust=trust)
    import tempfile

    from flows.tracking import download_registered_bundle

    with tempfile.TemporaryDirectory(prefix="lcmodel-model-") as tmp:
        path, info = download_registered_bundle(model, tmp, tracking_uri)
        click.echo(f"model: {model} = {info['model_name']} version {info['model_version']}", err=True)
        return load_bundle(path, expected_sha256=info["bundle_sha256"])


@click.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="champion", show_default=True, help="The alias to point at VERSION.")
@TRACKING_URI_OPTION
def promote(name: str, version: str, alias: str, tracking_uri: str | None) -> None:
    """Point ALIAS of registered model NAME at VERSION (e.g. make it the champion)."""
    from flows.tracking import promote as _promote

    done = _promote(name, version, alias, tracking_uri)
    was = f" (was version {done['previous']})" if done["previous"] else ""
    click.echo(f"models:/{name}@{alias} -> version {version}{was}")


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None or value == "" else format(value, fmt)


@click.command()
@click.argument("experiment")
@TRACKING_URI_OPTION
def compare(experiment: str, tracking_uri: str | None) -> None:
    """The training runs of EXPERIMENT side by side, best test macro-F1 first."""
    from flows.tracking import compare_runs

    rows = compare_runs(experiment, tracking_uri)
    if not rows:
        click.echo(f"experiment {experiment!r} has no training runs yet")
        return
    head = ("run", "name", "method", "n_sample", "reference", "embedding", "test_F1", "cv_F1",
            "tuning_s", "px/s", "model")
    table = [head] + [(
        r["run_id"][:8], r["run_name"][:24], r["method"], r["n_sample"], r["reference_kind"],
        r["embedding"][:28], _cell(r["test_macro_f1"], ".4f"), _cell(r["cv_macro_f1"], ".4f"),
        _cell(r["tuning_time_s"], ".1f"), _cell(r["predict_px_per_s"], ",.0f"), r["model"] or "-",
    ) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    numeric = {3, 6, 7, 8, 9}
    for row in table:
        click.echo("  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())


#: the `lcmodel` group: the plain commands, with run, demo and predict replaced by the ones above
cli = make_cli(run, demo, predict, promote, compare, config_model=FlowConfig)


def main() -> None:
    """Console entry point (the `lcmodel` script): child processes (Prefect's temporary server, worker pools)
    end with it, and SIGTERM unwinds as Ctrl-C does (:func:`lcmodel.cli.run_command`)."""
    run_command(cli)


if __name__ == "__main__":
    main()
