"""From extracted points to the modelling table: samples, subsampling, rare classes, the table file.

The notebook's section 3, with its defects fixed:

- ONE valid mask selects features and labels together (the notebook dropped all-zero rows from the features
  only, pairing every later label with the next point's vector);
- points that fall in the same embedding pixel become one sample (WorldCover's grid is finer than the
  embedding's, so the same vector would otherwise appear several times, on both sides of the split);
- subsampling takes what exists when a class (or the whole table) is smaller than asked, instead of crashing;
- rare classes are dropped with a warning that names them, never silently.

The training table is a CSV: ``x, y, row, col, code, value, split`` then one float32 column per band.
Band values are written with the shortest repr that identifies the float32, so they read back exactly.
The ``split`` column comes from :func:`lcmodel.split.split_train_test`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lcmodel.errors import (
    ConfigError,
    DataWarning,
    InputDataError,
    InputFileError,
    InsufficientDataError,
    NoOverlapError,
)
from lcmodel.extract import Extraction
from lcmodel.geo import pixel_centres
from lcmodel.io import atomic_path
from lcmodel.reference.extra import EXTRA_COLUMN
from lcmodel.reference.purity import PURE_COLUMN

__all__ = [
    "META_COLUMNS",
    "TRAINING_TABLE_NAME",
    "build_samples",
    "subsample",
    "drop_rare_classes",
    "write_training_table",
    "read_training_table",
    "feature_columns",
    "require_columns",
]

logger = logging.getLogger(__name__)

#: Columns of the training table that are not features, in order; the band columns follow.
META_COLUMNS: tuple[str, ...] = ("x", "y", "row", "col", "code", "value", "split")
#: a collection's samples also say which tile each pixel was read from (after ``split``)
TILE_COLUMN = "tile"
TRAINING_TABLE_NAME = "training_table.csv"
_SAMPLE_COLUMNS = META_COLUMNS[:6]


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The band (feature) columns of a samples or training table, in table order.

    Parameters
    ----------
    df : DataFrame
        A table with the columns of :data:`META_COLUMNS` (``split`` optional) followed by band columns.

    Returns
    -------
    list of str
        Every column that is not in :data:`META_COLUMNS`.
    """
    return [str(c) for c in df.columns if c not in META_COLUMNS and c not in (TILE_COLUMN, PURE_COLUMN, EXTRA_COLUMN)]


