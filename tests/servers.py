"""Helpers for tests that start real local servers or the CLI in a subprocess (127.0.0.1 only)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subprocess_env(root: Path, *, drop_tracking: bool = False, **extra: str) -> dict[str, str]:
    """This process's environment for a child: the venv's bin first on PATH (mlflow's server execs uvicorn
    through it), this checkout importable, Prefect and MLflow state under ``root``; ``drop_tracking`` also
    removes any MLFLOW_TRACKING_* / PREFECT_API* variable inherited from the caller; ``extra`` wins."""
    env = dict(os.environ)
    if drop_tracking:
        env = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_TRACKING_", "PREFECT_API"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT),
        PREFECT_HOME=str(root / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.sqlite'}",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    env.update(extra)
    return env
