"""The pipeline as declared stages: typed settings in, content-addressed artifacts out, keys derived.

    sample_reference -> prepare_points -> extract_samples -> make_training_table
    -> tune -> evaluate -> fit_final -> predict_map -> write_quicklook -> assess_map -> applicability -> report

Each stage (:mod:`~lcmodel.pipeline.sampling`, :mod:`~lcmodel.pipeline.modelling`,
:mod:`~lcmodel.pipeline.mapping`) is a function of its settings (exactly the config values it uses,
:mod:`~lcmodel.pipeline.settings`) and of the artifacts it consumes (files with their SHA-256,
:mod:`~lcmodel.pipeline.artifacts`); its cache key is derived from that signature
(:mod:`~lcmodel.pipeline.declare`) and checked against what was recorded (:mod:`~lcmodel.pipeline.records`).
:mod:`~lcmodel.pipeline.run` runs them in order for the CLI; the Prefect flow runs the same stages as tasks.
"""

from lcmodel.pipeline.artifacts import (
    Applicability,
    Artifact,
    Artifacts,
    Assessment,
    ClassTableSource,
    EmbeddingSource,
    Evaluation,
    ExtraPointsSource,
    LabelledPoints,
    Model,
    PointsFile,
    Prediction,
    Quicklook,
    ReferenceSource,
    Report,
    Samples,
    Source,
    TrainingTable,
    Tuning,
)
from lcmodel.pipeline.declare import Stage, lcmodel_version, stage, stage_key
from lcmodel.pipeline.input_guard import refuse_input_as_output, refuse_inputs_among_outputs, run_outputs
from lcmodel.pipeline.inputs import embedding_collection, reference_raster, tile_identity, write_embedding_manifest
from lcmodel.pipeline.map_outputs import prediction_artifacts, prediction_options, summary_to_dict
from lcmodel.pipeline.mapping import ASSESSMENT_HEADING
from lcmodel.pipeline.modelling import features_and_labels, read_blocks, tuning_files
from lcmodel.pipeline.paths import Callback, Progress, RunPaths
from lcmodel.pipeline.records import StageOutcome, StageRecord, cached, execute, read_record, run_or_reuse
from lcmodel.pipeline.run import StageRun, paths_for, run, run_stages, sample, train
from lcmodel.pipeline.sampling import read_class_table_artifact
from lcmodel.pipeline.settings import StageSettings
from lcmodel.pipeline.stages import MAPPING, SAMPLING, STAGES, TRAINING, runs_in, source_files, stages_of
from lcmodel.pipeline.tiled import TileJob, check_tiles, finish_tiles, predict_collection, predict_tile, tile_jobs

__all__ = [
    "ASSESSMENT_HEADING",
    "Applicability",
    "Artifact",
    "Artifacts",
    "Assessment",
    "Callback",
    "ClassTableSource",
    "ExtraPointsSource",
    "EmbeddingSource",
    "Evaluation",
    "LabelledPoints",
    "MAPPING",
    "Model",
    "PointsFile",
    "Prediction",
    "Progress",
    "Quicklook",
    "ReferenceSource",
    "Report",
    "RunPaths",
    "SAMPLING",
    "STAGES",
    "runs_in",
    "stages_of",
    "Samples",
    "Source",
    "Stage",
    "StageOutcome",
    "StageRecord",
    "StageRun",
    "StageSettings",
    "TRAINING",
    "TrainingTable",
    "Tuning",
    "cached",
    "execute",
    "features_and_labels",
    "lcmodel_version",
    "paths_for",
    "prediction_artifacts",
    "prediction_options",
    "read_blocks",
    "read_class_table_artifact",
    "read_record",
    "run",
    "run_or_reuse",
    "run_stages",
    "sample",
    "source_files",
    "embedding_collection",
    "reference_raster",
    "tile_identity",
    "write_embedding_manifest",
    "refuse_input_as_output",
    "refuse_inputs_among_outputs",
    "run_outputs",
    "stage",
    "stage_key",
    "summary_to_dict",
    "train",
    "tuning_files",
    "TileJob",
    "tile_jobs",
    "check_tiles",
    "predict_tile",
    "finish_tiles",
    "predict_collection",
]
