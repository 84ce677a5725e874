"""Uncertainty products of predict_raster: probabilities, margin, entropy, and the unclassified value."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio

from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule
from lcmodel.errors import ConfigError
from lcmodel.predict import predict_raster
from tests.rasters import write_raster
from tests.test_predict import _bundle, _embedding_data, _fit


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("unc")
    emb = write_raster(root / "emb.tif", _embedding_data(), blocksize=16)
    est = _fit([1, 2, 3, 4, 5])
    table = ClassTable(
        {v: v for v in [1, 2, 3, 4, 5]}, names={v: f"class {v}" for v in [1, 2, 3, 4, 5]}
    )
    bundle = _bundle(emb, est, table)
    paths = {k: root / f"{k}.tif" for k in ("map", "probabilities", "margin", "entropy")}
    summary = predict_raster(
        bundle,
        emb,
        paths["map"],
        probabilities_path=paths["probabilities"],
        margin_path=paths["margin"],
        entropy_path=paths["entropy"],
        block_size=16,
        n_jobs=2,
        unclassified_below=60,
    )
    with rasterio.open(emb) as src:
        mask, feats = NodataRule.detect(src).block_features(src.read())
    return {
        "paths": paths,
        "summary": summary,
        "mask": mask,
        "proba": est.predict_proba(feats),
        "est": est,
    }


def test_probabilities_sum_to_100_within_rounding(case: dict) -> None:
    with rasterio.open(case["paths"]["probabilities"]) as src:
        assert src.count == 5 and src.dtypes[0] == "uint8" and src.nodata == 255
        assert list(src.descriptions) == [f"class {v}" for v in range(1, 6)]
        data = src.read().astype(int)
    mask = case["mask"]
    total = data[:, mask].sum(axis=0)
    assert np.all(np.abs(total - 100) <= math.ceil(5 / 2))
    assert np.all(data[:, ~mask] == 255)
    np.testing.assert_array_equal(data[:, mask].T, np.floor(case["proba"] * 100 + 0.5).astype(int))


def test_margin_and_entropy_ranges(case: dict) -> None:
    mask, proba = case["mask"], case["proba"]
    with rasterio.open(case["paths"]["margin"]) as src:
        margin = src.read(1)
    with rasterio.open(case["paths"]["entropy"]) as src:
        entropy = src.read(1)
    for arr in (margin, entropy):
        assert arr[mask].max() <= 100 and np.all(arr[~mask] == 255)
    top2 = np.sort(proba, axis=1)[:, -2:]
    np.testing.assert_array_equal(margin[mask], np.floor((top2[:, 1] - top2[:, 0]) * 100 + 0.5))
    certain = proba.max(axis=1) == 1.0
    assert np.all(entropy[mask][certain] == 0)
    assert np.all(margin[mask][certain] == 100)


def test_unclassified_value_below_threshold(case: dict) -> None:
    summary = case["summary"]
    value = summary.unclassified_value
    assert value == 255  # uint8 map, nodata 0
    with rasterio.open(case["paths"]["map"]) as src:
        labels = src.read(1)
        assert src.tags()[f"CLASS_{value}"] == "unclassified"
    mask, proba = case["mask"], case["proba"]
    low = proba.max(axis=1) * 100 < 60
    assert low.any() and (~low).any()
    assert np.all(labels[mask][low] == value)
    np.testing.assert_array_equal(
        labels[mask][~low], case["est"].classes_[np.argmax(proba[~low], axis=1)]
    )
    assert summary.n_unclassified == int(low.sum())
    assert sum(summary.class_counts.values()) + summary.n_unclassified == summary.n_valid


def test_unclassified_value_must_be_free(tmp_path: Path) -> None:
    emb = write_raster(tmp_path / "emb.tif", _embedding_data(), blocksize=16)
    est = _fit([1, 2, 3])
    with pytest.raises(ConfigError, match="unclassified_value=2 is a class value"):
        predict_raster(
            _bundle(emb, est), emb, tmp_path / "m.tif", unclassified_below=50, unclassified_value=2
        )
    with pytest.raises(ConfigError, match="not a percentage"):
        predict_raster(_bundle(emb, est), emb, tmp_path / "m.tif", unclassified_below=150)


def test_the_writers_write_like_the_prediction(case: dict, tmp_path: Path) -> None:
    from lcmodel.predict.cog import ExtraOutputs, mark_unclassified, output_profile

    with rasterio.open(case["paths"]["probabilities"]) as src:
        probabilities = src.read()
        profile = output_profile(src, rasterio.windows.Window(0, 0, src.width, src.height))
        table = ClassTable({v: v for v in range(1, 6)}, names={v: f"class {v}" for v in range(1, 6)})
    window = rasterio.windows.Window(0, 0, profile["width"], profile["height"])
    with ExtraOutputs({"probabilities": tmp_path / "p.tif"}, tmp_path, profile, np.arange(1, 6), table) as extras:
        extras.write(window, {"probabilities": probabilities, "n_unclassified": np.asarray(7)})
    extras.build_overviews([2])
    assert extras.n_unclassified == 7 and list(extras.files()) == [(tmp_path / "probabilities.tif", tmp_path / "p.tif")]
    with rasterio.open(tmp_path / "probabilities.tif") as src:
        assert list(src.descriptions) == [f"class {v}" for v in range(1, 6)] and src.nodata == 255
        np.testing.assert_array_equal(src.read(), probabilities)

    labels = tmp_path / "labels.tif"
    with rasterio.open(labels, "w", **{**profile, "count": 1, "dtype": "uint8", "nodata": 0}) as dst:
        dst.write(np.ones((profile["height"], profile["width"]), np.uint8), 1)
        dst.write_colormap(1, {1: (10, 20, 30, 255), 0: (0, 0, 0, 0)})
    mark_unclassified(labels, 200)
    with rasterio.open(labels) as src:
        assert src.tags()["CLASS_200"] == "unclassified" and src.tags()["LCMODEL_UNCLASSIFIED"] == "200"
        assert src.colormap(1)[200] == (0, 0, 0, 255) and src.colormap(1)[1] == (10, 20, 30, 255)
