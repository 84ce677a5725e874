"""The entry points of a prediction: :func:`predict_raster`, and the same work split across machines
(:func:`prepare_prediction`, :func:`predict_blocks`, :func:`assemble_prediction`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from lcmodel.errors import ConfigError, InputFileError, OutputError, PredictionError
from lcmodel.forest import Predictor
from lcmodel.model_io import ModelBundle
from lcmodel.predict.cog import write_cogs
from lcmodel.predict.executors import iter_blocks, stale_check
from lcmodel.predict.job import PredictionJob, PredictionOptions, locked, prepare_job
from lcmodel.predict.plan import PredictionPlan, overview_factors, window_text
from lcmodel.predict.store import BlockStore, partial_dir
from lcmodel.predict.summary import PredictionSummary, summarize_prediction

__all__ = [
    "predict_raster",
    "prepare_prediction",
    "predict_blocks",
    "assemble_prediction",
]

logger = logging.getLogger(__name__)


def predict_raster(
    bundle: ModelBundle,
    embedding_path: Path | str,
    out_path: Path | str,
    *,
    confidence_path: Path | str | None = None,
    block_size: int | None = None,
    n_jobs: int = 1,
    memory_mb: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    probabilities_path: Path | str | None = None,
    margin_path: Path | str | None = None,
    entropy_path: Path | str | None = None,
    unclassified_below: float | None = None,
    unclassified_value: int | None = None,
    engine: str = "auto",
) -> PredictionSummary:
    """Predict a land-cover map (and optionally a confidence map) for a whole embedding raster.

    Parameters
    ----------
    bundle : the model bundle (:func:`lcmodel.model_io.load_bundle`).
    embedding_path : the embedding raster.
    out_path : the class map COG to write.
    confidence_path : optional confidence COG on the same grid: uint8 0..100 =
        round(100 * highest class probability), nodata 255.
    block_size : window side in pixels (row-strip height for striped rasters); rounded down to a
        multiple of the raster's internal block. None: from ``memory_mb``
        (:func:`choose_block_size`), at most :data:`DEFAULT_MAX_WINDOW` pixels on a side.
    n_jobs : parallel workers (threads for a plain forest, else processes); 1 predicts in this
        process. The output does not depend on it.
    memory_mb : memory budget per window (per worker) in MiB, used when ``block_size`` is None.
    progress : called as ``progress(done, total)`` after each written window.
    probabilities_path : optional COG with one uint8 band per class (model class order), band
        description = class name: ``round(100 * probability)``, nodata 255. Per pixel the bands sum to
        100 up to rounding (at most ``ceil(n_classes / 2)`` away).
    margin_path : optional uint8 COG: ``round(100 * (top-1 minus top-2 probability))``, nodata 255.
    entropy_path : optional uint8 COG: ``round(100 * H / ln(n_classes))`` with ``H = -sum p ln p``
        (0 = certain, 100 = all classes equally likely), nodata 255.
    unclassified_below : when set (0..100), pixels whose highest class probability x 100 is below it get
        the reserved ``unclassified_value`` in the map (they are counted in ``n_unclassified``, not in
        ``class_counts``).
    unclassified_value : the reserved map value; None = the map dtype's maximum (its maximum minus 1
        when that is the nodata value). Must not be a class value or the nodata value.
    engine : ``"auto"`` (for a plain random forest the faster of the compiled forest and scikit-learn,
        timed on the first large block) or ``"sklearn"``. The output does not depend on it.

    Returns
    -------
    PredictionSummary

    Raises
    ------
    InputFileError
        The embedding is missing or not a raster.
    CompatibilityError
        The embedding does not match the bundle (bands, names, CRS, nodata rule); raised before
        any output exists.
    PredictionError
        A window failed (read error, model error, worker crash); names the window. No output is
        left behind and an earlier file at ``out_path`` is kept.
    ConfigError
        ``n_jobs``, ``block_size``, ``memory_mb`` or ``engine`` is out of range, or paths collide.
    OutputError
        An output cannot be written.

    Notes
    -----
    For an estimator other than a plain random forest and ``n_jobs > 1`` the workers are processes
    started with the "spawn" method (a fork would copy GDAL's block cache and open datasets), so a script
    that calls this must keep its top-level code under ``if __name__ == "__main__":``, as for any spawned
    multiprocessing program. Each worker loads the estimator once from a temporary file and opens the
    embedding once. A plain forest's workers are threads of this process sharing the model.
    """
    started = time.perf_counter()
    options = PredictionOptions(
        confidence_path=confidence_path,
        block_size=block_size,
        memory_mb=memory_mb,
        probabilities_path=probabilities_path,
        margin_path=margin_path,
        entropy_path=entropy_path,
        unclassified_below=unclassified_below,
        unclassified_value=unclassified_value,
        engine=engine,
    )
    job = prepare_job(bundle, embedding_path, out_path, options, n_jobs, probe=True)
    n_blocks = len(job.grid.windows)
    n_workers = min(n_jobs, n_blocks)
    predictor = Predictor(bundle.estimator, engine)
    logger.info(
        "predicting %s (%d x %d, %d bands) in %d windows of %s with %d %s worker(s)",
        _shown(embedding_path),
        job.grid.width,
        job.grid.height,
        bundle.n_bands,
        n_blocks,
        job.grid.size_text,
        n_workers,
        "thread" if predictor.gil_free else "process",
    )
    with locked(job):  # one run at a time per output folder (also for the flow)
        store = BlockStore.open(partial_dir(job.out_path), job.fingerprint, verify=stale_check(job.work))
        todo = [i for i in range(n_blocks) if i not in store.done]
        try:
            _predict_into(store, predictor, job, todo, n_workers, progress, n_blocks)
        except InputFileError:
            store.remove()  # an unreadable embedding must change, which invalidates the blocks anyway
            raise
        counts = store.total_counts(n_blocks, len(job.recipe.class_out))
        n_unclassified = _assemble(store, job)
        store.remove()
    return summarize_prediction(
        job, counts, n_unclassified, time.perf_counter() - started, n_workers, n_blocks - len(todo),
        predictor.engine,
    )


def prepare_prediction(
    bundle: ModelBundle, embedding_path: Path | str, out_path: Path | str, options: PredictionOptions
) -> PredictionPlan:
    """Check the inputs, plan the windows and create (or resume) the shared work folder.

    The first of three steps that split :func:`predict_raster` across machines: ``prepare_prediction``
    once, :func:`predict_blocks` for groups of windows (in any order, in parallel, on any machine that
    sees the same paths), :func:`assemble_prediction` once. The map is byte-identical to
    :func:`predict_raster`'s with the same options.

    Parameters
    ----------
    bundle : the model bundle.
    embedding_path : the embedding raster.
    out_path : the class map COG to write (its folder holds the work folder).
    options : output options (the same for all three steps).

    Returns
    -------
    PredictionPlan

    Raises
    ------
    InputFileError, CompatibilityError, ConfigError, OutputError
        As for :func:`predict_raster`, before any block is read.
    """
    job = prepare_job(bundle, embedding_path, out_path, options, 1, probe=True)
    with locked(job):
        store = BlockStore.open(partial_dir(job.out_path), job.fingerprint, verify=stale_check(job.work))
        store.close()
    todo = [i for i in range(len(job.grid.windows)) if i not in store.done]
    logger.info(
        "prediction of %s planned: %d window(s) of %s, %d to predict",
        _shown(embedding_path), len(job.grid.windows), job.grid.size_text, len(todo),
    )
    return PredictionPlan(len(job.grid.windows), todo, job.grid.size, store.folder)


def predict_blocks(
    bundle: ModelBundle,
    embedding_path: Path | str,
    out_path: Path | str,
    indices: list[int],
    options: PredictionOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Predict a group of windows into the shared work folder, as their own part.

    Each call records its blocks in a manifest file of its own (``parts/<first>-<random>.jsonl``), so
    calls running in parallel (Dask tasks, processes on several machines) never append to the same file;
    blocks already finished by any part are skipped. The output folder is not locked: the caller
    (a flow) holds the lock around the whole prediction. Windows are predicted in this process (the
    estimator single-threaded); parallelism comes from running several calls at once.

    Parameters
    ----------
    bundle : the model bundle.
    embedding_path : the embedding raster.
    out_path : the class map COG that :func:`assemble_prediction` will write.
    indices : window indices (from :meth:`PredictionPlan.groups`).
    options : the options given to :func:`prepare_prediction`.
    progress : called as ``progress(done, len(indices))`` after each block.

    Returns
    -------
    int
        Blocks predicted by this call (those already finished are not counted).

    Raises
    ------
    ConfigError
        An index is outside the plan.
    PredictionError
        The work folder was not prepared with these inputs and options, or a window failed.
    InputFileError
        A window of the embedding cannot be read.
    """
    job = prepare_job(bundle, embedding_path, out_path, options, 1)
    n_blocks = len(job.grid.windows)
    bad = [i for i in indices if not 0 <= int(i) < n_blocks]
    if bad:
        raise ConfigError(
            f"window index {bad[0]} is outside the plan of {n_blocks} windows; take the groups from "
            "prepare_prediction(...).groups(n)"
        )
    store = BlockStore.open_part(partial_dir(job.out_path), job.fingerprint, f"{min(indices, default=0):07d}")
    todo = [int(i) for i in indices if int(i) not in store.done]
    _predict_into(store, Predictor(bundle.estimator, options.engine), job, todo, 1, progress, len(indices))
    logger.info("predicted %d block(s) of %d into %s", len(todo), len(indices), store.folder)
    return len(todo)


def assemble_prediction(
    bundle: ModelBundle,
    embedding_path: Path | str,
    out_path: Path | str,
    options: PredictionOptions,
    *,
    started: float | None = None,
    n_jobs: int = 1,
) -> PredictionSummary:
    """Build the COGs from the blocks that :func:`predict_blocks` calls wrote, then remove the work folder.

    Parameters
    ----------
    bundle : the model bundle.
    embedding_path : the embedding raster.
    out_path : the class map COG to write.
    options : the options given to :func:`prepare_prediction`.
    started : ``time.time()`` when the prediction started (for ``elapsed_s``); None = this call's start.
    n_jobs : parallel tasks used, reported in the summary.

    Returns
    -------
    PredictionSummary
        As :func:`predict_raster`'s; the outputs are byte-identical to its.

    Raises
    ------
    PredictionError
        Some windows have no finished block (names the first and how many).
    OutputError
        An output cannot be written.
    """
    wall_start = time.time() if started is None else started
    job = prepare_job(bundle, embedding_path, out_path, options, 1)
    windows = job.grid.windows
    with locked(job):
        store = BlockStore.open(partial_dir(job.out_path), job.fingerprint)
        store.close()
        missing = [i for i in range(len(windows)) if i not in store.done]
        if missing:
            raise PredictionError(
                f"{len(missing)} of {len(windows)} blocks of {str(job.out_path)!r} are not predicted (first: "
                f"block {missing[0] + 1} at window {window_text(windows[missing[0]])}); run predict_blocks "
                "for them, or predict_raster, which resumes"
            )
        counts = store.total_counts(len(windows), len(job.recipe.class_out))
        n_unclassified = _assemble(store, job)
        store.remove()
    # the groups chose their engine each: report the option ("auto" or "sklearn")
    return summarize_prediction(job, counts, n_unclassified, time.time() - wall_start, n_jobs, 0, options.engine)


def _predict_into(
    store: BlockStore,
    predictor: Predictor,
    job: PredictionJob,
    todo: list[int],
    n_workers: int,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> None:
    """Predict the windows ``todo`` into the store (which is closed at the end); ``progress`` counts from
    the ``total - len(todo)`` blocks finished before."""
    done_before = total - len(todo)
    if progress is not None and done_before:
        progress(done_before, total)
    try:
        with contextlib.closing(iter_blocks(predictor, job.work, todo, n_workers, store.folder)) as blocks:
            for done, (i, block) in enumerate(blocks, start=done_before + 1):
                # uncertainty products too, so a resume keeps them
                store.add(i, block.arrays, block.counts, block.input_digest)
                if progress is not None:
                    progress(done, total)
    finally:
        store.close()


def _assemble(store: BlockStore, job: PredictionJob) -> int:
    """Write the finished blocks into the COGs (:func:`lcmodel.predict.cog.write_cogs`), with write failures
    as :class:`OutputError`; returns the number of pixels marked "unclassified".

    Blocks are stored as the embedding holds them; for a south-up embedding each is flipped into its mirrored
    window here, so the outputs are north-up, pixel for pixel the source grid."""
    windows = job.grid.windows
    o = job.orientation
    blocks = (
        (o.window(window), {k: o.array(v) for k, v in store.load(i).items()}) for i, window in enumerate(windows)
    )
    try:
        return write_cogs(
            job.layers, job.profile, store.folder, blocks, overview_factors(job.grid.width, job.grid.height)
        )
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(
            f"could not write {str(job.out_path)!r} ({exc.strerror or str(exc).splitlines()[0]}); "
            f"check free space and permissions, then rerun: finished blocks are kept in {str(store.folder)!r}"
        ) from None


def _shown(path: Path | str) -> str:
    """``path`` for a log line (a remote URL without signature or token parameters)."""
    from lcmodel.sources.remote import redact  # here: lcmodel.sources may import the predict package

    return redact(path)
