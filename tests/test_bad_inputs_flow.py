"""The bad-input catalogue (docs/errors.md, "Errors") through `lcmodel run`: the Prefect flow (issue 15, item 9).

tests/test_bad_inputs.py runs each row through the plain commands (``lcmodel sample`` / ``train``); here each
row that a run can meet goes through ``lcmodel run`` (flows.cli) on this module's one Prefect server.
Rows caught before the server is asked (config, inputs, output folder) cost about a second; the others run
the flow up to the stage that refuses them. Every row asserts exit code 2, exactly one ``error:`` line
matching the plain path's message, no traceback anywhere (the command's output nor Prefect's console log,
which is captured from Prefect's own console handlers), every other line a log record, and nothing left
behind: no file besides the earlier stages' outputs, their records and their Prefect cache entries.

The rows of ``lcmodel predict`` (a model file, the embedding at prediction) are not run-related: a run trains
its own model. :func:`test_every_run_row_is_run_through_the_flow` keeps the two files in step.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

import tests.test_bad_inputs as plain
from flows.cli import cli  # the `lcmodel` console script
from tests.rasters import write_raster
from tests.test_bad_inputs import EARLIER, NORTH, RES, WEST

pytest.importorskip("prefect")

ROOT = Path(__file__).resolve().parents[1]
PREPARED = {"reference_points.csv", "reference_points.crs.json"}  # the first stage's outputs
#: a log record: Prefect's console format (``12:00:00.123 | INFO    | Flow run ...``), the CLI's logging format
#: (``2026-01-01 12:00:00,123 INFO prefect.flow_runs: ...``), MLflow's, or the CLI's warning lines
_LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3} \| [A-Z]+ +\| |\d{4}[-/]\d\d[-/]\d\d \d\d:\d\d:\d\d[,.\d]* [A-Z]+ "
                       r"|warning: "
                       # the second line of Prefect's own "Starting temporary server on ..." record
                       r"|See https://docs\.prefect\.io/v3/concepts/server#how-to-guides for more information )")


@pytest.fixture()
def case(tmp_path: Path) -> dict[str, Path]:
    """The plain rows' good inputs (tests/test_bad_inputs.py), one of them spoilt by each row."""
    return plain.make_case(tmp_path)


@pytest.fixture(scope="module")
def flow_ready(prefect_harness: None) -> None:
    """One temporary Prefect server for the flow rows of this module (tests/conftest.py)."""


@pytest.fixture()
def prefect_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What Prefect's own console handlers print during the test (they keep the stream of their first use)."""
    buffer = io.StringIO()
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            console = getattr(handler, "console", None)
            if console is not None and isinstance(handler, logging.StreamHandler):
                monkeypatch.setattr(handler, "stream", buffer)
                monkeypatch.setattr(console, "file", buffer)
    yield buffer


def _run_fails(cfg: Path, pattern: str, out: Path, console: io.StringIO, *, allowed: set[str] = frozenset(),
               before: set[str] | None = None) -> str:
    """`lcmodel run CFG`: exit 2, one matching error line, no traceback, only log lines besides, nothing left."""
    before = set(before or ())
    result = CliRunner().invoke(cli, ["run", str(cfg)], catch_exceptions=False)
    logged = console.getvalue()
    everything = result.output + logged
    assert result.exit_code == 2, everything
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, everything
    assert re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in everything, everything
    others = [line for line in everything.splitlines() if line.strip() and line != errors[0]
              and not _LOG_LINE.match(line)]
    assert not others, f"not a log record nor the error line: {others}"
    finished = plain._finished_stage_records(out, set(allowed))
    left = plain._files(out) - before - set(allowed) - finished
    for sub in (".lcmodel/cache/", ".lcmodel/results/"):  # one Prefect record and result per finished stage
        prefect = {f for f in left if f.startswith(sub)}
        assert len(prefect) == len(finished), f"{sub}: {sorted(prefect)} for the finished stages {sorted(finished)}"
        left -= prefect
    assert not left, f"left behind: {sorted(left)}"
    return errors[0]


# --- the rows: each returns (config, the plain row's message pattern, what earlier stages may leave) ---------

Row = tuple[Path, str, set[str]]


def _missing_input_file(case: dict[str, Path]) -> Row:
    return (plain._config(case, embedding={"path": str(case["root"] / "missing.tif")}),
            r"embedding raster '.*missing.tif' does not exist; check the path in the config", set())


