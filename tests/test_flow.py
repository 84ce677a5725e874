"""The landcover flow under a Prefect test harness, tracked in a throwaway SQLite MLflow store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from flows.config import load_flow_config as load_config  # noqa: E402
from lcmodel.errors import InputDataError  # noqa: E402
from tests.rasters import tiny_demo_config  # noqa: E402

STAGE_OUTPUTS = ["reference_points.csv", "points_labelled.csv", "samples.csv", "training_table.csv",
                 "best_params.json", "metrics.json", "model.skops", "map.tif"]


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory, prefect_harness):
    root = tmp_path_factory.mktemp("flowdemo")
    from flows.cli import DEMO_TRACKING

    cfg = load_config(tiny_demo_config(root / "data", tracking=DEMO_TRACKING))
    uri = f"sqlite:///{root / 'mlflow.sqlite'}"
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": uri})})
    return cfg


@pytest.fixture(scope="module")
def first_run(demo_config):
    from flows.landcover import landcover

    result = landcover(demo_config)
    return demo_config, result


def test_flow_tracks_everything(first_run):
    import mlflow
    from mlflow import MlflowClient

    cfg, result = first_run
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    # flattened config, inputs and versions as params
    assert run.data.params["sampling.n_sample"] == "500"
    assert run.data.params["input.embedding.name"] == "embedding.tif"
    assert len(run.data.params["input.embedding.sha256"]) == 64
    assert "version.scikit-learn" in run.data.params
    assert "prefect.flow_run_id" in run.data.tags
    # test metrics
    for key in ("test_overall_accuracy", "test_macro_f1", "test_kappa", "cv_macro_f1", "predict_px_per_s"):
        assert key in run.data.metrics, key
    assert 0.0 <= run.data.metrics["test_overall_accuracy"] <= 1.0
    # one nested run per candidate (stage 1: 2x2, stage 2: 2x2)
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == 8
    assert all("cv_mean_score" in c.data.metrics and "cv_std_score" in c.data.metrics for c in children)
    # artifacts
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    for expected in ("metrics.json", "report.md", "confusion_matrix.png", "feature_importances.csv",
                     "feature_importances.png", "training_table.csv", "map_quicklook.png", "inputs.json",
                     "tuning", "bundle"):
        assert expected in names, (expected, names)
    # the registered model (a pyfunc), alias "candidate", predicts what the bundle predicts
    from lcmodel.dataset import feature_columns, read_training_table
    from lcmodel.model_io import load_bundle

    version = client.get_model_version_by_alias(cfg.tracking.register_as, "candidate")
    model = mlflow.pyfunc.load_model(f"models:/{cfg.tracking.register_as}@candidate")
    bundle = load_bundle(result["bundle"])
    table = read_training_table(Path(cfg.output.dir) / "training_table.csv")
    X = table[feature_columns(table)].astype(np.float64)
    np.testing.assert_array_equal(model.predict(X)["class"].to_numpy(),
                                  bundle.estimator.predict(X.astype(np.float32)))
    assert version.run_id == run.info.run_id
    # the bundle's hash, recorded at training, is a param of the run
    from lcmodel.io import sha256_file

    assert run.data.params["bundle.sha256"] == sha256_file(result["bundle"])
    assert run.data.tags["lcmodel.kind"] == "training"
    assert run.data.tags["lcmodel.training_table_sha256"] == bundle.training_table_sha256
    assert run.data.tags["lcmodel.promotion"].startswith("promoted: no champion before")  # demo config


def test_flow_outputs_map(first_run):
    cfg, result = first_run
    with rasterio.open(result["map"]) as src:
        data = src.read(1)
        assert src.nodata is not None
        assert src.colormap(1)
    assert set(np.unique(data)) - {src.nodata} <= {1, 2, 3, 4, 5, 6, 7}
    metrics = json.loads(Path(result["metrics"]).read_text())
    assert metrics["test"]["overall_accuracy"] > 0.5


def test_rerun_hits_the_caches(first_run):
    from flows.landcover import landcover

    cfg, first = first_run
    root = Path(cfg.output.dir)
    before = {name: os.stat(root / name).st_mtime_ns for name in STAGE_OUTPUTS}
    again = landcover(cfg)
    after = {name: os.stat(root / name).st_mtime_ns for name in STAGE_OUTPUTS}
    assert before == after  # no stage wrote its output again
    assert again["mlflow_run_id"] != first["mlflow_run_id"]
    assert again["map"] == first["map"]


def test_prediction_setting_change_reruns_only_prediction(first_run):
    from flows.landcover import landcover

    cfg, _ = first_run
    root = Path(cfg.output.dir)
    before = {name: os.stat(root / name).st_mtime_ns for name in STAGE_OUTPUTS}
    changed = cfg.model_copy(update={"prediction": cfg.prediction.model_copy(update={"block_size": 32})})
    landcover(changed)
    after = {name: os.stat(root / name).st_mtime_ns for name in STAGE_OUTPUTS}
    rerun = {name for name in STAGE_OUTPUTS if before[name] != after[name]}
    assert rerun == {"map.tif"}


def test_failure_marks_mlflow_run_failed(demo_config, tmp_path):
    from mlflow import MlflowClient

    from flows.landcover import landcover

    bad_table = tmp_path / "classes.csv"
    bad_table.write_text("code,val\n10,1\n")
    cfg = demo_config.model_copy(update={
        "classes": demo_config.classes.model_copy(update={"table": bad_table}),
        "output": demo_config.output.model_copy(update={"dir": tmp_path / "out"}),
        "tracking": demo_config.tracking.model_copy(update={"experiment": "failing", "register_as": None}),
    })
    with pytest.raises(InputDataError, match=r"has no value column 'value'") as info:
        landcover(cfg)
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    exp = client.get_experiment_by_name("failing")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["error"] == str(info.value)
    assert "\n" not in runs[0].data.tags["error"]


def test_retry_condition_never_retries_our_errors():
    from prefect.states import Failed

    from flows.tasks import retry_on_io_error

    assert retry_on_io_error(None, None, Failed(data=OSError("disk hiccup"))) is True
    assert retry_on_io_error(None, None, Failed(data=InputDataError("bad column"))) is False
    assert retry_on_io_error(None, None, Failed(data=ValueError("bug"))) is False


def test_flow_run_logs_name_the_mlflow_run(first_run):
    import time

    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    cfg, result = first_run
    run = MlflowClient(tracking_uri=cfg.tracking.uri).get_run(result["mlflow_run_id"])
    flow_run_id = run.data.tags["prefect.flow_run_id"]
    messages: list[str] = []
    for _ in range(20):  # logs reach the API in batches
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        messages = [log.message for log in logs]
        if any("reports written" in m for m in messages):
            break
        time.sleep(0.5)
    assert any(result["mlflow_run_id"] in m for m in messages), messages
    assert any("reports written" in m for m in messages)  # a library (lcmodel.report) line


def test_credentials_are_never_logged(demo_config, tmp_path, monkeypatch, caplog):
    """A credential-bearing tracking URI (config or environment) appears in no param, tag or log line."""
    import logging

    from mlflow import MlflowClient

    from flows.tracking import Tracker

    secret_uri = "https://user:secret@mlflow.example.org"
    store = f"sqlite:///{tmp_path / 'creds.sqlite'}"
    cfg = demo_config
    real = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": store})})
    caplog.set_level(logging.DEBUG)
    tracker = Tracker(real, workdir=tmp_path)  # really logs to the local store...
    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
    tracker.cfg = cfg.model_copy(  # ...while the config names a credential-bearing server
        update={"tracking": cfg.tracking.model_copy(update={"uri": secret_uri}),
                "reference": cfg.reference.model_copy(update={"path": Path("/data/ref.tif")})})
    tracker.log_config()
    tracker.finish(error=RuntimeError(f"could not reach {secret_uri}/api"))
    run = MlflowClient(tracking_uri=store).get_run(tracker.run_id)
    logged = [*run.data.params.items(), *run.data.tags.items()]
    assert run.data.params["tracking.uri"] == "https://***@mlflow.example.org"
    assert not [kv for kv in logged if "secret" in kv[0] or "secret" in kv[1]]
    assert "secret" not in caplog.text
    assert "secret" not in tracker.ui_hint


def test_scrub_uri_hides_userinfo_and_secret_query_parameters():
    from flows.tracking import scrub_uri

    assert scrub_uri("https://user:secret@mlflow.example.org/x") == "https://***@mlflow.example.org/x"
    assert scrub_uri("https://u:p%2Fq@host") == "https://***@host"
    assert (scrub_uri("https://host/api?experiment=3&access_token=abc123&sig=zz#frag")
            == "https://host/api?experiment=3&access_token=***&sig=***#frag")
    assert scrub_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
