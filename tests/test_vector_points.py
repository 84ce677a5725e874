"""Labelled points from vector layers (GeoPackage, GeoJSON, Shapefile, FlatGeobuf), read with pyogrio.

Fixtures are written with pyogrio's ``write_arrow`` in a projected CRS and in EPSG:4326; each must read to the
same :class:`ReferencePoints` as the same points in a CSV, and give the same training table.
"""

from __future__ import annotations

import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import pytest
import shapely
import yaml
from pyogrio.raw import read_arrow, write_arrow
from rasterio.crs import CRS

from lcmodel import pipeline
from lcmodel.config import ReferenceConfig, config_from_dict, load_config, resolve_reference_kind
from lcmodel.errors import ConfigError, DataWarning, InputDataError, InputFileError, NoOverlapError
from lcmodel.pipeline.artifacts import ReferenceSource
from lcmodel.reference import (
    load_reference,
    read_points_csv,
    read_points_file,
    read_points_vector,
    reproject_points,
    sample_raster_points,
)
from lcmodel.reference.vector import check_points_layer, companion_files

UTM = "EPSG:32720"
X = np.array([500005.0, 500015.0, 500025.0, 500035.0])
Y = np.array([7999995.0, 7999985.0, 7999975.0, 7999965.0])
LABELS = np.array([10, 20, 10, 30], dtype=np.int64)
DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".shp": "ESRI Shapefile", ".fgb": "FlatGeobuf"}


def write_layer(path: Path, geoms: list[Any], fields: dict[str, Any], *, crs: str | None = UTM,
                layer: str | None = None, append: bool = False, geometry_type: str = "Point") -> Path:
    """One layer of shapely geometries (None allowed) and fields, written with pyogrio's write_arrow."""
    wkb = [None if g is None else shapely.to_wkb(g) for g in geoms]
    table = pa.table({**{k: pa.array(v) for k, v in fields.items()}, "geometry": pa.array(wkb, pa.binary())})
    # FlatGeobuf's spatial index would store the features in Hilbert order, not in the order written
    options = {"SPATIAL_INDEX": "NO"} if path.suffix == ".fgb" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyogrio: "'crs' was not provided" (on purpose)
        write_arrow(table, path, layer=layer, driver=DRIVERS[path.suffix], geometry_name="geometry",
                    geometry_type=geometry_type, crs=crs, append=append, layer_options=options)
    return path


def write_points(path: Path, x: np.ndarray, y: np.ndarray, labels: Any, *, crs: str | None = UTM,
                 field: str = "label", **kw: Any) -> Path:
    return write_layer(path, list(shapely.points(np.column_stack([x, y]))), {field: labels}, crs=crs, **kw)


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, labels: Any, names: tuple[str, str] = ("x", "y")) -> Path:
    pd.DataFrame({names[0]: x, names[1]: y, "label": labels}).to_csv(path, index=False)
    return path


def zipped(shp: Path, name: str) -> Path:
    out = shp.with_name(name)
    with zipfile.ZipFile(out, "w") as z:
        for part in [shp, *companion_files(shp)]:
            z.write(part, part.name)
    return out


