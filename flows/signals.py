"""SIGTERM while a Prefect flow runs: Prefect's handler, with what lcmodel's does first.

While a flow runs, Prefect's flow engine replaces the process's SIGTERM handler with its own bridge
(``prefect.utilities.engine._prefect_sigterm_handler``, installed by ``capture_sigterm``), which raises
``prefect.exceptions.TerminationSignal``; a Prefect runner relies on it to cancel a deployment's run. So
lcmodel's handler (:func:`lcmodel.processes.terminate_as_interrupt`) is not the one a SIGTERM reaches during
the flow, and what it does first would be skipped:

- the pool workers are killed before anything unwinds: a loky worker still starting up as the tuning
  shuts down prints a traceback from the child (seen by the kill harness, "inside tune");
- a SIGTERM that lands in a finalizer or weakref callback is delivered again outside it, instead of being
  printed as "Exception ignored" and lost (the run would go on).

:func:`prefect_sigterm` wraps Prefect's bridge with :func:`lcmodel.processes.stopping_first`. It rebinds the
module global that Prefect both installs and compares against (``signal.getsignal(SIGTERM) is
_prefect_sigterm_handler``), so Prefect still recognises its bridge: a runner's cancellation keeps working.
It also registers ``TerminationSignal`` as a termination (:data:`lcmodel.processes.TERMINATION_TYPES`), so an
error raised in its place still ends the command as a stopped one (exit 143, one line). The test
``tests/test_kills.py::test_prefects_sigterm_bridge_is_wrapped`` fails if a Prefect release renames the
bridge.
"""

from __future__ import annotations

from prefect.exceptions import TerminationSignal
from prefect.utilities import engine

from lcmodel.processes import TERMINATION_TYPES, stopping_first

__all__ = ["prefect_sigterm"]


def prefect_sigterm() -> bool:
    """Wrap Prefect's SIGTERM bridge (once; idempotent) and register its exception; False when this Prefect
    has no such bridge (nothing is changed then)."""
    if TerminationSignal not in TERMINATION_TYPES:
        TERMINATION_TYPES.append(TerminationSignal)
    bridge = getattr(engine, "_prefect_sigterm_handler", None)
    if bridge is None:
        return False
    if getattr(bridge, "__wrapped__", None) is None:
        engine._prefect_sigterm_handler = stopping_first(bridge)  # type: ignore[assignment]
    return True
