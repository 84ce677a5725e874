"""Scale-out: block groups on a local Dask cluster, assembled into the same bytes as predict_raster.

Marked ``dask``; skipped when prefect-dask / dask.distributed are not installed (``pip install -e '.[dask]'``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sklearn.ensemble import RandomForestClassifier

from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule, band_names
from lcmodel.model_io import ModelBundle, current_versions, save_bundle, utc_now
from lcmodel.predict import PredictionOptions, assemble_prediction, predict_blocks, predict_raster, prepare_prediction
from tests.rasters import write_raster

distributed = pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")

pytestmark = pytest.mark.dask


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path, ModelBundle]:
    root = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(3)
    data = rng.normal(size=(4, 64, 80)).astype(np.float32)
    data[:, :5, :7] = 0.0  # nodata corner
    emb = write_raster(root / "emb.tif", data, blocksize=16)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5]) + 1
    est = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    with rasterio.open(emb) as src:
        bundle = ModelBundle(estimator=est, band_names=band_names(src), crs_wkt=src.crs.to_wkt(),
                             nodata_rule=NodataRule.detect(src), class_table=ClassTable({1: 1, 2: 2, 3: 3}),
                             config={}, training_table_sha256=None, versions=current_versions(), created=utc_now())
    bundle_path = root / "model.skops"
    save_bundle(bundle, bundle_path)
    predict_raster(bundle, emb, root / "ref" / "map.tif", confidence_path=root / "ref" / "conf.tif", block_size=16)
    return emb, bundle_path, bundle


def test_block_groups_on_a_dask_cluster_match_predict_raster(cluster, inputs, tmp_path):
    emb, _, bundle = inputs
    out = tmp_path / "map.tif"
    options = PredictionOptions(confidence_path=tmp_path / "conf.tif", block_size=16)
    plan = prepare_prediction(bundle, emb, out, options)
    with distributed.Client(cluster) as client:
        futures = client.map(predict_blocks, [bundle] * 4, [emb] * 4, [out] * 4, plan.groups(6), [options] * 4,
                             pure=False)
        assert sum(client.gather(futures)) == plan.n_blocks == 20
    assemble_prediction(bundle, emb, out, options, n_jobs=2)
    assert _sha(out) == _sha(emb.parent / "ref" / "map.tif")
    assert _sha(tmp_path / "conf.tif") == _sha(emb.parent / "ref" / "conf.tif")


def test_predict_flow_with_dask_task_runner(cluster, inputs, tmp_path, monkeypatch):
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows.predict import landcover_predict

    emb, bundle_path, _ = inputs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.sqlite'}")
    with prefect_test_harness(server_startup_timeout=120), temporary_settings(
        {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    ):
        result = landcover_predict(str(bundle_path), str(emb), str(tmp_path / "map.tif"),
                                   confidence=str(tmp_path / "conf.tif"), block_size=16, task_runner="dask",
                                   dask_address=cluster.scheduler_address, blocks_per_task=8)
    assert result["n_blocks"] == 20 and result["n_jobs"] == 3
    assert _sha(tmp_path / "map.tif") == _sha(emb.parent / "ref" / "map.tif")
    assert _sha(tmp_path / "conf.tif") == _sha(emb.parent / "ref" / "conf.tif")


@pytest.mark.slow  # ~30 s (a Prefect harness of its own); CI runs it (.ci/run: make test-slow)
def test_landcover_flow_predicts_on_dask_under_the_same_key(cluster, tmp_path, monkeypatch):
    """prediction.task_runner is the flow's choice, not a stage setting: the Dask map is the plain map, byte for
    byte, and a rerun on threads reuses it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from flows.config import load_flow_config
    from flows.landcover import landcover
    from lcmodel import pipeline
    from tests.rasters import tiny_demo_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.sqlite'}")
    cfg = load_flow_config(tiny_demo_config(tmp_path / "data", stages=[{"max_features": ["sqrt"], "n_estimators": [8]}],
                                            prediction={"task_runner": "dask", "block_size": 32,
                                                        "dask_address": cluster.scheduler_address,
                                                        "blocks_per_task": 3}))
    plain = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": tmp_path / "plain"})})
    pipeline.run(plain)
    with prefect_test_harness(server_startup_timeout=120), temporary_settings(
        {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    ):
        first = landcover(cfg)
        threads = cfg.model_copy(update={"prediction": cfg.prediction.model_copy(update={"task_runner": "threads"})})
        again = landcover(threads)
    assert "predict_map" in first["executed"] and again["executed"] == []
    root = Path(cfg.output.dir)
    for name in ("map.tif", "confidence.tif"):
        assert _sha(root / name) == _sha(tmp_path / "plain" / name)
