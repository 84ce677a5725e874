import numpy as np
import rasterio

from lcmodel.embedding import NodataRule, band_names
from tests.rasters import write_raster


def test_float_rule_masks_declared_nan_and_zero_vectors(tmp_path):
    data = np.ones((3, 2, 3), dtype=np.float32)
    data[:, 0, 0] = 0.0  # all-zero vector
    data[1, 0, 1] = np.nan  # NaN in one band
    data[2, 1, 2] = -9999  # declared nodata in one band
    data[0, 1, 0] = 0.0  # a zero in ONE band only is valid
    path = write_raster(tmp_path / "f.tif", data, nodata=-9999)
    with rasterio.open(path) as src:
        rule = NodataRule.detect(src)
        block = src.read()
    assert rule == NodataRule(dtype="float32", nodata=-9999.0, zero_vector=True)
    mask = rule.valid_mask(block)
    assert mask.tolist() == [[False, False, True], [True, True, False]]
    m2, feats = rule.block_features(block)
    assert (m2 == mask).all() and feats.shape == (3, 3) and feats.dtype == np.float32
    assert feats.flags.c_contiguous


def test_nan_declared_nodata_is_not_kept_as_value(tmp_path):
    path = write_raster(tmp_path / "n.tif", np.ones((2, 4, 4), np.float32), nodata=float("nan"))
    with rasterio.open(path) as src:
        assert NodataRule.detect(src).nodata is None


def test_aef_int8_masks_before_dequantizing(tmp_path):
    data = np.array([[[-128, 127, -127, 0]], [[-128, 64, 10, 0]]], dtype=np.int8)
    path = write_raster(tmp_path / "q.tif", data, blocksize=None)
    with rasterio.open(path) as src:
        rule = NodataRule.detect(src)
        mask, feats = rule.block_features(src.read())
    assert rule.dequantize == "aef_int8" and rule.nodata == -128
    assert mask.tolist() == [[False, True, True, True]]
    expected = np.array([[127, 64], [-127, 10], [0, 0]], dtype=np.float64)
    np.testing.assert_allclose(feats, (expected / 127.5) ** 2 * np.sign(expected), rtol=1e-6)
    assert np.abs(feats).max() <= 1.0


def test_integer_raster_uses_declared_nodata_only(tmp_path):
    data = np.zeros((2, 2, 2), dtype=np.uint16)
    data[:, 0, 0] = 65535
    path = write_raster(tmp_path / "u.tif", data, nodata=65535, blocksize=None)
    with rasterio.open(path) as src:
        rule = NodataRule.detect(src)
        assert rule.valid_mask(src.read()).tolist() == [[False, True], [True, True]]
    assert NodataRule.from_dict(rule.to_dict()) == rule


def test_band_names_from_descriptions(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.ones((2, 2, 2), np.float32), descriptions=["A00", "A01"])
    b = write_raster(tmp_path / "b.tif", np.ones((2, 2, 2), np.float32))
    with rasterio.open(a) as src:
        assert band_names(src) == ["A00", "A01"]
    with rasterio.open(b) as src:
        assert band_names(src) == ["band_1", "band_2"]
