"""The plain `lcmodel` commands: parse, call the library, print. Nothing else.

sample, train, predict (a bundle path), run --plain, demo --plain, validation-sample, assess, suggest. This module never
imports prefect, mlflow or flows: the `lcmodel` console script is :mod:`flows.cli`, which adds the
orchestration commands (run and demo through the Prefect flow, predict from the MLflow registry, promote,
compare) to a group built by :func:`make_cli`. ``python -m lcmodel.cli`` runs the plain commands alone.

A user's mistake (any :class:`~lcmodel.errors.LcmodelError`) prints one line on stderr and exits 2, with no
traceback. Warnings from the library print as one ``warning:`` line each.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lcmodel.console import OneLineErrorGroup, Progress, candidate_printer, run_command, show_warning
from lcmodel.errors import ConfigError, LcmodelError

__all__ = [
    "PLAIN_COMMANDS",
    "PLAIN_OPTION",
    "TRACKING_URI_OPTION",
    "OneLineErrorGroup",
    "Progress",
    "candidate_printer",
    "cli",
    "demo_options",
    "load_run_config",
    "main",
    "make_cli",
    "predict_bundle",
    "predict_options",
    "print_demo_outputs",
    "print_prediction",
    "print_training",
    "run_command",
    "run_options",
    "run_plain",
    "write_demo_inputs",
]

log = logging.getLogger("lcmodel.cli")

_F = TypeVar("_F", bound=Callable[..., Any])
#: the plain commands' answer to what only the `lcmodel` console script (flows.cli) does
_PLAIN_ONLY = "python -m lcmodel.cli runs the plain commands only: use the `lcmodel` command (flows.cli)"
_FLOW_SECTION_HINT = "if it is a setting of the Prefect flow"


def load_run_config(config: str | Path) -> Any:
    """The config of a CONFIG argument, validated as the group's config model (see :func:`make_cli`)."""
    from lcmodel.config import RunConfig, load_config
    from lcmodel.pipeline import refuse_inputs_among_outputs

    ctx = click.get_current_context(silent=True)
    model = (ctx.find_root().obj or {}).get("config_model", RunConfig) if ctx is not None else RunConfig
    try:
        cfg = load_config(config, model=model)
    except ConfigError as exc:
        if model is RunConfig and str(exc).startswith("unknown config key") and "." not in str(exc).split("'")[1]:
            # a whole section the library does not know: most likely one the orchestration layer reads
            raise ConfigError(f"{exc}; {_FLOW_SECTION_HINT}, {_PLAIN_ONLY}") from None
        raise
    refuse_inputs_among_outputs({"config file": Path(config)}, cfg.output.dir)
    return cfg


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
def sample(config: str) -> None:
    """Write the training table (reference points -> embedding values -> split)."""
    from lcmodel import pipeline

    cfg = load_run_config(config)
    table = pipeline.sample(cfg, progress=Progress("sampling reference")).table.path
    stats = json.loads(pipeline.paths_for(cfg).sample_stats.read_text())
    bands = stats.pop("bands", None)
    click.echo(f"training table: {table}")
    click.echo("  " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    if bands:
        dropped = ", ".join(f"{d['index']} ({d['name']}: {d['why']})" for d in bands["dropped"])
        click.echo(f"  bands: {bands['n_used']} of {bands['n_source_bands']} used ({bands['selected_by']})"
                   + (f"; dropped {dropped}" if dropped else ""))


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
def train(config: str) -> None:
    """Sample, tune, evaluate, refit; write the model bundle, metrics and report."""
    from lcmodel import pipeline

    cfg = load_run_config(config)
    bundle = pipeline.train(cfg, callback=candidate_printer(), progress=Progress("tuning candidates"))
    print_training(cfg, bundle)


def print_training(cfg: Any, bundle: Path) -> None:
    """The bundle path, the test figures and the report path of a training run."""
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


TRACKING_URI_OPTION = click.option(
    "--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder].")


def predict_options(command: _F) -> _F:
    """The arguments of `lcmodel predict` (the plain command and flows.cli's take the same)."""
    decorators = [
        click.option("--model", "model", required=True,
                     help="Model bundle (model.skops), or a registered model: models:/NAME@ALIAS, "
                          "models:/NAME/VERSION."),
        click.option("--embedding", required=True, type=click.Path(dir_okay=False), help="Embedding raster."),
        click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output map (COG)."),
        click.option("--confidence", type=click.Path(dir_okay=False), default=None,
                     help="Confidence raster (COG)."),
        click.option("--block-size", type=int, default=None, help="Block side in pixels (default: from memory)."),
        click.option("--n-jobs", type=int, default=1, show_default=True,
                     help="Parallel workers (threads for a random forest, else processes)."),
        click.option("--memory-mb", type=int, default=1024, show_default=True,
                     help="Memory per worker for blocks."),
        click.option("--engine", type=click.Choice(["auto", "sklearn"]), default="auto", show_default=True,
                     help="auto: a random forest runs on lcmodel's compiled forest when that is faster (same "
                          "map); sklearn: the estimator's own predict_proba."),
        click.option("--trust-model", is_flag=True,
                     help="Load a bundle written by an older lcmodel as a pickle (model.joblib), once: loading a "
                          "pickle runs code from the file, so only for a file you made yourself."),
        TRACKING_URI_OPTION,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


@click.command()
@predict_options
def predict(model: str, embedding: str, out: str, confidence: str | None, block_size: int | None, n_jobs: int,
            memory_mb: int, engine: str, trust_model: bool, tracking_uri: str | None) -> None:
    """Predict a whole embedding raster block by block into a Cloud-Optimized GeoTIFF.

    MODEL is a bundle path here (registry references, models:/NAME@ALIAS, need the `lcmodel` command).
    Resumable: rerun the same command after a crash and only the unfinished blocks are predicted.
    """
    from lcmodel.model_io import load_bundle

    if model.startswith("models:/"):
        raise LcmodelError(f"model {model!r} is a registry reference; {_PLAIN_ONLY}, or give a bundle path")
    predict_bundle(load_bundle(model, trust=trust_model), embedding, out, confidence=confidence,
                   block_size=block_size, n_jobs=n_jobs, memory_mb=memory_mb, engine=engine)


def predict_bundle(bundle: Any, embedding: str, out: str, *, confidence: str | None, block_size: int | None,
                   n_jobs: int, memory_mb: int, engine: str) -> None:
    """`lcmodel predict` once the bundle is loaded: predict the raster with progress, print the summary."""
    from lcmodel.pipeline import refuse_input_as_output, summary_to_dict
    from lcmodel.predict import predict_raster

    refuse_input_as_output({"embedding raster": embedding}, {"output map (--out)": out,
                                                            "confidence raster (--confidence)": confidence})
    summary = predict_raster(bundle, embedding, out, confidence_path=confidence, block_size=block_size,
                             n_jobs=n_jobs, memory_mb=memory_mb, progress=Progress("predicting blocks"),
                             engine=engine)
    print_prediction(summary_to_dict(summary, bundle.class_table))


def print_prediction(data: dict[str, Any]) -> None:
    """The map and confidence paths, pixel counts, speed, and pixels and hectares per class."""
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


def run_plain(cfg: Any) -> None:
    """`lcmodel run --plain`: the pipeline's stages in order, with progress; print training and prediction."""
    from lcmodel import pipeline

    data = pipeline.run(cfg, callback=candidate_printer(), progress=Progress("tuning candidates"),
                        predict_progress=Progress("predicting blocks"))
    print_training(cfg, pipeline.paths_for(cfg).bundle)
    print_prediction(data)


PLAIN_OPTION = click.option("--plain", is_flag=True,
                            help="Run the stages directly, without Prefect orchestration or MLflow tracking.")


def run_options(command: _F) -> _F:
    """The arguments of `lcmodel run` (the plain command and flows.cli's take the same)."""
    return click.argument("config", type=click.Path(dir_okay=False))(PLAIN_OPTION(command))


@click.command()
@run_options
def run(config: str, plain: bool) -> None:
    """Train, then predict the config's embedding into OUTPUT/map.tif and OUTPUT/confidence.tif.

    Here with --plain only: the Prefect flow `landcover`, tracked in MLflow, is the `lcmodel` command's.
    """
    refusal = f"`run` without --plain runs the Prefect flow; {_PLAIN_ONLY}, or add --plain"
    try:
        cfg = load_run_config(config)
    except ConfigError as exc:
        if not plain and _FLOW_SECTION_HINT in str(exc):
            raise LcmodelError(refusal) from None  # a flow's config: the flow is what was asked for
        raise
    if not plain:
        raise LcmodelError(refusal)
    run_plain(cfg)


def demo_options(command: _F) -> _F:
    """The arguments of `lcmodel demo` (the plain command and flows.cli's take the same)."""
    decorators = [
        click.option("--dir", "directory", default="demo", show_default=True, type=click.Path(file_okay=False),
                     help="Folder for the synthetic inputs and the run's outputs."),
        click.option("--size", default=384, show_default=True, help="Embedding size in pixels."),
        click.option("--years", is_flag=True, help="Three years of embeddings with planted change: every year "
                     "mapped, and the change between them."),
        PLAIN_OPTION,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def write_demo_inputs(directory: str, size: int, sections: dict[str, Any] | None = None, *,
                      years: bool = False) -> Any:
    """Write the demo's synthetic inputs and config (plus ``sections``) into ``directory`` (``years``: the
    multi-year demo); print the config path; return its config."""
    from lcmodel.demo import make_demo_data
    from lcmodel.demo_years import make_demo_years

    cfg_path = (make_demo_years if years else make_demo_data)(directory, size=size, sections=sections)
    click.echo(f"demo inputs and config: {cfg_path}")
    return load_run_config(cfg_path)


def print_demo_outputs(cfg: Any) -> None:
    """Where the demo's map, quicklook and report are."""
    out = Path(cfg.output.dir)
    click.echo(f"map: {out / 'map.tif'} (quicklook: {out / 'map_quicklook.png'})")
    if cfg.mapped_years:
        click.echo(f"maps per year: {', '.join(str(out / f'map_{y}.tif') for y in cfg.mapped_years)}; "
                   f"change between years: {out / 'change'}")
    click.echo(f"report: {out / 'report.md'}")


@click.command()
@demo_options
def demo(directory: str, size: int, years: bool, plain: bool) -> None:
    """Write a small synthetic case into DIR and run the whole pipeline on it (here with --plain only)."""
    if not plain:
        raise LcmodelError(f"`demo` without --plain runs the Prefect flow; {_PLAIN_ONLY}, or add --plain")
    cfg = write_demo_inputs(directory, size, years=years)
    run_plain(cfg)
    print_demo_outputs(cfg)


# --- accuracy: validation sample design and assessment (lcmodel.accuracy) -------------------------------
@click.command("validation-sample")
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
    notice = design.notice(n)
    if notice is not None:
        click.echo(f"note: {notice}", err=True)
    if design.n_from_target is not None:
        click.echo(f"sample size {design.n_from_target} for a standard error of {target_se:g} of overall accuracy")
    click.echo(f"{len(table)} points written to {path} (fill the 'reference' column, then `lcmodel assess`)")
    for value, pixels, count in zip(design.classes, design.map_pixels, design.allocation, strict=True):
        click.echo(f"  {value:>6} {pixels:>14,} px {count:>6} points")


@click.command()
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
    def num(value: float, spec: str) -> str:
        return format(value, spec) if math.isfinite(value) else "undefined"

    click.echo(f"overall accuracy {num(result['overall_accuracy'], '.4f')} +/- "
               f"{num(result['overall_accuracy_ci95'], '.4f')} (95 % CI, {result['n_samples']} points)")
    if result.get("not_assessed"):  # map classes without a labelled point: the estimate covers the others
        click.echo(f"  note: {result['scope']}")
    unit = "ha" if result.get("pixel_area_m2") else "px"
    reasons = dict.fromkeys(result.get("undefined", {}).values())
    for key, c in result["per_class"].items():
        area = c["area_ha"] if unit == "ha" else c["area_pixels"]
        ci = c["area_ha_ci95"] if unit == "ha" else c["area_pixels_ci95"]
        click.echo(f"  {key:>6} user's {num(c['users_accuracy'], '.3f')} +/- {num(c['users_ci95'], '.3f')}  "
                   f"producer's {num(c['producers_accuracy'], '.3f')} +/- {num(c['producers_ci95'], '.3f')}  "
                   f"area {num(area, ',.1f')} +/- {num(ci, ',.1f')} {unit}")
        reasons.update(dict.fromkeys(c.get("undefined", {}).values()))
    for reason in reasons:
        click.echo(f"  undefined: {reason}")


@click.command()
@click.argument("map_path", metavar="MAP", type=click.Path(dir_okay=False))
@click.option("--n", "n", type=int, default=200, show_default=True, help="Points wanted.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="next.csv or next.gpkg")
@click.option("--by", "by", default=None, help="margin, entropy, di or both [default: both when di.tif is beside "
              "MAP, else the uncertainty alone].")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the tie-breaks.")
@click.option("--exclude-near", type=click.Path(dir_okay=False), default=None,
              help="Labelled/training points: their blocks are skipped [default: the run's training_table.csv].")
@click.option("--block-size", type=float, default=None,
              help="Block side in map CRS units [default: the run's spatial blocks, else 32 pixels].")
def suggest(map_path: str, n: int, out: str, by: str | None, seed: int, exclude_near: str | None,
            block_size: float | None) -> None:
    """Points worth labelling next: MAP's most uncertain / unfamiliar pixels, one per block, by class."""
    from lcmodel.pipeline import refuse_input_as_output
    from lcmodel.suggest import check_output, find_inputs, suggest_points, write_suggestion

    if n < 1:
        raise ConfigError(f"--n {n} asks for no point; give --n 1 or more")
    check_output(out)
    inputs = find_inputs(map_path, by=by, exclude_near=exclude_near, block_size=block_size)
    refuse_input_as_output({"map": map_path, "points to avoid (--exclude-near)": inputs.exclude},
                           {"output (--out)": out})
    result = suggest_points(inputs, n, seed=seed, progress=Progress("scoring blocks"))
    path = write_suggestion(result, out)
    layers = [inputs.uncertainty[0]] if inputs.uncertainty else []
    layers += ["di"] if inputs.di else []
    click.echo(f"{len(result.table)} points written to {path} (by {inputs.by}: {' + '.join(layers)}; "
               f"blocks of {inputs.block_size:g} from {inputs.block_source})")
    if inputs.exclude is not None:
        click.echo(f"  {result.n_excluded_blocks} blocks skipped: they hold points of {inputs.exclude}")
    if len(result.table) < n:
        click.echo(f"note: only {result.n_candidate_blocks} free blocks; lower --block-size for more points", err=True)
    for value, count in result.allocation.items():
        click.echo(f"  {value:>6} {count:>6} points")
    click.echo("fill the 'label' column with reference codes, then list the file under reference.extra_points")


#: the plain commands, in the order of this module
PLAIN_COMMANDS: tuple[click.Command, ...] = (sample, train, predict, run, demo, validation_sample, assess,
                                              suggest)


def make_cli(*commands: click.Command, config_model: type | None = None) -> click.Group:
    """A new `lcmodel` group: the plain commands, then ``commands`` (one of the same name replaces the plain one).

    Each call builds its own group, so the orchestration CLI (flows.cli) adds its commands to its copy and
    :data:`cli` stays the plain group. ``config_model`` is the config class CONFIG arguments are validated as
    (default :class:`~lcmodel.config.RunConfig`; flows.cli gives its FlowConfig, which adds ``tracking``).
    """
    from lcmodel.config import RunConfig

    @click.group(cls=OneLineErrorGroup, context_settings={"obj": {"config_model": config_model or RunConfig}})
    @click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
    @click.version_option(package_name="lcmodel")
    def cli(verbose: int) -> None:
        """Land-cover maps from satellite geoembeddings."""
        level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("lcmodel").setLevel(min(level, logging.INFO))
        warnings.showwarning = show_warning

    for command in (*PLAIN_COMMANDS, *commands):
        cli.add_command(command)
    return cli


#: the plain `lcmodel` group (``python -m lcmodel.cli``)
cli = make_cli()


def main() -> None:
    """``python -m lcmodel.cli``: the plain commands (the `lcmodel` console script is flows.cli's main)."""
    run_command(cli)


if __name__ == "__main__":
    main()
