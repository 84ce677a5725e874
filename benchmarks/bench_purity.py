"""Benchmark: does training on pure reference pixels (sampling.purity_window) help, on the UNFILTERED test design?

    python benchmarks/bench_purity.py [--synthetic DIR] [--seeds 0 1 2] [--out benchmarks/results/purity.json]

Cases: Zion (../shared/data/zion: 4-band Landsat 8 at 30 m + NLCD 2011) and the synthetic case
(../shared/bench/make_synthetic.py --emb-size 2048 into ``--synthetic``, generated when missing: a
WorldCover-like reference whose labels differ from the embedding's "truth" near patch boundaries, as
WorldCover's errors do). For each seed (``sampling.random_state``), lcmodel's own sampling stages
(``lcmodel.pipeline.sample``: reference points, extraction, subsample, spatial split) run with
``purity_window`` null, 3 and 5. The points and the split are the same in all three (checked: the test
parts are identical), so every arm is scored on the same test points, class edges included:

- ``off``: the whole training part;
- ``pure3`` / ``pure5``: its points pure in a 3x3 / 5x5 reference window (small classes keep theirs: see
  lcmodel.label_purity);
- ``random3``: a seeded random subset of the whole training part with ``pure3``'s per-class counts (the
  control: the effect of fewer points alone).

One fixed forest (200 trees, max_features sqrt, n_jobs 2, seeded), no tuning, so the arms differ only in
their training rows. Reported per arm: test overall accuracy and macro-F1, and the accuracy on the test
points that are pure / impure in a 3x3 window; means and standard deviations over the seeds, and each
arm's difference from ``off`` seed by seed (paired).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
if not SHARED.exists():
    SHARED = Path("/work/shared")
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ARMS = ("off", "pure3", "random3", "pure5")


def case_configs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    zion = SHARED / "data" / "zion"
    syn = Path(args.synthetic)
    return {
        "zion": {"reference": {"path": str(zion / "nlcd2011.tif"), "n_points": args.n_points},
                 "embedding": {"path": str(zion / "zion_landsat8_b2345_stack.tif")},
                 "sampling": {"n_sample": args.n_sample}},
        "synthetic2048": {"reference": {"path": str(syn / "esa_worldcover.tif"), "n_points": args.n_points},
                          "embedding": {"path": str(syn / "embedding.tif")},
                          "classes": {"table": str(syn / "classes_esa.csv")},
                          "sampling": {"n_sample": args.n_sample}},
    }


def sample_table(base: dict[str, Any], seed: int, window: int | None, out: Path) -> tuple[pd.DataFrame, Path]:
    from lcmodel import pipeline
    from lcmodel.config import config_from_dict

    data = json.loads(json.dumps(base))
    data["sampling"].update(random_state=seed, purity_window=window)
    data["output"] = {"dir": str(out)}
    cfg = config_from_dict(data)
    table = pipeline.sample(cfg).table.path
    return pd.read_csv(table), out / "samples.csv"


def score(train: pd.DataFrame, test: pd.DataFrame, pure_test: np.ndarray, seed: int) -> dict[str, float]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score

    from lcmodel.dataset import feature_columns

    bands = feature_columns(train)
    model = RandomForestClassifier(n_estimators=200, max_features="sqrt", n_jobs=2, random_state=seed)
    model.fit(train[bands].to_numpy(np.float32), train["value"].to_numpy())
    pred = model.predict(test[bands].to_numpy(np.float32))
    y = test["value"].to_numpy()
    return {
        "n_train": len(train),
        "overall_accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
        "accuracy_pure_test": float(accuracy_score(y[pure_test], pred[pure_test])),
        "accuracy_impure_test": float(accuracy_score(y[~pure_test], pred[~pure_test])),
    }


def random_like(train: pd.DataFrame, like: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A random subset of ``train`` with ``like``'s per-class counts."""
    counts = like["value"].value_counts()
    parts = [g.sample(n=int(counts.get(v, 0)), random_state=seed) for v, g in train.groupby("value")]
    return pd.concat(parts).sort_index()


