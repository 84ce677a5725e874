"""Per-tile prediction of an embedding collection across two UTM zones (issue 13, item 5).

The fixture: four 64 x 64 px int8 AlphaEarth-like tiles (64 bands A00..A63, -128 nodata, band-separate planes)
at 10 m, two in EPSG:32631 and two in EPSG:32632 on either side of the 6 E zone border at 45 N, the zones'
tiles overlapping by about 12 px across the border; a WorldCover-like reference in EPSG:4326 over all of them.
Each pixel's class is a function of its lon/lat, so both zones see the same ground. Tile ``a`` has nodata
in part of the overlap, where tile ``c`` (later in the collection's order) must show and be counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from pyproj import Transformer
from rasterio.crs import CRS

from lcmodel.geo import pixel_centres, pixel_index
from tests.rasters import origin_transform, write_raster

BORDER_TOP = 4987650.0
#: (file stem, EPSG, left, top) of each tile, in the collection's (sorted file name) order
TILES = (("aef_31_a", 32631, 735870.0, BORDER_TOP), ("aef_31_b", 32631, 735870.0, BORDER_TOP - 640.0),
         ("aef_32_c", 32632, 263490.0, BORDER_TOP), ("aef_32_d", 32632, 263490.0, BORDER_TOP - 640.0))
SIZE = 64
N_BANDS = 64
CODES = {1: (10, "Tree cover", "#006400"), 2: (40, "Cropland", "#f096ff"), 3: (80, "Water", "#0064c8")}


def ground_class(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The class (1..3) of the ground at lon/lat: a checkerboard of about 160 m cells."""
    u = np.floor((lon - 5.9) * 78710 / 160).astype(np.int64)
    v = np.floor((lat - 44.9) * 111100 / 160).astype(np.int64)
    return (1 + (u + v) % 3).astype(np.int64)


