"""The command line: thin over the library; a user's mistake is one line and exit code 2."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from sklearn.ensemble import RandomForestClassifier

from flows.cli import cli  # the `lcmodel` console script (the plain commands and the flow's)
from lcmodel.cli import cli as plain_cli
from lcmodel.io import sha256_file
from tests.rasters import tiny_demo_config  # noqa: E402


def _invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _assert_one_line_error(result: object, pattern: str) -> None:
    import re

    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo case with a fast grid (a few seconds end to end)."""
    root = tmp_path_factory.mktemp("clidemo")
    return tiny_demo_config(root, stages=[{"max_features": ["sqrt"], "min_samples_leaf": [1, 5]},
                                          {"n_estimators": [10, 20]}])


def _with_output(cfg_path: Path, out: str) -> Path:
    data = yaml.safe_load(cfg_path.read_text())
    data["output"] = {"dir": out}
    new = cfg_path.with_name(f"{out}.yaml")
    new.write_text(yaml.safe_dump(data))
    return new


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    _assert_one_line_error(_invoke("run", str(tmp_path / "nope.yaml")), r"config file .*nope.yaml' does not exist")


def test_mistyped_key_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reference: {path: r.tif}\nembedding: {path: e.tif}\nsampling: {n_sampel: 3}\n")
    _assert_one_line_error(_invoke("train", str(cfg)),
                           r"unknown config key 'sampling.n_sampel'; did you mean 'n_sample'")


def test_missing_input_file_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reference: {path: r.tif}\nembedding: {path: e.tif}\n")
    _assert_one_line_error(_invoke("sample", str(cfg)), r"r.tif' does not exist")


def test_bare_estimator_pickle_is_refused(tmp_path: Path) -> None:
    model = RandomForestClassifier(n_estimators=2).fit(np.eye(3), [1, 2, 3])
    path = tmp_path / "best_model.pkl"
    path.write_bytes(pickle.dumps(model))
    emb = tmp_path / "e.tif"
    result = _invoke("predict", "--model", str(path), "--embedding", str(emb), "--out", str(tmp_path / "m.tif"))
    _assert_one_line_error(result, r"is a pickle written by an older lcmodel \(loading it would run code")
    assert not (tmp_path / "m.tif").exists()
    result = _invoke("predict", "--model", str(path), "--embedding", str(emb), "--out", str(tmp_path / "m.tif"),
                     "--trust-model")
    _assert_one_line_error(result, r"not an lcmodel model bundle")
    assert not (tmp_path / "m.tif").exists()


