"""What a finished prediction wrote, with counts for reports (:class:`PredictionSummary`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lcmodel.predict.job import PredictionJob

__all__ = ["PredictionSummary", "summarize_prediction"]

logger = logging.getLogger(__name__)


@dataclass
class PredictionSummary:
    """What :func:`~lcmodel.predict.predict_raster` wrote, with counts for reports.

    Attributes
    ----------
    map_path, confidence_path : the COGs written (confidence_path None when not asked for).
    width, height : raster size in pixels.
    n_blocks : number of windows predicted.
    n_pixels, n_valid, n_nodata : all pixels, classified pixels, nodata pixels.
    class_counts : predicted pixels per class value (every class of the model, zeros included).
    pixel_area_m2 : area of one pixel in square metres when the CRS is projected, else None;
        hectares of a class are ``class_counts[v] * pixel_area_m2 / 10_000``.
    elapsed_s, pixels_per_s : wall time of the whole call and all pixels per second.
    block_size : window side in pixels (tiled rasters) or window height in rows (striped rasters).
    n_jobs : parallel workers used (1 = in-process): threads for a plain forest, else processes.
    output_dtype, output_nodata : data type and nodata value of the class map.
    n_resumed : blocks taken from an interrupted earlier run (see :class:`~lcmodel.predict.store.BlockStore`),
        not recomputed.
    n_unclassified, unclassified_value : pixels below ``unclassified_below`` and their map value.
    extra_paths : uncertainty COGs written (``probabilities``, ``margin``, ``entropy`` -> path).
    engine : what classified the pixels: ``"compiled"`` (:mod:`lcmodel.forest`) or ``"sklearn"``; from
        :func:`~lcmodel.predict.assemble_prediction`, the ``engine`` option (each block group chose its own).
    """

    map_path: Path
    confidence_path: Path | None
    width: int
    height: int
    n_blocks: int
    n_pixels: int
    n_valid: int
    n_nodata: int
    class_counts: dict[int, int]
    pixel_area_m2: float | None
    elapsed_s: float
    pixels_per_s: float
    block_size: int
    n_jobs: int
    output_dtype: str
    output_nodata: int
    n_resumed: int = 0
    n_unclassified: int = 0
    unclassified_value: int | None = None
    extra_paths: dict[str, str] = field(default_factory=dict)
    engine: str = "sklearn"

    def class_areas_ha(self) -> dict[int, float] | None:
        """Predicted area per class value in hectares, or None when the pixel area is unknown."""
        if self.pixel_area_m2 is None:
            return None
        return {v: n * self.pixel_area_m2 / 10_000.0 for v, n in self.class_counts.items()}


def summarize_prediction(
    job: PredictionJob,
    counts: np.ndarray,
    n_unclassified: int,
    elapsed: float,
    n_workers: int,
    n_resumed: int,
    engine: str = "sklearn",
) -> PredictionSummary:
    """The :class:`PredictionSummary` of a finished prediction (logged as one line).

    Parameters
    ----------
    job : the prediction's job.
    counts : predicted pixels per class, in ``job.recipe.class_out`` order.
    n_unclassified : pixels given the "unclassified" value.
    elapsed : wall time in seconds.
    n_workers : parallel workers (or tasks) used.
    n_resumed : blocks taken from an earlier, interrupted run.
    engine : what classified the pixels (``"compiled"``, ``"sklearn"``, or the ``engine`` option).
    """
    n_valid = int(counts.sum()) + n_unclassified
    n_pixels = job.grid.width * job.grid.height
    class_out = job.recipe.class_out
    summary = PredictionSummary(
        map_path=job.out_path,
        confidence_path=job.conf_out,
        width=job.grid.width,
        height=job.grid.height,
        n_blocks=len(job.grid.windows),
        n_pixels=n_pixels,
        n_valid=n_valid,
        n_nodata=n_pixels - n_valid,
        class_counts={int(v): int(n) for v, n in zip(class_out, counts, strict=True)},
        pixel_area_m2=job.pixel_area,
        elapsed_s=elapsed,
        pixels_per_s=n_pixels / elapsed if elapsed > 0 else float("inf"),
        block_size=job.grid.size,
        n_jobs=n_workers,
        output_dtype=str(class_out.dtype),
        output_nodata=job.recipe.nodata,
        n_resumed=n_resumed,
        n_unclassified=n_unclassified,
        unclassified_value=job.recipe.uncertainty.unclassified_value,
        extra_paths={k: str(v) for k, v in job.extra_paths.items()},
        engine=engine,
    )
    logger.info(
        "predicted %d valid of %d pixels in %.1f s (%.0f px/s) -> %s",
        n_valid, n_pixels, elapsed, summary.pixels_per_s, job.out_path,
    )
    return summary