def write_collection(folder: Path, seed: int = 0) -> dict[str, Path]:
    """The four embedding tiles (in ``folder / 'tiles'``), the reference and the class table."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((4, N_BANDS))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    (folder / "tiles").mkdir(parents=True, exist_ok=True)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    for stem, epsg, left, top in TILES:
        transform = origin_transform(left, top, 10.0)
        x, y = pixel_centres(transform, rows, cols)
        lon, lat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(x, y)
        cls = ground_class(np.asarray(lon), np.asarray(lat))
        vec = mu[cls].transpose(2, 0, 1) + 0.35 * rng.standard_normal((N_BANDS, SIZE, SIZE))
        vec /= np.linalg.norm(vec, axis=0, keepdims=True)
        q = np.clip(np.rint(np.sign(vec) * np.sqrt(np.abs(vec)) * 127.5), -127, 127).astype(np.int8)
        if stem == "aef_31_a":
            q[:, :16, 56:] = -128  # nodata inside the overlap with tile c
        if stem == "aef_32_d":
            q[:, 56:, 56:] = -128  # a nodata corner nobody else covers
        write_raster(folder / "tiles" / f"{stem}.tif", q, crs=CRS.from_epsg(epsg), transform=transform, nodata=-128,
                     blocksize=32, descriptions=[f"A{b:02d}" for b in range(N_BANDS)], interleave="band",
                     compress="deflate")
    res = 1.0 / 12000.0
    west, south, east, north = 5.990, 44.990, 6.010, 45.004
    width, height = int(np.ceil((east - west) / res)), int(np.ceil((north - south) / res))
    r, c = np.mgrid[0:height, 0:width]
    ref_t = origin_transform(west, north, res)
    lon, lat = pixel_centres(ref_t, r, c)
    codes = np.array([0, 10, 40, 80], dtype=np.uint8)[ground_class(lon, lat)]
    write_raster(folder / "worldcover.tif", codes, crs=CRS.from_epsg(4326), transform=ref_t, nodata=0, blocksize=64)
    (folder / "classes.csv").write_text("code,value,name,color\n" + "".join(
        f"{code},{v},{name},{color}\n" for v, (code, name, color) in CODES.items()))
    return {"tiles": folder / "tiles", "reference": folder / "worldcover.tif", "classes": folder / "classes.csv"}


def collection_config(folder: Path, out: str = "results", **prediction: Any) -> Path:
    if not (folder / "tiles").is_dir():
        write_collection(folder)
    data = {
        "reference": {"path": "worldcover.tif", "n_points": 800},
        "classes": {"table": "classes.csv", "name_column": "name", "color_column": "color"},
        "embedding": {"path": "tiles"},
        "sampling": {"n_sample": 600, "split": "random"},
        "tuning": {"cv": 3, "cv_strategy": "random", "stages": [{"max_features": ["sqrt"], "n_estimators": [12]}]},
        "prediction": {"block_size": 32, **prediction},
        "output": {"dir": out},
        "n_jobs": 2,
        "tracking": {"experiment": "tiles"},
    }
    path = folder / f"{out}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


# ------------------------------------------------------------------------------- names, no run needed
def test_tile_stems_are_distinct_and_file_name_safe() -> None:
    from lcmodel.tilemaps import crs_tag, tile_stem, tile_stems

    class T:
        def __init__(self, path: str) -> None:
            self.path = path

    paths = ["/a/x.tif", "/b/x.tif", "https://h/p/y z.tiff?sig=1", "/vsis3/b/k/x_2.TIF", "/c/x.tif"]
    assert tile_stem(paths[2]) == "y_z"
    assert tile_stems([T(p) for p in paths]) == ["x", "x_2", "y_z", "x_2_2", "x_3"]  # type: ignore[arg-type]
    assert crs_tag(CRS.from_epsg(32631)) == "32631"
    assert crs_tag(CRS.from_proj4("+proj=tmerc +lon_0=7 +ellps=GRS80")).startswith("crs-")


# ------------------------------------------------------------------------------- end to end through the flow
def run_collection_twice(root: Path, stage: str, sections: dict[str, Any] | None = None,
                         **prediction: Any) -> dict[str, Any]:
    """`lcmodel run` (the Prefect flow) on the 4-tile collection in ``root / "data"`` (``sections`` added to its
    config), then again: the config, output folder, MLflow URI, both results and the mtime of ``stage``'s
    record after the first run (a rerun that changes nothing leaves it)."""
    from click.testing import CliRunner

    from flows.cli import cli

    cfg = collection_config(root / "data", **prediction)
    if sections:
        cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), **sections}))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    first = CliRunner(env=env).invoke(cli, ["run", str(cfg)], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    out = root / "data" / "results"
    record = (out / ".lcmodel" / "stages" / f"{stage}.json").stat().st_mtime_ns
    again = CliRunner(env=env).invoke(cli, ["run", str(cfg)], catch_exceptions=False)
    return {"cfg": cfg, "out": out, "uri": uri, "first": first.output, "again": again, "record_mtime": record}


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    """`lcmodel run` (the Prefect flow) on the 4-tile collection with a COG mosaic in EPSG:4326, then again."""
    return run_collection_twice(tmp_path_factory.mktemp("tiles"), "predict_map", mosaic="cog",
                                mosaic_crs="EPSG:4326")


def test_each_tile_is_predicted_in_its_own_crs_like_predict_raster_alone(flow_run: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    from lcmodel.compatibility import bundle_for_tile
    from lcmodel.model_io import load_bundle
    from lcmodel.predict import predict_raster

    out = flow_run["out"]
    bundle = load_bundle(out / "model.skops")
    assert CRS.from_wkt(bundle.crs_wkt) == CRS.from_epsg(32631)  # the collection's CRS (tie: the first tile's)
    tiles_dir = flow_run["cfg"].parent / "tiles"
    for stem, epsg, _, _ in TILES:
        folder = out / "tiles" / stem
        with rasterio.open(folder / "map.tif") as src:
            assert src.crs == CRS.from_epsg(epsg) and src.shape == (SIZE, SIZE)
        assert (folder / "confidence.tif").is_file() and (folder / "prediction.json").is_file()
        alone = predict_raster(bundle_for_tile(bundle, CRS.from_epsg(epsg), ["EPSG:32631", "EPSG:32632"]),
                               tiles_dir / f"{stem}.tif", tmp_path / stem / "map.tif", block_size=32,
                               confidence_path=tmp_path / stem / "confidence.tif")
        assert _sha(folder / "map.tif") == _sha(alone.map_path)
        assert _sha(folder / "confidence.tif") == _sha(tmp_path / stem / "confidence.tif")
        assert _read(folder / "prediction.json")["class_counts"] == {str(k): v for k, v in alone.class_counts.items()}


def test_predicting_a_raster_of_another_zone_with_the_bundle_is_still_refused(flow_run: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    from lcmodel.compatibility import bundle_for_tile
    from lcmodel.errors import CompatibilityError
    from lcmodel.model_io import load_bundle
    from lcmodel.predict import predict_raster

    bundle = load_bundle(flow_run["out"] / "model.skops")
    other = flow_run["cfg"].parent / "tiles" / "aef_32_c.tif"
    with pytest.raises(CompatibilityError, match=r"is in EPSG:32632, the model was trained on EPSG:32631; reproject"):
        predict_raster(bundle, other, tmp_path / "map.tif")
    with pytest.raises(CompatibilityError, match=r"tile CRS EPSG:32633 is none of the collection's CRSs"):
        bundle_for_tile(bundle, "EPSG:32633", ["EPSG:32631", "EPSG:32632"])
    with pytest.raises(CompatibilityError, match=r"trained on EPSG:32631, which is none of this collection's"):
        bundle_for_tile(bundle, "EPSG:32632", ["EPSG:32632"])
    assert not (tmp_path / "map.tif").exists()


def _tile_maps(out: Path) -> dict[str, tuple[np.ndarray, Any, CRS, float]]:
    maps = {}
    for stem, *_ in TILES:
        with rasterio.open(out / "tiles" / stem / "map.tif") as src:
            maps[stem] = (src.read(1), src.transform, src.crs, src.nodata)
    return maps


def test_one_vrt_per_crs_mosaics_the_zone_s_tiles(flow_run: dict[str, Any]) -> None:
    out = flow_run["out"]
    maps = _tile_maps(out)
    for epsg, stems in ((32631, ["aef_31_a", "aef_31_b"]), (32632, ["aef_32_c", "aef_32_d"])):
        with rasterio.open(out / f"map_{epsg}.vrt") as vrt:
            assert vrt.crs == CRS.from_epsg(epsg) and vrt.shape == (2 * SIZE, SIZE)
            data = vrt.read(1)
        assert np.array_equal(data[:SIZE], maps[stems[0]][0]) and np.array_equal(data[SIZE:], maps[stems[1]][0])
        assert (out / f"confidence_{epsg}.vrt").is_file()


def _first_valid(out: Path, transform: Any, crs: Any, shape: tuple[int, int]) -> np.ndarray:
    """What the mosaic should hold at each pixel centre: the first tile's class that is valid there."""
    maps = _tile_maps(out)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = pixel_centres(transform, rows.ravel(), cols.ravel())
    nodata = maps["aef_31_a"][3]
    result = np.full(x.size, nodata, dtype=np.int64)
    for data, t, tile_crs, nd in maps.values():
        tx, ty = Transformer.from_crs(crs, tile_crs, always_xy=True).transform(x, y)
        r, c, inside = pixel_index(t, np.asarray(tx), np.asarray(ty), SIZE, SIZE)
        value = np.full(x.size, nd, dtype=np.int64)
        value[inside] = data[r[inside], c[inside]]
        take = (result == nodata) & (value != nd)
        result[take] = value[take]
    return result.reshape(shape)


