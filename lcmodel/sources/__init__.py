"""Where a run's rasters come from: single files, tile collections, indexes, remote files.

A path spec (``embedding.path``, ``reference.path``) names one raster or many; :func:`open_collection`
resolves it into a :class:`Collection` of :class:`Tile` headers, which a run records in a manifest so that
its stages read exactly the tiles they were given.

* :mod:`~lcmodel.sources.remote`: ``https://``, ``s3://``, ``gs://`` and ``/vsi...`` specs, their GDAL paths,
  the GDAL settings for remote reading (:func:`configure_remote_gdal`), one-line errors, :func:`open_remote`;
* :mod:`~lcmodel.sources.identity`: :func:`remote_identity`, what identifies a file's content for cache keys.

The ground floor (:mod:`lcmodel.io`, :mod:`lcmodel.rasterio_io`, the prediction's store) imports
:mod:`lcmodel.sources.remote` inside functions, so that modules here may import the ground floor freely.
"""

from lcmodel.sources.collection import MANIFEST_FORMAT, Collection, open_collection, parse_aoi
from lcmodel.sources.identity import identity_digest, remote_identity
from lcmodel.sources.remote import (
    ALLOWED_EXTENSIONS,
    REMOTE_GDAL_DEFAULTS,
    REMOTE_READ_THREADS,
    configure_remote_gdal,
    file_name,
    gdal_path,
    http_url,
    is_remote,
    open_options,
    open_remote,
    redact,
    remote_error,
    safe_detail,
    split_archive,
)
from lcmodel.sources.specs import INDEX_COLUMNS, RASTER_SUFFIXES, expand_spec, is_index, read_index
from lcmodel.sources.tiles import Tile, describe_tile, reproject_xy

__all__ = [
    "Collection",
    "open_collection",
    "parse_aoi",
    "MANIFEST_FORMAT",
    "INDEX_COLUMNS",
    "RASTER_SUFFIXES",
    "expand_spec",
    "is_index",
    "read_index",
    "Tile",
    "describe_tile",
    "reproject_xy",
    "ALLOWED_EXTENSIONS",
    "REMOTE_GDAL_DEFAULTS",
    "REMOTE_READ_THREADS",
    "configure_remote_gdal",
    "file_name",
    "gdal_path",
    "http_url",
    "identity_digest",
    "is_remote",
    "open_options",
    "open_remote",
    "redact",
    "remote_error",
    "remote_identity",
    "safe_detail",
    "split_archive",
]
