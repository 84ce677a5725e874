"""The pipeline's accuracy outputs: split/CV strategies, random vs spatial CV side by side, assess_map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lcmodel import pipeline
from lcmodel.config import load_config
from lcmodel.demo import make_demo_data
from tests.rasters import tiny_demo_config  # noqa: E402


def _check_outputs(root: Path) -> dict:
    metrics = json.loads((root / "metrics.json").read_text())
    comparison = metrics["cv_comparison"]
    for strategy in ("random", "spatial"):
        assert 0 < comparison[strategy]["mean"] <= 1, comparison
        assert len(comparison[strategy]["fold_scores"]) == comparison["folds"]
    report = (root / "report.md").read_text()
    assert "Random CV (stratified k-fold)" in report and "Spatial CV (blocks)" in report
    return metrics


def test_synthetic_run_reports_both_cv_and_assessment(tmp_path: Path) -> None:
    cfg = load_config(tiny_demo_config(tmp_path, stages=[{"max_features": ["sqrt"], "n_estimators": [20]}],
                                       prediction={"probabilities": True, "margin": True, "entropy": True}))
    pipeline.run(cfg)
    root = Path(cfg.output.dir)
    metrics = _check_outputs(root)
    assert metrics["split"]["split"] == "spatial" and metrics["split"]["cv_strategy"] == "spatial"
    tuning = json.loads((root / "tuning_result.json").read_text())
    assert tuning["cv_strategy"] == "spatial" and tuning["block_size"] > 0
    assessment = json.loads((root / "accuracy_assessment.json").read_text())
    assert "agreement with that reference" in " ".join(assessment["design"])
    if assessment["computed"]:
        assert 0 < assessment["overall_accuracy"] <= 1
    report = (root / "report.md").read_text()
    assert report.count("## Area-adjusted accuracy") == 1
    runner = pipeline.StageRun(cfg, use_cache=False)  # a rerun of assess_map and the report replaces the section
    for name in (*[st.name for st in pipeline.TRAINING], "predict_map", "assess_map", "report"):
        runner(pipeline.STAGES[name])
    assert (root / "report.md").read_text().count("## Area-adjusted accuracy") == 1
    for name in ("probabilities.tif", "margin.tif", "entropy.tif"):
        assert (root / name).is_file()


def test_random_split_and_cv_when_asked(tmp_path: Path) -> None:
    cfg_path = make_demo_data(tmp_path, size=96, n_points=700)
    data = yaml.safe_load(cfg_path.read_text())
    data["sampling"].update(n_sample=500, split="random")
    data["tuning"].update(
        cv_strategy="random", stages=[{"max_features": ["sqrt"], "n_estimators": [10]}]
    )
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_path)
    runner = pipeline.StageRun(cfg)
    for st in pipeline.SAMPLING:
        runner(st)
    blocks = pipeline.read_blocks(runner.outputs[pipeline.TrainingTable])
    assert (
        blocks["split"] == "random"
        and blocks["cv_strategy"] == "random"
        and blocks["block_size"] > 0
    )
    for name in ("tune", "evaluate", "report"):
        runner(pipeline.STAGES[name])
    _check_outputs(Path(cfg.output.dir))


@pytest.mark.realdata
def test_zion_reports_random_and_spatial_cv(shared_data: Path, tmp_path: Path) -> None:
    zion = shared_data / "zion"
    cfg_path = tmp_path / "zion.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "reference": {"path": str(zion / "nlcd2011.tif"), "n_points": 1500},
                "embedding": {"path": str(zion / "zion_landsat8_b2345_stack.tif")},
                "sampling": {"n_sample": 1200},
                "tuning": {"stages": [{"max_features": [2], "n_estimators": [50]}]},
                "output": {"dir": str(tmp_path / "out")},
            }
        )
    )
    cfg = load_config(cfg_path)
    pipeline.train(cfg)
    metrics = _check_outputs(Path(cfg.output.dir))
    assert metrics["split"]["split"] == "spatial"
    # neighbouring pixels are alike: random CV is not less optimistic than spatial CV here
    assert metrics["cv_comparison"]["random"]["mean"] > metrics["cv_comparison"]["spatial"]["mean"]
