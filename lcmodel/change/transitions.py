"""From-to transitions between two class maps of the same grid: a raster, a matrix, a CSV and a heat map.

Every (from, to) pair of the classes present in either map gets one value, 1..n*n in sorted (from, to) order
(:func:`transition_codes`); 0 is nodata (a pixel that is nodata in either map). The raster has a colour table
(a stable pair in its class colour, lightened; a change in the colour of the class it became) and names every
value ("Tree cover -> Cropland", "Tree cover (stable)") in its tags (``TRANSITION_<v>``) and as GDAL category
names (a PAM ``.aux.xml`` beside the COG, GDAL's own place for them). The matrix counts MAPPED pixels: an
area estimate with a confidence interval needs a labelled sample of the transitions (docs/change.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
import rasterio
from rasterio.enums import Resampling

from lcmodel.change.grids import BLOCK, grid_of, read_north_up, same_grid, windows, write_layers
from lcmodel.classes import ClassTable
from lcmodel.geo import pixel_area_m2
from lcmodel.io import atomic_path
from lcmodel.predict.layers import OutputLayer

__all__ = ["transition_codes", "TransitionResult", "write_transitions", "write_matrix", "transition_names"]

_TRANSPARENT = (0, 0, 0, 0)


def transition_codes(values: Sequence[int]) -> dict[tuple[int, int], int]:
    """Every (from, to) pair of ``values``, coded 1..n*n in sorted (from, to) order (0 is nodata)."""
    classes = sorted({int(v) for v in values})
    return {(a, b): i for i, (a, b) in enumerate(((a, b) for a in classes for b in classes), start=1)}


def _dtype(codes: dict[tuple[int, int], int]) -> str:
    return "uint8" if max(codes.values(), default=0) <= 255 else "uint16"


def transition_names(codes: dict[tuple[int, int], int], table: ClassTable | None) -> dict[int, str]:
    """Value -> "From -> To" (or "From (stable)")."""
    def name(v: int) -> str:
        return table.name(v) if table is not None else str(v)

    return {code: (f"{name(a)} (stable)" if a == b else f"{name(a)} -> {name(b)}") for (a, b), code in codes.items()}


def _colours(codes: dict[tuple[int, int], int], table: ClassTable | None) -> dict[int, tuple[int, int, int, int]]:
    cmap = table.colormap() if table is not None else {}
    out = {0: _TRANSPARENT}
    for (a, b), code in codes.items():
        r, g, bl, _ = cmap.get(b, (128, 128, 128, 255))
        if a == b:  # stable: the class colour, lightened
            r, g, bl = (int(c + (255 - c) * 0.6) for c in (r, g, bl))
        out[code] = (r, g, bl, 255)
    return out


@dataclass(frozen=True)
class TransitionResult:
    """``path``: the transitions COG; ``matrix``: pixels from (rows) -> to (columns) class values;
    ``codes``: (from, to) -> raster value; ``pixel_area_m2``: None for a geographic CRS (no hectares)."""

    path: Path
    matrix: pd.DataFrame
    codes: dict[tuple[int, int], int]
    pixel_area_m2: float | None
    year_a: int | None = None
    year_b: int | None = None


def _classes(path: Path, nodata: int, block: int) -> list[int]:
    found: set[int] = set()
    with rasterio.open(path) as src:
        for w in windows(src.width, src.height, block):
            v = src.read(1, window=w)
            found.update(int(x) for x in np.unique(v[v != nodata]))
    return sorted(found)


def write_transitions(map_a: Path | str, map_b: Path | str, out: Path | str, *, class_table: ClassTable | None,
                      nodata_a: int, nodata_b: int, year_a: int | None = None, year_b: int | None = None,
                      block_size: int = BLOCK) -> TransitionResult:
    """The transitions raster of two class maps on one grid (refused otherwise, before writing), and its matrix."""
    map_a, map_b, out = Path(map_a), Path(map_b), Path(out)
    ga, gb = grid_of(map_a, f"map of {year_a}" if year_a else "map"), grid_of(map_b, f"map of {year_b}" if year_b
                                                                             else "map")
    same_grid(ga, gb)
    classes = sorted(set(_classes(map_a, nodata_a, block_size)) | set(_classes(map_b, nodata_b, block_size)))
    codes = transition_codes(classes)
    lut = np.zeros((max(classes, default=0) + 1, max(classes, default=0) + 1), np.int64)
    for (a, b), code in codes.items():
        lut[a, b] = code
    position = np.zeros(lut.shape[0], np.int64)  # class value -> its row/column in the matrix
    position[np.array(classes, np.int64)] = np.arange(len(classes))
    counts = np.zeros((len(classes), len(classes)), np.int64)
    dtype = _dtype(codes)

    def blocks():  # type: ignore[no-untyped-def]
        with rasterio.open(map_a) as sa, rasterio.open(map_b) as sb:
            for w in windows(ga.width, ga.height, block_size):
                a = read_north_up(sa, ga, w, [1])[0].astype(np.int64)
                b = read_north_up(sb, gb, w, [1])[0].astype(np.int64)
                valid = (a != nodata_a) & (b != nodata_b)
                coded = np.zeros(a.shape, dtype)
                coded[valid] = lut[a[valid], b[valid]]
                pair = position[a[valid]] * len(classes) + position[b[valid]]
                counts[:] += np.bincount(pair, minlength=len(classes) ** 2).reshape(counts.shape)
                yield w, {"transitions": coded}

    names = transition_names(codes, class_table)
    tags = {f"TRANSITION_{code}": names[code] for code in sorted(names)}
    tags.update({f"CLASS_{code}": names[code] for code in sorted(names)})  # what validation-sample lists
    tags.update(LCMODEL_PRODUCT="transitions", LCMODEL_FROM_YEAR=str(year_a or ""), LCMODEL_TO_YEAR=str(year_b or ""),
                LCMODEL_CODES="value = 1 + index(from) * n + index(to) over the sorted classes " + str(classes))
    layer = OutputLayer(name="transitions", key="transitions", path=out, dtype=dtype, nodata=0,
                        descriptions=(f"transition {year_a or ''} -> {year_b or ''}".strip(),), tags=tags,
                        resampling=Resampling.mode, colours=_colours(codes, class_table))
    write_layers([layer], map_a, blocks(), block_size)
    _write_categories(out, names, dtype)
    matrix = pd.DataFrame(counts, index=pd.Index(classes, name="from"), columns=pd.Index(classes, name="to"))
    return TransitionResult(out, matrix, codes, pixel_area_m2(ga.crs, ga.transform), year_a, year_b)


def _write_categories(path: Path, names: dict[int, str], dtype: str) -> None:
    """GDAL's category names for band 1, in the PAM ``.aux.xml`` beside the file (GDAL reads it on open)."""
    top = max(names, default=0)
    cats = ["<Category></Category>"] + [f"<Category>{escape(names.get(v, ''))}</Category>" for v in range(1, top + 1)]
    text = ("<PAMDataset>\n  <PAMRasterBand band=\"1\">\n    <CategoryNames>\n      "
            + "\n      ".join(cats) + "\n    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n")
    with atomic_path(path.with_name(path.name + ".aux.xml")) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_matrix(result: TransitionResult, csv_path: Path | str, png_path: Path | str, *,
                 class_table: ClassTable | None) -> pd.DataFrame:
    """``transitions.csv`` (one row per transition present: its raster value, from/to values and names,
    pixels, hectares) and ``transitions.png`` (a heat map, log colour scale, counts in the cells); the rows."""
    m, area = result.matrix, result.pixel_area_m2
    names = {v: (class_table.name(v) if class_table is not None else str(v)) for v in m.index}
    rows = []
    for a in m.index:
        for b in m.columns:
            px = int(m.at[a, b])
            if px:
                rows.append({"value": result.codes[(int(a), int(b))], "from_value": int(a), "from_name": names[a],
                             "to_value": int(b), "to_name": names[b], "changed": bool(a != b), "pixels": px,
                             "hectares": None if area is None else round(px * area / 1e4, 4)})
    table = pd.DataFrame(rows, columns=["value", "from_value", "from_name", "to_value", "to_name", "changed",
                                        "pixels", "hectares"])
    with atomic_path(Path(csv_path)) as tmp:
        table.to_csv(tmp, index=False)
    _heat_map(m, names, result, Path(png_path))
    return table


def _heat_map(m: pd.DataFrame, names: dict[int, str], result: TransitionResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    n = len(m)
    fig, ax = plt.subplots(figsize=(2.2 + 0.7 * n, 1.8 + 0.6 * n), dpi=100)
    data = m.to_numpy(dtype=float)
    shown = np.where(data > 0, data, np.nan)
    vmax = max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0, 1.0)
    im = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1, vmax=vmax))
    ax.set_xticks(range(n), [names[v] for v in m.columns], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [names[v] for v in m.index], fontsize=8)
    ax.set_xlabel(f"to ({result.year_b})" if result.year_b else "to")
    ax.set_ylabel(f"from ({result.year_a})" if result.year_a else "from")
    for i in range(n):
        for j in range(n):
            if data[i, j] > 0:
                ax.text(j, i, f"{int(data[i, j]):,}", ha="center", va="center", fontsize=7,
                        color="white" if data[i, j] < vmax ** 0.5 else "black")
    fig.colorbar(im, ax=ax, label="mapped pixels (log)")
    ax.set_title("Transitions (mapped pixels, not areas)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
