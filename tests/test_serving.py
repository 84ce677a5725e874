"""The registry life-cycle: pyfunc model, prediction from models:/ URIs, promotion, compare, landcover-predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from flows.cli import cli  # noqa: E402
from flows.config import load_flow_config as load_config  # noqa: E402
from lcmodel.errors import InputDataError  # noqa: E402
from lcmodel.model_io import load_bundle  # noqa: E402
from lcmodel.pixels import predict_pixel_table  # noqa: E402
from tests.rasters import tiny_demo_config  # noqa: E402

NAME = "lc-serving"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prefect_harness):
    """One landcover flow run, registered as NAME with promote_if_better (so version 1 is champion)."""
    from flows.landcover import landcover

    root = tmp_path_factory.mktemp("serving")
    cfg_path = tiny_demo_config(root / "data", tracking={
        "experiment": "serving", "register_as": NAME, "promote_if_better": True,
        "uri": f"sqlite:///{root / 'mlflow.sqlite'}"})
    cfg = load_config(cfg_path)
    result = landcover(cfg)
    return cfg, result


def _client(cfg):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.tracking.uri, registry_uri=cfg.tracking.uri)


def _pixels(cfg, bundle) -> pd.DataFrame:
    with rasterio.open(cfg.embedding.path) as src:
        block = src.read()
    return pd.DataFrame(block.reshape(block.shape[0], -1).T.astype(np.float64), columns=bundle.band_names)


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------------------------------ library
def test_pixel_table_follows_the_map_rules(trained):
    cfg, result = trained
    bundle = load_bundle(result["bundle"])
    table = _pixels(cfg, bundle)
    out = predict_pixel_table(bundle, table, probabilities=True)
    with rasterio.open(result["map"]) as src:
        expected = src.read(1).ravel()
    np.testing.assert_array_equal(out["class"].to_numpy(), expected)  # nodata pixels -> 0, as the map
    p = out[[f"p_{v}" for v in bundle.class_values]].to_numpy()
    valid = expected != 0
    np.testing.assert_allclose(p[valid].sum(axis=1), 1.0)
    assert (p[~valid] == 0).all()
    # columns are matched by name, not position
    shuffled = table.iloc[:50, ::-1]
    np.testing.assert_array_equal(predict_pixel_table(bundle, shuffled)["class"], out["class"][:50])


@pytest.mark.parametrize("mutate, pattern", [
    (lambda t: t.drop(columns=["A05"]), r"63 columns, the model expects the 64 band columns A00..A63 "
                                        r"\(missing \['A05'\]\)"),
    (lambda t: t.assign(extra=1.0), r"unexpected \['extra'\]"),
    (lambda t: t.iloc[:0], r"no rows"),
    (lambda t: t.assign(A00=np.nan), r"NaN in 4 row\(s\) \(first: row 0\)"),
    (lambda t: t.assign(A03=[0.1, np.inf, 0.1, -np.inf]), r"infinite or out-of-range values in 2 row\(s\) \(first: "
                                                          r"row 1, column 'A03' = inf"),
    (lambda t: t.assign(A00=1e308), r"infinite or out-of-range values in 4 row\(s\) .*float32 range"),
    (lambda t: t.assign(A01="x"), r"columns \['A01'\] are not numeric"),
    (lambda t: t.to_numpy(), r"must be a DataFrame"),
])
def test_pixel_table_errors_are_one_line(trained, mutate, pattern):
    _, result = trained
    bundle = load_bundle(result["bundle"])
    table = pd.DataFrame(np.full((4, 64), 0.1), columns=bundle.band_names)
    with pytest.raises(InputDataError, match=pattern) as info:
        predict_pixel_table(bundle, mutate(table))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------ pyfunc
def test_registered_model_is_a_pyfunc_carrying_the_bundle(trained):
    import mlflow
    from mlflow.exceptions import MlflowException

    cfg, result = trained
    bundle = load_bundle(result["bundle"])
    mlflow.set_tracking_uri(cfg.tracking.uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    meta = model.metadata.metadata
    assert meta["lcmodel_class_table"] == bundle.class_table.to_dict()
    assert meta["lcmodel_nodata_rule"] == bundle.nodata_rule.to_dict()
    assert meta["lcmodel_nodata_class"] == 0
    assert model.metadata.get_input_schema().input_names() == bundle.band_names
    assert [p.name for p in model.metadata.get_params_schema().params] == ["probabilities"]
    table = _pixels(cfg, bundle).iloc[:500]
    np.testing.assert_array_equal(model.predict(table)["class"],
                                  predict_pixel_table(bundle, table)["class"])
    proba = model.predict(table, params={"probabilities": True})
    assert list(proba.columns) == ["class"] + [f"p_{v}" for v in bundle.class_values]
    with pytest.raises(MlflowException, match=r"NaN in 1 row") as info:
        model.predict(table.iloc[:3].assign(A00=[0.1, np.nan, 0.2]))
    assert info.value.get_http_status_code() == 400  # what the scoring server answers


def test_registered_model_is_logged_from_code_and_holds_no_pickle(trained, tmp_path):
    """Models from code: MLflow runs flows/tracking/pyfunc_code.py, the bundle is the safe model.skops."""
    import mlflow
    import yaml

    from lcmodel.io import sha256_file

    cfg, result = trained
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}/1", dst_path=str(tmp_path),
                                                     tracking_uri=cfg.tracking.uri))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".cloudpickle"))], files
    assert "artifacts/model.skops" in files and "pyfunc_code.py" in files, files
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("pyfunc_code.py") and "python_model" not in flavor
    recorded = _client(cfg).get_run(result["mlflow_run_id"]).data.params["bundle.sha256"]
    assert sha256_file(local / "artifacts" / "model.skops") == recorded == sha256_file(result["bundle"])
    assert flavor["config"] == {"bundle_sha256": recorded}  # model_config


@pytest.mark.parametrize("body, pattern", [
    ('{"dataframe_split": {"columns": COLS, "data": [[-Infinity, ROW]]}}',
     r"infinite or out-of-range values in 1 row\(s\) \(first: row 0, column 'A00' = -inf"),
    ('{"dataframe_split": {"columns": COLS, "data": [[1e308, ROW]]}}',
     r"infinite or out-of-range values in 1 row\(s\) \(first: row 0, column 'A00' = 1e\+308"),
    ('{"dataframe_split": {"columns": COLS, "data": [[NaN, ROW]]}}', r"NaN in 1 row\(s\)"),
])
def test_the_served_model_answers_absurd_values_with_a_clear_line(trained, body, pattern):
    """The scoring server of `mlflow models serve`, in process: HTTP 400 with lcmodel's line, not 'unexpected'."""
    import json as _json
    import re

    import mlflow
    from mlflow.pyfunc.scoring_server import init
    from starlette.testclient import TestClient

    cfg, result = trained
    bundle = load_bundle(result["bundle"])
    mlflow.set_tracking_uri(cfg.tracking.uri)
    app = init(mlflow.pyfunc.load_model(f"models:/{NAME}@champion"))
    cols = _json.dumps(bundle.band_names)
    row = ", ".join(["0.1"] * (bundle.n_bands - 1))
    with TestClient(app) as client:
        reply = client.post("/invocations", content=body.replace("COLS", cols).replace("ROW", row),
                            headers={"Content-Type": "application/json"})
        ok = client.post("/invocations", content=_json.dumps(
            {"dataframe_split": {"columns": bundle.band_names, "data": [[0.1] * bundle.n_bands]}}),
            headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    message = reply.json()["message"]  # MLflow's "Failed to predict data '<the table>'. \nError: <lcmodel's line>"
    line = message.splitlines()[-1]
    assert line.startswith("Error: pixel table has ") and re.search(pattern, line), message
    assert "unexpected" not in message.lower(), message
    assert ok.status_code == 200 and ok.json()["predictions"][0]["class"] in bundle.class_values


# ------------------------------------------------------------------------------------------ registry
def test_first_version_becomes_champion(trained):
    cfg, result = trained
    client = _client(cfg)
    assert result["promotion"] == f"promoted: no champion before; test macro-F1 " \
                                  f"{client.get_run(result['mlflow_run_id']).data.metrics['test_macro_f1']:.4f}"
    aliases = {k: str(v) for k, v in client.get_registered_model(NAME).aliases.items()}
    assert aliases == {"candidate": "1", "champion": "1"}
    assert client.get_model_version(NAME, "1").tags["lcmodel.promotion"] == result["promotion"]


def test_cli_predict_from_registry_gives_the_bundle_map(trained, tmp_path):
    cfg, result = trained
    common = ["--embedding", str(cfg.embedding.path), "--tracking-uri", cfg.tracking.uri]
    a = _invoke("predict", "--model", f"models:/{NAME}@champion", "--out", str(tmp_path / "a.tif"), *common)
    assert a.exit_code == 0, a.output
    b = _invoke("predict", "--model", result["bundle"], "--out", str(tmp_path / "b.tif"), *common)
    assert b.exit_code == 0, b.output
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    bad = _invoke("predict", "--model", f"models:/{NAME}@prod", "--out", str(tmp_path / "c.tif"), *common)
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines()[-1] == (
        f"error: registered model '{NAME}' has no alias 'prod' (aliases: candidate=v1, champion=v1); "
        f"set it with `lcmodel promote {NAME} VERSION --alias prod`")


def test_predict_flow_tracks_the_model_version(trained, tmp_path):
    from flows.predict import landcover_predict
    from lcmodel.io import sha256_file

    cfg, result = trained
    out = landcover_predict(f"models:/{NAME}@champion", str(cfg.embedding.path), str(tmp_path / "map.tif"),
                            confidence=str(tmp_path / "conf.tif"), experiment="serving-predict",
                            tracking_uri=cfg.tracking.uri)
    # the same map as the training flow's bundle prediction (same block plan: default settings)
    assert (tmp_path / "map.tif").read_bytes() == Path(result["map"]).read_bytes()
    assert (tmp_path / "conf.tif").read_bytes() == Path(result["confidence"]).read_bytes()
    run = _client(cfg).get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags["model_name"], tags["model_version"]) == (NAME, "1")
    assert tags["model_uri"] == f"models:/{NAME}@champion"
    assert tags["model_run_id"] == result["mlflow_run_id"]
    assert tags["input_sha256"] == sha256_file(cfg.embedding.path)
    assert tags["lcmodel.kind"] == "prediction"
    assert metrics["predict_px_per_s"] > 0
    for value, count in out["class_counts"].items():
        assert metrics[f"map_pixels_class_{value}"] == count
        assert metrics[f"map_area_ha_class_{value}"] == pytest.approx(count * 100 / 10_000)
    assert [m.model_id for m in run.inputs.model_inputs] == [tags["model_id"]]


