"""Embedding and reference collections: path specs, indexes, AOI/year, manifests, extraction across tiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from lcmodel import pipeline
from lcmodel.config import load_config
from lcmodel.errors import ConfigError, InputFileError
from lcmodel.extract import extract_values
from lcmodel.sources import Collection, expand_spec, open_collection, parse_aoi
from lcmodel.sources.extraction import extract_collection
from lcmodel.sources.vrt import write_mosaic_vrt
from tests.rasters import write_raster


def _identity(path: str) -> dict[str, Any]:
    return {"name": Path(path).name}


def _aef_tile(path: Path, epsg: int, lon: float, lat: float, size: int = 64, seed: int = 0,
              bands: int = 8, hole: bool = True) -> Path:
    """An int8 AlphaEarth-like tile (nodata -128) whose NW corner is at (lon, lat), in UTM zone ``epsg``."""
    x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(lon, lat)
    x0, y0 = np.floor(x / 10) * 10, np.floor(y / 10) * 10
    rng = np.random.default_rng(seed)
    data = rng.integers(-127, 128, size=(bands, size, size), dtype=np.int16).astype(np.int8)
    if hole:
        data[:, :4, :4] = -128  # a nodata corner
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="int8", nodata=-128,
                   crs=CRS.from_epsg(epsg), transform=Affine(10, 0, x0, 0, -10, y0), tiled=True,
                   blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(f"A{i:02d}" for i in range(bands))
    return path


@pytest.fixture()
def two_zones(tmp_path: Path) -> dict[str, Any]:
    """Two tiles either side of the 6 E UTM zone border (EPSG:32631 and 32632), and lon/lat points on both."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    west = _aef_tile(folder / "a-31N.tif", 32631, 5.985, 45.0, seed=1)
    east = _aef_tile(folder / "b-32N.tif", 32632, 6.002, 45.0, seed=2)
    lon = np.r_[np.linspace(5.9855, 5.9925, 6), np.linspace(6.0025, 6.0085, 6)]
    lat = np.full(lon.size, 44.9985)
    return {"folder": folder, "west": west, "east": east, "lon": lon, "lat": lat}


def test_specs_list_glob_folder_keep_a_deterministic_order(two_zones: dict[str, Any], tmp_path: Path) -> None:
    folder = two_zones["folder"]
    names = ["a-31N.tif", "b-32N.tif"]
    assert [Path(p).name for p in expand_spec(str(folder), "embedding raster", "embedding.path")] == names
    assert [Path(p).name for p in expand_spec(str(folder / "*.tif"), "e", "embedding.path")] == names
    given = [str(two_zones["east"]), str(two_zones["west"])]
    assert expand_spec(given, "e", "embedding.path") == given  # a list keeps its order
    # the mirror's flipping .vrt beside a tile is not read twice
    (folder / "a-31N.vrt").write_text("<VRTDataset/>")
    assert [Path(p).name for p in expand_spec(str(folder), "e", "embedding.path")] == names
    with pytest.raises(InputFileError, match=r"embedding.path pattern '.*nothing\*.tif' matches no file"):
        expand_spec(str(tmp_path / "nothing*.tif"), "e", "embedding.path")
    with pytest.raises(InputFileError, match="remote files cannot be listed"):
        expand_spec("https://example.org/tiles/*.tiff", "e", "embedding.path")