def require_columns(df: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str, fix: str) -> None:
    """Raise :class:`~lcmodel.errors.InputDataError` naming the columns ``df`` lacks, what it is and the fix."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputDataError(f"{what} lacks column(s) {missing} (has {list(df.columns)[:10]}); {fix}")


def build_samples(
    points_table: pd.DataFrame, extraction: Extraction, *, dedupe: bool = True
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Pair each valid point's label with its own embedding vector; optionally one sample per pixel.

    Parameters
    ----------
    points_table : DataFrame
        Reclassified reference points in the raster's CRS: ``x``, ``y``, ``code``, ``value`` (int >= 1),
        one row per point, in the order given to :func:`lcmodel.extract.extract_values`.
    extraction : Extraction
        The values extracted at those points.
    dedupe : bool, default True
        Merge points that fall in the same embedding pixel (row, col) into one sample: its ``value`` is the
        majority value (ties: the smallest), its ``code`` the most frequent code among the points with that
        value (ties: the smallest), its x/y the pixel centre (from ``extraction.transform``; the first point's
        x/y when the transform is unknown). Every row is then one pixel, and rows are sorted by (row, col).
        Without ``dedupe`` rows keep the input order and the points' own x/y.

    Returns
    -------
    samples : DataFrame
        ``x, y, row, col, code, value`` then one float32 column per band (``extraction.band_names``).
    stats : dict
        ``n_points, n_outside, n_nodata, n_merged_duplicates, n_samples``.

    Raises
    ------
    InputDataError
        Columns missing, lengths differ, or ``value`` is not an integer label for every point.
    NoOverlapError
        No point falls on a valid pixel.

    Warns
    -----
    DataWarning
        When points are dropped, with the count outside the raster and the count on nodata pixels.
    """
    require_columns(
        points_table, ["x", "y", "code", "value"], "reference points", "reclassify the points before extraction"
    )
    n = len(points_table)
    if extraction.n_points != n:
        raise InputDataError(
            f"extraction has {extraction.n_points} rows but the points table has {n}; extract at exactly "
            "these points, in the same order"
        )
    overlap = set(extraction.band_names) & {*META_COLUMNS, TILE_COLUMN}
    if overlap:
        raise InputDataError(
            f"band name(s) {sorted(overlap)} clash with the training table's columns; rename the raster's band "
            "descriptions"
        )
    value = points_table["value"]
    if value.isna().any() or not pd.api.types.is_numeric_dtype(value):
        raise InputDataError(
            f"column 'value' has {int(value.isna().sum())} missing or non-numeric labels (dtype {value.dtype}); "
            "every code needs a value in the class table"
        )

    valid = np.asarray(extraction.valid, dtype=bool)
    inside = np.asarray(extraction.inside, dtype=bool)
    n_outside = int((~inside).sum())
    n_nodata = int((inside & ~valid).sum())
    n_valid = int(valid.sum())
    sel = extraction.selection
    rule = extraction.rule.describe() + ("" if sel.is_all else f", over the {len(sel.indexes)} bands used")
    if n_valid == 0:
        raise NoOverlapError(
            f"none of the {n} reference points falls on a valid embedding pixel ({n_outside} outside the raster, "
            f"{n_nodata} on nodata: {rule}); check that the reference data and "
            "embedding.path cover the same area"
        )
    if n_outside or n_nodata:
        warnings.warn(
            f"dropped {n - n_valid} of {n} reference points: {n_outside} outside the embedding raster, "
            f"{n_nodata} on nodata pixels ({rule})",
            DataWarning,
            stacklevel=2,
        )

    # ONE mask for labels and features: every sample keeps its own label and vector.
    labels = points_table.loc[valid, ["x", "y", "code", "value"]].reset_index(drop=True)
    samples = pd.DataFrame(
        {
            "x": labels["x"].to_numpy(dtype=np.float64),
            "y": labels["y"].to_numpy(dtype=np.float64),
            "row": np.asarray(extraction.row)[valid].astype(np.int64),
            "col": np.asarray(extraction.col)[valid].astype(np.int64),
            "code": labels["code"],
            "value": labels["value"].to_numpy().astype(np.int64),
        }
    )
    features = pd.DataFrame(
        np.ascontiguousarray(extraction.values[valid], dtype=np.float32), columns=list(extraction.band_names)
    )
    if PURE_COLUMN in points_table.columns:  # purity flags of a raster reference's points (sampling.purity_window)
        samples[PURE_COLUMN] = points_table.loc[valid, PURE_COLUMN].to_numpy(dtype=bool)
    if EXTRA_COLUMN in points_table.columns:  # reference.extra_points: merged apart from the raster's points
        samples[EXTRA_COLUMN] = points_table.loc[valid, EXTRA_COLUMN].to_numpy(dtype=bool)
    samples = pd.concat([samples, features], axis=1)

    if extraction.tile is not None:  # a collection: pixels are (tile, row, col), centres in the points' CRS
        samples.insert(2, "tile", np.asarray(extraction.tile)[valid].astype(np.int64))
    n_merged = 0
    if dedupe:
        samples = _merge_pixels(samples, extraction, valid)
        n_merged = n_valid - len(samples)
        if n_merged:
            logger.info("merged %d reference points that share an embedding pixel with another", n_merged)
    stats = {
        "n_points": n,
        "n_outside": n_outside,
        "n_nodata": n_nodata,
        "n_merged_duplicates": n_merged,
        "n_samples": len(samples),
    }
    return samples, stats


