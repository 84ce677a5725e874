"""The ``applicability`` stage: the map's area of applicability (Meyer & Pebesma 2021; :mod:`lcmodel.aoa`).

From the training table (all the rows the final model was fitted on), the final model's feature importances
and the run's CV folds, the training DI and its threshold; then ``di.tif`` and ``aoa.tif`` over the embedding
the map was predicted from, the share of the map outside the AOA overall and per predicted class, and the
test points' accuracy inside vs outside (``aoa.json``). For a tile collection, ``di.tif`` and ``aoa.tif`` per tile
beside each tile's map, the shares over the collection with each location counted once, and each tile's own
(:mod:`lcmodel.pipeline.applicability_tiles`). With ``aoa.enabled: false`` only ``aoa.json`` is written, saying
why nothing was computed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.io import write_json
from lcmodel.pipeline.artifacts import (
    Applicability,
    Artifact,
    EmbeddingSource,
    Evaluation,
    LabelledPoints,
    Model,
    Prediction,
    TrainingTable,
)
from lcmodel.pipeline.declare import stage
from lcmodel.pipeline.modelling import features_and_labels, read_blocks
from lcmodel.pipeline.paths import RunPaths
from lcmodel.pipeline.sampling import read_class_table_artifact
from lcmodel.pipeline.settings import AoaSettings

__all__ = ["applicability", "APPLICABILITY_HEADING", "applicability_markdown"]

log = logging.getLogger(__name__)

APPLICABILITY_HEADING = "## Area of applicability (Meyer & Pebesma 2021)"


@stage(about="the dissimilarity index of every pixel and the area of applicability (Meyer & Pebesma 2021)")
def applicability(
    settings: AoaSettings,
    model: Model,
    table: TrainingTable,
    evaluation: Evaluation,
    prediction: Prediction,
    embedding: EmbeddingSource,
    labelled: LabelledPoints,
    *,
    out: Path,
) -> Applicability:
    """``di.tif``, ``aoa.tif`` and ``aoa.json`` (see the module docstring)."""
    from lcmodel.aoa import applicability_summary, fit_training_di, fold_ids, test_accuracy_by_aoa, write_aoa_rasters
    from lcmodel.dataset import read_training_table
    from lcmodel.model_io import load_bundle
    from lcmodel.sources import Collection

    paths = RunPaths(out)
    if not settings.enabled:
        return _not_computed(paths, "aoa.enabled is false", prediction)
    tiles = Collection.read(embedding.path)
    bundle = load_bundle(model.bundle.path)
    frame = read_training_table(table.table.path)
    features, _ = features_and_labels(frame)
    blocks = read_blocks(table)
    folds = fold_ids(frame, blocks["cv_strategy"], settings.cv, blocks["block_size"], settings.random_state)
    # a model without importances (not one lcmodel fits) weighs every band alike, as CAST does
    importances = np.asarray(getattr(bundle.estimator, "feature_importances_", np.ones(bundle.n_bands)),
                             dtype=np.float64)
    training = fit_training_di(features, folds, importances, list(bundle.band_names))
    collection = len(tiles) > 1 or bool(prediction.tile_maps)
    if collection:
        from lcmodel.aoa import merge_counts
        from lcmodel.pipeline.applicability_tiles import collection_aoa, collection_summary_extra

        for stale in (paths.di, paths.aoa):  # the collection's rasters are per tile
            stale.unlink(missing_ok=True)
        done = collection_aoa(settings, training, bundle, tiles, prediction, paths)
        counts = merge_counts(done.counted)
    else:
        counts = write_aoa_rasters(training, bundle, tiles.first.path, prediction.map.path, paths.di, paths.aoa,
                                   block_size=settings.block_size, memory_mb=settings.memory_mb)
    accuracy = test_accuracy_by_aoa(frame, training, pd.read_csv(evaluation.test_predictions.path))
    names = read_class_table_artifact(labelled)
    class_names = {v: names.name(v) for v in names.values}
    result = applicability_summary(training, counts, class_names, accuracy)
    result["folds"] = (f"{blocks['cv_strategy']} CV folds of the tuning ({settings.cv}) for the training part, "
                       "the held-out test part as one more fold")
    log.info("area of applicability: %.2f %% of %d pixels outside (threshold DI %.4g)",
             100 * (result["outside_fraction"] or 0.0), result["n_pixels"], training.threshold)
    if collection:
        result.update(collection_summary_extra(done, bool(prediction.mosaics), out))
        tile_di, tile_aoa, mosaics = done.artifacts()
        return Applicability(Artifact.of(write_json(result, paths.aoa_summary)), tile_di=tile_di, tile_aoa=tile_aoa,
                             mosaics=mosaics)
    summary = write_json(result, paths.aoa_summary)
    return Applicability(Artifact.of(summary), Artifact.of(paths.di), Artifact.of(paths.aoa))


def _not_computed(paths: RunPaths, reason: str, prediction: Prediction) -> Applicability:
    tiles = [RunPaths(m.path.parent) for m in prediction.tile_maps]
    for stale in (paths.di, paths.aoa, *(p for t in tiles for p in (t.di, t.aoa))):
        stale.unlink(missing_ok=True)  # from an earlier run with it on: never left to look current
    return Applicability(Artifact.of(write_json({"computed": False, "reason": reason}, paths.aoa_summary)))


def applicability_markdown(result: dict[str, Any], heading: str = APPLICABILITY_HEADING) -> str:
    """The report's section: the threshold, the shares outside overall and per class, test accuracy."""
    lines = [heading, ""]
    if not result.get("computed"):
        return "\n".join([*lines, f"Not computed: {result.get('reason')}.", ""])

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f} %"

    lines += [
        f"Dissimilarity index (DI): distance to the nearest of the {result['n_training_samples']} training samples "
        "/ their mean distance, in the training-standardised band space weighted by the final model's feature "
        f"importances (`di.tif`). Threshold {result['threshold']:.4g}: the upper whisker (Q3 + 1.5 IQR) of each "
        f"training sample's DI to the samples of the other folds ({result['n_folds']} folds: {result['folds']}). "
        "Pixels above it are outside the area of applicability (`aoa.tif` = 0): the model was not trained on "
        "anything like them.",
        "",
        f"**{pct(result['outside_fraction'])} of the map** ({result['n_outside']} of {result['n_pixels']} pixels) "
        "is outside the area of applicability.",
        "",
        "| predicted class | pixels | outside AOA | share outside |",
        "|---|---:|---:|---:|",
    ]
    for value, c in result["per_class"].items():
        lines.append(f"| {c['name']} ({value}) | {c['pixels']} | {c['outside']} | {pct(c['outside_fraction'])} |")
    if result.get("tiles"):
        lines += ["", f"Over the collection's {result['n_tiles']} tiles, {result['counting']}. Per tile "
                      "(`tiles/<stem>/di.tif`, `aoa.tif`; its whole map):", "",
                  "| tile | pixels | outside AOA | share outside |", "|---|---:|---:|---:|"]
        lines += [f"| {t['tile']} | {t['n_pixels']} | {t['n_outside']} | {pct(t['outside_fraction'])} |"
                  for t in result["tiles"]]
        lines += ["", result["mosaic_note"][0].upper() + result["mosaic_note"][1:] + "."]
    acc = result.get("test_accuracy")
    if acc:
        lines += ["", "| test points | n | overall accuracy |", "|---|---:|---:|"]
        for part in ("inside", "outside"):
            lines.append(f"| {part} the AOA | {acc[part]['n_test_points']} | {pct(acc[part]['overall_accuracy'])} |")
        lines += ["", "A test point's DI is its distance to the training part (the data of the model that predicted "
                      "it in the evaluation)."]
    return "\n".join([*lines, ""])


def read_applicability(applicability: Applicability) -> dict[str, Any]:
    """``aoa.json``."""
    return dict(json.loads(applicability.summary.path.read_text()))
