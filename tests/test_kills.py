"""Kills leave nothing: the kill harness (issue 15, item 5).

The fast part: the pieces (stale temporaries, a dead run's lock, workers and guarded children that end with
their parent, SIGTERM as one line and exit 143) and one SIGTERM of ``lcmodel run --plain`` during tuning.
The slow part (``-m slow``) kills ``lcmodel run`` (the Prefect flow) and ``lcmodel run --plain`` by SIGKILL and
by SIGTERM after every stage and inside the long ones (tuning, prediction), rerunning after each kill, and
asserts after each kill that no process of ours is alive (every process that inherited the run's marker in
its environment, found by PID in /proc) and the lock is free; at the end, that the last rerun completes with
a map and a confidence raster byte-identical to an uninterrupted run's, and that no temporary file is left.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio
import yaml

from lcmodel.io import LOCK_NAME, is_temporary, output_lock, remove_stale_temporaries
from lcmodel.pipeline.records import RECORDS
from lcmodel.pipeline.stages import STAGES
from lcmodel.processes import MARK as GUARD_MARK
from lcmodel.processes import marked
from tests.rasters import tiny_demo_config
from tests.servers import ROOT, subprocess_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kill harness reads /proc")

MARK = "LCMODEL_KILL_TEST"  # inherited by every process a run starts: how the harness finds them by PID


# --- helpers -------------------------------------------------------------------------------------


def _ours(token: str) -> dict[int, str]:
    """Every live process whose environment holds ``MARK=token``: pid -> command line."""
    found: dict[int, str] = {}
    needle = f"{MARK}={token}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if needle not in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                continue
            if Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found[int(name)] = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
        except OSError:
            continue
    return found


def _wait_none_alive(token: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (alive := _ours(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"processes of the killed run still alive: {alive}"


def _lock_free(folder: Path) -> bool:
    lock = folder / LOCK_NAME
    if not lock.exists():
        return True
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _leftovers(folder: Path) -> list[str]:
    """Temporary files (atomic_path's, the resume store's ``*.tmp``), the resume state and the lock file."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if is_temporary(p) or p.name.endswith((".tmp", ".partial")) or p.name == LOCK_NAME)


