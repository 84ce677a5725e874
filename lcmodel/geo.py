"""Pixel-grid geometry shared by the stages: pixel centres, the pixel under a point, pixel area, CRS labels,
and a raster's orientation.

A raster's affine transform maps (col, row) pixel coordinates to x/y in its CRS; the centre of pixel
(row, col) is at (col + 0.5, row + 0.5). These few formulas are written once here so that sampling,
extraction, de-duplication, prediction and validation agree to the bit.

Orientation: a raster may be stored north-up (negative y pixel size, row 0 at the top) or south-up (positive y
pixel size, row 0 at the bottom, as the public AlphaEarth COGs are), and, rarely, with its columns running east
to west. :class:`Orientation` relates the stored grid to its NORTH-UP grid (row 0 at the north, column 0 at the
west, :func:`north_up_transform`); lcmodel works in that grid (pixel indices, de-duplication, maps) and only
reads in the stored one, by mirroring windows and flipping rows, never by resampling. Rotated or sheared grids
are refused (:func:`grid_orientation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.errors import CRSError
from rasterio.windows import Window

from lcmodel.errors import InputDataError

__all__ = [
    "pixel_centres",
    "pixel_index",
    "pixel_area_m2",
    "crs_label",
    "normalised_bounds",
    "is_axis_aligned",
    "north_up_transform",
    "Orientation",
    "grid_orientation",
]


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


def normalised_bounds(transform: Affine, width: int, height: int) -> BoundingBox:
    """``(left, bottom, right, top)`` with ``left <= right`` and ``bottom <= top``, for any affine.

    rasterio's ``dataset.bounds`` is ``(c, f + e * height, c + a * width, f)``: for a south-up raster
    (positive ``e``) its "bottom" is above its "top". These are the min / max of the four corners instead.
    """
    xs, ys = zip(*(transform @ (c, r) for c in (0, width) for r in (0, height)), strict=True)
    return BoundingBox(min(xs), min(ys), max(xs), max(ys))


def is_axis_aligned(transform: Affine) -> bool:
    """No rotation or shear (``b == d == 0``) and a non-degenerate pixel size."""
    return transform.b == 0.0 and transform.d == 0.0 and transform.a != 0.0 and transform.e != 0.0


def north_up_transform(transform: Affine, width: int, height: int) -> Affine:
    """The transform of the same grid stored north-up and west-to-east (positive ``a``, negative ``e``).

    A north-up transform is returned unchanged; a south-up one ``(a, 0, c, 0, e, f)`` with ``e > 0`` becomes
    ``(a, 0, c, 0, -e, f + e * height)`` (its top edge), and columns running east to west are mirrored alike.

    Raises
    ------
    InputDataError
        The transform is rotated or sheared (see :func:`grid_orientation`).
    """
    return grid_orientation(transform, width, height).north_up


@dataclass(frozen=True)
class Orientation:
    """How a raster's stored grid relates to its north-up grid (from :func:`grid_orientation`).

    Mirroring is its own inverse, so each method maps stored -> north-up and north-up -> stored alike.

    Attributes
    ----------
    width, height : raster size in pixels.
    flip_rows : stored row 0 is the SOUTH edge (positive y pixel size: south-up).
    flip_cols : stored column 0 is the EAST edge (negative x pixel size).
    north_up : the north-up transform (:func:`north_up_transform`).
    """

    width: int
    height: int
    flip_rows: bool
    flip_cols: bool
    north_up: Affine

    @property
    def identity(self) -> bool:
        """Stored north-up and west-to-east already."""
        return not (self.flip_rows or self.flip_cols)

    def index(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mirrored pixel indices (int64); -1 (outside) stays -1."""
        row = np.asarray(row, dtype=np.int64)
        col = np.asarray(col, dtype=np.int64)
        if self.flip_rows:
            row = np.where(row >= 0, self.height - 1 - row, row)
        if self.flip_cols:
            col = np.where(col >= 0, self.width - 1 - col, col)
        return row, col

    def window(self, window: Window) -> Window:
        """The mirrored window (same size)."""
        col_off, row_off = int(window.col_off), int(window.row_off)
        w, h = int(window.width), int(window.height)
        if self.flip_rows:
            row_off = self.height - row_off - h
        if self.flip_cols:
            col_off = self.width - col_off - w
        return Window(col_off, row_off, w, h)

    def array(self, data: np.ndarray) -> np.ndarray:
        """An array of a window (rows and columns its last two axes) mirrored, as a C-contiguous copy when
        flipped (the array itself otherwise); 0-d and 1-d arrays are returned as they are."""
        if self.identity or np.ndim(data) < 2:
            return data
        if self.flip_rows:
            data = data[..., ::-1, :]
        if self.flip_cols:
            data = data[..., ::-1]
        return np.ascontiguousarray(data)


def grid_orientation(transform: Affine, width: int, height: int, *, name: str = "raster") -> Orientation:
    """The orientation of an axis-aligned grid: north-up, south-up, and/or columns east to west.

    Parameters
    ----------
    transform : the stored grid's pixel -> x/y transform.
    width, height : raster size in pixels.
    name : how messages name the raster (e.g. ``"embedding raster 'x.tif'"``).

    Raises
    ------
    InputDataError
        The transform is rotated or sheared (or has a zero pixel size): lcmodel maps pixel for pixel on an
        axis-aligned grid and never resamples.
    """
    t = transform
    if not is_axis_aligned(t):
        coefficients = ", ".join(f"{v:.12g}" for v in (t.a, t.b, t.c, t.d, t.e, t.f))
        raise InputDataError(
            f"{name} has a rotated or sheared grid (transform {coefficients}); lcmodel "
            "needs an axis-aligned grid (north-up or south-up): warp it first, e.g. gdalwarp -t_srs <its CRS> "
            "in.tif out.tif"
        )
    flip_rows, flip_cols = t.e > 0, t.a < 0
    left = t.c + t.a * width if flip_cols else t.c
    top = t.f + t.e * height if flip_rows else t.f
    north_up = Affine(abs(t.a), 0.0, left, 0.0, -abs(t.e), top)
    return Orientation(int(width), int(height), bool(flip_rows), bool(flip_cols), north_up)
