"""Child processes die with the command: worker pools, servers started by libraries, and SIGTERM.

Three pieces, all Linux-first (``/proc``; elsewhere they do nothing):

- :func:`die_with_parent`: the initializer of every worker pool lcmodel starts (the tuning's loky workers,
  the prediction's process pool). A daemon thread in the worker polls its parent pid and ends the worker
  when the parent is gone, so a worker never outlives a killed command (loky keeps idle workers for
  300 s otherwise). It polls rather than using ``PR_SET_PDEATHSIG``: that signal fires when the *thread*
  that started the worker ends, and pools start workers from whichever thread submits work.
- :func:`guard_children`: for children lcmodel does not start itself (Prefect's temporary API server, a
  uvicorn process started by ``prefect.server.api.server.SubprocessASGIServer`` with no hook for a
  pre-exec function or an initializer), and for workers killed with their parent before their initializer
  ran. The command marks its environment (:data:`MARK`), which every descendant inherits, and starts a
  small guardian (``python -m lcmodel.processes PID TOKEN``, in its own session) that sleeps until the
  command is gone, by SIGKILL too, then terminates every process still carrying the mark (SIGTERM, SIGKILL
  after 3 s). Found by the mark, not by parentage: orphans re-parented to init are found all the same.
- :func:`terminate_as_interrupt`: SIGTERM first kills the command's pool workers
  (:func:`kill_pool_workers`: their work is lost with the command anyway, and a worker still starting up
  would print a traceback as the pool shuts down), then raises :class:`Terminated`, a
  ``KeyboardInterrupt``, so a terminated command unwinds exactly as Ctrl-C does: executors are shut down,
  temporary files are removed, the output lock is released.

The console commands (``lcmodel.cli.main``, ``flows.cli.main``) call :func:`guard_children` and
:func:`terminate_as_interrupt`; library users calling lcmodel from their own script get the worker
initializers only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "Terminated",
    "die_with_parent",
    "guard_children",
    "kill_pool_workers",
    "interruption",
    "interrupts_deferred",
    "stopping_first",
    "TERMINATION_TYPES",
    "terminate_as_interrupt",
    "interrupted_exit_code",
    "marked",
    "MARK",
]

#: how often a worker checks that its parent lives (seconds)
POLL_S = 0.5
#: how long the guardian waits after SIGTERM before it sends SIGKILL (seconds)
GRACE_S = 3.0

_GUARDIAN: list[subprocess.Popen[bytes]] = []  # at most one per process
_GUARD_LOCK = threading.Lock()


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM (see :func:`terminate_as_interrupt`)."""


def interrupted_exit_code(exc: BaseException) -> int:
    """The shell's exit status of a command stopped by ``exc``: 143 for SIGTERM, 130 for Ctrl-C (SIGINT)."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


#: where an exception is swallowed ("Exception ignored in ..."): weakref callbacks and finalizers
_SWALLOWING_FILES = ("weakref.py", "_weakrefset.py")


def _swallowed_here(frame: FrameType | None) -> bool:
    """True when ``frame`` runs inside a weakref callback or a ``__del__``, where Python prints an exception
    as "Exception ignored" and goes on, so raising there would neither stop the command nor stay quiet."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or code.co_filename.endswith(_SWALLOWING_FILES):
            return True
        frame = frame.f_back
    return False


#: what a pool worker's command line holds: loky's, and multiprocessing's spawn and forkserver
_WORKER_MARKS = (b"popen_loky_posix", b"spawn_main", b"forkserver")


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def kill_pool_workers() -> list[int]:
    """SIGKILL this process's worker-pool children (loky's and multiprocessing's workers, and a child forked
    but not yet exec'd); their resource trackers, the guardian and servers are left. The pids killed.

    Called on SIGTERM before the command unwinds: a worker still starting up would otherwise find its
    pipe closed or its semaphore gone as the pool shuts down, and print a traceback from the child (seen
    by the kill harness, "inside tune"). Nothing a worker holds outlives it: its results come back to this
    process, which is stopping."""
    me = os.getpid()
    own = _cmdline(me)
    killed: list[int] = []
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return killed
    for name in names:
        pid = int(name)
        st = _stat(pid)
        if st is None or st[0] != me:
            continue
        line = _cmdline(pid)
        if line == own or any(mark in line for mark in _WORKER_MARKS):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


#: SIGTERMs handled by :func:`_raise_terminated` so far (a delivery postponed out of a finalizer is not
#: repeated once a later one has stopped the command)
_RAISED: list[int] = [0]


def _deliver_again(signum: int, raised: int) -> None:
    if _RAISED[0] == raised:
        os.kill(os.getpid(), signum)


def stopping_first(handler: Callable[[int, FrameType | None], Any]) -> Callable[[int, FrameType | None], Any]:
    """A SIGTERM handler that calls ``handler`` after what every SIGTERM needs first: a delivery that lands in
    a finalizer or weakref callback (where a raised exception is printed as "Exception ignored" and
    swallowed) is postponed until outside it, and the pool workers are killed (:func:`kill_pool_workers`)
    before anything unwinds. lcmodel's own handler is one; flows wraps Prefect's with it."""
    def handle(signum: int, frame: FrameType | None) -> Any:
        if _swallowed_here(frame):  # deliver it again shortly, outside the callback
            threading.Timer(0.05, _deliver_again, (signum, _RAISED[0])).start()
            return None
        _RAISED[0] += 1
        kill_pool_workers()
        return handler(signum, frame)

    handle.__wrapped__ = handler  # type: ignore[attr-defined]
    return handle


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


