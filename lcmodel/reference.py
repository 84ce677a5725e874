"""Reference points: stratified sampling of a class raster, CSV points, reprojection, reclassification.

The first stage of the pipeline. Reference land cover comes either as a categorical raster (ESA WorldCover,
NLCD...) from which points are drawn, or as a CSV of labelled points. Either way the result is a
:class:`ReferencePoints`: a table of ``x``/``y``/``code`` plus the CRS the coordinates are in.

Raster sampling reproduces the notebook's proportional allocation exactly (per-class share of the valid pixels,
``np.round``, the remainder added to the largest class, classes smaller than their share give all they have),
but it is seeded and it never holds the raster, nor an index of its valid pixels, in memory. It makes two passes
over the file's internal blocks:

1. count the pixels of each class in each block (threads, one dataset handle each: GDAL releases the GIL);
2. for each class draw ``n`` distinct ranks among its pixels (``Generator.choice(total, n, replace=False)``
   needs O(n) memory), map the ranks to blocks through the cumulative per-block counts, and re-read only the
   blocks that hold a drawn pixel to find the k-th pixel of the class there (row-major order).

The draws depend only on the counts and ``random_state``, so the points are the same for any thread count.
Points lie at pixel centres, in the raster's own CRS.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import rasterio
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.errors import CRSError as RioCRSError
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from lcmodel.classes import ClassTable
from lcmodel.errors import (
    ClassTableError,
    ConfigError,
    DataWarning,
    InputDataError,
    InputFileError,
    NoOverlapError,
)
from lcmodel.io import one_pass_cache, open_raster

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

    from lcmodel.config import ReferenceConfig

__all__ = [
    "ReferencePoints",
    "sample_raster_points",
    "read_points_csv",
    "load_reference",
    "reproject_points",
    "reclassify",
    "allocate_samples",
    "POINT_SUFFIXES",
    "check_overlap",
    "warn_crs_units",
]

logger = logging.getLogger(__name__)

#: File suffixes that ``load_reference`` reads as CSV points (anything else is opened as a raster).
POINT_SUFFIXES = (".csv", ".txt", ".tsv")

#: Strips narrower than this many pixels are grouped (whole strips at a time) into one read.
_MIN_WINDOW_PIXELS = 1 << 20

Progress = Callable[[int, int], None]
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ReferencePoints:
    """Labelled reference points and the CRS their coordinates are in.

    Attributes
    ----------
    table : pandas.DataFrame
        float64 columns ``x``, ``y``; column ``code`` (int64 for integer labels, else str); after
        :func:`reclassify` also ``value`` (int64, positive class value).
    crs : rasterio.crs.CRS
        The CRS of ``x``/``y``.
    """

    table: pd.DataFrame
    crs: CRS

    def __len__(self) -> int:
        return len(self.table)


# --------------------------------------------------------------------------------------------- helpers


def _as_rasterio_crs(crs: Any, what: str = "CRS") -> CRS:
    """A rasterio CRS from a rasterio CRS, a pyproj CRS, a string (EPSG:..., WKT, PROJ) or an EPSG int."""
    if isinstance(crs, CRS):
        return crs
    try:
        if isinstance(crs, ProjCRS):
            return CRS.from_wkt(crs.to_wkt())
        return CRS.from_user_input(crs)
    except (RioCRSError, CRSError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{what} {crs!r} is not a CRS ({str(exc).splitlines()[0]}); give e.g. 'EPSG:4326' or a WKT string"
        ) from None


def _as_pyproj_crs(crs: Any) -> ProjCRS:
    """A pyproj CRS from anything :func:`_as_rasterio_crs` accepts, through WKT (no EPSG code needed)."""
    if isinstance(crs, ProjCRS):
        return crs
    return ProjCRS.from_wkt(_as_rasterio_crs(crs).to_wkt())


def _codes_column(values: np.ndarray | pd.Series) -> pd.Series:
    """Labels as int64 when all are numeric and integral, else as stripped strings."""
    series = pd.Series(values).reset_index(drop=True)
    if series.dtype.kind in "iub":
        return series.astype(np.int64)
    numeric = pd.to_numeric(series, errors="coerce")
    if len(series) and numeric.notna().all() and bool(np.all(np.isfinite(numeric))):
        if bool(np.all(np.mod(numeric, 1) == 0)):
            return numeric.astype(np.int64)
    return series.astype(str).str.strip()


# ----------------------------------------------------------------------------------- raster sampling


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


def _block_windows(src: DatasetReader) -> list[Window]:
    """The file's internal blocks of band 1 in row-major order; narrow full-width strips are grouped."""
    block_h, block_w = src.block_shapes[0]
    if block_w >= src.width and block_h * src.width < _MIN_WINDOW_PIXELS:
        rows = max(block_h, (_MIN_WINDOW_PIXELS // max(1, src.width)) // block_h * block_h)
        return [
            Window(0, r, src.width, min(rows, src.height - r)) for r in range(0, src.height, rows)
        ]
    return [w for _, w in src.block_windows(1)]


class _ThreadReaders:
    """One open dataset per worker thread (a rasterio dataset must not be shared between threads)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[DatasetReader] = []

    def read(self, window: Window) -> np.ndarray:
        """Band 1 in ``window``; a GDAL read error becomes an :class:`InputFileError` naming the window."""
        try:
            ds = getattr(self._local, "ds", None)
            if ds is None:
                ds = rasterio.open(self._path)
                self._local.ds = ds
                with self._lock:
                    self._opened.append(ds)
            return np.asarray(ds.read(1, window=window))
        except RasterioIOError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputFileError(
                f"reference raster {str(self._path)!r} could not be read at rows {window.row_off}.."
                f"{window.row_off + window.height}, cols {window.col_off}..{window.col_off + window.width} "
                f"({detail}); the file may be truncated or corrupt: check it with gdalinfo -checksum"
            ) from None

    def close(self) -> None:
        with self._lock:
            for ds in self._opened:
                ds.close()
            self._opened.clear()


def _map_ordered(func: Callable[[_T], _R], items: Sequence[_T], n_threads: int) -> Iterator[_R]:
    """``map`` over items, in order, with ``n_threads`` threads (in the caller's thread when 1)."""
    if n_threads <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="lcmodel-sample") as pool:
        # bounded look-ahead: at most a few blocks in flight (and in memory) per thread
        pending = deque(pool.submit(func, item) for item in items[: 4 * n_threads])
        next_item = len(pending)
        while pending:
            result = pending.popleft().result()
            if next_item < len(items):
                pending.append(pool.submit(func, items[next_item]))
                next_item += 1
            yield result


class _ValidRule:
    """Which pixel values of the class raster are valid, and how blocks are counted."""

    def __init__(self, dtype: np.dtype[Any], nodata: float | None) -> None:
        self.dtype = dtype
        self.is_float = dtype.kind == "f"
        self.use_bincount = dtype in (np.dtype(np.uint8), np.dtype(np.uint16))
        self.nodata: Any = None
        if nodata is not None and not np.isnan(nodata):
            if self.is_float:
                self.nodata = dtype.type(nodata)
            elif float(nodata).is_integer():
                info = np.iinfo(dtype)
                if info.min <= nodata <= info.max:
                    self.nodata = dtype.type(int(nodata))

    def count(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct valid values of a block (sorted) and their pixel counts (int64)."""
        flat = block.ravel()
        if self.use_bincount:
            bins = np.bincount(flat, minlength=256)
            if self.nodata is not None:
                bins[int(self.nodata)] = 0
            values = np.flatnonzero(bins)
            return values.astype(self.dtype), bins[values].astype(np.int64)
        keep = np.ones(flat.shape, dtype=bool)
        if self.nodata is not None:
            keep &= flat != self.nodata
        if self.is_float:
            keep &= ~np.isnan(flat)
        values, counts = np.unique(flat[keep], return_counts=True)
        return values, counts.astype(np.int64)


def _check_n_threads(n_threads: int) -> int:
    if not isinstance(n_threads, int | np.integer) or n_threads < 1:
        raise ConfigError(f"n_threads={n_threads!r} is not a positive integer; give 1 or more")
    return int(n_threads)


def sample_raster_points(
    path: Path | str,
    n_points: int,
    *,
    nodata: float | None = None,
    random_state: int = 42,
    progress: Progress | None = None,
    n_threads: int = 2,
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
    path = Path(path)
    with open_raster(path, "reference raster") as src:
        if src.crs is None:
            raise InputFileError(
                f"reference raster {str(path)!r} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:4326 "
                f"{path.name}) or give points in a CSV with reference.crs"
            )
        crs = src.crs
        transform = src.transform
        rule = _ValidRule(np.dtype(src.dtypes[0]), nodata if nodata is not None else src.nodata)
        windows = _block_windows(src)

    readers = _ThreadReaders(path)
    try:
        with one_pass_cache():
            return _sample(
                path, readers, windows, rule, crs, transform, int(n_points), random_state, n_threads, progress
            )
    finally:
        readers.close()


def _sample(
    path: Path,
    readers: _ThreadReaders,
    windows: Sequence[Window],
    rule: _ValidRule,
    crs: CRS,
    transform: Any,
    n_points: int,
    random_state: int,
    n_threads: int,
    progress: Progress | None,
) -> ReferencePoints:
    """The two passes of :func:`sample_raster_points` (arguments checked, windows listed)."""
    classes, block_ids, class_ids, block_counts = _count_classes(
        readers, windows, rule, n_threads, progress
    )
    if classes.size == 0:
        nd = "no nodata value" if rule.nodata is None else f"nodata={_fmt(rule.nodata)}"
        raise InputDataError(
            f"reference raster {str(path)!r} has no valid pixel ({nd}); check reference.nodata or "
            "give a raster that covers the area"
        )
    totals = np.zeros(classes.size, dtype=np.int64)
    np.add.at(totals, class_ids, block_counts)
    alloc = allocate_samples(totals, n_points)
    taken = np.minimum(alloc, totals)
    _warn_short_classes(path, classes, alloc, totals)

    rng = np.random.default_rng(random_state)
    draws = _draw_ranks(rng, taken, block_ids, class_ids, block_counts)
    rows, cols, codes = _locate_pixels(
        readers, windows, rule, classes, draws, n_threads, progress, len(windows)
    )

    xs = transform.c + (cols + 0.5) * transform.a + (rows + 0.5) * transform.b
    ys = transform.f + (cols + 0.5) * transform.d + (rows + 0.5) * transform.e
    table = pd.DataFrame(
        {"x": xs.astype(np.float64), "y": ys.astype(np.float64), "code": _codes_column(codes)}
    )
    logger.info(
        "sampled %d points in %d classes from %s (%d of %d blocks re-read)",
        len(table), int((taken > 0).sum()), path.name, len(draws), len(windows),
    )
    return ReferencePoints(table=table, crs=crs)


def _count_classes(
    readers: _ThreadReaders,
    windows: Sequence[Window],
    rule: _ValidRule,
    n_threads: int,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pass 1: sparse per-block class counts.

    Returns the sorted distinct classes and three aligned arrays, one entry per (block, class) present, in
    block order: block index, class index, pixel count.
    """
    per_block_values: list[np.ndarray] = []
    per_block_counts: list[np.ndarray] = []
    block_ids: list[np.ndarray] = []

    def count(window: Window) -> tuple[np.ndarray, np.ndarray]:
        return rule.count(readers.read(window))

    for i, (values, counts) in enumerate(_map_ordered(count, windows, n_threads)):
        if values.size:
            per_block_values.append(values)
            per_block_counts.append(counts)
            block_ids.append(np.full(values.size, i, dtype=np.int64))
        if progress is not None:
            progress(i + 1, len(windows))
    if not per_block_values:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=rule.dtype), empty, empty, empty
    values = np.concatenate(per_block_values)
    classes = np.unique(values)
    return (
        classes,
        np.concatenate(block_ids),
        np.searchsorted(classes, values).astype(np.int64),
        np.concatenate(per_block_counts),
    )


def _warn_short_classes(path: Path, classes: np.ndarray, alloc: np.ndarray, totals: np.ndarray) -> None:
    short = np.flatnonzero(alloc > totals)
    if short.size:
        detail = ", ".join(f"{_fmt(classes[k])}: {totals[k]} of {alloc[k]}" for k in short)
        warnings.warn(
            f"{short.size} class(es) of {path.name} have fewer pixels than their share of the points and give "
            f"all they have ({detail}); {int((alloc - np.minimum(alloc, totals)).sum())} points fewer in total",
            DataWarning,
            stacklevel=4,
        )


def _fmt(value: Any) -> str:
    v = value.item() if isinstance(value, np.generic) else value
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _draw_ranks(
    rng: np.random.Generator,
    taken: np.ndarray,
    block_ids: np.ndarray,
    class_ids: np.ndarray,
    block_counts: np.ndarray,
) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Draw ``taken[c]`` distinct pixels of each class c; return block -> [(class index, local ranks)].

    A class's pixels are ranked block by block (row-major inside a block); ranks are drawn with
    ``Generator.choice(total, n, replace=False)`` in class order, so the draw depends only on the counts.
    """
    draws: dict[int, list[tuple[int, np.ndarray]]] = {}
    order = np.argsort(class_ids, kind="stable")  # per class, entries stay in block order
    bounds = np.searchsorted(class_ids[order], np.arange(taken.size + 1))
    for c in range(taken.size):
        entries = order[bounds[c] : bounds[c + 1]]
        counts = block_counts[entries]
        total = int(counts.sum())
        n = int(taken[c])
        if n == 0:
            continue
        # Generator.choice without replacement: O(n) memory (Floyd's algorithm) when n < total / 50, else a
        # partial shuffle of range(total), then total < 50 n: at most 400 bytes per point drawn.
        ranks = np.sort(rng.choice(total, size=n, replace=False, shuffle=False))
        cum = np.cumsum(counts)
        pos = np.searchsorted(cum, ranks, side="right")
        local = ranks - (cum - counts)[pos]
        split = np.flatnonzero(np.diff(pos)) + 1
        for group_pos, group_local in zip(np.split(pos, split), np.split(local, split), strict=True):
            block = int(block_ids[entries[group_pos[0]]])
            draws.setdefault(block, []).append((c, group_local))
    return draws


def _locate_pixels(
    readers: _ThreadReaders,
    windows: Sequence[Window],
    rule: _ValidRule,
    classes: np.ndarray,
    draws: dict[int, list[tuple[int, np.ndarray]]],
    n_threads: int,
    progress: Progress | None,
    done_before: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 2: read the blocks holding drawn pixels; return rows, cols, codes sorted by class then rank."""
    blocks = sorted(draws)

    def locate(block: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        window = windows[block]
        flat = readers.read(window).ravel()
        width = int(window.width)
        found = []
        for c, local in draws[block]:
            index = np.flatnonzero(flat == classes[c])[local]
            found.append((c, int(window.row_off) + index // width, int(window.col_off) + index % width))
        return found

    per_class: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    total = done_before + len(blocks)
    for i, found in enumerate(_map_ordered(locate, blocks, n_threads)):
        for c, r, k in found:
            per_class.setdefault(c, []).append((r, k))
        if progress is not None:
            progress(done_before + i + 1, total)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for c in sorted(per_class):
        for r, k in per_class[c]:
            rows.append(r)
            cols.append(k)
            codes.append(np.full(r.size, classes[c], dtype=classes.dtype))
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=classes.dtype)
    return (
        np.concatenate(rows).astype(np.float64),
        np.concatenate(cols).astype(np.float64),
        np.concatenate(codes),
    )


# --------------------------------------------------------------------------------------------- CSV points


def _delimiter(path: Path) -> str:
    """The column delimiter of a points file, from its header line: tab, semicolon or comma."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
    if "\t" in header:
        return "\t"
    if ";" in header and "," not in header:
        return ";"
    return ","


def read_points_csv(
    path: Path | str,
    *,
    x_column: str = "lon",
    y_column: str = "lat",
    label_column: str = "label",
    crs: Any = "EPSG:4326",
) -> ReferencePoints:
    """Read labelled points from a CSV (or TSV / semicolon-separated; the delimiter is read from the header).

    Parameters
    ----------
    path : path-like
        The file; one row per point, a header line naming the columns.
    x_column, y_column : str
        Columns holding the x (longitude, easting) and y (latitude, northing) coordinates, in ``crs``.
    label_column : str
        Column holding the class label (integers or strings).
    crs : rasterio CRS, pyproj CRS or str
        The CRS of the coordinates (``reference.crs``); any CRS, an EPSG code is not required.

    Returns
    -------
    ReferencePoints
        ``x``, ``y`` float64 and ``code`` (int64 when every label is an integer, else str).

    Raises
    ------
    InputFileError
        The file is missing or unreadable.
    InputDataError
        A column is missing, a coordinate is not a number, or no point is left.
    ConfigError
        ``crs`` is not a CRS.

    Warns
    -----
    DataWarning
        Rows with a missing coordinate or label were dropped (counted).
    """
    path = Path(path)
    rio_crs = _as_rasterio_crs(crs, "reference.crs")
    if not path.is_file():
        raise InputFileError(f"points file {str(path)!r} does not exist; check reference.path in the config")
    try:
        df = pd.read_csv(path, sep=_delimiter(path), dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputDataError(
            f"points file {str(path)!r} is empty; give a CSV with a header and one row per point"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise InputFileError(
            f"points file {str(path)!r} is not a readable CSV ({str(exc).splitlines()[0]}); give a comma, "
            "semicolon or tab separated file with a header"
        ) from None
    df.columns = [str(c).strip() for c in df.columns]
    for key, col in (("x_column", x_column), ("y_column", y_column), ("label_column", label_column)):
        if col not in df.columns:
            raise InputDataError(
                f"points file {str(path)!r} has no column {col!r} (columns: {', '.join(df.columns)}); "
                f"set reference.{key} to one of them"
            )
    sub = df[[x_column, y_column, label_column]].apply(lambda s: s.str.strip())
    sub = sub.replace("", np.nan)
    missing = sub.isna().any(axis=1)
    if missing.any():
        warnings.warn(
            f"{int(missing.sum())} of {len(sub)} rows of {path.name} have no {x_column!r}, {y_column!r} or "
            f"{label_column!r} value and were dropped",
            DataWarning,
            stacklevel=2,
        )
        sub = sub[~missing]
    coords = {}
    for col in (x_column, y_column):
        values = pd.to_numeric(sub[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            first = bad.idxmax()
            n_bad = int(bad.sum())
            raise InputDataError(
                f"points file {str(path)!r}: {col!r} value {sub.at[first, col]!r} on row {int(first) + 2} "
                f"(line in the file; {n_bad} such row(s)) is not a finite number; fix the file or set "
                f"reference.{'x' if col == x_column else 'y'}_column to the coordinate column"
            )
        coords[col] = values.to_numpy(dtype=np.float64)
    if len(sub) == 0:
        raise InputDataError(
            f"points file {str(path)!r} has no row with coordinates and a label; check the file and the "
            "reference.x_column / y_column / label_column settings"
        )
    table = pd.DataFrame(
        {"x": coords[x_column], "y": coords[y_column], "code": _codes_column(sub[label_column].to_numpy())}
    )
    logger.info("read %d points from %s", len(table), path.name)
    return ReferencePoints(table=table, crs=rio_crs)


def load_reference(
    ref_cfg: ReferenceConfig,
    *,
    random_state: int = 42,
    progress: Progress | None = None,
    n_threads: int = 2,
) -> ReferencePoints:
    """The reference points of a run: sampled from a class raster or read from a CSV.

    Parameters
    ----------
    ref_cfg : lcmodel.config.ReferenceConfig
        The ``reference`` section. With ``kind="auto"`` a ``.csv``/``.txt``/``.tsv`` file is read as points,
        anything else is sampled as a raster.
    random_state : int
        Seed of the raster sample.
    progress : callable, optional
        ``progress(done, total)`` for raster sampling.
    n_threads : int
        Threads reading raster blocks.

    Returns
    -------
    ReferencePoints
        In the reference's own CRS (the raster's, or ``reference.crs`` for points).
    """
    kind = ref_cfg.kind
    if kind == "auto":
        kind = "points" if Path(ref_cfg.path).suffix.lower() in POINT_SUFFIXES else "raster"
    if kind == "points":
        return read_points_csv(
            ref_cfg.path,
            x_column=ref_cfg.x_column,
            y_column=ref_cfg.y_column,
            label_column=ref_cfg.label_column,
            crs=ref_cfg.crs,
        )
    return sample_raster_points(
        ref_cfg.path,
        ref_cfg.n_points,
        nodata=ref_cfg.nodata,
        random_state=random_state,
        progress=progress,
        n_threads=n_threads,
    )


# ----------------------------------------------------------------------------------------- reprojection


def reproject_points(points: ReferencePoints, dst_crs: Any) -> ReferencePoints:
    """Transform points into another CRS (e.g. the embedding raster's).

    The transformation is built from the full CRS definitions (``Transformer.from_crs(..., always_xy=True)``),
    so CRSs without an EPSG code (MODIS sinusoidal, custom WKT) work.

    Parameters
    ----------
    points : ReferencePoints
        Points in ``points.crs``.
    dst_crs : rasterio CRS, pyproj CRS or str
        The target CRS.

    Returns
    -------
    ReferencePoints
        Same rows (other columns kept), ``x``/``y`` in ``dst_crs``; points whose transform is not finite are
        dropped.

    Warns
    -----
    DataWarning
        Points that could not be transformed (counted) were dropped.
    """
    dst = _as_rasterio_crs(dst_crs, "target CRS")
    table = points.table.copy()
    if len(table) == 0 or points.crs == dst:
        return ReferencePoints(table=table.reset_index(drop=True), crs=dst)
    transformer = Transformer.from_crs(_as_pyproj_crs(points.crs), _as_pyproj_crs(dst), always_xy=True)
    xs, ys = transformer.transform(table["x"].to_numpy(np.float64), table["y"].to_numpy(np.float64))
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    table["x"] = xs
    table["y"] = ys
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.all():
        warnings.warn(
            f"{int((~ok).sum())} of {len(ok)} points could not be transformed into the target CRS (outside its "
            "valid area) and were dropped",
            DataWarning,
            stacklevel=2,
        )
        table = table[ok]
    logger.debug("reprojected %d points: %s", int(ok.sum()), transformer.description)
    return ReferencePoints(table=table.reset_index(drop=True), crs=dst)


# ------------------------------------------------------------------------------------- reclassification


def reclassify(points: ReferencePoints, table: ClassTable | None) -> tuple[ReferencePoints, ClassTable]:
    """Map reference codes to model class values (column ``value``, int64 >= 1).

    Parameters
    ----------
    points : ReferencePoints
        Points with a ``code`` column.
    table : ClassTable or None
        The code -> value table. Without one it is derived from the labels (:meth:`ClassTable.from_labels`:
        integers map to themselves, strings to 1..K in sorted order, named after the labels).

    Returns
    -------
    (ReferencePoints, ClassTable)
        The points whose code is in the table, with ``value``; and the table used.

    Raises
    ------
    ClassTableError
        No code is in the table, or (without a table) integer labels are not positive.

    Warns
    -----
    DataWarning
        Codes absent from the table (named, with their point counts) were dropped.
    """
    df = points.table
    if table is None:
        table = ClassTable.from_labels(df["code"])
    mapped = table.map_codes(df["code"])
    unknown = mapped.isna().to_numpy()
    if unknown.all() and len(df):
        seen = ", ".join(map(_fmt, pd.unique(df["code"])[:10]))
        known = ", ".join(map(_fmt, list(table.code_to_value)[:10]))
        raise ClassTableError(
            f"none of the reference codes ({seen}) is in the class table (codes: {known}); give a class table "
            "(classes.table) whose code column holds the reference labels"
        )
    out = df.copy()
    if unknown.any():
        counts = df.loc[unknown, "code"].value_counts(sort=False).sort_index()
        detail = ", ".join(f"{_fmt(code)} ({n})" for code, n in counts.items())
        warnings.warn(
            f"{int(unknown.sum())} of {len(df)} points have codes absent from the class table and were "
            f"dropped: {detail}",
            DataWarning,
            stacklevel=2,
        )
        out = out[~unknown]
        mapped = mapped[~unknown]
    out["value"] = mapped.to_numpy(dtype=np.int64)
    return ReferencePoints(table=out.reset_index(drop=True), crs=points.crs), table



# ------------------------------------------------------------------------ overlap and CRS diagnosis (reliability)


def _crs_label(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else (crs.to_string()[:60] or "an unnamed CRS")


def _num(v: float) -> str:
    """A coordinate for a message: whole metres for large values, else up to 6 significant digits."""
    return f"{v:.0f}" if abs(v) >= 1e5 else f"{v:.6g}"


def _in_bounds(x: np.ndarray, y: np.ndarray, bounds: Sequence[float]) -> np.ndarray:
    left, bottom, right, top = bounds
    with np.errstate(invalid="ignore"):
        return (x >= left) & (x <= right) & (y >= bottom) & (y <= top)


def _lands_in(x: np.ndarray, y: np.ndarray, src_crs: CRS, dst_crs: CRS, bounds: Sequence[float]) -> bool:
    """Whether any of the points, read in ``src_crs``, falls within ``bounds`` (in ``dst_crs``)."""
    try:
        if src_crs != dst_crs:
            t = Transformer.from_crs(_as_pyproj_crs(src_crs), _as_pyproj_crs(dst_crs), always_xy=True)
            x, y = (np.asarray(v, dtype=np.float64) for v in t.transform(x, y))
    except (CRSError, RioCRSError, ValueError):
        return False
    return bool(_in_bounds(x, y, bounds).any())


def _crs_hint(source: ReferencePoints, dst_crs: CRS, bounds: Sequence[float]) -> str:
    """Why points may land nowhere near the raster: a CRS that does not match the coordinates, or swapped axes."""
    x = source.table["x"].to_numpy(np.float64)
    y = source.table["y"].to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return ""
    declared = source.crs
    name = _crs_label(declared)
    lonlat_like = bool((np.abs(x) <= 180).all() and (np.abs(y) <= 90).all())
    example = f"x={_num(x[0])}, y={_num(y[0])}"
    if declared.is_geographic and not lonlat_like:
        where = ""
        if _lands_in(x, y, dst_crs, dst_crs, bounds):
            where = f" (read as {_crs_label(dst_crs)}, the embedding's CRS, they fall on the raster)"
        return (
            f"the coordinates look projected ({example}), not longitude/latitude as reference.crs {name} says"
            f"{where}; set reference.crs to the CRS the coordinates are in"
        )
    if not declared.is_geographic and lonlat_like:
        fits = _lands_in(x, y, CRS.from_epsg(4326), dst_crs, bounds)
        return (
            f"the coordinates look like longitude/latitude (EPSG:4326) ({example}), but reference.crs says {name}"
            f"{' (read as EPSG:4326 they fall on the raster)' if fits else ''}; set reference.crs: EPSG:4326"
        )
    if _lands_in(y, x, declared, dst_crs, bounds):
        return "x and y look swapped (they fall on the raster the other way round); swap reference.x_column and " \
            "reference.y_column"
    return ""


def check_overlap(
    source: ReferencePoints, projected: ReferencePoints, bounds: Sequence[float], raster: str
) -> None:
    """Raise when no reference point lies within the embedding's extent, saying which CRS the points look like.

    Parameters
    ----------
    source : the points in their own CRS (before :func:`reproject_points`).
    projected : the same points in the embedding's CRS (points that could not be transformed dropped).
    bounds : the embedding's (left, bottom, right, top) in its CRS.
    raster : the embedding's path, for the message.

    Raises
    ------
    NoOverlapError
        No point falls within the extent; the message names the likely CRS mistake when there is one
        (lon/lat declared as projected and vice versa, swapped x/y).
    """
    x = projected.table["x"].to_numpy(np.float64)
    y = projected.table["y"].to_numpy(np.float64)
    if len(source) == 0 or _in_bounds(x, y, bounds).any():
        return
    dst = projected.crs
    hint = _crs_hint(source, dst, bounds)
    fix = hint or "check that the reference data and embedding.path cover the same area (and reference.crs)"
    box = ", ".join(_num(b) for b in bounds)
    raise NoOverlapError(
        f"none of the {len(source)} reference points falls within the embedding raster {raster!r} "
        f"(bounds {box} in {_crs_label(dst)}): {fix}"
    )


def warn_crs_units(bounds: Sequence[float], crs: CRS | None, what: str) -> None:
    """Warn when a raster's bounds do not look like the units of its CRS (degrees vs metres).

    Warns
    -----
    DataWarning
        A geographic CRS with bounds beyond +-180 / +-90, or a projected CRS whose whole extent fits in a few
        metres around the origin with coordinates that look like degrees.
    """
    if crs is None:
        return
    left, bottom, right, top = bounds
    degrees_like = max(abs(left), abs(right)) <= 180 and max(abs(bottom), abs(top)) <= 90
    if crs.is_geographic and not degrees_like:
        warnings.warn(
            f"{what} declares a geographic CRS ({_crs_label(crs)}, degrees) but its bounds ({left:g}, {bottom:g}, "
            f"{right:g}, {top:g}) look like metres; its CRS is probably wrong: assign the right one "
            "(gdal_edit.py -a_srs)",
            DataWarning,
            stacklevel=2,
        )
    elif crs.is_projected and degrees_like and (right - left) < 10 and (top - bottom) < 10:
        warnings.warn(
            f"{what} declares a projected CRS ({_crs_label(crs)}) but its bounds ({left:g}, {bottom:g}, "
            f"{right:g}, {top:g}) look like degrees; its CRS is probably wrong: assign the right one "
            "(gdal_edit.py -a_srs EPSG:4326)",
            DataWarning,
            stacklevel=2,
        )
