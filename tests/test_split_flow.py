"""End to end through the flow (`lcmodel run` on the tiny demo): two small map classes get no test point, and
the area-adjusted assessment is still computed over the other strata, with the unassessed ones named (and
their mapped area) in accuracy_assessment.json, report.md and the MLflow run; the split's overall and
per-class test shares are in the report and in MLflow, within the tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from tests.rasters import tiny_demo_config  # noqa: E402


def test_run_assesses_the_sampled_strata_and_names_the_others(prefect_harness: None, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from flows.cli import cli

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg_path = tiny_demo_config(tmp_path / "data", stages=[{"max_features": ["sqrt"], "n_estimators": [20]}],
                                tracking={"experiment": "split-and-strata"})
    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = cfg_path.parent / yaml.safe_load(cfg_path.read_text())["output"]["dir"]

    assessment = json.loads((out / "accuracy_assessment.json").read_text())
    assert assessment["computed"] is True and 0 < assessment["overall_accuracy"] <= 1
    missing = assessment["not_assessed"]
    assert missing, "the tiny demo has map classes no test point is predicted as"
    test = json.loads((out / "metrics.json").read_text())
    for row in missing:
        c = assessment["per_class"][str(row["class"])]
        assert c["n_samples"] == 0 and not c["assessed"] and row["map_pixels"] == c["map_pixels"] > 0
        assert c["users_accuracy"] is None and c["undefined"]["users_accuracy"].startswith("not assessed")
    assert 0 < assessment["assessed_share"] < 1
    assert assessment["assessed_pixels"] == assessment["total_pixels"] - sum(r["map_pixels"] for r in missing)

    report = (out / "report.md").read_text()
    assert "## Area-adjusted accuracy" in report and "Not assessed (map classes with no test point):" in report
    assert assessment["scope"] in report
    names = assessment["class_names"]
    for row in missing:
        assert f"| {names[str(row['class'])]} | {int(row['map_pixels'])} |" in report
    summary = test["split"]["summary"]
    assert "## Test split" in report and summary["met"] is True
    assert all(abs(c["test_share"] - 0.2) <= c["allowed"] for c in summary["per_class"].values())

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("split-and-strata")
    [run] = client.search_runs([exp.experiment_id], "tags.`lcmodel.kind` = 'training'")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["area_adjusted_overall_accuracy"] == pytest.approx(assessment["overall_accuracy"])
    assert run.data.metrics["area_adjusted_assessed_share"] == pytest.approx(assessment["assessed_share"])
    for row in missing:
        assert f"class {row['class']} (" in run.data.tags["lcmodel.not_assessed"]
    assert run.data.metrics["split_test_share"] == pytest.approx(summary["test_share"])
    assert run.data.metrics["split_shares_met"] == 1.0
    for value, c in summary["per_class"].items():
        assert run.data.metrics[f"split_test_share_class_{value}"] == pytest.approx(c["test_share"])
    assert run.data.tags["lcmodel.split"] == "spatial: within tolerance"
