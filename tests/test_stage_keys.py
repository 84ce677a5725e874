"""Stage cache keys are derived from the declarations: checked over EVERY config key, with no run.

For each leaf key of the config, the test changes its value (to another valid value) and recomputes every
stage's key on fixed inputs: exactly the stages whose settings hold the key (in a keyed field) must see
their key change, and no other stage. A key that no stage holds must be one the runner or the flow owns.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from lcmodel import pipeline
from lcmodel.config import RunConfig, config_from_dict
from lcmodel.pipeline import STAGES, Artifact, stage_key
from lcmodel.pipeline.settings import StageSettings

#: keys no library stage reads: where the run writes, and what only the orchestration layer uses
NOT_STAGE_KEYS = {
    "output.dir": "the runner's output folder (records and outputs live in it)",
    "change.enabled": "whether the runner runs the change stage at all (lcmodel.pipeline.stages.runs_in)",
}

BASE: dict[str, Any] = {
    "reference": {"path": "reference.tif"},
    "embedding": {"path": "embedding.tif"},
    "classes": {"table": "classes.csv"},
}

#: a different valid value for the keys whose type alone does not say what a valid other value is
OTHER_VALUE: dict[str, Any] = {
    "reference.path": "points.csv",
    "reference.crs": "EPSG:3857",
    "embedding.path": "other_embedding.tif",
    "embedding.aoi": [0.0, 0.0, 1.0, 1.0],
    "embedding.year": 2021,
    "embedding.bands": ["A00", 2],
    "classes.table": "other_classes.csv",
    "tuning.scoring": "accuracy",
    "tuning.stages": [{"max_features": ["sqrt"]}],
    "sampling.min_class_fraction": 0.05,
    "sampling.test_size": 0.3,
    "prediction.unclassified_below": 40.0,
    "prediction.block_size": 64,
    "tuning.score_on": "oob",
    "prediction.mosaic_crs": "EPSG:4326",
    "reference.extra_points": ["labelled_next.csv"],
    "embedding.train_year": 2021,
    "embedding.years": [2020, 2021],
}

#: keys whose other value is valid only with other keys set too (in the base and the changed config alike)
CONTEXT: dict[str, dict[str, Any]] = {
    "embedding.years": {"embedding.path": "embedding_{year}.tif", "embedding.year": 2020},
}


def flow_keys() -> dict[str, str]:
    """Keys only the flow's config adds (flows/config.py): no library stage can read them."""
    pytest.importorskip("prefect")
    from flows.config import FlowConfig

    return {k: "flow" for k in set(_leaf_keys(FlowConfig)) - set(_leaf_keys(RunConfig))}


