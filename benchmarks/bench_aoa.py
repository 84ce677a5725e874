"""Benchmark: the area of applicability (DI + AOA rasters) against the prediction of the same raster.

    python benchmarks/bench_aoa.py [--data ../bench-data/e2048] [--size 2048] [--n-sample 5000] [--trees 100]

On the synthetic case of ../shared/bench/make_synthetic.py (generated into ``--data`` when absent; 2048 x 2048
x 64 by default): the run's own sampling stages draw the training table from the WorldCover-like reference
(``sampling.n_sample`` rows, spatial split), a random forest is fitted on all its rows (as ``fit_final``),
and then, each timed (wall and CPU, ../shared/bench/benchutil.Stage):

1. ``predict``: :func:`lcmodel.predict.predict_raster` with two workers (the map the AOA needs);
2. ``train_di``: :func:`lcmodel.aoa.fit_training_di` (standardise, weight, mean distance, CV DI, threshold);
3. ``aoa_rasters``: :func:`lcmodel.aoa.write_aoa_rasters` (``di.tif``, ``aoa.tif``, counts per class).

The ratio (2 + 3) / 1 is what ``aoa.enabled``'s default is decided on. Results: ``benchmarks/results/aoa.json``.
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
BENCH = SHARED / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))


def _timed(name: str, fn: Any) -> tuple[Any, dict[str, Any]]:
    try:
        from benchutil import Stage  # ../shared/bench
    except ImportError:  # measured by wall time only
        started = time.perf_counter()
        value = fn()
        return value, {"stage": name, "wall_s": round(time.perf_counter() - started, 3)}
    with Stage(name, quiet=True) as st:
        value = fn()
    return value, dict(st.result)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "bench-data" / "e2048")
    ap.add_argument("--size", type=int, default=2048, help="embedding side when --data must be generated")
    ap.add_argument("--n-sample", type=int, default=5000)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--work", type=Path, default=None, help="output folder (default: DATA/../aoa-work)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "aoa.json")
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import rasterio
    from sklearn.ensemble import RandomForestClassifier

    from lcmodel.aoa import fit_training_di, fold_ids, write_aoa_rasters
    from lcmodel.classes import read_class_table
    from lcmodel.config import config_from_dict
    from lcmodel.dataset import feature_columns, read_training_table
    from lcmodel.embedding import NodataRule, band_names
    from lcmodel.model_io import ModelBundle, current_versions, utc_now
    from lcmodel.pipeline import features_and_labels, sample
    from lcmodel.predict import predict_raster

    data: Path = args.data
    if not (data / "embedding.tif").is_file():
        subprocess.run([sys.executable, str(BENCH / "make_synthetic.py"), "--out", str(data),
                        "--emb-size", str(args.size)], check=True)
    work: Path = args.work or data.parent / f"aoa-work-{data.name}"
    work.mkdir(parents=True, exist_ok=True)
    cfg = config_from_dict({
        "reference": {"path": str(data / "esa_worldcover.tif"), "n_points": 2 * args.n_sample},
        "classes": {"table": str(data / "classes_esa.csv")},
        "embedding": {"path": str(data / "embedding.tif")},
        "sampling": {"n_sample": args.n_sample},
        "output": {"dir": str(work)},
    })
    table = sample(cfg)
    frame = read_training_table(table.table.path)
    blocks = json.loads(table.blocks.path.read_text())
    X, y = features_and_labels(frame)
    bands = feature_columns(frame)
    forest = RandomForestClassifier(n_estimators=args.trees, random_state=0, n_jobs=2)
    forest.fit(pd.DataFrame(X, columns=bands), y)
    with rasterio.open(data / "embedding.tif") as src:
        rule = NodataRule.detect(src)
        names = band_names(src)
        crs = src.crs.to_wkt()
        width, height = src.width, src.height
    bundle = ModelBundle(
        estimator=forest, band_names=bands, crs_wkt=crs, nodata_rule=rule,
        class_table=read_class_table(data / "classes_esa.csv"), config={}, training_table_sha256=None,
        versions=current_versions(), created=utc_now(), band_indexes=[names.index(b) + 1 for b in bands],
        n_source_bands=len(names),
    )
    print(f"training table: {len(frame)} rows x {len(bands)} bands; raster {width} x {height}", flush=True)
    summary, predict = _timed("predict", lambda: predict_raster(bundle, data / "embedding.tif", work / "map.tif",
                                                                  n_jobs=2))
    folds = fold_ids(frame, blocks["cv_strategy"], cfg.tuning.cv, blocks["block_size"], cfg.sampling.random_state)
    fit, train_di = _timed("train_di", lambda: fit_training_di(X, folds, forest.feature_importances_, bands))
    counts, rasters = _timed("aoa_rasters", lambda: write_aoa_rasters(
        fit, bundle, data / "embedding.tif", work / "map.tif", work / "di.tif", work / "aoa.tif"))
    aoa_s = train_di["wall_s"] + rasters["wall_s"]
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": str(data), "width": width, "height": height, "bands": len(bands),
        "n_training_rows": len(frame), "trees": args.trees, "pixels": summary.n_pixels, "valid": summary.n_valid,
        "predict": predict, "train_di": train_di, "aoa_rasters": rasters,
        "aoa_over_predict": aoa_s / predict["wall_s"],
        "outside_fraction": counts.n_outside / counts.n_pixels, "threshold": fit.threshold,
        "training_di_above_threshold": float(np.mean(fit.train_di > fit.threshold)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"predict {predict['wall_s']:.1f} s; training DI {train_di['wall_s']:.1f} s; DI + AOA rasters "
          f"{rasters['wall_s']:.1f} s; (DI + AOA) / predict = {result['aoa_over_predict']:.2f}x; "
          f"{100 * result['outside_fraction']:.2f} % outside", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
