"""Reference points: stratified sampling of a class raster, CSV or vector points, reprojection, reclassification.

The first stage of the pipeline. Reference land cover comes either as a categorical raster (ESA WorldCover,
NLCD...) from which points are drawn, or as labelled points: a CSV or a vector layer (GeoPackage, GeoJSON,
Shapefile, FlatGeobuf). Either way the result is a
:class:`ReferencePoints`: a table of ``x``/``y``/``code`` plus the CRS the coordinates are in.

* :mod:`~lcmodel.reference.points`: :class:`ReferencePoints`, :func:`read_points_csv`;
* :mod:`~lcmodel.reference.vector`: :func:`read_points_vector` (a layer of a vector file, its CRS),
  :func:`read_points_file` (vector or CSV);
* :mod:`~lcmodel.reference.class_pixels`: pixels of each class drawn in two passes over a raster's blocks;
* :mod:`~lcmodel.reference.raster_sample`: :func:`sample_raster_points` (the notebook's allocation),
  :func:`load_reference` (raster or points, from the config);
* :mod:`~lcmodel.reference.reproject`: :func:`reproject_points`, :func:`reclassify`;
* :mod:`~lcmodel.reference.diagnose`: :func:`check_overlap`, :func:`warn_crs_units`.
"""

from lcmodel.reference.class_pixels import ClassPixelSampler, DrawnPixels, Progress
from lcmodel.reference.diagnose import check_overlap, warn_crs_units
from lcmodel.reference.points import POINT_SUFFIXES, ReferencePoints, read_points_csv
from lcmodel.reference.raster_sample import allocate_samples, load_reference, sample_raster_points
from lcmodel.reference.reproject import reclassify, reproject_points
from lcmodel.reference.vector import VECTOR_SUFFIXES, read_points_file, read_points_vector

__all__ = [
    "ReferencePoints",
    "sample_raster_points",
    "read_points_csv",
    "read_points_vector",
    "read_points_file",
    "VECTOR_SUFFIXES",
    "load_reference",
    "reproject_points",
    "reclassify",
    "allocate_samples",
    "POINT_SUFFIXES",
    "check_overlap",
    "warn_crs_units",
    "Progress",
    "ClassPixelSampler",
    "DrawnPixels",
]
