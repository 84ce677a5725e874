"""The tuning grid: the notebook's default stages, the parameters a stage may tune, and each value's check.

Its own module (imported by :mod:`lcmodel.config`): a grid value RandomForestClassifier would refuse is
refused when the config is read, before any fit starts.
"""

from __future__ import annotations

import re

__all__ = ["GridValue", "DEFAULT_STAGES", "TUNABLE_PARAMS", "check_grid_value"]

GridValue = str | int | float | bool | None

#: The notebook's two grid stages. "n/16" means number of bands // 16, at least 1.
DEFAULT_STAGES: tuple[dict[str, list[GridValue]], ...] = (
    {
        "max_features": ["sqrt", "log2", "n/16", "n/8", "n/4"],
        "max_depth": [None, 20, 40],
        "min_samples_leaf": [1, 5, 10],
    },
    {
        "n_estimators": [400, 800, 1200],
        "min_samples_split": [2, 10],
        "class_weight": [None, "balanced", "balanced_subsample"],
    },
)

#: RandomForestClassifier parameters a tuning stage may set (the rest are fixed by the method or the run).
TUNABLE_PARAMS: frozenset[str] = frozenset({
    "n_estimators",
    "criterion",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "min_weight_fraction_leaf",
    "max_features",
    "max_leaf_nodes",
    "min_impurity_decrease",
    "bootstrap",
    "class_weight",
    "ccp_alpha",
    "max_samples",
})
_N_FRACTION = re.compile(r"^n/(\d+)$")


def check_grid_value(param: str, value: GridValue) -> GridValue:
    """Reject values RandomForestClassifier would refuse, before any fit starts."""
    if isinstance(value, str) and value.strip().lower() in {"null", "none"}:
        value = None  # TOML has no null
    if param == "max_features":
        if isinstance(value, str):
            m = _N_FRACTION.match(value)
            if value not in {"sqrt", "log2"} and not (m and int(m.group(1)) > 0):
                raise ValueError(
                    f"max_features {value!r} is not valid; use 'sqrt', 'log2', 'n/K' (bands // K), "
                    "a positive integer or a fraction in (0, 1]"
                )
        elif value is None:
            pass
        elif isinstance(value, bool) or not (
            (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value <= 1)
        ):
            raise ValueError(
                f"max_features {value!r} is not valid; use a positive integer, a fraction in (0, 1], "
                "'sqrt', 'log2' or 'n/K'"
            )
    elif param in {"n_estimators", "min_samples_leaf"}:
        if isinstance(value, bool) or not (
            (isinstance(value, int) and value >= 1)
            or (param == "min_samples_leaf" and isinstance(value, float) and 0 < value < 1)
        ):
            raise ValueError(f"{param} {value!r} is not valid; use an integer >= 1")
    elif param == "min_samples_split":
        if isinstance(value, bool) or not (
            (isinstance(value, int) and value >= 2) or (isinstance(value, float) and 0 < value <= 1)
        ):
            raise ValueError(f"min_samples_split {value!r} is not valid; use an integer >= 2")
    elif param == "max_depth":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"max_depth {value!r} is not valid; use null (unlimited) or an integer >= 1")
    elif param == "class_weight":
        if value not in (None, "balanced", "balanced_subsample"):
            raise ValueError(
                f"class_weight {value!r} is not valid; use null, 'balanced' or 'balanced_subsample'"
            )
    return value
