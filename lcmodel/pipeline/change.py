"""The ``change`` stage: what changed between the mapped years (``embedding.years``), from their maps and embeddings.

For every pair of consecutive years, and for the first vs the last year (when more than two are mapped), in
``OUTPUT/change/<from>_<to>/``:

- ``transitions.tif``: one value per from -> to transition (colour table, names "Tree cover -> Cropland");
  ``transitions.csv`` (pixels and hectares of each) and ``transitions.png`` (a heat map): MAPPED pixels, not
  areas: area estimates with confidence intervals need a labelled change sample (docs/change.md);
- ``embedding_angle.tif``: the angle between the two years' embedding vectors (0..180 degrees, uint8 scaled)
  and ``embedding_changed.tif``: changed (1) where it is at least ``change.threshold_deg``, else stable (0);
- ``agreement.csv``: class change vs embedding change; class flips with no embedding change are likely noise.

With ``prediction.temporal_filter: majority`` (three or more years) one-year flips are removed first
(A-B-A -> A-A-A) into ``change/filtered/map_<year>.tif``, and the transitions are those of the filtered maps.
``change/change.json`` holds every figure (the report and MLflow read it). The stage reads only what it is
given: the year maps and the embedding manifests (:class:`YearMaps`, put together by
:mod:`lcmodel.pipeline.years`) and the class table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lcmodel.io import write_json
from lcmodel.pipeline.artifacts import Artifact, Artifacts, LabelledPoints
from lcmodel.pipeline.declare import stage
from lcmodel.pipeline.settings import StageSettings, setting
from lcmodel.years import mapped_years

__all__ = ["ChangeSettings", "YearMaps", "ChangeProducts", "change", "pairs", "CHANGE_DIR"]

log = logging.getLogger(__name__)

CHANGE_DIR = "change"


@dataclass(frozen=True)
class ChangeSettings(StageSettings):
    about: ClassVar[str] = "the years compared, the embedding-change threshold, the temporal filter"

    years: tuple[int, ...] = setting("embedding.years", "embedding.year", derive=mapped_years)
    threshold_deg: float = setting("change.threshold_deg")
    temporal_filter: str | None = setting("prediction.temporal_filter")


@dataclass(frozen=True)
class YearMaps(Artifacts):
    about: ClassVar[str] = "every mapped year's map and its embedding manifest, in year order"

    """Put together by the runner from the year runs (:mod:`lcmodel.pipeline.years`), not written by a stage."""

    maps: tuple[Artifact, ...]
    summaries: tuple[Artifact, ...]
    embeddings: tuple[Artifact, ...]


@dataclass(frozen=True)
class ChangeProducts(Artifacts):
    about: ClassVar[str] = "`change/change.json` and per pair of years `change/<a>_<b>/`: transitions " \
        "(raster, CSV, heat map), embedding angle and changed mask, agreement; the filtered maps"

    summary: Artifact
    products: tuple[Artifact, ...] = ()
    filtered: tuple[Artifact, ...] = ()


def pairs(years: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive years, and the first vs the last when more than two are mapped."""
    out = list(zip(years[:-1], years[1:], strict=True))
    if len(years) > 2:
        out.append((years[0], years[-1]))
    return out


def _single_tile(manifest: Path) -> str | None:
    from lcmodel.sources import Collection

    tiles = Collection.read(manifest)
    return tiles.first.path if len(tiles) == 1 else None


@stage(about="what changed between the mapped years: transitions (raster, matrix, heat map), the embedding "
             "angle and its changed mask, their agreement; the temporal filter's maps; only with two or more "
             "embedding.years")
