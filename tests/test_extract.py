"""extract_values: exact pixels on a raster whose values encode their row/col, nodata rules, layouts, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import lcmodel.extract as extract_mod
from lcmodel.embedding import NodataRule
from lcmodel.errors import InputDataError, InputFileError
from lcmodel.extract import Extraction, extract_values, pixel_index
from tests.rasters import write_raster, xy_encoded_embedding

X0, Y0, RES = 500000.0, 8000000.0, 10.0
H, W, B = 40, 50, 4


def centre(r: np.ndarray | int, c: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """x/y of pixel centres of the default north-up test grid."""
    return X0 + RES * (np.asarray(c) + 0.5), Y0 - RES * (np.asarray(r) + 0.5)


def encoded(r: np.ndarray, c: np.ndarray, bands: int = B) -> np.ndarray:
    return np.stack([(np.asarray(r) * 1000 + np.asarray(c) + b / 10) for b in range(bands)], axis=1).astype(
        np.float32
    )


@pytest.fixture
def xy_raster(tmp_path: Path) -> Path:
    return xy_encoded_embedding(tmp_path / "xy.tif", height=H, width=W, bands=B)  # 16 x 16 tiles


def test_exact_pixels_random_and_block_boundaries(xy_raster: Path) -> None:
    rng = np.random.default_rng(0)
    r = rng.integers(0, H, 300)
    c = rng.integers(0, W, 300)
    # Pixels on both sides of every tile boundary, and the last (partial) tiles.
    r = np.r_[r, 15, 16, 15, 16, 31, 32, 39, 39, 0]
    c = np.r_[c, 15, 16, 16, 15, 47, 48, 49, 0, 49]
    x, y = centre(r, c)
    ext = extract_values(xy_raster, x, y)
    assert isinstance(ext, Extraction)
    assert ext.values.dtype == np.float32 and ext.values.shape == (r.size, B)
    assert ext.valid.all() and ext.inside.all()
    assert ext.row.dtype == np.int64 and (ext.row == r).all() and (ext.col == c).all()
    np.testing.assert_array_equal(ext.values, encoded(r, c))
    assert ext.band_names == ["band_1", "band_2", "band_3", "band_4"]
    assert ext.rule == NodataRule(dtype="float32", nodata=None, zero_vector=True)


def test_edges_left_top_inside_right_bottom_outside(xy_raster: Path) -> None:
    x = np.array([X0, X0 + RES * W, X0 + 5, X0 + 5, X0 + RES * 16, X0 - 1e-9, np.nan, X0 + RES * W - 1e-6])
    y = np.array([Y0 - 5, Y0 - 5, Y0, Y0 - RES * H, Y0 - RES * 16, Y0 - 5, Y0 - 5, Y0 - RES * H + 1e-6])
    ext = extract_values(xy_raster, x, y)
    assert ext.inside.tolist() == [True, False, True, False, True, False, False, True]
    assert ext.valid.tolist() == ext.inside.tolist()
    assert ext.row.tolist() == [0, -1, 0, -1, 16, -1, -1, H - 1]
    assert ext.col.tolist() == [0, -1, 0, -1, 16, -1, -1, W - 1]
    assert (ext.values[~ext.inside] == 0).all()
    assert ext.values[4, 0] == 16 * 1000 + 16  # a pixel corner belongs to the pixel right/below it
    assert ext.values[7, 0] == (H - 1) * 1000 + W - 1


def test_bottom_up_raster(tmp_path: Path) -> None:
    transform = Affine(RES, 0.0, X0, 0.0, RES, Y0 - RES * H)  # positive y resolution: row 0 at the bottom
    path = xy_encoded_embedding(tmp_path / "up.tif", height=H, width=W, bands=B, transform=transform)
    rng = np.random.default_rng(1)
    r = rng.integers(0, H, 200)
    c = rng.integers(0, W, 200)
    x = X0 + RES * (c + 0.5)
    y = (Y0 - RES * H) + RES * (r + 0.5)
    ext = extract_values(path, x, y)
    np.testing.assert_array_equal(ext.values, encoded(r, c))
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(np.array(list(src.sample(zip(x, y, strict=True)))), ext.values)
    # Rows are those of the north-up grid (the map's): stored row r is row H - 1 - r, and the edges follow
    # the north-up rule whatever the storage: the north edge is inside (row 0), the south edge outside.
    assert ext.row.tolist() == (H - 1 - r).tolist() and ext.col.tolist() == c.tolist()
    assert ext.transform == Affine(RES, 0.0, X0, 0.0, -RES, Y0)
    edge = extract_values(path, [X0 + 5, X0 + 5], [Y0 - RES * H, Y0])
    assert edge.inside.tolist() == [False, True] and edge.row.tolist() == [-1, 0]


def test_rotated_transform_pixel_index() -> None:
    t = Affine(10.0, 2.0, X0, 1.5, -10.0, Y0)
    r, c = np.mgrid[0:H, 0:W]
    r, c = r.ravel(), c.ravel()
    x, y = t @ (c + 0.5, r + 0.5)
    row, col, inside = pixel_index(t, np.asarray(x), np.asarray(y), H, W)
    assert inside.all() and (row == r).all() and (col == c).all()
    corner_x, corner_y = t @ (W, 3)
    assert not pixel_index(t, np.array([corner_x]), np.array([corner_y]), H, W)[2][0]


def test_nodata_declared_nan_zero(tmp_path: Path) -> None:
    r, c = np.mgrid[0:H, 0:W]
    data = np.stack([(r * 1000 + c + 1 + b / 10).astype(np.float32) for b in range(B)])
    data[:, 3, 4] = 0.0  # all-zero vector
    data[2, 5, 6] = np.nan  # NaN in one band
    data[1, 7, 8] = -9999.0  # declared nodata in one band
    data[0, 9, 10] = 0.0  # one zero band only: valid
    path = write_raster(tmp_path / "nd.tif", data, nodata=-9999.0)
    rows = np.array([3, 5, 7, 9, 0])
    cols = np.array([4, 6, 8, 10, 0])
    ext = extract_values(path, *centre(rows, cols))
    assert ext.inside.all()
    assert ext.valid.tolist() == [False, False, False, True, True]
    assert (ext.values[~ext.valid] == 0).all()
    np.testing.assert_array_equal(ext.values[3], data[:, 9, 10])
    # Overriding nodata: -9999 becomes an ordinary value.
    over = extract_values(path, *centre(rows, cols), nodata=-1.0)
    assert over.valid.tolist() == [False, False, True, True, True]
    assert over.values[2, 1] == -9999.0


def test_aef_int8_masks_then_dequantizes(tmp_path: Path) -> None:
    data = np.full((3, 4, 4), 64, dtype=np.int8)
    data[:, 0, 0] = -128  # nodata pixel
    data[1, 1, 1] = -128  # one band at -128: the whole pixel is nodata
    data[:, 2, 2] = [-127, 0, 127]
    path = write_raster(tmp_path / "aef.tif", data, blocksize=None)
    rows, cols = np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3])
    ext = extract_values(path, *centre(rows, cols))
    assert ext.rule.dequantize == "aef_int8" and ext.rule.nodata == -128
    assert ext.valid.tolist() == [False, False, True, True]
    assert (ext.values[:2] == 0).all()
    raw = np.array([-127, 0, 127], dtype=np.float64)
    np.testing.assert_allclose(ext.values[2], (raw / 127.5) ** 2 * np.sign(raw), rtol=1e-6)
    np.testing.assert_allclose(ext.values[3], np.full(3, (64 / 127.5) ** 2), rtol=1e-6)
    assert np.abs(ext.values).max() <= 1.0


def test_threads_identical_and_progress(xy_raster: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(X0 - 50, X0 + RES * W + 50, 500)
    y = rng.uniform(Y0 - RES * H - 50, Y0 + 50, 500)
    calls: list[tuple[int, int]] = []
    one = extract_values(xy_raster, x, y, n_threads=1)
    two = extract_values(xy_raster, x, y, n_threads=2, progress=lambda d, t: calls.append((d, t)))
    three = extract_values(xy_raster, x, y, n_threads=3)
    for other in (two, three):
        for name in ("values", "valid", "inside", "row", "col"):
            np.testing.assert_array_equal(getattr(one, name), getattr(other, name))
    assert 0 < one.inside.sum() < 500
    assert calls[-1][0] == calls[-1][1] and len(calls) == calls[-1][1]
    assert calls[-1][1] <= 3 * 4  # at most one read per 16 x 16 tile
    inside = one.inside
    np.testing.assert_array_equal(one.values[inside], encoded(one.row[inside], one.col[inside]))


@pytest.mark.parametrize("chunk_bytes", [8 << 20, 1])
def test_striped_raster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int) -> None:
    monkeypatch.setattr(extract_mod, "STRIP_CHUNK_BYTES", chunk_bytes)  # 1: one strip per read
    path = xy_encoded_embedding(tmp_path / "strips.tif", height=H, width=W, bands=B, blocksize=None)
    with rasterio.open(path) as src:
        assert src.block_shapes[0][1] == W  # strips, not tiles
    rng = np.random.default_rng(3)
    r = np.r_[rng.integers(0, H, 100), 0, H - 1]
    c = np.r_[rng.integers(0, W, 100), W - 1, 0]
    ext = extract_values(path, *centre(r, c), n_threads=2)
    np.testing.assert_array_equal(ext.values, encoded(r, c))


def test_band_names_from_descriptions_and_empty_points(tmp_path: Path) -> None:
    names = ["A00", "A01", "A02", "A03"]
    path = xy_encoded_embedding(tmp_path / "named.tif", descriptions=names)
    ext = extract_values(path, np.array([]), np.array([]))
    assert ext.band_names == names and ext.values.shape == (0, 4) and ext.valid.shape == (0,)


def test_errors(tmp_path: Path, xy_raster: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        extract_values(tmp_path / "missing.tif", [1.0], [2.0])
    text = tmp_path / "not_a_raster.tif"
    text.write_text("hello")
    with pytest.raises(InputFileError, match="not a readable raster"):
        extract_values(text, [1.0], [2.0])
    nocrs = xy_encoded_embedding(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(InputFileError, match="has no CRS; assign one"):
        extract_values(nocrs, [X0 + 5], [Y0 - 5])
    with pytest.raises(InputDataError, match="x has 2 values but y has 1") as info:
        extract_values(xy_raster, [1.0, 2.0], [3.0])
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputDataError, match="must be numbers"):
        extract_values(xy_raster, ["a"], ["b"])


@pytest.mark.realdata
def test_real_rasters_match_src_sample(shared_data: Path) -> None:
    rng = np.random.default_rng(4)
    zion = shared_data / "zion" / "zion_landsat8_b2345_stack.tif"
    aef = next((shared_data / "aef_wisconsin").glob("*.tif"))
    for path in (zion, aef):
        with rasterio.open(path) as src:
            b = src.bounds
            x = rng.uniform(b.left, b.right, 2000)
            y = rng.uniform(b.bottom, b.top, 2000)
            expected = np.array(list(src.sample(zip(x, y, strict=True))))
            rule = NodataRule.detect(src)
        ext = extract_values(path, x, y)
        assert ext.inside.all()
        assert ext.rule == rule
        np.testing.assert_array_equal(ext.values[ext.valid], expected[ext.valid].astype(np.float32))
        assert ext.valid.mean() > 0.9
    assert ext.band_names[0] == "A00" and ext.band_names[-1] == "A63" and len(ext.band_names) == 64
