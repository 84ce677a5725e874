"""The demo case over several years, with change planted where it is known (``lcmodel demo --years``, the tests).

The first year's embedding is the demo's (:func:`lcmodel.demo.make_demo_data`); every later year is the same
embedding with a little noise of its own (so stable pixels differ a little between years, as real annual
embeddings do) and, in two square blocks, vectors turned toward another class's centre:

- ``changed``: from the second year on, toward the centre of Cropland: a lasting change (A-B-B);
- ``flip``: in the second year only, toward the centre of Built-up: a one-year flip (A-B-A), what the
  temporal filter removes.

Class centres are the normalised mean vectors of the reference's classes on the embedding grid. The config
trains on the first year (``embedding.train_year``) and maps every year (``embedding.years``) from
``embedding/{year}/embedding.tif``. Same seed, same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.warp import Resampling, reproject

from lcmodel.demo import make_demo_data
from lcmodel.io import atomic_path

__all__ = ["make_demo_years", "DEMO_YEARS", "planted_blocks"]

DEMO_YEARS = (2021, 2022, 2023)
#: the WorldCover codes whose centres the planted blocks turn toward
TOWARD = {"changed": 40, "flip": 50}
_STRIP = 256


def planted_blocks(size: int) -> dict[str, tuple[slice, slice]]:
    """(rows, cols) of the planted blocks on a ``size`` x ``size`` demo embedding (both in valid pixels)."""
    side = max(4, size // 6)
    return {
        "changed": (slice(size // 10, size // 10 + side), slice(size // 10, size // 10 + side)),
        "flip": (slice(size // 10, size // 10 + side), slice(size // 2, size // 2 + side)),
    }


def _centres(emb: np.ndarray, codes: np.ndarray) -> dict[int, np.ndarray]:
    out = {}
    for code in np.unique(codes[codes > 0]):
        mean = emb[:, codes == code].mean(axis=1)
        out[int(code)] = mean / np.linalg.norm(mean)
    return out


def make_demo_years(out_dir: Path | str, *, years: Sequence[int] = DEMO_YEARS, size: int = 384, seed: int = 0,
                    n_points: int = 3000, noise: float = 0.01, pull: float = 0.85,
                    sections: Mapping[str, Any] | None = None) -> Path:
    """Write the multi-year demo inputs and config (``demo.yaml``) into ``out_dir``; the config's path.

    ``noise``: the standard deviation of each later year's own white noise per band (before the vectors are
    normalised again); ``pull``: how far the planted blocks turn toward the other class's centre (0..1).
    """
    if len(years) < 2 or sorted(years) != list(years):
        raise ValueError(f"years {list(years)}: give two or more years in increasing order")
    cfg_path = make_demo_data(out_dir, size=size, seed=seed, n_points=n_points, sections=sections)
    out = cfg_path.parent
    with rasterio.open(out / "embedding.tif") as src:
        base = src.read()
        profile = src.profile
        band_names = src.descriptions
        with rasterio.open(out / "worldcover.tif") as ref:
            codes = np.zeros(base.shape[1:], np.uint8)
            reproject(rasterio.band(ref, 1), codes, dst_transform=src.transform, dst_crs=src.crs,
                      resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    valid = base.any(axis=0)
    centres = _centres(base, np.where(valid, codes, 0))
    blocks = planted_blocks(size)
    rng = np.random.default_rng(seed + 1)
    for k, year in enumerate(years):
        folder = out / "embedding" / str(year)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "embedding.tif") as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                for b, name in enumerate(band_names):
                    dst.set_band_description(b + 1, name or f"A{b:02d}")
                for top in range(0, size, _STRIP):  # row strips: a 2048 x 2048 x 64 case stays within ~1.5 GB
                    rows = slice(top, min(top + _STRIP, size))
                    emb = base[:, rows].copy()
                    if k > 0:
                        emb += noise * rng.standard_normal(emb.shape, dtype=np.float32)
                        for name, (r, c) in blocks.items():
                            if name == "flip" and k != 1:
                                continue
                            r = slice(max(r.start, rows.start) - rows.start, min(r.stop, rows.stop) - rows.start)
                            if r.stop > r.start:
                                target = centres[TOWARD[name]][:, None, None].astype(np.float32)
                                emb[:, r, c] = (1 - pull) * emb[:, r, c] + pull * target
                        emb /= np.linalg.norm(emb, axis=0, keepdims=True)
                        emb[:, ~valid[rows]] = 0.0
                    dst.write(emb.astype(np.float32), window=((rows.start, rows.stop), (0, size)))
    (out / "embedding.tif").unlink()
    config = yaml.safe_load(cfg_path.read_text())
    config["embedding"] = {"path": "embedding/{year}/embedding.tif", "years": list(years),
                           "train_year": int(years[0])}
    with atomic_path(cfg_path) as tmp:
        header = "# lcmodel multi-year demo run (synthetic data with planted change; see lcmodel/demo_years.py)\n"
        tmp.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return cfg_path
