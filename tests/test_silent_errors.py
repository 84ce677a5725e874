"""What would silently be wrong (issue 15, item 6), each now noticed: an embedding rewritten in place between a
killed and a resumed prediction, reordered or rescaled bands, a band NaN everywhere, and a validation sample
larger than ``--n``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window
from sklearn.ensemble import RandomForestClassifier

from lcmodel.band_stats import MEAN_SHIFT_LIMIT, check_probe, probe_windows, training_band_stats
from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import DataWarning, InputDataError
from lcmodel.io import sha256_file
from lcmodel.model_io import ModelBundle, current_versions, load_bundle, save_bundle, utc_now
from lcmodel.predict import partial_dir, predict_raster
from tests.rasters import write_raster

SIZE, BANDS, BLOCK = 64, 8, 16  # 16 blocks of 16 x 16


class Killed(Exception):
    """Stands for a kill: raised from the progress callback after some blocks are recorded."""


def _embedding(path: Path, seed: int = 3, names: bool = True) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(seed).normal(size=(BANDS, SIZE, SIZE)).astype(np.float32)
    descriptions = [f"A{b:02d}" for b in range(BANDS)] if names else None
    return write_raster(path, data, blocksize=BLOCK, descriptions=descriptions), data


def _bundle(folder: Path, emb: Path, data: np.ndarray) -> Path:
    """A forest on the embedding's own pixels, with their band statistics, saved as a bundle."""
    X = data.reshape(BANDS, -1).T
    y = np.where(X[:, 0] + X[:, 1] > 0, 10, np.where(X[:, 2] > 0, 20, 30))
    rf = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(X[::7], y[::7])
    with rasterio.open(emb) as src:
        rule, names, crs = NodataRule.detect(src), band_names(src), src.crs.to_wkt()
    bundle = ModelBundle(
        estimator=rf, band_names=names, crs_wkt=crs, nodata_rule=rule,
        class_table=ClassTable(code_to_value={10: 10, 20: 20, 30: 30}), config={},
        training_table_sha256=None, versions=current_versions(), created=utc_now(),
        band_stats=training_band_stats(X, names),
    )
    return save_bundle(bundle, folder / "model.joblib")


def _kill_after(model: Path, emb: Path, out: Path, k: int) -> None:
    def progress(done: int, total: int) -> None:
        if done >= k:
            raise Killed

    with pytest.raises(Killed):
        predict_raster(load_bundle(model), emb, out, block_size=BLOCK, progress=progress)
    assert partial_dir(out).is_dir() and not out.exists()


# --- 1. resume after an in-place rewrite ---------------------------------------------------------------------

