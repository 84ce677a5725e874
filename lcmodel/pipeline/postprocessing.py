"""The ``postprocess`` stage: the clean map (``map_clean.tif``) from the raw map, when a postprocess option is set.

A minimum mapping unit (``postprocess.mmu_pixels``: patches of fewer pixels are removed, with
``postprocess.connectivity``) and then a majority filter (``postprocess.majority``), block by block with
the overlap that makes the result the whole raster's (:mod:`lcmodel.postprocess`). The raw ``map.tif``
stays; the clean map has its colour table, tags and overviews. ``postprocess.json`` says what was done and
how many pixels changed; the report shows it. The stage runs only when an option is set (:func:`wanted`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lcmodel.config import RunConfig
from lcmodel.io import write_json
from lcmodel.pipeline.artifacts import Artifact, Artifacts, Prediction
from lcmodel.pipeline.declare import stage
from lcmodel.pipeline.paths import Progress
from lcmodel.pipeline.settings import StageSettings, setting

__all__ = ["PostprocessSettings", "CleanMap", "postprocess", "wanted", "clean_map_markdown", "CLEAN_MAP_NAME",
           "CLEAN_SUMMARY_NAME"]

log = logging.getLogger(__name__)

CLEAN_MAP_NAME = "map_clean.tif"
CLEAN_SUMMARY_NAME = "postprocess.json"


@dataclass(frozen=True)
class PostprocessSettings(StageSettings):
    about: ClassVar[str] = "the clean map: minimum mapping unit (sieve) and its connectivity, majority filter"

    mmu_pixels: int | None = setting("postprocess.mmu_pixels")
    connectivity: int = setting("postprocess.connectivity")
    majority: int | None = setting("postprocess.majority")


@dataclass(frozen=True)
class CleanMap(Artifacts):
    about: ClassVar[str] = "`map_clean.tif` (the map after the sieve and the majority filter) and " \
        "`postprocess.json` (what was done, pixels changed, class counts before and after)"

    map: Artifact
    summary: Artifact


def wanted(cfg: RunConfig) -> bool:
    """Whether the run makes a clean map (a postprocess option is set)."""
    return cfg.postprocess.active


@stage(about="the clean map `map_clean.tif`: patches under the minimum mapping unit removed, then a majority "
             "filter (block-wise, equal to a whole-raster run); only when a postprocess option is set")
def postprocess(settings: PostprocessSettings, prediction: Prediction, *, out: Path,
                progress: Progress | None = None) -> CleanMap:
    """For a tile collection the main map (its mosaic) is cleaned, so patches across tile edges count whole."""
    from lcmodel.postprocess import CleanOptions, clean_map

    options = CleanOptions(settings.mmu_pixels, settings.connectivity, settings.majority)
    dst = Path(out) / CLEAN_MAP_NAME
    summary = clean_map(prediction.map.path, dst, options, progress=progress)
    data: dict[str, Any] = summary.to_dict()
    raw = json.loads(prediction.summary.path.read_text())
    data["raw_class_counts"] = {str(k): int(v) for k, v in sorted(raw.get("class_counts", {}).items(),
                                                                  key=lambda kv: int(kv[0]))}
    data["class_names"] = raw.get("class_names", {})
    data["map"], data["raw_map"] = CLEAN_MAP_NAME, prediction.map.path.name
    path = write_json(data, Path(out) / CLEAN_SUMMARY_NAME)
    log.info("clean map: %s; %d of %d pixels changed", options.describe(), summary.changed, summary.n_valid)
    return CleanMap(Artifact.of(dst), Artifact.of(path))


def clean_map_markdown(data: dict[str, Any]) -> str:
    """The report's section on the clean map, from ``postprocess.json``."""
    n = max(int(data["n_valid"]), 1)
    lines = [
        "## Clean map (postprocess)",
        "",
        f"`{data['map']}` is `{data['raw_map']}` after: {data['order']} (computed block by block with a "
        f"{data['halo_px']} px overlap, which gives the whole-raster result). The raw map is unchanged.",
        "",
        f"Pixels changed: {data['changed']:,} of {data['n_valid']:,} ({100 * data['changed'] / n:.2f} %); "
        f"by the sieve {data['changed_by_sieve']:,}, by the majority filter {data['changed_by_majority']:,}.",
        "",
        "| class | raw map px | clean map px | change |",
        "|---|---:|---:|---:|",
    ]
    raw, clean, names = data.get("raw_class_counts", {}), data["class_counts"], data.get("class_names", {})
    for key in sorted(set(raw) | set(clean), key=int):
        before, after = int(raw.get(key, 0)), int(clean.get(key, 0))
        lines.append(f"| {names.get(key, key)} | {before:,} | {after:,} | {after - before:+,} |")
    return "\n".join(lines) + "\n"
