"""Stratified random reference points from a class raster, and the reference points of a run (raster or points).

Raster sampling reproduces the notebook's proportional allocation exactly (per-class share of the valid pixels,
``np.round``, the remainder added to the largest class, classes smaller than their share give all they have),
but it is seeded and it never holds the raster, nor an index of its valid pixels, in memory: the pixels are
drawn in two passes over the file's internal blocks by :class:`~lcmodel.reference.class_pixels.ClassPixelSampler`,
so the points are the same for any thread count. Points lie at pixel centres, in the raster's own CRS.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lcmodel.errors import ConfigError, DataWarning, InputDataError, InputFileError
from lcmodel.geo import pixel_centres
from lcmodel.io import open_raster
from lcmodel.reference.class_pixels import ClassPixelSampler, Progress
from lcmodel.reference.points import ReferencePoints, codes_column, format_code
from lcmodel.reference.purity import PURE_COLUMN
from lcmodel.reference.vector import read_points_file

if TYPE_CHECKING:
    from collections.abc import Sequence

    from shapely import Geometry

    from lcmodel.config import ReferenceConfig

__all__ = ["allocate_samples", "sample_raster_points", "load_reference"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- allocation


def allocate_samples(counts: Sequence[int] | np.ndarray, n_points: int) -> np.ndarray:
    """Points per class, proportional to the class pixel counts, exactly as the notebook allocates them.

    ``np.round(counts / counts.sum() * n_points)``, then the remainder ``n_points - sum`` goes to the largest
    allocation (``np.argmax``). No class is capped here: a class with fewer pixels than its share gives all it
    has when sampled (:func:`sample_raster_points`), and the shortfall is not redistributed.

    Parameters
    ----------
    counts : sequence of int
        Valid-pixel count of each class (all > 0), in class order.
    n_points : int
        Points wanted in total.

    Returns
    -------
    numpy.ndarray
        int64 allocation per class, summing to ``n_points``. In the degenerate case (many classes, very few
        points: roughly ``n_points < n_classes**2 / 2``) the notebook's remainder makes the largest allocation
        negative and the notebook crashes; here it is set to 0 and the excess is taken from the largest
        allocations one point at a time.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size == 0:
        return np.zeros(0, dtype=np.int64)
    proportions = counts / counts.sum()
    alloc = np.round(proportions * n_points).astype(np.int64)
    alloc[np.argmax(alloc)] += n_points - alloc.sum()
    if (alloc < 0).any():
        # The notebook crashes here (np.random.choice with a negative size). Keep the formula's intent:
        # clamp at 0 and take the excess from the largest allocations, one point at a time.
        logger.debug("negative allocation: %d points for %d classes", n_points, counts.size)
        alloc = np.maximum(alloc, 0)
        while alloc.sum() > n_points:
            alloc[np.argmax(alloc)] -= 1
    return alloc


def _check_n_threads(n_threads: int) -> int:
    if not isinstance(n_threads, int | np.integer) or n_threads < 1:
        raise ConfigError(f"n_threads={n_threads!r} is not a positive integer; give 1 or more")
    return int(n_threads)


# ------------------------------------------------------------------------------------------ raster sampling


