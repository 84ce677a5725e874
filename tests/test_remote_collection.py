"""A tile collection read over HTTP through an index, end to end through `lcmodel run` (the Prefect flow)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from lcmodel.sources import Collection, describe_tile
from tests.remote_servers import RangeServer
from tests.test_tiles import write_collection


def test_lcmodel_run_on_a_remote_index_of_tiles(prefect_harness: None, range_server: RangeServer,
                                                remote_folder: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from flows.cli import cli

    data = write_collection(remote_folder / "coll")
    rows = []
    for tif in sorted(data["tiles"].glob("*.tif")):
        w, s, e, n = describe_tile(str(tif), "tile", lambda _: {}).footprint("EPSG:4326").bounds
        rows.append({"path": f"tiles/{tif.name}", "year": 2021, "wgs84_west": w, "wgs84_south": s,
                     "wgs84_east": e, "wgs84_north": n})
    rows.append({**rows[0], "path": "tiles/not-there-2020.tif", "year": 2020})  # another year: never opened
    pd.DataFrame(rows).to_csv(remote_folder / "coll" / "aef_index.csv", index=False)
    range_server.reset()
    cfg = {
        "reference": {"path": str(data["reference"]), "n_points": 600},
        "classes": {"table": str(data["classes"]), "name_column": "name", "color_column": "color"},
        "embedding": {"path": range_server.url("coll/aef_index.csv"), "year": 2021},
        "sampling": {"n_sample": 500, "split": "random"},
        "tuning": {"cv": 3, "cv_strategy": "random", "stages": [{"max_features": ["sqrt"], "n_estimators": [8]}]},
        "prediction": {"block_size": 32},
        "output": {"dir": str(tmp_path / "out")},
        "tracking": {"experiment": "remote-tiles"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = CliRunner(env=env).invoke(cli, ["run", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = Collection.read(out / ".lcmodel" / "inputs" / "embedding.json")
    assert [t.name for t in manifest] == sorted(p.name for p in data["tiles"].glob("*.tif"))
    assert all(t.path.startswith("http://127.0.0.1:") for t in manifest)
    assert all(t.identity for t in manifest)  # ETag / size from the server, not a download
    assert len(list((out / "tiles").glob("*/map.tif"))) == len(manifest)
    summary = json.loads((out / "prediction.json").read_text())
    assert summary["n_valid"] > 0
    assert range_server.listing_requests() == 0
    stats = range_server.stats()
    assert not any("not-there" in k for k in stats), "a tile of another year was opened"
