"""Reference points as a table with its CRS, and labelled points read from a CSV.

A :class:`ReferencePoints` is what every reference source becomes: ``x``/``y``/``code`` plus the CRS the
coordinates are in. This module also holds what the other reference modules share about points: turning a CRS
given in any form into a rasterio or pyproj CRS, and labels into a ``code`` column.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyproj import CRS as ProjCRS
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.errors import CRSError as RioCRSError

from lcmodel.errors import ConfigError, DataWarning, InputDataError, InputFileError

__all__ = [
    "POINT_SUFFIXES",
    "ReferencePoints",
    "as_rasterio_crs",
    "as_pyproj_crs",
    "codes_column",
    "format_code",
    "read_points_csv",
]

logger = logging.getLogger(__name__)

#: File suffixes read as CSV points (vector layers: :data:`lcmodel.reference.vector.VECTOR_SUFFIXES`).
POINT_SUFFIXES = (".csv", ".txt", ".tsv")


@dataclass(frozen=True)
class ReferencePoints:
    """Labelled reference points and the CRS their coordinates are in.

    Attributes
    ----------
    table : pandas.DataFrame
        float64 columns ``x``, ``y``; column ``code`` (int64 for integer labels, else str); after
        :func:`lcmodel.reference.reclassify` also ``value`` (int64, positive class value).
    crs : rasterio.crs.CRS
        The CRS of ``x``/``y``.
    """

    table: pd.DataFrame
    crs: CRS

    def __len__(self) -> int:
        return len(self.table)


# ------------------------------------------------------------------------------------------ CRS and codes


def as_rasterio_crs(crs: Any, what: str = "CRS") -> CRS:
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


def as_pyproj_crs(crs: Any) -> ProjCRS:
    """A pyproj CRS from anything :func:`as_rasterio_crs` accepts, through WKT (no EPSG code needed)."""
    if isinstance(crs, ProjCRS):
        return crs
    return ProjCRS.from_wkt(as_rasterio_crs(crs).to_wkt())


def codes_column(values: np.ndarray | pd.Series) -> pd.Series:
    """Labels as int64 when all are numeric and integral, else as stripped strings."""
    series = pd.Series(values).reset_index(drop=True)
    if series.dtype.kind in "iub":
        return series.astype(np.int64)
    numeric = pd.to_numeric(series, errors="coerce")
    if len(series) and numeric.notna().all() and bool(np.all(np.isfinite(numeric))):
        if bool(np.all(np.mod(numeric, 1) == 0)):
            return numeric.astype(np.int64)
    return series.astype(str).str.strip()


def format_code(value: Any) -> str:
    """A class code for a message: ``10`` for 10, 10.0 or numpy 10; anything else as ``str``."""
    v = value.item() if isinstance(value, np.generic) else value
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


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
    rio_crs = as_rasterio_crs(crs, "reference.crs")
    if not path.is_file():
        raise InputFileError(f"points file {str(path)!r} does not exist; check reference.path in the config")
    try:
        with warnings.catch_warnings():
            # a row with more fields than the header: pandas would take its first fields as the row's index
            # (shifting every value one column) or, with index_col=False, drop the extra ones; refuse it instead
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep=_delimiter(path), dtype=str, skipinitialspace=True, index_col=False)
    except pd.errors.ParserWarning:
        raise InputFileError(
            f"points file {str(path)!r} has a row with more fields than its header; give one value per "
            "header column on every row (check the separator and quoting)"
        ) from None
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
        {"x": coords[x_column], "y": coords[y_column], "code": codes_column(sub[label_column].to_numpy())}
    )
    logger.info("read %d points from %s", len(table), path.name)
    return ReferencePoints(table=table, crs=rio_crs)

