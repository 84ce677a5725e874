"""Read-only commands (``compare``, ``promote``, ``predict --model models:/``) open an existing tracking store.

MLflow creates a new, empty SQLite database for any ``sqlite:///`` path it is given: a mistyped path would
answer "no such experiment" from a database made on the spot, and a file that is not a database ends in
SQLAlchemy's traceback. :func:`require_existing_store` refuses both in one line before MLflow opens it.

A tracking server that does not answer would otherwise cost MLflow's retries (minutes) and then tracebacks;
:func:`require_reachable_server` asks it once, with a short timeout, before any work.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from flows.tracking.uris import scrub_uri
from lcmodel.errors import LcmodelError

__all__ = ["TrackingStoreError", "require_existing_store", "require_reachable_server", "sqlite_path"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


class TrackingStoreError(LcmodelError, OSError):
    """The tracking store a read-only command names does not exist or is not a tracking database."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in {"", ":memory:"} else Path(path)


def require_existing_store(uri: str) -> None:
    """Refuse a ``sqlite:///`` store whose file is missing or is not an SQLite database (other stores pass)."""
    path = sqlite_path(uri)
    if path is None:
        return
    shown = scrub_uri(uri)
    if not path.exists():
        raise TrackingStoreError(
            f"tracking store {shown!r}: {str(path)!r} does not exist (this command reads an existing store and "
            "never creates one); check --tracking-uri / MLFLOW_TRACKING_URI")
    if not path.is_file():
        raise TrackingStoreError(f"tracking store {shown!r}: {str(path)!r} is not a file; give the path of the "
                                 "tracking database (--tracking-uri sqlite:///PATH)")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise TrackingStoreError(f"tracking store {shown!r}: {str(path)!r} cannot be read ({exc.strerror}); "
                                 "check its permissions") from None
    if head != _SQLITE_MAGIC:
        raise TrackingStoreError(
            f"tracking store {shown!r}: {str(path)!r} is not an SQLite database; give the path of the tracking "
            "database (--tracking-uri sqlite:///PATH, e.g. the mlflow.db a run wrote)")


def require_reachable_server(uri: str, timeout_s: float = 10.0) -> None:
    """Refuse an ``http(s)://`` tracking server that does not answer within ``timeout_s`` (other stores pass).

    Any HTTP answer, an error status included (e.g. 401 from a server with authentication), counts as
    reachable: only a refused connection, an unknown host or a timeout is refused.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):  # noqa: S310 (http(s) only)
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingStoreError(
            f"tracking server {scrub_uri(uri)!r} does not answer ({reason}); start it, or point tracking.uri / "
            "MLFLOW_TRACKING_URI at a running server (or at sqlite:///mlflow.db for a local file)") from None
