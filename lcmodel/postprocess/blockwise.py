"""Cleaning a class map block by block: the sieve and the majority filter on overlapping windows, into a COG.

Each block's core is computed on the core padded by :func:`~lcmodel.postprocess.filters.halo` pixels
(clipped to the raster) and only the core is kept, so the result is the whole-raster result for any block
size (the proof is in :mod:`lcmodel.postprocess.filters`). Memory: one padded window at a time.

The clean map is a new file (the raw map stays): a COG with the raw map's grid, data type, nodata, tags,
band description, colour table and overview levels (mode resampling), written to a temporary name beside
it and renamed when complete.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from lcmodel.errors import InputDataError
from lcmodel.io import atomic_path, open_raster
from lcmodel.postprocess.filters import halo, majority, sieve

__all__ = ["CleanOptions", "CleanSummary", "clean_blocks", "clean_array", "clean_map"]

#: ``read(window) -> array``: a window of the raw map (inside the raster)
Reader = Callable[[Window], np.ndarray]


@dataclass(frozen=True)
class CleanOptions:
    """What to do: ``mmu_pixels`` (sieve, None: off), its ``connectivity`` (4 or 8), ``majority`` (3 or 5,
    None: off). The sieve runs first."""

    mmu_pixels: int | None = None
    connectivity: int = 4
    majority: int | None = None

    def __post_init__(self) -> None:
        if self.mmu_pixels is not None and self.mmu_pixels < 2:
            raise InputDataError(f"mmu_pixels {self.mmu_pixels} removes nothing; give 2 or more pixels, or null")
        if self.connectivity not in (4, 8):
            raise InputDataError(f"connectivity {self.connectivity} is not 4 or 8; give 4 (edges) or 8 (corners too)")
        if self.majority is not None and (self.majority < 3 or self.majority % 2 == 0):
            raise InputDataError(f"majority window {self.majority} is not odd and >= 3; give 3 or 5, or null")

    @property
    def active(self) -> bool:
        return self.mmu_pixels is not None or self.majority is not None

    @property
    def halo(self) -> int:
        return halo(self.mmu_pixels, self.majority)

    def describe(self) -> str:
        steps = []
        if self.mmu_pixels is not None:
            steps.append(f"sieve: patches under {self.mmu_pixels} px ({self.connectivity}-connected) removed")
        if self.majority is not None:
            steps.append(f"majority filter {self.majority}x{self.majority}")
        return ", then ".join(steps) or "none"


@dataclass
class CleanSummary:
    """Pixels changed by each step and overall, and the clean map's class counts."""

    options: CleanOptions
    n_valid: int = 0
    changed_by_sieve: int = 0
    changed_by_majority: int = 0
    changed: int = 0
    class_counts: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "mmu_pixels": o.mmu_pixels, "connectivity": o.connectivity, "majority": o.majority,
            "order": o.describe(), "halo_px": o.halo, "n_valid": self.n_valid,
            "changed_by_sieve": self.changed_by_sieve, "changed_by_majority": self.changed_by_majority,
            "changed": self.changed, "changed_fraction": self.changed / self.n_valid if self.n_valid else 0.0,
            "class_counts": {str(k): v for k, v in sorted(self.class_counts.items())},
        }


def _core_windows(height: int, width: int, block_size: int) -> Iterator[Window]:
    for r in range(0, height, block_size):
        for c in range(0, width, block_size):
            yield Window(c, r, min(block_size, width - c), min(block_size, height - r))


def clean_blocks(read: Reader, height: int, width: int, options: CleanOptions, *, nodata: Any,
                 block_size: int = 512, summary: CleanSummary | None = None
                 ) -> Iterator[tuple[Window, np.ndarray]]:
    """The clean map, block by block: (core window, cleaned core) in row-major order.

    ``read`` gives windows of the raw map; each core is read padded by ``options.halo`` (clipped to the
    raster). ``summary``, when given, is filled with the counts as the blocks go.
    """
    if block_size < 1:
        raise InputDataError(f"block size {block_size} is not positive; give e.g. 512")
    h = options.halo
    for core in _core_windows(height, width, block_size):
        r0, c0 = max(0, int(core.row_off) - h), max(0, int(core.col_off) - h)
        r1 = min(height, int(core.row_off + core.height) + h)
        c1 = min(width, int(core.col_off + core.width) + h)
        raw = read(Window(c0, r0, c1 - c0, r1 - r0))
        sieved = raw if options.mmu_pixels is None else sieve(
            raw, options.mmu_pixels, connectivity=options.connectivity, nodata=nodata)
        out = sieved if options.majority is None else majority(sieved, options.majority, nodata=nodata)
        inner = (slice(int(core.row_off) - r0, int(core.row_off) - r0 + int(core.height)),
                 slice(int(core.col_off) - c0, int(core.col_off) - c0 + int(core.width)))
        result = out[inner]
        if summary is not None:
            _count(summary, raw[inner], sieved[inner], result, nodata)
        yield core, result


