"""Stage records: which key produced a stage's current outputs, and their digests, in ``OUTPUT/.lcmodel/stages``.

After a stage runs, :func:`execute` writes ``<stage>.json``: the key, every output artifact (path and
SHA-256), and who produced it (the plain runner, or a flow run and its MLflow run). :func:`cached` answers a
later run: the recorded artifacts if the record's key is the key of this run AND every recorded file still
holds the recorded content, else None (with the reason logged). A truncated table, a flipped byte, a file
deleted or overwritten by a run with another config: the stage runs again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lcmodel.io import ensure_output_dir, write_json
from lcmodel.pipeline.artifacts import Artifacts
from lcmodel.pipeline.declare import Stage, stage_key
from lcmodel.pipeline.settings import StageSettings

__all__ = ["StageRecord", "records_dir", "read_record", "cached", "execute", "StageOutcome", "withdraw"]

log = logging.getLogger(__name__)

RECORDS = Path(".lcmodel") / "stages"


def records_dir(root: Path | str) -> Path:
    return Path(root) / RECORDS


@dataclass(frozen=True)
class StageRecord:
    """What a stage's last run in this folder wrote."""

    stage: str
    key: str
    artifacts: dict[str, Any]
    produced_by: dict[str, str] = field(default_factory=dict)
    finished: str = ""
    elapsed_s: float = 0.0

    def outputs(self, st: Stage, root: Path | str) -> Artifacts:
        """The recorded artifacts, their paths resolved against the output folder ``root``."""
        return st.output.from_dict(_paths(self.artifacts, lambda p: str(Path(root) / p)))


def _paths(data: Any, change: Callable[[str], str]) -> Any:
    """``data`` (a record's artifacts) with every ``path`` passed through ``change``."""
    if isinstance(data, dict):
        return {k: (change(v) if k == "path" and isinstance(v, str) else _paths(v, change)) for k, v in data.items()}
    if isinstance(data, list):
        return [_paths(v, change) for v in data]
    return data


def _relative(data: Any, root: Path) -> Any:
    """Paths inside ``root`` recorded relative to it, so a moved or copied output folder keeps valid records."""
    def rel(p: str) -> str:
        try:
            return str(Path(p).resolve().relative_to(root.resolve()))
        except ValueError:
            return p

    return _paths(data, rel)


def read_record(root: Path | str, name: str) -> StageRecord | None:
    """The record of stage ``name`` in the output folder ``root``, or None (absent or unreadable)."""
    path = records_dir(root) / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StageRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def withdraw(st: Stage, root: Path | str) -> list[Path]:
    """Remove what stage ``st`` last wrote in ``root`` (its record's files inside the folder, then the record),
    for a stage this config does not run: an output of an earlier config is never left to look current
    (e.g. ``map_clean.tif`` after the postprocess options are removed). The paths removed."""
    record = read_record(root, st.name)
    if record is None:
        return []
    folder = Path(root).resolve()
    removed = []
    try:
        outputs = record.outputs(st, root)
    except (TypeError, ValueError, KeyError):  # a record of another lcmodel's layout: only the record goes
        outputs = None
    for _, artifact in outputs.files() if outputs is not None else ():
        path = Path(artifact.path)
        if path.resolve().is_relative_to(folder) and path.is_file():
            path.unlink()
            removed.append(path)
    (records_dir(root) / f"{st.name}.json").unlink(missing_ok=True)
    log.info("%s: not run with this config; removed its earlier outputs %s", st.name, [p.name for p in removed])
    return removed


@dataclass(frozen=True)
class StageOutcome:
    """A stage's outputs in this run, whether they were reused, and the record they come from."""

    outputs: Artifacts
    cached: bool
    record: StageRecord


def cached(st: Stage, key: str, root: Path | str) -> StageRecord | None:
    """The record of ``st`` if it was produced by ``key`` and its files are unchanged, else None."""
    record = read_record(root, st.name)
    if record is None:
        return None
    if record.key != key:
        log.info("%s: inputs or settings changed since its last run; running it", st.name)
        return None
    try:
        problems = record.outputs(st, root).problems()
    except (KeyError, TypeError, ValueError):
        problems = ["its record is unreadable"]
    if problems:
        log.warning("%s: recorded outputs no longer match (%s); running it again", st.name, "; ".join(problems))
        return None
    return record


def execute(
    st: Stage,
    settings: StageSettings,
    inputs: Mapping[str, Artifacts | None],
    *,
    root: Path | str,
    produced_by: Mapping[str, str] | None = None,
    fn: Callable[..., Artifacts] | None = None,
    **runtime: Any,
) -> StageOutcome:
    """Run ``st`` (always), record its outputs under its key, return them.

    ``fn`` replaces the stage's own function with one computing the same outputs another way (the flow's
    prediction on a Dask cluster: same map, byte for byte); the key stays the stage's.
    """
    key = stage_key(st, settings, inputs)
    root = ensure_output_dir(root)
    started = time.monotonic()
    outputs = (fn or st.fn)(settings, *(inputs.get(i.name) for i in st.inputs), out=root, **runtime)
    if not isinstance(outputs, st.output):
        raise TypeError(f"stage {st.name} returned {type(outputs).__name__}, not {st.output.__name__}")
    record = StageRecord(
        stage=st.name,
        key=key,
        artifacts=_relative(outputs.to_dict(), Path(root)),
        produced_by=dict(produced_by or {"runner": "plain"}),
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        elapsed_s=round(time.monotonic() - started, 3),
    )
    ensure_output_dir(records_dir(root))
    write_json(record.__dict__, records_dir(root) / f"{st.name}.json")
    return StageOutcome(outputs, False, record)


def run_or_reuse(
    st: Stage,
    settings: StageSettings,
    inputs: Mapping[str, Artifacts | None],
    *,
    root: Path | str,
    use_cache: bool = True,
    produced_by: Mapping[str, str] | None = None,
    **runtime: Any,
) -> StageOutcome:
    """The recorded outputs when they are valid for this key (and ``use_cache``), else :func:`execute`."""
    if use_cache:
        record = cached(st, stage_key(st, settings, inputs), root)
        if record is not None:
            log.info("%s: unchanged, reusing its outputs (%s)", st.name, _producer(record))
            return StageOutcome(record.outputs(st, root), True, record)
    return execute(st, settings, inputs, root=root, produced_by=produced_by, **runtime)


def _producer(record: StageRecord) -> str:
    who = ", ".join(f"{k} {v}" for k, v in sorted(record.produced_by.items()))
    return f"from {who or 'an earlier run'} at {record.finished}"
