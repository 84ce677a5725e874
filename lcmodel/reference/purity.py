"""Pure pixels of a class raster: those whose whole ``k x k`` window holds one class.

WorldCover's errors sit mostly on class edges, so training on pure pixels (eo-learn erodes class edges for
the same reason) gives cleaner labels. A window pixel outside the raster, or nodata, makes the centre
impure. :func:`pure_in_window` works on one block read with a halo of ``k // 2`` pixels (clipped to the
raster), so the answer for every pixel of the block is the whole raster's, whatever the block layout.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rasterio.windows import Window

__all__ = ["PURE_COLUMN", "check_purity_window", "padded_window", "pure_in_window", "pure_mask"]

#: the points' and samples' column saying whether a point's window is pure (never a feature)
PURE_COLUMN = "pure"


def check_purity_window(size: int | None) -> int | None:
    """``size`` when it is None or an odd window side >= 3, else a one-line ValueError."""
    if size is not None and (isinstance(size, bool) or size < 3 or size % 2 == 0):
        raise ValueError(f"purity window {size!r} is not an odd size of 3 or more; give 3 or 5, or null (off)")
    return size


def padded_window(window: Window, radius: int, height: int, width: int) -> tuple[Window, tuple[int, int, int, int]]:
    """``window`` grown by ``radius`` on each side and clipped to the raster, and the (top, bottom, left,
    right) padding missing where it was clipped (outside the raster)."""
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height), c0 + int(window.width)
    top, left = max(0, r0 - radius), max(0, c0 - radius)
    bottom, right = min(height, r1 + radius), min(width, c1 + radius)
    missing = (radius - (r0 - top), radius - (bottom - r1), radius - (c0 - left), radius - (right - c1))
    return Window(left, top, right - left, bottom - top), missing


def pure_mask(padded: np.ndarray, valid: np.ndarray, radius: int) -> np.ndarray:
    """Purity of the core of a padded block: ``padded`` and ``valid`` are (h + 2r, w + 2r) with the pixels
    outside the raster marked invalid; the result is (h, w), True where the (2r+1)^2 window is one valid class."""
    h, w = padded.shape[0] - 2 * radius, padded.shape[1] - 2 * radius
    centre = padded[radius : radius + h, radius : radius + w]
    pure = valid[radius : radius + h, radius : radius + w].copy()
    for dr in range(2 * radius + 1):
        for dc in range(2 * radius + 1):
            pure &= valid[dr : dr + h, dc : dc + w] & (padded[dr : dr + h, dc : dc + w] == centre)
    return pure


def pure_in_window(read: Callable[[Window], np.ndarray], is_valid: Callable[[np.ndarray], np.ndarray],
                   window: Window, size: int, height: int, width: int) -> np.ndarray:
    """The (h, w) purity of ``window`` of a raster of ``height x width``: ``read`` reads a window of it,
    ``is_valid`` says which values are valid (not nodata)."""
    radius = size // 2
    grown, (top, bottom, left, right) = padded_window(window, radius, height, width)
    block = read(grown)
    pad = ((top, bottom), (left, right))
    padded = np.pad(block, pad, mode="edge" if block.size else "constant")
    valid = np.pad(is_valid(block), pad, mode="constant", constant_values=False)
    return pure_mask(padded, valid, radius)
