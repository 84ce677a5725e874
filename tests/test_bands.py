"""Bands that carry nothing (issue 13 item 6): detection at extraction, embedding.bands, the bundle's
band_indexes, prediction reading only the bands used, pixel tables, and the up-front check of a selection."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from sklearn.ensemble import RandomForestClassifier

from lcmodel.bands import (
    MIN_PIXELS_CONSTANT,
    BandSelection,
    DroppedBand,
    band_list_text,
    bands_note,
    resolve_bands,
)
from lcmodel.classes import ClassTable
from lcmodel.compatibility import check_compatible
from lcmodel.config import config_from_dict
from lcmodel.dataset import build_samples
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import CompatibilityError, ConfigError, DataWarning, InputDataError, NoOverlapError
from lcmodel.extract import extract_values
from lcmodel.model_format import bundle_bytes
from lcmodel.model_io import ModelBundle, current_versions, load_bundle, save_bundle, side_file_path, utc_now
from lcmodel.pixels import predict_pixel_table
from lcmodel.predict import predict_raster
from lcmodel.rasterio_io import ThreadReaders
from tests.rasters import write_raster

X0, Y0, RES = 500000.0, 8000000.0, 10.0
H, W, B = 40, 50, 10
DEAD = [4, 9]  # 1-based: -32768 in every pixel, as a hyperspectral raster's water-vapour bands
LIVE = [b for b in range(1, B + 1) if b not in DEAD]


def _hyperspectral() -> np.ndarray:
    """int16 (B, H, W): band b of pixel (r, c) = r * 100 + c + 1000 * b; nodata -32768 in the dead bands
    everywhere and in every band of the top-left 4 x 4 pixels."""
    r, c = np.mgrid[0:H, 0:W]
    data = np.stack([(r * 100 + c + 1000 * b) for b in range(B)]).astype(np.int16)
    data[[d - 1 for d in DEAD]] = -32768
    data[:, :4, :4] = -32768
    return data


@pytest.fixture
def hyper(tmp_path: Path) -> Path:
    return write_raster(tmp_path / "hyper.tif", _hyperspectral(), nodata=-32768)


@pytest.fixture
def hyper_clean(tmp_path: Path) -> Path:
    """The same data written without the dead bands."""
    return write_raster(tmp_path / "clean.tif", _hyperspectral()[[b - 1 for b in LIVE]], nodata=-32768)


def _points(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return X0 + RES * rng.uniform(0, W, n), Y0 - RES * rng.uniform(0, H, n)


# ---------------------------------------------------------------- detection at extraction


def test_all_nodata_bands_are_dropped_with_a_warning_and_the_rule_applies_to_the_rest(
        hyper: Path, hyper_clean: Path) -> None:
    x, y = _points()
    with pytest.warns(DataWarning, match=r"bands 4, 9 \(band_4, band_9\) are nodata in every sampled pixel; "
                                         r"dropped: the model uses 8 of 10 bands"):
        ext = extract_values(hyper, x, y)
    assert ext.band_names == [f"band_{b}" for b in LIVE]  # named after their source index, not renumbered
    sel = ext.selection
    assert sel.indexes == tuple(LIVE) and sel.n_source == B and sel.selected_by == "detection"
    assert [(d.index, d.reason) for d in sel.dropped] == [(4, "nodata"), (9, "nodata")]
    corner = (ext.row < 4) & (ext.col < 4)
    assert corner.any() and not ext.valid[corner].any() and ext.valid[~corner].all()
    # the same values as the raster written without the dead bands (where nothing is detected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = extract_values(hyper_clean, x, y)
    assert clean.selection.selected_by == "all"
    np.testing.assert_array_equal(ext.values, clean.values)
    np.testing.assert_array_equal(ext.valid, clean.valid)
    expected = (ext.row[:, None] * 100 + ext.col[:, None] + 1000 * (np.array(LIVE) - 1)).astype(np.float32)
    np.testing.assert_array_equal(ext.values[ext.valid], expected[ext.valid])


def test_float_all_nan_band_and_zero_vectors_over_the_used_bands(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(5, H, W)).astype(np.float32)
    data[2] = np.nan  # a dead band
    data[[0, 1, 3, 4], 10, 10] = 0.0  # all-zero over the used bands (NaN in the dead one): nodata
    path = write_raster(tmp_path / "f.tif", data)
    x, y = X0 + RES * np.array([10.5, 20.5, 30.5]), Y0 - RES * np.array([10.5, 20.5, 5.5])
    with pytest.warns(DataWarning, match=r"band 3 \(band_3\) is nodata in every sampled pixel"):
        ext = extract_values(path, x, y)
    assert ext.band_names == ["band_1", "band_2", "band_4", "band_5"]
    assert ext.valid.tolist() == [False, True, True]
    np.testing.assert_array_equal(ext.values[1], data[[0, 1, 3, 4], 20, 20])


def test_constant_band_is_dropped_and_a_selected_one_only_warned(tmp_path: Path) -> None:
    names = ["A00", "A01", "A02", "A03"]
    rng = np.random.default_rng(2)
    data = rng.normal(size=(4, H, W)).astype(np.float32)
    data[1] = 0.25
    path = write_raster(tmp_path / "c.tif", data, descriptions=names)
    x, y = _points(50)
    with pytest.warns(DataWarning, match=r"band 2 \(A01\) is constant in every sampled valid pixel; dropped"):
        ext = extract_values(path, x, y)
    assert ext.band_names == ["A00", "A02", "A03"]
    [dropped] = ext.selection.dropped
    assert dropped.to_dict() == {"index": 2, "name": "A01", "reason": "constant", "value": 0.25,
                                 "why": "constant (0.25) in every sampled valid pixel"}
    with pytest.warns(DataWarning, match=r"embedding.bands selects band 2 \(A01\), constant .*carries nothing"):
        chosen = extract_values(path, x, y, bands=["A01", "A00"])
    assert chosen.band_names == ["A00", "A01"]  # in the raster's order
    # fewer than MIN_PIXELS_CONSTANT distinct valid pixels: nothing is judged constant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert extract_values(path, x[:MIN_PIXELS_CONSTANT - 1], y[:MIN_PIXELS_CONSTANT - 1]).band_names == names


def test_points_on_nodata_drop_no_band(hyper: Path) -> None:
    x, y = X0 + RES * np.array([0.5, 1.5, 2.5]), Y0 - RES * np.array([0.5, 1.5, 2.5])  # the nodata corner
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ext = extract_values(hyper, x, y)
    assert ext.selection.selected_by == "all" and not ext.valid.any()
    points = pd.DataFrame({"x": x, "y": y, "code": [1, 2, 3], "value": [1, 2, 3]})
    with pytest.raises(NoOverlapError, match="none of the 3 reference points falls on a valid embedding pixel"):
        build_samples(points, ext)


# ---------------------------------------------------------------- explicit selection


def test_selection_by_names_and_indices_reads_only_those_bands(tmp_path: Path, hyper: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"H{b:03d}" for b in range(1, B + 1)]
    named = write_raster(tmp_path / "named.tif", _hyperspectral(), nodata=-32768, descriptions=names)
    read: list[object] = []
    original = ThreadReaders.read

    def spy(self: ThreadReaders, window: object, indexes: object = None) -> np.ndarray:
        read.append(indexes)
        return original(self, window, indexes)  # type: ignore[arg-type]

    monkeypatch.setattr(ThreadReaders, "read", spy)
    x, y = _points()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing detected, nothing dropped
        by_name = extract_values(named, x, y, bands=["H010", "H001", "H003"])
        by_index = extract_values(hyper, x, y, bands=[10, 1, 3])
        mixed = extract_values(named, x, y, bands=[1, "H003", 10])
    assert read and all(r == [1, 3, 10] for r in read)
    assert by_name.band_names == ["H001", "H003", "H010"] and by_index.band_names == ["band_1", "band_3", "band_10"]
    assert by_name.selection.selected_by == "embedding.bands" and by_name.selection.indexes == (1, 3, 10)
    for ext in (by_index, mixed):
        np.testing.assert_array_equal(ext.values, by_name.values)
        np.testing.assert_array_equal(ext.valid, by_name.valid)


def test_bad_selections_name_the_value_and_the_rasters_bands(hyper: Path) -> None:
    names = band_names(rasterio.open(hyper))
    with pytest.raises(ConfigError, match=r"entry 11 is out of range: embedding raster '.*hyper.tif' has 10 "
                                          r"bands: band_1, band_2, band_3 \.\.\. band_10; give 1-based"):
        resolve_bands([1, 11], names, raster=str(hyper))
    with pytest.raises(ConfigError, match=r"entry 'B01' is not a band of embedding raster .*\(10 bands: band_1"):
        resolve_bands(["B01"], names, raster=str(hyper))
    with pytest.raises(ConfigError, match=r"'3' .*a quoted number is a name: write 3 unquoted for an index"):
        resolve_bands(["3"], names, raster=str(hyper))
    with pytest.raises(ConfigError, match=r"names band 2 \(band_2\) twice \(as 2 and 'band_2'\)"):
        resolve_bands([2, "band_2"], names, raster=str(hyper))
    with pytest.raises(InputDataError, match=r"embedding.bands selects band 4 \(band_4\), nodata in every sampled "
                                             r"pixel .*remove it from embedding.bands"):
        extract_values(hyper, *_points(), bands=[1, 4, 5])
    with pytest.raises(ConfigError, match="out of range"):
        extract_values(hyper, *_points(), bands=[12])


@pytest.mark.parametrize(("bands", "message"), [
    ([], "give a non-empty list of band names or 1-based band indices, or null for every band"),
    ([0], "band index 0 is not allowed; indices are 1-based"),
    ([True], "entry True is neither a band name nor a 1-based band index"),
    ([1.5], "entry 1.5 is neither"),
    (["A00", "A00"], "band 'A00' is listed twice"),
])
def test_config_refuses_malformed_band_lists(bands: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"config key 'embedding.bands': {message}"):
        config_from_dict({"reference": {"path": "r.tif"}, "embedding": {"path": "e.tif", "bands": bands}})
    cfg = config_from_dict({"reference": {"path": "r.tif"}, "embedding": {"path": "e.tif", "bands": ["A00", 3]}})
    assert cfg.embedding.bands == ("A00", 3)


def test_a_bad_selection_stops_the_run_before_any_stage(tmp_path: Path, hyper: Path) -> None:
    from lcmodel import pipeline

    ref = write_raster(tmp_path / "ref.tif", np.ones((H, W), np.uint8), nodata=0)
    cfg = config_from_dict({"reference": {"path": str(ref)}, "output": {"dir": str(tmp_path / "out")},
                            "embedding": {"path": str(hyper), "bands": ["band_1", "band_99"]}})
    with pytest.raises(ConfigError, match=r"entry 'band_99' is not a band of embedding raster"):
        pipeline.sample(cfg)
    assert not list((tmp_path / "out").glob("*.csv"))


def test_text_helpers() -> None:
    assert band_list_text([57, 58]) == "57, 58"
    assert band_list_text([1, 2, 3, 5, 7, 8, 9, 10], ["a"] * 8, limit=4) == "1-3, 5, 7-10 (a, a, ..., a, a)"
    assert bands_note(BandSelection.every(["a", "b"]).to_dict()) is None
    record = BandSelection((1, 3), ("a", "c"), 3, "detection", (DroppedBand(2, "b", "nodata"),)).to_dict()
    note = bands_note(record)
    assert note is not None and "uses 2 of the embedding's 3 bands: band(s) 2 (b) were nodata" in note


# ---------------------------------------------------------------- bundle, compatibility, prediction


def _bundle(embedding: Path, indexes: list[int] | None = None) -> ModelBundle:
    """A forest on the bands ``indexes`` (default all) of ``embedding``, fitted on a few pixels."""
    with rasterio.open(embedding) as src:
        data = src.read(indexes)
        names = band_names(src)
        rule = NodataRule.detect(src)
        crs = src.crs.to_wkt()
        count = src.count
    used = indexes or list(range(1, count + 1))
    X = data[:, 10:, 10:].reshape(len(used), -1).T.astype(np.float32)
    y = np.where(X[:, 0] > 2500, 2, 1)  # band 1 = row * 100 + col
    rf = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y)
    return ModelBundle(estimator=rf, band_names=[names[i - 1] for i in used], crs_wkt=crs, nodata_rule=rule,
                       class_table=ClassTable({1: 1, 2: 2}), config={}, training_table_sha256=None,
                       versions=current_versions(), created=utc_now(), band_indexes=used if indexes else [],
                       n_source_bands=count if indexes else 0)


def test_bundle_records_band_indexes_and_old_bundles_mean_every_band(tmp_path: Path, hyper: Path,
                                                                     hyper_clean: Path) -> None:
    bundle = _bundle(hyper, LIVE)
    path = save_bundle(bundle, tmp_path / "model.skops")
    side = json.loads(side_file_path(path).read_text())
    assert side["band_indexes"] == LIVE and side["n_source_bands"] == B
    assert side["band_names"] == [f"band_{b}" for b in LIVE]
    loaded = load_bundle(path)
    assert loaded.source_indexes == LIVE and loaded.source_band_count == B and not loaded.uses_all_bands
    # an older bundle (no band_indexes, no n_source_bands): every band, 1..n
    plain = _bundle(hyper_clean)
    meta = plain.metadata(with_created=False)
    del meta["band_indexes"], meta["n_source_bands"]
    old = tmp_path / "old.skops"
    old.write_bytes(bundle_bytes(plain.estimator, meta))
    legacy = load_bundle(old)
    assert legacy.band_indexes == [] and legacy.source_indexes == list(range(1, 9)) and legacy.uses_all_bands
    with rasterio.open(hyper_clean) as src:
        assert check_compatible(legacy, src) == legacy.nodata_rule
    predict_raster(legacy, hyper_clean, tmp_path / "legacy.tif")


def test_bad_band_indexes_are_refused(tmp_path: Path, hyper: Path) -> None:
    from lcmodel.errors import ModelBundleError

    bundle = _bundle(hyper, LIVE)
    bundle.band_indexes = [1, 1, 2, 3, 5, 6, 7, 8]
    with pytest.raises(ModelBundleError, match=r"band_indexes \[1, 1, 2, 3, 5\]\.\.\. must give one distinct"):
        save_bundle(bundle, tmp_path / "m.skops")


def test_compatibility_of_a_subset_model(tmp_path: Path, hyper: Path, hyper_clean: Path) -> None:
    bundle = _bundle(hyper, LIVE)
    with rasterio.open(hyper) as src:
        assert check_compatible(bundle, src) == bundle.nodata_rule
    with rasterio.open(hyper_clean) as src, pytest.raises(
            CompatibilityError, match=r"has 8 bands, the model was trained on 10 \(using 8 of them: bands 1-3, "
                                      r"5-8, 10\); predict with"):
        check_compatible(bundle, src)
    names = [f"H{b:03d}" for b in range(1, B + 1)]
    named = write_raster(tmp_path / "n.tif", _hyperspectral(), nodata=-32768, descriptions=names)
    model = _bundle(named, LIVE)
    swapped = write_raster(tmp_path / "s.tif", _hyperspectral(), nodata=-32768,
                           descriptions=[names[i] for i in (0, 1, 2, 3, 5, 4, 6, 7, 8, 9)])
    with rasterio.open(swapped) as src, pytest.raises(
            CompatibilityError, match=r"another order \(band 5 is 'H006', the model expects 'H005'\)"):
        check_compatible(model, src)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_prediction_reads_only_the_bands_used_and_maps_as_without_the_dead_bands(
        tmp_path: Path, hyper: Path, hyper_clean: Path, monkeypatch: pytest.MonkeyPatch, n_jobs: int) -> None:
    subset = _bundle(hyper, LIVE)
    full = _bundle(hyper_clean)  # the same forest: same features, same seed
    assert (subset.estimator.predict_proba(np.eye(8, dtype=np.float32))
            == full.estimator.predict_proba(np.eye(8, dtype=np.float32))).all()
    read: list[object] = []
    original = ThreadReaders.read

    def spy(self: ThreadReaders, window: object, indexes: object = None) -> np.ndarray:
        read.append(indexes)
        return original(self, window, indexes)  # type: ignore[arg-type]

    monkeypatch.setattr(ThreadReaders, "read", spy)
    a = predict_raster(subset, hyper, tmp_path / "a" / "map.tif", n_jobs=n_jobs, block_size=16)
    assert read and all(r == LIVE for r in read)
    read.clear()
    b = predict_raster(full, hyper_clean, tmp_path / "b" / "map.tif", n_jobs=n_jobs, block_size=16)
    assert read and all(r is None for r in read)  # every band: read as before
    with rasterio.open(a.map_path) as ma, rasterio.open(b.map_path) as mb:
        got, expected = ma.read(1), mb.read(1)
    np.testing.assert_array_equal(got, expected)
    assert (got[:4, :4] == 0).all() and (got[4:, 4:] > 0).all()  # nodata only where the used bands are
    assert a.class_counts == b.class_counts and sum(a.class_counts.values()) == H * W - 16


def test_pixel_table_has_the_used_band_columns(hyper: Path) -> None:
    bundle = _bundle(hyper, LIVE)
    with rasterio.open(hyper) as src:
        block = src.read(LIVE, window=rasterio.windows.Window(0, 0, 8, 8)).reshape(len(LIVE), -1).T
    table = pd.DataFrame(block.astype(np.float64), columns=bundle.band_names)
    out = predict_pixel_table(bundle, table)
    corner = np.zeros((8, 8), bool)
    corner[:4, :4] = True
    assert (out["class"].to_numpy()[corner.ravel()] == 0).all()  # -32768 in a used band: nodata
    assert (out["class"].to_numpy()[~corner.ravel()] > 0).all()
    with pytest.raises(InputDataError, match=r"unexpected \['band_4'\]"):
        predict_pixel_table(bundle, table.rename(columns={"band_1": "band_4"}))


# ---------------------------------------------------------------- through the sampling stages


def test_sampling_stages_record_an_explicit_selection(tmp_path: Path) -> None:
    import yaml

    from lcmodel import pipeline
    from tests.rasters import hyperspectral_demo_config

    cfg_path, _ = hyperspectral_demo_config(tmp_path / "data")
    data = yaml.safe_load(cfg_path.read_text())
    data["embedding"]["bands"] = ["band_1", 2, "band_30", 65]
    cfg = config_from_dict(data, base_dir=cfg_path.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # rare classes and the like
        warnings.filterwarnings("error", message=".*every sampled")  # a selection: nothing detected (first match)
        table = pipeline.sample(cfg)
    stats = json.loads(pipeline.paths_for(cfg).sample_stats.read_text())
    assert stats["bands"] == {"n_source_bands": 66, "n_used": 4, "selected_by": "embedding.bands",
                              "used": ["band_1", "band_2", "band_30", "band_65"], "used_indexes": [1, 2, 30, 65],
                              "dropped": []}
    columns = pd.read_csv(table.table.path, nrows=0).columns.tolist()
    assert columns[-4:] == ["band_1", "band_2", "band_30", "band_65"] and len(columns) == 7 + 4
