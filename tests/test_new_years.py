"""A new year maps itself: the years a source holds, the years a folder has mapped, the `landcover-years` flow
in process and as the `new-years` deployment through a real Prefect server and process worker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lcmodel.errors import ConfigError
from lcmodel.pipeline.years import available_years, mapped_years_on_disk
from tests.rasters import tiny_years_config


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_available_years_of_a_placeholder_a_glob_and_an_index(tmp_path: Path) -> None:
    for year in (2019, 2020, 2024):
        _touch(tmp_path / "emb" / str(year) / "embedding.tif")
    _touch(tmp_path / "emb" / "2021" / "notes.txt")  # a folder of the year without the file: not available
    _touch(tmp_path / "emb" / "20x1" / "embedding.tif")
    assert available_years(tmp_path / "emb" / "{year}" / "embedding.tif") == [2019, 2020, 2024]
    for name in ("a-0-0.tiff", "b-0-1.tiff"):
        _touch(tmp_path / "aef" / "2018" / "10N" / name)
    _touch(tmp_path / "aef" / "2023" / "10N" / "c-0-0.tiff")
    assert available_years((str(tmp_path / "aef" / "{year}" / "*" / "*.tiff"),)) == [2018, 2023]
    assert available_years((str(tmp_path / "flat" / "e_{year}_*.tif"),)) == []
    _touch(tmp_path / "flat" / "e_2017_v1.tif")
    _touch(tmp_path / "flat" / "e_1700_v1.tif")  # not a year of embeddings
    assert available_years((str(tmp_path / "flat" / "e_{year}_*.tif"),)) == [2017]
    index = tmp_path / "aef_index.csv"
    index.write_text("path,year,wgs84_west,wgs84_south,wgs84_east,wgs84_north\n"
                     "a.tif,2022,0,0,1,1\nb.tif,2020,0,0,1,1\nc.tif,2022,1,0,2,1\n")
    assert available_years((str(index),)) == [2020, 2022]


@pytest.mark.parametrize(("spec", "message"), [
    (("https://data.example.org/aef/{year}/x.tif",), "is remote: its years cannot be listed"),
    (Path("/data/embedding.tif"), "names no year"),
])
def test_years_that_cannot_be_listed_are_one_line(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        available_years(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def _two_of_three(root: Path) -> dict[str, Any]:
    """The 3-year demo on disk, the config listing 2021 and 2022 only, run with the plain runner."""
    from lcmodel.config import load_config
    from lcmodel.pipeline import StageRun, run_stages

    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg_path = tiny_years_config(root / "data", listed=(2021, 2022),
                                 tracking={"experiment": "newyears", "register_as": "newyears", "uri": uri})
    data = yaml.safe_load(cfg_path.read_text())
    plain = {k: v for k, v in data.items() if k != "tracking"}
    plain_path = cfg_path.with_name("plain.yaml")
    plain_path.write_text(yaml.safe_dump(plain))
    run_stages(StageRun(load_config(plain_path)), mapping=True)
    return {"cfg": cfg_path, "out": root / "data" / "results", "uri": uri}


def test_the_flow_maps_the_new_year_once_then_does_nothing(tmp_path: Path, prefect_harness: None) -> None:
    from mlflow import MlflowClient

    from flows.config import load_flow_config
    from flows.new_years import landcover_years

    two = _two_of_three(tmp_path)
    assert mapped_years_on_disk(two["out"], 2021) == [2021, 2022]
    assert mapped_years_on_disk(tmp_path / "nothing", 2021) == []
    cfg = load_flow_config(two["cfg"])
    root = two["cfg"].parent
    first = landcover_years(cfg)
    assert first["new_years"] == [2023] and first["mapped_years"] == [2021, 2022, 2023]
    executed = set(first["executed"])
    assert "tune" not in executed and "fit_final" not in executed  # the model is not retrained
    assert {"predict_map[2023]", "change"} <= executed and "predict_map[2022]" not in executed
    out = root / "results"
    assert (out / "map_2023.tif").is_file() and (out / "change" / "2022_2023" / "transitions.tif").is_file()
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    runs = len(client.search_runs([client.get_experiment_by_name("newyears").experiment_id]))
    again = landcover_years(cfg)
    assert again["new_years"] == [] and again["mapped_years"] == [2021, 2022, 2023]
    assert len(client.search_runs([client.get_experiment_by_name("newyears").experiment_id])) == runs


@pytest.mark.integration
def test_the_new_years_deployment_through_a_worker(tmp_path: Path) -> None:
    from tests.servers import BIN, free_port, subprocess_env
    from tests.test_integration import Started, _run, _wait_http

    two_of_three = _two_of_three(tmp_path / "case")
    started = Started()
    try:
        port = free_port()
        api = f"http://127.0.0.1:{port}/api"
        env = subprocess_env(tmp_path, PREFECT_API_URL=api, MLFLOW_TRACKING_URI=two_of_three["uri"])
        prefect = str(BIN / "prefect")
        server_log = tmp_path / "server.log"
        server = started.start([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                               env, server_log)
        _wait_http(f"{api}/health", server, server_log)
        _run([prefect, "work-pool", "create", "lcmodel-pool", "--type", "process"], env)
        out = _run([prefect, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", "--no-prompt"], env)
        assert "landcover-years/new-years" in out
        states = []
        for k in range(2):
            out = _run([prefect, "deployment", "run", "landcover-years/new-years", "--params",
                        json.dumps({"config": str(two_of_three["cfg"])})], env)
            flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out)
            assert flow_run_id, out
            log = tmp_path / f"worker{k}.log"
            worker = started.start([prefect, "worker", "start", "--pool", "lcmodel-pool", "--type", "process",
                                    "--run-once"], env, log)
            worker.wait(timeout=300)
            import urllib.request

            with urllib.request.urlopen(f"{api}/flow_runs/{flow_run_id.group(1)}", timeout=10) as r:
                states.append(json.load(r)["state"]["type"])
            assert states[-1] == "COMPLETED", log.read_text()[-3000:]
            if k == 0:
                assert (two_of_three["out"] / "map_2023.tif").is_file()
                record = two_of_three["out"] / "years" / "2023" / ".lcmodel" / "stages" / "predict_map.json"
                mtime = record.stat().st_mtime_ns
            else:
                assert "nothing new: years [2021, 2022, 2023] are mapped" in log.read_text()
                assert record.stat().st_mtime_ns == mtime
        with urllib.request.urlopen(urllib.request.Request(
                f"{api}/deployments/name/landcover-years/new-years", method="GET"), timeout=10) as r:
            deployment = json.load(r)
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 4 * * 1"]
    finally:
        started.stop()
