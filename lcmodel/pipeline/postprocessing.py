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

    """A tile collection without a mosaic (``prediction.mosaic: none``) has a clean map per tile instead:
    ``tiles/<stem>/map_clean.tif`` and ``postprocess.json`` (in the collection's order), no ``map``."""

    summary: Artifact
    map: Artifact | None = None
    tile_maps: tuple[Artifact, ...] = ()
    tile_summaries: tuple[Artifact, ...] = ()


def wanted(cfg: RunConfig) -> bool:
    """Whether the run makes a clean map (a postprocess option is set)."""
    return cfg.postprocess.active


@stage(about="the clean map `map_clean.tif`: patches under the minimum mapping unit removed, then a majority "
             "filter (block-wise, equal to a whole-raster run); only when a postprocess option is set")
def postprocess(settings: PostprocessSettings, prediction: Prediction, *, out: Path,
                progress: Progress | None = None) -> CleanMap:
    """For a tile collection with a mosaic the main map (the mosaic) is cleaned, so patches across tile edges
    count whole; without one (``prediction.mosaic: none``) each tile's map is cleaned on its own grid
    (:func:`_clean_tiles`)."""
    from lcmodel.postprocess import CleanOptions, clean_map

    options = CleanOptions(settings.mmu_pixels, settings.connectivity, settings.majority)
    dst = Path(out) / CLEAN_MAP_NAME
    if prediction.tile_maps and not prediction.mosaics:
        dst.unlink(missing_ok=True)  # from an earlier run with a mosaic: never left to look current
        return _clean_tiles(options, prediction, Path(out), progress)
    summary = clean_map(prediction.map.path, dst, options, progress=progress)
    data: dict[str, Any] = summary.to_dict()
    raw = json.loads(prediction.summary.path.read_text())
    data["raw_class_counts"] = {str(k): int(v) for k, v in sorted(raw.get("class_counts", {}).items(),
                                                                  key=lambda kv: int(kv[0]))}
    data["class_names"] = raw.get("class_names", {})
    data["map"], data["raw_map"] = CLEAN_MAP_NAME, prediction.map.path.name
    path = write_json(data, Path(out) / CLEAN_SUMMARY_NAME)
    log.info("clean map: %s; %d of %d pixels changed", options.describe(), summary.changed, summary.n_valid)
    return CleanMap(summary=Artifact.of(path), map=Artifact.of(dst))


def _clean_tiles(options: Any, prediction: Prediction, out: Path, progress: Progress | None) -> CleanMap:
    """``tiles/<stem>/map_clean.tif`` and ``postprocess.json`` per tile, and ``OUTPUT/postprocess.json``: the
    tiles' totals (pixels where tiles overlap are counted in each tile) and each tile's changes."""
    from lcmodel.postprocess import clean_map

    n = len(prediction.tile_maps)
    maps, summaries, tiles = [], [], []
    total: dict[str, Any] = {"n_valid": 0, "changed_by_sieve": 0, "changed_by_majority": 0, "changed": 0}
    clean_counts: dict[str, int] = {}
    raw_counts: dict[str, int] = {}
    data: dict[str, Any] = {}
    for k, raw_map in enumerate(prediction.tile_maps):
        folder = raw_map.path.parent

        def tile_progress(done: int, of: int, k: int = k) -> None:
            if progress is not None:
                progress(k * of + done, n * of)

        summary = clean_map(raw_map.path, folder / CLEAN_MAP_NAME, options, progress=tile_progress)
        data = summary.to_dict()
        raw = json.loads((folder / "prediction.json").read_text())
        data["raw_class_counts"] = {str(c): int(v) for c, v in raw.get("class_counts", {}).items()}
        data["class_names"] = raw.get("class_names", {})
        data["map"], data["raw_map"] = CLEAN_MAP_NAME, raw_map.path.name
        summaries.append(Artifact.of(write_json(data, folder / CLEAN_SUMMARY_NAME)))
        maps.append(Artifact.of(folder / CLEAN_MAP_NAME))
        for key in total:
            total[key] += int(data[key])
        for counts, into in ((data["class_counts"], clean_counts), (data["raw_class_counts"], raw_counts)):
            for c, v in counts.items():
                into[c] = into.get(c, 0) + int(v)
        tiles.append({"tile": folder.name, "map": f"tiles/{folder.name}/{CLEAN_MAP_NAME}", "n_valid": data["n_valid"],
                      "changed": data["changed"], "changed_fraction": data["changed_fraction"]})
    result = {**{k: data[k] for k in ("mmu_pixels", "connectivity", "majority", "order", "halo_px")}, **total,
              "changed_fraction": total["changed"] / total["n_valid"] if total["n_valid"] else 0.0,
              "class_counts": dict(sorted(clean_counts.items(), key=lambda kv: int(kv[0]))),
              "raw_class_counts": dict(sorted(raw_counts.items(), key=lambda kv: int(kv[0]))),
              "class_names": data["class_names"], "map": f"tiles/<stem>/{CLEAN_MAP_NAME}",
              "raw_map": "tiles/<stem>/map.tif", "n_tiles": n, "tiles": tiles,
              "counting": "per tile, each on its own grid (prediction.mosaic is none): where tiles overlap, a "
                          "location is counted in every tile that covers it, and patches are cleaned per tile"}
    path = write_json(result, out / CLEAN_SUMMARY_NAME)
    log.info("clean maps of %d tiles: %s; %d of %d pixels changed", n, options.describe(), total["changed"],
             total["n_valid"])
    return CleanMap(summary=Artifact.of(path), tile_maps=tuple(maps), tile_summaries=tuple(summaries))


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
    if data.get("tiles"):
        lines += ["", f"One clean map per tile ({data['n_tiles']} tiles); counted {data['counting']}.", "",
                  "| tile | clean map | pixels changed |", "|---|---|---:|"]
        lines += [f"| {t['tile']} | `{t['map']}` | {t['changed']:,} of {t['n_valid']:,} |" for t in data["tiles"]]
    return "\n".join(lines) + "\n"
