"""The `lcmodel` command line: parses, calls the library, prints. Nothing else.

A user's mistake (any :class:`~lcmodel.errors.LcmodelError`) prints one line on stderr and exits 2, with no
traceback. Warnings from the library print as one ``warning:`` line each.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lcmodel.errors import LcmodelError, LcmodelWarning

log = logging.getLogger("lcmodel.cli")


class Progress:
    """A progress callback ``(done, total)``: a bar in a terminal, a plain line every 10 % otherwise."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        frac = done / total
        elapsed = time.monotonic() - self.start
        if self.tty:
            width = 30
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            end = "\n" if done >= total else ""
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {elapsed:6.1f}s{end}")
            self.stream.flush()
        else:
            tenth = int(frac * 10)
            if tenth != self._last_tenth or done >= total:
                self._last_tenth = tenth
                self.stream.write(f"{self.label}: {done}/{total} ({frac:.0%}, {elapsed:.1f}s)\n")
                self.stream.flush()


def _candidate_printer() -> Callable[[dict[str, Any]], None]:
    def show(info: dict[str, Any]) -> None:
        log.debug("candidate %s", info)

    return show


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    if issubclass(category, LcmodelWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


class _Group(click.Group):
    """Turns LcmodelError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LcmodelError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="lcmodel")
def cli(verbose: int) -> None:
    """Land-cover maps from satellite geoembeddings."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lcmodel").setLevel(min(level, logging.INFO))
    warnings.showwarning = _show_warning


def _load(config: str) -> Any:
    from lcmodel.config import load_config

    return load_config(config)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
def sample(config: str) -> None:
    """Write the training table (reference points -> embedding values -> split)."""
    from lcmodel import pipeline

    cfg = _load(config)
    table = pipeline.sample(cfg, progress=Progress("sampling reference")).table.path
    stats = json.loads(pipeline.paths_for(cfg).sample_stats.read_text())
    click.echo(f"training table: {table}")
    click.echo("  " + ", ".join(f"{k}={v}" for k, v in stats.items()))


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
def train(config: str) -> None:
    """Sample, tune, evaluate, refit; write the model bundle, metrics and report."""
    from lcmodel import pipeline

    cfg = _load(config)
    bundle = pipeline.train(cfg, callback=_candidate_printer(), progress=Progress("tuning candidates"))
    _print_training(cfg, bundle)


def _print_training(cfg: Any, bundle: Path) -> None:
    from lcmodel import pipeline

    out = pipeline.paths_for(cfg)
    metrics = json.loads(out.metrics.read_text())
    test = metrics["test"]
    click.echo(f"model bundle: {bundle}")
    click.echo(
        f"test (model tuned on the training part): overall accuracy {test['overall_accuracy']:.3f}, "
        f"macro-F1 {test['macro_f1']:.3f}, kappa {test['kappa']:.3f}"
    )
    click.echo(f"report: {out.root / 'report.md'}")


_TRACKING_URI = click.option(
    "--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder].")


@cli.command()
@click.option("--model", "model", required=True,
              help="Model bundle (model.joblib), or a registered model: models:/NAME@ALIAS, models:/NAME/VERSION.")
@click.option("--embedding", required=True, type=click.Path(dir_okay=False), help="Embedding raster.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output map (COG).")
@click.option("--confidence", type=click.Path(dir_okay=False), default=None, help="Confidence raster (COG).")
@click.option("--block-size", type=int, default=None, help="Block side in pixels (default: from memory).")
@click.option("--n-jobs", type=int, default=1, show_default=True,
              help="Parallel workers (threads for a random forest, else processes).")
@click.option("--memory-mb", type=int, default=1024, show_default=True, help="Memory per worker for blocks.")
@click.option("--engine", type=click.Choice(["auto", "sklearn"]), default="auto", show_default=True,
              help="auto: a random forest runs on lcmodel's compiled forest when that is faster (same map); "
                   "sklearn: the estimator's own predict_proba.")
@click.option("--trust-model", is_flag=True,
              help="Load the model even if its SHA-256 cannot be verified against its side file (it is a "
                   "pickle: loading runs code).")