def _unreadable_input_file(case: dict[str, Path]) -> Row:
    (case["root"] / "folder.tif").mkdir()
    return (plain._config(case, reference={"path": str(case["root"] / "folder.tif")}),
            r"reference raster '.*folder.tif' is not a readable raster \(.*\); give a GeoTIFF", set())


def _not_a_raster(case: dict[str, Path]) -> Row:
    (case["root"] / "notes.tif").write_text("this is not a GeoTIFF\n")
    return (plain._config(case, embedding={"path": str(case["root"] / "notes.tif")}),
            r"embedding raster '.*notes.tif' is not a readable raster .* give a GeoTIFF", set())


def _truncated_reference_raster(case: dict[str, Path]) -> Row:
    big = np.tile(np.repeat(np.array([10, 20, 30], np.uint8), 22)[:64], (64, 1))
    ref = plain._truncate(write_raster(case["root"] / "cut_ref.tif", big, nodata=0, blocksize=16))
    return (plain._config(case, reference={"path": str(ref)}),
            r"reference raster '.*cut_ref.tif' could not be read at rows .* the file may be truncated", set())


def _truncated_embedding_at_extraction(case: dict[str, Path]) -> Row:
    plain._truncate(case["emb"], 0.5)
    return (plain._config(case), r"embedding raster '.*emb.tif' cannot be read at window .* check that the file "
            r"is complete", EARLIER - {"samples.csv", "sample_stats.json"})


def _raster_without_crs(case: dict[str, Path]) -> Row:
    emb = plain._embedding(case["root"] / "nocrs.tif", crs=None)
    return (plain._config(case, embedding={"path": str(emb)}), r"embedding raster '.*nocrs.tif' has no CRS; "
            r"assign one", PREPARED)


def _rotated_embedding_grid(case: dict[str, Path]) -> Row:
    emb = plain._embedding(case["root"] / "rot.tif", transform=rasterio.Affine(RES, 2.0, WEST, 1.5, -RES, NORTH))
    return (plain._config(case, embedding={"path": str(emb)}), r"embedding raster '.*rot.tif' has a rotated or "
            r"sheared grid .* warp it first", set())


def _reference_and_embedding_do_not_overlap(case: dict[str, Path]) -> Row:
    ref = plain._classes_raster(case["root"] / "far.tif", west=WEST + 50_000)
    return (plain._config(case, reference={"path": str(ref)}), r"reference raster 'far.tif' does not overlap the "
            r"embedding .* cover the same area", set())


def _lonlat_points_declared_as_utm(case: dict[str, Path]) -> Row:
    return (plain._config(case, reference={"path": str(case["csv"]), "crs": "EPSG:32720"}),
            r"the coordinates look like longitude/latitude \(EPSG:4326\) .* set reference.crs: EPSG:4326", PREPARED)


def _utm_points_declared_as_lonlat(case: dict[str, Path]) -> Row:
    x, y, labels = plain._points()
    csv = plain._write_csv(case["root"] / "utm.csv", ["lon", "lat", "label"], [x, y, labels])
    return (plain._config(case, reference={"path": str(csv), "crs": "EPSG:4326"}),
            r"the coordinates look projected \(x=5\d{5}, y=79\d{5}\), not longitude/latitude", PREPARED)


def _csv_without_the_named_columns(case: dict[str, Path]) -> Row:
    return (plain._config(case, reference={"path": str(case["csv"]), "x_column": "longitude"}),
            r"points file '.*points.csv' has no column 'longitude' \(columns: lon, lat, label\)", set())


def _csv_with_non_numeric_coordinates(case: dict[str, Path]) -> Row:
    csv = plain._write_csv(case["root"] / "text.csv", ["lon", "lat", "label"],
                           [["-63.1", "west"], ["-18", "-18"], [10, 20]])
    return (plain._config(case, reference={"path": str(csv)}),
            r"'lon' value 'west' on row 3 .* is not a finite number; fix the file", set())


def _class_table(text: str, pattern: str) -> Callable[[dict[str, Path]], Row]:
    def row(case: dict[str, Path]) -> Row:
        return plain._config(case, classes={"table": str(plain._class_table(case, text))}), pattern, PREPARED
    return row


