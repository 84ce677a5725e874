"""The dissimilarity index (DI) and the area of applicability threshold (Meyer & Pebesma 2021, CAST's trainDI).

A model's predictors are standardised by the training samples' mean and standard deviation (R's ``scale``:
``ddof=1``) and multiplied by the model's feature importances. In that space the DI of a location is its
distance to the nearest training sample divided by the mean distance between training samples (the mean over
the samples of each one's mean distance to all the others, as CAST computes it). The threshold comes from the
cross-validation folds: the DI of each training sample to the samples of the OTHER folds, and the threshold is
the upper whisker of those values (the largest one at most Q3 + 1.5 IQR with Tukey's hinges, R's
``boxplot.stats(TrainDI)$stats[5]``, as CAST). A location is inside the area of applicability when its DI is
at most the threshold.

Nearest neighbours are exact: candidate neighbours come from a float32 matrix product
(``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``, BLAS) with a rigorous error bound, and the nearest among the
candidates is taken on float64 differences, so the distance is that of a brute-force search
(:func:`nearest_distances`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from lcmodel.errors import InputDataError

__all__ = ["TrainingDI", "fit_training_di", "nearest_distances", "upper_whisker", "mean_pairwise_distance"]

#: float32 unit roundoff
_U32 = 2.0**-24
#: memory for one block of candidate scores (float32 queries x training samples), in bytes
_SCORE_BYTES = 64 * 2**20


@dataclass(frozen=True, eq=False)
class TrainingDI:
    """The fitted dissimilarity index of a model's training samples (see the module docstring).

    Attributes
    ----------
    band_names : the predictors, in the model's order.
    mean, sd : the training samples' mean and standard deviation per band (a band constant in the training
        samples gets sd 1: its importance is 0, so it does not count).
    weights : the model's feature importances (negative ones set to 0).
    train : the training samples, standardised and weighted (float64).
    mean_distance : the mean distance between training samples (the DI's denominator).
    folds : each training sample's CV fold.
    train_di : each training sample's DI to the samples of the other folds.
    threshold : the AOA threshold (:func:`upper_whisker` of ``train_di``).
    """

    band_names: tuple[str, ...]
    mean: np.ndarray
    sd: np.ndarray
    weights: np.ndarray
    train: np.ndarray
    mean_distance: float
    folds: np.ndarray
    train_di: np.ndarray
    threshold: float

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Raw (n, bands) features -> the standardised, weighted float64 space of :attr:`train`."""
        x = np.asarray(features, dtype=np.float64)
        return np.ascontiguousarray((x - self.mean) / self.sd * self.weights)

    def di(self, features: np.ndarray) -> np.ndarray:
        """The DI (float64) of raw (n, bands) features: nearest training distance / mean distance."""
        return nearest_distances(self.transform(features), self.train) / self.mean_distance

    def summary(self) -> dict[str, object]:
        """The JSON-able figures of the fit (no per-sample arrays but the DI's quartiles)."""
        q = np.percentile(self.train_di, [0, 25, 50, 75, 100]).tolist() if self.train_di.size else []
        return {
            "n_training_samples": int(self.train.shape[0]),
            "n_folds": int(np.unique(self.folds).size),
            "mean_distance": self.mean_distance,
            "threshold": self.threshold,
            "training_di_quantiles": dict(zip(("min", "q1", "median", "q3", "max"), q, strict=True)),
            "weights": dict(zip(self.band_names, self.weights.tolist(), strict=True)),
        }


def fit_training_di(features: np.ndarray, folds: np.ndarray, importances: np.ndarray,
                    band_names: list[str] | tuple[str, ...]) -> TrainingDI:
    """Standardise and weight the training samples, their mean distance, their CV DI and the threshold.

    Parameters
    ----------
    features : (n, bands) training features (all the rows the final model was fitted on).
    folds : (n,) the CV fold of each row (any labels; rows of one fold are compared with the others only).
    importances : (bands,) the final model's feature importances.
    band_names : the bands' names, in column order.

    Raises
    ------
    InputDataError
        Fewer than two samples, a single fold, or shapes that do not match.
    """
    x = np.asarray(features, dtype=np.float64)
    fold = np.asarray(folds)
    w = np.clip(np.asarray(importances, dtype=np.float64), 0.0, None)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputDataError(f"the area of applicability needs at least 2 training samples, got {x.shape[0]}; "
                             "sample more reference points")
    if w.shape != (x.shape[1],) or len(band_names) != x.shape[1] or fold.shape != (x.shape[0],):
        raise InputDataError(f"{x.shape[1]} training bands but {w.size} importances, {len(band_names)} band names "
                             f"and {fold.size} folds for {x.shape[0]} rows; pass one of each per band / row")
    labels = np.unique(fold)
    if labels.size < 2:
        raise InputDataError(f"the area of applicability threshold needs at least 2 CV folds, got {labels.size}; "
                             "set tuning.cv to 2 or more")
    mean = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1)
    sd = np.where(sd > 0, sd, 1.0)
    train = np.ascontiguousarray((x - mean) / sd * w)
    mean_distance = mean_pairwise_distance(train)
    if not mean_distance > 0:
        raise InputDataError("every training sample has the same weighted features; the DI is undefined "
                             "(check the training table and the model's importances)")
    nearest = np.empty(x.shape[0], dtype=np.float64)
    for label in labels:
        inside = fold == label
        nearest[inside] = nearest_distances(train[inside], np.ascontiguousarray(train[~inside]))
    train_di = nearest / mean_distance
    return TrainingDI(tuple(band_names), mean, sd, w, train, mean_distance, fold, train_di,
                      upper_whisker(train_di))


