"""Benchmark: the notebook's method (../shared/bench/seed_baseline.py) and lcmodel side by side, one command.

    python benchmarks/bench_pipeline.py --data ../bench-data/e2048 [--quick] [--skip-zion]

What runs, in order, on the same machine and the same data (regenerated with ../shared/bench/make_synthetic.py
--emb-size 2048 into ``--data`` when its embedding.tif is missing):

1. The notebook, as seed_baseline.py runs it (all stages, ``--fix-zero-rows`` so that labels and features stay
   aligned and accuracies can be compared; ``--seed 0`` for a reproducible ESA draw; the notebook's defaults
   n_esa_sample 10000, n_sample 5000; prediction stopped after ``--predict-blocks`` 512 x 512 blocks).
   Its own sampling, split (``split.pkl``), two-stage GridSearchCV, refit, and 512 x 512 prediction loop.
2. lcmodel on the notebook's OWN training/test split (so the best parameters can be compared one to one):
   ``tune_grid`` (the exact two-stage grid), then the fast modes: ``score_on="oob"`` grid, ``tune_halving``
   (cv), ``tune_halving`` (oob) and ``tune_optuna`` (pruning; ``--optuna-trials``, ``--optuna-timeout``).
   Every mode's best parameters are refitted on the training part and scored on the same held-out test part
   (macro-F1).
3. Prediction with the same forest (the notebook's best_model.pkl): the notebook's loop on its first
   ``--predict-blocks`` blocks, and ``lcmodel.predict.predict_raster(n_jobs=2)`` on a copy of exactly those
   pixels (same tiling and compression); pixels per second.
4. The read floor: every internal block of the embedding read and decoded, no model, two threads (each with
   its own dataset handle); pixels per second. ``prediction / read-floor`` is how many times longer
   predicting a pixel takes than reading it.
5. Zion (../shared/data/zion, 4-band Landsat + NLCD 2011): lcmodel's own training table (the notebook's
   defaults n_points 10000, n_sample 5000); the notebook's two GridSearchCV stages (its grids, ``n_jobs=2`` at
   both levels) on that table, our exact grid and the fast modes; held-out macro-F1. ``--only-zion`` runs this
   section alone and replaces it in an existing ``--out`` file.

Whole-raster prediction (all 16 blocks, plus pyspatialml) is measured by ``benchmarks/bench_predict.py``.

Wall times are affected by other work on the 2 cores: every stage records ``others_cpu`` (benchutil.Stage:
the average number of cores other processes kept busy meanwhile, 0..2) and its own ``cpu_s``. Results go to
``benchmarks/results/pipeline.json`` (``--out``); a ratio table is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
if not SHARED.exists():
    SHARED = Path("/work/shared")
BENCH = SHARED / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402
from benchutil import Stage  # noqa: E402

QUICK_STAGES = [
    {"max_features": ["sqrt", "n/4"], "max_depth": [None], "min_samples_leaf": [1, 5]},
    {"n_estimators": [50, 100], "min_samples_split": [2], "class_weight": [None, "balanced"]},
]


def ensure_data(data: Path) -> None:
    if (data / "embedding.tif").exists() and (data / "esa_worldcover.tif").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    print(f"generating the synthetic 2048 case into {data} ...", flush=True)
    subprocess.run(
        [sys.executable, str(BENCH / "make_synthetic.py"), "--out", str(data), "--emb-size", "2048"], check=True
    )


def run_notebook(args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    out = work / "notebook"
    out.mkdir(parents=True, exist_ok=True)
    log = out / "stages.jsonl"
    log.unlink(missing_ok=True)
    (out / "run_summary.json").unlink(missing_ok=True)
    cmd = [
        sys.executable, str(BENCH / "seed_baseline.py"),
        "--ref", str(data / "esa_worldcover.tif"), "--embedding", str(data / "embedding.tif"),
        "--class-table", str(data / "classes_esa.csv"), "--out", str(out), "--stages", "all",
        "--fix-zero-rows", "--seed", "0", "--ncore", "2", "--max-blocks", str(args.predict_blocks),
        "--log", str(log),
    ]
    if args.quick:
        cmd.append("--quick")
    print("notebook:", " ".join(cmd), flush=True)
    with open(out / "stdout.log", "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return read_notebook(out)


def read_notebook(out: Path) -> dict[str, Any]:
    log = out / "stages.jsonl"
    stages = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        stages[rec["stage"]] = rec
    summary = json.loads((out / "run_summary.json").read_text().splitlines()[-1])
    return {"stages": stages, "summary": summary, "dir": str(out)}


def _stage(name: str, fn: Any) -> tuple[Any, dict[str, Any]]:
    with Stage(name, quiet=True) as st:
        value = fn()
    print(f"  {name}: {st.result['wall_s']:.1f} s (others_cpu {st.result['others_cpu']})", flush=True)
    return value, st.result


def _test_f1(params: dict[str, Any], X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    from lcmodel.tuning import make_forest

    forest = make_forest(params, random_state=42, n_jobs=2).fit(X, y)
    return float(f1_score(yt, forest.predict(Xt), average="macro"))


def run_tuning_modes(
    X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, stages: list[dict[str, Any]],
    args: argparse.Namespace, prefix: str,
) -> dict[str, Any]:
    from lcmodel.tuning import tune_grid, tune_halving, tune_optuna

    modes: dict[str, Any] = {
        "grid": lambda: tune_grid(X, y, stages, cv=5, n_jobs=2, random_state=42),
        "grid_oob": lambda: tune_grid(X, y, stages, cv=5, n_jobs=2, random_state=42, score_on="oob"),
        "halving": lambda: tune_halving(X, y, stages, cv=5, n_jobs=2, random_state=42),
        "halving_oob": lambda: tune_halving(X, y, stages, cv=5, n_jobs=2, random_state=42, score_on="oob"),
        "optuna": lambda: tune_optuna(
            X, y, stages, cv=5, n_jobs=2, random_state=42, n_trials=args.optuna_trials,
            timeout_s=args.optuna_timeout,
        ),
    }
    out: dict[str, Any] = {}
    for name, fn in modes.items():
        result, st = _stage(f"{prefix}_{name}", fn)
        f1 = _test_f1(result.best_params, X, y, Xt, yt)
        out[name] = {
            "wall_s": st["wall_s"], "cpu_s": st["cpu_s"], "others_cpu": st["others_cpu"],
            "peak_mb": st["peak_mb"], "best_params": result.best_params, "best_score": result.best_score,
            "n_fits": result.n_fits, "n_candidates": result.n_candidates, "test_macro_f1": f1,
            "stage_best": [s.best_params for s in result.stages],
        }
        print(f"    best {result.best_params} test macro-F1 {f1:.4f}", flush=True)
    return out


def read_floor(path: Path, n_threads: int = 2) -> dict[str, Any]:
    """Read and decode every internal block of ``path``, no model: the floor of any prediction."""
    import rasterio

    with rasterio.open(path) as src:
        windows = [w for _, w in src.block_windows(1)]

    def work(chunk: list[Any]) -> int:
        n = 0
        with rasterio.open(path) as src:
            for w in chunk:
                a = src.read(window=w)
                n += a.shape[1] * a.shape[2]
        return n

    def go() -> int:
        with ThreadPoolExecutor(n_threads) as ex:
            return sum(ex.map(work, [windows[i::n_threads] for i in range(n_threads)]))

    n, st = _stage("read_floor", go)
    return {**st, "pixels": n, "px_per_s": n / st["wall_s"]}


def crop(path: Path, out: Path, width: int, height: int) -> Path:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        w = Window(0, 0, min(width, src.width), min(height, src.height))
        profile = src.profile
        profile.update(width=int(w.width), height=int(w.height), transform=src.window_transform(w))
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=w))
            for i, d in enumerate(src.descriptions, start=1):
                if d:
                    dst.set_band_description(i, d)
    return out


def predict_ours(nb_dir: Path, data: Path, work: Path, n_blocks: int) -> dict[str, Any]:
    import joblib
    import rasterio

    from lcmodel.classes import read_class_table
    from lcmodel.embedding import NodataRule, band_names
    from lcmodel.model_io import ModelBundle
    from lcmodel.predict import predict_raster

    forest = joblib.load(nb_dir / "best_model.pkl")
    forest.classes_ = forest.classes_.astype(np.int64)  # float labels after the notebook's CSV round trip
    forest.n_jobs = 1  # predict_raster's workers each predict with one thread: one level of parallelism
    blocks_per_row = 2048 // 512
    width = 512 * min(n_blocks, blocks_per_row)
    height = 512 * int(np.ceil(n_blocks / blocks_per_row))
    sub = crop(data / "embedding.tif", work / "predict_crop.tif", width, height)
    with rasterio.open(sub) as src:
        rule = NodataRule.detect(src)
        names = band_names(src)
        crs = src.crs.to_wkt()
    bundle = ModelBundle(
        estimator=forest, band_names=list(getattr(forest, "feature_names_in_", names)), crs_wkt=crs,
        nodata_rule=rule, class_table=read_class_table(data / "classes_esa.csv"), config={},
        training_table_sha256=None, versions={}, created="benchmark",
    )
    summary, st = _stage(
        "ours_predict",
        lambda: predict_raster(bundle, sub, work / "ours_map.tif", block_size=512, n_jobs=2),
    )
    return {**st, "pixels": summary.n_pixels, "valid": summary.n_valid, "px_per_s": summary.n_pixels / st["wall_s"]}


def notebook_grid(
    X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, quick: bool, ncore: int = 2
) -> dict[str, Any]:
    """The notebook's two GridSearchCV stages, as seed_baseline.py runs them, on a given table.

    Same grids (``n_features // 16`` etc., duplicates included), ``cv=5``, ``f1_macro``, ``n_jobs=ncore`` for
    both the search and the forest; then its best estimator scored on the held-out part.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GridSearchCV

    n_features = X.shape[1]
    if quick:
        g1: dict[str, list[Any]] = {"max_features": ["sqrt", max(1, n_features // 4)], "max_depth": [None],
                                    "min_samples_leaf": [1, 5]}
        g2: dict[str, list[Any]] = {"n_estimators": [50, 100], "min_samples_split": [2],
                                    "class_weight": [None, "balanced"]}
    else:
        g1 = {"max_features": ["sqrt", "log2", max(1, n_features // 16), max(1, n_features // 8),
                               max(1, n_features // 4)], "max_depth": [None, 20, 40], "min_samples_leaf": [1, 5, 10]}
        g2 = {"n_estimators": [400, 800, 1200], "min_samples_split": [2, 10],
              "class_weight": [None, "balanced", "balanced_subsample"]}

    def run() -> GridSearchCV:
        rf = RandomForestClassifier(random_state=42, n_jobs=ncore, oob_score=False, bootstrap=True)
        s1 = GridSearchCV(rf, g1, cv=5, scoring="f1_macro", n_jobs=ncore).fit(X, y)
        rf2 = RandomForestClassifier(**s1.best_params_, random_state=42, n_jobs=ncore, bootstrap=True)
        return GridSearchCV(rf2, g2, cv=5, scoring="f1_macro", n_jobs=ncore).fit(X, y)

    search, st = _stage("notebook_grid", run)
    f1 = float(f1_score(yt, search.best_estimator_.predict(Xt), average="macro"))
    print(f"    notebook grid best {search.best_params_} test macro-F1 {f1:.4f}", flush=True)
    return {"wall_s": st["wall_s"], "cpu_s": st["cpu_s"], "others_cpu": st["others_cpu"], "peak_mb": st["peak_mb"],
            "best_params": search.best_estimator_.get_params(), "test_macro_f1": f1}


def zion(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from lcmodel.config import DEFAULT_STAGES, config_from_dict
    from lcmodel.dataset import read_training_table
    from lcmodel.pipeline import features_and_labels as _xy
    from lcmodel.pipeline import sample as sample_table

    z = SHARED / "data" / "zion"
    cfg = config_from_dict(
        {
            "reference": {"path": str(z / "nlcd2011.tif"), "n_points": 10000},
            "embedding": {"path": str(z / "zion_landsat8_b2345_stack.tif")},
            "sampling": {"n_sample": 5000},
            "output": {"dir": str(work / "zion")},
        }
    )
    df = read_training_table(sample_table(cfg).table.path)
    X, y = _xy(df, "train")
    Xt, yt = _xy(df, "test")
    stages = QUICK_STAGES if args.quick else [dict(s) for s in DEFAULT_STAGES]
    print(f"zion: train {X.shape}, test {Xt.shape}", flush=True)
    return {"n_train": len(y), "n_test": len(yt), "notebook_grid": notebook_grid(X, y, Xt, yt, args.quick),
            "modes": run_tuning_modes(X, y, Xt, yt, stages, args, "zion")}


def table(res: dict[str, Any]) -> str:
    nb = res["notebook"]
    ours = res["ours"]["modes"]
    g1 = nb["stages"]["grid_stage1"]["wall_s"]
    g2 = nb["stages"]["grid_stage2"]["wall_s"]
    nb_grid = g1 + g2
    rows = [("quantity", "notebook", "lcmodel", "ratio (notebook / lcmodel)")]
    rows.append(("two-stage grid wall s", f"{nb_grid:.0f}", f"{ours['grid']['wall_s']:.0f}",
                 f"{nb_grid / ours['grid']['wall_s']:.2f}x"))
    nb_cpu = nb["stages"]["grid_stage1"]["cpu_s"] + nb["stages"]["grid_stage2"]["cpu_s"]
    rows.append(("two-stage grid CPU s", f"{nb_cpu:.0f}", f"{ours['grid']['cpu_s']:.0f}",
                 f"{nb_cpu / ours['grid']['cpu_s']:.2f}x"))
    nb_oth = (nb["stages"]["grid_stage1"]["others_cpu"], nb["stages"]["grid_stage2"]["others_cpu"])
    rows.append(("  others_cpu (cores)", f"{nb_oth[0]} / {nb_oth[1]}", f"{ours['grid']['others_cpu']}", ""))
    rows.append(("  same best params", "", str(res["ours"]["same_best_params"]), ""))
    nb_peak = max(nb['stages']['grid_stage1']['peak_mb'], nb['stages']['grid_stage2']['peak_mb'])
    rows.append(("grid peak MB", f"{nb_peak:.0f}",
                 f"{ours['grid']['peak_mb']:.0f}", ""))
    nb_f1 = res["ours"]["notebook_params_test_f1"]
    for m in ("grid_oob", "halving", "halving_oob", "optuna"):
        o = ours[m]
        rows.append((f"{m} wall s / test macro-F1", f"{nb_grid:.0f} / {nb_f1:.4f}",
                     f"{o['wall_s']:.0f} / {o['test_macro_f1']:.4f}",
                     f"{nb_grid / o['wall_s']:.1f}x / dF1 {o['test_macro_f1'] - ours['grid']['test_macro_f1']:+.4f}"))
    p_nb, p_us = res["predict"]["notebook"], res["predict"]["ours"]
    n_blocks = res["args"].get("predict_blocks", "?")
    rows.append((f"predict px/s (first {n_blocks} blocks; engine of the run)", f"{p_nb['px_per_s']:.0f}",
                 f"{p_us['px_per_s']:.0f}", f"lcmodel {p_us['px_per_s'] / p_nb['px_per_s']:.2f}x the notebook's px/s"))
    rows.append(("predict peak MB", f"{p_nb['peak_mb']:.0f}", f"{p_us['peak_mb']:.0f}", ""))
    fl = res["read_floor"]["px_per_s"]
    rows.append(("predict / read-floor (time)", f"{fl / p_nb['px_per_s']:.1f}", f"{fl / p_us['px_per_s']:.1f}", ""))
    if "zion" in res:
        zm = res["zion"]["modes"]
        ng = res["zion"].get("notebook_grid")
        base = ng or zm["grid"]
        for m in ("grid", "grid_oob", "halving", "halving_oob", "optuna"):
            o = zm[m]
            rows.append((f"zion {m} wall s / test F1", f"{ng['wall_s']:.0f} / {ng['test_macro_f1']:.4f}" if ng else "",
                         f"{o['wall_s']:.0f} / {o['test_macro_f1']:.4f}",
                         f"{base['wall_s'] / o['wall_s']:.1f}x vs {'notebook' if ng else 'our'} grid / dF1 "
                         f"{o['test_macro_f1'] - base['test_macro_f1']:+.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "bench-data" / "e2048")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: DATA/../pipeline-work)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline.json")
    ap.add_argument("--quick", action="store_true", help="the notebook's --quick grids on both sides")
    ap.add_argument("--predict-blocks", type=int, default=2)
    ap.add_argument("--optuna-trials", type=int, default=40)
    ap.add_argument("--optuna-timeout", type=float, default=150.0)
    ap.add_argument("--skip-zion", action="store_true")
    ap.add_argument("--only-zion", action="store_true",
                    help="run the Zion section alone and replace it in an existing --out file")
    ap.add_argument("--reuse-notebook", action="store_true",
                    help="reuse the notebook's finished run in the work folder (its timings included)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = args.data.resolve()
    if data.is_relative_to(ROOT):
        raise SystemExit(f"--data {data} is inside the repository; give a folder outside it")
    work = (args.work or data.parent / ("pipeline-work-quick" if args.quick else "pipeline-work")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.only_zion:
        res = json.loads(args.out.read_text())
        res["zion"] = zion(args, work)
        res["zion"]["args"] = {k: str(v) for k, v in vars(args).items()}
        res["table"] = table(res).splitlines()
        args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
        print("\n".join(res["table"]))
        return
    ensure_data(data)
    res: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "started": time.ctime()}

    t0 = time.perf_counter()
    if args.reuse_notebook and (work / "notebook" / "run_summary.json").exists():
        nb = read_notebook(work / "notebook")
    else:
        nb = run_notebook(args, data, work)
    res["notebook"] = nb
    print(f"notebook done in {time.perf_counter() - t0:.0f} s", flush=True)

    import joblib

    split = joblib.load(Path(nb["dir"]) / "split.pkl")
    X = np.ascontiguousarray(split["X_train"].to_numpy(), dtype=np.float32)
    y = split["y_train"].to_numpy()
    Xt = np.ascontiguousarray(split["X_test"].to_numpy(), dtype=np.float32)
    yt = split["y_test"].to_numpy()
    from lcmodel.config import DEFAULT_STAGES

    stages = QUICK_STAGES if args.quick else [dict(s) for s in DEFAULT_STAGES]
    modes = run_tuning_modes(X, y, Xt, yt, stages, args, "ours")
    nb_best = {**nb["summary"]["best_stage1"], **nb["summary"]["best_stage2"]}
    same = {k: modes["grid"]["best_params"].get(k) for k in nb_best} == nb_best
    nb_params_f1 = _test_f1(nb_best, X, y, Xt, yt)
    res["ours"] = {"modes": modes, "notebook_best_params": nb_best, "same_best_params": same,
                   "notebook_params_test_f1": nb_params_f1,
                   "notebook_reported_test_f1": nb["summary"].get("test_macro_f1")}
    res["predict"] = {"notebook": {**nb["stages"]["predict_blocks"], **nb["stages"]["predict_summary"]},
                      "ours": predict_ours(Path(nb["dir"]), data, work, args.predict_blocks)}
    res["read_floor"] = read_floor(data / "embedding.tif")
    if not args.skip_zion:
        res["zion"] = zion(args, work)
    res["elapsed_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    text = table(res)
    res["table"] = text.splitlines()
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(text)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
