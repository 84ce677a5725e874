"""The model bundle: round trip, side file, clear errors on foreign files, compatibility checks."""

from __future__ import annotations

import json
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
    path = save_bundle(bundle, tmp_path / "model.joblib")
    loaded = load_bundle(path)
    assert loaded.band_names == NAMES and loaded.n_bands == 3
    assert loaded.crs_wkt == bundle.crs_wkt
    assert loaded.nodata_rule == bundle.nodata_rule
    assert loaded.class_table == bundle.class_table
    assert loaded.config == bundle.config and loaded.metrics == bundle.metrics
    assert loaded.training_table_sha256 == "ab" * 32
    assert loaded.versions == bundle.versions and loaded.created == bundle.created
    assert loaded.format_version == BUNDLE_FORMAT
    assert loaded.class_values == [10, 80]
    X = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        loaded.estimator.predict_proba(X), bundle.estimator.predict_proba(X)
    )
    # atomic write: nothing but the bundle and its side file in the folder
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["emb.tif", "model.joblib", "model.joblib.json"]


def test_side_file_is_readable_metadata_with_hash(tmp_path: Path, embedding: Path) -> None:
    path = save_bundle(_bundle(embedding), tmp_path / "model.joblib")
    side = json.loads(side_file_path(path).read_text())
    assert side_file_path(path).name == "model.joblib.json"
    assert side["sha256"] == sha256_file(path)
    assert side["file"] == "model.joblib"
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


def test_bare_estimator_pickle_is_refused_with_the_fix(tmp_path: Path, embedding: Path) -> None:
    path = tmp_path / "best_model.pkl"  # what the notebook saved
    joblib.dump(_bundle(embedding).estimator, path)
    with pytest.raises(
        ModelBundleError,
        match=r"is not an lcmodel model bundle \(got RandomForestClassifier\); "
        r"retrain with `lcmodel train`",
    ):
        load_bundle(path, trust=True)  # no side file: trusted explicitly, then the format check refuses


def test_not_a_pickle_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "model.joblib"
    text.write_text("hello, not a pickle\n")
    with pytest.raises(ModelBundleError, match=r"is not a readable joblib/pickle file"):
        load_bundle(text, trust=True)
    with pytest.raises(InputFileError, match=r"does not exist; check the path"):
        load_bundle(tmp_path / "nope.joblib")


def test_other_format_version_names_both_versions(tmp_path: Path, embedding: Path) -> None:
    path = save_bundle(_bundle(embedding), tmp_path / "model.joblib")
    payload = joblib.load(path)
    payload["lcmodel_bundle"] = 99
    joblib.dump(payload, path)
    expected = rf"format version 99, this lcmodel reads version {BUNDLE_FORMAT}; retrain"
    with pytest.raises(ModelBundleError, match=expected):
        load_bundle(path, trust=True)  # rewritten after training: its hash no longer matches


def test_other_sklearn_version_warns(tmp_path: Path, embedding: Path) -> None:
    versions = dict(current_versions(), sklearn="0.0.1")
    path = save_bundle(_bundle(embedding, versions=versions), tmp_path / "model.joblib")
    with pytest.warns(LcmodelWarning, match=r"trained with scikit-learn 0\.0\.1, this is"):
        load_bundle(path)


def test_inconsistent_bundles_are_not_saved(tmp_path: Path, embedding: Path) -> None:
    with pytest.raises(ModelBundleError, match=r"expects 3 features but band_names lists 2"):
        save_bundle(_bundle(embedding, band_names=["A00", "A01"]), tmp_path / "m.joblib")
    with pytest.raises(ModelBundleError, match=r"fitted on columns .* but band_names"):
        bundle = _bundle(embedding, feature_frame=True, band_names=["x", "y", "z"])
        save_bundle(bundle, tmp_path / "m.joblib")
    with pytest.raises(ModelBundleError, match=r"not a fitted classifier"):
        save_bundle(_bundle(embedding, estimator=RandomForestClassifier()), tmp_path / "m.joblib")
    assert not (tmp_path / "m.joblib").exists()


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