def _every_class_removed_by_the_rare_class_rule(case: dict[str, Path]) -> Row:
    return (plain._config(case, sampling={"min_class_fraction": 0.9}),
            r"every class is under sampling.min_class_fraction=0.9 .* lower sampling.min_class_fraction", EARLIER)


def _fewer_samples_than_cv_folds(case: dict[str, Path]) -> Row:
    return (plain._config(case, tuning={"cv": 200, "cv_strategy": "random"}, sampling={"split": "random"}),
            r"class 10 has \d+ training sample\(s\), fewer than tuning.cv=200 folds; lower tuning.cv",
            EARLIER | {"training_table.csv", "spatial_blocks.json"})


def _fewer_samples_than_spatial_cv_folds(case: dict[str, Path]) -> Row:
    return (plain._config(case, tuning={"cv": 200}), r"\d+ samples are too few to choose a block size for 200 "
            r"folds; give sampling.block_size", EARLIER)


def _output_folder_not_writable(case: dict[str, Path]) -> Row:
    (case["root"] / "a_file").write_text("x")
    return (plain._config(case, output={"dir": str(case["root"] / "a_file" / "out")}),
            r"output folder '.*a_file/out' cannot be created \(Not a directory\); choose a writable output.dir",
            set())


def _mistyped_config_key(case: dict[str, Path]) -> Row:
    return (plain._config(case, sampling={"n_sampel": 3}),
            r"unknown config key 'sampling.n_sampel'; did you mean 'n_sample'\?", set())


def _grid_with_an_invalid_value(case: dict[str, Path]) -> Row:
    return (plain._config(case, tuning={"stages": [{"max_features": [0]}]}),
            r"config key 'tuning.stages': max_features 0 is not valid; use a positive integer", set())


def _embedding_bands_names_a_band_the_raster_lacks(case: dict[str, Path]) -> Row:
    return (plain._config(case, embedding={"path": str(case["emb"]), "bands": ["band_1", "A64"]}),
            r"embedding.bands entry 'A64' is not a band of embedding raster '.*emb.tif' \(4 bands", set())


def _embedding_bands_selects_a_band_that_is_nodata_everywhere(case: dict[str, Path]) -> Row:
    return (plain._config(case, embedding={"path": str(plain._dead_band_embedding(case)), "bands": [1, 3]}),
            r"embedding.bands selects band 3 \(band_3\), nodata in every sampled pixel of '.*hyper.tif'",
            EARLIER - {"samples.csv", "sample_stats.json"})


def _purity_window_with_a_points_reference(case: dict[str, Path]) -> Row:
    return (plain._config(case, reference={"path": str(case["csv"])}, sampling={"purity_window": 3}),
            r"sampling.purity_window 3 needs a class raster reference \(reference.path is a points file\); set "
            r"sampling.purity_window: null", set())


def _postprocess_options_out_of_range(case: dict[str, Path]) -> Row:
    return (plain._config(case, postprocess={"majority": 4}),
            r"config key 'postprocess.majority': Input should be 3 or 5", set())


