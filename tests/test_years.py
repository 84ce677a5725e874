"""embedding.years: one model, every year mapped (config, plain runner, caching per year, determinism)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml

from lcmodel.config import config_from_dict, load_config
from lcmodel.demo_years import planted_blocks
from lcmodel.errors import ConfigError
from lcmodel.years import for_year, reference_year, year_from_name
from tests.rasters import tiny_years_config


# ------------------------------------------------------------------------------------------------ config
def _cfg(embedding: dict[str, Any], reference: str = "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif") -> Any:
    return config_from_dict({"reference": {"path": reference}, "embedding": embedding}, base_dir="/data")


def test_the_year_placeholder_names_each_years_files() -> None:
    cfg = _cfg({"path": "aef/{year}/*.tif", "years": [2024, 2018, 2021]})
    assert cfg.embedding.years == (2018, 2021, 2024)
    assert cfg.embedding.year == cfg.embedding.train_year == 2021  # the reference's own year, from its name
    assert cfg.embedding.spec == ("/data/aef/2021/*.tif",)
    assert cfg.mapped_years == (2018, 2021, 2024)
    other = cfg.for_year(2018, Path("/out/years/2018"))
    assert other.embedding.spec == ("/data/aef/2018/*.tif",) and other.output.dir == Path("/out/years/2018")
    assert other.sampling == cfg.sampling and other.tuning == cfg.tuning
    # a config written back and read again is the same config
    assert config_from_dict(cfg.model_dump(mode="json")).embedding == cfg.embedding
    one = _cfg({"path": "emb_{year}.tif", "year": 2020}, reference="ref.tif")
    assert one.embedding.spec == Path("/data/emb_2020.tif") and one.mapped_years == ()


def test_the_train_year_is_given_or_read_from_the_reference() -> None:
    assert _cfg({"path": "e_{year}.tif", "years": [2020, 2022], "train_year": 2020}, "ref.tif").embedding.year == 2020
    assert _cfg({"path": "e_{year}.tif", "years": [2020], "train_year": 2018}, "ref.tif").mapped_years == (2018, 2020)
    assert year_from_name("nlcd2011.tif") == 2011
    assert year_from_name("ESA_WorldCover_10m_2020_v100_N66E177_Map_1024px.tif") == 2020
    assert year_from_name("worldcover_berlin.tif") is None
    assert year_from_name("lc_2018_2020.tif") is None  # two years: not one the name states
    assert reference_year(("/a/ESA_WorldCover_10m_2021_v200_A.tif", "/a/ESA_WorldCover_10m_2021_v200_B.tif")) == \
        (2021, "ESA_WorldCover_10m_2021_v200_A.tif")
    assert for_year(Path("/x/{year}/e.tif"), 2019) == Path("/x/2019/e.tif")


@pytest.mark.parametrize(("embedding", "reference", "message"), [
    ({"path": "e_{year}.tif", "years": [2020, 2022]}, "ref.tif", "set embedding.train_year"),
    ({"path": "e_{year}.tif", "years": [2018, 2024]}, "r_2020.tif", "the reference's year 2020 (from 'r_2020.tif') "
     "is not among embedding.years [2018, 2024]"),
    ({"path": "e_{year}.tif"}, "ref.tif", "has a {year} placeholder but no year is set"),
    ({"path": "e.tif", "years": [2020]}, "r_2020.tif", "needs the year in embedding.path"),
    ({"path": "e.tif", "year": 2018, "train_year": 2019}, "ref.tif", "disagree"),
    ({"path": "e_{year}.tif", "years": []}, "ref.tif", "maps no year"),
    ({"path": "e_{year}.tif", "years": [2020, 2020]}, "ref.tif", "repeat a year"),
])
def test_year_mistakes_are_one_line_before_any_work(embedding: dict[str, Any], reference: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(embedding, reference)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_index_needs_no_placeholder() -> None:
    cfg = _cfg({"path": "aef_index.parquet", "years": [2022, 2023], "train_year": 2022}, "ref.tif")
    assert cfg.embedding.year == 2022 and cfg.for_year(2023).embedding.year == 2023
    assert cfg.for_year(2023).embedding.spec == cfg.embedding.spec  # the index's year column says which tiles


# ------------------------------------------------------------------------------------------- plain runs
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def years_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 3-year demo with only 2021 and 2022 listed, run; then 2023 added and run again; then rerun."""
    from lcmodel.pipeline import StageRun, run_stages

    root = tmp_path_factory.mktemp("years")
    cfg_path = tiny_years_config(root, listed=(2021, 2022), change={"enabled": False})
    first = run_stages(StageRun(load_config(cfg_path)), mapping=True)
    data = yaml.safe_load(cfg_path.read_text())
    data["embedding"]["years"] = [2021, 2022, 2023]
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_path)
    added = run_stages(StageRun(cfg), mapping=True)
    again = run_stages(StageRun(cfg), mapping=True)
    return {"cfg": cfg, "out": Path(cfg.output.dir), "first": first.executed(), "added": added.executed(),
            "again": again.executed()}


