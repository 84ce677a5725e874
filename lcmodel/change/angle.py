"""Embedding change: the angle between two years' embedding vectors of each pixel, and a changed/stable mask.

AlphaEarth embeddings are unit vectors (int8 tiles are de-quantized first, :class:`~lcmodel.embedding.NodataRule`,
and only nearly unit: every vector is normalised here), and the Earth Engine catalog suggests their dot
product between years as a change signal. The angle ``arccos(a . b)`` says the same in degrees, 0 (same
vector) .. 180 (opposite).

``embedding_angle.tif`` stores round(angle / 180 * 250): 0..250 (``scale_degrees_per_unit`` = 0.72 in its
tags), 255 nodata; ``embedding_changed.tif`` is 1 where the angle is at least the threshold, 0 below, 255
nodata.

**The threshold.** :data:`DEFAULT_THRESHOLD_DEG` is 30 degrees, a dot product of 0.87: well above the
year-to-year wobble of a stable surface (a few degrees in the synthetic demo; the stable pixels of real
annual embeddings should be measured on your area, see the percentiles the result reports) and well below
the angle between two different land covers (typically 60 degrees or more between class centres). It is a
starting point: calibrate it with labelled change (the agreement table and a validation sample show where it
misses). The result records the threshold used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from lcmodel.change.grids import BLOCK, grid_of, read_north_up, same_grid, windows, write_layers
from lcmodel.config_embedding import CHANGE_THRESHOLD_DEG
from lcmodel.embedding import NodataRule
from lcmodel.predict.layers import OutputLayer

__all__ = ["DEFAULT_THRESHOLD_DEG", "SCALE", "angle_degrees", "AngleResult", "write_embedding_change"]

#: the default change threshold, degrees (see the module docstring)
DEFAULT_THRESHOLD_DEG = CHANGE_THRESHOLD_DEG
#: stored units per degree: 0..180 degrees -> 0..250
SCALE = 250.0 / 180.0
NODATA = 255


def angle_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, bands) vectors -> the angle between each pair, degrees (float32); NaN where either is missing or zero."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("...i,...i->...", a, b) / (na * nb)
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    angle[~((na > 0) & (nb > 0) & np.isfinite(angle))] = np.nan
    return angle.astype(np.float32)


@dataclass(frozen=True)
class AngleResult:
    """The two rasters, the valid and changed pixel counts, the threshold and exact angle percentiles
    (degrees, from a histogram of the stored 0.72-degree steps over every valid pixel: exact to one step)."""

    angle_path: Path
    mask_path: Path
    valid: int
    changed: int
    threshold_deg: float
    percentiles: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"angle": self.angle_path.name, "mask": self.mask_path.name, "valid": self.valid,
                "changed": self.changed, "changed_fraction": self.changed / self.valid if self.valid else 0.0,
                "threshold_deg": self.threshold_deg, "percentiles_deg": self.percentiles}


def write_embedding_change(emb_a: Path | str, emb_b: Path | str, out_angle: Path | str, out_mask: Path | str, *,
                           threshold_deg: float = DEFAULT_THRESHOLD_DEG, band_indexes: list[int] | None = None,
                           nodata_a: float | None = None, nodata_b: float | None = None,
                           block_size: int = BLOCK) -> AngleResult:
    """The angle and changed-mask COGs of two embedding rasters on one grid (north-up outputs)."""
    out_angle, out_mask = Path(out_angle), Path(out_mask)
    ga, gb = grid_of(emb_a, "embedding"), grid_of(emb_b, "embedding")
    same_grid(ga, gb)
    hist = np.zeros(251, np.int64)
    counts = {"valid": 0, "changed": 0}

    def blocks():  # type: ignore[no-untyped-def]
        with rasterio.open(emb_a) as sa, rasterio.open(emb_b) as sb:
            ra, rb = NodataRule.detect(sa, nodata_a), NodataRule.detect(sb, nodata_b)
            for w in windows(ga.width, ga.height, block_size):
                a = read_north_up(sa, ga, w, band_indexes)
                b = read_north_up(sb, gb, w, band_indexes)
                valid = ra.valid_mask(a) & rb.valid_mask(b)
                angle = np.full(valid.shape, np.nan, np.float32)
                angle[valid] = angle_degrees(ra.to_features(a[:, valid].T), rb.to_features(b[:, valid].T))
                ok = np.isfinite(angle)
                stored = np.full(valid.shape, NODATA, np.uint8)
                stored[ok] = np.round(angle[ok] * SCALE).astype(np.uint8)
                mask = np.full(valid.shape, NODATA, np.uint8)
                mask[ok] = (angle[ok] >= threshold_deg).astype(np.uint8)
                hist[:] += np.bincount(stored[ok], minlength=251)[:251]
                counts["valid"] += int(ok.sum())
                counts["changed"] += int((mask == 1).sum())
                yield w, {"angle": stored, "changed": mask}

    layers = [
        OutputLayer(name="angle", key="angle", path=out_angle, dtype="uint8", nodata=NODATA,
                    descriptions=("embedding angle between the years (degrees x 250/180)",),
                    tags={"LCMODEL_PRODUCT": "embedding_angle", "scale_degrees_per_unit": f"{1 / SCALE:.6f}",
                          "units": "degrees = value * 180 / 250"}, resampling=Resampling.average),
        OutputLayer(name="changed", key="changed", path=out_mask, dtype="uint8", nodata=NODATA,
                    descriptions=(f"embedding changed (angle >= {threshold_deg:g} degrees)",),
                    tags={"LCMODEL_PRODUCT": "embedding_changed", "threshold_deg": f"{threshold_deg:g}",
                          "VALUE_0": "stable", "VALUE_1": "changed"}, resampling=Resampling.mode,
                    colours={0: (230, 230, 230, 255), 1: (220, 30, 30, 255), NODATA: (0, 0, 0, 0)}),
    ]
    write_layers(layers, emb_a, blocks(), block_size)
    return AngleResult(out_angle, out_mask, counts["valid"], counts["changed"], float(threshold_deg),
                       _percentiles(hist))


def _percentiles(hist: np.ndarray) -> dict[str, float]:
    total = int(hist.sum())
    if not total:
        return {}
    cum = np.cumsum(hist)
    return {f"p{q}": round(float(np.searchsorted(cum, q / 100 * total) / SCALE), 2) for q in (50, 90, 99)}
