"""Running the blocks of a prediction: in this process, in threads, or in worker processes; results in order.

With one worker the windows are read and classified in the calling thread. With more, each worker reads
its own windows with its own dataset: for a plain forest by threads sharing one model (both engines of
:class:`lcmodel.forest.Predictor` release the GIL in the tree walk), for other estimators by worker
processes started with "spawn" (each loading the model once). The results come back in window order with
at most 2 windows per worker in flight, so the output is identical for any number of workers and the memory
is bounded. Any failure stops the run with an error naming its window.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from lcmodel.errors import InputFileError, LcmodelError, PredictionError
from lcmodel.forest import Predictor
from lcmodel.predict.classify import BlockRecipe, ClassifiedBlock, block_digest
from lcmodel.predict.plan import window_text
from lcmodel.processes import die_with_parent
from lcmodel.rasterio_io import ONE_PASS_CACHE_MB, ThreadReaders, one_pass_cache, submit_in_order

__all__ = ["BlockWork", "iter_blocks", "block_error", "stale_check"]

#: What :func:`iter_blocks` yields: the window index and its classified block.
BlockResults = Generator[tuple[int, ClassifiedBlock], None, None]


@dataclass(frozen=True)
class BlockWork:
    """Where the blocks come from and how they are classified (picklable: sent whole to worker processes).

    Attributes
    ----------
    embedding_path : the embedding raster.
    windows : every window of the prediction (:class:`lcmodel.predict.plan.Grid`); blocks are named by index.
    recipe : how a block is classified (:class:`lcmodel.predict.classify.BlockRecipe`).
    band_indexes : the 1-based bands read (the model's ``band_indexes``); None = every band.
    """

    embedding_path: Path | str
    windows: tuple[Window, ...]
    recipe: BlockRecipe
    band_indexes: tuple[int, ...] | None = None

    def read(self, readers: ThreadReaders, index: int) -> np.ndarray:
        """The raw (bands, rows, cols) block of window ``index`` (the bands used only), with this thread's dataset."""
        indexes = list(self.band_indexes) if self.band_indexes is not None else None
        return readers.read(self.windows[index], indexes)

    def classify(
        self, predictor: Callable[[np.ndarray], np.ndarray], readers: ThreadReaders, index: int
    ) -> ClassifiedBlock:
        """Read window ``index`` with this thread's dataset and classify it (with the raw block's digest)."""
        raw = self.read(readers, index)
        return replace(self.recipe.classify(predictor, raw), input_digest=block_digest(raw))


def stale_check(work: BlockWork) -> Callable[[dict[int, str | None]], list[int]] | None:
    """For :meth:`lcmodel.predict.store.BlockStore.open`: the finished blocks whose embedding window no longer
    has the digest recorded when they were predicted (read again in this thread: about 16 times cheaper than
    predicting them). None for a remote embedding, whose identity (ETag, size) is in the fingerprint instead.

    The returned function raises :class:`InputFileError` when a window cannot be read.
    """
    from lcmodel.sources.remote import is_remote  # here: lcmodel.sources' collection modules import this module

    if is_remote(work.embedding_path):
        return None

    def stale(recorded: dict[int, str | None]) -> list[int]:
        out: list[int] = []
        with one_pass_cache(), ThreadReaders(work.embedding_path) as readers:
            for i in sorted(recorded):
                try:
                    digest = block_digest(work.read(readers, i))
                except Exception as exc:  # re-raised: names the block
                    raise block_error(work.windows[i], i, exc, work.embedding_path) from exc
                if digest != recorded[i]:
                    out.append(i)
        return out

    return stale


def iter_blocks(
    predictor: Predictor, work: BlockWork, todo: list[int], n_workers: int, work_dir: Path
) -> BlockResults:
    """Yield ``(index, block)`` for the windows ``todo``, in that order.

    ``n_workers`` 1 (or a single window) classifies in this thread; otherwise threads for a GIL-free
    predictor, else worker processes (the estimator is saved once to ``work_dir``, removed at the end).

    Raises
    ------
    InputFileError
        A window of the embedding cannot be read (names the block and window).
    PredictionError
        A window failed otherwise, or a worker process died.
    """
    with one_pass_cache():  # every block is decoded once: a large GDAL cache only raises the peak memory
        if n_workers == 1 or len(todo) <= 1:
            yield from _in_this_thread(predictor, work, todo)
        elif predictor.gil_free:
            yield from _in_threads(predictor, work, todo, n_workers)
        else:
            yield from _in_processes(predictor, work, todo, n_workers, work_dir)


def _in_this_thread(predictor: Predictor, work: BlockWork, todo: list[int]) -> BlockResults:
    with _single_threaded(predictor.estimator), ThreadReaders(work.embedding_path) as readers:
        for i in todo:
            try:
                block = work.classify(predictor, readers, i)
            except Exception as exc:  # re-raised: any failure stops the run, naming the block
                raise block_error(work.windows[i], i, exc, work.embedding_path) from exc
            yield i, block


def _in_threads(predictor: Predictor, work: BlockWork, todo: list[int], n_workers: int) -> BlockResults:
    """Threads sharing one model: both engines release the GIL in the tree walk. (No _single_threaded here:
    a forest's Predictor calls single-threaded copies, never the shared estimator.)"""
    readers = ThreadReaders(work.embedding_path)  # one dataset per thread: rasterio datasets are not thread-safe
    threads = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="lcmodel-predict")
    try:
        yield from _in_order(
            threads, lambda k: threads.submit(work.classify, predictor, readers, k), work, todo, n_workers
        )
    finally:
        readers.close()  # after _in_order has shut the threads down


