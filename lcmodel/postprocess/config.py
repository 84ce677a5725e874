"""The ``postprocess`` config section: how the clean map (``map_clean.tif``) is made from the raw map.

Its own module (imported by :mod:`lcmodel.config`), so that it imports nothing of lcmodel.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PostprocessConfig"]


class PostprocessConfig(BaseModel):
    """Cleaning the map: a minimum mapping unit (sieve) and/or a majority filter; both null = no clean map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mmu_pixels: int | None = Field(None, ge=2, le=1000, description="remove patches of fewer pixels (sieve); "
                                   "null = off; at most 1000 (each block is read with a 2 x mmu overlap)")
    connectivity: Literal[4, 8] = Field(4, description="patches connect through edges (4) or corners too (8)")
    majority: Literal[3, 5] | None = Field(None, description="majority filter window (3 or 5), after the sieve; "
                                           "null = off")

    @property
    def active(self) -> bool:
        """Whether a clean map is made."""
        return self.mmu_pixels is not None or self.majority is not None
