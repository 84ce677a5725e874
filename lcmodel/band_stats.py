"""Per-band statistics of the training data, and the check of an embedding against them before prediction.

A model trained on one embedding applied to another whose bands are reordered (a raster without band names,
so nothing checks the order), rescaled (raw int8 values stored as float, a x 10000 scaling) or missing (one
band NaN everywhere) silently writes a wrong or empty map. Two cheap checks catch these before any block is
predicted:

* :func:`training_band_stats` records, per band used, the mean, standard deviation, minimum and maximum of
  the training table's features; the bundle keeps them (``ModelBundle.band_stats``).
* :func:`check_embedding` reads a probe of the embedding (:func:`probe_windows`: up to 3 x 3 windows of
  :data:`PROBE_SIDE` pixels spread over the raster, the bands the model uses) and

  - raises :class:`~lcmodel.errors.InputDataError` naming every band that is nodata (NaN or the declared
    value) in every probed pixel where another band holds data: with it every pixel would be nodata;
  - warns (:class:`~lcmodel.errors.DataWarning`) naming the bands whose probed mean lies more than
    :data:`MEAN_SHIFT_LIMIT` training standard deviations from the training mean, or whose spread differs by
    more than a factor :data:`SPREAD_RATIO_LIMIT`; or, when the root mean square over all bands of
    ``shift^2 + ln(ratio)^2`` exceeds :data:`RMS_LIMIT`, the bands beyond it. Only with at least
    :data:`MIN_PROBE_PIXELS` valid probed pixels.

The tolerance was set on real AlphaEarth values (``../shared/data/aef_wisconsin``, 2024, 64 bands): between
the halves and opposite quadrants of that tile the largest band mean shift is 1.34 training standard
deviations, the spread ratios lie within 0.47..2.12 and the overall figure within 0.37..0.71; a random
reordering of its bands gives 2.2..2.9 overall and moves about 20 of the 64 band means by more than 3
standard deviations, the reversed order 2.0..2.3. Only one AlphaEarth tile and year is stored there, so the
margin for other regions and years is that factor of about two, not a measurement. Two similar bands swapped
are not noticed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from lcmodel.bands import band_list_text
from lcmodel.embedding import NodataRule
from lcmodel.errors import DataWarning, InputDataError

__all__ = [
    "training_band_stats",
    "probe_windows",
    "read_probe",
    "check_probe",
    "check_embedding",
    "PROBE_SIDE",
    "MEAN_SHIFT_LIMIT",
    "SPREAD_RATIO_LIMIT",
    "RMS_LIMIT",
    "MIN_PROBE_PIXELS",
]

#: Side in pixels of each probe window (9 of them: at most 147,456 pixels read, about 1 % of the prediction time
#: of a 2048 x 2048 raster).
PROBE_SIDE = 128
#: A band's probed mean further than this many training standard deviations from its training mean is named.
MEAN_SHIFT_LIMIT = 3.0
#: A band whose probed standard deviation is more than this factor above or below the training one is named.
SPREAD_RATIO_LIMIT = 3.0
#: Over all bands: the root mean square of (mean shift in SDs)^2 + ln(spread ratio)^2 above this is reported
#: (a reordering moves many bands a little; a region or year moves them less, see the module notes).
RMS_LIMIT = 1.5
#: The statistics are compared only over at least this many valid probed pixels.
MIN_PROBE_PIXELS = 200


def training_band_stats(features: np.ndarray, band_names: Sequence[str]) -> dict[str, Any]:
    """Mean, standard deviation, minimum and maximum of each band (column) of the training features.

    Returns
    -------
    dict
        ``{"n": rows, "bands": [...], "mean": [...], "std": [...], "min": [...], "max": [...]}``, JSON-friendly
        (NaN values are ignored; a band without any finite value gets None).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(band_names):
        raise ValueError(f"expected (rows, {len(band_names)}) features, got shape {x.shape}")
    finite = np.isfinite(x)
    stats: dict[str, Any] = {"n": int(x.shape[0]), "bands": [str(b) for b in band_names]}
    for key, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
        stats[key] = [float(fn(x[finite[:, j], j])) if finite[:, j].any() else None for j in range(x.shape[1])]
    return stats


