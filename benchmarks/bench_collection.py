"""Benchmark: a 4-tile, 2-UTM-zone AlphaEarth-style collection against the same data merged by hand into one file.

    python benchmarks/bench_collection.py --data ../bench-data/coll [--tile 2048]

The notebook's user merged the Earth Engine pieces by hand ("embedding_2020_merged.tif") and ran on one file;
across two UTM zones that merge is a reprojection. This runs both, on the same machine in one process:

- data: ../shared/bench/make_synthetic.py writes a (2 x tile)^2 float embedding in EPSG:32720 (it straddles
  the 60 W zone border) and an ESA-like class raster; it is encoded as AlphaEarth int8 (-128 nodata,
  sign(v) * sqrt(|v|) * 127.5) into ``merged.tif`` and cut into four tiles of ``tile`` px: the two western
  ones stay in EPSG:32720, the two eastern ones are warped (nearest) into EPSG:32721, their own zone, and
  stored SOUTH-UP, ZSTD, band-interleaved, as the public COGs are. ``merge`` times what the user did by hand:
  warping the four tiles back into one EPSG:32720 file.
- sampling: ``reference.n_points`` 10000 inside the embedding footprint (collection: the union of the tiles';
  merged: the file's);
- extraction: the same lon/lat points, ``extract_collection`` (each point from its tile, in its CRS) vs
  ``extract_values`` on the merged file;
- prediction: one forest (100 trees, fitted on the merged file's samples), ``predict_raster`` of each tile
  (4 COGs) vs of the merged file.

Each stage records wall time, CPU, peak RSS and ``others_cpu`` (how busy the machine was, benchutil.Stage).
Results go to ``benchmarks/results/collection.json``; a ratio table (collection / merged) is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(SHARED))
sys.path.insert(0, str(ROOT))

from benchutil import Stage  # noqa: E402

AEF_PROFILE = dict(driver="GTiff", dtype="int8", nodata=-128, tiled=True, blockxsize=512, blockysize=512,
                   compress="ZSTD", interleave="band")


def _encode(block: np.ndarray) -> np.ndarray:
    """Float unit vectors (bands, rows, cols) -> AlphaEarth int8 codes; all-zero vectors -> -128."""
    q = np.clip(np.rint(np.sign(block) * np.sqrt(np.abs(block)) * 127.5), -127, 127).astype(np.int8)
    q[:, ~block.any(axis=0)] = -128
    return q


def make_data(folder: Path, tile: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "raw"
    if not (raw / "embedding.tif").exists():
        subprocess.run([sys.executable, str(SHARED / "make_synthetic.py"), "--out", str(raw),
                        "--emb-size", str(2 * tile)], check=True)
    merged = folder / "merged.tif"
    if not merged.exists():
        with rasterio.open(raw / "embedding.tif") as src:
            profile = {**AEF_PROFILE, "width": src.width, "height": src.height, "count": src.count,
                       "crs": src.crs, "transform": src.transform}
            with rasterio.open(merged, "w", **profile) as dst:
                for _, w in src.block_windows(1):
                    dst.write(_encode(src.read(window=w)), window=w)
                dst.descriptions = tuple(f"A{i:02d}" for i in range(src.count))
    tiles = []
    for r, c in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        path = folder / "tiles" / f"aef-{r * tile:010d}-{c * tile:010d}.tiff"
        tiles.append(path)
        if path.exists():
            continue
        path.parent.mkdir(exist_ok=True)
        with rasterio.open(merged) as src:
            win = Window(c * tile, r * tile, tile, tile)
            data = src.read(window=win)
            t = src.window_transform(win)
            crs = src.crs
            if c == 1:  # the eastern tiles, in their own zone
                dst_crs = CRS.from_epsg(32721)
                left, top = t.c, t.f
                right, bottom = left + tile * t.a, top + tile * t.e
                dt, w, h = calculate_default_transform(crs, dst_crs, tile, tile, left, bottom, right, top,
                                                       resolution=10.0)
                out = np.full((src.count, h, w), -128, np.int8)
                reproject(data, out, src_transform=t, src_crs=crs, dst_transform=dt, dst_crs=dst_crs,
                          resampling=Resampling.nearest, src_nodata=-128, dst_nodata=-128)
                data, t, crs = out, dt, dst_crs
            # stored south-up, as the public COGs are
            h = data.shape[1]
            south_up = Affine(t.a, 0, t.c, 0, -t.e, t.f + h * t.e)
            profile = {**AEF_PROFILE, "width": data.shape[2], "height": h, "count": data.shape[0], "crs": crs,
                       "transform": south_up}
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data[:, ::-1, :])
                dst.descriptions = tuple(f"A{i:02d}" for i in range(data.shape[0]))
    return {"merged": merged, "tiles": tiles, "esa": raw / "esa_worldcover.tif"}


def merge_by_hand(tiles: list[Path], out: Path, like: Path) -> None:
    """What the user did: warp every tile into one file on the merged grid (nearest)."""
    with rasterio.open(like) as ref:
        profile = ref.profile
        grid_t, grid_crs, shape = ref.transform, ref.crs, (ref.count, ref.height, ref.width)
    dest = np.full(shape, -128, np.int8)
    for path in tiles:
        with rasterio.open(path) as src:
            reproject(src.read(), dest, src_transform=src.transform, src_crs=src.crs, dst_transform=grid_t,
                      dst_crs=grid_crs, resampling=Resampling.nearest, src_nodata=-128, dst_nodata=-128,
                      init_dest_nodata=False)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(dest)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "bench-data" / "coll")
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--n-points", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "collection.json")
    ap.add_argument("--prepare-only", action="store_true", help="write the data and stop")
    args = ap.parse_args()

    from sklearn.ensemble import RandomForestClassifier

    from lcmodel.extract import extract_values
    from lcmodel.predict import predict_raster
    from lcmodel.reference import sample_raster_points
    from lcmodel.sources import open_collection
    from lcmodel.sources.extraction import extract_collection

    t0 = time.perf_counter()
    data = make_data(args.data, args.tile)
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.prepare_only:
        return
    ident = lambda p: {"name": Path(p).name}  # noqa: E731
    coll = open_collection([str(p) for p in data["tiles"]], what="embedding raster", key="embedding.path",
                           identity=ident)
    one = open_collection(str(data["merged"]), what="embedding raster", key="embedding.path", identity=ident)
    results: dict[str, Any] = {"tile": args.tile, "n_tiles": len(coll), "crss": [c.to_epsg() for c in coll.crss],
                               "pixels_collection": sum(t.width * t.height for t in coll),
                               "pixels_merged": one.first.width * one.first.height}

    def run(name: str, fn: Any) -> Any:
        with Stage(name) as st:
            value = fn()
        results[name] = st.result
        print(name, json.dumps(results[name], default=str)[:300], flush=True)
        return value

    with rasterio.open(data["esa"]) as src:
        esa_crs = src.crs
    pts_c = run("sampling_collection", lambda: sample_raster_points(
        data["esa"], args.n_points, random_state=0, footprint=coll.footprint_in(esa_crs)))
    pts_m = run("sampling_merged", lambda: sample_raster_points(
        data["esa"], args.n_points, random_state=0, footprint=one.footprint_in(esa_crs)))
    lon, lat = pts_c.table["x"].to_numpy(), pts_c.table["y"].to_numpy()
    x, y = Transformer.from_crs(esa_crs, coll.crs, always_xy=True).transform(lon, lat)
    x, y = np.asarray(x), np.asarray(y)
    ex_c = run("extraction_collection", lambda: extract_collection(coll, x, y, coll.crs))
    xm, ym = Transformer.from_crs(esa_crs, one.crs, always_xy=True).transform(lon, lat)
    ex_m = run("extraction_merged", lambda: extract_values(data["merged"], np.asarray(xm), np.asarray(ym)))
    results["points"] = {"n": int(lon.size), "valid_collection": int(ex_c.valid.sum()),
                         "valid_merged": int(ex_m.valid.sum()), "merged_points_drawn": len(pts_m.table)}
    run("merge_by_hand", lambda: merge_by_hand(data["tiles"], args.data / "merged_by_hand.tif", data["merged"]))

    from lcmodel.classes import ClassTable
    from lcmodel.embedding import NodataRule
    from lcmodel.model_io import ModelBundle, current_versions

    ok = ex_m.valid
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=2)
    forest.fit(ex_m.values[ok], pts_c.table["code"].to_numpy()[ok].astype(int))
    # no CRS recorded: the same forest maps tiles of both zones (the features do not depend on the CRS)
    bundle = ModelBundle(estimator=forest, band_names=list(ex_m.band_names), crs_wkt=None,
                         nodata_rule=NodataRule(dtype="int8", nodata=-128.0, dequantize="aef_int8"),
                         class_table=ClassTable.from_labels(forest.classes_), config={}, training_table_sha256=None,
                         versions=current_versions(), created="bench")
    maps = args.data / "maps"
    maps.mkdir(exist_ok=True)

    def predict_tiles() -> None:
        for i, tile in enumerate(coll):
            predict_raster(bundle, tile.path, maps / f"tile{i}.tif", n_jobs=2)

    run("prediction_collection", predict_tiles)
    run("prediction_merged", lambda: predict_raster(bundle, data["merged"], maps / "merged.tif", n_jobs=2))
    ratios = {}
    for stage in ("sampling", "extraction", "prediction"):
        c, m = results[f"{stage}_collection"], results[f"{stage}_merged"]
        ratios[stage] = {"wall": c["wall_s"] / m["wall_s"], "peak_mb": c["peak_mb"] / m["peak_mb"]}
    results["ratios_collection_over_merged"] = ratios
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"{'stage':<12} {'wall ratio':>10} {'peak-memory ratio':>18}")
    for stage, r in ratios.items():
        print(f"{stage:<12} {r['wall']:>10.2f} {r['peak_mb']:>18.2f}")
    print(f"merge by hand (avoided): {results['merge_by_hand']['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
