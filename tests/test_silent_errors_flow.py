"""Issue 15 item 6 through the flow (`lcmodel run`, then `lcmodel predict`): the bundle the flow trains carries
the training data's band statistics, and predicting it over an embedding with a band NaN everywhere, or with
its values rescaled and without band names, is refused or warned about in one line, where it used to write an
all-nodata or a wrong map with exit code 0."""

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

from tests.rasters import tiny_demo_config  # noqa: E402


def _copy(src_path: Path, dst_path: Path, data: np.ndarray, names: bool) -> Path:
    with rasterio.open(src_path) as src:
        profile, descriptions = src.profile, src.descriptions
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)
        if names:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
    return dst_path


def test_flow_bundle_band_stats_then_nan_band_and_reordered_bands(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from flows.cli import cli

    cfg_path = tiny_demo_config(tmp_path / "data")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "bands differ" not in result.output  # the demo's own embedding matches its training data
    cfg = yaml.safe_load(cfg_path.read_text())
    out = cfg_path.parent / cfg["output"]["dir"]
    emb = cfg_path.parent / cfg["embedding"]["path"]

    side = json.loads((out / "model.skops.json").read_text())
    stats = side["band_stats"]
    table = pd.read_csv(out / "training_table.csv")
    bands = [c for c in table.columns if c.startswith("A")]
    assert stats["bands"] == bands and len(bands) == 64 and stats["n"] == len(table)
    np.testing.assert_allclose(stats["mean"], table[bands].mean().to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["min"], table[bands].min().to_numpy(), rtol=1e-5, atol=1e-6)

    with rasterio.open(emb) as src:
        data = src.read()
    broken = data.copy()
    broken[3] = np.nan
    nan = _copy(emb, tmp_path / "nan.tif", broken, names=True)
    r = CliRunner().invoke(cli, ["predict", "--model", str(out / "model.skops"), "--embedding", str(nan),
                                 "--out", str(tmp_path / "nan" / "map.tif")])
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "band 4 (A03) is nodata (NaN or the nodata value) in all" in errors[0]
    assert not (tmp_path / "nan" / "map.tif").exists()

    # the demo's synthetic bands all look alike (mean ~0, SD ~0.12), so a reordering is caught on real
    # AlphaEarth values only (tests/test_silent_errors.py); a rescaling is caught here: int8-scale values as float
    rescaled = _copy(emb, tmp_path / "rescaled.tif", data * np.float32(127), names=False)
    r = CliRunner().invoke(cli, ["predict", "--model", str(out / "model.skops"), "--embedding",
                                 str(rescaled), "--out", str(tmp_path / "rescaled" / "map.tif")])
    assert r.exit_code == 0, r.output
    warned = [line for line in r.output.splitlines() if line.startswith("warning:") and "bands differ" in line]
    assert len(warned) == 1 and "64 of 64 bands differ from the model's training data (bands 1-64 " in warned[0]

    r = CliRunner().invoke(cli, ["predict", "--model", str(out / "model.skops"), "--embedding", str(emb),
                                 "--out", str(tmp_path / "same" / "map.tif")])
    assert r.exit_code == 0 and "bands differ" not in r.output, r.output