def _count(summary: CleanSummary, raw: np.ndarray, sieved: np.ndarray, out: np.ndarray, nodata: Any) -> None:
    valid = np.ones(raw.shape, dtype=bool) if nodata is None else raw != nodata
    summary.n_valid += int(valid.sum())
    summary.changed_by_sieve += int((sieved != raw).sum())
    summary.changed_by_majority += int((out != sieved).sum())
    summary.changed += int((out != raw).sum())
    values, counts = np.unique(out[valid], return_counts=True)
    for v, n in zip(values.tolist(), counts.tolist(), strict=True):
        summary.class_counts[int(v)] = summary.class_counts.get(int(v), 0) + int(n)


def clean_array(arr: np.ndarray, options: CleanOptions, *, nodata: Any = None, block_size: int | None = None
                ) -> np.ndarray:
    """:func:`clean_blocks` on an array in memory; ``block_size=None``: the whole array as one block."""
    height, width = arr.shape
    out = np.empty_like(arr)
    size = block_size or max(height, width, 1)
    for w, block in clean_blocks(lambda win: arr[win.toslices()], height, width, options, nodata=nodata,
                                 block_size=size):
        out[w.toslices()] = block
    return out


def clean_map(src_path: Path | str, dst_path: Path | str, options: CleanOptions, *, block_size: int = 512,
              progress: Callable[[int, int], None] | None = None) -> CleanSummary:
    """Write the clean map of the class map ``src_path`` to the COG ``dst_path`` (atomically); its counts.

    Raises
    ------
    InputDataError
        Nothing to do (no option set), or the map is not a single-band integer raster.
    """
    from lcmodel.predict.cog import build_overviews, copy_cog, write_colour_table

    if not options.active:
        raise InputDataError("no postprocess option is set; set postprocess.mmu_pixels and/or postprocess.majority")
    summary = CleanSummary(options)
    with open_raster(src_path, "class map") as src:
        if src.count != 1 or np.dtype(src.dtypes[0]).kind not in "ui":
            raise InputDataError(f"class map {str(src_path)!r} has {src.count} band(s) of {src.dtypes[0]}; "
                                 "the map filters need one band of integer class values (a map.tif)")
        nodata = None if src.nodata is None else np.dtype(src.dtypes[0]).type(src.nodata)
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
                   "dtype": src.dtypes[0], "nodata": src.nodata, "crs": src.crs, "transform": src.transform,
                   "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
                   "bigtiff": "IF_SAFER"}
        tags, description, factors = src.tags(), src.descriptions[0], src.overviews(1)
        try:
            colours = src.colormap(1)
        except ValueError:  # no colour table
            colours = None
        n_blocks = len(list(_core_windows(src.height, src.width, block_size)))
        dst = Path(dst_path)
        with tempfile.TemporaryDirectory(prefix=".postprocess.", dir=dst.parent) as work:
            tmp = Path(work) / "clean.tif"
            with rasterio.open(tmp, "w", **profile) as out:
                out.update_tags(**tags, LCMODEL_POSTPROCESS=options.describe())
                if description:
                    out.set_band_description(1, description)
                blocks = clean_blocks(lambda w: src.read(1, window=w), src.height, src.width, options,
                                      nodata=nodata, block_size=block_size, summary=summary)
                for i, (window, block) in enumerate(blocks):
                    out.write(block, 1, window=window)
                    if progress is not None:
                        progress(i + 1, n_blocks)
            if factors:
                build_overviews(tmp, factors, Resampling.mode)
            if colours is not None:
                write_colour_table(tmp, colours, profile["dtype"])
            with atomic_path(dst) as final:
                copy_cog(tmp, final)
    return summary