def run_case(name: str, base: dict[str, Any], seeds: list[int], work: Path) -> dict[str, Any]:
    per_seed = []
    for seed in seeds:
        t0 = time.perf_counter()
        off, _ = sample_table(base, seed, None, work / name / f"s{seed}_off")
        p3, samples3 = sample_table(base, seed, 3, work / name / f"s{seed}_p3")
        p5, _ = sample_table(base, seed, 5, work / name / f"s{seed}_p5")
        test = off[off["split"] == "test"].reset_index(drop=True)
        for other in (p3, p5):  # the test part is the same sample in every arm
            same = other[other["split"] == "test"].reset_index(drop=True)
            assert same[["x", "y", "value"]].equals(test[["x", "y", "value"]]), "test parts differ"
        flags = pd.read_csv(samples3)[["row", "col", "pure"]]
        pure_test = test[["row", "col"]].merge(flags, on=["row", "col"], how="left")["pure"].to_numpy(bool)
        train = {"off": off[off["split"] == "train"], "pure3": p3[p3["split"] == "train"],
                 "pure5": p5[p5["split"] == "train"]}
        train["random3"] = random_like(train["off"], train["pure3"], seed)
        scores = {arm: score(train[arm], test, pure_test, seed) for arm in ARMS}
        blocks = json.loads((work / name / f"s{seed}_p3" / "spatial_blocks.json").read_text())
        per_seed.append({"seed": seed, "n_test": len(test), "test_pure_share": float(pure_test.mean()),
                         "purity3": blocks["purity"], "scores": scores, "wall_s": time.perf_counter() - t0})
        print(name, seed, {a: round(s["overall_accuracy"], 4) for a, s in scores.items()}, flush=True)
    return {"seeds": per_seed, "summary": summarise(per_seed)}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm in ARMS:
        row: dict[str, Any] = {}
        for metric in ("overall_accuracy", "macro_f1", "accuracy_pure_test", "accuracy_impure_test", "n_train"):
            values = np.array([s["scores"][arm][metric] for s in per_seed], dtype=float)
            deltas = values - np.array([s["scores"]["off"][metric] for s in per_seed], dtype=float)
            row[metric] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                           "delta_vs_off_mean": float(deltas.mean()),
                           "delta_vs_off_sd": float(deltas.std(ddof=1)) if len(deltas) > 1 else 0.0}
        out[arm] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synthetic", default="/tmp/purity-bench/e2048")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-points", type=int, default=10000)
    ap.add_argument("--n-sample", type=int, default=5000)
    ap.add_argument("--cases", nargs="+", default=["zion", "synthetic2048"])
    ap.add_argument("--work", default="/tmp/purity-bench/work")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "purity.json"))
    args = ap.parse_args()
    syn = Path(args.synthetic)
    if "synthetic2048" in args.cases and not (syn / "embedding.tif").is_file():
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_synthetic.py"), "--out", str(syn),
                        "--emb-size", "2048"], check=True)
    configs = case_configs(args)
    results = {"args": vars(args), "cases": {}}
    for name in args.cases:
        results["cases"][name] = run_case(name, configs[name], args.seeds, Path(args.work))
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{'case':<14} {'arm':<8} {'n_train':>8} {'OA':>16} {'macro-F1':>16} {'OA pure/impure test':>22}")
    for name, res in results["cases"].items():
        for arm, row in res["summary"].items():
            oa, f1 = row["overall_accuracy"], row["macro_f1"]
            print(f"{name:<14} {arm:<8} {row['n_train']['mean']:>8.0f} "
                  f"{oa['mean']:.4f} ({oa['delta_vs_off_mean']:+.4f}) "
                  f"{f1['mean']:.4f} ({f1['delta_vs_off_mean']:+.4f}) "
                  f"{row['accuracy_pure_test']['mean']:.3f} / {row['accuracy_impure_test']['mean']:.3f}")


if __name__ == "__main__":
    main()
