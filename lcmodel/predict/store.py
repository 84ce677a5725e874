"""The resumable block store of a prediction: finished blocks, their manifests, the work folder.

Every finished block is saved to its own small file in a work folder beside the output, then recorded
in a manifest; the class map is assembled from those files only at the end. Order of durability, per
block: (1) block file written to a temporary name, flushed and fsync'd; (2) renamed to its final name,
folder fsync'd; (3) one manifest line appended, flushed and fsync'd. A kill at any point therefore never
records a block that is not complete on disk: a block file without a manifest line is recomputed (and
overwritten, identically); a torn last manifest line is ignored. The uninterrupted and the resumed run
both assemble the map from the same block files in the same order, so their COGs are byte-identical.
GDAL's block cache is not involved until assembly, which is redone from scratch after any crash.

What a block was predicted from is checked by content, not by the file's modification time: each manifest line
carries the SHA-256 of the raw embedding block (``"input"``), and a resume reads every finished block's window
again and predicts anew those whose digest differs (an embedding rewritten in place, even with the same size
and mtime). The fingerprint names a local embedding by its resolved path, size and a digest of its header
(:func:`header_digest`: grid, data type, tiling, band names, tags), so touching it discards nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from lcmodel.errors import OutputError, PredictionError

if TYPE_CHECKING:
    from lcmodel.model_io import ModelBundle
    from lcmodel.predict.executors import BlockWork

__all__ = ["BlockStore", "partial_dir", "fingerprint", "header_digest"]

logger = logging.getLogger(__name__)

#: Version of the work-folder layout; part of the fingerprint (2: manifest lines carry the input digest).
_PARTIAL_FORMAT = 2
_MANIFEST = "manifest.jsonl"
_BLOCKS = "blocks"
_PARTS = "parts"


def partial_dir(out_path: Path | str) -> Path:
    """The work folder of a prediction into ``out_path``: ``<folder>/.<name>.partial``.

    It holds the finished blocks and their manifest while the prediction runs, and survives a crash so
    that the next call with the same inputs resumes; it is removed when the outputs are complete.
    """
    out_path = Path(out_path)
    return out_path.parent / f".{out_path.name}.partial"


def fingerprint(bundle: ModelBundle, work: BlockWork, profile: dict[str, Any]) -> str:
    """SHA-256 of everything a finished block depends on: model, embedding file, block plan, options.

    A local embedding is named by its resolved path, size and :func:`header_digest` (its blocks are checked
    by content on resume, :meth:`BlockStore.open`); a remote one by
    :func:`lcmodel.sources.identity.remote_identity` (ETag, Last-Modified, size from one HEAD request).
    """
    from lcmodel import __version__
    from lcmodel.sources.identity import remote_identity  # here: lcmodel.sources may import the predict package
    from lcmodel.sources.remote import is_remote

    recipe = work.recipe
    embedding: Any
    if is_remote(work.embedding_path):
        embedding = remote_identity(work.embedding_path)
    else:
        emb = Path(work.embedding_path).resolve()
        embedding = [str(emb), emb.stat().st_size, header_digest(emb)]
    model = bundle.source_sha256 or joblib.hash(bundle.estimator, hash_name="sha1")
    plan = [[int(w.col_off), int(w.row_off), int(w.width), int(w.height)] for w in work.windows]
    facts = {
        "format": _PARTIAL_FORMAT,
        "lcmodel": __version__,
        "model": model,
        "embedding": embedding,
        "windows": plan,
        "tile": [profile["blockxsize"], profile["blockysize"]],
        "classes": recipe.class_out.tolist(),
        "dtype": str(recipe.class_out.dtype),
        "nodata": recipe.nodata,
        "rule": recipe.rule.to_dict(),
        "outputs": recipe.array_names(),
        "uncertainty": asdict(recipe.uncertainty),
    }
    if work.band_indexes is not None:  # a subset of the bands is read (absent: every band, as before)
        facts["bands"] = list(work.band_indexes)
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def header_digest(path: Path) -> str:
    """SHA-256 of what a raster's header says (profile: grid, transform, CRS, data type, nodata, tiling,
    compression; band descriptions; tags), not of its pixels."""
    import rasterio  # here: only a local embedding's fingerprint needs it

    with rasterio.open(path) as src:
        facts = {
            "profile": {k: str(v) for k, v in sorted(src.profile.items())},
            "descriptions": list(src.descriptions),
            "tags": src.tags(),
        }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlockStore:
    """The finished blocks of one prediction: one ``.npz`` per block plus a fsync'd JSON-lines manifest.

    The manifest's first line is ``{"fingerprint": ...}``; each further line ``{"block": i, "counts": [...],
    "input": digest}`` records a block whose file is complete on disk and the digest of the raw embedding
    block it was predicted from (:func:`lcmodel.predict.classify.block_digest`). Any named arrays can be saved
    per block (``labels``, ``confidence``, and whatever further outputs a caller adds).

    Use :meth:`open`: it resumes a folder whose fingerprint matches, and starts afresh otherwise. Block
    groups predicted in parallel (:func:`lcmodel.predict.predict_blocks`) use :meth:`open_part`: each writes its own
    manifest under ``parts/`` (same format), so no two writers append to one file; :meth:`open` merges
    the parts into the main manifest.
    """

    def __init__(
        self,
        folder: Path,
        fingerprint: str,
        done: dict[int, np.ndarray],
        manifest: Path | None = None,
        inputs: dict[int, str | None] | None = None,
    ) -> None:
        self.folder = folder
        self.fingerprint = fingerprint
        self.done = done
        self.inputs: dict[int, str | None] = dict(inputs or {})
        self._manifest = open(manifest or folder / _MANIFEST, "a", encoding="utf-8")  # noqa: SIM115

    @classmethod
    def open(
        cls, folder: Path, fingerprint: str, verify: Callable[[dict[int, str | None]], list[int]] | None = None
    ) -> BlockStore:
        """Resume the work folder when its fingerprint matches, else empty it and start afresh.

        ``verify`` gets the recorded input digest of every finished block (None where none was recorded) and
        returns the blocks whose input changed (:func:`lcmodel.predict.executors.stale_check`); those are
        forgotten and predicted again.

        Raises
        ------
        OutputError
            The folder cannot be created or written.
        InputFileError
            ``verify`` could not read a window of the embedding.
        """
        inputs: dict[int, str | None] = {}
        read = cls._read(folder, fingerprint, inputs)
        done = read
        if read and verify is not None:
            stale = verify({i: inputs.get(i) for i in read})
            if stale:
                logger.warning(
                    "%d of %d finished block(s) in %s no longer match the embedding (rewritten since they were "
                    "predicted?): predicting them again", len(stale), len(read), folder,
                )
                gone = set(stale)
                done = {i: c for i, c in read.items() if i not in gone}
        try:
            if done is None:
                if folder.exists():
                    logger.info("discarding %s: it belongs to other inputs or options", folder)
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                (folder / _BLOCKS).mkdir()
                done = {}
            lines = [json.dumps({"fingerprint": fingerprint})]
            lines += [json.dumps({"block": i, "counts": c.tolist(), "input": inputs.get(i)})
                      for i, c in sorted(done.items())]
            tmp = folder / (_MANIFEST + ".tmp")  # rewritten clean: a torn last line is dropped
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / _MANIFEST)
            _fsync_dir(folder)
            for part in sorted((folder / _PARTS).glob("*.jsonl")):  # merged above; the main manifest has them
                part.unlink()
        except OSError as exc:
            raise OutputError(
                f"could not write the prediction work folder {str(folder)!r} ({exc.strerror or exc}); "
                "check free space and permissions"
            ) from None
        if done:
            logger.info("resuming prediction: %d finished block(s) in %s", len(done), folder)
        return cls(folder, fingerprint, done, inputs={i: inputs.get(i) for i in done})

    @classmethod
    def open_part(cls, folder: Path, fingerprint: str, prefix: str) -> BlockStore:
        """A store that records its blocks in a new manifest of its own, ``parts/<prefix>-<random>.jsonl``.

        The folder must have been created by :meth:`open` with the same fingerprint (by
        :func:`prepare_prediction`); it is never emptied here, since other parts may be writing to it.
        ``done`` holds the blocks finished by any part so far.

        Raises
        ------
        PredictionError
            The folder is missing or belongs to other inputs or options.
        OutputError
            The part manifest cannot be written.
        """
        inputs: dict[int, str | None] = {}
        done = cls._read(folder, fingerprint, inputs)
        if done is None:
            raise PredictionError(
                f"prediction work folder {str(folder)!r} is missing or was prepared for other inputs or options; "
                "call prepare_prediction with the same model, embedding and options first"
            )
        manifest = folder / _PARTS / f"{prefix}-{uuid.uuid4().hex[:12]}.jsonl"
        try:
            manifest.parent.mkdir(exist_ok=True)
            with open(manifest, "x", encoding="utf-8") as f:
                f.write(json.dumps({"fingerprint": fingerprint}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(manifest.parent)
        except OSError as exc:
            raise OutputError(
                f"could not write the prediction work folder {str(folder)!r} ({exc.strerror or exc}); "
                "check free space and permissions"
            ) from None
        return cls(folder, fingerprint, done, manifest, inputs)

    @staticmethod
    def _read(folder: Path, fingerprint: str, inputs: dict[int, str | None]) -> dict[int, np.ndarray] | None:
        """Finished blocks of a matching work folder (main manifest and parts), or None when there is none;
        their input digests are put into ``inputs``."""
        done = BlockStore._read_manifest(folder, folder / _MANIFEST, fingerprint, inputs)
        if done is None:
            return None
        for part in sorted((folder / _PARTS).glob("*.jsonl")):
            done.update(BlockStore._read_manifest(folder, part, fingerprint, inputs) or {})
        return done

    @staticmethod
    def _read_manifest(
        folder: Path, path: Path, fingerprint: str, inputs: dict[int, str | None]
    ) -> dict[int, np.ndarray] | None:
        """Finished blocks recorded in one manifest file, or None when it is absent or for another fingerprint
        (their input digests into ``inputs``)."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        done: dict[int, np.ndarray] = {}
        for n, line in enumerate(text.splitlines()):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash: that block is recomputed
            if n == 0:
                if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
                    return None
                continue
            if isinstance(entry, dict) and "block" in entry and "counts" in entry:
                i = int(entry["block"])
                if BlockStore._block_file(folder, i).is_file():
                    done[i] = np.asarray(entry["counts"], dtype=np.int64)
                    digest = entry.get("input")
                    inputs[i] = str(digest) if digest is not None else None
        return done if text.strip() else None

    @staticmethod
    def _block_file(folder: Path, index: int) -> Path:
        return folder / _BLOCKS / f"{index:07d}.npz"

    def add(
        self, index: int, arrays: dict[str, np.ndarray], counts: np.ndarray, input_digest: str | None = None
    ) -> None:
        """Save one finished block durably, then record it (and the digest of its input) in the manifest."""
        final = self._block_file(self.folder, index)
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            line = {"block": index, "counts": counts.tolist(), "input": input_digest}
            self._manifest.write(json.dumps(line) + "\n")
            self._manifest.flush()
            os.fsync(self._manifest.fileno())
        except OSError as exc:
            raise OutputError(
                f"could not write block {index + 1} to {str(final)!r} ({exc.strerror or exc}); check free "
                "space and permissions, then rerun: finished blocks are kept and resumed"
            ) from None
        self.done[index] = counts
        self.inputs[index] = input_digest

    def load(self, index: int) -> dict[str, np.ndarray]:
        """The named arrays of a finished block."""
        path = self._block_file(self.folder, index)
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise OutputError(
                f"finished block file {str(path)!r} is unreadable ({exc}); delete {str(self.folder)!r} "
                "and rerun"
            ) from None

    def total_counts(self, n_blocks: int, n_classes: int) -> np.ndarray:
        """Pixels per class summed over blocks ``0 .. n_blocks - 1`` (all of them finished)."""
        counts = np.zeros(n_classes, dtype=np.int64)
        for i in range(n_blocks):
            counts += self.done[i]
        return counts

    def close(self) -> None:
        self._manifest.close()

    def remove(self) -> None:
        """Delete the work folder (after the outputs are in place)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
