"""Benchmark: three years of embeddings mapped with one model, and the change products, against one map.

    python benchmarks/bench_years.py [--size 2048] [--trees 400] [--work ../bench-data/years2048]

The multi-year demo (:mod:`lcmodel.demo_years`: 64 bands, 10 m, float32, planted change) at ``--size`` px a
side for 2021..2023, generated into ``--work`` when absent. The plain runner (``lcmodel run --plain``'s
stages) trains once on 2021 (one grid candidate: ``max_features: sqrt``, ``--trees`` trees, ``n_sample``
5000), maps every year and makes the change products (transitions, embedding angle, agreement, for 2021->2022,
2022->2023 and 2021->2023) with the temporal filter on. Each stage is timed (wall and CPU of this process and
its children); the area of applicability is off so that the per-year figure is the map's.

Reported as ratios to ONE map (the train year's ``predict_map``): each other year's mapping stages, and the
``change`` stage. Results: ``benchmarks/results/years.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--trees", type=int, default=400)
    ap.add_argument("--work", type=Path, default=ROOT.parent / "bench-data" / "years2048")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "years.json")
    args = ap.parse_args(argv)

    import yaml

    from lcmodel.config import load_config
    from lcmodel.demo_years import make_demo_years
    from lcmodel.pipeline import StageRun, run_stages

    cfg_path = args.work / "demo.yaml"
    if not cfg_path.is_file():
        started = time.perf_counter()
        make_demo_years(args.work, size=args.size, n_points=20000)
        print(f"data: {args.size} x {args.size} x 64, 3 years in {time.perf_counter() - started:.0f} s")
    data = yaml.safe_load(cfg_path.read_text())
    data["sampling"]["n_sample"] = 5000
    data["tuning"] = {"cv": 3, "stages": [{"max_features": ["sqrt"], "n_estimators": [args.trees]}]}
    data["aoa"] = {"enabled": False}
    data["prediction"] = {"temporal_filter": "majority", "n_jobs": 2}
    data["output"] = {"dir": str(args.work / f"results-{args.trees}")}
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_path)
    timings: list[dict[str, Any]] = []

    class Timed(StageRun):
        year: int | None = None

        def run_stage(self, st: Any, settings: Any, inputs: Any, **runtime: Any) -> Any:
            wall, cpu = time.perf_counter(), _cpu()
            outcome = super().run_stage(st, settings, inputs, **runtime)
            timings.append({"stage": st.name, "year": self.cfg.embedding.year, "cached": outcome.cached,
                            "wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(_cpu() - cpu, 3)})
            print(f"{st.name:20s} {self.cfg.embedding.year} {timings[-1]['wall_s']:8.2f} s"
                  f"{' (cached)' if outcome.cached else ''}", flush=True)
            return outcome

        def spawn(self, cfg: Any) -> Timed:
            return Timed(cfg, use_cache=self.use_cache)

    started = time.perf_counter()
    run_stages(Timed(cfg, use_cache=False), mapping=True)
    total = time.perf_counter() - started
    train_year = cfg.embedding.year
    one_map = next(t["wall_s"] for t in timings if t["stage"] == "predict_map" and t["year"] == train_year)
    per_year = {}
    for year in cfg.mapped_years:
        mapping = [t for t in timings if t["year"] == year and t["stage"] in
                   ("predict_map", "write_quicklook", "applicability", "postprocess")]
        per_year[str(year)] = {"mapping_wall_s": round(sum(t["wall_s"] for t in mapping), 3),
                               "predict_map_wall_s": next(t["wall_s"] for t in mapping if t["stage"] == "predict_map"),
                               "ratio_to_one_map": round(sum(t["wall_s"] for t in mapping) / one_map, 3)}
    change = next(t for t in timings if t["stage"] == "change")
    summary = json.loads((Path(cfg.output.dir) / "change" / "change.json").read_text())
    result = {
        "case": f"{args.size} x {args.size} x 64 float32, 3 years (2021..2023), {args.trees} trees, 2 workers",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "one_map_wall_s": one_map,
        "per_year": per_year,
        "change": {"wall_s": change["wall_s"], "cpu_s": change["cpu_s"],
                   "ratio_to_one_map": round(change["wall_s"] / one_map, 3),
                   "pairs": [f"{p['from']}->{p['to']}" for p in summary["pairs"]],
                   "temporal_filter": "majority"},
        "total_wall_s": round(total, 1),
        "stages": timings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "stages"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
