"""The two map filters on arrays: a minimum-mapping-unit sieve and a majority filter, and the halo each needs.

Both are defined on the whole raster; :mod:`lcmodel.postprocess.blockwise` computes them block by block
on windows padded by :func:`halo` and keeps each block's core, which is provably the whole-raster result.

**Patches.** A patch is a maximal set of pixels of one value, connected through 4-neighbours
(``connectivity=4``) or 8-neighbours (``connectivity=8``). Nodata pixels belong to no patch, are no
neighbour of anything and never change.

**Sieve** (:func:`sieve`). A patch of fewer than ``mmu`` pixels is *small*. Every pixel of a small patch
takes the value that shares the longest border with the patch among the pixels of *large* patches next to
it (neighbours in the same connectivity; the border is counted in pixel pairs; a tie goes to the lowest
value); a small patch with no large neighbour keeps its value. Every decision is taken on the input map,
all at once. Where a small patch lies inside one large patch (a speck in a field: the usual case) this is
``rasterio.features.sieve``'s result too; GDAL's own rule ("the largest neighbour polygon", then chains of
merges) compares the sizes of patches that may span the whole raster, so no block-wise scheme with a
bounded overlap can reproduce it; the longest-border rule can, as follows.

**Why a bounded halo is exact.** Let ``d`` be a pixel's chebyshev distance from a block's core. A path of
``k`` pixels inside one patch changes ``d`` by at most ``k - 1`` (each step moves one row and/or column), so a
patch of ``n`` pixels lies within ``n - 1`` of any of its pixels. Label the patches in the core padded by
``H`` pixels (clipped to the raster, beyond which nothing exists). (1) Take a pixel ``p`` at ``d <= D``. If its
patch is small (``n <= mmu - 1``) it lies within ``D + mmu - 2``, inside the window when ``H`` is at least
that, where it is labelled whole, with its true size. If its patch is large and leaves the window, its part
in the window holds a path from ``p`` to the window's edge (``d = H``), so at least ``H - D + 1`` pixels: large
in the window too when ``H >= D + mmu - 1``. So with ``H >= D + mmu - 1`` the window says exactly which
patches of the pixels within ``D`` are small. (2) The sieve's value at a core pixel (``d = 0``) depends on
its patch; if that is small it lies within ``mmu - 2``, its neighbours within ``mmu - 1``, and the value
depends on which of their patches are large: (1) with ``D = mmu - 1`` needs ``H >= 2 mmu - 2``. (3) The
majority filter of radius ``r`` at a core pixel reads the sieved map within ``r``; the same argument from
``d = r`` needs ``H >= r + 2 mmu - 2``; alone it needs ``H >= r``. Pixels of the window beyond those
distances may be wrong in the window; they are never kept. The bound is tight: a small patch of ``mmu - 1``
pixels running out of the core in a line, next to a line of exactly ``mmu`` pixels running on, needs all
``2 mmu - 2`` (tested).

**Majority** (:func:`majority`). Each valid pixel takes the most frequent value among the valid pixels of the
``size x size`` window centred on it (pixels outside the raster and nodata are not counted, so nodata never
wins); on a tie the centre keeps its value when it is among the most frequent, else the lowest of them wins.
Order: the sieve first, then the majority filter (the majority filter smooths the edges the sieve leaves).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["sieve", "majority", "patches", "halo", "STRUCTURES"]

#: scipy.ndimage structuring elements of the two connectivities
STRUCTURES: dict[int, np.ndarray] = {
    4: ndimage.generate_binary_structure(2, 1),
    8: ndimage.generate_binary_structure(2, 2),
}


def halo(mmu: int | None, majority_size: int | None) -> int:
    """The overlap (pixels on each side of a block) that makes the block-wise result the whole raster's.

    ``2 mmu - 2`` for the sieve, ``size // 2`` for the majority filter, their sum for both (module docstring).
    """
    sieve_halo = 2 * mmu - 2 if mmu else 0
    return sieve_halo + (majority_size // 2 if majority_size else 0)


def _valid(arr: np.ndarray, nodata: Any) -> np.ndarray:
    return np.ones(arr.shape, dtype=bool) if nodata is None else arr != nodata


def patches(arr: np.ndarray, nodata: Any, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch labels (0 on nodata, else 1..n) and each label's pixel count (index 0: none)."""
    labels = np.zeros(arr.shape, dtype=np.int32)  # a window holds far fewer than 2**31 patches
    valid = _valid(arr, nodata)
    offset = 0
    for value in np.unique(arr[valid]):
        lab, n = ndimage.label(valid & (arr == value), structure=STRUCTURES[connectivity])
        labels[lab > 0] = lab[lab > 0] + offset
        offset += n
    sizes = np.bincount(labels.ravel(), minlength=offset + 1)
    sizes[0] = 0
    return labels, sizes


