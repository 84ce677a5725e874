"""The declared stages of a run, in order, and the user's files they start from.

``TRAINING`` ends with the model bundle; ``MAPPING`` predicts the config's embedding and assesses the map;
``report`` closes both. Each stage's settings type, inputs and outputs come from its signature
(:mod:`lcmodel.pipeline.declare`); DESIGN.md's stage table is generated from :data:`STAGES`.
"""

from __future__ import annotations

from pathlib import Path

from lcmodel.bands import resolve_bands
from lcmodel.config import RunConfig
from lcmodel.errors import ConfigError, InputFileError
from lcmodel.io import open_raster
from lcmodel.pipeline.applicability import applicability
from lcmodel.pipeline.artifacts import (
    ClassTableSource,
    EmbeddingSource,
    ExtraPointsSource,
    ReferenceSource,
    Source,
)
from lcmodel.pipeline.change import change
from lcmodel.pipeline.declare import Stage
from lcmodel.pipeline.input_guard import refuse_inputs_among_outputs
from lcmodel.pipeline.inputs import embedding_collection, local_inputs, reference_raster, write_embedding_manifest
from lcmodel.pipeline.mapping import assess_map, predict_map, report, write_quicklook
from lcmodel.pipeline.modelling import evaluate, fit_final, tune
from lcmodel.pipeline.postprocessing import postprocess, wanted
from lcmodel.pipeline.sampling import extract_samples, make_training_table, prepare_points, sample_reference
from lcmodel.reference.extra import check_extra_files
from lcmodel.reference.vector import check_points_layer, is_vector_file

__all__ = ["SAMPLING", "TRAINING", "MAPPING", "STAGES", "source_files", "runs_in", "stages_of"]

#: reference -> training table
SAMPLING: tuple[Stage, ...] = (sample_reference, prepare_points, extract_samples, make_training_table)
#: ... -> the model bundle
TRAINING: tuple[Stage, ...] = (*SAMPLING, tune, evaluate, fit_final)
#: the bundle -> the map, its quicklook, its assessment, its area of applicability (and the clean map,
#: when asked for: :func:`runs_in`)
MAPPING: tuple[Stage, ...] = (predict_map, write_quicklook, assess_map, applicability, postprocess)
#: every stage by name, in run order (``change`` after every year's MAPPING: :mod:`lcmodel.pipeline.years`)
STAGES: dict[str, Stage] = {s.name: s for s in (*TRAINING, *MAPPING, change, report)}


def runs_in(st: Stage, cfg: RunConfig) -> bool:
    """Whether a stage runs with this config (``postprocess`` only when a postprocess option is set,
    ``change`` only with two or more mapped years and ``change.enabled``)."""
    if st is change:
        return cfg.change.enabled and len(cfg.mapped_years) >= 2
    return st is not postprocess or wanted(cfg)


def stages_of(cfg: RunConfig) -> list[str]:
    """The names of the stages a mapping run of ``cfg`` runs in its own folder, in order (the other years'
    stages, ``<stage>[<year>]``, not included)."""
    return [name for name, st in STAGES.items() if runs_in(st, cfg)]


def source_files(cfg: RunConfig, *, write: bool = True) -> list[Source]:
    """The user's input files as content-addressed sources, each checked before any work.

    Each exists and is readable, and none is a file the run writes (:mod:`~lcmodel.pipeline.input_guard`).
    The embedding is given to the stages as the manifest of its tiles (:mod:`~lcmodel.pipeline.inputs`), a
    reference of several tiles as a VRT mosaic of them. With ``write=False`` everything is checked but
    nothing is written (before a run holds its output folder's lock) and an empty list is returned.
    Tiles must be axis-aligned (north-up or south-up; :func:`lcmodel.sources.describe_tile`).
    A vector points file has the configured layer and label field, and point geometries.
    """
    ref = cfg.reference.path
    kind_of_ref = "reference raster" if cfg.reference_kind == "raster" else "points file"
    guarded: dict[str, Path | None] = {"class table": cfg.classes.table}
    for what, spec in ((kind_of_ref, ref), ("embedding raster", cfg.embedding.spec)):
        for i, path in enumerate(local_inputs(spec)):
            guarded[what if i == 0 else f"{what} {path.name}"] = path
    refuse_inputs_among_outputs(guarded, cfg.output.dir)
    if cfg.sampling.purity_window is not None and cfg.reference_kind != "raster":
        raise ConfigError(f"sampling.purity_window {cfg.sampling.purity_window} needs a class raster reference "
                          f"(reference.path is a points file); set sampling.purity_window: null")
    check_extra_files(cfg.reference.extra_points, cfg.reference_kind)
    for i, path in enumerate(cfg.reference.extra_points):
        refuse_inputs_among_outputs({f"reference.extra_points file {i + 1}": path}, cfg.output.dir)
    if cfg.reference_kind == "raster":
        raster = reference_raster(cfg, write=write)
        if raster is not None:
            with open_raster(raster, "reference raster"):
                pass
        reference = raster
    else:
        if not isinstance(ref, Path):
            raise InputFileError(
                f"reference.path {list(ref)!r} names several points files; give one file of labelled points"
            )
        if not ref.is_file():
            raise InputFileError(f"points file {str(ref)!r} does not exist; check reference.path in the config")
        if is_vector_file(ref):  # its layer, label field and geometry type, from the metadata alone
            check_points_layer(ref, label_column=cfg.reference.label_column, layer=cfg.reference.layer)
        reference = ref
    collection = embedding_collection(cfg)
    if cfg.embedding.bands is not None:  # names and indices checked against the tiles up front
        resolve_bands(cfg.embedding.bands, list(collection.band_names), raster=collection.first.path)
    table = cfg.classes.table
    if table is not None and not table.is_file():
        raise InputFileError(f"class table {str(table)!r} does not exist; check classes.table in the config")
    if not write:
        return []
    manifest = write_embedding_manifest(collection, cfg.output.dir)
    assert reference is not None  # written above
    found: list[Source] = [ReferenceSource.at(reference), EmbeddingSource.at(manifest)]
    if table is not None:
        found.append(ClassTableSource.at(table))
    if cfg.reference.extra_points:
        found.append(ExtraPointsSource.of(cfg.reference.extra_points))
    return found
