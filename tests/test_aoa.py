"""The area of applicability (lcmodel.aoa): DI against a brute-force reference, CAST's threshold, the planted
unfamiliar region, block-wise = whole raster (also south-up), determinism, and one run through `lcmodel run`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sklearn.ensemble import RandomForestClassifier

from lcmodel.aoa import (
    AOA_NODATA,
    DI_NODATA,
    fit_training_di,
    mean_pairwise_distance,
    nearest_distances,
    upper_whisker,
)
from lcmodel.aoa.raster import write_aoa_rasters
from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import InputDataError
from lcmodel.model_io import ModelBundle, current_versions, utc_now
from lcmodel.predict import predict_raster
from tests.rasters import origin_transform, write_raster

BANDS = 8
SIZE = 64


# --- the DI against numpy brute force ---------------------------------------------------------------------
def _reference(x: np.ndarray, folds: np.ndarray, w: np.ndarray, queries: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
    """CAST's trainDI and aoa DI, by brute force: every pairwise distance as a full numpy matrix."""
    mean, sd = x.mean(0), x.std(0, ddof=1)
    z = (x - mean) / sd * w
    zq = (queries - mean) / sd * w
    d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    mean_distance = float(np.mean(d.sum(1) / (len(x) - 1)))
    other = np.where(folds[:, None] == folds[None, :], np.inf, d)
    dq = np.sqrt(((zq[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    return mean_distance, other.min(1) / mean_distance, dq.min(1) / mean_distance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_di_equals_a_brute_force_reference_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(240, 12)) * rng.uniform(0.5, 3, 12) + rng.normal(size=12)
    folds = rng.integers(0, 5, size=240)
    w = rng.uniform(0, 1, 12)
    w[3] = 0.0
    queries = np.vstack([rng.normal(size=(300, 12)) * 2, x[:20]])  # also the training samples themselves
    fit = fit_training_di(x, folds, w, [f"b{i}" for i in range(12)])
    mean_distance, train_di, query_di = _reference(x, folds, w, queries)
    assert fit.mean_distance == mean_distance
    np.testing.assert_array_equal(fit.train_di, train_di)
    np.testing.assert_array_equal(fit.di(queries), query_di)
    assert (fit.di(x[:20]) == 0).all()
    assert fit.threshold == upper_whisker(train_di)


def test_nearest_distances_many_near_ties_and_blocks() -> None:
    """Training rows on a lattice (many equal distances) and more queries than one block of scores."""
    rng = np.random.default_rng(3)
    train = np.stack(np.meshgrid(*[np.arange(4.0)] * 3), -1).reshape(-1, 3)
    queries = rng.integers(0, 8, size=(5000, 3)) / 2.0
    ref = np.sqrt(((queries[:, None, :] - train[None, :, :]) ** 2).sum(-1)).min(1)
    np.testing.assert_array_equal(nearest_distances(queries, train), ref)
    assert mean_pairwise_distance(train) > 0


def test_threshold_is_rs_boxplot_upper_whisker() -> None:
    # fivenum(c(1:10, 100)) hinges 3.5 and 8.5: fence 16, so the whisker is 10 (R: boxplot.stats(...)$stats[5])
    assert upper_whisker(np.r_[np.arange(1.0, 11.0), 100.0]) == 10.0
    # no outlier: the maximum; even n uses Tukey's hinges (fivenum(1:4) = 1, 1.5, 2.5, 3.5, 4)
    assert upper_whisker(np.array([1.0, 2.0, 3.0, 4.0])) == 4.0
    assert upper_whisker(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 30.0])) == 8.0


def test_bad_training_data_is_refused_with_one_line() -> None:
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(InputDataError, match="at least 2 CV folds"):
        fit_training_di(x, np.zeros(10), np.ones(3), ["a", "b", "c"])
    with pytest.raises(InputDataError, match="3 training bands but 2 importances"):
        fit_training_di(x, np.arange(10) % 2, np.ones(2), ["a", "b", "c"])
    with pytest.raises(InputDataError, match="at least 2 training samples"):
        fit_training_di(x[:1], np.zeros(1), np.ones(3), ["a", "b", "c"])


# --- rasters: the planted unfamiliar region ---------------------------------------------------------------
def _planted(folder: Path, *, south_up: bool = False) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 64 x 64 x 8 float32 embedding: 4 land-cover 'centres' with small noise in a striped pattern, and the
    bottom-right 16 x 16 quadrant from a distribution no training sample comes from. Returns the path, the
    north-up array and the unfamiliar mask (north-up)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(4, BANDS)) * 3
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    cls = (rows // 8 + cols // 8) % 4
    data = centres[cls] + rng.normal(scale=0.05, size=(SIZE, SIZE, BANDS))
    unfamiliar = (rows >= 48) & (cols >= 48)
    data[unfamiliar] = 12.0 + rng.normal(scale=0.05, size=(int(unfamiliar.sum()), BANDS))
    arr = np.ascontiguousarray(data.transpose(2, 0, 1).astype(np.float32))
    arr[:, 0, 0] = 0.0  # one nodata pixel (all-zero vector)
    folder.mkdir(parents=True, exist_ok=True)
    if south_up:
        t = origin_transform(500000.0, 8000000.0 - 10.0 * SIZE, 10.0, -10.0)
        path = write_raster(folder / "embedding.tif", arr[:, ::-1, :].copy(), transform=t)
    else:
        path = write_raster(folder / "embedding.tif", arr)
    return path, arr, unfamiliar


def _training(arr: np.ndarray, unfamiliar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """400 samples of familiar pixels (never the unfamiliar quadrant), labels, spatial folds by row band."""
    rng = np.random.default_rng(11)
    rows, cols = np.nonzero(~unfamiliar & arr.any(axis=0))
    pick = rng.choice(rows.size, 400, replace=False)
    r, c = rows[pick], cols[pick]
    x = arr[:, r, c].T.astype(np.float32)
    y = ((r // 8 + c // 8) % 4 + 1).astype(np.int64)
    return x, y, r // 16


def _bundle(embedding: Path, x: np.ndarray, y: np.ndarray) -> ModelBundle:
    est = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    with rasterio.open(embedding) as src:
        return ModelBundle(
            estimator=est, band_names=band_names(src), crs_wkt=src.crs.to_wkt(), nodata_rule=NodataRule.detect(src),
            class_table=ClassTable({v: v for v in est.classes_.tolist()}), config={}, training_table_sha256=None,
            versions=current_versions(), created=utc_now(),
        )


def _aoa(folder: Path, *, block_size: int | None, south_up: bool = False) -> dict[str, object]:
    embedding, arr, unfamiliar = _planted(folder / "data", south_up=south_up)
    x, y, folds = _training(arr, unfamiliar)
    bundle = _bundle(embedding, x, y)
    fit = fit_training_di(x, folds, bundle.estimator.feature_importances_, bundle.band_names)
    predict_raster(bundle, embedding, folder / "map.tif", block_size=16)
    counts = write_aoa_rasters(fit, bundle, embedding, folder / "map.tif", folder / "di.tif", folder / "aoa.tif",
                               block_size=block_size)
    out: dict[str, object] = {"fit": fit, "x": x, "arr": arr, "unfamiliar": unfamiliar, "counts": counts}
    for name in ("map", "di", "aoa"):
        with rasterio.open(folder / f"{name}.tif") as src:
            out[name] = src.read(1)
            assert src.transform == origin_transform(500000.0, 8000000.0, 10.0)  # north-up, as the map
    return out


def test_planted_unfamiliar_region_is_outside_and_the_rest_inside(tmp_path: Path) -> None:
    out = _aoa(tmp_path, block_size=16)
    aoa, di, unfamiliar, fit, arr = out["aoa"], out["di"], out["unfamiliar"], out["fit"], out["arr"]
    assert isinstance(aoa, np.ndarray) and isinstance(di, np.ndarray) and isinstance(unfamiliar, np.ndarray)
    assert isinstance(arr, np.ndarray) and isinstance(out["map"], np.ndarray) and isinstance(out["x"], np.ndarray)
    assert aoa[0, 0] == AOA_NODATA and di[0, 0] == DI_NODATA  # the nodata pixel
    valid = np.ones_like(unfamiliar)
    valid[0, 0] = False
    familiar = ~unfamiliar & valid
    assert (aoa[unfamiliar] == 0).all() and di[unfamiliar].min() > 50 * fit.threshold  # type: ignore[attr-defined]
    # the rest is inside, but for the tail the whisker trims: familiar pixels just above the threshold (as in
    # the training samples' own CV DI, of which a few are above it too)
    assert (aoa[familiar] == 1).mean() > 0.95 and di[familiar].max() < 2 * fit.threshold  # type: ignore[attr-defined]
    assert (fit.train_di > fit.threshold).any()  # type: ignore[attr-defined]
    # the raster's DI is the brute-force DI of its pixels (float32 in the file)
    features = arr.reshape(BANDS, -1).T[valid.ravel()].astype(np.float64)
    _, _, query_di = _reference(out["x"].astype(np.float64), fit.folds, fit.weights, features)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(di[valid], query_di.astype(np.float32))
    counts = out["counts"]
    labels = out["map"]
    assert counts.n_pixels == SIZE * SIZE - 1 and counts.n_outside == int((aoa == 0).sum())  # type: ignore[attr-defined]
    assert counts.outside == {int(v): int(((labels == v) & (aoa == 0)).sum())  # type: ignore[attr-defined,operator]
                              for v in np.unique(labels[aoa == 0])}  # type: ignore[index]


@pytest.mark.parametrize("south_up", [False, True])
def test_block_wise_equals_whole_raster_and_reruns_are_identical(tmp_path: Path, south_up: bool) -> None:
    blocks = _aoa(tmp_path / "blocks", block_size=16, south_up=south_up)
    whole = _aoa(tmp_path / "whole", block_size=SIZE, south_up=south_up)
    _aoa(tmp_path / "again", block_size=16, south_up=south_up)
    reference = _aoa(tmp_path / "north", block_size=32)
    for name in ("di", "aoa"):
        np.testing.assert_array_equal(blocks[name], whole[name])  # type: ignore[arg-type]
        np.testing.assert_array_equal(blocks[name], reference[name])  # type: ignore[arg-type]  # south-up: same pixels
        digest = [hashlib.sha256((tmp_path / f / f"{name}.tif").read_bytes()).hexdigest() for f in ("blocks", "again")]
        assert digest[0] == digest[1]


# --- end to end: `lcmodel run` ------------------------------------------------------------------------------
def test_lcmodel_run_writes_di_and_aoa_and_reports_the_shares(prefect_harness: None, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    import yaml
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from flows.cli import cli
    from tests.rasters import tiny_demo_config

    cfg_path = tiny_demo_config(tmp_path / "data", stages=[{"max_features": ["sqrt"], "n_estimators": [20]}])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = cfg_path.parent / yaml.safe_load(cfg_path.read_text())["output"]["dir"]

    with rasterio.open(out / "map.tif") as m, rasterio.open(out / "di.tif") as d, rasterio.open(out / "aoa.tif") as a:
        assert (d.transform, a.transform, d.shape, a.shape) == (m.transform, m.transform, m.shape, m.shape)
        labels, di, aoa = m.read(1), d.read(1), a.read(1)
        assert d.dtypes[0] == "float32" and a.dtypes[0] == "uint8" and a.nodata == AOA_NODATA
        assert d.overviews(1) and a.overviews(1)  # COGs like the map
        threshold = float(a.tags()["LCMODEL_AOA_THRESHOLD"])
    valid = labels != m.nodata
    np.testing.assert_array_equal(aoa != AOA_NODATA, valid)
    np.testing.assert_array_equal(aoa[valid] == 1, di[valid] <= np.float32(threshold))
    summary = json.loads((out / "aoa.json").read_text())
    assert summary["computed"] and summary["threshold"] == threshold
    assert summary["n_pixels"] == int(valid.sum()) and summary["n_outside"] == int((aoa == 0).sum())
    for value, c in summary["per_class"].items():
        in_class = labels == int(value)
        assert c["pixels"] == int(in_class.sum()) and c["outside"] == int((aoa[in_class] == 0).sum())
    acc = summary["test_accuracy"]
    n_test = json.loads((out / "metrics.json").read_text())["test"]["n_test"]
    assert acc["inside"]["n_test_points"] + acc["outside"]["n_test_points"] == n_test

    report = (out / "report.md").read_text()
    assert "## Area of applicability (Meyer & Pebesma 2021)" in report
    assert f"of the map** ({summary['n_outside']} of {summary['n_pixels']} pixels)" in report
    assert "| test points | n | overall accuracy |" in report

    client = MlflowClient(tracking_uri=uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.data.tags.get("lcmodel.kind") == "training"]
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert metrics["aoa_outside_fraction"] == pytest.approx(summary["outside_fraction"])
    assert all(f"aoa_outside_fraction_class_{v}" in metrics for v in summary["per_class"])
    assert "aoa.json" in {a.path.split("/")[-1] for a in client.list_artifacts(runs[0].info.run_id, "aoa")}
