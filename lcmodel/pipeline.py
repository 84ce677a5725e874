"""The pipeline's stages, one function each, composed by the CLI and wrapped one per task by the Prefect flow.

Each stage reads its inputs from files, writes its outputs atomically into the run's output folder, and
returns the paths (or a small dict): stages pass references, never big arrays, so a flow can cache and
retry them one by one. Order:

    sample_reference -> prepare_points -> extract_samples -> make_training_table
    -> tune -> evaluate -> fit_final -> predict_map -> assess_map

``train(cfg)`` runs the first seven, ``run(cfg)`` all nine.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rasterio.crs import CRS

from lcmodel.classes import ClassTable, read_class_table
from lcmodel.config import RunConfig
from lcmodel.errors import InputFileError
from lcmodel.io import atomic_path, ensure_output_dir, json_ready, open_raster, output_lock, sha256_file, write_json

if TYPE_CHECKING:
    from lcmodel.predict import PredictionOptions

__all__ = [
    "RunPaths",
    "sample_reference",
    "prepare_points",
    "extract_samples",
    "make_training_table",
    "tune",
    "evaluate",
    "fit_final",
    "predict_map",
    "prediction_options",
    "record_prediction",
    "assess_map",
    "train",
    "run",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Callback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunPaths:
    """Where each stage writes, inside ``output.dir``."""

    root: Path

    @property
    def points(self) -> Path:
        return self.root / "reference_points.csv"

    @property
    def labelled(self) -> Path:
        return self.root / "points_labelled.csv"

    @property
    def class_table(self) -> Path:
        return self.root / "class_table.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples.csv"

    @property
    def sample_stats(self) -> Path:
        return self.root / "sample_stats.json"

    @property
    def training_table(self) -> Path:
        return self.root / "training_table.csv"

    @property
    def tuning(self) -> Path:
        return self.root / "best_params.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def bundle(self) -> Path:
        return self.root / "model.joblib"

    @property
    def map(self) -> Path:
        return self.root / "map.tif"

    @property
    def confidence(self) -> Path:
        return self.root / "confidence.tif"

    @property
    def prediction(self) -> Path:
        return self.root / "prediction.json"

    # --- accuracy: spatial blocks, test predictions, area-adjusted assessment, uncertainty rasters
    @property
    def spatial_blocks(self) -> Path:
        return self.root / "spatial_blocks.json"

    @property
    def test_predictions(self) -> Path:
        return self.root / "test_predictions.csv"

    @property
    def accuracy_assessment(self) -> Path:
        return self.root / "accuracy_assessment.json"

    @property
    def probabilities(self) -> Path:
        return self.root / "probabilities.tif"

    @property
    def margin(self) -> Path:
        return self.root / "margin.tif"

    @property
    def entropy(self) -> Path:
        return self.root / "entropy.tif"


def paths_for(cfg: RunConfig) -> RunPaths:
    return RunPaths(Path(cfg.output.dir))


def _write_points(table: pd.DataFrame, crs: CRS, path: Path) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    write_json({"crs_wkt": crs.to_wkt()}, path.with_suffix(".crs.json"))
    return path


def _read_points(path: Path) -> tuple[pd.DataFrame, CRS]:
    table = pd.read_csv(path)
    if "code" in table and table["code"].dtype.kind not in "iu":
        table["code"] = table["code"].astype(str)
    crs = CRS.from_wkt(json.loads(path.with_suffix(".crs.json").read_text())["crs_wkt"])
    return table, crs


def _class_table(cfg: RunConfig) -> ClassTable | None:
    c = cfg.classes
    if c.table is None:
        return None
    return read_class_table(
        c.table,
        code_column=c.code_column,
        value_column=c.value_column,
        name_column=c.name_column,
        color_column=c.color_column,
    )


def load_class_table(cfg: RunConfig) -> ClassTable:
    """The class table the run settled on (written by :func:`prepare_points`)."""
    return ClassTable.from_dict(json.loads(paths_for(cfg).class_table.read_text()))


# --------------------------------------------------------------------------------------------- stages
def sample_reference(cfg: RunConfig, progress: Progress | None = None) -> Path:
    """Reference points in their own CRS: stratified sample of a class raster, or the CSV's points."""
    from lcmodel.reference import load_reference

    out = paths_for(cfg)
    ensure_output_dir(out.root)
    points = load_reference(cfg.reference, random_state=cfg.sampling.random_state, progress=progress)
    log.info("reference: %d points from %s (%s)", len(points), cfg.reference.path.name, cfg.reference_kind)
    return _write_points(points.table, points.crs, out.points)


