"""Mosaics of a tile collection's per-tile maps: a VRT per CRS, and one COG reprojected to a target CRS.

VRTs (:func:`write_crs_vrts`): the maps of the tiles in one CRS are aligned north-up grids, so one GDAL VRT
per CRS (``map_32631.vrt``, :func:`lcmodel.sources.vrt.write_mosaic_vrt`) reads them as one raster, the
first tile in the collection's order on top; nodata pixels are transparent, so where tiles overlap the first
tile with a valid pixel shows.

COG (:func:`write_mosaic_cog`): every map is read through a ``WarpedVRT`` onto one grid in ``crs`` with
nearest resampling (class values are never mixed), 512 x 512 pixels at a time, and a pixel takes the value of
the FIRST tile, in the collection's order, that has a valid pixel there: the same rule as the VRTs and as
:mod:`lcmodel.tilemaps.counts`. The confidence mosaic takes each pixel's confidence from the tile whose class
it shows (nearest too: an average would mix the confidence of different classes). Blocks go through the
prediction's own COG writer (:func:`lcmodel.predict.cog.write_cogs`: tiled GeoTIFF, mode / average
overviews, colour table, COG copy renamed into place), so memory stays at a few blocks.

The grid (:func:`mosaic_grid`): when some tile is in ``crs``, its pixel size and pixel grid (so those
tiles' pixels are copied as they are); otherwise the pixel size GDAL suggests for the first tile
(``calculate_default_transform``), on a grid anchored at multiples of it. The extent is the union of the
tiles' footprints in ``crs``.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window

from lcmodel.io import ensure_output_dir
from lcmodel.sources import Tile
from lcmodel.sources.vrt import identities, write_mosaic_vrt
from lcmodel.tilemaps.counts import window_box
from lcmodel.tilemaps.layout import crs_groups

__all__ = ["MosaicGrid", "mosaic_grid", "write_crs_vrts", "write_mosaic_cog", "MOSAIC_BLOCK"]

#: window (and COG tile) side of the COG mosaic
MOSAIC_BLOCK = 512


def write_crs_vrts(maps: Sequence[Tile], path_of: Any, *, key: str = "prediction.mosaic") -> dict[str, Path]:
    """One VRT per CRS of the maps (in order of first appearance); ``path_of(crs_tag)`` names each file.

    Returns ``{crs tag: VRT path}``. The VRTs record the maps' content digests in their metadata, so their
    own digests change when a map does.
    """
    out: dict[str, Path] = {}
    for tag, indices in crs_groups(maps).items():
        group = [maps[i] for i in indices]
        out[tag] = write_mosaic_vrt(group, path_of(tag), key=key, metadata=identities(group))
    return out


class MosaicGrid:
    """A north-up pixel grid in a CRS: ``transform`` (top-left origin), ``width`` x ``height``."""

    def __init__(self, crs: CRS, transform: Affine, width: int, height: int) -> None:
        self.crs, self.transform, self.width, self.height = crs, transform, width, height

    def windows(self, size: int = MOSAIC_BLOCK) -> Iterator[Window]:
        for row in range(0, self.height, size):
            for col in range(0, self.width, size):
                yield Window(col, row, min(size, self.width - col), min(size, self.height - row))

    def __repr__(self) -> str:
        return f"MosaicGrid({self.crs.to_string()}, {self.width} x {self.height}, {tuple(self.transform)[:6]})"


def mosaic_grid(maps: Sequence[Tile], crs: Any, *, resolution: float | None = None) -> MosaicGrid:
    """The grid of a mosaic of ``maps`` in ``crs`` (see the module docstring); ``resolution`` overrides the
    pixel size (then the grid is anchored at multiples of it)."""
    crs = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    left, bottom, right, top = shapely.union_all([t.footprint(crs) for t in maps]).bounds
    same = next((t for t in maps if CRS.from_wkt(t.crs_wkt) == crs), None)
    if resolution is not None:
        xres = yres = float(resolution)
        x0 = y0 = 0.0
    elif same is not None:
        xres, yres = abs(same.transform[0]), abs(same.transform[4])
        x0, y0 = same.transform[2], same.transform[5]
    else:
        first = maps[0]
        l0, b0, r0, t0 = first.bounds()
        default, _, _ = calculate_default_transform(first.crs, crs, first.width, first.height, l0, b0, r0, t0)
        xres, yres = abs(default.a), abs(default.e)
        x0 = y0 = 0.0
    west = x0 + math.floor((left - x0) / xres + 1e-9) * xres
    north = y0 + math.ceil((top - y0) / yres - 1e-9) * yres
    width = max(1, math.ceil((right - west) / xres - 1e-9))
    height = max(1, math.ceil((north - bottom) / yres - 1e-9))
    return MosaicGrid(crs, Affine(xres, 0.0, west, 0.0, -yres, north), width, height)


def write_mosaic_cog(maps: Sequence[Tile], grid: MosaicGrid, map_path: Path, *,
                     confidences: Sequence[Tile] | None = None, confidence_path: Path | None = None) -> Path:
    """Write the COG mosaic of the class maps (and of their confidence maps) on ``grid``, atomically.

    Parameters
    ----------
    maps : the per-tile class maps, in the collection's order (the first valid one wins a pixel).
    grid : the mosaic's grid (:func:`mosaic_grid`).
    map_path : the class map COG to write.
    confidences, confidence_path : the per-tile confidence maps (same order) and the COG to write, or None.
    """
    from lcmodel.predict import overview_factors
    from lcmodel.predict.cog import write_cogs
    from lcmodel.predict.layers import confidence_layer

    with_conf = confidences is not None and confidence_path is not None
    with rasterio.open(maps[0].path) as first:
        layers = [_map_layer_like(first, map_path)]
        nodata = first.nodata
    if with_conf:
        assert confidence_path is not None
        layers.append(confidence_layer(confidence_path))
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "crs": grid.crs,
               "transform": grid.transform, "tiled": True, "blockxsize": MOSAIC_BLOCK,
               "blockysize": MOSAIC_BLOCK, "compress": "deflate", "interleave": "band", "bigtiff": "IF_SAFER"}
    footprints = [t.footprint(grid.crs) for t in maps]
    ensure_output_dir(map_path.parent)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".mosaic.", dir=map_path.parent)))
        srcs = [_warped(stack, t.path, grid) for t in maps]
        confs = [_warped(stack, t.path, grid) for t in confidences] if with_conf and confidences else []
        blocks = _blocks(grid, srcs, confs, footprints, nodata)
        write_cogs(layers, profile, work, blocks, overview_factors(grid.width, grid.height))
    return map_path


def _warped(stack: contextlib.ExitStack, path: str, grid: MosaicGrid) -> WarpedVRT:
    src = stack.enter_context(rasterio.open(path))
    return stack.enter_context(WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                         height=grid.height, resampling=Resampling.nearest, nodata=src.nodata))


def _blocks(grid: MosaicGrid, srcs: list[WarpedVRT], confs: list[WarpedVRT], footprints: list[Any],
            nodata: float | None) -> Iterator[tuple[Window, dict[str, np.ndarray]]]:
    """Each window of the grid: the first valid tile's class (and confidence) per pixel."""
    from lcmodel.predict.layers import CONFIDENCE_NODATA

    fill = nodata if nodata is not None else 0
    for window in grid.windows():
        h, w = int(window.height), int(window.width)
        labels = np.full((h, w), fill, dtype=srcs[0].dtypes[0])
        conf = np.full((h, w), CONFIDENCE_NODATA, dtype=np.uint8)
        box = window_box(window, grid.transform)
        for k, src in enumerate(srcs):
            if not box.intersects(footprints[k]):
                continue
            data = src.read(1, window=window)
            take = (labels == fill) & (data != fill)
            if not take.any():
                continue
            labels[take] = data[take]
            if confs:
                conf[take] = confs[k].read(1, window=window)[take]
        arrays = {"labels": labels}
        if confs:
            arrays["confidence"] = conf
        yield window, arrays


def _map_layer_like(src: rasterio.io.DatasetReader, path: Path) -> Any:
    """The mosaic's class layer: the tile maps' data type, nodata, band description, tags and colour table."""
    from lcmodel.predict.layers import OutputLayer

    try:
        colours: dict[int, tuple[int, int, int, int]] | None = {
            int(k): (int(v[0]), int(v[1]), int(v[2]), int(v[3])) for k, v in src.colormap(1).items()}
    except ValueError:  # no colour table (maps of more than 16 bits)
        colours = None
    return OutputLayer(name="map", key="labels", path=path, dtype=src.dtypes[0], nodata=int(src.nodata),
                       descriptions=(src.descriptions[0] or "land cover class",), tags=dict(src.tags()),
                       resampling=Resampling.mode, colours=colours)
