"""The area of applicability of a tile collection (issue 16 on the collections' outputs): ``di.tif`` /
``aoa.tif`` per tile beside each tile's map, the shares over the collection with each location counted once.

The fixture is tests/test_tiles.py's four 64 x 64 px tiles across the 6 E UTM zone border (two zones, the
zones' tiles overlapping by about 12 px; tile ``a`` has nodata inside the overlap with ``c``), run through
``lcmodel run`` (the Prefect flow) with ``prediction.mosaic: vrt``, then again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from lcmodel.aoa import AOA_NODATA
from tests.test_tiles import TILES, run_collection_twice

STEMS = [t[0] for t in TILES]


def _read(path: Path) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


@pytest.fixture(scope="module")
def aoa_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    return run_collection_twice(tmp_path_factory.mktemp("aoa_tiles"), "applicability", mosaic="vrt")


def _training_di(cfg_path: Path, out: Path) -> Any:
    """The training DI the stage fits, from the run's own files and public library calls."""
    from flows.config import load_flow_config
    from lcmodel.aoa import fit_training_di, fold_ids
    from lcmodel.dataset import read_training_table
    from lcmodel.model_io import load_bundle
    from lcmodel.pipeline.modelling import features_and_labels

    cfg = load_flow_config(cfg_path)
    bundle = load_bundle(out / "model.skops")
    frame = read_training_table(out / "training_table.csv")
    features, _ = features_and_labels(frame)
    blocks = _read(out / "spatial_blocks.json")
    folds = fold_ids(frame, blocks["cv_strategy"], cfg.tuning.cv, blocks["block_size"], cfg.sampling.random_state)
    return bundle, fit_training_di(features, folds, np.asarray(bundle.estimator.feature_importances_),
                                   list(bundle.band_names))


def test_each_tile_has_di_and_aoa_equal_to_that_tile_alone(aoa_run: dict[str, Any], tmp_path: Path) -> None:
    from lcmodel.aoa import write_aoa_rasters
    from lcmodel.compatibility import bundle_for_tile
    from lcmodel.sources import Collection

    out = aoa_run["out"]
    assert not (out / "di.tif").exists() and not (out / "aoa.tif").exists()  # per tile only
    bundle, training = _training_di(aoa_run["cfg"], out)
    tiles = Collection.read(out / ".lcmodel" / "inputs" / "embedding.json")
    crss = tuple(c.to_wkt() for c in tiles.crss)
    for stem, tile in zip(STEMS, tiles.tiles, strict=True):
        folder = out / "tiles" / stem
        with rasterio.open(folder / "map.tif") as m, rasterio.open(folder / "di.tif") as d, \
                rasterio.open(folder / "aoa.tif") as a:
            assert (d.crs, a.crs, d.transform, a.transform) == (m.crs, m.crs, m.transform, m.transform)
            assert d.shape == a.shape == m.shape
            di, aoa, labels, nodata = d.read(1), a.read(1), m.read(1), m.nodata
        np.testing.assert_array_equal(aoa != AOA_NODATA, labels != nodata)
        alone = write_aoa_rasters(training, bundle_for_tile(bundle, tile.crs_wkt, crss), tile.path,
                                  folder / "map.tif", tmp_path / f"{stem}_di.tif", tmp_path / f"{stem}_aoa.tif")
        with rasterio.open(tmp_path / f"{stem}_di.tif") as d, rasterio.open(tmp_path / f"{stem}_aoa.tif") as a:
            np.testing.assert_array_equal(d.read(1), di)
            np.testing.assert_array_equal(a.read(1), aoa)
        t = next(t for t in _read(out / "aoa.json")["tiles"] if t["tile"] == stem)
        assert (t["n_pixels"], t["n_outside"]) == (alone.n_pixels, alone.n_outside) == \
            (int((aoa != AOA_NODATA).sum()), int((aoa == 0).sum()))
        assert t["di"] == f"tiles/{stem}/di.tif" and t["aoa"] == f"tiles/{stem}/aoa.tif"


