"""Labelled points from a vector layer: GeoPackage, GeoJSON, Shapefile (also zipped) or FlatGeobuf.

Real point sets usually come as a layer of a vector file, its CRS in the file. They are read with pyogrio
(GDAL's vector drivers, no geopandas) and shapely, into the same :class:`ReferencePoints` as a CSV gives, so
nothing downstream knows the difference:

* the layer is ``reference.layer`` (a name, or a 0-based index in the file's layer order); without it the
  file's only layer with geometries is read, and a file with several such layers is an error that lists them
  (guessing could silently train on the wrong layer; a GeoPackage's non-spatial tables, such as QGIS's
  ``layer_styles``, do not count);
* the CRS is the file's own; ``reference.crs`` is used only for a file that has none (a shapefile without its
  ``.prj``), with a warning; a configured ``reference.crs`` that disagrees with the file is ignored, with a
  warning;
* features are Points (or MultiPoints of one point; z and m are ignored). Other geometry types are an error
  that says how to turn them into points; features without a geometry or a label are dropped, counted;
* the label is the field ``reference.label_column``, integers or strings as in a CSV.

A shapefile is several files: :func:`companion_files` names the sidecars its content lives in (``.dbf``
labels, ``.prj`` CRS...), so that a run's cache key covers them as well as the ``.shp``.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from lcmodel.errors import DataWarning, InputDataError, InputFileError, LcmodelError
from lcmodel.reference.points import ReferencePoints, as_rasterio_crs, codes_column, read_points_csv

__all__ = [
    "VECTOR_SUFFIXES",
    "is_vector_file",
    "companion_files",
    "check_points_layer",
    "read_points_vector",
    "read_points_file",
]

logger = logging.getLogger(__name__)

#: File names read as vector layers (``.zip``: a zipped shapefile; with ``reference.kind: auto`` only
#: ``.shp.zip`` and ``.shz`` are, since a plain ``.zip`` may hold a raster).
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".shz", ".shp.zip", ".zip", ".fgb")

#: The sidecars of a ``.shp`` that GDAL reads its content from (not its spatial indexes).
SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")

#: The CRS a file without one is read in when ``reference.crs`` is not configured (its default).
FALLBACK_CRS = "EPSG:4326"

_POINT, _MULTIPOINT = 0, 4
_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
               6: "MultiPolygon", 7: "GeometryCollection"}
_POLYGONAL = ("Polygon", "MultiPolygon", "CurvePolygon", "MultiSurface", "Triangle", "TIN", "PolyhedralSurface")


def is_vector_file(path: Path | str) -> bool:
    """Whether ``path`` names a vector file by its suffix (see :data:`VECTOR_SUFFIXES`)."""
    return Path(path).name.lower().endswith(VECTOR_SUFFIXES)


def companion_files(path: Path | str) -> list[Path]:
    """The files beside ``path`` that hold part of its content: a shapefile's sidecars, sorted; else none."""
    path = Path(path)
    if path.suffix.lower() != ".shp" or not path.parent.is_dir():
        return []
    wanted = {(path.stem + s).lower() for s in SHAPEFILE_SIDECARS}
    return sorted(p for p in path.parent.iterdir() if p.name.lower() in wanted and p.is_file())


# ------------------------------------------------------------------------------------------------- layers


def _list_layers(path: Path) -> list[tuple[str, str | None]]:
    import pyogrio
    from pyogrio.errors import DataSourceError

    if not path.is_file():
        raise InputFileError(f"points file {str(path)!r} does not exist; check reference.path in the config")
    try:
        found = pyogrio.list_layers(path)
    except (DataSourceError, OSError) as exc:
        raise InputFileError(
            f"points file {str(path)!r} is not a readable vector file ({str(exc).splitlines()[0]}); give a "
            "GeoPackage, GeoJSON, Shapefile or FlatGeobuf, or a CSV"
        ) from None
    return [(str(name), None if kind is None else str(kind)) for name, kind in found]


def _describe(layers: list[tuple[str, str | None]]) -> str:
    return ", ".join(f"{i}: {name} ({kind or 'no geometry'})" for i, (name, kind) in enumerate(layers))


