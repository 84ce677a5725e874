"""The ``applicability`` stage for a tile collection: ``di.tif`` and ``aoa.tif`` per tile, one summary.

The training DI is fitted once (:mod:`lcmodel.pipeline.applicability`); then every tile's embedding and map
(``OUTPUT/tiles/<stem>/map.tif``, the prediction's per-tile maps in the collection's order) give that tile's
``OUTPUT/tiles/<stem>/di.tif`` and ``aoa.tif`` (:func:`lcmodel.aoa.write_aoa_rasters`, with the model as it
applies to the tile's CRS: :func:`lcmodel.compatibility.bundle_for_tile`), on the tile map's grid.

``aoa.json`` has the keys of a single map's summary for the collection as a whole, each location counted
once where tiles overlap (the first tile in the collection's order with a classified pixel counts it:
:mod:`lcmodel.aoa.tiles`, the rule of ``prediction.json``'s class counts), plus ``tiles``: each tile's own
shares over its whole map and its counted pixels. When the prediction wrote mosaics
(``prediction.mosaic: vrt`` or ``cog``), one VRT per CRS of ``di`` and of ``aoa`` (``di_32631.vrt``); a COG
mosaic of them is not written (``aoa.json`` says so): the per-tile rasters and the VRTs are the product.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lcmodel.aoa import AoaCounts, TrainingDI
from lcmodel.io import file_digest
from lcmodel.model_io import ModelBundle
from lcmodel.pipeline.artifacts import Artifact, Prediction
from lcmodel.pipeline.paths import RunPaths
from lcmodel.pipeline.settings import AoaSettings
from lcmodel.sources import Collection, Tile, describe_tile

__all__ = ["TileAoa", "collection_aoa", "collection_summary_extra"]

log = logging.getLogger(__name__)

COUNTING = ("each location once: where tiles overlap, the first tile in the collection's order with a "
            "classified pixel there counts it (as prediction.json's class counts)")


class TileAoa:
    """What :func:`collection_aoa` wrote: per-tile rasters and counts, the mosaics."""

    def __init__(self) -> None:
        self.stems: list[str] = []
        self.di: list[Path] = []
        self.aoa: list[Path] = []
        self.own: list[AoaCounts] = []
        self.counted: list[AoaCounts] = []
        self.mosaics: dict[str, Path] = {}

    def artifacts(self) -> tuple[tuple[Artifact, ...], tuple[Artifact, ...], tuple[Artifact, ...]]:
        """The stage's per-tile ``di``, ``aoa`` and mosaic outputs (``Applicability``'s ``tile_di``,
        ``tile_aoa``, ``mosaics``)."""
        return (tuple(Artifact.of(p) for p in self.di), tuple(Artifact.of(p) for p in self.aoa),
                tuple(Artifact.of(p) for p in self.mosaics.values()))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _header(path: Path, what: str) -> Tile:
    return describe_tile(str(path), what, lambda p: {"sha256": file_digest(p)})


def collection_aoa(settings: AoaSettings, training: TrainingDI, bundle: ModelBundle, tiles: Collection,
                   prediction: Prediction, paths: RunPaths) -> TileAoa:
    """Every tile's ``di.tif`` / ``aoa.tif``, the counts (each location once) and the VRT mosaics."""
    from lcmodel.aoa import aoa_counts_once, write_aoa_rasters
    from lcmodel.compatibility import bundle_for_tile
    from lcmodel.errors import InputDataError
    from lcmodel.tilemaps import write_crs_vrts

    if len(prediction.tile_maps) != len(tiles):
        raise InputDataError(f"the prediction has {len(prediction.tile_maps)} tile maps but the embedding has "
                             f"{len(tiles)} tiles; rerun the predict_map stage")
    crss = tuple(c.to_wkt() for c in tiles.crss)
    done = TileAoa()
    for tile, tile_map in zip(tiles.tiles, prediction.tile_maps, strict=True):
        where = RunPaths(tile_map.path.parent)
        counts = write_aoa_rasters(training, bundle_for_tile(bundle, tile.crs_wkt, crss), tile.path,
                                   tile_map.path, where.di, where.aoa, block_size=settings.block_size,
                                   memory_mb=settings.memory_mb)
        done.stems.append(tile_map.path.parent.name)
        done.di.append(where.di)
        done.aoa.append(where.aoa)
        done.own.append(counts)
        log.info("area of applicability of tile %s: %d of %d pixels outside", done.stems[-1], counts.n_outside,
                 counts.n_pixels)
    maps = [_header(a.path, "tile map") for a in prediction.tile_maps]
    done.counted = aoa_counts_once(maps, done.aoa, done.own)
    if prediction.mosaics:
        for layer, files in (("di", done.di), ("aoa", done.aoa)):
            vrts = write_crs_vrts([_header(p, f"tile {layer}") for p in files],
                                  lambda tag, layer=layer: paths.mosaic_vrt(layer, tag))
            done.mosaics.update({f"{layer}_{tag}": p for tag, p in vrts.items()})
    return done


def collection_summary_extra(done: TileAoa, prediction_mosaics: bool, root: Path) -> dict[str, Any]:
    """The collection's keys of ``aoa.json``: the counting rule, each tile's shares, the mosaics."""
    tiles = []
    for stem, di, aoa, own, counted in zip(done.stems, done.di, done.aoa, done.own, done.counted, strict=True):
        tiles.append({
            "tile": stem, "di": _rel(di, root), "aoa": _rel(aoa, root),
            "n_pixels": own.n_pixels, "n_outside": own.n_outside,
            "outside_fraction": own.n_outside / own.n_pixels if own.n_pixels else None,
            "n_counted": counted.n_pixels, "n_counted_outside": counted.n_outside,
        })
    note = ("di and aoa are mosaicked as one VRT per CRS (the first tile in the collection's order on top); no "
            "COG mosaic of them is written: the per-tile rasters and the VRTs are the product"
            if prediction_mosaics else "prediction.mosaic is none: the per-tile rasters are the product")
    return {"n_tiles": len(tiles), "counting": COUNTING, "tiles": tiles,
            "mosaics": {k: _rel(p, root) for k, p in done.mosaics.items()}, "mosaic_note": note}
