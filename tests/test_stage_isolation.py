"""A stage reads only what it is given: every file a stage opens for reading (Python's open, rasterio.open) is
one of its input artifacts or a file it wrote itself in that run (its hidden working state, such as prediction's
resume folder, included). Checked on a whole plain run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import rasterio

from lcmodel import pipeline
from lcmodel.config import load_config
from lcmodel.pipeline.change import YearMaps
from lcmodel.sources import Collection
from tests.rasters import tiny_demo_config, tiny_years_config

_STATE: dict[str, Any] = {"stage": None, "reads": [], "writes": set()}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or _STATE["stage"] is None or not isinstance(args[0], str | Path):
        return
    path, mode = Path(args[0]), args[1] if len(args) > 1 else "r"
    flags = args[2] if len(args) > 2 else 0
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & 0o3)
    (_STATE["writes"].add(path.resolve()) if writing else _STATE["reads"].append((_STATE["stage"], path)))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one does nothing outside the test below


def _private(path: Path, root: Path) -> bool:
    """A stage's own hidden working state (e.g. prediction's resume folder ``.map.tif.partial/``)."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


class _Watched(pipeline.StageRun):
    #: a file in the folder of the user's inputs (watched with the run's folder); default: the embedding
    data: Path | None = None

    def spawn(self, cfg: Any) -> _Watched:
        run = _Watched(cfg, use_cache=self.use_cache)
        run.data = self.data
        return run

    def run_stage(self, st: pipeline.Stage, settings: Any, inputs: dict[str, Any], **runtime: Any) -> Any:
        _STATE.update(stage=st.name, reads=[], writes=set())
        try:
            outcome = super().run_stage(st, settings, inputs, **runtime)
        finally:
            reads, writes, _STATE["stage"] = _STATE["reads"], _STATE["writes"], None
        given = {a.path.resolve() for v in inputs.values() if v is not None for _, a in v.files()}
        # an embedding is given as the manifest of its tiles: the tiles it names are given too
        given |= {Path(t.path).resolve() for v in inputs.values() if isinstance(v, pipeline.EmbeddingSource)
                  for t in Collection.read(v.path)}
        # the change stage is given every year's embedding manifest: their tiles too
        given |= {Path(t.path).resolve() for v in inputs.values() if isinstance(v, YearMaps)
                  for m in v.embeddings for t in Collection.read(m.path)}
        own = {a.path.resolve() for _, a in outcome.outputs.files()} | writes
        watched = (self.root.resolve(), (self.data or Path(self.cfg.embedding.spec)).resolve().parent)  # type: ignore[arg-type]
        strays = sorted({str(p) for stage, p in reads
                         if p.resolve().is_relative_to(watched[0]) or p.resolve().is_relative_to(watched[1])
                         if p.resolve() not in given | own and not _private(p, self.root)})
        assert not strays, f"stage {st.name} read files it was not given: {strays}"
        return outcome


def watch_rasterio_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """rasterio.open records what a running stage reads and writes, as the audit hook does for Python's open."""
    real_open = rasterio.open

    def watched_open(fp: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if _STATE["stage"] is not None and isinstance(fp, str | Path):
            path = Path(fp)
            (_STATE["writes"].add(path.resolve()) if "w" in mode else _STATE["reads"].append((_STATE["stage"], path)))
        return real_open(fp, mode, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", watched_open)


def test_every_stage_reads_only_its_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(tiny_demo_config(tmp_path / "data", stages=[{"max_features": ["sqrt"], "n_estimators": [8]}]))
    cfg = cfg.model_copy(update={"postprocess": cfg.postprocess.model_copy(update={"mmu_pixels": 4, "majority": 3})})
    watch_rasterio_open(monkeypatch)
    r = pipeline.run_stages(_Watched(cfg, use_cache=False), mapping=True)
    assert r.executed() == pipeline.stages_of(cfg) == [n for n in pipeline.STAGES if n != "change"]


def test_year_runs_and_the_change_stage_read_only_their_inputs(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = tiny_years_config(tmp_path / "data", prediction={"temporal_filter": "majority"},
                                 tuning={"cv": 3, "stages": [{"max_features": ["sqrt"], "n_estimators": [8]}]})
    watch_rasterio_open(monkeypatch)
    run = _Watched(load_config(cfg_path), use_cache=False)
    run.data = cfg_path  # the whole data folder: every year's embedding is in it
    r = pipeline.run_stages(run, mapping=True)
    assert "change" in r.executed() and "predict_map[2023]" in r.executed()
