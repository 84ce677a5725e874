"""The notebook's staged grid search, exact and faster.

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
  candidate in grid order), so the duplicates change nothing but the time spent. Candidates that differ only
  in ``n_estimators`` share one forest per fold (see :mod:`lcmodel.tuning.scoring`).

Grid order is scikit-learn's ``ParameterGrid`` order (parameter names sorted, the last name varying
fastest), so tie-breaking is exactly GridSearchCV's ``rank_test_score``. The search is the one-round case of
the stage loop in :mod:`lcmodel.tuning.stages`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lcmodel.tuning.candidates import check_tuning_args
from lcmodel.tuning.result import Callback, Progress, TuningResult
from lcmodel.tuning.scoring import cv_folds
from lcmodel.tuning.stages import Round, Schedule, prepare_stages, run_staged


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
    Xa, ya, grids, given = prepare_stages(X, y, stages, cv=cv, scoring=scoring, score_on=score_on,
                                          cv_splits=cv_splits)
    folds = given or cv_folds(Xa, ya, cv, score_on)
    one_round = [Round(len(ya), folds)]
    return run_staged(
        "grid", Xa, ya, grids, Schedule(lambda n_distinct: one_round), cv=cv, scoring=scoring,
        random_state=random_state, n_jobs=n_jobs, callback=callback, progress=progress, start=start,
        extra={"score_on": score_on},
    )
