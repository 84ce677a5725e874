"""What `lcmodel suggest` reads, found and checked before any work: the map, its score rasters, the points to avoid.

The score rasters sit beside the map, where a run writes them (:class:`lcmodel.pipeline.paths.RunPaths`):
``margin.tif`` / ``entropy.tif`` (uint8 0..100, nodata 255, :mod:`lcmodel.uncertainty`), ``confidence.tif``
(uint8 0..100, nodata 255) and ``di.tif`` (float32, nodata -1, its AOA threshold in the tag
``LCMODEL_AOA_THRESHOLD``: :mod:`lcmodel.aoa.raster`). Each must be on the map's grid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rasterio.crs import CRS

from lcmodel.errors import ConfigError, InputDataError, InputFileError
from lcmodel.io import open_raster

__all__ = ["SCORES", "SuggestInputs", "find_inputs", "read_exclusions", "DEFAULT_BLOCK_PIXELS"]

#: the rankings `--by` accepts
SCORES = ("margin", "entropy", "di", "both")
#: the side of a spatial block, in map pixels, when the run's blocks are unknown
DEFAULT_BLOCK_PIXELS = 32


@dataclass(frozen=True)
class SuggestInputs:
    """The rasters and rules of one suggestion.

    ``uncertainty`` is ``(layer, path)`` with layer ``margin``, ``entropy`` or ``confidence`` (None for
    ``--by di``); ``di``/``threshold`` the DI raster and its AOA threshold (None unless ranked by DI).
    ``block_size`` is in map CRS units, with where it came from in ``block_source``.
    """

    map: Path
    by: str
    uncertainty: tuple[str, Path] | None
    di: Path | None
    threshold: float | None
    exclude: Path | None
    block_size: float
    block_source: str
    crs: CRS
    width: int
    height: int


def _grid(path: Path, what: str) -> tuple[Any, int, int, Any, str, int]:
    with open_raster(path, what) as src:
        return src.transform, src.width, src.height, src.crs, src.dtypes[0], src.count


def find_inputs(map_path: Path | str, *, by: str | None = None, exclude_near: Path | str | None = None,
                block_size: float | None = None, exclude_default: bool = True) -> SuggestInputs:
    """The inputs of a suggestion, each checked (one-line errors, before any work).

    ``by`` None: ``both`` when ``di.tif`` is beside the map, else the uncertainty alone (``margin``, then
    ``entropy``, then ``1 - confidence``). ``margin``/``entropy`` fall back to the other, then to
    ``confidence.tif``, when their own raster is absent. ``exclude_near`` None: the run's
    ``training_table.csv`` beside the map (or in the run folder of a collection's ``tiles/<stem>/map.tif``),
    when there is one (``exclude_default=False``: none).
    """
    path = Path(map_path)
    if by is not None and by not in SCORES:
        raise ConfigError(f"--by {by!r} is not a ranking; use one of {', '.join(SCORES)}")
    if block_size is not None and not (block_size > 0 and math.isfinite(block_size)):
        raise ConfigError(f"--block-size {block_size!r} is not a positive number; give a side in map CRS units")
    if not path.is_file():
        raise InputFileError(f"map {str(path)!r} does not exist; give the map.tif a run wrote")
    transform, width, height, crs, dtype, count = _grid(path, "class map")
    if count != 1 or np.dtype(dtype).kind not in "iu":
        raise InputDataError(f"{path.name!r} is not a class map ({count} band(s) of {dtype}); give the map.tif a "
                             "run wrote (one band of integer classes)")
    if crs is None:
        raise InputDataError(f"map {path.name!r} has no CRS; give the map.tif a run wrote")
    here = path.parent
    found = {name: here / f"{name}.tif" for name in ("margin", "entropy", "confidence", "di")}
    found = {k: v for k, v in found.items() if v.is_file()}
    for name, layer in found.items():
        t, w, h, _, _, _ = _grid(layer, f"{name} raster")
        if (t, w, h) != (transform, width, height):
            raise InputDataError(f"{layer.name!r} ({w} x {h}) is not on the grid of {path.name!r} ({width} x "
                                 f"{height}); give the map and the rasters of one run")
    chosen = by if by is not None else ("both" if "di" in found else "margin")
    uncertainty = None
    if chosen != "di":
        order = {"entropy": ("entropy", "margin", "confidence")}.get(chosen, ("margin", "entropy", "confidence"))
        layer_name = next((n for n in order if n in found), None)
        if layer_name is None:
            raise InputFileError(f"no margin.tif, entropy.tif or confidence.tif beside {str(path)!r}; rank by DI "
                                 "(--by di) or predict with prediction.confidence (or margin/entropy): true")
        uncertainty = (layer_name, found[layer_name])
    di, threshold = None, None
    if chosen in ("di", "both"):
        if "di" not in found:
            raise InputFileError(f"--by {chosen} needs di.tif beside {str(path)!r}, which is missing; run with "
                                 "aoa.enabled: true, or rank by --by margin")
        di = found["di"]
        with open_raster(di, "di raster") as src:
            tag = src.tags().get("LCMODEL_AOA_THRESHOLD")
        threshold = float(tag) if tag is not None else None
        if threshold is None or not (threshold > 0 and math.isfinite(threshold)):
            raise InputDataError(f"{di.name!r} has no usable AOA threshold (tag LCMODEL_AOA_THRESHOLD {tag!r}); "
                                 "give the di.tif a run wrote")
    root = here.parent.parent if here.parent.name == "tiles" else here  # a collection's tiles/<stem>/map.tif
    exclude = Path(exclude_near) if exclude_near is not None else None
    if exclude is None and exclude_default and (root / "training_table.csv").is_file():
        exclude = root / "training_table.csv"
    if exclude is not None and not exclude.is_file():
        raise InputFileError(f"--exclude-near {str(exclude)!r} does not exist; give a points file (CSV or .gpkg)")
    side, source = _block_size(root, block_size, abs(transform.a))
    return SuggestInputs(path, chosen, uncertainty, di, threshold, exclude, side, source, crs, width, height)


def _block_size(folder: Path, given: float | None, pixel: float) -> tuple[float, str]:
    """The block side: given, else the run's sampling block size (``spatial_blocks.json``), else 32 pixels."""
    if given is not None:
        return float(given), "--block-size"
    blocks = folder / "spatial_blocks.json"
    if blocks.is_file():
        try:
            size = json.loads(blocks.read_text()).get("block_size")
        except (json.JSONDecodeError, AttributeError):
            size = None
        if isinstance(size, int | float) and size > 0:
            return float(size), "the run's spatial blocks (spatial_blocks.json)"
    return DEFAULT_BLOCK_PIXELS * pixel, f"{DEFAULT_BLOCK_PIXELS} map pixels"


def read_exclusions(path: Path, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """x, y in the map's CRS of a points file: a CSV with ``x``/``y`` (in the map's CRS, or the CRS of its
    ``.crs.json``) or ``lon``/``lat`` (degrees), or a vector file (GeoPackage, ...) with point geometries."""
    from pyproj import Transformer

    from lcmodel.reference.points import as_pyproj_crs
    from lcmodel.reference.vector import is_vector_file

    if is_vector_file(path):
        import pyogrio
        import shapely

        try:
            meta, _, geometry, _ = pyogrio.raw.read(path, read_geometry=True, columns=[])
        except Exception as exc:  # pyogrio's errors are many types; one line either way
            raise InputFileError(f"points file {str(path)!r} cannot be read ({str(exc).splitlines()[0]}); give "
                                 "a CSV or a GeoPackage of points") from None
        geoms = shapely.from_wkb(geometry)
        xs, ys = shapely.get_x(geoms), shapely.get_y(geoms)
        src_crs = meta.get("crs")
    else:
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputFileError(f"points file {str(path)!r} is not a readable CSV ({exc})") from None
        sidecar = path.with_suffix(".crs.json")
        if {"x", "y"} <= set(table.columns):
            xs, ys = table["x"].to_numpy(float), table["y"].to_numpy(float)
            src_crs = json.loads(sidecar.read_text()).get("crs_wkt") if sidecar.is_file() else None
        elif {"lon", "lat"} <= set(table.columns):
            xs, ys, src_crs = table["lon"].to_numpy(float), table["lat"].to_numpy(float), "EPSG:4326"
        else:
            raise InputDataError(f"points file {str(path)!r} has neither x/y nor lon/lat columns (has "
                                 f"{list(table.columns)[:8]}); give the run's training_table.csv or points")
    if src_crs is not None and as_pyproj_crs(src_crs) != as_pyproj_crs(crs):
        xs, ys = Transformer.from_crs(as_pyproj_crs(src_crs), as_pyproj_crs(crs), always_xy=True).transform(xs, ys)
    keep = np.isfinite(xs) & np.isfinite(ys)
    return np.asarray(xs, dtype=np.float64)[keep], np.asarray(ys, dtype=np.float64)[keep]
