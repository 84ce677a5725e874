"""The bad-input catalogue (docs/errors.md): one test per row, through the CLI.

Every row asserts exit code 2, exactly one ``error: ...`` line matching the message, no traceback, and that
the failing stage left no output behind (no new file besides earlier stages' legitimate outputs, no
temporary file). Warnings rows assert a ``warning:`` line and success.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from pyproj import Transformer
from sklearn.ensemble import RandomForestClassifier

from flows.cli import cli  # the `lcmodel` console script
from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule
from lcmodel.model_format import bundle_bytes
from lcmodel.model_io import ModelBundle, current_versions, load_bundle, save_bundle, utc_now
from tests.rasters import origin_transform, write_raster

ROOT = Path(__file__).resolve().parents[1]
H = W = 64
WEST, NORTH, RES = 500000.0, 8000000.0, 10.0


def _embedding(path: Path, bands: int = 4, **kw: Any) -> Path:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(bands, H, W)).astype(np.float32)
    return write_raster(path, data, **kw)


def _classes_raster(path: Path, west: float = WEST, north: float = NORTH) -> Path:
    r, c = np.mgrid[0:H, 0:W]
    data = np.where(c < W // 2, 10, np.where(r < H // 2, 20, 30)).astype(np.uint8)
    return write_raster(path, data, transform=origin_transform(west, north, RES), nodata=0)


def _points(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre points in UTM 20S and their lon/lat, labelled by the class raster's rule."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, H, n), rng.integers(0, W, n)
    x = WEST + (cols + 0.5) * RES
    y = NORTH - (rows + 0.5) * RES
    labels = np.where(cols < W // 2, 10, np.where(rows < H // 2, 20, 30))
    return x, y, labels


def _lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = Transformer.from_crs("EPSG:32720", "EPSG:4326", always_xy=True)
    lon, lat = t.transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def _write_csv(path: Path, header: list[str], columns: list[Any]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in zip(*columns, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def case(tmp_path: Path) -> dict[str, Path]:
    return make_case(tmp_path)


def make_case(tmp_path: Path) -> dict[str, Path]:
    """The inputs of a good run in ``tmp_path`` (embedding, class raster, points CSV); the rows spoil one."""
    emb = _embedding(tmp_path / "emb.tif")
    ref = _classes_raster(tmp_path / "ref.tif")
    x, y, labels = _points()
    lon, lat = _lonlat(x, y)
    csv = _write_csv(tmp_path / "points.csv", ["lon", "lat", "label"], [lon, lat, labels])
    return {"root": tmp_path, "emb": emb, "ref": ref, "csv": csv, "out": tmp_path / "out"}


def _config(case: dict[str, Path], **sections: Any) -> Path:
    data: dict[str, Any] = {
        "reference": {"path": str(case["ref"]), "n_points": 300},
        "embedding": {"path": str(case["emb"])},
        "sampling": {"n_sample": 300, "min_class_fraction": 0.0},
        "tuning": {"cv": 2, "stages": [{"max_features": ["sqrt"]}, {"n_estimators": [5]}]},
        "output": {"dir": str(case["out"])},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = case["root"] / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _files(folder: Path) -> set[str]:
    """The run's files, less the resolved-input manifests (``.lcmodel/inputs/``: complete, written atomically
    once the inputs are checked, before any stage)."""
    if not folder.exists():
        return set()
    inputs = folder / ".lcmodel" / "inputs"
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.is_relative_to(inputs)}


def _finished_stage_records(out: Path, allowed: set[str]) -> set[str]:
    """Records (.lcmodel/stages/*.json) of the earlier stages that finished: every file they name is allowed."""
    found = set()
    for rec in (out / ".lcmodel" / "stages").glob("*.json"):
        names = {Path(a["path"]).name for a in _artifacts(json.loads(rec.read_text())["artifacts"])}
        if names <= allowed:
            found.add(str(rec.relative_to(out)))
    return found


def _artifacts(data: Any) -> list[dict[str, str]]:
    if isinstance(data, dict):
        return [data] if "sha256" in data else [a for v in data.values() for a in _artifacts(v)]
    if isinstance(data, list):
        return [a for v in data for a in _artifacts(v)]
    return []


def _fails(args: list[str], pattern: str, out: Path | None = None, *, before: set[str] | None = None,
           allowed: set[str] = frozenset()) -> str:
    """Run the CLI; assert exit 2, one matching error line, no traceback, no output left behind."""
    before = set(before or ())
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert re.search(pattern, errors[0]), errors[0]
    assert "\n" not in errors[0] and "Traceback" not in result.output
    if out is not None:
        new = _files(out) - before - set(allowed) - _finished_stage_records(out, set(allowed))
        assert not new, f"left behind: {sorted(new)}"
    return errors[0]


EARLIER = {"reference_points.csv", "reference_points.crs.json", "points_labelled.csv",
           "points_labelled.crs.json", "class_table.json", "samples.csv", "sample_stats.json"}


def _bundle(case: dict[str, Path], bands: int = 4) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, bands)).astype(np.float32)
    y = np.where(X[:, 0] > 0, 10, 20)
    with rasterio.open(case["emb"]) as src:
        rule, crs = NodataRule.detect(src), src.crs.to_wkt()
    bundle = ModelBundle(
        estimator=RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
        band_names=[f"band_{i}" for i in range(1, bands + 1)], crs_wkt=crs, nodata_rule=rule,
        class_table=ClassTable(code_to_value={10: 10, 20: 20}), config={}, training_table_sha256=None,
        versions=current_versions(), created=utc_now(),
    )
    return save_bundle(bundle, case["root"] / "models" / "model.skops")


def _predict_args(case: dict[str, Path], model: Path | str, emb: Path | None = None, out: Path | None = None,
                  *extra: str) -> list[str]:
    return ["predict", "--model", str(model), "--embedding", str(emb or case["emb"]), "--out",
            str(out or case["out"] / "map.tif"), *extra]


# --- files ----------------------------------------------------------------------------------------


def test_missing_config_file(case: dict[str, Path]) -> None:
    _fails(["sample", str(case["root"] / "nope.yaml")], r"config file '.*nope.yaml' does not exist; check the path",
           case["out"])


def test_missing_input_file(case: dict[str, Path]) -> None:
    cfg = _config(case, embedding={"path": str(case["root"] / "missing.tif")})
    _fails(["sample", str(cfg)], r"embedding raster '.*missing.tif' does not exist; check the path in the config",
           case["out"], allowed=EARLIER)


def test_unreadable_input_file(case: dict[str, Path]) -> None:
    folder = case["root"] / "folder.tif"
    folder.mkdir()
    cfg = _config(case, reference={"path": str(folder)})
    _fails(["sample", str(cfg)], r"reference raster '.*folder.tif' is not a readable raster \(.*\); give a GeoTIFF",
           case["out"])


def test_not_a_raster(case: dict[str, Path]) -> None:
    bad = case["root"] / "notes.tif"
    bad.write_text("this is not a GeoTIFF\n")
    cfg = _config(case, embedding={"path": str(bad)})
    _fails(["sample", str(cfg)], r"embedding raster '.*notes.tif' is not a readable raster .* give a GeoTIFF",
           case["out"], allowed=EARLIER)


def _truncate(path: Path, fraction: float = 0.6) -> Path:
    os.truncate(path, int(path.stat().st_size * fraction))
    return path


def test_truncated_reference_raster(case: dict[str, Path]) -> None:
    big = np.tile(np.repeat(np.array([10, 20, 30], np.uint8), 22)[:64], (64, 1))
    ref = write_raster(case["root"] / "cut_ref.tif", big, nodata=0, blocksize=16)
    _truncate(ref)
    cfg = _config(case, reference={"path": str(ref)})
    _fails(["sample", str(cfg)], r"reference raster '.*cut_ref.tif' could not be read at rows .* the file may be "
           r"truncated or corrupt", case["out"])


def test_truncated_embedding_at_extraction(case: dict[str, Path]) -> None:
    _truncate(case["emb"], 0.5)
    cfg = _config(case)
    _fails(["sample", str(cfg)], r"embedding raster '.*emb.tif' cannot be read at window .* check that the file "
           r"is complete", case["out"], allowed=EARLIER - {"samples.csv", "sample_stats.json"})


def test_truncated_embedding_at_prediction(case: dict[str, Path]) -> None:
    model = _bundle(case)
    _truncate(case["emb"], 0.5)
    _fails(_predict_args(case, model, None, None, "--block-size", "16"),
           r"embedding raster '.*emb.tif' could not be read in block \d+ at window .* truncated or corrupt",
           case["out"], allowed=set())  # hidden resume state only, see below
    assert not (case["out"] / "map.tif").exists()


def test_raster_without_crs(case: dict[str, Path]) -> None:
    emb = _embedding(case["root"] / "nocrs.tif", crs=None)
    cfg = _config(case, embedding={"path": str(emb)})
    _fails(["sample", str(cfg)], r"embedding raster '.*nocrs.tif' has no CRS; assign one", case["out"],
           allowed={"reference_points.csv", "reference_points.crs.json"})


def test_rotated_embedding_grid(case: dict[str, Path]) -> None:
    emb = _embedding(case["root"] / "rot.tif", transform=rasterio.Affine(RES, 2.0, WEST, 1.5, -RES, NORTH))
    cfg = _config(case, embedding={"path": str(emb)})
    _fails(["sample", str(cfg)], r"embedding raster '.*rot.tif' has a rotated or sheared grid \(transform 10, 2, "
           r"500000, 1.5, -10, 8000000\); lcmodel needs an axis-aligned grid \(north-up or south-up\): warp it first",
           case["out"])


# --- overlap and CRS ------------------------------------------------------------------------------


def test_reference_and_embedding_do_not_overlap(case: dict[str, Path]) -> None:
    ref = _classes_raster(case["root"] / "far.tif", west=WEST + 50_000)
    cfg = _config(case, reference={"path": str(ref)})
    # sampling draws only inside the embedding's footprint: a reference beside it fails before any block is read
    _fails(["sample", str(cfg)], r"reference raster 'far.tif' does not overlap the embedding \(reference bounds .* "
           r"check that the reference data and embedding.path cover the same area", case["out"])


def test_lonlat_points_declared_as_utm(case: dict[str, Path]) -> None:
    cfg = _config(case, reference={"path": str(case["csv"]), "crs": "EPSG:32720"})
    _fails(["sample", str(cfg)], r"the coordinates look like longitude/latitude \(EPSG:4326\) .* but reference.crs "
           r"says EPSG:32720 \(read as EPSG:4326 they fall on the raster\); set reference.crs: EPSG:4326",
           case["out"], allowed={"reference_points.csv", "reference_points.crs.json"})


def test_utm_points_declared_as_lonlat(case: dict[str, Path]) -> None:
    x, y, labels = _points()
    csv = _write_csv(case["root"] / "utm.csv", ["lon", "lat", "label"], [x, y, labels])
    cfg = _config(case, reference={"path": str(csv), "crs": "EPSG:4326"})
    _fails(["sample", str(cfg)], r"the coordinates look projected \(x=5\d{5}, y=79\d{5}\), not longitude/latitude as "
           r"reference.crs EPSG:4326 says \(read as EPSG:32720, the embedding's CRS, they fall on the raster\)",
           case["out"], allowed={"reference_points.csv", "reference_points.crs.json"})


# --- points CSV -----------------------------------------------------------------------------------


def test_csv_without_the_named_columns(case: dict[str, Path]) -> None:
    cfg = _config(case, reference={"path": str(case["csv"]), "x_column": "longitude"})
    _fails(["sample", str(cfg)], r"points file '.*points.csv' has no column 'longitude' \(columns: lon, lat, "
           r"label\); set reference.x_column to one of them", case["out"])


def test_csv_with_non_numeric_coordinates(case: dict[str, Path]) -> None:
    csv = _write_csv(case["root"] / "text.csv", ["lon", "lat", "label"], [["-63.1", "west"], ["-18", "-18"],
                                                                          [10, 20]])
    cfg = _config(case, reference={"path": str(csv)})
    _fails(["sample", str(cfg)], r"'lon' value 'west' on row 3 .* is not a finite number; fix the file",
           case["out"])


# --- class table ----------------------------------------------------------------------------------


def _class_table(case: dict[str, Path], text: str) -> Path:
    path = case["root"] / "classes.csv"
    path.write_text(text)
    return path


def test_class_table_without_code_column(case: dict[str, Path]) -> None:
    table = _class_table(case, "esa,value\n10,1\n20,2\n30,3\n")
    cfg = _config(case, classes={"table": str(table)})
    _fails(["sample", str(cfg)], r"class table '.*classes.csv' has no code column 'code' \(columns: esa, value\); "
           r"set classes.code_column", case["out"], allowed={"reference_points.csv", "reference_points.crs.json"})


def test_class_table_with_duplicate_codes(case: dict[str, Path]) -> None:
    table = _class_table(case, "code,value\n10,1\n20,2\n10,3\n")
    cfg = _config(case, classes={"table": str(table)})
    _fails(["sample", str(cfg)], r"code 10 appears twice with values 1 and 3; keep one row per code", case["out"],
           allowed={"reference_points.csv", "reference_points.crs.json"})


def test_class_table_with_non_integer_values(case: dict[str, Path]) -> None:
    table = _class_table(case, "code,value\n10,1.5\n20,forest\n")
    cfg = _config(case, classes={"table": str(table)})
    _fails(["sample", str(cfg)], r"value\(s\) \[.*'1.5'.*\] in column 'value' are not positive integers", case["out"],
           allowed={"reference_points.csv", "reference_points.crs.json"})


# --- sampling and tuning --------------------------------------------------------------------------


def test_every_class_removed_by_the_rare_class_rule(case: dict[str, Path]) -> None:
    cfg = _config(case, sampling={"min_class_fraction": 0.9})
    _fails(["sample", str(cfg)], r"every class is under sampling.min_class_fraction=0.9 .* lower "
           r"sampling.min_class_fraction", case["out"], allowed=EARLIER)
    assert not (case["out"] / "training_table.csv").exists()


def test_fewer_samples_than_cv_folds(case: dict[str, Path]) -> None:
    cfg = _config(case, tuning={"cv": 200, "cv_strategy": "random"}, sampling={"split": "random"})
    _fails(["train", str(cfg)], r"class 10 has \d+ training sample\(s\), fewer than tuning.cv=200 folds; lower "
           r"tuning.cv", case["out"], allowed=EARLIER | {"training_table.csv", "spatial_blocks.json"})
    assert not (case["out"] / "best_params.json").exists()


def test_fewer_samples_than_spatial_cv_folds(case: dict[str, Path]) -> None:
    cfg = _config(case, tuning={"cv": 200})  # spatial folds by default for a raster reference
    _fails(["train", str(cfg)], r"\d+ samples are too few to choose a block size for 200 folds; give "
           r"sampling.block_size or use the 'random' strategy", case["out"], allowed=EARLIER)
    assert not (case["out"] / "training_table.csv").exists()


# --- model ----------------------------------------------------------------------------------------


def test_embedding_band_count_differs_from_the_model(case: dict[str, Path]) -> None:
    model = _bundle(case, bands=5)
    _fails(_predict_args(case, model), r"embedding '.*emb.tif' has 4 bands, the model was trained on 5; predict "
           r"with the embedding the model was trained on", case["out"])


def test_model_file_that_is_not_a_bundle(case: dict[str, Path]) -> None:
    path = case["root"] / "best_model.pkl"
    path.write_bytes(pickle.dumps(RandomForestClassifier(n_estimators=2).fit(np.eye(3), [1, 2, 3])))
    _fails(_predict_args(case, path), r"is a pickle written by an older lcmodel \(loading it would run code from "
           r"the file\); retrain with `lcmodel train`, or pass --trust-model", case["out"])
    _fails(_predict_args(case, path, None, None, "--trust-model"), r"is not an lcmodel model bundle \(got "
           r"RandomForestClassifier\); retrain", case["out"])
    text = case["root"] / "notes.skops"
    text.write_text("not a model\n")
    _fails(_predict_args(case, text), r"is not a readable bundle file \(BadZipFile: .*\); give a model.skops "
           r"written by `lcmodel train`", case["out"])


def test_model_from_an_incompatible_version(case: dict[str, Path]) -> None:
    model = _bundle(case)
    bundle = load_bundle(model)
    model.write_bytes(bundle_bytes(bundle.estimator, dict(bundle.metadata(with_created=False), format_version=99)))
    _fails(_predict_args(case, model), r"has format version 99, this lcmodel reads version 2; retrain", case["out"])


def test_model_that_was_damaged(case: dict[str, Path]) -> None:
    model = _bundle(case)
    data = bytearray(model.read_bytes())
    with zipfile.ZipFile(model) as z:
        entry = max(z.infolist(), key=lambda i: i.compress_size)
    data[entry.header_offset + 30 + len(entry.filename) + entry.compress_size // 2] ^= 0xFF  # inside its data
    model.write_bytes(bytes(data))
    _fails(_predict_args(case, model), r"model bundle '.*model.skops' is not a readable bundle file \(BadZipFile: "
           r"(entry a\d+.npy fails its CRC check: the file was damaged|.*)\); give a model.skops", case["out"])


def test_model_url_is_never_fetched(case: dict[str, Path]) -> None:
    _fails(_predict_args(case, "https://example.org/model.skops"),  # type: ignore[arg-type]
           r"is a URL; lcmodel loads bundles only from local files", case["out"])


# --- outputs --------------------------------------------------------------------------------------


def test_output_folder_not_writable(case: dict[str, Path]) -> None:
    blocker = case["root"] / "a_file"
    blocker.write_text("x")
    cfg = _config(case, output={"dir": str(blocker / "out")})
    _fails(["sample", str(cfg)], r"output folder '.*a_file/out' cannot be created \(Not a directory\); choose a "
           r"writable output.dir")
    model = _bundle(case)
    _fails(_predict_args(case, model, None, blocker / "out" / "map.tif"), r"output folder '.*a_file/out' cannot "
           r"be created")


def test_output_folder_in_use_by_another_run(case: dict[str, Path]) -> None:
    case["out"].mkdir()
    script = ("import time; from lcmodel.io import output_lock\n"
              f"with output_lock({str(case['out'])!r}):\n    print('held', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        before = _files(case["out"])
        _fails(["sample", str(_config(case))], r"output folder '.*out' is in use by another run \(pid \d+, started "
               r"[0-9T:+-]+\); wait for it or choose another output.dir", case["out"], before=before)
    finally:
        proc.kill()
        proc.wait()


# --- config ---------------------------------------------------------------------------------------


def test_mistyped_config_key(case: dict[str, Path]) -> None:
    cfg = _config(case, sampling={"n_sampel": 3})
    _fails(["sample", str(cfg)], r"unknown config key 'sampling.n_sampel'; did you mean 'n_sample'\?", case["out"])


def test_grid_with_an_invalid_value(case: dict[str, Path]) -> None:
    cfg = _config(case, tuning={"stages": [{"max_features": [0]}]})
    _fails(["train", str(cfg)], r"config key 'tuning.stages': max_features 0 is not valid; use a "
           r"positive integer", case["out"])


def _dead_band_embedding(case: dict[str, Path]) -> Path:
    """int16, nodata -32768, band 3 of 4 at -32768 in every pixel (a hyperspectral raster's bad band)."""
    data = (np.random.default_rng(3).normal(size=(4, H, W)) * 1000).astype(np.int16)
    data[2] = -32768
    return write_raster(case["root"] / "hyper.tif", data, nodata=-32768)


def test_embedding_bands_names_a_band_the_raster_lacks(case: dict[str, Path]) -> None:
    cfg = _config(case, embedding={"path": str(case["emb"]), "bands": ["band_1", "A64"]})
    _fails(["sample", str(cfg)], r"embedding.bands entry 'A64' is not a band of embedding raster '.*emb.tif' "
           r"\(4 bands: band_1, band_2, band_3, band_4\); give its band names or 1-based indices 1..4", case["out"])


def test_embedding_bands_selects_a_band_that_is_nodata_everywhere(case: dict[str, Path]) -> None:
    cfg = _config(case, embedding={"path": str(_dead_band_embedding(case)), "bands": [1, 3]})
    _fails(["sample", str(cfg)], r"embedding.bands selects band 3 \(band_3\), nodata in every sampled pixel of "
           r"'.*hyper.tif': with it no pixel is valid", case["out"],
           allowed=EARLIER - {"samples.csv", "sample_stats.json"})


# --- warnings (not errors) ------------------------------------------------------------------------


def _succeeds_with_warning(args: list[str], pattern: str) -> None:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    warns = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert any(re.search(pattern, w) for w in warns), result.output


def test_warning_many_points_on_nodata(case: dict[str, Path]) -> None:
    data = np.random.default_rng(3).normal(size=(4, H, W)).astype(np.float32)
    data[:, :, : W // 2] = 0.0  # half the raster is nodata (all-zero vectors)
    emb = write_raster(case["root"] / "half.tif", data)
    cfg = _config(case, embedding={"path": str(emb)}, reference={"path": str(case["csv"])})
    _succeeds_with_warning(["sample", str(cfg)], r"dropped \d+ of 300 reference points: 0 outside the embedding "
                           r"raster, \d+ on nodata pixels")


def test_warning_bands_that_carry_nothing(case: dict[str, Path]) -> None:
    cfg = _config(case, embedding={"path": str(_dead_band_embedding(case))})
    _succeeds_with_warning(["sample", str(cfg)], r"embedding '.*hyper.tif': band 3 \(band_3\) is nodata in every "
                           r"sampled pixel; dropped: the model uses 3 of 4 bands")


def test_warning_class_with_very_few_samples(case: dict[str, Path]) -> None:
    x, y, labels = _points()
    labels = np.where(np.arange(labels.size) < 6, 99, labels)  # class 99: 6 points
    lon, lat = _lonlat(x, y)
    csv = _write_csv(case["root"] / "few.csv", ["lon", "lat", "label"], [lon, lat, labels])
    cfg = _config(case, reference={"path": str(csv)}, sampling={"dedupe_pixels": False})
    _succeeds_with_warning(["sample", str(cfg)], r"1 class\(es\) have fewer than 10 training rows: value 99 "
                           r"\(\d rows\)")


def test_warning_crs_units_suggest_a_mismatch(case: dict[str, Path]) -> None:
    emb = _embedding(case["root"] / "deg.tif", crs="EPSG:4326")  # UTM-sized bounds declared as degrees
    cfg = _config(case, embedding={"path": str(emb)})
    result = CliRunner().invoke(cli, ["sample", str(cfg)], catch_exceptions=False)
    warns = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert any(re.search(r"declares a geographic CRS \(EPSG:4326, degrees\) but its bounds .* look like metres",
                         w) for w in warns), result.output


def test_purity_window_with_a_points_reference(case: dict[str, Path]) -> None:
    cfg = _config(case, reference={"path": str(case["csv"])}, sampling={"purity_window": 3})
    _fails(["sample", str(cfg)], r"sampling.purity_window 3 needs a class raster reference \(reference.path is a "
           r"points file\); set sampling.purity_window: null", case["out"])


def test_postprocess_options_out_of_range(case: dict[str, Path]) -> None:
    cfg = _config(case, postprocess={"mmu_pixels": 1})
    _fails(["run", "--plain", str(cfg)], r"config key 'postprocess.mmu_pixels': Input should be greater than or "
           r"equal to 2", case["out"])
    cfg = _config(case, postprocess={"majority": 4})
    _fails(["run", "--plain", str(cfg)], r"config key 'postprocess.majority': Input should be 3 or 5", case["out"])