def test_plain_cli_imports_no_orchestration() -> None:
    """lcmodel.cli (``python -m lcmodel.cli``) imports neither flows nor prefect nor mlflow."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import sys, lcmodel.cli\n"
            "print([m for m in sys.modules if m.split('.')[0] in {'flows', 'prefect', 'mlflow'}])")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(root)), cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _invoke_plain(*args: str) -> object:
    return CliRunner().invoke(plain_cli, list(args), catch_exceptions=False)


def test_plain_cli_refuses_orchestrated_work_in_one_line(tiny_demo: Path, tmp_path: Path) -> None:
    """Without flows.cli: run/demo without --plain and registry models are one-line errors, nothing written."""
    _invoke = _invoke_plain
    _assert_one_line_error(_invoke("run", str(tiny_demo)),
                           r"`run` without --plain runs the Prefect flow; python -m lcmodel.cli runs the plain "
                           r"commands only: use the `lcmodel` command \(flows.cli\), or add --plain")
    _assert_one_line_error(_invoke("demo", "--dir", str(tmp_path / "demo")), r"`demo` without --plain")
    assert not (tmp_path / "demo").exists()
    result = _invoke("predict", "--model", "models:/lc@champion", "--embedding", str(tmp_path / "e.tif"),
                     "--out", str(tmp_path / "m.tif"))
    _assert_one_line_error(result, r"model 'models:/lc@champion' is a registry reference; .*, or give a bundle path")
    assert not (tmp_path / "m.tif").exists()


def test_sample_then_run_then_predict(tiny_demo: Path, tmp_path: Path) -> None:
    cfg = _with_output(tiny_demo, "cli_a")
    out = cfg.parent / "cli_a"
    result = _invoke("sample", str(cfg))
    assert result.exit_code == 0, result.output
    assert (out / "training_table.csv").is_file()
    result = _invoke("run", "--plain", str(cfg))
    assert result.exit_code == 0, result.output
    assert "overall accuracy" in result.output
    for name in ("model.skops", "metrics.json", "report.md", "map.tif", "confidence.tif", "map_quicklook.png"):
        assert (out / name).is_file(), name
    # predicting again with the bundle gives the same map, bit for bit
    again = tmp_path / "again.tif"
    result = _invoke("predict", "--model", str(out / "model.skops"), "--embedding",
                     str(tiny_demo.parent / "embedding.tif"), "--out", str(again))
    assert result.exit_code == 0, result.output
    with rasterio.open(again) as a, rasterio.open(out / "map.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_same_config_same_map_bit_for_bit(tiny_demo: Path) -> None:
    maps = []
    for name in ("bit_1", "bit_2"):
        cfg = _with_output(tiny_demo, name)
        result = _invoke("run", "--plain", str(cfg))
        assert result.exit_code == 0, result.output
        maps.append(cfg.parent / name)
    for f in ("map.tif", "confidence.tif", "training_table.csv", "best_params.json"):
        assert sha256_file(maps[0] / f) == sha256_file(maps[1] / f), f
    m0 = json.loads((maps[0] / "metrics.json").read_text())
    m1 = json.loads((maps[1] / "metrics.json").read_text())
    assert m0["test"] == m1["test"]


@pytest.mark.realdata
def test_zion_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    """Landsat 8 stack (4 bands, 30 m) + NLCD 2011 on another grid, through `lcmodel run --plain`.

    Floor: the model must beat the trivial map (every pixel the test set's majority class) by a wide
    margin. With seed 42 we measured overall accuracy 0.68 and kappa 0.52 against NLCD, whose own
    accuracy at Anderson level II is about 80 %; 4 Landsat bands cannot separate NLCD's forest types
    much better. The floor, OA >= majority share + 0.15 and kappa >= 0.35, leaves room for platform
    float differences while failing any broken stage (misaligned labels or unprojected points fall to
    chance).
    """
    zion = shared_data / "zion"
    cfg = tmp_path / "zion.yaml"
    cfg.write_text(yaml.safe_dump({
        "reference": {"path": str(zion / "nlcd2011.tif"), "n_points": 3000},
        "embedding": {"path": str(zion / "zion_landsat8_b2345_stack.tif")},
        "sampling": {"n_sample": 2000},
        "tuning": {"stages": [{"max_features": ["sqrt", 2], "min_samples_leaf": [1, 5]},
                              {"n_estimators": [100]}]},
        "output": {"dir": str(tmp_path / "out")},
    }))
    result = _invoke("run", "--plain", str(cfg))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["test"]
    support = {k: v["support"] for k, v in metrics["per_class"].items()}
    majority_share = max(support.values()) / sum(support.values())
    assert metrics["overall_accuracy"] >= majority_share + 0.15, (metrics["overall_accuracy"], majority_share)
    assert metrics["kappa"] >= 0.35
    with rasterio.open(tmp_path / "out" / "map.tif") as src:
        assert src.crs.to_epsg() == 32612
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_progress_plain_lines_when_not_a_terminal() -> None:
    import io

    from lcmodel.cli import Progress

    stream = io.StringIO()  # not a tty
    progress = Progress("predicting blocks", stream=stream)
    for done in range(1, 21):
        progress(done, 20)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("predicting blocks: 1/20 (5%")
    assert lines[-1].startswith("predicting blocks: 20/20 (100%")
    assert len(lines) == 11  # one line per tenth, plus the first


def test_progress_bar_in_a_terminal() -> None:
    import io

    from lcmodel.cli import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = Progress("tuning candidates", stream=stream)
    progress(1, 4)
    progress(4, 4)
    out = stream.getvalue()
    assert "\r" in out and "[#######" in out and out.endswith("\n")