#: row name (as in test_bad_inputs.py, without ``test_``) -> the row; True: refused before the Prefect server
ROWS: dict[str, tuple[Callable[[dict[str, Path]], Row], bool]] = {
    "missing_input_file": (_missing_input_file, True),
    "unreadable_input_file": (_unreadable_input_file, True),
    "not_a_raster": (_not_a_raster, True),
    "truncated_reference_raster": (_truncated_reference_raster, False),
    "truncated_embedding_at_extraction": (_truncated_embedding_at_extraction, False),
    "raster_without_crs": (_raster_without_crs, False),
    "rotated_embedding_grid": (_rotated_embedding_grid, True),
    "reference_and_embedding_do_not_overlap": (_reference_and_embedding_do_not_overlap, False),
    "lonlat_points_declared_as_utm": (_lonlat_points_declared_as_utm, False),
    "utm_points_declared_as_lonlat": (_utm_points_declared_as_lonlat, False),
    "csv_without_the_named_columns": (_csv_without_the_named_columns, False),
    "csv_with_non_numeric_coordinates": (_csv_with_non_numeric_coordinates, False),
    "class_table_without_code_column": (_class_table(
        "esa,value\n10,1\n20,2\n30,3\n", r"class table '.*classes.csv' has no code column 'code' \(columns: esa, "
        r"value\); set classes.code_column"), False),
    "class_table_with_duplicate_codes": (_class_table(
        "code,value\n10,1\n20,2\n10,3\n", r"code 10 appears twice with values 1 and 3; keep one row per code"), False),
    "class_table_with_non_integer_values": (_class_table(
        "code,value\n10,1.5\n20,forest\n", r"value\(s\) \[.*'1.5'.*\] in column 'value' are not positive integers"),
        False),
    "every_class_removed_by_the_rare_class_rule": (_every_class_removed_by_the_rare_class_rule, False),
    "fewer_samples_than_cv_folds": (_fewer_samples_than_cv_folds, False),
    "fewer_samples_than_spatial_cv_folds": (_fewer_samples_than_spatial_cv_folds, False),
    "output_folder_not_writable": (_output_folder_not_writable, True),
    "mistyped_config_key": (_mistyped_config_key, True),
    "grid_with_an_invalid_value": (_grid_with_an_invalid_value, True),
    "embedding_bands_names_a_band_the_raster_lacks": (_embedding_bands_names_a_band_the_raster_lacks, True),
    "embedding_bands_selects_a_band_that_is_nodata_everywhere": (
        _embedding_bands_selects_a_band_that_is_nodata_everywhere, False),
    "purity_window_with_a_points_reference": (_purity_window_with_a_points_reference, True),
    "postprocess_options_out_of_range": (_postprocess_options_out_of_range, True),
}

#: rows of test_bad_inputs.py that are not run-related (lcmodel predict on a given model) or tested here apart
NOT_RUN_ROWS = {"truncated_embedding_at_prediction", "embedding_band_count_differs_from_the_model",
                "model_file_that_is_not_a_bundle", "model_from_an_incompatible_version",
                "model_whose_hash_does_not_match", "model_url_is_never_fetched", "model_that_was_damaged"}
APART = {"missing_config_file", "output_folder_in_use_by_another_run"}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_through_the_flow(name: str, case: dict[str, Path], prefect_console: io.StringIO,
                              request: pytest.FixtureRequest) -> None:
    make, before_server = ROWS[name]
    if not before_server:
        request.getfixturevalue("flow_ready")
    cfg, pattern, allowed = make(case)
    _run_fails(cfg, pattern, case["out"], prefect_console, allowed=allowed)
    if before_server:
        assert "prefect.flow_runs" not in prefect_console.getvalue()


def test_missing_config_file(case: dict[str, Path], prefect_console: io.StringIO) -> None:
    _run_fails(case["root"] / "nope.yaml", r"config file '.*nope.yaml' does not exist; check the path", case["out"],
               prefect_console)


def test_output_folder_in_use_by_another_run(case: dict[str, Path], prefect_console: io.StringIO,
                                             flow_ready: None) -> None:
    case["out"].mkdir()
    script = ("import time; from lcmodel.io import output_lock\n"
              f"with output_lock({str(case['out'])!r}):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        before = plain._files(case["out"])
        _run_fails(plain._config(case), r"output folder '.*out' is in use by another run \(pid \d+, started "
                   r"[0-9T:+-]+\); wait for it or choose another output.dir", case["out"], prefect_console,
                   before=before)
    finally:
        proc.kill()
        proc.wait()


def test_every_run_row_is_run_through_the_flow() -> None:
    """Each error row of test_bad_inputs.py is here, or named as not run-related."""
    rows = {name.removeprefix("test_") for name in dir(plain)
            if name.startswith("test_") and not name.startswith("test_warning")}
    assert rows - NOT_RUN_ROWS - APART == set(ROWS)


def test_the_console_script_through_the_flow(case: dict[str, Path], flow_ready: None) -> None:
    """What a user runs: the `lcmodel` script in its own process (on this module's Prefect server), a row that
    the flow's second stage refuses: exit 2, one error line, the rest Prefect's log records, no traceback."""
    from prefect.settings import PREFECT_API_URL

    cfg, pattern, _ = ROWS["class_table_without_code_column"][0](case)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PREFECT_API_URL=str(PREFECT_API_URL.value()))
    proc = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "run", str(cfg)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("error: ")
                and not _LOG_LINE.match(line)], proc.stderr
    assert "prefect.flow_runs" in proc.stderr  # it did go through the flow