def _start(cfg: Path, plain: bool, root: Path, token: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "flows.cli", "-v", "run", *(["--plain"] if plain else []), str(cfg)]
    env = subprocess_env(root, drop_tracking=True, **{MARK: token})
    return subprocess.Popen(args, cwd=cfg.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # one stream: the flow's log lines (Prefect's console) and ours


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], sig: int, timeout: float = 240.0) -> bool:
    """Send ``sig`` to ``proc`` once ``ready()`` (polled every 20 ms); False if the run ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(sig)
            return True
        time.sleep(0.02)
    return False


def _tiled_demo(folder: Path) -> Path:
    """The tiny demo with its embedding in 16 px internal blocks and 16 px prediction blocks (36 blocks)."""
    cfg = tiny_demo_config(folder)
    data = yaml.safe_load(cfg.read_text())
    source = folder / data["embedding"]["path"]
    with rasterio.open(source) as src:
        profile, values, names = src.profile, src.read(), src.descriptions
    profile.update(tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(folder / "embedding16.tif", "w", **profile) as dst:
        dst.write(values)
        dst.descriptions = names
    data["embedding"]["path"] = "embedding16.tif"
    data["prediction"] = {"block_size": 16}
    cfg.write_text(yaml.safe_dump(data))
    return cfg


# --- the pieces ----------------------------------------------------------------------------------


def test_is_temporary_names_atomic_path_temporaries_only() -> None:
    for name in (".training_table.csv.k3j9x0qz.csv", ".model.joblib.a1b2c3d4.joblib", ".map.tif.zz_09aq1.tif",
                 ".classes.abcdefgh"):
        assert is_temporary(name), name
    for name in (".map.tif.partial", ".lcmodel.lock", ".lcmodel", "map.tif", ".map.tif.k3j9x0qz.png",
                 ".notes", "model.joblib.json"):
        assert not is_temporary(name), name


def test_next_run_removes_a_dead_runs_temporaries_and_keeps_the_resume_state(tmp_path: Path) -> None:
    stale = [tmp_path / ".training_table.csv.k3j9x0qz.csv", tmp_path / ".model.joblib.a1b2c3d4.joblib",
             tmp_path / ".map.tif.q8w7e6r5.tif", tmp_path / ".lcmodel" / "stages" / ".tune.json.abcd1234.json"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if "joblib" in path.name else b"half")
    kept = [tmp_path / ".map.tif.partial" / "manifest.jsonl", tmp_path / "notes.txt", tmp_path / ".hidden"]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    busy = tmp_path / ".report.md.zzzz9999.md"  # open by a live process (this one): a writer without the lock
    with open(busy, "w") as held, output_lock(tmp_path):
        held.write("in progress")
        assert not any(p.exists() for p in stale)
        assert all(p.exists() for p in kept) and busy.exists()
    assert not (tmp_path / LOCK_NAME).exists()
    assert remove_stale_temporaries(tmp_path) == [busy]  # closed now: stale


def test_a_dead_runs_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / LOCK_NAME).write_text(f"pid {dead}, started 2026-01-01T00:00:00+00:00\n")  # a SIGKILL's leftover
    with output_lock(tmp_path) as lock:
        assert lock.read_text().startswith(f"pid {os.getpid()},")
    assert not lock.exists()


def _parent_script(body: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", body], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, text=True)


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_pool_workers_end_when_their_parent_is_killed() -> None:
    parent = _parent_script(
        "import os, time\nfrom concurrent.futures import ProcessPoolExecutor\nfrom multiprocessing import get_context\n"
        "from lcmodel.processes import die_with_parent\n"
        "ex = ProcessPoolExecutor(1, mp_context=get_context('spawn'), initializer=die_with_parent)\n"
        "print(ex.submit(os.getpid).result(), flush=True)\ntime.sleep(120)\n")
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    assert _gone(worker, 10), f"worker {worker} outlived its killed parent"


def test_sigterm_kills_pool_workers_first_and_leaves_other_children() -> None:
    """On SIGTERM the pool's workers are killed before the command unwinds (a worker still starting up
    would print a traceback from the child as the pool shuts down); a server or helper child is left."""
    parent = _parent_script(
        "import os, subprocess, sys, time\nfrom concurrent.futures import ProcessPoolExecutor\n"
        "from multiprocessing import get_context\nfrom lcmodel.processes import kill_pool_workers\n"
        "ex = ProcessPoolExecutor(1, mp_context=get_context('spawn'))\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "worker = ex.submit(os.getpid).result()\n"
        "print(worker, helper.pid, flush=True)\nprint(kill_pool_workers(), flush=True)\n"
        "time.sleep(1)\nhelper.kill()\nos._exit(0)\n")
    assert parent.stdout is not None
    worker, helper = map(int, parent.stdout.readline().split())
    killed = parent.stdout.readline().strip()
    parent.wait(timeout=60)
    assert killed == f"[{worker}]", (killed, worker, helper)
    assert _gone(worker, 10)


def test_guarded_children_end_when_the_command_is_killed() -> None:
    parent = _parent_script(
        "import subprocess, sys, time\nfrom lcmodel.processes import guard_children\nguard_children()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(child.pid, flush=True)\ntime.sleep(120)\n")  # a child we do not control
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    token = next(t for t in Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                 if t.startswith(f"{GUARD_MARK}=".encode())).decode().split("=", 1)[1].split(",")[-1]
    watched = marked(token)
    assert child in watched and len(watched) == 2  # the child and the guardian
    parent.kill()  # at once: the guardian finds the child by its mark, not by having seen it
    parent.wait()
    assert all(_gone(pid, 15) for pid in watched), f"still alive after the parent's SIGKILL: {watched}"
    assert marked(token) == {}


def test_sigterm_of_plain_run_during_tuning_unwinds(tmp_path: Path) -> None:
    cfg = tiny_demo_config(tmp_path / "case")
    out = cfg.parent / "results"
    token = uuid.uuid4().hex
    proc = _start(cfg, True, tmp_path, token)
    records = out / RECORDS

    def tuning() -> bool:
        return (records / "make_training_table.json").exists() and any(
            "LokyProcess" in c for c in _ours(token).values())

    assert _kill_when(proc, tuning, signal.SIGTERM), "the run ended before tuning"
    err, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: terminated (SIGTERM); what was finished is kept: rerun the same command to go on"]
    assert "Traceback" not in err
    _wait_none_alive(token)
    assert not (out / LOCK_NAME).exists()  # released on SIGTERM
    assert not (records / "tune.json").exists() and [p for p in out.iterdir() if is_temporary(p)] == []


# --- the harness ---------------------------------------------------------------------------------

#: where a run is killed: after each stage (its record appears), and inside tuning and prediction
KILL_POINTS: list[str] = [point for name in STAGES if name != "report" for point in (
    *((f"inside {name}",) if name in ("tune", "predict_map") else ()), f"after {name}")]


def _ready(point: str, out: Path, token: str) -> Callable[[], bool] | None:
    """The trigger of a kill point, or None when this folder is already past it."""
    records = out / RECORDS
    where, stage = point.split(" ")
    if (records / f"{stage}.json").exists():
        return None
    if where == "after":
        return lambda: (records / f"{stage}.json").exists()
    if stage == "tune":
        return lambda: any("LokyProcess" in c for c in _ours(token).values())
    blocks = out / ".map.tif.partial" / "blocks"
    return lambda: blocks.is_dir() and len(list(blocks.iterdir())) >= 4


@pytest.fixture(scope="module")
def reference_map(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The map and confidence raster of an uninterrupted plain run."""
    root = tmp_path_factory.mktemp("reference")
    cfg = _tiled_demo(root / "case")
    token = uuid.uuid4().hex
    proc = _start(cfg, True, root, token)
    err, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    out = cfg.parent / "results"
    return {name: (out / name).read_bytes() for name in ("map.tif", "confidence.tif")}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("plain", [True, False], ids=["plain", "flow"])
