"""Real local servers on 127.0.0.1: a Prefect server + process worker running the training deployment, and
``mlflow models serve`` answering pixel tables. Each test stops only the processes it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from flows.config import load_flow_config as load_config  # noqa: E402
from tests.rasters import tiny_demo_config
from tests.servers import BIN, ROOT, free_port, subprocess_env  # noqa: E402

pytestmark = pytest.mark.integration



def _tiny_config(root: Path, name: str) -> Path:
    return tiny_demo_config(root / "data", tracking={
        "experiment": name, "register_as": name, "uri": f"sqlite:///{root / 'mlflow.sqlite'}"})


class Started:
    """Processes started by a test, each in its own session; stop() ends exactly those (and their children)."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((proc, out))
        return proc

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, out in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            out.close()


@pytest.fixture
def started() -> Iterator[Started]:
    procs = Started()
    yield procs
    procs.stop()


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {timeout:.0f} s: {log.read_text()[-2000:]}")


def _run(args: list[str], env: dict[str, str], timeout: float = 120.0) -> str:
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout + done.stderr


# ------------------------------------------------------------------------------------------ Prefect
def test_training_deployment_runs_through_a_worker(tmp_path, started):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = subprocess_env(tmp_path, PREFECT_API_URL=api)
    cfg_path = _tiny_config(tmp_path, "deployed")
    prefect = str(BIN / "prefect")
    server_log = tmp_path / "server.log"
    server = started.start([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                            "--no-ui"], env, server_log)
    _wait_http(f"{api}/health", server, server_log)

    _run([prefect, "work-pool", "create", "lcmodel-pool", "--type", "process"], env)
    out = _run([prefect, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", "--no-prompt"], env)
    assert "landcover/train" in out and "landcover-predict/predict" in out
    out = _run([prefect, "deployment", "run", "landcover/train", "--params",
                json.dumps({"config": str(cfg_path)})], env)
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert flow_run_id, out
    worker_log = tmp_path / "worker.log"
    worker = started.start([prefect, "worker", "start", "--pool", "lcmodel-pool", "--type", "process",
                            "--run-once"], env, worker_log)
    worker.wait(timeout=240)  # --run-once: submits the scheduled run, waits for it, exits

    with urllib.request.urlopen(f"{api}/flow_runs/{flow_run_id.group(1)}", timeout=10) as r:
        state = json.load(r)["state"]
    assert state["type"] == "COMPLETED", (state, worker_log.read_text()[-3000:])
    cfg = load_config(cfg_path)
    assert (Path(cfg.output.dir) / "map.tif").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri, registry_uri=cfg.tracking.uri)
    [run] = client.search_runs([client.get_experiment_by_name("deployed").experiment_id],
                               filter_string="tags.`lcmodel.kind` = 'training'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["prefect.flow_run_id"] == flow_run_id.group(1)
    # the schedule of prefect.yaml is on the deployment
    with urllib.request.urlopen(urllib.request.Request(
            f"{api}/deployments/name/landcover/train", method="GET"), timeout=10) as r:
        deployment = json.load(r)
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 2 * * *"]


# ------------------------------------------------------------------------------------------ MLflow
@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> tuple[Path, Any, str]:
    """A bundle trained with the plain pipeline, logged as the pyfunc and aliased champion."""
    from mlflow import MlflowClient

    from flows.tracking import log_pyfunc_model, promote
    from lcmodel import pipeline
    from lcmodel.model_io import load_bundle

    root = tmp_path_factory.mktemp("served")
    cfg = load_config(_tiny_config(root, "served"))
    pipeline.run(cfg)  # the bundle and the map it predicts
    bundle_path = pipeline.paths_for(cfg).bundle
    uri = cfg.tracking.uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("served", artifact_location=(root / "mlartifacts").as_uri())
    run = client.create_run(exp)
    import mlflow

    mlflow.set_tracking_uri(uri)
    info = log_pyfunc_model(run.info.run_id, bundle_path, load_bundle(bundle_path), register_as="served")
    promote("served", str(info.registered_model_version), "champion", tracking_uri=uri)
    return root, cfg, uri


def _post(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_served_model_answers_pixel_tables_like_the_bundle(registered, started):
    from lcmodel.model_io import load_bundle

    root, cfg, uri = registered
    port = free_port()
    log = root / "serve.log"
    server = started.start([str(BIN / "mlflow"), "models", "serve", "-m", "models:/served@champion",
                            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                           subprocess_env(root, MLFLOW_TRACKING_URI=uri), log, cwd=root)
    _wait_http(f"http://127.0.0.1:{port}/ping", server, log)
    url = f"http://127.0.0.1:{port}/invocations"

    bundle = load_bundle(Path(cfg.output.dir) / "model.skops")
    with rasterio.open(cfg.embedding.path) as src:
        block = src.read()
    with rasterio.open(Path(cfg.output.dir) / "map.tif") as src:
        expected = src.read(1).ravel()
    pixels = block.reshape(block.shape[0], -1).T.astype(np.float64)  # exact float32 values as JSON
    rows = np.r_[np.flatnonzero(expected == 0)[:20], np.flatnonzero(expected != 0)[:480]]
    table = pd.DataFrame(pixels[rows], columns=bundle.band_names)
    split = {"columns": list(table.columns), "data": table.to_numpy().tolist()}

    status, body = _post(url, {"dataframe_split": split})
    assert status == 200, body
    got = [p["class"] for p in body["predictions"]]
    assert got == expected[rows].tolist()  # the map's classes; nodata pixels -> 0 as in the map

    status, body = _post(url, {"dataframe_split": split, "params": {"probabilities": True}})
    assert status == 200, body
    first = body["predictions"][25]
    assert set(first) == {"class"} | {f"p_{v}" for v in bundle.class_values}
    assert sum(first[f"p_{v}"] for v in bundle.class_values) == pytest.approx(1.0)

    bad_cases = {
        "missing column": {"columns": split["columns"][1:], "data": [r[1:] for r in split["data"][:3]]},
        "wrong count": {"columns": split["columns"], "data": [r[:-1] for r in split["data"][:3]]},
        "NaN": {"columns": split["columns"], "data": [[float("nan")] + r[1:] for r in split["data"][:3]]},
    }
    messages = {}
    for case, bad in bad_cases.items():
        status, body = _post(url, {"dataframe_split": bad})
        assert 400 <= status < 500, (case, status, body)
        messages[case] = body.get("message", "")
    assert "A00" in messages["missing column"]
    assert "pixel table has NaN in 3 row(s) (first: row 0)" in messages["NaN"]
    assert "64 columns passed, passed data had 63 columns" in messages["wrong count"]