def test_the_cog_mosaic_is_in_mosaic_crs_and_the_first_valid_tile_wins(flow_run: dict[str, Any]) -> None:
    out = flow_run["out"]
    with rasterio.open(out / "map.tif") as src:
        assert src.crs == CRS.from_epsg(4326)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.tags()["CLASS_1"] == "Tree cover" and src.colormap(1)[1][:3] == (0, 100, 0)
        data, transform, shape, nodata = src.read(1), src.transform, src.shape, src.nodata
    expected = _first_valid(out, transform, CRS.from_epsg(4326), shape)
    agree = np.mean(data == expected)
    assert agree > 0.995, agree  # GDAL's approximate warp transformer may pick the neighbour at a pixel's edge
    with rasterio.open(out / "confidence.tif") as conf:
        c = conf.read(1)
    assert np.array_equal(c == 255, data == nodata)  # a confidence wherever there is a class
    assert (data == nodata).mean() < 0.5 and set(np.unique(data)) == {nodata, 1, 2, 3}


def test_counts_take_each_location_once(flow_run: dict[str, Any]) -> None:
    out = flow_run["out"]
    summary = _read(out / "prediction.json")
    assert summary["n_tiles"] == 4 and summary["mosaic"] == "cog" and summary["mosaic_crs"] == "EPSG:4326"
    tiles = {t["tile"]: t for t in summary["tiles"]}
    assert list(tiles) == [s for s, *_ in TILES]
    for stem in ("aef_31_a", "aef_31_b"):  # first in the order (and only touching each other): all their pixels
        assert tiles[stem]["counted_class_counts"] == tiles[stem]["class_counts"] and tiles[stem]["n_masked"] == 0
    maps = _tile_maps(out)
    for stem in ("aef_32_c", "aef_32_d"):
        t = tiles[stem]
        own = sum(t["class_counts"].values())
        assert sum(t["counted_class_counts"].values()) + t["n_masked"] == own == t["n_valid"]
        # independently: the tile's valid pixels whose centre falls on a valid pixel of a zone-31 tile
        data, transform, crs, nodata = maps[stem]
        rows, cols = np.nonzero(data != nodata)
        x, y = pixel_centres(transform, rows, cols)
        covered = np.zeros(rows.size, dtype=bool)
        for other in ("aef_31_a", "aef_31_b"):
            odata, ot, ocrs, ond = maps[other]
            tx, ty = Transformer.from_crs(crs, ocrs, always_xy=True).transform(x, y)
            r, c, inside = pixel_index(ot, np.asarray(tx), np.asarray(ty), SIZE, SIZE)
            covered[inside] |= odata[r[inside], c[inside]] != ond
        assert covered.sum() > 100 and abs(int(covered.sum()) - t["n_masked"]) <= 3, (covered.sum(), t["n_masked"])
    assert tiles["aef_32_c"]["masked_by"] == ["aef_31_a", "aef_31_b"] or tiles["aef_32_c"]["masked_by"] == ["aef_31_a"]
    total = {k: sum(t["counted_class_counts"][k] for t in tiles.values()) for k in summary["class_counts"]}
    assert summary["class_counts"] == total
    assert summary["n_valid"] == sum(total.values())
    assert summary["n_pixels"] == 4 * SIZE * SIZE == summary["n_valid"] + summary["n_masked"] + summary["n_nodata"]
    assert summary["pixel_area_m2"] == 100.0
    assert summary["class_area_ha"] == {k: round(v * 100 / 10_000, 4) for k, v in total.items()}
    assessment = _read(out / "accuracy_assessment.json")
    assert assessment["computed"] is True and "each location counted once" in " ".join(assessment["design"])
    assert (out / "map_quicklook.png").stat().st_size > 1000


