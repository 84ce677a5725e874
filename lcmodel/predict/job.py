"""What a prediction derives from its inputs and options before any block is read (:class:`PredictionJob`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lcmodel.band_stats import check_embedding
from lcmodel.compatibility import check_compatible
from lcmodel.errors import ConfigError
from lcmodel.forest import ENGINES
from lcmodel.geo import Orientation, grid_orientation, pixel_area_m2
from lcmodel.io import open_raster, output_lock
from lcmodel.model_io import ModelBundle
from lcmodel.predict.classify import BlockRecipe
from lcmodel.predict.cog import output_profile
from lcmodel.predict.executors import BlockWork
from lcmodel.predict.layers import OutputLayer, prediction_layers
from lcmodel.predict.plan import Grid, output_dtype
from lcmodel.predict.store import fingerprint
from lcmodel.uncertainty import uncertainty_spec

__all__ = ["PredictionOptions", "PredictionJob", "prepare_job", "check_arguments", "locked"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionOptions:
    """The output options of a prediction, as for :func:`lcmodel.predict.predict_raster` (picklable, for
    remote tasks).

    :func:`~lcmodel.predict.prepare_prediction`, :func:`~lcmodel.predict.predict_blocks` and
    :func:`~lcmodel.predict.assemble_prediction` must be given the same options: they are part of the work
    folder's fingerprint.
    """

    confidence_path: Path | str | None = None
    block_size: int | None = None
    memory_mb: int = 1024
    probabilities_path: Path | str | None = None
    margin_path: Path | str | None = None
    entropy_path: Path | str | None = None
    unclassified_below: float | None = None
    unclassified_value: int | None = None
    engine: str = "auto"  # not in the fingerprint: the blocks are the same bits with either engine


@dataclass(frozen=True)
class PredictionJob:
    """Everything a prediction derives from its inputs and options before any block is read.

    Attributes
    ----------
    work : the embedding, the windows and how a block is classified (what the executors get).
    grid : raster size and windows.
    layers : the outputs, the class map first.
    profile : the tiled GeoTIFF profile of the outputs (:func:`lcmodel.predict.cog.output_profile`), north-up.
    pixel_area : one pixel's area in m^2 (projected CRS), else None.
    fingerprint : of the work folder (:func:`lcmodel.predict.store.fingerprint`).
    orientation : the embedding's grid against its north-up grid (blocks are read and stored as the file
        holds them, and written flipped into the mirrored window of the north-up outputs).
    """

    work: BlockWork
    grid: Grid
    layers: tuple[OutputLayer, ...]
    profile: dict[str, Any]
    pixel_area: float | None
    fingerprint: str
    orientation: Orientation

    @property
    def recipe(self) -> BlockRecipe:
        return self.work.recipe

    @property
    def out_path(self) -> Path:
        return self.layers[0].path

    @property
    def conf_out(self) -> Path | None:
        return next((layer.path for layer in self.layers if layer.name == "confidence"), None)

    @property
    def extra_paths(self) -> dict[str, Path]:
        return {layer.name: layer.path for layer in self.layers[1:] if layer.name != "confidence"}


def prepare_job(
    bundle: ModelBundle,
    embedding_path: Path | str,
    out_path: Path | str,
    o: PredictionOptions,
    n_jobs: int,
    *,
    probe: bool = False,
) -> PredictionJob:
    """Check arguments, the model against the raster, and plan the windows (no block is read).

    ``probe``: also read a few small windows and check them against the model's training statistics
    (:func:`lcmodel.band_stats.check_embedding`: a band nodata everywhere is an error, shifted or rescaled
    bands a warning).
    """
    out_path = Path(out_path)
    conf_out = Path(o.confidence_path) if o.confidence_path is not None else None
    check_arguments(embedding_path, out_path, conf_out, o.block_size, n_jobs, o.memory_mb, o.engine)
    classes = np.asarray(bundle.class_values, dtype=np.int64)
    dtype, nodata = output_dtype(classes)
    # --- uncertainty products (lcmodel.uncertainty): spec checked before any work
    uncertainty, extra_paths = uncertainty_spec(
        classes, dtype, nodata, out_path, conf_out,
        o.probabilities_path, o.margin_path, o.entropy_path, o.unclassified_below, o.unclassified_value,
    )
    unknown = sorted(set(classes.tolist()) - set(bundle.class_table.values))
    if unknown:
        logger.warning("model classes %s are not in the class table; they get no name", unknown)

    with open_raster(embedding_path, "embedding raster") as src:
        orientation = grid_orientation(
            src.transform, src.width, src.height, name=f"embedding raster {str(embedding_path)!r}"
        )
        rule = check_compatible(bundle, src)
        if probe:
            from lcmodel.sources.remote import redact  # here: lcmodel.sources may import the predict package

            check_embedding(src, rule, bundle.band_names, bundle.source_indexes, bundle.band_stats,
                            raster=redact(embedding_path))
        grid = Grid.of_raster(src, o.block_size, o.memory_mb, len(classes), n_bands=bundle.n_bands)
        profile = output_profile(src, grid.windows[0])
        pixel_area = pixel_area_m2(src.crs, src.transform)
    class_out = classes.astype(dtype)
    recipe = BlockRecipe(rule, class_out, nodata, uncertainty, confidence=conf_out is not None)
    # only the bands the model uses are read; the nodata rule applies to those
    work = BlockWork(embedding_path, grid.windows, recipe,
                     None if bundle.uses_all_bands else tuple(bundle.source_indexes))
    layers = prediction_layers(
        out_path, conf_out, extra_paths, class_out, nodata, bundle.class_table, uncertainty.unclassified_value
    )
    return PredictionJob(
        work, grid, layers, profile, pixel_area, fingerprint(bundle, work, profile), orientation
    )


@contextlib.contextmanager
def locked(job: PredictionJob) -> Iterator[None]:
    """Hold the lock of every output folder of a prediction."""
    with contextlib.ExitStack() as locks:
        conf_out = job.conf_out
        folders = {job.out_path.parent.resolve(), *([conf_out.parent.resolve()] if conf_out else [])}
        for folder in sorted(folders):
            locks.enter_context(output_lock(folder))
        yield


def check_arguments(
    embedding_path: Path | str,
    out_path: Path,
    conf_out: Path | None,
    block_size: int | None,
    n_jobs: int,
    memory_mb: int,
    engine: str = "auto",
) -> None:
    """Options out of range or output paths that collide, as a :class:`ConfigError` (before any work)."""
    if n_jobs < 1:
        raise ConfigError(f"n_jobs={n_jobs} is not allowed; use 1 (in-process) or more workers")
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is not an engine; use one of {', '.join(ENGINES)}")
    if block_size is not None and block_size < 1:
        raise ConfigError(
            f"block_size={block_size} is not allowed; use a positive size or None (from memory_mb)"
        )
    if memory_mb < 1:
        raise ConfigError(f"memory_mb={memory_mb} is not allowed; use a positive budget in MiB")
    if conf_out is not None and conf_out.resolve() == out_path.resolve():
        raise ConfigError(
            f"confidence_path equals the map path {str(out_path)!r}; give two different files"
        )
    from lcmodel.sources.remote import is_remote  # here: lcmodel.sources may import the predict package

    outputs = {out_path.resolve(), conf_out.resolve() if conf_out is not None else None}
    if not is_remote(embedding_path) and Path(embedding_path).resolve() in outputs:
        raise ConfigError(
            f"an output path equals the embedding {str(embedding_path)!r}; write elsewhere"
        )
