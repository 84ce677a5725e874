"""A small deterministic synthetic case for `lcmodel demo` and the end-to-end tests.

It mimics the real inputs: a WorldCover-like class raster (uint8, EPSG:4326, 1/12000 degree, nodata 0, a
nodata strip on its west edge, patchy classes with realistic imbalance, some label noise), an overlapping
64-band unit-vector embedding in UTM 20S at 10 m (float32, tiled, deflate, all-zero vectors as nodata as in
Earth Engine exports) whose extent only partly overlaps the class raster, and a class table that merges
shrubland and grassland. Same seed, same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject, transform_bounds
from scipy.ndimage import gaussian_filter

from lcmodel.io import atomic_path, ensure_output_dir

__all__ = ["make_demo_data", "DEMO_CLASSES"]

#: WorldCover code -> (share of the area, model class value, class name, colour)
DEMO_CLASSES: dict[int, tuple[float, int, str, str]] = {
    10: (0.50, 1, "Tree cover", "#006400"),
    20: (0.04, 2, "Shrub and grassland", "#ffbb22"),
    30: (0.08, 2, "Shrub and grassland", "#ffbb22"),
    40: (0.12, 3, "Cropland", "#f096ff"),
    50: (0.08, 4, "Built-up", "#fa0000"),
    60: (0.03, 5, "Bare / sparse vegetation", "#b4b4b4"),
    80: (0.13, 6, "Permanent water bodies", "#0064c8"),
    90: (0.02, 7, "Herbaceous wetland", "#0096a0"),
}
N_BANDS = 64
UTM = CRS.from_epsg(32720)
ORIGIN = (822400.0, 9668000.0)  # top-left corner near Manaus, UTM 20S


def from_origin(west: float, north: float, xres: float, yres: float) -> Affine:
    """North-up transform from the top-left corner."""
    return Affine.translation(west, north) @ Affine.scale(xres, -yres)


def _class_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Patchy categorical field with the target class shares (argmax of smooth fields + calibrated bias)."""
    codes = np.array(list(DEMO_CLASSES), dtype=np.uint8)
    shares = np.array([DEMO_CLASSES[c][0] for c in codes])
    fields = np.stack([gaussian_filter(rng.standard_normal(shape), sigma) for _ in codes])
    fields /= fields.std(axis=(1, 2), keepdims=True)
    bias = np.log(shares) * 0.6
    for _ in range(30):  # calibrate biases so class shares match the targets
        idx = np.argmax(fields + bias[:, None, None], axis=0)
        got = np.bincount(idx.ravel(), minlength=len(codes)) / idx.size
        bias += 0.5 * (np.log(shares) - np.log(np.maximum(got, 1e-6)))
    return codes[np.argmax(fields + bias[:, None, None], axis=0)]


