"""End to end through the flow (`lcmodel demo --size 96`, the issue's "a small run crashes at the very end"):
the assessment has undefined standard errors (map classes with a single test point); the flow finishes,
the MLflow run is FINISHED with the defined figures as metrics and the undefined ones as
``lcmodel.undefined.<metric>`` tags, and report.md and accuracy_assessment.json say what is undefined and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("prefect")
pytest.importorskip("mlflow")


@pytest.mark.slow  # ~110 s: the 96 px demo through the flow; CI runs it (.ci/run: make test-slow)
def test_demo_96_finishes_with_undefined_standard_errors(prefect_harness: None, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from flows.cli import cli

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "demo"), "--size", "96"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = tmp_path / "demo" / "results"

    assessment = json.loads((results / "accuracy_assessment.json").read_text())
    assert assessment["computed"] is True
    assert assessment["overall_accuracy"] is not None
    assert assessment["overall_accuracy_ci95"] is None  # null, and why:
    reason = assessment["undefined"]["overall_accuracy_ci95"]
    assert "single test point" in reason
    for row in assessment["per_class"].values():
        for key, value in row.items():
            if value is None:
                assert row["undefined"][key], key

    report = (results / "report.md").read_text()
    assert "+/- undefined" in report
    assert f"- undefined: {reason}" in report

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lcmodel-demo")
    [run] = client.search_runs([exp.experiment_id], "tags.`lcmodel.kind` = 'training'")
    assert run.info.status == "FINISHED"
    assert "area_adjusted_overall_accuracy" in run.data.metrics
    assert "area_adjusted_overall_accuracy_ci95" not in run.data.metrics
    assert run.data.tags["lcmodel.undefined.area_adjusted_overall_accuracy_ci95"] == reason
    assert "test_macro_f1" in run.data.metrics  # the defined figures are all there
