"""Drawing pixels of each class of a class raster without replacement, in two passes over its blocks.

:class:`ClassPixelSampler` never holds the raster, nor an index of its valid pixels, in memory:

1. count the pixels of each class in each block (threads, one dataset handle each: GDAL releases the GIL);
2. for each class draw ``n`` distinct ranks among its pixels (``Generator.choice(total, n, replace=False)``
   needs O(n) memory), map the ranks to blocks through the cumulative per-block counts, and re-read only the
   blocks that hold a drawn pixel to find the k-th pixel of the class there (row-major order).

How many pixels of each class is the caller's: the notebook's proportional allocation for reference points
(:func:`lcmodel.reference.sample_raster_points`), a validation design's for the accuracy sample
(:func:`lcmodel.accuracy.draw_validation_sample`). The draws depend only on the counts and ``random_state``, so
they are the same for any thread count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import shapely
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from shapely import Geometry

from lcmodel.errors import InputFileError
from lcmodel.rasterio_io import ThreadReaders, map_ordered, one_pass_cache
from lcmodel.reference.purity import check_purity_window, pure_in_window

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

__all__ = ["Progress", "ClassPixelSampler", "DrawnPixels"]

#: Strips narrower than this many pixels are grouped (whole strips at a time) into one read.
_MIN_WINDOW_PIXELS = 1 << 20

#: ``progress(done, total)``, in blocks read.
Progress = Callable[[int, int], None]
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class DrawnPixels:
    """Pixels drawn by :meth:`ClassPixelSampler.draw`, sorted by class then position.

    Attributes
    ----------
    rows, cols : row and column of each pixel in the raster (float64; int64 when none is drawn).
    codes : the pixel's class (the raster's dtype).
    taken : int64 pixels drawn of each class present, in sorted class order.
    blocks_reread : blocks read again (pass 2) to locate the drawn pixels.
    pure : with a purity window, whether each pixel's whole window holds its class (bool); else None.
    """

    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray
    taken: np.ndarray
    blocks_reread: int
    pure: np.ndarray | None = None


class ClassPixelSampler:
    """Draws pixels of each class of a class raster without replacement, in two passes over its blocks.

    Pass 1 counts the valid pixels of each class in each block; ``allocation(classes, totals)`` then says how
    many pixels of each class to draw (at most ``totals``); pass 2 re-reads only the blocks that hold a drawn
    pixel. The draw depends only on the counts and ``random_state``, never on the thread count.

    Parameters
    ----------
    path : the raster (band 1); each reading thread opens it.
    src : the raster, open: its dtype, declared nodata and block layout are read here.
    nodata : value of pixels to skip, overriding the file's nodata; NaN is always skipped in float rasters.
    footprint : only pixels whose centre lies in this geometry (in the raster's CRS) are counted and drawn,
        and only the blocks it touches are read (the embedding's footprint: every point drawn is usable).
    purity_window : flag each drawn pixel as pure when its whole ``k x k`` window holds its class
        (:mod:`lcmodel.reference.purity`; window pixels outside the raster or nodata make it impure). Pass 2
        reads each block with a halo of ``k // 2``, so the flags do not depend on the block layout. The draw
        itself is the same with or without it.
    """

    def __init__(self, path: Path | str, src: DatasetReader, nodata: float | None = None,
                 footprint: Geometry | None = None, purity_window: int | None = None) -> None:
        self.path = path
        self.purity_window = check_purity_window(purity_window)
        self._shape = (int(src.height), int(src.width))
        self._rule = _ValidRule(np.dtype(src.dtypes[0]), nodata if nodata is not None else src.nodata)
        windows = _block_windows(src)
        self._masks = _FootprintMasks(src.transform, footprint)
        self._windows = [w for w in windows if self._masks.touches(w)]

    @property
    def nodata(self) -> Any:
        """The value skipped (in the raster's dtype), or None."""
        return self._rule.nodata

    @property
    def n_blocks(self) -> int:
        """Reads of pass 1 (the file's blocks; narrow strips grouped)."""
        return len(self._windows)

    def draw(
        self,
        allocation: Callable[[np.ndarray, np.ndarray], np.ndarray],
        *,
        random_state: int,
        n_threads: int,
        progress: Progress | None = None,
    ) -> DrawnPixels:
        """Count, allocate, draw and locate the pixels.

        Parameters
        ----------
        allocation : ``allocation(classes, totals) -> taken``: the sorted distinct valid values, their pixel
            counts, and (returned) the int64 pixels to draw of each; it may raise or warn.
        random_state : seed of the draw (``numpy.random.default_rng``).
        n_threads : threads reading blocks.
        progress : ``progress(done, total)`` in blocks, after each block read (pass 1, then pass 2 with
            ``total`` grown by the blocks re-read).

        Returns
        -------
        DrawnPixels
        """
        readers = ThreadReaders(self.path, on_error=_unreadable(self.path))
        try:
            with one_pass_cache():
                classes, block_ids, class_ids, block_counts = _count_classes(
                    readers, self._windows, self._rule, self._masks, n_threads, progress
                )
                totals = np.zeros(classes.size, dtype=np.int64)
                np.add.at(totals, class_ids, block_counts)
                taken = allocation(classes, totals)
                rng = np.random.default_rng(random_state)
                draws = _draw_ranks(rng, taken, block_ids, class_ids, block_counts)
                purity = None if self.purity_window is None else (self.purity_window, self._rule, self._shape)
                rows, cols, codes, pure = _locate_pixels(
                    readers, self._windows, self._masks, classes, draws, n_threads, progress, len(self._windows),
                    purity,
                )
        finally:
            readers.close()
        return DrawnPixels(rows=rows, cols=cols, codes=codes, taken=taken, blocks_reread=len(draws), pure=pure)


# ------------------------------------------------------------------------------------ blocks and readers


def _block_windows(src: DatasetReader) -> list[Window]:
    """The file's internal blocks of band 1 in row-major order; narrow full-width strips are grouped."""
    block_h, block_w = src.block_shapes[0]
    if block_w >= src.width and block_h * src.width < _MIN_WINDOW_PIXELS:
        rows = max(block_h, (_MIN_WINDOW_PIXELS // max(1, src.width)) // block_h * block_h)
        return [
            Window(0, r, src.width, min(rows, src.height - r)) for r in range(0, src.height, rows)
        ]
    return [w for _, w in src.block_windows(1)]


def _unreadable(path: Path | str) -> Callable[[Window, RasterioIOError], InputFileError]:
    """A GDAL read error of the reference raster as an :class:`InputFileError` naming the window."""
    # imported here: lcmodel.sources' collection modules import this module
    from lcmodel.sources.remote import redact, safe_detail

    def error(window: Window, exc: RasterioIOError) -> InputFileError:
        detail = safe_detail(path, str(exc)) if str(exc) else type(exc).__name__
        return InputFileError(
            f"reference raster {redact(path)!r} could not be read at rows {window.row_off}.."
            f"{window.row_off + window.height}, cols {window.col_off}..{window.col_off + window.width} "
            f"({detail}); the file may be truncated or corrupt: check it with gdalinfo -checksum"
        )

    return error


class _FootprintMasks:
    """Which pixels of a window have their centre inside a footprint (None: every pixel, or no footprint)."""

    def __init__(self, transform: Affine, footprint: Geometry | None) -> None:
        self.transform = transform
        self.footprint = footprint
        if footprint is not None:
            shapely.prepare(footprint)

    def _box(self, w: Window) -> Geometry:
        t = self.transform
        xs = [t.c + c * t.a for c in (w.col_off, w.col_off + w.width)]
        ys = [t.f + r * t.e for r in (w.row_off, w.row_off + w.height)]
        return shapely.box(min(xs), min(ys), max(xs), max(ys))

    def touches(self, w: Window) -> bool:
        return self.footprint is None or self.footprint.intersects(self._box(w))

    def inside(self, w: Window) -> np.ndarray | None:
        if self.footprint is None or self.footprint.contains(self._box(w)):
            return None
        from rasterio.features import geometry_mask
        from rasterio.windows import transform as window_transform

        return geometry_mask([self.footprint], out_shape=(int(w.height), int(w.width)),
                             transform=window_transform(w, self.transform), invert=True)


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

    def valid(self, block: np.ndarray) -> np.ndarray:
        """Which pixels of a block hold a class (not nodata, not NaN)."""
        keep = np.ones(block.shape, dtype=bool) if self.nodata is None else block != self.nodata
        return keep & ~np.isnan(block) if self.is_float else keep

    def count(self, block: np.ndarray, inside: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distinct valid values of a block (sorted) and their pixel counts (int64), within ``inside``."""
        flat = block.ravel() if inside is None else block.ravel()[inside.ravel()]
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


# --------------------------------------------------------------------------------------------- the passes


def _count_classes(
    readers: ThreadReaders,
    windows: Sequence[Window],
    rule: _ValidRule,
    masks: _FootprintMasks,
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
        return rule.count(readers.read(window, 1), masks.inside(window))

    for i, (values, counts) in enumerate(map_ordered(count, windows, n_threads, thread_name_prefix="lcmodel-sample")):
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
    readers: ThreadReaders,
    windows: Sequence[Window],
    masks: _FootprintMasks,
    classes: np.ndarray,
    draws: dict[int, list[tuple[int, np.ndarray]]],
    n_threads: int,
    progress: Progress | None,
    done_before: int,
    purity: tuple[int, _ValidRule, tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Pass 2: read the blocks holding drawn pixels; return rows, cols, codes sorted by class then rank, and
    (``purity``: window size, valid rule, raster shape) whether each is pure (the block read with a halo)."""
    blocks = sorted(draws)

    def locate(block: int) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        window = windows[block]
        flat = readers.read(window, 1).ravel()
        inside = masks.inside(window)
        width = int(window.width)
        pure = None
        if purity is not None:
            size, rule, (height, raster_width) = purity
            pure = pure_in_window(lambda w: readers.read(w, 1), rule.valid, window, size, height,
                                  raster_width).ravel()
        found = []
        for c, local in draws[block]:
            hit = flat == classes[c]
            if inside is not None:
                hit &= inside.ravel()
            index = np.flatnonzero(hit)[local]
            flags = pure[index] if pure is not None else np.ones(index.size, dtype=bool)
            found.append((c, int(window.row_off) + index // width, int(window.col_off) + index % width, flags))
        return found

    per_class: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    total = done_before + len(blocks)
    for i, found in enumerate(map_ordered(locate, blocks, n_threads, thread_name_prefix="lcmodel-sample")):
        for c, r, k, f in found:
            per_class.setdefault(c, []).append((r, k, f))
        if progress is not None:
            progress(done_before + i + 1, total)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    for c in sorted(per_class):
        for r, k, f in per_class[c]:
            rows.append(r)
            cols.append(k)
            codes.append(np.full(r.size, classes[c], dtype=classes.dtype))
            flags.append(f)
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=classes.dtype), None if purity is None else np.zeros(0, bool)
    return (
        np.concatenate(rows).astype(np.float64),
        np.concatenate(cols).astype(np.float64),
        np.concatenate(codes),
        None if purity is None else np.concatenate(flags),
    )
