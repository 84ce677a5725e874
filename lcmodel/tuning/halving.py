"""Staged successive halving: each stage's grid, with training rows as the resource.

The rounds of a stage follow scikit-learn's ``HalvingGridSearchCV(min_resources="exhaust")``: the last round
uses every row, each earlier one ``factor`` times fewer (a seeded stratified subsample), and every round but
the last keeps the best ``ceil(n / factor)`` candidates. The stage loop itself is the grid's
(:mod:`lcmodel.tuning.stages`), with this schedule of rounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from lcmodel.errors import ConfigError
from lcmodel.tuning.candidates import check_tuning_args
from lcmodel.tuning.result import Callback, Progress, TuningResult
from lcmodel.tuning.scoring import Fold, cv_folds
from lcmodel.tuning.stages import Round, Schedule, prepare_stages, run_staged


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


def halving_rounds(
    X: np.ndarray,
    y: np.ndarray,
    n_candidates: int,
    *,
    cv: int,
    score_on: str,
    factor: int,
    random_state: int,
    cv_splits: Sequence[tuple[np.ndarray, np.ndarray]] | None,
) -> list[Round]:
    """The rounds of a stage of ``n_candidates`` distinct candidates: rows and folds of each.

    A round keeps at least ``cv`` rows (2 for OOB) of the rarest class. Its folds are precomputed folds
    (``cv_splits``) restricted to its rows, or stratified folds of its rows (one out-of-bag "fold" for OOB).
    """
    _, counts = np.unique(y, return_counts=True)
    need = cv if score_on == "cv" else 2  # rows of the rarest class a round must keep
    min_resources = int(math.ceil(need * len(y) / counts.min())) + len(counts)
    rounds = []
    for n_rows in _halving_schedule(len(y), n_candidates, factor, min_resources):
        rows = _stratified_subset(y, n_rows, random_state)
        folds: list[Fold]
        if cv_splits is not None and score_on == "cv":
            # precomputed folds (e.g. spatial blocks): each keeps its rows that are in this round's subset
            kept = [(np.intersect1d(tr, rows), np.intersect1d(te, rows)) for tr, te in cv_splits]
            folds = [(tr, te) for tr, te in kept if len(tr) and len(te)]
        else:
            folds = [
                (rows[tr], None if te is None else rows[te])
                for tr, te in cv_folds(X[rows], y[rows], cv, score_on)
            ]
        rounds.append(Round(n_rows, folds))
    return rounds


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
    trick and the parallelism are those of :func:`~lcmodel.tuning.tune_grid`.

    Parameters
    ----------
    X, y, stages, cv, scoring, random_state, n_jobs, score_on, progress
        As :func:`~lcmodel.tuning.tune_grid`.
    cv_splits : precomputed folds over all rows (e.g. spatial blocks); each round keeps, per fold, the rows
        in its subset. None: stratified folds of each round's subset.
    factor : candidates kept per round: ``1 / factor``; rows grow ``factor`` times per round (>= 2).
    callback : as :func:`~lcmodel.tuning.tune_grid` (grid order), called for a candidate once its last round
        is scored (after the round that drops it, or as the last round's results come in); the payload adds
        ``iteration`` (the last round the candidate reached) and ``n_resources`` (its rows); the scores are
        that round's.

    Returns
    -------
    TuningResult
        ``method="halving"``; the CV tables add ``iteration`` and ``n_resources``; ``rank`` puts candidates
        of later rounds first. Deterministic for identical inputs.

    Raises
    ------
    ConfigError, InsufficientDataError
        As :func:`~lcmodel.tuning.tune_grid`; ``factor`` below 2.
    """
    start = time.perf_counter()
    check_tuning_args(stages, cv, scoring)
    if factor < 2:
        raise ConfigError(f"halving factor {factor} keeps every candidate; give tuning.halving_factor >= 2")
    Xa, ya, grids, given = prepare_stages(X, y, stages, cv=cv, scoring=scoring, score_on=score_on,
                                          cv_splits=cv_splits)

    def rounds(n_distinct: int) -> list[Round]:
        return halving_rounds(Xa, ya, n_distinct, cv=cv, score_on=score_on, factor=factor,
                              random_state=random_state, cv_splits=given)

    return run_staged(
        "halving", Xa, ya, grids, Schedule(rounds, factor=factor), cv=cv, scoring=scoring,
        random_state=random_state, n_jobs=n_jobs, callback=callback, progress=progress, start=start,
        extra={"score_on": score_on, "factor": factor},
    )
