"""The plain runner: the declared stages of a config in order, each reused when its recorded outputs are valid.

``train(cfg)`` runs :data:`~lcmodel.pipeline.stages.TRAINING` and the report; ``run(cfg)`` also predicts
the map, its quicklook and assessment. A rerun that changes nothing runs nothing; a changed setting or input
re-runs exactly the stages whose key it changes (and those downstream of outputs that changed). The Prefect
flow (flows/landcover.py) runs the same stages with the same keys, one task each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lcmodel.config import RunConfig
from lcmodel.io import ensure_output_dir, output_lock
from lcmodel.pipeline.artifacts import Artifacts, Model, Prediction, TrainingTable
from lcmodel.pipeline.change import YearMaps
from lcmodel.pipeline.declare import Stage
from lcmodel.pipeline.paths import Callback, Progress, RunPaths
from lcmodel.pipeline.records import StageOutcome, run_or_reuse, withdraw
from lcmodel.pipeline.settings import StageSettings
from lcmodel.pipeline.stages import MAPPING, SAMPLING, STAGES, TRAINING, runs_in, source_files
from lcmodel.pipeline.years import publish_year_files, run_years, year_maps

__all__ = ["StageRun", "run_stages", "sample", "train", "run", "paths_for"]

log = logging.getLogger(__name__)


def paths_for(cfg: RunConfig) -> RunPaths:
    return RunPaths(Path(cfg.output.dir))


class StageRun:
    """One run of a config's stages: wires each stage's inputs by type from the outputs so far."""

    def __init__(self, cfg: RunConfig, *, use_cache: bool = True, produced_by: Mapping[str, str] | None = None,
                 after_stage: Callable[[str, StageOutcome], None] | None = None) -> None:
        self.cfg = cfg
        self.root = ensure_output_dir(cfg.output.dir)
        self.use_cache = use_cache
        self.produced_by = dict(produced_by) if produced_by else None
        self.outputs: dict[type[Artifacts], Artifacts] = {type(s): s for s in source_files(cfg)}
        self.outcomes: dict[str, StageOutcome] = {}
        self.after_stage = after_stage
        #: the other years' runs (``embedding.years``), by year
        self.year_runs: dict[int, StageRun] = {}

    def inputs_for(self, st: Stage) -> dict[str, Artifacts | None]:
        """The artifacts ``st`` consumes, from the sources and the stages run so far."""
        found: dict[str, Artifacts | None] = {}
        for inp in st.inputs:
            value = self.outputs.get(inp.type)
            if value is None and not inp.optional:
                raise RuntimeError(f"stage {st.name} needs {inp.type.__name__}, which no earlier stage produced")
            found[inp.name] = value
        return found

    def __call__(self, st: Stage, **runtime: Any) -> Artifacts:
        outcome = self.run_stage(st, st.settings.from_config(self.cfg), self.inputs_for(st), **runtime)
        self.outputs[st.output] = outcome.outputs
        self.outcomes[st.name] = outcome
        if self.after_stage is not None:
            self.after_stage(st.name, outcome)
        return outcome.outputs

    def run_stage(self, st: Stage, settings: StageSettings, inputs: dict[str, Artifacts | None],
                  **runtime: Any) -> StageOutcome:
        """Run or reuse one stage (the Prefect flow overrides this to run it as a cached task)."""
        return run_or_reuse(st, settings, inputs, root=self.root, use_cache=self.use_cache,
                            produced_by=self.produced_by, **runtime)

    def executed(self) -> list[str]:
        """The stages that ran in this run (the others were reused); a year run's as ``<stage>[<year>]``."""
        own = [name for name, o in self.outcomes.items() if not o.cached]
        return own + [f"{name}[{year}]" for year, ry in self.year_runs.items() for name in ry.executed()]

    def by_year(self) -> dict[int, StageRun]:
        """Every mapped year's run, in year order: this run for the train year, then :attr:`year_runs`."""
        runs = {int(self.cfg.embedding.year or 0): self, **self.year_runs}
        return dict(sorted(runs.items()))

    def spawn(self, cfg: RunConfig) -> StageRun:
        """A run of the same kind for another year's config (:mod:`lcmodel.pipeline.years`)."""
        return StageRun(cfg, use_cache=self.use_cache, produced_by=self.produced_by)


def run_stages(r: StageRun, *, mapping: bool, callback: Callback | None = None, progress: Progress | None = None,
               predict_progress: Progress | None = None) -> StageRun:
    """The stages in order on ``r``: training, then (``mapping``) the map, quicklook and assessment; the report.

    The one sequence both the plain commands and the Prefect flow run.
    """
    for st in TRAINING:
        r(st, **({"callback": callback, "progress": progress} if st.name == "tune" else {}))
    if mapping:
        for st in MAPPING:
            if runs_in(st, r.cfg):
                r(st, **({"progress": predict_progress} if st.name == "predict_map" else {}))
            else:
                withdraw(st, r.root)
        if r.cfg.mapped_years:
            r.year_runs = run_years(r, r.spawn)
            runs = r.by_year()
            publish_year_files(r.root, {y: run.outputs[Prediction] for y, run in runs.items()})  # type: ignore[misc]
            r.outputs[YearMaps] = year_maps(runs)
        change_stage = STAGES["change"]
        if runs_in(change_stage, r.cfg):
            r(change_stage)
        else:
            withdraw(change_stage, r.root)
    r(STAGES["report"])
    log.info("stages run: %s", ", ".join(r.executed()) or "none (all reused)")
    return r


def sample(cfg: RunConfig, progress: Progress | None = None, *, use_cache: bool = True) -> TrainingTable:
    """The sampling stages: reference -> ... -> the training table."""
    with output_lock(paths_for(cfg).root):
        r = StageRun(cfg, use_cache=use_cache)
        for st in SAMPLING:
            r(st, **({"progress": progress} if st.name == "sample_reference" else {}))
        return r.outputs[TrainingTable]  # type: ignore[return-value]


def train(cfg: RunConfig, callback: Callback | None = None, progress: Progress | None = None, *,
          use_cache: bool = True) -> Path:
    """The training stages and the report; the bundle's path. Holds the output folder's lock."""
    with output_lock(paths_for(cfg).root):
        r = run_stages(StageRun(cfg, use_cache=use_cache), mapping=False, callback=callback, progress=progress)
        return r.outputs[Model].bundle.path  # type: ignore[attr-defined]


def run(cfg: RunConfig, callback: Callback | None = None, progress: Progress | None = None,
        predict_progress: Progress | None = None, *, use_cache: bool = True) -> dict[str, Any]:
    """Every stage: train, predict OUTPUT/map.tif (+ confidence), quicklook, assessment, report.

    Returns the prediction summary (``prediction.json``).
    """
    with output_lock(paths_for(cfg).root):
        r = run_stages(StageRun(cfg, use_cache=use_cache), mapping=True, callback=callback, progress=progress,
                       predict_progress=predict_progress)
        prediction: Prediction = r.outputs[Prediction]  # type: ignore[assignment]
        return dict(json.loads(prediction.summary.path.read_text()))
