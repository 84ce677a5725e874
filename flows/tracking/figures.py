"""Figures to MLflow: a finite number becomes a metric; an undefined one (None, NaN, inf, not a number) becomes
the tag ``lcmodel.undefined.<metric>`` holding the reason, so the defined figures are still logged and the
run says what is missing and why instead of failing.

Every ``Tracker.log_*`` / ``PredictionRun.log_*`` method that logs metrics goes through :func:`log_figures`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

__all__ = ["UNDEFINED_TAG", "Figure", "assessment_figures", "figure_entities", "log_figures", "why_undefined"]

#: Prefix of the tag that records why a metric is undefined: ``lcmodel.undefined.<metric name>``.
UNDEFINED_TAG = "lcmodel.undefined."

#: One figure: (metric name, value, step).
Figure = tuple[str, Any, int]

_BATCH = 100  # well under MLflow's per-batch limits (1000 metrics, 100 tags)
_MAX_TAG = 5000


def why_undefined(value: Any) -> str | None:
    """``None`` when ``value`` is a finite number; otherwise what it is, in words."""
    if value is None:
        return "not computed (null)"
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"not a number ({str(value)[:80]!r})"
    if math.isnan(number):
        return "not a number (NaN)"
    if math.isinf(number):
        return f"infinite ({number})"
    return None


def figure_entities(figures: Iterable[Figure], reasons: Mapping[str, str] | None = None
                    ) -> tuple[list[Metric], list[RunTag]]:
    """Metrics for the finite figures, ``lcmodel.undefined.<name>`` tags (the reason) for the others.

    ``reasons`` gives, by metric name, why a figure is undefined (e.g. from ``accuracy_assessment.json``);
    a figure without one is described by :func:`why_undefined`. Several undefined steps of one metric
    share its tag.
    """
    reasons = reasons or {}
    metrics: list[Metric] = []
    undefined: dict[str, list[str]] = {}
    for name, value, step in figures:
        what = why_undefined(value)
        if what is None:
            metrics.append(Metric(name, float(value), 0, step))
            continue
        reason = reasons.get(name) or what
        undefined.setdefault(name, []).append(reason if step == 0 else f"step {step}: {reason}")
    tags = [RunTag(UNDEFINED_TAG + name, "; ".join(dict.fromkeys(why))[:_MAX_TAG])
            for name, why in undefined.items()]
    return metrics, tags


def log_figures(client: MlflowClient, run_id: str, figures: Iterable[Figure],
                reasons: Mapping[str, str] | None = None) -> dict[str, str]:
    """Log the finite figures as metrics and tag the undefined ones; returns ``{metric: reason}`` of those."""
    metrics, tags = figure_entities(figures, reasons)
    for i in range(0, max(len(metrics), len(tags)), _BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + _BATCH], tags=tags[i : i + _BATCH])
    return {t.key[len(UNDEFINED_TAG):]: t.value for t in tags}


def assessment_figures(data: Mapping[str, Any]) -> tuple[list[Figure], dict[str, str]]:
    """The metrics of an ``accuracy_assessment.json`` and, by metric name, why those that are null are."""
    overall = data.get("undefined") or {}
    if not data.get("computed"):
        reason = str(data.get("reason") or "the assessment was not computed")
        return [("area_adjusted_overall_accuracy", None, 0)], {"area_adjusted_overall_accuracy": reason}
    figures: list[Figure] = [("area_adjusted_overall_accuracy", data.get("overall_accuracy"), 0),
                             ("area_adjusted_overall_accuracy_ci95", data.get("overall_accuracy_ci95"), 0)]
    if "assessed_share" in data:  # the share of the map the estimates cover (strata without test points left out)
        figures.append(("area_adjusted_assessed_share", data["assessed_share"], 0))
    reasons = {f"area_adjusted_{k}": v for k, v in overall.items()}
    for value, c in (data.get("per_class") or {}).items():
        for key in ("area_ha", "area_ha_ci95", "users_accuracy", "producers_accuracy"):
            if key in c:
                figures.append((f"{key}_class_{value}", c[key], 0))
                if key in (c.get("undefined") or {}):
                    reasons[f"{key}_class_{value}"] = c["undefined"][key]
    cluster, cluster_reasons = _cluster_figures(data)
    return figures + cluster, {**reasons, **cluster_reasons}


def _cluster_figures(data: Mapping[str, Any]) -> tuple[list[Figure], dict[str, str]]:
    """The cluster (spatial blocks) standard errors of a spatial split's assessment: ``..._cluster`` metrics."""
    cluster = data.get("cluster")
    if not cluster:
        return [], {}
    figures: list[Figure] = [(f"area_adjusted_{k}_cluster", cluster.get(k), 0)
                             for k in ("overall_accuracy_se", "overall_accuracy_ci95")]
    figures.append(("area_adjusted_design_effect_cluster", data.get("design_effect_cluster"), 0))
    reasons = {f"area_adjusted_{k}_cluster": v for k, v in (cluster.get("undefined") or {}).items()}
    for value, c in (cluster.get("per_class") or {}).items():
        for key in ("users_ci95", "producers_ci95", "area_ha_ci95"):
            if key in c:
                figures.append((f"{key}_cluster_class_{value}", c[key], 0))
                if key in (c.get("undefined") or {}):
                    reasons[f"{key}_cluster_class_{value}"] = c["undefined"][key]
    return figures, reasons
