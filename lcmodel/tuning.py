"""Random-forest tuning: the notebook's staged grid search, as data.

The notebook tunes a ``RandomForestClassifier(random_state=42, bootstrap=True, oob_score=False)`` in two
stages with ``GridSearchCV(cv=5, scoring="f1_macro")``: stage 1 the tree-level parameters (``max_features``,
``max_depth``, ``min_samples_leaf``), stage 2 the forest-level ones (``n_estimators``, ``min_samples_split``,
``class_weight``) with the stage-1 best kept. :func:`tune_grid` does the same search and returns the same
best parameters and the same CV scores as GridSearchCV, with three differences:

* one level of parallelism only: the (candidate, fold) fits run across ``n_jobs`` loky workers and every
  forest inside uses one core (the notebook runs ``n_jobs`` forests of ``n_jobs`` threads each);
* ``X`` is converted once to float32 C-contiguous (what the forest would convert it to at every fit);
* candidates that are the same fit are evaluated once. ``max_features="sqrt"`` is 8 features for 64 bands,
  as is ``"n/8"``: the forest, seeded alike, grows identical trees. Such a candidate stays in the CV table,
  in grid order, with the scores of the first identical candidate and that candidate's number in
  ``duplicate_of``; ranks and the best candidate follow GridSearchCV (highest mean score, ties to the first
  candidate in grid order), so the duplicates change nothing but the time spent.

Grid order is scikit-learn's ``ParameterGrid`` order (parameter names sorted, the last name varying
fastest), so tie-breaking is exactly GridSearchCV's ``rank_test_score``.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.ensemble import RandomForestClassifier
from sklearn.ensemble._forest import (
    _generate_unsampled_indices,  # private: a tree's OOB rows, as sklearn
)
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import ParameterGrid, StratifiedKFold, StratifiedShuffleSplit

from lcmodel.config import TUNABLE_PARAMS
from lcmodel.errors import ConfigError, InputDataError, InsufficientDataError
from lcmodel.io import atomic_path, json_ready, write_json

__all__ = [
    "StageResult",
    "TuningResult",
    "TUNABLE_PARAMS",
    "resolve_stage",
    "make_forest",
    "tune_grid",
    "tune_halving",
    "write_tuning_outputs",
]

logger = logging.getLogger(__name__)

_N_FRACTION = re.compile(r"^n/(\d+)$")

#: Callback payload: one dict per candidate (see :func:`tune_grid`).
Callback = Callable[[dict[str, Any]], None]
Progress = Callable[[int, int], None]


@dataclass
class StageResult:
    """One tuning stage: its grid and the cross-validated score of every candidate.

    Attributes
    ----------
    index : stage number, 1-based (``best_params_stage1.json`` is stage 1).
    grid : parameter -> resolved candidate values ('n/16' already turned into an integer).
    cv_table : one row per candidate in grid order: ``candidate``, one column per parameter,
        ``mean_score``, ``std_score``, ``split0..split{k-1}``, ``fit_time`` (mean seconds per fold fit),
        ``rank`` (GridSearchCV's ``rank_test_score``) and ``duplicate_of`` (the candidate whose fits were
        reused, or -1). The Optuna variant adds ``trial`` and ``state``.
    best_params : the best candidate's values of this stage's parameters only.
    best_score : its mean CV score.
    """

    index: int
    grid: dict[str, list[Any]]
    cv_table: pd.DataFrame
    best_params: dict[str, Any]
    best_score: float


@dataclass
class TuningResult:
    """The outcome of a tuning run (grid or Optuna).

    Attributes
    ----------
    method : "grid" or "optuna".
    best_params : every tuned parameter (later stages keep the earlier stages' bests).
    best_score, best_std : mean and standard deviation over the folds of the best candidate's CV score.
    stages : one :class:`StageResult` per stage (Optuna: one, holding the trials).
    scoring : scikit-learn scorer name.
    cv : number of stratified folds.
    n_candidates : candidates (grid) or trials (Optuna) scored, duplicates included.
    elapsed_s : wall-clock seconds.
    n_fits : forests actually fitted (duplicates and cache hits excluded).
    """

    method: str
    best_params: dict[str, Any]
    best_score: float
    best_std: float
    stages: list[StageResult]
    scoring: str
    cv: int
    n_candidates: int
    elapsed_s: float
    n_fits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the ``cv`` part of ``metrics.json``; see ``lcmodel.evaluate``).

        Returns
        -------
        dict
            ``method, scoring, folds, best_score, best_std, best_params, n_candidates, n_fits, elapsed_s``
            and ``stages``: one ``{index, grid, best_params, best_score, n_candidates, n_distinct}`` per
            stage (``n_pruned`` too for Optuna). ``assemble_metrics`` accepts it back after a JSON round trip.
        """
        stages = []
        for stage in self.stages:
            table = stage.cv_table
            entry: dict[str, Any] = {
                "index": stage.index,
                "grid": stage.grid,
                "best_params": stage.best_params,
                "best_score": stage.best_score,
                "n_candidates": int(len(table)),
            }
            if "duplicate_of" in table:
                entry["n_distinct"] = int((table["duplicate_of"] < 0).sum())
            if "state" in table:
                entry["n_pruned"] = int((table["state"] == "PRUNED").sum())
            stages.append(entry)
        return json_ready(
            {
                "method": self.method,
                "scoring": self.scoring,
                "folds": self.cv,
                "best_score": self.best_score,
                "best_std": self.best_std,
                "best_params": self.best_params,
                "n_candidates": self.n_candidates,
                "n_fits": self.n_fits,
                "elapsed_s": self.elapsed_s,
                "stages": stages,
                "score_on": self.extra.get("score_on", "cv"),
            }
        )

    def best_estimator_params(self, random_state: int, *, n_jobs: int | None = 1) -> dict[str, Any]:
        """Full ``RandomForestClassifier`` keyword arguments of the tuned model.

        Parameters
        ----------
        random_state : seed of the forest (the run's ``random_state``).
        n_jobs : threads of the forest.

        Returns
        -------
        dict
            ``RandomForestClassifier(**result.best_estimator_params(42))`` is the tuned, unfitted model.
        """
        return make_forest(self.best_params, random_state=random_state, n_jobs=n_jobs).get_params()


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
    grid stays GridSearchCV's grid, and :func:`tune_grid` evaluates identical candidates once).

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


def effective_key(params: Mapping[str, Any], n_features: int) -> tuple[tuple[str, str], ...]:
    """A hashable key equal for candidates that grow identical forests (used to skip duplicate fits)."""
    items = []
    for name in sorted(params):
        value = params[name]
        if name == "max_features":
            value = _effective_max_features(value, n_features)
        items.append((name, repr(value)))
    return tuple(items)


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


def fit_and_score(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    params: Mapping[str, Any],
    scoring: str,
    random_state: int,
    n_jobs: int | None = 1,
) -> tuple[float, float]:
    """Fit one forest on a fold's training rows and score it on the fold's test rows.

    Returns
    -------
    (score, fit_seconds)
    """
    forest = make_forest(params, random_state=random_state, n_jobs=n_jobs)
    start = time.perf_counter()
    forest.fit(X[train], y[train])
    fit_time = time.perf_counter() - start
    score = float(get_scorer(scoring)(forest, X[test], y[test]))
    return score, fit_time


def _label_scorer(scoring: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """``(y_true, y_pred) -> score`` of a label-based scikit-learn scorer (for out-of-bag scoring).

    Out-of-bag predictions exist only as probabilities per row, not as an estimator that a scorer can call, so
    the scorer's own metric function is applied to the labels (argmax of the OOB probabilities).

    Raises
    ------
    ConfigError
        The scorer needs probabilities or decision values (e.g. ``roc_auc_ovr``).
    """
    scorer = get_scorer(scoring)
    if getattr(scorer, "_response_method", None) != "predict":
        raise ConfigError(
            f"scoring {scoring!r} needs probabilities or decision values; tuning.score_on 'oob' supports "
            "label scorers such as 'f1_macro' or 'accuracy'; use score_on 'cv' for this scorer"
        )
    func, sign, kwargs = scorer._score_func, scorer._sign, dict(scorer._kwargs)

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(sign * func(y_true, y_pred, **kwargs))

    return score


def _prefix_forest(forest: RandomForestClassifier, k: int) -> RandomForestClassifier:
    """The forest of the first ``k`` trees of a fitted ``forest`` (shares the trees; nothing is refitted).

    With a fixed ``random_state`` this IS the forest ``make_forest({..., n_estimators: k})`` would fit.
    scikit-learn 1.9 ``BaseForest.fit`` (sklearn/ensemble/_forest.py, lines 431-459) builds
    ``random_state = check_random_state(self.random_state)`` and then
    ``trees = [self._make_estimator(append=False, random_state=random_state) for i in range(n)]``;
    ``_make_estimator`` -> ``_set_random_states`` (sklearn/ensemble/_base.py, lines 77-81) draws one
    ``random_state.randint(np.iinfo(np.int32).max)`` per tree, in order. Tree ``i``'s seed is therefore the
    ``i``-th draw of ``RandomState(random_state)`` whatever ``n_estimators`` is, and everything a tree depends
    on is a function of that seed and of the data: its bootstrap rows (``_generate_sample_indices(
    tree.random_state, n_samples, n_samples_bootstrap, sample_weight)``, _forest.py lines 150-155, where
    ``n_samples_bootstrap`` depends on ``max_samples`` and ``sample_weight`` is the 'balanced' class weight
    of ``y``, lines 398-424: neither depends on ``n_estimators``), its ``balanced_subsample`` weights
    (computed from those rows, lines 157-161) and its split search. ``predict_proba`` of the prefix forest
    (``n_jobs=1``) sums the trees' probabilities in order and divides by ``k`` (lines 950-962), as the
    ``k``-tree forest does.
    ``tests/test_tuning.py`` checks both claims.
    """
    sub = copy.copy(forest)
    sub.estimators_ = forest.estimators_[:k]
    sub.n_estimators = k
    return sub


def _oob_prefix_scores(
    forest: RandomForestClassifier,
    X: np.ndarray,
    y: np.ndarray,
    n_list: Sequence[int],
    score: Callable[[np.ndarray, np.ndarray], float],
) -> list[float]:
    """Out-of-bag score of the first ``k`` trees of ``forest`` for every ``k`` in ``n_list`` (ascending).

    The out-of-bag probabilities are accumulated tree by tree exactly as scikit-learn's
    ``_compute_oob_predictions`` does (sum of per-tree probabilities over the trees that did not draw the row,
    divided by their count), so at ``k = n_estimators`` they equal ``oob_decision_function_``. The score is
    the label scorer on the argmax class; rows that no tree left out are excluded.
    """
    n_samples = X.shape[0]
    # what the forest's own OOB code passes (sklearn 1.9 _forest.py lines 575-581): the bootstrap size and the
    # class weights that draw weighted bootstrap rows ('balanced')
    n_boot, weights = forest._n_samples_bootstrap, forest._sample_weight
    acc = np.zeros((n_samples, len(forest.classes_)), dtype=np.float64)
    count = np.zeros(n_samples, dtype=np.int64)
    wanted = set(n_list)
    out: dict[int, float] = {}
    for i, tree in enumerate(forest.estimators_, start=1):
        rows = _generate_unsampled_indices(tree.random_state, n_samples, n_boot, weights)
        acc[rows] += tree.predict_proba(X[rows], check_input=False)
        count[rows] += 1
        if i in wanted:
            seen = count > 0
            proba = acc[seen] / count[seen, np.newaxis]
            pred = forest.classes_.take(np.argmax(proba, axis=1), axis=0)
            out[i] = score(y[seen], pred)
    return [out[k] for k in n_list]


def fit_and_score_prefixes(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray | None,
    params: Mapping[str, Any],
    n_list: Sequence[int],
    scoring: str,
    random_state: int,
) -> tuple[list[float], float]:
    """Fit ONE forest of ``max(n_list)`` trees and score its first ``k`` trees for every ``k`` in ``n_list``.

    Parameters
    ----------
    X, y : the whole (float32 C-contiguous) training data.
    train : rows to fit on.
    test : rows to score on (cross-validation), or None: score out of bag on ``train``.
    params : forest parameters (``n_estimators`` is replaced by ``max(n_list)``).
    n_list : ascending tree counts to score.
    scoring : scikit-learn scorer name.
    random_state : seed of the forest.

    Returns
    -------
    (scores, fit_seconds)
        One score per entry of ``n_list``; the seconds of the one fit.
    """
    forest = make_forest({**params, "n_estimators": max(n_list)}, random_state=random_state, n_jobs=1)
    Xt, yt = X[train], y[train]
    start = time.perf_counter()
    forest.fit(Xt, yt)
    fit_time = time.perf_counter() - start
    if test is None:
        return _oob_prefix_scores(forest, Xt, yt, n_list, _label_scorer(scoring)), fit_time
    scorer = get_scorer(scoring)
    Xs, ys = X[test], y[test]
    return [float(scorer(_prefix_forest(forest, k), Xs, ys)) for k in n_list], fit_time


def _group_by_n_estimators(
    candidates: Sequence[Mapping[str, Any]],
) -> list[tuple[dict[str, Any], list[int], list[list[int]]]]:
    """Group candidates that differ only in ``n_estimators``.

    Returns ``(params without n_estimators, ascending distinct tree counts, candidate indices per count)`` per
    group, groups in order of their first candidate.
    """
    groups: dict[str, tuple[dict[str, Any], dict[int, list[int]]]] = {}
    for j, params in enumerate(candidates):
        rest = {k: v for k, v in params.items() if k != "n_estimators"}
        n = int(params.get("n_estimators", 100))
        key = repr(sorted((k, repr(v)) for k, v in rest.items()))
        groups.setdefault(key, (rest, {}))[1].setdefault(n, []).append(j)
    out = []
    for rest, by_n in groups.values():
        ns = sorted(by_n)
        out.append((rest, ns, [by_n[n] for n in ns]))
    return out


def _evaluate_candidates(
    X: np.ndarray,
    y: np.ndarray,
    candidates: Sequence[Mapping[str, Any]],
    folds: Sequence[tuple[np.ndarray, np.ndarray | None]],
    *,
    scoring: str,
    random_state: int,
    n_jobs: int,
) -> Iterator[tuple[int, list[float], list[float]]]:
    """Yield ``(candidate index, fold scores, fold fit times)`` for every candidate (in group order).

    Candidates that differ only in ``n_estimators`` share one forest per fold: the forest of the largest
    ``n_estimators`` is fitted and each candidate is scored with its first ``n_estimators`` trees (see
    :func:`_prefix_forest`), which is the forest a separate fit would grow. Every (group, fold) fit is one
    task across ``n_jobs`` loky workers, each forest on one core. ``X`` is one float32 C-contiguous array;
    loky memory-maps it once for all the workers (``max_nbytes="100K"``: any table over ~400 rows of 64
    bands), so it is not pickled per task; each task copies only its fold's rows, as GridSearchCV does.
    A fold whose test rows are None is scored out of bag on its training rows. The fit time reported for a
    candidate is the time of its group's one fit.
    """
    n_folds = len(folds)
    groups = _group_by_n_estimators(candidates)
    tasks = (
        delayed(fit_and_score_prefixes)(X, y, train, test, rest, ns, scoring, random_state)
        for rest, ns, _ in groups
        for train, test in folds
    )
    parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator", max_nbytes="100K")
    per_fold: list[tuple[list[float], float]] = []
    g = 0
    for result in parallel(tasks):
        per_fold.append(result)
        if len(per_fold) == n_folds:
            _, ns, members = groups[g]
            times = [t for _, t in per_fold]
            for i in range(len(ns)):
                scores = [s[i] for s, _ in per_fold]
                for j in members[i]:
                    yield j, scores, times
            g += 1
            per_fold = []


def _rank(means: np.ndarray) -> np.ndarray:
    """GridSearchCV's ``rank_test_score`` (NaN counts as tied with the worst)."""
    if np.isnan(means).all():
        return np.ones_like(means, dtype=np.int32)
    filled = np.nan_to_num(means, nan=np.nanmin(means) - 1)
    return rankdata(-filled, method="min").astype(np.int32)


def _mean_std(fold_scores: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation exactly as GridSearchCV computes them."""
    arr = np.asarray(fold_scores, dtype=np.float64)[np.newaxis, :]
    mean = np.average(arr, axis=1)
    std = np.sqrt(np.average((arr - mean[:, np.newaxis]) ** 2, axis=1))
    return float(mean[0]), float(std[0])


def _run_stage(
    index: int,
    grid: dict[str, list[Any]],
    fixed: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray | None]],
    *,
    scoring: str,
    random_state: int,
    n_jobs: int,
    callback: Callback | None,
    on_candidate: Callable[[], None],
) -> tuple[StageResult, int]:
    candidates = list(ParameterGrid(grid))
    n_features = X.shape[1]
    first_of: dict[tuple[tuple[str, str], ...], int] = {}
    duplicate_of: list[int] = []
    distinct: list[int] = []
    for j, params in enumerate(candidates):
        key = effective_key({**fixed, **params}, n_features)
        if key in first_of:
            duplicate_of.append(first_of[key])
        else:
            first_of[key] = j
            duplicate_of.append(-1)
            distinct.append(j)
    if len(distinct) < len(candidates):
        logger.info(
            "stage %d: %d candidates, %d distinct fits (duplicates reuse the first identical candidate)",
            index,
            len(candidates),
            len(distinct),
        )
    n_folds = len(folds)
    fold_scores: list[list[float] | None] = [None] * len(candidates)
    fit_times: list[float] = [float("nan")] * len(candidates)
    reported = 0

    def report_ready() -> None:
        # report candidates in grid order as soon as their scores are known
        nonlocal reported
        while reported < len(candidates):
            j = reported
            src = duplicate_of[j] if duplicate_of[j] >= 0 else j
            if fold_scores[src] is None:
                return
            fold_scores[j] = fold_scores[src]
            fit_times[j] = fit_times[src]
            mean, std = _mean_std(fold_scores[j])  # type: ignore[arg-type]
            if callback is not None:
                callback(
                    {
                        "stage": index,
                        "candidate": j,
                        "params": {**fixed, **candidates[j]},
                        "mean_score": mean,
                        "std_score": std,
                        "fold_scores": list(fold_scores[j]),  # type: ignore[arg-type]
                        "fit_time": fit_times[j],
                        "duplicate_of": None if duplicate_of[j] < 0 else duplicate_of[j],
                    }
                )
            on_candidate()
            reported += 1

    distinct_params = [{**fixed, **candidates[j]} for j in distinct]
    stream = _evaluate_candidates(
        X,
        y,
        distinct_params,
        folds,
        scoring=scoring,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    for k, scores, times in stream:
        j = distinct[k]
        fold_scores[j] = scores
        fit_times[j] = float(np.mean(times))
        report_ready()
    report_ready()

    scores_arr = np.array(fold_scores, dtype=np.float64).reshape(len(candidates), n_folds)
    means = np.average(scores_arr, axis=1)
    stds = np.sqrt(np.average((scores_arr - means[:, np.newaxis]) ** 2, axis=1))
    ranks = _rank(means)
    best = int(ranks.argmin())

    table = pd.DataFrame({"candidate": np.arange(len(candidates))})
    for name in sorted(grid):
        table[name] = pd.Series([c[name] for c in candidates], dtype=object)
    table["mean_score"] = means
    table["std_score"] = stds
    for f in range(n_folds):
        table[f"split{f}"] = scores_arr[:, f]
    table["fit_time"] = fit_times
    table["rank"] = ranks
    table["duplicate_of"] = duplicate_of
    stage = StageResult(
        index=index,
        grid=grid,
        cv_table=table,
        best_params=dict(candidates[best]),
        best_score=float(means[best]),
    )
    logger.info(
        "stage %d best %s = %.4f (+/- %.4f)", index, stage.best_params, means[best], stds[best]
    )
    return stage, len(_group_by_n_estimators(distinct_params)) * n_folds




def _run_stages(
    grids: list[dict[str, list[Any]]],
    run_one: Callable[[int, dict[str, list[Any]], dict[str, Any], Callable[[], None]], tuple[StageResult, int]],
    progress: Progress | None,
) -> tuple[list[StageResult], dict[str, Any], int, int]:
    """Run the stages in order, each with the best values of the earlier ones fixed.

    Returns the stage results, the merged best parameters, the number of fits and of candidates.
    ``progress(done, total)`` counts candidates over all stages.
    """
    total = sum(len(ParameterGrid(g)) for g in grids)
    done = 0

    def on_candidate() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    results: list[StageResult] = []
    fixed: dict[str, Any] = {}
    n_fits = 0
    for i, grid in enumerate(grids, start=1):
        stage, fits = run_one(i, grid, fixed, on_candidate)
        n_fits += fits
        results.append(stage)
        fixed = {**fixed, **stage.best_params}
    return results, fixed, n_fits, total

def _staged_result(
    method: str,
    stages: list[StageResult],
    best_params: dict[str, Any],
    *,
    scoring: str,
    cv: int,
    n_candidates: int,
    start: float,
    n_fits: int,
    extra: dict[str, Any],
) -> TuningResult:
    """The result of staged tuning: the merged best parameters, scored by the last stage's best row."""
    last = stages[-1]
    best_row = last.cv_table.iloc[int(last.cv_table["rank"].to_numpy().argmin())]
    return TuningResult(
        method=method,
        best_params=best_params,
        best_score=float(best_row["mean_score"]),
        best_std=float(best_row["std_score"]),
        stages=stages,
        scoring=scoring,
        cv=cv,
        n_candidates=n_candidates,
        elapsed_s=time.perf_counter() - start,
        n_fits=n_fits,
        extra=extra,
    )

def tune_grid(
    X: Any,
    y: Any,
    stages: Sequence[Mapping[str, Sequence[Any]]],
    *,
    cv: int = 5,
    scoring: str = "f1_macro",
    random_state: int = 42,
    n_jobs: int = 2,
    score_on: str = "cv",
    callback: Callback | None = None,
    progress: Progress | None = None,
    cv_splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> TuningResult:
    """Staged grid search of a random forest, as the notebook does it (and as fast as it exactly can).

    Stage ``i`` searches its grid with the best values of stages ``1..i-1`` fixed. Folds are
    ``StratifiedKFold(n_splits=cv, shuffle=False)`` (what ``GridSearchCV(cv=cv)`` uses for a classifier), so
    best parameters and CV scores equal GridSearchCV's on the same grid.

    Parameters
    ----------
    X : array-like (samples, bands); converted once to float32 C-contiguous.
    y : array-like (samples,) of class values.
    stages : sequence of ``{parameter: [candidates]}`` (e.g. ``lcmodel.config.DEFAULT_STAGES``).
    cv : number of stratified folds.
    scoring : scikit-learn scorer name.
    random_state : seed of every forest.
    n_jobs : loky workers over the (candidate, fold) fits; each forest uses one core.
    score_on : "cv" (``cv`` stratified folds, GridSearchCV's scores) or "oob": each candidate is fitted once
        on all rows and scored on its out-of-bag predictions (about ``cv`` times fewer fits; the CV table
        then has one split, ``split0``, the OOB score).
    callback : called once per candidate, in grid order, with ``dict(stage, candidate, params, mean_score,
        std_score, fold_scores, fit_time, duplicate_of)``; ``params`` include earlier stages' bests.
    progress : called with ``(candidates done, candidates in all stages)``.
    cv_splits : precomputed folds ``[(train_idx, test_idx), ...]`` (e.g. spatial blocks from
        :func:`lcmodel.accuracy.cv_splits`) used instead of ``StratifiedKFold``; ``cv`` must equal their number.

    Returns
    -------
    TuningResult
        ``method="grid"``; identical for identical inputs (timings aside).

    Raises
    ------
    ConfigError
        No stage, unknown parameter or scorer, unusable ``max_features``.
    InsufficientDataError
        A class has fewer samples than ``cv``.
    """
    start = time.perf_counter()
    check_tuning_args(stages, cv, scoring)
    _check_score_on(score_on, scoring)
    Xa, ya = prepare_xy(X, y, cv if score_on == "cv" else 1)
    grids = [resolve_stage(stage, Xa.shape[1]) for stage in stages]
    # precomputed folds (e.g. spatial) when given; out-of-bag scoring needs no folds
    given = None if score_on == "oob" else check_cv_splits(cv_splits, len(ya), cv)
    folds = given or _folds(Xa, ya, cv, score_on)
    def run_one(i: int, grid: dict[str, list[Any]], fixed: dict[str, Any],
                on_candidate: Callable[[], None]) -> tuple[StageResult, int]:
        return _run_stage(i, grid, fixed, Xa, ya, folds, scoring=scoring, random_state=random_state,
                          n_jobs=n_jobs, callback=callback, on_candidate=on_candidate)

    results, fixed, n_fits, total = _run_stages(grids, run_one, progress)
    return _staged_result("grid", results, fixed, scoring=scoring, cv=cv, n_candidates=total, start=start,
                          n_fits=n_fits, extra={"score_on": score_on})


def _check_score_on(score_on: str, scoring: str) -> None:
    if score_on not in ("cv", "oob"):
        raise ConfigError(f"score_on {score_on!r} is not known; use 'cv' or 'oob'")
    if score_on == "oob":
        _label_scorer(scoring)


def _folds(
    X: np.ndarray, y: np.ndarray, cv: int, score_on: str
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """GridSearchCV's folds (``StratifiedKFold(cv, shuffle=False)``), or all rows once for OOB scoring."""
    if score_on == "oob":
        return [(np.arange(len(y)), None)]
    return list(StratifiedKFold(n_splits=cv, shuffle=False).split(X, y))


def _halving_schedule(n_samples: int, n_candidates: int, factor: int, min_resources: int) -> list[int]:
    """Sample counts per round: the last round uses every row, each earlier one ``factor`` times fewer.

    As HalvingGridSearchCV's ``min_resources="exhaust"``: as many rounds as it takes to bring the candidates
    down to one (``1 + floor(log_factor(n_candidates))``), fewer when the first round would hold fewer than
    ``min_resources`` rows.
    """
    n_rounds = 1 + int(math.floor(math.log(max(n_candidates, 1), factor) + 1e-9))
    rounds = [n_samples]
    while len(rounds) < n_rounds and rounds[0] // factor >= min_resources:
        rounds.insert(0, rounds[0] // factor)
    return rounds


def _stratified_subset(y: np.ndarray, n: int, random_state: int) -> np.ndarray:
    """Sorted row indices of a seeded stratified subsample of ``n`` rows (all rows when ``n >= len(y)``)."""
    if n >= len(y):
        return np.arange(len(y))
    split = StratifiedShuffleSplit(n_splits=1, train_size=n, random_state=random_state)
    rows, _ = next(split.split(np.zeros((len(y), 1)), y))
    return np.sort(rows)


def _run_halving_stage(
    index: int,
    grid: dict[str, list[Any]],
    fixed: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    *,
    cv: int,
    score_on: str,
    factor: int,
    scoring: str,
    random_state: int,
    n_jobs: int,
    callback: Callback | None,
    on_candidate: Callable[[], None],
    cv_splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[StageResult, int]:
    candidates = list(ParameterGrid(grid))
    n_features = X.shape[1]
    first_of: dict[tuple[tuple[str, str], ...], int] = {}
    duplicate_of: list[int] = []
    for j, params in enumerate(candidates):
        key = effective_key({**fixed, **params}, n_features)
        duplicate_of.append(first_of.get(key, -1))
        first_of.setdefault(key, j)
    distinct = [j for j in range(len(candidates)) if duplicate_of[j] < 0]
    _, counts = np.unique(y, return_counts=True)
    need = cv if score_on == "cv" else 2  # rows of the rarest class a round must keep
    min_resources = int(math.ceil(need * len(y) / counts.min())) + len(counts)
    schedule = _halving_schedule(len(y), len(distinct), factor, min_resources)
    n_cols = cv if score_on == "cv" else 1
    last_scores: dict[int, list[float]] = {}
    last_time: dict[int, float] = {}
    reached: dict[int, int] = {}
    alive = list(distinct)
    n_fits = 0
    for it, n_rows in enumerate(schedule):
        rows = _stratified_subset(y, n_rows, random_state)
        folds: list[tuple[np.ndarray, np.ndarray | None]]
        if cv_splits is not None and score_on == "cv":
            # precomputed folds (e.g. spatial blocks): each keeps its rows that are in this round's subset
            kept = [(np.intersect1d(tr, rows), np.intersect1d(te, rows)) for tr, te in cv_splits]
            folds = [(tr, te) for tr, te in kept if len(tr) and len(te)]
        else:
            folds = [
                (rows[tr], None if te is None else rows[te])
                for tr, te in _folds(X[rows], y[rows], cv, score_on)
            ]
        params = [{**fixed, **candidates[j]} for j in alive]
        for k, scores, times in _evaluate_candidates(
            X, y, params, folds, scoring=scoring, random_state=random_state, n_jobs=n_jobs
        ):
            last_scores[alive[k]], last_time[alive[k]], reached[alive[k]] = scores, float(np.mean(times)), it
        n_fits += len(_group_by_n_estimators(params)) * len(folds)
        means = {j: _mean_std(last_scores[j])[0] for j in alive}
        logger.info(
            "stage %d halving round %d: %d candidates on %d rows, best %.4f",
            index, it, len(alive), n_rows, max(means.values()),
        )
        if it < len(schedule) - 1:
            order = sorted(alive, key=lambda j: (-np.nan_to_num(means[j], nan=-np.inf), j))
            alive = sorted(order[: int(math.ceil(len(alive) / factor))])

    n = len(candidates)
    src = [j if duplicate_of[j] < 0 else duplicate_of[j] for j in range(n)]
    scores_arr = np.array([last_scores[src[j]] for j in range(n)], dtype=np.float64).reshape(n, n_cols)
    mean_arr = np.average(scores_arr, axis=1)
    std_arr = np.sqrt(np.average((scores_arr - mean_arr[:, np.newaxis]) ** 2, axis=1))
    iteration = np.array([reached[src[j]] for j in range(n)])
    # later rounds rank first; within a round the highest mean; ties share the lower rank
    filled = np.nan_to_num(mean_arr, nan=-np.inf)
    order = sorted(range(n), key=lambda j: (-iteration[j], -filled[j], j))
    ranks = np.empty(n, dtype=np.int32)
    for pos, j in enumerate(order):
        prev = order[pos - 1] if pos else None
        tie = prev is not None and (iteration[prev], filled[prev]) == (iteration[j], filled[j])
        ranks[j] = ranks[prev] if tie else pos + 1
    best = order[0]

    table = pd.DataFrame({"candidate": np.arange(n)})
    for name in sorted(grid):
        table[name] = pd.Series([c[name] for c in candidates], dtype=object)
    table["mean_score"] = mean_arr
    table["std_score"] = std_arr
    for f in range(n_cols):
        table[f"split{f}"] = scores_arr[:, f]
    table["fit_time"] = [last_time[src[j]] for j in range(n)]
    table["iteration"] = iteration
    table["n_resources"] = [schedule[i] for i in iteration]
    table["rank"] = ranks
    table["duplicate_of"] = duplicate_of
    for j in range(n):
        if callback is not None:
            callback(
                {
                    "stage": index,
                    "candidate": j,
                    "params": {**fixed, **candidates[j]},
                    "mean_score": float(mean_arr[j]),
                    "std_score": float(std_arr[j]),
                    "fold_scores": [float(v) for v in scores_arr[j]],
                    "fit_time": float(table["fit_time"].iloc[j]),
                    "duplicate_of": None if duplicate_of[j] < 0 else duplicate_of[j],
                    "iteration": int(iteration[j]),
                    "n_resources": int(schedule[iteration[j]]),
                }
            )
        on_candidate()
    stage = StageResult(
        index=index,
        grid=grid,
        cv_table=table,
        best_params=dict(candidates[best]),
        best_score=float(mean_arr[best]),
    )
    logger.info("stage %d halving best %s = %.4f", index, stage.best_params, mean_arr[best])
    return stage, n_fits


def tune_halving(
    X: Any,
    y: Any,
    stages: Sequence[Mapping[str, Sequence[Any]]],
    *,
    factor: int = 3,
    cv: int = 5,
    scoring: str = "f1_macro",
    random_state: int = 42,
    n_jobs: int = 2,
    score_on: str = "cv",
    callback: Callback | None = None,
    progress: Progress | None = None,
    cv_splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> TuningResult:
    """Staged successive halving: each stage's grid, with training rows as the resource.

    In each stage, round ``i`` scores the remaining distinct candidates on a seeded stratified subsample of
    the training rows (``factor`` times more rows each round, all rows in the last round) and keeps the best
    ``ceil(n / factor)``; the best of the last round wins (ties to grid order). Rounds are as many as
    HalvingGridSearchCV's ``min_resources="exhaust"`` would use, fewer when the first round would keep fewer
    than ``cv`` rows (2 for OOB) of the rarest class. Scoring (``score_on``), the n_estimators single-fit
    trick and the parallelism are those of :func:`tune_grid`.

    Parameters
    ----------
    X, y, stages, cv, scoring, random_state, n_jobs, score_on, progress
        As :func:`tune_grid`.
    cv_splits : precomputed folds over all rows (e.g. spatial blocks); each round keeps, per fold, the rows
        in its subset. None: stratified folds of each round's subset.
    factor : candidates kept per round: ``1 / factor``; rows grow ``factor`` times per round (>= 2).
    callback : as :func:`tune_grid`, called at the end of each stage; the payload adds ``iteration`` (the
        last round the candidate reached) and ``n_resources`` (its rows); the scores are that round's.

    Returns
    -------
    TuningResult
        ``method="halving"``; the CV tables add ``iteration`` and ``n_resources``; ``rank`` puts candidates
        of later rounds first. Deterministic for identical inputs.

    Raises
    ------
    ConfigError, InsufficientDataError
        As :func:`tune_grid`; ``factor`` below 2.
    """
    start = time.perf_counter()
    check_tuning_args(stages, cv, scoring)
    if factor < 2:
        raise ConfigError(f"halving factor {factor} keeps every candidate; give tuning.halving_factor >= 2")
    _check_score_on(score_on, scoring)
    Xa, ya = prepare_xy(X, y, cv if score_on == "cv" else 1)
    checked_splits = None if score_on == "oob" else check_cv_splits(cv_splits, len(ya), cv)
    grids = [resolve_stage(stage, Xa.shape[1]) for stage in stages]
    def run_one(i: int, grid: dict[str, list[Any]], fixed: dict[str, Any],
                on_candidate: Callable[[], None]) -> tuple[StageResult, int]:
        return _run_halving_stage(
            i, grid, fixed, Xa, ya, cv=cv, score_on=score_on, factor=factor, scoring=scoring,
            random_state=random_state, n_jobs=n_jobs, callback=callback, on_candidate=on_candidate,
            cv_splits=checked_splits,
        )

    results, fixed, n_fits, total = _run_stages(grids, run_one, progress)
    return _staged_result("halving", results, fixed, scoring=scoring, cv=cv, n_candidates=total, start=start,
                          n_fits=n_fits, extra={"score_on": score_on, "factor": factor})


def write_tuning_outputs(result: TuningResult, out_dir: Path | str) -> list[Path]:
    """Write ``best_params_stage{i}.json``, ``cv_results_stage{i}.csv`` and ``best_params.json``.

    The stage files hold that stage's own best values (the notebook's ``best_params1``/``best_params2``);
    ``best_params.json`` holds all tuned parameters. Every file is written atomically.

    Returns
    -------
    list of Path
        The files written, stage files first.
    """
    out = Path(out_dir)
    paths: list[Path] = []
    for stage in result.stages:
        paths.append(write_json(stage.best_params, out / f"best_params_stage{stage.index}.json"))
        csv_path = out / f"cv_results_stage{stage.index}.csv"
        with atomic_path(csv_path) as tmp:
            stage.cv_table.to_csv(tmp, index=False)
        paths.append(csv_path)
    paths.append(write_json(result.best_params, out / "best_params.json"))
    return paths
