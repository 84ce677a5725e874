"""The sampling stages: reference points -> labelled points in the embedding CRS -> samples -> training table."""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import shapely
from rasterio.crs import CRS

from lcmodel.classes import ClassTable, read_class_table
from lcmodel.errors import NoOverlapError
from lcmodel.geo import normalised_bounds
from lcmodel.io import atomic_path, open_raster, write_json
from lcmodel.pipeline.artifacts import (
    Artifact,
    ClassTableSource,
    EmbeddingSource,
    ExtraPointsSource,
    LabelledPoints,
    PointsFile,
    ReferenceSource,
    Samples,
    TrainingTable,
)
from lcmodel.pipeline.declare import stage
from lcmodel.pipeline.paths import Progress, RunPaths
from lcmodel.pipeline.settings import (
    ExtractSettings,
    PreparePointsSettings,
    SampleReferenceSettings,
    TrainingTableSettings,
)

__all__ = [
    "sample_reference",
    "prepare_points",
    "extract_samples",
    "make_training_table",
    "write_points",
    "read_points",
    "read_class_table_artifact",
    "FEW_SAMPLES",
]

log = logging.getLogger(__name__)


def write_points(table: pd.DataFrame, crs: CRS, path: Path) -> tuple[Artifact, Artifact]:
    """A points CSV and its ``.crs.json`` (the CRS as WKT), both written atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    crs_path = write_json({"crs_wkt": crs.to_wkt()}, path.with_suffix(".crs.json"))
    return Artifact.of(path), Artifact.of(crs_path)


def read_points(points: Artifact, crs: Artifact) -> tuple[pd.DataFrame, CRS]:
    table = pd.read_csv(points.path)
    if "code" in table and table["code"].dtype.kind not in "iu":
        table["code"] = table["code"].astype(str)
    return table, CRS.from_wkt(json.loads(crs.path.read_text())["crs_wkt"])


def read_class_table_artifact(labelled: LabelledPoints) -> ClassTable:
    """The class table the run settled on (written by :func:`prepare_points`)."""
    return ClassTable.from_dict(json.loads(labelled.class_table.path.read_text()))


@stage(about="reference points in their own CRS: a stratified sample of a class raster, or a point file's points")
def sample_reference(
    settings: SampleReferenceSettings, reference: ReferenceSource, embedding: EmbeddingSource,
    extra: ExtraPointsSource | None = None, *, out: Path, progress: Progress | None = None,
) -> PointsFile:
    """A raster reference is sampled only where the embedding tiles (and ``embedding.aoi``) are, so every
    point drawn lies on the embedding and ``reference.n_points`` counts usable points. The points of
    ``reference.extra_points`` follow the drawn ones, flagged (:mod:`lcmodel.reference.extra`)."""
    from lcmodel.config import ReferenceConfig
    from lcmodel.reference import read_points_file, sample_raster_points
    from lcmodel.sources import Collection

    s = settings
    if s.kind == "points":  # reference.crs at its default counts as not given: a vector file's own CRS rules
        crs = None if s.crs == ReferenceConfig.model_fields["crs"].default else s.crs
        points = read_points_file(reference.path, x_column=s.x_column, y_column=s.y_column,
                                  label_column=s.label_column, crs=crs, layer=s.layer)
    else:
        with open_raster(reference.path, "reference raster") as src:
            ref_crs, ref_bounds = src.crs, shapely.box(*normalised_bounds(src.transform, src.width, src.height))
        footprint = None
        if ref_crs is not None:
            footprint = Collection.read(embedding.path).footprint_in(ref_crs)
            if footprint.is_empty or not all(math.isfinite(v) for v in footprint.bounds):
                footprint = None  # the embedding cannot be placed in the reference's CRS: prepare_points says why
            elif not footprint.intersects(ref_bounds):
                raise NoOverlapError(
                    f"reference raster {reference.path.name!r} does not overlap the embedding (reference bounds "
                    f"{_fmt(ref_bounds.bounds)}, embedding {_fmt(footprint.bounds)} in the reference's CRS); check "
                    "that the reference data and embedding.path cover the same area"
                )
        points = sample_raster_points(reference.path, s.n_points, nodata=s.nodata, random_state=s.random_state,
                                      progress=progress, n_threads=s.n_threads, footprint=footprint,
                                      purity_window=s.purity_window)
        if extra is not None:
            from lcmodel.reference.extra import read_extra_points, with_extra_points

            crs = None if s.crs == ReferenceConfig.model_fields["crs"].default else s.crs
            extras = read_extra_points(extra.paths, x_column=s.x_column,
                                       y_column=s.y_column, label_column=s.label_column, crs=crs, layer=s.layer)
            points = with_extra_points(points, extras)
    log.info("reference: %d points from %s (%s)", len(points), reference.path.name, s.kind)
    return PointsFile(*write_points(points.table, points.crs, RunPaths(out).points))


@stage(about="the points reprojected into the embedding's CRS and reclassified from codes to class values")
def prepare_points(
    settings: PreparePointsSettings,
    points: PointsFile,
    embedding: EmbeddingSource,
    classes: ClassTableSource | None = None,
    *,
    out: Path,
) -> LabelledPoints:
    from lcmodel.reference import ReferencePoints, check_overlap, reclassify, reproject_points, warn_crs_units
    from lcmodel.sources import Collection

    paths = RunPaths(out)
    table, crs = read_points(points.points, points.crs)
    tiles = Collection.read(embedding.path)
    dst_crs = tiles.crs  # the CRS of the most tiles: the run's points, blocks and distances are in it
    bounds = tiles.bounds_in(dst_crs)
    label = tiles.first.path if len(tiles) == 1 else f"{len(tiles)} tiles ({tiles.first.name}, ...)"
    warn_crs_units(bounds, dst_crs, f"embedding raster {tiles.first.name!r}")
    source = ReferencePoints(table=table, crs=crs)
    with warnings.catch_warnings(record=True) as caught:  # shown only when the points do overlap
        warnings.simplefilter("always")
        projected = reproject_points(source, dst_crs)
    check_overlap(source, projected, bounds, label)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    table_in = None
    if classes is not None:
        table_in = read_class_table(classes.path, code_column=settings.code_column,
                                    value_column=settings.value_column, name_column=settings.name_column,
                                    color_column=settings.color_column)
    labelled, class_table = reclassify(projected, table_in)
    class_file = write_json(class_table.to_dict(), paths.class_table)
    return LabelledPoints(*write_points(labelled.table, labelled.crs, paths.labelled), Artifact.of(class_file))


@stage(about="embedding values at the points, one valid mask for features and labels, de-duplicated by pixel")
def extract_samples(
    settings: ExtractSettings, labelled: LabelledPoints, embedding: EmbeddingSource, *, out: Path
) -> Samples:
    from lcmodel.dataset import build_samples
    from lcmodel.sources import Collection
    from lcmodel.sources.extraction import extract_collection

    paths = RunPaths(out)
    table, crs = read_points(labelled.points, labelled.crs)
    extraction = extract_collection(Collection.read(embedding.path), table["x"].to_numpy(), table["y"].to_numpy(),
                                    crs, nodata=settings.nodata, bands=settings.bands, n_threads=settings.n_threads)
    samples, counts = build_samples(table, extraction, dedupe=settings.dedupe_pixels)
    stats = {**counts, "bands": extraction.selection.to_dict()}  # the bands used, and those dropped with why
    write_json(stats, paths.sample_stats)
    with atomic_path(paths.samples) as tmp:
        samples.to_csv(tmp, index=False)
    log.info("samples: %s; %d of %d bands used", counts, len(extraction.band_names), extraction.selection.n_source)
    return Samples(Artifact.of(paths.samples), Artifact.of(paths.sample_stats))


@stage(about="subsample to n_sample by class, drop rare classes, split train/test (spatial or random)")
def make_training_table(settings: TrainingTableSettings, samples: Samples, *, out: Path) -> TrainingTable:
    from lcmodel.dataset import drop_rare_classes, read_training_table, subsample, write_training_table
    from lcmodel.extra_points import add_extra_to_training, split_off_extra
    from lcmodel.label_purity import apply_purity
    from lcmodel.split import split_meeting_shares

    s = settings
    paths = RunPaths(out)
    frame = read_training_table(samples.samples.path)
    frame, extra = split_off_extra(frame)  # reference.extra_points: the split is made without them
    df = subsample(frame, s.n_sample_effective, random_state=s.random_state)
    df, dropped = drop_rare_classes(df, s.min_class_fraction)
    blocks = spatial_blocks(s, df)
    # the summary is of the split's design (before purity); an automatic block size may be made smaller for the
    # split alone when whole blocks of it cannot meet the shares (the CV folds keep it)
    df, blocks["summary"] = split_meeting_shares(
        df, s.test_size, strategy=blocks["split"], block_size=blocks["block_size"], tolerance=s.split_tolerance,
        random_state=s.random_state, refine=s.block_size is None)
    blocks["split_block_size"] = blocks["summary"]["block_size"]
    # extra labelled points join the training part only, never a test block of the split
    df, extra_info = add_extra_to_training(df, extra, strategy=blocks["split"], block_size=blocks["split_block_size"])
    df, purity = apply_purity(df, s.purity_window, test_too=s.purity_test,  # the split is as without purity
                              min_per_class=max(FEW_SAMPLES, 2 * s.cv))
    blocks["summary"]["before_purity"] = purity is not None  # the shares are the split's, before the filter
    write_json({**blocks, "dropped_classes": dropped, **({"purity": purity} if purity else {}),
                **({"extra_points": extra_info} if extra_info else {})}, paths.spatial_blocks)
    _warn_small_classes(df, s.cv)
    path = write_training_table(df, paths.root)
    log.info("training table: %d rows (%d test); rare classes dropped: %s",
             len(df), (df["split"] == "test").sum(), dropped)
    return TrainingTable(Artifact.of(path), Artifact.of(paths.spatial_blocks))


def _fmt(bounds: Any) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


#: A class with fewer training rows than this (or than 2 x tuning.cv) gets a warning: its figures are noise.
FEW_SAMPLES = 10


def _warn_small_classes(df: pd.DataFrame, cv: int) -> None:
    """Warn (DataWarning) about kept classes with very few training rows."""
    from lcmodel.errors import DataWarning

    floor = max(FEW_SAMPLES, 2 * cv)
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


def spatial_blocks(s: TrainingTableSettings, df: pd.DataFrame) -> dict[str, Any]:
    """Resolved split and CV strategies and the block size (configured, or from the label variogram)."""
    from lcmodel.accuracy import auto_block_size, resolve_strategy
    from lcmodel.errors import InsufficientDataError

    split = resolve_strategy(s.split, s.kind, len(df))
    cv_strategy = resolve_strategy(s.cv_strategy, s.kind, len(df))
    info: dict[str, Any] = {"split": split, "cv_strategy": cv_strategy, "block_size": s.block_size,
                            "source": "sampling.block_size", "estimate": None}
    if s.block_size is None:
        info["source"] = "automatic: range of the label variogram"
        try:
            est = auto_block_size(df["x"].to_numpy(), df["y"].to_numpy(), df["value"].to_numpy(),
                                  n_folds=s.cv, random_state=s.random_state)
        except InsufficientDataError as exc:
            if "spatial" in (split, cv_strategy):
                raise
            info["source"] = f"none ({exc})"
        else:
            info["block_size"], info["estimate"] = est.block_size, est.to_dict()
    log.info("split %s, CV %s, block size %s (%s)", split, cv_strategy, info["block_size"], info["source"])
    return info