def _index(tmp_path: Path, rows: list[dict[str, Any]], suffix: str) -> Path:
    df = pd.DataFrame(rows)
    path = tmp_path / f"aef_index{suffix}"
    if suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_an_index_is_filtered_by_aoi_and_year(two_zones: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    rows = [
        {"path": "tiles/a-31N.tif", "year": 2020, "crs": "EPSG:32631", "utm_zone": "31N",
         "wgs84_west": 5.985, "wgs84_south": 44.994, "wgs84_east": 5.994, "wgs84_north": 45.0},
        {"path": "tiles/b-32N.tif", "year": 2020, "crs": "EPSG:32632", "utm_zone": "32N",
         "wgs84_west": 6.002, "wgs84_south": 44.994, "wgs84_east": 6.01, "wgs84_north": 45.0},
        {"path": "tiles/missing-2021.tif", "year": 2021, "crs": "EPSG:32631", "utm_zone": "31N",
         "wgs84_west": 5.995, "wgs84_south": 44.994, "wgs84_east": 6.0, "wgs84_north": 45.0},
    ]
    index = _index(tmp_path, rows, suffix)
    both = expand_spec(str(index), "e", "embedding.path", year=2020)
    assert [Path(p).name for p in both] == ["a-31N.tif", "b-32N.tif"]  # relative to the index's folder
    east_only = expand_spec(str(index), "e", "embedding.path", year=2020, aoi=parse_aoi([6.003, 44.995, 6.004, 44.996]))
    assert [Path(p).name for p in east_only] == ["b-32N.tif"]
    with pytest.raises(ConfigError, match=r"holds 2 years \(2020, 2021\); set embedding.year"):
        expand_spec(str(index), "e", "embedding.path")
    with pytest.raises(InputFileError, match="has no tile of year 2019"):
        expand_spec(str(index), "e", "embedding.path", year=2019)
    with pytest.raises(InputFileError, match="none of its 3 tiles intersects embedding.aoi"):
        expand_spec(str(index), "e", "embedding.path", year=2020, aoi=parse_aoi([10, 10, 11, 11]))
    bad = _index(tmp_path, [{"path": "x.tif", "year": 2020}], ".csv")
    with pytest.raises(InputFileError, match=r"lacks the column\(s\) \['wgs84_west'"):
        expand_spec(str(bad), "e", "embedding.path")


def test_aoi_forms(tmp_path: Path) -> None:
    assert parse_aoi([1, 2, 3, 4]).bounds == (1, 2, 3, 4)
    gj = tmp_path / "aoi.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            [[1, 2], [3, 2], [3, 4], [1, 4], [1, 2]]]}}]}))
    assert parse_aoi(str(gj)).bounds == (1, 2, 3, 4)
    with pytest.raises(ConfigError, match=r"is not a lon/lat box"):
        parse_aoi([3, 2, 1, 4])


def test_tiles_must_agree(two_zones: dict[str, Any], tmp_path: Path) -> None:
    odd = _aef_tile(tmp_path / "odd.tif", 32632, 6.002, 45.0, bands=6)
    with pytest.raises(InputFileError, match=r"tile 'odd.tif' has band count 6 but 'a-31N.tif' has 8; every tile"):
        open_collection([str(two_zones["west"]), str(odd)], what="embedding raster", key="embedding.path",
                        identity=_identity)


def test_extraction_reads_each_point_from_its_own_tile_and_crs(two_zones: dict[str, Any]) -> None:
    tiles = open_collection(str(two_zones["folder"]), what="embedding raster", key="embedding.path",
                            identity=_identity)
    assert [t.crs.to_epsg() for t in tiles] == [32631, 32632] and tiles.crs.to_epsg() == 32631
    to_run = Transformer.from_crs("EPSG:4326", tiles.crs, always_xy=True)
    x, y = to_run.transform(two_zones["lon"], two_zones["lat"])
    ex = extract_collection(tiles, np.asarray(x), np.asarray(y), tiles.crs, n_threads=1)
    assert ex.inside.all() and ex.valid.all()
    assert ex.tile.tolist() == [0] * 6 + [1] * 6
    for i, tile in enumerate(tiles):
        tx, ty = Transformer.from_crs("EPSG:4326", tile.crs, always_xy=True).transform(
            two_zones["lon"][ex.tile == i], two_zones["lat"][ex.tile == i])
        alone = extract_values(tile.path, np.asarray(tx), np.asarray(ty))
        np.testing.assert_array_equal(ex.values[ex.tile == i], alone.values)
        np.testing.assert_array_equal(ex.row[ex.tile == i], alone.row)


def test_overlap_prefers_the_first_tile_with_a_valid_pixel(tmp_path: Path) -> None:
    a = _aef_tile(tmp_path / "a.tif", 32631, 5.99, 45.0, seed=1)
    b = _aef_tile(tmp_path / "b.tif", 32631, 5.99, 45.0, seed=2, hole=False)  # the same grid, other values
    tiles = open_collection([str(a), str(b)], what="embedding raster", key="embedding.path", identity=_identity)
    t = tiles.first.affine
    # one point on a's nodata corner (row 1, col 1), one on a valid pixel
    x = np.array([t.c + 15.0, t.c + 205.0])
    y = np.array([t.f - 15.0, t.f - 205.0])
    ex = extract_collection(tiles, x, y, tiles.crs, n_threads=1)
    assert ex.valid.all() and ex.tile.tolist() == [1, 0]
    with rasterio.open(b) as src:
        raw = src.read(window=((1, 2), (1, 2)))[:, 0, 0].astype(np.float32)
    np.testing.assert_array_equal(ex.values[0], np.square(raw / 127.5) * np.sign(raw))


def test_reference_tiles_read_as_one_mosaic(tmp_path: Path) -> None:
    """Two WorldCover-like tiles side by side sample exactly like the merged raster."""
    rng = np.random.default_rng(0)
    full = rng.choice(np.array([10, 20, 30], np.uint8), size=(40, 80))
    res = 1 / 12000
    t = Affine(res, 0, 5.99, 0, -res, 45.0)
    # striped, so that it is read as one window, like the VRT (the draw is block-order dependent)
    merged = write_raster(tmp_path / "merged.tif", full, crs="EPSG:4326", transform=t, nodata=0, blocksize=None)
    left = write_raster(tmp_path / "w.tif", full[:, :40], crs="EPSG:4326", transform=t, nodata=0)
    right = write_raster(tmp_path / "e.tif", full[:, 40:], crs="EPSG:4326", transform=t @ Affine.translation(40, 0),
                         nodata=0)
    tiles = open_collection([str(left), str(right)], what="reference raster", key="reference.path",
                            identity=_identity, csv_is_index=False)
    vrt = write_mosaic_vrt(tiles.tiles, tmp_path / "ref.vrt", key="reference.path")
    with rasterio.open(vrt) as a, rasterio.open(merged) as b:
        assert a.transform.almost_equals(b.transform) and a.shape == b.shape
        np.testing.assert_array_equal(a.read(1), b.read(1))
    from lcmodel.reference import sample_raster_points

    p1 = sample_raster_points(vrt, 50, random_state=3, n_threads=1).table
    p2 = sample_raster_points(merged, 50, random_state=3, n_threads=1).table
    pd.testing.assert_frame_equal(p1, p2)  # the same pixels drawn


def _run_config(tmp_path: Path, embedding: Any, reference: Path, **embedding_extra: Any) -> Path:
    cfg = {
        "reference": {"path": str(reference), "n_points": 400},
        "embedding": {"path": embedding, **embedding_extra},
        "sampling": {"n_sample": 300, "split": "random", "dedupe_pixels": True},
        "tuning": {"cv": 2, "stages": [{"max_features": ["sqrt"], "n_estimators": [8]}]},
        "output": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _reference_over(tmp_path: Path, west: float, east: float, north: float, south: float) -> Path:
    res = 1 / 12000
    w, h = int(round((east - west) / res)), int(round((north - south) / res))
    rng = np.random.default_rng(5)
    data = rng.choice(np.array([10, 30, 40], np.uint8), size=(h, w))
    return write_raster(tmp_path / "worldcover.tif", data, crs="EPSG:4326",
                        transform=Affine(res, 0, west, 0, -res, north), nodata=0)


def test_sampling_draws_only_usable_points_across_two_zones(two_zones: dict[str, Any], tmp_path: Path) -> None:
    # a reference four times wider than the tiles: every drawn point must still fall on a tile
    ref = _reference_over(tmp_path, 5.975, 6.02, 45.002, 44.99)
    cfg = load_config(_run_config(tmp_path, str(two_zones["folder"]), ref))
    pipeline.sample(cfg)
    out = tmp_path / "out"
    stats = json.loads((out / "sample_stats.json").read_text())
    assert stats["n_points"] == 400 and stats["n_outside"] == 0, stats
    samples = pd.read_csv(out / "samples.csv")
    assert set(samples["tile"]) == {0, 1}
    manifest = Collection.read(out / ".lcmodel" / "inputs" / "embedding.json")
    assert [Path(t.path).name for t in manifest] == ["a-31N.tif", "b-32N.tif"]
    assert all(len(t.identity["sha256"]) == 64 for t in manifest)


def test_aoi_selects_tiles_and_a_changed_tile_reruns_the_stages(two_zones: dict[str, Any], tmp_path: Path) -> None:
    ref = _reference_over(tmp_path, 5.975, 6.02, 45.002, 44.99)
    cfg_path = _run_config(tmp_path, str(two_zones["folder"]), ref, aoi=[6.003, 44.995, 6.006, 44.999])
    cfg = load_config(cfg_path)
    r = pipeline.run_stages(pipeline.StageRun(cfg), mapping=False)
    manifest = Collection.read(tmp_path / "out" / ".lcmodel" / "inputs" / "embedding.json")
    assert [Path(t.path).name for t in manifest] == ["b-32N.tif"]
    assert "extract_samples" in r.executed()
    again = pipeline.run_stages(pipeline.StageRun(load_config(cfg_path)), mapping=False)
    assert again.executed() == []  # nothing changed, nothing runs
    with rasterio.open(two_zones["east"], "r+") as dst:  # the tile's content changes
        dst.write(np.full((1, 8, 8), 5, np.int8), indexes=[1], window=((20, 28), (20, 28)))
    third = pipeline.run_stages(pipeline.StageRun(load_config(cfg_path)), mapping=False)
    assert "extract_samples" in third.executed()
