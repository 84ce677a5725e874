"""Validation sample design for a predicted map: sample size, allocation, and a stratified random sample.

The good-practice design of Olofsson et al. (2014, section 5): a stratified random sample with the map
classes as strata, labelled by people, then the stratified estimators of :mod:`lcmodel.accuracy.olofsson`.

* :func:`sample_size` is Cochran's (1977) formula for stratified random sampling used in Olofsson's
  section 5.1.1: ``n = (sum_i W_i S_i / S(O))^2``, ``S_i = sqrt(U_i (1 - U_i))``, with ``W_i`` the map
  share of class i, ``U_i`` its expected user's accuracy and ``S(O)`` the target standard error of overall
  accuracy. Their example (W = 0.02, 0.015, 0.32, 0.645; U = 0.7, 0.6, 0.9, 0.95; S(O) = 0.01) gives 641.
* :func:`allocate` gives every class at least ``min_per_class`` units (Olofsson suggest 50-100 for rare
  classes) and shares the rest in proportion to the map shares, never more than a class's pixels.
* :func:`draw_validation_sample` draws exactly that many pixel centres per class, without replacement and
  seeded, reading the map block by block (twice at most; never the whole map) and never a nodata pixel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.errors import ConfigError, InputDataError, InsufficientDataError
from lcmodel.geo import pixel_area_m2, pixel_centres
from lcmodel.io import open_raster

__all__ = [
    "SAMPLE_COLUMNS",
    "SampleDesign",
    "sample_size",
    "allocate",
    "map_class_counts",
    "design_sample",
    "draw_validation_sample",
]

logger = logging.getLogger(__name__)

#: Columns of a validation sample file (``reference`` is left empty for people to fill in).
SAMPLE_COLUMNS = ("id", "x", "y", "row", "col", "map_class", "map_name", "reference")


def sample_size(
    map_proportions: Sequence[float] | np.ndarray,
    expected_users: Sequence[float] | np.ndarray | float,
    target_se: float,
) -> int:
    """Total sample size for a target standard error of overall accuracy (Cochran 1977, eq. 5.25).

    Parameters
    ----------
    map_proportions : map share ``W_i`` of each class (normalised to sum to 1).
    expected_users : expected user's accuracy of each class (or one value for all), in (0, 1).
    target_se : target standard error of overall accuracy, e.g. 0.01.

    Returns
    -------
    int
        ``ceil((sum_i W_i sqrt(U_i (1 - U_i)) / target_se)^2)``.
    """
    W = np.asarray(map_proportions, dtype=np.float64)
    if W.ndim != 1 or W.size == 0 or (W < 0).any() or W.sum() <= 0:
        raise ConfigError(
            f"map proportions {W.tolist()[:6]} must be non-negative with a positive sum"
        )
    W = W / W.sum()
    U = np.broadcast_to(np.asarray(expected_users, dtype=np.float64), W.shape)
    if ((U <= 0) | (U >= 1)).any():
        raise ConfigError(
            f"expected user's accuracies {U.tolist()[:6]} must be in (0, 1), e.g. 0.8"
        )
    if not 0 < target_se < 1:
        raise ConfigError(f"target standard error {target_se!r} must be in (0, 1), e.g. 0.01")
    return int(math.ceil(round((np.sum(W * np.sqrt(U * (1 - U))) / target_se) ** 2, 9)))


def allocate(
    n: int, map_pixels: Sequence[int] | np.ndarray, *, min_per_class: int = 50
) -> np.ndarray:
    """Units per class: proportional to the map pixels, but at least ``min_per_class`` (Olofsson 2014 sect. 5.1.1).

    Classes whose proportional share is under the minimum get the minimum (or all their pixels when they have
    fewer); the rest of the units are shared among the other classes in proportion to their pixels (largest
    remainders get the odd units), repeatedly until no share is under the minimum; a class never gets more
    units than it has pixels. The total is ``max(n, sum of minimums)``, capped at the number of pixels.

    Parameters
    ----------
    n : total sample size wanted.
    map_pixels : pixels of each map class.
    min_per_class : smallest sample of a class.

    Returns
    -------
    ndarray of int64
    """
    N = np.asarray(map_pixels, dtype=np.int64)
    if N.ndim != 1 or (N < 0).any():
        raise ConfigError(f"map pixel counts {N.tolist()[:6]} must be non-negative")
    if n < 1 or min_per_class < 0:
        raise ConfigError(
            f"n={n} and min_per_class={min_per_class} must be positive; give e.g. --n 600"
        )
    floor = np.minimum(N, min_per_class)
    total = int(min(max(n, int(floor.sum())), int(N.sum())))
    fixed = np.zeros(N.size, dtype=bool)
    alloc = np.zeros(N.size, dtype=np.int64)
    while True:
        # classes whose proportional share of what is left is under the minimum (or over their pixels) are fixed
        free = ~fixed & (N > 0)
        rest = total - int(alloc[fixed].sum())
        if not free.any():
            break
        ideal = rest * N[free] / N[free].sum()
        low = ideal < floor[free]
        high = ideal > N[free]
        if low.any() or high.any():
            idx = np.flatnonzero(free)
            alloc[idx[low]] = floor[idx[low]]
            alloc[idx[high]] = N[idx[high]]
            fixed[idx[low | high]] = True
            continue
        base = np.floor(ideal).astype(np.int64)
        left = rest - int(base.sum())
        order = np.argsort(-(ideal - base), kind="stable")[
            :left
        ]  # largest remainders get the odd units
        base[order] += 1
        alloc[free] = np.minimum(base, N[free])
        break
    return alloc


@dataclass
class SampleDesign:
    """A validation sample design: per-class pixels and the units drawn from each."""

    classes: list[int]
    map_pixels: list[int]
    allocation: list[int]
    n_total: int
    n_from_target: int | None
    target_se: float | None
    expected_users: list[float]
    min_per_class: int

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def notice(self, asked: int | None) -> str | None:
        """One line saying why the sample differs from the ``asked`` total (None when it does not).

        More points than asked: every class gets at least ``min_per_class`` (all its pixels when it has
        fewer), so the total is at least the sum of those minimums. Fewer: the map has fewer pixels.
        """
        if asked is None or asked == self.n_total:
            return None
        if self.n_total < asked:
            return (
                f"{self.n_total} points instead of --n {asked}: the map has only {sum(self.map_pixels)} "
                "classified pixels"
            )
        floors = [min(p, self.min_per_class) for p in self.map_pixels]
        return (
            f"{self.n_total} points instead of --n {asked}: each of the {len(self.classes)} map classes gets "
            f"at least --min-per-class {self.min_per_class} (all its pixels when fewer), {sum(floors)} "
            f"in all; lower --min-per-class for a smaller sample (Olofsson et al. suggest 50-100 per class)"
        )


def map_class_counts(map_path: Path | str) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Pixel count of every class in a class map (block by block).

    Returns
    -------
    (classes, counts, pixel_area_m2)
        Sorted class values present (nodata excluded), their pixel counts, and one pixel's area in m^2
        (None for a geographic CRS).
    """
    values: dict[int, int] = {}
    with open_raster(map_path, "class map") as src:
        nodata = src.nodata
        for _, window in src.block_windows(1):
            block = src.read(1, window=window)
            v, c = np.unique(block, return_counts=True)
            for a, b in zip(v.tolist(), c.tolist(), strict=True):
                if nodata is not None and a == nodata:
                    continue
                values[int(a)] = values.get(int(a), 0) + int(b)
        area = pixel_area_m2(src.crs, src.transform)
    classes = np.array(sorted(values), dtype=np.int64)
    return classes, np.array([values[c] for c in classes.tolist()], dtype=np.int64), area


