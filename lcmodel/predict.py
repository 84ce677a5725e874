"""Block-wise prediction of a whole embedding raster into a Cloud Optimized GeoTIFF class map.

The raster is cut into windows aligned with its internal blocks (square multiples of the tile size
for tiled files, full-width row strips for striped files), so every block is decoded once. Each
window is read, its valid pixels (by the bundle's :class:`~lcmodel.embedding.NodataRule`, the same
rule as at extraction) are turned into float32 C-contiguous features and classified with one
``predict_proba`` call; the label is ``classes_[argmax]`` (what ``RandomForestClassifier.predict``
returns) and the confidence is ``round(100 * max probability)`` (half up). Nodata pixels are never
classified: they get the map's nodata value and confidence 255.

Engines (``engine``, :class:`lcmodel.forest.Predictor`): with ``"auto"`` (the default) a plain
``RandomForestClassifier`` or ``ExtraTreesClassifier`` is also compiled
(:class:`lcmodel.forest.CompiledForest`, a branch-free walk of the same trees that gives scikit-learn's
probabilities bit for bit); the first large block times both engines and the faster one classifies
the rest (the compiled walk wins on trees of bounded depth, scikit-learn can win on very deep,
unbalanced trees). ``engine="sklearn"``, or any other estimator, uses the estimator's own
``predict_proba``. The map does not depend on the engine.

With ``n_jobs > 1`` windows are classified in parallel, each worker reading its own windows with its
own dataset handle: for a plain forest by threads sharing one model (both engines release the GIL in
the tree walk), for other estimators by worker processes (each loading the model once). The results
are written in window order, so the output is identical for any ``n_jobs``. The estimator's own
``n_jobs`` is forced to 1 while predicting (one level of parallelism, and a fixed summation order of
the trees' probabilities).

GDAL's COG driver cannot write window by window: blocks go to a tiled DEFLATE GeoTIFF in a temporary
folder next to the output, overviews are built (mode for classes, average for confidence), the file
is copied with the COG driver and renamed into place only when complete. A failing block stops the
run with a :class:`~lcmodel.errors.PredictionError` naming its window and leaves no output behind.

Resumable: finished blocks are kept in ``<folder>/.<name>.partial/`` (:class:`BlockStore`) until the
outputs are in place, so a call killed at any point and made again with the same inputs and options
predicts only the missing blocks, and writes a map byte-identical to an uninterrupted run. The flow's
``predict_map`` task calls the same function, so a retried or re-run task resumes too. The output
folder is locked (:func:`lcmodel.io.output_lock`) while the call runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioIOError
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window

from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule
from lcmodel.errors import (
    ClassTableError,
    ConfigError,
    InputFileError,
    LcmodelError,
    OutputError,
    PredictionError,
)
from lcmodel.forest import ENGINES, Predictor
from lcmodel.io import ONE_PASS_CACHE_MB, atomic_path, one_pass_cache, open_raster, output_lock
from lcmodel.model_io import ModelBundle, check_compatible
from lcmodel.uncertainty import ExtraOutputs, Uncertainty
from lcmodel.uncertainty import mark_unclassified as _mark_unclassified
from lcmodel.uncertainty import uncertainty_spec as _uncertainty_spec

__all__ = [
    "PredictionSummary",
    "predict_raster",
    "PredictionOptions",
    "PredictionPlan",
    "prepare_prediction",
    "predict_blocks",
    "assemble_prediction",
    "BlockStore",
    "partial_dir",
    "choose_block_size",
    "output_dtype",
    "plan_windows",
    "effective_block_size",
    "overview_factors",
    "CONFIDENCE_NODATA",
    "COG_BLOCKSIZE",
    "ENGINES",
]

logger = logging.getLogger(__name__)

#: Nodata value of the confidence raster (confidence itself is 0..100).
CONFIDENCE_NODATA = 255
#: Tile size of the output COGs.
COG_BLOCKSIZE = 512
#: Default windows are at most this many pixels on a side (so that workers get several windows).
DEFAULT_MAX_WINDOW = 512
#: Overviews are added (2, 4, 8, ...) until the smallest is under this many pixels (long side).
OVERVIEW_MIN_SIZE = 256
_UNSIGNED = ("uint8", "uint16", "uint32")
_NO_COLOR = (128, 128, 128, 255)


@dataclass
class PredictionSummary:
    """What :func:`predict_raster` wrote, with counts for reports.

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
    n_resumed : blocks taken from an interrupted earlier run (see :class:`BlockStore`), not recomputed.
    n_unclassified, unclassified_value : pixels below ``unclassified_below`` and their map value.
    extra_paths : uncertainty COGs written (``probabilities``, ``margin``, ``entropy`` -> path).
    engine : what classified the pixels: ``"compiled"`` (:mod:`lcmodel.forest`) or ``"sklearn"``; from
        :func:`assemble_prediction`, the ``engine`` option (each block group chose its own).
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


