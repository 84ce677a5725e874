"""End to end through the flow (`lcmodel run`): a 66-band int16 raster (nodata -32768) whose bands 20 and 66
are -32768 in every pixel, the issue's hyperspectral case. Without band selection every pixel is nodata
("none of the reference points falls on a valid embedding pixel"); here the two bands are dropped with a
warning, the run maps, and every output says which bands were used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from lcmodel.embedding import NodataRule  # noqa: E402
from tests.rasters import HYPERSPECTRAL_DEAD as DEAD  # noqa: E402
from tests.rasters import hyperspectral_demo_config  # noqa: E402


def test_dead_bands_are_dropped_and_the_run_maps(prefect_harness: None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from flows.cli import cli

    cfg_path, raster = hyperspectral_demo_config(tmp_path / "data")
    with rasterio.open(raster) as src:
        block = src.read()
        rule = NodataRule.detect(src)
    assert rule.nodata == -32768 and not rule.valid_mask(block).any()  # the rule over ALL bands: no valid pixel
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = cfg_path.parent / yaml.safe_load(cfg_path.read_text())["output"]["dir"]

    stats = json.loads((out / "sample_stats.json").read_text())
    bands = stats["bands"]
    assert bands["selected_by"] == "detection" and bands["n_source_bands"] == 66 and bands["n_used"] == 64
    assert [(d["index"], d["name"], d["reason"]) for d in bands["dropped"]] == [
        (20, "band_20", "nodata"), (66, "band_66", "nodata")]
    used = [b for b in range(1, 67) if b not in DEAD]
    assert bands["used_indexes"] == used and stats["n_samples"] > 300

    table = pd.read_csv(out / "training_table.csv", nrows=1)
    assert [c for c in table.columns if c.startswith("band_")] == [f"band_{b}" for b in used]
    side = json.loads((out / "model.skops.json").read_text())
    assert side["band_indexes"] == used and side["n_source_bands"] == 66
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bands"] == bands and metrics["test"]["overall_accuracy"] > 0.5
    report = (out / "report.md").read_text()
    assert "The model uses 64 of the embedding's 66 bands: band(s) 20, 66 (band_20, band_66) were nodata in " \
           "every sampled pixel" in report

    # the map: nodata exactly where a USED band is nodata (here: the demo's nodata pixels), classes elsewhere
    with rasterio.open(out / "map.tif") as m:
        labels = m.read(1)
        map_nodata = m.nodata
    valid = rule.valid_mask(block[[b - 1 for b in used]])
    assert valid.mean() > 0.5
    np.testing.assert_array_equal(labels != map_nodata, valid)
    prediction = json.loads((out / "prediction.json").read_text())
    assert prediction["n_valid"] == int(valid.sum())
