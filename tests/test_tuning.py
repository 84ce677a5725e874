"""Tests for lcmodel.tuning: staged grid search, successive halving, Optuna, scoring helpers."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV

from lcmodel.errors import ConfigError, InsufficientDataError, LcmodelError
from lcmodel.tuning import (
    TuningResult,
    make_forest,
    mean_std,
    resolve_stage,
    tune_grid,
    tune_halving,
    write_tuning_outputs,
)
from lcmodel.tuning._sklearn import prefix_forest
from lcmodel.tuning.scoring import label_scorer, oob_prefix_scores, rank_candidates

# 16 features: 'sqrt' == 4 == 'n/4', so stage 1 holds duplicate candidates (BUGS.md #17)
STAGES: list[dict[str, list[Any]]] = [
    {"max_features": ["sqrt", "n/4", "n/8"], "min_samples_leaf": [1, 5], "n_estimators": [10]},
    {"n_estimators": [5, 10], "class_weight": [None, "balanced"]},
]
TIMING = ["fit_time"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=150, n_features=16, n_informative=6, n_redundant=2, n_classes=3, random_state=0
    )
    return X, np.array([10, 20, 30])[y]


@pytest.fixture(scope="module")
def grid_result(
    data: tuple[np.ndarray, np.ndarray],
) -> tuple[TuningResult, list[dict[str, Any]], list[tuple[int, int]]]:
    X, y = data
    calls: list[dict[str, Any]] = []
    ticks: list[tuple[int, int]] = []
    result = tune_grid(
        X, y, STAGES, cv=3, n_jobs=2, callback=calls.append, progress=lambda d, t: ticks.append((d, t))
    )
    return result, calls, ticks


def test_tune_grid_equals_gridsearchcv(data, grid_result) -> None:
    X, y = data
    result, _, _ = grid_result
    stage1 = {"max_features": ["sqrt", 4, 2], "min_samples_leaf": [1, 5], "n_estimators": [10]}
    g1 = GridSearchCV(
        RandomForestClassifier(random_state=42, bootstrap=True, oob_score=False),
        stage1, cv=3, scoring="f1_macro",
    ).fit(X, y)
    g2 = GridSearchCV(
        RandomForestClassifier(**g1.best_params_, random_state=42, bootstrap=True),
        STAGES[1], cv=3, scoring="f1_macro",
    ).fit(X, y)
    for stage, grid in zip(result.stages, (g1, g2), strict=True):
        table = stage.cv_table
        assert stage.best_params == grid.best_params_
        res = grid.cv_results_
        np.testing.assert_allclose(table["mean_score"], res["mean_test_score"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(table["std_score"], res["std_test_score"], rtol=0, atol=1e-12)
        for k in range(3):
            np.testing.assert_allclose(table[f"split{k}"], res[f"split{k}_test_score"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(table["rank"], grid.cv_results_["rank_test_score"])
        assert list(table.drop(columns=["candidate"]).iloc[:, : len(grid.param_grid)].to_dict("records")) == [
            {k: p[k] for k in sorted(p)} for p in grid.cv_results_["params"]
        ]
    assert result.best_params == {**g1.best_params_, **g2.best_params_}
    assert result.best_score == pytest.approx(g2.best_score_, abs=1e-12)
    assert result.method == "grid" and result.cv == 3 and result.scoring == "f1_macro"
    assert result.n_candidates == 6 + 4


def test_duplicates_evaluated_once(grid_result) -> None:
    result, _, _ = grid_result
    table = result.stages[0].cv_table
    # candidates in grid order: max_features sqrt,4,2 x min_samples_leaf 1,5 -> 4 is sqrt(16)
    assert list(table["duplicate_of"]) == [-1, -1, 0, 1, -1, -1]
    score_cols = ["mean_score", "std_score", "split0", "split1", "split2"]
    pd.testing.assert_series_equal(table.loc[2, score_cols], table.loc[0, score_cols], check_names=False)
    # 4 distinct stage-1 candidates + stage 2's 2 class_weight groups (n_estimators 5 and 10 from one fit),
    # 3 folds each
    assert result.n_fits == (4 + 2) * 3


def test_callback_and_progress(grid_result) -> None:
    result, calls, ticks = grid_result
    expected = [(1, j) for j in range(6)] + [(2, j) for j in range(4)]
    assert [(c["stage"], c["candidate"]) for c in calls] == expected
    for c in calls:
        assert set(c) >= {
            "stage", "candidate", "params", "mean_score", "std_score", "fold_scores", "fit_time",
        }
        assert len(c["fold_scores"]) == 3
        table = result.stages[c["stage"] - 1].cv_table
        assert c["mean_score"] == table.loc[c["candidate"], "mean_score"]
    # stage-2 params carry the stage-1 best
    assert calls[-1]["params"]["max_features"] == result.stages[0].best_params["max_features"]
    assert ticks == [(i, 10) for i in range(1, 11)]


def test_deterministic(data, grid_result) -> None:
    X, y = data
    first, _, _ = grid_result
    again = tune_grid(X, y, STAGES, cv=3, n_jobs=1)
    assert again.best_params == first.best_params and again.best_score == first.best_score
    for a, b in zip(again.stages, first.stages, strict=True):
        pd.testing.assert_frame_equal(a.cv_table.drop(columns=TIMING), b.cv_table.drop(columns=TIMING))


def test_resolve_stage() -> None:
    got = resolve_stage({"max_features": ["sqrt", "n/4", "n/16", "n/128", 3], "max_depth": ["null", 20]}, 64)
    assert got == {"max_features": ["sqrt", 16, 4, 1, 3], "max_depth": [None, 20]}
    assert resolve_stage({"max_features": ["n/16"]}, 8) == {"max_features": [1]}
    with pytest.raises(ConfigError, match="'max_feature' is not a tunable"):
        resolve_stage({"max_feature": ["sqrt"]}, 8)
    with pytest.raises(ConfigError, match="max_features 9 is larger than the 8 bands"):
        resolve_stage({"max_features": [9]}, 8)
    with pytest.raises(ConfigError, match="empty candidate list"):
        resolve_stage({"max_depth": []}, 8)


def test_insufficient_class_names_class_and_fix(data) -> None:
    X, y = data
    y = y.copy()
    y[:2] = 99
    y[2:] = np.where(y[2:] == 99, 10, y[2:])
    expected = r"class 99 has 2 training sample\(s\), fewer than tuning.cv=3.*lower tuning.cv"
    with pytest.raises(InsufficientDataError, match=expected):
        tune_grid(X, y, STAGES, cv=3, n_jobs=1)


def test_bad_scoring_and_best_estimator_params(grid_result) -> None:
    result, _, _ = grid_result
    with pytest.raises(ConfigError, match="scoring 'f1_macr' is not"):
        tune_grid(np.zeros((10, 2)), np.repeat([1, 2], 5), STAGES, cv=2, scoring="f1_macr")
    kwargs = result.best_estimator_params(7)
    forest = RandomForestClassifier(**kwargs)
    assert forest.random_state == 7 and forest.bootstrap and not forest.oob_score and forest.n_jobs == 1
    assert {k: kwargs[k] for k in result.best_params} == result.best_params
    assert make_forest({"bootstrap": False}, random_state=1).bootstrap is False


def test_write_tuning_outputs(tmp_path, grid_result) -> None:
    result, _, _ = grid_result
    paths = write_tuning_outputs(result, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "best_params_stage1.json", "cv_results_stage1.csv",
        "best_params_stage2.json", "cv_results_stage2.csv", "best_params.json",
    ])
    assert json.loads((tmp_path / "best_params.json").read_text()) == result.best_params
    assert json.loads((tmp_path / "best_params_stage2.json").read_text()) == result.stages[1].best_params
    csv = pd.read_csv(tmp_path / "cv_results_stage1.csv")
    assert len(csv) == 6 and {"mean_score", "rank", "duplicate_of", "split2"} <= set(csv.columns)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


# --- Optuna -----------------------------------------------------------------------------------------

OPTUNA_STAGES: list[dict[str, list[Any]]] = [
    {"max_features": ["sqrt", "n/8", 1], "min_samples_leaf": [1, 5, 40]},
    {"n_estimators": [5, 10], "class_weight": [None, "balanced"]},
]


def test_optuna_seeded_and_limited(data) -> None:
    pytest.importorskip("optuna")
    from lcmodel.tuning import tune_optuna

    X, y = data
    calls: list[dict[str, Any]] = []
    ticks: list[tuple[int, int]] = []
    a = tune_optuna(X, y, OPTUNA_STAGES, n_trials=16, cv=4, n_jobs=1, callback=calls.append,
                    progress=lambda d, t: ticks.append((d, t)))
    b = tune_optuna(X, y, OPTUNA_STAGES, n_trials=16, cv=4, n_jobs=1)
    assert a.method == "optuna" and a.n_candidates == 16 and len(a.stages) == 1
    assert a.best_params == b.best_params and a.best_score == b.best_score
    pd.testing.assert_frame_equal(
        a.stages[0].cv_table.drop(columns=TIMING), b.stages[0].cv_table.drop(columns=TIMING)
    )
    table = a.stages[0].cv_table
    assert len(table) == 16 and len(calls) == 16 and ticks[-1] == (16, 16)
    assert set(table["state"]) <= {"COMPLETE", "PRUNED"}
    assert (table["state"] == "PRUNED").any()  # min_samples_leaf=40 on 112 training rows is clearly worse
    assert [c["trial"] for c in calls] == list(range(16))
    for c in calls:
        assert c["state"] in {"COMPLETE", "PRUNED"}
        assert set(c["params"]) == {"max_features", "min_samples_leaf", "n_estimators", "class_weight"}
        assert set(c) >= {"stage", "candidate", "mean_score", "std_score", "fold_scores", "fit_time"}
    complete = table[table["state"] == "COMPLETE"]
    assert a.best_score == complete["mean_score"].max()
    assert set(a.best_params) == {"max_features", "min_samples_leaf", "n_estimators", "class_weight"}
    pruned = [c for c in calls if c["state"] == "PRUNED"]
    assert all(1 <= len(c["fold_scores"]) < 4 for c in pruned)


def test_optuna_missing_gives_install_hint(monkeypatch, data) -> None:
    X, y = data
    monkeypatch.setitem(sys.modules, "optuna", None)  # "import optuna" now raises ImportError
    monkeypatch.delitem(sys.modules, "lcmodel.tuning.optuna", raising=False)
    module = importlib.import_module("lcmodel.tuning.optuna")  # the library imports without optuna
    with pytest.raises(LcmodelError, match=r"pip install 'lcmodel\[optuna\]'"):
        module.tune_optuna(X, y, OPTUNA_STAGES, n_trials=2, cv=3)


def test_package_imports_without_optuna() -> None:
    """``import lcmodel.tuning`` (and so the CLI and pipeline) never imports optuna itself."""
    code = (
        "import sys; sys.modules['optuna'] = None; import lcmodel.tuning as t; "
        "assert t.tune_optuna.__module__ == 'lcmodel.tuning.optuna'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_private_sklearn_apis_only_in_sklearn_module() -> None:
    """Every private scikit-learn name the package uses goes through lcmodel/tuning/_sklearn.py."""
    import lcmodel.tuning

    package = Path(lcmodel.tuning.__file__).parent
    private = re.compile(r"sklearn\.[\w.]*\._|\._(?:n_samples_bootstrap|sample_weight|score_func|sign|kwargs|"
                         r"response_method)\b|\bestimators_\[")
    offenders = [
        f"{path.name}:{i}" for path in sorted(package.glob("*.py")) if path.name != "_sklearn.py"
        for i, line in enumerate(path.read_text().splitlines(), start=1) if private.search(line)
    ]
    assert offenders == []


# --- n_estimators from one fit, out-of-bag scoring, successive halving -------------------------------

CLASS_WEIGHTS = [None, "balanced", "balanced_subsample"]


@pytest.mark.parametrize("class_weight", CLASS_WEIGHTS)
def test_first_k_trees_are_the_k_tree_forest(data, class_weight) -> None:
    # sklearn draws tree seeds in sequence from RandomState(random_state): the first k trees of a 30-tree
    # forest are the trees of a k-tree forest (bootstrap rows and class weights included)
    X, y = data
    big = RandomForestClassifier(30, random_state=42, class_weight=class_weight).fit(X, y)
    for k in (1, 7, 20):
        small = RandomForestClassifier(k, random_state=42, class_weight=class_weight).fit(X, y)
        for a, b in zip(big.estimators_[:k], small.estimators_, strict=True):
            assert a.random_state == b.random_state
            np.testing.assert_array_equal(a.tree_.feature, b.tree_.feature)
            np.testing.assert_array_equal(a.tree_.threshold, b.tree_.threshold)
            np.testing.assert_array_equal(a.tree_.value, b.tree_.value)
        # and the prefix forest's probabilities are the k-tree forest's, bit for bit
        np.testing.assert_array_equal(prefix_forest(big, k).predict_proba(X), small.predict_proba(X))


def test_single_fit_n_estimators_scores_equal_separate_fits(data) -> None:
    X, y = data
    stage = {"n_estimators": [5, 10, 20], "class_weight": CLASS_WEIGHTS, "max_features": ["sqrt"]}
    result = tune_grid(X, y, [stage], cv=3, n_jobs=2)
    assert result.n_fits == 3 * 3  # one forest per (class_weight, fold), not 9 * 3
    table = result.stages[0].cv_table
    grid = GridSearchCV(
        RandomForestClassifier(random_state=42, bootstrap=True, oob_score=False), stage, cv=3,
        scoring="f1_macro",
    ).fit(X, y)
    res = grid.cv_results_
    for k in range(3):
        np.testing.assert_allclose(table[f"split{k}"], res[f"split{k}_test_score"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(table["rank"], res["rank_test_score"])
    assert result.best_params == grid.best_params_


def test_oob_scores_match_sklearn_and_are_deterministic(data) -> None:
    from sklearn.metrics import f1_score

    X, y = data
    Xa = np.ascontiguousarray(X, dtype=np.float32)
    for cw in CLASS_WEIGHTS:
        forest = RandomForestClassifier(20, random_state=42, class_weight=cw, oob_score=True).fit(Xa, y)
        expected = f1_score(y, forest.classes_[forest.oob_decision_function_.argmax(axis=1)], average="macro")
        got = oob_prefix_scores(forest, Xa, y, [20], label_scorer("f1_macro"))
        assert got == [pytest.approx(expected, abs=1e-12)]
    a = tune_grid(X, y, STAGES, cv=3, n_jobs=2, score_on="oob")
    b = tune_grid(X, y, STAGES, cv=3, n_jobs=1, score_on="oob")
    assert a.best_params == b.best_params and a.extra["score_on"] == "oob"
    assert a.n_fits == 4 + 2  # one fit per distinct candidate / n_estimators group, no folds
    for s, t in zip(a.stages, b.stages, strict=True):
        pd.testing.assert_frame_equal(s.cv_table.drop(columns=TIMING), t.cv_table.drop(columns=TIMING))
        assert {"split0", "mean_score"} <= set(s.cv_table) and "split1" not in s.cv_table
        assert ((s.cv_table["mean_score"] > 0.5) & (s.cv_table["mean_score"] <= 1)).all()
    with pytest.raises(ConfigError, match="score_on 'oob' supports label scorers"):
        tune_grid(X, y, STAGES, cv=3, scoring="roc_auc_ovr", score_on="oob")
    with pytest.raises(ConfigError, match="score_on 'holdout' is not known"):
        tune_grid(X, y, STAGES, cv=3, score_on="holdout")


@pytest.mark.parametrize("score_on", ["cv", "oob"])
def test_halving_picks_a_grid_candidate_deterministically(score_on) -> None:
    X, y = make_classification(
        n_samples=300, n_features=16, n_informative=6, n_redundant=2, n_classes=3, random_state=1
    )
    stages = [
        {"max_features": ["sqrt", "n/2", 1], "min_samples_leaf": [1, 5, 20], "n_estimators": [5]},
        {"n_estimators": [3, 6], "class_weight": [None, "balanced"]},
    ]
    calls: list[dict[str, Any]] = []
    a = tune_halving(X, y, stages, cv=3, n_jobs=1, score_on=score_on, callback=calls.append)
    b = tune_halving(X, y, stages, cv=3, n_jobs=1, score_on=score_on)
    assert a.method == "halving" and a.best_params == b.best_params and a.best_score == b.best_score
    for s, t in zip(a.stages, b.stages, strict=True):
        pd.testing.assert_frame_equal(s.cv_table.drop(columns=TIMING), t.cv_table.drop(columns=TIMING))
    s1 = a.stages[0].cv_table
    assert s1["iteration"].max() >= 1 and s1["n_resources"].max() == 300  # last round on every row
    assert s1["n_resources"].min() < 300
    grids = [resolve_stage(s, 16) for s in stages]
    for stage, grid in zip(a.stages, grids, strict=True):
        assert all(stage.best_params[k] in grid[k] for k in grid)
        winners = stage.cv_table.loc[stage.cv_table["rank"] == 1, "iteration"]
        assert winners.max() == stage.cv_table["iteration"].max()
    assert len(calls) == 9 + 4 and {"iteration", "n_resources"} <= set(calls[0])
    with pytest.raises(ConfigError, match="halving factor 1"):
        tune_halving(X, y, stages, factor=1)


def test_halving_uses_precomputed_folds_within_each_round() -> None:
    """Spatial (precomputed) folds hold in every halving round: a fold's rows never cross to another."""
    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, n_classes=2, random_state=1)
    groups = np.arange(len(y)) % 4  # four "blocks", one per fold
    splits = [(np.flatnonzero(groups != k), np.flatnonzero(groups == k)) for k in range(4)]
    seen: list[dict[str, Any]] = []
    result = tune_halving(X, y, [{"max_features": [1, 2, 3, 4], "n_estimators": [5]}], factor=2, cv=4,
                          n_jobs=1, cv_splits=splits, callback=seen.append)
    again = tune_halving(X, y, [{"max_features": [1, 2, 3, 4], "n_estimators": [5]}], factor=2, cv=4,
                         n_jobs=1, cv_splits=splits)
    assert result.best_params == again.best_params
    assert result.best_params["max_features"] in (1, 2, 3, 4)
    assert all(len(c["fold_scores"]) == 4 for c in seen)


