"""Scoring candidates: one fit per fold, the n_estimators single-fit trick, out-of-bag scores, ranks.

Candidates that differ only in ``n_estimators`` share one forest per fold: the forest of the largest
``n_estimators`` is fitted and each candidate is scored with its first ``n_estimators`` trees
(:func:`lcmodel.tuning._sklearn.prefix_forest`), which is the forest a separate fit would grow. With out-of-bag
scoring (``score_on="oob"``) a fold's test rows are None and the forest is scored on the rows each tree left
out, as scikit-learn's ``oob_score_`` does. Means, standard deviations and ranks are GridSearchCV's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from joblib import Parallel, delayed, parallel_config
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedKFold

from lcmodel.errors import ConfigError
from lcmodel.processes import die_with_parent
from lcmodel.tuning._sklearn import prefix_forest, scorer_metric, scorer_response_method, unsampled_rows
from lcmodel.tuning.candidates import make_forest

#: A fold: (training rows, test rows), or (training rows, None) to score out of bag on the training rows.
Fold = tuple[np.ndarray, np.ndarray | None]


def stratified_folds(X: np.ndarray, y: np.ndarray, cv: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """GridSearchCV's folds for a classifier: ``StratifiedKFold(cv, shuffle=False)``."""
    return list(StratifiedKFold(n_splits=cv, shuffle=False).split(X, y))


def cv_folds(X: np.ndarray, y: np.ndarray, cv: int, score_on: str) -> list[Fold]:
    """GridSearchCV's folds (:func:`stratified_folds`), or all rows once for OOB scoring (``score_on="oob"``)."""
    if score_on == "oob":
        return [(np.arange(len(y)), None)]
    return list(stratified_folds(X, y, cv))


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


def label_scorer(scoring: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """``(y_true, y_pred) -> score`` of a label-based scikit-learn scorer (for out-of-bag scoring).

    Out-of-bag predictions exist only as probabilities per row, not as an estimator that a scorer can call, so
    the scorer's own metric function is applied to the labels (argmax of the OOB probabilities).

    Raises
    ------
    ConfigError
        The scorer needs probabilities or decision values (e.g. ``roc_auc_ovr``).
    """
    scorer = get_scorer(scoring)
    if scorer_response_method(scorer) != "predict":
        raise ConfigError(
            f"scoring {scoring!r} needs probabilities or decision values; tuning.score_on 'oob' supports "
            "label scorers such as 'f1_macro' or 'accuracy'; use score_on 'cv' for this scorer"
        )
    func, sign, kwargs = scorer_metric(scorer)

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(sign * func(y_true, y_pred, **kwargs))

    return score


def check_score_on(score_on: str, scoring: str) -> None:
    """``score_on`` is "cv" or "oob", and out-of-bag scoring has a label scorer.

    Raises
    ------
    ConfigError
        Unknown ``score_on``; ``"oob"`` with a scorer that needs probabilities.
    """
    if score_on not in ("cv", "oob"):
        raise ConfigError(f"score_on {score_on!r} is not known; use 'cv' or 'oob'")
    if score_on == "oob":
        label_scorer(scoring)


def oob_prefix_scores(
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
    acc = np.zeros((n_samples, len(forest.classes_)), dtype=np.float64)
    count = np.zeros(n_samples, dtype=np.int64)
    wanted = set(n_list)
    out: dict[int, float] = {}
    for i, tree in enumerate(forest.estimators_, start=1):
        rows = unsampled_rows(forest, tree, n_samples)
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
        return oob_prefix_scores(forest, Xt, yt, n_list, label_scorer(scoring)), fit_time
    scorer = get_scorer(scoring)
    Xs, ys = X[test], y[test]
    return [float(scorer(prefix_forest(forest, k), Xs, ys)) for k in n_list], fit_time


def group_by_n_estimators(
    candidates: Sequence[Mapping[str, Any]],
) -> list[tuple[dict[str, Any], list[int], list[list[int]]]]:
    """Group candidates that differ only in ``n_estimators``.

    Returns ``(params without n_estimators, ascending distinct tree counts, candidate indices per count)`` per
    group, groups in order of their first candidate. Each group is one fit per fold.
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


def evaluate_candidates(
    X: np.ndarray,
    y: np.ndarray,
    candidates: Sequence[Mapping[str, Any]],
    folds: Sequence[Fold],
    *,
    scoring: str,
    random_state: int,
    n_jobs: int,
) -> Iterator[tuple[int, list[float], list[float]]]:
    """Yield ``(candidate index, fold scores, fold fit times)`` for every candidate (in group order).

    Candidates that differ only in ``n_estimators`` share one forest per fold (see
    :func:`group_by_n_estimators`). Every (group, fold) fit is one task across ``n_jobs`` loky workers, each
    forest on one core. ``X`` is one float32 C-contiguous array; loky memory-maps it once for all the workers
    (``max_nbytes="100K"``: any table over ~400 rows of 64 bands), so it is not pickled per task; each task
    copies only its fold's rows, as GridSearchCV does. A fold whose test rows are None is scored out of bag on
    its training rows. The fit time reported for a candidate is the time of its group's one fit.
    """
    n_folds = len(folds)
    groups = group_by_n_estimators(candidates)
    tasks = (
        delayed(fit_and_score_prefixes)(X, y, train, test, rest, ns, scoring, random_state)
        for rest, ns, _ in groups
        for train, test in folds
    )
    # the workers end with this process, even after a SIGKILL of it (loky keeps idle workers 300 s otherwise)
    with parallel_config(backend="loky", initializer=die_with_parent):
        parallel = Parallel(n_jobs=n_jobs, return_as="generator", max_nbytes="100K")
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


def mean_std(fold_scores: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation exactly as GridSearchCV computes them."""
    arr = np.asarray(fold_scores, dtype=np.float64)[np.newaxis, :]
    mean = np.average(arr, axis=1)
    std = np.sqrt(np.average((arr - mean[:, np.newaxis]) ** 2, axis=1))
    return float(mean[0]), float(std[0])


def rank_candidates(means: np.ndarray, rounds: np.ndarray) -> tuple[np.ndarray, int]:
    """Ranks (1 = best) and the best candidate: later rounds first, then the highest mean, ties to grid order.

    Candidates with equal round and mean share the lower rank. With one round (every entry of ``rounds``
    equal) this is GridSearchCV's ``rank_test_score`` and ``best_index_``: NaN means rank below every
    number (as ``nanmin - 1``), all NaN rank 1 together.

    Parameters
    ----------
    means : mean score per candidate (grid order).
    rounds : the last round each candidate reached (successive halving; all 0 for the grid).

    Returns
    -------
    (ranks, best)
        int32 ranks in grid order, and the index of the best candidate.
    """
    n = len(means)
    if np.isnan(means).all():
        filled = np.zeros(n)
    else:
        filled = np.nan_to_num(means, nan=np.nanmin(means) - 1)
    order = sorted(range(n), key=lambda j: (-rounds[j], -filled[j], j))
    ranks = np.empty(n, dtype=np.int32)
    for pos, j in enumerate(order):
        prev = order[pos - 1] if pos else None
        tie = prev is not None and (rounds[prev], filled[prev]) == (rounds[j], filled[j])
        ranks[j] = ranks[prev] if tie else pos + 1
    return ranks, order[0]