def design_sample(
    map_path: Path | str,
    *,
    n: int | None = None,
    target_se: float = 0.01,
    expected_users: float | Mapping[int, float] = 0.8,
    min_per_class: int = 50,
    exclude: Sequence[int] = (),
) -> SampleDesign:
    """Design a stratified random validation sample of a class map (Olofsson et al. 2014, section 5).

    Parameters
    ----------
    map_path : the class map (band 1; its nodata is never sampled).
    n : total sample size; None = from ``target_se`` and ``expected_users`` (:func:`sample_size`).
    target_se : target standard error of overall accuracy (used when ``n`` is None).
    expected_users : expected user's accuracy, one value or ``{class: value}`` (others get 0.8).
    min_per_class : smallest sample of a class (all its pixels when it has fewer).
    exclude : map values not to sample (e.g. the reserved "unclassified" value).
    """
    classes, counts, _ = map_class_counts(map_path)
    keep = ~np.isin(classes, np.asarray(list(exclude), dtype=np.int64))
    classes, counts = classes[keep], counts[keep]
    if classes.size == 0:
        raise InsufficientDataError(
            f"class map {str(map_path)!r} has no classified pixel; check the map"
        )
    if isinstance(expected_users, Mapping):
        users = [float(expected_users.get(int(c), 0.8)) for c in classes]
    else:
        users = [float(expected_users)] * classes.size
    from_target = sample_size(counts, users, target_se) if n is None else None
    total = int(n if n is not None else from_target)  # type: ignore[arg-type]
    alloc = allocate(total, counts, min_per_class=min_per_class)
    return SampleDesign(
        classes=[int(c) for c in classes],
        map_pixels=[int(c) for c in counts],
        allocation=[int(a) for a in alloc],
        n_total=int(alloc.sum()),
        n_from_target=from_target,
        target_se=target_se if n is None else None,
        expected_users=users,
        min_per_class=min_per_class,
    )


