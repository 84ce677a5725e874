"""Undefined is a value, not a crash: an estimate that cannot be computed (a stratum with one test point, a
class nobody mapped) is null with its reason in accuracy_assessment.json, "undefined: <reason>" in the
report and the tag ``lcmodel.undefined.<metric>`` in MLflow; every figure the flow logs survives None, NaN
and inf (one test per ``Tracker.log_*`` method that takes metric data, on a throwaway SQLite store)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lcmodel.accuracy import stratified_estimates
from lcmodel.io import json_ready
from lcmodel.report import assessment_markdown

BAD = [None, float("nan"), float("inf"), float("-inf")]
BAD_IDS = ["None", "NaN", "inf", "-inf"]


def _single_point_case() -> dict[str, Any]:
    # class 2 is mapped (30 px) and has a single test point; class 3 covers no map pixel and nobody maps it
    counts = [[8, 1, 0, 0], [1, 9, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    return stratified_estimates(counts, [500, 400, 30, 0], classes=[1, 2, 3, 4], pixel_area_m2=100.0)


# ------------------------------------------------------------------------------------------- the library
def test_single_point_stratum_gives_reasons_not_numbers() -> None:
    r = _single_point_case()
    assert math.isfinite(r["overall_accuracy"])
    assert math.isnan(r["overall_accuracy_se"]) and math.isnan(r["overall_accuracy_ci95"])
    assert set(r["undefined"]) == {"overall_accuracy_se", "overall_accuracy_ci95"}
    assert "map class 3 has a single test point" in r["undefined"]["overall_accuracy_se"]
    c3 = r["per_class"]["3"]
    assert math.isfinite(c3["users_accuracy"]) and "users_accuracy" not in c3["undefined"]
    assert "a single test point is mapped as class 3" in c3["undefined"]["users_se"]
    assert "single test point" in c3["undefined"]["area_ha_ci95"]
    c4 = r["per_class"]["4"]  # an empty class: no map pixel, no test point mapped as it
    assert "no test point is mapped as class 4" in c4["undefined"]["users_accuracy"]
    # the defined figures stay numbers
    assert math.isfinite(r["per_class"]["1"]["users_se"]) and "users_se" not in r["per_class"]["1"]["undefined"]
    # in JSON: null, and the reason next to it
    data = json.loads(json.dumps(json_ready(r), allow_nan=False))
    assert data["overall_accuracy_se"] is None and data["undefined"]["overall_accuracy_se"]


def test_every_stratum_sampled_twice_has_nothing_undefined() -> None:
    r = stratified_estimates([[8, 2], [1, 9]], [600, 400], classes=[1, 2])
    assert r["undefined"] == {}
    assert all(c["undefined"] == {} for c in r["per_class"].values())


def test_report_says_undefined_and_why() -> None:
    result = json.loads(json.dumps(json_ready({**_single_point_case(), "computed": True, "design": []})))
    text = assessment_markdown(result, "## Assessment")
    assert "+/- undefined" in text
    assert "n/a" not in text
    assert "undefined: map class 3 has a single test point" in text
    assert "overall accuracy +/- 95 %" in text
    assert "undefined: no test point is mapped as class 4" in text
    not_computed = assessment_markdown({"computed": False, "reason": "map classes [5] have pixels"}, "## A")
    assert "Not computed (undefined): map classes [5] have pixels" in not_computed


def test_assess_cli_prints_undefined_and_why(tmp_path: Path) -> None:
    """`lcmodel assess` on a map with a one-pixel class: that stratum has one point, so SEs are undefined."""
    from tests.rasters import sample_label_assess

    data = np.random.default_rng(7).choice(np.array([1, 2, 3], dtype=np.uint8), size=(60, 60), p=[0.6, 0.3, 0.1])
    data[0, 50] = 4  # a class with a single pixel: at most one validation point

    def as_mapped(df: Any) -> Any:
        assert (df["map_class"] == 4).sum() == 1
        return df.assign(reference=df["map_class"])

    r = sample_label_assess(tmp_path, data, as_mapped)
    assert r.exit_code == 0, r.output
    assert "+/- undefined" in r.output and "nan" not in r.output
    assert "undefined: map class 4 has a single test point" in r.output
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["overall_accuracy_ci95"] is None and result["undefined"]["overall_accuracy_ci95"]


# ----------------------------------------------------------------------------------------------- MLflow
pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from flows.config import load_flow_config
    from flows.tracking import Tracker
    from tests.rasters import tiny_demo_config

    root = tmp_path_factory.mktemp("undefined")
    cfg = load_flow_config(tiny_demo_config(root / "data"))
    uri = f"sqlite:///{root / 'mlflow.sqlite'}"
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"uri": uri, "experiment": "undefined-figures"})})
    return Tracker(cfg)


def _run(tracker: Any, run_id: str | None = None) -> Any:
    return tracker.client.get_run(run_id or tracker.run_id).data


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))  # None -> null, NaN -> NaN, inf -> Infinity (what a reader may meet)
    return path


def _assert_undefined(data: Any, name: str) -> None:
    assert name not in data.metrics
    assert data.tags[f"lcmodel.undefined.{name}"]


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_log_candidate(tracker: Any, bad: Any) -> None:
    tracker.log_candidate({"stage": 1, "trial": repr(bad), "params": {"n_estimators": 10}, "mean_score": bad,
                           "std_score": 0.1, "fold_scores": [0.5, bad, 0.7], "state": "COMPLETE"})
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      f"tags.`mlflow.parentRunId` = '{tracker.run_id}' "
                                      f"and attributes.run_name = 'stage1-trial{bad!r}'")
    data = runs[0].data
    _assert_undefined(data, "cv_mean_score")
    assert data.metrics["cv_std_score"] == 0.1
    assert "step 1" in data.tags["lcmodel.undefined.cv_fold_score"]
    assert runs[0].info.status == "FINISHED"


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_log_tuning(tracker: Any, bad: Any, tmp_path: Path) -> None:
    tracker.log_tuning({"best_params": {"n_estimators": 10}, "best_score": bad, "elapsed_s": 2.5,
                        "n_candidates": 3}, [])
    data = _run(tracker)
    _assert_undefined(data, "cv_best_score")
    assert data.metrics["tuning_time_s"] == 2.5


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_log_metrics(tracker: Any, bad: Any, tmp_path: Path) -> None:
    path = _write(tmp_path / "metrics.json", {
        "test": {"overall_accuracy": 0.8, "macro_f1": bad, "kappa": 0.6,
                 "per_class": {"1": {"f1": 0.9}, "9": {"f1": bad}}},
        "cv": {"best_score": bad, "scoring": "f1_macro"}})
    tracker.log_metrics(path)
    data = _run(tracker)
    assert data.metrics["test_overall_accuracy"] == 0.8 and data.metrics["test_f1_class_1"] == 0.9
    for name in ("test_macro_f1", "test_f1_class_9", "cv_macro_f1"):
        _assert_undefined(data, name)


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_log_prediction(tracker: Any, bad: Any) -> None:
    tracker.log_prediction({"pixels_per_s": bad, "elapsed_s": 0.0, "n_valid": 10, "n_nodata": 0,
                            "class_counts": {"1": 10}, "class_area_ha": {"1": bad}})
    data = _run(tracker)
    _assert_undefined(data, "predict_px_per_s")
    _assert_undefined(data, "map_area_ha_class_1")
    assert data.metrics["predict_valid_pixels"] == 10


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_log_assessment(tracker: Any, bad: Any, tmp_path: Path) -> None:
    result = {**_single_point_case(), "computed": True}
    result["per_class"]["1"]["area_ha"] = bad  # a figure without a recorded reason
    path = _write(tmp_path / "accuracy_assessment.json", json_ready(result) if bad is None else result)
    undefined = tracker.log_assessment(path)
    data = _run(tracker)
    assert math.isfinite(data.metrics["area_adjusted_overall_accuracy"])
    _assert_undefined(data, "area_adjusted_overall_accuracy_ci95")
    assert "map class 3 has a single test point" in data.tags[
        "lcmodel.undefined.area_adjusted_overall_accuracy_ci95"]
    assert "no test point is mapped as class 4" in data.tags["lcmodel.undefined.users_accuracy_class_4"]
    _assert_undefined(data, "area_ha_class_1")
    assert "area_adjusted_overall_accuracy_ci95" in undefined
    assert data.metrics["users_accuracy_class_1"] == pytest.approx(8 / 9)


def test_log_assessment_not_computed(tracker: Any, tmp_path: Path) -> None:
    reason = "map classes [5] have pixels but no test point is predicted as them"
    path = _write(tmp_path / "accuracy_assessment.json", {"computed": False, "reason": reason})
    tracker.log_assessment(path)
    assert _run(tracker).tags["lcmodel.undefined.area_adjusted_overall_accuracy"] == reason


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_log_cv_comparison(tracker: Any, bad: Any, tmp_path: Path) -> None:
    path = _write(tmp_path / "metrics.json", {"cv_comparison": {"random": {"mean": 0.7}, "spatial": {"mean": bad}}})
    tracker.log_cv_comparison(path)
    data = _run(tracker)
    assert data.metrics["cv_random_mean"] == 0.7
    _assert_undefined(data, "cv_spatial_mean")


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_prediction_run_log_summary(tracker: Any, bad: Any, tmp_path: Path) -> None:
    from flows.tracking import PredictionRun

    embedding = tmp_path / "emb.tif"
    embedding.write_bytes(b"not read")
    run = PredictionRun(experiment="undefined-figures", tracking_uri=tracker.uri, model={"model_uri": "x"},
                        embedding_path=embedding)
    run.log_summary({"pixels_per_s": 5.0, "elapsed_s": bad, "n_valid": bad, "n_nodata": 0,
                     "class_counts": {"1": 4}})
    run.finish()
    data = tracker.client.get_run(run.run_id).data
    assert data.metrics["predict_px_per_s"] == 5.0 and data.metrics["map_pixels_class_1"] == 4
    _assert_undefined(data, "predict_time_s")
    _assert_undefined(data, "predict_valid_pixels")


def test_the_tracker_run_still_finishes(tracker: Any) -> None:
    tracker.finish()
    assert tracker.client.get_run(tracker.run_id).info.status == "FINISHED"
