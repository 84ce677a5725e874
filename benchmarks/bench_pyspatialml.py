"""Benchmark: whole-raster prediction with pyspatialml's ``Raster.predict``, the library a user would pick instead.

Same forest as the seed notebook: its final model is refitted here exactly as ../shared/bench/seed_baseline.py
does it (``RandomForestClassifier(**best_params_full.pkl).fit(X, y)`` on the notebook's own training rows, X and
y of its ``split.pkl``; random_state 42 and n_jobs 2 come with the parameters), because the notebook's
``best_model.pkl`` was pickled under numpy 2 and pyspatialml pins numpy<2. When split.pkl cannot be unpickled
(pandas 3 wrote it; it needs pyarrow) the rows are rebuilt from ``df_final.csv`` with seed_baseline.py's own
sub-sampling; when both are available they are checked to be the same rows.

Then, timed: ``Raster([embedding]).predict(forest, file_path=..., dtype="uint8", nodata=0, compress="deflate")``
over the whole raster, pyspatialml's defaults otherwise (256 x 256 windows, read band by band as masked arrays,
windows predicted one after the other; ``Raster.predict`` has no n_jobs, the forest's own n_jobs threads run each
window's trees). Nodata in pyspatialml: every pixel of a window is predicted (masked values filled with 0), then
pixels with any masked band (the band's declared nodata, or NaN/inf) are written as ``nodata``. Our embeddings
declare no nodata and mark nodata as all-zero vectors, so nothing is masked: those pixels get a class like any
other, and the map holds no nodata at all. The JSON counts them and the labels they got.

Run it in its own venv (benchmarks/setup_pyspatialml.sh) so that numpy<2 stays out of the project venv::

    benchmarks/setup_pyspatialml.sh                         # .venv-pyspatialml, scikit-learn pinned to .venv's
    .venv/bin/python benchmarks/notebook_forest_labels.py --embedding ../bench-data/e2048/embedding.tif \
        --model ../bench-data/pipeline-work/notebook/best_model.pkl --size 0 --out notebook_labels.npy
    .venv-pyspatialml/bin/python benchmarks/bench_pyspatialml.py --embedding ../bench-data/e2048/embedding.tif \
        --notebook-dir ../bench-data/pipeline-work/notebook --out ../bench-data/pipeline-work/pyspatialml \
        [--check-against notebook_labels.npy] [--window 512]

``--check-against`` takes the notebook forest's labels of the raster's top-left corner (any size, from
notebook_forest_labels.py in the project venv): the refitted forest must give the same labels on its top-left
``--check-size`` pixels (same forest), and pyspatialml's map is compared with them on valid pixels (same labels).
``--window N`` predicts a top-left N x N copy of the embedding instead of the whole raster (a smoke test).

Measured (benchutil.Stage, as benchmarks/bench_pipeline.py): wall and CPU seconds of the ``predict`` call,
``others_cpu`` (cores other processes kept busy meanwhile, 0..2), and ``peak_mb``: the larger of this process's
kernel high-water mark reset when the call starts (VmHWM) and psutil's sampled RSS of the process tree. Also
``ru_maxrss_mb``: resource.getrusage ru_maxrss of self + children over the whole run (refit included). The
embedding is read once before timing so that the page cache is warm. Writes ``--out/pyspatialml.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import psutil
import rasterio
from rasterio.windows import Window
from sklearn.ensemble import RandomForestClassifier

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
if not SHARED.exists():
    SHARED = Path("/work/shared")
sys.path.insert(0, str(SHARED / "bench"))

from benchutil import Stage  # noqa: E402

LABEL_COL, ESA_COL = "value", "esa"  # seed_baseline.py's df_final columns


def rows_from_csv(
    df_final_csv: Path, n_sample: int = 5000, n_esa_sample: int = 10000
) -> tuple[pd.DataFrame, pd.Series]:
    """seed_baseline.py's ``subsample_split`` stage up to X, y: stratified sub-sample, classes < 1 % dropped."""
    df_final = pd.read_csv(df_final_csv)
    n_sample = min(n_sample, n_esa_sample)
    samples = []
    for cls, prop in df_final[ESA_COL].value_counts(normalize=True).items():
        n_cls = max(1, int(round(prop * n_sample)))
        samples.append(df_final[df_final[ESA_COL] == cls].sample(n=n_cls, random_state=42))
    df_sample = (pd.concat(samples)
                 .sample(n=min(n_sample, sum(len(s) for s in samples)), random_state=42)
                 .reset_index(drop=True))
    X = df_sample.drop(columns=[LABEL_COL, ESA_COL])
    y = df_sample[LABEL_COL]
    counts = y.value_counts()
    for cls in counts[y.value_counts(normalize=True) < 0.01].index:
        indices = y[y == cls].index
        X = X.drop(index=indices)
        y = y.drop(index=indices)
    return X, y


def _same_rows(a: tuple[pd.DataFrame, pd.Series], b: tuple[pd.DataFrame, pd.Series]) -> bool:
    (xa, ya), (xb, yb) = a, b
    return (list(xa.columns) == list(xb.columns) and np.array_equal(xa.index, xb.index)
            and np.array_equal(xa.to_numpy(), xb.to_numpy()) and np.array_equal(ya.to_numpy(), yb.to_numpy()))


