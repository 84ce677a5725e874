"""How the console commands talk to their user: progress lines, warnings, one-line errors, and stopping.

- :class:`Progress`: a bar in a terminal, a line every 10 % otherwise;
- :func:`show_warning`: a library warning (:class:`~lcmodel.errors.LcmodelWarning`) as one ``warning:`` line;
- :class:`OneLineErrorGroup`: a user's mistake (:class:`~lcmodel.errors.LcmodelError`) as one ``error:`` line
  and exit 2; Ctrl-C or SIGTERM (or an error a library raised in place of one, see
  :func:`lcmodel.processes.interruption`) as one line and exit 130 or 143;
- :func:`run_command`: a console command whose child processes end with it (:mod:`lcmodel.processes`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from lcmodel.errors import LcmodelError, LcmodelWarning
from lcmodel.processes import (
    Terminated,
    guard_children,
    interrupted_exit_code,
    interruption,
    terminate_as_interrupt,
)

__all__ = ["OneLineErrorGroup", "Progress", "candidate_printer", "run_command", "show_warning"]

log = logging.getLogger("lcmodel.cli")


class Progress:
    """A progress callback ``(done, total)``: a bar in a terminal, a plain line every 10 % otherwise."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        frac = done / total
        elapsed = time.monotonic() - self.start
        if self.tty:
            width = 30
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            end = "\n" if done >= total else ""
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {elapsed:6.1f}s{end}")
            self.stream.flush()
        else:
            tenth = int(frac * 10)
            if tenth != self._last_tenth or done >= total:
                self._last_tenth = tenth
                self.stream.write(f"{self.label}: {done}/{total} ({frac:.0%}, {elapsed:.1f}s)\n")
                self.stream.flush()


def candidate_printer() -> Callable[[dict[str, Any]], None]:
    """The tuning callback of the CLI: each candidate as a debug log line."""

    def show(info: dict[str, Any]) -> None:
        log.debug("candidate %s", info)

    return show


def show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    if issubclass(category, LcmodelWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


class OneLineErrorGroup(click.Group):
    """Turns LcmodelError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LcmodelError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (lcmodel.processes.terminate_as_interrupt)
            self._interrupted(ctx, exc)
        except BaseException as exc:  # an error raised in place of Ctrl-C or SIGTERM (or while unwinding from
            if (stop := interruption(exc)) is None:  # one), or Prefect's TerminationSignal; else not ours
                raise
            self._interrupted(ctx, stop)

    @staticmethod
    def _interrupted(ctx: click.Context, exc: KeyboardInterrupt) -> None:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
        click.echo(f"error: {how}; what was finished is kept: rerun the same command to go on", err=True)
        ctx.exit(interrupted_exit_code(exc))


def run_command(group: click.Group) -> None:
    """Run a console command: its child processes end with it, and SIGTERM unwinds as Ctrl-C does
    (:mod:`lcmodel.processes`)."""
    guard_children()
    terminate_as_interrupt()
    group(prog_name="lcmodel")
