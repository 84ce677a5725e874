"""Embedding values at reference points, with an explicit valid mask.

The notebook sampled one 1 x 1 window per point (``src.sample``): about 0.26 ms of overhead per point, and,
once the raster is larger than GDAL's block cache, one whole tile decoded per point. Here the points are
grouped by the file's internal block (tiles, or chunks of strips for striped files), every touched block is
read ONCE with all its bands, the pixels are gathered with fancy indexing, and the blocks are decoded by a few
threads, each with its own dataset handle (GDAL releases the GIL while decoding).

The result keeps one row per input point, in input order: ``valid`` says which rows hold features, and
``inside`` tells points outside the raster apart from points on nodata pixels. The nodata rule and the
de-quantization are those of :class:`lcmodel.embedding.NodataRule`, as in prediction.

Pixel indices are those of the raster's NORTH-UP grid (:class:`lcmodel.geo.Orientation`), the grid of the map:
a south-up raster (positive y pixel size, as the public AlphaEarth COGs) and its north-up copy give the same
rows, columns, values and pixel centres; only the reads use the stored rows. Bands that carry
nothing at the sampled pixels are dropped (or the caller's selection is used; :mod:`lcmodel.bands`), and the
nodata rule applies to the bands used only.
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

from lcmodel.bands import BandSelection, BandSpec, choose_bands, resolve_bands
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import InputDataError, InputFileError
from lcmodel.geo import grid_orientation, pixel_index
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
        Inside the raster extent (west/north edges included, east/south edges excluded, whatever the
        orientation).
    row, col : int64 arrays (n_points,)
        Pixel indices of each point in the raster's north-up grid (row 0 at the north edge, as in the map;
        the stored rows of a south-up raster are mirrored), -1 when outside.
    band_names : list of str
        One name per band used (band descriptions, else ``band_<index>``), one per column of ``values``.
    rule : NodataRule
        The nodata rule that decided ``valid`` (over the bands used).
    transform : Affine or None
        The north-up transform of the raster's grid (:func:`lcmodel.geo.north_up_transform`, pixel -> x/y of
        ``row``/``col``), used to place de-duplicated samples at pixel centres.
    tile : int64 array (n_points,) or None
        For a collection: the tile each point was read from (-1 outside every tile); pixels are then
        (tile, row, col). None for a single raster.
    centres : (x, y) float64 arrays or None
        For a collection: the centre of each point's pixel in the points' CRS (NaN where outside).
    bands : BandSelection or None
        The bands used (1-based source indexes) and those dropped; None: every band (see :attr:`selection`).
    """

    values: np.ndarray
    valid: np.ndarray
    inside: np.ndarray
    row: np.ndarray
    col: np.ndarray
    band_names: list[str]
    rule: NodataRule
    transform: Affine | None = field(default=None)
    tile: np.ndarray | None = field(default=None)
    centres: tuple[np.ndarray, np.ndarray] | None = field(default=None)
    bands: BandSelection | None = field(default=None)

    @property
    def selection(self) -> BandSelection:
        """The bands used: :attr:`bands`, or every band of :attr:`band_names`."""
        return self.bands if self.bands is not None else BandSelection.every(self.band_names)

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
    bands: Sequence[BandSpec] | None = None,
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
    bands : sequence of str or int, optional
        The bands to use (``embedding.bands``: names or 1-based indices); only those are read. None: every
        band, less those that are nodata (or constant) in every sampled pixel (:func:`lcmodel.bands.choose_bands`,
        with a warning naming them).
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
        x and y differ in length or are not numbers, or the raster's grid is rotated or sheared; a band of
        ``bands`` is nodata at every sampled pixel.
    ConfigError
        ``bands`` names a band the raster does not have, or one band twice.

    Warns
    -----
    DataWarning
        Bands dropped because they carry nothing at the sampled pixels.
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
        height, width, count = src.height, src.width, src.count
        orientation = grid_orientation(src.transform, width, height, name=f"embedding raster {str(path)!r}")
        rule = NodataRule.detect(src, override=nodata)
        names = band_names(src)
        read = resolve_bands(bands, names, raster=str(path)) if bands is not None else tuple(range(1, src.count + 1))
        dtype = np.dtype(src.dtypes[0])
        block_h, block_w = src.block_shapes[0]

    transform = orientation.north_up
    row, col, inside = pixel_index(transform, xs, ys, height, width)
    stored_row, stored_col = orientation.index(row, col)  # where the pixels are in the file
    jobs = _plan_jobs(
        stored_row,
        stored_col,
        inside,
        height=height,
        width=width,
        block_shape=(int(block_h), int(block_w)),
        bytes_per_row=width * len(read) * dtype.itemsize,
    )
    raw = np.zeros((xs.size, len(read)), dtype=dtype)
    indexes = None if bands is None else list(read)
    _read_jobs(path, jobs, stored_row, stored_col, raw, indexes, n_threads=n_threads, progress=progress)

    # the bands that carry something, judged on each sampled pixel once
    _, first = np.unique(row[inside] * width + col[inside], return_index=True)
    distinct = raw[np.flatnonzero(inside)[np.sort(first)]]
    selection = choose_bands(distinct, rule, [names[i - 1] for i in read], read, n_source=count,
                             selected=bands is not None, raster=str(path))
    if selection.indexes != read:
        raw = raw[:, [read.index(i) for i in selection.indexes]]
    valid = inside.copy()
    if inside.any():
        # valid_mask wants (bands, rows, cols): the gathered pixels as one column of n_inside rows.
        valid[inside] = rule.valid_mask(raw[inside].T[:, :, None])[:, 0]
    values = np.zeros((xs.size, raw.shape[1]), dtype=np.float32)
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
        band_names=list(selection.names),
        rule=rule,
        transform=transform,
        bands=selection,
    )


def _read_jobs(
    path: Path | str,
    jobs: list[_Job],
    row: np.ndarray,
    col: np.ndarray,
    raw: np.ndarray,
    indexes: list[int] | None,
    *,
    n_threads: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Read every job's window once (the bands ``indexes``, None: all) and gather its points' pixels into
    ``raw`` (n_points, bands)."""
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
        block = readers.read(w, indexes)
        rr = row[job.points] - int(w.row_off)
        cc = col[job.points] - int(w.col_off)
        raw[job.points] = block[:, rr, cc].T

    # closing: the pool is shut down before the datasets close, even when a progress callback raises
    gathered = map_ordered(gather, jobs, n_threads, thread_name_prefix="lcmodel-extract")
    with readers, contextlib.closing(gathered):
        for done, _ in enumerate(gathered, start=1):
            if progress is not None:
                progress(done, total)
