"""Tracking URIs: which store a run goes to, and the URI as it may be logged (no credentials).

The URI's user info never reaches MLflow: :func:`resolve_uri` hands it to MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD (see :mod:`flows.credentials`), so MLflow neither prints nor stores it.
"""

from __future__ import annotations

import os
from pathlib import Path

from flows.config import FlowConfig
from flows.credentials import scrub_uri, split_credentials

__all__ = ["resolve_tracking_uri", "resolve_uri", "scrub_uri"]


def resolve_tracking_uri(cfg: FlowConfig, workdir: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root for new experiments or None to let the server decide)."""
    return resolve_uri(cfg.tracking.uri, workdir)


def resolve_uri(uri: str | None, workdir: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root) for an explicit URI, else MLFLOW_TRACKING_URI, else ./mlflow.db.

    An HTTP(S) URI's user info is moved to MLflow's variables in ``os.environ`` (:func:`split_credentials`),
    and MLFLOW_TRACKING_URI keeps the URI without it; a secret query parameter is refused (ConfigError).
    """
    workdir = Path(workdir or Path.cwd()).resolve()
    from_env = not uri
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        uri = split_credentials(uri, os.environ)
        if from_env:  # what MLflow and child processes read from now on
            os.environ["MLFLOW_TRACKING_URI"] = uri
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            return uri, (db.parent / "mlartifacts").resolve().as_uri()
        return uri, None
    return f"sqlite:///{workdir / 'mlflow.db'}", (workdir / "mlartifacts").as_uri()
