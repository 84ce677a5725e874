"""Labelled points added to a raster reference's sample (``reference.extra_points``).

Each file is read as a points reference is (:func:`lcmodel.reference.read_points_file`: a CSV with
``reference.x_column``/``y_column`` in ``reference.crs``, or a vector layer with its own CRS; labels in
``reference.label_column``), so the file `lcmodel suggest` writes, with its ``label`` column filled, is read
as it is. Labels are reference codes (the raster's values). The points are reprojected into the raster
sample's CRS and flagged in the column :data:`EXTRA_COLUMN`; the training table puts them in the training
part only (:mod:`lcmodel.extra_points`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.errors import ConfigError, InputDataError, InputFileError
from lcmodel.reference.points import ReferencePoints
from lcmodel.reference.reproject import reproject_points

__all__ = ["EXTRA_COLUMN", "read_extra_points", "with_extra_points", "check_extra_files"]

log = logging.getLogger(__name__)

#: the flag of a point that came from ``reference.extra_points`` (bool; never a feature)
EXTRA_COLUMN = "extra"


def check_extra_files(paths: Sequence[Path], kind: str) -> None:
    """Refuse, before any work, extra point files for a points reference or files that do not exist."""
    if not paths:
        return
    if kind != "raster":
        raise ConfigError(f"reference.extra_points ({len(paths)} file(s)) adds points to a class raster's sample, "
                          "but reference.path is a points file; add the points to that file instead")
    for path in paths:
        if not Path(path).is_file():
            raise InputFileError(f"reference.extra_points file {str(path)!r} does not exist; check the path")


def read_extra_points(paths: Sequence[Path], *, x_column: str, y_column: str, label_column: str,
                      crs: Any | None, layer: str | int | None) -> list[ReferencePoints]:
    """Every file's labelled points, codes as integers (the raster's codes)."""
    from lcmodel.reference.vector import read_points_file

    found = []
    for path in paths:
        points = read_points_file(path, x_column=x_column, y_column=y_column, label_column=label_column,
                                  crs=crs, layer=layer)
        code = points.table["code"]
        if code.dtype.kind not in "iu":
            try:
                code = pd.to_numeric(code).astype(np.int64)
            except (ValueError, TypeError):
                raise InputDataError(
                    f"reference.extra_points file {Path(path).name!r} has labels that are not integer codes "
                    f"(e.g. {code.iloc[0]!r}); label the points with the reference raster's codes"
                ) from None
        found.append(ReferencePoints(table=points.table.assign(code=code), crs=points.crs))
    return found


def with_extra_points(sample: ReferencePoints, extra: Sequence[ReferencePoints]) -> ReferencePoints:
    """The raster sample followed by the extra points in its CRS, each row flagged (:data:`EXTRA_COLUMN`)."""
    base = sample.table.assign(**{EXTRA_COLUMN: False})
    parts = [base]
    for points in extra:
        moved = reproject_points(points, sample.crs).table[["x", "y", "code"]]
        parts.append(moved.assign(**{EXTRA_COLUMN: True}))
    table = pd.concat(parts, ignore_index=True)
    if "pure" in table.columns:  # a labelled point counts as pure: a person looked at it
        table["pure"] = table["pure"].fillna(True).astype(bool)
    table["code"] = table["code"].astype(np.int64)
    log.info("reference: %d extra labelled points from %d file(s)", len(table) - len(base), len(extra))
    return ReferencePoints(table=table, crs=sample.crs)
