"""The temporal filter (``prediction.temporal_filter: majority``): one-year flips removed across the years.

For every interior year t of three or more consecutive years' maps, a pixel whose class differs from years
t-1 and t+1 while those two agree takes their class (A-B-A becomes A-A-A). Decided from the ORIGINAL maps, so
the result does not depend on the order the years are processed in; the first and last years are unchanged;
a pixel that is nodata in any of the three years keeps its class. A lasting change (A-B-B) is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from lcmodel.change.grids import BLOCK, grid_of, read_north_up, same_grid, windows, write_layers
from lcmodel.errors import InputDataError
from lcmodel.predict.layers import OutputLayer

__all__ = ["temporal_majority"]


def temporal_majority(maps: Sequence[Path | str], outs: Sequence[Path | str], *, nodata: int,
                      years: Sequence[int] | None = None, block_size: int = BLOCK) -> dict[str, Any]:
    """Filtered copies of ``maps`` (same profile, colour table and tags) into ``outs``; the pixels changed per
    year and per (from, to)."""
    if len(maps) < 3 or len(outs) != len(maps):
        raise InputDataError(f"the temporal filter needs three or more years' maps ({len(maps)} given) and one "
                             "output per map; map three or more embedding.years or set prediction.temporal_filter: "
                             "null")
    grids = [grid_of(m, "map") for m in maps]
    for g in grids[1:]:
        same_grid(grids[0], g)
    labels = [str(y) for y in years] if years is not None else [str(i) for i in range(len(maps))]
    changed = {label: 0 for label in labels}
    pairs: dict[str, int] = {}
    with rasterio.open(maps[0]) as src:
        try:
            colours = src.colormap(1) if src.dtypes[0] in ("uint8", "uint16") else None
        except ValueError:  # no colour table
            colours = None
        tags, dtype, description = src.tags(), src.dtypes[0], src.descriptions[0] or "class"
    layers = [OutputLayer(name=f"filtered_{i}", key=f"filtered_{i}", path=Path(o), dtype=dtype, nodata=nodata,
                          descriptions=(description,), tags={**tags, "LCMODEL_TEMPORAL_FILTER": "majority"},
                          resampling=Resampling.mode, colours=colours) for i, o in enumerate(outs)]

    def blocks():  # type: ignore[no-untyped-def]
        sources = [rasterio.open(m) for m in maps]
        try:
            for w in windows(grids[0].width, grids[0].height, block_size):
                stack = np.stack([read_north_up(s, g, w, [1])[0] for s, g in zip(sources, grids, strict=True)])
                out = stack.copy()
                for t in range(1, len(maps) - 1):
                    before, now, after = stack[t - 1], stack[t], stack[t + 1]
                    flip = (before == after) & (now != before) & (before != nodata) & (now != nodata) & \
                        (after != nodata)
                    out[t][flip] = before[flip]
                    changed[labels[t]] += int(flip.sum())
                    if flip.any():
                        keys, n = np.unique(np.stack([now[flip], before[flip]]), axis=1, return_counts=True)
                        for (a, b), k in zip(keys.T, n, strict=True):
                            pairs[f"{int(a)}->{int(b)}"] = pairs.get(f"{int(a)}->{int(b)}", 0) + int(k)
                yield w, {f"filtered_{i}": out[i] for i in range(len(maps))}
        finally:
            for s in sources:
                s.close()

    write_layers(layers, maps[0], blocks(), block_size)
    return {"method": "majority", "rule": "A-B-A -> A-A-A for every interior year, decided on the unfiltered maps",
            "changed_per_year": changed, "changed_total": sum(changed.values()),
            "changed_by_pair": dict(sorted(pairs.items()))}
