"""A small PNG quicklook of a predicted class map, in the map's own colours (for reports and tracking)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from lcmodel.classes import ClassTable
from lcmodel.geo import grid_orientation, is_axis_aligned
from lcmodel.io import atomic_path

__all__ = ["write_quicklook", "write_collection_quicklook", "render_quicklook"]


def write_quicklook(map_path: Path | str, png_path: Path | str, class_table: ClassTable,
                    max_size: int = 512) -> Path:
    """Write a PNG of the class map, at most ``max_size`` pixels on its longer side, nodata transparent.

    Reads a decimated view (the COG's overviews when present), so it stays cheap on huge maps.
    """
    with rasterio.open(map_path) as src:
        scale = max(src.width, src.height) / max_size
        shape = (max(1, round(src.height / max(scale, 1))), max(1, round(src.width / max(scale, 1))))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        nodata = src.nodata
        if is_axis_aligned(src.transform):  # a south-up map (not lcmodel's own) is shown north-up
            data = grid_orientation(src.transform, src.width, src.height).array(data)
    return render_quicklook(data, nodata, png_path, class_table)


def write_collection_quicklook(map_paths: Sequence[Path | str], crs: Any, png_path: Path | str,
                               class_table: ClassTable, max_size: int = 512) -> Path:
    """A PNG of a tile collection's maps in one CRS (the collection's), at most ``max_size`` px on a side.

    Each map is read decimated (its overviews) and warped with nearest resampling onto one coarse grid; where
    tiles overlap the first map with a valid pixel shows, as in the mosaics (:mod:`lcmodel.tilemaps.mosaic`).
    """
    from rasterio.warp import reproject

    from lcmodel.sources import describe_tile
    from lcmodel.tilemaps import mosaic_grid

    maps = [describe_tile(str(p), "tile map", lambda _: {}) for p in map_paths]
    grid = mosaic_grid(maps, crs)
    scale = max(grid.width, grid.height) / max_size
    if scale > 1:
        grid = mosaic_grid(maps, crs, resolution=abs(grid.transform.a) * scale)
    nodata = maps[0].nodata
    fill = nodata if nodata is not None else 0
    data = None
    for tile in maps:
        with rasterio.open(tile.path) as src:
            step = max(1.0, scale)
            shape = (max(1, round(src.height / step)), max(1, round(src.width / step)))
            small = src.read(1, out_shape=shape, resampling=Resampling.nearest)
            if data is None:
                data = np.full((grid.height, grid.width), fill, dtype=small.dtype)
            part = np.full_like(data, fill)
            decimated = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
            reproject(small, part, src_transform=decimated, src_crs=src.crs, dst_transform=grid.transform,
                      dst_crs=grid.crs, src_nodata=fill, dst_nodata=fill, resampling=Resampling.nearest)
        take = (data == fill) & (part != fill)
        data[take] = part[take]
    assert data is not None  # a collection has tiles
    return render_quicklook(data, nodata, png_path, class_table)


def render_quicklook(data: np.ndarray, nodata: float | None, png_path: Path | str, class_table: ClassTable) -> Path:
    """Write a class array as a PNG in the class table's colours with a legend of the classes present."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rgba = np.zeros((*data.shape, 4), dtype=np.uint8)
    cmap = class_table.colormap()
    present = []
    for value, color in cmap.items():
        hit = data == value
        if hit.any():
            rgba[hit] = color
            present.append(value)
    if nodata is not None:
        rgba[data == nodata] = (0, 0, 0, 0)
    fig = Figure(figsize=(6, 6 * data.shape[0] / data.shape[1] + 0.8), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    handles = [
        Patch(color=(cmap[v][0] / 255, cmap[v][1] / 255, cmap[v][2] / 255), label=f"{v} {class_table.name(v)}")
        for v in present
    ]
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(png_path)
