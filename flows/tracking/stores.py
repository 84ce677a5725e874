"""Read-only commands (``compare``, ``promote``, ``predict --model models:/``) open an existing tracking store.

MLflow creates a new, empty SQLite database for any ``sqlite:///`` path it is given: a mistyped path would
answer "no such experiment" from a database made on the spot, and a file that is not a database ends in
SQLAlchemy's traceback. :func:`require_existing_store` refuses both in one line before MLflow opens it.

A tracking server that does not answer would otherwise cost MLflow's retries (minutes) and then tracebacks;
:func:`require_reachable_server` asks it once, with a short timeout, before any work.

Several processes may share one SQLite store (two flows started at once on a new ``mlflow.db``). MLflow
creates and migrates the tables of a new database when it first opens it, with no lock: the second process
then fails half-way through Alembic's migrations (``CommandError: Online migration expected to match one
row ...``). :func:`open_client` opens the store holding an exclusive ``fcntl.flock`` on ``<db>.lock`` beside
the database, so one process creates and migrates it while the others wait and then find it complete;
:func:`get_or_create_experiment` takes the experiment another process created at the same moment. The lock
file stays (removing a lock file that another process may hold open would defeat the lock); it holds no
data.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.tracking.uris import scrub_uri
from lcmodel.errors import LcmodelError

__all__ = ["TrackingStoreError", "get_or_create_experiment", "open_client", "require_existing_store",
           "require_reachable_server", "sqlite_path", "store_lock"]

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


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` beside a ``sqlite:///`` store's database (other stores: no lock).

    Waits while another process holds it (it creates or migrates the database). In a folder this process
    cannot write, an existing database is opened unlocked (whoever could write it created it); a missing
    folder, or a new database in a read-only one, is one line (:class:`TrackingStoreError`).
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if path.is_file() and not isinstance(exc, FileNotFoundError):
            yield  # a read-only folder: the store exists, created by whoever could write there
            return
        where = f"folder {str(path.parent)!r} does not exist" if not path.parent.is_dir() else (
            f"{str(lock)!r} cannot be created ({exc.strerror})")
        raise TrackingStoreError(f"tracking store {scrub_uri(uri)!r}: {where}; create the folder or point "
                                 "tracking.uri / MLFLOW_TRACKING_URI at a writable place") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def open_client(uri: str) -> MlflowClient:
    """An MLflow client of ``uri`` (tracking and registry), its SQLite database created and migrated under
    :func:`store_lock`, so concurrent processes never migrate one new database at once.

    MLflow keeps the opened store for the rest of the process, so later clients of the same URI find it ready.
    """
    if sqlite_path(uri) is None:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with store_lock(uri):  # the client opens the tracking store, the first search the registry's
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_registered_models(max_results=1)
    return client


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) if missing.

    Another process may create it between the look-up and the creation: its experiment is then used.
    """
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        exp = client.get_experiment_by_name(name)
        if exp is None:  # e.g. a deleted experiment of that name
            raise
        return str(exp.experiment_id)
