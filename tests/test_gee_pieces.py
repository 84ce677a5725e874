"""Earth Engine export pieces (`<prefix>-<yoff>-<xoff>.tif`) read as one collection through `lcmodel run`,
without merging them by hand: the same samples as the merged raster, one map per piece."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import rasterio
import yaml

from lcmodel import pipeline
from lcmodel.config import load_config
from tests.aef_fixtures import write_gee_pieces
from tests.rasters import tiny_demo_config


def test_gee_pieces_run_like_the_merged_raster(prefect_harness: None, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from flows.cli import cli

    merged_cfg = tiny_demo_config(tmp_path / "merged", stages=[{"max_features": ["sqrt"], "n_estimators": [8]}])
    data = yaml.safe_load(merged_cfg.read_text())
    emb = merged_cfg.parent / data["embedding"]["path"]
    with rasterio.open(emb) as src:
        array, transform, crs = src.read(), src.transform, src.crs
    pieces = write_gee_pieces(tmp_path / "gee", "embedding_2020", array, transform, crs, piece=(64, 48),
                              band_names=[f"A{i:02d}" for i in range(array.shape[0])])
    assert len(pieces) == 4 and pieces[1].name == "embedding_2020-0000000000-0000000048.tif"
    data["embedding"]["path"] = str(tmp_path / "gee" / "embedding_2020-*.tif")
    data["output"]["dir"] = str(tmp_path / "gee_out")
    for key in ("reference", "classes"):
        for field in ("path", "table"):
            if data.get(key, {}).get(field):
                data[key][field] = str(merged_cfg.parent / data[key][field])
    cfg_path = tmp_path / "gee.yaml"
    cfg_path.write_text(yaml.safe_dump(data))

    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = CliRunner(env=env).invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tmp_path / "gee_out"
    assert len(list((out / "tiles").glob("*/map.tif"))) == 4

    # the same labelled pixels and vectors as the merged raster (the order differs: pixels are per tile)
    pipeline.sample(load_config(merged_cfg))
    merged_dir = load_config(merged_cfg).output.dir
    a = pd.read_csv(out / "samples.csv").drop(columns=["tile", "row", "col"])
    b = pd.read_csv(merged_dir / "samples.csv").drop(columns=["row", "col"])
    key = ["x", "y"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))
