"""Benchmark: embedding extraction from a remote COG (HTTP range requests) vs the same file on local disk.

Data: a seeded 1024 x 1024 x 64 int8 raster (values -127..127, incompressible: the worst case for bytes),
ZSTD, 256 px internal tiles (16 tiles), written in two layouts: ``pixel`` (a COG, all bands in one block per
tile) and ``separate`` (the public AlphaEarth layout: one block per band and tile, header first).
Points: ``--n-points`` uniform random points in the top-left 512 x 512 pixels (4 of the 16 tiles), from
``numpy.random.default_rng(--seed)``.

The remote file is served by tests/remote_servers.py's RangeServer (a Python HTTP/1.1 server on 127.0.0.1 in
a child process, counting requests and body bytes), with ``--latency-ms`` added to every answer to stand for
a network's round trip. Every measurement runs in a fresh Python process (cold GDAL caches) under a fresh URL
prefix; values are checked to equal the local extraction. Reported: wall time (median of ``--repeats``),
requests (HEAD + GET), those of opening alone, GETs for data (all GETs minus opening's), bytes, touched
tiles, data GETs per touched tile, and whether any byte was fetched twice. The one-thread remote case is also
run with VSI_CACHE=TRUE (``vsi_cache``) and with GDAL_NUM_THREADS=1 (``no_gdal_threads``: the user's setting
wins over lcmodel's NUM_THREADS open option, so each block is fetched in turn).

    python benchmarks/bench_remote.py [--out benchmarks/results/remote.json]
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
SIZE, TILE, BANDS = 1024, 256, 64
#: the remote runs: lcmodel's defaults, plus VSI_CACHE on, and GDAL's threads off (no NUM_THREADS open option)
VARIANTS = {"default": {}, "vsi_cache": {"VSI_CACHE": "TRUE"}, "no_gdal_threads": {"GDAL_NUM_THREADS": "1"}}


def make_data(folder: Path, seed: int) -> dict[str, Path]:
    import numpy as np
    from rasterio.shutil import copy as copy_raster

    sys.path.insert(0, str(ROOT))
    from tests.rasters import write_raster

    rng = np.random.default_rng(seed)
    data = rng.integers(-127, 128, size=(BANDS, SIZE, SIZE), dtype=np.int8)
    plain = write_raster(folder / "plain.tif", data, nodata=-128, blocksize=TILE,
                         descriptions=[f"A{b:02d}" for b in range(BANDS)])
    out = {"pixel": folder / "pixel.tif", "separate": folder / "separate.tif"}
    copy_raster(plain, out["pixel"], driver="COG", BLOCKSIZE=TILE, COMPRESS="ZSTD", OVERVIEWS="NONE")
    copy_raster(plain, out["separate"], driver="GTiff", TILED="YES", BLOCKXSIZE=TILE, BLOCKYSIZE=TILE,
                INTERLEAVE="BAND", COMPRESS="ZSTD", COPY_SRC_OVERVIEWS="YES")
    plain.unlink()
    return out


def points(path: str, n: int, seed: int) -> tuple[Any, Any]:
    import numpy as np
    import rasterio

    with rasterio.open(path) as src:
        t = src.transform
    rng = np.random.default_rng(seed)
    cols, rows = rng.uniform(0, SIZE / 2, n), rng.uniform(0, SIZE / 2, n)
    return t.c + cols * t.a, t.f + rows * t.e


def worker(path: str, local: str, n: int, seed: int, threads: int) -> dict[str, Any]:
    """One timed extraction in this fresh process (``threads`` 0: only open the file); checks the values
    against the local file's."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from lcmodel.extract import extract_values
    from lcmodel.io import open_raster

    x, y = points(local, n, seed)
    started = time.perf_counter()
    with open_raster(path):
        opened_s = time.perf_counter() - started
    if threads == 0:
        return {"wall_s": opened_s, "open_s": opened_s}
    result = extract_values(path, x, y, n_threads=threads)
    wall = time.perf_counter() - started
    if path != local:
        assert np.array_equal(result.values, extract_values(local, x, y).values), "remote != local"
    return {"wall_s": wall, "open_s": opened_s}


