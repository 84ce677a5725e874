"""What a tile collection's prediction writes beside the per-tile maps: mosaics, the STAC catalog, the summary.

``OUTPUT/prediction.json`` of a collection has the keys of a single map's summary, for the collection as a
whole, plus ``n_tiles``, ``tiles`` (each tile's own summary: ``class_counts`` of its whole map, and
``counted_class_counts`` / ``counted_area_ha``: the pixels that count for the collection), ``mosaic``,
``mosaics`` and ``stac``. Totals count each location once (:mod:`lcmodel.tilemaps.counts`):
``class_counts`` and ``class_area_ha`` are sums of the counted pixels (areas with each tile's own pixel
area), ``n_valid`` the counted classified pixels, ``n_masked`` valid pixels left out because an earlier
tile covers them, ``n_pixels`` / ``n_nodata`` sums over the tiles' grids (so ``n_pixels = n_valid +
n_masked + n_nodata``). ``pixel_area_m2`` is the tiles' pixel area when they all share one (the strata
sizes of the assessment are then pixel counts of equal-area pixels), else null.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lcmodel.geo import crs_label
from lcmodel.io import file_digest
from lcmodel.model_io import ModelBundle
from lcmodel.pipeline.paths import RunPaths
from lcmodel.pipeline.settings import PredictSettings
from lcmodel.sources import Collection, Tile, describe_tile

__all__ = ["write_mosaics", "write_tile_stac", "collection_summary"]

log = logging.getLogger(__name__)


def _collection(jobs: Sequence[Any]) -> Collection:
    return Collection(tuple(job.tile for job in jobs))


def write_mosaics(settings: PredictSettings, jobs: Sequence[Any], maps: Sequence[Tile], paths: RunPaths
                  ) -> tuple[dict[str, Path], dict[str, Path]]:
    """The mosaics ``prediction.mosaic`` asks for (name -> file) and the main map (``map``, ``confidence``)."""
    from lcmodel.tilemaps import crs_tag, mosaic_grid, write_crs_vrts, write_mosaic_cog

    confs: list[Tile] | None = None
    if settings.confidence:
        confs = [describe_tile(str(job.paths.confidence), "tile confidence", lambda p: {"sha256": file_digest(p)})
                 for job in jobs]
    if settings.mosaic == "none":
        main = {"map": jobs[0].paths.map}
        if confs is not None:
            main["confidence"] = jobs[0].paths.confidence
        return {}, main
    mosaics = {f"map_{tag}": p for tag, p in write_crs_vrts(maps, lambda t: paths.mosaic_vrt("map", t)).items()}
    if confs is not None:
        mosaics.update({f"confidence_{tag}": p for tag, p in
                        write_crs_vrts(confs, lambda t: paths.mosaic_vrt("confidence", t)).items()})
    collection_crs = _collection(jobs).crs
    tag = crs_tag(collection_crs)
    main = {"map": mosaics[f"map_{tag}"]}
    if confs is not None:
        main["confidence"] = mosaics[f"confidence_{tag}"]
    if settings.mosaic == "cog":
        grid = mosaic_grid(maps, settings.mosaic_crs or collection_crs)
        log.info("COG mosaic of %d tiles: %s", len(maps), grid)
        conf_path = paths.confidence if confs is not None else None
        write_mosaic_cog(maps, grid, paths.map, confidences=confs, confidence_path=conf_path)
        main = {"map": paths.map}
        mosaics["mosaic"] = paths.map
        if conf_path is not None:
            main["confidence"] = mosaics["mosaic_confidence"] = conf_path
    return mosaics, main


def write_tile_stac(settings: PredictSettings, bundle: ModelBundle, jobs: Sequence[Any], maps: Sequence[Tile],
                    summaries: Sequence[dict[str, Any]], mosaics: dict[str, Path], paths: RunPaths) -> list[Path]:
    """The STAC catalog of the tiles (:func:`lcmodel.tilemaps.write_stac`); its files."""
    from lcmodel.tilemaps import ClassInfo, StacTile, write_stac

    table = bundle.class_table
    classes = [ClassInfo(v, table.name(v) if v in table.values else str(v), table.color(v))
               for v in bundle.class_values]
    tiles = [StacTile(job.stem, m, {name: job.paths.root / f"{name}.tif" for name in s["files"]},
                      {int(k): int(v) for k, v in s["class_counts"].items()})
             for job, m, s in zip(jobs, maps, summaries, strict=True)]
    unclassified = summaries[0].get("unclassified_value") if settings.unclassified_below is not None else None
    return write_stac(paths.stac, tiles, classes, nodata=summaries[0].get("output_nodata"), year=settings.year,
                      created=bundle.created, mosaics=mosaics, unclassified_value=unclassified)


def collection_summary(settings: PredictSettings, bundle: ModelBundle, jobs: Sequence[Any],
                       summaries: Sequence[dict[str, Any]], counts: Sequence[Any], main: dict[str, Path],
                       mosaics: dict[str, Path], stac: Sequence[Path], *, elapsed: float) -> dict[str, Any]:
    """``OUTPUT/prediction.json`` of a collection (see the module docstring)."""
    values = [int(k) for k in summaries[0]["class_counts"]]
    total = dict.fromkeys(values, 0)
    area = dict.fromkeys(values, 0.0)
    tiles = []
    areas = {s.get("pixel_area_m2") for s in summaries}
    for job, s, c in zip(jobs, summaries, counts, strict=True):
        px = s.get("pixel_area_m2")
        counted_area = {str(v): round(n * px / 10_000, 4) for v, n in c.class_counts.items()} if px else None
        for v, n in c.class_counts.items():
            total[v] = total.get(v, 0) + n
            if px:
                area[v] = area.get(v, 0.0) + n * px / 10_000
        keep = {k: v for k, v in s.items() if k not in ("class_names", "files", "tile_fingerprint")}
        tiles.append({**keep, "crs": crs_label(job.tile.crs), "counted_class_counts":
                      {str(v): n for v, n in c.class_counts.items()}, "counted_area_ha": counted_area,
                      "n_counted_unclassified": c.n_unclassified, "n_masked": c.n_masked,
                      "masked_by": [jobs[i].stem for i in c.masked_by]})
    n_unclassified = sum(c.n_unclassified for c in counts)
    n_pixels = sum(int(s["n_pixels"]) for s in summaries)
    n_masked = sum(c.n_masked for c in counts)
    n_valid = sum(total.values()) + n_unclassified
    common_area = next(iter(areas)) if len(areas) == 1 else None
    if common_area is None:
        log.warning("the tiles' pixel areas differ (%s m^2): prediction.json gives areas per tile, and its "
                    "pixel_area_m2 is null", sorted(a for a in areas if a is not None))
    data: dict[str, Any] = {
        "map_path": str(main["map"]),
        "confidence_path": str(main["confidence"]) if "confidence" in main else None,
        "n_tiles": len(jobs),
        "n_pixels": n_pixels,
        "n_valid": n_valid,
        "n_masked": n_masked,
        "n_nodata": n_pixels - n_valid - n_masked,
        "class_counts": {str(v): int(n) for v, n in total.items()},
        "pixel_area_m2": common_area,
        "elapsed_s": elapsed,
        "pixels_per_s": n_pixels / elapsed if elapsed > 0 else None,
        "n_blocks": sum(int(s["n_blocks"]) for s in summaries),
        "block_size": summaries[0]["block_size"],
        "n_jobs": settings.n_jobs,
        "output_dtype": summaries[0]["output_dtype"],
        "output_nodata": summaries[0]["output_nodata"],
        "n_resumed": sum(int(s.get("n_resumed") or 0) for s in summaries),
        "n_tiles_reused": sum(1 for s in summaries if s.get("reused")),
        "n_unclassified": n_unclassified,
        "unclassified_value": summaries[0].get("unclassified_value"),
        "engine": ",".join(sorted({str(s.get("engine")) for s in summaries})),
        "mosaic": settings.mosaic,
        "mosaic_crs": (settings.mosaic_crs or crs_label(_collection(jobs).crs)) if settings.mosaic == "cog" else None,
        "mosaics": {k: str(p) for k, p in mosaics.items()},
        "stac": str(stac[0]) if stac else None,
        "counting": "each location once: where tiles overlap, the first tile in the collection's order with a "
                    "classified pixel there counts it",
        "tiles": tiles,
    }
    if any(s.get("pixel_area_m2") for s in summaries):
        data["class_area_ha"] = {str(v): round(a, 4) for v, a in area.items()}
    table = bundle.class_table
    data["class_names"] = {str(v): table.name(v) for v in table.values}
    return data
