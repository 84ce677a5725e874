"""Years of embeddings: the ``{year}`` placeholder of ``embedding.path``, the train year and the years mapped.

AlphaEarth embeddings are annual (2017 onwards) on one grid; a reference such as ESA WorldCover describes one
year. ``embedding.years`` lists the years to map with ONE model, trained on ``embedding.train_year`` (the year
the reference describes). The embedding of a year is named by ``embedding.path`` with ``{year}`` replaced
(``aef/{year}/*.tif``), or by an index's ``year`` column (``aef_index.parquet``, filtered by the year).

The train year defaults to the reference's own year when its file name says it unambiguously (ESA WorldCover
``ESA_WorldCover_10m_2021_v200_...``, NLCD ``nlcd2011``, or any one year 1984..2039 in the names); else it
must be given. ``embedding.year`` is the train year when years are set (they may not disagree).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["PLACEHOLDER", "has_placeholder", "for_year", "reference_year", "year_from_name", "mapped_years"]

PLACEHOLDER = "{year}"

_YEAR_IN_NAME = re.compile(r"(?<!\d)(19[89]\d|20[0-3]\d)(?!\d)")


def has_placeholder(spec: Path | tuple[str, ...] | Any) -> bool:
    """Whether a path spec (a Path or a tuple of strings) holds ``{year}``."""
    items = spec if isinstance(spec, tuple) else (spec,)
    return any(PLACEHOLDER in str(item) for item in items)


def for_year(spec: Path | tuple[str, ...], year: int | None) -> Path | tuple[str, ...]:
    """The spec with ``{year}`` replaced by ``year`` (unchanged when it has no placeholder or year is None)."""
    if year is None or not has_placeholder(spec):
        return spec
    if isinstance(spec, tuple):
        return tuple(str(item).replace(PLACEHOLDER, str(year)) for item in spec)
    return Path(str(spec).replace(PLACEHOLDER, str(year)))


def mapped_years(years: tuple[int, ...] | None, train_year: int | None) -> tuple[int, ...]:
    """Every year a config maps: ``embedding.years`` and the train year, sorted; () for a one-year run."""
    if years is None:
        return ()
    return tuple(sorted({*years, *((train_year,) if train_year is not None else ())}))


def year_from_name(name: str) -> int | None:
    """The one year a file name states (``ESA_WorldCover_10m_2021_v200_N00E006_Map.tif`` -> 2021), else None."""
    found = {int(y) for y in _YEAR_IN_NAME.findall(Path(name).name)}
    return found.pop() if len(found) == 1 else None


def reference_year(spec: Path | tuple[str, ...]) -> tuple[int, str] | None:
    """The year every file of a reference spec names, and the first name, when they agree; else None."""
    items = spec if isinstance(spec, tuple) else (spec,)
    years = {year_from_name(str(item)) for item in items}
    if len(years) != 1 or None in years:
        return None
    return years.pop(), Path(str(items[0])).name  # type: ignore[return-value]