def _earlier_valid(out: Path, j: int) -> np.ndarray:
    """Where an earlier tile's map has a classified pixel under the centres of tile ``j``'s pixels."""
    with rasterio.open(out / "tiles" / STEMS[j] / "map.tif") as dst:
        covered = np.zeros(dst.shape, dtype=bool)
        for i in range(j):
            with rasterio.open(out / "tiles" / STEMS[i] / "map.tif") as src:
                warped = np.full(dst.shape, src.nodata, dtype=src.dtypes[0])
                reproject(rasterio.band(src, 1), warped, dst_transform=dst.transform, dst_crs=dst.crs,
                          src_nodata=src.nodata, dst_nodata=src.nodata, resampling=Resampling.nearest)
                covered |= warped != src.nodata
    return covered


def test_the_collection_s_shares_count_each_location_once(aoa_run: dict[str, Any]) -> None:
    out = aoa_run["out"]
    summary, prediction = _read(out / "aoa.json"), _read(out / "prediction.json")
    assert summary["computed"] and summary["n_tiles"] == 4 and "each location once" in summary["counting"]
    # the same pixels as the collection's class counts
    assert summary["n_pixels"] == prediction["n_valid"]
    assert {v: c["pixels"] for v, c in summary["per_class"].items()} == \
        {v: n for v, n in prediction["class_counts"].items() if n}
    n_outside = 0
    by_class: dict[str, int] = {}
    for j, stem in enumerate(STEMS):
        with rasterio.open(out / "tiles" / stem / "map.tif") as m, \
                rasterio.open(out / "tiles" / stem / "aoa.tif") as a:
            labels, aoa = m.read(1), a.read(1)
        counted = (aoa != AOA_NODATA) & ~_earlier_valid(out, j)
        t = summary["tiles"][j]
        assert t["tile"] == stem
        assert t["n_counted"] == int(counted.sum()) == prediction["tiles"][j]["n_valid"] - \
            prediction["tiles"][j]["n_masked"]
        assert t["n_counted_outside"] == int((counted & (aoa == 0)).sum())
        n_outside += t["n_counted_outside"]
        for v in np.unique(labels[counted & (aoa == 0)]).tolist():
            by_class[str(v)] = by_class.get(str(v), 0) + int((counted & (aoa == 0) & (labels == v)).sum())
    assert summary["tiles"][2]["n_counted"] < summary["tiles"][2]["n_pixels"]  # tile c lies under tile a in part
    assert summary["n_outside"] == n_outside
    assert {v: c["outside"] for v, c in summary["per_class"].items() if c["outside"]} == by_class
    assert summary["outside_fraction"] == pytest.approx(n_outside / summary["n_pixels"])


def test_vrt_mosaics_report_metrics_and_the_cache(aoa_run: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    out = aoa_run["out"]
    summary = _read(out / "aoa.json")
    assert summary["mosaics"] == {"di_32631": "di_32631.vrt", "di_32632": "di_32632.vrt",
                                  "aoa_32631": "aoa_32631.vrt", "aoa_32632": "aoa_32632.vrt"}
    assert "no COG mosaic" in summary["mosaic_note"]
    with rasterio.open(out / "aoa_32631.vrt") as v, rasterio.open(out / "tiles" / STEMS[0] / "aoa.tif") as a:
        assert v.crs == a.crs and v.nodata == AOA_NODATA
    report = (out / "report.md").read_text()
    assert "| tile | pixels | outside AOA | share outside |" in report
    assert all(f"| {stem} | " in report for stem in STEMS)

    client = MlflowClient(tracking_uri=aoa_run["uri"])
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.data.tags.get("lcmodel.kind") == "training"]
    metrics = runs[0].data.metrics
    assert metrics["aoa_outside_fraction"] == pytest.approx(summary["outside_fraction"])
    assert all(f"aoa_outside_fraction_tile_{t['tile']}" in metrics for t in summary["tiles"])

    again = aoa_run["again"]
    assert again.exit_code == 0, again.output
    assert "nothing changed since the last run" in again.output
    assert (out / ".lcmodel" / "stages" / "applicability.json").stat().st_mtime_ns == aoa_run["record_mtime"]
    record = _read(out / ".lcmodel" / "stages" / "applicability.json")
    files = [a["path"] for key in ("tile_di", "tile_aoa", "mosaics") for a in record["artifacts"][key]]
    assert {f"tiles/{s}/{n}.tif" for s in STEMS for n in ("di", "aoa")} | {"di_32632.vrt"} <= set(files)


