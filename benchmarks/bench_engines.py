"""Benchmark: the compiled forest vs scikit-learn's predict_proba, per forest shape, and what "auto" picks.

    python benchmarks/bench_engines.py [--notebook-dir ../bench-data/pipeline-work/notebook] [--data ...]

The compiled walk (lcmodel.forest) always goes ``max_depth`` steps per tree, scikit-learn only as deep as
each pixel's leaf; the compiled step is about twice as cheap (no mispredicted branch). So which engine is
faster depends on the trees. On one 512 x 512 block of the synthetic 2048 raster (262,144 pixels, 64 bands),
single thread, for:

- the notebook's tuned 400-tree forest (``best_model.pkl`` of a ``bench_pipeline.py`` run; max_depth 20);
- 100-tree forests fitted here on the notebook's training rows (3,928) with max_depth 10, 20, 40, None;
- 100-tree forests on a 40,000-row noisy table (the training rows resampled, jittered, 10 % labels
  flipped): max_depth 20 and None (trees ~90 deep, mean leaf depth ~40);

it prints scikit-learn's and the compiled forest's pixels per second, the compiled walk's step ratio
(``CompiledForest.step_ratio``), and the engine ``Predictor(engine="auto")`` picks after timing both on
the first 16,384 rows, with the pixels per second of the picked engine. Every result is checked equal
to scikit-learn's, bit for bit. Results: ``benchmarks/results/engines.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import rasterio
from rasterio.windows import Window
from sklearn.ensemble import RandomForestClassifier

ROOT = Path(__file__).resolve().parents[1]


def _rate(fn: Any, X: np.ndarray) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn(X)
    return X.shape[0] / (time.perf_counter() - t0), out


def measure(name: str, forest: Any, X: np.ndarray) -> dict[str, Any]:
    from lcmodel.forest import Predictor, compile_forest

    forest.n_jobs = 1
    sk_rate, expected = _rate(forest.predict_proba, X)
    compiled = compile_forest(forest)
    assert compiled is not None
    compiled.predict_proba(X[:8])  # load the kernel
    c_rate, got = _rate(compiled.predict_proba, X)
    auto = Predictor(forest)
    auto(X[:20_000])  # the calibration call
    a_rate, picked = _rate(auto, X)
    exact = bool(np.array_equal(got, expected) and np.array_equal(picked, expected))
    depths = [e.tree_.max_depth for e in forest.estimators_]
    row = {"forest": name, "trees": len(depths), "max_depth_mean": float(np.mean(depths)),
           "step_ratio": compiled.step_ratio, "sklearn_px_s": sk_rate, "compiled_px_s": c_rate,
           "compiled_vs_sklearn": c_rate / sk_rate, "auto_engine": auto.engine, "auto_px_s": a_rate,
           "auto_choice": auto.choice, "exact": exact}
    print(f"{name:34s} depth {row['max_depth_mean']:5.1f}  step ratio {row['step_ratio']:.2f}  sklearn "
          f"{sk_rate:8.0f}  compiled {c_rate:8.0f} ({row['compiled_vs_sklearn']:.2f}x)  auto -> {auto.engine:8s} "
          f"{a_rate:8.0f}  exact {exact}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "bench-data" / "e2048")
    ap.add_argument("--notebook-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    nb_dir = (args.notebook_dir or args.data.parent / "pipeline-work" / "notebook").resolve()
    split = joblib.load(nb_dir / "split.pkl")
    X = np.ascontiguousarray(split["X_train"].to_numpy(), dtype=np.float32)
    y = split["y_train"].to_numpy()
    with rasterio.open(args.data / "embedding.tif") as src:
        block = src.read(window=Window(512, 512, 512, 512))
    pixels = np.ascontiguousarray(block.reshape(block.shape[0], -1).T, dtype=np.float32)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(X), 40_000)
    Xn = X[idx] + rng.normal(0, 0.02, (40_000, X.shape[1])).astype(np.float32)
    yn = y[idx].copy()
    flip = rng.random(40_000) < 0.1
    yn[flip] = rng.choice(np.unique(y), int(flip.sum()))

    rows = [measure("notebook 400 trees (max_depth 20)", joblib.load(nb_dir / "best_model.pkl"), pixels)]
    for depth in (10, 20, 40, None):
        forest = RandomForestClassifier(n_estimators=100, max_depth=depth, max_features=16, random_state=0,
                                        n_jobs=2).fit(X, y)
        rows.append(measure(f"3.9k rows, max_depth {depth}", forest, pixels))
    for depth in (20, None):
        forest = RandomForestClassifier(n_estimators=100, max_depth=depth, max_features=16, random_state=0,
                                        n_jobs=2).fit(Xn, yn)
        rows.append(measure(f"40k noisy rows, max_depth {depth}", forest, pixels))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"started": time.ctime(), "pixels": int(pixels.shape[0]), "rows": rows},
                                   indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
