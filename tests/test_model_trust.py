"""Loading a model never runs code from the model file: a payload planted in every place a model is loaded from.

The places: a bundle path (``lcmodel predict --model FILE``), a registered model (``--model models:/NAME/1`` and
``@champion``) after its bundle was swapped inside the artifact store, and the served model (what ``mlflow models
serve`` loads). The payloads: a pickle whose ``__reduce__`` opens a marker file for writing (with a side file
recording its SHA-256, as an attacker would write), and skops bundles crafted to name an untrusted type (a class
whose ``__setstate__`` opens the marker, a bare ``os.system``, or that class hidden inside a real forest). Each
time: the marker never appears, and the user gets one clear line (exit 2 from the CLI).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio
from click.testing import CliRunner

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from flows.cli import cli  # noqa: E402
from lcmodel.errors import ModelBundleError  # noqa: E402
from lcmodel.io import sha256_file  # noqa: E402
from lcmodel.model_format import METADATA_ENTRY, bundle_bytes  # noqa: E402
from lcmodel.model_io import load_bundle, side_file_path  # noqa: E402
from tests.rasters import tiny_demo_config  # noqa: E402

NAME = "lc-trust"
MARKER_ENV = "LCMODEL_TEST_MARKER"


class Payload:
    """Pickled: ``__reduce__`` makes the unpickler open the marker for writing (creating it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.marker), "w")


class Planted:
    """Rebuilt by skops (if it were trusted): ``__setstate__`` creates the marker named in the environment."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(os.environ[MARKER_ENV]).write_text("ran")


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    """One `lcmodel run` (the Prefect flow) of the tiny demo, registered as NAME (version 1, champion)."""
    root = tmp_path_factory.mktemp("trust")
    uri = f"sqlite:///{root / 'mlflow.sqlite'}"
    cfg = tiny_demo_config(root / "data", tracking={"experiment": "trust", "register_as": NAME,
                                                    "promote_if_better": True, "uri": uri})
    done = CliRunner().invoke(cli, ["run", str(cfg)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    bundles = sorted(root.rglob("model.skops"))
    stored = [p for p in bundles if "mlartifacts" in p.parts]
    assert len(stored) == 2, bundles  # the run's bundle/ copy and the registered model's artifacts/model.skops
    (bundle,) = [p for p in bundles if p not in stored]  # the run's output
    return {"root": root, "uri": uri, "config": cfg, "bundle": bundle, "stored": stored,
            "embedding": root / "data" / "embedding.tif"}


@pytest.fixture()
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "PWNED"
    monkeypatch.setenv(MARKER_ENV, str(path))
    yield path
    assert not path.exists(), "code from a model file ran"


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps({"lcmodel_bundle": 1, "estimator": Payload(marker), "metadata": {}})


def _crafted(real: Path, estimator_skops: bytes) -> bytes:
    """A bundle zip: the real bundle's metadata, the estimator entries of ``estimator_skops``."""
    out = io.BytesIO()
    with zipfile.ZipFile(real) as z, zipfile.ZipFile(io.BytesIO(estimator_skops)) as e, \
            zipfile.ZipFile(out, "w") as dst:
        dst.writestr(METADATA_ENTRY, z.read(METADATA_ENTRY))
        for name in e.namelist():
            dst.writestr(name, e.read(name))
    return out.getvalue()


