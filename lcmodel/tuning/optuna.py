"""Random-forest tuning with Optuna over the same space as the staged grid.

The search space is the union of the stages' candidate lists (resolved with
:func:`~lcmodel.tuning.resolve_stage`), each parameter a categorical choice, searched jointly by a seeded
TPE sampler. Each trial is scored on the same stratified folds and with the same scorer as
:func:`lcmodel.tuning.tune_grid`; the running mean after each fold is reported so that a median pruner
can stop a trial that is doing worse than the median of earlier trials at the same fold.

Trials run one after the other (a seeded TPE sampler is reproducible only then, and pruning needs the
folds in order); the folds of a trial run one after the other too, each forest with ``n_jobs`` threads:
one level of parallelism. A trial whose parameters grow the same forest as an earlier complete trial
(TPE proposes repeats; ``"sqrt"`` is 8 features for 64 bands) reuses that trial's fold scores.

Optuna is an optional dependency (``pip install 'lcmodel[optuna]'``), imported only when :func:`tune_optuna`
runs (``lcmodel.tuning`` imports without it). With ``timeout_s`` set, the number of trials depends on the
machine's speed, so results are reproducible only with ``n_trials`` as the limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from lcmodel.errors import ConfigError, LcmodelError
from lcmodel.tuning.candidates import check_cv_splits, check_tuning_args, effective_key, prepare_xy, resolve_stage
from lcmodel.tuning.result import Callback, Progress, StageResult, TuningResult
from lcmodel.tuning.scoring import fit_and_score, mean_std, stratified_folds

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "tuning.method 'optuna' needs the optuna package, which is not installed; "
    "run pip install 'lcmodel[optuna]' or set tuning.method to 'grid'"
)


def search_space(stages: Sequence[Mapping[str, Sequence[Any]]], n_features: int) -> dict[str, list[Any]]:
    """The union of the stages' resolved candidate lists: parameter -> distinct values, first-seen order.

    Parameters
    ----------
    stages : sequence of ``{parameter: [candidates]}``.
    n_features : number of bands (resolves ``'n/K'``).
    """
    space: dict[str, list[Any]] = {}
    for stage in stages:
        for name, values in resolve_stage(stage, n_features).items():
            choices = space.setdefault(name, [])
            for v in values:
                if not any(type(v) is type(c) and v == c for c in choices):
                    choices.append(v)
    return space


def tune_optuna(
    X: Any,
    y: Any,
    stages: Sequence[Mapping[str, Sequence[Any]]],
    *,
    n_trials: int = 50,
    timeout_s: float | None = None,
    cv: int = 5,
    scoring: str = "f1_macro",
    random_state: int = 42,
    n_jobs: int = 2,
    callback: Callback | None = None,
    progress: Progress | None = None,
    cv_splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> TuningResult:
    """Tune a random forest with Optuna (seeded TPE + median pruning across folds).

    Parameters
    ----------
    X : array-like (samples, bands); converted once to float32 C-contiguous.
    y : array-like (samples,) of class values.
    stages : the grid stages; their candidate lists (united) are the categorical search space.
    n_trials : most trials to run.
    timeout_s : stop starting new trials after this many seconds (None: no limit).
    cv : number of stratified folds (``StratifiedKFold(cv, shuffle=False)``, as the grid search).
    scoring : scikit-learn scorer name.
    random_state : seed of the TPE sampler and of every forest.
    n_jobs : threads of each forest (folds and trials run one after the other).
    callback : called after each trial with ``dict(stage=1, candidate, trial, state, params, mean_score,
        std_score, fold_scores, fit_time, duplicate_of)``; ``state`` is "COMPLETE" or "PRUNED" (a pruned
        trial's scores cover the folds it reached).
    progress : called with ``(trials done, n_trials)``.
    cv_splits : precomputed folds used instead of ``StratifiedKFold`` (see :func:`lcmodel.tuning.tune_grid`).

    Returns
    -------
    TuningResult
        ``method="optuna"``, one :class:`~lcmodel.tuning.StageResult` whose ``cv_table`` has one row per
        trial (columns ``trial``, ``state``, ``n_folds`` scored, parameters, scores, ``rank`` among
        complete trials, ``duplicate_of``). The best trial is the complete one with the highest mean
        score, ties to the earliest.

    Raises
    ------
    LcmodelError
        optuna is not installed, or no trial completed.
    ConfigError, InsufficientDataError
        As :func:`lcmodel.tuning.tune_grid`.
    """
    try:
        import optuna
    except ImportError:
        raise LcmodelError(_INSTALL_HINT) from None

    start = time.perf_counter()
    check_tuning_args(stages, cv, scoring)
    if n_trials < 1:
        raise ConfigError(f"n_trials={n_trials}; give tuning.n_trials >= 1")
    Xa, ya = prepare_xy(X, y, cv)
    n_features = Xa.shape[1]
    space = search_space(stages, n_features)
    folds = check_cv_splits(cv_splits, len(ya), cv) or stratified_folds(Xa, ya, cv)

    records: list[dict[str, Any]] = []
    complete_by_key: dict[tuple[tuple[str, str], ...], int] = {}
    n_fits = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal n_fits
        params = {name: trial.suggest_categorical(name, choices) for name, choices in sorted(space.items())}
        key = effective_key(params, n_features)
        source = complete_by_key.get(key)
        scores: list[float] = []
        times: list[float] = []
        if source is not None:
            # the same forest as a complete trial: reuse its folds (reported alike, never pruned)
            prev = records[source]
            scores, times = list(prev["fold_scores"]), [prev["fit_time"]] * len(prev["fold_scores"])
            for step in range(len(scores)):
                trial.report(float(np.mean(scores[: step + 1])), step)
        else:
            for step, (train, test) in enumerate(folds):
                score, fit_time = fit_and_score(Xa, ya, train, test, params, scoring, random_state, n_jobs)
                n_fits += 1
                scores.append(score)
                times.append(fit_time)
                trial.report(float(np.mean(scores)), step)
                if step < len(folds) - 1 and trial.should_prune():
                    trial.set_user_attr("fold_scores", scores)
                    trial.set_user_attr("fit_time", float(np.mean(times)))
                    raise optuna.TrialPruned()
        trial.set_user_attr("fold_scores", scores)
        trial.set_user_attr("fit_time", float(np.mean(times)))
        trial.set_user_attr("duplicate_of", source)
        return float(np.mean(scores))

    def after_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        state = frozen.state.name
        fold_scores = [float(s) for s in frozen.user_attrs.get("fold_scores", [])]
        mean, std = mean_std(fold_scores) if fold_scores else (float("nan"), float("nan"))
        record: dict[str, Any] = {
            "stage": 1,
            "candidate": frozen.number,
            "trial": frozen.number,
            "state": state,
            "params": dict(frozen.params),
            "mean_score": mean,
            "std_score": std,
            "fold_scores": fold_scores,
            "fit_time": float(frozen.user_attrs.get("fit_time", float("nan"))),
            "duplicate_of": frozen.user_attrs.get("duplicate_of"),
        }
        records.append(record)
        if state == "COMPLETE":
            complete_by_key.setdefault(effective_key(dict(record["params"]), n_features), len(records) - 1)
        if callback is not None:
            callback(dict(record))
        if progress is not None:
            progress(len(records), n_trials)

    previous_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=random_state),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        )
        study.optimize(objective, n_trials=n_trials, timeout=timeout_s, callbacks=[after_trial])
    finally:
        optuna.logging.set_verbosity(previous_verbosity)

    table = _trials_table(records, space, cv)
    complete = table[table["state"] == "COMPLETE"]
    if complete.empty:
        raise LcmodelError(
            f"no Optuna trial completed ({len(records)} ran, timeout_s={timeout_s}); "
            "raise tuning.timeout_s or tuning.n_trials"
        )
    best_row = complete.iloc[int(complete["mean_score"].to_numpy().argmax())]
    best = records[int(best_row.name)]  # type: ignore[arg-type]
    best_params = dict(best["params"])
    stage = StageResult(
        index=1,
        grid={name: list(v) for name, v in space.items()},
        cv_table=table,
        best_params=best_params,
        best_score=float(best["mean_score"]),
    )
    logger.info(
        "optuna: %d trials (%d pruned), best %s = %.4f",
        len(records),
        int((table["state"] == "PRUNED").sum()),
        best_params,
        best["mean_score"],
    )
    return TuningResult(
        method="optuna",
        best_params=best_params,
        best_score=float(best["mean_score"]),
        best_std=float(best["std_score"]),
        stages=[stage],
        scoring=scoring,
        cv=cv,
        n_candidates=len(records),
        elapsed_s=time.perf_counter() - start,
        n_fits=n_fits,
        extra={"n_pruned": int((table["state"] == "PRUNED").sum()), "timeout_s": timeout_s},
    )


def _trials_table(
    records: Sequence[Mapping[str, Any]], space: Mapping[str, Sequence[Any]], cv: int
) -> pd.DataFrame:
    """One row per trial, with the grid table's columns plus ``trial``, ``state`` and ``n_folds``."""
    n = len(records)
    table = pd.DataFrame(
        {
            "candidate": [r["candidate"] for r in records],
            "trial": [r["trial"] for r in records],
            "state": [r["state"] for r in records],
            "n_folds": [len(r["fold_scores"]) for r in records],
        }
    )
    for name in sorted(space):
        table[name] = pd.Series([r["params"].get(name) for r in records], dtype=object)
    table["mean_score"] = [r["mean_score"] for r in records]
    table["std_score"] = [r["std_score"] for r in records]
    for f in range(cv):
        table[f"split{f}"] = [
            r["fold_scores"][f] if f < len(r["fold_scores"]) else float("nan") for r in records
        ]
    table["fit_time"] = [r["fit_time"] for r in records]
    complete = (table["state"] == "COMPLETE").to_numpy()
    rank = pd.array([pd.NA] * n, dtype="Int64")
    if complete.any():
        means = table["mean_score"].to_numpy()[complete]
        # GridSearchCV's rule: rank 1 = highest mean, ties share the lowest rank
        ranks = rankdata(-means, method="min").astype(np.int64)
        rank[np.flatnonzero(complete)] = ranks
    table["rank"] = rank
    table["duplicate_of"] = [-1 if r["duplicate_of"] is None else r["duplicate_of"] for r in records]
    return table
