"""Validation sample files: writing a drawn sample (CSV or GeoPackage) and reading it back once labelled.

:func:`write_sample` writes CSV; a GeoPackage (``.gpkg``) is written with the standard library's sqlite3
following the OGC GeoPackage 1.3 encoding for a point table (no GDAL/OGR vector dependency needed).
:func:`read_labelled` reads either back, keeping the points that people gave a reference label.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.errors import ConfigError, InputDataError, InputFileError, InsufficientDataError
from lcmodel.io import atomic_path

__all__ = ["write_sample", "read_labelled"]


def write_sample(table: pd.DataFrame, crs: Any, out_path: Path | str, *, layer: str = "validation_points"
                 ) -> Path:
    """Write a validation sample as ``.csv`` (x, y in the map's CRS, whose WKT goes to ``<name>.crs.json``)
    or as a ``.gpkg`` point layer ``layer`` (written with sqlite3, see module docstring).

    Parameters
    ----------
    table : output of :func:`draw_validation_sample` (or any table with ``x``/``y``: each column becomes a
        field, INTEGER, DOUBLE or TEXT by its dtype, an empty text as NULL).
    crs : the map's CRS (rasterio ``CRS``).
    out_path : ``.csv`` or ``.gpkg``.
    layer : the GeoPackage table (``suggested_points`` for `lcmodel suggest`).
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        with atomic_path(out) as tmp:
            table.to_csv(tmp, index=False)
        with atomic_path(out.with_suffix(".crs.json")) as tmp:
            tmp.write_text(json.dumps({"crs_wkt": crs.to_wkt() if crs else None}) + "\n")
        return out
    if suffix == ".gpkg":
        with atomic_path(out) as tmp:
            _write_gpkg(table, crs, tmp, layer)
        return out
    raise ConfigError(f"output {str(out)!r} has suffix {suffix!r}; use .csv or .gpkg")


def _write_gpkg(table: pd.DataFrame, crs: Any, path: Path, layer: str) -> None:
    """A GeoPackage 1.3 with one point feature table ``layer`` (stdlib sqlite3)."""
    epsg = crs.to_epsg() if crs is not None else None
    srs_id = int(epsg) if epsg else 100000
    wkt = crs.to_wkt() if crs is not None else "undefined"
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
        con.execute("PRAGMA user_version = 10300")
        con.executescript(
            """
            CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
              organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL,
              description TEXT);
            CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
              identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT
              (strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
              srs_id INTEGER, CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
            CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
              geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
              CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name));
            """
        )
        con.executemany(
            "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
                ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
                (
                    "WGS 84 geodetic",
                    4326,
                    "EPSG",
                    4326,
                    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
                    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]',
                    None,
                ),
            ],
        )
        if srs_id != 4326:
            con.execute(
                "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                ("map CRS", srs_id, "EPSG" if epsg else "NONE", srs_id, wkt, None),
            )
        columns = [(str(c), _sql_type(table[c])) for c in table.columns]
        fields = ", ".join(f'"{name}" {kind}' for name, kind in columns)
        con.execute(f'CREATE TABLE "{layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom POINT, {fields})')
        header = (
            b"GP" + bytes([0, 0b00000001]) + struct.pack("<i", srs_id)
        )  # v0, little-endian, no envelope
        convert: dict[str, Callable[[Any], Any]] = {"INTEGER": int, "DOUBLE": float, "TEXT": _label_or_none}
        rows = []
        for r in table.itertuples(index=False, name=None):
            record = dict(zip(table.columns, r, strict=True))
            geom = header + struct.pack(
                "<BIdd", 1, 1, float(record["x"]), float(record["y"])
            )  # WKB point, little-endian
            rows.append((geom, *(convert[kind](record[name]) for name, kind in columns)))
        names = ", ".join(f'"{name}"' for name, _ in columns)
        con.executemany(
            f'INSERT INTO "{layer}" (geom, {names}) VALUES (?, {", ".join("?" * len(columns))})',
            rows,
        )
        bounds = (
            (table["x"].min(), table["y"].min(), table["x"].max(), table["y"].max())
            if len(table)
            else (None, None, None, None)
        )
        con.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, min_x, min_y, max_x, max_y, srs_id) "
            "VALUES (?, 'features', ?, ?, ?, ?, ?, ?)",
            (layer, layer, *[None if v is None else float(v) for v in bounds], srs_id),
        )
        con.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POINT', ?, 0, 0)",
            (layer, srs_id),
        )
        con.commit()
    finally:
        con.close()


def _sql_type(column: pd.Series) -> str:
    """INTEGER, DOUBLE or TEXT: the GeoPackage field type of a table column."""
    kind = column.dtype.kind
    return "INTEGER" if kind in "iub" else "DOUBLE" if kind == "f" else "TEXT"


def _label_or_none(value: Any) -> str | None:
    """A reference label as text, or None (SQL NULL) when empty."""
    if (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or str(value).strip() == ""
    ):
        return None
    return str(value)


def read_labelled(path: Path | str, *, reference_column: str = "reference") -> pd.DataFrame:
    """Read a labelled validation sample (``.csv`` or ``.gpkg``): rows with an empty reference are dropped.

    Returns
    -------
    DataFrame
        At least ``x, y, map_class`` and ``reference`` (int when every label is an integer).
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"labelled points {str(p)!r} do not exist; check the path")
    if p.suffix.lower() == ".gpkg":
        con = sqlite3.connect(p)
        try:
            df = pd.read_sql_query("SELECT * FROM validation_points", con)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise InputFileError(
                f"{str(p)!r} has no validation_points table ({exc}); give the file we wrote"
            ) from None
        finally:
            con.close()
    else:
        try:
            df = pd.read_csv(p)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputFileError(
                f"labelled points {str(p)!r} are not a readable CSV ({exc})"
            ) from None
    missing = [c for c in ("x", "y", reference_column) if c not in df.columns]
    if missing:
        raise InputDataError(
            f"labelled points {str(p)!r} lack column(s) {missing}; fill the '{reference_column}' column of the "
            "file written by `lcmodel validation-sample`"
        )
    df = df.rename(columns={reference_column: "reference"})
    ref = df["reference"]
    labelled = ref.notna() & (ref.astype(str).str.strip() != "")
    if not labelled.any():
        raise InsufficientDataError(
            f"no point of {str(p)!r} has a reference label; label the points first"
        )
    df = df[labelled].reset_index(drop=True)
    try:
        df["reference"] = pd.to_numeric(df["reference"]).astype(np.int64)
    except (ValueError, TypeError):
        raise InputDataError(
            f"reference labels of {str(p)!r} are not all integer class values "
            f"(e.g. {df['reference'].iloc[0]!r}); use the map's class values"
        ) from None
    return df
