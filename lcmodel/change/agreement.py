"""Class change against embedding change: do the map's changes come with a change of the embedding?

Over the pixels valid in both (a transition and an embedding angle), the four cases: class changed with or
without embedding change, class stable with or without it. A class flip with NO embedding change is most
likely the classifier's noise (the surface looks the same both years); an embedding change with a stable class
may be a change within a class (or one the classes cannot tell apart). Per changed transition, the share of
its pixels whose embedding changed too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

from lcmodel.change.grids import BLOCK, grid_of, read_north_up, same_grid, windows
from lcmodel.change.transitions import TransitionResult

__all__ = ["agreement_table", "CASES"]

CASES = ("class changed, embedding changed", "class changed, no embedding change",
         "class stable, embedding changed", "class stable, no embedding change")


def agreement_table(transitions: TransitionResult, mask_path: Path | str, *, block_size: int = BLOCK
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the four cases with pixels and shares, per changed transition: pixels and share with embedding change).

    The first table has a ``likely_noise_share`` row: the share of class flips with no embedding change.
    """
    gt, gm = grid_of(transitions.path, "transitions"), grid_of(mask_path, "embedding change mask")
    same_grid(gt, gm)
    n_codes = max(transitions.codes.values(), default=0) + 1
    with_change = np.zeros(n_codes, np.int64)
    total = np.zeros(n_codes, np.int64)
    with rasterio.open(transitions.path) as st, rasterio.open(mask_path) as sm:
        for w in windows(gt.width, gt.height, block_size):
            code = read_north_up(st, gt, w, [1])[0].astype(np.int64)
            mask = read_north_up(sm, gm, w, [1])[0]
            ok = (code > 0) & (mask <= 1)
            total += np.bincount(code[ok], minlength=n_codes)
            with_change += np.bincount(code[ok & (mask == 1)], minlength=n_codes)
    stable = np.zeros(n_codes, bool)
    names = {}
    for (a, b), c in transitions.codes.items():
        stable[c] = a == b
        names[c] = (a, b)
    changed = ~stable
    changed[0] = False
    counts = [int(with_change[changed].sum()), int((total - with_change)[changed].sum()),
              int(with_change[stable].sum()), int((total - with_change)[stable].sum())]
    n = max(sum(counts), 1)
    flips = counts[0] + counts[1]
    cases = pd.DataFrame({"case": [*CASES, "likely_noise_share"],
                          "pixels": [*counts, counts[1]],
                          "share": [*(c / n for c in counts), counts[1] / flips if flips else 0.0]})
    rows = [{"value": c, "from_value": names[c][0], "to_value": names[c][1], "pixels": int(total[c]),
             "with_embedding_change": int(with_change[c]),
             "share_with_embedding_change": float(with_change[c] / total[c])}
            for c in range(1, n_codes) if changed[c] and total[c] > 0]
    per = pd.DataFrame(rows, columns=["value", "from_value", "to_value", "pixels", "with_embedding_change",
                                      "share_with_embedding_change"])
    return cases, per
