"""End to end through the flow (`lcmodel run`) with cleaner labels (sampling.purity_window) and a clean map
(postprocess.mmu_pixels + postprocess.majority): the training part holds pure points only, the test part is
the one a run without purity has, and map_clean.tif is the whole-raster clean of map.tif."""

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

from lcmodel import pipeline  # noqa: E402
from lcmodel.config import load_config  # noqa: E402
from lcmodel.postprocess import CleanOptions, clean_array  # noqa: E402
from tests.rasters import tiny_demo_config  # noqa: E402


def test_purity_and_a_clean_map_through_the_flow(prefect_harness: None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from flows.cli import cli

    cfg_path = tiny_demo_config(tmp_path / "data")
    data = yaml.safe_load(cfg_path.read_text())
    data["sampling"]["purity_window"] = 3
    data["postprocess"] = {"mmu_pixels": 4, "connectivity": 8, "majority": 3}
    cfg_path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = cfg_path.parent / data["output"]["dir"]

    # cleaner labels: the training part is pure points only, the test part keeps its impure points
    samples = pd.read_csv(out / "samples.csv")
    table = pd.read_csv(out / "training_table.csv")
    assert "pure" not in table.columns  # a flag, never a feature
    flags = table.merge(samples[["row", "col", "pure"]], on=["row", "col"], how="left")
    assert flags["pure"].notna().all()
    purity = json.loads((out / "spatial_blocks.json").read_text())["purity"]
    whole = flags["value"].isin(purity["classes_kept_whole"])  # small classes, too few pure points: kept whole
    assert flags.loc[(flags["split"] == "train") & ~whole, "pure"].all()
    assert purity["train_dropped_by_class"] and whole.sum() < len(flags) and purity["min_per_class"] == 10
    assert not flags.loc[flags["split"] == "test", "pure"].all()
    assert purity["window"] == 3 and not purity["test_filtered"] and purity["train_dropped"] > 0
    # ... and it is the test part of the same run without purity, point for point
    plain = load_config(cfg_path)
    plain = plain.model_copy(update={
        "sampling": plain.sampling.model_copy(update={"purity_window": None}),
        "output": plain.output.model_copy(update={"dir": tmp_path / "plain"})})
    plain_table = pd.read_csv(pipeline.sample(plain).table.path)
    columns = ["x", "y", "value"]
    test = table.loc[table["split"] == "test", columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(test, plain_table.loc[plain_table["split"] == "test", columns]
                                  .reset_index(drop=True))
    assert (table["split"] == "train").sum() == (plain_table["split"] == "train").sum() - purity["train_dropped"]

    # the clean map: the whole-raster clean of the raw map, with its colours; the raw map stays
    with rasterio.open(out / "map.tif") as raw, rasterio.open(out / "map_clean.tif") as clean:
        raw_px, clean_px = raw.read(1), clean.read(1)
        assert clean.colormap(1) == raw.colormap(1) and clean.tags()["CLASS_1"] == raw.tags()["CLASS_1"]
        expected = clean_array(raw_px, CleanOptions(4, 8, 3), nodata=None if raw.nodata is None else int(raw.nodata))
    assert np.array_equal(clean_px, expected)
    summary = json.loads((out / "postprocess.json").read_text())
    assert summary["changed"] == int((clean_px != raw_px).sum()) > 0

    report = (out / "report.md").read_text()
    assert "## Clean map (postprocess)" in report
    assert f"Pixels changed: {summary['changed']:,} of {summary['n_valid']:,}" in report
    assert "The test part is NOT filtered" in report
    stages = json.loads((out / ".lcmodel" / "stages" / "postprocess.json").read_text())
    assert stages["artifacts"]["map"]["path"] == "map_clean.tif"  # a recorded stage, cached on rerun

    # the options removed: the rerun reuses every other stage and leaves no clean map of the earlier config
    del data["postprocess"]
    cfg_path.write_text(yaml.safe_dump(data))
    again = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert not (out / "map_clean.tif").exists() and not (out / "postprocess.json").exists()
    assert not (out / ".lcmodel" / "stages" / "postprocess.json").exists()
    assert "## Clean map (postprocess)" not in (out / "report.md").read_text()
    assert (out / "map.tif").exists()
