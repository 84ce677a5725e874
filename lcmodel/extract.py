"""Embedding values at reference points, with an explicit valid mask.

The notebook sampled one 1 x 1 window per point (``src.sample``): about 0.26 ms of overhead per point, and,
once the raster is larger than GDAL's block cache, one whole tile decoded per point. Here the points are
grouped by the file's internal block (tiles, or chunks of strips for striped files), every touched block is
read ONCE with all its bands, the pixels are gathered with fancy indexing, and the blocks are decoded by a few
threads, each with its own dataset handle (GDAL releases the GIL while decoding).

The result keeps one row per input point, in input order: ``valid`` says which rows hold features, and
``inside`` tells points outside the raster apart from points on nodata pixels. The nodata rule and the
de-quantization are those of :class:`lcmodel.embedding.NodataRule`, as in prediction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import InputDataError, InputFileError
from lcmodel.geo import pixel_index
from lcmodel.io import open_raster
from lcmodel.rasterio_io import ThreadReaders, map_ordered

__all__ = ["Extraction", "extract_values", "pixel_index"]

logger = logging.getLogger(__name__)

#: Striped (non-tiled) files are read in chunks of whole strips of about this many bytes (all bands).
STRIP_CHUNK_BYTES = 8 << 20


@dataclass(frozen=True)
class Extraction:
    """Embedding values at a set of points, one row per point in input order.

    Attributes
    ----------
    values : float32 array (n_points, n_bands)
        Features (de-quantized for AlphaEarth int8 rasters). Rows of invalid points are 0.
    valid : bool array (n_points,)
        Inside the raster AND not nodata by ``rule``.
    inside : bool array (n_points,)
        Inside the raster extent (left/top edges included, right/bottom edges excluded).
    row, col : int64 arrays (n_points,)
        Pixel indices of each point, -1 when outside.
    band_names : list of str
        One name per band (band descriptions, else ``band_1..band_N``).
    rule : NodataRule
        The nodata rule that decided ``valid``.
    transform : Affine or None
        The raster's affine transform (pixel -> x/y), used to place de-duplicated samples at pixel centres.
    """

    values: np.ndarray
    valid: np.ndarray
    inside: np.ndarray
    row: np.ndarray
    col: np.ndarray
    band_names: list[str]
    rule: NodataRule
    transform: Affine | None = field(default=None)

    @property
    def n_points(self) -> int:
        """Number of points (valid or not)."""
        return int(self.valid.shape[0])


@dataclass(frozen=True)
class _Job:
    """One read: a window and the points (indices into the output) whose pixels lie in it."""

    window: Window
    points: np.ndarray


def _plan_jobs(
    row: np.ndarray,
    col: np.ndarray,
    inside: np.ndarray,
    *,
    height: int,
    width: int,
    block_shape: tuple[int, int],
    bytes_per_row: int,
) -> list[_Job]:
    """Group inside points by block (tiled files) or by chunk of whole strips (striped files)."""
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return []
    r = row[idx]
    c = col[idx]
    bh, bw = block_shape
    striped = bw >= width  # strips (or one column of blocks): read runs of whole rows
    if striped:
        # A chunk is a run of whole strips; only the strips between the first and last touched row are read.
        strips_per_chunk = max(1, STRIP_CHUNK_BYTES // max(1, bytes_per_row * bh))
        uh, uw = bh * strips_per_chunk, width
    else:
        uh, uw = bh, bw
    n_bc = -(-width // uw)
    key = (r // uh) * n_bc + (c // uw)
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
    ends = np.r_[starts[1:], key_sorted.size]
    jobs: list[_Job] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        pts = idx[order[s:e]]
        k = int(key_sorted[s])
        br, bc = divmod(k, n_bc)
        col_off = bc * uw
        win_w = min(uw, width - col_off)
        if striped:
            rr = row[pts]
            row_off = (int(rr.min()) // bh) * bh
            row_end = min(height, (int(rr.max()) // bh + 1) * bh)
        else:
            row_off = br * uh
            row_end = min(height, row_off + uh)
        jobs.append(_Job(Window(col_off, row_off, win_w, row_end - row_off), np.sort(pts)))
    return jobs


def _as_coordinates(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """x/y as 1-D float64 arrays of equal length, or a one-line error."""
    try:
        xs = np.asarray(x, dtype=np.float64)
        ys = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            f"point coordinates must be numbers ({exc}); check the x/y columns of the reference points"
        ) from None
    if xs.ndim != 1 or ys.ndim != 1:
        raise InputDataError(
            f"x and y must be 1-D arrays, got shapes {xs.shape} and {ys.shape}; pass one value per point"
        )
    if xs.shape != ys.shape:
        raise InputDataError(
            f"x has {xs.size} values but y has {ys.size}; pass one x and one y per point"
        )
    return xs, ys


def extract_values(
    path: Path | str,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    nodata: float | None = None,
    n_threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> Extraction:
    """Read the embedding vector under each point, every touched block decoded once.

    Parameters
    ----------
    path : path-like or str
        The embedding raster: a local path or a remote spec (``https://``, ``s3://``, ``/vsi...``).
    x, y : array-like of float
        Point coordinates, already in the raster's CRS (see ``lcmodel.reference.reproject_points``).
    nodata : float, optional
        Overrides the file's declared nodata value (``embedding.nodata`` in the config).
    n_threads : int, default 2
        Threads decoding blocks, each with its own dataset handle. 1 reads in the calling thread.
    progress : callable(done, total), optional
        Called with the number of blocks read so far, from the calling thread.

    Returns
    -------
    Extraction
        Values, masks and pixel indices, one row per point in input order.

    Raises
    ------
    InputFileError
        The file is missing, not a raster, has no CRS, or a block cannot be read.
    InputDataError
        x and y differ in length or are not numbers.
    """
    # imported here: lcmodel.sources' collection modules import this module
    from lcmodel.sources.remote import redact

    xs, ys = _as_coordinates(x, y)
    n_threads = max(1, int(n_threads))
    with open_raster(path, "embedding raster") as src:
        if src.crs is None:
            raise InputFileError(
                f"embedding raster {redact(path)!r} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:32720) "
                "or export it with its CRS"
            )
        rule = NodataRule.detect(src, override=nodata)
        names = band_names(src)
        transform = src.transform
        height, width, count = src.height, src.width, src.count
        dtype = np.dtype(src.dtypes[0])
        block_h, block_w = src.block_shapes[0]

    row, col, inside = pixel_index(transform, xs, ys, height, width)
    jobs = _plan_jobs(
        row,
        col,
        inside,
        height=height,
        width=width,
        block_shape=(int(block_h), int(block_w)),
        bytes_per_row=width * count * dtype.itemsize,
    )
    raw = np.zeros((xs.size, count), dtype=dtype)
    _read_jobs(path, jobs, row, col, raw, n_threads=n_threads, progress=progress)

    valid = inside.copy()
    if inside.any():
        # valid_mask wants (bands, rows, cols): the gathered pixels as one column of n_inside rows.
        valid[inside] = rule.valid_mask(raw[inside].T[:, :, None])[:, 0]
    values = np.zeros((xs.size, count), dtype=np.float32)
    if valid.any():
        values[valid] = rule.to_features(raw[valid])
    logger.debug(
        "extracted %d points from %s: %d inside, %d valid, %d blocks read",
        xs.size, redact(path), int(inside.sum()), int(valid.sum()), len(jobs),
    )
    return Extraction(
        values=values,
        valid=valid,
        inside=inside,
        row=row,
        col=col,
        band_names=names,
        rule=rule,
        transform=transform,
    )


def _read_jobs(
    path: Path | str,
    jobs: list[_Job],
    row: np.ndarray,
    col: np.ndarray,
    raw: np.ndarray,
    *,
    n_threads: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Read every job's window once and gather its points' pixels into ``raw`` (n_points, bands)."""
    from lcmodel.sources.remote import redact, safe_detail

    total = len(jobs)
    if total == 0:
        return

    def unreadable(w: Window, exc: RasterioIOError) -> InputFileError:
        detail = safe_detail(path, str(exc))
        return InputFileError(
            f"embedding raster {redact(path)!r} cannot be read at window (col {w.col_off}, row {w.row_off}, "
            f"{w.width} x {w.height}) ({detail}); check that the file is complete and not corrupt"
        )

    readers = ThreadReaders(path, on_error=unreadable)

    def gather(job: _Job) -> None:
        w = job.window
        block = readers.read(w)
        rr = row[job.points] - int(w.row_off)
        cc = col[job.points] - int(w.col_off)
        raw[job.points] = block[:, rr, cc].T

    # closing: the pool is shut down before the datasets close, even when a progress callback raises
    gathered = map_ordered(gather, jobs, n_threads, thread_name_prefix="lcmodel-extract")
    with readers, contextlib.closing(gathered):
        for done, _ in enumerate(gathered, start=1):
            if progress is not None:
                progress(done, total)