# ------------------------------------------------------------------------------- library level: south-up tile
def test_a_south_up_tile_half_under_a_north_up_one(tmp_path: Path) -> None:
    """Two tiles of tests/test_aoa.py's planted embedding: ``a`` north-up, ``b`` south-up and 32 px east, so
    b's west half lies under a. Each tile's rasters are write_aoa_rasters on that tile alone (north-up, on its
    map's grid); b counts only its east half for the collection."""
    from lcmodel.aoa import fit_training_di
    from lcmodel.io import file_digest
    from lcmodel.pipeline.applicability_tiles import collection_aoa
    from lcmodel.pipeline.artifacts import Artifact, Prediction
    from lcmodel.pipeline.paths import RunPaths
    from lcmodel.pipeline.settings import AoaSettings
    from lcmodel.predict import predict_raster
    from lcmodel.sources import Collection, describe_tile
    from tests import test_aoa as ta
    from tests.rasters import origin_transform, write_raster

    a_path, arr, unfamiliar = ta._planted(tmp_path / "a")
    (tmp_path / "b").mkdir()
    b_path = write_raster(tmp_path / "b" / "embedding.tif", arr[:, ::-1, :].copy(),
                          transform=origin_transform(500320.0, 8000000.0 - 640.0, 10.0, -10.0))
    x, y, folds = ta._training(arr, unfamiliar)
    bundle = ta._bundle(a_path, x, y)
    training = fit_training_di(x, folds, bundle.estimator.feature_importances_, bundle.band_names)
    out = tmp_path / "run"
    maps = []
    for stem, path in (("a", a_path), ("b", b_path)):
        predict_raster(bundle, path, out / "tiles" / stem / "map.tif", block_size=16)
        maps.append(Artifact.of(out / "tiles" / stem / "map.tif"))
    tiles = Collection(tuple(describe_tile(str(p), "embedding tile", lambda q: {"sha256": file_digest(q)})
                             for p in (a_path, b_path)))
    prediction = Prediction(map=maps[0], summary=maps[0], tile_maps=tuple(maps))
    settings = AoaSettings(enabled=True, cv=3, random_state=0, block_size=16, memory_mb=64)
    done = collection_aoa(settings, training, bundle, tiles, prediction, RunPaths(out))
    assert done.mosaics == {}  # the prediction wrote none
    for k, (stem, path) in enumerate((("a", a_path), ("b", b_path))):
        alone = ta.write_aoa_rasters(training, bundle, path, out / "tiles" / stem / "map.tif",
                                     tmp_path / f"{stem}_di.tif", tmp_path / f"{stem}_aoa.tif", block_size=32)
        for name in ("di", "aoa"):
            with rasterio.open(out / "tiles" / stem / f"{name}.tif") as got, \
                    rasterio.open(tmp_path / f"{stem}_{name}.tif") as want:
                assert got.transform.e < 0 and got.transform == want.transform
                np.testing.assert_array_equal(got.read(1), want.read(1))
        assert (done.own[k].pixels, done.own[k].outside) == (alone.pixels, alone.outside)
    assert done.counted[0].pixels == done.own[0].pixels
    with rasterio.open(out / "tiles" / "b" / "aoa.tif") as src:
        b_aoa = src.read(1)
    east = b_aoa[:, 32:]
    assert done.counted[1].n_pixels == int((east != AOA_NODATA).sum()) == 64 * 32
    assert done.counted[1].n_outside == int((east == 0).sum()) > 0  # b's east half holds the unfamiliar quadrant