def _choose_layer(path: Path, layer: str | int | None) -> str:
    """The name of the layer to read: ``reference.layer`` resolved, or the file's only layer with geometries."""
    layers = _list_layers(path)
    names = [name for name, _ in layers]
    if isinstance(layer, int):  # reference.layer refuses booleans
        if not 0 <= layer < len(layers):
            raise InputDataError(
                f"points file {path.name!r} has no layer {layer} (layers, counted from 0: {_describe(layers)}); "
                "set reference.layer to one of them"
            )
        return names[layer]
    if layer is not None:
        if layer in names:
            return layer
        close = difflib.get_close_matches(layer, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        index = " (an index is given as a number, not in quotes)" if layer.isdigit() else ""
        raise InputDataError(
            f"points file {path.name!r} has no layer {layer!r}{index} (layers: {_describe(layers)}); {hint}set "
            "reference.layer to one of them"
        )
    spatial = [name for name, kind in layers if kind is not None]
    if len(spatial) != 1:
        what = "no layer with geometries" if not spatial else f"{len(spatial)} layers with geometries"
        raise InputDataError(
            f"points file {path.name!r} has {what} (layers: {_describe(layers) or 'none'}); set reference.layer "
            "to the layer of labelled points"
        )
    if len(layers) > 1:
        logger.info("reading layer %r of %s, its only layer with geometries", spatial[0], path.name)
    return spatial[0]


def _convert_hint(path: Path, layer: str, geometry_name: str, label_column: str, kind: str) -> str:
    """How to turn non-point features into points, for the error message."""
    if kind.split()[0] in _POLYGONAL:
        geom = geometry_name or "geometry"
        out = f"{path.stem}_points.gpkg"
        return (
            f"use a point inside each polygon (or its centroid), e.g. ogr2ogr -dialect sqlite -sql \"SELECT "
            f"ST_PointOnSurface({geom}) AS geom, {label_column} FROM {layer}\" {out} {path.name}, and set "
            f"reference.path to {out}"
        )
    if kind.split()[0] == "MultiPoint":
        return "split them into single points (ogr2ogr -explodecollections) and point reference.path at the result"
    return "labelled points need Point geometries: convert the layer to points first"


def check_points_layer(
    path: Path | str, *, label_column: str = "label", layer: str | int | None = None
) -> dict[str, Any]:
    """Check, from the file's metadata only, that a layer of labelled points can be read; return its info.

    The layer resolves (see the module docstring), it has the label field, and its declared geometry type is
    Point, MultiPoint or mixed. Cheap: nothing but the layer's metadata is read.

    Raises
    ------
    InputFileError
        The file is missing or not a vector file GDAL reads.
    InputDataError
        No such layer, several candidate layers, no such field, or a non-point geometry type.
    """
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    path = Path(path)
    name = _choose_layer(path, layer)
    try:
        info: dict[str, Any] = pyogrio.read_info(path, layer=name)
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise InputFileError(
            f"points file {str(path)!r}: layer {name!r} is not readable ({str(exc).splitlines()[0]}); check the file"
        ) from None
    info["layer_name"] = name
    fields = [str(f) for f in info["fields"]]
    if label_column not in fields:
        close = difflib.get_close_matches(label_column, fields, n=1) or [
            f for f in fields if f.lower() == label_column.lower()]
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputDataError(
            f"points file {path.name!r} layer {name!r} has no field {label_column!r} (fields: "
            f"{', '.join(fields) or 'none'}); {hint}set reference.label_column to the field holding the class labels"
        )
    kind = str(info.get("geometry_type") or "Unknown")
    if kind.split()[0] not in ("Point", "MultiPoint", "Unknown", "GeometryCollection"):
        raise InputDataError(
            f"points file {path.name!r} layer {name!r} holds {kind} geometries ({info.get('features', '?')} "
            f"features), not points; {_convert_hint(path, name, info.get('geometry_name', ''), label_column, kind)}"
        )
    return info


# ----------------------------------------------------------------------------------------------- reading


def _points_only(path: Path, info: dict[str, Any], label_column: str, geoms: np.ndarray) -> np.ndarray:
    """The features' points (None where the geometry is missing or empty); raise on any other geometry."""
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    types = shapely.get_type_id(geoms)
    parts = shapely.get_num_geometries(geoms)
    single_multi = present & (types == _MULTIPOINT) & (parts == 1)
    bad = present & (types != _POINT) & ~single_multi
    if bad.any():
        ids, counts = np.unique(types[bad], return_counts=True)
        found = ", ".join(f"{_TYPE_NAMES.get(int(t), str(t))} ({int(n)})" for t, n in zip(ids, counts, strict=True))
        first = _TYPE_NAMES.get(int(ids[np.argmax(counts)]), "Unknown")
        detail = "several points each" if first == "MultiPoint" else "not points"
        raise InputDataError(
            f"points file {path.name!r} layer {info['layer_name']!r} has {int(bad.sum())} of {len(geoms)} features "
            f"that are {detail} ({found}); "
            f"{_convert_hint(path, info['layer_name'], info.get('geometry_name', ''), label_column, first)}"
        )
    out = geoms.copy()
    out[~present] = None
    out[single_multi] = shapely.get_geometry(geoms[single_multi], 0)
    return out


def _labels(values: pd.Series) -> pd.Series:
    """Label values with blank strings as missing (as a CSV's empty cells are)."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values
    return values.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", np.nan)


def _file_crs(path: Path, info: dict[str, Any], crs: Any | None, x: np.ndarray, y: np.ndarray) -> Any:
    """The CRS of the points: the file's (``crs`` then only checked), else ``crs`` or the fallback, with a warning.

    A file whose CRS is geographic but whose coordinates cannot be degrees is refused: typically a GeoJSON
    without a ``crs`` member (WGS 84 by definition) that holds projected coordinates.
    """
    configured = None if crs is None else as_rasterio_crs(crs, "reference.crs")
    if info.get("crs"):
        try:
            own = as_rasterio_crs(info["crs"], f"the CRS of {path.name}")
        except LcmodelError:
            raise InputFileError(
                f"points file {path.name!r} has a CRS that cannot be read ({str(info['crs'])[:60]!r}); fix the "
                "file's CRS (e.g. ogr2ogr -a_srs EPSG:32631)"
            ) from None
        not_degrees = (np.abs(y) > 90) | (np.abs(x) > 360)
        if own.is_geographic and not_degrees.any():
            i = int(np.argmax(not_degrees))
            to = crs if crs is not None else "EPSG:<code of the coordinates>"
            raise InputDataError(
                f"points file {path.name!r} says its CRS is {own.to_string()}, but its coordinates are not degrees "
                f"(x={x[i]:.6g}, y={y[i]:.6g}); write the file with its real CRS, e.g. ogr2ogr -a_srs {to} "
                f"{path.stem}_fixed.gpkg {path.name}, and set reference.path to that file"
            )
        if configured is not None and configured != own:
            warnings.warn(
                f"reference.crs {crs!r} is ignored: {path.name} carries its own CRS ({own.to_string()}); remove "
                "reference.crs from the config (it applies to CSV points and to files without a CRS)",
                DataWarning,
                stacklevel=3,
            )
        return own
    used = configured if configured is not None else as_rasterio_crs(FALLBACK_CRS)
    source = f"reference.crs {crs!r}" if configured is not None else f"{FALLBACK_CRS} (the default of reference.crs)"
    missing = " (no .prj file beside it)" if path.suffix.lower() == ".shp" else ""
    warnings.warn(
        f"points file {path.name} has no CRS{missing}; its coordinates are read as {source}; add the CRS to the "
        "file or set reference.crs to the CRS of the coordinates",
        DataWarning,
        stacklevel=3,
    )
    return used


def read_points_vector(
    path: Path | str, *, label_column: str = "label", layer: str | int | None = None, crs: Any | None = None
) -> ReferencePoints:
    """Read labelled points from a layer of a vector file (GeoPackage, GeoJSON, Shapefile, FlatGeobuf).

    Parameters
    ----------
    path : path-like
        The file (``.gpkg``, ``.geojson``/``.json``, ``.shp`` with its sidecars, ``.shp.zip``/``.zip``/``.shz``,
        ``.fgb``).
    label_column : str
        The field holding the class labels (integers or strings).
    layer : str or int, optional
        The layer's name or 0-based index; default the file's only layer with geometries.
    crs : CRS-like, optional
        ``reference.crs`` when the user configured it: used only if the file has no CRS (else
        :data:`FALLBACK_CRS` is), and a warning when it differs from the file's own.

    Returns
    -------
    ReferencePoints
        ``x``, ``y`` float64 and ``code`` (int64 when every label is an integer, else str), in the file's
        order, in the file's CRS.

    Raises
    ------
    InputFileError
        The file is missing or unreadable, or its CRS is unreadable.
    InputDataError
        Layer, field or geometry type problems (see :func:`check_points_layer`), non-finite coordinates, or no
        feature left.

    Warns
    -----
    DataWarning
        Features without geometry or label were dropped (counted); the CRS came from the config, not the file.
    """
    from pyogrio.errors import DataLayerError, DataSourceError
    from pyogrio.raw import read_arrow

    path = Path(path)
    info = check_points_layer(path, label_column=label_column, layer=layer)
    name = info["layer_name"]
    try:
        meta, table = read_arrow(path, layer=name, columns=[label_column])
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise InputFileError(
            f"points file {str(path)!r}: layer {name!r} is not readable ({str(exc).splitlines()[0]}); check the file"
        ) from None
    geometry = meta.get("geometry_name") or "wkb_geometry"
    geoms = shapely.from_wkb(table.column(geometry).to_numpy(zero_copy_only=False))
    points = _points_only(path, info, label_column, geoms)
    labels = _labels(table.column(label_column).to_pandas())
    no_geometry = pd.isna(points)
    no_label = labels.isna().to_numpy() & ~no_geometry
    dropped = no_geometry | no_label
    if dropped.any():
        warnings.warn(
            f"{int(dropped.sum())} of {len(points)} features of {path.name} have no geometry "
            f"({int(no_geometry.sum())}) or no {label_column!r} value ({int(no_label.sum())}) and were dropped",
            DataWarning,
            stacklevel=2,
        )
    keep = ~dropped
    if not keep.any():
        raise InputDataError(
            f"points file {str(path)!r} layer {name!r} has no feature with a point and a label; check the file "
            "and reference.label_column"
        )
    kept = points[keep]
    x, y = shapely.get_x(kept).astype(np.float64), shapely.get_y(kept).astype(np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.all():
        raise InputDataError(
            f"points file {path.name!r} layer {name!r}: {int((~finite).sum())} point(s) have non-finite "
            "coordinates; fix the file"
        )
    file_crs = _file_crs(path, info, crs, x, y)
    frame = pd.DataFrame({"x": x, "y": y, "code": codes_column(labels[keep].to_numpy())})
    logger.info("read %d points from layer %r of %s (%s)", len(frame), name, path.name, file_crs.to_string())
    return ReferencePoints(table=frame, crs=file_crs)


def read_points_file(
    path: Path | str,
    *,
    x_column: str = "lon",
    y_column: str = "lat",
    label_column: str = "label",
    crs: Any | None = None,
    layer: str | int | None = None,
) -> ReferencePoints:
    """Labelled points from a vector layer (:func:`read_points_vector`) or else a CSV (:func:`read_points_csv`).

    ``crs`` is ``reference.crs`` when configured (None: not given); a CSV without it is read as
    :data:`FALLBACK_CRS`. ``x_column``/``y_column`` apply to a CSV, ``layer`` to a vector file.
    """
    if is_vector_file(path):
        return read_points_vector(path, label_column=label_column, layer=layer, crs=crs)
    if layer is not None:
        warnings.warn(
            f"reference.layer {layer!r} is ignored: {Path(path).name} is read as a CSV; remove reference.layer",
            DataWarning,
            stacklevel=2,
        )
    return read_points_csv(path, x_column=x_column, y_column=y_column, label_column=label_column,
                           crs=FALLBACK_CRS if crs is None else crs)
