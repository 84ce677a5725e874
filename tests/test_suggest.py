"""`lcmodel suggest`: points worth labelling, one per block, by class, away from sampled blocks, seeded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner

from lcmodel import suggest as sg
from lcmodel.cli import cli
from lcmodel.errors import ConfigError, InputDataError, InputFileError
from tests.rasters import write_raster

SIZE, PIXEL, WEST, NORTH = 96, 10.0, 500000.0, 8000000.0
#: the planted unfamiliar region (rows, cols): its DI is far above the threshold
FAR = (slice(0, 24), slice(16, 88))  # over the three classes


def _run_folder(folder: Path, *, di: bool = True, margin: bool = True, seed: int = 0) -> Path:
    """A run folder: map.tif (3 classes in stripes), margin.tif, di.tif, training_table.csv, spatial_blocks.json."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cols = np.arange(SIZE)
    labels = np.broadcast_to((1 + (cols // 32)).astype(np.uint8), (SIZE, SIZE)).copy()
    labels[90:, :] = 0  # nodata rows
    write_raster(folder / "map.tif", labels, nodata=0)
    with rasterio.open(folder / "map.tif", "r+") as dst:
        dst.update_tags(CLASS_1="Forest", CLASS_2="Crops", CLASS_3="Water")
    if margin:
        write_raster(folder / "margin.tif", rng.integers(0, 101, (SIZE, SIZE)).astype(np.uint8), nodata=255)
    write_raster(folder / "confidence.tif", rng.integers(30, 101, (SIZE, SIZE)).astype(np.uint8), nodata=255)
    if di:  # the DI of embeddings whose planted region is far from every training sample (lcmodel.aoa)
        trained, values = _planted_di(rng)
        path = write_raster(folder / "di.tif", values, nodata=-1)
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(LCMODEL_AOA_THRESHOLD=repr(trained.threshold))
    # training points: every block of rows 40..80, cols 0..40 is already sampled
    r, c = np.mgrid[40:80:4, 0:40:4]
    pd.DataFrame({"x": WEST + (c.ravel() + 0.5) * PIXEL, "y": NORTH - (r.ravel() + 0.5) * PIXEL,
                  "value": 1, "split": "train"}).to_csv(folder / "training_table.csv", index=False)
    (folder / "spatial_blocks.json").write_text(json.dumps({"block_size": 80.0}))
    return folder / "map.tif"


def _planted_di(rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    """DI of a 4-band embedding: N(0, 1) everywhere but the planted region, N(8, 1) there; 300 training
    samples drawn outside the region (3 folds, equal importances)."""
    from lcmodel.aoa import fit_training_di

    emb = rng.normal(0.0, 1.0, (SIZE, SIZE, 4))
    emb[FAR] += 8.0
    outside = np.ones((SIZE, SIZE), bool)
    outside[FAR] = False
    pick = rng.choice(np.flatnonzero(outside), 300, replace=False)
    train = emb.reshape(-1, 4)[pick]
    trained = fit_training_di(train, np.arange(300) % 3, np.ones(4), ["A00", "A01", "A02", "A03"])
    return trained, trained.di(emb.reshape(-1, 4)).reshape(SIZE, SIZE).astype(np.float32)


def _far(table: pd.DataFrame) -> pd.Series:
    return (table["row"] < 24) & (table["col"] >= 16) & (table["col"] < 88)


def _blocks(table: pd.DataFrame, side: float = 80.0) -> pd.Series:
    cx, cy = np.floor(table["x"] / side).astype(int), np.floor(table["y"] / side).astype(int)
    return cx.astype(str) + "," + cy.astype(str)


def test_suggestions_favour_the_unfamiliar_region_and_skip_sampled_blocks(tmp_path: Path) -> None:
    map_path = _run_folder(tmp_path / "run")
    inputs = sg.find_inputs(map_path, by="di")
    assert inputs.exclude == tmp_path / "run" / "training_table.csv" and inputs.block_size == 80.0
    result = sg.suggest_points(inputs, 12, seed=1)
    table = result.table
    assert len(table) == 12 and table["rank"].tolist() == list(range(1, 13))
    far = _far(table)
    assert far.all()  # each class has free blocks in the region: all 12 land there
    assert _blocks(table).is_unique  # one point per block
    train = pd.read_csv(tmp_path / "run" / "training_table.csv")
    assert not set(_blocks(table)) & set(_blocks(train))  # no point where the run already sampled
    assert table["score"].is_monotonic_decreasing
    assert table["map_class"].value_counts().to_dict() == {1: 4, 2: 4, 3: 4}  # equal allocation
    assert (table["map_name"] == table["map_class"].map({1: "Forest", 2: "Crops", 3: "Water"})).all()
    # by both: the same region leads the ranking
    both = sg.suggest_points(sg.find_inputs(map_path, by="both"), 12, seed=1).table
    assert _far(both).sum() >= 9
    assert {"margin", "di", "lon", "lat", "label"} <= set(both.columns)
    # by margin alone the region has no pull: the points are spread over the free blocks
    margin = sg.suggest_points(sg.find_inputs(map_path, by="margin"), 12, seed=1).table
    assert _far(margin).sum() <= 6


def test_without_exclusions_the_sampled_blocks_are_candidates(tmp_path: Path) -> None:
    map_path = _run_folder(tmp_path / "run")
    with_ex = sg.suggest_points(sg.find_inputs(map_path, by="margin"), 500, seed=1)
    without = sg.suggest_points(sg.find_inputs(map_path, by="margin", exclude_default=False), 500, seed=1)
    # 12 x 12 blocks of 80 m (the last one partly nodata), 25 of them sampled
    assert without.n_candidate_blocks == 144 and len(without.table) == 144  # fewer than --n: every free block
    assert with_ex.n_excluded_blocks == 25 and len(with_ex.table) == 144 - 25


def test_seeded_and_independent_of_the_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    map_path = _run_folder(tmp_path / "run")
    inputs = sg.find_inputs(map_path)  # default: both (di.tif is there)
    assert inputs.by == "both" and inputs.uncertainty is not None and inputs.uncertainty[0] == "margin"
    first = sg.write_suggestion(sg.suggest_points(inputs, 30, seed=7), tmp_path / "a.csv")
    again = sg.write_suggestion(sg.suggest_points(inputs, 30, seed=7), tmp_path / "b.csv")
    assert first.read_bytes() == again.read_bytes()
    monkeypatch.setattr("lcmodel.suggest.select.WINDOW", 20)  # read in 5 x 5 windows: the same points
    small = sg.write_suggestion(sg.suggest_points(inputs, 30, seed=7), tmp_path / "c.csv")
    assert small.read_bytes() == first.read_bytes()
    # ties (the same confidence everywhere) are broken by the seed
    flat = _run_folder(tmp_path / "flat", di=False, margin=False)
    write_raster(flat.parent / "confidence.tif", np.full((SIZE, SIZE), 50, np.uint8), nodata=255)
    one = sg.suggest_points(sg.find_inputs(flat), 10, seed=1).table
    two = sg.suggest_points(sg.find_inputs(flat), 10, seed=2).table
    assert "confidence" in one.columns and not one[["row", "col"]].equals(two[["row", "col"]])


def test_allocation_is_equal_and_gives_shortfall_away() -> None:
    assert sg.allocate_equal(10, {1: 100, 2: 100, 3: 100}) == {1: 4, 2: 3, 3: 3}
    assert sg.allocate_equal(10, {1: 2, 2: 100, 3: 100}) == {1: 2, 2: 4, 3: 4}
    assert sg.allocate_equal(11, {1: 2, 2: 100, 3: 100, 4: 3}) == {1: 2, 2: 4, 3: 3, 4: 2}
    assert sg.allocate_equal(10, {1: 2, 2: 3}) == {1: 2, 2: 3}


def test_geopackage_output(tmp_path: Path) -> None:
    import pyogrio

    map_path = _run_folder(tmp_path / "run")
    result = sg.suggest_points(sg.find_inputs(map_path), 9, seed=3)
    path = sg.write_suggestion(result, tmp_path / "next.gpkg")
    frame = pyogrio.read_dataframe(path, layer="suggested_points") if _has_geopandas() else None
    meta = pyogrio.read_info(path, layer="suggested_points")
    assert meta["features"] == 9 and {"rank", "map_class", "score", "di", "label"} <= set(meta["fields"])
    if frame is not None:
        assert frame["rank"].tolist() == list(range(1, 10))


def _has_geopandas() -> bool:
    try:
        import geopandas  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(("args", "error", "words"), [
    (["--n", "0"], ConfigError, "--n 0"),
    (["--by", "colour"], ConfigError, "--by 'colour'"),
    (["--out", "next.shp"], ConfigError, "use .csv or .gpkg"),
    (["--exclude-near", "nowhere.csv"], InputFileError, "nowhere.csv"),
    (["--block-size", "-5"], ConfigError, "--block-size"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], error: type, words: str) -> None:
    map_path = _run_folder(tmp_path / "run")
    argv = ["suggest", str(map_path), "--out", str(tmp_path / "next.csv"), *args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    assert words in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "next.csv").exists()


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        sg.find_inputs(tmp_path / "missing.tif")
    folder = tmp_path / "run"
    map_path = _run_folder(folder, di=False)
    with pytest.raises(InputFileError, match="needs di.tif"):
        sg.find_inputs(map_path, by="di")
    for name in ("margin.tif", "confidence.tif"):
        (folder / name).unlink()
    with pytest.raises(InputFileError, match="no margin.tif, entropy.tif or confidence.tif"):
        sg.find_inputs(map_path)
    emb = write_raster(tmp_path / "emb.tif", np.zeros((4, 8, 8), np.float32))
    with pytest.raises(InputDataError, match="is not a class map"):
        sg.find_inputs(emb)
    write_raster(folder / "margin.tif", np.zeros((10, 10), np.uint8), nodata=255)
    with pytest.raises(InputDataError, match="not on the grid"):
        sg.find_inputs(map_path)


def test_cli_writes_the_points(tmp_path: Path) -> None:
    map_path = _run_folder(tmp_path / "run")
    out = tmp_path / "next.csv"
    result = CliRunner().invoke(cli, ["suggest", str(map_path), "--n", "6", "--out", str(out), "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "6 points written" in result.output and "25 blocks skipped" in result.output
    table = pd.read_csv(out)
    assert len(table) == 6 and (out.with_suffix(".crs.json")).is_file()


def test_the_running_best_gives_the_whole_raster_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading in small windows and keeping 2 n blocks per class gives the points of one whole-raster pass."""
    map_path = _run_folder(tmp_path / "run")
    inputs = sg.find_inputs(map_path, by="margin", block_size=20.0)  # 2 x 2 px blocks: many candidates
    whole = sg.suggest_points(inputs, 25, seed=4).table
    monkeypatch.setattr("lcmodel.suggest.select.WINDOW", 7)  # windows that cut blocks
    pd.testing.assert_frame_equal(sg.suggest_points(inputs, 25, seed=4).table, whole)
