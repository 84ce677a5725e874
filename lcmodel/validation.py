"""Validation design for a predicted map: sample size, allocation, a stratified random sample, assessment.

The good-practice design of Olofsson et al. (2014, section 5): a stratified random sample with the map
classes as strata, labelled by people, then the stratified estimators of :mod:`lcmodel.accuracy`.

* :func:`sample_size` is Cochran's (1977) formula for stratified random sampling used in Olofsson's
  section 5.1.1: ``n = (sum_i W_i S_i / S(O))^2``, ``S_i = sqrt(U_i (1 - U_i))``, with ``W_i`` the map
  share of class i, ``U_i`` its expected user's accuracy and ``S(O)`` the target standard error of overall
  accuracy. Their example (W = 0.02, 0.015, 0.32, 0.645; U = 0.7, 0.6, 0.9, 0.95; S(O) = 0.01) gives 641.
* :func:`allocate` gives every class at least ``min_per_class`` units (Olofsson suggest 50-100 for rare
  classes) and shares the rest in proportion to the map shares, never more than a class's pixels.
* :func:`draw_validation_sample` draws exactly that many pixel centres per class, without replacement and
  seeded, reading the map block by block (twice at most; never the whole map) and never a nodata pixel.
* :func:`write_sample` writes CSV; a GeoPackage (``.gpkg``) is written with the standard library's sqlite3
  following the OGC GeoPackage 1.3 encoding for a point table (no GDAL/OGR vector dependency needed).
* :func:`assess_labelled` reads the labelled file back, counts each map class's pixels (the strata sizes)
  and returns :func:`lcmodel.accuracy.stratified_estimates`.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio

from lcmodel.accuracy import confusion_counts, stratified_estimates
from lcmodel.errors import ConfigError, InputDataError, InputFileError, InsufficientDataError
from lcmodel.geo import pixel_area_m2, pixel_centres
from lcmodel.io import atomic_path, open_raster
from lcmodel.rasterio_io import one_pass_cache

__all__ = [
    "SampleDesign",
    "sample_size",
    "allocate",
    "map_class_counts",
    "design_sample",
    "draw_validation_sample",
    "write_sample",
    "read_labelled",
    "assess_labelled",
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
    from lcmodel.reference import (
        _block_windows,
        _count_classes,
        _draw_ranks,
        _locate_pixels,
        _ThreadReaders,
        _ValidRule,
    )

    path = Path(map_path)
    with open_raster(path, "class map") as src:
        crs = src.crs
        transform = src.transform
        rule = _ValidRule(np.dtype(src.dtypes[0]), src.nodata)
        windows = _block_windows(src)
        tags = src.tags()
    readers = _ThreadReaders(path)
    try:
        with one_pass_cache():
            classes, block_ids, class_ids, block_counts = _count_classes(
                readers, windows, rule, n_threads, None
            )
            want = dict(zip(design.classes, design.allocation, strict=True))
            taken = np.array([int(want.get(int(c), 0)) for c in classes], dtype=np.int64)
            totals = np.zeros(classes.size, dtype=np.int64)
            np.add.at(totals, class_ids, block_counts)
            short = [int(c) for c, t, a in zip(classes, totals, taken, strict=True) if a > t]
            if short:
                raise InputDataError(
                    f"map classes {short} have fewer pixels than the design asks; redesign it from this map"
                )
            rng = np.random.default_rng(random_state)
            draws = _draw_ranks(rng, taken, block_ids, class_ids, block_counts)
            rows, cols, codes = _locate_pixels(
                readers, windows, rule, classes, draws, n_threads, None, 0
            )
    finally:
        readers.close()
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


def write_sample(table: pd.DataFrame, crs: Any, out_path: Path | str) -> Path:
    """Write a validation sample as ``.csv`` (x, y in the map's CRS, whose WKT goes to ``<name>.crs.json``)
    or as a ``.gpkg`` point layer ``validation_points`` (written with sqlite3, see module docstring).

    Parameters
    ----------
    table : output of :func:`draw_validation_sample`.
    crs : the map's CRS (rasterio ``CRS``).
    out_path : ``.csv`` or ``.gpkg``.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        with atomic_path(out) as tmp:
            table.to_csv(tmp, index=False)
        with atomic_path(out.with_suffix(".crs.json")) as tmp:
            tmp.write_text(json.dumps({"crs_wkt": crs.to_wkt() if crs else None}) + "\n")
        return out
    if suffix == ".gpkg":
        with atomic_path(out) as tmp:
            _write_gpkg(table, crs, tmp)
        return out
    raise ConfigError(f"output {str(out)!r} has suffix {suffix!r}; use .csv or .gpkg")


def _write_gpkg(table: pd.DataFrame, crs: Any, path: Path) -> None:
    """A GeoPackage 1.3 with one point feature table ``validation_points`` (stdlib sqlite3)."""
    epsg = crs.to_epsg() if crs is not None else None
    srs_id = int(epsg) if epsg else 100000
    wkt = crs.to_wkt() if crs is not None else "undefined"
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
        con.execute("PRAGMA user_version = 10300")
        con.executescript(
            """
            CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
              organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL,
              description TEXT);
            CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
              identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT
              (strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
              srs_id INTEGER, CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
            CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
              geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
              CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name));
            """
        )
        con.executemany(
            "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
                ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
                (
                    "WGS 84 geodetic",
                    4326,
                    "EPSG",
                    4326,
                    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
                    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]',
                    None,
                ),
            ],
        )
        if srs_id != 4326:
            con.execute(
                "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                ("map CRS", srs_id, "EPSG" if epsg else "NONE", srs_id, wkt, None),
            )
        con.execute(
            "CREATE TABLE validation_points (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom POINT, id INTEGER, "
            "x DOUBLE, y DOUBLE, row INTEGER, col INTEGER, map_class INTEGER, map_name TEXT, reference TEXT)"
        )
        header = (
            b"GP" + bytes([0, 0b00000001]) + struct.pack("<i", srs_id)
        )  # v0, little-endian, no envelope
        rows = []
        for r in table.itertuples(index=False):
            geom = header + struct.pack(
                "<BIdd", 1, 1, float(r.x), float(r.y)
            )  # WKB point, little-endian
            rows.append(
                (
                    geom,
                    int(r.id),
                    float(r.x),
                    float(r.y),
                    int(r.row),
                    int(r.col),
                    int(r.map_class),
                    str(r.map_name),
                    _label_or_none(r.reference),
                )
            )
        con.executemany(
            "INSERT INTO validation_points (geom, id, x, y, row, col, map_class, map_name, reference) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        bounds = (
            (table["x"].min(), table["y"].min(), table["x"].max(), table["y"].max())
            if len(table)
            else (None, None, None, None)
        )
        con.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, min_x, min_y, max_x, max_y, srs_id) "
            "VALUES ('validation_points', 'features', 'validation_points', ?, ?, ?, ?, ?)",
            (*[None if v is None else float(v) for v in bounds], srs_id),
        )
        con.execute(
            "INSERT INTO gpkg_geometry_columns VALUES ('validation_points', 'geom', 'POINT', ?, 0, 0)",
            (srs_id,),
        )
        con.commit()
    finally:
        con.close()


