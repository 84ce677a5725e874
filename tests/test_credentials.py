"""No secret is ever written: a tracking URI with credentials is refused in the config, scrubbed wherever it
is logged, and a planted password reaches no file, database or output of a run (a real MLflow server on
127.0.0.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flows.config import flow_config_from_dict
from flows.credentials import split_credentials, uri_secrets
from lcmodel.errors import ConfigError
from tests.rasters import tiny_demo_config
from tests.servers import BIN, free_port, subprocess_env

SECRET = "S3cretPW-planted"


# ---------------------------------------------------------------------------------- refused in the config
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[dict, Path]:
    """The tiny demo's config as a dict, and the folder its paths are relative to."""
    import yaml

    path = tiny_demo_config(tmp_path_factory.mktemp("demo"))
    return yaml.safe_load(path.read_text()), path.parent


def _with_uri(demo: tuple[dict, Path], uri: str | None):
    data, base = demo
    return flow_config_from_dict({**data, "tracking": {"uri": uri}}, base_dir=base)


@pytest.mark.parametrize("uri, what", [
    ("http://alice:pw@127.0.0.1:5000", "user info"),
    ("https://alice@mlflow.example.org", "user info"),
    ("http://alice:p@ss/w0rd@127.0.0.1:5000", "user info"),
    ("http://127.0.0.1:5000?token=abc", "'token'"),
    ("http://127.0.0.1:5000/?auth=abc", "'auth'"),
    ("https://host/path?x=1&password=abc", "'password'"),
    ("https://host/?X-Amz-Signature=abc", "'X-Amz-Signature'"),
    ("https://host/?sig=abc", "'sig'"),
    ("https://host/?access_key=abc", "'access_key'"),
])
def test_a_tracking_uri_with_credentials_is_refused_in_one_line(demo, uri, what):
    with pytest.raises(ConfigError) as err:
        _with_uri(demo, uri)
    message = str(err.value)
    assert "\n" not in message.strip()
    assert what in message
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert var in message
    for secret in ("pw", "abc", "w0rd"):
        assert f"{secret}@" not in message and f"={secret}" not in message


@pytest.mark.parametrize("uri", [
    None, "http://127.0.0.1:5000", "https://mlflow.example.org/prefix", "sqlite:///tmp/mlflow.db",
    "databricks", "databricks://profile", "http://host:5000/?workspace=team", "file:///tmp/mlruns",
])
def test_a_tracking_uri_without_credentials_is_accepted(demo, uri):
    assert _with_uri(demo, uri).tracking.uri == uri
    assert uri is None or uri_secrets(uri) == []


def test_the_refusal_through_the_cli_is_one_line_exit_2(tmp_path):
    cfg = tiny_demo_config(tmp_path / "data", tracking={"uri": f"http://alice:{SECRET}@127.0.0.1:1"})
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg)], capture_output=True, text=True,
                          env=subprocess_env(tmp_path, drop_tracking=True), cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "MLFLOW_TRACKING_PASSWORD" in done.stderr
    assert SECRET not in done.stdout + done.stderr


