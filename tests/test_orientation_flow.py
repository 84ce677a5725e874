"""A south-up embedding in the public AlphaEarth layout through the pipeline and through ``lcmodel run`` (the
Prefect flow): the same samples, training table and map bytes as its north-up copy; assessment and quicklook
of a south-up map as of its north-up copy."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from affine import Affine
from click.testing import CliRunner

from lcmodel.classes import ClassTable
from tests.aef_fixtures import north_up_copy, write_aef_tile
from tests.rasters import origin_transform, write_raster

LEFT, TOP, RES = 822400.0, 9668000.0, 10.0
H, W, B = 40, 48, 8
#: the reference raster: 16 px more on every side than the embedding (so points fall outside it too)
PAD = 16
CODES = (10, 40, 80)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference(path: Path) -> np.ndarray:
    """A WorldCover-like class raster (north-up, UTM 20S, 10 m), three regions, a nodata strip; returned too."""
    h, w = H + 2 * PAD, W + 2 * PAD
    r, c = np.mgrid[0:h, 0:w]
    classes = np.where(c < w // 2, CODES[0], np.where(r < h // 2, CODES[1], CODES[2])).astype(np.uint8)
    classes[:, :3] = 0
    write_raster(path, classes, transform=origin_transform(LEFT - PAD * RES, TOP + PAD * RES, RES), nodata=0)
    return classes


def _case(root: Path) -> dict[str, Path]:
    """A south-up AEF tile whose vectors follow the reference's classes, its north-up copy, the reference."""
    root.mkdir(parents=True, exist_ok=True)
    classes = _reference(root / "ref.tif")[PAD : PAD + H, PAD : PAD + W]
    rng = np.random.default_rng(7)
    means = rng.normal(size=(len(CODES), B))
    index = np.searchsorted(np.array(CODES), np.where(classes == 0, CODES[0], classes))
    v = means[index].transpose(2, 0, 1) + 0.6 * rng.normal(size=(B, H, W))
    v /= np.linalg.norm(v, axis=0, keepdims=True)
    south = write_aef_tile(root / "aef_south.tif", left=LEFT, top=TOP, width=W, height=H, bands=B, block=16,
                           values=v, nodata_fraction=0.03, seed=2)
    return {"root": root, "ref": root / "ref.tif", "south": south,
            "north": north_up_copy(south, root / "aef_north.tif")}


def _config(case: dict[str, Path], embedding: str, out: str, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "reference": {"path": str(case["ref"]), "n_points": 400},
        "embedding": {"path": str(case[embedding])},
        "sampling": {"n_sample": 300, "min_class_fraction": 0.0},
        "tuning": {"cv": 2, "stages": [{"max_features": ["sqrt"]}, {"n_estimators": [5]}]},
        "prediction": {"block_size": 16, "probabilities": True},
        "output": {"dir": str(case["root"] / out)},
        **sections,
    }
    path = case["root"] / f"{out}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_south_up_samples_and_training_table_equal_the_copys(tmp_path: Path) -> None:
    from lcmodel import pipeline
    from lcmodel.config import load_config

    case = _case(tmp_path)
    for name in ("south", "north"):
        pipeline.sample(load_config(_config(case, name, f"out_{name}")))
    for file in ("points_labelled.csv", "samples.csv", "training_table.csv"):
        assert _sha(tmp_path / "out_south" / file) == _sha(tmp_path / "out_north" / file), file
    table = pd.read_csv(tmp_path / "out_south" / "training_table.csv")
    assert len(table) > 100 and set(table["code"]) == set(CODES)
    # pixel centres and rows of the north-up grid: row 0 is the north edge
    assert np.allclose(table["y"], TOP - RES * (table["row"] + 0.5)) and table["row"].between(0, H - 1).all()


@pytest.fixture(scope="module")
def flow_ready(prefect_harness: None) -> None:
    """One temporary Prefect server for this module (tests/conftest.py)."""