def test_every_year_is_mapped_with_the_one_model(years_run: dict[str, Any]) -> None:
    out = years_run["out"]
    for year in (2021, 2022, 2023):
        assert (out / f"map_{year}.tif").is_file() and (out / f"confidence_{year}.tif").is_file()
    assert (out / "map_2021.tif").samefile(out / "map.tif")  # the train year's map is the assessed one
    assert (out / "map_2022.tif").samefile(out / "years" / "2022" / "map.tif")
    assert not (out / "years" / "2021").exists()  # the train year is mapped in OUTPUT itself, once
    assert not (out / "years" / "2022" / "accuracy_assessment.json").exists()  # no reference for that year
    assert (out / "years" / "2023" / "aoa.tif").is_file()  # each year has its own area of applicability
    with rasterio.open(out / "map_2021.tif") as a, rasterio.open(out / "map_2023.tif") as b:
        assert a.profile == b.profile
        m21, m23 = a.read(1), b.read(1)
    # the planted lasting change (toward Cropland, class value 3) is mapped as Cropland in 2023
    rows, cols = planted_blocks(96)["changed"]
    assert (m23[rows, cols] == 3).mean() > 0.95 > (m21[rows, cols] == 3).mean()


def test_adding_a_year_maps_that_year_only_and_a_rerun_does_nothing(years_run: dict[str, Any]) -> None:
    assert "predict_map[2022]" in years_run["first"] and "tune" in years_run["first"]
    added = years_run["added"]
    assert "tune" not in added and "fit_final" not in added and "predict_map" not in added
    assert "predict_map[2022]" not in added
    assert {"predict_map[2023]", "write_quicklook[2023]", "applicability[2023]"} <= set(added)
    assert years_run["again"] == []


def test_the_same_config_gives_the_same_year_maps_bit_for_bit(years_run: dict[str, Any], tmp_path: Path) -> None:
    from lcmodel.pipeline import StageRun, run_stages

    cfg = years_run["cfg"]
    fresh = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": tmp_path / "again"})})
    run_stages(StageRun(fresh), mapping=True)
    for year in (2021, 2022, 2023):
        assert _sha(tmp_path / "again" / f"map_{year}.tif") == _sha(years_run["out"] / f"map_{year}.tif")


def test_a_year_no_longer_listed_loses_its_published_map(years_run: dict[str, Any], tmp_path: Path) -> None:
    from lcmodel.pipeline.years import publish_year_files

    out = tmp_path / "pub"
    out.mkdir()
    src = years_run["out"] / "years" / "2022" / "map.tif"
    (out / "map_2019.tif").write_bytes(b"old")
    (out / "map_final.tif").write_bytes(b"not ours")

    class P:
        map = type("A", (), {"path": src})()
        confidence = None

    published = publish_year_files(out, {2022: P()})  # type: ignore[dict-item]
    assert published == [out / "map_2022.tif"] and (out / "map_2022.tif").samefile(src)
    assert not (out / "map_2019.tif").exists() and (out / "map_final.tif").is_file()
    assert np.array_equal(rasterio.open(out / "map_2022.tif").read(1), rasterio.open(src).read(1))
