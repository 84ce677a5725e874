"""The stage loop shared by the staged searches: the exact grid (one round) and successive halving (several).

A staged search runs its stages in order, each with the best values of the earlier stages fixed
(:func:`run_stages`). Within a stage (:func:`run_stage`) the grid's candidates are listed in scikit-learn's
``ParameterGrid`` order, candidates that grow the same forest are evaluated once, and the distinct ones are
scored in rounds (a :class:`Schedule`): each round on its rows and folds, keeping the best ``1 / factor`` of the
candidates for the next round. The exact grid is the one-round schedule on every row. Candidates are reported
to the callback in grid order as soon as their last round is scored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import ParameterGrid

from lcmodel.tuning.candidates import check_cv_splits, find_duplicates, prepare_xy, resolve_stage
from lcmodel.tuning.result import Callback, Progress, StageResult, TuningResult, staged_result
from lcmodel.tuning.scoring import (
    Fold,
    check_score_on,
    evaluate_candidates,
    group_by_n_estimators,
    mean_std,
    rank_candidates,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Round:
    """One round of a stage: the rows it uses (``n_rows``) and its folds over them (indices into all rows)."""

    n_rows: int
    folds: Sequence[Fold]


@dataclass(frozen=True)
class Schedule:
    """How a stage scores its candidates.

    Attributes
    ----------
    rounds : the number of distinct candidates of a stage -> the stage's rounds (the last on every row).
    factor : None: the exact grid (one round; the CV tables are GridSearchCV's). Otherwise successive
        halving: after every round but the last, the best ``ceil(n / factor)`` candidates go on; the CV
        tables and callback payloads add ``iteration`` (the last round a candidate reached) and
        ``n_resources`` (that round's rows), and ``rank`` puts later rounds first.
    """

    rounds: Callable[[int], list[Round]]
    factor: int | None = None


def prepare_stages(
    X: Any,
    y: Any,
    stages: Sequence[Mapping[str, Sequence[Any]]],
    *,
    cv: int,
    scoring: str,
    score_on: str,
    cv_splits: Sequence[tuple[Any, Any]] | None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, list[Any]]], list[tuple[np.ndarray, np.ndarray]] | None]:
    """Check ``score_on``, convert ``X``/``y``, resolve the stages and check the precomputed folds.

    Returns ``(X, y, grids, folds)``; ``folds`` is None without precomputed folds and for out-of-bag scoring,
    which needs no folds.
    """
    check_score_on(score_on, scoring)
    Xa, ya = prepare_xy(X, y, cv if score_on == "cv" else 1)
    grids = [resolve_stage(stage, Xa.shape[1]) for stage in stages]
    given = None if score_on == "oob" else check_cv_splits(cv_splits, len(ya), cv)
    return Xa, ya, grids, given


def run_stage(
    index: int,
    grid: dict[str, list[Any]],
    fixed: Mapping[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    schedule: Schedule,
    *,
    scoring: str,
    random_state: int,
    n_jobs: int,
    callback: Callback | None,
    on_candidate: Callable[[], None],
) -> tuple[StageResult, int]:
    """Score one stage's grid (with the earlier stages' bests ``fixed``) by ``schedule``.

    Returns the stage's result and the number of forests fitted.
    """
    candidates = list(ParameterGrid(grid))
    n = len(candidates)
    duplicate_of, distinct = find_duplicates(candidates, fixed, X.shape[1])
    if len(distinct) < n:
        logger.info(
            "stage %d: %d candidates, %d distinct fits (duplicates reuse the first identical candidate)",
            index,
            n,
            len(distinct),
        )
    source = [j if duplicate_of[j] < 0 else duplicate_of[j] for j in range(n)]
    rounds = schedule.rounds(len(distinct))
    halving = schedule.factor is not None
    # (fold scores, mean fit seconds, round) of a distinct candidate once its last round is scored
    final: list[tuple[list[float], float, int] | None] = [None] * n
    reported = 0

    def report_ready() -> None:
        # report candidates in grid order as soon as their scores are final
        nonlocal reported
        while reported < n:
            j = reported
            done = final[source[j]]
            if done is None:
                return
            scores, fit_time, it = done
            if callback is not None:
                mean, std = mean_std(scores)
                info: dict[str, Any] = {
                    "stage": index,
                    "candidate": j,
                    "params": {**fixed, **candidates[j]},
                    "mean_score": mean,
                    "std_score": std,
                    "fold_scores": list(scores),
                    "fit_time": fit_time,
                    "duplicate_of": None if duplicate_of[j] < 0 else duplicate_of[j],
                }
                if halving:
                    info["iteration"] = it
                    info["n_resources"] = rounds[it].n_rows
                callback(info)
            on_candidate()
            reported += 1

    alive = list(distinct)
    n_fits = 0
    for it, rnd in enumerate(rounds):
        last = it == len(rounds) - 1
        params = [{**fixed, **candidates[j]} for j in alive]
        scored: dict[int, tuple[list[float], float, int]] = {}
        stream = evaluate_candidates(
            X, y, params, rnd.folds, scoring=scoring, random_state=random_state, n_jobs=n_jobs
        )
        for k, scores, times in stream:
            j = alive[k]
            scored[j] = (scores, float(np.mean(times)), it)
            if last:
                final[j] = scored[j]
                report_ready()
        n_fits += len(group_by_n_estimators(params)) * len(rnd.folds)
        if not halving:
            continue
        means = {j: mean_std(scored[j][0])[0] for j in alive}
        logger.info(
            "stage %d halving round %d: %d candidates on %d rows, best %.4f",
            index, it, len(alive), rnd.n_rows, max(means.values()),
        )
        if not last:
            assert schedule.factor is not None
            order = sorted(alive, key=lambda j: (-np.nan_to_num(means[j], nan=-np.inf), j))
            kept = sorted(order[: int(math.ceil(len(alive) / schedule.factor))])
            for j in set(alive) - set(kept):
                final[j] = scored[j]
            alive = kept
            report_ready()
    report_ready()

    results = [r for r in (final[s] for s in source) if r is not None]
    assert len(results) == n  # every candidate reached its last round
    n_cols = len(rounds[-1].folds)
    scores_arr = np.array([r[0] for r in results], dtype=np.float64).reshape(n, n_cols)
    means_arr = np.average(scores_arr, axis=1)
    stds_arr = np.sqrt(np.average((scores_arr - means_arr[:, np.newaxis]) ** 2, axis=1))
    iteration = np.array([r[2] for r in results])
    ranks, best = rank_candidates(means_arr, iteration)

    table = pd.DataFrame({"candidate": np.arange(n)})
    for name in sorted(grid):
        table[name] = pd.Series([c[name] for c in candidates], dtype=object)
    table["mean_score"] = means_arr
    table["std_score"] = stds_arr
    for f in range(n_cols):
        table[f"split{f}"] = scores_arr[:, f]
    table["fit_time"] = [r[1] for r in results]
    if halving:
        table["iteration"] = iteration
        table["n_resources"] = [rounds[i].n_rows for i in iteration]
    table["rank"] = ranks
    table["duplicate_of"] = duplicate_of
    stage = StageResult(
        index=index,
        grid=grid,
        cv_table=table,
        best_params=dict(candidates[best]),
        best_score=float(means_arr[best]),
    )
    if halving:
        logger.info("stage %d halving best %s = %.4f", index, stage.best_params, means_arr[best])
    else:
        logger.info(
            "stage %d best %s = %.4f (+/- %.4f)", index, stage.best_params, means_arr[best], stds_arr[best]
        )
    return stage, n_fits


def run_stages(
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


def run_staged(
    method: str,
    X: np.ndarray,
    y: np.ndarray,
    grids: list[dict[str, list[Any]]],
    schedule: Schedule,
    *,
    cv: int,
    scoring: str,
    random_state: int,
    n_jobs: int,
    callback: Callback | None,
    progress: Progress | None,
    start: float,
    extra: dict[str, Any],
) -> TuningResult:
    """Run every stage by ``schedule`` and assemble the :class:`TuningResult` (``start``: its perf_counter)."""

    def run_one(
        i: int, grid: dict[str, list[Any]], fixed: dict[str, Any], on_candidate: Callable[[], None]
    ) -> tuple[StageResult, int]:
        return run_stage(i, grid, fixed, X, y, schedule, scoring=scoring, random_state=random_state,
                         n_jobs=n_jobs, callback=callback, on_candidate=on_candidate)

    results, fixed, n_fits, total = run_stages(grids, run_one, progress)
    return staged_result(method, results, fixed, scoring=scoring, cv=cv, n_candidates=total, start=start,
                         n_fits=n_fits, extra=extra)