def test_kill_at_every_stage_then_rerun(tmp_path: Path, reference_map: dict[str, bytes], plain: bool,
                                        sig: int) -> None:
    cfg = _tiled_demo(tmp_path / "case")
    out = cfg.parent / "results"
    hit: list[str] = []
    resume = False  # the last kill left finished blocks: the next run must resume from them
    for point in KILL_POINTS:
        token = uuid.uuid4().hex
        ready = _ready(point, out, token)
        if ready is None:
            continue
        proc = _start(cfg, plain, tmp_path, token)
        killed = _kill_when(proc, ready, sig)
        err, _ = proc.communicate(timeout=300)
        if resume and (summary := out / "prediction.json").exists():  # the rerun finished the prediction
            assert json.loads(summary.read_text())["n_resumed"] > 0, "the rerun after a kill did not resume"
            resume = False
        resume = resume or (out / ".map.tif.partial" / "manifest.jsonl").exists()
        if not killed:
            assert proc.returncode == 0, err
            break  # the run finished before this point: nothing left to kill
        hit.append(point)
        assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGTERM, 0), (point, proc.returncode, err)
        if sig == signal.SIGTERM:
            assert "Traceback" not in err.split("Stopping temporary server")[0], (point, err)
        _wait_none_alive(token)
        assert _lock_free(out), point
        if sig == signal.SIGTERM:
            assert not (out / LOCK_NAME).exists(), point
    print("killed:", ", ".join(hit))  # shown with -s
    assert "inside tune" in hit and len(hit) >= 6, hit
    token = uuid.uuid4().hex
    proc = _start(cfg, plain, tmp_path, token)
    err, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert not resume or json.loads((out / "prediction.json").read_text())["n_resumed"] > 0
    _wait_none_alive(token)
    for name, content in reference_map.items():
        assert (out / name).read_bytes() == content, f"{name} differs from an uninterrupted run's ({hit})"
    assert _leftovers(out) == []