def test_rewrite_in_place_with_same_size_and_mtime_reuses_no_stale_block(tmp_path: Path) -> None:
    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    out = tmp_path / "killed" / "map.tif"
    _kill_after(model, emb, out, 5)  # blocks 0..4 finished (row 0 and the first of row 1)

    st = emb.stat()
    changed = data.copy()
    changed[:, :32, :32] *= -1  # blocks 0, 1, 4 and 5 change; 2 and 3 do not
    with rasterio.open(emb, "r+") as dst:  # in place: same layout, same size
        dst.write(changed)
    os.utime(emb, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert emb.stat().st_size == st.st_size and emb.stat().st_mtime_ns == st.st_mtime_ns

    summary = predict_raster(load_bundle(model), emb, out, block_size=BLOCK)
    assert summary.n_resumed == 2  # blocks 2 and 3 kept; 0, 1 and 4 predicted again
    fresh = tmp_path / "fresh" / "map.tif"
    predict_raster(load_bundle(model), emb, fresh, block_size=BLOCK)
    assert sha256_file(out) == sha256_file(fresh)
    with rasterio.open(out) as a, rasterio.open(tmp_path / "fresh" / "map.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_touching_the_embedding_keeps_the_finished_blocks(tmp_path: Path) -> None:
    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    out = tmp_path / "touched" / "map.tif"
    _kill_after(model, emb, out, 6)
    os.utime(emb, ns=(emb.stat().st_atime_ns, emb.stat().st_mtime_ns + 10**9))  # content unchanged
    summary = predict_raster(load_bundle(model), emb, out, block_size=BLOCK)
    assert summary.n_resumed == 6


def test_manifest_records_each_blocks_input_digest(tmp_path: Path) -> None:
    from lcmodel.predict.classify import block_digest

    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    out = tmp_path / "digests" / "map.tif"
    _kill_after(model, emb, out, 3)
    lines = [json.loads(x) for x in (partial_dir(out) / "manifest.jsonl").read_text().splitlines()[1:]]
    assert [e["block"] for e in lines] == [0, 1, 2]
    for e in lines:
        c = e["block"] * BLOCK
        assert e["input"] == block_digest(data[:, :BLOCK, c:c + BLOCK])


# --- 2. band statistics in the bundle, checked against a probe --------------------------------------------

def test_band_stats_travel_in_the_bundle_and_its_side_file(tmp_path: Path) -> None:
    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    stats = load_bundle(model).band_stats
    assert stats is not None and stats["bands"] == [f"A{b:02d}" for b in range(BANDS)]
    np.testing.assert_allclose(stats["mean"], data.reshape(BANDS, -1).mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(stats["max"], data.reshape(BANDS, -1).max(axis=1), atol=1e-6)
    side = json.loads(Path(f"{model}.json").read_text())
    assert side["band_stats"] == stats


def _predict_warnings(model: Path, emb: Path, out: Path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_raster(load_bundle(model), emb, out, block_size=BLOCK)
    return [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_same_embedding_gives_no_warning(tmp_path: Path) -> None:
    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    assert _predict_warnings(model, emb, tmp_path / "same" / "map.tif") == []


def test_reordered_bands_without_names_warn_naming_the_bands(tmp_path: Path) -> None:
    _, data = _embedding(tmp_path / "named.tif", names=False)
    data = data + np.arange(BANDS, dtype=np.float32)[:, None, None] * 4  # bands told apart by their level
    train = write_raster(tmp_path / "train.tif", data, blocksize=BLOCK)
    model = _bundle(tmp_path, train, data)
    swapped = write_raster(tmp_path / "swapped.tif", data[[1, 0, *range(2, BANDS)]], blocksize=BLOCK)
    messages = _predict_warnings(model, swapped, tmp_path / "swapped" / "map.tif")
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "2 of 8 bands differ from the model's training data (bands 1, 2 (band_1, band_2);" in messages[0], messages
    assert "check the band order and scale" in messages[0]


def test_int8_values_stored_as_float_warn_on_every_band(tmp_path: Path) -> None:
    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    raw = write_raster(tmp_path / "raw.tif", np.clip(np.round(data * 40), -127, 127).astype(np.float32),
                       blocksize=BLOCK, descriptions=[f"A{b:02d}" for b in range(BANDS)])
    messages = _predict_warnings(model, raw, tmp_path / "raw" / "map.tif")
    assert len(messages) == 1 and "8 of 8 bands differ" in messages[0] and "spread up to" in messages[0]


def test_probe_windows_spread_over_a_large_raster() -> None:
    wins = probe_windows(10000, 3000, block=(256, 256))
    assert len(wins) == 9 and {(w.width, w.height) for w in wins} == {(128, 128)}
    assert {(w.col_off, w.row_off) for w in wins} == {(c, r) for c in (0, 4864, 9728) for r in (0, 1280, 2816)}
    assert probe_windows(100, 60) == [Window(0, 0, 100, 60)]  # a small raster: one window, the whole of it


@pytest.mark.realdata
def test_real_alphaearth_variation_does_not_trip_but_a_reorder_does(shared_data: Path) -> None:
    """Train on the left half of the real AlphaEarth tile, probe its right half (no warning), then the right
    half with two groups of bands swapped (warned, naming them)."""
    path = shared_data / "aef_wisconsin" / "wisconsin_aef2024_64band_10m_1km.tif"
    if not path.is_file():
        pytest.skip("../shared/data/aef_wisconsin is absent")
    with rasterio.open(path) as src:
        a = src.read()
        rule, names = NodataRule.detect(src), band_names(src)
    w = a.shape[2] // 2
    stats = training_band_stats(a[:, :, :w].reshape(64, -1).T, names)
    right = a[:, :, w:].reshape(64, -1)
    indexes = list(range(1, 65))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        check_probe(right, rule, names, indexes, stats, raster="right half")
        check_probe(a[:, :w].reshape(64, -1), rule, names, indexes, stats, raster="top half")
    for order in (np.arange(64)[::-1], np.random.default_rng(0).permutation(64)):
        with pytest.warns(DataWarning, match=r"bands differ from the model's training data \(bands ") as rec:
            check_probe(right[order], rule, names, indexes, stats, raster="reordered")
        assert len(rec) == 1 and f"limit {MEAN_SHIFT_LIMIT:g}" in str(rec[0].message)


# --- 3. a band NaN everywhere -----------------------------------------------------------------------------

def test_all_nan_band_at_prediction_is_named_before_any_block(tmp_path: Path) -> None:
    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    broken = data.copy()
    broken[3] = np.nan
    nan = write_raster(tmp_path / "nan.tif", broken, blocksize=BLOCK,
                       descriptions=[f"A{b:02d}" for b in range(BANDS)])
    out = tmp_path / "nan" / "map.tif"
    with pytest.raises(InputDataError) as err:
        predict_raster(load_bundle(model), nan, out, block_size=BLOCK)
    message = str(err.value)
    assert "\n" not in message and "band 4 (A03) is nodata (NaN or the nodata value) in all 4096 probed" in message
    assert not out.parent.exists() or not any(out.parent.iterdir())  # refused before any work


def test_all_nan_band_at_prediction_through_the_cli_is_one_line(tmp_path: Path) -> None:
    from lcmodel.cli import cli

    emb, data = _embedding(tmp_path / "emb.tif")
    model = _bundle(tmp_path, emb, data)
    broken = data.copy()
    broken[5] = np.nan
    nan = write_raster(tmp_path / "nan.tif", broken, blocksize=BLOCK)
    r = CliRunner().invoke(cli, ["predict", "--model", str(model), "--embedding", str(nan),
                                 "--out", str(tmp_path / "o" / "map.tif")])
    assert r.exit_code == 2, r.output
    assert r.output.count("error:") == 1 and "band 6 (A05) is nodata" in r.output


def test_an_empty_probe_says_nothing(tmp_path: Path) -> None:
    rule = NodataRule(dtype="float32", zero_vector=True)
    raw = np.full((3, 50), np.nan, dtype=np.float32)  # every band nodata everywhere: no band to blame
    check_probe(raw, rule, ["a", "b", "c"], [1, 2, 3], None, raster="x")


# --- 4. validation-sample larger than --n ----------------------------------------------------------------

def test_validation_sample_says_why_it_writes_more_than_n(tmp_path: Path) -> None:
    from lcmodel.cli import cli

    values = np.repeat(np.arange(1, 7, dtype=np.uint8), 400).reshape(40, 60)  # 6 classes of 400 px
    map_path = write_raster(tmp_path / "map.tif", values, nodata=0, blocksize=None)
    out = tmp_path / "points.csv"
    r = CliRunner().invoke(cli, ["validation-sample", str(map_path), "--out", str(out), "--n", "60"])
    assert r.exit_code == 0, r.output
    note = [line for line in r.output.splitlines() if line.startswith("note:")]
    assert note == ["note: 300 points instead of --n 60: each of the 6 map classes gets at least --min-per-class "
                    "50 (all its pixels when fewer), 300 in all; lower --min-per-class for a smaller sample "
                    "(Olofsson et al. suggest 50-100 per class)"]
    r = CliRunner().invoke(cli, ["validation-sample", str(map_path), "--out", str(out), "--n", "60",
                                 "--min-per-class", "5"])
    assert r.exit_code == 0 and "note:" not in r.output and "60 points written" in r.output
