"""Why reference points miss the embedding: overlap checks, CRS hints and CRS-unit warnings.

:func:`check_overlap` raises when no reference point falls within the embedding's extent, naming the likely
mistake (lon/lat declared as projected or the reverse, swapped x/y); :func:`warn_crs_units` warns when a
raster's bounds do not look like the units of its CRS.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from pyproj import Transformer
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.errors import CRSError as RioCRSError

from lcmodel.errors import DataWarning, NoOverlapError
from lcmodel.geo import crs_label
from lcmodel.reference.points import ReferencePoints, as_pyproj_crs

__all__ = ["check_overlap", "warn_crs_units"]


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
            t = Transformer.from_crs(as_pyproj_crs(src_crs), as_pyproj_crs(dst_crs), always_xy=True)
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
    name = crs_label(declared)
    lonlat_like = bool((np.abs(x) <= 180).all() and (np.abs(y) <= 90).all())
    example = f"x={_num(x[0])}, y={_num(y[0])}"
    if declared.is_geographic and not lonlat_like:
        where = ""
        if _lands_in(x, y, dst_crs, dst_crs, bounds):
            where = f" (read as {crs_label(dst_crs)}, the embedding's CRS, they fall on the raster)"
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
        f"(bounds {box} in {crs_label(dst)}): {fix}"
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
            f"{what} declares a geographic CRS ({crs_label(crs)}, degrees) but its bounds ({left:g}, {bottom:g}, "
            f"{right:g}, {top:g}) look like metres; its CRS is probably wrong: assign the right one "
            "(gdal_edit.py -a_srs)",
            DataWarning,
            stacklevel=2,
        )
    elif crs.is_projected and degrees_like and (right - left) < 10 and (top - bottom) < 10:
        warnings.warn(
            f"{what} declares a projected CRS ({crs_label(crs)}) but its bounds ({left:g}, {bottom:g}, "
            f"{right:g}, {top:g}) look like degrees; its CRS is probably wrong: assign the right one "
            "(gdal_edit.py -a_srs EPSG:4326)",
            DataWarning,
            stacklevel=2,
        )
