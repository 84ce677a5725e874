"""Reading rasters from several threads: one dataset per thread, an ordered bounded map, a one-pass cache.

A rasterio dataset must not be shared between threads, but GDAL releases the GIL while it decodes, so the
passes that read every block once (reference sampling, extraction, prediction, validation sampling) use a
few threads, each with its own dataset (:class:`ThreadReaders`), and take the results in order with at most
a few blocks in flight per thread (:func:`map_ordered`, :func:`submit_in_order`). Such passes never reuse a
decoded block, so they run in a small GDAL block cache (:func:`one_pass_cache`).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

__all__ = [
    "ThreadReaders",
    "map_ordered",
    "submit_in_order",
    "one_pass_cache",
    "ONE_PASS_CACHE_MB",
]

_T = TypeVar("_T")
_R = TypeVar("_R")

#: GDAL block cache (MB) for passes that decode every block once (sampling, validation sampling, prediction):
#: cached blocks are never reused there, and GDAL's default (5 % of RAM) only raises the peak memory (the
#: full WorldCover tile: 1.4 GB RSS and 2.5x slower with the default, 0.2 GB with 64 MB).
ONE_PASS_CACHE_MB = 64


def one_pass_cache() -> rasterio.Env:
    """A ``rasterio.Env`` with a :data:`ONE_PASS_CACHE_MB` block cache, unless the user set GDAL_CACHEMAX."""
    if "GDAL_CACHEMAX" in os.environ:
        return rasterio.Env()
    return rasterio.Env(GDAL_CACHEMAX=ONE_PASS_CACHE_MB)


class ThreadReaders:
    """One open dataset per thread that reads (a rasterio dataset must not be shared between threads).

    Each thread opens the raster on its first :meth:`read`; :meth:`close` (or leaving the ``with`` block)
    closes every dataset opened. Works alike from a single thread (one dataset) and from a pool.

    Parameters
    ----------
    path : the raster: a local path or a remote spec (``https://``, ``s3://``, ``/vsi...``), which is opened
        through GDAL's network file systems with the remote defaults configured in every thread.
    on_error : turns a GDAL read error into the caller's own exception, as ``on_error(window, exc)``
        (raised ``from None``); without it the ``RasterioIOError`` propagates unchanged.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        on_error: Callable[[Window, RasterioIOError], BaseException] | None = None,
    ) -> None:
        # imported here: lcmodel.sources' collection modules import this module
        from lcmodel.sources.remote import configure_remote_gdal, gdal_path, is_remote, open_options

        self.remote = is_remote(path)
        if self.remote:
            configure_remote_gdal()
        self.path: Path | str = gdal_path(path) if self.remote else Path(path)
        self._options = open_options(path)
        self._on_error = on_error
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[DatasetReader] = []

    def dataset(self) -> DatasetReader:
        """This thread's dataset, opened on first use."""
        ds: DatasetReader | None = getattr(self._local, "ds", None)
        if ds is None:
            ds = rasterio.open(self.path, **self._options)
            self._local.ds = ds
            with self._lock:
                self._opened.append(ds)
        return ds

    def read(self, window: Window, indexes: int | Sequence[int] | None = None) -> np.ndarray:
        """``dataset.read(indexes, window=window)`` with this thread's dataset: (bands, rows, cols) for all
        bands or a list of bands, (rows, cols) for one band index."""
        try:
            return np.asarray(self.dataset().read(indexes, window=window))
        except RasterioIOError as exc:
            if self._on_error is None:
                raise
            raise self._on_error(window, exc) from None

    def close(self) -> None:
        """Close every dataset opened so far (a later :meth:`read` opens again)."""
        with self._lock:
            for ds in self._opened:
                ds.close()
            self._opened.clear()
        self._local = threading.local()

    def __enter__(self) -> ThreadReaders:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def submit_in_order(
    submit: Callable[[_T], Future[_R]], items: Iterable[_T], max_pending: int
) -> Generator[tuple[_T, Future[_R]], None, None]:
    """Call ``submit(item)`` ahead for at most ``max_pending`` items; yield ``(item, future)`` in item order.

    The caller takes each future's result before asking for the next pair, so at most ``max_pending``
    results are in flight (and in memory) at a time. Works with any executor (threads or processes).
    """
    pending: deque[tuple[_T, Future[_R]]] = deque()
    queue = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(pending) < max(1, max_pending):
            try:
                item = next(queue)
            except StopIteration:
                exhausted = True
                break
            pending.append((item, submit(item)))
        if not pending:
            return
        yield pending.popleft()


def map_ordered(
    func: Callable[[_T], _R],
    items: Sequence[_T],
    n_threads: int,
    *,
    ahead: int = 4,
    thread_name_prefix: str = "lcmodel-read",
) -> Generator[_R, None, None]:
    """``map(func, items)`` with ``n_threads`` threads, results in order (in the caller's thread when 1).

    At most ``ahead`` items per thread are in flight. When the caller stops early or ``func`` raises, the
    items not started yet are cancelled and the running ones finished before this returns or re-raises.
    """
    if n_threads <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    pool = ThreadPoolExecutor(max_workers=min(n_threads, len(items)), thread_name_prefix=thread_name_prefix)
    try:
        for _, future in submit_in_order(lambda item: pool.submit(func, item), items, ahead * n_threads):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
