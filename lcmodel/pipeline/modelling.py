"""The modelling stages: tune on the training part, evaluate on the test part, refit on all rows."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.io import atomic_path, json_ready, open_raster, write_json
from lcmodel.pipeline.artifacts import (
    Artifact,
    EmbeddingSource,
    Evaluation,
    LabelledPoints,
    Model,
    Samples,
    TrainingTable,
    Tuning,
    artifact,
)
from lcmodel.pipeline.declare import stage
from lcmodel.pipeline.paths import Callback, Progress, RunPaths
from lcmodel.pipeline.sampling import read_class_table_artifact
from lcmodel.pipeline.settings import EvaluateSettings, FitSettings, TuneSettings

__all__ = ["tune", "evaluate", "fit_final", "read_blocks", "cv_comparison", "report_notes", "features_and_labels",
           "tuning_files"]

log = logging.getLogger(__name__)


def features_and_labels(table: pd.DataFrame, part: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The float32 band matrix and int64 labels of the table (or of its ``train`` / ``test`` part)."""
    from lcmodel.dataset import feature_columns

    if part is not None:
        table = table[table["split"] == part]
    X = np.ascontiguousarray(table[feature_columns(table)].to_numpy(), dtype=np.float32)
    y = table["value"].to_numpy(dtype=np.int64)
    return X, y


def read_blocks(table: TrainingTable) -> dict[str, Any]:
    """What :func:`~lcmodel.pipeline.sampling.make_training_table` decided: split, cv_strategy, block_size."""
    return dict(json.loads(table.blocks.path.read_text()))


