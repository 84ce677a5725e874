"""Planning a prediction before any block is read: window size, the windows, the map's data type, overviews,
and the plan of a prediction split across machines (:class:`PredictionPlan`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

from lcmodel.classes import integer_valued
from lcmodel.errors import ClassTableError, ConfigError

__all__ = [
    "DEFAULT_MAX_WINDOW",
    "OVERVIEW_MIN_SIZE",
    "Grid",
    "PredictionPlan",
    "choose_block_size",
    "output_dtype",
    "effective_block_size",
    "plan_windows",
    "overview_factors",
    "window_text",
]

#: Default windows are at most this many pixels on a side (so that workers get several windows).
DEFAULT_MAX_WINDOW = 512
#: Overviews are added (2, 4, 8, ...) until the smallest is under this many pixels (long side).
OVERVIEW_MIN_SIZE = 256
_UNSIGNED = ("uint8", "uint16", "uint32")


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
    if not integer_valued(values):
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


@dataclass(frozen=True)
class Grid:
    """The windows of a prediction over a raster.

    Attributes
    ----------
    width, height : raster size in pixels.
    size : window side (tiled) or strip height in rows (striped).
    tiled : square windows (tiled raster) or full-width row strips (striped raster).
    windows : the windows in row-major order (:func:`plan_windows`).
    """

    width: int
    height: int
    size: int
    tiled: bool
    windows: tuple[Window, ...]

    @classmethod
    def of_raster(cls, src: DatasetReader, block_size: int | None, memory_mb: int, n_classes: int, *,
                  n_bands: int | None = None) -> Grid:
        """The windows for an open raster: ``block_size`` rounded to its internal blocks, or from ``memory_mb``
        (:func:`choose_block_size` for ``n_bands`` bands read, default all; at most :data:`DEFAULT_MAX_WINDOW`
        pixels on a side)."""
        n_read = n_bands if n_bands is not None else src.count
        width = src.width
        internal = (int(src.block_shapes[0][0]), int(src.block_shapes[0][1]))
        # striped files have full-width blocks; tiled ones (and formats with narrower blocks) do not
        tiled = bool(src.profile.get("tiled", False)) or internal[1] < width
        dtype_bytes = np.dtype(src.dtypes[0]).itemsize
        if block_size is not None:
            size = block_size
        elif tiled:
            unit = math.lcm(*internal)
            size = choose_block_size(n_read, dtype_bytes, n_classes, memory_mb, unit)
            size = min(size, max(unit, DEFAULT_MAX_WINDOW // unit * unit))
        else:
            side = choose_block_size(n_read, dtype_bytes, n_classes, memory_mb, 1)
            size = min(side * side, DEFAULT_MAX_WINDOW**2) // width  # rows of a strip
        size = effective_block_size(size, internal, tiled=tiled)
        windows = plan_windows(width, src.height, internal, size, tiled=tiled)
        return cls(width, src.height, size, tiled, tuple(windows))

    @property
    def size_text(self) -> str:
        """``"side N"`` or ``"rows N"``, for messages."""
        return f"{'side' if self.tiled else 'rows'} {self.size}"


def window_text(window: Window) -> str:
    """A window as ``(col_off=.., row_off=.., width=.., height=..)``, for messages."""
    return (
        f"(col_off={int(window.col_off)}, row_off={int(window.row_off)}, "
        f"width={int(window.width)}, height={int(window.height)})"
    )


@dataclass(frozen=True)
class PredictionPlan:
    """The blocks of a prediction, from :func:`~lcmodel.predict.prepare_prediction`.

    Attributes
    ----------
    n_blocks : windows of the whole raster.
    todo : indices of the windows not finished yet (all of them unless an earlier run left some).
    block_size : window side (tiled) or strip height (striped) in pixels.
    work_dir : the shared work folder (:func:`~lcmodel.predict.store.partial_dir`) the block groups write into.
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