def sample_raster_points(
    path: Path | str,
    n_points: int,
    *,
    nodata: float | None = None,
    random_state: int = 42,
    progress: Progress | None = None,
    n_threads: int = 2,
    footprint: Geometry | None = None,
    purity_window: int | None = None,
) -> ReferencePoints:
    """Draw a stratified random sample of points from a categorical raster (e.g. ESA WorldCover).

    Each class gets points in proportion to its share of the valid pixels, allocated exactly as the notebook
    does (see :func:`allocate_samples`); pixels are drawn without replacement, seeded. The raster is read
    block by block, twice at most, and never held in memory.

    Parameters
    ----------
    path : path-like
        The class raster (band 1 is used).
    n_points : int
        Points wanted in total (the notebook's ``n_esa_sample``).
    nodata : float, optional
        Value of pixels to skip; overrides the file's declared nodata. NaN is always skipped in float rasters.
    random_state : int
        Seed of the draw (``numpy.random.default_rng``).
    progress : callable, optional
        ``progress(done, total)`` in blocks, after each block read. ``total`` is the number of blocks while
        counting, then grows by the number of blocks re-read to locate the drawn pixels.
    n_threads : int
        Threads reading blocks. The points do not depend on it.
    footprint : shapely geometry, optional
        Draw only from pixels whose centre lies in it (in the raster's CRS), reading only the blocks it
        touches: the embedding's footprint, so that ``n_points`` counts points that can be extracted.
    purity_window : int, optional
        3 or 5: add a bool column ``pure``, True where the point's whole window holds its class
        (:mod:`lcmodel.reference.purity`). The points drawn are the same with or without it.

    Returns
    -------
    ReferencePoints
        Columns ``x``, ``y`` (pixel centres, in the raster's CRS) and ``code`` (the pixel's class), sorted by
        class then by position (block by block, row-major inside a block).

    Raises
    ------
    InputFileError
        The file is missing, not a raster, or has no CRS.
    InputDataError
        The raster has no valid pixel.
    ConfigError
        ``n_points`` or ``n_threads`` is not a positive integer.

    Warns
    -----
    DataWarning
        Classes with fewer pixels than their allocation (they give all their pixels).
    """
    if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 1:
        raise ConfigError(
            f"n_points={n_points!r} is not a positive integer; set reference.n_points to 1 or more"
        )
    n_threads = _check_n_threads(n_threads)
    # imported here: lcmodel.sources' collection modules import this module
    from lcmodel.sources.remote import file_name, is_remote, redact

    path = path if is_remote(path) else Path(path)
    name = file_name(path)
    with open_raster(path, "reference raster") as src:
        if src.crs is None:
            raise InputFileError(
                f"reference raster {redact(path)!r} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:4326 "
                f"{name}) or give points in a CSV with reference.crs"
            )
        crs = src.crs
        transform = src.transform
        sampler = ClassPixelSampler(path, src, nodata=nodata, footprint=footprint, purity_window=purity_window)

    def allocation(classes: np.ndarray, totals: np.ndarray) -> np.ndarray:
        if classes.size == 0:
            nd = "no nodata value" if sampler.nodata is None else f"nodata={format_code(sampler.nodata)}"
            where = " inside the embedding's footprint" if footprint is not None else ""
            raise InputDataError(
                f"reference raster {redact(path)!r} has no valid pixel{where} ({nd}); check reference.nodata or "
                "give a raster that covers the area"
            )
        alloc = allocate_samples(totals, int(n_points))
        _warn_short_classes(name, classes, alloc, totals)
        return np.minimum(alloc, totals)

    drawn = sampler.draw(allocation, random_state=random_state, n_threads=n_threads, progress=progress)
    rows, cols = drawn.rows, drawn.cols
    xs, ys = pixel_centres(transform, rows, cols)
    table = pd.DataFrame(
        {"x": xs.astype(np.float64), "y": ys.astype(np.float64), "code": codes_column(drawn.codes)}
    )
    if drawn.pure is not None:
        table[PURE_COLUMN] = drawn.pure.astype(bool)
    logger.info(
        "sampled %d points in %d classes from %s (%d of %d blocks re-read)",
        len(table), int((drawn.taken > 0).sum()), name, drawn.blocks_reread, sampler.n_blocks,
    )
    return ReferencePoints(table=table, crs=crs)


def _warn_short_classes(name: str, classes: np.ndarray, alloc: np.ndarray, totals: np.ndarray) -> None:
    short = np.flatnonzero(alloc > totals)
    if short.size:
        detail = ", ".join(f"{format_code(classes[k])}: {totals[k]} of {alloc[k]}" for k in short)
        warnings.warn(
            f"{short.size} class(es) of {name} have fewer pixels than their share of the points and give "
            f"all they have ({detail}); {int((alloc - np.minimum(alloc, totals)).sum())} points fewer in total",
            DataWarning,
            stacklevel=5,  # sample_raster_points' caller (via draw and its allocation)
        )


# ------------------------------------------------------------------------------------- the run's reference


def load_reference(
    ref_cfg: ReferenceConfig,
    *,
    random_state: int = 42,
    progress: Progress | None = None,
    n_threads: int = 2,
) -> ReferencePoints:
    """The reference points of a run: sampled from a class raster, or read from a CSV or a vector layer.

    Parameters
    ----------
    ref_cfg : lcmodel.config.ReferenceConfig
        The ``reference`` section. With ``kind="auto"`` a file named as in
        :data:`lcmodel.config.POINT_SUFFIXES` (``.csv``, ``.gpkg``, ``.shp``...) is read as points, anything
        else is sampled as a raster.
    random_state : int
        Seed of the raster sample.
    progress : callable, optional
        ``progress(done, total)`` for raster sampling.
    n_threads : int
        Threads reading raster blocks.

    Returns
    -------
    ReferencePoints
        In the reference's own CRS (the raster's, a vector file's, or ``reference.crs`` for CSV points).
    """
    path = ref_cfg.path
    if not isinstance(path, Path):
        raise ConfigError(
            f"reference.path {list(path)!r} names several files; load_reference reads one (a run reads tile "
            "collections: lcmodel run)"
        )
    from lcmodel.config import resolve_reference_kind

    if resolve_reference_kind(ref_cfg.kind, path) == "points":
        return read_points_file(
            path,
            x_column=ref_cfg.x_column,
            y_column=ref_cfg.y_column,
            label_column=ref_cfg.label_column,
            crs=ref_cfg.crs if "crs" in ref_cfg.model_fields_set else None,
            layer=ref_cfg.layer,
        )
    return sample_raster_points(
        path,
        ref_cfg.n_points,
        nodata=ref_cfg.nodata,
        random_state=random_state,
        progress=progress,
        n_threads=n_threads,
    )

