"""Random-forest tuning: the notebook's staged grid search, successive halving and Optuna, as data.

* :func:`tune_grid` — the notebook's staged ``GridSearchCV``, with the same best parameters and CV scores
  (:mod:`lcmodel.tuning.grid`);
* :func:`tune_halving` — staged successive halving over training rows (:mod:`lcmodel.tuning.halving`);
* :func:`tune_optuna` — a seeded TPE search over the union of the stages (:mod:`lcmodel.tuning.optuna`;
  needs the optional ``optuna`` package, imported only when it runs).

Each returns a :class:`TuningResult` (:mod:`lcmodel.tuning.result`); :func:`write_tuning_outputs` writes its
files. Candidates and the forest they configure are in :mod:`lcmodel.tuning.candidates`, fitting and scoring
in :mod:`lcmodel.tuning.scoring`, the stage loop that grid and halving share in :mod:`lcmodel.tuning.stages`,
and every private scikit-learn API the package relies on in :mod:`lcmodel.tuning._sklearn`.
"""

from lcmodel.config import TUNABLE_PARAMS
from lcmodel.tuning.candidates import (
    check_cv_splits,
    check_scoring_name,
    check_tuning_args,
    effective_key,
    make_forest,
    prepare_xy,
    resolve_stage,
)
from lcmodel.tuning.grid import tune_grid
from lcmodel.tuning.halving import tune_halving
from lcmodel.tuning.optuna import search_space, tune_optuna
from lcmodel.tuning.result import Callback, Progress, StageResult, TuningResult, write_tuning_outputs
from lcmodel.tuning.scoring import fit_and_score, fit_and_score_prefixes, mean_std

__all__ = [
    "Callback",
    "Progress",
    "StageResult",
    "TUNABLE_PARAMS",
    "TuningResult",
    "check_cv_splits",
    "check_scoring_name",
    "check_tuning_args",
    "effective_key",
    "fit_and_score",
    "fit_and_score_prefixes",
    "make_forest",
    "mean_std",
    "prepare_xy",
    "resolve_stage",
    "search_space",
    "tune_grid",
    "tune_halving",
    "tune_optuna",
    "write_tuning_outputs",
]
