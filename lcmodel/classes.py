"""The class table: reference codes -> model class values, with optional names and colours.

A table comes from a CSV (``code``/``value`` columns, extra columns allowed), or is derived from the labels
themselves: string labels ("Forest", "Pasture") get values 1..K in sorted order and become the class names;
integer labels map to themselves. Class values are positive integers. The palette of a map is the ESA
WorldCover palette when the values are WorldCover codes, else the table's colours, else a stable generated
one (the same value always gets the same colour).
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.errors import ClassTableError, InputFileError

__all__ = ["ClassTable", "WORLDCOVER_CLASSES", "read_class_table", "integer_valued"]

#: ESA WorldCover v100/v200 codes: (name, colour).
WORLDCOVER_CLASSES: dict[int, tuple[str, str]] = {
    10: ("Tree cover", "#006400"),
    20: ("Shrubland", "#ffbb22"),
    30: ("Grassland", "#ffff4c"),
    40: ("Cropland", "#f096ff"),
    50: ("Built-up", "#fa0000"),
    60: ("Bare / sparse vegetation", "#b4b4b4"),
    70: ("Snow and ice", "#f0f0f0"),
    80: ("Permanent water bodies", "#0064c8"),
    90: ("Herbaceous wetland", "#0096a0"),
    95: ("Mangroves", "#00cf75"),
    100: ("Moss and lichen", "#fae6a0"),
}
_HEX = re.compile(r"^#?[0-9a-fA-F]{6}$")


def integer_valued(values: np.ndarray) -> bool:
    """True when every value is a whole number: an integer dtype, or floats without a fraction (class values
    must be integers)."""
    return values.dtype.kind in "iu" or (values.dtype.kind == "f" and bool(np.all(np.mod(values, 1) == 0)))


def _generated_color(value: int) -> str:
    """A stable, well-spread colour for a class value (golden-ratio hue walk)."""
    hue = (value * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.85)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


@dataclass(frozen=True)
class ClassTable:
    """Mapping of reference codes to class values, plus names and colours of the values.

    Attributes
    ----------
    code_to_value : mapping of reference code (int or str) -> positive int class value.
    names : class value -> name (may be empty).
    colors : class value -> '#rrggbb' (may be empty).
    """

    code_to_value: Mapping[Any, int]
    names: Mapping[int, str] = field(default_factory=dict)
    colors: Mapping[int, str] = field(default_factory=dict)

    @property
    def values(self) -> list[int]:
        """Sorted distinct class values."""
        return sorted(set(int(v) for v in self.code_to_value.values()))

    def name(self, value: int) -> str:
        """Name of a class value: the table's name, the WorldCover name for WorldCover codes, else str."""
        value = int(value)
        if value in self.names:
            return str(self.names[value])
        if self.is_worldcover():
            return WORLDCOVER_CLASSES[value][0]
        return str(value)

    def is_worldcover(self) -> bool:
        """True when every class value is an ESA WorldCover code (so the ESA palette applies)."""
        vals = self.values
        return bool(vals) and all(v in WORLDCOVER_CLASSES for v in vals)

    def color(self, value: int) -> str:
        value = int(value)
        if value in self.colors:
            return self.colors[value]
        if self.is_worldcover() and not self.colors:
            return WORLDCOVER_CLASSES[value][1]
        return _generated_color(value)

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A rasterio colormap (value -> RGBA) for every class value."""
        return {v: (*_hex_to_rgb(self.color(v)), 255) for v in self.values}

    def map_codes(self, codes: pd.Series) -> pd.Series:
        """Map reference codes to class values; unknown codes become <NA> (nullable Int64)."""
        lookup = dict(self.code_to_value)
        if codes.dtype.kind in "iuf" and all(isinstance(k, int | np.integer) for k in lookup):
            mapped = codes.map(lambda c: lookup.get(int(c)) if pd.notna(c) else None)
        else:
            mapped = codes.map(lambda c: lookup.get(c))
        return mapped.astype("Int64")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (codes as strings when they are strings)."""
        return {
            "code_to_value": [[k if isinstance(k, str) else int(k), int(v)] for k, v in self.code_to_value.items()],
            "names": {str(int(k)): v for k, v in self.names.items()},
            "colors": {str(int(k)): v for k, v in self.colors.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassTable:
        return cls(
            code_to_value={k: int(v) for k, v in data["code_to_value"]},
            names={int(k): v for k, v in data.get("names", {}).items()},
            colors={int(k): v for k, v in data.get("colors", {}).items()},
        )

    @classmethod
    def from_labels(cls, labels: Iterable[Any]) -> ClassTable:
        """Derive a table from the labels alone.

        Integer labels map to themselves (they must be positive). String labels get values 1..K in sorted
        order and become the class names.
        """
        distinct = pd.unique(pd.Series(list(labels)).dropna())
        if len(distinct) == 0:
            raise ClassTableError("no labels to build a class table from; check the label column")
        numeric = pd.to_numeric(pd.Series(distinct), errors="coerce")
        if numeric.notna().all():
            if not np.all(np.mod(numeric, 1) == 0) or (numeric <= 0).any():
                bad = [v for v in numeric if v <= 0 or v % 1][:5]
                raise ClassTableError(
                    f"labels {bad} are not positive integers; give a class table (classes.table) that maps "
                    "them to positive integer values"
                )
            return cls(code_to_value={int(v): int(v) for v in sorted(numeric.astype(int))})
        strings = sorted(str(v) for v in distinct)
        return cls(
            code_to_value={s: i + 1 for i, s in enumerate(strings)},
            names={i + 1: s for i, s in enumerate(strings)},
        )


def read_class_table(
    path: Path | str,
    *,
    code_column: str = "code",
    value_column: str = "value",
    name_column: str | None = None,
    color_column: str | None = None,
) -> ClassTable:
    """Read a code -> value class table from CSV (extra columns allowed).

    Raises
    ------
    InputFileError
        The file is missing or unreadable.
    ClassTableError
        Columns missing, duplicate codes with different values, values not positive integers, bad colours.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"class table {str(path)!r} does not exist; check classes.table in the config")
    try:
        df = pd.read_csv(path, sep=None, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ClassTableError(f"class table {str(path)!r} is not a readable CSV: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    for role, col in (("code", code_column), ("value", value_column), ("name", name_column), ("color", color_column)):
        if col is not None and col not in df.columns:
            raise ClassTableError(
                f"class table {str(path)!r} has no {role} column {col!r} (columns: {', '.join(df.columns)}); "
                f"set classes.{role}_column to one of them"
            )
    df = df.dropna(subset=[code_column, value_column])
    values = pd.to_numeric(df[value_column], errors="coerce")
    bad = df[value_column][values.isna() | (values % 1 != 0) | (values <= 0)]
    if len(bad):
        raise ClassTableError(
            f"class table {str(path)!r}: value(s) {list(bad.unique()[:5])} in column {value_column!r} are not "
            "positive integers; class values must be integers >= 1 (use 0 nowhere: it is not a class)"
        )
    codes_num = pd.to_numeric(df[code_column], errors="coerce")
    if codes_num.notna().all() and (codes_num % 1 == 0).all():
        codes: list[Any] = [int(c) for c in codes_num]
    else:
        codes = [str(c).strip() for c in df[code_column]]
    mapping: dict[Any, int] = {}
    for code, value in zip(codes, values.astype(int), strict=True):
        if code in mapping and mapping[code] != value:
            raise ClassTableError(
                f"class table {str(path)!r}: code {code!r} appears twice with values {mapping[code]} and "
                f"{value}; keep one row per code"
            )
        mapping[code] = int(value)
    names: dict[int, str] = {}
    colors: dict[int, str] = {}
    for _, row in df.assign(_v=values.astype(int)).iterrows():
        v = int(row["_v"])
        if name_column is not None and pd.notna(row[name_column]):
            names.setdefault(v, str(row[name_column]).strip())
        if color_column is not None and pd.notna(row[color_column]):
            c = str(row[color_column]).strip()
            if not _HEX.match(c):
                raise ClassTableError(
                    f"class table {str(path)!r}: colour {c!r} for value {v} is not '#rrggbb'; fix the "
                    f"{color_column!r} column"
                )
            colors.setdefault(v, c if c.startswith("#") else f"#{c}")
    return ClassTable(code_to_value=mapping, names=names, colors=colors)
