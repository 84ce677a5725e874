"""What a tuning run hands back: :class:`TuningResult` (one :class:`StageResult` per stage) and its files.

The callback and progress types of the tuning functions are here too: a callback receives one dict per
candidate (see :func:`lcmodel.tuning.tune_grid`), progress ``(done, total)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lcmodel.io import atomic_path, json_ready, write_json
from lcmodel.tuning.candidates import make_forest

#: Callback payload: one dict per candidate (see :func:`lcmodel.tuning.tune_grid`).
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
        reused, or -1). Successive halving adds ``iteration`` and ``n_resources``; Optuna adds ``trial``,
        ``state`` and ``n_folds``.
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
    """The outcome of a tuning run (grid, successive halving or Optuna).

    Attributes
    ----------
    method : "grid", "halving" or "optuna".
    best_params : every tuned parameter (later stages keep the earlier stages' bests).
    best_score, best_std : mean and standard deviation over the folds of the best candidate's CV score.
    stages : one :class:`StageResult` per stage (Optuna: one, holding the trials).
    scoring : scikit-learn scorer name.
    cv : number of stratified folds.
    n_candidates : candidates (grid) or trials (Optuna) scored, duplicates included.
    elapsed_s : wall-clock seconds.
    n_fits : forests actually fitted (duplicates and cache hits excluded).
    extra : method details: ``score_on`` (grid, halving), ``factor`` (halving), ``n_pruned`` and
        ``timeout_s`` (Optuna).
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



def staged_result(
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