def _in_processes(
    predictor: Predictor, work: BlockWork, todo: list[int], n_workers: int, work_dir: Path
) -> BlockResults:
    """Worker processes (estimators other than a plain forest), each loading the model and opening the
    embedding once."""
    model_file = work_dir / "estimator.joblib"
    joblib.dump(predictor.estimator, model_file)  # once; each worker loads it in its initializer
    try:
        executor = ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=get_context("spawn"),  # no fork of a process holding GDAL caches and handles
            initializer=_worker_init,
            initargs=(str(model_file), work),
        )
        yield from _in_order(executor, lambda k: executor.submit(_worker_predict, k), work, todo, n_workers)
    finally:
        model_file.unlink(missing_ok=True)


def _in_order(
    executor: Executor,
    submit: Callable[[int], Future[ClassifiedBlock]],
    work: BlockWork,
    todo: list[int],
    n_workers: int,
) -> BlockResults:
    """Submit window ``k`` with ``submit(k)`` for the windows ``todo``, at most 2 per worker ahead; yield the
    results in that order. The executor is shut down (pending windows cancelled) when this ends."""
    try:
        for i, future in submit_in_order(submit, todo, 2 * n_workers):  # bounded memory
            try:
                block = future.result()
            except BrokenProcessPool as exc:
                raise PredictionError(
                    f"a worker process died while predicting block {i + 1} at window "
                    f"{window_text(work.windows[i])}; it may have run out of memory (lower n_jobs or "
                    "memory_mb), or the calling script lacks an `if __name__ == '__main__':` "
                    "guard (needed for n_jobs > 1)"
                ) from exc
            except Exception as exc:  # re-raised: any failure stops the run, naming the block
                raise block_error(work.windows[i], i, exc, work.embedding_path) from exc
            yield i, block
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def block_error(
    window: Window, index: int, exc: BaseException, embedding_path: Path | str | None = None
) -> LcmodelError:
    """The error that stops a run when block ``index`` failed: an unreadable embedding is an
    :class:`InputFileError`, anything else a :class:`PredictionError`; both name the block and window."""
    # imported here: lcmodel.sources' collection modules import this module
    from lcmodel.sources.remote import redact, safe_detail

    cause = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, RasterioIOError) and embedding_path is not None:
        if exc.__cause__ is not None and str(exc.__cause__):  # GDAL's own reason, when chained
            cause = str(exc.__cause__)
        cause = safe_detail(embedding_path, cause or str(exc))
        return InputFileError(
            f"embedding raster {redact(embedding_path)!r} could not be read in block {index + 1} at window "
            f"{window_text(window)} ({cause}); the file may be truncated or corrupt: check it with "
            "gdalinfo -checksum and export it again"
        )
    return PredictionError(
        f"prediction failed in block {index + 1} at window {window_text(window)}: "
        f"{type(exc).__name__}: {cause}; check the embedding at that window and the model, "
        "then rerun"
    )


def _n_jobs_params(estimator: Any) -> dict[str, Any]:
    """Every ``n_jobs`` parameter of an estimator, nested ones included (``step__n_jobs``)."""
    if not hasattr(estimator, "get_params"):
        return {}
    params = estimator.get_params(deep=True)
    return {k: v for k, v in params.items() if k.split("__")[-1] == "n_jobs"}


@contextlib.contextmanager
def _single_threaded(estimator: Any) -> Iterator[Any]:
    """Set every ``n_jobs`` of the estimator to 1 for the duration, then restore them."""
    saved = _n_jobs_params(estimator)
    try:
        if saved:
            estimator.set_params(**{k: 1 for k in saved})
        yield estimator
    finally:
        if saved:
            estimator.set_params(**saved)


# --- worker processes (estimators other than a plain forest) -----------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(model_file: str, work: BlockWork) -> None:
    """Load the model once per worker (single-threaded); the embedding is opened on the first window. The
    worker ends when this process does (:func:`lcmodel.processes.die_with_parent`)."""
    die_with_parent()
    os.environ.setdefault("GDAL_CACHEMAX", str(ONE_PASS_CACHE_MB))  # before GDAL's first read here
    estimator = joblib.load(model_file, mmap_mode="r")
    jobs = _n_jobs_params(estimator)
    if jobs:
        estimator.set_params(**{k: 1 for k in jobs})
    _WORKER.update(predictor=Predictor(estimator, "sklearn"), readers=ThreadReaders(work.embedding_path), work=work)


def _worker_predict(index: int) -> ClassifiedBlock:
    """Read and classify window ``index`` in a worker process."""
    work: BlockWork = _WORKER["work"]
    return work.classify(_WORKER["predictor"], _WORKER["readers"], index)
