"""The report's area-adjusted assessment section (``accuracy_assessment.json`` -> Markdown).

:func:`assessment_markdown`: the design, the Olofsson estimates with their 95 % CIs and the undefined ones'
reasons; :func:`not_assessed_markdown`: the strata left out (no test point) and what the estimates cover;
:func:`cluster_markdown`: which standard-error design applies and, for a spatial split, the cluster CIs
beside the independent-points ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lcmodel.markdown import fmt as _fmt
from lcmodel.markdown import md_table as _md_table

__all__ = ["assessment_markdown", "cluster_markdown", "not_assessed_markdown"]


def assessment_markdown(result: Mapping[str, Any], heading: str) -> str:
    """Report section of an area-adjusted assessment (:func:`lcmodel.accuracy.stratified_estimates` + design).

    An estimate that could not be computed reads "undefined" in its cell, and the section lists why
    (the ``undefined`` reasons of the assessment), grouped by reason.
    """
    lines = [heading, ""]
    lines += [f"> {line}" for line in result.get("design", [])] + [""]
    if not result.get("computed", True):
        lines += [f"Not computed (undefined): {result.get('reason')}", ""]
        return "\n".join(lines)
    z = result.get("z", 1.96)
    overall_undefined = result.get("undefined") or {}
    ci = ("undefined" if "overall_accuracy_ci95" in overall_undefined
          else _fmt(result["overall_accuracy_ci95"], 4))
    lines += [
        f"Overall accuracy {_fmt(result['overall_accuracy'], 4)} +/- {ci} "
        f"(95 % CI, z = {z}), from {result['n_samples']} test points; the error matrix is in area proportions.",
        "",
    ]
    names = result.get("class_names", {})
    ha = result.get("pixel_area_m2") is not None
    lines += not_assessed_markdown(result, names, ha)
    header = ["Class", "Map share", "n", "User's", "+/- 95 %", "Producer's", "+/- 95 %",
              "Area (ha)" if ha else "Area (px)", "+/- 95 %", "Map area (ha)" if ha else "Map area (px)"]
    keys = ["users_accuracy", "users_ci95", "producers_accuracy", "producers_ci95",
            "area_ha" if ha else "area_pixels", "area_ha_ci95" if ha else "area_pixels_ci95"]
    rows = []
    why: dict[str, list[str]] = {}
    if "overall_accuracy_ci95" in overall_undefined:
        why.setdefault(overall_undefined["overall_accuracy_ci95"], []).append("overall accuracy +/- 95 %")
    for key, c in result["per_class"].items():
        undefined = c.get("undefined") or {}
        name = names.get(key, key)
        cells = []
        for k, label in zip(keys, _ASSESSMENT_LABELS, strict=True):
            if k in undefined or c.get(k) is None:
                cells.append("undefined")
                why.setdefault(undefined.get(k, "not computable from this sample"), []).append(f"{name} {label}")
            else:
                cells.append(_fmt(c[k], 1 if k.startswith("area") else 3))
        rows.append([name, c["map_proportion"], c["n_samples"], *cells,
                     _fmt(c["map_area_ha"] if ha else c["map_pixels"], 1)])
    lines += _md_table(header, rows) + [""]
    if why:
        lines += ["Undefined estimates:", ""]
        lines += [f"- undefined: {reason} ({'; '.join(what)})" for reason, what in why.items()] + [""]
    lines += cluster_markdown(result)
    return "\n".join(lines)


def cluster_markdown(result: Mapping[str, Any]) -> list[str]:
    """Lines of the assessment's standard-error design (:func:`lcmodel.accuracy.cluster.cluster_figures`): which
    design applies and, for a spatial split, the cluster 95 % CIs beside the independent-points ones."""
    if "se_design_note" not in result:
        return []
    lines = [f"**Standard errors.** {result['se_design_note']}", ""]
    cluster = result.get("cluster")
    if not cluster:
        return lines

    def ci(row: Mapping[str, Any], key: str, digits: int) -> str:
        value = row.get(key)
        return "undefined" if value is None or key in (row.get("undefined") or {}) else _fmt(float(value), digits)

    lines += [f"Overall accuracy {_fmt(result['overall_accuracy'], 4)}: +/- {ci(cluster, 'overall_accuracy_ci95', 4)} "
              f"(95 % CI, cluster: {cluster['n_blocks']} blocks, t = {_fmt(cluster.get('z'), 2)} with "
              f"{cluster.get('df')} df) vs +/- {ci(result, 'overall_accuracy_ci95', 4)} "
              f"(independent points); design effect {_fmt(result.get('design_effect_cluster'), 2)} "
              f"({cluster['estimator']}).", ""]
    area = "area_ha_ci95" if result.get("pixel_area_m2") is not None else "area_pixels_ci95"
    pairs = [("users_ci95", 3), ("producers_ci95", 3), (area, 1)]
    header = ["Class", "Blocks", "User's +/- 95 % (indep.)", "(cluster)", "Producer's +/- 95 % (indep.)", "(cluster)",
              "Area +/- 95 % (indep.)", "(cluster)"]
    names = result.get("class_names", {})
    rows = [[names.get(key, key), cluster["per_class"][key]["n_blocks"],
             *[v for k, d in pairs for v in (ci(c, k, d), ci(cluster["per_class"][key], k, d))]]
            for key, c in result["per_class"].items()]
    lines += _md_table(header, rows) + [""]
    reasons = sorted({*(cluster.get("undefined") or {}).values(),
                      *(r for c in cluster["per_class"].values() for r in (c.get("undefined") or {}).values())})
    lines += [f"- cluster standard error undefined: {reason}" for reason in reasons] + ([""] if reasons else [])
    return lines


def not_assessed_markdown(result: Mapping[str, Any], names: Mapping[str, str], ha: bool) -> list[str]:
    """Report lines: what the area-adjusted estimates cover and the strata left out (no test point), with their
    mapped area, and the bounds of the whole map's overall accuracy."""
    if "scope" not in result:
        return []
    lines = [result["scope"], ""]
    missing = result.get("not_assessed") or []
    if missing:
        lo, hi = result["overall_accuracy_whole_map_bounds"]
        rows = [[names.get(str(r["class"]), str(r["class"])), int(r["map_pixels"]), f"{100 * r['map_share']:.2f} %",
                 _fmt(r["map_area_ha"], 1) if ha and "map_area_ha" in r else "-"] for r in missing]
        lines += ["Not assessed (map classes with no test point):", ""]
        lines += _md_table(["Class", "Map pixels", "Map share", "Map area (ha)"], rows) + [""]
        lines += [f"Whatever those strata hold, the whole map's overall accuracy lies between {_fmt(lo, 4)} "
                  f"(all their pixels wrong) and {_fmt(hi, 4)} (all right).", ""]
    return lines


_ASSESSMENT_LABELS = ("user's", "user's +/- 95 %", "producer's", "producer's +/- 95 %", "area", "area +/- 95 %")