def run_worker(path: str, local: str, args: argparse.Namespace, threads: int,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", path, local, str(args.n_points), str(args.seed), str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=600)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def touched_spans(path: Path, x: Any, y: Any) -> tuple[int, list[tuple[int, int]]]:
    """Touched tiles and the byte spans of their blocks (every band's block when separate)."""
    import rasterio

    sys.path.insert(0, str(ROOT))
    from lcmodel.geo import pixel_index

    with rasterio.open(path) as src:
        row, col, inside = pixel_index(src.transform, x, y, src.height, src.width)
        tiles = {(int(r) // TILE, int(c) // TILE) for r, c in zip(row[inside], col[inside], strict=True)}
        bands = range(1, BANDS + 1) if src.interleaving.name == "band" else [1]
        spans = []
        for b in bands:
            for r, c in tiles:
                off = int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=b))
                size = int(src.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=b))
                spans.append((off, off + size - 1))
    return len(tiles), spans


def measure(args: argparse.Namespace, files: dict[str, Path], folder: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from tests.remote_servers import RangeServer

    rows: list[dict[str, Any]] = []
    with RangeServer(folder, latency_s=args.latency_ms / 1000) as server:
        for layout, path in files.items():
            n_tiles, spans = touched_spans(path, *points(str(path), args.n_points, args.seed))
            server.reset()
            run_worker(server.url(path.name), str(path), args, 0)  # what opening alone costs
            open_log = server.stats()[path.name]
            open_gets = sum(1 for m in open_log.methods if m == "GET")
            for threads in (1, 2):
                local = [run_worker(str(path), str(path), args, threads) for _ in range(args.repeats)]
                for variant, extra in VARIANTS.items():
                    if variant != "default" and threads == 2:
                        continue
                    env = dict(os.environ, **extra)
                    remote, counts = [], []
                    for _ in range(args.repeats):
                        server.reset()
                        remote.append(run_worker(server.url(path.name), str(path), args, threads, env))
                        counts.append(server.stats().get(path.name))
                    log = counts[-1]
                    assert log is not None
                    ranges = log.ranges
                    data_gets = sum(1 for m in log.methods if m == "GET") - open_gets
                    twice = any(a[0] <= b[1] and b[0] <= a[1] for i, a in enumerate(ranges) for b in ranges[i + 1:])
                    rows.append({
                        "layout": layout, "threads": threads, "variant": variant,
                        "file_mb": round(path.stat().st_size / 2**20, 1),
                        "local_s": round(statistics.median(r["wall_s"] for r in local), 3),
                        "remote_s": round(statistics.median(r["wall_s"] for r in remote), 3),
                        "remote_open_s": round(statistics.median(r["open_s"] for r in remote), 3),
                        "requests": log.requests, "open_requests": open_log.requests, "data_gets": data_gets,
                        "bytes_mb": round(log.bytes / 2**20, 2),
                        "touched_tiles": n_tiles, "touched_blocks": len(spans),
                        "touched_blocks_mb": round(sum(b - a + 1 for a, b in spans) / 2**20, 2),
                        "data_gets_per_tile": round(data_gets / n_tiles, 2),
                        "byte_fetched_twice": twice,
                        "other_paths": sorted(k for k in server.stats() if k != path.name),
                    })
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-points", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "remote.json")
    ap.add_argument("--worker", nargs=5, metavar=("PATH", "LOCAL", "N", "SEED", "THREADS"))
    args = ap.parse_args()
    if args.worker:
        path, local, n, seed, threads = args.worker
        print(json.dumps(worker(path, local, int(n), int(seed), int(threads))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        folder = Path(tmp)
        files = make_data(folder, args.seed)
        rows = measure(args, files, folder)
    result = {"settings": {"size": SIZE, "tile": TILE, "bands": BANDS, "n_points": args.n_points,
                           "latency_ms": args.latency_ms, "repeats": args.repeats, "seed": args.seed},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