def notebook_training_rows(notebook_dir: Path) -> tuple[pd.DataFrame, pd.Series, dict[str, Any]]:
    """X, y the notebook's final model was fitted on: split.pkl's, else rebuilt from df_final.csv."""
    info: dict[str, Any] = {}
    from_pkl = None
    try:
        split = joblib.load(notebook_dir / "split.pkl")
        from_pkl = (split["X"], split["y"])
    except (ImportError, FileNotFoundError) as exc:  # pandas 3 pickles need pyarrow
        info["split_pkl_error"] = f"{type(exc).__name__}: {exc}"
    from_csv = rows_from_csv(notebook_dir / "df_final.csv") if (notebook_dir / "df_final.csv").exists() else None
    if from_pkl is None and from_csv is None:
        raise SystemExit(f"{notebook_dir}: neither split.pkl (loadable) nor df_final.csv")
    X, y = from_pkl if from_pkl is not None else from_csv  # type: ignore[misc]
    info["training_rows_from"] = "split.pkl" if from_pkl is not None else "df_final.csv (rebuilt)"
    if from_pkl is not None and from_csv is not None:
        info["df_final_rebuild_matches_split_pkl"] = _same_rows(from_pkl, from_csv)
    info.update(n_rows=len(X), n_features=X.shape[1],
                class_counts={str(k): int(v) for k, v in y.value_counts().sort_index().items()})
    return X, y, info


def refit_forest(notebook_dir: Path, n_jobs: int) -> tuple[RandomForestClassifier, dict[str, Any]]:
    """The notebook's final refit (seed_baseline.py ``final`` stage) with best_params_full.pkl as it is."""
    X, y, info = notebook_training_rows(notebook_dir)
    params = joblib.load(notebook_dir / "best_params_full.pkl")
    info["params"] = {k: v for k, v in sorted(params.items())}
    with Stage("refit", quiet=True) as st:
        forest = RandomForestClassifier(**params).fit(X, y)
    forest.set_params(n_jobs=n_jobs)  # threads only: the fitted trees do not depend on n_jobs
    info.update(refit=st.result, n_trees=len(forest.estimators_),
                node_count=int(sum(e.tree_.node_count for e in forest.estimators_)))
    return forest, info


def _blocks(height: int, width: int, block: int = 512) -> list[Window]:
    return [Window(c, r, min(block, width - c), min(block, height - r))
            for r in range(0, height, block) for c in range(0, width, block)]


