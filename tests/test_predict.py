"""Block-wise prediction into COGs: agreement with the model, nodata, tiling, COG layout, errors."""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier

from lcmodel.classes import WORLDCOVER_CLASSES, ClassTable
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import ClassTableError, CompatibilityError, ConfigError, PredictionError
from lcmodel.model_io import ModelBundle, current_versions, utc_now
from lcmodel.predict import (
    CONFIDENCE_NODATA,
    choose_block_size,
    output_dtype,
    overview_factors,
    plan_windows,
    predict_raster,
)
from tests.rasters import write_raster

SENTINEL = 999.0


class ExplodingClassifier(ClassifierMixin, BaseEstimator):
    """A forest that raises on any block holding a pixel whose first band equals ``sentinel``."""

    def __init__(self, sentinel: float = SENTINEL) -> None:
        self.sentinel = sentinel

    def fit(self, X: np.ndarray, y: np.ndarray) -> ExplodingClassifier:
        self.inner_ = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
        self.classes_ = self.inner_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if (X[:, 0] == self.sentinel).any():
            raise ValueError("sentinel pixel reached")
        return self.inner_.predict_proba(X)


# --- fixtures -------------------------------------------------------------------------------------


def _embedding_data(height: int = 40, width: int = 50, bands: int = 4) -> np.ndarray:
    rng = np.random.default_rng(42)
    data = rng.normal(size=(bands, height, width)).astype(np.float32)
    data[:, 0, 0] = 0.0  # all-zero vector: nodata
    data[2, 5, 7] = np.nan  # NaN in one band: nodata
    data[:, height - 1, 10:20] = 0.0  # a nodata run on the bottom edge block
    return data


def _fit(
    values: list[int],
    bands: int = 4,
    *,
    frame: list[str] | None = None,
    n_jobs: int | None = None,
    estimator: Any = None,
) -> Any:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, bands)).astype(np.float32)
    bins = np.digitize(X[:, 0] + 0.5 * X[:, 1], np.linspace(-1, 1, len(values) - 1))
    y = np.asarray(values)[bins]
    est = estimator if estimator is not None else RandomForestClassifier(
        n_estimators=10, random_state=0, n_jobs=n_jobs
    )
    return est.fit(pd.DataFrame(X, columns=frame) if frame else X, y)


def _bundle(embedding: Path, estimator: Any, table: ClassTable | None = None) -> ModelBundle:
    with rasterio.open(embedding) as src:
        return ModelBundle(
            estimator=estimator,
            band_names=band_names(src),
            crs_wkt=src.crs.to_wkt() if src.crs else None,
            nodata_rule=NodataRule.detect(src),
            class_table=table or ClassTable({v: v for v in estimator.classes_.tolist()}),
            config={},
            training_table_sha256=None,
            versions=current_versions(),
            created=utc_now(),
        )


@pytest.fixture()
def embedding(tmp_path: Path) -> Path:
    return write_raster(tmp_path / "emb.tif", _embedding_data(), blocksize=16)