def change(settings: ChangeSettings, maps: YearMaps, labelled: LabelledPoints, *, out: Path) -> ChangeProducts:
    import json

    from lcmodel.change import (
        agreement_table,
        temporal_majority,
        write_embedding_change,
        write_matrix,
        write_transitions,
    )
    from lcmodel.pipeline.sampling import read_class_table_artifact

    years = list(settings.years)
    table = read_class_table_artifact(labelled)
    folder = Path(out) / CHANGE_DIR
    summaries = [json.loads(a.path.read_text()) for a in maps.summaries]
    nodata = [int(s_["output_nodata"]) for s_ in summaries]
    year_maps = [a.path for a in maps.maps]
    data: dict[str, Any] = {"years": years, "threshold_deg": settings.threshold_deg,
                            "temporal_filter": settings.temporal_filter, "pairs": [],
                            "counting": "mapped pixels, not areas: area estimates with confidence intervals need "
                                        "a labelled change sample (docs/change.md)"}
    filtered: list[Artifact] = []
    if settings.temporal_filter == "majority" and len(years) >= 3:
        outs = [folder / "filtered" / f"map_{y}.tif" for y in years]
        for o in outs:
            o.parent.mkdir(parents=True, exist_ok=True)
        data["temporal"] = temporal_majority(year_maps, outs, nodata=nodata[0], years=years)
        filtered = [Artifact.of(o) for o in outs]
        year_maps = outs
    elif settings.temporal_filter == "majority":
        data["temporal"] = {"skipped": f"the temporal filter needs three or more years ({len(years)} mapped)"}
    products: list[Artifact] = []
    tiles = [_single_tile(a.path) for a in maps.embeddings]
    for a, b in pairs(years):
        i, j = years.index(a), years.index(b)
        sub = folder / f"{a}_{b}"
        sub.mkdir(parents=True, exist_ok=True)
        result = write_transitions(year_maps[i], year_maps[j], sub / "transitions.tif", class_table=table,
                                   nodata_a=nodata[i], nodata_b=nodata[j], year_a=a, year_b=b)
        write_matrix(result, sub / "transitions.csv", sub / "transitions.png", class_table=table)
        pair: dict[str, Any] = {"from": a, "to": b, "folder": f"{CHANGE_DIR}/{a}_{b}",
                                **_matrix_figures(result)}
        written = [sub / "transitions.tif", sub / "transitions.tif.aux.xml", sub / "transitions.csv",
                   sub / "transitions.png"]
        tile_a, tile_b = tiles[i], tiles[j]
        if tile_a is not None and tile_b is not None:
            angle = write_embedding_change(tile_a, tile_b, sub / "embedding_angle.tif",
                                           sub / "embedding_changed.tif", threshold_deg=settings.threshold_deg)
            pair["embedding"] = _angle_figures(angle)
            cases, per = agreement_table(result, sub / "embedding_changed.tif")
            cases.to_csv(sub / "agreement.csv", index=False)
            per.to_csv(sub / "agreement_by_transition.csv", index=False)
            pair["agreement"] = json.loads(cases.to_json(orient="records"))
            pair["likely_noise_share"] = float(cases["share"].iloc[-1])
            written += [sub / "embedding_angle.tif", sub / "embedding_changed.tif", sub / "agreement.csv",
                        sub / "agreement_by_transition.csv"]
        else:
            pair["embedding"] = {"skipped": "the embedding change needs one embedding raster per year (a tile "
                                            "collection's is not compared yet)"}
        data["pairs"].append(pair)
        products += [Artifact.of(p) for p in written]
        log.info("change %d -> %d: %s of %s mapped pixels changed class", a, b, f"{pair['changed_pixels']:,}",
                 f"{pair['valid_pixels']:,}")
    path = write_json(data, folder / "change.json")
    return ChangeProducts(summary=Artifact.of(path), products=tuple(products), filtered=tuple(filtered))


def _matrix_figures(result: Any) -> dict[str, Any]:
    import numpy as np

    m = result.matrix
    counts = m.to_numpy(dtype=np.int64)
    same = sum(int(m.at[v, v]) for v in m.index if v in m.columns)
    total = int(counts.sum())
    area = result.pixel_area_m2
    return {"valid_pixels": total, "changed_pixels": total - same, "stable_pixels": same,
            "changed_fraction": (total - same) / total if total else 0.0,
            "changed_hectares": None if area is None else (total - same) * area / 1e4,
            "matrix": {str(r): {str(c): int(m.at[r, c]) for c in m.columns if int(m.at[r, c])} for r in m.index}}


def _angle_figures(angle: Any) -> dict[str, Any]:
    return dict(angle.to_dict())


def change_markdown(data: dict[str, Any]) -> str:
    """The report's section on the change between years, from ``change/change.json``."""
    from lcmodel.markdown import md_table

    years = ", ".join(str(y) for y in data["years"])
    lines = [
        "## Change between years",
        "",
        f"Years mapped with the one model: {years}. `map_<year>.tif` is each year's map; `change/<a>_<b>/` holds "
        "each comparison.",
        "",
        "**The transition counts below are mapped pixels, not areas.** A map's errors make changes of their own "
        "(a pixel misclassified in one year only shows as a change), so these counts overstate change. Area "
        "estimates with 95 % confidence intervals need a labelled change sample: draw it with "
        "`lcmodel validation-sample` using a `transitions.tif` as the strata, label it, then `lcmodel assess` "
        "(Olofsson et al. 2014; docs/change.md).",
        "",
    ]
    temporal = data.get("temporal")
    if temporal:
        if "skipped" in temporal:
            lines += [f"Temporal filter: not applied ({temporal['skipped']}).", ""]
        else:
            shown = ", ".join(f"{y}: {int(v):,}" for y, v in temporal["changed_per_year"].items())
            lines += [f"Temporal filter (majority): one-year flips (A-B-A -> A-A-A) removed first; pixels changed "
                      f"per year: {shown}. The transitions are those of the filtered maps "
                      "(`change/filtered/`).", ""]
    rows = []
    for p in data["pairs"]:
        emb = p.get("embedding", {})
        noise = p.get("likely_noise_share")
        rows.append([f"{p['from']} -> {p['to']}", f"{p['valid_pixels']:,}", f"{p['changed_pixels']:,}",
                     f"{100 * p['changed_fraction']:.2f} %",
                     "-" if p.get("changed_hectares") is None else f"{p['changed_hectares']:,.1f}",
                     "-" if "changed" not in emb else f"{int(emb['changed']):,}",
                     "-" if noise is None else f"{100 * float(noise):.1f} %"])
    header = ["years", "mapped px", "class changed px", "share", "class changed ha",
              f"embedding changed px (>= {data['threshold_deg']:g} deg)", "flips without embedding change"]
    lines += md_table(header, rows)
    return "\n".join(lines) + "\n"