def prepare_points(cfg: RunConfig, points_path: Path) -> Path:
    """Reproject the points into the embedding's CRS and reclassify codes into class values."""
    from lcmodel.reference import ReferencePoints, check_overlap, reclassify, reproject_points, warn_crs_units

    out = paths_for(cfg)
    table, crs = _read_points(Path(points_path))
    with open_raster(cfg.embedding.path, "embedding raster") as src:
        dst_crs = src.crs
        bounds = tuple(src.bounds)
    if dst_crs is None:
        raise InputFileError(
            f"embedding raster {str(cfg.embedding.path)!r} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:32720)"
        )
    warn_crs_units(bounds, dst_crs, f"embedding raster {cfg.embedding.path.name!r}")
    source = ReferencePoints(table=table, crs=crs)
    with warnings.catch_warnings(record=True) as caught:  # shown only when the points do overlap
        warnings.simplefilter("always")
        points = reproject_points(source, dst_crs)
    check_overlap(source, points, bounds, str(cfg.embedding.path))
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    points, classes = reclassify(points, _class_table(cfg))
    write_json(classes.to_dict(), out.class_table)
    return _write_points(points.table, points.crs, out.labelled)


def extract_samples(cfg: RunConfig, labelled_path: Path) -> Path:
    """Embedding values at the points, one valid mask for features and labels, de-duplicated by pixel."""
    from lcmodel.dataset import build_samples
    from lcmodel.extract import extract_values

    out = paths_for(cfg)
    table, _ = _read_points(Path(labelled_path))
    extraction = extract_values(
        cfg.embedding.path,
        table["x"].to_numpy(),
        table["y"].to_numpy(),
        nodata=cfg.embedding.nodata,
        n_threads=cfg.n_jobs,
    )
    samples, stats = build_samples(table, extraction, dedupe=cfg.sampling.dedupe_pixels)
    write_json(stats, out.sample_stats)
    with atomic_path(out.samples) as tmp:
        samples.to_csv(tmp, index=False)
    log.info("samples: %s", stats)
    return out.samples


def make_training_table(cfg: RunConfig, samples_path: Path) -> Path:
    """Subsample to n_sample by original class, drop rare classes, stratified train/test split."""
    from lcmodel.dataset import (
        drop_rare_classes,
        read_training_table,
        split_train_test,
        subsample,
        write_training_table,
    )

    s = cfg.sampling
    samples = read_training_table(samples_path)
    df = subsample(samples, cfg.n_sample_effective, random_state=s.random_state)
    df, dropped = drop_rare_classes(df, s.min_class_fraction)
    blocks = _spatial_blocks(cfg, df)
    df = split_train_test(df, s.test_size, random_state=s.random_state, strategy=blocks["split"],
                          block_size=blocks["block_size"])
    write_json({**blocks, "dropped_classes": dropped}, paths_for(cfg).spatial_blocks)
    _warn_small_classes(df, cfg)
    path = write_training_table(df, paths_for(cfg).root)
    log.info("training table: %d rows (%d test); rare classes dropped: %s",
             len(df), (df["split"] == "test").sum(), dropped)
    return path


#: A class with fewer training rows than this (or than 2 x tuning.cv) gets a warning: its figures are noise.
FEW_SAMPLES = 10


def _warn_small_classes(df: pd.DataFrame, cfg: RunConfig) -> None:
    """Warn (DataWarning) about kept classes with very few training rows."""
    from lcmodel.errors import DataWarning

    floor = max(FEW_SAMPLES, 2 * cfg.tuning.cv)
    counts = df.loc[df["split"] == "train", "value"].value_counts().sort_index()
    small = counts[counts < floor]
    if len(small):
        detail = ", ".join(f"value {int(v)} ({int(n)} rows)" for v, n in small.items())
        warnings.warn(
            f"{len(small)} class(es) have fewer than {floor} training rows: {detail}; their accuracy figures are "
            "unreliable: sample more points (reference.n_points, sampling.n_sample)",
            DataWarning,
            stacklevel=2,
        )


