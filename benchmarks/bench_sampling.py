"""Benchmark: stratified reference sampling, lcmodel's two-pass block sampler vs the notebook's method.

The notebook reads the whole class raster, builds ``np.where`` indices of every valid pixel and draws per class
with ``np.random.choice`` (about 27 bytes per pixel: ~35 GB for a full 36000 x 36000 WorldCover tile, which does
not fit in this machine's memory). So the notebook's method runs on a window that fits (the 4080 x 5160 Sao Tome
window by default), and lcmodel's sampler runs on both the window and the full tile.

Each case runs in a fresh Python process, so its peak RSS (kernel high-water mark, and the process tree sampled
by ``benchutil.Stage``) is its own; ``rss_start_mb`` is the interpreter + imports baseline.

    python benchmarks/bench_sampling.py [--out benchmarks/results/sampling.json] [--n-points 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BENCH_UTIL = SHARED / "bench"
FULL_TILE = SHARED / "data" / "worldcover" / "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif"
WINDOW = SHARED / "data" / "worldcover" / "worldcover2021_saotome_window.tif"


def notebook_sample(path: str, n_esa_sample: int, seed: int) -> int:
    """The notebook's 'Read or prepare the reference data' cell (as in ../shared/bench/seed_baseline.py)."""
    import numpy as np
    import pandas as pd
    import rasterio
    from rasterio.transform import xy

    np.random.seed(seed)  # the notebook has no seed; seed_baseline.py --seed adds this
    with rasterio.open(path) as src:
        data = src.read(1)
        transform = src.transform
        nodata = src.nodata
    if nodata is not None:
        mask = data != nodata
        data_valid = data[mask]
    else:
        data_valid = data
    classes, counts = np.unique(data_valid, return_counts=True)
    total_pixels = counts.sum()
    proportions = counts / total_pixels
    samples_per_class = np.round(proportions * n_esa_sample).astype(int)
    diff = n_esa_sample - samples_per_class.sum()
    samples_per_class[np.argmax(samples_per_class)] += diff
    rows, cols = np.where(mask if nodata is not None else np.ones_like(data, dtype=bool))
    df_list = []
    for cls, n_cls in zip(classes, samples_per_class, strict=True):
        if n_cls == 0:
            continue
        idx = np.where(data[rows, cols] == cls)[0]
        if len(idx) < n_cls:
            n_cls = len(idx)
        chosen = np.random.choice(idx, size=n_cls, replace=False)
        r = rows[chosen]
        c = cols[chosen]
        lon, lat = xy(transform, r, c)
        df_list.append(pd.DataFrame({"esa": cls, "lon": lon, "lat": lat}))
    df = pd.concat(df_list, ignore_index=True)
    return len(df)


def lcmodel_sample(path: str, n_points: int, seed: int, n_threads: int) -> int:
    from lcmodel.reference import sample_raster_points

    return len(sample_raster_points(path, n_points, random_state=seed, n_threads=n_threads))


def run_case(method: str, path: str, n_points: int, seed: int, n_threads: int) -> dict[str, Any]:
    """Run one case in this process and return the Stage result (called in a child process)."""
    sys.path.insert(0, str(BENCH_UTIL))
    sys.path.insert(0, str(ROOT))
    import numpy  # noqa: F401  (imports before the stage starts: they are not the method's cost)
    import pandas  # noqa: F401
    import rasterio
    from benchutil import Stage  # type: ignore[import-not-found]

    import lcmodel.reference  # noqa: F401

    with rasterio.open(path) as src:
        shape = [src.height, src.width]
    with Stage(f"{method}:{Path(path).name}", quiet=True) as stage:
        if method == "notebook":
            n = notebook_sample(path, n_points, seed)
        else:
            n = lcmodel_sample(path, n_points, seed, n_threads)
    return dict(stage.result, method=method, raster=Path(path).name, shape=shape, n_points=n)


def spawn(method: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--child", method, str(path),
        "--n-points", str(args.n_points), "--seed", str(args.seed), "--n-threads", str(args.n_threads),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        return dict(method=method, raster=path.name, error=(proc.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sampling.json"))
    ap.add_argument("--n-points", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the table shows the fastest")
    ap.add_argument("--window", default=str(WINDOW), help="raster small enough for the notebook's method")
    ap.add_argument(
        "--full", default=str(FULL_TILE), help="full tile (lcmodel only: the notebook's way needs ~35 GB)"
    )
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(run_case(args.child[0], args.child[1], args.n_points, args.seed, args.n_threads)))
        return

    cases = [("notebook", Path(args.window)), ("lcmodel", Path(args.window)), ("lcmodel", Path(args.full))]
    runs: list[dict[str, Any]] = []
    for method, path in cases:
        for i in range(args.repeat):
            result = spawn(method, path, args)
            result["run"] = i
            runs.append(result)
            print(f"  {method:8s} {path.name}: {result.get('wall_s', result.get('error'))} s", file=sys.stderr)

    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        if "error" in r:
            continue
        key = (r["method"], r["raster"])
        if key not in best or r["wall_s"] < best[key]["wall_s"]:
            best[key] = r
    nb = best.get(("notebook", Path(args.window).name))
    ours_w = best.get(("lcmodel", Path(args.window).name))
    ratios = {}
    if nb and ours_w:
        ratios = {
            "window_wall_notebook_over_lcmodel": round(nb["wall_s"] / ours_w["wall_s"], 2),
            "window_peak_notebook_over_lcmodel": round(nb["peak_mb"] / ours_w["peak_mb"], 2),
            "window_extra_mem_notebook_over_lcmodel": round(
                (nb["peak_mb"] - nb["rss_start_mb"]) / max(1.0, ours_w["peak_mb"] - ours_w["rss_start_mb"]), 2
            ),
        }

    header = f"{'method':9s} {'raster':52s} {'pixels':>14s} {'points':>7s} {'wall s':>7s} " \
             f"{'cpu s':>6s} {'peak MB':>8s} {'start MB':>8s} {'others':>6s}"
    print(header)
    print("-" * len(header))
    for (method, raster), r in best.items():
        px = r["shape"][0] * r["shape"][1]
        print(
            f"{method:9s} {raster:52s} {px:14,d} {r['n_points']:7d} {r['wall_s']:7.2f} {r['cpu_s']:6.2f} "
            f"{r['peak_mb']:8.0f} {r['rss_start_mb']:8.0f} {r['others_cpu']:6.2f}"
        )
    print("notebook on the full tile: not run (~35 GB needed, the machine has 24 GB; see BUGS.md #15)")
    for k, v in ratios.items():
        print(f"{k}: {v}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"best": list(best.values()), "ratios": ratios, "runs": runs,
                               "n_threads": args.n_threads, "cpu_count": os.cpu_count()}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
