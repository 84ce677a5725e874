"""Tests for lcmodel.evaluate and lcmodel.report: test-set metrics, reports, plots, band importances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from lcmodel.classes import ClassTable
from lcmodel.errors import InputDataError
from lcmodel.evaluate import assemble_metrics, evaluate_model, feature_importances
from lcmodel.report import PRE_REFIT_SENTENCE, write_feature_importances, write_reports
from lcmodel.tuning import tune_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORLDCOVER = ClassTable(code_to_value={10: 10, 20: 20, 30: 30})
NOTE = "reference points sampled from ESA WorldCover: figures measure agreement with WorldCover"


@pytest.fixture(scope="module")
def fitted() -> tuple[RandomForestClassifier, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=240, n_features=8, n_informative=4, n_classes=3, class_sep=0.6, random_state=1
    )
    y = np.array([10, 20, 30])[y]
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X[:160], y[:160])
    return model, X[:160], y[:160], X[160:], y[160:]


def test_evaluate_model_matches_sklearn(fitted) -> None:
    model, _, _, X_test, y_test = fitted
    m = evaluate_model(model, X_test, y_test, WORLDCOVER)
    pred = model.predict(X_test)
    assert m["overall_accuracy"] == accuracy_score(y_test, pred)
    assert m["macro_f1"] == f1_score(y_test, pred, average="macro")
    assert m["kappa"] == cohen_kappa_score(y_test, pred)
    assert m["n_test"] == 80
    p, r, f, s = precision_recall_fscore_support(y_test, pred, labels=[10, 20, 30])
    for i, value in enumerate(["10", "20", "30"]):
        c = m["per_class"][value]
        assert (c["precision"], c["recall"], c["f1"], c["support"]) == (p[i], r[i], f[i], s[i])
    assert m["per_class"]["10"]["name"] == "Tree cover"
    cm = m["confusion_matrix"]
    assert cm["labels"] == [10, 20, 30]
    assert cm["names"] == ["Tree cover", "Shrubland", "Grassland"]
    assert cm["counts"] == confusion_matrix(y_test, pred, labels=[10, 20, 30]).tolist()
    assert "Tree cover" in m["classification_report"]


def test_absent_class_is_null_not_nan(fitted, tmp_path) -> None:
    model, _, _, X_test, y_test = fitted
    keep = y_test != 30
    # a model class with no test sample: it may still be predicted; if never, its ratios are None
    m = evaluate_model(model, X_test[keep], y_test[keep])
    assert m["per_class"]["30"]["support"] == 0
    assert m["confusion_matrix"]["labels"] == [10, 20, 30]
    m["per_class"]["30"]["precision"] = float("nan")  # NaN from anywhere must still give strict JSON
    paths = write_reports(m, tmp_path)
    loaded = json.loads(paths["metrics"].read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert loaded["test"]["per_class"]["30"]["precision"] is None


def test_evaluate_rejects_mismatched_lengths(fitted) -> None:
    model, _, _, X_test, y_test = fitted
    with pytest.raises(InputDataError, match="X_test has 80 rows but y_test has 79"):
        evaluate_model(model, X_test, y_test[:-1])


def test_write_reports_schema_and_files(fitted, tmp_path: Path) -> None:
    model, X_train, y_train, X_test, y_test = fitted
    tuning = tune_grid(
        X_train, y_train, [{"max_features": [2, 4]}, {"n_estimators": [5, 10]}], cv=3, n_jobs=1
    )
    m = evaluate_model(model, X_test, y_test)
    paths = write_reports(m, tmp_path, class_table=WORLDCOVER, tuning=tuning, notes=[NOTE])
    assert set(paths) >= {"metrics", "report", "confusion_matrix_png", "confusion_matrix_csv"}
    metrics = json.loads(paths["metrics"].read_text(), parse_constant=lambda c: pytest.fail(c))
    assert set(metrics) >= {"test", "cv", "best_params"}
    assert set(metrics["test"]) >= {
        "overall_accuracy", "macro_f1", "kappa", "per_class", "confusion_matrix", "n_test",
    }
    assert set(metrics["test"]["per_class"]["20"]) == {"name", "precision", "recall", "f1", "support"}
    assert metrics["test"]["per_class"]["20"]["name"] == "Shrubland"  # filled in from the class table
    assert set(metrics["test"]["confusion_matrix"]) == {"labels", "names", "counts"}
    cv = metrics["cv"]
    assert set(cv) >= {"method", "scoring", "folds", "best_score", "best_std", "stages"}
    assert cv["method"] == "grid" and cv["folds"] == 3 and len(cv["stages"]) == 2
    assert cv["best_score"] == tuning.best_score
    assert metrics["best_params"] == tuning.best_params
    assert metrics == json.loads(json.dumps(assemble_metrics(metrics["test"], tuning) | {"notes": [NOTE]}))
    # a summary read back from JSON (what a flow passes between tasks) assembles to the same thing
    round_trip = json.loads(json.dumps(tuning.summary()))
    assert assemble_metrics(metrics["test"], round_trip) == assemble_metrics(metrics["test"], tuning)

    report = paths["report"].read_text()
    assert PRE_REFIT_SENTENCE in report and "before the final refit on all samples" in report
    assert NOTE in report and "Shrubland" in report and "## Tuning" in report
    assert paths["confusion_matrix_png"].read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_feature_importances(fitted, tmp_path: Path) -> None:
    model = fitted[0]
    bands = [f"A{i:02d}" for i in range(8)]
    df = feature_importances(model, bands)
    assert list(df.columns) == ["band", "importance", "std", "rank"]
    assert sorted(df["band"]) == bands and df["importance"].is_monotonic_decreasing
    assert df["importance"].sum() == pytest.approx(1.0)
    top = bands[int(np.argmax(model.feature_importances_))]
    assert df.loc[0, "band"] == top and df.loc[0, "rank"] == 1
    with pytest.raises(InputDataError, match="7 band names for a model of 8 features"):
        feature_importances(model, bands[:7])
    paths = write_feature_importances(df, tmp_path)
    assert paths["png"].read_bytes()[:8] == PNG_MAGIC
    assert len(paths["csv"].read_text().splitlines()) == 9
