"""``predict_map`` for a tile collection: each tile on its own grid and CRS, then mosaics, STAC, one summary.

Three steps, which the plain stage runs in turn and the Prefect flow runs as one task per tile:

1. :func:`tile_jobs`: one :class:`TileJob` per tile of the manifest, in its order: the tile's output folder
   ``OUTPUT/tiles/<stem>/`` (:mod:`lcmodel.tilemaps.layout`) and a fingerprint of everything its map depends
   on (the tile's header and content identity, the model bundle's SHA-256, the prediction settings that shape
   a map, lcmodel's code version). The model must fit every tile (:func:`lcmodel.compatibility.bundle_for_tile`:
   tiles in another UTM zone than the bundle's CRS are the collection's own), checked before any tile.
2. :func:`predict_tile`: :func:`lcmodel.predict.predict_raster` of one tile into ``map.tif`` (+ ``confidence.tif``
   and the optional layers: the names of a single-file run) and its ``prediction.json`` with the fingerprint
   and the files' digests. A tile whose ``prediction.json`` has this fingerprint and whose files still hold
   those digests is not predicted again; a tile killed half-way resumes its finished blocks (BlockStore).
3. :func:`finish_tiles`: class counts with each location counted once (:mod:`lcmodel.tilemaps.counts`), the
   mosaics (``prediction.mosaic``: ``vrt`` one VRT per CRS, ``cog`` also ``OUTPUT/map.tif`` in
   ``prediction.mosaic_crs``), the STAC catalog ``OUTPUT/stac/``, ``OUTPUT/prediction.json`` (per-tile and
   total counts and areas) and the stage's :class:`~lcmodel.pipeline.artifacts.Prediction`.

The run's "main" map (``Prediction.map``, ``map_path`` in the summary) is the COG mosaic with ``mosaic: cog``,
the VRT of the collection's CRS with ``vrt``, the first tile's map with ``none``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcmodel.io import file_digest, write_json
from lcmodel.model_io import ModelBundle
from lcmodel.pipeline.artifacts import Artifact, Model, Prediction, artifact, digest_of
from lcmodel.pipeline.declare import lcmodel_version
from lcmodel.pipeline.map_outputs import prediction_options, summary_to_dict
from lcmodel.pipeline.paths import Progress, RunPaths
from lcmodel.pipeline.settings import PredictSettings
from lcmodel.sources import Collection, Tile, describe_tile
from lcmodel.tilemaps import tile_stems

__all__ = ["TileJob", "tile_jobs", "check_tiles", "predict_tile", "finish_tiles", "predict_collection"]

log = logging.getLogger(__name__)

_LAYERS = ("map", "confidence", "probabilities", "margin", "entropy")


@dataclass(frozen=True)
class TileJob:
    """One tile of a collection to predict (picklable: a flow sends it to a worker).

    Attributes
    ----------
    index : position in the collection (earlier tiles win where tiles overlap).
    stem : the tile's output folder name (``OUTPUT/tiles/<stem>/``).
    tile : the embedding tile (its manifest entry).
    root : the run's output folder.
    collection_crs : the WKTs of the collection's CRSs (the CRSs the model applies to).
    fingerprint : of everything the tile's map depends on.
    """

    index: int
    stem: str
    tile: Tile
    root: Path
    collection_crs: tuple[str, ...]
    fingerprint: str

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.root).tile(self.stem)


def tile_jobs(settings: PredictSettings, model: Model, collection: Collection, out: Path) -> list[TileJob]:
    """The tiles to predict, in the collection's order (no file is read)."""
    keyed = {k: v for k, v in settings.key_values().items() if k not in PredictSettings.collection_only}
    version = lcmodel_version()
    crss = tuple(c.to_wkt() for c in collection.crss)
    return [TileJob(i, stem, tile, Path(out), crss,
                    digest_of({"tile": tile.to_dict(), "model": model.bundle.sha256, "settings": keyed,
                               "lcmodel": version}))
            for i, (stem, tile) in enumerate(zip(tile_stems(collection.tiles), collection.tiles, strict=True))]


def check_tiles(bundle: ModelBundle, jobs: Sequence[TileJob]) -> None:
    """The model applies to every tile's CRS (a one-line CompatibilityError otherwise), before any tile runs."""
    from lcmodel.compatibility import bundle_for_tile

    for job in jobs:
        bundle_for_tile(bundle, job.tile.crs_wkt, job.collection_crs)


def _finished(job: TileJob) -> dict[str, Any] | None:
    """The tile's summary when its outputs are those of this fingerprint, intact; else None."""
    path = job.paths.prediction
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("tile_fingerprint") != job.fingerprint:
        return None
    for name, digest in (data.get("files") or {}).items():
        layer = job.paths.root / f"{name}.tif"
        if not layer.is_file() or file_digest(layer) != digest:
            log.info("tile %s: %s.tif changed since it was written; predicting the tile again", job.stem, name)
            return None
    return dict(data)


