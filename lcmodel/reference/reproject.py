"""Reference points into another CRS, and reference codes into model class values.

:func:`reproject_points` builds its transformation from the full CRS definitions, so CRSs without an EPSG code
(MODIS sinusoidal, custom WKT) work; :func:`reclassify` maps the ``code`` column through a
:class:`~lcmodel.classes.ClassTable` (or one derived from the labels) into ``value``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from pyproj import Transformer

from lcmodel.classes import ClassTable
from lcmodel.errors import ClassTableError, DataWarning
from lcmodel.reference.points import ReferencePoints, as_pyproj_crs, as_rasterio_crs, format_code

__all__ = ["reproject_points", "reclassify"]

logger = logging.getLogger(__name__)


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
    dst = as_rasterio_crs(dst_crs, "target CRS")
    table = points.table.copy()
    if len(table) == 0 or points.crs == dst:
        return ReferencePoints(table=table.reset_index(drop=True), crs=dst)
    transformer = Transformer.from_crs(as_pyproj_crs(points.crs), as_pyproj_crs(dst), always_xy=True)
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
        seen = ", ".join(map(format_code, pd.unique(df["code"])[:10]))
        known = ", ".join(map(format_code, list(table.code_to_value)[:10]))
        raise ClassTableError(
            f"none of the reference codes ({seen}) is in the class table (codes: {known}); give a class table "
            "(classes.table) whose code column holds the reference labels"
        )
    out = df.copy()
    if unknown.any():
        counts = df.loc[unknown, "code"].value_counts(sort=False).sort_index()
        detail = ", ".join(f"{format_code(code)} ({n})" for code, n in counts.items())
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

