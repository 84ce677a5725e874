"""The user's inputs of a run, resolved once into files the stages are given.

``embedding.path`` may name one raster or a collection (list, glob, folder, index filtered by ``embedding.aoi``
and ``embedding.year``); it is resolved into a manifest, ``output.dir/.lcmodel/inputs/embedding.json``,
that lists every tile with its grid, bands and content identity (a local file's SHA-256, a remote file's
ETag). The stages read the tiles named there and nothing else; the manifest's digest, which changes when
any tile's content, the AOI or the year does, enters their cache keys.

A reference raster given as several tiles (ESA WorldCover's 3 x 3 degree tiles) is read through a VRT
mosaic, ``.lcmodel/inputs/reference.vrt``, that records the tiles' identities in its metadata. A single
reference file is used as it is.

A manifest is rewritten only when its content changes, so a rerun that changes nothing does nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lcmodel.config import RunConfig
from lcmodel.io import atomic_path, file_digest, json_ready
from lcmodel.pipeline.paths import RunPaths
from lcmodel.sources import Collection, is_remote, open_collection
from lcmodel.sources.vrt import identities, write_mosaic_vrt

__all__ = ["tile_identity", "embedding_collection", "write_embedding_manifest", "reference_raster",
           "local_inputs"]

log = logging.getLogger(__name__)


def tile_identity(path: str) -> Mapping[str, Any]:
    """What identifies a file's content: the SHA-256 of a local file, the server's ETag/size/date of a remote one."""
    if is_remote(path):
        from lcmodel.sources import remote_identity

        return remote_identity(path)
    return {"sha256": file_digest(path)}


def embedding_collection(cfg: RunConfig) -> Collection:
    """The embedding tiles ``embedding.path`` names (filtered by ``embedding.aoi`` and ``embedding.year``)."""
    e = cfg.embedding
    return open_collection(e.spec, what="embedding raster", key="embedding.path", identity=tile_identity,
                           aoi=e.aoi if not isinstance(e.aoi, Path) else str(e.aoi), year=e.year)


def _write_if_changed(text: str, path: Path) -> Path:
    if path.is_file() and path.read_text() == text:
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_embedding_manifest(collection: Collection, out: Path | str) -> Path:
    """Write the manifest of the embedding tiles into the run folder (only when its content changed)."""
    text = json.dumps(json_ready(collection.to_dict()), indent=1, sort_keys=True) + "\n"
    path = _write_if_changed(text, RunPaths(Path(out)).embedding_manifest)
    if len(collection) > 1:
        log.info("embedding: %d tiles in %d CRS(s)", len(collection), len(collection.crss))
    return path


def reference_raster(cfg: RunConfig, *, write: bool = True) -> Path | None:
    """The reference raster the sampling stage reads: the file itself, or a VRT mosaic of several tiles.

    With ``write=False`` the tiles are checked (one grid) and the first one is returned: nothing is written.
    """
    spec = cfg.reference.path
    if cfg.reference_kind != "raster":
        return spec if isinstance(spec, Path) else None
    if isinstance(spec, Path):
        return spec
    collection = open_collection(spec, what="reference raster", key="reference.path", identity=tile_identity,
                                 csv_is_index=False)
    if len(collection) == 1 and not is_remote(collection.first.path):
        return Path(collection.first.path)
    if not write:
        from lcmodel.sources.vrt import mosaic_grid

        mosaic_grid(collection.tiles, "reference.path")
        return None if is_remote(collection.first.path) else Path(collection.first.path)
    path = RunPaths(cfg.output.dir).reference_mosaic
    tmp = path.with_name(".reference.next.vrt")
    write_mosaic_vrt(collection.tiles, tmp, key="reference.path", metadata=identities(collection.tiles))
    text = tmp.read_text()
    tmp.unlink()
    _write_if_changed(text, path)
    log.info("reference: %d tiles read as one mosaic (%s)", len(collection), path.name)
    return path


def local_inputs(spec: Path | tuple[str, ...]) -> list[Path]:
    """The local files of a path spec that exist (for the inputs-are-not-outputs check)."""
    items = [spec] if isinstance(spec, Path) else [Path(s) for s in spec if not is_remote(s)]
    return [p for p in items if p.is_file()]