_raise_terminated = stopping_first(_raise)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT while the block runs; one that arrives meanwhile is delivered as it ends.

    For work a signal must not cut in the middle: a tracking store's database call (an interrupt inside
    SQLAlchemy's fetch is logged by SQLAlchemy with a traceback, "Error closing cursor", and may leave the
    MLflow run half-written). The handlers in place (lcmodel's, or Prefect's bridge while a flow runs) are
    restored at the end, and a held signal then reaches them, so the command still stops, at the end of the
    block; a second signal meanwhile reaches them at once (the user insists). Only in the main thread
    (signal handlers can only be set there); elsewhere it does nothing. Keep such blocks short: a held
    signal waits for them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        handler = previous[signum]
        if held and callable(handler):  # a second signal: the user insists, so it stops the command now
            handler(signum, frame)
        held.append(signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, hold)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(held):
            os.kill(os.getpid(), number)  # handled by the restored handler, here, at the end of the block


#: exception types that also mean "this command was terminated" (flows adds Prefect's ``TerminationSignal``,
#: which Prefect's flow engine raises on SIGTERM in place of :class:`Terminated`)
TERMINATION_TYPES: list[type[BaseException]] = []


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``exc``, as a ``KeyboardInterrupt`` (:class:`Terminated` for SIGTERM), or
    None when the command was not interrupted.

    ``exc`` itself, or any link of its cause and context chain: a library that catches the interrupt and
    raises its own error in its place (or an error raised while unwinding from it) still reports an
    interrupted command, not a crash."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, KeyboardInterrupt):
            return link
        if isinstance(link, tuple(TERMINATION_TYPES)):
            stop = Terminated(f"terminated ({type(link).__name__})")
            stop.__cause__ = link
            return stop
        link = link.__cause__ or link.__context__
    return None


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread.

    Call it from the main thread of a command (signal handlers can only be set there); elsewhere it does
    nothing. SIGINT keeps Python's default (``KeyboardInterrupt``).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


# --- workers -------------------------------------------------------------------------------------


def die_with_parent() -> None:
    """Worker initializer: end this process (exit status 1) as soon as its parent process is gone.

    Picklable by reference, so it can be a pool's ``initializer`` (``ProcessPoolExecutor``, loky through
    joblib's ``parallel_config(initializer=...)``).
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(1)  # the parent died: nothing of this worker's work can be delivered

    threading.Thread(target=watch, name="lcmodel-die-with-parent", daemon=True).start()


# --- the guardian of a command's descendants ----------------------------------------------------

#: the environment variable that marks a guarded command's descendants: its tokens, comma-separated
MARK = "LCMODEL_GUARDED_BY"


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of a live process, None when it is gone (or not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":  # a zombie: dead, waiting for its parent
        return None
    return int(fields[1]), int(fields[19])


def marked(token: str) -> dict[int, int]:
    """The live processes (this one excepted) whose environment carries ``token`` in :data:`MARK`, the
    variable a guarded command sets before it starts anything: pid -> start time."""
    found: dict[int, int] = {}
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit() and int(n) != os.getpid()]
    except OSError:
        return found
    for name in names:
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(f"{MARK}=".encode()):
                if token in item.decode("utf-8", "replace").split("=", 1)[1].split(","):
                    st = _stat(int(name))
                    if st is not None:
                        found[int(name)] = st[1]
                break
    return found


def guard_children() -> None:
    """Start this process's guardian (once per process; Linux only): when this process dies, however it
    dies, every process started after this call that still carries this process's mark is terminated.

    The mark is a token in the environment variable :data:`MARK`, which every child inherits (Prefect's
    server, loky's and multiprocessing's workers and resource trackers included); a child that clears its
    environment escapes the guardian.
    """
    me = _stat(os.getpid())
    if not sys.platform.startswith("linux") or me is None:
        return
    with _GUARD_LOCK:
        if _GUARDIAN and _GUARDIAN[0].poll() is None:
            return
        token = f"{os.getpid()}-{me[1]}"
        os.environ[MARK] = ",".join(t for t in (os.environ.get(MARK), token) if t)
        read_end, write_end = os.pipe()  # both non-inheritable: only the guardian gets the read end
        here = str(Path(__file__).resolve().parents[1])  # this lcmodel, importable in the guardian
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lcmodel.processes", str(os.getpid()), token],
                env={**os.environ, "PYTHONPATH": path},
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches the command, not its guardian
            )
        finally:
            os.close(read_end)
        _GUARDIAN[:] = [proc]
        _WRITE_END[:] = [write_end]  # kept open for the life of this process: EOF tells the guardian


_WRITE_END: list[int] = []


def _terminate(token: str) -> None:
    """SIGTERM every process marked with ``token``, then SIGKILL those left (or started) after GRACE_S."""
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 1.0)):
        victims = marked(token)
        for pid in victims:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while victims and time.monotonic() < deadline:
            time.sleep(0.1)
            victims = {p: s for p, s in victims.items() if (st := _stat(p)) is not None and st[1] == s}


def _guard(parent: int, token: str) -> None:
    """The guardian: wait until ``parent`` is gone, then terminate every process marked with ``token``."""
    started = int(token.rsplit("-", 1)[1])  # the parent's start time: a reused pid is not the parent
    watching_pipe = True
    while (st := _stat(parent)) is not None and st[1] == started:  # gone already: terminate at once
        if watching_pipe:
            ready, _, _ = select.select([sys.stdin.buffer], [], [], 1.0)
            if ready and not os.read(sys.stdin.fileno(), 64):
                watching_pipe = False  # EOF: the parent is exiting; poll its pid until it is gone
        else:
            time.sleep(0.05)
    _terminate(token)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the guardian ends when its parent does
    _guard(int(sys.argv[1]), sys.argv[2])
