"""The compiled forest gives scikit-learn's predict_proba bit for bit, and declines what it cannot do."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier

from lcmodel.forest import CALIBRATION_ROWS, CompiledForest, Predictor, _float32_at_most, compile_forest


def _data(seed: int, n: int = 600, d: int = 8, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 0] = np.round(X[:, 0], 1)  # many ties: thresholds fall between repeated values
    y = (X[:, 1] + X[:, 2] * X[:, 0] > 0).astype(int) + 2 * (X[:, 3] > 0.5)
    return X, y % k + 1


def _reference(model: Any, X: np.ndarray) -> np.ndarray:
    model.set_params(n_jobs=1)  # tree order: the sum is the same bits every time
    return np.asarray(model.predict_proba(X))


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (RandomForestClassifier, {"n_estimators": 25}),
        (RandomForestClassifier, {"n_estimators": 12, "max_depth": 3, "class_weight": "balanced"}),
        (RandomForestClassifier, {"n_estimators": 10, "min_samples_leaf": 5, "max_features": 0.5, "bootstrap": False}),
        (ExtraTreesClassifier, {"n_estimators": 15}),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_probabilities_are_scikit_learns_bit_for_bit(cls: Any, params: dict[str, Any], seed: int) -> None:
    X, y = _data(seed)
    model = cls(random_state=seed, **params).fit(X, y)
    compiled = compile_forest(model)
    assert compiled is not None
    Xn = _data(seed + 100, n=3001)[0]  # 3001 rows: not a multiple of the kernel's 8 or 512
    expected = _reference(model, Xn)
    assert np.array_equal(compiled.predict_proba(Xn), expected)
    assert np.array_equal(compiled.predict_proba(Xn, n_threads=3), expected)


def test_values_on_and_beside_every_threshold_go_the_same_way() -> None:
    """float64 thresholds vs float32 features: the stored float32 threshold decides identically."""
    X, y = _data(3)
    model = RandomForestClassifier(n_estimators=8, random_state=3).fit(X, y)
    compiled = compile_forest(model)
    assert compiled is not None
    rng = np.random.default_rng(0)
    rows = []
    for tree in model.estimators_:
        t = tree.tree_
        for node in np.flatnonzero(t.children_left >= 0):
            at = np.float32(t.threshold[node])
            for v in (at, np.nextafter(at, np.float32(-np.inf)), np.nextafter(at, np.float32(np.inf))):
                row = X[rng.integers(len(X))].copy()
                row[t.feature[node]] = v
                rows.append(row)
    Xe = np.asarray(rows, dtype=np.float32)
    assert np.array_equal(compiled.predict_proba(Xe), _reference(model, Xe))


def test_float32_at_most_is_the_largest_float32_not_above() -> None:
    t = np.array([0.1, -0.1, 1 / 3, 2.5, 1e-40, -1e-40, 3.5e38, 0.0])
    got = _float32_at_most(t)
    assert got.dtype == np.float32
    assert np.all(got.astype(np.float64) <= t)
    with np.errstate(over="ignore"):
        above = np.nextafter(got, np.float32(np.inf)).astype(np.float64)
    assert np.all(above > t)


def test_float64_input_matches_and_infinity_is_refused_like_scikit_learn() -> None:
    X, y = _data(4)
    model = RandomForestClassifier(n_estimators=10, random_state=4).fit(X, y)
    compiled = compile_forest(model)
    assert compiled is not None
    Xn = _data(5, n=200)[0].astype(np.float64) + 1e-9  # scikit-learn casts to float32; so do we
    assert np.array_equal(compiled.predict_proba(Xn), _reference(model, Xn))
    Xn[1, 3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        _reference(model, Xn)
    with pytest.raises(ValueError, match="infinity"):
        compiled.predict_proba(Xn)


def test_rows_with_nan_get_scikit_learns_answer() -> None:
    X, y = _data(6)
    X[::7, 2] = np.nan  # trained with missing values: nodes route NaN left or right
    model = RandomForestClassifier(n_estimators=10, random_state=6).fit(X, y)
    compiled = compile_forest(model)
    assert compiled is not None
    Xn = _data(7, n=500)[0]
    Xn[::3, 2] = np.nan
    assert np.array_equal(compiled.predict_proba(Xn), _reference(model, Xn))


def test_one_class_and_leaf_only_trees() -> None:
    X, _ = _data(8, n=50)
    one = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, np.full(50, 7))
    stumps = RandomForestClassifier(n_estimators=5, min_samples_split=1000, random_state=0).fit(X, _data(8, n=50)[1])
    for model in (one, stumps):
        compiled = compile_forest(model)
        assert compiled is not None
        assert np.array_equal(compiled.predict_proba(X), _reference(model, X))
    assert compile_forest(one).predict_proba(X[:0]).shape == (0, 1)  # type: ignore[union-attr]


def test_what_is_not_a_plain_forest_is_declined() -> None:
    X, y = _data(9, n=100)

    class MyForest(RandomForestClassifier):
        pass

    assert compile_forest(MyForest(n_estimators=3, random_state=0).fit(X, y)) is None
    assert compile_forest(GradientBoostingClassifier(n_estimators=3).fit(X, y)) is None
    assert compile_forest(RandomForestClassifier(n_estimators=3)) is None  # not fitted
    multi = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, np.c_[y, y])
    assert compile_forest(multi) is None


def test_wrong_feature_count_is_refused() -> None:
    X, y = _data(10, n=100)
    compiled = compile_forest(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y))
    assert compiled is not None
    with pytest.raises(ValueError, match=r"expected \(rows, 8\)"):
        compiled.predict_proba(X[:, :5])


# --- Predictor: the engine that classifies the map and served tables ---------------------------------


def test_predictor_times_both_engines_once_and_keeps_the_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data(11)
    model = RandomForestClassifier(n_estimators=10, random_state=11, n_jobs=2).fit(X, y)
    rows = _data(12, n=CALIBRATION_ROWS + 500)[0]
    expected = RandomForestClassifier.predict_proba(_single(model), rows)

    fast = Predictor(model)
    assert fast.engine == "compiled" and fast.gil_free
    assert np.array_equal(fast(rows[:100]), expected[:100])  # small calls do not calibrate
    assert fast.choice == {}
    assert np.array_equal(fast(rows), expected)  # calibrates on the first CALIBRATION_ROWS rows
    assert set(fast.choice) == {"compiled_s", "sklearn_s", "rows"} and fast.choice["rows"] == CALIBRATION_ROWS
    assert fast.engine == ("compiled" if fast.choice["compiled_s"] <= fast.choice["sklearn_s"] else "sklearn")

    original = CompiledForest.predict_proba

    def slow(self: CompiledForest, X: np.ndarray, n_threads: int = 1) -> np.ndarray:
        time.sleep(20e-6 * len(X))  # a cost per row (a fixed cost per call would not count)
        return original(self, X, n_threads)

    monkeypatch.setattr(CompiledForest, "predict_proba", slow)
    slowed = Predictor(model)
    assert np.array_equal(slowed(rows), expected)
    assert slowed.engine == "sklearn" and slowed.choice["compiled_s"] > slowed.choice["sklearn_s"]
    assert np.array_equal(slowed(rows[:50]), expected[:50])
    assert model.n_jobs == 2  # the shared estimator is never modified


def test_predictor_engine_sklearn_and_other_estimators() -> None:
    X, y = _data(13, n=200)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    forced = Predictor(model, "sklearn")
    assert forced.compiled is None and forced.engine == "sklearn" and forced.gil_free
    assert np.array_equal(forced(X), model.predict_proba(X))
    boosting = GradientBoostingClassifier(n_estimators=3).fit(X, y)
    other = Predictor(boosting)
    assert other.compiled is None and other.engine == "sklearn" and not other.gil_free
    assert np.array_equal(other(X), boosting.predict_proba(X))


def _single(model: Any) -> Any:
    single = copy.copy(model)
    single.n_jobs = 1
    return single
