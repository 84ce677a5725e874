"""The declared stages of a run, in order, and the user's files they start from.

``TRAINING`` ends with the model bundle; ``MAPPING`` predicts the config's embedding and assesses the map;
``report`` closes both. Each stage's settings type, inputs and outputs come from its signature
(:mod:`lcmodel.pipeline.declare`); DESIGN.md's stage table is generated from :data:`STAGES`.
"""

from __future__ import annotations

from lcmodel.bands import resolve_bands
from lcmodel.config import RunConfig
from lcmodel.embedding import band_names
from lcmodel.errors import InputFileError
from lcmodel.io import open_raster
from lcmodel.pipeline.artifacts import ClassTableSource, EmbeddingSource, ReferenceSource, Source
from lcmodel.pipeline.declare import Stage
from lcmodel.pipeline.input_guard import refuse_inputs_among_outputs
from lcmodel.pipeline.mapping import assess_map, predict_map, report, write_quicklook
from lcmodel.pipeline.modelling import evaluate, fit_final, tune
from lcmodel.pipeline.sampling import extract_samples, make_training_table, prepare_points, sample_reference
from lcmodel.pipeline.settings import config_value

__all__ = ["SAMPLING", "TRAINING", "MAPPING", "STAGES", "source_files"]

#: reference -> training table
SAMPLING: tuple[Stage, ...] = (sample_reference, prepare_points, extract_samples, make_training_table)
#: ... -> the model bundle
TRAINING: tuple[Stage, ...] = (*SAMPLING, tune, evaluate, fit_final)
#: the bundle -> the map, its quicklook, its assessment
MAPPING: tuple[Stage, ...] = (predict_map, write_quicklook, assess_map)
#: every stage by name, in run order
STAGES: dict[str, Stage] = {s.name: s for s in (*TRAINING, *MAPPING, report)}


def source_files(cfg: RunConfig) -> list[Source]:
    """The user's input files as content-addressed sources, each checked before any work.

    Each exists and is readable, and none is a file the run writes (:mod:`~lcmodel.pipeline.input_guard`).
    """
    ref = cfg.reference.path
    kind_of_ref = "reference raster" if cfg.reference_kind == "raster" else "points file"
    refuse_inputs_among_outputs({kind_of_ref: ref, "embedding raster": cfg.embedding.path,
                                 "class table": cfg.classes.table}, cfg.output.dir)
    if cfg.reference_kind == "raster":
        with open_raster(ref, "reference raster"):
            pass
    elif not ref.is_file():
        raise InputFileError(f"points file {str(ref)!r} does not exist; check reference.path in the config")
    with open_raster(cfg.embedding.path, "embedding raster") as src:
        if cfg.embedding.bands is not None:  # names and indices checked against the raster up front
            resolve_bands(cfg.embedding.bands, band_names(src), raster=str(cfg.embedding.path))
    table = cfg.classes.table
    if table is not None and not table.is_file():
        raise InputFileError(f"class table {str(table)!r} does not exist; check classes.table in the config")
    found: list[Source] = []
    for kind in (ReferenceSource, EmbeddingSource, ClassTableSource):
        path = config_value(cfg, kind.config_key)
        if path is not None:
            found.append(kind.at(path))
    return found
