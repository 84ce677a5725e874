"""The ``embedding`` config section (files, year or years, bands) and the ``change`` section.

Its own module (imported by :mod:`lcmodel.config`). ``embedding.years`` maps several years with one model
(:mod:`lcmodel.years`: the ``{year}`` placeholder, the train year); ``change`` says how they are compared
(:mod:`lcmodel.pipeline.change`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from lcmodel.bands import check_band_list
from lcmodel.config_paths import AoiSpec, PathSpec, spec_text
from lcmodel.years import PLACEHOLDER, for_year, has_placeholder

__all__ = ["EmbeddingConfig", "ChangeConfig", "CHANGE_THRESHOLD_DEG"]


class EmbeddingConfig(BaseModel):
    """The embedding raster(s): a file, a list, a glob, a folder, a .vrt or an index; nodata from the files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: PathSpec
    nodata: float | None = None
    aoi: AoiSpec = Field(None, description="area of interest: [west, south, east, north] in degrees, or a GeoJSON file")
    year: int | None = Field(None, ge=1900, le=2200, description="the year of the embedding: an index's tiles "
                             "of that year, or the {year} of the path; with years: the train year")
    bands: Annotated[tuple[str | int, ...] | None, BeforeValidator(check_band_list)] = None
    years: tuple[Annotated[int, Field(ge=1900, le=2200)], ...] | None = Field(
        None, description="years to map with the one model (each its map_<year>.tif): the path's {year} or an "
        "index's year column; null = the one year")
    train_year: int | None = Field(None, ge=1900, le=2200, description="the year the reference describes (trained "
                                   "on); null = the reference's own year when its file name says it")

    @field_validator("years")
    @classmethod
    def _years_sorted(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty list maps no year; give the years to map, e.g. [2018, 2020, 2024], or null")
        if len(set(value)) != len(value):
            raise ValueError(f"years {list(value)} repeat a year; list each year once")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _year_given_once(self) -> EmbeddingConfig:
        if self.train_year is not None and self.year is not None and self.train_year != self.year:
            raise ValueError(f"embedding.year {self.year} and embedding.train_year {self.train_year} disagree; "
                             "set one of them (the year the reference describes)")
        if self.train_year is not None and self.year is None:  # one year, whichever key named it
            object.__setattr__(self, "year", self.train_year)
        if self.years is not None and self.year is not None and self.train_year is None:
            object.__setattr__(self, "train_year", self.year)
        if has_placeholder(self.path) and self.year is None and self.years is None:
            raise ValueError(f"embedding.path {spec_text(self.path)!r} has a {PLACEHOLDER} placeholder but no year "
                             "is set; set embedding.year (one year) or embedding.years (several)")
        if self.years is not None and not has_placeholder(self.path) and not _is_index_spec(self.path):
            raise ValueError(f"embedding.years {list(self.years)} needs the year in embedding.path: a "
                             f"{PLACEHOLDER} placeholder (e.g. 'aef/{PLACEHOLDER}/*.tif') or an index with a year "
                             "column (aef_index.parquet); or set embedding.years: null")
        return self

    @property
    def spec(self) -> Path | tuple[str, ...]:
        """``path`` with ``{year}`` replaced by ``year``: what the run reads."""
        return for_year(self.path, self.year)


#: The default angle (degrees) between two years' embeddings from which a pixel counts as changed
#: (lcmodel.change.angle explains the choice).
CHANGE_THRESHOLD_DEG = 30.0


def _is_index_spec(spec: Path | tuple[str, ...]) -> bool:
    from lcmodel.sources.specs import is_index

    return any(is_index(str(item)) for item in (spec if isinstance(spec, tuple) else (spec,)))


class ChangeConfig(BaseModel):
    """Change products between the mapped years (``embedding.years``): transitions, embedding change, agreement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="with two or more years: transition maps and matrices, the embedding "
                          "change and their agreement, for consecutive years and for first vs last")
    threshold_deg: float = Field(CHANGE_THRESHOLD_DEG, gt=0, lt=180, description="angle between two years' "
                                 "embeddings (degrees) from which a pixel counts as changed")