def test_predict_flow_refuses_an_incompatible_raster_before_any_block(trained, tmp_path):
    from flows.predict import landcover_predict
    from lcmodel.errors import CompatibilityError

    cfg, result = trained
    with rasterio.open(cfg.embedding.path) as src:
        profile, block = src.profile, src.read()[:10]
    profile.update(count=10)
    small = tmp_path / "ten_bands.tif"
    with rasterio.open(small, "w", **profile) as dst:
        dst.write(block)
    with pytest.raises(CompatibilityError, match=r"has 10 bands, the model was trained on 64"):
        landcover_predict(result["bundle"], str(small), str(tmp_path / "x.tif"),
                          tracking_uri=cfg.tracking.uri)
    assert not (tmp_path / "x.tif").exists()


def test_rerun_is_not_promoted_then_promoted_by_hand(trained):
    from flows.landcover import landcover
    from flows.tracking import promotion_decision

    cfg, first = trained
    client = _client(cfg)
    again = landcover(cfg)  # every stage cached: the same bundle, so nothing is registered (issue 12)
    assert again["executed"] == [] and again["version"] == "1" and "promotion" not in again
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    # a new bundle of the same model on the same test table: the final refit's own n_jobs changes its bytes only
    second = landcover(cfg.model_copy(update={"n_jobs": 1}))
    assert second["executed"][0] == "fit_final"
    f1 = client.get_run(first["mlflow_run_id"]).data.metrics["test_macro_f1"]
    assert second["version"] == "2"
    assert second["promotion"] == f"not promoted: test macro-F1 {f1:.4f} vs champion v1's {f1:.4f} (not better)"
    assert client.get_run(second["mlflow_run_id"]).data.tags["lcmodel.promotion"] == second["promotion"]
    assert client.get_registered_model(NAME).aliases["champion"] == 1
    # another test table: no comparison
    client.set_tag(second["mlflow_run_id"], "lcmodel.training_table_sha256", "f" * 64)
    assert promotion_decision(client, NAME, "2").startswith("not promoted: not the same test table")
    # by hand
    done = _invoke("promote", NAME, "2", "--alias", "champion", "--tracking-uri", cfg.tracking.uri)
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"models:/{NAME}@champion -> version 2 (was version 1)"
    assert client.get_registered_model(NAME).aliases["champion"] == 2
    missing = _invoke("promote", NAME, "9", "--tracking-uri", cfg.tracking.uri)
    assert missing.exit_code == 2
    assert f"registered model '{NAME}' has no version 9" in missing.output


def test_compare_lists_training_runs_best_first(trained):
    from flows.tracking import compare_runs

    cfg, _ = trained
    rows = compare_runs("serving", cfg.tracking.uri)
    assert rows and all(r["method"] == "grid" and r["n_sample"] == "500" for r in rows)
    assert all(r["reference_kind"] == "raster" and r["embedding"] == "embedding.tif" for r in rows)
    f1 = [r["test_macro_f1"] for r in rows]
    assert f1 == sorted(f1, reverse=True)
    assert all(r["cv_macro_f1"] is not None and r["tuning_time_s"] is not None
               and r["predict_px_per_s"] is not None for r in rows)
    shown = _invoke("compare", "serving", "--tracking-uri", cfg.tracking.uri)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.strip().splitlines()
    assert lines[0].split() == ["run", "name", "method", "n_sample", "reference", "embedding", "test_F1",
                                "cv_F1", "tuning_s", "px/s", "model"]
    assert len(lines) == 1 + len(rows)  # no tuning candidates, no prediction runs
    unknown = _invoke("compare", "nope", "--tracking-uri", cfg.tracking.uri)
    assert unknown.exit_code == 2
    assert "experiment 'nope' does not exist" in unknown.output