# --------------------------------------------------------------------------------------------- scrub_uri
@pytest.mark.parametrize("uri, scrubbed", [
    ("http://alice:pw@host:5000/x", "http://***@host:5000/x"),
    ("http://alice:p@ss@host:5000", "http://***@host:5000"),
    ("http://alice:pa/ss@host:5000/api", "http://***@host:5000/api"),
    ("http://alice:p@ss/w@rd@host:5000/api?x=1", "http://***@host:5000/api?x=1"),
    ("https://alice:pa%40ss@host", "https://***@host"),
    ("http://host:5000?token=abc", "http://host:5000?token=***"),
    ("http://host:5000/?auth=abc&x=1", "http://host:5000/?auth=***&x=1"),
    ("http://host/?Authorization=Bearer%20abc", "http://host/?Authorization=***"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AK&X-Amz-Signature=ff", "https://b.s3.amazonaws.com/k?"
     "X-Amz-Credential=***&X-Amz-Signature=***"),
    ("https://acct.blob.core.windows.net/c?sv=2020&sig=abc%2F", "https://acct.blob.core.windows.net/c?sv=2020&sig=***"),
    ("s3://KEY:SECRET@bucket/path", "s3://***@bucket/path"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("https://host/prefix?workspace=team", "https://host/prefix?workspace=team"),
    # in free text (an error message): the secret goes, the words around it stay
    ("API request to http://alice:pw@host/api/2.0 failed: 'http://bob:x@y@h2?token=t'", "API request to "
     "http://***@host/api/2.0 failed: 'http://***@h2?token=***'"),
])
def test_scrub_uri_removes_every_credential(uri, scrubbed):
    from flows.tracking import scrub_uri

    assert scrub_uri(uri) == scrubbed


def test_the_environments_uri_leaves_its_user_info_to_mlflows_variables(monkeypatch):
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    env: dict[str, str] = {}
    assert split_credentials("http://alice:p%40ss%2Fw@127.0.0.1:5000/x", env) == "http://127.0.0.1:5000/x"
    assert env == {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "p@ss/w"}
    env = {}
    assert split_credentials("http://alice:p@ss/w@127.0.0.1:5000", env) == "http://127.0.0.1:5000"
    assert env["MLFLOW_TRACKING_PASSWORD"] == "p@ss/w"
    # variables already set win (as they do in MLflow): the URI's user info is only dropped
    env = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "other"}
    assert split_credentials("http://alice:pw@h", env) == "http://h"
    assert env == {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "other"}
    assert split_credentials("sqlite:///x.db", env) == "sqlite:///x.db"


def test_a_query_secret_in_the_environments_uri_is_one_line_exit_2(tmp_path):
    cfg = tiny_demo_config(tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg)], capture_output=True, text=True,
                          env=subprocess_env(tmp_path, drop_tracking=True,
                                             MLFLOW_TRACKING_URI=f"http://127.0.0.1:1/?token={SECRET}"),
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "MLFLOW_TRACKING_TOKEN" in done.stderr
    assert SECRET not in done.stdout + done.stderr


# ---------------------------------------------------------------------- a planted secret is never written
def _files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


@pytest.mark.integration
def test_a_planted_password_reaches_no_file_database_or_output(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("prefect")
    port = free_port()
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    env = subprocess_env(tmp_path, drop_tracking=True,
                         MLFLOW_TRACKING_URI=f"http://alice:{SECRET}@127.0.0.1:{port}")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{server_dir / 'mlflow.db'}",
             "--artifacts-destination", str(server_dir / "artifacts")],
            env=subprocess_env(tmp_path, drop_tracking=True), cwd=server_dir, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, log.read_text()[-2000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                        break
                except (OSError, urllib.error.URLError):
                    assert time.monotonic() < deadline, log.read_text()[-2000:]
                    time.sleep(0.5)
            cfg = tiny_demo_config(tmp_path / "data", tracking={"experiment": "secret", "register_as": "secret"})
            done = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg)], env=env, cwd=tmp_path,
                                  capture_output=True, timeout=600)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output.decode()[-4000:]
    assert b"View run" in done.stdout  # MLflow's own line, printed without the user info
    assert f"127.0.0.1:{port}".encode() in output
    assert SECRET.encode() not in output, [line for line in output.decode().splitlines() if SECRET in line]
    # every file of the run: the output folder, the server's backend store and artifacts, Prefect's home and
    # database, the run's working folder
    assert (tmp_path / "prefect").is_dir() and any((server_dir / "artifacts").rglob("model.skops"))
    assert any((tmp_path / "prefect").rglob("*.db"))
    leaked = _files_holding(tmp_path, SECRET.encode())
    assert leaked == [], leaked
    assert f"alice:{SECRET}".encode() not in log.read_bytes()
