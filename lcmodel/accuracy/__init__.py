"""Accuracy: area-adjusted estimates, the validation sample of a map, and spatial cross-validation.

* :mod:`~lcmodel.accuracy.olofsson`: the stratified estimators of Olofsson et al. (2014),
  :func:`stratified_estimates` and :func:`confusion_counts`;
* :mod:`~lcmodel.accuracy.design`: a validation sample's size and allocation (:func:`design_sample`) and its
  draw from the map (:func:`draw_validation_sample`);
* :mod:`~lcmodel.accuracy.sample_io`: the sample as CSV or GeoPackage (:func:`write_sample`) and back once
  labelled (:func:`read_labelled`);
* :mod:`~lcmodel.accuracy.assess`: a map's accuracy and areas from its labelled sample (:func:`assess_labelled`);
* :mod:`~lcmodel.accuracy.cluster`: their standard errors with the spatial test blocks as clusters
  (:func:`cluster_estimates`, :func:`cluster_figures`);
* :mod:`~lcmodel.accuracy.spatial_cv`: spatial blocks, folds and train/test masks, :func:`cv_splits`;
* :mod:`~lcmodel.accuracy.block_size`: the block size from the label variogram (:func:`auto_block_size`).
"""

from lcmodel.accuracy.assess import assess_labelled
from lcmodel.accuracy.block_size import BlockSizeEstimate, auto_block_size
from lcmodel.accuracy.cluster import cluster_estimates, cluster_figures, cluster_variance
from lcmodel.accuracy.design import (
    SAMPLE_COLUMNS,
    SampleDesign,
    allocate,
    design_sample,
    draw_validation_sample,
    map_class_counts,
    sample_size,
)
from lcmodel.accuracy.olofsson import Z_95, confusion_counts, stratified_estimates
from lcmodel.accuracy.sample_io import read_labelled, write_sample
from lcmodel.accuracy.spatial_cv import (
    SMALL_POINT_SET,
    Strategy,
    assign_groups,
    cv_splits,
    grid_blocks,
    resolve_strategy,
    spatial_folds,
    spatial_test_mask,
)

__all__ = [
    # olofsson
    "Z_95",
    "stratified_estimates",
    "confusion_counts",
    # cluster
    "cluster_estimates",
    "cluster_variance",
    "cluster_figures",
    # design
    "SAMPLE_COLUMNS",
    "SampleDesign",
    "sample_size",
    "allocate",
    "map_class_counts",
    "design_sample",
    "draw_validation_sample",
    # sample_io
    "write_sample",
    "read_labelled",
    # assess
    "assess_labelled",
    # spatial_cv
    "SMALL_POINT_SET",
    "Strategy",
    "resolve_strategy",
    "grid_blocks",
    "assign_groups",
    "spatial_folds",
    "spatial_test_mask",
    "cv_splits",
    # block_size
    "BlockSizeEstimate",
    "auto_block_size",
]