def test_the_stac_catalog_describes_every_tile(flow_run: dict[str, Any]) -> None:
    import pystac
    from pystac.validation import validate_dict
    from rasterio.warp import transform_bounds

    out = flow_run["out"]
    collection = pystac.Collection.from_file(str(out / "stac" / "collection.json"))
    items = sorted(collection.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == [s for s, *_ in TILES]
    for item, (stem, epsg, left, top) in zip(items, TILES, strict=True):
        d = item.to_dict(include_self_link=False)
        assert d["properties"]["proj:code"] == f"EPSG:{epsg}" and d["properties"]["proj:shape"] == [SIZE, SIZE]
        assert d["properties"]["proj:transform"][:6] == [10.0, 0.0, left, 0.0, -10.0, top]
        expected = transform_bounds(CRS.from_epsg(epsg), "EPSG:4326", left, top - 640, left + 640, top)
        assert np.allclose(item.bbox, expected, atol=1e-6) and item.geometry["type"] == "Polygon"
        raw = json.loads((out / "stac" / stem / f"{stem}.json").read_text())
        assert raw["assets"]["map"]["href"] == f"../../tiles/{stem}/map.tif"  # relative, from the item's folder
        assert Path(item.assets["map"].get_absolute_href()).resolve() == (out / "tiles" / stem / "map.tif").resolve()
        assert {"map", "confidence"} <= set(raw["assets"])
        classes = {c["value"]: c for c in raw["assets"]["map"]["classification:classes"]}
        assert classes[1]["name"] == "Tree_cover" and classes[1]["title"] == "Tree cover"
        nodata = _read(out / "prediction.json")["output_nodata"]
        assert classes[3]["color_hint"] == "0064C8" and classes[nodata]["nodata"] is True
        counts = _read(out / "tiles" / stem / "prediction.json")["class_counts"]
        assert all(classes[int(v)]["count"] == n for v, n in counts.items())
        assert any("projection" in x for x in raw["stac_extensions"])
        assert any("classification" in x for x in raw["stac_extensions"])
        core = {k: v for k, v in raw.items() if k != "stac_extensions"}  # the extensions' schemas are online
        validate_dict(core)
    core = {k: v for k, v in json.loads((out / "stac" / "collection.json").read_text()).items()
            if k != "stac_extensions"}
    validate_dict(core)
    assert "mosaic" in collection.assets and collection.assets["mosaic"].href.endswith("map.tif")


def test_a_rerun_does_nothing(flow_run: dict[str, Any]) -> None:
    again = flow_run["again"]
    assert again.exit_code == 0, again.output
    assert "nothing changed since the last run" in again.output
    out = flow_run["out"]
    assert (out / ".lcmodel" / "stages" / "predict_map.json").stat().st_mtime_ns == flow_run["record_mtime"]
    record = _read(out / ".lcmodel" / "stages" / "predict_map.json")
    files = [a["path"] for key in ("tile_maps", "tile_files", "mosaics", "stac") for a in record["artifacts"][key]]
    assert "tiles/aef_32_d/map.tif" in files and "map_32632.vrt" in files and "stac/collection.json" in files


# ------------------------------------------------------------------------------- resume, library level
def test_a_killed_collection_run_skips_finished_tiles_and_resumes_the_partial_one(
        flow_run: dict[str, Any], tmp_path: Path) -> None:
    """The plain stage, stopped in the third tile's blocks, then run again: the first two tiles are reused, the
    third resumes its finished blocks; every output is byte-identical to an uninterrupted run (mosaic none)."""
    import dataclasses
    import shutil

    from flows.config import load_flow_config
    from lcmodel import pipeline
    from lcmodel.model_io import load_bundle
    from lcmodel.pipeline.settings import PredictSettings
    from lcmodel.sources import Collection

    src = flow_run["out"]
    settings = dataclasses.replace(PredictSettings.from_config(load_flow_config(flow_run["cfg"])), mosaic="none")
    model = pipeline.Model(pipeline.Artifact.of(src / "model.skops"), pipeline.Artifact.of(src / "model.skops.json"))
    bundle = load_bundle(src / "model.skops")
    collection = Collection.read(src / ".lcmodel" / "inputs" / "embedding.json")
    ref = pipeline.predict_collection(settings, bundle, model, collection, tmp_path / "ref")

    class Killed(BaseException):
        pass

    calls = []

    def stop_in_third_tile(done: int, total: int) -> None:
        calls.append(done)
        if done > 2 * SIZE * SIZE + SIZE * SIZE // 2:
            raise Killed

    out = tmp_path / "run"
    with pytest.raises(Killed):
        pipeline.predict_collection(settings, bundle, model, collection, out, progress=stop_in_third_tile)
    assert (out / "tiles" / "aef_31_b" / "map.tif").is_file() and not (out / "tiles" / "aef_32_c" / "map.tif").exists()
    assert (out / "tiles" / "aef_32_c" / ".map.tif.partial").is_dir()
    again = pipeline.predict_collection(settings, bundle, model, collection, out)
    summary = _read(again.summary.path)
    assert summary["n_tiles_reused"] == 2 and summary["n_resumed"] >= 3
    assert [t["reused"] for t in summary["tiles"]] == [True, True, False, False]
    assert again.map.path == out / "tiles" / "aef_31_a" / "map.tif" and again.mosaics == ()  # mosaic: none
    for (_, a), (_, b) in zip(again.files(), ref.files(), strict=True):
        if a.path.name != "prediction.json":
            assert a.path.relative_to(out) == b.path.relative_to(tmp_path / "ref") and a.sha256 == b.sha256, a.path
    shutil.rmtree(out / "tiles" / "aef_32_d")
    third = pipeline.predict_collection(settings, bundle, model, collection, out)
    assert [t["reused"] for t in _read(third.summary.path)["tiles"]] == [True, True, True, False]


# ------------------------------------------------------------------------------- tiles on a Dask cluster
@pytest.mark.slow  # ~40 s: a local Dask cluster and a second flow run; CI runs it (make test-slow)
@pytest.mark.dask
def test_with_the_dask_task_runner_the_tiles_go_to_the_cluster(flow_run: dict[str, Any], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    import shutil

    from flows.config import load_flow_config
    from flows.landcover import landcover

    data = tmp_path / "data"
    shutil.copytree(flow_run["cfg"].parent, data, ignore=shutil.ignore_patterns("results*"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        cfg = load_flow_config(collection_config(data, "dask", mosaic="cog", mosaic_crs="EPSG:4326",
                                                 task_runner="dask", dask_address=c.scheduler_address))
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
            update={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})})
        result = landcover(cfg)
        with distributed.Client(c) as client:
            seen = client.run(lambda: __import__("sys").modules.get("flows.tiles") is not None)
    assert "predict_map" in result["executed"] and any(seen.values())  # the workers ran the tile tasks
    out = Path(cfg.output.dir)
    for stem, *_ in TILES:
        for name in ("map.tif", "confidence.tif"):
            assert _sha(out / "tiles" / stem / name) == _sha(flow_run["out"] / "tiles" / stem / name)
    assert _sha(out / "map.tif") == _sha(flow_run["out"] / "map.tif")
    assert _read(out / "prediction.json")["class_counts"] == _read(flow_run["out"] / "prediction.json")["class_counts"]


@pytest.mark.slow  # ~30 s: a whole plain run under the audit hook; CI runs it (make test-slow)
def test_the_collection_s_stages_read_only_what_they_are_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """The isolation audit of tests/test_stage_isolation.py on a plain run of the 4-tile collection."""
    from flows.config import load_flow_config
    from lcmodel import pipeline
    from tests import test_stage_isolation as iso

    cfg = load_flow_config(collection_config(tmp_path / "data", mosaic="cog"))
    # the clean map of the mosaic too
    cfg = cfg.model_copy(update={"postprocess": cfg.postprocess.model_copy(update={"mmu_pixels": 4})})
    iso.watch_rasterio_open(monkeypatch)
    r = pipeline.run_stages(iso._Watched(cfg, use_cache=False), mapping=True)
    assert r.executed() == pipeline.stages_of(cfg)
    assert len(_read(Path(cfg.output.dir) / "prediction.json")["tiles"]) == 4