def choose_block_size(
    n_bands: int, dtype_bytes: int, n_classes: int, memory_mb: int, internal_block: int
) -> int:
    """Side of a square prediction window that fits a memory budget.

    Bytes per window of ``px`` pixels::

        bands * px * dtype_bytes      raw block as read
      + classes * px * 8              probabilities (float64)
      + px * (4 + 1)                  class index and valid mask

    The side is ``floor(sqrt(memory_mb * 2**20 / bytes_per_pixel))`` rounded DOWN to a multiple of
    the raster's internal block size, and at least one internal block. The float32 copy of the
    valid pixels (``bands * 4`` bytes per pixel) and scikit-learn's temporaries come on top: keep
    ``memory_mb`` at about half of the memory each worker may use.

    Parameters
    ----------
    n_bands : bands of the embedding.
    dtype_bytes : bytes per raw value (4 for float32, 1 for int8).
    n_classes : classes of the model.
    memory_mb : budget per window (per worker) in MiB.
    internal_block : the raster's internal tile size in pixels (non-square tiles: their lcm).

    Returns
    -------
    int
        Window side in pixels, a multiple of ``internal_block``.

    Raises
    ------
    ConfigError
        A size is not positive.
    """
    if min(n_bands, dtype_bytes, n_classes, memory_mb, internal_block) < 1:
        raise ConfigError(
            f"choose_block_size needs positive sizes (bands={n_bands}, dtype_bytes={dtype_bytes}, "
            f"classes={n_classes}, memory_mb={memory_mb}, internal_block={internal_block}); "
            "raise the value"
        )
    bytes_per_pixel = n_bands * dtype_bytes + n_classes * 8 + 4 + 1
    side = math.isqrt(memory_mb * 2**20 // bytes_per_pixel)
    return max(internal_block, side // internal_block * internal_block)


def output_dtype(class_values: list[int] | np.ndarray) -> tuple[str, int]:
    """Smallest unsigned data type holding the class values plus a nodata value.

    Class values are >= 1 by contract, so nodata is 0: uint8 for values up to 255, uint16 up to
    65535, uint32 beyond. If 0 is a class value (a model trained outside lcmodel), nodata is the
    type's maximum instead, which must then not be a class value itself.

    Parameters
    ----------
    class_values : the values the model can predict.

    Returns
    -------
    (dtype name, nodata value)

    Raises
    ------
    ClassTableError
        A value is negative, not an integer, or too large for uint32.
    """
    values = np.asarray(class_values)
    if values.size == 0:
        raise ClassTableError("the model has no class values; fit it on at least one class")
    integral = values.dtype.kind in "iu" or (
        values.dtype.kind == "f" and bool(np.all(np.mod(values, 1) == 0))
    )
    if not integral:
        raise ClassTableError(
            f"class values {values[:5].tolist()} are not integers; class values must be "
            "integers >= 1"
        )
    lo, hi = int(values.min()), int(values.max())
    if lo < 0:
        raise ClassTableError(f"class value {lo} is negative; class values must be integers >= 1")
    for name in _UNSIGNED:
        top = int(np.iinfo(name).max)
        if lo >= 1 and hi <= top:
            return name, 0
        if lo == 0 and hi < top:
            return name, top
    raise ClassTableError(
        f"class value {hi} does not fit in uint32; class values must be < 4294967295"
    )


def effective_block_size(block_size: int, internal_block: tuple[int, int], *, tiled: bool) -> int:
    """``block_size`` rounded DOWN to a multiple of the internal block (at least one block).

    For tiled rasters the unit is the lcm of the tile's rows and columns; for striped rasters the
    strip height.
    """
    by, bx = internal_block
    unit = math.lcm(by, bx) if tiled else by
    return max(unit, block_size // unit * unit)


def plan_windows(
    width: int, height: int, internal_block: tuple[int, int], block_size: int, *, tiled: bool
) -> list[Window]:
    """Windows that tile a raster exactly, aligned with its internal blocks, in row-major order.

    Parameters
    ----------
    width, height : raster size.
    internal_block : the raster's internal block shape ``(rows, cols)``.
    block_size : window side (tiled) or window height in rows (striped), a multiple of the
        internal block (see :func:`effective_block_size`).
    tiled : square windows (tiled raster) or full-width row strips (striped raster).

    Returns
    -------
    list of Window
        Non-overlapping windows covering every pixel once; edge windows are clipped to the raster.

    Raises
    ------
    ConfigError
        ``block_size`` is not a multiple of the internal block.
    """
    by, bx = internal_block
    win_h, win_w = (block_size, block_size) if tiled else (block_size, width)
    if win_h % by or (tiled and win_w % bx):
        raise ConfigError(
            f"block size {block_size} is not a multiple of the internal block {internal_block}; "
            "round it with effective_block_size"
        )
    return [
        Window(col, row, min(win_w, width - col), min(win_h, height - row))
        for row in range(0, height, win_h)
        for col in range(0, width, win_w)
    ]


def overview_factors(width: int, height: int, min_size: int = OVERVIEW_MIN_SIZE) -> list[int]:
    """Overview factors 2, 4, 8, ... until the smallest overview is under ``min_size`` pixels.

    At least one level, so that every output has overviews.
    """
    factors = [2]
    while math.ceil(max(width, height) / factors[-1]) >= min_size:
        factors.append(factors[-1] * 2)
    return factors


def predict_raster(
    bundle: ModelBundle,
    embedding_path: Path | str,
    out_path: Path | str,
    *,
    confidence_path: Path | str | None = None,
    block_size: int | None = None,
    n_jobs: int = 1,
    memory_mb: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    probabilities_path: Path | str | None = None,
    margin_path: Path | str | None = None,
    entropy_path: Path | str | None = None,
    unclassified_below: float | None = None,
    unclassified_value: int | None = None,
    engine: str = "auto",
) -> PredictionSummary:
    """Predict a land-cover map (and optionally a confidence map) for a whole embedding raster.

    Parameters
    ----------
    bundle : the model bundle (:func:`lcmodel.model_io.load_bundle`).
    embedding_path : the embedding raster.
    out_path : the class map COG to write.
    confidence_path : optional confidence COG on the same grid: uint8 0..100 =
        round(100 * highest class probability), nodata 255.
    block_size : window side in pixels (row-strip height for striped rasters); rounded down to a
        multiple of the raster's internal block. None: from ``memory_mb``
        (:func:`choose_block_size`), at most :data:`DEFAULT_MAX_WINDOW` pixels on a side.
    n_jobs : parallel workers (threads for a plain forest, else processes); 1 predicts in this
        process. The output does not depend on it.
    memory_mb : memory budget per window (per worker) in MiB, used when ``block_size`` is None.
    progress : called as ``progress(done, total)`` after each written window.
    probabilities_path : optional COG with one uint8 band per class (model class order), band
        description = class name: ``round(100 * probability)``, nodata 255. Per pixel the bands sum to
        100 up to rounding (at most ``ceil(n_classes / 2)`` away).
    margin_path : optional uint8 COG: ``round(100 * (top-1 minus top-2 probability))``, nodata 255.
    entropy_path : optional uint8 COG: ``round(100 * H / ln(n_classes))`` with ``H = -sum p ln p``
        (0 = certain, 100 = all classes equally likely), nodata 255.
    unclassified_below : when set (0..100), pixels whose highest class probability x 100 is below it get
        the reserved ``unclassified_value`` in the map (they are counted in ``n_unclassified``, not in
        ``class_counts``).
    unclassified_value : the reserved map value; None = the map dtype's maximum (its maximum minus 1
        when that is the nodata value). Must not be a class value or the nodata value.
    engine : ``"auto"`` (for a plain random forest the faster of the compiled forest and scikit-learn,
        timed on the first large block) or ``"sklearn"``. The output does not depend on it.

    Returns
    -------
    PredictionSummary

    Raises
    ------
    InputFileError
        The embedding is missing or not a raster.
    CompatibilityError
        The embedding does not match the bundle (bands, names, CRS, nodata rule); raised before
        any output exists.
    PredictionError
        A window failed (read error, model error, worker crash); names the window. No output is
        left behind and an earlier file at ``out_path`` is kept.
    ConfigError
        ``n_jobs``, ``block_size``, ``memory_mb`` or ``engine`` is out of range, or paths collide.
    OutputError
        An output cannot be written.

    Notes
    -----
    For an estimator other than a plain random forest and ``n_jobs > 1`` the workers are processes
    started with the "spawn" method (a fork would copy GDAL's block cache and open datasets), so a script
    that calls this must keep its top-level code under ``if __name__ == "__main__":``, as for any spawned
    multiprocessing program. Each worker loads the estimator once from a temporary file and opens the
    embedding once. A plain forest's workers are threads of this process sharing the model.
    """
    started = time.perf_counter()
    options = PredictionOptions(
        confidence_path=confidence_path,
        block_size=block_size,
        memory_mb=memory_mb,
        probabilities_path=probabilities_path,
        margin_path=margin_path,
        entropy_path=entropy_path,
        unclassified_below=unclassified_below,
        unclassified_value=unclassified_value,
        engine=engine,
    )
    job = _prepare(bundle, embedding_path, out_path, options, n_jobs)
    n_workers = min(n_jobs, len(job.windows))
    predictor = Predictor(bundle.estimator, engine)
    logger.info(
        "predicting %s (%d x %d, %d bands) in %d windows of %s %d with %d %s worker(s)",
        embedding_path,
        job.width,
        job.height,
        bundle.n_bands,
        len(job.windows),
        "side" if job.tiled else "rows",
        job.size,
        n_workers,
        "thread" if predictor.gil_free else "process",
    )
    with _locked(job):  # one run at a time per output folder (also for the flow)
        store = BlockStore.open(partial_dir(job.out_path), job.fingerprint)
        try:
            counts, n_resumed = _predict_missing_blocks(
                store, predictor, embedding_path, job.windows, job.rule, job.class_out, job.nodata, n_workers,
                job.conf_out is not None, progress, job.uncertainty,
            )
        except InputFileError:
            store.remove()  # an unreadable embedding must change, which invalidates the blocks anyway
            raise
        n_unclassified = _assemble(store, job, bundle)
        store.remove()
    return _summary(
        job, counts, n_unclassified, time.perf_counter() - started, n_workers, n_resumed, predictor.engine
    )


@dataclass(frozen=True)
class PredictionOptions:
    """The output options of a prediction, as for :func:`predict_raster` (picklable, for remote tasks).

    :func:`prepare_prediction`, :func:`predict_blocks` and :func:`assemble_prediction` must be given the
    same options: they are part of the work folder's fingerprint.
    """

    confidence_path: Path | str | None = None
    block_size: int | None = None
    memory_mb: int = 1024
    probabilities_path: Path | str | None = None
    margin_path: Path | str | None = None
    entropy_path: Path | str | None = None
    unclassified_below: float | None = None
    unclassified_value: int | None = None
    engine: str = "auto"  # not in the fingerprint: the blocks are the same bits with either engine


@dataclass(frozen=True)
class PredictionPlan:
    """The blocks of a prediction, from :func:`prepare_prediction`.

    Attributes
    ----------
    n_blocks : windows of the whole raster.
    todo : indices of the windows not finished yet (all of them unless an earlier run left some).
    block_size : window side (tiled) or strip height (striped) in pixels.
    work_dir : the shared work folder (:func:`partial_dir`) the block groups write into.
    """

    n_blocks: int
    todo: list[int]
    block_size: int
    work_dir: Path

    def groups(self, blocks_per_task: int) -> list[list[int]]:
        """The unfinished windows in consecutive groups of at most ``blocks_per_task``.

        Raises
        ------
        ConfigError
            ``blocks_per_task`` is below 1.
        """
        if blocks_per_task < 1:
            raise ConfigError(f"blocks_per_task={blocks_per_task} is not allowed; use 1 or more")
        return [self.todo[k : k + blocks_per_task] for k in range(0, len(self.todo), blocks_per_task)]


def prepare_prediction(
    bundle: ModelBundle, embedding_path: Path | str, out_path: Path | str, options: PredictionOptions
) -> PredictionPlan:
    """Check the inputs, plan the windows and create (or resume) the shared work folder.

    The first of three steps that split :func:`predict_raster` across machines: ``prepare_prediction``
    once, :func:`predict_blocks` for groups of windows (in any order, in parallel, on any machine that
    sees the same paths), :func:`assemble_prediction` once. The map is byte-identical to
    :func:`predict_raster`'s with the same options.

    Parameters
    ----------
    bundle : the model bundle.
    embedding_path : the embedding raster.
    out_path : the class map COG to write (its folder holds the work folder).
    options : output options (the same for all three steps).

    Returns
    -------
    PredictionPlan

    Raises
    ------
    InputFileError, CompatibilityError, ConfigError, OutputError
        As for :func:`predict_raster`, before any block is read.
    """
    job = _prepare(bundle, embedding_path, out_path, options, 1)
    with _locked(job):
        store = BlockStore.open(partial_dir(job.out_path), job.fingerprint)
        store.close()
    todo = [i for i in range(len(job.windows)) if i not in store.done]
    logger.info(
        "prediction of %s planned: %d window(s) of %s %d, %d to predict",
        embedding_path, len(job.windows), "side" if job.tiled else "rows", job.size, len(todo),
    )
    return PredictionPlan(len(job.windows), todo, job.size, store.folder)


def predict_blocks(
    bundle: ModelBundle,
    embedding_path: Path | str,
    out_path: Path | str,
    indices: list[int],
    options: PredictionOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Predict a group of windows into the shared work folder, as their own part.

    Each call records its blocks in a manifest file of its own (``parts/<first>-<random>.jsonl``), so
    calls running in parallel (Dask tasks, processes on several machines) never append to the same file;
    blocks already finished by any part are skipped. The output folder is not locked: the caller
    (a flow) holds the lock around the whole prediction. Windows are predicted in this process (the
    estimator single-threaded); parallelism comes from running several calls at once.

    Parameters
    ----------
    bundle : the model bundle.
    embedding_path : the embedding raster.
    out_path : the class map COG that :func:`assemble_prediction` will write.
    indices : window indices (from :meth:`PredictionPlan.groups`).
    options : the options given to :func:`prepare_prediction`.
    progress : called as ``progress(done, len(indices))`` after each block.

    Returns
    -------
    int
        Blocks predicted by this call (those already finished are not counted).

    Raises
    ------
    ConfigError
        An index is outside the plan.
    PredictionError
        The work folder was not prepared with these inputs and options, or a window failed.
    InputFileError
        A window of the embedding cannot be read.
    """
    job = _prepare(bundle, embedding_path, out_path, options, 1)
    bad = [i for i in indices if not 0 <= int(i) < len(job.windows)]
    if bad:
        raise ConfigError(
            f"window index {bad[0]} is outside the plan of {len(job.windows)} windows; take the groups from "
            "prepare_prediction(...).groups(n)"
        )
    store = BlockStore.open_part(partial_dir(job.out_path), job.fingerprint, f"{min(indices, default=0):07d}")
    todo = [int(i) for i in indices if int(i) not in store.done]
    if progress is not None and len(todo) < len(indices):
        progress(len(indices) - len(todo), len(indices))
    try:
        results = _iter_results(
            Predictor(bundle.estimator, options.engine), embedding_path, job.windows, todo, job.rule,
            job.class_out, job.nodata, 1, store.folder, job.uncertainty,
        )
        with contextlib.closing(results):
            for done, (i, labels, conf, block_counts, extra) in enumerate(
                results, start=len(indices) - len(todo) + 1
            ):
                arrays = {"labels": labels, "confidence": conf} if job.conf_out is not None else {"labels": labels}
                arrays.update(extra)
                store.add(i, arrays, block_counts)
                if progress is not None:
                    progress(done, len(indices))
    finally:
        store.close()
    logger.info("predicted %d block(s) of %d into %s", len(todo), len(indices), store.folder)
    return len(todo)


def assemble_prediction(
    bundle: ModelBundle,
    embedding_path: Path | str,
    out_path: Path | str,
    options: PredictionOptions,
    *,
    started: float | None = None,
    n_jobs: int = 1,
) -> PredictionSummary:
    """Build the COGs from the blocks that :func:`predict_blocks` calls wrote, then remove the work folder.

    Parameters
    ----------
    bundle : the model bundle.
    embedding_path : the embedding raster.
    out_path : the class map COG to write.
    options : the options given to :func:`prepare_prediction`.
    started : ``time.time()`` when the prediction started (for ``elapsed_s``); None = this call's start.
    n_jobs : parallel tasks used, reported in the summary.

    Returns
    -------
    PredictionSummary
        As :func:`predict_raster`'s; the outputs are byte-identical to its.

    Raises
    ------
    PredictionError
        Some windows have no finished block (names the first and how many).
    OutputError
        An output cannot be written.
    """
    wall_start = time.time() if started is None else started
    job = _prepare(bundle, embedding_path, out_path, options, 1)
    with _locked(job):
        store = BlockStore.open(partial_dir(job.out_path), job.fingerprint)
        missing = [i for i in range(len(job.windows)) if i not in store.done]
        if missing:
            store.close()
            raise PredictionError(
                f"{len(missing)} of {len(job.windows)} blocks of {str(job.out_path)!r} are not predicted (first: "
                f"block {missing[0] + 1} at window {_window_text(job.windows[missing[0]])}); run predict_blocks "
                "for them, or predict_raster, which resumes"
            )
        store.close()
        counts = np.zeros(len(job.class_out), dtype=np.int64)
        for i in range(len(job.windows)):
            counts += store.done[i]
        n_unclassified = _assemble(store, job, bundle)
        store.remove()
    # the groups chose their engine each: report the option ("auto" or "sklearn")
    return _summary(job, counts, n_unclassified, time.time() - wall_start, n_jobs, 0, options.engine)


@dataclass
class _Job:
    """Everything a prediction derives from its inputs and options before any block is read."""

    out_path: Path
    conf_out: Path | None
    classes: np.ndarray
    dtype: str
    nodata: int
    class_out: np.ndarray
    uncertainty: Uncertainty
    extra_paths: dict[str, Path]
    rule: NodataRule
    width: int
    height: int
    size: int
    tiled: bool
    windows: list[Window]
    profile: dict[str, Any]
    pixel_area: float | None
    fingerprint: str


def _prepare(
    bundle: ModelBundle, embedding_path: Path | str, out_path: Path | str, o: PredictionOptions, n_jobs: int
) -> _Job:
    """Check arguments, the model against the raster, and plan the windows (no block is read)."""
    out_path = Path(out_path)
    conf_out = Path(o.confidence_path) if o.confidence_path is not None else None
    _check_arguments(embedding_path, out_path, conf_out, o.block_size, n_jobs, o.memory_mb, o.engine)
    classes = np.asarray(bundle.class_values, dtype=np.int64)
    dtype, nodata = output_dtype(classes)
    # --- uncertainty products (lcmodel.uncertainty): spec checked before any work
    uncertainty, extra_paths = _uncertainty_spec(
        classes, dtype, nodata, out_path, conf_out,
        o.probabilities_path, o.margin_path, o.entropy_path, o.unclassified_below, o.unclassified_value,
    )
    unknown = sorted(set(classes.tolist()) - set(bundle.class_table.values))
    if unknown:
        logger.warning("model classes %s are not in the class table; they get no name", unknown)

    with open_raster(embedding_path, "embedding raster") as src:
        rule = check_compatible(bundle, src)
        width, height = src.width, src.height
        size, tiled, windows = _window_plan(src, o.block_size, o.memory_mb, len(classes))
        profile = _output_profile(src, windows[0])
        pixel_area = _pixel_area_m2(src)
    class_out = classes.astype(dtype)
    fingerprint = _fingerprint(
        bundle, embedding_path, windows, profile, class_out, nodata, rule, conf_out is not None, uncertainty
    )
    return _Job(out_path, conf_out, classes, dtype, nodata, class_out, uncertainty, extra_paths, rule, width,
                height, size, tiled, windows, profile, pixel_area, fingerprint)


@contextlib.contextmanager
def _locked(job: _Job) -> Iterator[None]:
    """Hold the lock of every output folder of a prediction."""
    with contextlib.ExitStack() as locks:
        folders = {job.out_path.parent.resolve(), *([job.conf_out.parent.resolve()] if job.conf_out else [])}
        for folder in sorted(folders):
            locks.enter_context(output_lock(folder))
        yield


def _assemble(store: BlockStore, job: _Job, bundle: ModelBundle) -> int:
    """:func:`_assemble_outputs` for a job, with write failures as :class:`OutputError`."""
    try:
        return _assemble_outputs(
            store, job.windows, job.profile, bundle, job.classes, job.class_out, job.dtype, job.nodata,
            job.width, job.height, job.out_path, job.conf_out, job.extra_paths, job.uncertainty,
        )
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(
            f"could not write {str(job.out_path)!r} ({exc.strerror or str(exc).splitlines()[0]}); "
            f"check free space and permissions, then rerun: finished blocks are kept in {str(store.folder)!r}"
        ) from None


def _summary(
    job: _Job,
    counts: np.ndarray,
    n_unclassified: int,
    elapsed: float,
    n_workers: int,
    n_resumed: int,
    engine: str = "sklearn",
) -> PredictionSummary:
    n_valid = int(counts.sum()) + n_unclassified
    n_pixels = job.width * job.height
    summary = PredictionSummary(
        map_path=job.out_path,
        confidence_path=job.conf_out,
        width=job.width,
        height=job.height,
        n_blocks=len(job.windows),
        n_pixels=n_pixels,
        n_valid=n_valid,
        n_nodata=n_pixels - n_valid,
        class_counts={int(v): int(n) for v, n in zip(job.classes, counts, strict=True)},
        pixel_area_m2=job.pixel_area,
        elapsed_s=elapsed,
        pixels_per_s=n_pixels / elapsed if elapsed > 0 else float("inf"),
        block_size=job.size,
        n_jobs=n_workers,
        output_dtype=job.dtype,
        output_nodata=job.nodata,
        n_resumed=n_resumed,
        n_unclassified=n_unclassified,
        unclassified_value=job.uncertainty.unclassified_value,
        extra_paths={k: str(v) for k, v in job.extra_paths.items()},
        engine=engine,
    )
    logger.info(
        "predicted %d valid of %d pixels in %.1f s (%.0f px/s) -> %s",
        n_valid, n_pixels, elapsed, summary.pixels_per_s, job.out_path,
    )
    return summary


def _check_arguments(
    embedding_path: Path | str,
    out_path: Path,
    conf_out: Path | None,
    block_size: int | None,
    n_jobs: int,
    memory_mb: int,
    engine: str = "auto",
) -> None:
    if n_jobs < 1:
        raise ConfigError(f"n_jobs={n_jobs} is not allowed; use 1 (in-process) or more workers")
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is not an engine; use one of {', '.join(ENGINES)}")
    if block_size is not None and block_size < 1:
        raise ConfigError(
            f"block_size={block_size} is not allowed; use a positive size or None (from memory_mb)"
        )
    if memory_mb < 1:
        raise ConfigError(f"memory_mb={memory_mb} is not allowed; use a positive budget in MiB")
    if conf_out is not None and conf_out.resolve() == out_path.resolve():
        raise ConfigError(
            f"confidence_path equals the map path {str(out_path)!r}; give two different files"
        )
    outputs = {out_path.resolve(), conf_out.resolve() if conf_out is not None else None}
    if Path(embedding_path).resolve() in outputs:
        raise ConfigError(
            f"an output path equals the embedding {str(embedding_path)!r}; write elsewhere"
        )


def _window_plan(
    src: DatasetReader, block_size: int | None, memory_mb: int, n_classes: int
) -> tuple[int, bool, list[Window]]:
    """(block size, tiled?, windows) for an open raster."""
    width = src.width
    internal = (int(src.block_shapes[0][0]), int(src.block_shapes[0][1]))
    # striped files have full-width blocks; tiled ones (and formats with narrower blocks) do not
    tiled = bool(src.profile.get("tiled", False)) or internal[1] < width
    dtype_bytes = np.dtype(src.dtypes[0]).itemsize
    if block_size is not None:
        size = block_size
    elif tiled:
        unit = math.lcm(*internal)
        size = choose_block_size(src.count, dtype_bytes, n_classes, memory_mb, unit)
        size = min(size, max(unit, DEFAULT_MAX_WINDOW // unit * unit))
    else:
        side = choose_block_size(src.count, dtype_bytes, n_classes, memory_mb, 1)
        size = min(side * side, DEFAULT_MAX_WINDOW**2) // width  # rows of a strip
    size = effective_block_size(size, internal, tiled=tiled)
    return size, tiled, plan_windows(width, src.height, internal, size, tiled=tiled)


# --- one window --------------------------------------------------------------------------------

_BlockResult = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]


def _predict_block(
    predictor: Callable[[np.ndarray], np.ndarray],
    block: np.ndarray,
    rule: NodataRule,
    class_out: np.ndarray,
    nodata: int,
    uncertainty: Uncertainty | None = None,
) -> _BlockResult:
    """Classify the valid pixels of a raw (bands, rows, cols) block.

    Returns labels (rows, cols) in the map dtype, confidence (rows, cols) uint8, the number of
    pixels predicted per class, and the uncertainty products asked for (see :class:`Uncertainty`).
    """
    mask, features = rule.block_features(block)
    labels = np.full(mask.shape, nodata, dtype=class_out.dtype)
    conf = np.full(mask.shape, CONFIDENCE_NODATA, dtype=np.uint8)
    counts = np.zeros(len(class_out), dtype=np.int64)
    n = features.shape[0]
    proba = None
    if n:
        proba = predictor(features)
        if proba.shape != (n, len(class_out)):
            raise ValueError(
                f"predict_proba returned shape {proba.shape}, expected {(n, len(class_out))}"
            )
        index = np.argmax(proba, axis=1)
        labels[mask] = class_out[index]
        top = proba[np.arange(n), index]
        conf[mask] = np.clip(np.floor(top * 100.0 + 0.5), 0, 100).astype(np.uint8)
        counts = np.bincount(index, minlength=len(class_out)).astype(np.int64)
    extra: dict[str, np.ndarray] = {}
    if uncertainty is not None and uncertainty.active:
        extra = uncertainty.compute(proba, mask, labels, counts)
    return labels, conf, counts, extra


def _n_jobs_params(estimator: Any) -> dict[str, Any]:
    """Every ``n_jobs`` parameter of an estimator, nested ones included (``step__n_jobs``)."""
    if not hasattr(estimator, "get_params"):
        return {}
    params = estimator.get_params(deep=True)
    return {k: v for k, v in params.items() if k.split("__")[-1] == "n_jobs"}


@contextlib.contextmanager
def _single_threaded(estimator: Any) -> Iterator[Any]:
    """Set every ``n_jobs`` of the estimator to 1 for the duration, then restore them."""
    saved = _n_jobs_params(estimator)
    try:
        if saved:
            estimator.set_params(**{k: 1 for k in saved})
        yield estimator
    finally:
        if saved:
            estimator.set_params(**saved)


def _window_text(window: Window) -> str:
    return (
        f"(col_off={int(window.col_off)}, row_off={int(window.row_off)}, "
        f"width={int(window.width)}, height={int(window.height)})"
    )


def _block_error(
    window: Window, index: int, exc: BaseException, embedding_path: Path | str | None = None
) -> LcmodelError:
    cause = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, RasterioIOError) and embedding_path is not None:
        if exc.__cause__ is not None and str(exc.__cause__):  # GDAL's own reason, when chained
            cause = str(exc.__cause__).splitlines()[0]
        return InputFileError(
            f"embedding raster {str(embedding_path)!r} could not be read in block {index + 1} at window "
            f"{_window_text(window)} ({cause}); the file may be truncated or corrupt: check it with "
            "gdalinfo -checksum and export it again"
        )
    return PredictionError(
        f"prediction failed in block {index + 1} at window {_window_text(window)}: "
        f"{type(exc).__name__}: {cause}; check the embedding at that window and the model, "
        "then rerun"
    )


def _iter_results(
    predictor: Predictor,
    embedding_path: Path | str,
    windows: list[Window],
    todo: list[int],
    rule: NodataRule,
    class_out: np.ndarray,
    nodata: int,
    n_workers: int,
    work_dir: Path,
    uncertainty: Uncertainty | None = None,
) -> Generator[tuple[int, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]], None, None]:
    """Yield (index, labels, confidence, counts, extras) for the windows ``todo``, in that order."""
    with one_pass_cache():  # every block is decoded once: a large GDAL cache only raises the peak memory
        if n_workers == 1 or len(todo) <= 1:
            with _single_threaded(predictor.estimator), rasterio.open(embedding_path) as src:
                for i in todo:
                    window = windows[i]
                    try:
                        block = src.read(window=window)
                        result = _predict_block(predictor, block, rule, class_out, nodata, uncertainty)
                    except Exception as exc:  # re-raised: any failure stops the run, naming the block
                        raise _block_error(window, i, exc, embedding_path) from exc
                    yield (i, *result)
            return

        if predictor.gil_free:  # threads: one model; both engines release the GIL in the tree walk
            handles: list[DatasetReader] = []
            local = threading.local()
            opened = threading.Lock()

            def predict_in_thread(k: int) -> _BlockResult:
                src = getattr(local, "src", None)
                if src is None:  # one dataset handle per thread: rasterio handles are not thread-safe
                    src = local.src = rasterio.open(embedding_path)
                    with opened:
                        handles.append(src)
                return _predict_block(predictor, src.read(window=windows[k]), rule, class_out, nodata, uncertainty)

            # no _single_threaded here: a forest's Predictor calls single-threaded copies, never the shared one
            threads = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="lcmodel-predict")
            try:
                yield from _in_order(
                    threads, lambda k: threads.submit(predict_in_thread, k), windows, todo, n_workers, embedding_path
                )
            finally:
                for src in handles:
                    src.close()
            return

        model_file = work_dir / "estimator.joblib"
        joblib.dump(predictor.estimator, model_file)  # once; each worker loads it in its initializer
        executor = ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=get_context("spawn"),  # no fork of a process holding GDAL caches and handles
            initializer=_worker_init,
            initargs=(str(model_file), str(embedding_path), rule.to_dict(), class_out, nodata, uncertainty),
        )

        def predict_in_process(k: int) -> Future[_BlockResult]:
            w = windows[k]
            return executor.submit(_worker_predict, (int(w.col_off), int(w.row_off), int(w.width), int(w.height)))

        yield from _in_order(executor, predict_in_process, windows, todo, n_workers, embedding_path)


def _in_order(
    executor: Executor,
    submit: Callable[[int], Future[_BlockResult]],
    windows: list[Window],
    todo: list[int],
    n_workers: int,
    embedding_path: Path | str,
) -> Generator[tuple[int, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]], None, None]:
    """Submit window ``k`` with ``submit(k)`` for the windows ``todo``, at most 2 per worker ahead; yield the
    results in that order. The executor is shut down (pending windows cancelled) when this ends."""
    pending: deque[tuple[int, Future[_BlockResult]]] = deque()
    queue = deque(todo)
    try:
        while queue or pending:
            while queue and len(pending) < 2 * n_workers:  # bounded memory
                k = queue.popleft()
                pending.append((k, submit(k)))
            i, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as exc:
                raise PredictionError(
                    f"a worker process died while predicting block {i + 1} at window "
                    f"{_window_text(windows[i])}; it may have run out of memory (lower n_jobs or "
                    "memory_mb), or the calling script lacks an `if __name__ == '__main__':` "
                    "guard (needed for n_jobs > 1)"
                ) from exc
            except Exception as exc:  # re-raised: any failure stops the run, naming the block
                raise _block_error(windows[i], i, exc, embedding_path) from exc
            yield (i, *result)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


# --- worker processes (estimators other than a plain forest) -----------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(
    model_file: str,
    embedding_path: str,
    rule: dict[str, Any],
    class_out: np.ndarray,
    nodata: int,
    uncertainty: Uncertainty | None = None,
) -> None:
    """Load the model once per worker (single-threaded) and open the embedding once."""
    os.environ.setdefault("GDAL_CACHEMAX", str(ONE_PASS_CACHE_MB))  # before GDAL's first read here
    estimator = joblib.load(model_file, mmap_mode="r")
    jobs = _n_jobs_params(estimator)
    if jobs:
        estimator.set_params(**{k: 1 for k in jobs})
    _WORKER.update(
        predictor=Predictor(estimator, "sklearn"),
        src=rasterio.open(embedding_path),
        rule=NodataRule.from_dict(rule),
        class_out=class_out,
        nodata=nodata,
        uncertainty=uncertainty,
    )


def _worker_predict(spec: tuple[int, int, int, int]) -> _BlockResult:
    """Read and classify one window in a worker process."""
    w = _WORKER
    block = w["src"].read(window=Window(*spec))
    return _predict_block(w["predictor"], block, w["rule"], w["class_out"], w["nodata"], w["uncertainty"])


# --- resumable prediction (reliability) --------------------------------------------------------
#
# Every finished block is saved to its own small file in a work folder beside the output, then recorded
# in a manifest; the class map is assembled from those files only at the end. Order of durability, per
# block: (1) block file written to a temporary name, flushed and fsync'd; (2) renamed to its final name,
# folder fsync'd; (3) one manifest line appended, flushed and fsync'd. A kill at any point therefore never
# records a block that is not complete on disk: a block file without a manifest line is recomputed (and
# overwritten, identically); a torn last manifest line is ignored. The uninterrupted and the resumed run
# both assemble the map from the same block files in the same order, so their COGs are byte-identical.
# GDAL's block cache is not involved until assembly, which is redone from scratch after any crash.

#: Version of the work-folder layout; part of the fingerprint.
_PARTIAL_FORMAT = 1
_MANIFEST = "manifest.jsonl"
_BLOCKS = "blocks"
_PARTS = "parts"


def partial_dir(out_path: Path | str) -> Path:
    """The work folder of a prediction into ``out_path``: ``<folder>/.<name>.partial``.

    It holds the finished blocks and their manifest while the prediction runs, and survives a crash so
    that the next call with the same inputs resumes; it is removed when the outputs are complete.
    """
    out_path = Path(out_path)
    return out_path.parent / f".{out_path.name}.partial"


def _fingerprint(
    bundle: ModelBundle,
    embedding_path: Path | str,
    windows: list[Window],
    profile: dict[str, Any],
    class_out: np.ndarray,
    nodata: int,
    rule: NodataRule,
    confidence: bool,
    uncertainty: Uncertainty | None = None,
) -> str:
    """SHA-256 of everything a finished block depends on: model, embedding file, block plan, options."""
    from lcmodel import __version__

    emb = Path(embedding_path).resolve()
    st = emb.stat()
    model = bundle.source_sha256 or joblib.hash(bundle.estimator, hash_name="sha1")
    plan = [[int(w.col_off), int(w.row_off), int(w.width), int(w.height)] for w in windows]
    facts = {
        "format": _PARTIAL_FORMAT,
        "lcmodel": __version__,
        "model": model,
        "embedding": [str(emb), st.st_size, st.st_mtime_ns],
        "windows": plan,
        "tile": [profile["blockxsize"], profile["blockysize"]],
        "classes": class_out.tolist(),
        "dtype": str(class_out.dtype),
        "nodata": nodata,
        "rule": rule.to_dict(),
        "outputs": _block_array_names(confidence),
        "uncertainty": asdict(uncertainty) if uncertainty is not None else None,
    }
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _block_array_names(confidence: bool) -> list[str]:
    """Names of the per-block arrays saved in a block file (a new output adds its name here)."""
    return ["labels", "confidence"] if confidence else ["labels"]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlockStore:
    """The finished blocks of one prediction: one ``.npz`` per block plus a fsync'd JSON-lines manifest.

    The manifest's first line is ``{"fingerprint": ...}``; each further line ``{"block": i, "counts": [...]}``
    records a block whose file is complete on disk. Any named arrays can be saved per block (``labels``,
    ``confidence``, and whatever further outputs a caller adds).

    Use :meth:`open`: it resumes a folder whose fingerprint matches, and starts afresh otherwise. Block
    groups predicted in parallel (:func:`predict_blocks`) use :meth:`open_part`: each writes its own
    manifest under ``parts/`` (same format), so no two writers append to one file; :meth:`open` merges
    the parts into the main manifest.
    """

    def __init__(
        self, folder: Path, fingerprint: str, done: dict[int, np.ndarray], manifest: Path | None = None
    ) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.done = done
        self._manifest = open(manifest or folder / _MANIFEST, "a", encoding="utf-8")  # noqa: SIM115

    @classmethod
    def open(cls, folder: Path, fingerprint: str) -> BlockStore:
        """Resume the work folder when its fingerprint matches, else empty it and start afresh.

        Raises
        ------
        OutputError
            The folder cannot be created or written.
        """
        try:
            done = cls._read(folder, fingerprint)
            if done is None:
                if folder.exists():
                    logger.info("discarding %s: it belongs to other inputs or options", folder)
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                (folder / _BLOCKS).mkdir()
                done = {}
            lines = [json.dumps({"fingerprint": fingerprint})]
            lines += [json.dumps({"block": i, "counts": c.tolist()}) for i, c in sorted(done.items())]
            tmp = folder / (_MANIFEST + ".tmp")  # rewritten clean: a torn last line is dropped
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / _MANIFEST)
            _fsync_dir(folder)
            for part in sorted((folder / _PARTS).glob("*.jsonl")):  # merged above; the main manifest has them
                part.unlink()
        except OSError as exc:
            raise OutputError(
                f"could not write the prediction work folder {str(folder)!r} ({exc.strerror or exc}); "
                "check free space and permissions"
            ) from None
        if done:
            logger.info("resuming prediction: %d finished block(s) in %s", len(done), folder)
        return cls(folder, fingerprint, done)

    @classmethod
    def open_part(cls, folder: Path, fingerprint: str, prefix: str) -> BlockStore:
        """A store that records its blocks in a new manifest of its own, ``parts/<prefix>-<random>.jsonl``.

        The folder must have been created by :meth:`open` with the same fingerprint (by
        :func:`prepare_prediction`); it is never emptied here, since other parts may be writing to it.
        ``done`` holds the blocks finished by any part so far.

        Raises
        ------
        PredictionError
            The folder is missing or belongs to other inputs or options.
        OutputError
            The part manifest cannot be written.
        """
        done = cls._read(folder, fingerprint)
        if done is None:
            raise PredictionError(
                f"prediction work folder {str(folder)!r} is missing or was prepared for other inputs or options; "
                "call prepare_prediction with the same model, embedding and options first"
            )
        manifest = folder / _PARTS / f"{prefix}-{uuid.uuid4().hex[:12]}.jsonl"
        try:
            manifest.parent.mkdir(exist_ok=True)
            with open(manifest, "x", encoding="utf-8") as f:
                f.write(json.dumps({"fingerprint": fingerprint}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(manifest.parent)
        except OSError as exc:
            raise OutputError(
                f"could not write the prediction work folder {str(folder)!r} ({exc.strerror or exc}); "
                "check free space and permissions"
            ) from None
        return cls(folder, fingerprint, done, manifest)

    @staticmethod
    def _read(folder: Path, fingerprint: str) -> dict[int, np.ndarray] | None:
        """Finished blocks of a matching work folder (main manifest and parts), or None when there is none."""
        done = BlockStore._read_manifest(folder, folder / _MANIFEST, fingerprint)
        if done is None:
            return None
        for part in sorted((folder / _PARTS).glob("*.jsonl")):
            done.update(BlockStore._read_manifest(folder, part, fingerprint) or {})
        return done

    @staticmethod
    def _read_manifest(folder: Path, path: Path, fingerprint: str) -> dict[int, np.ndarray] | None:
        """Finished blocks recorded in one manifest file, or None when it is absent or for another fingerprint."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        done: dict[int, np.ndarray] = {}
        for n, line in enumerate(text.splitlines()):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash: that block is recomputed
            if n == 0:
                if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
                    return None
                continue
            if isinstance(entry, dict) and "block" in entry and "counts" in entry:
                i = int(entry["block"])
                if BlockStore._block_file(folder, i).is_file():
                    done[i] = np.asarray(entry["counts"], dtype=np.int64)
        return done if text.strip() else None

    @staticmethod
    def _block_file(folder: Path, index: int) -> Path:
        return folder / _BLOCKS / f"{index:07d}.npz"

    def add(self, index: int, arrays: dict[str, np.ndarray], counts: np.ndarray) -> None:
        """Save one finished block durably, then record it in the manifest (in that order)."""
        final = self._block_file(self.folder, index)
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            self._manifest.write(json.dumps({"block": index, "counts": counts.tolist()}) + "\n")
            self._manifest.flush()
            os.fsync(self._manifest.fileno())
        except OSError as exc:
            raise OutputError(
                f"could not write block {index + 1} to {str(final)!r} ({exc.strerror or exc}); check free "
                "space and permissions, then rerun: finished blocks are kept and resumed"
            ) from None
        self.done[index] = counts

    def load(self, index: int) -> dict[str, np.ndarray]:
        """The named arrays of a finished block."""
        path = self._block_file(self.folder, index)
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise OutputError(
                f"finished block file {str(path)!r} is unreadable ({exc}); delete {str(self.folder)!r} "
                "and rerun"
            ) from None

    def close(self) -> None:
        self._manifest.close()

    def remove(self) -> None:
        """Delete the work folder (after the outputs are in place)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _predict_missing_blocks(
    store: BlockStore,
    predictor: Predictor,
    embedding_path: Path | str,
    windows: list[Window],
    rule: NodataRule,
    class_out: np.ndarray,
    nodata: int,
    n_workers: int,
    confidence: bool,
    progress: Callable[[int, int], None] | None,
    uncertainty: Uncertainty | None = None,
) -> tuple[np.ndarray, int]:
    """Predict the blocks the store lacks; return per-class counts over all blocks and the resumed count."""
    todo = [i for i in range(len(windows)) if i not in store.done]
    n_resumed = len(windows) - len(todo)
    if progress is not None and n_resumed:
        progress(n_resumed, len(windows))
    try:
        results = _iter_results(
            predictor, embedding_path, windows, todo, rule, class_out, nodata, n_workers, store.folder,
            uncertainty,
        )
        with contextlib.closing(results):
            for done, (i, labels, conf, block_counts, extra) in enumerate(results, start=n_resumed + 1):
                arrays = {"labels": labels, "confidence": conf} if confidence else {"labels": labels}
                arrays.update(extra)  # uncertainty products, saved with the block so a resume keeps them
                store.add(i, arrays, block_counts)
                if progress is not None:
                    progress(done, len(windows))
    finally:
        store.close()
        (store.folder / "estimator.joblib").unlink(missing_ok=True)
    counts = np.zeros(len(class_out), dtype=np.int64)
    for i in range(len(windows)):
        counts += store.done[i]
    return counts, n_resumed


def _assemble_outputs(
    store: BlockStore,
    windows: list[Window],
    profile: dict[str, Any],
    bundle: ModelBundle,
    classes: np.ndarray,
    class_out: np.ndarray,
    dtype: str,
    nodata: int,
    width: int,
    height: int,
    out_path: Path,
    conf_out: Path | None,
    extra_paths: dict[str, Path] | None = None,
    uncertainty: Uncertainty | None = None,
) -> int:
    """Write the finished blocks into tiled GeoTIFFs, add overviews, copy to COGs, rename into place.

    Returns the number of pixels marked "unclassified".
    """
    map_tmp = store.folder / "map.tif"
    conf_tmp = store.folder / "confidence.tif" if conf_out is not None else None
    for p in (map_tmp, conf_tmp):
        if p is not None:
            p.unlink(missing_ok=True)  # a half-assembled file from a crash: assembly starts over
    with contextlib.ExitStack() as stack:
        dst_map = stack.enter_context(
            rasterio.open(map_tmp, "w", **profile, count=1, dtype=dtype, nodata=nodata)
        )
        extras = stack.enter_context(
            ExtraOutputs(extra_paths or {}, store.folder, profile, classes, bundle.class_table)
        )
        dst_conf = None
        if conf_tmp is not None:
            dst_conf = stack.enter_context(
                rasterio.open(conf_tmp, "w", **profile, count=1, dtype="uint8", nodata=CONFIDENCE_NODATA)
            )
        for i, window in enumerate(windows):
            arrays = store.load(i)
            dst_map.write(arrays["labels"], 1, window=window)
            if dst_conf is not None:
                dst_conf.write(arrays["confidence"], 1, window=window)
            extras.write(window, arrays)
        _describe_map(dst_map, bundle.class_table, classes, dtype, nodata)
        if dst_conf is not None:
            _describe_confidence(dst_conf)
    factors = overview_factors(width, height)
    _build_overviews(map_tmp, factors, Resampling.mode)
    # the colour table goes on after the overviews: GDAL warns (needlessly, for mode) when it
    # builds overviews of a palette band, and the indices it picks are the same either way
    _write_colour_table(map_tmp, bundle.class_table, classes, dtype, nodata)
    if uncertainty is not None and uncertainty.unclassified_value is not None:
        _mark_unclassified(map_tmp, uncertainty.unclassified_value)
    if conf_tmp is not None:
        _build_overviews(conf_tmp, factors, Resampling.average)
    extras.build_overviews(factors)
    with contextlib.ExitStack() as stack:  # all outputs appear together, only when complete
        _copy_cog(map_tmp, stack.enter_context(atomic_path(out_path)))
        if conf_out is not None and conf_tmp is not None:
            _copy_cog(conf_tmp, stack.enter_context(atomic_path(conf_out)))
        for tmp, final in extras.files():
            _copy_cog(tmp, stack.enter_context(atomic_path(final)))
    return extras.n_unclassified


# --- output files ------------------------------------------------------------------------------


def _output_profile(src: DatasetReader, first: Window) -> dict[str, Any]:
    """A fresh single-band tiled GeoTIFF profile on the embedding's grid.

    Never a copy of the embedding's profile (its predictor, nodata or dtype may not fit the map).
    The tile size is one that the windows align with, so each output tile is written once.
    """
    tile = COG_BLOCKSIZE
    h, w = int(first.height), int(first.width)
    for t in (512, 256, 128, 64, 32, 16):
        if (h % t == 0 or h == src.height) and (w % t == 0 or w == src.width):
            tile = t
            break
    return {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
        "crs": src.crs,
        "transform": src.transform,
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "compress": "deflate",
        "interleave": "band",
        "bigtiff": "IF_SAFER",
    }


def _class_name(table: ClassTable, value: int) -> str:
    return table.name(value) if value in table.values else str(value)


def _class_rgba(table: ClassTable, value: int) -> tuple[int, int, int, int]:
    return table.colormap().get(value, _NO_COLOR)


def _describe_map(
    dst: DatasetWriter, table: ClassTable, classes: np.ndarray, dtype: str, nodata: int
) -> None:
    """Band description and class-name tags (CLASS_<v> and JSON LCMODEL_CLASSES)."""
    dst.set_band_description(1, "land cover class")
    entries = []
    for v in (int(c) for c in classes):
        r, g, b, _ = _class_rgba(table, v)
        color = f"#{r:02x}{g:02x}{b:02x}"
        entries.append({"value": v, "name": _class_name(table, v), "color": color})
    tags = {f"CLASS_{e['value']}": e["name"] for e in entries}
    tags["LCMODEL_CLASSES"] = json.dumps(entries, separators=(",", ":"))
    dst.update_tags(**tags)


def _write_colour_table(path: Path, table: ClassTable, classes: np.ndarray, dtype: str, nodata: int) -> None:
    """The class colour table (nodata transparent), for 8- and 16-bit maps."""
    if dtype not in ("uint8", "uint16"):
        logger.info("no colour table for a %s map (GeoTIFF colour tables are 8/16 bit)", dtype)
        return
    colors = {int(v): _class_rgba(table, int(v)) for v in classes}
    colors[nodata] = (0, 0, 0, 0)  # nodata is transparent
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, colors)


def _describe_confidence(dst: DatasetWriter) -> None:
    dst.set_band_description(1, "confidence (%)")
    dst.update_tags(LCMODEL_CONFIDENCE="round(100 * highest class probability); 255 = nodata")


def _build_overviews(path: Path, factors: list[int], resampling: Resampling) -> None:
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews(factors, resampling)
        dst.update_tags(ns="rio_overview", resampling=resampling.name)


def _copy_cog(src_path: Path, dst_path: Path) -> None:
    """Copy a tiled GeoTIFF with overviews to a COG (DEFLATE, 512 tiles, the overviews as built)."""
    dst_path.unlink(missing_ok=True)
    rasterio.shutil.copy(
        str(src_path),
        str(dst_path),
        driver="COG",
        COMPRESS="DEFLATE",
        BLOCKSIZE=str(COG_BLOCKSIZE),
        OVERVIEWS="FORCE_USE_EXISTING",
        BIGTIFF="IF_SAFER",
    )


def _pixel_area_m2(src: DatasetReader) -> float | None:
    """Area of one pixel in m^2 for a projected CRS (|det| of the transform x unit factor^2)."""
    crs = src.crs
    if crs is None or not crs.is_projected:
        return None
    try:
        _, factor = crs.linear_units_factor
    except CRSError:  # no linear unit
        return None
    t = src.transform
    return float(abs(t.a * t.e - t.b * t.d) * factor * factor)
