"""A shared SQLite tracking store: a new database is created by one process at a time (issue 15, item 7).

Before: two flows opening a new ``mlflow.db`` at once both ran MLflow's table creation and Alembic
migrations, and one of them died with ``alembic.util.exc.CommandError: Online migration expected to match
one row ...`` (or SQLite's ``duplicate column name``). These tests start real processes that wait, fully
imported, for one go signal, then open the same new database at the same moment.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("mlflow")

from flows.tracking.stores import (  # noqa: E402
    TrackingStoreError,
    get_or_create_experiment,
    open_client,
    store_lock,
)

ROOT = Path(__file__).resolve().parents[1]

#: a child process: imports everything, says "ready", waits for a line on stdin, then sets up a Tracker
_TRACKER_CHILD = """
import sys
from flows.config import flow_config
from flows.tracking import Tracker
cfg = flow_config(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
tracker = Tracker(cfg)
tracker.log_config()
tracker.finish()
print("run", tracker.run_id, flush=True)
"""


def _config(tmp_path: Path, db: Path, i: int) -> Path:
    data = {
        "reference": {"path": str(tmp_path / "ref.tif")},
        "embedding": {"path": str(tmp_path / "emb.tif")},
        "output": {"dir": str(tmp_path / f"out{i}")},
        "tracking": {"uri": f"sqlite:///{db}", "experiment": "shared", "run_name": f"run{i}"},
    }
    path = tmp_path / f"config{i}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start_together(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Start the processes, wait until each says "ready", then release them all at once."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in commands]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        done = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return done
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _runs(db: Path) -> dict[str, str]:
    """run name -> status of every run in the database."""
    with sqlite3.connect(db) as con:
        return dict(con.execute("select name, status from runs").fetchall())


def test_trackers_of_concurrent_processes_share_a_new_store(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    n = 3
    results = _start_together([[sys.executable, "-c", _TRACKER_CHILD, str(_config(tmp_path, db, i))]
                               for i in range(n)], tmp_path)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Traceback" not in r.stderr and "CommandError" not in r.stderr
    assert _runs(db) == {f"run{i}": "FINISHED" for i in range(n)}
    with sqlite3.connect(db) as con:  # one experiment, though all three looked for it at once
        assert con.execute("select count(*) from experiments where name = 'shared'").fetchone() == (1,)
    assert (tmp_path / "mlflow.db.lock").is_file()


def test_the_store_lock_excludes_another_process(tmp_path: Path) -> None:
    """While this process holds the lock, another's non-blocking attempt fails; after it, it succeeds."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    probe = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    print('held')\n"
             "else:\n    print('free')\n")
    lock = str(tmp_path / "mlflow.db.lock")

    def other() -> str:
        return subprocess.run([sys.executable, "-c", probe, lock], capture_output=True, text=True,
                              check=True).stdout.strip()

    with store_lock(uri):
        assert other() == "held"
    assert other() == "free"


def test_open_client_creates_a_complete_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = open_client(uri)
    first = get_or_create_experiment(client, "e", (tmp_path / "art").as_uri())
    assert get_or_create_experiment(client, "e", None) == first
    assert client.search_registered_models() == []


def test_a_store_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    with pytest.raises(TrackingStoreError, match=r"tracking store 'sqlite:///.*nowhere/mlflow.db': folder "
                       r"'.*nowhere' does not exist; create the folder or point tracking.uri"):
        open_client(uri)
    assert not (tmp_path / "nowhere").exists()


def test_other_stores_take_no_lock(tmp_path: Path) -> None:
    with store_lock("http://127.0.0.1:5000"):
        pass
    assert list(tmp_path.iterdir()) == []


#: `lcmodel run CONFIG` (flows.cli), released like the Tracker children once imported
_RUN_CHILD = """
import sys
import flows.landcover  # noqa: F401 (imported before the go signal: the runs then start together)
from flows.cli import main
print("ready", flush=True)
sys.stdin.readline()
sys.argv = ["lcmodel", "run", sys.argv[1]]
main()
"""


@pytest.mark.slow  # about 100 s on 2 busy cores; the Tracker test above covers the race in the default suite
def test_two_flows_at_once_on_a_new_store(tmp_path: Path, prefect_harness: None) -> None:
    """What the issue ran: two `lcmodel run` at once, the same new sqlite:///.../mlflow.db, two output folders
    (one Prefect server, this module's, for both)."""
    from prefect.settings import PREFECT_API_URL

    from tests.rasters import tiny_demo_config

    db = tmp_path / "mlflow.db"
    base = tiny_demo_config(tmp_path / "data", stages=[{"max_features": ["sqrt"]}, {"n_estimators": [5]}],
                            tracking={"uri": f"sqlite:///{db}", "experiment": "shared"})
    configs = []
    for i in range(2):
        data = yaml.safe_load(base.read_text())
        data["output"]["dir"] = str(tmp_path / f"out{i}")
        data["tracking"]["run_name"] = f"flow{i}"
        configs.append(base.parent / f"run{i}.yaml")  # beside the demo config: its paths are relative
        configs[-1].write_text(yaml.safe_dump(data))
    os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # for the children only
    try:
        results = _start_together([[sys.executable, "-c", _RUN_CHILD, str(c)] for c in configs], tmp_path)
    finally:
        del os.environ["PREFECT_API_URL"]
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Traceback" not in r.stderr and "CommandError" not in r.stderr
    runs = _runs(db)  # the two training runs (and their nested tuning candidates)
    assert runs["flow0"] == runs["flow1"] == "FINISHED"
    for i in range(2):
        assert (tmp_path / f"out{i}" / "map.tif").is_file()
