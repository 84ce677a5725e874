"""Benchmark: whole-raster prediction, the notebook's loop vs lcmodel vs pyspatialml, same forest, one command.

    python benchmarks/bench_predict.py [--data ../bench-data/e2048] [--notebook-dir DIR] [--pyspatialml-python P]

Everything predicts the WHOLE synthetic 2048 x 2048 x 64 raster (4.19 M pixels, 16 windows of 512 x 512) with
the same 400-tree forest: the notebook's tuned ``best_model.pkl`` from a ``bench_pipeline.py`` run (its
``pipeline-work/notebook`` folder, ``--notebook-dir``). Each variant runs in a fresh process, one after the
other, measured by ../shared/bench/benchutil.Stage (wall, CPU of the process tree, peak RSS of the tree, load
from other processes):

1. ``notebook``: seed_baseline.py ``--stages predict --ncore 2``: the notebook's 512 x 512 loop, ``predict``
   with the forest's own two threads, every pixel predicted (nodata too).
2. ``ours compiled n_jobs=1`` and ``n_jobs=2``: ``predict_raster`` with the default engine (the compiled
   forest, lcmodel.forest; threads), and ``ours sklearn n_jobs=2``: the same with ``engine="sklearn"``
   (scikit-learn on two threads). All three write byte-identical maps (checked).
3. ``pyspatialml`` (when ``--pyspatialml-python`` names a venv's python; ``benchmarks/setup_pyspatialml.sh``
   makes one): benchmarks/bench_pyspatialml.py, ``Raster.predict`` on the same training table and parameters.
4. The read floor: every internal block read and decoded with two threads, no model.

Pixels per second count ALL raster pixels over the wall time of the whole call (the notebook's own measure);
lcmodel skips the nodata pixels (3.7 % here) and writes a COG with overviews, the notebook a plain GeoTIFF.
Results: ``benchmarks/results/predict.json`` (``--out``); a ratio table is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
if not SHARED.exists():
    SHARED = Path("/work/shared")
BENCH = SHARED / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "benchmarks"))

OURS = [("auto", 1), ("auto", 2), ("sklearn", 2)]  # auto = the compiled forest for this forest


def run_notebook(data: Path, nb_dir: Path, work: Path) -> dict[str, Any]:
    """seed_baseline.py's predict stage over the whole raster, with the notebook run's own forest."""
    out = work / "notebook-predict"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(nb_dir / "best_model.pkl", out / "best_model.pkl")
    cmd = [
        sys.executable, str(BENCH / "seed_baseline.py"), "--ref", str(data / "esa_worldcover.tif"),
        "--embedding", str(data / "embedding.tif"), "--class-table", str(data / "classes_esa.csv"),
        "--out", str(out), "--stages", "predict", "--ncore", "2",
    ]
    with open(out / "stdout.log", "w") as log:  # its per-window sklearn warnings too
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    lines = [json.loads(x) for x in (out / "stages.jsonl").read_text().splitlines() if x.strip()]
    stage = next(x for x in lines if x.get("stage") == "predict_blocks")
    summary = next(x for x in lines if x.get("stage") == "predict_summary")
    return {**stage, **summary, "map": str(out / "lc_prediction.tif")}


def run_ours(engine: str, n_jobs: int, data: Path, nb_dir: Path, work: Path) -> dict[str, Any]:
    """One lcmodel variant in a fresh process (this script with ``--one``)."""
    out = work / f"ours-{engine}-{n_jobs}.json"
    cmd = [sys.executable, __file__, "--one", engine, str(n_jobs), "--data", str(data),
           "--notebook-dir", str(nb_dir), "--work", str(work), "--out", str(out)]
    subprocess.run(cmd, check=True)
    return dict(json.loads(out.read_text()))


def one(engine: str, n_jobs: int, data: Path, nb_dir: Path, work: Path, out: Path) -> None:
    """Measured in this process: load the bundle, then predict_raster over the whole raster."""
    import joblib
    import numpy as np
    import rasterio
    from benchutil import Stage

    from lcmodel.classes import read_class_table
    from lcmodel.embedding import NodataRule, band_names
    from lcmodel.model_io import ModelBundle
    from lcmodel.predict import predict_raster

    emb = data / "embedding.tif"
    target = work / f"ours-{engine}-{n_jobs}.tif"
    with Stage(f"ours_{engine}_{n_jobs}", quiet=True) as st:
        forest = joblib.load(nb_dir / "best_model.pkl")
        forest.classes_ = forest.classes_.astype(np.int64)  # float labels after the notebook's CSV round trip
        with rasterio.open(emb) as src:
            rule, names, crs = NodataRule.detect(src), band_names(src), src.crs.to_wkt()
        bundle = ModelBundle(
            estimator=forest, band_names=list(getattr(forest, "feature_names_in_", names)), crs_wkt=crs,
            nodata_rule=rule, class_table=read_class_table(data / "classes_esa.csv"), config={},
            training_table_sha256=None, versions={}, created="benchmark",
        )
        summary = predict_raster(bundle, emb, target, block_size=512, n_jobs=n_jobs, engine=engine)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    result = {**st.result, "engine": summary.engine, "n_jobs": n_jobs, "pixels": summary.n_pixels,
              "valid": summary.n_valid, "px_per_s": summary.n_pixels / st.result["wall_s"], "map": str(target),
              "map_sha256": digest}
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"  ours {engine} n_jobs={n_jobs}: {result['wall_s']:.1f} s, {result['px_per_s']:.0f} px/s, "
          f"peak {result['peak_mb']:.0f} MB (others_cpu {result['others_cpu']})", flush=True)


def agreement(map_a: str, map_b: str) -> dict[str, Any]:
    """Share of pixels where two class maps agree, over the pixels both classified."""
    import numpy as np
    import rasterio

    with rasterio.open(map_a) as a, rasterio.open(map_b) as b:
        x, y = a.read(1), b.read(1)
        nx, ny = a.nodata, b.nodata
    both = np.ones(x.shape, dtype=bool)
    if nx is not None:
        both &= x != nx
    if ny is not None:
        both &= y != ny
    return {"pixels_compared": int(both.sum()), "agree": float(np.mean(x[both] == y[both])) if both.any() else None}


def run_pyspatialml(python: Path, data: Path, nb_dir: Path, work: Path) -> dict[str, Any] | None:
    script = ROOT / "benchmarks" / "bench_pyspatialml.py"
    if not python.exists() or not script.exists():
        print(f"  pyspatialml skipped: {python} or {script} missing (benchmarks/setup_pyspatialml.sh)")
        return None
    out = work / "pyspatialml"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(python), str(script), "--embedding", str(data / "embedding.tif"), "--notebook-dir", str(nb_dir),
           "--out", str(out), "--n-jobs", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(cmd, check=True, env=env)
    return dict(json.loads((out / "pyspatialml.json").read_text()))


def table(res: dict[str, Any]) -> str:
    nb = res["notebook"]
    floor = res["read_floor"]["px_per_s"]
    rows = [("variant", "px/s", "x notebook", "peak MB", "time / read floor", "others_cpu")]

    def row(name: str, r: dict[str, Any]) -> None:
        rows.append((name, f"{r['px_per_s']:.0f}", f"{r['px_per_s'] / nb['px_per_s']:.2f}",
                     f"{r['peak_mb']:.0f}", f"{floor / r['px_per_s']:.1f}", f"{r.get('others_cpu', '')}"))

    row("notebook (sklearn predict, n_jobs=2)", nb)
    for key, r in res["ours"].items():
        row(f"lcmodel {key}", r)
    if res.get("pyspatialml"):
        row("pyspatialml Raster.predict (n_jobs=2)", res["pyspatialml"])
    rows.append(("read floor (2 threads, no model)", f"{floor:.0f}", "", "", "1.0", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "bench-data" / "e2048")
    ap.add_argument("--notebook-dir", type=Path, default=None,
                    help="a bench_pipeline.py notebook folder with best_model.pkl (default: DATA/../pipeline-work/"
                         "notebook)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: DATA/../predict-work)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict.json")
    ap.add_argument("--pyspatialml-python", type=Path, default=ROOT / ".venv-pyspatialml" / "bin" / "python")
    ap.add_argument("--one", nargs=2, metavar=("ENGINE", "N_JOBS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = args.data.resolve()
    nb_dir = (args.notebook_dir or data.parent / "pipeline-work" / "notebook").resolve()
    work = (args.work or data.parent / "predict-work").resolve()
    if args.one:
        one(args.one[0], int(args.one[1]), data, nb_dir, work, args.out)
        return
    if not (nb_dir / "best_model.pkl").exists():
        raise SystemExit(f"{nb_dir / 'best_model.pkl'} is missing; run benchmarks/bench_pipeline.py first")
    work.mkdir(parents=True, exist_ok=True)
    from bench_pipeline import read_floor

    res: dict[str, Any] = {"started": time.ctime(), "data": str(data), "forest": str(nb_dir / "best_model.pkl")}
    print("notebook predict stage ...", flush=True)
    res["notebook"] = run_notebook(data, nb_dir, work)
    print(f"  notebook: {res['notebook']['wall_s']:.1f} s, {res['notebook']['px_per_s']:.0f} px/s", flush=True)
    ours = [run_ours(e, n, data, nb_dir, work) for e, n in OURS]
    res["ours"] = {f"{r['engine']} n_jobs={r['n_jobs']}": r for r in ours}
    digests = {r["map_sha256"] for r in res["ours"].values()}
    res["ours_maps_identical"] = len(digests) == 1
    res["agreement_with_notebook"] = agreement(next(iter(res["ours"].values()))["map"], res["notebook"]["map"])
    res["pyspatialml"] = run_pyspatialml(args.pyspatialml_python, data, nb_dir, work)
    if res["pyspatialml"] and res["pyspatialml"].get("prediction_path"):
        res["pyspatialml"]["agreement_with_ours"] = agreement(
            next(iter(res["ours"].values()))["map"], res["pyspatialml"]["prediction_path"]
        )
    res["read_floor"] = read_floor(data / "embedding.tif")
    text = table(res)
    res["table"] = text.splitlines()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(text)
    print(f"lcmodel maps identical across engines and n_jobs: {res['ours_maps_identical']}; "
          f"agreement with the notebook's map on valid pixels: {res['agreement_with_notebook']}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
