"""A tile collection's predicted maps as one product: names, counts, mosaics and a STAC catalog.

Each tile of an embedding collection is predicted on its own grid and CRS (:mod:`lcmodel.pipeline.tiled`);
this package turns the per-tile maps into what a user reads: output names per tile and per CRS
(:mod:`~lcmodel.tilemaps.layout`), class counts with each location counted once where tiles overlap
(:mod:`~lcmodel.tilemaps.counts`), a VRT mosaic per CRS and one COG mosaic reprojected to a target CRS
(:mod:`~lcmodel.tilemaps.mosaic`), and a STAC collection with one item per tile
(:mod:`~lcmodel.tilemaps.stac`). Where tiles overlap, the first tile in the collection's order with a valid
pixel wins, in the mosaics and in the counts alike.
"""

from lcmodel.tilemaps.counts import TileCounts, count_once, overlapping_earlier
from lcmodel.tilemaps.layout import crs_groups, crs_tag, tile_stem, tile_stems
from lcmodel.tilemaps.mosaic import MOSAIC_BLOCK, MosaicGrid, mosaic_grid, write_crs_vrts, write_mosaic_cog
from lcmodel.tilemaps.stac import COLLECTION_ID, ClassInfo, StacTile, write_stac

__all__ = [
    "TileCounts",
    "count_once",
    "overlapping_earlier",
    "crs_groups",
    "crs_tag",
    "tile_stem",
    "tile_stems",
    "MOSAIC_BLOCK",
    "MosaicGrid",
    "mosaic_grid",
    "write_crs_vrts",
    "write_mosaic_cog",
    "COLLECTION_ID",
    "ClassInfo",
    "StacTile",
    "write_stac",
]
