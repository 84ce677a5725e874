"""Fault tests: SIGKILL mid-prediction then resume (byte-identical), truncated input, fuzzed inputs.

The kill test runs ``python -m lcmodel.cli predict`` in a subprocess, kills it with SIGKILL once the
prediction manifest records k finished blocks (k drawn from a seeded generator, several runs), resumes
in-process and compares the outputs byte for byte with an uninterrupted run.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier

from lcmodel.classes import ClassTable
from lcmodel.config import config_from_dict
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import InputFileError, LcmodelError, OutputError
from lcmodel.io import output_lock, sha256_file
from lcmodel.model_io import ModelBundle, current_versions, load_bundle, save_bundle, utc_now
from lcmodel.predict import partial_dir, predict_raster
from lcmodel.reference import read_points_csv
from tests.rasters import write_raster

ROOT = Path(__file__).resolve().parents[1]
SIZE, BANDS, BLOCK = 512, 16, 32  # 256 blocks


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 512 x 512 x 16 embedding, a saved bundle, and the uninterrupted reference outputs."""
    root = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(7)
    data = rng.normal(size=(BANDS, SIZE, SIZE)).astype(np.float32)
    data[:, :40, :40] = 0.0  # a nodata corner
    emb = write_raster(root / "emb.tif", data, blocksize=BLOCK)
    X = rng.normal(size=(400, BANDS)).astype(np.float32)
    y = np.where(X[:, 0] + X[:, 1] > 0, 10, np.where(X[:, 2] > 0, 20, 30))
    rf = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(X, y)
    import rasterio

    with rasterio.open(emb) as src:
        rule, names = NodataRule.detect(src), band_names(src)
        crs = src.crs.to_wkt()
    bundle = ModelBundle(
        estimator=rf, band_names=names, crs_wkt=crs, nodata_rule=rule,
        class_table=ClassTable(code_to_value={10: 10, 20: 20, 30: 30}), config={},
        training_table_sha256=None, versions=current_versions(), created=utc_now(),
    )
    model = save_bundle(bundle, root / "model.skops")
    ref = root / "ref"
    predict_raster(load_bundle(model), emb, ref / "map.tif", confidence_path=ref / "conf.tif",
                   block_size=BLOCK)
    return {"root": root, "emb": emb, "model": model, "ref": ref}


def _manifest_blocks(folder: Path) -> int:
    try:
        lines = (folder / "manifest.jsonl").read_text().splitlines()
    except OSError:
        return 0
    return max(0, len(lines) - 1)


