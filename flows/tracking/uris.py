"""Tracking URIs: which store a run goes to, and the URI as it may be logged (no credentials)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from flows.config import FlowConfig

__all__ = ["resolve_tracking_uri", "resolve_uri", "scrub_uri"]

# user:password@ (or a token) between the scheme and the host
_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
# secrets passed as query parameters (?token=..., &access_key=..., &sig=...)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[a-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|sig|signature|credential)[a-z0-9_.-]*)=)"
    r"[^&;#\s]+",
    re.IGNORECASE,
)


def scrub_uri(uri: str) -> str:
    """Remove credentials (``user:password@``, secret query parameters) from a URI before it is logged."""
    return _QUERY_SECRET.sub(r"\g<key>***", _CRED.sub(r"\g<scheme>***@", uri))


def resolve_tracking_uri(cfg: FlowConfig, workdir: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root for new experiments or None to let the server decide)."""
    return resolve_uri(cfg.tracking.uri, workdir)


def resolve_uri(uri: str | None, workdir: Path | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact root) for an explicit URI, else MLFLOW_TRACKING_URI, else ./mlflow.db."""
    workdir = Path(workdir or Path.cwd()).resolve()
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            return uri, (db.parent / "mlartifacts").resolve().as_uri()
        return uri, None
    return f"sqlite:///{workdir / 'mlflow.db'}", (workdir / "mlartifacts").as_uri()
