"""Small I/O helpers shared by the stages: atomic outputs, raster opening with clear errors, hashing."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from lcmodel.errors import InputFileError, OutputError

# moved to lcmodel.rasterio_io; still importable from here for lcmodel.reference until it is converted

__all__ = [
    "atomic_path",
    "open_raster",
    "sha256_file",
    "file_digest",
    "ensure_output_dir",
    "json_ready",
    "write_json",
    "output_lock",
    "remove_stale_temporaries",
    "is_temporary",
    "LOCK_NAME",
]


def ensure_output_dir(path: Path | str) -> Path:
    """Create an output folder (and parents) and check that it is writable."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"output folder {str(path)!r} cannot be created ({exc.strerror}); choose a writable output.dir"
        ) from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"output folder {str(path)!r} is not writable; choose a writable output.dir")
    return path


@contextlib.contextmanager
def atomic_path(dest: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it to ``dest`` only if the block succeeds.

    The temporary file lives in the same folder (same filesystem), so the final rename is atomic and a
    crash or an error leaves no half-written ``dest`` (and any previous ``dest`` intact).
    """
    dest = Path(dest)
    ensure_output_dir(dest.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=suffix if suffix is not None else dest.suffix, dir=dest.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp creates 0600; give the output the usual umask-based mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        raise OutputError(
            f"could not write {str(dest)!r}: {exc.strerror or exc}; check free space and permissions"
        ) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_raster(path: Path | str, what: str = "raster") -> rasterio.io.DatasetReader:
    """Open a raster for reading, turning GDAL's errors into one clear line.

    ``what`` names the role of the file in messages ("embedding raster", "reference raster"). A remote spec
    (``https://``, ``s3://``, ``gs://``, ``/vsi...``: :func:`lcmodel.sources.remote.is_remote`) is opened
    through GDAL's network file systems with the remote defaults configured
    (:func:`lcmodel.sources.remote.open_remote`).
    """
    # imported here: lcmodel.sources' collection modules import this module
    from lcmodel.sources.remote import is_remote, open_remote

    if is_remote(path):
        return open_remote(path, what)  # type: ignore[no-any-return]
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{what} {str(path)!r} does not exist; check the path in the config")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        detail = str(exc).split("\n")[0]
        raise InputFileError(
            f"{what} {str(path)!r} is not a readable raster ({detail}); give a GeoTIFF or another GDAL format"
        ) from None


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_DIGESTS: dict[tuple[str, int, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's content, memoised per process for an unchanged file (path, size, mtime, inode)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _DIGESTS_LOCK:
        known = _DIGESTS.get(key)
    if known is not None:
        return known
    digest = sha256_file(path)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest
    return digest


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON accepts: NaN/inf -> None, numpy scalars -> Python, Path -> str."""
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as strict JSON (no NaN), atomically."""
    text = json.dumps(json_ready(obj), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


# --- output lock (reliability) -------------------------------------------------------------------

#: Name of the lock file an lcmodel run holds in its output folder while it writes there.
LOCK_NAME = ".lcmodel.lock"
_HELD: dict[Path, list[Any]] = {}  # folder -> [fd, depth]: re-entrant within one process
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def output_lock(folder: Path | str) -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on an output folder for the duration of a run.

    The lock is ``fcntl.flock`` on ``<folder>/.lcmodel.lock``, which records the holder's pid and start
    time. It is re-entrant within one process (``pipeline.run`` locks the folder, then ``predict_raster``
    locks it again), released by the kernel when the process dies (even on SIGKILL), and the lock file
    is removed on release. A second process gets an :class:`OutputError` at once instead of waiting. The
    lock file of a dead run (left by a SIGKILL) is taken over, and the temporary files a dead run left
    are removed (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    folder : the output folder (created when missing).

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    OutputError
        Another run holds the folder, or the folder cannot be created.
    """
    folder = ensure_output_dir(folder).resolve()
    lock_path = folder / LOCK_NAME
    with _HELD_GUARD:
        held = _HELD.get(folder)
        if held is not None:
            held[1] += 1
    if held is not None:
        try:
            yield lock_path
        finally:
            with _HELD_GUARD:
                held[1] -= 1
        return
    fd = _acquire(lock_path, folder)
    with _HELD_GUARD:
        _HELD[folder] = [fd, 1]
    try:
        remove_stale_temporaries(folder)  # no live run holds the folder now: theirs are a dead run's
        yield lock_path
    finally:
        with _HELD_GUARD:
            entry = _HELD[folder]
            entry[1] -= 1
            release = entry[1] == 0
            if release:
                del _HELD[folder]
        if release:
            with contextlib.suppress(OSError):
                lock_path.unlink()  # while still locked: a waiter re-checks the inode (see _acquire)
            os.close(fd)


def _acquire(lock_path: Path, folder: Path) -> int:
    """Open and flock the lock file; retry when it was unlinked between our open and our flock."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(
                f"output folder {str(folder)!r} cannot hold a lock file ({exc.strerror}); "
                "choose a writable output.dir"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise OutputError(
                f"output folder {str(folder)!r} is in use by another run ({holder}); "
                "wait for it or choose another output.dir"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file after we opened it: lock the new one
            os.close(fd)
            continue
        started = datetime.now(UTC).replace(microsecond=0).isoformat()
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {started}\n".encode())
        return fd


def _lock_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


# --- temporaries of a dead run -------------------------------------------------------------------

#: what :func:`atomic_path` names a temporary: ``.<name>.<8 characters of mkstemp><suffix of name>``
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?")
#: lcmodel's state folder inside an output folder (stage records, Prefect's results)
_STATE_DIR = ".lcmodel"


def is_temporary(path: Path | str) -> bool:
    """Whether ``path`` is named as :func:`atomic_path`'s temporaries are (``.map.tif.k3j9x0qz.tif``)."""
    m = _TEMPORARY.fullmatch(Path(path).name)
    return m is not None and (m["suffix"] or "") == Path(m["name"]).suffix


def remove_stale_temporaries(folder: Path | str) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` a dead run left in ``folder`` (and its ``.lcmodel``
    state folder); the removed paths.

    Call it holding the folder's :func:`output_lock` (which does), so that no live run writes there. A file
    some live process has open (a command that takes no lock, such as ``validation-sample``) is kept.
    Prediction's resume state (``.<map>.partial/``) is a folder, not a temporary: it is kept.
    """
    folder = Path(folder)
    state = folder / _STATE_DIR
    candidates = [p for p in (*folder.iterdir(), *(state.rglob("*") if state.is_dir() else ()))
                  if is_temporary(p) and p.is_file() and not p.is_symlink()]
    if not candidates:
        return []
    busy = _open_files()
    removed = []
    for path in candidates:
        if path.resolve() not in busy:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _open_files() -> set[Path]:
    """Every file some process of this user has open (Linux ``/proc``; empty elsewhere)."""
    found: set[Path] = set()
    with contextlib.suppress(OSError):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        found.add(Path(os.readlink(f"/proc/{pid}/fd/{fd}")))
    return found
