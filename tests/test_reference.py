"""Tests of lcmodel.reference: stratified raster sampling, CSV points, reprojection, reclassification."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from lcmodel.classes import ClassTable
from lcmodel.config import ReferenceConfig
from lcmodel.errors import (
    ClassTableError,
    ConfigError,
    DataWarning,
    InputDataError,
    InputFileError,
)
from lcmodel.reference import (
    ReferencePoints,
    allocate_samples,
    load_reference,
    read_points_csv,
    reclassify,
    reproject_points,
    sample_raster_points,
)
from tests.rasters import UTM20S, write_raster

WGS84 = CRS.from_epsg(4326)
SINUSOIDAL_WKT = ProjCRS.from_proj4(
    "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
).to_wkt()


# ------------------------------------------------------------------------------------------- helpers


def notebook_allocation(data: np.ndarray, nodata: int | None, n_points: int) -> dict[int, int]:
    """The notebook's allocation, re-implemented directly on the full array (what was drawn per class)."""
    valid = data[data != nodata] if nodata is not None else data.ravel()
    classes, counts = np.unique(valid, return_counts=True)
    samples_per_class = np.round(counts / counts.sum() * n_points).astype(int)
    samples_per_class[np.argmax(samples_per_class)] += n_points - samples_per_class.sum()
    assert (samples_per_class >= 0).all(), "degenerate case: the notebook crashes"
    return {
        int(c): int(min(n, k)) for c, n, k in zip(classes, samples_per_class, counts, strict=True) if n > 0
    }


