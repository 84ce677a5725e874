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

import json
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
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import ParameterGrid, StratifiedKFold

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


def _evaluate_candidates(
    X: np.ndarray,
    y: np.ndarray,
    candidates: Sequence[Mapping[str, Any]],
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    scoring: str,
    random_state: int,
    n_jobs: int,
) -> Iterator[tuple[int, list[float], list[float]]]:
    """Yield ``(candidate index, fold scores, fold fit times)`` for every candidate, in order.

    Every (candidate, fold) fit is one task across ``n_jobs`` loky workers; results come back in order as
    they finish. This is the one place to change the evaluation scheme (e.g. one forest of the largest
    ``n_estimators`` per fold, scored by its tree prefixes, for the n_estimators axis).
    """
    n_folds = len(folds)
    tasks = (
        delayed(fit_and_score)(X, y, train, test, params, scoring, random_state, 1)
        for params in candidates
        for train, test in folds
    )
    parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
    scores: list[float] = []
    times: list[float] = []
    cand = 0
    for score, fit_time in parallel(tasks):
        scores.append(score)
        times.append(fit_time)
        if len(scores) == n_folds:
            yield cand, scores, times
            cand += 1
            scores, times = [], []


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
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
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

    stream = _evaluate_candidates(
        X,
        y,
        [{**fixed, **candidates[j]} for j in distinct],
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
    return stage, len(distinct) * n_folds


def tune_grid(
    X: Any,
    y: Any,
    stages: Sequence[Mapping[str, Sequence[Any]]],
    *,
    cv: int = 5,
    scoring: str = "f1_macro",
    random_state: int = 42,
    n_jobs: int = 2,
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
    callback : called once per candidate, in grid order, with ``dict(stage, candidate, params, mean_score,
        std_score, fold_scores, fit_time, duplicate_of)``; ``params`` include earlier stages' bests.
    progress : called with ``(candidates done, candidates in all stages)``.
    cv_splits : precomputed folds ``[(train_idx, test_idx), ...]`` (e.g. spatial blocks from
        :func:`lcmodel.spatial.cv_splits`) used instead of ``StratifiedKFold``; ``cv`` must equal their number.

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
    if not stages:
        raise ConfigError("no tuning stage given; give at least one, e.g. [{'max_features': ['sqrt']}]")
    if cv < 2:
        raise ConfigError(f"cv={cv} folds; cross-validation needs cv >= 2")
    check_scoring_name(scoring)
    Xa, ya = prepare_xy(X, y, cv)
    grids = [resolve_stage(stage, Xa.shape[1]) for stage in stages]
    folds = check_cv_splits(cv_splits, len(ya), cv) or list(
        StratifiedKFold(n_splits=cv, shuffle=False).split(Xa, ya)
    )
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
        stage, fits = _run_stage(
            i,
            grid,
            fixed,
            Xa,
            ya,
            folds,
            scoring=scoring,
            random_state=random_state,
            n_jobs=n_jobs,
            callback=callback,
            on_candidate=on_candidate,
        )
        n_fits += fits
        results.append(stage)
        fixed = {**fixed, **stage.best_params}

    last = results[-1]
    best_row = last.cv_table.iloc[int(last.cv_table["rank"].to_numpy().argmin())]
    return TuningResult(
        method="grid",
        best_params=fixed,
        best_score=float(best_row["mean_score"]),
        best_std=float(best_row["std_score"]),
        stages=results,
        scoring=scoring,
        cv=cv,
        n_candidates=total,
        elapsed_s=time.perf_counter() - start,
        n_fits=n_fits,
    )


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
