"""End to end through the flow (`lcmodel run`): a spatial split's assessment carries the cluster (spatial block)
standard errors beside the independent-points ones, in accuracy_assessment.json, report.md and the MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from lcmodel.accuracy import cluster_estimates, grid_blocks  # noqa: E402
from tests.rasters import tiny_demo_config  # noqa: E402


def test_cluster_standard_errors_through_the_flow(prefect_harness: None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from flows.cli import cli

    cfg_path = tiny_demo_config(tmp_path / "data", stages=[{"max_features": ["sqrt"], "n_estimators": [20]}])
    data = yaml.safe_load(cfg_path.read_text())
    # rare classes dropped and a larger test part: every map class gets test points, the assessment is computed
    data["sampling"].update(min_class_fraction=0.08, test_size=0.3)
    cfg_path.write_text(yaml.safe_dump(data))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = cfg_path.parent / data["output"]["dir"]

    assessment = json.loads((out / "accuracy_assessment.json").read_text())
    blocks = json.loads((out / "spatial_blocks.json").read_text())
    assert blocks["split"] == "spatial" and assessment["computed"] and assessment["se_design"] == "cluster"
    # the clusters are the split's blocks: grid_blocks of the test points with the split's block size
    test = pd.read_csv(out / "test_predictions.csv")
    classes = assessment["classes"]
    want = cluster_estimates(test["predicted"].to_numpy(), test["reference"].to_numpy(),
                             grid_blocks(test["x"].to_numpy(), test["y"].to_numpy(), blocks["block_size"]),
                             [assessment["per_class"][str(c)]["map_pixels"] for c in classes], classes=classes,
                             pixel_area_m2=assessment["pixel_area_m2"])
    cluster = assessment["cluster"]
    assert cluster["n_blocks"] == want["n_blocks"] > 1
    assert assessment["overall_accuracy_se_cluster"] == pytest.approx(want["overall_accuracy_se"], rel=1e-12)
    assert cluster["overall_accuracy"] == pytest.approx(assessment["overall_accuracy"], rel=1e-12)
    assert np.isfinite(assessment["design_effect_cluster"]) and assessment["design_effect_cluster"] > 0

    report = (out / "report.md").read_text()
    section = report.split("## Area-adjusted accuracy")[1]
    assert f"**Standard errors.** The test part is {cluster['n_blocks']} whole spatial blocks" in section
    ci = assessment["overall_accuracy_ci95_cluster"]
    assert f"+/- {ci:.4f} (95 % CI, cluster: {cluster['n_blocks']} blocks, t = {cluster['z']:.2f} with " in section
    assert "| Class | Blocks | User's +/- 95 % (indep.) | (cluster) |" in section

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`lcmodel.kind` = 'training'")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert metrics["area_adjusted_overall_accuracy_ci95_cluster"] == pytest.approx(ci)
    assert metrics["area_adjusted_overall_accuracy_ci95"] == pytest.approx(assessment["overall_accuracy_ci95"])
    assert metrics["area_adjusted_design_effect_cluster"] == pytest.approx(assessment["design_effect_cluster"])
    tags = runs[0].data.tags
    for value, row in cluster["per_class"].items():
        for key in ("users_ci95", "producers_ci95", "area_ha_ci95"):
            name = f"{key}_cluster_class_{value}"
            if row[key] is None:  # undefined (e.g. a class in one block): a tag with the reason, no metric
                assert tags[f"lcmodel.undefined.{name}"] == row["undefined"][key]
            else:
                assert metrics[name] == pytest.approx(row[key])