def upper_whisker(values: np.ndarray, coef: float = 1.5) -> float:
    """R's ``boxplot.stats(values, coef)$stats[5]``: the largest value <= upper hinge + coef x hinge spread.

    The hinges are Tukey's (R's ``fivenum``), which for some sizes differ from the quartiles of ``quantile``.
    """
    x = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    n = x.size
    if n == 0:
        raise InputDataError("no finite training DI to set the area of applicability threshold from")
    n4 = math.floor((n + 3) / 2) / 2
    lo, hi = [0.5 * (x[math.floor(d) - 1] + x[math.ceil(d) - 1]) for d in (n4, n + 1 - n4)]
    return float(x[x <= hi + coef * (hi - lo)].max())


def mean_pairwise_distance(train: np.ndarray) -> float:
    """The mean over samples of each one's mean distance to all the others (CAST's ``trainDist_avrgmean``)."""
    t = np.ascontiguousarray(train, dtype=np.float64)
    n = t.shape[0]
    return float(np.mean(_row_distance_sums(t) / (n - 1)))


def nearest_distances(queries: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (float64) of each query row to its nearest training row.

    Candidates come from a float32 BLAS product in blocks of queries; every training row whose score is
    within the product's rounding bound of the best is a candidate, and the nearest candidate is taken on
    float64 differences. The returned distance is ``sqrt(((q - t) ** 2).sum())`` of that row, computed as
    numpy computes it, so it equals a brute-force search.
    """
    q64 = np.ascontiguousarray(queries, dtype=np.float64)
    t64 = np.ascontiguousarray(train, dtype=np.float64)
    m, d = q64.shape
    if m == 0:
        return np.empty(0, dtype=np.float64)
    if t64.shape[0] == 0:
        raise InputDataError("no training samples to measure the DI against")
    t32 = t64.astype(np.float32)
    t2 = np.einsum("ij,ij->i", t64, t64)
    t_norm_max = float(np.sqrt(t2.max()))
    # |fl(q.t) - q.t| <= gamma_d |q||t| for the product, plus the rounding of q and t to float32
    gamma = (d + 4) * _U32 / (1 - (d + 4) * _U32)
    rows = max(1, min(m, _SCORE_BYTES // (4 * t64.shape[0])))
    best = np.empty(m, dtype=np.int64)
    for start in range(0, m, rows):
        q = q64[start:start + rows]
        scores = q.astype(np.float32) @ t32.T  # (rows, n) float32
        q_norm = np.sqrt(np.einsum("ij,ij->i", q, q))
        # a score t2 - 2 q.t is off by at most 2 gamma (|q| |t| + t2); twice that separates the candidates
        tol = 4.0 * gamma * (q_norm * t_norm_max + t_norm_max**2) + 1e-300
        best[start:start + rows] = _nearest_candidate(scores, t2, tol, q, t64)
    diff = q64 - t64[best]
    return np.asarray(np.sqrt((diff * diff).sum(axis=1)), dtype=np.float64)


@njit(nogil=True, cache=True, parallel=True)
def _nearest_candidate(scores: np.ndarray, t2: np.ndarray, tol: np.ndarray, q: np.ndarray, t: np.ndarray
                       ) -> np.ndarray:  # pragma: no cover - compiled
    """Per query row: among training rows whose score ``t2 - 2 q.t`` is within ``2 tol`` of the best, the one
    nearest on float64 differences (the first on ties).

    One pass: a row is measured exactly when its score is within ``2 tol`` of the lowest score so far, a
    superset of the rows within ``2 tol`` of the final lowest."""
    m, n = scores.shape
    d = q.shape[1]
    out = np.empty(m, dtype=np.int64)
    for i in prange(m):
        lowest = np.inf
        best_j = -1
        best_d = np.inf
        slack = 2.0 * tol[i]
        for j in range(n):
            v = t2[j] - 2.0 * np.float64(scores[i, j])
            if v <= lowest + slack:
                if v < lowest:
                    lowest = v
                s = 0.0
                for k in range(d):
                    e = q[i, k] - t[j, k]
                    s += e * e
                if s < best_d:
                    best_d = s
                    best_j = j
        out[i] = best_j
    return out


@njit(nogil=True, cache=True, parallel=True)
def _row_distance_sums(t: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Per row, the sum of its float64 Euclidean distances to every row (itself included: 0)."""
    n, d = t.shape
    out = np.zeros(n, dtype=np.float64)
    for i in prange(n):
        s_row = 0.0
        for j in range(n):
            s = 0.0
            for k in range(d):
                e = t[i, k] - t[j, k]
                s += e * e
            s_row += np.sqrt(s)
        out[i] = s_row
    return out
