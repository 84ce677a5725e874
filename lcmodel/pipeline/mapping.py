"""The mapping stages: predict the embedding into COGs, a quicklook, the area-adjusted assessment, the report."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from lcmodel.io import atomic_path, write_json
from lcmodel.pipeline.artifacts import (
    Applicability,
    Artifact,
    Assessment,
    EmbeddingSource,
    Evaluation,
    LabelledPoints,
    Model,
    Prediction,
    Quicklook,
    Report,
    TrainingTable,
)
from lcmodel.pipeline.change import ChangeProducts, change_markdown
from lcmodel.pipeline.declare import stage
from lcmodel.pipeline.map_outputs import prediction_artifacts, prediction_options, summary_to_dict
from lcmodel.pipeline.modelling import read_blocks
from lcmodel.pipeline.paths import Progress, RunPaths
from lcmodel.pipeline.postprocessing import CleanMap, clean_map_markdown
from lcmodel.pipeline.sampling import read_class_table_artifact
from lcmodel.pipeline.settings import NoSettings, PredictSettings, ReportSettings

__all__ = [
    "predict_map",
    "write_quicklook",
    "assess_map",
    "report",
    "prediction_options",
    "prediction_artifacts",
    "summary_to_dict",
    "ASSESSMENT_HEADING",
]

log = logging.getLogger(__name__)

ASSESSMENT_HEADING = "## Area-adjusted accuracy and class areas (Olofsson et al. 2014)"


@stage(about="predict the whole embedding raster block by block into COGs (resumable after a crash)")
def predict_map(
    settings: PredictSettings,
    model: Model,
    embedding: EmbeddingSource,
    *,
    out: Path,
    progress: Progress | None = None,
) -> Prediction:
    """Resumable: a call after a crash or a kill (a retried flow task, a rerun) predicts only the blocks the
    interrupted call had not finished (see :class:`lcmodel.predict.BlockStore`). A collection of several tiles
    is predicted tile by tile, each on its own grid and CRS, into ``tiles/<stem>/`` plus mosaics and a STAC
    catalog (:mod:`lcmodel.pipeline.tiled`); finished tiles are not predicted again."""
    from lcmodel.model_io import load_bundle
    from lcmodel.predict import predict_raster
    from lcmodel.sources import Collection

    paths = RunPaths(out)
    bundle = load_bundle(model.bundle.path)
    o = prediction_options(settings, paths)
    tiles = Collection.read(embedding.path)
    if len(tiles) > 1:
        from lcmodel.pipeline.tiled import predict_collection

        return predict_collection(settings, bundle, model, tiles, out, progress)
    summary = predict_raster(
        bundle, tiles.first.path, paths.map,
        confidence_path=o.confidence_path, block_size=o.block_size, n_jobs=settings.n_jobs,
        memory_mb=o.memory_mb, progress=progress, probabilities_path=o.probabilities_path,
        margin_path=o.margin_path, entropy_path=o.entropy_path, unclassified_below=o.unclassified_below,
        unclassified_value=o.unclassified_value, engine=o.engine,
    )
    return prediction_artifacts(o, paths, summary_to_dict(summary, bundle.class_table))


@stage(about="a PNG quicklook of the map in its class colours")
def write_quicklook(settings: NoSettings, prediction: Prediction, labelled: LabelledPoints, *, out: Path
                    ) -> Quicklook:
    from lcmodel.quicklook import write_collection_quicklook
    from lcmodel.quicklook import write_quicklook as _write

    table = read_class_table_artifact(labelled)
    if prediction.tile_maps:  # a tile collection: the tiles' maps in the collection's CRS
        crs = json.loads(labelled.crs.path.read_text())["crs_wkt"]
        path = write_collection_quicklook([a.path for a in prediction.tile_maps], crs, RunPaths(out).quicklook, table)
    else:
        path = _write(prediction.map.path, RunPaths(out).quicklook, table)
    return Quicklook(Artifact.of(path))


@stage(about="area-adjusted accuracy and class areas (Olofsson et al. 2014) from the test part and the map")
def assess_map(
    settings: ReportSettings,
    prediction: Prediction,
    evaluation: Evaluation,
    table: TrainingTable,
    labelled: LabelledPoints,
    *,
    out: Path,
) -> Assessment:
    """Map labels at the test points are the predictions of the model scored in ``evaluate`` (before the
    final refit, which has seen the test points); the strata sizes are the delivered map's class counts."""
    from lcmodel.accuracy import cluster_figures, confusion_counts, stratified_estimates
    from lcmodel.errors import InsufficientDataError

    pred = json.loads(prediction.summary.path.read_text())
    test = pd.read_csv(evaluation.test_predictions.path)
    blocks = read_blocks(table)
    counts = {int(k): int(v) for k, v in pred["class_counts"].items()}
    classes = sorted(set(counts) | set(test["reference"].astype(int)) | set(test["predicted"].astype(int)))
    names = read_class_table_artifact(labelled)
    design = design_text(settings, blocks)
    if pred.get("n_tiles", 1) > 1:
        design.append(f"The map is {pred['n_tiles']} tiles; the strata sizes sum their class pixel counts with each "
                      "location counted once (where tiles overlap, the first tile in the collection's order with a "
                      "classified pixel there counts it).")
    result: dict[str, Any] = {"design": design, "split": blocks["split"],
                              "class_names": {str(c): names.name(c) if c in names.values else str(c) for c in classes}}
    # a map class no test point is predicted as is a stratum without sample: reported as not assessed (with its
    # mapped area) while the sampled strata are still estimated (stratified_estimates, Notes)
    matrix = confusion_counts(test["predicted"].to_numpy(), test["reference"].to_numpy(), classes)
    try:
        result.update(stratified_estimates(matrix, [counts.get(c, 0) for c in classes], classes=classes,
                                           pixel_area_m2=pred.get("pixel_area_m2")))
    except InsufficientDataError as exc:  # no mapped class has a test point: nothing to estimate
        result.update(computed=False, reason=str(exc), undefined={"overall_accuracy": str(exc)})
    else:
        # the clusters are the split's own blocks (it may use smaller ones than the CV folds: split_block_size)
        result.update(cluster_figures(result, blocks["split"], blocks.get("split_block_size", blocks["block_size"]),
                                      test["x"].to_numpy(), test["y"].to_numpy(), test["predicted"].to_numpy(),
                                      test["reference"].to_numpy()))
        result["computed"] = True
    if pred.get("n_unclassified"):
        result["n_unclassified_pixels"] = pred["n_unclassified"]
    path = write_json(result, RunPaths(out).accuracy_assessment)
    return Assessment(Artifact.of(path))