@_TRACKING_URI
def predict(model: str, embedding: str, out: str, confidence: str | None, block_size: int | None, n_jobs: int,
            memory_mb: int, engine: str, trust_model: bool, tracking_uri: str | None) -> None:
    """Predict a whole embedding raster block by block into a Cloud-Optimized GeoTIFF.

    MODEL is a bundle path or a registry reference (models:/NAME@ALIAS, models:/NAME/VERSION).
    Resumable: rerun the same command after a crash and only the unfinished blocks are predicted.
    """
    from lcmodel.pipeline import summary_to_dict
    from lcmodel.predict import predict_raster

    bundle = _load_model(model, tracking_uri, trust=trust_model)
    summary = predict_raster(bundle, embedding, out, confidence_path=confidence, block_size=block_size,
                             n_jobs=n_jobs, memory_mb=memory_mb, progress=Progress("predicting blocks"),
                             engine=engine)
    _print_prediction(summary_to_dict(summary, bundle.class_table))


def _load_model(model: str, tracking_uri: str | None, *, trust: bool = False) -> Any:
    """A bundle from a path, or from the MLflow registry for ``models:/`` URIs (imports mlflow only then).

    Either way the bundle's SHA-256 is checked against its side file unless ``trust``.
    """
    from lcmodel.model_io import load_bundle

    if not model.startswith("models:/"):
        return load_bundle(model, trust=trust)
    import tempfile

    from flows.tracking import download_registered_bundle

    with tempfile.TemporaryDirectory(prefix="lcmodel-model-") as tmp:
        path, info = download_registered_bundle(model, tmp, tracking_uri)
        click.echo(f"model: {model} = {info['model_name']} version {info['model_version']}", err=True)
        return load_bundle(path, trust=trust)


def _print_prediction(data: dict[str, Any]) -> None:
    click.echo(f"map: {data['map_path']}")
    if data.get("confidence_path"):
        click.echo(f"confidence: {data['confidence_path']}")
    click.echo(
        f"{data['n_valid']:,} pixels predicted, {data['n_nodata']:,} nodata, "
        f"{data['pixels_per_s']:,.0f} px/s ({data['elapsed_s']:.1f} s)"
    )
    names = data.get("class_names", {})
    areas = data.get("class_area_ha", {})
    for value, count in sorted(data["class_counts"].items(), key=lambda kv: int(kv[0])):
        area = f"  {areas[value]:,.1f} ha" if value in areas else ""
        click.echo(f"  {value:>4} {names.get(value, value):<28} {count:>12,} px{area}")


class _UserErrorFilter(logging.Filter):
    """Drop the traceback from Prefect's log records of a user's mistake: the message line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], LcmodelError):
            record.exc_info = None
            record.exc_text = None
        return True


def _run_flow(cfg: Any) -> dict[str, Any]:
    from flows.landcover import landcover

    quiet = _UserErrorFilter()
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(quiet)
    return landcover(cfg)


def _run(cfg: Any, plain: bool) -> None:
    from lcmodel import pipeline

    if plain:
        data = pipeline.run(cfg, callback=_candidate_printer(), progress=Progress("tuning candidates"),
                            predict_progress=Progress("predicting blocks"))
        _print_training(cfg, pipeline.paths_for(cfg).bundle)
        _print_prediction(data)
        return
    result = _run_flow(cfg)
    _print_training(cfg, Path(result["bundle"]))
    _print_prediction(json.loads(pipeline.paths_for(cfg).prediction.read_text()))
    click.echo(f"MLflow run: {result['mlflow_run_id']}")
    if result.get("version"):
        click.echo(f"registered model: models:/{result['name']}/{result['version']} (alias 'candidate')")
    if result.get("promotion"):
        click.echo(f"champion: {result['promotion']}")


_PLAIN = click.option("--plain", is_flag=True,
                      help="Run the stages directly, without Prefect orchestration or MLflow tracking.")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@_PLAIN
def run(config: str, plain: bool) -> None:
    """Train, then predict the config's embedding into OUTPUT/map.tif and OUTPUT/confidence.tif.

    Runs the Prefect flow `landcover` with MLflow tracking (embedded defaults: a temporary local Prefect
    server and ./mlflow.db), unless --plain.
    """
    _run(_load(config), plain)


@cli.command()
@click.option("--dir", "directory", default="demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the synthetic inputs and the run's outputs.")
@click.option("--size", default=384, show_default=True, help="Embedding size in pixels.")
@_PLAIN
def demo(directory: str, size: int, plain: bool) -> None:
    """Write a small synthetic case into DIR and run the whole flow on it."""
    from lcmodel.config import load_config
    from lcmodel.demo import make_demo_data

    cfg_path = make_demo_data(directory, size=size)
    click.echo(f"demo inputs and config: {cfg_path}")
    cfg = load_config(cfg_path)
    _run(cfg, plain)
    out = Path(cfg.output.dir)
    click.echo(f"map: {out / 'map.tif'} (quicklook: {out / 'map_quicklook.png'})")
    click.echo(f"report: {out / 'report.md'}")
    if not plain:
        click.echo("MLflow UI: mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 "
                   "(then open http://127.0.0.1:5000)")


# --- accuracy: validation sample design and assessment (lcmodel.accuracy) -------------------------------
@cli.command("validation-sample")
@click.argument("map_path", metavar="MAP", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="points.csv or points.gpkg")
@click.option("--n", "n", type=int, default=None, help="Total points (default: from --target-se).")
@click.option("--target-se", type=float, default=0.01, show_default=True,
              help="Target standard error of overall accuracy (used without --n).")
@click.option("--expected-ua", type=float, default=0.8, show_default=True,
              help="Expected user's accuracy of every class (used without --n).")
@click.option("--min-per-class", type=int, default=50, show_default=True, help="Smallest sample of a class.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed of the draw.")
@click.option("--exclude", type=int, multiple=True, help="Map value not to sample (repeatable).")
def validation_sample(map_path: str, out: str, n: int | None, target_se: float, expected_ua: float,
                      min_per_class: int, seed: int, exclude: tuple[int, ...]) -> None:
    """Draw a stratified random sample of MAP's pixels for people to label (Olofsson et al. 2014)."""
    from lcmodel.accuracy import design_sample, draw_validation_sample, write_sample

    design = design_sample(map_path, n=n, target_se=target_se, expected_users=expected_ua,
                           min_per_class=min_per_class, exclude=exclude)
    table, crs = draw_validation_sample(map_path, design, random_state=seed)
    path = write_sample(table, crs, out)
    if design.n_from_target is not None:
        click.echo(f"sample size {design.n_from_target} for a standard error of {target_se:g} of overall accuracy")
    click.echo(f"{len(table)} points written to {path} (fill the 'reference' column, then `lcmodel assess`)")
    for value, pixels, count in zip(design.classes, design.map_pixels, design.allocation, strict=True):
        click.echo(f"  {value:>6} {pixels:>14,} px {count:>6} points")