def _folds(settings: TuneSettings, table: pd.DataFrame, strategy: str, block_size: float | None
           ) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Spatial CV folds of the training part (None for random: the tuners' own StratifiedKFold)."""
    from lcmodel.accuracy import cv_splits

    if strategy != "spatial":
        return None
    train = table[table["split"] == "train"]
    return cv_splits("spatial", train["value"].to_numpy(), settings.cv, x=train["x"].to_numpy(),
                     y=train["y"].to_numpy(), block_size=block_size, random_state=settings.random_state)


@stage(about="tune the forest on the training part (staged grid, halving or Optuna), with spatial or random folds")
def tune(
    settings: TuneSettings,
    table: TrainingTable,
    *,
    out: Path,
    callback: Callback | None = None,
    progress: Progress | None = None,
) -> Tuning:
    from lcmodel.dataset import read_training_table
    from lcmodel.tuning import tune_grid, write_tuning_outputs

    t = settings
    frame = read_training_table(table.table.path)
    X, y = features_and_labels(frame, "train")
    candidates: list[dict[str, Any]] = []

    def collect(info: dict[str, Any]) -> None:
        candidates.append(json_ready(info))
        if callback is not None:
            callback(info)

    blocks = read_blocks(table)
    folds = _folds(t, frame, blocks["cv_strategy"], blocks["block_size"])
    common: dict[str, Any] = dict(cv=t.cv, scoring=t.scoring, random_state=t.random_state, n_jobs=t.n_jobs,
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
    paths = RunPaths(out)
    written = write_tuning_outputs(result, paths.root)
    # the strict-JSON summary (per-stage bests and scores) plus every candidate's CV scores
    write_json({
        **result.summary(), "candidates": candidates,
        "cv_strategy": blocks["cv_strategy"], "block_size": blocks["block_size"],
    }, paths.tuning_summary)
    tables = tuple(Artifact.of(p) for p in written if p != paths.tuning)
    return Tuning(Artifact.of(paths.tuning), Artifact.of(paths.tuning_summary), tables)


def tuning_files(tuning: Tuning) -> list[Path]:
    """Per-stage best-params and CV tables, and best_params.json (what the tracker logs under ``tuning/``)."""
    return sorted([tuning.best_params.path, *(t.path for t in tuning.tables)])


def _best_params(tuning: Tuning) -> dict[str, Any]:
    data = json.loads(tuning.best_params.path.read_text())
    return dict(data.get("best_params", data))


@stage(about="fit the tuned forest on the training part and score it on the held-out test part (pre-refit)")
def evaluate(
    settings: EvaluateSettings, table: TrainingTable, tuning: Tuning, labelled: LabelledPoints, samples: Samples,
    *, out: Path
) -> Evaluation:
    """``samples`` gives the report the bands extraction used and dropped (``sample_stats.json``)."""
    from lcmodel.bands import bands_note
    from lcmodel.dataset import feature_columns, read_training_table
    from lcmodel.evaluate import assemble_metrics, evaluate_model, feature_importances
    from lcmodel.report import write_feature_importances, write_reports
    from lcmodel.tuning import make_forest

    frame = read_training_table(table.table.path)
    X_train, y_train = features_and_labels(frame, "train")
    X_test, y_test = features_and_labels(frame, "test")
    params = _best_params(tuning)
    model = make_forest(params, random_state=settings.random_state, n_jobs=settings.n_jobs)
    model.fit(X_train, y_train)
    classes = read_class_table_artifact(labelled)
    test = evaluate_model(model, X_test, y_test, classes)
    summary = json.loads(tuning.summary.path.read_text())
    metrics = assemble_metrics(test, summary)
    blocks = read_blocks(table)
    # random vs spatial CV of the selected parameters, side by side; test predictions for assess_map
    metrics["cv_comparison"] = cv_comparison(settings, frame, params, blocks)
    metrics["split"] = {k: v for k, v in blocks.items() if k != "estimate"}
    metrics["bands"] = json.loads(samples.stats.path.read_text()).get("bands")
    notes = report_notes(settings, blocks)
    note = bands_note(metrics["bands"])
    if note:
        notes.append(note)
    paths = RunPaths(out)
    test_predictions = _write_test_predictions(paths.test_predictions, frame[frame["split"] == "test"],
                                               model.predict(X_test))
    written = write_reports(metrics, paths.root, class_table=classes, notes=notes, markdown=False)
    importances = write_feature_importances(feature_importances(model, feature_columns(frame)), paths.root)
    return Evaluation(
        metrics=Artifact.of(written["metrics"]),
        test_predictions=test_predictions,
        classification_report=artifact(written.get("classification_report")),
        confusion_csv=Artifact.of(written["confusion_matrix_csv"]),
        confusion_png=Artifact.of(written["confusion_matrix_png"]),
        importances_csv=Artifact.of(importances["csv"]),
        importances_png=Artifact.of(importances["png"]),
    )


def report_notes(settings: EvaluateSettings, blocks: dict[str, Any]) -> list[str]:
    """What the test figures can and cannot say, given the reference and the split."""
    notes = []
    if settings.kind == "raster":
        notes.append(
            f"Reference points were sampled from the class raster {settings.reference_name}: the figures measure "
            "agreement with that map, not ground truth (ESA WorldCover itself is about 75 % accurate)."
        )
    if blocks["split"] == "spatial":
        side = blocks.get("split_block_size") or blocks["block_size"]  # the split's may be smaller than the CV's
        smaller = "" if side == blocks["block_size"] else ", made smaller for the split"
        notes.append(
            f"The test part is a spatial split: whole blocks of {side:.4g} CRS units "
            f"({blocks['source']}{smaller}) are held out, so test points are not next to training points "
            "(neighbouring embedding pixels are strongly alike; Ploton et al. 2020)."
        )
    else:
        notes.append(
            "The test part is a random stratified split of the sampled points; neighbouring embedding pixels are "
            "strongly alike, so random splits are optimistic (Ploton et al. 2020): compare the random and "
            "spatial CV scores below."
        )
    if blocks.get("purity"):  # sampling.purity_window: which design the test figures follow
        from lcmodel.label_purity import purity_note

        notes.append(purity_note(blocks["purity"]))
    if blocks.get("extra_points"):  # reference.extra_points: how many, and that the test part excludes them
        from lcmodel.extra_points import extra_note

        notes.append(extra_note(blocks["extra_points"]))
    return notes


def cv_comparison(settings: EvaluateSettings, table: pd.DataFrame, params: dict[str, Any],
                  blocks: dict[str, Any]) -> dict[str, Any]:
    """CV scores of the selected parameters under random AND spatial folds of the training part.

    Returns ``{random: {...}, spatial: {...}, scoring, folds}``; each strategy has ``mean, std, fold_scores``
    (and ``block_size`` for spatial), or ``error`` when its folds cannot be made.
    """
    from lcmodel.accuracy import cv_splits
    from lcmodel.errors import LcmodelError
    from lcmodel.tuning import fit_and_score, mean_std

    s = settings
    train = table[table["split"] == "train"].reset_index(drop=True)
    X, y = features_and_labels(train)
    out: dict[str, Any] = {"scoring": s.scoring, "folds": s.cv}
    for strategy in ("random", "spatial"):
        try:
            if strategy == "spatial" and blocks["block_size"] is None:
                raise LcmodelError(f"no block size ({blocks['source']})")
            folds = cv_splits(strategy, y, s.cv, x=train["x"].to_numpy(), y=train["y"].to_numpy(),
                              block_size=blocks["block_size"], random_state=s.random_state)
            scores = [fit_and_score(X, y, tr, te, params, s.scoring, s.random_state, s.n_jobs)[0]
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
    log.info("CV %s: random %s, spatial %s", s.scoring, out["random"].get("mean"), out["spatial"].get("mean"))
    return out


def _write_test_predictions(path: Path, test: pd.DataFrame, predicted: np.ndarray) -> Artifact:
    frame = pd.DataFrame({"x": test["x"].to_numpy(), "y": test["y"].to_numpy(),
                          "reference": test["value"].to_numpy(), "predicted": np.asarray(predicted)})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Artifact.of(path)


@stage(about="refit the tuned forest on ALL rows (train + test), as the notebook does, and save the bundle")
def fit_final(
    settings: FitSettings,
    table: TrainingTable,
    tuning: Tuning,
    evaluation: Evaluation,
    labelled: LabelledPoints,
    embedding: EmbeddingSource,
    *,
    out: Path,
) -> Model:
    from lcmodel.band_stats import training_band_stats
    from lcmodel.dataset import feature_columns, read_training_table
    from lcmodel.embedding import NodataRule, band_names
    from lcmodel.model_io import ModelBundle, current_versions, save_bundle, side_file_path
    from lcmodel.sources import Collection
    from lcmodel.tuning import make_forest

    frame = read_training_table(table.table.path)
    X, y = features_and_labels(frame)
    bands = feature_columns(frame)
    model = make_forest(_best_params(tuning), random_state=settings.random_state, n_jobs=settings.n_jobs)
    # fitted with the band names, so a served model checks its input columns by name
    model.fit(pd.DataFrame(X, columns=bands), y)
    tiles = Collection.read(embedding.path)
    with open_raster(tiles.first.path, "embedding raster") as src:
        rule = NodataRule.detect(src, override=settings.nodata)
        source_names, n_source = band_names(src), src.count
    # the table's band columns are the bands extraction used: their 1-based indexes in the raster
    unknown = [b for b in bands if b not in source_names]
    if unknown:
        from lcmodel.errors import InputDataError

        raise InputDataError(f"training table band columns {unknown[:3]} are not bands of embedding raster "
                             f"{tiles.first.path!r}; rebuild the training table from this embedding")
    band_indexes = [source_names.index(b) + 1 for b in bands]
    crs_wkt = tiles.crs.to_wkt()
    test = json.loads(evaluation.metrics.path.read_text()).get("test", {})
    headline = {k: test[k] for k in ("overall_accuracy", "macro_f1", "kappa") if k in test}
    bundle = ModelBundle(
        estimator=model,
        band_names=bands,
        crs_wkt=crs_wkt,
        nodata_rule=rule,
        class_table=read_class_table_artifact(labelled),
        # what the fit used: its own settings and the digests of what it was given (no other config value)
        config={"fit_final": settings.to_dict(), "training_table_sha256": table.table.sha256,
                "tuning_sha256": tuning.best_params.sha256, "embedding_sha256": embedding.file.sha256},
        training_table_sha256=table.table.sha256,
        versions=current_versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        metrics=headline,
        band_indexes=band_indexes,
        n_source_bands=n_source,
        band_stats=training_band_stats(X, bands),
    )
    path = save_bundle(bundle, RunPaths(out).bundle)
    return Model(Artifact.of(path), Artifact.of(side_file_path(path)))