def design_text(settings: ReportSettings, blocks: dict[str, Any]) -> list[str]:
    """The sampling design of the test part, in sentences, for the assessment."""
    lines = []
    if settings.kind == "raster":
        lines.append(
            f"Sampling design: the test points are drawn from the reference raster {settings.reference_name} by "
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
            "The test part is made of whole spatial blocks (a cluster sample): the independent-points standard "
            "errors are too small; the cluster standard errors (blocks as clusters) are given beside them."
        )
    if blocks.get("dropped_classes"):
        lines.append(f"Classes {blocks['dropped_classes']} were dropped as rare: their pixels are not in the sample.")
    lines.append(
        "Map labels at the test points come from the model scored on the test part (before the final refit); "
        "the strata sizes are the delivered map's class pixel counts."
    )
    return lines


@stage(about="report.md: test metrics, tuning, random vs spatial CV; when mapped, the area-adjusted assessment, the "
       "area of applicability, the clean map and the change between years")
def report(settings: ReportSettings, evaluation: Evaluation, assessment: Assessment | None = None,
           applicability: Applicability | None = None, clean: CleanMap | None = None,
           changes: ChangeProducts | None = None, *, out: Path) -> Report:
    from lcmodel.pipeline.applicability import applicability_markdown, read_applicability
    from lcmodel.report import assessment_markdown, report_markdown

    metrics = json.loads(evaluation.metrics.path.read_text())
    text = report_markdown(metrics, metrics.get("notes") or []) + "\n"
    if assessment is not None:
        result = json.loads(assessment.assessment.path.read_text())
        text = text.rstrip("\n") + "\n\n" + assessment_markdown(result, ASSESSMENT_HEADING)
    if applicability is not None:
        text = text.rstrip("\n") + "\n\n" + applicability_markdown(read_applicability(applicability))
    if clean is not None:  # postprocess: what was done to the map, how many pixels changed
        text = text.rstrip("\n") + "\n\n" + clean_map_markdown(json.loads(clean.summary.path.read_text()))
    if changes is not None:  # embedding.years: what changed between the mapped years
        text = text.rstrip("\n") + "\n\n" + change_markdown(json.loads(changes.summary.path.read_text()))
    path = RunPaths(out).report
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Report(Artifact.of(path))