def make_demo_data(out_dir: Path | str, *, size: int = 384, seed: int = 0, n_points: int = 3000,
                   sections: Mapping[str, Any] | None = None) -> Path:
    """Write the demo inputs and a run config into ``out_dir``; return the config path.

    Parameters
    ----------
    out_dir : folder to write ``embedding.tif``, ``worldcover.tif``, ``classes.csv`` and ``demo.yaml``.
    size : embedding width and height in pixels (10 m).
    seed : random seed; the same seed gives the same files.
    n_points : reference points to sample from the class raster.
    sections : more config sections to write, e.g. the flow's ``tracking`` (the library's own are always there).
    """
    out = ensure_output_dir(out_dir)
    rng = np.random.default_rng(seed)
    pad = size // 4
    full = size + 2 * pad
    truth = _class_field(rng, (full, full), sigma=size / 40)
    full_transform = from_origin(ORIGIN[0] - pad * 10.0, ORIGIN[1] + pad * 10.0, 10.0, 10.0)

    # --- embedding: normalize(mu[class] + smooth noise + white noise), all-zero vectors as nodata
    codes = list(DEMO_CLASSES)
    mu = rng.standard_normal((len(codes), N_BANDS))
    mu[codes.index(20)] = 0.6 * mu[codes.index(30)] + 0.4 * mu[codes.index(20)]  # shrub ~ grass
    mu[codes.index(60)] = 0.5 * mu[codes.index(50)] + 0.5 * mu[codes.index(60)]  # bare ~ built
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    inner = truth[pad : pad + size, pad : pad + size]
    lut = np.zeros(256, dtype=np.int64)
    lut[np.array(codes)] = np.arange(len(codes))
    emb = mu[lut[inner]].transpose(2, 0, 1).astype(np.float32)  # (bands, rows, cols)
    for b in range(N_BANDS):
        emb[b] += 0.35 * gaussian_filter(rng.standard_normal((size, size)), 3).astype(np.float32) * 3
        emb[b] += 0.25 * rng.standard_normal((size, size)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=0, keepdims=True)
    rows, cols = np.mgrid[0:size, 0:size]
    nodata = (rows + cols) > int(1.75 * size)  # bottom-right triangle
    h0 = size // 3
    nodata[h0 : h0 + size // 12, h0 : h0 + size // 10] = True  # a rectangular hole
    emb[:, nodata] = 0.0
    emb_transform = from_origin(ORIGIN[0], ORIGIN[1], 10.0, 10.0)
    profile: dict[str, Any] = dict(
        driver="GTiff", width=size, height=size, count=N_BANDS, dtype="float32", crs=UTM,
        transform=emb_transform, tiled=True, blockxsize=128, blockysize=128, compress="deflate",
    )
    with atomic_path(out / "embedding.tif") as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(emb)
            for b in range(N_BANDS):
                dst.set_band_description(b + 1, f"A{b:02d}")

    # --- WorldCover-like reference: truth with label noise, reprojected to EPSG:4326 at 1/12000 degree
    noisy = truth.copy()
    flip = gaussian_filter(rng.standard_normal((full, full)), 2) > 1.6  # ~5 % of pixels, in small patches
    other = _class_field(rng, (full, full), sigma=size / 60)
    noisy[flip] = other[flip]
    res = 1.0 / 12000.0
    west, south, east, north = transform_bounds(
        UTM, "EPSG:4326", ORIGIN[0] - pad * 5.0, ORIGIN[1] - (size + pad) * 10.0,
        ORIGIN[0] + (size + pad) * 10.0, ORIGIN[1] + pad * 5.0,
    )
    width, height = int(np.ceil((east - west) / res)), int(np.ceil((north - south) / res))
    ref_transform = from_origin(west, north, res, res)
    ref = np.zeros((height, width), dtype=np.uint8)
    reproject(noisy, ref, src_transform=full_transform, src_crs=UTM, dst_transform=ref_transform,
              dst_crs="EPSG:4326", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    ref[:, : max(1, width // 30)] = 0  # nodata strip on the west edge
    with atomic_path(out / "worldcover.tif") as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                           crs="EPSG:4326", transform=ref_transform, nodata=0, tiled=True,
                           blockxsize=256, blockysize=256, compress="deflate") as dst:
            dst.write(ref, 1)

    with atomic_path(out / "classes.csv") as tmp:
        lines = ["code,value,name,color"] + [f"{c},{v},{n},{col}" for c, (_, v, n, col) in DEMO_CLASSES.items()]
        tmp.write_text("\n".join(lines) + "\n")

    config = {
        "reference": {"path": "worldcover.tif", "n_points": n_points},
        "classes": {"table": "classes.csv", "name_column": "name", "color_column": "color"},
        "embedding": {"path": "embedding.tif"},
        "sampling": {"n_sample": 2000},
        "tuning": {
            "cv": 3,
            "stages": [
                {"max_features": ["sqrt", "n/4"], "min_samples_leaf": [1, 5]},
                {"n_estimators": [50, 100], "class_weight": [None, "balanced"]},
            ],
        },
        "output": {"dir": "results"},
        "n_jobs": 2,
        **dict(sections or {}),
    }
    cfg_path = out / "demo.yaml"
    with atomic_path(cfg_path) as tmp:
        header = "# lcmodel demo run (synthetic data; see lcmodel/demo.py)\n"
        tmp.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return cfg_path
