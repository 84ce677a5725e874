"""Per-pixel uncertainty products of a prediction: class probabilities, margin, entropy, "unclassified".

All come from the same ``predict_proba`` call as the class map (lcmodel.predict), block by block, and are
written as uint8 Cloud-Optimized GeoTIFFs on the map's grid with nodata 255 (averaged overviews; their
layers are in :mod:`lcmodel.predict.layers`, written by :mod:`lcmodel.predict.cog`):

* probabilities: one band per model class (model class order), ``round(100 p)`` half up, band description =
  class name. Each value is off by at most 0.5 from ``100 p``, so a pixel's bands sum to 100 within
  ``n_classes / 2`` (in practice within 1 or 2);
* margin: ``round(100 (p_top1 - p_top2))`` (``p_top1`` for a one-class model): 0 = a tie, 100 = certain;
* entropy: ``round(100 H / ln K)``, ``H = -sum p ln p`` over the K model classes: 0 = certain, 100 = uniform.

``unclassified_below`` (percent) writes a reserved map value where ``100 p_top1 < unclassified_below``; those
pixels are counted apart from the classes. The reserved value defaults to the map dtype's maximum (its
maximum minus 1 when that is the nodata value) and is tagged ``CLASS_<v>=unclassified`` in the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lcmodel.errors import ConfigError

__all__ = [
    "UNCERTAINTY_NODATA",
    "UNCLASSIFIED_NAME",
    "Uncertainty",
    "uncertainty_spec",
    "default_unclassified_value",
]

#: Nodata of every uncertainty raster (values are 0..100).
UNCERTAINTY_NODATA = 255
UNCLASSIFIED_NAME = "unclassified"


@dataclass(frozen=True)
class Uncertainty:
    """What to compute per block (picklable: sent to prediction workers)."""

    probabilities: bool = False
    margin: bool = False
    entropy: bool = False
    unclassified_below: float | None = None
    unclassified_value: int | None = None

    @property
    def active(self) -> bool:
        return (
            self.probabilities or self.margin or self.entropy or self.unclassified_below is not None
        )

    def compute(
        self, proba: np.ndarray | None, mask: np.ndarray, labels: np.ndarray, counts: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Products of one block; ``labels`` and ``counts`` are updated in place for "unclassified".

        Parameters
        ----------
        proba : (n valid pixels, classes) probabilities, or None when the block has no valid pixel.
        mask : (rows, cols) valid pixels.
        labels : (rows, cols) class map of the block (modified where unclassified).
        counts : per-class pixel counts of the block (unclassified pixels are taken out).
        """
        k = counts.size
        out: dict[str, np.ndarray] = {}
        shape = mask.shape
        if self.probabilities:
            band = np.full((k, *shape), UNCERTAINTY_NODATA, dtype=np.uint8)
            if proba is not None:
                band[:, mask] = _percent(proba).T
            out["probabilities"] = band
        if self.margin:
            m = np.full(shape, UNCERTAINTY_NODATA, dtype=np.uint8)
            if proba is not None:
                if k > 1:
                    top2 = np.partition(proba, k - 2, axis=1)[:, k - 2 :]
                    m[mask] = _percent(top2[:, 1] - top2[:, 0])
                else:
                    m[mask] = _percent(proba[:, 0])
            out["margin"] = m
        if self.entropy:
            e = np.full(shape, UNCERTAINTY_NODATA, dtype=np.uint8)
            if proba is not None:
                if k > 1:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        h = -np.sum(np.where(proba > 0, proba * np.log(proba), 0.0), axis=1)
                    e[mask] = _percent(h / math.log(k))
                else:
                    e[mask] = 0
            out["entropy"] = e
        n_unc = 0
        if (
            self.unclassified_below is not None
            and self.unclassified_value is not None
            and proba is not None
        ):
            top = proba.max(axis=1)
            low = top * 100.0 < self.unclassified_below
            if low.any():
                index = np.argmax(proba, axis=1)
                counts -= np.bincount(index[low], minlength=k).astype(counts.dtype)
                flat = labels[mask]
                flat[low] = self.unclassified_value
                labels[mask] = flat
                n_unc = int(low.sum())
        out["n_unclassified"] = np.asarray(n_unc, dtype=np.int64)
        return out


def _percent(values: np.ndarray) -> np.ndarray:
    """``round(100 v)`` half up, clipped to 0..100, as uint8."""
    return np.clip(np.floor(np.asarray(values) * 100.0 + 0.5), 0, 100).astype(np.uint8)


def default_unclassified_value(dtype: str, nodata: int) -> int:
    """The dtype's maximum, or its maximum minus 1 when that is the map's nodata."""
    top = int(np.iinfo(dtype).max)
    return top - 1 if top == nodata else top


def uncertainty_spec(
    classes: np.ndarray,
    dtype: str,
    nodata: int,
    out_path: Path,
    conf_out: Path | None,
    probabilities_path: Path | str | None,
    margin_path: Path | str | None,
    entropy_path: Path | str | None,
    unclassified_below: float | None,
    unclassified_value: int | None,
) -> tuple[Uncertainty, dict[str, Path]]:
    """Check the uncertainty options of ``predict_raster``; return the spec and the output paths.

    Raises
    ------
    ConfigError
        A threshold outside 0..100, a reserved value that is a class, nodata or outside the map dtype, or an
        output path equal to another output.
    """
    paths = {
        name: Path(p)
        for name, p in (
            ("probabilities", probabilities_path),
            ("margin", margin_path),
            ("entropy", entropy_path),
        )
        if p is not None
    }
    taken = {out_path.resolve(), *([conf_out.resolve()] if conf_out is not None else [])}
    for name, path in paths.items():
        if path.resolve() in taken:
            raise ConfigError(
                f"{name} path {str(path)!r} equals another output; give each output its own file"
            )
        taken.add(path.resolve())
    value: int | None = None
    if unclassified_below is not None:
        if not 0 <= float(unclassified_below) <= 100:
            raise ConfigError(
                f"unclassified_below={unclassified_below!r} is not a percentage; use a value in 0..100 (e.g. 40)"
            )
        value = (
            default_unclassified_value(dtype, nodata)
            if unclassified_value is None
            else int(unclassified_value)
        )
        info = np.iinfo(dtype)
        if value == nodata or value in set(classes.tolist()) or not info.min <= value <= info.max:
            raise ConfigError(
                f"unclassified_value={value} is a class value, the nodata value ({nodata}) or outside {dtype}; "
                "set prediction.unclassified_value to an unused value"
            )
    spec = Uncertainty(
        probabilities="probabilities" in paths,
        margin="margin" in paths,
        entropy="entropy" in paths,
        unclassified_below=None if unclassified_below is None else float(unclassified_below),
        unclassified_value=value,
    )
    return spec, paths
