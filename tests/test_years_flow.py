"""embedding.years through `lcmodel run` (the Prefect flow): every year mapped, the change products, one MLflow
child run per year, Prefect tasks named by year, and a rerun that does nothing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest
import rasterio

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from lcmodel.demo_years import planted_blocks  # noqa: E402
from tests.rasters import tiny_years_config  # noqa: E402

YEARS = (2021, 2022, 2023)


@pytest.fixture(scope="module")
def flow_years(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    from click.testing import CliRunner

    from flows.cli import cli

    root = tmp_path_factory.mktemp("years-flow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = tiny_years_config(root / "data", prediction={"temporal_filter": "majority"},
                            tracking={"experiment": "years", "uri": uri})
    first = CliRunner().invoke(cli, ["run", str(cfg)], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    out = root / "data" / "results"
    digests = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(out.rglob("*.tif"))}
    records = {p: p.stat().st_mtime_ns for p in out.rglob(".lcmodel/stages/*.json")}
    again = CliRunner().invoke(cli, ["run", str(cfg)], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    return {"out": out, "uri": uri, "first": first.output, "again": again.output, "digests": digests,
            "records": records, "records_after": {p: p.stat().st_mtime_ns for p in records}}


def test_the_flow_maps_every_year_and_compares_them(flow_years: dict[str, Any]) -> None:
    out = flow_years["out"]
    for year in YEARS:
        assert (out / f"map_{year}.tif").is_file()
    summary = json.loads((out / "change" / "change.json").read_text())
    assert [(p["from"], p["to"]) for p in summary["pairs"]] == [(2021, 2022), (2022, 2023), (2021, 2023)]
    for a, b in ((2021, 2022), (2022, 2023), (2021, 2023)):
        folder = out / "change" / f"{a}_{b}"
        for name in ("transitions.tif", "transitions.csv", "transitions.png", "embedding_angle.tif",
                     "embedding_changed.tif", "agreement.csv"):
            assert (folder / name).is_file(), (folder, name)
    report = (out / "report.md").read_text()
    assert "## Change between years" in report and "mapped pixels, not areas" in report
    # the lasting planted change is in the first-vs-last comparison; the one-year flip was filtered away
    rows, cols = planted_blocks(96)["changed"]
    with rasterio.open(out / "change" / "2021_2023" / "embedding_changed.tif") as src:
        changed = src.read(1)
    assert (changed[rows, cols] == 1).all()
    assert summary["temporal"]


def test_one_mlflow_child_run_per_year_and_the_change_on_the_flow_run(flow_years: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=flow_years["uri"])
    exp = client.get_experiment_by_name("years")
    training = client.search_runs([exp.experiment_id], filter_string="tags.`lcmodel.kind` = 'training'",
                                  order_by=["attributes.start_time ASC"])
    first = training[0]
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = "
                                  f"'{first.info.run_id}' and tags.`lcmodel.kind` = 'year'")
    assert sorted(int(r.data.tags["lcmodel.year"]) for r in children) == list(YEARS)
    for run in children:
        assert run.info.run_name == f"{first.info.run_name}-{run.data.tags['lcmodel.year']}"
        assert run.data.metrics["predict_valid_pixels"] > 0
        assert run.info.status == "FINISHED"
    assert "change_2021_2023_changed_pixels" in first.data.metrics
    artifacts = {a.path for a in client.list_artifacts(first.info.run_id, "change/2021_2023")}
    assert "change/2021_2023/transitions.json" in artifacts and "change/2021_2023/transitions.png" in artifacts


def test_prefect_tasks_say_their_year(flow_years: dict[str, Any]) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    async def names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="-202")),
                                               limit=200)
            return [r.name for r in runs]

    import asyncio

    found = set(asyncio.run(names()))
    assert {"predict_map-2022", "predict_map-2023", "applicability-2023"} <= found


def test_a_rerun_changes_nothing_and_the_maps_are_the_same_bytes(flow_years: dict[str, Any]) -> None:
    out = flow_years["out"]
    now = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(out.rglob("*.tif"))}
    assert now == flow_years["digests"]
    # no stage of any year ran again: every record (the train year's and each year's) is untouched
    assert len(flow_years["records"]) >= 13 + 2 * 3
    assert flow_years["records_after"] == flow_years["records"]
    with rasterio.open(out / "map_2022.tif") as a, rasterio.open(out / "years" / "2022" / "map.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