def test_lcmodel_run_maps_a_south_up_aef_tile_north_up(tmp_path: Path, flow_ready: None) -> None:
    from flows.cli import cli

    case = _case(tmp_path)
    south_cfg = _config(case, "south", "flow", tracking={"experiment": "orientation"})
    result = CliRunner().invoke(cli, ["run", str(south_cfg)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    plain = CliRunner().invoke(cli, ["run", "--plain", str(_config(case, "north", "plain"))], catch_exceptions=False)
    assert plain.exit_code == 0, plain.output
    flow, ref = tmp_path / "flow", tmp_path / "plain"
    for file in ("training_table.csv", "map.tif", "confidence.tif", "probabilities.tif"):
        assert _sha(flow / file) == _sha(ref / file), file  # the same bytes as the north-up copy's run
    with rasterio.open(flow / "map.tif") as m, rasterio.open(case["ref"]) as r:
        assert m.transform == Affine(RES, 0, LEFT, 0, -RES, TOP) and (m.width, m.height) == (W, H)
        mapped = m.read(1)
        truth = r.read(1)[PAD : PAD + H, PAD : PAD + W]
    assert set(np.unique(mapped).tolist()) - {0} == set(CODES)
    known = (mapped != 0) & (truth != 0)
    assert (mapped[known] == truth[known]).mean() > 0.8  # right way up: the classes' regions are where they are
    upside_down = (mapped[::-1] != 0) & (truth != 0)
    assert (mapped[::-1][upside_down] == truth[upside_down]).mean() < 0.7
    a = yaml.safe_load((flow / "accuracy_assessment.json").read_text())
    b = yaml.safe_load((ref / "accuracy_assessment.json").read_text())
    drop = {"map", "labelled_points"}
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert re.search(r"overall accuracy", (flow / "report.md").read_text(), re.I)


# --- a south-up MAP (made elsewhere) in the assessment commands and the quicklook ---------------------------


def _maps(root: Path) -> tuple[Path, Path]:
    """A north-up class map and the same map stored south-up."""
    rng = np.random.default_rng(3)
    labels = rng.integers(1, 4, size=(H, W)).astype(np.uint8)
    labels[:2, :5] = 0
    north = write_raster(root / "map_north.tif", labels, transform=origin_transform(LEFT, TOP, RES), nodata=0,
                         CLASS_1="a", CLASS_2="b", CLASS_3="c")
    south = write_raster(root / "map_south.tif", labels[::-1].copy(), nodata=0,
                         transform=Affine(RES, 0, LEFT, 0, RES, TOP - RES * H), CLASS_1="a", CLASS_2="b", CLASS_3="c")
    return north, south


def test_validation_sample_and_assessment_of_a_south_up_map(tmp_path: Path) -> None:
    from lcmodel.accuracy import assess_labelled, design_sample, draw_validation_sample, write_sample
    from lcmodel.accuracy.design import map_class_counts

    north, south = _maps(tmp_path)
    cn, cs = map_class_counts(north), map_class_counts(south)
    assert cn[0].tolist() == cs[0].tolist() and cn[1].tolist() == cs[1].tolist() and cn[2] == cs[2]
    design = design_sample(south, n=40, min_per_class=5)
    table, crs = draw_validation_sample(south, design, random_state=0)
    with rasterio.open(north) as src:  # each drawn point's class is the north-up map's class at its x/y
        at_xy = np.array([v[0] for v in src.sample(zip(table["x"], table["y"], strict=True))])
    np.testing.assert_array_equal(at_xy, table["map_class"].to_numpy())
    table["reference"] = np.where(np.arange(len(table)) % 4 == 0, 1, table["map_class"])
    labelled = write_sample(table, crs, tmp_path / "labelled.csv")
    a, b = assess_labelled(south, labelled), assess_labelled(north, labelled)
    assert {k: v for k, v in a.items() if k != "map"} == {k: v for k, v in b.items() if k != "map"}


def test_quicklook_of_a_south_up_map_is_the_north_up_one(tmp_path: Path) -> None:
    from lcmodel.quicklook import write_quicklook

    north, south = _maps(tmp_path)
    table = ClassTable({1: 1, 2: 2, 3: 3}, names={1: "a", 2: "b", 3: "c"},
                       colors={1: "#ff0000", 2: "#00ff00", 3: "#0000ff"})
    png_n = write_quicklook(north, tmp_path / "n.png", table)
    png_s = write_quicklook(south, tmp_path / "s.png", table)
    assert _sha(png_n) == _sha(png_s)
