"""A stage's candidates: resolving the config's values, the forest they configure, and the argument checks.

``resolve_stage`` turns ``'n/16'`` into a number of bands; ``effective_key`` says which candidates grow the same
forest (``"sqrt"`` is 8 features for 64 bands, as is ``"n/8"``), so that a stage fits each forest once;
``make_forest`` is the notebook's ``RandomForestClassifier``. The checks every tuning method makes first
(stages, folds, scorer, training table) are here too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import get_scorer_names

from lcmodel.config import TUNABLE_PARAMS
from lcmodel.errors import ConfigError, InputDataError, InsufficientDataError

_N_FRACTION = re.compile(r"^n/(\d+)$")

#: Hashable identity of a candidate's forest (see :func:`effective_key`).
Key = tuple[tuple[str, str], ...]


def _resolve_value(param: str, value: Any, n_features: int) -> Any:
    if isinstance(value, str) and value.strip().lower() in {"null", "none"}:
        return None  # TOML has no null
    if isinstance(value, np.generic):
        value = value.item()
    if param == "max_features":
        if isinstance(value, str):
            m = _N_FRACTION.match(value.strip())
            if m:
                k = int(m.group(1))
                if k < 1:
                    raise ConfigError(f"max_features {value!r} divides by zero; use 'n/K' with K >= 1")
                return max(1, n_features // k)
            if value not in {"sqrt", "log2"}:
                raise ConfigError(
                    f"max_features {value!r} is not valid; use 'sqrt', 'log2', 'n/K' (bands // K), "
                    "a positive integer or a fraction in (0, 1]"
                )
        elif isinstance(value, int) and not isinstance(value, bool) and value > n_features:
            raise ConfigError(
                f"max_features {value} is larger than the {n_features} bands; use at most {n_features} "
                "or 'n/K'"
            )
    return value


def resolve_stage(stage: Mapping[str, Sequence[Any]], n_features: int) -> dict[str, list[Any]]:
    """Turn a stage of the config into concrete candidate values for ``n_features`` bands.

    ``'n/K'`` becomes ``max(1, n_features // K)``; the strings ``'null'``/``'none'`` become ``None``. The
    candidate lists keep their length and order (equal values after resolving are not removed here: the
    grid stays GridSearchCV's grid, and :func:`~lcmodel.tuning.tune_grid` evaluates identical candidates once).

    Parameters
    ----------
    stage : parameter name -> candidate values.
    n_features : number of bands (features).

    Returns
    -------
    dict
        parameter name -> list of resolved values.

    Raises
    ------
    ConfigError
        Unknown parameter, empty candidate list, unusable ``max_features``.
    """
    if n_features < 1:
        raise InputDataError(f"n_features is {n_features}; the training table needs at least one band")
    out: dict[str, list[Any]] = {}
    for param, values in stage.items():
        if param not in TUNABLE_PARAMS:
            raise ConfigError(
                f"{param!r} is not a tunable RandomForest parameter; use one of "
                f"{', '.join(sorted(TUNABLE_PARAMS))}"
            )
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise ConfigError(f"{param}: candidates must be a list, got {values!r}; write [{values!r}]")
        if len(values) == 0:
            raise ConfigError(f"{param} has an empty candidate list; give at least one value")
        out[param] = [_resolve_value(param, v, n_features) for v in values]
    return out


def make_forest(
    params: Mapping[str, Any], *, random_state: int, n_jobs: int | None = 1
) -> RandomForestClassifier:
    """The notebook's forest: ``RandomForestClassifier(random_state, bootstrap=True, oob_score=False)``.

    Parameters
    ----------
    params : tuned parameters (override the defaults, ``bootstrap`` included).
    random_state : seed of the forest.
    n_jobs : threads of the forest (1 inside tuning workers: one level of parallelism only).
    """
    kwargs: dict[str, Any] = {"bootstrap": True, "oob_score": False}
    kwargs.update(params)
    return RandomForestClassifier(random_state=random_state, n_jobs=n_jobs, **kwargs)


def _effective_max_features(value: Any, n_features: int) -> Any:
    """The number of features per split the forest will actually use (sklearn's own rule)."""
    if value == "sqrt":
        return max(1, int(math.sqrt(n_features)))
    if value == "log2":
        return max(1, int(math.log2(n_features)))
    if value is None:
        return n_features
    if isinstance(value, float) and not isinstance(value, bool):
        return max(1, int(value * n_features))
    return value


def effective_key(params: Mapping[str, Any], n_features: int) -> Key:
    """A hashable key equal for candidates that grow identical forests (used to skip duplicate fits)."""
    items = []
    for name in sorted(params):
        value = params[name]
        if name == "max_features":
            value = _effective_max_features(value, n_features)
        items.append((name, repr(value)))
    return tuple(items)


def find_duplicates(
    candidates: Sequence[Mapping[str, Any]], fixed: Mapping[str, Any], n_features: int
) -> tuple[list[int], list[int]]:
    """Which candidates grow the same forest as an earlier one (with the earlier stages' bests ``fixed``).

    Returns
    -------
    (duplicate_of, distinct)
        ``duplicate_of[j]``: the first candidate identical to ``j``, or -1 when ``j`` is the first of its kind;
        ``distinct``: the candidates with ``duplicate_of == -1``, in order.
    """
    first_of: dict[Key, int] = {}
    duplicate_of: list[int] = []
    for j, params in enumerate(candidates):
        key = effective_key({**fixed, **params}, n_features)
        duplicate_of.append(first_of.get(key, -1))
        first_of.setdefault(key, j)
    return duplicate_of, [j for j, d in enumerate(duplicate_of) if d < 0]


def prepare_xy(X: Any, y: Any, cv: int) -> tuple[np.ndarray, np.ndarray]:
    """Convert once (float32 C-contiguous ``X``, numpy ``y``) and check that ``cv`` folds are possible.

    Raises
    ------
    InputDataError
        ``X`` not 2-D, ``X`` and ``y`` of different lengths, fewer than two classes.
    InsufficientDataError
        A class has fewer samples than ``cv`` folds.
    """
    Xa = np.ascontiguousarray(X, dtype=np.float32)
    ya = np.asarray(y)
    if Xa.ndim != 2:
        raise InputDataError(f"X has shape {Xa.shape}; expected (samples, bands)")
    if ya.ndim != 1 or len(ya) != len(Xa):
        raise InputDataError(
            f"y has shape {ya.shape} but X has {len(Xa)} rows; give one label per row of X"
        )
    classes, counts = np.unique(ya, return_counts=True)
    if len(classes) < 2:
        raise InsufficientDataError(
            f"the training labels hold {len(classes)} class(es); tuning needs at least 2 classes"
        )
    small = counts < cv
    if small.any():
        i = int(np.argmax(small))
        label = classes[i].item() if isinstance(classes[i], np.generic) else classes[i]
        raise InsufficientDataError(
            f"class {label!r} has {int(counts[i])} training sample(s), fewer than tuning.cv={cv} folds; "
            f"lower tuning.cv to at most {int(counts.min())}, sample more points, or drop the class "
            "(sampling.min_class_fraction)"
        )
    return Xa, ya


def check_cv_splits(
    cv_splits: Sequence[tuple[Any, Any]] | None, n_samples: int, cv: int
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Validate precomputed folds (None passes through): ``cv`` pairs of disjoint, in-range index arrays.

    Raises
    ------
    ConfigError
        Wrong number of folds, an empty part, indices out of range, or a sample in two test parts.
    """
    if cv_splits is None:
        return None
    folds = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in cv_splits]
    if len(folds) != cv:
        raise ConfigError(f"{len(folds)} precomputed folds but cv={cv}; give cv equal to the number of folds")
    seen = np.zeros(n_samples, dtype=np.int64)
    for i, (tr, te) in enumerate(folds):
        if tr.size == 0 or te.size == 0:
            raise ConfigError(f"fold {i} has an empty train or test part; use larger folds (fewer, or smaller blocks)")
        both = np.concatenate([tr, te])
        if both.min() < 0 or both.max() >= n_samples:
            raise ConfigError(f"fold {i} holds indices outside 0..{n_samples - 1}; build folds on these samples")
        seen[te] += 1
    if (seen > 1).any():
        raise ConfigError("a sample is in the test part of two folds; give disjoint test parts")
    return folds


def check_tuning_args(stages: Sequence[Mapping[str, Sequence[Any]]], cv: int, scoring: str) -> None:
    """The checks every tuning method makes first: at least one stage, cv >= 2, a known scorer."""
    if not stages:
        raise ConfigError("no tuning stage given; give at least one, e.g. [{'max_features': ['sqrt']}]")
    if cv < 2:
        raise ConfigError(f"cv={cv} folds; cross-validation needs cv >= 2")
    check_scoring_name(scoring)


def check_scoring_name(scoring: str) -> None:
    """Raise :class:`ConfigError` when ``scoring`` is not a scikit-learn scorer name."""
    if scoring not in get_scorer_names():
        raise ConfigError(
            f"scoring {scoring!r} is not a scikit-learn scorer; use e.g. 'f1_macro' or 'accuracy'"
        )