def test_sigterm_inside_a_finalizer_still_stops_the_command_quietly() -> None:
    """A SIGTERM that lands in a ``__del__`` (or a weakref callback) would be printed as "Exception ignored" and
    swallowed; it is delivered again outside it, so the command still stops, with no traceback."""
    code = textwrap.dedent("""
        import gc, os, signal, sys, time
        from lcmodel.processes import Terminated, terminate_as_interrupt
        terminate_as_interrupt()

        class Finalised:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler runs here, inside the finalizer

        try:
            Finalised()
            gc.collect()
            time.sleep(5)
        except Terminated:
            print("stopped", file=sys.stderr)
            sys.exit(143)
        sys.exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 143, proc.stderr
    assert "stopped" in proc.stderr and "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr


class _EngineSignal(BaseException):
    """Stands in for Prefect's TerminationSignal (a BaseException, not a KeyboardInterrupt)."""


def test_an_error_raised_in_place_of_an_interrupt_still_stops_the_command_quietly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import click
    from click.testing import CliRunner

    from lcmodel.cli import OneLineErrorGroup
    from lcmodel.processes import TERMINATION_TYPES, Terminated, interruption

    monkeypatch.setattr("lcmodel.processes.TERMINATION_TYPES", [*TERMINATION_TYPES, _EngineSignal])
    group = OneLineErrorGroup()

    def wraps(inner: BaseException) -> None:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("a library's own error") from exc  # e.g. a client wrapping what it caught

    cases = {"ctrl-c": lambda: wraps(KeyboardInterrupt()), "sigterm": lambda: wraps(Terminated()),
             "engine": lambda: wraps(_EngineSignal()), "engine-bare": lambda: (_ for _ in ()).throw(_EngineSignal()),
             "crash": lambda: wraps(ValueError("a real bug"))}
    for name, body in cases.items():
        group.add_command(click.Command(name, callback=body))
    runner = CliRunner()
    expected = {"ctrl-c": (130, "interrupted (Ctrl-C)"), "sigterm": (143, "terminated (SIGTERM)"),
                "engine": (143, "terminated (SIGTERM)"), "engine-bare": (143, "terminated (SIGTERM)")}
    for name, (code, how) in expected.items():
        result = runner.invoke(group, [name])
        assert result.exit_code == code, (name, result.output, result.exception)
        assert result.output.strip().splitlines() == [
            f"error: {how}; what was finished is kept: rerun the same command to go on"], name
    crash = runner.invoke(group, ["crash"])
    assert isinstance(crash.exception, RuntimeError)  # a real error keeps its traceback
    assert interruption(ValueError()) is None


def test_prefects_sigterm_bridge_is_wrapped() -> None:
    """While a flow runs, Prefect's SIGTERM handler is the one installed: it must kill the pool workers first
    and survive a finalizer, as lcmodel's does, and still be the handler Prefect recognises as its own."""
    from prefect.utilities import engine

    import flows.landcover  # noqa: F401  (wraps the bridge on import)
    from flows.signals import prefect_sigterm

    assert prefect_sigterm(), "this Prefect has no _prefect_sigterm_handler: flows/signals.py needs a new hook"
    bridge = engine._prefect_sigterm_handler
    assert getattr(bridge, "__wrapped__", None) is not None
    assert prefect_sigterm() and engine._prefect_sigterm_handler is bridge  # idempotent
    with engine.capture_sigterm():
        assert engine.is_prefect_sigterm_handler_installed()
        assert signal.getsignal(signal.SIGTERM) is bridge


def test_a_signal_during_a_held_block_stops_the_command_as_the_block_ends() -> None:
    """MLflow's store calls run with SIGTERM held (an interrupt inside SQLAlchemy's fetch printed "Error closing
    cursor" and a traceback: the kill harness, flow-SIGTERM after fit_final); a second signal stops at once."""
    code = textwrap.dedent("""
        import os, signal, sys, time
        from lcmodel.processes import Terminated, interrupts_deferred, terminate_as_interrupt
        terminate_as_interrupt()
        twice = sys.argv[1] == "twice"
        try:
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                print("first held", flush=True)
                if twice:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)
                print("block ended", flush=True)
            print("after the block", flush=True)
        except Terminated:
            print("stopped", flush=True)
            sys.exit(143)
        sys.exit(signal.getsignal(signal.SIGTERM) is not None and 0)
    """)
    for how, lines in (("once", ["first held", "block ended", "stopped"]), ("twice", ["first held", "stopped"])):
        proc = subprocess.run([sys.executable, "-c", code, how], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert proc.returncode == 143 and proc.stdout.split() == " ".join(lines).split(), (how, proc.stdout,
                                                                                         proc.stderr)
