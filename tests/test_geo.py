"""Pixel-grid geometry: pixel centres and their inverse, pixel area, CRS labels."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from lcmodel.geo import crs_label, pixel_area_m2, pixel_centres, pixel_index


@pytest.mark.parametrize(
    "transform",
    [
        Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 8000000.0),  # north-up
        Affine(30.0, 0.0, -200.0, 0.0, 30.0, 100.0),  # bottom-up
        Affine.translation(1000.0, 2000.0) @ Affine.rotation(30.0) @ Affine.scale(5.0, -5.0),  # rotated
    ],
)
def test_pixel_centres_fall_in_their_own_pixel(transform: Affine) -> None:
    rows, cols = np.mgrid[0:7, 0:9]
    x, y = pixel_centres(transform, rows.ravel(), cols.ravel())
    assert x.dtype == np.float64 and y.dtype == np.float64
    row, col, inside = pixel_index(transform, x, y, 7, 9)
    assert inside.all()
    np.testing.assert_array_equal(row, rows.ravel())
    np.testing.assert_array_equal(col, cols.ravel())
    ex, ey = transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    np.testing.assert_allclose(x, ex, rtol=0, atol=1e-9)
    np.testing.assert_allclose(y, ey, rtol=0, atol=1e-9)


def test_pixel_centres_formula_is_the_samplers() -> None:
    t = Affine(10.0, 0.5, 500000.0, 0.25, -10.0, 8000000.0)
    rows = np.array([0.0, 3.0, 11.0])
    cols = np.array([4.0, 0.0, 7.0])
    x, y = pixel_centres(t, rows, cols)
    np.testing.assert_array_equal(x, t.c + (cols + 0.5) * t.a + (rows + 0.5) * t.b)
    np.testing.assert_array_equal(y, t.f + (cols + 0.5) * t.d + (rows + 0.5) * t.e)


def test_pixel_area_and_crs_label() -> None:
    t = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 8000000.0)
    assert pixel_area_m2(CRS.from_epsg(32720), t) == 100.0
    assert pixel_area_m2(CRS.from_epsg(4326), t) is None
    assert pixel_area_m2(None, t) is None
    assert crs_label(CRS.from_epsg(32720)) == "EPSG:32720"
    sinusoidal = CRS.from_proj4("+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs")
    label = crs_label(sinusoidal)
    assert label and not label.startswith("EPSG") and len(label) <= 60
