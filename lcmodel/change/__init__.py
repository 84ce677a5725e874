"""Change between years of maps and embeddings: transitions, embedding angle, their agreement, temporal filter.

Modules: ``grids`` (one grid, north-up windows, COG outputs), ``transitions`` (the from-to raster, matrix, CSV,
heat map), ``angle`` (the embedding angle and changed mask), ``agreement`` (class change vs embedding change),
``temporal`` (the majority filter across years). The ``change`` stage (:mod:`lcmodel.pipeline.change`) runs
them; docs/change.md says what each product means.
"""

from lcmodel.change.agreement import CASES, agreement_table
from lcmodel.change.angle import DEFAULT_THRESHOLD_DEG, AngleResult, angle_degrees, write_embedding_change
from lcmodel.change.temporal import temporal_majority
from lcmodel.change.transitions import (
           TransitionResult,
           transition_codes,
           transition_names,
           write_matrix,
           write_transitions,
)

__all__ = ["CASES", "agreement_table", "DEFAULT_THRESHOLD_DEG", "AngleResult", "angle_degrees",
           "write_embedding_change", "temporal_majority", "TransitionResult", "transition_codes",
           "transition_names", "write_matrix", "write_transitions"]
