"""Benchmark: embedding extraction at points, lcmodel's block-grouped reader vs the notebook's ``src.sample``.

The notebook reads ``np.array(list(src.sample(coords)))``: one 1 x 1 window per point. While GDAL's block cache
holds the decoded raster (the 2048 x 2048 x 64 float32 case, 1.07 GB decoded) it pays ~0.2-0.5 ms of Python/GDAL
overhead per point on top of decoding each tile once; when it does not (the 4096 case, 4.3 GB decoded, default
GDAL_CACHEMAX = 5 % of RAM), points in random order decode a whole 16.8 MB tile almost every time.
``lcmodel.extract.extract_values`` groups the points by tile and decodes every touched tile once, with threads.

Points: ``--n-points`` (10,000) uniform random points inside the raster bounds, from
``numpy.random.default_rng(--seed)``. Every measurement runs in a fresh Python process (cold GDAL block cache,
the file already in the OS page cache). The baseline is capped at ``--baseline-cap`` points on cases that do
not fit the block cache and extrapolated linearly to ``--n-points`` (said in the output). Before timing, the
two methods' values are checked to be identical on the baseline's points.

    python benchmarks/bench_extract.py [--data ../bench-data] [--cases 2048,4096] \
        [--out benchmarks/results/extract.json]

The machine has 2 cores shared with other work: ``others_cpu`` is the average number of cores that OTHER
processes kept busy during a measurement (0..2), and ``cpu_s`` the measurement's own CPU time, which is less
sensitive to contention than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _points(path: str, n: int, seed: int) -> tuple[Any, Any]:
    import numpy as np
    import rasterio

    with rasterio.open(path) as src:
        b = src.bounds
    rng = np.random.default_rng(seed)
    return rng.uniform(b.left, b.right, n), rng.uniform(b.bottom, b.top, n)


def worker(
    method: str, path: str, n: int, seed: int, threads: int, save: str | None, limit: int | None
) -> dict[str, Any]:
    """One timed measurement in this (fresh) process, on the first ``limit`` of the ``n`` points."""
    import numpy as np
    import psutil
    import rasterio

    sys.path.insert(0, str(ROOT))
    from lcmodel.extract import extract_values

    x, y = _points(path, n, seed)
    if limit is not None:
        x, y, n = x[:limit], y[:limit], min(n, limit)
    proc = psutil.Process()
    sys_before = psutil.cpu_times()
    cpu_before = proc.cpu_times()
    t0 = time.perf_counter()
    if method == "notebook":
        with rasterio.open(path) as src:
            coords = list(zip(x, y, strict=True))
            values = np.array(list(src.sample(coords)))
        valid = None
    else:
        ext = extract_values(path, x, y, n_threads=threads)
        values, valid = ext.values, ext.valid
    wall = time.perf_counter() - t0
    cpu_after = proc.cpu_times()
    sys_after = psutil.cpu_times()
    own = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    busy = sum(getattr(sys_after, f) - getattr(sys_before, f) for f in ("user", "nice", "system", "irq", "softirq"))
    if save:
        np.save(save, values)
        if valid is not None:
            np.save(save.replace(".npy", "_valid.npy"), valid)
    return {"wall_s": wall, "cpu_s": own, "others_cpu": max(0.0, (busy - own) / wall), "n": n}


def _run_worker(
    method: str, path: str, n: int, seed: int, threads: int, save: str | None, limit: int | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", method, "--path", path, "--n-points", str(n),
           "--seed", str(seed), "--threads", str(threads)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    if save:
        cmd += ["--save", save]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _warm_page_cache(path: str) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - t0


def _cache_bytes() -> int:
    """GDAL's block cache size: GDAL_CACHEMAX if set (MB or %), else GDAL's default of 5 % of RAM."""
    import psutil

    ram = psutil.virtual_memory().total
    value = os.environ.get("GDAL_CACHEMAX")
    if value:
        if value.endswith("%"):
            return int(ram * float(value[:-1]) / 100)
        number = float(value)
        return int(number * 1024 * 1024) if number < 100000 else int(number)
    return int(ram * 0.05)


def bench_case(path: str, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import rasterio

    with rasterio.open(path) as src:
        decoded = src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
        info = {"path": path, "size": [src.height, src.width, src.count], "block": list(src.block_shapes[0]),
                "dtype": src.dtypes[0], "decoded_gb": decoded / 1e9}
    cache = _cache_bytes()
    fits = decoded < cache * 0.95
    info["gdal_cache_gb"] = cache / 1e9
    info["fits_block_cache"] = fits
    info["page_cache_warm_s"] = _warm_page_cache(path)
    n = args.n_points
    n_base = n if fits else min(n, args.baseline_cap)
    with tempfile.TemporaryDirectory() as tmp:
        base_file, ours_file = f"{tmp}/base.npy", f"{tmp}/ours.npy"
        base = _run_worker("notebook", path, n, args.seed, 1, base_file, limit=n_base)
        ours_runs = []
        for i in range(args.repeats):
            ours_runs.append(_run_worker("lcmodel", path, n, args.seed, args.threads, ours_file if i == 0 else None))
        one_thread = _run_worker("lcmodel", path, n, args.seed, 1, None)
        # Identical values on the baseline's points (the first n_base of the same seeded draw).
        b = np.load(base_file)
        o = np.load(ours_file)[:n_base]
        valid = np.load(ours_file.replace(".npy", "_valid.npy"))[:n_base]
        assert np.array_equal(o[valid], b[valid].astype(np.float32)), "values differ from src.sample"
        assert not b[~valid].any(), "points we call nodata are not all-zero in src.sample"
        info["identical_values"] = True
        info["n_valid"] = int(valid.sum())
    scale = n / n_base
    base_wall = base["wall_s"] * scale
    ours_wall = statistics.median(r["wall_s"] for r in ours_runs)
    info.update(
        n_points=n,
        baseline={**base, "n_timed": n_base, "extrapolated": n_base < n, "wall_s_at_n": base_wall,
                  "cpu_s_at_n": base["cpu_s"] * scale},
        lcmodel={"threads": args.threads, "runs": ours_runs, "wall_s_median": ours_wall,
                 "wall_s_min": min(r["wall_s"] for r in ours_runs),
                 "cpu_s_median": statistics.median(r["cpu_s"] for r in ours_runs)},
        lcmodel_1_thread=one_thread,
        speedup_wall=base_wall / ours_wall,
        speedup_wall_best=base_wall / min(r["wall_s"] for r in ours_runs),
        speedup_1_thread=base_wall / one_thread["wall_s"],
    )
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "bench-data"))
    p.add_argument("--cases", default="2048,4096")
    p.add_argument("--n-points", type=int, default=10000)
    p.add_argument("--baseline-cap", type=int, default=1500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "extract.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.n_points, args.seed, args.threads, args.save, args.limit)))
        return

    import psutil

    results: dict[str, Any] = {
        "machine": {"cpus": psutil.cpu_count(), "ram_gb": psutil.virtual_memory().total / 1e9,
                    "loadavg_start": os.getloadavg()},
        "points": f"{args.n_points} uniform random points inside the raster bounds, default_rng({args.seed})",
        "cases": {},
    }
    for size in args.cases.split(","):
        path = str(Path(args.data) / f"e{size}" / "embedding.tif")
        if not Path(path).exists():
            print(f"skip {size}: {path} missing", file=sys.stderr)
            continue
        results["cases"][size] = bench_case(path, args)
    results["machine"]["loadavg_end"] = os.getloadavg()

    print(f"{'case':>6} {'fits cache':>10} {'notebook s':>11} {'lcmodel s (2t)':>15} {'1 thread s':>11} "
          f"{'speedup':>8} {'others_cpu':>10}")
    for size, r in results["cases"].items():
        base = r["baseline"]
        note = f" (timed {base['n_timed']}, extrapolated)" if base["extrapolated"] else ""
        others = max([base["others_cpu"]] + [x["others_cpu"] for x in r["lcmodel"]["runs"]])
        print(f"{size:>6} {str(r['fits_block_cache']):>10} {base['wall_s_at_n']:>11.2f} "
              f"{r['lcmodel']['wall_s_median']:>15.2f} {r['lcmodel_1_thread']['wall_s']:>11.2f} "
              f"{r['speedup_wall']:>7.1f}x {others:>10.2f}{note}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
