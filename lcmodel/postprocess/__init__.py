"""Clean maps: a minimum mapping unit (sieve) and a majority filter, block by block, equal to a whole-raster run.

``filters`` defines both on arrays and proves the overlap each needs; ``blockwise`` runs them over a map's
blocks into ``map_clean.tif``; ``config`` is the ``postprocess`` config section.
"""

from lcmodel.postprocess.blockwise import CleanOptions, CleanSummary, clean_array, clean_blocks, clean_map
from lcmodel.postprocess.config import PostprocessConfig
from lcmodel.postprocess.filters import halo, majority, patches, sieve

__all__ = [
    "CleanOptions",
    "CleanSummary",
    "PostprocessConfig",
    "clean_array",
    "clean_blocks",
    "clean_map",
    "halo",
    "majority",
    "patches",
    "sieve",
]