def _pairs(shape: tuple[int, int], connectivity: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """(pixel, neighbour) slice pairs, one per direction (every ordered pair of neighbours once)."""
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    h, w = shape
    out = []
    for dr, dc in steps:
        a = (slice(max(0, -dr), h - max(0, dr)), slice(max(0, -dc), w - max(0, dc)))
        b = (slice(max(0, dr), h - max(0, -dr)), slice(max(0, dc), w - max(0, -dc)))
        out.append((a, b))
    return out


def sieve(arr: np.ndarray, mmu: int, *, connectivity: int = 4, nodata: Any = None) -> np.ndarray:
    """Replace the patches of fewer than ``mmu`` pixels (the module docstring's rule); a new array.

    Parameters
    ----------
    arr : 2-D class map (integer).
    mmu : minimum mapping unit in pixels (>= 2).
    connectivity : 4 or 8.
    nodata : the map's nodata value (never changed, never a neighbour), or None.
    """
    if mmu < 2:
        raise ValueError(f"mmu {mmu} removes nothing; give 2 or more pixels")
    if connectivity not in STRUCTURES:
        raise ValueError(f"connectivity {connectivity} is not 4 or 8")
    labels, sizes = patches(arr, nodata, connectivity)
    small = (sizes < mmu) & (np.arange(sizes.size) > 0)
    out = arr.copy()
    if not small.any():
        return out
    values = np.unique(arr[labels > 0])
    keys: list[np.ndarray] = []
    for a, b in _pairs(arr.shape, connectivity):
        la, lb = labels[a], labels[b]
        hit = small[la] & (lb > 0) & ~small[lb]
        if hit.any():  # (small patch, index of its large neighbour's value)
            keys.append(la[hit].astype(np.int64) * values.size + np.searchsorted(values, arr[b][hit]))
    if not keys:
        return out
    key, count = np.unique(np.concatenate(keys), return_counts=True)
    patch, value_index = np.divmod(key, values.size)
    order = np.lexsort((value_index, -count, patch))  # per patch: longest border first, then lowest value
    patch, value_index = patch[order], value_index[order]
    first = np.ones(patch.size, dtype=bool)
    first[1:] = patch[1:] != patch[:-1]
    replacement = np.full(sizes.size, -1, dtype=np.int64)
    replacement[patch[first]] = value_index[first]
    change = replacement[labels] >= 0
    out[change] = values[replacement[labels][change]]
    return out


def majority(arr: np.ndarray, size: int, *, nodata: Any = None) -> np.ndarray:
    """The ``size x size`` majority filter (the module docstring's rule); a new array.

    Parameters
    ----------
    arr : 2-D class map (integer).
    size : window side, odd (3 or 5).
    nodata : the map's nodata value (stays, never counted), or None.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"majority window {size} is not an odd size of 3 or more")
    valid = _valid(arr, nodata)
    out = arr.copy()
    values = np.unique(arr[valid])
    if values.size < 2:
        return out
    best = np.zeros(arr.shape, dtype=np.int32)
    best_value = arr.copy()
    centre_count = np.zeros(arr.shape, dtype=np.int32)
    kernel = np.ones((size, size), dtype=np.int32)
    for v in values:  # ascending: a strictly larger count replaces, so ties keep the lowest value
        counts = ndimage.convolve((valid & (arr == v)).astype(np.int32), kernel, mode="constant", cval=0)
        better = counts > best
        best[better] = counts[better]
        best_value[better] = v
        is_centre = arr == v
        centre_count[is_centre] = counts[is_centre]
    keep = centre_count == best  # the centre is among the most frequent
    out[valid] = np.where(keep, arr, best_value)[valid]
    return out