def _kill_at(case: dict[str, Path], out: Path, k: int) -> int:
    """Start the CLI prediction and SIGKILL it once k blocks are recorded; return the recorded count."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "lcmodel.cli", "predict", "--model", str(case["model"]), "--embedding",
           str(case["emb"]), "--out", str(out / "map.tif"), "--confidence", str(out / "conf.tif"),
           "--block-size", str(BLOCK)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    work = partial_dir(out / "map.tif")
    deadline = time.monotonic() + 60
    try:
        while _manifest_blocks(work) < k:
            if proc.poll() is not None:
                raise AssertionError(f"prediction ended before block {k}: {proc.stderr.read()!r}")
            assert time.monotonic() < deadline, "prediction too slow to reach the kill point"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return _manifest_blocks(work)


@pytest.mark.parametrize("run", range(4))
def test_sigkill_at_a_random_block_then_resume_is_byte_identical(case: dict[str, Path], run: int) -> None:
    k = int(np.random.default_rng(1000 + run).integers(1, 250))
    out = case["root"] / f"killed{run}"
    recorded = _kill_at(case, out, k)
    assert recorded >= k
    assert not (out / "map.tif").exists()  # nothing half-written appears under the output's name
    summary = predict_raster(load_bundle(case["model"]), case["emb"], out / "map.tif",
                             confidence_path=out / "conf.tif", block_size=BLOCK)
    assert summary.n_resumed >= recorded  # a block file written just before the kill may be reused too
    assert summary.n_resumed < summary.n_blocks or recorded == summary.n_blocks
    for name in ("map.tif", "conf.tif"):
        assert sha256_file(out / name) == sha256_file(case["ref"] / name), name
    assert not partial_dir(out / "map.tif").exists()
    assert sorted(p.name for p in out.iterdir()) == ["conf.tif", "map.tif"]


def test_torn_manifest_line_and_orphan_block_file_are_recomputed(case: dict[str, Path]) -> None:
    out = case["root"] / "torn"
    _kill_at(case, out, 5)
    work = partial_dir(out / "map.tif")
    with open(work / "manifest.jsonl", "a") as f:
        f.write('{"block": 20, "cou')  # a line cut by the crash
    summary = predict_raster(load_bundle(case["model"]), case["emb"], out / "map.tif",
                             confidence_path=out / "conf.tif", block_size=BLOCK)
    assert summary.n_resumed >= 5
    assert sha256_file(out / "map.tif") == sha256_file(case["ref"] / "map.tif")


def test_other_options_start_afresh(case: dict[str, Path]) -> None:
    out = case["root"] / "afresh"
    _kill_at(case, out, 3)
    summary = predict_raster(load_bundle(case["model"]), case["emb"], out / "map.tif",
                             confidence_path=out / "conf.tif", block_size=2 * BLOCK)
    assert summary.n_resumed == 0  # another block plan: the old blocks are not reused


def test_locked_output_folder_is_refused(case: dict[str, Path]) -> None:
    out = case["root"] / "locked"
    script = ("import sys, time; from lcmodel.io import output_lock\n"
              f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=r"is in use by another run \(pid \d+, started .*\); wait for it"):
            predict_raster(load_bundle(case["model"]), case["emb"], out / "map.tif", block_size=BLOCK)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "map.tif").exists()
    with output_lock(out):  # released by the kernel when the holder died
        pass


def test_truncated_embedding_names_the_file_and_block(tmp_path: Path, case: dict[str, Path]) -> None:
    emb = tmp_path / "cut.tif"
    emb.write_bytes(case["emb"].read_bytes())
    os.truncate(emb, int(emb.stat().st_size * 0.6))
    with pytest.raises(InputFileError, match=r"embedding raster '.*cut.tif' could not be read in block \d+ "
                       r"at window \(col_off=\d+.*the file may be truncated or corrupt"):
        predict_raster(load_bundle(case["model"]), emb, tmp_path / "out" / "map.tif", block_size=BLOCK)
    assert not (tmp_path / "out" / "map.tif").exists()


def test_disk_full_while_saving_a_block_names_the_path_and_keeps_the_previous_map(
    case: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = case["root"] / "full1"
    out.mkdir()
    (out / "map.tif").write_bytes(b"previous map")
    real = np.savez_compressed
    calls = {"n": 0}

    def full(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(OutputError, match=r"could not write block 4 to '.*full1/\.map\.tif\.partial/blocks/"
                       r"0000003\.npz' \(No space left on device\); check free space"):
        predict_raster(load_bundle(case["model"]), case["emb"], out / "map.tif", block_size=BLOCK)
    assert (out / "map.tif").read_bytes() == b"previous map"
    monkeypatch.setattr(np, "savez_compressed", real)  # space freed: the rerun resumes after block 3
    summary = predict_raster(load_bundle(case["model"]), case["emb"], out / "map.tif", block_size=BLOCK)
    assert summary.n_resumed == 3


def test_write_error_in_the_final_copy_names_the_path_and_keeps_the_previous_map(
    case: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lcmodel.predict.cog as cog_module

    out = case["root"] / "full2"
    out.mkdir()
    (out / "map.tif").write_bytes(b"previous map")

    def full(src: Path, dst: Path) -> None:
        dst.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cog_module, "copy_cog", full)
    with pytest.raises(OutputError, match=r"could not write '.*full2/map.tif': No space left on device; check "
                       r"free space"):
        predict_raster(load_bundle(case["model"]), case["emb"], out / "map.tif", block_size=BLOCK)
    assert (out / "map.tif").read_bytes() == b"previous map"
    assert sorted(p.name for p in out.iterdir()) == [".map.tif.partial", "map.tif"]  # no temp file


# --- fuzz: our error or success, never another exception ------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True),
                     st.text(max_size=12), st.lists(st.integers(-2, 3), max_size=3))
_keys = st.sampled_from(["path", "kind", "n_points", "crs", "n_sample", "min_class_fraction", "cv",
                         "stages", "block_size", "method", "scoring", "dir", "nodata", "x_column", "bogus"])
_section = st.dictionaries(_keys, _scalars, max_size=4)
_stage = st.dictionaries(st.sampled_from(["max_features", "max_depth", "n_estimators", "min_samples_leaf",
                                          "class_weight", "max_featres"]),
                         st.lists(_scalars, max_size=3), max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sections=st.dictionaries(
        st.sampled_from(["reference", "embedding", "sampling", "tuning", "prediction", "output", "n_jobs",
                         "classes", "tracking", "refrence"]),
        st.one_of(_section, _scalars), max_size=6,
    ),
    stages=st.one_of(st.none(), st.lists(_stage, max_size=2)),
)
def test_config_fuzz_raises_only_our_errors(sections: dict, stages: list | None) -> None:
    data = dict(sections)
    if stages is not None and isinstance(data.get("tuning"), dict):
        data["tuning"] = {**data["tuning"], "stages": stages}
    try:
        config_from_dict(data, base_dir="/tmp")
    except LcmodelError:
        pass


_cell = st.one_of(st.sampled_from(["", "nan", "inf", "-1e309", "1,5", " 3 ", "x", "10", "-63.5", '"']),
                  st.floats(allow_nan=True).map(str), st.text(max_size=6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(st.sampled_from(["lon", "lat", "label", "x", "lon;lat", "\tlat", ""]), min_size=0,
                    max_size=4),
    rows=st.lists(st.lists(_cell, min_size=0, max_size=4), max_size=5),
    sep=st.sampled_from([",", ";", "\t"]),
)
def test_points_csv_fuzz_raises_only_our_errors(tmp_path: Path, header: list, rows: list, sep: str) -> None:
    path = tmp_path / "points.csv"
    path.write_text("\n".join([sep.join(header), *(sep.join(r) for r in rows)]) + "\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pts = read_points_csv(path)
        except LcmodelError:
            return
    assert np.isfinite(pts.table[["x", "y"]].to_numpy()).all()
