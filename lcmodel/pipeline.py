"""The pipeline's stages, one function each, composed by the CLI and wrapped one per task by the Prefect flow.

Each stage reads its inputs from files, writes its outputs atomically into the run's output folder, and
returns the paths (or a small dict): stages pass references, never big arrays, so a flow can cache and
retry them one by one. Order:

    sample_reference -> prepare_points -> extract_samples -> make_training_table
    -> tune -> evaluate -> fit_final -> predict_map

``train(cfg)`` runs the first seven, ``run(cfg)`` all eight.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rasterio.crs import CRS

from lcmodel.classes import ClassTable, read_class_table
from lcmodel.config import RunConfig
from lcmodel.errors import InputFileError
from lcmodel.io import atomic_path, ensure_output_dir, open_raster, sha256_file

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


def paths_for(cfg: RunConfig) -> RunPaths:
    return RunPaths(Path(cfg.output.dir))


def _write_json(path: Path, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_points(table: pd.DataFrame, crs: CRS, path: Path) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    _write_json(path.with_suffix(".crs.json"), {"crs_wkt": crs.to_wkt()})
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
    from lcmodel.reference import ReferencePoints, reclassify, reproject_points

    out = paths_for(cfg)
    table, crs = _read_points(Path(points_path))
    with open_raster(cfg.embedding.path, "embedding raster") as src:
        dst_crs = src.crs
    if dst_crs is None:
        raise InputFileError(
            f"embedding raster {str(cfg.embedding.path)!r} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:32720)"
        )
    points = reproject_points(ReferencePoints(table=table, crs=crs), dst_crs)
    points, classes = reclassify(points, _class_table(cfg))
    _write_json(out.class_table, classes.to_dict())
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
    _write_json(out.sample_stats, stats)
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
    df = split_train_test(df, s.test_size, random_state=s.random_state)
    path = write_training_table(df, paths_for(cfg).root)
    log.info("training table: %d rows (%d test); rare classes dropped: %s", len(df), (df["split"] == "test").sum(), dropped)
    return path


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
    X, y = _xy(read_training_table(table_path), "train")
    candidates: list[dict[str, Any]] = []

    def collect(info: dict[str, Any]) -> None:
        candidates.append(json.loads(json.dumps(info, default=_json_default)))
        if callback is not None:
            callback(info)

    common = dict(cv=t.cv, scoring=t.scoring, random_state=cfg.sampling.random_state, n_jobs=cfg.n_jobs,
                  callback=collect, progress=progress)
    stages = [dict(s) for s in t.stages]
    if t.method == "optuna":
        from lcmodel.tuning_optuna import tune_optuna

        result = tune_optuna(X, y, stages, n_trials=t.n_trials, timeout_s=t.timeout_s, **common)
    elif t.method == "halving":
        from lcmodel.tuning import tune_halving

        result = tune_halving(X, y, stages, factor=t.halving_factor, score_on=t.score_on, **common)
    else:
        result = tune_grid(X, y, stages, score_on=t.score_on, **common)
    write_tuning_outputs(result, paths_for(cfg).root)
    _write_json(paths_for(cfg).root / "tuning_result.json", {
        "method": result.method, "best_params": result.best_params, "best_score": result.best_score,
        "best_std": result.best_std, "scoring": result.scoring, "cv": result.cv,
        "n_candidates": result.n_candidates, "elapsed_s": result.elapsed_s, "candidates": candidates,
    })
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
    notes.append(
        "The test part is a random stratified split of the sampled points; neighbouring embedding pixels are "
        "strongly alike, so random splits are optimistic (Ploton et al. 2020)."
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
) -> dict[str, Any]:
    """Predict the whole embedding raster block by block into a COG (and a confidence COG)."""
    from lcmodel.model_io import load_bundle
    from lcmodel.predict import predict_raster

    out = paths_for(cfg)
    p = cfg.prediction
    bundle = load_bundle(bundle_path)
    summary = predict_raster(
        bundle,
        embedding_path or cfg.embedding.path,
        out_path or out.map,
        confidence_path=(confidence_path or out.confidence) if p.confidence else None,
        block_size=p.block_size,
        n_jobs=p.n_jobs or cfg.n_jobs,
        memory_mb=p.memory_mb,
        progress=progress,
    )
    data = summary_to_dict(summary, bundle.class_table)
    _write_json(out.prediction, data)
    return data


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
    """Stages 1-7: reference -> ... -> the model bundle. Returns the bundle path."""
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
    bundle = train(cfg, callback=callback, progress=progress)
    data = predict_map(cfg, bundle, progress=predict_progress)
    write_quicklook(cfg)
    return data