def _payloads(real: Path, marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the line's pattern)."""
    forest = load_bundle(real).estimator
    forest.planted = Planted()  # hidden among a real forest's attributes
    untrusted = r"names types lcmodel does not load \({}\); a bundle holds only a scikit-learn forest or tree"
    planted = re.escape(f"{__name__}.Planted")
    return {
        "pickle": (_evil_pickle(marker), r"is a pickle written by an older lcmodel \(loading it would run code"),
        "planted class": (_crafted(real, sio.dumps(Planted())), untrusted.format(planted)),
        "os.system": (_crafted(real, sio.dumps(os.system)), untrusted.format(r"posix\.system")),
        "hidden in a forest": (_crafted(real, sio.dumps(forest)), untrusted.format(planted)),
    }


def _one_line(args: list[str], pattern: str) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


@contextmanager
def _swapped(files: list[Path], data: bytes) -> Iterator[None]:
    """``files`` replaced by ``data`` (an attacker with write access to the artifact store), then restored."""
    saved = {p: p.read_bytes() for p in files}
    try:
        for p in files:
            p.write_bytes(data)
        yield
    finally:
        for p, raw in saved.items():
            p.write_bytes(raw)


# ------------------------------------------------------------------------------------------ bundle path
def test_no_payload_runs_from_a_bundle_path(registered: dict[str, Any], marker: Path, tmp_path: Path) -> None:
    for name, (data, pattern) in _payloads(registered["bundle"], marker).items():
        for file_name in ("model.skops", "model.joblib"):
            evil = tmp_path / name.replace(" ", "_") / file_name
            evil.parent.mkdir(exist_ok=True)
            evil.write_bytes(data)
            # the attacker's side file records the payload's own SHA-256: it is not what loading relies on
            side_file_path(evil).write_text(json.dumps({"sha256": sha256_file(evil), "format_version": 2}))
            _one_line(["predict", "--model", str(evil), "--embedding", str(registered["embedding"]),
                       "--out", str(tmp_path / "map.tif")], pattern)
            with pytest.raises(ModelBundleError, match=pattern):
                load_bundle(evil)
    assert not (tmp_path / "map.tif").exists()


def test_saving_refuses_an_estimator_with_an_untrusted_type(registered: dict[str, Any], tmp_path: Path) -> None:
    bundle = load_bundle(registered["bundle"])
    bundle.estimator.planted = Planted()
    with pytest.raises(ModelBundleError, match=r"the estimator to save names types lcmodel does not load"):
        bundle_bytes(bundle.estimator, bundle.metadata())


# ------------------------------------------------------------------------------------------ models:/
def test_no_payload_runs_from_the_registry_after_a_swap(registered: dict[str, Any], marker: Path,
                                                        tmp_path: Path) -> None:
    common = ["--embedding", str(registered["embedding"]), "--tracking-uri", registered["uri"]]
    for data, _ in _payloads(registered["bundle"], marker).values():
        with _swapped(registered["stored"], data):
            for ref in (f"models:/{NAME}/1", f"models:/{NAME}@champion"):
                _one_line(["predict", "--model", ref, "--out", str(tmp_path / "map.tif"), *common],
                          rf"model bundle '.*model.skops' has SHA-256 {sha256_file(registered['stored'][0])}, but "
                          r"[0-9a-f]{64} was recorded when it was trained: the file was replaced or changed since; "
                          "retrain, or register the model again")
    assert not (tmp_path / "map.tif").exists()
    # restored: the registered model predicts again
    ok = CliRunner().invoke(cli, ["predict", "--model", f"models:/{NAME}@champion", "--out",
                                  str(tmp_path / "map.tif"), *common], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output


# ------------------------------------------------------------------------------------------ served model
def _model_dir(stored: list[Path]) -> Path:
    return next(p.parent.parent for p in stored if (p.parent.parent / "MLmodel").is_file())


def test_no_payload_runs_in_the_served_model(registered: dict[str, Any], marker: Path) -> None:
    """What `mlflow models serve` loads: the swap is refused by the digest, a rewritten digest by the types."""
    import mlflow
    import yaml

    mlflow.set_tracking_uri(registered["uri"])
    mlmodel = _model_dir(registered["stored"]) / "MLmodel"
    original = mlmodel.read_text()
    for name, (data, pattern) in _payloads(registered["bundle"], marker).items():
        with _swapped(registered["stored"], data):
            with pytest.raises(ModelBundleError, match=r"has SHA-256 [0-9a-f]{64}, but [0-9a-f]{64} was recorded"):
                mlflow.pyfunc.load_model(f"models:/{NAME}/1")
            # the attacker rewrites the digest in MLmodel too: the bundle's own checks still refuse it
            spec = yaml.safe_load(original)
            spec["flavors"]["python_function"]["config"]["bundle_sha256"] = sha256_file(
                registered["stored"][0])
            try:
                mlmodel.write_text(yaml.safe_dump(spec))
                with pytest.raises(ModelBundleError, match=pattern) as info:
                    mlflow.pyfunc.load_model(f"models:/{NAME}/1")
                assert "\n" not in str(info.value), name
            finally:
                mlmodel.write_text(original)
    assert mlflow.pyfunc.load_model(f"models:/{NAME}/1").metadata.metadata["lcmodel_nodata_class"] == 0


def test_the_logged_model_runs_only_lcmodels_code_file(registered: dict[str, Any]) -> None:
    model_dir = _model_dir(registered["stored"])
    code = model_dir / "pyfunc_code.py"
    assert code.read_text() == (Path(__file__).parents[1] / "flows" / "tracking" / "pyfunc_code.py").read_text()
    assert not list(model_dir.rglob("*.pkl"))
    shutil.copy(registered["stored"][0], registered["root"] / "copy.skops")  # the stored bundle loads as data
    assert load_bundle(registered["root"] / "copy.skops").source_sha256 == sha256_file(registered["bundle"])


# ------------------------------------------------------------------------------------------ deterministic
def test_a_refit_through_the_flow_gives_the_same_bytes(registered: dict[str, Any]) -> None:
    """The bundle holds no timestamp: refitting the same table (bundle deleted, `lcmodel run` again) gives the
    same file, so its digest (the registry's key, prediction's resume fingerprint) stays the same."""
    from mlflow import MlflowClient

    bundle = registered["bundle"]
    before = bundle.read_bytes()
    bundle.unlink()
    side_file_path(bundle).unlink()
    done = CliRunner().invoke(cli, ["run", str(registered["config"])], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert bundle.read_bytes() == before
    assert json.loads(side_file_path(bundle).read_text())["sha256"] == sha256_file(bundle)
    client = MlflowClient(tracking_uri=registered["uri"], registry_uri=registered["uri"])
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1  # the same bundle: not registered again
