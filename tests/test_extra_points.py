"""reference.extra_points: labelled points added to the TRAINING part of a raster reference's sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from pyproj import Transformer

from lcmodel import pipeline
from lcmodel.config import load_config
from lcmodel.errors import ConfigError, InputDataError, InputFileError
from lcmodel.pipeline import SAMPLING, ExtraPointsSource, StageRun
from tests.rasters import tiny_demo_config


def labelled_points(cfg_path: Path, out: Path, *, n: int = 60, seed: int = 0,
                    near: pd.DataFrame | None = None) -> Path:
    """A CSV (lon, lat, label) of embedding pixel centres labelled with the reference raster's codes.

    ``near``: rows (x, y in the embedding CRS) to put the points one pixel east of, instead of random pixels.
    """
    data = yaml.safe_load(cfg_path.read_text())
    with rasterio.open(cfg_path.parent / data["embedding"]["path"]) as emb:
        transform, crs, (h, w) = emb.transform, emb.crs, emb.shape
    rng = np.random.default_rng(seed)
    if near is None:
        rows, cols = rng.integers(2, h - 2, n), rng.integers(2, w - 2, n)
        xs, ys = rasterio.transform.xy(transform, rows, cols)
    else:
        xs, ys = near["x"].to_numpy() + abs(transform.a), near["y"].to_numpy()
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    with rasterio.open(cfg_path.parent / data["reference"]["path"]) as ref:
        codes = np.array([v[0] for v in ref.sample(zip(lon, lat, strict=True))])
    table = pd.DataFrame({"lon": lon, "lat": lat, "label": codes})
    table = table[table["label"] > 0]
    table.to_csv(out, index=False)
    return out


def _with(cfg_path: Path, name: str, **reference: object) -> Path:
    data = yaml.safe_load(cfg_path.read_text())
    data["reference"].update(reference)
    data["output"]["dir"] = name
    path = cfg_path.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The tiny demo's config and the training table of a run without extra points."""
    cfg_path = tiny_demo_config(tmp_path_factory.mktemp("extra") / "data")
    cfg = load_config(cfg_path)
    table = pd.read_csv(pipeline.sample(cfg).table.path)
    return cfg_path, table


def test_extra_points_join_the_training_part_only(demo: tuple[Path, pd.DataFrame]) -> None:
    cfg_path, plain = demo
    folder = cfg_path.parent
    random = labelled_points(cfg_path, folder / "random.csv", n=80)
    near_test = labelled_points(cfg_path, folder / "near_test.csv", near=plain[plain["split"] == "test"].head(5))
    cfg = load_config(_with(cfg_path, "with_extra", extra_points=[str(random), str(near_test)]))
    table = pd.read_csv(pipeline.sample(cfg).table.path)
    info = json.loads((folder / "with_extra" / "spatial_blocks.json").read_text())["extra_points"]
    read = len(pd.read_csv(random)) + len(pd.read_csv(near_test))
    assert info["points"] <= read and info["added_to_training"] > 20
    assert info["left_out_in_test_blocks"] >= 5  # the points next to test points stay out
    cols = ["x", "y", "value", "split"]
    # the test part is the test part of the run without them, point for point
    test, plain_test = (t.loc[t["split"] == "test", cols].reset_index(drop=True) for t in (table, plain))
    pd.testing.assert_frame_equal(test, plain_test)
    train, plain_train = table[table["split"] == "train"], plain[plain["split"] == "train"]
    assert len(train) == len(plain_train) + info["added_to_training"]
    assert sum(info["added_by_class"].values()) == info["added_to_training"]
    assert "extra" not in table.columns  # a flag, never a feature
    assert (table.columns == plain.columns).all()


def test_extra_points_change_the_sampling_key(demo: tuple[Path, pd.DataFrame]) -> None:
    cfg_path, _ = demo
    extra = labelled_points(cfg_path, cfg_path.parent / "key.csv", n=30, seed=3)
    cfg = load_config(_with(cfg_path, "keyed", extra_points=[str(extra)]))

    def run() -> list[str]:
        r = StageRun(cfg)
        for st in SAMPLING:
            r(st)
        return r.executed()

    assert run() == [st.name for st in SAMPLING]
    assert run() == []  # nothing changed: nothing reruns
    extra.write_text(extra.read_text())  # a new mtime, the same content: still nothing
    assert run() == []
    table = pd.read_csv(extra)
    table.iloc[:10].to_csv(extra, index=False)  # other content: the sampling reruns
    assert "sample_reference" in run()
    source = ExtraPointsSource.of([extra])
    assert source.paths == (extra,) and source.digest() != ExtraPointsSource.of([extra, extra]).digest()


def test_bad_extra_points(demo: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    cfg_path, _ = demo
    missing = load_config(_with(cfg_path, "missing", extra_points=["nowhere.csv"]))
    with pytest.raises(InputFileError, match=r"reference.extra_points file .*nowhere.csv.* does not exist"):
        pipeline.source_files(missing, write=False)
    points = cfg_path.parent / "points_ref.csv"
    pd.DataFrame({"lon": [-60.0], "lat": [-3.0], "label": [10]}).to_csv(points, index=False)
    on_points = load_config(_with(cfg_path, "on_points", path=str(points), extra_points=[str(points)]))
    with pytest.raises(ConfigError, match="adds points to a class raster's sample"):
        pipeline.source_files(on_points, write=False)
    words = cfg_path.parent / "words.csv"
    pd.DataFrame({"lon": [-60.05], "lat": [-3.05], "label": ["forest"]}).to_csv(words, index=False)
    named = load_config(_with(cfg_path, "named", extra_points=[str(words)]))
    with pytest.raises(InputDataError, match="not integer codes"):
        pipeline.sample(named)


def test_a_labelled_suggestion_file_is_read_back(tmp_path: Path) -> None:
    """The GeoPackage `lcmodel suggest` writes, its label column filled, is an extra points file as it is."""
    import sqlite3

    from lcmodel import suggest as sg
    from lcmodel.reference.extra import read_extra_points
    from tests.test_suggest import _run_folder

    result = sg.suggest_points(sg.find_inputs(_run_folder(tmp_path / "run")), 6, seed=2)
    path = sg.write_suggestion(result, tmp_path / "next.gpkg")
    con = sqlite3.connect(path)
    con.execute("UPDATE suggested_points SET label = '20' WHERE rank <= 4")  # two left unlabelled
    con.commit()
    con.close()
    with pytest.warns(Warning):  # the unlabelled rows are dropped, with a warning
        (points,) = read_extra_points([path], x_column="lon", y_column="lat", label_column="label", crs=None,
                                      layer=None)
    assert len(points) == 4 and points.table["code"].tolist() == [20] * 4
    first = result.table.iloc[0]
    assert points.crs.to_epsg() == 32720
    assert np.isclose(points.table["x"].iloc[0], first["x"]) and np.isclose(points.table["y"].iloc[0], first["y"])
