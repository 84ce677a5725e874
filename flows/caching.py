"""Cache keys for the flow's stages: a rerun skips every stage whose inputs did not change.

A stage's key hashes what the stage depends on and nothing else: the config sections it reads, the
fingerprints of the input files it reads (size + modification time for the user's rasters and tables,
content hashes for the small files upstream stages wrote). Changing ``prediction.block_size`` therefore
re-runs prediction only; an identical config re-runs nothing.

A cached result is a path into the output folder, so the key also checks that the file there is still the
one this key produced: each stage leaves a manifest (``.lcmodel/<stage>.key``) holding its key. If the output
is missing, or was overwritten by a run with another config, the key changes and the stage runs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lcmodel.config import RunConfig
from lcmodel.pipeline import RunPaths, paths_for

__all__ = ["STAGES", "stage_key", "write_manifest", "cache_key_fn"]

# stage -> (config keys it reads, user input files it reads, output path attribute of RunPaths)
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "sample_reference": (("reference", "sampling.random_state"), ("reference.path",), "points"),
    "prepare_points": (("reference.crs", "classes"), ("classes.table", "embedding.path"), "labelled"),
    "extract_samples": (("embedding", "sampling.dedupe_pixels"), ("embedding.path",), "samples"),
    "make_training_table": (
        ("sampling", "reference.n_points", "reference.kind", "reference.path"), (), "training_table"
    ),
    "tune": (("tuning", "sampling.random_state", "sampling.split", "sampling.block_size"), (), "tuning"),
    "evaluate": (("sampling.random_state", "reference.kind", "reference.path", "sampling.split",
                  "sampling.block_size", "tuning.cv", "tuning.cv_strategy", "tuning.scoring"), (), "metrics"),
    "fit_final": (("reference", "classes", "embedding", "sampling", "tuning"), ("embedding.path",), "bundle"),
    "predict_map": (("prediction",), ("embedding.path",), "map"),
    "assess_map": (("reference.kind", "reference.path", "sampling"), (), "accuracy_assessment"),
}


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _file_fingerprint(path: Path, content: bool) -> str:
    if not path.exists():
        return f"{path}:missing"
    if content:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        return f"{path.name}:{h.hexdigest()}"
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def stage_key(stage: str, cfg: RunConfig, upstream: Mapping[str, Any]) -> str:
    """The key of a stage's inputs (config sections, user files, upstream outputs' content)."""
    keys, files, _ = STAGES[stage]
    data = cfg.model_dump(mode="json")
    parts: dict[str, Any] = {"stage": stage, "config": {k: _get(data, k) for k in keys}}
    parts["files"] = {
        f: _file_fingerprint(Path(_get(data, f)), content=False) for f in files if _get(data, f) is not None
    }
    parts["upstream"] = {
        name: _file_fingerprint(Path(value), content=True)
        for name, value in sorted(upstream.items())
        if isinstance(value, str | Path)
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _manifest(paths: RunPaths, stage: str) -> Path:
    return paths.root / ".lcmodel" / f"{stage}.key"


def write_manifest(stage: str, cfg: RunConfig, upstream: Mapping[str, Any]) -> None:
    """Record which key produced the stage's current output (called by the task after the stage ran)."""
    path = _manifest(paths_for(cfg), stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stage_key(stage, cfg, upstream))


def cache_key_fn(stage: str) -> Any:
    """A Prefect ``cache_key_fn`` for ``stage``: its task's inputs are ``cfg`` plus upstream paths."""

    def key(_ctx: Any, inputs: Mapping[str, Any]) -> str:
        cfg: RunConfig = inputs["cfg"]
        # a task declared as body(cfg, **upstream) receives its keyword arguments nested under "upstream"
        flat = dict(inputs.get("upstream") or {}) if isinstance(inputs.get("upstream"), Mapping) else {}
        flat.update({k: v for k, v in inputs.items() if k not in {"cfg", "upstream"}})
        upstream = {k: v for k, v in flat.items() if not k.startswith("_")}
        current = stage_key(stage, cfg, upstream)
        paths = paths_for(cfg)
        output = getattr(paths, STAGES[stage][2])
        manifest = _manifest(paths, stage)
        if not manifest.is_file():
            return f"{stage}-{current}"  # a fresh folder (its cache records, if any, are in it too)
        recorded = manifest.read_text().strip()
        if output.exists() and recorded == current:
            return f"{stage}-{current}"
        # the output was deleted, or overwritten by a run with another config: salt the key with the
        # manifest's identity so that no earlier cache record matches and the stage runs again
        salt = hashlib.sha256(f"{recorded}:{manifest.stat().st_mtime_ns}".encode()).hexdigest()[:16]
        return f"{stage}-{current}-{salt}"

    return key
