"""Child processes die with the command: worker pools, servers started by libraries, and SIGTERM.

Three pieces, all Linux-first (``/proc``; elsewhere they do nothing):

- :func:`die_with_parent`: the initializer of every worker pool lcmodel starts (the tuning's loky workers,
  the prediction's process pool). A daemon thread in the worker polls its parent pid and ends the worker
  when the parent is gone, so a worker never outlives a killed command (loky keeps idle workers for
  300 s otherwise). It polls rather than using ``PR_SET_PDEATHSIG``: that signal fires when the *thread*
  that started the worker ends, and pools start workers from whichever thread submits work.
- :func:`guard_children`: for children lcmodel does not start itself (Prefect's temporary API server, a
  uvicorn process started by ``prefect.server.api.server.SubprocessASGIServer`` with no hook for a
  pre-exec function or an initializer). A small guardian process (``python -m lcmodel.processes PID``, in
  its own session) records the command's descendants about once a second; when the command dies, by
  SIGKILL too, it terminates every recorded descendant still alive (SIGTERM, SIGKILL after 3 s). A child
  started and orphaned within the last second before a SIGKILL can escape it.
- :func:`terminate_as_interrupt`: SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``, so a
  terminated command unwinds exactly as Ctrl-C does: executors are shut down (joblib terminates its loky
  workers), temporary files are removed, the output lock is released.

The console commands (``lcmodel.cli.main``, ``flows.cli.main``) call :func:`guard_children` and
:func:`terminate_as_interrupt`; library users calling lcmodel from their own script get the worker
initializers only.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from types import FrameType

__all__ = [
    "Terminated",
    "die_with_parent",
    "guard_children",
    "terminate_as_interrupt",
    "interrupted_exit_code",
    "descendants",
]

#: how often a worker checks that its parent lives, and the guardian records the descendants (seconds)
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


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


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


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return kids
    for name in names:
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                kids.setdefault(st[0], []).append(int(name))
    return kids


def descendants(roots: Iterable[int]) -> dict[int, int]:
    """The live descendants of the processes ``roots`` (not the roots themselves): pid -> start time."""
    kids = _children_map()
    found: dict[int, int] = {}
    todo = list(roots)
    while todo:
        for child in kids.get(todo.pop(), []):
            st = _stat(child)
            if child not in found and st is not None:
                found[child] = st[1]
                todo.append(child)
    return found


def guard_children() -> None:
    """Start this process's guardian (once per process; Linux only): when this process dies, however it
    dies, every descendant the guardian recorded is terminated."""
    if not sys.platform.startswith("linux") or _stat(os.getpid()) is None:
        return
    with _GUARD_LOCK:
        if _GUARDIAN and _GUARDIAN[0].poll() is None:
            return
        read_end, write_end = os.pipe()  # both non-inheritable: only the guardian gets the read end
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lcmodel.processes", str(os.getpid())],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches the command, not its guardian
            )
        finally:
            os.close(read_end)
        _GUARDIAN[:] = [proc]
        _WRITE_END[:] = [write_end]  # kept open for the life of this process: EOF tells the guardian


_WRITE_END: list[int] = []


def _terminate(victims: dict[int, int]) -> None:
    """SIGTERM every victim still alive (same pid, same start time), then SIGKILL those left after GRACE_S."""
    def alive() -> list[int]:
        return [p for p, start in victims.items() if (st := _stat(p)) is not None and st[1] == start]

    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        for pid in alive():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while wait and alive() and time.monotonic() < deadline:
            time.sleep(0.1)


def _guard(parent: int) -> None:
    """The guardian's loop: record the descendants of ``parent`` until it dies, then terminate them."""
    own = os.getpid()
    parent_stat = _stat(parent)
    if parent_stat is None:
        return
    recorded: dict[int, int] = {}
    watching_pipe = True
    while (st := _stat(parent)) is not None and st[1] == parent_stat[1]:
        seen = descendants([parent, *recorded])
        seen.pop(own, None)
        recorded = {p: s for p, s in {**recorded, **seen}.items() if (now := _stat(p)) and now[1] == s}
        if watching_pipe:
            ready, _, _ = select.select([sys.stdin.buffer], [], [], 1.0)
            if ready and not os.read(sys.stdin.fileno(), 64):
                watching_pipe = False  # EOF: the parent is exiting; poll its pid until it is gone
        else:
            time.sleep(POLL_S)
    final = descendants(recorded)
    final.pop(own, None)
    _terminate({**recorded, **final})


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the guardian ends when its parent does
    _guard(int(sys.argv[1]))
