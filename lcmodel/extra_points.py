"""Extra labelled points (``reference.extra_points``) go to the TRAINING part; the test part keeps its design.

The raster sample is subsampled, cut of rare classes and split exactly as without extra points (they are set
aside first), so the test part is the same sample of the reference, point for point. Then the extra points
join the training part, except:

- a point on a pixel of the sample (the sample's label stays, and the test part stays as it was);
- a point of a class the sample does not keep (a rare class dropped, or a class the sample lacks): the model
  could not be tested on it;
- with a spatial split, a point in a test block (the grid of the split): it would sit next to test points
  and make the test figures optimistic.

Both are counted in ``spatial_blocks.json`` (``extra_points``) and the report says how many were added.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.reference.extra import EXTRA_COLUMN

__all__ = ["split_off_extra", "add_extra_to_training", "extra_note"]

log = logging.getLogger(__name__)


def split_off_extra(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the reference sample, the extra points) of a samples table; no flag column in either."""
    if EXTRA_COLUMN not in df.columns:
        return df, df.iloc[:0]
    flag = df[EXTRA_COLUMN].astype(bool)
    return (df.loc[~flag].drop(columns=[EXTRA_COLUMN]).reset_index(drop=True),
            df.loc[flag].drop(columns=[EXTRA_COLUMN]).reset_index(drop=True))


def _blocks(x: np.ndarray, y: np.ndarray, side: float) -> pd.Series:
    """The block of each point on the split's origin-anchored grid (:func:`lcmodel.accuracy.grid_blocks`)."""
    cx, cy = np.floor(x / side).astype(np.int64), np.floor(y / side).astype(np.int64)
    return pd.Series(cx.astype(str)) + "," + pd.Series(cy.astype(str))


def add_extra_to_training(split: pd.DataFrame, extra: pd.DataFrame, *, strategy: str,
                          block_size: float | None) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The split table with the usable extra points appended as ``train`` rows; what was done (None: none)."""
    if extra.empty:
        return split, None
    n_read = len(extra)
    keys = ["tile", "row", "col"] if "tile" in split.columns else ["row", "col"]
    taken = extra[keys].merge(split[keys].drop_duplicates(), on=keys, how="left", indicator=True)["_merge"]
    on_sample = pd.Series((taken == "both").to_numpy(), index=extra.index)
    known = extra["value"].isin(split["value"].unique())
    extra = extra.loc[known & ~on_sample]
    in_test = pd.Series(False, index=extra.index)
    if strategy == "spatial" and block_size is not None and len(extra):
        test = split["split"] == "test"
        test_blocks = set(_blocks(split.loc[test, "x"].to_numpy(), split.loc[test, "y"].to_numpy(), block_size))
        in_test = pd.Series(_blocks(extra["x"].to_numpy(), extra["y"].to_numpy(), block_size).isin(test_blocks)
                            .to_numpy(), index=extra.index)
    added = extra.loc[~in_test].assign(split="train")[list(split.columns)]
    info = {
        "points": n_read,
        "added_to_training": len(added),
        "left_out_unknown_class": int((~known & ~on_sample).sum()),
        "left_out_in_test_blocks": int(in_test.sum()),
        "left_out_on_sample_pixels": int(on_sample.sum()),
        "added_by_class": {str(int(v)): int(n) for v, n in added["value"].value_counts().sort_index().items()},
    }
    log.info("extra points: %d of %d added to the training part (%d of an unkept class, %d in test blocks)",
             info["added_to_training"], n_read, info["left_out_unknown_class"], info["left_out_in_test_blocks"])
    return pd.concat([split, added], ignore_index=True), info


def extra_note(info: dict[str, Any]) -> str:
    """The report's line on the extra points."""
    left = []
    if info["left_out_in_test_blocks"]:
        left.append(f"{info['left_out_in_test_blocks']} in test blocks")
    if info.get("left_out_on_sample_pixels"):
        left.append(f"{info['left_out_on_sample_pixels']} on a pixel of the reference sample")
    if info["left_out_unknown_class"]:
        left.append(f"{info['left_out_unknown_class']} of a class the sample does not keep")
    return (f"{info['added_to_training']} of {info['points']} extra labelled points (reference.extra_points) were "
            "added to the training part only; the test part excludes them and is the reference sample's split "
            "as without them" + (f" ({', '.join(left)} left out)." if left else "."))