def classes_raster(rng: np.random.Generator, shape: tuple[int, int] = (64, 80)) -> np.ndarray:
    """uint8 classes with very unequal shares and a nodata (0) region."""
    data = rng.choice(np.array([10, 20, 30, 40, 80], np.uint8), size=shape, p=[0.6, 0.25, 0.1, 0.04, 0.01])
    data[:, : shape[1] // 4] = 0
    data[rng.random(shape) < 0.1] = 0
    return data


def pixel_values(path: Path, points: ReferencePoints) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values under the points, fractional col, fractional row) read back from the raster."""
    with rasterio.open(path) as src:
        data = src.read(1)
        inv = ~src.transform
    x, y = points.table["x"].to_numpy(), points.table["y"].to_numpy()
    cols = inv.a * x + inv.b * y + inv.c
    rows = inv.d * x + inv.e * y + inv.f
    return data[np.floor(rows).astype(int), np.floor(cols).astype(int)], cols, rows


@pytest.fixture()
def class_tif(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = classes_raster(np.random.default_rng(0))
    return write_raster(tmp_path / "classes.tif", data, nodata=0, blocksize=16), data


# ----------------------------------------------------------------------------------- raster sampling


def test_allocation_matches_notebook_formula() -> None:
    counts = np.array([9255908, 368, 359499, 4672, 172971, 116589, 11136692, 1464, 4637])
    expected = np.round(counts / counts.sum() * 10000).astype(int)
    expected[np.argmax(expected)] += 10000 - expected.sum()
    alloc = allocate_samples(counts, 10000)
    assert alloc.tolist() == expected.tolist() and alloc.sum() == 10000
    assert alloc.tolist() == [4397, 0, 171, 2, 82, 55, 5290, 1, 2]


def test_allocation_degenerate_case_still_sums_to_n_points() -> None:
    # the notebook's formula gives [1]*8 - 3 on the first class = -2 (np.random.choice then crashes)
    assert allocate_samples([1] * 8, 5).tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert allocate_samples([5] * 6, 2).tolist() == [2, 0, 0, 0, 0, 0]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=12), st.integers(1, 50000))
def test_allocation_property(counts: list[int], n_points: int) -> None:
    alloc = allocate_samples(counts, n_points)
    assert alloc.sum() == n_points and (alloc >= 0).all()
    expected = np.round(np.asarray(counts) / sum(counts) * n_points).astype(int)
    expected[np.argmax(expected)] += n_points - expected.sum()
    if (expected >= 0).all():  # not the degenerate case: exactly the notebook
        assert alloc.tolist() == expected.tolist()


def test_sample_exact_allocation_valid_pixels_and_centres(class_tif: tuple[Path, np.ndarray]) -> None:
    path, data = class_tif
    points = sample_raster_points(path, 500, random_state=1)
    assert list(points.table.columns) == ["x", "y", "code"]
    assert points.table["x"].dtype == np.float64 and points.table["y"].dtype == np.float64
    assert points.table["code"].dtype == np.int64
    assert points.crs == UTM20S
    got = points.table["code"].value_counts().to_dict()
    assert got == notebook_allocation(data, 0, 500)
    assert len(points) == 500
    values, cols, rows = pixel_values(path, points)
    assert (values != 0).all()
    assert (values == points.table["code"].to_numpy()).all()
    # pixel centres: the inverse transform lands on .5 offsets
    np.testing.assert_allclose(cols % 1, 0.5, atol=1e-9)
    np.testing.assert_allclose(rows % 1, 0.5, atol=1e-9)
    # without replacement: no pixel twice
    assert not pd.DataFrame({"r": rows, "c": cols}).duplicated().any()


def test_sample_is_seeded_and_independent_of_threads(class_tif: tuple[Path, np.ndarray]) -> None:
    path, _ = class_tif
    a = sample_raster_points(path, 300, random_state=7, n_threads=1)
    b = sample_raster_points(path, 300, random_state=7, n_threads=2)
    c = sample_raster_points(path, 300, random_state=7, n_threads=3)
    d = sample_raster_points(path, 300, random_state=8, n_threads=2)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.table, c.table)
    assert not a.table[["x", "y"]].equals(d.table[["x", "y"]])
    assert a.table["code"].value_counts().equals(d.table["code"].value_counts())


def test_strips_and_tiles_give_the_same_sample(tmp_path: Path) -> None:
    data = classes_raster(np.random.default_rng(3), (40, 30))
    tiled = write_raster(tmp_path / "tiled.tif", data, nodata=0, blocksize=16)
    striped = write_raster(tmp_path / "striped.tif", data, nodata=0, blocksize=None)
    a = sample_raster_points(tiled, 200, random_state=0)
    b = sample_raster_points(striped, 200, random_state=0)
    # the same pixels per class are drawn (ranks differ with the block layout, counts do not)
    assert a.table["code"].value_counts().to_dict() == b.table["code"].value_counts().to_dict()
    assert (pixel_values(striped, b)[0] != 0).all()


def test_short_classes_give_all_they_have_with_a_warning(tmp_path: Path) -> None:
    data = np.full((20, 20), 10, np.uint8)
    data[0, :3] = 20  # 3 pixels of class 20, 97 of class 10
    data[5:, :] = 0
    path = write_raster(tmp_path / "short.tif", data, nodata=0)
    # 50 points: 10 gets round(48.5) = 48, 20 gets round(1.5) = 2: no class is short
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert sample_raster_points(path, 50).table["code"].value_counts().to_dict() == {10: 48, 20: 2}
    # 150 points: 10 is allocated 146 (has 97), 20 gets 4 (has 3): all pixels, no redistribution
    with pytest.warns(DataWarning, match=r"2 class\(es\).*10: 97 of 146, 20: 3 of 4\); 50 points fewer"):
        points = sample_raster_points(path, 150)
    assert points.table["code"].value_counts().to_dict() == notebook_allocation(data, 0, 150) == {10: 97, 20: 3}


def test_nodata_override_float_nan_and_int16(tmp_path: Path) -> None:
    f = np.array([[1.0, 2.0, np.nan, -1.0], [2.0, 2.0, 1.0, -1.0]], dtype=np.float32)
    path = write_raster(tmp_path / "f.tif", f, blocksize=None)
    points = sample_raster_points(path, 5, nodata=-1.0)
    assert sorted(points.table["code"].tolist()) == [1, 1, 2, 2, 2]
    assert points.table["code"].dtype == np.int64
    i16 = np.array([[-5, 300, 300], [-9999, -9999, 300]], dtype=np.int16)
    path16 = write_raster(tmp_path / "i.tif", i16, nodata=-9999, blocksize=None)
    got = sample_raster_points(path16, 4).table["code"].value_counts().to_dict()
    assert got == {300: 3, -5: 1}
    # the file's nodata (-9999) is replaced by the override: -9999 becomes a class, 300 is skipped
    got = sample_raster_points(path16, 3, nodata=300).table["code"].value_counts().to_dict()
    assert got == {-9999: 2, -5: 1}


def test_non_integral_float_classes_are_strings(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "f.tif", np.array([[0.5, 1.5]], np.float32), blocksize=None)
    assert sorted(sample_raster_points(path, 2).table["code"]) == ["0.5", "1.5"]


def test_progress_is_reported(class_tif: tuple[Path, np.ndarray]) -> None:
    path, _ = class_tif
    calls: list[tuple[int, int]] = []
    sample_raster_points(path, 50, progress=lambda d, t: calls.append((d, t)))
    n_blocks = 4 * 5  # 64 x 80 in 16 px blocks
    assert calls[n_blocks - 1] == (n_blocks, n_blocks)
    assert calls[-1][0] == calls[-1][1] and len(calls) == calls[-1][1]


def test_sampling_errors(tmp_path: Path) -> None:
    empty = write_raster(tmp_path / "empty.tif", np.zeros((8, 8), np.uint8), nodata=0)
    with pytest.raises(InputDataError, match=r"empty\.tif.*no valid pixel.*reference\.nodata"):
        sample_raster_points(empty, 10)
    text = tmp_path / "not_a_raster.tif"
    text.write_text("hello")
    with pytest.raises(InputFileError, match="not a readable raster"):
        sample_raster_points(text, 10)
    with pytest.raises(InputFileError, match="does not exist"):
        sample_raster_points(tmp_path / "missing.tif", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio's NotGeoreferencedWarning
        nocrs = write_raster(tmp_path / "nocrs.tif", np.ones((4, 4), np.uint8), crs=None)
        with pytest.raises(InputFileError, match=r"has no CRS.*gdal_edit"):
            sample_raster_points(nocrs, 10)
    corrupt = write_raster(
        tmp_path / "corrupt.tif",
        np.random.default_rng(0).integers(1, 5, (256, 256), dtype=np.uint8),
        nodata=0,
        blocksize=64,
        compress="deflate",
    )
    corrupt.write_bytes(corrupt.read_bytes()[:-3000])  # the last blocks' data is cut off
    with pytest.raises(InputFileError, match=r"could not be read at rows .*gdalinfo -checksum"):
        sample_raster_points(corrupt, 10)
    with pytest.raises(ConfigError, match="n_points=0"):
        sample_raster_points(empty, 0)
    with pytest.raises(ConfigError, match="n_threads=0"):
        sample_raster_points(empty, 1, n_threads=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**16),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    n_classes=st.integers(1, 6),
    nodata_share=st.floats(0.0, 0.9),
    n_points=st.integers(1, 400),
    blocksize=st.sampled_from([16, None]),
)
def test_sampling_properties(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    height: int,
    width: int,
    n_classes: int,
    nodata_share: float,
    n_points: int,
    blocksize: int | None,
) -> None:
    rng = np.random.default_rng(seed)
    weights = rng.random(n_classes) ** 3 + 1e-3
    codes = np.arange(1, n_classes + 1, dtype=np.uint8) * 10
    data = rng.choice(codes, size=(height, width), p=weights / weights.sum())
    data[rng.random((height, width)) < nodata_share] = 0
    path = write_raster(tmp_path_factory.mktemp("h") / "r.tif", data, nodata=0, blocksize=blocksize)
    if not (data != 0).any():
        with pytest.raises(InputDataError):
            sample_raster_points(path, n_points)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        points = sample_raster_points(path, n_points, random_state=seed)
    counts = np.unique(data[data != 0], return_counts=True)[1]
    alloc = allocate_samples(counts, n_points)
    notebook = np.round(counts / counts.sum() * n_points).astype(int)
    notebook[np.argmax(notebook)] += n_points - notebook.sum()
    if (notebook >= 0).all():
        expected = notebook_allocation(data, 0, n_points)
    else:  # degenerate case (the notebook crashes): our allocation, capped by the counts
        classes = np.unique(data[data != 0])
        expected = {int(c): int(min(a, k)) for c, a, k in zip(classes, alloc, counts, strict=True) if a > 0}
    got = points.table["code"].value_counts().to_dict()
    assert got == {c: n for c, n in expected.items() if n > 0}
    available = int((data != 0).sum())
    assert len(points) == sum(expected.values()) <= available
    if (alloc <= counts).all():
        assert len(points) == n_points  # no class short: exactly n_points
    values, cols, rows = pixel_values(path, points)
    assert (values != 0).all() and (values == points.table["code"].to_numpy()).all()
    assert not pd.DataFrame({"r": rows, "c": cols}).duplicated().any()


# ---------------------------------------------------------------------------------------- CSV points


def test_csv_points_ints_and_dropped_rows(tmp_path: Path) -> None:
    path = tmp_path / "pts.csv"
    path.write_text("id,lon,lat,label\n1,-55.1,-11.2,10\n2,,-11.3,20\n3,-55.3,-11.4,\n4,-55.4,-11.5,20.0\n")
    with pytest.warns(DataWarning, match=r"^2 of 4 rows of pts\.csv"):
        points = read_points_csv(path)
    assert points.crs == WGS84
    assert points.table["x"].tolist() == [-55.1, -55.4] and points.table["y"].tolist() == [-11.2, -11.5]
    assert points.table["code"].dtype == np.int64 and points.table["code"].tolist() == [10, 20]


def test_csv_string_labels_other_columns_and_crs(tmp_path: Path) -> None:
    path = tmp_path / "pts.tsv"
    path.write_text("E\tN\tclass\n500010\t8000010\tForest\n500020\t8000020\t Pasture \n")
    points = read_points_csv(path, x_column="E", y_column="N", label_column="class", crs="EPSG:32720")
    assert points.crs.to_epsg() == 32720
    assert points.table["code"].tolist() == ["Forest", "Pasture"]


def test_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"does not exist.*reference\.path"):
        read_points_csv(tmp_path / "nope.csv")
    path = tmp_path / "pts.csv"
    path.write_text("longitude,latitude,label\n1,2,A\n")
    with pytest.raises(
        InputDataError,
        match=r"no column 'lon' \(columns: longitude, latitude, label\); set reference\.x_column",
    ):
        read_points_csv(path)
    bad = tmp_path / "bad.csv"
    bad.write_text("lon,lat,label\n1,2,A\n3,north,B\n")
    with pytest.raises(InputDataError, match=r"'lat' value 'north' on row 3"):
        read_points_csv(bad)
    empty_rows = tmp_path / "norows.csv"
    empty_rows.write_text("lon,lat,label\n1,2,\n")
    with pytest.warns(DataWarning), pytest.raises(InputDataError, match="no row with coordinates"):
        read_points_csv(empty_rows)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputDataError, match="is empty"):
        read_points_csv(empty)
    with pytest.raises(ConfigError, match="not a CRS"):
        read_points_csv(path, x_column="longitude", y_column="latitude", crs="EPSG:99999999")


def test_load_reference_picks_the_kind(tmp_path: Path, class_tif: tuple[Path, np.ndarray]) -> None:
    raster, _ = class_tif
    csv = tmp_path / "pts.csv"
    csv.write_text("x,y,code\n1,2,3\n")
    cfg = ReferenceConfig(path=csv, x_column="x", y_column="y", label_column="code", crs="EPSG:32720")
    assert load_reference(cfg).table["code"].tolist() == [3]
    cfg = ReferenceConfig(path=raster, n_points=40)
    a = load_reference(cfg, random_state=3)
    assert len(a) == 40
    pd.testing.assert_frame_equal(a.table, sample_raster_points(raster, 40, random_state=3).table)


# -------------------------------------------------------------------------------------- reprojection


def test_reproject_lonlat_utm_round_trip() -> None:
    table = pd.DataFrame({"x": [-63.0, -62.5], "y": [-10.0, -9.5], "code": [1, 2]})
    points = ReferencePoints(table=table, crs=WGS84)
    utm = reproject_points(points, "EPSG:32720")
    assert utm.crs.to_epsg() == 32720
    np.testing.assert_allclose(utm.table["x"].iloc[0], 500000.0, atol=1e-6)  # central meridian -63
    assert utm.table["y"].iloc[0] == pytest.approx(10e6 - 0.9996 * 1105854.83, abs=1.0)  # k0 * arc
    back = reproject_points(utm, ProjCRS.from_epsg(4326))
    np.testing.assert_allclose(back.table[["x", "y"]].to_numpy(), table[["x", "y"]].to_numpy(), atol=1e-9)
    assert back.table["code"].tolist() == [1, 2]


def test_reproject_to_a_crs_without_epsg_code() -> None:
    dst = CRS.from_wkt(SINUSOIDAL_WKT)
    assert dst.to_epsg() is None
    points = ReferencePoints(table=pd.DataFrame({"x": [-55.0], "y": [-11.0], "code": ["A"]}), crs=WGS84)
    sinu = reproject_points(points, dst)
    radius = 6371007.181
    lat = np.radians(-11.0)
    assert sinu.table["x"].iloc[0] == pytest.approx(radius * np.radians(-55.0) * np.cos(lat), abs=1e-3)
    assert sinu.table["y"].iloc[0] == pytest.approx(radius * lat, abs=1e-3)
    # the WKT string works as well as the CRS object
    pd.testing.assert_frame_equal(reproject_points(points, SINUSOIDAL_WKT).table, sinu.table)


def test_reproject_drops_points_that_cannot_be_transformed() -> None:
    table = pd.DataFrame({"x": [-63.0, 0.0], "y": [-10.0, 95.0], "code": [1, 2]})
    with pytest.warns(DataWarning, match=r"^1 of 2 points could not be transformed"):
        out = reproject_points(ReferencePoints(table=table, crs=WGS84), "EPSG:32720")
    assert out.table["code"].tolist() == [1]


# ---------------------------------------------------------------------------------- reclassification


def test_reclassify_with_table_drops_unknown_codes_once() -> None:
    table = pd.DataFrame({"x": np.arange(6.0), "y": np.arange(6.0), "code": [10, 20, 99, 10, 77, 99]})
    points = ReferencePoints(table=table, crs=WGS84)
    classes = ClassTable(code_to_value={10: 1, 20: 2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, used = reclassify(points, classes)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1
    assert "3 of 6 points" in messages[0] and "77 (1), 99 (2)" in messages[0]
    assert used is classes
    assert out.table["value"].dtype == np.int64
    assert out.table["value"].tolist() == [1, 2, 1] and out.table["x"].tolist() == [0.0, 1.0, 3.0]


def test_reclassify_without_table_string_and_int_labels() -> None:
    strings = ReferencePoints(
        table=pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.0] * 3, "code": ["Pasture", "Forest", "Pasture"]}),
        crs=WGS84,
    )
    out, table = reclassify(strings, None)
    assert out.table["value"].tolist() == [2, 1, 2] and out.table["value"].dtype == np.int64
    assert table.names == {1: "Forest", 2: "Pasture"}
    ints = ReferencePoints(table=pd.DataFrame({"x": [0.0], "y": [0.0], "code": [40]}), crs=WGS84)
    assert reclassify(ints, None)[0].table["value"].tolist() == [40]


def test_reclassify_no_known_code_is_an_error() -> None:
    points = ReferencePoints(table=pd.DataFrame({"x": [0.0], "y": [0.0], "code": [5]}), crs=WGS84)
    with pytest.raises(ClassTableError, match=r"none of the reference codes \(5\).*classes\.table"):
        reclassify(points, ClassTable(code_to_value={10: 1}))


# ------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_zion_nlcd_points_land_inside_the_landsat_stack(shared_data: Path) -> None:
    nlcd = shared_data / "zion" / "nlcd2011.tif"
    stack = shared_data / "zion" / "zion_landsat8_b2345_stack.tif"
    points = sample_raster_points(nlcd, 2000, random_state=0)
    assert len(points) == 2000
    with rasterio.open(nlcd) as src:
        assert set(points.table["code"].unique()) <= set(range(11, 96))
        assert (pixel_values(nlcd, points)[0] != src.nodata).all()
    # Finding: nlcd2011.tif's WKT is "UTM Zone 12, Northern Hemisphere" on GRS80 with TOWGS84[0,...]; GDAL
    # matches it to EPSG:6367 ("Mexico ITRF2008 / UTM zone 12N", area of use Mexico only). The coordinates
    # really are UTM 12N metres, and since both datums are WGS84-like (null shift), the transform to
    # EPSG:32612 is UTM -> lon/lat -> UTM: points move by less than a millimetre, no datum shift is applied
    # and the stack's grid is hit as intended. Nothing has to be fixed; a 6367 -> 32612 transform that applied
    # a real datum shift would have moved points by up to ~1-2 m (not a whole 30 m pixel).
    with rasterio.open(stack) as src:
        utm = reproject_points(points, src.crs)
        bounds = src.bounds
        assert utm.crs == src.crs
        shift = np.hypot(utm.table["x"] - points.table["x"], utm.table["y"] - points.table["y"])
        assert shift.max() < 1e-3
        x, y = utm.table["x"], utm.table["y"]
        inside = (x > bounds.left) & (x < bounds.right) & (y > bounds.bottom) & (y < bounds.top)
        assert inside.all()
        rows, cols = rasterio.transform.rowcol(src.transform, x.to_numpy(), y.to_numpy())
        assert 0 <= min(rows) and max(rows) < src.height and 0 <= min(cols) and max(cols) < src.width


@pytest.mark.realdata
def test_sinop_csv_into_the_sinusoidal_raster(shared_data: Path) -> None:
    csv = shared_data / "sinop" / "samples_sinop_crop.csv"
    raster = shared_data / "sinop" / "sinop_mod13q1_ndvi_2013-09_2014-08_12band.tif"
    points = read_points_csv(csv, x_column="longitude", y_column="latitude", label_column="label")
    assert len(points) == 18 and pd.api.types.is_string_dtype(points.table["code"])
    with rasterio.open(raster) as src:
        assert src.crs.to_epsg() is None  # MODIS sinusoidal: no EPSG code
        sinu = reproject_points(points, src.crs)
        b = src.bounds
    x, y = sinu.table["x"], sinu.table["y"]
    assert len(sinu) == 18
    assert ((x > b.left) & (x < b.right) & (y > b.bottom) & (y < b.top)).all()
    out, table = reclassify(sinu, None)
    assert set(table.names.values()) == set(points.table["code"]) and out.table["value"].min() == 1


@pytest.mark.realdata
def test_saotome_window_sample_has_the_right_classes(shared_data: Path) -> None:
    path = shared_data / "worldcover" / "worldcover2021_saotome_window.tif"
    with rasterio.open(path) as src:
        data = src.read(1)
    expected = notebook_allocation(data, 0, 10000)
    points = sample_raster_points(path, 10000, random_state=42)
    assert points.crs == WGS84 and len(points) == 10000
    assert points.table["code"].value_counts().to_dict() == {c: n for c, n in expected.items() if n}
    assert set(points.table["code"]) <= {10, 20, 30, 40, 50, 60, 80, 90, 95}
    values, cols, rows = pixel_values(path, points)
    assert (values == points.table["code"].to_numpy()).all()


@pytest.mark.slow
@pytest.mark.realdata
def test_full_worldcover_tile_10000_points(shared_data: Path) -> None:
    path = shared_data / "worldcover" / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
    points = sample_raster_points(path, 10000, random_state=42)
    assert len(points) == 10000
    assert points.table["code"].isin([10, 20, 30, 40, 50, 60, 80, 90, 95]).all()
    x, y = points.table["x"], points.table["y"]
    assert ((x > 6) & (x < 9) & (y > 0) & (y < 3)).all()
    again = sample_raster_points(path, 10000, random_state=42, n_threads=1)
    pd.testing.assert_frame_equal(points.table, again.table)
