"""Writing output layers: tiled GeoTIFFs window by window -> overviews -> colour table -> COG copies.

GDAL's COG driver cannot write window by window: each layer (:class:`~lcmodel.predict.layers.OutputLayer`)
goes to a tiled DEFLATE GeoTIFF in the work folder, gets its overviews (mode for classes, average for
percentages), then its colour table (after the overviews: GDAL warns, needlessly for mode, when it builds
overviews of a palette band, and the indices it picks are the same either way), and is copied with the COG
driver to a temporary name beside its destination; all the copies are renamed into place together, only
when every one is complete.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.windows import Window

from lcmodel.classes import ClassTable
from lcmodel.geo import grid_orientation
from lcmodel.io import atomic_path
from lcmodel.predict.layers import RGBA, UNCLASSIFIED_RGBA, OutputLayer, uncertainty_layers, unclassified_tags

__all__ = [
    "COG_BLOCKSIZE",
    "output_profile",
    "LayerWriter",
    "write_cogs",
    "build_overviews",
    "write_colour_table",
    "copy_cog",
    "ExtraOutputs",
    "mark_unclassified",
]

logger = logging.getLogger(__name__)

#: Tile size of the output COGs.
COG_BLOCKSIZE = 512


def output_profile(src: DatasetReader, first: Window) -> dict[str, Any]:
    """A fresh single-band tiled GeoTIFF profile on the embedding's grid, stored NORTH-UP.

    Never a copy of the embedding's profile (its predictor, nodata or dtype may not fit the map). The
    transform is the grid's north-up transform (:func:`lcmodel.geo.north_up_transform`): the map of a
    south-up embedding has the same pixels, its rows mirrored (each block is written flipped into the
    mirrored window). The tile size is one that the windows align with, so each output tile is written once
    (for a mirrored grid whose height is not a multiple of the window, GDAL completes the edge tiles).

    Raises
    ------
    InputDataError
        The embedding's grid is rotated or sheared.
    """
    tile = COG_BLOCKSIZE
    h, w = int(first.height), int(first.width)
    for t in (512, 256, 128, 64, 32, 16):
        if (h % t == 0 or h == src.height) and (w % t == 0 or w == src.width):
            tile = t
            break
    return {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
        "crs": src.crs,
        "transform": grid_orientation(
            src.transform, src.width, src.height, name=f"embedding raster {str(src.name)!r}"
        ).north_up,
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "compress": "deflate",
        "interleave": "band",
        "bigtiff": "IF_SAFER",
    }


class LayerWriter:
    """The temporary tiled GeoTIFFs of some layers, written window by window.

    Use as a context manager around the block loop (:meth:`write`), then :meth:`build_overviews` and copy
    :meth:`files` (temporary, final) to COGs (:func:`write_cogs` does it all).

    Parameters
    ----------
    layers : the layers to write.
    work_dir : folder of the temporary files (``<layer name>.tif``).
    profile : the tiled GeoTIFF profile of the grid (:func:`output_profile`).
    """

    def __init__(self, layers: Iterable[OutputLayer], work_dir: Path, profile: dict[str, Any]) -> None:
        self.layers = list(layers)
        self.work_dir = work_dir
        self.profile = profile
        self.n_unclassified = 0
        self._dst: list[DatasetWriter] = []

    def temp_path(self, layer: OutputLayer) -> Path:
        return self.work_dir / f"{layer.name}.tif"

    def __enter__(self) -> LayerWriter:
        try:
            for layer in self.layers:
                path = self.temp_path(layer)
                path.unlink(missing_ok=True)  # a half-assembled file from a crash: assembly starts over
                dst = rasterio.open(
                    path, "w", **self.profile, count=layer.count, dtype=layer.dtype, nodata=layer.nodata
                )
                self._dst.append(dst)
                for band, description in enumerate(layer.descriptions, start=1):
                    dst.set_band_description(band, description)
                dst.update_tags(**layer.tags)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    def _close(self) -> None:
        for dst in reversed(self._dst):
            dst.close()
        self._dst.clear()

    def write(self, window: Window, arrays: dict[str, np.ndarray]) -> None:
        """Write one window of every layer from a block's arrays (by layer key); count its unclassified pixels."""
        if "n_unclassified" in arrays:
            self.n_unclassified += int(arrays["n_unclassified"])
        for layer, dst in zip(self.layers, self._dst, strict=True):
            data = arrays[layer.key]
            if data.ndim == 2:
                dst.write(data, 1, window=window)
            else:
                dst.write(data, window=window)

    def build_overviews(self, factors: list[int]) -> None:
        """Overviews of every layer with its resampling, then its colour table (once the files are closed)."""
        for layer in self.layers:
            path = self.temp_path(layer)
            build_overviews(path, factors, layer.resampling)
            if layer.colours is not None:
                write_colour_table(path, layer.colours, layer.dtype)

    def files(self) -> Iterator[tuple[Path, Path]]:
        """(temporary file, final COG) of every layer."""
        for layer in self.layers:
            yield self.temp_path(layer), layer.path


