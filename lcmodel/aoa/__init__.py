"""The area of applicability of a model (Meyer & Pebesma 2021): the dissimilarity index (DI) of every pixel and
whether it is inside the AOA.

- :mod:`~lcmodel.aoa.di`: the training samples' DI, the threshold from the CV folds, exact nearest neighbours;
- :mod:`~lcmodel.aoa.raster`: ``di.tif`` and ``aoa.tif`` block by block over the embedding, counts per class;
- :mod:`~lcmodel.aoa.summary`: the run's figures (shares outside, test accuracy inside vs outside);
- :mod:`~lcmodel.aoa.tiles`: a tile collection's counts, each location once where tiles overlap.
"""

from lcmodel.aoa.di import TrainingDI, fit_training_di, mean_pairwise_distance, nearest_distances, upper_whisker
from lcmodel.aoa.raster import AOA_NODATA, DI_NODATA, AoaCounts, aoa_layers, write_aoa_rasters
from lcmodel.aoa.summary import applicability_summary, fold_ids, test_accuracy_by_aoa
from lcmodel.aoa.tiles import aoa_counts_once, merge_counts

__all__ = [
    "TrainingDI",
    "fit_training_di",
    "mean_pairwise_distance",
    "nearest_distances",
    "upper_whisker",
    "AOA_NODATA",
    "DI_NODATA",
    "AoaCounts",
    "aoa_layers",
    "write_aoa_rasters",
    "applicability_summary",
    "fold_ids",
    "test_accuracy_by_aoa",
    "aoa_counts_once",
    "merge_counts",
]
