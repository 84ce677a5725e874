"""Validation design: sample size, allocation, exact per-class counts, never nodata, assess round trip."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from lcmodel.accuracy import (
    allocate,
    assess_labelled,
    confusion_counts,
    design_sample,
    draw_validation_sample,
    sample_size,
    stratified_estimates,
    write_sample,
)
from lcmodel.cli import cli
from lcmodel.errors import ConfigError, InsufficientDataError
from tests.rasters import write_raster


def test_sample_size_reproduces_olofsson_example() -> None:
    # Olofsson et al. 2014 section 5.1.1: W, expected user's accuracies, S(O) = 0.01 -> n = 641
    assert sample_size([0.02, 0.015, 0.32, 0.645], [0.7, 0.6, 0.9, 0.95], 0.01) == 641
    with pytest.raises(ConfigError, match="must be in \\(0, 1\\)"):
        sample_size([0.5, 0.5], [1.0, 0.9], 0.01)


def test_allocation_minimum_then_proportional() -> None:
    alloc = allocate(641, [200_000, 150_000, 3_200_000, 6_450_000], min_per_class=75)
    assert alloc.tolist()[:2] == [75, 75] and alloc.sum() == 641
    assert abs(alloc[3] / alloc[2] - 6_450_000 / 3_200_000) < 0.02
    # small classes give all their pixels; the total never exceeds the pixels
    assert allocate(100, [5, 1000, 10, 100_000], min_per_class=20).tolist() == [5, 20, 10, 65]
    assert allocate(500, [0, 3, 50, 60], min_per_class=20).tolist() == [0, 3, 50, 60]


@pytest.fixture()
def class_map(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    data = rng.choice(
        np.array([1, 2, 3, 5], dtype=np.uint8), size=(70, 90), p=[0.6, 0.25, 0.1, 0.05]
    )
    data[:, :9] = 0  # nodata strip
    data[30:40, 30:60] = 0
    data[0, 50] = 4  # a class with a single pixel
    import rasterio

    path = write_raster(tmp_path / "map.tif", data, nodata=0, blocksize=16)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(CLASS_1="Tree cover")
    return path


def test_sample_counts_match_design_and_never_nodata(class_map: Path) -> None:
    import rasterio

    design = design_sample(class_map, n=120, min_per_class=15)
    table, crs = draw_validation_sample(class_map, design, random_state=3)
    counts = table["map_class"].value_counts().to_dict()
    assert counts == {c: a for c, a in zip(design.classes, design.allocation, strict=True) if a}
    assert design.allocation[design.classes.index(4)] == 1  # all it has
    with rasterio.open(class_map) as src:
        values = src.read(1)
        assert crs == src.crs
    assert np.all(values[table["row"], table["col"]] == table["map_class"])
    assert np.all(values[table["row"], table["col"]] != 0)
    assert not table.duplicated(["row", "col"]).any()
    assert (table.loc[table["map_class"] == 1, "map_name"] == "Tree cover").all()
    again, _ = draw_validation_sample(class_map, design, random_state=3)
    pd.testing.assert_frame_equal(table, again)


def test_design_from_target_standard_error(class_map: Path) -> None:
    design = design_sample(class_map, target_se=0.02, expected_users=0.8, min_per_class=10)
    assert design.n_from_target == sample_size(design.map_pixels, 0.8, 0.02)
    assert design.n_total == sum(design.allocation) >= design.n_from_target


def test_assess_round_trip_csv_and_gpkg(class_map: Path, tmp_path: Path) -> None:
    design = design_sample(class_map, n=150, min_per_class=12)
    table, crs = draw_validation_sample(class_map, design, random_state=0)
    rng = np.random.default_rng(1)
    wrong = rng.random(len(table)) < 0.15
    table["reference"] = np.where(wrong, 2, table["map_class"])
    csv = write_sample(table, crs, tmp_path / "points.csv")
    result = assess_labelled(class_map, csv)
    classes = sorted(set(design.classes))
    m = confusion_counts(table["map_class"], table["reference"], classes)
    expected = stratified_estimates(m, design.map_pixels, classes=classes, pixel_area_m2=100.0)
    assert result["overall_accuracy"] == pytest.approx(expected["overall_accuracy"])
    assert result["per_class"]["2"]["area_ha"] == pytest.approx(
        expected["per_class"]["2"]["area_ha"]
    )

    gpkg = write_sample(table, crs, tmp_path / "points.gpkg")
    with sqlite3.connect(gpkg) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 1196444487
        n = con.execute("SELECT count(*) FROM validation_points").fetchone()[0]
        geom = con.execute("SELECT geom FROM validation_points LIMIT 1").fetchone()[0]
    assert n == len(table) and geom[:2] == b"GP"
    assert assess_labelled(class_map, gpkg)["overall_accuracy"] == pytest.approx(
        result["overall_accuracy"]
    )


def test_unlabelled_file_is_an_error(class_map: Path, tmp_path: Path) -> None:
    design = design_sample(class_map, n=40, min_per_class=5)
    table, crs = draw_validation_sample(class_map, design)
    csv = write_sample(table, crs, tmp_path / "p.csv")
    with pytest.raises(InsufficientDataError, match="has a reference label"):
        assess_labelled(class_map, csv)
    with pytest.raises(ConfigError, match="use .csv or .gpkg"):
        write_sample(table, crs, tmp_path / "p.shp")


def test_cli_validation_sample_and_assess(class_map: Path, tmp_path: Path) -> None:
    out = tmp_path / "pts.csv"
    r = CliRunner().invoke(
        cli,
        [
            "validation-sample",
            str(class_map),
            "--n",
            "60",
            "--min-per-class",
            "8",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    df["reference"] = df["map_class"]
    df.to_csv(out, index=False)
    r = CliRunner().invoke(
        cli,
        ["assess", str(class_map), str(out), "--out", str(tmp_path / "a.json")],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    assert "overall accuracy 1.0000" in r.output
