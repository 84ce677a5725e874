from pathlib import Path

import pytest
from pydantic import ValidationError

from lcmodel.config import DEFAULT_STAGES, config_from_dict, flatten_config, load_config
from lcmodel.errors import ConfigError, InputFileError

MINIMAL = {"reference": {"path": "ref.tif"}, "embedding": {"path": "emb.tif"}}


def test_defaults_are_the_notebooks(tmp_path: Path) -> None:
    cfg = config_from_dict(MINIMAL, tmp_path)
    assert cfg.reference.n_points == 10000
    assert cfg.sampling.n_sample == 5000
    assert cfg.sampling.min_class_fraction == 0.01
    assert cfg.sampling.test_size == 0.2
    assert cfg.sampling.random_state == 42
    assert cfg.tuning.cv == 5 and cfg.tuning.scoring == "f1_macro"
    assert [dict((k, list(v)) for k, v in s.items()) for s in cfg.tuning.stages] == [
        dict((k, list(v)) for k, v in s.items()) for s in DEFAULT_STAGES
    ]
    assert cfg.n_jobs == 2


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "run.yaml"
    p.parent.mkdir()
    p.write_text("reference: {path: ../ref.tif}\nembedding: {path: emb.tif}\noutput: {dir: out}\n")
    cfg = load_config(p)
    assert cfg.reference.path == tmp_path / "ref.tif"
    assert cfg.embedding.path == tmp_path / "sub" / "emb.tif"
    assert cfg.output.dir == tmp_path / "sub" / "out"


def test_default_output_dir_resolves_too(tmp_path: Path) -> None:
    assert config_from_dict(MINIMAL, tmp_path).output.dir == tmp_path / "results" / "run"


def test_toml_with_null_strings_in_grid(tmp_path: Path) -> None:
    p = tmp_path / "run.toml"
    p.write_text(
        '[reference]\npath = "r.csv"\n[embedding]\npath = "e.tif"\n'
        '[tuning]\nstages = [{max_depth = ["null", 5]}]\n'
    )
    cfg = load_config(p)
    assert cfg.tuning.stages[0]["max_depth"] == (None, 5)
    assert cfg.reference_kind == "points"


def test_unknown_key_suggests_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'sampling.n_sampel'; did you mean 'n_sample'"):
        config_from_dict({**MINIMAL, "sampling": {"n_sampel": 3}}, tmp_path)
    with pytest.raises(ConfigError, match=r"unknown config key 'samplng'; did you mean 'sampling'"):
        config_from_dict({**MINIMAL, "samplng": {}}, tmp_path)


def test_invalid_grid_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"max_features 0 is not valid"):
        config_from_dict({**MINIMAL, "tuning": {"stages": [{"max_features": [0]}]}}, tmp_path)
    with pytest.raises(ConfigError, match=r"'max_feature' is not a tunable .*did you mean 'max_features'"):
        config_from_dict({**MINIMAL, "tuning": {"stages": [{"max_feature": [2]}]}}, tmp_path)


def test_missing_section_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'embedding' is required"):
        config_from_dict({"reference": {"path": "r.tif"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"sampling.test_size"):
        config_from_dict({**MINIMAL, "sampling": {"test_size": 1.5}}, tmp_path)
    with pytest.raises(ConfigError, match=r"not a CRS pyproj understands"):
        config_from_dict({"reference": {"path": "r.csv", "crs": "EPSG:99999999"}, "embedding": {"path": "e"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean 'f1_macro'"):
        config_from_dict({**MINIMAL, "tuning": {"scoring": "f1_marco"}}, tmp_path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("reference: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML/TOML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"is empty"):
        load_config(empty)


def test_frozen_and_flat(tmp_path: Path) -> None:
    cfg = config_from_dict(MINIMAL, tmp_path)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.n_jobs = 3  # type: ignore[misc]
    flat = flatten_config(cfg)
    assert flat["sampling.n_sample"] == "5000"
    assert flat["tuning.stages.1.n_estimators"] == "[400, 800, 1200]"


def test_tuning_modes_validated(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {**MINIMAL, "tuning": {"method": "halving", "score_on": "oob", "halving_factor": 2}}, tmp_path
    )
    assert (cfg.tuning.method, cfg.tuning.score_on, cfg.tuning.halving_factor) == ("halving", "oob", 2)
    assert config_from_dict(MINIMAL, tmp_path).tuning.score_on == "cv"
    with pytest.raises(ConfigError, match="score_on"):
        config_from_dict({**MINIMAL, "tuning": {"score_on": "holdout"}}, tmp_path)
    with pytest.raises(ConfigError, match="halving_factor"):
        config_from_dict({**MINIMAL, "tuning": {"halving_factor": 1}}, tmp_path)
    with pytest.raises(ConfigError, match="score_on 'oob' works with method 'grid' or 'halving'"):
        config_from_dict({**MINIMAL, "tuning": {"method": "optuna", "score_on": "oob"}}, tmp_path)