def write_cogs(
    layers: Iterable[OutputLayer],
    profile: dict[str, Any],
    work_dir: Path,
    blocks: Iterable[tuple[Window, dict[str, np.ndarray]]],
    factors: list[int],
) -> int:
    """Write the blocks (window, arrays by layer key) into every layer, build overviews and colour tables,
    copy each to its COG and rename them all into place together.

    Returns
    -------
    int
        The pixels marked "unclassified" (the blocks' ``n_unclassified``, summed).
    """
    writer = LayerWriter(layers, work_dir, profile)
    with writer:
        for window, arrays in blocks:
            writer.write(window, arrays)
    writer.build_overviews(factors)
    with contextlib.ExitStack() as stack:  # all outputs appear together, only when complete
        for tmp, final in writer.files():
            copy_cog(tmp, stack.enter_context(atomic_path(final)))
    return writer.n_unclassified


def build_overviews(path: Path, factors: list[int], resampling: Resampling) -> None:
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews(factors, resampling)
        dst.update_tags(ns="rio_overview", resampling=resampling.name)


def write_colour_table(path: Path, colours: dict[int, RGBA], dtype: str) -> None:
    """A colour table on band 1, for 8- and 16-bit rasters (GeoTIFF colour tables are 8/16 bit)."""
    if dtype not in ("uint8", "uint16"):
        logger.info("no colour table for a %s map (GeoTIFF colour tables are 8/16 bit)", dtype)
        return
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, colours)


def copy_cog(src_path: Path, dst_path: Path) -> None:
    """Copy a tiled GeoTIFF with overviews to a COG (DEFLATE, 512 tiles, the overviews as built)."""
    dst_path.unlink(missing_ok=True)
    rasterio.shutil.copy(
        str(src_path),
        str(dst_path),
        driver="COG",
        COMPRESS="DEFLATE",
        BLOCKSIZE=str(COG_BLOCKSIZE),
        OVERVIEWS="FORCE_USE_EXISTING",
        BIGTIFF="IF_SAFER",
    )


# --- the former lcmodel.uncertainty writers, still importable from there ---------------------------


class ExtraOutputs(LayerWriter):
    """The uncertainty rasters of one prediction (``probabilities``, ``margin``, ``entropy`` -> path): a
    :class:`LayerWriter` of :func:`~lcmodel.predict.layers.uncertainty_layers`."""

    def __init__(
        self,
        paths: dict[str, Path],
        work_dir: Path,
        profile: dict[str, Any],
        classes: np.ndarray,
        table: ClassTable,
    ) -> None:
        super().__init__(uncertainty_layers(paths, np.asarray(classes), table), work_dir, profile)
        self.paths = paths


def mark_unclassified(map_path: Path, value: int) -> None:
    """Tag the reserved value in an existing map (``CLASS_<v>``, LCMODEL_UNCLASSIFIED) and give it a colour.

    (A prediction puts both on the map layer itself: :func:`~lcmodel.predict.layers.map_layer`.)
    """
    with rasterio.open(map_path, "r+") as dst:
        dst.update_tags(**unclassified_tags(value))
        if dst.dtypes[0] in ("uint8", "uint16"):
            try:
                cmap = dst.colormap(1)
            except ValueError:  # no colour table
                return
            cmap[value] = UNCLASSIFIED_RGBA
            dst.write_colormap(1, cmap)