def _label_or_none(value: Any) -> str | None:
    """A reference label as text, or None (SQL NULL) when empty."""
    if (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or str(value).strip() == ""
    ):
        return None
    return str(value)


def read_labelled(path: Path | str, *, reference_column: str = "reference") -> pd.DataFrame:
    """Read a labelled validation sample (``.csv`` or ``.gpkg``): rows with an empty reference are dropped.

    Returns
    -------
    DataFrame
        At least ``x, y, map_class`` and ``reference`` (int when every label is an integer).
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"labelled points {str(p)!r} do not exist; check the path")
    if p.suffix.lower() == ".gpkg":
        con = sqlite3.connect(p)
        try:
            df = pd.read_sql_query("SELECT * FROM validation_points", con)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
            raise InputFileError(
                f"{str(p)!r} has no validation_points table ({exc}); give the file we wrote"
            ) from None
        finally:
            con.close()
    else:
        try:
            df = pd.read_csv(p)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputFileError(
                f"labelled points {str(p)!r} are not a readable CSV ({exc})"
            ) from None
    missing = [c for c in ("x", "y", reference_column) if c not in df.columns]
    if missing:
        raise InputDataError(
            f"labelled points {str(p)!r} lack column(s) {missing}; fill the '{reference_column}' column of the "
            "file written by `lcmodel validation-sample`"
        )
    df = df.rename(columns={reference_column: "reference"})
    ref = df["reference"]
    labelled = ref.notna() & (ref.astype(str).str.strip() != "")
    if not labelled.any():
        raise InsufficientDataError(
            f"no point of {str(p)!r} has a reference label; label the points first"
        )
    df = df[labelled].reset_index(drop=True)
    try:
        df["reference"] = pd.to_numeric(df["reference"]).astype(np.int64)
    except (ValueError, TypeError):
        raise InputDataError(
            f"reference labels of {str(p)!r} are not all integer class values "
            f"(e.g. {df['reference'].iloc[0]!r}); use the map's class values"
        ) from None
    return df


def assess_labelled(
    map_path: Path | str, labelled_path: Path | str, *, reference_column: str = "reference"
) -> dict[str, Any]:
    """Area-adjusted accuracy and areas of a map from a labelled stratified sample (Olofsson et al. 2014).

    The map class of each point is read from the map at its x/y (the file's ``map_class`` is checked against
    it); the strata sizes are the map's class pixel counts.

    Returns
    -------
    dict
        :func:`lcmodel.accuracy.stratified_estimates` plus ``map``, ``labelled_points``, ``n_labelled``.
    """
    df = read_labelled(labelled_path, reference_column=reference_column)
    classes, counts, area = map_class_counts(map_path)
    with open_raster(map_path, "class map") as src:
        rows, cols = rasterio.transform.rowcol(
            src.transform, df["x"].to_numpy(), df["y"].to_numpy()
        )
        rows, cols = np.asarray(rows), np.asarray(cols)
        outside = (rows < 0) | (cols < 0) | (rows >= src.height) | (cols >= src.width)
        if outside.any():
            raise InputDataError(
                f"{int(outside.sum())} labelled point(s) fall outside the map (first id "
                f"{df.loc[outside, 'id'].iloc[0] if 'id' in df else int(np.flatnonzero(outside)[0])}); "
                "give x/y in the map's CRS"
            )
        mapped = np.array(
            [
                int(v[0])
                for v in src.sample(
                    zip(df["x"].to_numpy(), df["y"].to_numpy(), strict=True), indexes=1
                )
            ]
        )
        nodata = src.nodata
    if nodata is not None and (mapped == nodata).any():
        raise InputDataError(
            f"{int((mapped == nodata).sum())} labelled point(s) fall on map nodata; drop them"
        )
    if "map_class" in df and (df["map_class"].to_numpy() != mapped).any():
        raise InputDataError(
            f"{int((df['map_class'].to_numpy() != mapped).sum())} point(s) have a map_class that differs from the "
            "map at their location; assess against the map the sample was drawn from"
        )
    all_classes = sorted(set(classes.tolist()) | set(df["reference"].tolist()))
    full_counts = np.array(
        [counts[classes.tolist().index(c)] if c in classes else 0 for c in all_classes]
    )
    matrix = confusion_counts(mapped, df["reference"].to_numpy(), all_classes)
    result = stratified_estimates(matrix, full_counts, classes=all_classes, pixel_area_m2=area)
    result.update(map=str(map_path), labelled_points=str(labelled_path), n_labelled=len(df))
    return result
