"""What the change products share: one grid for two rasters, north-up windows, and COG outputs.

Every change product is computed window by window over the NORTH-UP grid (the maps' convention,
:mod:`lcmodel.geo`): an embedding stored south-up (the public AlphaEarth COGs) is read through its
mirrored window and flipped, so its change rasters lie on its map's grid. Each output is written as the maps
are (:func:`lcmodel.predict.cog.write_cogs`: tiled DEFLATE, overviews, colour table, COG, renamed into
place only when complete), so a failure leaves no half-written file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.io import DatasetReader
from rasterio.windows import Window

from lcmodel.errors import InputDataError
from lcmodel.geo import Orientation, grid_orientation
from lcmodel.predict.cog import output_profile, write_cogs
from lcmodel.predict.layers import OutputLayer
from lcmodel.predict.plan import overview_factors

__all__ = ["Grid", "grid_of", "same_grid", "windows", "read_north_up", "write_layers"]

#: default window side (pixels) of the change computations
BLOCK = 1024


class Grid:
    """A raster's north-up grid (CRS, transform, size) and how it is stored."""

    def __init__(self, src: DatasetReader, name: str) -> None:
        self.name = name
        self.crs = src.crs
        self.width, self.height = src.width, src.height
        self.orientation: Orientation = grid_orientation(src.transform, src.width, src.height, name=name)
        self.transform = self.orientation.north_up

    def key(self) -> tuple[Any, ...]:
        return (self.crs, tuple(round(v, 9) for v in self.transform[:6]), self.width, self.height)


def grid_of(path: Path | str, name: str) -> Grid:
    with rasterio.open(path) as src:
        return Grid(src, f"{name} {Path(str(path)).name!r}")


def same_grid(a: Grid, b: Grid) -> None:
    """Refuse two rasters on different grids, in one line, before anything is written."""
    if a.key() != b.key():
        raise InputDataError(
            f"{a.name} and {b.name} are not on one grid ({a.crs}, {a.width} x {a.height} px at "
            f"({a.transform.c:.3f}, {a.transform.f:.3f}) vs {b.crs}, {b.width} x {b.height} px at "
            f"({b.transform.c:.3f}, {b.transform.f:.3f})); compare years on one grid: the same tiles of each year"
        )


def windows(width: int, height: int, block: int = BLOCK) -> Iterator[Window]:
    """North-up windows of ``block`` rows x ``block`` columns (smaller at the edges), row by row."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def read_north_up(src: DatasetReader, grid: Grid, window: Window, indexes: list[int] | None = None) -> np.ndarray:
    """The (bands, rows, cols) values of a NORTH-UP window of a raster, whatever its stored orientation."""
    data = src.read(indexes, window=grid.orientation.window(window))
    return grid.orientation.array(data)


def write_layers(layers: list[OutputLayer], template: Path | str,
                 blocks: Iterable[tuple[Window, dict[str, np.ndarray]]], block: int = BLOCK) -> None:
    """Write the layers (each a COG at its ``path``) from north-up (window, arrays by key) blocks, on the grid
    of ``template`` (its north-up transform), as the maps are written."""
    with rasterio.open(template) as src:
        first = Window(0, 0, min(block, src.width), min(block, src.height))
        profile = output_profile(src, first)
        width, height = src.width, src.height
    with tempfile.TemporaryDirectory(prefix=".lcmodel-change-", dir=layers[0].path.parent) as work:
        write_cogs(layers, profile, Path(work), blocks, overview_factors(width, height))
