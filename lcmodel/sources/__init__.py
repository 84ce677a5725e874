"""Where a run's rasters come from: single files, tile collections, indexes, remote files.

A path spec (``embedding.path``, ``reference.path``) names one raster or many; :func:`open_collection`
resolves it into a :class:`Collection` of :class:`Tile` headers, which a run records in a manifest so that
its stages read exactly the tiles they were given.
"""

from lcmodel.sources.collection import MANIFEST_FORMAT, Collection, open_collection, parse_aoi
from lcmodel.sources.remote import is_remote
from lcmodel.sources.specs import INDEX_COLUMNS, RASTER_SUFFIXES, expand_spec, is_index, read_index
from lcmodel.sources.tiles import Tile, describe_tile, reproject_xy, tile_band_names

__all__ = [
    "Collection",
    "open_collection",
    "parse_aoi",
    "MANIFEST_FORMAT",
    "is_remote",
    "INDEX_COLUMNS",
    "RASTER_SUFFIXES",
    "expand_spec",
    "is_index",
    "read_index",
    "Tile",
    "describe_tile",
    "reproject_xy",
    "tile_band_names",
]
