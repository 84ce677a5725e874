"""Reference labels for benchmarks/bench_pyspatialml.py: the notebook's own pickled forest on a raster window.

Loads ``best_model.pkl`` as the seed notebook wrote it (joblib, numpy 2, so run this in the project venv) and
predicts the top-left ``--size`` x ``--size`` window of the embedding exactly as the notebook does
(``src.read(window)``, bands last, float32, ``estimator.predict``), then saves the labels as an ``(h, w)`` .npy.
``bench_pyspatialml.py --check-against`` compares them with its refitted forest (same forest?) and with
pyspatialml's map (same labels?). ``--size 0`` takes the whole raster.

    .venv/bin/python benchmarks/notebook_forest_labels.py --embedding ../bench-data/e2048/embedding.tif \
        --model ../bench-data/pipeline-work/notebook/best_model.pkl --size 512 --out notebook_labels_512.npy
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import joblib
import numpy as np
import rasterio
from rasterio.windows import Window


def notebook_labels(embedding: str, model: str, size: int, block: int = 512) -> np.ndarray:
    """The notebook forest's labels on the top-left ``size`` x ``size`` window (0: whole raster), block by block."""
    forest = joblib.load(model)
    with rasterio.open(embedding) as src:
        height = src.height if size <= 0 else min(size, src.height)
        width = src.width if size <= 0 else min(size, src.width)
        out = np.zeros((height, width), dtype=np.asarray(forest.classes_).dtype)
        for row in range(0, height, block):
            for col in range(0, width, block):
                window = Window(col, row, min(block, width - col), min(block, height - row))
                pixels = src.read(window=window)
                n_bands, h, w = pixels.shape
                with warnings.catch_warnings():  # fitted on a DataFrame, predicts an array, as in the notebook
                    warnings.filterwarnings("ignore", message="X does not have valid feature names")
                    pred = forest.predict(pixels.reshape(n_bands, -1).T.astype(np.float32))
                out[row:row + h, col:col + w] = pred.reshape(h, w)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embedding", required=True)
    p.add_argument("--model", required=True, help="the notebook's best_model.pkl")
    p.add_argument("--size", type=int, default=512, help="top-left window side in pixels; 0 = whole raster")
    p.add_argument("--out", required=True, help=".npy file for the (h, w) labels")
    args = p.parse_args()
    t0 = time.perf_counter()
    labels = notebook_labels(args.embedding, args.model, args.size)
    np.save(args.out, labels)
    values, counts = np.unique(labels, return_counts=True)
    print(json.dumps({"out": args.out, "shape": list(labels.shape), "dtype": str(labels.dtype),
                      "classes": {str(v): int(c) for v, c in zip(values, counts, strict=True)},
                      "numpy": np.__version__, "wall_s": round(time.perf_counter() - t0, 2)}))


if __name__ == "__main__":
    main()
