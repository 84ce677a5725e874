"""Where prediction time goes: predict_raster's phases (n_jobs=1) on a 1024 x 1024 x 64 float32 raster.

The forest: 400 trees, max_features 8, trained on 4000 synthetic samples of 8 classes. Each phase is timed around
the library's own calls: read + decode (rasterio), feature preparation (nodata rule, float32 copy),
predict_proba (scikit-learn),
labels/confidence, block files (npz) and assembly (GeoTIFF, overviews, COG copy). Then the same prediction
with n_jobs=2 for pixels per second. Writes benchmarks/results/profile_predict.json.

    python benchmarks/profile_predict.py [--size 1024] [--trees 400]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from sklearn.ensemble import RandomForestClassifier

from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule, band_names
from lcmodel.model_io import ModelBundle, current_versions, utc_now
from lcmodel.predict import predict_raster

RESULTS = Path(__file__).resolve().parent / "results" / "profile_predict.json"


def make_inputs(root: Path, size: int, bands: int, trees: int) -> tuple[Path, ModelBundle]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, bands)).astype(np.float32)
    y = rng.integers(0, 8, 4000)
    X = (centers[y] + rng.normal(scale=1.5, size=(4000, bands))).astype(np.float32)
    est = RandomForestClassifier(n_estimators=trees, max_features=8, random_state=0, n_jobs=2).fit(X, y + 1)
    labels = rng.integers(0, 8, (size // 32, size // 32)).repeat(32, 0).repeat(32, 1)
    emb = root / "emb.tif"
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="float32", tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate", crs="EPSG:32720",
                   transform=rasterio.Affine(10, 0, 500000, 0, -10, 8000000))
    with rasterio.open(emb, "w", **profile) as dst:
        for r in range(0, size, 512):
            lab = labels[r:r + 512]
            block = centers[lab].transpose(2, 0, 1) + rng.normal(scale=1.5, size=(bands, *lab.shape))
            dst.write(block.astype(np.float32), window=rasterio.windows.Window(0, r, size, lab.shape[0]))
    with rasterio.open(emb) as src:
        bundle = ModelBundle(estimator=est, band_names=band_names(src), crs_wkt=src.crs.to_wkt(),
                             nodata_rule=NodataRule.detect(src), class_table=ClassTable({v: v for v in range(1, 9)}),
                             config={}, training_table_sha256=None, versions=current_versions(), created=utc_now())
    return emb, bundle


def phase_times(bundle: ModelBundle, emb: Path) -> tuple[dict[str, float], int]:
    """Seconds per phase over all windows, each phase timed around the library's own calls (n_jobs=1)."""
    from lcmodel.predict.plan import Grid

    est = bundle.estimator
    est.set_params(n_jobs=1)
    t = dict.fromkeys(["read_decode", "feature_prep", "predict_proba", "labels_confidence", "block_file_npz"], 0.0)
    with rasterio.open(emb) as src:
        windows = Grid.of_raster(src, None, 1024, 8).windows
        rule = NodataRule.detect(src)
        for w in windows:
            t0 = time.perf_counter()
            block = src.read(window=w)
            t1 = time.perf_counter()
            mask, X = rule.block_features(block)
            t2 = time.perf_counter()
            proba = est.predict_proba(X)
            t3 = time.perf_counter()
            index = np.argmax(proba, axis=1)
            labels = np.zeros(mask.shape, np.uint8)
            labels[mask] = est.classes_[index]
            conf = np.full(mask.shape, 255, np.uint8)
            conf[mask] = np.floor(proba[np.arange(len(index)), index] * 100 + 0.5).astype(np.uint8)
            t4 = time.perf_counter()
            np.savez_compressed(io.BytesIO(), labels=labels, confidence=conf)
            t5 = time.perf_counter()
            for k, a, b in zip(t, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
                t[k] += b - a
    return t, len(windows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bands", type=int, default=64)
    ap.add_argument("--trees", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        emb, bundle = make_inputs(root, args.size, args.bands, args.trees)
        phases, n_windows = phase_times(bundle, emb)
        t0 = time.perf_counter()
        s1 = predict_raster(bundle, emb, root / "m1.tif", confidence_path=root / "c1.tif", n_jobs=1)
        wall1 = time.perf_counter() - t0
        phases["assembly_cog_and_rest"] = max(0.0, wall1 - sum(phases.values()))
        t0 = time.perf_counter()
        s2 = predict_raster(bundle, emb, root / "m2.tif", confidence_path=root / "c2.tif", n_jobs=2)
        wall2 = time.perf_counter() - t0
    total = sum(phases.values())
    result = {
        "raster": f"{args.size}x{args.size}x{args.bands} float32, 512 tiles, deflate",
        "forest": f"{args.trees} trees, max_features 8, 4000 samples, 8 classes",
        "cpu_count": os.cpu_count(),
        "windows": n_windows,
        "n_jobs_1": {"wall_s": round(wall1, 2), "pixels_per_s": round(s1.n_pixels / wall1),
                     "phase_s": {k: round(v, 2) for k, v in phases.items()},
                     "phase_share": {k: round(v / total, 3) for k, v in phases.items()}},
        "n_jobs_2": {"wall_s": round(wall2, 2), "pixels_per_s": round(s2.n_pixels / wall2),
                     "speedup": round(wall1 / wall2, 2)},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