def valid_mask(embedding: str, height: int, width: int) -> np.ndarray:
    """Our nodata rule on the top-left height x width pixels: valid unless every band is 0."""
    out = np.zeros((height, width), dtype=bool)
    with rasterio.open(embedding) as src:
        for w in _blocks(height, width):
            out[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = src.read(window=w).any(axis=0)
    return out


def notebook_style_labels(forest: RandomForestClassifier, embedding: str, height: int, width: int) -> np.ndarray:
    """The forest's labels on the top-left corner, predicted as the notebook does (float32 rows, ``predict``)."""
    out = np.zeros((height, width), dtype=np.asarray(forest.classes_).dtype)
    with rasterio.open(embedding) as src, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        for w in _blocks(height, width):
            pixels = src.read(window=w)
            pred = forest.predict(pixels.reshape(pixels.shape[0], -1).T.astype(np.float32))
            out[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = pred.reshape(w.height, w.width)
    return out


def crop(embedding: str, size: int, out: Path) -> str:
    """A top-left size x size copy of the embedding with the same profile (tiling, compression, interleave)."""
    with rasterio.open(embedding) as src:
        profile = src.profile
        size = min(size, src.height, src.width)
        profile.update(width=size, height=size, transform=src.window_transform(Window(0, 0, size, size)))
        path = out / f"embedding_window{size}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            for w in _blocks(size, size):
                dst.write(src.read(window=w), window=w)
    return str(path)


def warm_page_cache(path: str) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - t0


def pyspatialml_predict(embedding: str, forest: RandomForestClassifier, out_tif: Path, block: int | None,
                        progress: bool) -> dict[str, Any]:
    """The timed call: ``Raster([embedding]).predict(...)`` as a user writes it, into a uint8 GeoTIFF."""
    from pyspatialml import Raster

    with Stage("pyspatialml_predict", quiet=True) as st, warnings.catch_warnings():
        # pyspatialml passes arrays to a forest fitted on a DataFrame: sklearn warns once per window
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        stack = Raster([embedding])
        if block:
            stack.block_shape = (block, block)
        stack.predict(estimator=forest, file_path=str(out_tif), dtype="uint8", nodata=0, progress=progress,
                      compress="deflate")
    return {**st.result, "block_shape": list(stack.block_shape), "n_layers": stack.count}


def label_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embedding", required=True)
    p.add_argument("--notebook-dir", required=True, type=Path,
                   help="seed_baseline.py's output folder: df_final.csv, split.pkl, best_params_full.pkl")
    p.add_argument("--out", required=True, type=Path, help="folder for pyspatialml.json and the predicted map")
    p.add_argument("--n-jobs", type=int, default=2, help="the forest's n_jobs while predicting (notebook: 2)")
    p.add_argument("--window", type=int, default=None, help="predict a top-left N x N copy instead (smoke test)")
    p.add_argument("--block", type=int, default=None, help="pyspatialml block_shape side (default: its 256)")
    p.add_argument("--check-against", type=Path, default=None,
                   help=".npy of the notebook forest's top-left labels (benchmarks/notebook_forest_labels.py)")
    p.add_argument("--check-size", type=int, default=512, help="side of the refitted-forest check (pixels)")
    p.add_argument("--progress", action="store_true", help="pyspatialml's progress bar")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    result: dict[str, Any] = {
        "machine": {"cpus": psutil.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
                    "loadavg_start": os.getloadavg()},
        "versions": {k: version(k) for k in ("pyspatialml", "numpy", "scikit-learn", "pandas", "rasterio")},
        "python": sys.executable,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    forest, fit_info = refit_forest(args.notebook_dir, args.n_jobs)
    result["forest"] = fit_info
    print(f"refit: {fit_info['n_trees']} trees, {fit_info['node_count']} nodes, rows from "
          f"{fit_info['training_rows_from']}", file=sys.stderr)

    reference = np.load(args.check_against) if args.check_against else None
    if reference is not None:
        h, w = (min(args.check_size, n) for n in reference.shape)
        ours = notebook_style_labels(forest, args.embedding, h, w)
        result["forest_check"] = {"against": str(args.check_against), "shape": [h, w],
                                  "identical_labels": bool(np.array_equal(ours, reference[:h, :w])),
                                  "differing_pixels": int((ours != reference[:h, :w]).sum())}
        print(f"forest check: {result['forest_check']}", file=sys.stderr)

    embedding = crop(args.embedding, args.window, args.out) if args.window else args.embedding
    with rasterio.open(embedding) as src:
        height, width, n_bands = src.height, src.width, src.count
        declared_nodata = src.nodata
    result["raster"] = {"path": embedding, "shape": [height, width, n_bands], "declared_nodata": declared_nodata,
                        "page_cache_warm_s": round(warm_page_cache(embedding), 2)}
    out_tif = args.out / "pyspatialml_prediction.tif"
    result["loadavg_before_predict"] = os.getloadavg()
    predict = pyspatialml_predict(embedding, forest, out_tif, args.block, args.progress)
    result["loadavg_after_predict"] = os.getloadavg()
    n_pixels = height * width
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result.update(
        predict=predict, prediction_path=str(out_tif.resolve()), n_pixels=n_pixels, n_trees=fit_info["n_trees"],
        wall_s=predict["wall_s"], px_per_s=round(n_pixels / predict["wall_s"], 1), peak_mb=predict["peak_mb"],
        peak_mb_method="predict call: max(VmHWM of this process reset at its start, psutil RSS of the process tree)",
        ru_maxrss_mb=round((self_kb + children_kb) / 1024, 1),
        ru_maxrss_method="resource.getrusage(RUSAGE_SELF + RUSAGE_CHILDREN).ru_maxrss, whole run incl. refit",
        pyspatialml_version=version("pyspatialml"), numpy_version=np.__version__, params=fit_info["params"],
        predict_n_jobs=forest.n_jobs,
    )

    with rasterio.open(out_tif) as dst:
        labels = dst.read(1)
        result["prediction_raster"] = {"dtype": dst.dtypes[0], "nodata": dst.nodata, "compress": dst.compression
                                       and dst.compression.value}
    valid = valid_mask(embedding, height, width)
    result["nodata"] = {
        "rule": "ours: all-zero vector; pyspatialml writes nodata only where a band has declared nodata or NaN/inf",
        "n_all_zero_pixels": int((~valid).sum()),
        "n_predicted_pixels": int((labels != 0).sum()),
        "n_written_as_nodata": int((labels == 0).sum()),
        "labels_of_all_zero_pixels": label_counts(labels[~valid]),
    }
    result["label_counts"] = label_counts(labels)
    if reference is not None:
        h, w = min(reference.shape[0], height), min(reference.shape[1], width)
        ref, got, ok = reference[:h, :w], labels[:h, :w], valid[:h, :w]
        result["map_check"] = {
            "against": str(args.check_against), "shape": [h, w], "n_valid": int(ok.sum()),
            "agree_valid": int((ref[ok] == got[ok]).sum()), "differ_valid": int((ref[ok] != got[ok]).sum()),
            "agree_all": int((ref == got).sum()), "differ_all": int((ref != got).sum()),
        }
    result["loadavg_end"] = os.getloadavg()
    out_json = args.out / "pyspatialml.json"
    out_json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("px_per_s", "wall_s", "peak_mb", "n_pixels", "n_trees")}
                     | {"cpu_s": predict["cpu_s"], "others_cpu": predict["others_cpu"], "nodata": result["nodata"],
                        "map_check": result.get("map_check"), "json": str(out_json)}))


if __name__ == "__main__":
    main()
