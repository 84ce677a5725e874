"""MLflow for ``embedding.years``: one child run per mapped year, and the change products on the flow's run.

Each mapped year (the train year too) gets a run nested under the flow's training run (``mlflow.parentRunId``),
named ``<flow run name>-<year>``, tagged ``lcmodel.kind: year`` and ``lcmodel.year``, holding the year's
prediction figures (pixels and hectares per class, speed), its ``prediction.json``, its area-of-applicability
summary and quicklook. The flow's run gets the change figures (pixels that changed class, and whose embedding
changed, per pair of years), each transition matrix as an MLflow table (``change/<a>_<b>/transitions.json``)
and the heat maps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flows.tracking.figures import Figure, log_figures

__all__ = ["log_year", "log_change"]


def log_year(tracker: Any, year: int, summary: Mapping[str, Any], files: Iterable[Path | None]) -> str:
    """A child run of the flow's run for one mapped year; its run id."""
    from flows.tracking.runs import finish_run, prediction_figures

    client = tracker.client
    parent = client.get_run(tracker.run_id)
    tags = {"mlflow.parentRunId": tracker.run_id, "lcmodel.kind": "year", "lcmodel.year": str(year)}
    if (flow_run := parent.data.tags.get("prefect.flow_run_id")) is not None:
        tags["prefect.flow_run_id"] = flow_run
    run = client.create_run(tracker.experiment_id, run_name=f"{parent.info.run_name}-{year}", tags=tags)
    run_id: str = run.info.run_id
    log_figures(client, run_id, prediction_figures(summary))
    client.log_dict(run_id, dict(summary), "prediction.json")
    for path in files:
        if path is not None and Path(path).is_file():
            client.log_artifact(run_id, str(path))
    finish_run(client, run_id)
    return run_id


def log_change(tracker: Any, summary_path: Path, files: Iterable[Path]) -> None:
    """The change figures per pair of years, the transition matrices as tables, the heat maps."""
    import pandas as pd

    client = tracker.client
    data = json.loads(Path(summary_path).read_text())
    figures: list[Figure] = []
    for pair in data["pairs"]:
        tag = f"{pair['from']}_{pair['to']}"
        figures += [(f"change_{tag}_changed_pixels", pair["changed_pixels"], 0),
                    (f"change_{tag}_changed_fraction", pair["changed_fraction"], 0)]
        if pair.get("changed_hectares") is not None:
            figures.append((f"change_{tag}_changed_ha", pair["changed_hectares"], 0))
        emb = pair.get("embedding") or {}
        if "changed" in emb:
            figures.append((f"change_{tag}_embedding_changed_pixels", emb["changed"], 0))
    log_figures(client, tracker.run_id, figures)
    client.log_dict(tracker.run_id, data, "change/change.json")
    for path in files:
        path = Path(path)
        folder = f"change/{path.parent.name}"
        if path.name == "transitions.csv":
            client.log_table(tracker.run_id, pd.read_csv(path), f"{folder}/transitions.json")
        elif path.suffix in (".png", ".csv"):
            client.log_artifact(tracker.run_id, str(path), folder)