def draw_validation_sample(
    map_path: Path | str, design: SampleDesign, *, random_state: int = 42, n_threads: int = 2
) -> tuple[pd.DataFrame, Any]:
    """Draw exactly ``design.allocation[i]`` pixel centres of each class ``design.classes[i]``.

    Pixels are drawn without replacement with ``numpy.random.default_rng(random_state)``; the map is read block
    by block (a first pass counts classes per block, a second reads only the blocks holding drawn pixels).

    Returns
    -------
    (DataFrame, CRS)
        Columns of :data:`SAMPLE_COLUMNS` (``map_name`` from the map's ``CLASS_<v>`` tags, ``reference``
        empty), sorted by class then position, and the map's CRS.
    """
    # the reference sampler's block passes, with our own allocation
    from lcmodel.reference import ClassPixelSampler

    path = Path(map_path)
    with open_raster(path, "class map") as src:
        crs = src.crs
        transform = src.transform
        sampler = ClassPixelSampler(path, src)
        tags = src.tags()
    want = dict(zip(design.classes, design.allocation, strict=True))

    def allocation(classes: np.ndarray, totals: np.ndarray) -> np.ndarray:
        taken = np.array([int(want.get(int(c), 0)) for c in classes], dtype=np.int64)
        short = [int(c) for c, t, a in zip(classes, totals, taken, strict=True) if a > t]
        if short:
            raise InputDataError(
                f"map classes {short} have fewer pixels than the design asks; redesign it from this map"
            )
        return taken

    drawn = sampler.draw(allocation, random_state=random_state, n_threads=n_threads)
    rows, cols, codes = drawn.rows, drawn.cols, drawn.codes
    xs, ys = pixel_centres(transform, rows, cols)
    codes = codes.astype(np.int64)
    table = pd.DataFrame(
        {
            "id": np.arange(1, rows.size + 1, dtype=np.int64),
            "x": xs,
            "y": ys,
            "row": rows.astype(np.int64),
            "col": cols.astype(np.int64),
            "map_class": codes,
            "map_name": [tags.get(f"CLASS_{c}", str(c)) for c in codes.tolist()],
            "reference": pd.Series([""] * rows.size, dtype=object),
        }
    )
    logger.info(
        "drew %d validation points in %d classes from %s",
        len(table),
        len(design.classes),
        path.name,
    )
    return table, crs