# ------------------------------------------------------------------------------- the same points as a CSV


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".shp", ".fgb"])
@pytest.mark.parametrize("crs", [UTM, "EPSG:4326"])
def test_a_layer_reads_like_the_same_points_in_a_csv(tmp_path: Path, suffix: str, crs: str) -> None:
    x, y = (X, Y) if crs == UTM else (X / 1e4 - 105.0, Y / 1e6 - 19.0)
    layer = write_points(tmp_path / f"pts{suffix}", x, y, LABELS, crs=crs)
    csv = write_csv(tmp_path / "pts.csv", x, y, LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file with its CRS and every feature whole: nothing to warn about
        got = read_points_vector(layer)
    want = read_points_csv(csv, x_column="x", y_column="y", crs=crs)
    pd.testing.assert_frame_equal(got.table, want.table)
    assert got.crs == want.crs == CRS.from_user_input(crs)
    assert got.table["code"].dtype == np.int64


@pytest.mark.parametrize("name", ["pts.shp.zip", "pts.zip", "pts.shz"])
def test_a_zipped_shapefile_reads_like_the_shapefile(tmp_path: Path, name: str) -> None:
    shp = write_points(tmp_path / "pts.shp", X, Y, LABELS)
    archive = zipped(shp, name)
    got = read_points_file(archive)
    pd.testing.assert_frame_equal(got.table, read_points_vector(shp).table)
    assert got.crs == CRS.from_user_input(UTM)


def test_string_labels_multipoints_z_and_dropped_features(tmp_path: Path) -> None:
    geoms = [shapely.Point(1, 2), shapely.MultiPoint([(3, 4)]), None, shapely.Point(), shapely.Point(5, 6, 7),
             shapely.Point(8, 9), shapely.Point(10, 11)]
    labels = [" Forest ", "Pasture", "Forest", "Water", "Water", None, ""]
    path = write_layer(tmp_path / "mixed.gpkg", geoms, {"label": labels}, geometry_type="Unknown")
    with pytest.warns(DataWarning, match=r"^4 of 7 features of mixed\.gpkg have no geometry \(2\) or no 'label' "
                                         r"value \(2\) and were dropped$"):
        points = read_points_vector(path)
    assert points.table.to_dict("list") == {"x": [1.0, 3.0, 5.0], "y": [2.0, 4.0, 6.0],
                                            "code": ["Forest", "Pasture", "Water"]}


def test_integer_labels_with_nulls_stay_integers(tmp_path: Path) -> None:
    path = write_points(tmp_path / "pts.gpkg", X, Y, pa.array([10, None, 20, 30], pa.int64()))
    with pytest.warns(DataWarning, match=r"^1 of 4 features"):
        points = read_points_vector(path)
    assert points.table["code"].dtype == np.int64 and points.table["code"].tolist() == [10, 20, 30]


def test_layers_by_name_index_and_the_only_spatial_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_points(tmp_path / "pts.gpkg", X, Y, LABELS, layer="plots")
    write_points(path, X[:2], Y[:2], LABELS[:2], layer="checks", append=True)
    assert read_points_vector(path, layer="checks").table["code"].tolist() == [10, 20]
    assert read_points_vector(path, layer=0).table["code"].tolist() == LABELS.tolist()
    with pytest.raises(InputDataError, match=r"^points file 'pts\.gpkg' has 2 layers with geometries \(layers: "
                                             r"0: plots \(Point\), 1: checks \(Point\)\); set reference\.layer"):
        read_points_vector(path)
    # a non-spatial table (QGIS keeps its styles in one) is no candidate
    styles = tmp_path / "styled.gpkg"
    write_points(styles, X, Y, LABELS, layer="plots")
    write_arrow(pa.table({"styleName": pa.array(["s"])}), styles, layer="layer_styles", driver="GPKG", append=True,
                geometry_name=None, geometry_type=None)
    with caplog.at_level("INFO", logger="lcmodel.reference.vector"):
        assert len(read_points_vector(styles)) == 4
    assert "reading layer 'plots' of styled.gpkg, its only layer with geometries" in caplog.text


# ------------------------------------------------------------------------------------------------- CRS


def test_the_files_crs_wins_over_a_configured_one(tmp_path: Path) -> None:
    path = write_points(tmp_path / "pts.gpkg", X, Y, LABELS, crs=UTM)
    with pytest.warns(DataWarning, match=r"^reference\.crs 'EPSG:32721' is ignored: pts\.gpkg carries its own CRS "
                                         r"\(EPSG:32720\); remove reference\.crs"):
        points = read_points_vector(path, crs="EPSG:32721")
    assert points.crs == CRS.from_epsg(32720)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_points_vector(path, crs=UTM).crs == CRS.from_epsg(32720)  # the same CRS: nothing to say


def test_a_file_without_crs_falls_back_to_reference_crs(tmp_path: Path) -> None:
    path = write_points(tmp_path / "pts.shp", X, Y, LABELS, crs=None)
    assert not path.with_suffix(".prj").exists()
    with pytest.warns(DataWarning, match=r"^points file pts\.shp has no CRS \(no \.prj file beside it\); its "
                                         r"coordinates are read as reference\.crs 'EPSG:32720'"):
        assert read_points_vector(path, crs=UTM).crs == CRS.from_epsg(32720)
    with pytest.warns(DataWarning, match=r"read as EPSG:4326 \(the default of reference\.crs\)"):
        assert read_points_vector(path).crs == CRS.from_epsg(4326)


# ---------------------------------------------------------------------------------------------- errors


def test_polygons_are_refused_with_a_working_recipe(tmp_path: Path) -> None:
    boxes = [shapely.box(x, y, x + 10, y + 10) for x, y in zip(X, Y, strict=True)]
    path = write_layer(tmp_path / "fields.gpkg", boxes, {"label": LABELS}, layer="fields", geometry_type="Polygon")
    with pytest.raises(InputDataError) as err:
        read_points_vector(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("points file 'fields.gpkg' layer 'fields' holds Polygon geometries (4 features), not "
                          "points; use a point inside each polygon (or its centroid)")
    sql = re.search(r'-sql "([^"]+)"', msg).group(1)  # the recipe works: GDAL's SQLite dialect runs it
    _, table = read_arrow(path, sql=sql, sql_dialect="SQLITE")
    inside = shapely.from_wkb(table.column("geom").to_numpy(zero_copy_only=False))
    assert shapely.contains(np.array(boxes), inside).all() and table.column("label").to_pylist() == LABELS.tolist()
    # mixed layers are checked feature by feature; multi-part multipoints need splitting
    mixed = write_layer(tmp_path / "mixed.geojson", [shapely.Point(1, 1), shapely.LineString([(0, 0), (1, 1)]),
                                                     shapely.MultiPoint([(0, 0), (2, 2)])],
                        {"label": [1, 2, 3]}, geometry_type="Unknown")
    with pytest.raises(InputDataError, match=r"^points file 'mixed\.geojson' layer 'mixed' has 2 of 3 features "
                                             r"that are not points \(LineString \(1\), MultiPoint \(1\)\)"):
        read_points_vector(mixed)
    multi = write_layer(tmp_path / "multi.gpkg", [shapely.MultiPoint([(0, 0), (2, 2)])], {"label": [1]},
                        geometry_type="MultiPoint")
    with pytest.raises(InputDataError, match=r"that are several points each .*ogr2ogr -explodecollections"):
        read_points_vector(multi)


def test_missing_field_unknown_layer_and_unreadable_files(tmp_path: Path) -> None:
    path = write_points(tmp_path / "pts.shp", X, Y, LABELS, field="LABEL")
    with pytest.raises(InputDataError, match=r"^points file 'pts\.shp' layer 'pts' has no field 'label' \(fields: "
                                             r"LABEL\); did you mean 'LABEL'\? set reference\.label_column"):
        read_points_vector(path)
    gpkg = write_points(tmp_path / "pts.gpkg", X, Y, LABELS, layer="plots")
    with pytest.raises(InputDataError, match=r"^points file 'pts\.gpkg' has no layer 'plot' \(layers: 0: plots "
                                             r"\(Point\)\); did you mean 'plots'\? set reference\.layer"):
        read_points_vector(gpkg, layer="plot")
    for index in (2, -1):
        with pytest.raises(InputDataError, match=rf"has no layer {index} \(layers, counted from 0: 0: plots"):
            read_points_vector(gpkg, layer=index)
    with pytest.raises(InputDataError, match=r"has no layer '0' \(an index is given as a number, not in quotes\)"):
        read_points_vector(gpkg, layer="0")
    with pytest.raises(InputFileError, match=r"'.*nope\.gpkg' does not exist; check reference\.path"):
        read_points_vector(tmp_path / "nope.gpkg")
    junk = tmp_path / "junk.gpkg"
    junk.write_text("not a geopackage")
    with pytest.raises(InputFileError, match=r"junk\.gpkg' is not a readable vector file"):
        read_points_vector(junk)
    no_dbf = tmp_path / "lost"
    no_dbf.mkdir()
    shutil.copy(path, no_dbf / "pts.shp")  # the .shp without its .dbf: no fields at all
    shutil.copy(path.with_suffix(".shx"), no_dbf / "pts.shx")
    with pytest.raises(InputDataError, match=r"has no field 'LABEL' \(fields: none\)"):
        read_points_vector(no_dbf / "pts.shp", label_column="LABEL")


# ---------------------------------------------------------------------------------------------- config


def test_reference_kind_and_layer_in_the_config(tmp_path: Path) -> None:
    for name in ("p.gpkg", "p.GeoJSON", "p.json", "p.shp", "p.shp.zip", "p.shz", "p.fgb", "p.csv"):
        assert resolve_reference_kind("auto", Path(name)) == "points", name
    for name in ("wc.tif", "wc.vrt", "tiles.zip"):  # a plain .zip may hold a raster: kind: points reads it
        assert resolve_reference_kind("auto", Path(name)) == "raster", name
    base = {"embedding": {"path": "e.tif"}}
    assert config_from_dict({**base, "reference": {"path": "p.gpkg", "layer": "plots"}}).reference.layer == "plots"
    assert config_from_dict({**base, "reference": {"path": "p.gpkg", "layer": 1}}).reference.layer == 1
    for bad in (True, 1.0):  # never read as an index
        with pytest.raises(ConfigError, match=r"config key 'reference\.layer\.str': Input should be a valid string"):
            config_from_dict({**base, "reference": {"path": "p.gpkg", "layer": bad}})


def test_load_reference_reads_a_layer_and_knows_what_was_configured(tmp_path: Path) -> None:
    path = write_points(tmp_path / "pts.gpkg", X, Y, LABELS, layer="plots")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reference.crs at its default is not "configured"
        points = load_reference(ReferenceConfig(path=path, layer="plots"))
    assert points.crs == CRS.from_epsg(32720) and points.table["code"].tolist() == LABELS.tolist()
    with pytest.warns(DataWarning, match=r"reference\.crs 'EPSG:4326' is ignored"):
        load_reference(ReferenceConfig(path=path, crs="EPSG:4326"))
    csv = write_csv(tmp_path / "pts.csv", X, Y, LABELS)
    with pytest.warns(DataWarning, match=r"reference\.layer 'plots' is ignored: pts\.csv is read as a CSV"):
        load_reference(ReferenceConfig(path=csv, x_column="x", y_column="y", crs=UTM, layer="plots"))


def test_the_reference_source_covers_a_shapefiles_sidecars(tmp_path: Path) -> None:
    shp = write_points(tmp_path / "pts.shp", X, Y, LABELS)
    (tmp_path / "pts.qix").write_bytes(b"a spatial index: not content")
    source = ReferenceSource.at(shp)
    assert [a.path.name for _, a in source.files()] == ["pts.shp", "pts.cpg", "pts.dbf", "pts.prj", "pts.shx"]
    before = source.digest()
    write_points(tmp_path / "pts.shp", X, Y, LABELS[::-1])  # same geometries, other labels: only the .dbf differs
    assert shp.read_bytes() == source.file.path.read_bytes() and ReferenceSource.at(shp).digest() != before
    assert ReferenceSource.from_dict(source.to_dict()) == source
    gpkg = write_points(tmp_path / "pts.gpkg", X, Y, LABELS)
    assert ReferenceSource.at(gpkg).companions == ()


# ------------------------------------------------------------------------------------ through the stages


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny demo case, and 600 of its reference points on the embedding as CSV and as layers, in EPSG:4326
    and UTM 20S."""
    import rasterio

    from lcmodel.reference import ReferencePoints
    from tests.rasters import tiny_demo_config

    root = tmp_path_factory.mktemp("vectordemo")
    cfg_path = tiny_demo_config(root / "data")
    data = yaml.safe_load(cfg_path.read_text())
    data["sampling"]["min_class_fraction"] = 0.03
    drawn = sample_raster_points(root / "data" / data["reference"]["path"], 2000, random_state=5)
    with rasterio.open(root / "data" / data["embedding"]["path"]) as src:
        left, bottom, right, top = src.bounds
    utm = reproject_points(drawn, CRS.from_user_input(UTM)).table
    inside = ((utm["x"] > left) & (utm["x"] < right) & (utm["y"] > bottom) & (utm["y"] < top)).to_numpy()
    keep = np.random.default_rng(0).permutation(np.flatnonzero(inside))[:600]  # drawn in class order
    drawn = ReferencePoints(drawn.table.iloc[keep].reset_index(drop=True), drawn.crs)
    utm = utm.iloc[keep].reset_index(drop=True)
    lon, lat, codes = drawn.table["x"].to_numpy(), drawn.table["y"].to_numpy(), drawn.table["code"].to_numpy()
    folder = root / "data"
    files = {
        "csv_4326": write_csv(folder / "pts_4326.csv", lon, lat, codes, names=("lon", "lat")),
        "gpkg_4326": write_points(folder / "pts_4326.gpkg", lon, lat, codes, crs="EPSG:4326", layer="plots"),
        "csv_utm": write_csv(folder / "pts_utm.csv", utm["x"].to_numpy(), utm["y"].to_numpy(), codes),
        "shp_utm": write_points(folder / "pts_utm.shp", utm["x"].to_numpy(), utm["y"].to_numpy(), codes),
        "geojson_utm": write_points(folder / "pts_utm.geojson", utm["x"].to_numpy(), utm["y"].to_numpy(), codes),
    }
    return {"root": root, "config": cfg_path, "data": data, **files}


def _config(demo: dict[str, Any], out: str, **reference: Any) -> Path:
    data = {**demo["data"], "reference": reference, "output": {"dir": out}}
    path = demo["config"].with_name(f"{out}.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def _training_table(demo: dict[str, Any], out: str, **reference: Any) -> bytes:
    cfg = load_config(_config(demo, out, **reference))
    return pipeline.sample(cfg).table.path.read_bytes()


def test_layers_give_the_same_training_table_as_the_csv(demo: dict[str, Any]) -> None:
    lonlat = _training_table(demo, "csv_4326", path=str(demo["csv_4326"]))
    assert _training_table(demo, "gpkg_4326", path=str(demo["gpkg_4326"])) == lonlat
    utm = _training_table(demo, "csv_utm", path=str(demo["csv_utm"]), x_column="x", y_column="y", crs=UTM)
    assert _training_table(demo, "shp_utm", path=str(demo["shp_utm"])) == utm
    assert _training_table(demo, "geojson_utm", path=str(demo["geojson_utm"])) == utm


def test_a_changed_dbf_reruns_the_reference_stage(demo: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "shp"
    folder.mkdir()
    for part in [demo["shp_utm"], *companion_files(demo["shp_utm"])]:
        shutil.copy(part, folder / part.name)
    shp = folder / demo["shp_utm"].name
    cfg = load_config(_config(demo, "rerun", path=str(shp)))

    def sample_reference_ran() -> bool:
        r = pipeline.StageRun(cfg)
        r(pipeline.STAGES["sample_reference"])
        return "sample_reference" in r.executed()

    assert sample_reference_ran() and not sample_reference_ran()
    points = read_points_vector(shp)
    write_points(folder / "relabelled.shp", points.table["x"].to_numpy(), points.table["y"].to_numpy(),
                 points.table["code"].to_numpy()[::-1])
    shutil.copy(folder / "relabelled.dbf", shp.with_suffix(".dbf"))  # only the labels change
    assert sample_reference_ran()
    table = pd.read_csv(cfg.output.dir / "reference_points.csv")
    assert table["code"].tolist() == points.table["code"].tolist()[::-1]


def test_bad_layers_fail_before_any_stage(demo: dict[str, Any]) -> None:
    cfg = load_config(_config(demo, "badlayer", path=str(demo["gpkg_4326"]), layer="plot"))
    with pytest.raises(InputDataError, match=r"has no layer 'plot'.*did you mean 'plots'"):
        pipeline.source_files(cfg)
    cfg = load_config(_config(demo, "badfield", path=str(demo["gpkg_4326"]), label_column="class"))
    with pytest.raises(InputDataError, match=r"has no field 'class' \(fields: label\)"):
        pipeline.source_files(cfg)


def test_a_shapefile_without_prj_in_utm_is_explained(demo: dict[str, Any], tmp_path: Path) -> None:
    """No .prj and no reference.crs: the EPSG:4326 fallback cannot place UTM coordinates, and the error says so."""
    shp = tmp_path / "noprj.shp"
    for part in [demo["shp_utm"], *companion_files(demo["shp_utm"])]:
        if part.suffix != ".prj":
            shutil.copy(part, shp.with_suffix(part.suffix))
    cfg = load_config(_config(demo, "noprj", path=str(shp)))
    with pytest.warns(DataWarning, match=r"noprj\.shp has no CRS"), \
            pytest.raises(NoOverlapError, match=r"coordinates look projected.*set reference\.crs"):
        pipeline.sample(cfg)


# ---------------------------------------------------------------------------------------- the Prefect flow


def test_lcmodel_run_with_a_geopackage_reference(demo: dict[str, Any], prefect_harness: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from click.testing import CliRunner

    from flows.cli import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{demo['root'] / 'mlflow.db'}")
    cfg_path = _config(demo, "flow_gpkg", path=str(demo["gpkg_4326"]), layer="plots")
    result = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = load_config(cfg_path).output.dir
    points = pd.read_csv(out / "reference_points.csv")
    want = read_points_vector(demo["gpkg_4326"])
    np.testing.assert_array_equal(points[["x", "y"]].to_numpy(), want.table[["x", "y"]].to_numpy())
    assert points["code"].tolist() == want.table["code"].tolist()
    assert (out / "map.tif").is_file() and (out / "report.md").is_file()
    assert (out / "training_table.csv").read_bytes() == _training_table(demo, "csv_4326", path=str(demo["csv_4326"]))
    again = CliRunner().invoke(cli, ["run", str(cfg_path)], catch_exceptions=False)
    assert again.exit_code == 0 and "every stage was reused" in again.output


def test_check_points_layer_reads_only_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_points(tmp_path / "pts.gpkg", X, Y, LABELS)

    def no_features(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("check_points_layer read the features")

    monkeypatch.setattr(pyogrio.raw, "read_arrow", no_features)
    assert check_points_layer(path)["features"] == 4


def test_a_geojson_without_crs_holding_projected_coordinates_is_refused(tmp_path: Path) -> None:
    path = write_points(tmp_path / "utm.geojson", X, Y, LABELS, crs=None)  # no "crs" member: WGS 84 by definition
    with pytest.raises(InputDataError, match=r"^points file 'utm\.geojson' says its CRS is EPSG:4326, but its "
                                             r"coordinates are not degrees \(x=500005, y=8e\+06\); write the file "
                                             r"with its real CRS, e.g\. ogr2ogr -a_srs EPSG:32720 utm_fixed\.gpkg"):
        read_points_vector(path, crs=UTM)