def _merge_pixels(samples: pd.DataFrame, extraction: Extraction, valid: np.ndarray) -> pd.DataFrame:
    """One row per (row, col): majority value (ties: smallest), then most frequent code (ties: smallest).

    For a collection the pixel is (tile, row, col) and its centre comes from ``extraction.centres``.
    """
    keys = ["tile", "row", "col"] if "tile" in samples.columns else ["row", "col"]
    keys += [EXTRA_COLUMN] if EXTRA_COLUMN in samples.columns else []  # an extra point never merges with the sample
    if extraction.centres is not None:
        samples = samples.assign(_cx=extraction.centres[0][valid], _cy=extraction.centres[1][valid])
    votes = samples.groupby([*keys, "value"], sort=False).size().rename("n").reset_index()
    winners = (
        votes.sort_values([*keys, "n", "value"], ascending=[*([True] * len(keys)), False, True], kind="mergesort")
        .drop_duplicates(keys, keep="first")[[*keys, "value"]]
    )
    agree = samples[[*keys, "value", "code"]].merge(winners, on=[*keys, "value"], how="inner")
    code_votes = agree.groupby([*keys, "code"], sort=False).size().rename("n").reset_index()
    codes = (
        code_votes.sort_values([*keys, "n", "code"], ascending=[*([True] * len(keys)), False, True], kind="mergesort")
        .drop_duplicates(keys, keep="first")[[*keys, "code"]]
    )
    # Every point of a pixel has the same vector; keep the first one's x/y and features.
    first = samples.drop_duplicates(keys, keep="first").drop(columns=["code", "value"])
    if PURE_COLUMN in samples.columns:  # a merged pixel is pure when every point in it is
        first = first.drop(columns=[PURE_COLUMN]).merge(
            samples.groupby(keys, sort=False)[PURE_COLUMN].all().reset_index(), on=keys, how="inner")
    merged = first.merge(winners, on=keys, how="inner").merge(codes, on=keys, how="inner")
    merged = merged.sort_values(keys, kind="mergesort").reset_index(drop=True)
    if extraction.centres is not None:
        merged["x"], merged["y"] = merged.pop("_cx").to_numpy(), merged.pop("_cy").to_numpy()
    elif extraction.transform is not None:
        merged["x"], merged["y"] = pixel_centres(
            extraction.transform, merged["row"].to_numpy(), merged["col"].to_numpy()
        )
    merged["value"] = merged["value"].astype(np.int64)
    meta = [*_SAMPLE_COLUMNS[:2], "tile", *_SAMPLE_COLUMNS[2:]] if "tile" in keys else list(_SAMPLE_COLUMNS)
    meta += [PURE_COLUMN] if PURE_COLUMN in samples.columns else []
    meta += [EXTRA_COLUMN] if EXTRA_COLUMN in samples.columns else []
    return merged[[*meta, *(c for c in feature_columns(samples) if c not in ("_cx", "_cy"))]]


def subsample(
    df: pd.DataFrame, n_sample: int, *, random_state: int = 42, class_column: str = "code"
) -> pd.DataFrame:
    """At most ``n_sample`` rows, each original class in proportion (at least one row each).

    The notebook's stratified draw: for each class of proportion p, ``n_cls = max(1, round(p * n_sample))``
    rows drawn with ``random_state``, then the union shuffled and cut to ``n_sample``. Unlike the notebook,
    a class with fewer than ``n_cls`` rows gives all of them, and a table of at most ``n_sample`` rows is
    returned whole (shuffled with ``random_state``), instead of crashing.

    Parameters
    ----------
    df : DataFrame
        Samples, one row each.
    n_sample : int
        Rows wanted (``sampling.n_sample``).
    random_state : int, default 42
        Seed of every draw.
    class_column : str, default "code"
        Column of the original reference class.

    Returns
    -------
    DataFrame
        The drawn rows, with a fresh RangeIndex.
    """
    if int(n_sample) < 1:
        raise ConfigError(f"sampling.n_sample is {n_sample}; it must be at least 1")
    require_columns(df, [class_column], "samples table", "give the table's class column as class_column")
    n_sample = int(n_sample)
    if len(df) <= n_sample:
        return df.sample(frac=1.0, random_state=random_state).reset_index(drop=True)
    proportions = df[class_column].value_counts(normalize=True)
    parts = []
    for cls, prop in proportions.items():
        rows = df[df[class_column] == cls]
        n_cls = min(len(rows), max(1, int(round(float(prop) * n_sample))))
        parts.append(rows.sample(n=n_cls, random_state=random_state))
    drawn = pd.concat(parts)
    return drawn.sample(n=min(n_sample, len(drawn)), random_state=random_state).reset_index(drop=True)


