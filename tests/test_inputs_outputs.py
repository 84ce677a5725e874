"""docs/errors.md, "Inputs, outputs and orchestration commands": one line, exit 2, in BOTH run paths.

Each run case goes through ``lcmodel run`` (the Prefect flow, flows.cli) and ``lcmodel run --plain``; the
registry and compare cases through flows.cli. Every case asserts exit code 2, exactly one ``error:`` line
matching the message, no traceback, and that nothing was written (the inputs are unchanged).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from flows.cli import cli  # the `lcmodel` console script
from tests.rasters import origin_transform, write_raster

H = W = 32
WEST, NORTH, RES = 500000.0, 8000000.0, 10.0

PATHS = [pytest.param(["run"], id="flow"), pytest.param(["run", "--plain"], id="plain")]


@pytest.fixture(scope="module")
def flow_ready(prefect_harness: None) -> None:
    """One temporary Prefect server for the flow cases of this module (tests/conftest.py)."""


@pytest.fixture()
def case(tmp_path: Path) -> dict[str, Path]:
    data = np.random.default_rng(3).normal(size=(4, H, W)).astype(np.float32)
    emb = write_raster(tmp_path / "emb.tif", data)
    r, c = np.mgrid[0:H, 0:W]
    classes = np.where(c < W // 2, 10, np.where(r < H // 2, 20, 30)).astype(np.uint8)
    ref = write_raster(tmp_path / "ref.tif", classes, transform=origin_transform(WEST, NORTH, RES), nodata=0)
    return {"root": tmp_path, "emb": emb, "ref": ref, "out": tmp_path / "out"}


def _config(case: dict[str, Path], path: Path | None = None, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "reference": {"path": str(case["ref"]), "n_points": 200},
        "embedding": {"path": str(case["emb"])},
        "sampling": {"n_sample": 200, "min_class_fraction": 0.0},
        "tuning": {"cv": 2, "stages": [{"max_features": ["sqrt"]}, {"n_estimators": [5]}]},
        "output": {"dir": str(case["out"])},
        "tracking": {"experiment": "bad-inputs"},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    path = path or case["root"] / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def _state(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its SHA-256 (what the run must leave as it found it)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fails(args: list[str], pattern: str, root: Path | None = None) -> str:
    """Run the `lcmodel` CLI; exit 2, one matching error line, no traceback, ``root`` unchanged."""
    before = _state(root) if root is not None else {}
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in result.output, result.output
    if root is not None:
        assert _state(root) == before, "the run wrote or changed files"
    return errors[0]


def _needs_flow(path: list[str], request: pytest.FixtureRequest) -> None:
    if "--plain" not in path:
        request.getfixturevalue("flow_ready")


# --- config values and files --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [2**32, -1])
@pytest.mark.parametrize("path", PATHS)
def test_random_state_out_of_range(case: dict[str, Path], path: list[str], seed: int) -> None:
    cfg = _config(case, sampling={"random_state": seed})
    _fails([*path, str(cfg)], r"config key 'sampling.random_state': Input should be (less|greater) than or equal "
           rf"to (4294967295|0) \(got {seed}\)", case["root"])
    assert not case["out"].exists()


@pytest.mark.parametrize("path", PATHS)
def test_config_file_not_utf8(case: dict[str, Path], path: list[str]) -> None:
    cfg = _config(case)
    cfg.write_bytes(cfg.read_bytes() + b"# caf\xe9 (latin-1)\n")
    _fails([*path, str(cfg)], r"config file '.*config.yaml' is not UTF-8 text \(byte 0xe9 on line \d+\); save it "
           r"as UTF-8", case["root"])


# --- inputs that do not exist, outputs that cannot be -------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_missing_reference_file(case: dict[str, Path], path: list[str], request: pytest.FixtureRequest) -> None:
    _needs_flow(path, request)
    cfg = _config(case, reference={"path": str(case["root"] / "missing.csv")})
    _fails([*path, str(cfg)], r"points file '.*missing.csv' does not exist; check reference.path", case["root"])


@pytest.mark.parametrize("path", PATHS)
def test_output_dir_under_a_regular_file(case: dict[str, Path], path: list[str],
                                         request: pytest.FixtureRequest) -> None:
    _needs_flow(path, request)
    (case["root"] / "a_file").write_text("x")
    cfg = _config(case, output={"dir": str(case["root"] / "a_file" / "out")})
    _fails([*path, str(cfg)], r"output folder '.*a_file/out' cannot be created \(Not a directory\); choose a "
           r"writable output.dir", case["root"])


# --- inputs are never outputs -------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_reference_csv_named_like_an_output(case: dict[str, Path], path: list[str],
                                            request: pytest.FixtureRequest) -> None:
    _needs_flow(path, request)
    case["out"].mkdir()
    csv = case["out"] / "reference_points.csv"
    csv.write_text("x,y,label\n500005,7999995,10\n")
    cfg = _config(case, reference={"path": str(csv)})
    _fails([*path, str(cfg)], r"points file '.*out/reference_points.csv' is '.*out/reference_points.csv', a file "
           r"this run writes in output.dir '.*out': the run would overwrite it; move the input out of output.dir",
           case["root"])


@pytest.mark.parametrize("path", PATHS)
def test_embedding_named_map_tif_is_refused_before_training(case: dict[str, Path], path: list[str],
                                                            request: pytest.FixtureRequest) -> None:
    _needs_flow(path, request)
    case["out"].mkdir()
    emb = case["emb"].rename(case["out"] / "map.tif")
    cfg = _config(case, embedding={"path": str(emb)})
    _fails([*path, str(cfg)], r"embedding raster '.*out/map.tif' is '.*out/map.tif', a file this run writes",
           case["root"])
    assert not (case["out"] / "training_table.csv").exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("path", PATHS)
def test_input_linked_to_an_output(case: dict[str, Path], path: list[str], link: str,
                                   request: pytest.FixtureRequest) -> None:
    _needs_flow(path, request)
    case["out"].mkdir()
    inside = case["out"] / "confidence.tif"
    if link == "symlink":  # the config names a link outside output.dir; the file is an output
        case["emb"].rename(inside)
        os.symlink(inside, case["emb"])
    else:  # the same inode under an output's name
        os.link(case["emb"], inside)
    cfg = _config(case)
    _fails([*path, str(cfg)], r"embedding raster '.*emb.tif' is the same file as '.*out/confidence.tif' \(a link\), "
           r"which is a file this run writes", case["root"])


@pytest.mark.parametrize("path", PATHS)
def test_config_file_among_the_outputs(case: dict[str, Path], path: list[str]) -> None:
    cfg = _config(case, case["out"] / ".lcmodel" / "stages" / "run.yaml")
    _fails([*path, str(cfg)], r"config file '.*out/.lcmodel/stages/run.yaml' is '.*run.yaml', a file this run "
           r"writes", case["root"])


# --- registry and compare (flows.cli) -----------------------------------------------------------


def _store(case: dict[str, Path]) -> str:
    return f"sqlite:///{case['root'] / 'mlflow.db'}"


@pytest.mark.parametrize("alias", ["latest", "LATEST", "v3"])
def test_promote_to_a_reserved_alias(case: dict[str, Path], alias: str) -> None:
    _fails(["promote", "lcmodel-demo", "1", "--alias", alias, "--tracking-uri", _store(case)],
           rf"alias '{alias}' is reserved by MLflow .*; choose another alias, e.g. --alias champion", case["root"])


def test_promote_to_a_malformed_alias(case: dict[str, Path]) -> None:
    _fails(["promote", "lcmodel-demo", "1", "--alias", "my champion", "--tracking-uri", _store(case)],
           r"alias 'my champion' is not a valid alias name; use 1 to 255 letters", case["root"])


@pytest.mark.parametrize("version", ["abc", "0", "1.5"])
def test_promote_a_version_that_is_not_a_number(case: dict[str, Path], version: str) -> None:
    _fails(["promote", "lcmodel-demo", version, "--tracking-uri", _store(case)],
           rf"model version '{re.escape(version)}' is not a version number; give a positive integer",
           case["root"])


def test_compare_on_a_file_that_is_not_a_database(case: dict[str, Path]) -> None:
    notes = case["root"] / "notes.db"
    notes.write_text("not a database\n")
    _fails(["compare", "bad-inputs", "--tracking-uri", f"sqlite:///{notes}"],
           r"tracking store 'sqlite:///.*notes.db': '.*notes.db' is not an SQLite database", case["root"])


@pytest.mark.parametrize("command", [["compare", "bad-inputs"], ["promote", "lcmodel-demo", "1"],
                                     ["predict", "--model", "models:/lcmodel-demo/1", "--embedding", "e.tif",
                                      "--out", "m.tif"]], ids=["compare", "promote", "predict"])
def test_mistyped_sqlite_store_is_not_created(case: dict[str, Path], command: list[str]) -> None:
    typo = case["root"] / "mlfow.db"
    _fails([*command, "--tracking-uri", f"sqlite:///{typo}"],
           r"tracking store 'sqlite:///.*mlfow.db': '.*mlfow.db' does not exist \(this command reads an existing "
           r"store and never creates one\)", case["root"])
    assert not typo.exists()


@pytest.mark.parametrize("mistake", ["missing_reference", "output_under_a_file", "reference_is_an_output"])
def test_flow_itself_refuses_before_any_stage(case: dict[str, Path], mistake: str, flow_ready: None) -> None:
    """The flow (``python -m flows.landcover CONFIG``, deployments) checks too, not only `lcmodel run` before it."""
    from flows.landcover import landcover
    from lcmodel.errors import LcmodelError

    (case["root"] / "a_file").write_text("x")
    case["out"].mkdir()
    (case["out"] / "points_labelled.csv").write_text("x,y,label\n500005,7999995,10\n")
    sections, pattern = {
        "missing_reference": ({"reference": {"path": str(case["root"] / "missing.tif")}}, r"does not exist"),
        "output_under_a_file": ({"output": {"dir": str(case["root"] / "a_file" / "out")}}, r"cannot be created"),
        "reference_is_an_output": ({"reference": {"path": str(case["out"] / "points_labelled.csv")}},
                                   r"a file this run writes"),
    }[mistake]
    cfg = _config(case, **sections)
    before = _state(case["root"])
    with pytest.raises(LcmodelError, match=pattern):
        landcover(str(cfg))
    assert _state(case["root"]) == before


@pytest.mark.parametrize("target", ["same", "symlink", "confidence"])
def test_predict_onto_its_own_embedding(case: dict[str, Path], target: str) -> None:
    import rasterio
    from sklearn.ensemble import RandomForestClassifier

    from lcmodel.classes import ClassTable
    from lcmodel.embedding import NodataRule
    from lcmodel.model_io import ModelBundle, current_versions, save_bundle, utc_now

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    with rasterio.open(case["emb"]) as src:
        rule, crs = NodataRule.detect(src), src.crs.to_wkt()
    model = save_bundle(ModelBundle(
        estimator=RandomForestClassifier(n_estimators=2, random_state=0).fit(X, np.where(X[:, 0] > 0, 10, 20)),
        band_names=[f"band_{i}" for i in range(1, 5)], crs_wkt=crs, nodata_rule=rule,
        class_table=ClassTable(code_to_value={10: 10, 20: 20}), config={}, training_table_sha256=None,
        versions=current_versions(), created=utc_now()), case["root"] / "models" / "model.skops")
    out, extra = case["emb"], []
    if target == "symlink":
        out = case["root"] / "link.tif"
        os.symlink(case["emb"], out)
    elif target == "confidence":
        out, extra = case["root"] / "map.tif", ["--confidence", str(case["emb"])]
    kind = r"confidence raster \(--confidence\)" if target == "confidence" else r"output map \(--out\)"
    _fails(["predict", "--model", str(model), "--embedding", str(case["emb"]), "--out", str(out), *extra],
           rf"embedding raster '.*emb.tif' is the {kind} '.*' \(the same file\): the command would overwrite its own "
           "input", case["root"])
