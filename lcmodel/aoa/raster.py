"""The DI and the area of applicability of every pixel of an embedding raster, block by block, into COGs.

The blocks are read as prediction reads them (:class:`lcmodel.predict.plan.Grid` windows, the bundle's bands
and nodata rule: :func:`lcmodel.compatibility.check_compatible`) and written, flipped where the embedding is
south-up, into the north-up grid of the map (:func:`lcmodel.predict.cog.write_cogs`). Two COGs appear
together, only when both are complete:

- ``di.tif``: float32 DI, nodata -1 (the DI is >= 0), averaged overviews;
- ``aoa.tif``: uint8, 1 inside the area of applicability (DI <= threshold), 0 outside, 255 where the map is
  nodata; nearest overviews, a colour table (inside transparent-grey, outside red).

The class map is read window by window beside them, so the share of pixels outside the AOA is counted per
predicted class, and a pixel the map leaves nodata is nodata here too.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from lcmodel.aoa.di import TrainingDI
from lcmodel.compatibility import check_compatible
from lcmodel.errors import InputDataError
from lcmodel.geo import grid_orientation
from lcmodel.io import open_raster
from lcmodel.model_io import ModelBundle
from lcmodel.predict.cog import output_profile, write_cogs
from lcmodel.predict.layers import OutputLayer
from lcmodel.predict.plan import Grid, overview_factors
from lcmodel.rasterio_io import ThreadReaders, one_pass_cache

__all__ = ["DI_NODATA", "AOA_NODATA", "AoaCounts", "aoa_layers", "write_aoa_rasters"]

#: nodata of ``di.tif`` (the DI itself is >= 0)
DI_NODATA = -1
#: nodata of ``aoa.tif`` (1 inside, 0 outside)
AOA_NODATA = 255


@dataclass
class AoaCounts:
    """Pixels counted while writing: per predicted class value, all and outside the AOA."""

    pixels: dict[int, int] = field(default_factory=dict)
    outside: dict[int, int] = field(default_factory=dict)

    def add(self, labels: np.ndarray, outside: np.ndarray) -> None:
        values, n = np.unique(labels, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            self.pixels[v] = self.pixels.get(v, 0) + c
        values, n = np.unique(labels[outside], return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            self.outside[v] = self.outside.get(v, 0) + c

    @property
    def n_pixels(self) -> int:
        return sum(self.pixels.values())

    @property
    def n_outside(self) -> int:
        return sum(self.outside.values())


def aoa_layers(di_path: Path, aoa_path: Path, threshold: float) -> tuple[OutputLayer, OutputLayer]:
    """The ``di.tif`` and ``aoa.tif`` layers (see the module docstring)."""
    di = OutputLayer(
        name="di", key="di", path=di_path, dtype="float32", nodata=DI_NODATA, descriptions=("dissimilarity index",),
        tags={"LCMODEL_DI": "distance to the nearest training sample / mean distance between training samples, in "
              "the standardised, importance-weighted feature space (Meyer & Pebesma 2021); -1 = nodata",
              "LCMODEL_AOA_THRESHOLD": repr(threshold)},
    )
    aoa = OutputLayer(
        name="aoa", key="aoa", path=aoa_path, dtype="uint8", nodata=AOA_NODATA,
        descriptions=("area of applicability",),
        tags={"LCMODEL_AOA": f"1 = inside (DI <= {threshold!r}), 0 = outside; 255 = nodata",
              "LCMODEL_AOA_THRESHOLD": repr(threshold)},
        resampling=Resampling.nearest,
        colours={0: (215, 48, 39, 255), 1: (200, 200, 200, 0), AOA_NODATA: (0, 0, 0, 0)},
    )
    return di, aoa


def write_aoa_rasters(
    training: TrainingDI,
    bundle: ModelBundle,
    embedding_path: Path | str,
    map_path: Path | str,
    di_path: Path | str,
    aoa_path: Path | str,
    *,
    block_size: int | None = None,
    memory_mb: int = 1024,
) -> AoaCounts:
    """Write ``di.tif`` and ``aoa.tif`` for the embedding the map was predicted from.

    Parameters
    ----------
    training : the fitted training DI (:func:`lcmodel.aoa.fit_training_di`) of the bundle's model.
    bundle : the model bundle (its bands, band indexes and nodata rule are those of the map).
    embedding_path : the embedding raster.
    map_path : the class map predicted from it (north-up, same grid).
    di_path, aoa_path : the COGs to write.
    block_size, memory_mb : the windows, as for :func:`lcmodel.predict.predict_raster`. The outputs do not
        depend on them.

    Returns
    -------
    AoaCounts
        Map pixels per predicted class, and those outside the AOA.

    Raises
    ------
    CompatibilityError
        The embedding does not match the bundle.
    InputDataError
        The map is not on the embedding's grid, or the training DI is of other bands than the bundle's.
    """
    di_path, aoa_path = Path(di_path), Path(aoa_path)
    if list(training.band_names) != list(bundle.band_names):
        raise InputDataError(f"the training DI is of bands {list(training.band_names)[:3]}... but the model uses "
                             f"{list(bundle.band_names)[:3]}...; fit the DI on the model's training table")
    with open_raster(embedding_path, "embedding raster") as src:
        orientation = grid_orientation(src.transform, src.width, src.height,
                                       name=f"embedding raster {str(embedding_path)!r}")
        rule = check_compatible(bundle, src)
        grid = Grid.of_raster(src, block_size, memory_mb, len(bundle.class_values), n_bands=bundle.n_bands)
        profile = output_profile(src, grid.windows[0])
    with rasterio.open(map_path) as m:
        if (m.width, m.height) != (grid.width, grid.height) or m.transform != profile["transform"]:
            raise InputDataError(f"map {str(map_path)!r} is not on the grid of embedding {str(embedding_path)!r}; "
                                 "predict the map from this embedding first")
        map_nodata = m.nodata
    indexes = None if bundle.uses_all_bands else list(bundle.source_indexes)
    counts = AoaCounts()
    layers = aoa_layers(di_path, aoa_path, training.threshold)

    def blocks() -> Iterator[tuple[Window, dict[str, np.ndarray]]]:
        with one_pass_cache(), ThreadReaders(embedding_path) as readers, rasterio.open(map_path) as labels_src:
            for window in grid.windows:
                mask, features = rule.block_features(readers.read(window, indexes))
                target = orientation.window(window)
                labels = labels_src.read(1, window=target)
                valid = orientation.array(mask).copy()  # (the mask itself when north-up: kept for di[mask])
                if map_nodata is not None:
                    valid &= labels != map_nodata
                di = np.full(mask.shape, DI_NODATA, dtype=np.float32)
                inside = np.zeros(mask.shape, dtype=bool)
                if features.shape[0]:
                    values = training.di(features)  # float64: inside/outside is decided before rounding
                    di[mask] = values.astype(np.float32)
                    inside[mask] = values <= training.threshold
                di, inside = orientation.array(di), orientation.array(inside)
                di[~valid] = DI_NODATA
                aoa = np.where(valid, inside.astype(np.uint8), np.uint8(AOA_NODATA)).astype(np.uint8)
                counts.add(labels[valid], ~inside[valid])
                yield target, {"di": di, "aoa": aoa}

    di_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".aoa-", dir=di_path.parent) as work:
        write_cogs(layers, profile, Path(work), blocks(), overview_factors(grid.width, grid.height))
    return counts