def _xy(table: pd.DataFrame, part: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    from lcmodel.dataset import feature_columns

    if part is not None:
        table = table[table["split"] == part]
    X = np.ascontiguousarray(table[feature_columns(table)].to_numpy(), dtype=np.float32)
    y = table["value"].to_numpy(dtype=np.int64)
    return X, y


def tune(
    cfg: RunConfig,
    table_path: Path,
    callback: Callback | None = None,
    progress: Progress | None = None,
) -> Path:
    """Tune the forest on the training part (grid stages or Optuna); writes best params and CV tables."""
    from lcmodel.dataset import read_training_table
    from lcmodel.tuning import tune_grid, write_tuning_outputs

    t = cfg.tuning
    table = read_training_table(table_path)
    X, y = _xy(table, "train")
    candidates: list[dict[str, Any]] = []

    def collect(info: dict[str, Any]) -> None:
        candidates.append(json_ready(info))
        if callback is not None:
            callback(info)

    blocks = read_spatial_blocks(cfg)
    folds = _folds(cfg, table, blocks["cv_strategy"], blocks["block_size"])
    common: dict[str, Any] = dict(cv=t.cv, scoring=t.scoring, random_state=cfg.sampling.random_state, n_jobs=cfg.n_jobs,
                  callback=collect, progress=progress, cv_splits=folds)
    stages = [dict(s) for s in t.stages]
    if t.method == "optuna":
        from lcmodel.tuning import tune_optuna

        result = tune_optuna(X, y, stages, n_trials=t.n_trials, timeout_s=t.timeout_s, **common)
    elif t.method == "halving":
        from lcmodel.tuning import tune_halving

        result = tune_halving(X, y, stages, factor=t.halving_factor, score_on=t.score_on, **common)
    else:
        result = tune_grid(X, y, stages, score_on=t.score_on, **common)
    write_tuning_outputs(result, paths_for(cfg).root)
    # the strict-JSON summary (per-stage bests and scores) plus every candidate's CV scores
    write_json({
        **result.summary(), "candidates": candidates,
        "cv_strategy": blocks["cv_strategy"], "block_size": blocks["block_size"],
    }, paths_for(cfg).root / "tuning_result.json")
    return paths_for(cfg).tuning


def read_tuning_summary(cfg: RunConfig) -> dict[str, Any]:
    """The tuning summary written by :func:`tune` (best params, score, every candidate's CV scores)."""
    return dict(json.loads((paths_for(cfg).root / "tuning_result.json").read_text()))


def tuning_files(cfg: RunConfig) -> list[Path]:
    """Per-stage best-params and CV tables written by the tuning stage."""
    root = paths_for(cfg).root
    return sorted([*root.glob("best_params*.json"), *root.glob("cv_results_stage*.csv")])


def write_quicklook(cfg: RunConfig) -> Path:
    """A PNG quicklook of the predicted map in its class colours."""
    from lcmodel.quicklook import write_quicklook as _write

    out = paths_for(cfg)
    return _write(out.map, out.root / "map_quicklook.png", load_class_table(cfg))


def _best_params(tuning_path: Path) -> dict[str, Any]:
    data = json.loads(Path(tuning_path).read_text())
    return dict(data.get("best_params", data))


def evaluate(cfg: RunConfig, table_path: Path, tuning_path: Path) -> Path:
    """Fit the tuned forest on the training part and assess it on the held-out test part (pre-refit)."""
    from lcmodel.dataset import feature_columns, read_training_table
    from lcmodel.evaluate import (
        assemble_metrics,
        evaluate_model,
        feature_importances,
        write_feature_importances,
        write_reports,
    )
    from lcmodel.tuning import make_forest

    table = read_training_table(table_path)
    X_train, y_train = _xy(table, "train")
    X_test, y_test = _xy(table, "test")
    params = _best_params(tuning_path)
    model = make_forest(params, random_state=cfg.sampling.random_state, n_jobs=cfg.n_jobs)
    model.fit(X_train, y_train)
    classes = load_class_table(cfg)
    test = evaluate_model(model, X_test, y_test, classes)
    summary = json.loads((paths_for(cfg).root / "tuning_result.json").read_text())
    metrics = assemble_metrics(test, summary)
    # random vs spatial CV of the selected parameters, side by side; test predictions for assess_map
    metrics["cv_comparison"] = cv_comparison(cfg, table, params)
    metrics["split"] = {k: v for k, v in read_spatial_blocks(cfg).items() if k != "estimate"}
    _write_test_predictions(cfg, table[table["split"] == "test"], model.predict(X_test))
    out = paths_for(cfg).root
    write_reports(metrics, out, class_table=classes, notes=_report_notes(cfg))
    write_feature_importances(feature_importances(model, feature_columns(table)), out)
    return paths_for(cfg).metrics


def _report_notes(cfg: RunConfig) -> list[str]:
    notes = []
    if cfg.reference_kind == "raster":
        notes.append(
            f"Reference points were sampled from the class raster {cfg.reference.path.name}: the figures measure "
            "agreement with that map, not ground truth (ESA WorldCover itself is about 75 % accurate)."
        )
    blocks = read_spatial_blocks(cfg)
    if blocks["split"] == "spatial":
        notes.append(
            f"The test part is a spatial split: whole blocks of {blocks['block_size']:.4g} CRS units "
            f"({blocks['source']}) are held out, so test points are not next to training points "
            "(neighbouring embedding pixels are strongly alike; Ploton et al. 2020)."
        )
    else:
        notes.append(
            "The test part is a random stratified split of the sampled points; neighbouring embedding pixels are "
            "strongly alike, so random splits are optimistic (Ploton et al. 2020): compare the random and "
            "spatial CV scores below."
        )
    return notes


def fit_final(cfg: RunConfig, table_path: Path, tuning_path: Path, metrics_path: Path | None = None) -> Path:
    """Refit the tuned forest on ALL rows (train + test), as the notebook does, and save the bundle."""
    from lcmodel.dataset import feature_columns, read_training_table
    from lcmodel.embedding import NodataRule
    from lcmodel.model_io import ModelBundle, current_versions, save_bundle
    from lcmodel.tuning import make_forest

    table = read_training_table(table_path)
    X, y = _xy(table)
    bands = feature_columns(table)
    model = make_forest(_best_params(tuning_path), random_state=cfg.sampling.random_state, n_jobs=cfg.n_jobs)
    # fitted with the band names, so a served model checks its input columns by name
    model.fit(pd.DataFrame(X, columns=bands), y)
    with open_raster(cfg.embedding.path, "embedding raster") as src:
        rule = NodataRule.detect(src, override=cfg.embedding.nodata)
        crs_wkt = src.crs.to_wkt() if src.crs else None
    headline: dict[str, Any] = {}
    if metrics_path is not None and Path(metrics_path).is_file():
        test = json.loads(Path(metrics_path).read_text()).get("test", {})
        headline = {k: test[k] for k in ("overall_accuracy", "macro_f1", "kappa") if k in test}
    bundle = ModelBundle(
        estimator=model,
        band_names=bands,
        crs_wkt=crs_wkt,
        nodata_rule=rule,
        class_table=load_class_table(cfg),
        config=cfg.model_dump(mode="json"),
        training_table_sha256=sha256_file(table_path),
        versions=current_versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        metrics=headline,
    )
    return save_bundle(bundle, paths_for(cfg).bundle)


def predict_map(
    cfg: RunConfig,
    bundle_path: Path,
    embedding_path: Path | None = None,
    out_path: Path | None = None,
    confidence_path: Path | None = None,
    progress: Progress | None = None,
    trust: bool = False,
) -> dict[str, Any]:
    """Predict the whole embedding raster block by block into a COG (and a confidence COG).

    Resumable: a call after a crash or a kill (a retried flow task, a rerun) predicts only the blocks
    the interrupted call had not finished (see :class:`lcmodel.predict.BlockStore`).
    """
    from lcmodel.model_io import load_bundle
    from lcmodel.predict import predict_raster

    out = paths_for(cfg)
    p = cfg.prediction
    if p.task_runner == "dask":
        logging.getLogger(__name__).warning(
            "prediction.task_runner 'dask' applies to the Prefect flows only; predicting with %d local "
            "worker(s)", p.n_jobs or cfg.n_jobs,
        )
    bundle = load_bundle(bundle_path, trust=trust)
    o = prediction_options(cfg, out_path, confidence_path)
    summary = predict_raster(
        bundle,
        embedding_path or cfg.embedding.path,
        out_path or out.map,
        confidence_path=o.confidence_path,
        block_size=o.block_size,
        n_jobs=p.n_jobs or cfg.n_jobs,
        memory_mb=o.memory_mb,
        progress=progress,
        probabilities_path=o.probabilities_path,
        margin_path=o.margin_path,
        entropy_path=o.entropy_path,
        unclassified_below=o.unclassified_below,
        unclassified_value=o.unclassified_value,
        engine=o.engine,
    )
    data = summary_to_dict(summary, bundle.class_table)
    write_json(data, out.prediction)
    return data


def prediction_options(
    cfg: RunConfig, out_path: Path | None = None, confidence_path: Path | None = None
) -> PredictionOptions:
    """The output options of ``cfg.prediction`` (extra uncertainty COGs only for the run's own map)."""
    from lcmodel.predict import PredictionOptions

    out, p = paths_for(cfg), cfg.prediction
    own_map = out_path is None
    return PredictionOptions(
        confidence_path=(confidence_path or out.confidence) if p.confidence else None,
        block_size=p.block_size,
        memory_mb=p.memory_mb,
        probabilities_path=out.probabilities if p.probabilities and own_map else None,
        margin_path=out.margin if p.margin and own_map else None,
        entropy_path=out.entropy if p.entropy and own_map else None,
        unclassified_below=p.unclassified_below,
        unclassified_value=p.unclassified_value,
        engine=p.engine,
    )


def record_prediction(cfg: RunConfig, data: dict[str, Any]) -> dict[str, Any]:
    """Write a prediction summary (from ``summary_to_dict``) to the run's prediction JSON, as predict_map does."""
    write_json(data, paths_for(cfg).prediction)
    return data


# ------------------------------------------------------------------------- accuracy: spatial CV, assessment
def _spatial_blocks(cfg: RunConfig, df: pd.DataFrame) -> dict[str, Any]:
    """Resolved split and CV strategies and the block size (configured, or from the label variogram)."""
    from lcmodel.errors import InsufficientDataError
    from lcmodel.spatial import auto_block_size, resolve_strategy

    split = resolve_strategy(cfg.sampling.split, cfg.reference_kind, len(df))
    cv_strategy = resolve_strategy(cfg.tuning.cv_strategy, cfg.reference_kind, len(df))
    info: dict[str, Any] = {"split": split, "cv_strategy": cv_strategy, "block_size": cfg.sampling.block_size,
                            "source": "sampling.block_size", "estimate": None}
    if cfg.sampling.block_size is None:
        info["source"] = "automatic: range of the label variogram"
        try:
            est = auto_block_size(df["x"].to_numpy(), df["y"].to_numpy(), df["value"].to_numpy(),
                                  n_folds=cfg.tuning.cv, random_state=cfg.sampling.random_state)
        except InsufficientDataError as exc:
            if "spatial" in (split, cv_strategy):
                raise
            info["source"] = f"none ({exc})"
        else:
            info["block_size"], info["estimate"] = est.block_size, est.to_dict()
    log.info("split %s, CV %s, block size %s (%s)", split, cv_strategy, info["block_size"], info["source"])
    return info


def read_spatial_blocks(cfg: RunConfig) -> dict[str, Any]:
    """What :func:`make_training_table` decided: ``split``, ``cv_strategy``, ``block_size``, ``source``."""
    path = paths_for(cfg).spatial_blocks
    if not path.is_file():  # a table made by an older version: random, as it was
        return {"split": "random", "cv_strategy": "random", "block_size": cfg.sampling.block_size,
                "source": "sampling.block_size", "estimate": None}
    return dict(json.loads(path.read_text()))


def _folds(cfg: RunConfig, table: pd.DataFrame, strategy: str, block_size: float | None
           ) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Spatial CV folds of the training part (None for random: the tuners' own StratifiedKFold)."""
    from lcmodel.spatial import cv_splits

    if strategy != "spatial":
        return None
    train = table[table["split"] == "train"]
    return cv_splits("spatial", train["value"].to_numpy(), cfg.tuning.cv, x=train["x"].to_numpy(),
                     y=train["y"].to_numpy(), block_size=block_size, random_state=cfg.sampling.random_state)


def cv_comparison(cfg: RunConfig, table: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """CV scores of the selected parameters under random AND spatial folds of the training part.

    Returns ``{random: {...}, spatial: {...}, scoring, folds}``; each strategy has ``mean, std, fold_scores``
    (and ``block_size`` for spatial), or ``error`` when its folds cannot be made.
    """
    from lcmodel.errors import LcmodelError
    from lcmodel.spatial import cv_splits
    from lcmodel.tuning import fit_and_score, mean_std

    t = cfg.tuning
    train = table[table["split"] == "train"].reset_index(drop=True)
    X, y = _xy(train)
    blocks = read_spatial_blocks(cfg)
    out: dict[str, Any] = {"scoring": t.scoring, "folds": t.cv}
    for strategy in ("random", "spatial"):
        try:
            if strategy == "spatial" and blocks["block_size"] is None:
                raise LcmodelError(f"no block size ({blocks['source']})")
            folds = cv_splits(strategy, y, t.cv, x=train["x"].to_numpy(), y=train["y"].to_numpy(),
                              block_size=blocks["block_size"], random_state=cfg.sampling.random_state)
            scores = [fit_and_score(X, y, tr, te, params, t.scoring, cfg.sampling.random_state, cfg.n_jobs)[0]
                      for tr, te in folds]
        except (LcmodelError, ValueError) as exc:
            out[strategy] = {"error": str(exc).splitlines()[0]}
            continue
        mean, std = mean_std(scores)
        out[strategy] = {"mean": mean, "std": std, "fold_scores": scores}
        if strategy == "spatial":
            out[strategy]["block_size"] = blocks["block_size"]
    if "mean" in out["random"] and "mean" in out["spatial"]:
        out["optimism"] = out["random"]["mean"] - out["spatial"]["mean"]
    log.info("CV %s: random %s, spatial %s", t.scoring, out["random"].get("mean"), out["spatial"].get("mean"))
    return out


def _write_test_predictions(cfg: RunConfig, test: pd.DataFrame, predicted: np.ndarray) -> Path:
    frame = pd.DataFrame({"x": test["x"].to_numpy(), "y": test["y"].to_numpy(),
                          "reference": test["value"].to_numpy(), "predicted": np.asarray(predicted)})
    path = paths_for(cfg).test_predictions
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def assess_map(cfg: RunConfig, metrics_path: Path | None = None, prediction_path: Path | None = None) -> Path:
    """Area-adjusted accuracy and class areas (Olofsson et al. 2014) from the test part and the map's counts.

    Map labels at the test points are the predictions of the model scored in :func:`evaluate` (before the final
    refit, which has seen the test points); the strata sizes are the delivered map's class pixel counts. Writes
    ``accuracy_assessment.json`` and appends a section to ``report.md``.
    """
    from lcmodel.accuracy import confusion_counts, stratified_estimates
    from lcmodel.evaluate import assessment_markdown

    out = paths_for(cfg)
    pred = json.loads(Path(prediction_path or out.prediction).read_text())
    test = pd.read_csv(out.test_predictions)
    blocks = read_spatial_blocks(cfg)
    counts = {int(k): int(v) for k, v in pred["class_counts"].items()}
    classes = sorted(set(counts) | set(test["reference"].astype(int)) | set(test["predicted"].astype(int)))
    names = load_class_table(cfg)
    result: dict[str, Any] = {"design": _design_text(cfg, blocks), "split": blocks["split"],
                              "class_names": {str(c): names.name(c) if c in names.values else str(c) for c in classes}}
    unsampled = [c for c in classes if counts.get(c, 0) > 0 and not (test["predicted"] == c).any()]
    if unsampled:
        result["computed"] = False
        result["reason"] = (f"map classes {unsampled} have pixels but no test point is predicted as them; the "
                            "stratified estimator needs every map class sampled (use `lcmodel validation-sample`)")
    else:
        matrix = confusion_counts(test["predicted"].to_numpy(), test["reference"].to_numpy(), classes)
        result.update(stratified_estimates(matrix, [counts.get(c, 0) for c in classes], classes=classes,
                                           pixel_area_m2=pred.get("pixel_area_m2")))
        result["computed"] = True
        if pred.get("n_unclassified"):
            result["n_unclassified_pixels"] = pred["n_unclassified"]
    write_json(result, out.accuracy_assessment)
    report = out.root / "report.md"
    if report.is_file():
        text = report.read_text(encoding="utf-8")
        text = text.split(ASSESSMENT_HEADING)[0].rstrip("\n") + "\n\n"
        with atomic_path(report) as tmp:
            tmp.write_text(text + assessment_markdown(result, ASSESSMENT_HEADING), encoding="utf-8")
    return out.accuracy_assessment


ASSESSMENT_HEADING = "## Area-adjusted accuracy and class areas (Olofsson et al. 2014)"


def _design_text(cfg: RunConfig, blocks: dict[str, Any]) -> list[str]:
    lines = []
    if cfg.reference_kind == "raster":
        lines.append(
            f"Sampling design: the test points are drawn from the reference raster {cfg.reference.path.name} by "
            "stratified random sampling with proportional allocation (equal inclusion probabilities: a simple "
            "random sample of its valid pixels, de-duplicated per embedding pixel), post-stratified by map class."
        )
        lines.append(
            "They estimate agreement with that reference, not with ground truth (e.g. ESA WorldCover itself is about "
            "75 % accurate); for accuracy against the ground, label a sample from `lcmodel validation-sample` "
            "and run `lcmodel assess`."
        )
    else:
        lines.append(
            "Sampling design: the labelled points come from a file whose design lcmodel does not know; the "
            "estimator treats them as a simple random sample of the map, post-stratified by map class. If they "
            "were not drawn at random, these are not unbiased estimates."
        )
    if blocks.get("split") == "spatial":
        lines.append(
            "The test part is made of whole spatial blocks (a cluster sample): the standard errors treat points "
            "as independent, so they are too small."
        )
    if blocks.get("dropped_classes"):
        lines.append(f"Classes {blocks['dropped_classes']} were dropped as rare: their pixels are not in the sample.")
    lines.append(
        "Map labels at the test points come from the model scored on the test part (before the final refit); "
        "the strata sizes are the delivered map's class pixel counts."
    )
    return lines


def summary_to_dict(summary: Any, classes: ClassTable) -> dict[str, Any]:
    """A JSON-friendly prediction summary with class areas in hectares when the pixel area is known."""
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(summary).items()}
    data["class_counts"] = {str(k): int(v) for k, v in summary.class_counts.items()}
    if summary.pixel_area_m2:
        data["class_area_ha"] = {
            str(k): round(int(v) * summary.pixel_area_m2 / 10_000, 4) for k, v in summary.class_counts.items()
        }
    data["class_names"] = {str(v): classes.name(v) for v in classes.values}
    return data


def train(cfg: RunConfig, callback: Callback | None = None, progress: Progress | None = None) -> Path:
    """Stages 1-7: reference -> ... -> the model bundle. Returns the bundle path.

    Holds the output folder's lock (:func:`lcmodel.io.output_lock`) for the whole run.
    """
    with output_lock(paths_for(cfg).root):
        points = sample_reference(cfg)
        labelled = prepare_points(cfg, points)
        samples = extract_samples(cfg, labelled)
        table = make_training_table(cfg, samples)
        tuning = tune(cfg, table, callback=callback, progress=progress)
        metrics = evaluate(cfg, table, tuning)
        return fit_final(cfg, table, tuning, metrics)


def run(cfg: RunConfig, callback: Callback | None = None, progress: Progress | None = None,
        predict_progress: Progress | None = None) -> dict[str, Any]:
    """All stages: train, then predict the config's embedding into OUTPUT/map.tif and confidence.tif."""
    with output_lock(paths_for(cfg).root):
        bundle = train(cfg, callback=callback, progress=progress)
        data = predict_map(cfg, bundle, progress=predict_progress)
        write_quicklook(cfg)
        assess_map(cfg)
        return data

