"""Embedding fixtures in the layouts users have: public AlphaEarth tiles and Earth Engine split exports.

Plain functions (numpy, rasterio, affine only), importable from tests and benchmarks
(``from tests.aef_fixtures import write_aef_tile``). Same arguments, same bytes.

- :func:`write_aef_tile`: the PUBLIC AlphaEarth COG layout (Google's bucket, the Source Cooperative mirror):
  int8, nodata -128 on all bands, band descriptions A00..A63, bands in separate planes (INTERLEAVE=BAND),
  ZSTD, tiled, overviews down to 1 x 1, and stored SOUTH-UP (positive y pixel size, row 0 at the south edge),
  which GDAL georeferences with a ModelTransformation tag (34264) instead of a pixel scale and tie point.
- :func:`write_gee_pieces`: an Earth Engine export split into pieces named
  ``<prefix>-<row offset, 10 digits>-<col offset, 10 digits>.tif`` (float32, north-up, masked pixels as
  all-zero vectors, no declared nodata).
- :func:`north_up_copy`: the same pixels stored north-up (what the mirror's ``.vrt`` shows), to compare.
- :func:`aef_values`: the default content, a function of the pixel centres' x/y only, so that overlapping
  tiles, pieces and a merged copy hold the same vector at the same place.

Arrays given to these functions are in NORTH-UP order (row 0 = north), whatever the stored orientation.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling

__all__ = [
    "AEF_NODATA",
    "AEF_BANDS",
    "MODEL_TRANSFORMATION_TAG",
    "aef_band_names",
    "quantize_aef",
    "dequantize_aef",
    "aef_values",
    "write_aef_tile",
    "north_up_copy",
    "gee_piece_name",
    "write_gee_pieces",
    "tiff_tags",
]

#: nodata of the public int8 tiles (all bands at once)
AEF_NODATA = -128
#: bands of the AlphaEarth embedding
AEF_BANDS = 64
#: GeoTIFF ModelTransformationTag: how GDAL stores a transform that is not north-up
MODEL_TRANSFORMATION_TAG = 34264

#: values(x, y) -> (bands, rows, cols) float features or int8 codes; x/y: pixel centres of a strip (north-up order)
ValueFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def aef_band_names(bands: int = AEF_BANDS) -> list[str]:
    """``A00, A01, ...``: the band descriptions of the AlphaEarth embedding."""
    return [f"A{b:02d}" for b in range(bands)]


def quantize_aef(features: np.ndarray) -> np.ndarray:
    """Float features in [-1, 1] -> int8 codes in -127..127, the inverse of ``(v / 127.5)**2 * sign(v)``
    (lcmodel's de-quantization, :class:`lcmodel.embedding.NodataRule`) up to rounding; never -128."""
    f = np.clip(np.asarray(features, dtype=np.float32), -1.0, 1.0)
    q = np.rint(np.copysign(np.sqrt(np.abs(f)), f) * np.float32(127.5))
    return np.clip(q, -127, 127).astype(np.int8)


def dequantize_aef(codes: np.ndarray) -> np.ndarray:
    """int8 codes -> float32 ``(v / 127.5)**2 * sign(v)``, NaN where a code is -128 (nodata)."""
    v = np.asarray(codes).astype(np.float64)
    out = (v / 127.5) ** 2 * np.sign(v)
    out[np.asarray(codes) == AEF_NODATA] = np.nan
    return out.astype(np.float32)


def aef_values(x: np.ndarray, y: np.ndarray, *, bands: int = AEF_BANDS, seed: int = 0) -> np.ndarray:
    """Unit vectors (bands, *shape) that vary smoothly with x/y (metres), ``shape`` that of x and y broadcast
    (pass a row of x and a column of y for a grid: the waves are separable, so that is fast). Each band is a
    plane wave of its own direction, wavelength and phase drawn from ``seed``; the vector is normalised.
    A function of x/y only (float32)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * math.pi, bands)
    wavelength = rng.uniform(200.0, 2000.0, bands)  # metres: patches of a few to a few hundred pixels
    phase = rng.uniform(0.0, 2.0 * math.pi, bands)
    xx, yy = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    shape = (bands,) + (1,) * max(xx.ndim, yy.ndim)
    kx = (2.0 * math.pi / wavelength * np.cos(angle)).reshape(shape)
    ky = (2.0 * math.pi / wavelength * np.sin(angle)).reshape(shape)
    a = kx * xx[None] + phase.reshape(shape)
    b = ky * yy[None]
    # sin(a + b) = sin a cos b + cos a sin b, each factor on its own (small) axis
    v = (np.sin(a).astype(np.float32) * np.cos(b).astype(np.float32)
         + np.cos(a).astype(np.float32) * np.sin(b).astype(np.float32) + np.float32(0.05))
    v /= np.sqrt(np.einsum("b...,b...->...", v, v))[None]
    return v


def _centres(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre x (1, width) and y (height, 1) of a north-up grid."""
    cols = np.arange(width, dtype=np.float64)[None, :]
    rows = np.arange(height, dtype=np.float64)[:, None]
    return transform.c + (cols + 0.5) * transform.a, transform.f + (rows + 0.5) * transform.e


def _overview_factors(width: int, height: int) -> list[int]:
    """2, 4, 8, ... down to a 1 x 1 overview (as the public tiles have)."""
    factors = [2]
    while math.ceil(max(width, height) / factors[-1]) > 1:
        factors.append(factors[-1] * 2)
    return factors


def write_aef_tile(
    path: Path | str,
    *,
    crs: Any = "EPSG:32720",
    left: float | None = None,
    top: float | None = None,
    width: int | None = None,
    height: int | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    res: float = 10.0,
    bands: int = AEF_BANDS,
    south_up: bool = True,
    block: int = 256,
    seed: int = 0,
    nodata_fraction: float = 0.0,
    nodata_mask: np.ndarray | None = None,
    values: np.ndarray | ValueFn | None = None,
    overviews: bool = True,
) -> Path:
    """Write an embedding tile in the public AlphaEarth layout.

    Parameters
    ----------
    path : the GeoTIFF to write (its folder must exist).
    crs : its CRS (a UTM zone for real tiles).
    left, top, width, height : the north-west corner (CRS units) and the size in pixels; or
    bounds : ``(left, bottom, right, top)``, whole multiples of ``res`` (width and height follow).
    res : pixel size (10 m).
    bands : band count (64; fewer keeps tests small).
    south_up : store row 0 at the SOUTH edge (positive y pixel size), as the public tiles; False stores the
        same pixels north-up.
    block : internal tile size (the public tiles use 1024; a multiple of 16).
    seed : seeds the default values (:func:`aef_values`) and the nodata pixels.
    nodata_fraction : share of pixels, drawn with ``seed``, set to -128 on every band.
    nodata_mask : (height, width) bool, north-up: more pixels set to -128 on every band.
    values : the content, north-up: an int8 array of codes (bands, height, width), a float array of features
        in [-1, 1] (quantized with :func:`quantize_aef`), or a function ``values(x, y)`` returning either for
        a strip of rows (called strip by strip, north to south, with the strip's pixel centres as two
        (rows, width) arrays); None: :func:`aef_values` with ``seed``. The file is written strip by strip,
        so memory stays bounded for benchmark-sized tiles unless an array is given.
    overviews : build internal overviews (average, nodata excluded) down to 1 x 1.

    Returns
    -------
    Path
    """
    if bounds is not None:
        b_left, b_bottom, b_right, b_top = (float(v) for v in bounds)
        left, top = b_left, b_top
        width, height = round((b_right - b_left) / res), round((b_top - b_bottom) / res)
    if left is None or top is None or width is None or height is None:
        raise ValueError("write_aef_tile needs left, top, width and height, or bounds")
    north_up = Affine(res, 0.0, float(left), 0.0, -res, float(top))
    if south_up:
        transform = Affine(res, 0.0, float(left), 0.0, res, float(top) - res * height)
    else:
        transform = north_up
    array = None if values is None or callable(values) else np.asarray(values)
    if array is not None and array.shape != (bands, height, width):
        raise ValueError(f"values have shape {array.shape}, expected {(bands, height, width)}")
    mask = None if nodata_mask is None else np.asarray(nodata_mask, dtype=bool)
    rng = np.random.default_rng([seed, 1])
    profile: dict[str, Any] = dict(
        driver="GTiff", width=width, height=height, count=bands, dtype="int8", nodata=AEF_NODATA,
        crs=CRS.from_user_input(crs), transform=transform, tiled=True, blockxsize=block, blockysize=block,
        compress="zstd", interleave="band", bigtiff="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dst:
        strip = max(1, min(height, (32 << 20) // max(1, bands * width * 4)))  # ~32 MB of float32 features
        for r0 in range(0, height, strip):  # strips of north-up rows: bounded memory at benchmark sizes
            r1 = min(height, r0 + strip)
            if array is None:
                x, y = _centres(north_up @ Affine.translation(0, r0), r1 - r0, width)
                if callable(values):
                    x, y = np.broadcast_arrays(x, y)
                    data = values(x, y)
                else:
                    data = aef_values(x, y, bands=bands, seed=seed)
            else:
                data = array[:, r0:r1]
            data = np.asarray(data)
            codes = data.astype(np.int8) if data.dtype == np.int8 else quantize_aef(data)
            if codes.shape != (bands, r1 - r0, width):
                raise ValueError(f"values(x, y) gave shape {codes.shape}, expected {(bands, r1 - r0, width)}")
            codes = codes.copy()
            if nodata_fraction > 0:  # one stream of draws, row-major over the north-up grid
                codes[:, rng.random((r1 - r0, width)) < nodata_fraction] = AEF_NODATA
            if mask is not None:
                codes[:, mask[r0:r1]] = AEF_NODATA
            if south_up:
                window = rasterio.windows.Window(0, height - r1, width, r1 - r0)
                dst.write(np.ascontiguousarray(codes[:, ::-1]), window=window)
            else:
                dst.write(codes, window=rasterio.windows.Window(0, r0, width, r1 - r0))
        for i, name in enumerate(aef_band_names(bands), start=1):
            dst.set_band_description(i, name)
    if overviews:
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews(_overview_factors(width, height), Resampling.average)
    return Path(path)


def north_up_copy(src_path: Path | str, dst_path: Path | str, *, block: int | None = None) -> Path:
    """The same pixels stored north-up (and west to east), in the same layout (dtype, nodata, bands,
    compression, tiling, band descriptions), with the transform :func:`lcmodel.geo.north_up_transform` gives.
    Reads the whole file: for test-sized rasters."""
    from lcmodel.geo import grid_orientation

    with rasterio.open(src_path) as src:
        o = grid_orientation(src.transform, src.width, src.height)
        data = o.array(src.read())
        profile = src.profile.copy()
        descriptions = src.descriptions
        has_overviews = bool(src.overviews(1))
    profile.update(transform=o.north_up)
    if block is not None:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions, start=1):
            if d:
                dst.set_band_description(i, d)
    if has_overviews:
        with rasterio.open(dst_path, "r+") as dst:
            dst.build_overviews(_overview_factors(dst.width, dst.height), Resampling.average)
    return Path(dst_path)


def gee_piece_name(prefix: str, row_off: int, col_off: int) -> str:
    """``<prefix>-<row offset, 10 digits>-<col offset, 10 digits>.tif``, as Earth Engine names split exports."""
    return f"{prefix}-{row_off:010d}-{col_off:010d}.tif"


def write_gee_pieces(
    folder: Path | str,
    prefix: str,
    array: np.ndarray,
    transform: Affine,
    crs: Any = "EPSG:32720",
    *,
    piece: int | tuple[int, int] = 256,
    block: int | None = 128,
    band_names: list[str] | None = None,
    nodata_mask: np.ndarray | None = None,
) -> list[Path]:
    """Split a north-up float embedding into Earth Engine export pieces.

    Parameters
    ----------
    folder : where the pieces go (created).
    prefix : the export's file name prefix.
    array : (bands, rows, cols) features, north-up; written as float32.
    transform : the north-up transform of the whole array.
    crs : its CRS.
    piece : piece size in pixels, ``rows`` or ``(rows, cols)`` (Earth Engine uses multiples of 256).
    block : internal tile size of each piece; None writes strips.
    band_names : band descriptions (default A00..).
    nodata_mask : (rows, cols) bool: pixels written as all-zero vectors (Earth Engine's masked pixels).

    Returns
    -------
    list of Path
        The pieces in row-major order of their offsets.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array, dtype=np.float32).copy()
    if nodata_mask is not None:
        data[:, np.asarray(nodata_mask, dtype=bool)] = 0.0
    count, height, width = data.shape
    ph, pw = (piece, piece) if isinstance(piece, int) else piece
    names = band_names or aef_band_names(count)
    paths = []
    for row_off in range(0, height, ph):
        for col_off in range(0, width, pw):
            part = data[:, row_off : row_off + ph, col_off : col_off + pw]
            h, w = part.shape[1:]
            profile: dict[str, Any] = dict(
                driver="GTiff", width=w, height=h, count=count, dtype="float32", crs=CRS.from_user_input(crs),
                transform=transform @ Affine.translation(col_off, row_off), compress="deflate",
            )
            if block is not None and h >= block and w >= block:
                profile.update(tiled=True, blockxsize=block, blockysize=block)
            path = out / gee_piece_name(prefix, row_off, col_off)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(np.ascontiguousarray(part))
                for i, name in enumerate(names, start=1):
                    dst.set_band_description(i, name)
            paths.append(path)
    return paths


def tiff_tags(path: Path | str) -> set[int]:
    """The tag numbers of a TIFF's first image (classic or BigTIFF), e.g. to check that a south-up file is
    georeferenced by :data:`MODEL_TRANSFORMATION_TAG` rather than ModelPixelScale (33550) + tie points (33922)."""
    with open(path, "rb") as f:
        head = f.read(16)
        order = "<" if head[:2] == b"II" else ">"
        (magic,) = struct.unpack(order + "H", head[2:4])
        if magic == 42:
            (offset,) = struct.unpack(order + "I", head[4:8])
            f.seek(offset)
            (n,) = struct.unpack(order + "H", f.read(2))
            entries = [f.read(12) for _ in range(n)]
        elif magic == 43:
            (offset,) = struct.unpack(order + "Q", head[8:16])
            f.seek(offset)
            (n,) = struct.unpack(order + "Q", f.read(8))
            entries = [f.read(20) for _ in range(n)]
        else:
            raise ValueError(f"{str(path)!r} is not a TIFF (magic {magic})")
    return {struct.unpack(order + "H", e[:2])[0] for e in entries}