def drop_rare_classes(
    df: pd.DataFrame, min_fraction: float, *, class_column: str = "value"
) -> tuple[pd.DataFrame, list[Any]]:
    """Remove classes under ``min_fraction`` of the rows, with a warning that names them.

    Parameters
    ----------
    df : DataFrame
        Samples.
    min_fraction : float
        ``sampling.min_class_fraction`` (0 keeps every class).
    class_column : str, default "value"
        Column of the modelled class.

    Returns
    -------
    df : DataFrame
        The rows of the kept classes, with a fresh RangeIndex.
    dropped : list
        The removed classes, sorted.

    Raises
    ------
    InsufficientDataError
        The table is empty, or every class is under ``min_fraction``.

    Warns
    -----
    DataWarning
        Naming each dropped class with its row count and share: they can never be predicted.
    """
    require_columns(df, [class_column], "samples table", "give the table's class column as class_column")
    n = len(df)
    if n == 0:
        raise InsufficientDataError("the samples table is empty; check the reference points and the embedding")
    counts = df[class_column].value_counts()
    fractions = counts / n
    rare = sorted(fractions[fractions < min_fraction].index.tolist())
    if not rare:
        return df.reset_index(drop=True), []
    if len(rare) == len(counts):
        top = counts.index[0]
        raise InsufficientDataError(
            f"every class is under sampling.min_class_fraction={min_fraction:g} (the largest, {class_column} "
            f"{top}, has {fractions[top]:.2%} of {n} rows); lower sampling.min_class_fraction"
        )
    detail = ", ".join(f"{class_column} {c} ({int(counts[c])} rows, {fractions[c]:.2%})" for c in rare)
    warnings.warn(
        f"dropped {len(rare)} rare class(es) under sampling.min_class_fraction={min_fraction:g} of {n} rows, "
        f"so they cannot be predicted: {detail}; lower sampling.min_class_fraction to keep them",
        DataWarning,
        stacklevel=2,
    )
    kept = df[~df[class_column].isin(rare)].reset_index(drop=True)
    return kept, [c.item() if isinstance(c, np.generic) else c for c in rare]


def write_training_table(df: pd.DataFrame, out_dir: Path | str) -> Path:
    """Write ``training_table.csv`` into ``out_dir`` atomically; band values read back bit-exact.

    Parameters
    ----------
    df : DataFrame
        Columns ``x, y, row, col, code, value, split`` and the band columns.
    out_dir : path-like
        Output folder (created if needed).

    Returns
    -------
    Path
        The written file.
    """
    require_columns(df, list(META_COLUMNS), "training table", "build it with split_train_test")
    meta = [*META_COLUMNS, *([TILE_COLUMN] if TILE_COLUMN in df.columns else [])]  # tile: collections only
    bands = feature_columns(df)
    if not bands:
        raise InputDataError("training table has no band columns; build it from build_samples output")
    table = df[[*meta, *bands]].astype({b: np.float32 for b in bands})
    path = Path(out_dir) / TRAINING_TABLE_NAME
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    logger.info("wrote %s (%d rows, %d bands)", path, len(table), len(bands))
    return path


def read_training_table(path: Path | str) -> pd.DataFrame:
    """Read a training table (or a samples table, without ``split``); band columns come back float32.

    Parameters
    ----------
    path : path-like
        A CSV written by :func:`write_training_table` (or ``DataFrame.to_csv`` of :func:`build_samples`).

    Returns
    -------
    DataFrame
        ``x, y`` float64, ``row, col, value`` int64, ``code`` as read (int or str), ``split`` str when present,
        band columns float32.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"training table {str(path)!r} does not exist; run the extraction stage first")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"training table {str(path)!r} is not a readable CSV ({str(exc).splitlines()[0]}); "
            "rebuild it with the pipeline"
        ) from None
    require_columns(df, list(_SAMPLE_COLUMNS), f"training table {str(path)!r}", "rebuild it with the pipeline")
    _require_complete(path, df)
    bands = feature_columns(df)
    try:
        df = df.astype(
            {"x": np.float64, "y": np.float64, "row": np.int64, "col": np.int64, "value": np.int64}
            | {b: np.float32 for b in bands}
        )
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            f"training table {str(path)!r} has non-numeric or missing values ({exc}); rebuild it with the pipeline"
        ) from None
    return df


def _require_complete(path: Path, df: pd.DataFrame) -> None:
    """Refuse a table cut short (a copy or a disk that stopped mid-file): pandas reads the cut row as NaNs.

    Tables written by :func:`write_training_table` end with a newline, and a training table (with ``split``)
    holds valid pixels only, so it has no missing value.
    """
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
    missing = df.index[df.isna().any(axis=1)] if "split" in df.columns else df.index[:0]
    if last != b"\n" or len(missing):
        where = "its last line ends mid-row" if last != b"\n" else f"row {int(missing[0]) + 1} has missing values"
        raise InputDataError(f"training table {str(path)!r} is incomplete ({where}): the file was cut short or "
                             "edited; delete it and rerun, so that the pipeline rebuilds it")