def probe_windows(
    width: int, height: int, side: int = PROBE_SIDE, per_axis: int = 3, block: tuple[int, int] = (1, 1)
) -> list[Window]:
    """Up to ``per_axis`` x ``per_axis`` windows of ``side`` pixels spread evenly over the raster (corners and
    centre), without duplicates, each starting on the raster's internal ``block`` grid (rows, cols) so that it
    decodes as few blocks as possible; a raster smaller than ``per_axis * side`` on an axis is covered whole."""
    def starts(n: int, step: int) -> list[int]:
        if n <= per_axis * side:
            return list(range(0, n, side))
        return sorted({round(k * (n - side) / (per_axis - 1)) // step * step for k in range(per_axis)})

    return [Window(c, r, min(side, width - c), min(side, height - r))
            for r in starts(height, max(1, block[0])) for c in starts(width, max(1, block[1]))]


def read_probe(src: DatasetReader, indexes: Sequence[int]) -> np.ndarray:
    """The raw values of the probe windows (:func:`probe_windows`) of bands ``indexes`` (1-based), as
    (bands, pixels). A window that cannot be read is left out: the prediction names it when it gets there."""
    parts = [np.empty((len(indexes), 0), dtype=src.dtypes[0])]
    for w in probe_windows(src.width, src.height, block=src.block_shapes[0]):
        try:
            parts.append(src.read(list(indexes), window=w).reshape(len(indexes), -1))
        except RasterioIOError:
            continue
    return np.concatenate(parts, axis=1)


def check_probe(
    raw: np.ndarray,
    rule: NodataRule,
    band_names: Sequence[str],
    indexes: Sequence[int],
    stats: dict[str, Any] | None,
    *,
    raster: str,
) -> None:
    """Check probed raw values (bands, pixels) of the bands ``indexes`` (named ``band_names``) against the
    nodata rule and the training statistics ``stats`` (None: only the nodata check).

    Raises
    ------
    InputDataError
        A band is nodata in every probed pixel where another band holds data.
    """
    missing = rule.missing(raw)
    has_data = ~missing.all(axis=0)  # pixels where some band holds a value
    if has_data.any():
        dead = np.flatnonzero(missing[:, has_data].all(axis=1)).tolist()
        if dead:
            what = _bands_text([indexes[j] for j in dead], [band_names[j] for j in dead])
            raise InputDataError(
                f"embedding raster {raster!r}: {what} {'is' if len(dead) == 1 else 'are'} nodata (NaN or the "
                f"nodata value) in all {int(has_data.sum())} probed pixels where the other bands hold data, so "
                "every pixel of the map would be nodata; export the embedding again, or train a model without "
                f"{'that band' if len(dead) == 1 else 'those bands'} (embedding.bands)"
            )
    if stats is None or list(stats.get("bands") or []) != [str(b) for b in band_names]:
        return
    valid = rule.valid_mask(raw[:, :, None])[:, 0]
    if int(valid.sum()) < MIN_PROBE_PIXELS:
        return
    features = rule.to_features(raw[:, valid].T).astype(np.float64)
    shift, ratio = _deviations(features, stats)
    cost = shift**2 + np.log(ratio) ** 2  # 0 for a band exactly like its training data
    rms = float(np.sqrt(np.mean(cost[np.isfinite(cost)]))) if np.isfinite(cost).any() else 0.0
    off = np.flatnonzero((shift > MEAN_SHIFT_LIMIT) | (ratio > SPREAD_RATIO_LIMIT)).tolist()
    if not off and rms > RMS_LIMIT:  # no band far off, but many somewhat: name those beyond the overall limit
        off = np.flatnonzero(cost > RMS_LIMIT**2).tolist()
    if off:
        what = _bands_text([indexes[j] for j in off], [band_names[j] for j in off])
        warnings.warn(
            f"embedding raster {raster!r}: {len(off)} of {len(band_names)} bands differ from the model's training "
            f"data ({what}; mean up to {float(shift[off].max()):.1f} training SDs off, limit {MEAN_SHIFT_LIMIT:g}; "
            f"spread up to {float(ratio[off].max()):.1f}x, limit {SPREAD_RATIO_LIMIT:g}x; over all bands "
            f"{rms:.2f}, limit {RMS_LIMIT:g}): check the band order and scale against the training embedding "
            "(reordered, rescaled or another product), or the map may be wrong",
            DataWarning,
            stacklevel=3,
        )


def _deviations(features: np.ndarray, stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per band: |probed mean - training mean| in training SDs, and the spread ratio (>= 1, either way);
    0 and 1 for a band without training statistics or with a constant training value."""
    n = features.shape[1]
    shift, ratio = np.zeros(n), np.ones(n)
    mean, std = features.mean(axis=0), features.std(axis=0)
    for j in range(n):
        m, s = stats["mean"][j], stats["std"][j]
        if m is None or s is None or not s > 0:
            continue
        shift[j] = abs(float(mean[j]) - m) / s
        r = float(std[j]) / s
        ratio[j] = max(r, 1.0 / r) if r > 0 else math.inf
    return shift, ratio


def _bands_text(indexes: Sequence[int], names: Sequence[str]) -> str:
    return f"band{'s' if len(indexes) > 1 else ''} {band_list_text(indexes, names)}"


def check_embedding(
    src: DatasetReader,
    rule: NodataRule,
    band_names: Sequence[str],
    indexes: Sequence[int],
    stats: dict[str, Any] | None,
    *,
    raster: str,
) -> None:
    """Read the probe of an open embedding (:func:`read_probe`) and check it (:func:`check_probe`)."""
    check_probe(read_probe(src, indexes), rule, band_names, indexes, stats, raster=raster)