@pytest.fixture(scope="module")
def worldcover_rf() -> RandomForestClassifier:
    return _fit([10, 20, 30, 50, 80])


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _expected(embedding: Path, estimator: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid mask, estimator.predict and round(100 * max proba) on the raster's valid pixels."""
    with rasterio.open(embedding) as src:
        mask, feats = NodataRule.detect(src).block_features(src.read())
    proba = estimator.predict_proba(feats)
    return mask, estimator.predict(feats), np.floor(proba.max(axis=1) * 100 + 0.5).astype(np.uint8)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- COG validity (what GDAL's validate_cloud_optimized_geotiff.py checks) ------------------------


def _ifd_offsets(path: Path) -> list[int]:
    """Offsets of the TIFF's IFDs in chain order (classic TIFF and BigTIFF)."""
    raw = path.read_bytes()
    endian = "<" if raw[:2] == b"II" else ">"
    big = struct.unpack(endian + "H", raw[2:4])[0] == 43
    offsets = []
    offset = struct.unpack(endian + ("Q" if big else "I"), raw[8:16] if big else raw[4:8])[0]
    while offset:
        offsets.append(offset)
        if big:
            n = struct.unpack(endian + "Q", raw[offset : offset + 8])[0]
            nxt = offset + 8 + n * 20
            offset = struct.unpack(endian + "Q", raw[nxt : nxt + 8])[0]
        else:
            n = struct.unpack(endian + "H", raw[offset : offset + 2])[0]
            nxt = offset + 2 + n * 12
            offset = struct.unpack(endian + "I", raw[nxt : nxt + 4])[0]
    return offsets


def _block_offsets(path: Path, overview_level: int | None) -> list[int]:
    kw = {} if overview_level is None else {"overview_level": overview_level}
    with rasterio.open(path, **kw) as src:
        by, bx = src.block_shapes[0]
        nx, ny = -(-src.width // bx), -(-src.height // by)
        return [
            int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1) or 0)
            for y in range(ny)
            for x in range(nx)
        ]


def assert_valid_cog(path: Path) -> None:
    """Tiled, tiled overviews, LAYOUT=COG, ghost header, IFDs before data, smallest level first."""
    with rasterio.open(path) as src:
        assert src.driver == "GTiff"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.profile["tiled"] and src.block_shapes[0] == (512, 512)
        n_overviews = len(src.overviews(1))
        assert n_overviews >= 1
    header = path.read_bytes()[:400]
    assert b"GDAL_STRUCTURAL_METADATA_SIZE=" in header[8:60]
    assert b"LAYOUT=IFDS_BEFORE_DATA" in header and b"BLOCK_ORDER=ROW_MAJOR" in header
    for level in range(n_overviews):
        with rasterio.open(path, overview_level=level) as ov:
            assert ov.block_shapes[0] == (512, 512)
    ifds = _ifd_offsets(path)
    assert len(ifds) == 1 + n_overviews and ifds == sorted(ifds)
    levels = [_block_offsets(path, lvl) for lvl in [*range(n_overviews - 1, -1, -1), None]]
    data_offsets = [o for lvl in levels for o in lvl if o]
    assert max(ifds) < min(data_offsets), "IFDs must all come before the image data"
    # smallest overview first, full resolution last; row-major blocks inside each level
    assert data_offsets == sorted(data_offsets)


# --- agreement, nodata, blocks --------------------------------------------------------------------


def test_map_equals_estimator_predict_and_nodata_is_not_predicted(
    tmp_path: Path, embedding: Path, worldcover_rf: RandomForestClassifier
) -> None:
    calls: list[tuple[int, int]] = []
    out, conf = tmp_path / "out" / "map.tif", tmp_path / "out" / "conf.tif"
    summary = predict_raster(
        _bundle(embedding, worldcover_rf), embedding, out, confidence_path=conf, block_size=32,
        progress=lambda d, t: calls.append((d, t)),
    )
    mask, predicted, confidence = _expected(embedding, worldcover_rf)
    labels, conf_values = _read(out), _read(conf)
    np.testing.assert_array_equal(labels[mask], predicted)
    assert (labels[~mask] == 0).all() and (~mask).sum() == 12
    np.testing.assert_array_equal(conf_values[mask], confidence)
    assert (conf_values[~mask] == CONFIDENCE_NODATA).all() and conf_values[mask].max() <= 100
    # 40 x 50 in 32-px windows: 2 x 2 windows, the right and bottom ones clipped
    assert summary.n_blocks == 4 and calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert summary.n_pixels == 2000 and summary.n_valid == 1988 and summary.n_nodata == 12
    assert sum(summary.class_counts.values()) == summary.n_valid
    assert summary.class_counts == {v: int((labels == v).sum()) for v in (10, 20, 30, 50, 80)}
    assert summary.pixel_area_m2 == pytest.approx(100.0)
    assert summary.class_areas_ha() == {v: n / 100 for v, n in summary.class_counts.items()}
    assert summary.output_dtype == "uint8" and summary.output_nodata == 0
    # intermediates cleaned
    assert sorted(p.name for p in out.parent.iterdir()) == ["conf.tif", "map.tif"]
    with rasterio.open(out) as m, rasterio.open(conf) as c, rasterio.open(embedding) as e:
        assert m.transform == e.transform and m.crs == e.crs and c.transform == e.transform
        assert m.nodata == 0 and c.nodata == 255 and c.dtypes[0] == "uint8"
        assert m.profile["compress"] == "deflate"
    assert_valid_cog(out)
    assert_valid_cog(conf)


def test_block_size_rounds_down_to_internal_block_and_covers_edges(
    tmp_path: Path, embedding: Path, worldcover_rf: RandomForestClassifier
) -> None:
    bundle = _bundle(embedding, worldcover_rf)
    summary = predict_raster(bundle, embedding, tmp_path / "m.tif", block_size=20)
    assert summary.block_size == 16 and summary.n_blocks == 3 * 4
    mask, predicted, _ = _expected(embedding, worldcover_rf)
    np.testing.assert_array_equal(_read(tmp_path / "m.tif")[mask], predicted)


def test_striped_raster_is_predicted_in_row_strips(
    tmp_path: Path, worldcover_rf: RandomForestClassifier
) -> None:
    emb = write_raster(tmp_path / "striped.tif", _embedding_data(), blocksize=None)
    with rasterio.open(emb) as src:
        assert not src.profile.get("tiled") and src.block_shapes[0][1] == 50
    summary = predict_raster(_bundle(emb, worldcover_rf), emb, tmp_path / "m.tif", block_size=7)
    rows = summary.block_size
    assert summary.n_blocks == -(-40 // rows)
    mask, predicted, _ = _expected(emb, worldcover_rf)
    np.testing.assert_array_equal(_read(tmp_path / "m.tif")[mask], predicted)


def test_aef_int8_embedding_masks_minus_128(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(-127, 128, size=(4, 20, 24), dtype=np.int8)
    data[:, 3, 4] = -128
    emb = write_raster(tmp_path / "aef.tif", data, blocksize=16)
    rf = _fit([1, 2, 3])
    summary = predict_raster(_bundle(emb, rf), emb, tmp_path / "m.tif")
    labels = _read(tmp_path / "m.tif")
    assert labels[3, 4] == 0 and summary.n_nodata == 1
    mask, predicted, _ = _expected(emb, rf)
    np.testing.assert_array_equal(labels[mask], predicted)


def test_estimator_fitted_with_feature_names_predicts_without_warnings(tmp_path: Path) -> None:
    names = ["A00", "A01", "A02", "A03"]
    emb = write_raster(tmp_path / "named.tif", _embedding_data(), descriptions=names)
    rf = _fit([1, 2, 3], frame=names, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_raster(_bundle(emb, rf), emb, tmp_path / "m.tif", block_size=16)
    with rasterio.open(emb) as src:
        mask, feats = NodataRule.detect(src).block_features(src.read())
    expected = rf.predict(pd.DataFrame(feats, columns=names))
    np.testing.assert_array_equal(_read(tmp_path / "m.tif")[mask], expected)
    assert rf.n_jobs == 2  # the estimator's own n_jobs is restored after prediction


# --- output types and metadata --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 255], ("uint8", 0)),
        ([10, 300], ("uint16", 0)),
        ([1, 65535], ("uint16", 0)),
        ([1, 70000], ("uint32", 0)),
        ([0, 1, 254], ("uint8", 255)),
        ([0, 255], ("uint16", 65535)),
        (np.array([1.0, 2.0]), ("uint8", 0)),
    ],
)
def test_output_dtype(values: list[int], expected: tuple[str, int]) -> None:
    assert output_dtype(values) == expected


def test_output_dtype_errors() -> None:
    with pytest.raises(ClassTableError, match=r"class value -1 is negative"):
        output_dtype([-1, 2])
    with pytest.raises(ClassTableError, match=r"are not integers"):
        output_dtype([1.5, 2])
    with pytest.raises(ClassTableError, match=r"does not fit in uint32"):
        output_dtype([1, 2**32])


def test_class_values_above_255_are_written_as_uint16(tmp_path: Path, embedding: Path) -> None:
    rf = _fit([1, 300])
    summary = predict_raster(_bundle(embedding, rf), embedding, tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        labels = src.read(1)
        assert src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.colormap(1)[300][3] == 255
    mask, predicted, _ = _expected(embedding, rf)
    np.testing.assert_array_equal(labels[mask], predicted)
    assert set(np.unique(labels[mask])) <= {1, 300} and summary.output_dtype == "uint16"


def test_worldcover_palette_names_and_tags(
    tmp_path: Path, embedding: Path, worldcover_rf: RandomForestClassifier
) -> None:
    table = ClassTable(code_to_value={v: v for v in (10, 20, 30, 50, 80)})
    predict_raster(_bundle(embedding, worldcover_rf, table), embedding, tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        cmap = src.colormap(1)
        tags = src.tags()
        assert src.descriptions == ("land cover class",)
    for value in (10, 20, 30, 50, 80):
        hex_color = WORLDCOVER_CLASSES[value][1].lstrip("#")
        rgb = tuple(int(hex_color[i : i + 2], 16) for i in (0, 2, 4))
        assert cmap[value] == (*rgb, 255)
        assert tags[f"CLASS_{value}"] == WORLDCOVER_CLASSES[value][0]
    assert cmap[0][3] == 0  # nodata is transparent
    classes = json.loads(tags["LCMODEL_CLASSES"])
    assert [c["value"] for c in classes] == [10, 20, 30, 50, 80]
    assert classes[0] == {"value": 10, "name": "Tree cover", "color": "#006400"}


def test_named_classes_from_table(tmp_path: Path, embedding: Path) -> None:
    rf = _fit([1, 2])
    table = ClassTable(code_to_value={"Forest": 1, "Pasture": 2}, names={1: "Forest", 2: "Pasture"})
    predict_raster(_bundle(embedding, rf, table), embedding, tmp_path / "m.tif")
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.tags()["CLASS_1"] == "Forest" and src.tags()["CLASS_2"] == "Pasture"
        assert src.colormap(1)[1] == table.colormap()[1]


def test_geographic_crs_has_no_pixel_area(tmp_path: Path) -> None:
    from rasterio.transform import from_origin

    emb = write_raster(tmp_path / "geo.tif", _embedding_data(20, 20), crs="EPSG:4326",
                       transform=from_origin(-60.0, -10.0, 0.0001, 0.0001))
    summary = predict_raster(_bundle(emb, _fit([1, 2])), emb, tmp_path / "m.tif")
    assert summary.pixel_area_m2 is None and summary.class_areas_ha() is None


# --- determinism and parallelism ------------------------------------------------------------------


def test_same_inputs_give_identical_files_and_n_jobs_and_engine_do_not_matter(
    tmp_path: Path, embedding: Path, worldcover_rf: RandomForestClassifier
) -> None:
    """Compiled forest in-process and on threads, scikit-learn in-process and in processes: one file."""
    bundle = _bundle(embedding, worldcover_rf)
    runs = {}
    cases = {"a": (1, "auto"), "b": (1, "auto"), "c": (2, "auto"), "d": (1, "sklearn"), "e": (2, "sklearn")}
    for name, (n_jobs, engine) in cases.items():
        runs[name] = predict_raster(
            bundle,
            embedding,
            tmp_path / f"{name}.tif",
            confidence_path=tmp_path / f"{name}_c.tif",
            block_size=16,
            n_jobs=n_jobs,
            engine=engine,
        )
    for suffix in ("", "_c"):
        hashes = {_sha(tmp_path / f"{n}{suffix}.tif") for n in cases}
        assert len(hashes) == 1, f"outputs{suffix} differ between runs, n_jobs or engines"
        np.testing.assert_array_equal(
            _read(tmp_path / f"a{suffix}.tif"), _read(tmp_path / f"e{suffix}.tif")
        )
    assert runs["a"].class_counts == runs["e"].class_counts and runs["c"].n_jobs == 2
    assert [runs[n].engine for n in "acde"] == ["compiled", "compiled", "sklearn", "sklearn"]


def test_unknown_engine_is_refused(tmp_path: Path, embedding: Path, worldcover_rf: RandomForestClassifier) -> None:
    with pytest.raises(ConfigError, match=r"engine='fast' is not an engine; use one of auto, sklearn"):
        predict_raster(_bundle(embedding, worldcover_rf), embedding, tmp_path / "m.tif", engine="fast")
    assert not (tmp_path / "m.tif").exists()


def test_served_pixel_table_gets_the_maps_probabilities_bit_for_bit(embedding: Path) -> None:
    """The served model (lcmodel.pixels) classifies through the same compiled forest as the map: the same
    float64 probabilities, even for a forest whose own n_jobs=2 would sum its trees in any order."""
    from lcmodel.forest import Predictor
    from lcmodel.pixels import predict_pixel_table, probability_columns

    rf = _fit([10, 20, 30, 50, 80], n_jobs=2)
    bundle = _bundle(embedding, rf)
    with rasterio.open(embedding) as src:
        data = src.read()
    pixels = data.reshape(data.shape[0], -1).T
    finite = np.isfinite(pixels).all(axis=1)  # a served table holds no NaN pixels (they are refused)
    table = pd.DataFrame(pixels[finite], columns=bundle.band_names)
    served = predict_pixel_table(bundle, table, probabilities=True, predictor=Predictor(rf))
    mask, features = bundle.nodata_rule.block_features(data)
    got = served[probability_columns(bundle)].to_numpy()[mask.ravel()[finite]]
    assert np.array_equal(got, rf.set_params(n_jobs=1).predict_proba(features))
    assert np.array_equal(predict_pixel_table(bundle, table)["class"], served["class"])  # own Predictor


# --- errors: before any output, and inside a block ------------------------------------------------


def test_band_count_mismatch_fails_before_any_output(tmp_path: Path, embedding: Path) -> None:
    rf = _fit([1, 2], bands=5)
    bundle = _bundle(embedding, rf)
    bundle.band_names = [f"band_{i}" for i in range(1, 6)]
    out_dir = tmp_path / "out"
    with pytest.raises(CompatibilityError, match=r"has 4 bands, the model was trained on 5"):
        predict_raster(bundle, embedding, out_dir / "m.tif", confidence_path=out_dir / "c.tif")
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_error_in_one_block_names_the_window_and_leaves_no_output(
    tmp_path: Path, n_jobs: int
) -> None:
    data = _embedding_data()
    data[0, 5, 40] = SENTINEL  # in the top-right window: col_off=32, row_off=0, width=18, height=32
    emb = write_raster(tmp_path / "emb.tif", data, blocksize=16)
    bundle = _bundle(emb, _fit([1, 2, 3], estimator=ExplodingClassifier()))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "m.tif").write_bytes(b"previous map")  # an earlier result survives a failed run
    with pytest.raises(
        PredictionError,
        match=r"block 2 at window \(col_off=32, row_off=0, width=18, height=32\): "
        r"ValueError: sentinel pixel reached",
    ):
        predict_raster(
            bundle,
            emb,
            out_dir / "m.tif",
            confidence_path=out_dir / "c.tif",
            block_size=32,
            n_jobs=n_jobs,
        )
    # no output; only the hidden resume state (block 1 finished) beside the earlier map
    assert sorted(p.name for p in out_dir.iterdir()) == [".m.tif.partial", "m.tif"]
    assert (out_dir / "m.tif").read_bytes() == b"previous map"


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_error_in_a_block_of_the_compiled_forest_names_the_window(tmp_path: Path, n_jobs: int) -> None:
    """The compiled engine (threads for n_jobs=2) stops at a bad block like scikit-learn's (processes)."""
    data = _embedding_data()
    data[0, 5, 40] = np.inf  # scikit-learn refuses infinity; the compiled forest hands it that row
    emb = write_raster(tmp_path / "emb.tif", data, blocksize=16)
    bundle = _bundle(emb, _fit([1, 2, 3]))
    with pytest.raises(
        PredictionError,
        match=r"block 2 at window \(col_off=32, row_off=0, width=18, height=32\): ValueError: .*infinity",
    ):
        predict_raster(bundle, emb, tmp_path / "out" / "m.tif", block_size=32, n_jobs=n_jobs)
    assert not (tmp_path / "out" / "m.tif").exists()


# --- pure logic -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    block=st.sampled_from([(16, 16), (32, 32), (16, 32), (1, 300), (4, 300)]),
    multiple=st.integers(1, 5),
)
def test_windows_tile_the_raster_exactly(
    width: int, height: int, block: tuple[int, int], multiple: int
) -> None:
    by, bx = block
    tiled = bx != 300
    if not tiled:
        bx = width
    size = multiple * (np.lcm(by, bx) if tiled else by)
    windows = plan_windows(width, height, (by, bx), int(size), tiled=tiled)
    cover = np.zeros((height, width), dtype=np.int32)
    for w in windows:
        assert w.col_off % bx == 0 and w.row_off % by == 0  # aligned with internal blocks
        assert w.width > 0 and w.height > 0
        cover[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (cover == 1).all()
    starts = [(w.row_off, w.col_off) for w in windows]
    assert starts == sorted(starts)  # row-major: the writer's order


def test_choose_block_size_formula() -> None:
    # 64 float32 bands, 10 classes: 64*4 + 10*8 + 5 = 341 bytes per pixel
    # 1024 MiB / 341 B = 3_148_803 px -> side 1774 -> down to a multiple of 256 = 1536
    assert choose_block_size(64, 4, 10, 1024, 256) == 1536
    assert choose_block_size(64, 4, 10, 1024, 512) == 1536
    # int8: 64 + 80 + 5 = 149 B per pixel -> side 2684 -> 2560
    assert choose_block_size(64, 1, 10, 1024, 512) == 2560
    assert choose_block_size(64, 4, 10, 1, 256) == 256  # at least one internal block


def test_overview_factors() -> None:
    assert overview_factors(50, 40) == [2]
    assert overview_factors(1000, 600) == [2, 4]
    assert overview_factors(4096, 100) == [2, 4, 8, 16, 32]


def test_default_window_and_argument_errors(
    tmp_path: Path, embedding: Path, worldcover_rf: RandomForestClassifier
) -> None:
    bundle = _bundle(embedding, worldcover_rf)
    summary = predict_raster(bundle, embedding, tmp_path / "m.tif")  # memory-based, capped at 512
    assert summary.block_size == 512 and summary.n_blocks == 1 and summary.n_jobs == 1
    with pytest.raises(ConfigError, match=r"n_jobs=0 is not allowed"):
        predict_raster(bundle, embedding, tmp_path / "x.tif", n_jobs=0)
    with pytest.raises(ConfigError, match=r"confidence_path equals the map path"):
        predict_raster(bundle, embedding, tmp_path / "x.tif", confidence_path=tmp_path / "x.tif")
    with pytest.raises(ConfigError, match=r"an output path equals the embedding"):
        predict_raster(bundle, embedding, embedding)
    assert not (tmp_path / "x.tif").exists()


# --- split prediction (prepare -> block groups -> assemble), the library side of the Dask flow ------------


def test_block_groups_in_any_order_assemble_the_same_bytes(embedding, worldcover_rf, tmp_path):
    from lcmodel.predict import PredictionOptions, assemble_prediction, predict_blocks, prepare_prediction

    bundle = _bundle(embedding, worldcover_rf)
    predict_raster(bundle, embedding, tmp_path / "one" / "map.tif",
                   confidence_path=tmp_path / "one" / "conf.tif", block_size=16)
    out = tmp_path / "split" / "map.tif"
    options = PredictionOptions(confidence_path=tmp_path / "split" / "conf.tif", block_size=16)
    plan = prepare_prediction(bundle, embedding, out, options)
    assert plan.n_blocks == 12 and plan.todo == list(range(12))
    groups = plan.groups(5)
    assert groups == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    for group in reversed(groups):  # any order; each group its own part manifest
        assert predict_blocks(bundle, embedding, out, group, options) == len(group)
    assert len(list((plan.work_dir / "parts").glob("*.jsonl"))) == 3
    assert predict_blocks(bundle, embedding, out, groups[0], options) == 0  # finished blocks are skipped
    summary = assemble_prediction(bundle, embedding, out, options, n_jobs=3)
    assert _sha(out) == _sha(tmp_path / "one" / "map.tif")
    assert _sha(tmp_path / "split" / "conf.tif") == _sha(tmp_path / "one" / "conf.tif")
    assert summary.n_blocks == 12 and summary.n_jobs == 3 and not plan.work_dir.exists()


def test_split_prediction_resumes_and_names_missing_blocks(embedding, worldcover_rf, tmp_path):
    from lcmodel.predict import PredictionOptions, assemble_prediction, predict_blocks, prepare_prediction

    bundle = _bundle(embedding, worldcover_rf)
    out = tmp_path / "map.tif"
    options = PredictionOptions(block_size=16)
    with pytest.raises(PredictionError, match="call prepare_prediction"):
        predict_blocks(bundle, embedding, out, [0], options)
    plan = prepare_prediction(bundle, embedding, out, options)
    predict_blocks(bundle, embedding, out, [0, 1, 2], options)
    with pytest.raises(PredictionError, match="9 of 12 blocks .* not predicted .*block 4"):
        assemble_prediction(bundle, embedding, out, options)
    assert prepare_prediction(bundle, embedding, out, options).todo == list(range(3, 12))  # parts merged
    with pytest.raises(ConfigError, match="window index 12 is outside the plan of 12"):
        predict_blocks(bundle, embedding, out, [12], options)
    with pytest.raises(ConfigError, match="blocks_per_task=0"):
        plan.groups(0)
    predict_raster(bundle, embedding, out, block_size=16)  # the single-machine path resumes from the parts
    assert not plan.work_dir.exists()