def predict_tile(settings: PredictSettings, bundle: ModelBundle, job: TileJob, *,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Predict one tile into ``OUTPUT/tiles/<stem>/`` (or reuse its finished outputs); its summary.

    The summary is that of :func:`lcmodel.predict.predict_raster` (``summary_to_dict``) plus ``tile`` (the
    stem), ``embedding`` (the tile's path), ``tile_fingerprint``, ``files`` (layer -> SHA-256) and
    ``reused`` (True when nothing was predicted).
    """
    from lcmodel.compatibility import bundle_for_tile
    from lcmodel.predict import predict_raster

    done = _finished(job)
    if done is not None:
        log.info("tile %s: unchanged, reusing its map", job.stem)
        if progress is not None:
            progress(1, 1)
        return {**done, "reused": True}
    paths = job.paths
    o = prediction_options(settings, paths)
    summary = predict_raster(
        bundle_for_tile(bundle, job.tile.crs_wkt, job.collection_crs), job.tile.path, paths.map,
        confidence_path=o.confidence_path, block_size=o.block_size, n_jobs=settings.n_jobs, memory_mb=o.memory_mb,
        progress=progress, probabilities_path=o.probabilities_path, margin_path=o.margin_path,
        entropy_path=o.entropy_path, unclassified_below=o.unclassified_below,
        unclassified_value=o.unclassified_value, engine=o.engine,
    )
    files = {name: file_digest(paths.root / f"{name}.tif") for name in _LAYERS
             if (paths.root / f"{name}.tif").is_file() and _asked(o, name)}
    data = {**summary_to_dict(summary, bundle.class_table), "tile": job.stem, "embedding": job.tile.path,
            "tile_fingerprint": job.fingerprint, "files": files}
    write_json(data, paths.prediction)
    return {**data, "reused": False}


def _asked(options: Any, name: str) -> bool:
    return name == "map" or getattr(options, f"{name}_path") is not None


def predict_collection(settings: PredictSettings, bundle: ModelBundle, model: Model, collection: Collection,
                       out: Path, progress: Progress | None = None) -> Prediction:
    """The whole stage for a collection in this process: every tile in turn, then :func:`finish_tiles`.

    ``progress(done, total)`` counts pixels over all tiles.
    """
    started = time.time()
    jobs = tile_jobs(settings, model, collection, out)
    check_tiles(bundle, jobs)
    sizes = [job.tile.width * job.tile.height for job in jobs]
    total = sum(sizes)
    summaries = []
    for job, size in zip(jobs, sizes, strict=True):
        before = sum(sizes[: job.index])

        def tile_progress(done: int, n: int, before: int = before, size: int = size) -> None:
            if progress is not None:
                progress(before + size * done // max(n, 1), total)

        summaries.append(predict_tile(settings, bundle, job, progress=tile_progress))
    return finish_tiles(settings, bundle, jobs, summaries, out, started=started)


def finish_tiles(settings: PredictSettings, bundle: ModelBundle, jobs: Sequence[TileJob],
                 summaries: Sequence[dict[str, Any]], out: Path, *, started: float | None = None) -> Prediction:
    """Counts, mosaics, STAC and ``prediction.json`` from the finished tiles; the stage's outputs."""
    from lcmodel.pipeline.tiled_outputs import collection_summary, write_mosaics, write_tile_stac
    from lcmodel.tilemaps import count_once

    paths = RunPaths(Path(out))
    maps = [describe_tile(str(job.paths.map), "tile map", lambda p: {"sha256": file_digest(p)}) for job in jobs]
    counts = count_once(maps, [{int(k): v for k, v in s["class_counts"].items()} for s in summaries],
                        [int(s.get("n_unclassified") or 0) for s in summaries],
                        summaries[0].get("unclassified_value"))
    mosaics, main = write_mosaics(settings, jobs, maps, paths)
    stac = write_tile_stac(settings, bundle, jobs, maps, summaries, mosaics, paths)
    data = collection_summary(settings, bundle, jobs, summaries, counts, main, mosaics, stac,
                              elapsed=time.time() - (started if started is not None else time.time()))
    write_json(data, paths.prediction)
    tile_files = []
    for job, summary in zip(jobs, summaries, strict=True):
        tile_files += [Artifact.of(job.paths.root / f"{name}.tif") for name in summary["files"] if name != "map"]
        tile_files.append(Artifact.of(job.paths.prediction))
    return Prediction(
        map=Artifact.of(main["map"]), summary=Artifact.of(paths.prediction),
        confidence=artifact(main.get("confidence")),
        tile_maps=tuple(Artifact.of(job.paths.map) for job in jobs), tile_files=tuple(tile_files),
        mosaics=tuple(Artifact.of(p) for p in mosaics.values()), stac=tuple(Artifact.of(p) for p in stac),
    )
