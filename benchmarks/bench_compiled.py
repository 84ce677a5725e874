"""Compiled tree inference vs scikit-learn's predict_proba on our forests (2 cores).

Same forest as benchmarks/profile_predict.py (400 trees, max_features 8, 4000 synthetic samples of 8 classes,
64 float32 features), same pixels (``--pixels``, default 262,144 = one 512 x 512 window). Compared:

- scikit-learn ``predict_proba`` (n_jobs=1 and n_jobs=2);
- treelite + tl2cgen: the forest compiled to a shared library (gcc), tl2cgen.Predictor with 1 and 2 threads;
- treelite GTIL (treelite's own interpreter, no compilation), 2 threads;
- skl2onnx + onnxruntime (TreeEnsembleClassifier, zipmap off), 1 and 2 intra-op threads.

For each: seconds, pixels per second, class agreement with scikit-learn (argmax) and the largest absolute
probability difference. Run it in a separate venv (these packages are not lcmodel dependencies)::

    python3 -m venv /work/bench-venvs/compiled
    /work/bench-venvs/compiled/bin/pip install numpy scikit-learn==1.9.1 treelite tl2cgen skl2onnx onnxruntime joblib
    /work/bench-venvs/compiled/bin/python benchmarks/bench_compiled.py

Writes benchmarks/results/compiled.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

RESULTS = Path(__file__).resolve().parent / "results" / "compiled.json"


def forest_and_pixels(n_pixels: int, bands: int = 64, trees: int = 400) -> tuple[RandomForestClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, bands)).astype(np.float32)
    y = rng.integers(0, 8, 4000)
    X = (centers[y] + rng.normal(scale=1.5, size=(4000, bands))).astype(np.float32)
    est = RandomForestClassifier(n_estimators=trees, max_features=8, random_state=0, n_jobs=2).fit(X, y + 1)
    lab = rng.integers(0, 8, n_pixels)
    P = np.ascontiguousarray((centers[lab] + rng.normal(scale=1.5, size=(n_pixels, bands))).astype(np.float32))
    return est, P


def timed(fn: Callable[[], np.ndarray], repeat: int = 2) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pixels", type=int, default=512 * 512)
    ap.add_argument("--trees", type=int, default=400)
    ap.add_argument("--skip-tl2cgen", action="store_true",
                    help="skip compiling the forest to C (gcc -O3 of a 400-tree forest ran past 15 min on 2 cores)")
    args = ap.parse_args()
    est, P = forest_and_pixels(args.pixels, trees=args.trees)
    n = len(P)
    rows: dict[str, dict[str, float | str]] = {}
    est.set_params(n_jobs=1)
    t_ref, ref = timed(lambda: est.predict_proba(P))
    ref_arg = ref.argmax(axis=1)

    def record(name: str, seconds: float, proba: np.ndarray | None, note: str = "") -> None:
        row: dict[str, float | str] = {"seconds": round(seconds, 3), "pixels_per_s": round(n / seconds),
                                       "speedup_vs_sklearn_1": round(t_ref / seconds, 2)}
        if proba is not None:
            proba = np.asarray(proba, dtype=np.float64).reshape(n, -1)
            row["class_agreement"] = float(np.mean(proba.argmax(axis=1) == ref_arg))
            row["max_abs_proba_diff"] = float(np.abs(proba - ref).max())
        if note:
            row["note"] = note
        rows[name] = row

    record("sklearn_n_jobs_1", t_ref, ref)
    est.set_params(n_jobs=2)
    record("sklearn_n_jobs_2", *timed(lambda: est.predict_proba(P)))

    try:
        import tl2cgen
        import treelite

        tmodel = treelite.sklearn.import_model(est)
        if args.skip_tl2cgen:
            rows["tl2cgen"] = {"note": "skipped (--skip-tl2cgen): compiling 400 trees with gcc -O3 ran past 15 min"}
        else:
            with tempfile.TemporaryDirectory() as tmp:
                lib = os.path.join(tmp, "forest.so")
                t0 = time.perf_counter()
                tl2cgen.export_lib(tmodel, toolchain="gcc", libpath=lib, params={"parallel_comp": 2}, nthread=2)
                compile_s = time.perf_counter() - t0
                for threads in (1, 2):
                    pred = tl2cgen.Predictor(lib, nthread=threads)
                    dmat = tl2cgen.DMatrix(P)
                    record(f"tl2cgen_{threads}_threads", *timed(lambda pred=pred, dmat=dmat: pred.predict(dmat)),
                           note=f"compile {compile_s:.0f} s")
        record("treelite_gtil_2_threads", *timed(lambda: treelite.gtil.predict(tmodel, P, nthread=2)))
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what failed and carries on
        rows["treelite"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}

    try:
        import onnxruntime as ort
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        est.set_params(n_jobs=1)
        onx = convert_sklearn(est, initial_types=[("X", FloatTensorType([None, P.shape[1]]))],
                              options={id(est): {"zipmap": False}})
        for threads in (1, 2):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])
            out_name = sess.get_outputs()[1].name
            record(f"onnxruntime_{threads}_threads",
                   *timed(lambda sess=sess, out_name=out_name: sess.run([out_name], {"X": P})[0]))
    except Exception as exc:  # noqa: BLE001
        rows["onnxruntime"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}

    result = {"forest": f"{args.trees} trees, max_features 8, 4000 samples, 8 classes, 64 float32 features",
              "pixels": n, "cpu_count": os.cpu_count(), "timing": "best of 2", "results": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
