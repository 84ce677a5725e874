"""End to end through the flow (`lcmodel run`) with reference.extra_points, then `lcmodel suggest` on the map:
the extra points are in the training part only (the report says how many), and the suggested points avoid
the run's sampled blocks, one per block, in every predicted class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from tests.rasters import tiny_demo_config  # noqa: E402
from tests.test_extra_points import labelled_points  # noqa: E402


def test_extra_points_through_the_flow_then_suggest(prefect_harness: None, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from flows.cli import cli

    cfg_path = tiny_demo_config(tmp_path / "data")
    extra = labelled_points(cfg_path, cfg_path.parent / "labelled_next.csv", n=60, seed=5)
    data = yaml.safe_load(cfg_path.read_text())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data["reference"]["extra_points"] = [extra.name, "not_labelled_yet.csv"]  # a missing file: one line, no run
    cfg_path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["run", str(cfg_path)])
    assert result.exit_code == 2 and "not_labelled_yet.csv' does not exist" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (cfg_path.parent / data["output"]["dir"]).exists()
    data["reference"]["extra_points"] = [extra.name]  # relative to the config's folder
    cfg_path.write_text(yaml.safe_dump(data))

    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = cfg_path.parent / data["output"]["dir"]
    info = json.loads((out / "spatial_blocks.json").read_text())["extra_points"]
    assert info["added_to_training"] > 0
    report = (out / "report.md").read_text()
    assert (f"{info['added_to_training']} of {info['points']} extra labelled points" in report
            and "the test part excludes them" in report)

    # suggest on the run's map: by DI and margin (di.tif is there), the run's blocks skipped
    next_points = tmp_path / "next.gpkg"
    result = CliRunner().invoke(cli, ["suggest", str(out / "map.tif"), "--n", "20", "--out", str(next_points),
                                      "--by", "both"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "blocks skipped: they hold points of" in result.output
    csv = tmp_path / "next.csv"
    result = CliRunner().invoke(cli, ["suggest", str(out / "map.tif"), "--n", "20", "--out", str(csv)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(csv)
    side = json.loads((out / "spatial_blocks.json").read_text())["block_size"]
    blocks = (np.floor(table["x"] / side).astype(int).astype(str) + ","
              + np.floor(table["y"] / side).astype(int).astype(str))
    train = pd.read_csv(out / "training_table.csv")
    sampled = set(np.floor(train["x"] / side).astype(int).astype(str) + ","
                  + np.floor(train["y"] / side).astype(int).astype(str))
    assert len(table) > 0 and blocks.is_unique and not set(blocks) & sampled
    assert {"rank", "x", "y", "lon", "lat", "map_class", "score", "di", "label"} <= set(table.columns)
    again = tmp_path / "again.csv"
    CliRunner().invoke(cli, ["suggest", str(out / "map.tif"), "--n", "20", "--out", str(again)])
    assert again.read_bytes() == csv.read_bytes()  # seeded: the same points, bit for bit
