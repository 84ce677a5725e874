"""Points worth labelling next: `lcmodel suggest MAP --n 200 --out next.csv`.

- :mod:`~lcmodel.suggest.inputs`: the map, the score rasters beside it and the points to avoid, checked up front;
- :mod:`~lcmodel.suggest.select`: the scores, one point per spatial block, the class strata, the ranking.

The points are written as the validation samples are (:func:`lcmodel.accuracy.write_sample`: CSV with a
``.crs.json``, or a GeoPackage layer ``suggested_points``), with an empty ``label`` column: fill it with
reference codes and list the file under ``reference.extra_points`` to train the next run on them.
"""

from __future__ import annotations

from pathlib import Path

from lcmodel.suggest.inputs import DEFAULT_BLOCK_PIXELS, SCORES, SuggestInputs, find_inputs, read_exclusions
from lcmodel.suggest.select import WINDOW, Suggestion, allocate_equal, suggest_points, tie_keys

__all__ = [
    "DEFAULT_BLOCK_PIXELS",
    "SCORES",
    "SuggestInputs",
    "Suggestion",
    "WINDOW",
    "allocate_equal",
    "find_inputs",
    "read_exclusions",
    "suggest_points",
    "tie_keys",
    "write_suggestion",
    "check_output",
]

#: the GeoPackage layer of suggested points
LAYER = "suggested_points"


def check_output(out: Path | str) -> Path:
    """The output path, refused before any work unless it ends in ``.csv`` or ``.gpkg``."""
    from lcmodel.errors import ConfigError

    path = Path(out)
    if path.suffix.lower() not in (".csv", ".gpkg"):
        raise ConfigError(f"--out {str(path)!r} has suffix {path.suffix!r}; use .csv or .gpkg")
    return path


def write_suggestion(suggestion: Suggestion, out: Path | str) -> Path:
    """Write the ranked points atomically as CSV (+ ``.crs.json``) or GeoPackage (layer ``suggested_points``)."""
    from lcmodel.accuracy import write_sample

    return write_sample(suggestion.table, suggestion.inputs.crs, check_output(out), layer=LAYER)
