"""A small PNG quicklook of a predicted class map, in the map's own colours (for reports and tracking)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from lcmodel.classes import ClassTable
from lcmodel.geo import grid_orientation, is_axis_aligned
from lcmodel.io import atomic_path

__all__ = ["write_quicklook"]


def write_quicklook(map_path: Path | str, png_path: Path | str, class_table: ClassTable,
                    max_size: int = 512) -> Path:
    """Write a PNG of the class map, at most ``max_size`` pixels on its longer side, nodata transparent.

    Reads a decimated view (the COG's overviews when present), so it stays cheap on huge maps.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    with rasterio.open(map_path) as src:
        scale = max(src.width, src.height) / max_size
        shape = (max(1, round(src.height / max(scale, 1))), max(1, round(src.width / max(scale, 1))))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        nodata = src.nodata
        if is_axis_aligned(src.transform):  # a south-up map (not lcmodel's own) is shown north-up
            data = grid_orientation(src.transform, src.width, src.height).array(data)
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
