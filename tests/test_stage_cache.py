"""Cached reruns versus fresh runs, through the Prefect flow: a changed key re-runs what it must, nothing else,
and the result equals a fresh run with that config; an unchanged rerun executes nothing and registers nothing;
tampered outputs re-run their stage; an lcmodel upgrade re-runs every stage."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect")
pytest.importorskip("mlflow")

from flows.config import FlowConfig as RunConfig  # noqa: E402
from flows.config import flow_config_from_dict as config_from_dict  # noqa: E402
from flows.config import load_flow_config as load_config  # noqa: E402
from lcmodel import pipeline  # noqa: E402
from tests.rasters import tiny_demo_config  # noqa: E402

#: outputs compared between a cached rerun and a fresh run (timings aside)
COMPARED = ("map.tif", "confidence.tif", "training_table.csv", "best_params.json", "report.md")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _with(cfg: RunConfig, changes: dict[str, Any], out: Path | None = None) -> RunConfig:
    data = cfg.model_dump(mode="json")
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    if out is not None:
        data["output"]["dir"] = str(out)
    return config_from_dict(data)


def _fingerprint(root: Path, names: tuple[str, ...] = COMPARED) -> dict[str, Any]:
    """What must be equal between a cached rerun and a fresh run: output bytes and the figures."""
    out: dict[str, Any] = {name: _sha(root / name) for name in names}
    metrics = json.loads((root / "metrics.json").read_text())
    out["test"] = {k: metrics["test"][k] for k in ("overall_accuracy", "macro_f1", "kappa", "n_test")}
    out["cv_comparison"] = {k: v for k, v in metrics["cv_comparison"].items()}
    tuning = json.loads((root / "tuning_result.json").read_text())
    out["tuning"] = {k: tuning[k] for k in ("best_params", "best_score", "cv_strategy", "block_size")}
    out["tuning_scores"] = [c["fold_scores"] for c in tuning["candidates"]]
    assessment = json.loads((root / "accuracy_assessment.json").read_text())
    out["assessment"] = {k: v for k, v in assessment.items()}
    return out


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> RunConfig:
    root = tmp_path_factory.mktemp("stagecache")
    cfg = load_config(tiny_demo_config(root / "data", stages=[{"max_features": ["sqrt", 2], "n_estimators": [10]}]))
    uri = f"sqlite:///{root / 'mlflow.sqlite'}"
    return _with(cfg, {"tracking.uri": uri, "tuning.cv_strategy": "random", "tuning.cv": 3,
                       "tracking.register_as": "stagecache", "tracking.promote_if_better": False,
                       "postprocess.mmu_pixels": 4, "postprocess.majority": 3})  # every stage runs


@pytest.fixture(scope="module")
def first(base_cfg: RunConfig) -> dict[str, Any]:
    from flows.landcover import landcover

    return landcover(base_cfg)


def test_unchanged_rerun_executes_nothing_and_registers_nothing(base_cfg: RunConfig, first: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    from flows.landcover import landcover

    client = MlflowClient(tracking_uri=base_cfg.tracking.uri)
    versions = client.search_model_versions("name='stagecache'")
    assert len(versions) == 1 and first["executed"] == pipeline.stages_of(base_cfg)
    root = Path(base_cfg.output.dir)
    mtimes = {p: p.stat().st_mtime_ns for p in root.iterdir() if p.is_file()}
    again = landcover(base_cfg)
    assert again["executed"] == [] and again["cached"] == pipeline.stages_of(base_cfg)
    assert {p: p.stat().st_mtime_ns for p in root.iterdir() if p.is_file()} == mtimes  # nothing rewritten
    assert len(client.search_model_versions("name='stagecache'")) == 1  # no new model version
    assert again["version"] == first["version"] and again["model_uri"] == f"models:/stagecache/{first['version']}"
    run = client.get_run(again["mlflow_run_id"])
    assert run.data.tags["lcmodel.cached"] == "all"
    assert run.data.tags["lcmodel.cached_from_runs"] == first["mlflow_run_id"]
    assert run.data.tags["lcmodel.model_reused"] == "true"
    # the Prefect summary says so too, and names the run that produced each stage
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        art = prefect.read_latest_artifacts(limit=50)
    summary = next(a for a in art if a.key == "landcover-summary")
    assert "every stage was reused and no model was registered" in summary.data
    assert f"MLflow run `{first['mlflow_run_id']}`" in summary.data
    progress = next(a for a in art if a.key == "prediction-progress")
    assert progress.data == 100.0 and "cached" in (progress.description or "")


# one key per stage (the cv_strategy case of the issue first), applied one after the other in ONE folder: the
# stages each change must re-run (a stage whose outputs come out byte-identical ends the cascade early)
STEPS: list[tuple[dict[str, Any], set[str]]] = [
    ({"tuning.cv_strategy": "spatial"}, {"make_training_table", "tune", "evaluate", "fit_final", "predict_map",
                                         "write_quicklook", "assess_map", "applicability", "postprocess", "report"}),
    ({"reference.n_points": 650}, set(pipeline.STAGES)),
    ({"sampling.dedupe_pixels": False}, set(pipeline.STAGES) - {"sample_reference", "prepare_points"}),
    ({"sampling.test_size": 0.25}, set(pipeline.STAGES) - {"sample_reference", "prepare_points", "extract_samples"}),
    ({"tuning.stages": [{"max_features": ["sqrt"], "n_estimators": [12]}]},
     set(pipeline.STAGES) - {"sample_reference", "prepare_points", "extract_samples", "make_training_table"}),
    ({"n_jobs": 1}, {"fit_final", "predict_map", "write_quicklook", "assess_map", "applicability", "postprocess",
                     "report"}),
    ({"prediction.confidence": False}, {"predict_map", "write_quicklook", "assess_map", "applicability", "postprocess",
                                       "report"}),
]


@pytest.mark.slow  # ~45 s: 7 flow reruns and 7 fresh runs; CI runs it (.ci/run: make test-slow)
def test_changed_keys_rerun_their_stages_and_equal_fresh_runs(base_cfg: RunConfig, first: dict[str, Any],
                                                              tmp_path: Path) -> None:
    from flows.landcover import landcover

    root = tmp_path / "run"
    _copy_run(Path(base_cfg.output.dir), root)  # the first run's folder, as a user's earlier run
    cfg = _with(base_cfg, {}, root)
    order = list(pipeline.STAGES)
    for i, (changes, expected) in enumerate(STEPS):
        cfg = _with(cfg, changes)
        result = landcover(cfg)
        ran = set(result["executed"])
        first_expected = min(expected, key=order.index)
        assert first_expected in ran and ran <= expected, (changes, sorted(ran), sorted(expected))
        fresh_root = tmp_path / f"fresh{i}"
        fresh = pipeline.run(_with(cfg, {}, fresh_root))
        names = tuple(n for n in COMPARED if (fresh_root / n).exists())  # confidence.tif only when asked for
        assert _fingerprint(root, names) == _fingerprint(fresh_root, names), changes
        assert fresh["class_counts"] == json.loads((root / "prediction.json").read_text())["class_counts"]
        tuning = json.loads((root / "tuning_result.json").read_text())
        assert tuning["cv_strategy"] == "spatial"  # never the random folds of the first run


def _copy_run(src: Path, dst: Path) -> None:
    """A copy of a finished run's folder (records and Prefect's cache included) at another path."""
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lcmodel.lock"))


def test_a_copied_output_folder_is_reused(base_cfg: RunConfig, first: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "copy"
    _copy_run(Path(base_cfg.output.dir), root)
    r = pipeline.run_stages(pipeline.StageRun(_with(base_cfg, {}, root)), mapping=True)
    assert r.executed() == []  # records name files relative to the folder


def test_tampered_outputs_rerun_their_stage(base_cfg: RunConfig, first: dict[str, Any], tmp_path: Path) -> None:
    from flows.landcover import landcover

    root = tmp_path / "run"
    _copy_run(Path(base_cfg.output.dir), root)
    cfg = _with(base_cfg, {}, root)
    assert landcover(cfg)["executed"] == []  # the copy is reused through the flow too
    want = _fingerprint(root)
    table = root / "training_table.csv"
    data = table.read_bytes()
    table.write_bytes(data[: len(data) // 2])  # cut mid-line
    ran = landcover(cfg)["executed"]
    assert ran[0] == "make_training_table" and "sample_reference" not in ran
    assert _fingerprint(root) == want and table.read_bytes() == data
    bundle = root / "model.skops"
    raw = bytearray(bundle.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one byte flipped
    bundle.write_bytes(bytes(raw))
    r = pipeline.run_stages(pipeline.StageRun(cfg), mapping=True)
    assert r.executed()[0] == "fit_final" and "evaluate" not in r.executed()
    from lcmodel.model_io import load_bundle

    load_bundle(bundle)  # the refitted bundle loads (its hash is checked on load)
    (root / "samples.csv").unlink()  # a deleted output
    assert pipeline.run_stages(pipeline.StageRun(cfg), mapping=True).executed()[0] == "extract_samples"


def test_upgrading_lcmodel_reruns_every_stage(base_cfg: RunConfig, first: dict[str, Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import lcmodel
    from lcmodel.pipeline import declare

    root = tmp_path / "run"
    _copy_run(Path(base_cfg.output.dir), root)
    cfg = _with(base_cfg, {}, root)
    monkeypatch.setattr(lcmodel, "__version__", lcmodel.__version__ + ".post1")
    declare.lcmodel_version.cache_clear()
    try:
        r = pipeline.run_stages(pipeline.StageRun(cfg), mapping=True)
    finally:
        declare.lcmodel_version.cache_clear()
    assert r.executed() == pipeline.stages_of(cfg)
    assert os.path.exists(root / "map.tif")