def test_rank_candidates_is_gridsearchcv_rank_in_one_round() -> None:
    """One round: GridSearchCV's rank_test_score (min ranks; NaN below every number; all NaN rank 1)."""
    from scipy.stats import rankdata

    cases = [
        [0.5, 0.7, 0.7, 0.1], [0.3, np.nan, 0.3, 0.9], [np.nan, np.nan], [-np.inf, np.nan, 0.2], [0.4],
    ]
    for means in map(np.array, cases):
        ranks, best = rank_candidates(means, np.zeros(len(means), dtype=int))
        if np.isnan(means).all():
            expected = np.ones(len(means), dtype=np.int32)
        else:
            filled = np.nan_to_num(means, nan=np.nanmin(means) - 1)
            expected = rankdata(-filled, method="min").astype(np.int32)
        np.testing.assert_array_equal(ranks, expected)
        assert ranks.dtype == np.int32 and best == int(expected.argmin())
    # halving: a later round ranks first whatever its mean; ties within a round share the lower rank
    ranks, best = rank_candidates(np.array([0.9, 0.5, 0.6, 0.6]), np.array([0, 1, 1, 1]))
    assert list(ranks) == [4, 3, 1, 1] and best == 2


def test_halving_callback_payloads_and_progress(data) -> None:
    """Halving reports every candidate once, in grid order per stage, with its last round's scores."""
    X, y = data
    stages: list[dict[str, list[Any]]] = [
        {"max_features": ["sqrt", "n/4", 1, 2], "n_estimators": [5]}, {"class_weight": [None, "balanced"]},
    ]
    calls: list[dict[str, Any]] = []
    ticks: list[tuple[int, int]] = []
    result = tune_halving(X, y, stages, factor=2, cv=3, n_jobs=1, callback=calls.append,
                          progress=lambda d, t: ticks.append((d, t)))
    assert [(c["stage"], c["candidate"]) for c in calls] == [(1, j) for j in range(4)] + [(2, 0), (2, 1)]
    assert ticks == [(i, 6) for i in range(1, 7)]
    for c in calls:
        row = result.stages[c["stage"] - 1].cv_table.loc[c["candidate"]]
        assert (c["mean_score"], c["std_score"]) == mean_std(c["fold_scores"])
        assert c["mean_score"] == row["mean_score"] and c["iteration"] == row["iteration"]
        assert c["n_resources"] == row["n_resources"]
    assert calls[1]["duplicate_of"] == 0  # 'n/4' is 'sqrt' for 16 bands
