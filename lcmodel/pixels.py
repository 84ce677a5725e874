"""Classify a pixel table (one row per pixel, one column per band) with a model bundle.

This is what a served model does with a request: the same nodata rule and the same features as block-wise
prediction of a raster (:mod:`lcmodel.predict`), applied to rows instead of blocks, so a pixel gets the same
class whether it comes from a map or from a request.

Contract of the table:
- one column per band the model uses, named as the bundle's ``band_names`` (any order; they are reordered by
  name); bands left out at training (``embedding.bands``, or dropped as carrying nothing) are not sent, and a
  pixel is nodata when any of the bands used is;
- values as the embedding raster stores them (float embeddings as floats; AlphaEarth int8 codes as
  integers, de-quantized here as at extraction);
- no NaN, no infinity and nothing beyond the float32 range (1e308): a client bug, refused with
  :class:`~lcmodel.errors.InputDataError` (served: HTTP 400 with that line);
- nodata pixels as the raster stores them (all-zero vectors of float embeddings, the declared nodata
  value, -128 for AlphaEarth int8) are not classified: they get :func:`nodata_class` (0 for class values
  >= 1, the value the map uses for nodata) and probability 0 for every class.

The result is a DataFrame with the column ``class`` (int64) and, when ``probabilities=True``, one column
``p_<value>`` per class value (float64, summing to 1 for classified pixels, 0 for nodata pixels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lcmodel.errors import InputDataError
from lcmodel.forest import Predictor
from lcmodel.model_io import ModelBundle

__all__ = ["predict_pixel_table", "nodata_class", "probability_columns"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def nodata_class(bundle: ModelBundle) -> int:
    """The class value given to nodata pixels: the map's nodata value (0 when class values are >= 1)."""
    from lcmodel.predict import output_dtype

    return int(output_dtype(bundle.class_values)[1])


def probability_columns(bundle: ModelBundle) -> list[str]:
    """Names of the probability columns, ``p_<value>`` in the order of the model's class values."""
    return [f"p_{v}" for v in bundle.class_values]


def _check_columns(bundle: ModelBundle, table: pd.DataFrame) -> pd.DataFrame:
    expected = list(bundle.band_names)
    got = [str(c) for c in table.columns]
    if got == expected:
        return table
    missing = [c for c in expected if c not in got]
    unexpected = [c for c in got if c not in expected]
    if missing or unexpected or len(got) != len(expected):
        detail = []
        if missing:
            detail.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            detail.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if not detail:
            detail.append("duplicated column names")
        raise InputDataError(
            f"pixel table has {len(got)} columns, the model expects the {len(expected)} band columns "
            f"{expected[0]}..{expected[-1]} ({', '.join(detail)}); send one column per band, named as in "
            "the model signature"
        )
    return table[expected]  # same names, another order


def predict_pixel_table(
    bundle: ModelBundle, table: pd.DataFrame, *, probabilities: bool = False, predictor: Predictor | None = None
) -> pd.DataFrame:
    """Class values (and per-class probabilities) of the pixels in ``table``.

    Parameters
    ----------
    bundle : the model bundle.
    table : one row per pixel, one column per band named as ``bundle.band_names``; raw raster values.
    probabilities : also return one ``p_<value>`` column per class.
    predictor : ``Predictor(bundle.estimator)`` built once by a caller that serves many tables (building
        compiles the forest); None = build one for this call. For a random forest the probabilities are
        the map's, bit for bit.

    Returns
    -------
    DataFrame
        ``class`` (int64; :func:`nodata_class` for nodata pixels), then ``p_<value>`` columns if asked.

    Raises
    ------
    InputDataError
        Not a table, wrong or missing columns, no rows, non-numeric values, or NaN.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputDataError(
            f"a pixel table must be a DataFrame (one row per pixel, one column per band), got "
            f"{type(table).__name__}; build one with pandas.DataFrame(values, columns=band_names)"
        )
    table = _check_columns(bundle, table)
    if len(table) == 0:
        raise InputDataError("pixel table has no rows; send at least one pixel (one row per pixel)")
    try:
        values = table.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        bad = [str(c) for c in table.columns if table[c].dtype.kind not in "biuf"][:3]
        raise InputDataError(
            f"pixel table columns {bad} are not numeric; send numbers (the raster's values) only"
        ) from None
    nan_rows = np.flatnonzero(np.isnan(values).any(axis=1))
    if nan_rows.size:
        raise InputDataError(
            f"pixel table has NaN in {nan_rows.size} row(s) (first: row {int(nan_rows[0])}); send "
            "complete pixels only (nodata pixels as the raster stores them, e.g. an all-zero vector)"
        )
    # inf, or beyond float32 (the features' dtype): a client bug too, and would reach the forest as inf
    out_of_range = ~(np.abs(values) <= _FLOAT32_MAX)
    bad_rows = np.flatnonzero(out_of_range.any(axis=1))
    if bad_rows.size:
        row = int(bad_rows[0])
        col = int(np.flatnonzero(out_of_range[row])[0])
        raise InputDataError(
            f"pixel table has infinite or out-of-range values in {bad_rows.size} row(s) (first: row {row}, "
            f"column {str(table.columns[col])!r} = {float(values[row, col])!r}; finite values within +-3.4e38, the "
            "float32 range, are expected); send the raster's values as stored"
        )
    rule = bundle.nodata_rule
    # (bands, n, 1): the block layout NodataRule expects; a float rule sees all-zero rows as nodata
    valid = rule.valid_mask(values.T[:, :, None])[:, 0]
    features = rule.to_features(values[valid])
    classes = np.asarray(bundle.class_values, dtype=np.int64)
    out_class = np.full(len(table), nodata_class(bundle), dtype=np.int64)
    proba = np.zeros((len(table), len(classes)), dtype=np.float64)
    if features.shape[0]:
        p = np.asarray((predictor or Predictor(bundle.estimator))(features), dtype=np.float64)
        out_class[valid] = classes[np.argmax(p, axis=1)]  # what RandomForestClassifier.predict returns
        proba[valid] = p
    result = pd.DataFrame({"class": out_class}, index=table.index)
    if probabilities:
        for j, name in enumerate(probability_columns(bundle)):
            result[name] = proba[:, j]
    return result
