"""Pixel-grid geometry shared by the stages: pixel centres, the pixel under a point, pixel area, CRS labels.

A raster's affine transform maps (col, row) pixel coordinates to x/y in its CRS; the centre of pixel
(row, col) is at (col + 0.5, row + 0.5). These few formulas are written once here so that sampling,
extraction, de-duplication, prediction and validation agree to the bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from affine import Affine
from rasterio.errors import CRSError

__all__ = ["pixel_centres", "pixel_index", "pixel_area_m2", "crs_label"]


def pixel_centres(transform: Affine, rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray]:
    """x/y (float64) of the centres of pixels (row, col) under an affine transform.

    Computed as ``c + (col + 0.5) a + (row + 0.5) b`` and ``f + (col + 0.5) d + (row + 0.5) e``, in that
    order of operations (any affine: north-up, bottom-up, rotated).

    Parameters
    ----------
    transform : the raster's pixel -> x/y transform.
    rows, cols : pixel indices (arrays or scalars of equal shape; integers or floats).
    """
    r = np.asarray(rows, dtype=np.float64) + 0.5
    c = np.asarray(cols, dtype=np.float64) + 0.5
    t = transform
    return t.c + c * t.a + r * t.b, t.f + c * t.d + r * t.e


def pixel_index(
    transform: Affine, x: np.ndarray, y: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (row, col) of each x/y by the inverse affine transform, with floor.

    Parameters
    ----------
    transform : Affine
        Pixel -> x/y transform of the raster (any affine: north-up, bottom-up, rotated).
    x, y : float64 arrays
        Coordinates in the raster's CRS.
    height, width : int
        Raster size in pixels.

    Returns
    -------
    row, col : int64 arrays
        -1 where the point is outside.
    inside : bool array
        ``0 <= col < width and 0 <= row < height``: a point exactly on the left/top edge is inside, one on
        the right/bottom edge (col == width or row == height) is outside. NaN coordinates are outside.
    """
    a, b, c, d, e, f = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    dx = x - c
    dy = y - f
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if b == 0.0 and d == 0.0:
            # Rectilinear grid: one division, exact for points on pixel edges of round-numbered grids.
            colf = dx / a
            rowf = dy / e
        else:
            det = a * e - b * d
            colf = (e * dx - b * dy) / det
            rowf = (a * dy - d * dx) / det
        colf = np.floor(colf)
        rowf = np.floor(rowf)
        inside = (colf >= 0) & (colf < width) & (rowf >= 0) & (rowf < height)
    row = np.full(x.shape, -1, dtype=np.int64)
    col = np.full(x.shape, -1, dtype=np.int64)
    row[inside] = rowf[inside].astype(np.int64)
    col[inside] = colf[inside].astype(np.int64)
    return row, col, inside


def pixel_area_m2(crs: Any, transform: Affine) -> float | None:
    """Area of one pixel in m^2 for a projected CRS (``|det|`` of the transform x unit factor^2), else None.

    Parameters
    ----------
    crs : a rasterio ``CRS`` or None.
    transform : the raster's affine transform.
    """
    if crs is None or not crs.is_projected:
        return None
    try:
        _, factor = crs.linear_units_factor
    except CRSError:  # no linear unit
        return None
    t = transform
    return float(abs(t.a * t.e - t.b * t.d) * factor * factor)


def crs_label(crs: Any) -> str:
    """A short name for a CRS in messages: ``EPSG:<code>``, else the start of its definition."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else (crs.to_string()[:60] or "an unnamed CRS")