def test_the_library_config_holds_no_orchestration_setting() -> None:
    assert not [k for k in _leaf_keys(RunConfig) if k.startswith("tracking.") or k in
                {"prediction.task_runner", "prediction.dask_address", "prediction.blocks_per_task"}]
    assert {"tracking.uri", "prediction.task_runner"} <= set(flow_keys())


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        sub = next((a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)),
                   None)
        if sub is not None:
            out.update(_leaf_keys(sub, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = field
    return out


def _dump(cfg: RunConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return data


def _other_value(key: str, field: Any, current: Any) -> Any:
    if key in OTHER_VALUE:
        return OTHER_VALUE[key]
    args = typing.get_args(field.annotation)
    literal = next((a for a in (field.annotation, *args) if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        return next(v for v in typing.get_args(literal) if v != current)
    if isinstance(current, bool):
        return not current
    if isinstance(current, int):
        return current + 1
    if isinstance(current, float):
        return current * 2
    if isinstance(current, str):
        return current + "_other"
    if current is None:
        kinds = [a for a in args if a is not type(None)]
        if bool in kinds:
            return True
        if int in kinds:
            return 3
        if float in kinds:
            return 250.0
        if str in kinds:
            return "other"
    raise AssertionError(f"no other value known for config key {key!r} ({field.annotation}); add it to OTHER_VALUE")


def _keys(cfg: RunConfig) -> dict[str, str]:
    """Every stage's key on fixed, fake inputs (one digest per artifact type)."""
    keys = {}
    for st in STAGES.values():
        inputs: dict[str, Any] = {}
        for inp in st.inputs:
            fake = {f.name: Artifact(Path(f"{inp.type.__name__}.{f.name}"), "0" * 64)
                    for f in dataclasses.fields(inp.type)}
            inputs[inp.name] = inp.type(**{k: ((v,) if k == "tables" else v) for k, v in fake.items()})
        keys[st.name] = stage_key(st, st.settings.from_config(cfg), inputs)
    return keys


def _source_holders(key: str) -> set[str]:
    """Stages consuming the user file that ``key`` names (its content digest enters their keys)."""
    return {st.name for st in STAGES.values() for inp in st.inputs
            if issubclass(inp.type, pipeline.Source)
            and key in (inp.type.config_key, *inp.type.config_keys)}


def _holders(key: str) -> tuple[set[str], set[str], set[str]]:
    """Stages holding ``key`` in a keyed field, in a runtime field, and in a keyed direct (non-derived) field."""
    keyed, runtime, direct = set(), set(), set()
    for st in STAGES.values():
        for f in dataclasses.fields(st.settings):
            if key in f.metadata["config"]:
                if f.metadata["runtime"]:
                    runtime.add(st.name)
                else:
                    keyed.add(st.name)
                    if f.metadata["derive"] is None:
                        direct.add(st.name)
    return keyed, runtime, direct


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> RunConfig:
    root = tmp_path_factory.mktemp("keys")
    return config_from_dict(BASE, base_dir=root)


ALL_KEYS = sorted(_leaf_keys(RunConfig))


def test_every_config_key_is_held_by_a_stage_or_owned_elsewhere() -> None:
    owned = NOT_STAGE_KEYS | flow_keys()
    unheld = [k for k in ALL_KEYS if not any(_holders(k)[:2]) and not _source_holders(k) and k not in owned]
    assert unheld == [], f"config keys no stage declares and nobody owns: {unheld}"
    # and the reverse: a key a stage declares is not also claimed by the flow
    assert [k for k in owned if any(_holders(k)[:2])] == []


def test_settings_name_only_real_config_keys() -> None:
    for st in STAGES.values():
        for name, keys in st.settings.config_keys().items():
            for key in keys:
                assert key in ALL_KEYS, f"{st.settings.__name__}.{name} names {key!r}, which is no config key"


@pytest.mark.parametrize("key", ALL_KEYS)
def test_changing_a_key_changes_exactly_the_keys_of_the_stages_holding_it(base: RunConfig, key: str) -> None:
    if key in CONTEXT:
        data = _dump(base)
        for k, v in CONTEXT[key].items():
            _set(data, k, v)
        base = config_from_dict(data, base_dir=None)
    fields = _leaf_keys(RunConfig)
    current = pipeline.settings.config_value(base, key)
    other = _other_value(key, fields[key], current if not isinstance(current, Path) else str(current))
    changed_cfg = config_from_dict(_set(_dump(base), key, other), base_dir=None)
    assert pipeline.settings.config_value(changed_cfg, key) != current, f"{key}: the change did not take"
    before, after = _keys(base), _keys(changed_cfg)
    changed = {name for name in before if before[name] != after[name]}
    keyed, runtime, direct = _holders(key)
    assert changed <= keyed, f"{key} changed the keys of {sorted(changed - keyed)}, whose settings do not hold it"
    assert direct <= changed, f"{key} is held by {sorted(direct - changed)} but did not change their keys"
    if not keyed:
        assert changed == set(), key
        assert runtime or _source_holders(key) or key in NOT_STAGE_KEYS | flow_keys(), f"{key} is read by nobody"


def test_derived_settings_follow_their_sources(base: RunConfig) -> None:
    # reference.kind auto is resolved from the file's suffix; each stage that holds it sees the change
    points = config_from_dict(_set(_dump(base), "reference.path", "labels.csv"), base_dir=None)
    for cls in (pipeline.settings.TrainingTableSettings, pipeline.settings.ReportSettings):
        assert cls.from_config(base).kind == "raster" and cls.from_config(points).kind == "points"
    assert pipeline.settings.ReportSettings.from_config(points).reference_name == "labels.csv"
    # prediction.n_jobs null falls back to n_jobs
    assert pipeline.settings.PredictSettings.from_config(base).n_jobs == base.n_jobs
    four = config_from_dict(_set(_dump(base), "prediction.n_jobs", 4), base_dir=None)
    assert pipeline.settings.PredictSettings.from_config(four).n_jobs == 4


def test_upgrading_lcmodel_invalidates_every_stage(base: RunConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    import lcmodel
    from lcmodel.pipeline import declare

    before = _keys(base)
    monkeypatch.setattr(lcmodel, "__version__", lcmodel.__version__ + ".post1")
    declare.lcmodel_version.cache_clear()
    try:
        after = _keys(base)
    finally:
        declare.lcmodel_version.cache_clear()
    assert all(before[name] != after[name] for name in before)


def test_input_digests_enter_the_key(base: RunConfig) -> None:
    st = STAGES["tune"]
    settings = st.settings.from_config(base)
    table = pipeline.TrainingTable(Artifact(Path("t.csv"), "a" * 64), Artifact(Path("b.json"), "b" * 64))
    other = pipeline.TrainingTable(Artifact(Path("t.csv"), "c" * 64), Artifact(Path("b.json"), "b" * 64))
    assert stage_key(st, settings, {"table": table}) != stage_key(st, settings, {"table": other})
    with pytest.raises(TypeError, match="needs its input 'table'"):
        stage_key(st, settings, {})


def test_stage_signatures_are_settings_artifacts_and_keyword_runtime() -> None:
    import inspect

    for st in STAGES.values():
        assert issubclass(st.settings, StageSettings)
        params = inspect.signature(st.fn).parameters
        keyword_only = [p for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert "out" in {p.name for p in keyword_only}, st.name
        assert len(params) == 1 + len(st.inputs) + len(keyword_only), st.name