@cli.command()
@click.argument("map_path", metavar="MAP", type=click.Path(dir_okay=False))
@click.argument("labelled", metavar="LABELLED_POINTS", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None, help="Write the result as JSON.")
@click.option("--reference-column", default="reference", show_default=True, help="Column of the labels.")
def assess(map_path: str, labelled: str, out: str | None, reference_column: str) -> None:
    """Area-adjusted accuracy and class areas of MAP from LABELLED_POINTS (Olofsson et al. 2014)."""
    from lcmodel.accuracy import assess_labelled
    from lcmodel.io import write_json

    result = assess_labelled(map_path, labelled, reference_column=reference_column)
    if out:
        write_json(result, Path(out))
    click.echo(f"overall accuracy {result['overall_accuracy']:.4f} +/- {result['overall_accuracy_ci95']:.4f} "
               f"(95 % CI, {result['n_samples']} points)")
    unit = "ha" if result.get("pixel_area_m2") else "px"
    for key, c in result["per_class"].items():
        area = c["area_ha"] if unit == "ha" else c["area_pixels"]
        ci = c["area_ha_ci95"] if unit == "ha" else c["area_pixels_ci95"]
        click.echo(f"  {key:>6} user's {c['users_accuracy']:.3f} +/- {c['users_ci95']:.3f}  producer's "
                   f"{c['producers_accuracy']:.3f} +/- {c['producers_ci95']:.3f}  "
                   f"area {area:,.1f} +/- {ci:,.1f} {unit}")


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", default="champion", show_default=True, help="The alias to point at VERSION.")
@_TRACKING_URI
def promote(name: str, version: str, alias: str, tracking_uri: str | None) -> None:
    """Point ALIAS of registered model NAME at VERSION (e.g. make it the champion)."""
    from flows.tracking import promote as _promote

    done = _promote(name, version, alias, tracking_uri)
    was = f" (was version {done['previous']})" if done["previous"] else ""
    click.echo(f"models:/{name}@{alias} -> version {version}{was}")


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None or value == "" else format(value, fmt)


@cli.command()
@click.argument("experiment")
@_TRACKING_URI
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


def main() -> None:
    """Console entry point."""
    cli(prog_name="lcmodel")


if __name__ == "__main__":
    main()
