"""The model bundle: round trip, deterministic bytes, side file, clear errors on foreign files, compatibility."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import rasterio
from sklearn.ensemble import RandomForestClassifier

from lcmodel.classes import ClassTable
from lcmodel.compatibility import check_compatible
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import CompatibilityError, InputFileError, LcmodelWarning, ModelBundleError
from lcmodel.io import sha256_file
from lcmodel.model_format import METADATA_ENTRY, bundle_bytes
from lcmodel.model_io import (
    BUNDLE_FORMAT,
    ModelBundle,
    current_versions,
    load_bundle,
    save_bundle,
    side_file_path,
    utc_now,
)
from tests.rasters import write_raster

NAMES = ["A00", "A01", "A02"]


def _bundle(embedding: Path, *, feature_frame: bool = False, **overrides: object) -> ModelBundle:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    y = np.where(X[:, 0] > 0, 10, 80)
    rf = RandomForestClassifier(n_estimators=5, random_state=0)
    rf.fit(pd.DataFrame(X, columns=NAMES) if feature_frame else X, y)
    with rasterio.open(embedding) as src:
        fields: dict[str, object] = dict(
            estimator=rf,
            band_names=band_names(src),
            crs_wkt=src.crs.to_wkt(),
            nodata_rule=NodataRule.detect(src),
            class_table=ClassTable(code_to_value={10: 10, 80: 80}),
            config={"model": {"n_estimators": 5}},
            training_table_sha256="ab" * 32,
            versions=current_versions(),
            created=utc_now(),
            metrics={"overall_accuracy": 0.9},
        )
    fields.update(overrides)
    return ModelBundle(**fields)  # type: ignore[arg-type]


@pytest.fixture()
def embedding(tmp_path: Path) -> Path:
    data = np.ones((3, 8, 8), dtype=np.float32)
    return write_raster(tmp_path / "emb.tif", data, descriptions=NAMES, blocksize=None)


def test_round_trip_keeps_everything(tmp_path: Path, embedding: Path) -> None:
    bundle = _bundle(embedding)
    path = save_bundle(bundle, tmp_path / "model.skops")
    loaded = load_bundle(path)
    assert loaded.band_names == NAMES and loaded.n_bands == 3
    assert loaded.crs_wkt == bundle.crs_wkt
    assert loaded.nodata_rule == bundle.nodata_rule
    assert loaded.class_table == bundle.class_table
    assert loaded.config == bundle.config and loaded.metrics == bundle.metrics
    assert loaded.training_table_sha256 == "ab" * 32
    assert loaded.versions == bundle.versions and loaded.created == bundle.created  # created: from the side file
    assert loaded.format_version == BUNDLE_FORMAT == 2
    assert loaded.class_values == [10, 80]
    assert loaded.source_sha256 == bundle.source_sha256 == sha256_file(path)
    X = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        loaded.estimator.predict_proba(X), bundle.estimator.predict_proba(X)
    )
    # atomic write: nothing but the bundle and its side file in the folder
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["emb.tif", "model.skops", "model.skops.json"]
    # without the side file the bundle still loads (the side file is for people): only `created` is unknown
    side_file_path(path).unlink()
    assert load_bundle(path).created == "" and load_bundle(path).band_names == NAMES


def test_the_file_is_a_zip_of_json_and_arrays_without_a_timestamp(tmp_path: Path, embedding: Path) -> None:
    path = save_bundle(_bundle(embedding, created="2020-01-01T00:00:00+00:00"), tmp_path / "model.skops")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        meta = json.loads(z.read(METADATA_ENTRY))
        dates = {i.date_time for i in z.infolist()}
        assert all(n in ("schema.json", METADATA_ENTRY) or n.endswith(".npy") for n in names)
        for n in names:
            if n.endswith(".npy"):
                np.load(io.BytesIO(z.read(n)), allow_pickle=False)  # plain arrays: no object dtype
    assert names == sorted(names) and dates == {(1980, 1, 1, 0, 0, 0)}
    assert meta["band_names"] == NAMES and meta["format_version"] == BUNDLE_FORMAT and "created" not in meta
    assert not path.read_bytes().count(b"2020-01-01")


def test_two_fits_of_the_same_table_give_identical_bytes(tmp_path: Path, embedding: Path) -> None:
    a = save_bundle(_bundle(embedding, created="2020-01-01T00:00:00+00:00"), tmp_path / "a" / "model.skops")
    b = save_bundle(_bundle(embedding, created="2026-12-31T23:59:59+00:00"), tmp_path / "b" / "model.skops")
    assert a.read_bytes() == b.read_bytes()
    other = save_bundle(_bundle(embedding, metrics={"overall_accuracy": 0.5}), tmp_path / "c" / "model.skops")
    assert other.read_bytes() != a.read_bytes()


def test_side_file_is_readable_metadata_with_hash(tmp_path: Path, embedding: Path) -> None:
    path = save_bundle(_bundle(embedding), tmp_path / "model.skops")
    side = json.loads(side_file_path(path).read_text())
    assert side_file_path(path).name == "model.skops.json"
    assert side["sha256"] == sha256_file(path)
    assert side["file"] == "model.skops"
    assert side["format_version"] == BUNDLE_FORMAT
    assert side["band_names"] == NAMES
    assert side["nodata_rule"] == {
        "dtype": "float32",
        "nodata": None,
        "zero_vector": True,
        "dequantize": "none",
    }
    assert ClassTable.from_dict(side["class_table"]) == ClassTable(code_to_value={10: 10, 80: 80})
    assert side["estimator"]["class"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert side["estimator"]["classes"] == [10, 80]
    assert side["estimator"]["params"]["n_estimators"] == 5
    assert set(side["versions"]) >= {"lcmodel", "sklearn", "numpy", "rasterio", "python"}
    assert side["metrics"] == {"overall_accuracy": 0.9}
    assert side["created"]


def test_a_pickle_is_refused_unless_trusted(tmp_path: Path, embedding: Path) -> None:
    bundle = _bundle(embedding)
    old = tmp_path / "model.joblib"  # what lcmodel wrote before bundle format 2
    joblib.dump({"lcmodel_bundle": 1, "estimator": bundle.estimator, "metadata": bundle.metadata()}, old,
                compress=3)
    with pytest.raises(ModelBundleError, match=r"is a pickle written by an older lcmodel \(loading it would run "
                       r"code from the file\); retrain with `lcmodel train`, or pass --trust-model"):
        load_bundle(old)
    assert load_bundle(old, trust=True).band_names == NAMES  # once, as a pickle, by explicit trust
    path = tmp_path / "best_model.pkl"  # what the notebook saved
    joblib.dump(bundle.estimator, path)
    with pytest.raises(ModelBundleError, match=r"is a pickle written by an older lcmodel"):
        load_bundle(path)
    with pytest.raises(ModelBundleError, match=r"is not an lcmodel model bundle \(got RandomForestClassifier\); "
                       r"retrain with `lcmodel train`"):
        load_bundle(path, trust=True)


def test_not_a_bundle_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "model.skops"
    text.write_text("hello, not a bundle\n")
    with pytest.raises(ModelBundleError, match=r"is not a readable bundle file \(BadZipFile"):
        load_bundle(text)
    with zipfile.ZipFile(text, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(ModelBundleError, match=r"^'.*model.skops' is a zip but not an lcmodel model bundle \(no "
                       r"lcmodel.json and schema.json\); give a model.skops written by `lcmodel train`$"):
        load_bundle(text)
    with pytest.raises(InputFileError, match=r"does not exist; check the path"):
        load_bundle(tmp_path / "nope.skops")


def test_a_recorded_digest_is_checked_before_loading(tmp_path: Path, embedding: Path) -> None:
    path = save_bundle(_bundle(embedding), tmp_path / "model.skops")
    assert load_bundle(path, expected_sha256=sha256_file(path)).band_names == NAMES
    with pytest.raises(ModelBundleError, match=r"has SHA-256 [0-9a-f]{64}, but 0{64} was recorded when it was "
                       r"trained: the file was replaced"):
        load_bundle(path, expected_sha256="0" * 64)


def test_other_format_version_names_both_versions(tmp_path: Path, embedding: Path) -> None:
    bundle = _bundle(embedding)
    path = tmp_path / "model.skops"
    path.write_bytes(bundle_bytes(bundle.estimator, dict(bundle.metadata(), format_version=99)))
    expected = rf"format version 99, this lcmodel reads version {BUNDLE_FORMAT}; retrain"
    with pytest.raises(ModelBundleError, match=expected):
        load_bundle(path)


def test_other_sklearn_version_warns(tmp_path: Path, embedding: Path) -> None:
    versions = dict(current_versions(), sklearn="0.0.1")
    path = save_bundle(_bundle(embedding, versions=versions), tmp_path / "model.skops")
    with pytest.warns(LcmodelWarning, match=r"trained with scikit-learn 0\.0\.1, this is"):
        load_bundle(path)


def test_inconsistent_bundles_are_not_saved(tmp_path: Path, embedding: Path) -> None:
    with pytest.raises(ModelBundleError, match=r"expects 3 features but band_names lists 2"):
        save_bundle(_bundle(embedding, band_names=["A00", "A01"]), tmp_path / "m.skops")
    with pytest.raises(ModelBundleError, match=r"fitted on columns .* but band_names"):
        bundle = _bundle(embedding, feature_frame=True, band_names=["x", "y", "z"])
        save_bundle(bundle, tmp_path / "m.skops")
    with pytest.raises(ModelBundleError, match=r"not a fitted classifier"):
        save_bundle(_bundle(embedding, estimator=RandomForestClassifier()), tmp_path / "m.skops")
    assert not (tmp_path / "m.skops").exists()


def test_check_compatible_accepts_the_training_raster(embedding: Path) -> None:
    bundle = _bundle(embedding)
    with rasterio.open(embedding) as src:
        assert check_compatible(bundle, src) == bundle.nodata_rule


def test_check_compatible_band_count(tmp_path: Path, embedding: Path) -> None:
    other = write_raster(tmp_path / "four.tif", np.ones((4, 8, 8), np.float32))
    with rasterio.open(other) as src, pytest.raises(
        CompatibilityError, match=r"has 4 bands, the model was trained on 3; predict with"
    ):
        check_compatible(_bundle(embedding), src)


def test_check_compatible_band_names_and_order(tmp_path: Path, embedding: Path) -> None:
    bundle = _bundle(embedding)
    ones = np.ones((3, 8, 8), np.float32)
    swapped = write_raster(tmp_path / "s.tif", ones, descriptions=["A01", "A00", "A02"])
    with rasterio.open(swapped) as src, pytest.raises(
        CompatibilityError, match=r"another order \(band 1 is 'A01', the model expects 'A00'\)"
    ):
        check_compatible(bundle, src)
    renamed = write_raster(tmp_path / "r.tif", ones, descriptions=["B0", "B1", "A02"])
    with rasterio.open(renamed) as src, pytest.raises(
        CompatibilityError, match=r"band names differ .*'A00', 'A01'"
    ):
        check_compatible(bundle, src)
    generic = write_raster(tmp_path / "g.tif", ones)  # band_1..band_3: names not checked
    with rasterio.open(generic) as src:
        check_compatible(bundle, src)


def test_check_compatible_crs(tmp_path: Path, embedding: Path) -> None:
    bundle = _bundle(embedding)
    ones = np.ones((3, 8, 8), np.float32)
    other = write_raster(tmp_path / "c.tif", ones, crs="EPSG:32721", descriptions=NAMES)
    with rasterio.open(other) as src, pytest.raises(
        CompatibilityError, match=r"is in EPSG:32721, the model was trained on EPSG:32720; repro"
    ):
        check_compatible(bundle, src)
    none = write_raster(tmp_path / "n.tif", ones, crs=None, descriptions=NAMES)
    with rasterio.open(none) as src, pytest.raises(CompatibilityError, match=r"has no CRS"):
        check_compatible(bundle, src)


def test_check_compatible_nodata_rule(tmp_path: Path, embedding: Path) -> None:
    int8 = write_raster(tmp_path / "q.tif", np.ones((3, 8, 8), np.int8), descriptions=NAMES)
    with rasterio.open(int8) as src, pytest.raises(
        CompatibilityError, match=r"is int8, nodata: value -128; de-quantized.*trained on float32"
    ):
        check_compatible(_bundle(embedding), src)
