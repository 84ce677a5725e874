"""What every flow task shares: retries for I/O failures only, the library's logs routed to Prefect, and no
traceback in Prefect's logs for a user's mistake."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from prefect.tasks import exponential_backoff

from lcmodel.errors import LcmodelError

__all__ = ["retry_on_io_error", "library_logs_to_prefect", "quiet_user_errors", "IO_RETRIES", "STAGE_TASK_OPTIONS"]


def retry_on_io_error(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry only I/O failures (a flaky disk or network share); never our own bad-input errors."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, LcmodelError):
        return False
    return isinstance(exc, OSError | TimeoutError)


#: Task options for I/O-bound steps: two retries with exponential backoff, I/O failures only.
IO_RETRIES: dict[str, Any] = dict(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
                                  retry_condition_fn=retry_on_io_error)

#: Task options of the pipeline's stages: retried like I/O steps, results persisted (for the cache).
STAGE_TASK_OPTIONS: dict[str, Any] = dict(IO_RETRIES, persist_result=True)


@contextlib.contextmanager
def library_logs_to_prefect() -> Iterator[None]:
    """While the flow runs, send the library's log lines (logger "lcmodel") to Prefect's handlers.

    The same as PREFECT_LOGGING_EXTRA_LOGGERS=lcmodel, but independent of import order, with a level (Prefect
    leaves extra loggers at the root's WARNING), without propagation (no line printed twice), and undone when
    the flow ends (outside a flow run, Prefect's API handler would warn on every library line).
    """
    lib = logging.getLogger("lcmodel")
    saved = (lib.level, lib.propagate)
    added = [h for h in logging.getLogger("prefect.extra").handlers if h not in lib.handlers]
    for handler in added:
        lib.addHandler(handler)
    if added:
        lib.propagate = False
    if lib.level == logging.NOTSET or lib.level > logging.INFO:
        lib.setLevel(logging.INFO)
    try:
        yield
    finally:
        for handler in added:
            lib.removeHandler(handler)
        lib.setLevel(saved[0])
        lib.propagate = saved[1]


class _UserErrorFilter(logging.Filter):
    """Drop the traceback from Prefect's log records of a user's mistake: the message line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], LcmodelError):
            record.exc_info = None
            record.exc_text = None
        return True


_QUIET = _UserErrorFilter()


def quiet_user_errors() -> None:
    """Install the filter on Prefect's flow and task loggers' handlers (idempotent): a LcmodelError is logged
    as its one-line message, the CLI prints it as ``error: ...``; any other exception keeps its traceback."""
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if _QUIET not in handler.filters:
                handler.addFilter(_QUIET)
