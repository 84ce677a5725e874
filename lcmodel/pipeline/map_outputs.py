"""The options and the summary of a run's map: the output paths a prediction is given, ``prediction.json``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcmodel.classes import ClassTable
from lcmodel.io import write_json
from lcmodel.pipeline.artifacts import Artifact, Prediction, artifact
from lcmodel.pipeline.paths import RunPaths
from lcmodel.pipeline.settings import PredictSettings

if TYPE_CHECKING:
    from lcmodel.predict import PredictionOptions

__all__ = ["prediction_options", "prediction_artifacts", "summary_to_dict"]


def prediction_options(settings: PredictSettings, paths: RunPaths) -> PredictionOptions:
    """The output options of the run's own map (confidence and uncertainty COGs beside it)."""
    from lcmodel.predict import PredictionOptions

    s = settings
    return PredictionOptions(
        confidence_path=paths.confidence if s.confidence else None,
        block_size=s.block_size,
        memory_mb=s.memory_mb,
        probabilities_path=paths.probabilities if s.probabilities else None,
        margin_path=paths.margin if s.margin else None,
        entropy_path=paths.entropy if s.entropy else None,
        unclassified_below=s.unclassified_below,
        unclassified_value=s.unclassified_value,
        engine=s.engine,
    )


def prediction_artifacts(options: PredictionOptions, paths: RunPaths, data: dict[str, Any]) -> Prediction:
    """Record a prediction summary (from :func:`summary_to_dict`) as the run's ``prediction.json``."""
    write_json(data, paths.prediction)
    return Prediction(
        map=Artifact.of(paths.map),
        summary=Artifact.of(paths.prediction),
        confidence=artifact(options.confidence_path),
        probabilities=artifact(options.probabilities_path),
        margin=artifact(options.margin_path),
        entropy=artifact(options.entropy_path),
    )


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
