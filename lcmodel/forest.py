"""Fast, exact class probabilities for a fitted scikit-learn random forest.

scikit-learn walks each tree with a data-dependent branch per level. On a forest of deep trees that
branch is mispredicted about half the time, and those stalls, not arithmetic or memory, bound
``predict_proba``. :class:`CompiledForest` walks the same trees without branches:

- each tree's nodes are renumbered breadth-first so that the two children of a node are adjacent,
  and one step is ``node = child[node] + (x[feature[node]] > threshold[node])``;
- a leaf points to itself with threshold +inf, so every tree is walked exactly ``max_depth`` steps;
- eight pixels are walked together, giving the CPU eight independent chains to overlap;
- the kernel is compiled by numba and releases the GIL, so threads scale over rows.

The result is bit-for-bit scikit-learn's ``predict_proba`` with ``n_jobs=1`` (the same float64 leaf
values added in the same tree order, then divided by the number of trees):

- thresholds: scikit-learn compares a float32 feature with a float64 threshold ``t``; for any float32
  ``x``, ``x <= t`` exactly when ``x <= t32``, where ``t32`` is the largest float32 not above ``t``;
  that is the threshold stored here;
- rows holding NaN or infinity are passed to scikit-learn itself (which routes missing values per
  node, and refuses infinity), so they get exactly its answer too.

Measured on the benchmark's 400-tree forest (max_depth 20, 6 classes, 64 bands; 2-core machine):
about 1.4x scikit-learn's single-thread speed, and 1.6x its two-thread speed on two threads. See
``benchmarks/bench_pipeline.py``.

Only plain single-output ``RandomForestClassifier`` and ``ExtraTreesClassifier`` are compiled;
:func:`compile_forest` returns None for anything else and the caller keeps scikit-learn.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

__all__ = ["CompiledForest", "compile_forest", "Predictor", "ENGINES", "CALIBRATION_ROWS"]

#: Prediction engines: "auto" = the compiled forest when the estimator allows it, else scikit-learn.
ENGINES = ("auto", "sklearn")

# rows per kernel call: large enough to amortise the call, small enough to spread over threads
_CHUNK_ROWS = 16_384
# the forests compiled and predicted on threads (a subclass may change how probabilities are formed)
_PLAIN_FORESTS = (RandomForestClassifier, ExtraTreesClassifier)
#: ``Predictor(engine="auto")`` times both engines on the first call with at least this many rows.
CALIBRATION_ROWS = 16_384

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompiledForest:
    """A forest's trees as flat arrays for the branch-free kernel (see the module docstring).

    Attributes
    ----------
    feature, threshold, child : per node (all trees, breadth-first per tree): the feature tested,
        its float32 threshold (+inf at leaves), and the index of the left child (right = left + 1;
        a leaf's own index).
    value : (nodes, classes) float64 class fractions of each node, as scikit-learn stores them.
    roots, depths : each tree's root index and ``max_depth`` (steps walked).
    estimator : a single-threaded shallow copy of the fitted forest, for the rows this kernel does not
        take (NaN, infinity).
    expected_steps : steps scikit-learn walks per row, summed over the trees (leaf depths weighted by the
        training rows reaching them).
    """

    feature: np.ndarray
    threshold: np.ndarray
    child: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depths: np.ndarray
    n_features: int
    estimator: Any
    expected_steps: float = 0.0

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    @property
    def step_ratio(self) -> float:
        """Steps this kernel walks per row (every tree to its ``max_depth``) over the steps scikit-learn
        walks (each tree's leaf depth, averaged over its training rows): the kernel's waste."""
        return float(self.depths.sum()) / self.expected_steps if self.expected_steps > 0 else 1.0

    @property
    def n_classes(self) -> int:
        return int(self.value.shape[1])

    def predict_proba(self, X: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """Class probabilities (rows, classes) for ``X`` (rows, features), equal to the estimator's.

        ``n_threads`` threads split the rows; the result does not depend on it.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}; expected (rows, {self.n_features})")
        finite = np.isfinite(X).all(axis=1)
        Xf = X if finite.all() else np.ascontiguousarray(X[finite])
        proba = np.zeros((Xf.shape[0], self.n_classes), dtype=np.float64)
        self._run(Xf, proba, n_threads)
        proba /= self.n_trees
        if Xf is X:
            return proba
        out = np.empty((X.shape[0], self.n_classes), dtype=np.float64)
        out[finite] = proba
        out[~finite] = self.estimator.predict_proba(X[~finite])  # a single-threaded copy: tree order
        return out

    def _run(self, X: np.ndarray, out: np.ndarray, n_threads: int) -> None:
        n = X.shape[0]
        if n == 0:
            return
        args = (self.feature, self.threshold, self.child, self.value, self.roots, self.depths)
        n_chunks = max(1, min(math.ceil(n / _CHUNK_ROWS), n_threads * 4))
        if n_threads <= 1 or n_chunks == 1:
            _forest_kernel(X, *args, out)
            return
        bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64)
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            spans = zip(bounds[:-1], bounds[1:], strict=True)
            futures = [pool.submit(_forest_kernel, X[a:b], *args, out[a:b]) for a, b in spans]
            for f in futures:
                f.result()


class Predictor:
    """Class probabilities of feature rows: the compiled forest or the estimator's own, whichever is faster.

    ``engine="auto"`` compiles a plain random forest (:func:`compile_forest`). Both engines give the same
    bits, so which one runs is a matter of speed only, and that depends on the trees: the compiled walk
    always goes ``max_depth`` steps, so on deep, unbalanced trees (``max_depth=None`` on large tables) it
    can lose to scikit-learn's. The first call with at least :data:`CALIBRATION_ROWS` rows therefore times
    both on those rows and keeps the faster one for the following calls (``choice`` says what was timed).
    ``engine="sklearn"``, or an estimator that is not a plain forest, always calls ``predict_proba`` (with
    the estimator's feature names when it was fitted on a DataFrame, so scikit-learn does not warn).

    Build it once per model and call it per block or request (compiling takes ~0.1 s for 400 trees); calls
    may come from several threads (while one thread times the engines, the others use the compiled one).
    The map (:mod:`lcmodel.predict`) and a served model (:mod:`lcmodel.pixels`) classify through it.
    """

    def __init__(self, estimator: Any, engine: str = "auto") -> None:
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self.names = None if names is None else [str(n) for n in names]
        self.compiled = compile_forest(estimator) if engine == "auto" else None
        # a forest's scikit-learn engine on a single-threaded copy: the map's bits, whatever its n_jobs
        self._sklearn_estimator = _single_threaded_copy(estimator) if self.gil_free else estimator
        self._use_compiled: bool | None = None if self.compiled is not None else False
        self._lock = threading.Lock()
        self.choice: dict[str, float] = {}

    @property
    def engine(self) -> str:
        """``"compiled"`` or ``"sklearn"``: what classifies rows now (before calibration: compiled)."""
        return "sklearn" if self._use_compiled is False else "compiled"

    @property
    def gil_free(self) -> bool:
        """True when calls from several threads run in parallel: both engines release the GIL for a forest."""
        return type(self.estimator) in _PLAIN_FORESTS

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if (
            self._use_compiled is None
            and self.compiled is not None
            and len(features) >= CALIBRATION_ROWS
            and self._lock.acquire(blocking=False)  # one thread times; the others go on meanwhile
        ):
            try:
                head = self._calibrate(self.compiled, features) if self._use_compiled is None else None
            finally:
                self._lock.release()
            if head is not None:
                rest = features[len(head):]
                return np.concatenate([head, self(rest)]) if len(rest) else head
        if self._use_compiled is False or self.compiled is None:
            return self._sklearn(features)
        return self.compiled.predict_proba(features)

    def _sklearn(self, features: np.ndarray) -> np.ndarray:
        X: Any = features
        if self.names is not None:  # fitted on a DataFrame: same names, no sklearn warning
            X = pd.DataFrame(features, columns=self.names, copy=False)
        return np.asarray(self._sklearn_estimator.predict_proba(X))

    def _calibrate(self, compiled: CompiledForest, features: np.ndarray) -> np.ndarray:
        """Time both engines on the first rows and keep the faster; return the result for those rows.

        Each engine's cost per row is its time on :data:`CALIBRATION_ROWS` rows minus its time on 8 rows
        (scikit-learn's fixed cost per call, validation and a loop over the trees, is then left out: over a
        whole block it does not count).
        """
        head, tiny = features[:CALIBRATION_ROWS], features[:8]
        compiled.predict_proba(tiny)  # first calls load (or compile) the kernel, warm caches: not timed
        self._sklearn(tiny)
        costs, results = [], []
        for run in (compiled.predict_proba, self._sklearn):
            t0 = time.perf_counter()
            run(tiny)
            t1 = time.perf_counter()
            results.append(run(head))
            t2 = time.perf_counter()
            costs.append((t2 - t1) - (t1 - t0))
        proba = results[0]
        self._use_compiled = costs[0] <= costs[1]
        self.choice = {"compiled_s": costs[0], "sklearn_s": costs[1], "rows": float(len(head))}
        logger.info(
            "engine: %s (compiled forest %.0f ms, scikit-learn %.0f ms for %d rows; same probabilities)",
            self.engine, 1000 * costs[0], 1000 * costs[1], len(head),
        )
        return proba


def _single_threaded_copy(forest: Any) -> Any:
    """A shallow copy (the same trees) with ``n_jobs=1``: tree order fixes the sum, so the bits, and the
    shared estimator is never modified (calls may come from several threads)."""
    single = copy.copy(forest)
    single.n_jobs = 1
    return single


def compile_forest(estimator: Any) -> CompiledForest | None:
    """A :class:`CompiledForest` of a fitted single-output random forest, or None when unsupported.

    Supported: ``RandomForestClassifier`` and ``ExtraTreesClassifier`` themselves (a subclass may
    change how probabilities are formed, so it keeps scikit-learn's code), fitted, one output.
    """
    if type(estimator) not in _PLAIN_FORESTS:
        return None
    trees = getattr(estimator, "estimators_", None)
    if not trees or getattr(estimator, "n_outputs_", 1) != 1:
        return None
    n_classes = int(estimator.n_classes_)
    features, thresholds, children, values, roots, depths = [], [], [], [], [], []
    base, expected_steps = 0, 0.0
    for tree in trees:
        t = tree.tree_
        order, left, depth = _breadth_first(t.children_left, t.children_right)
        internal = left >= 0
        weight = t.weighted_n_node_samples[order][~internal]  # training rows reaching each leaf
        expected_steps += float(np.dot(weight, depth[~internal]) / weight.sum()) if weight.sum() > 0 else 0.0
        feature = np.where(internal, t.feature[order], 0).astype(np.int32)
        threshold = np.full(order.shape[0], np.inf, dtype=np.float32)
        threshold[internal] = _float32_at_most(t.threshold[order][internal])
        child = np.where(internal, left, np.arange(order.shape[0])).astype(np.int64) + base
        features.append(feature)
        thresholds.append(threshold)
        children.append(child)
        values.append(t.value[order, 0, :n_classes])
        roots.append(base)
        depths.append(int(t.max_depth))
        base += order.shape[0]
    if base >= 2**31:  # int32 node indices (the kernel's); a forest this large keeps scikit-learn
        return None
    return CompiledForest(
        feature=np.concatenate(features),
        threshold=np.concatenate(thresholds),
        child=np.concatenate(children).astype(np.int32),
        value=np.ascontiguousarray(np.concatenate(values), dtype=np.float64),
        roots=np.asarray(roots, dtype=np.int64),
        depths=np.asarray(depths, dtype=np.int64),
        n_features=int(estimator.n_features_in_),
        estimator=_single_threaded_copy(estimator),
        expected_steps=expected_steps,
    )


@njit(cache=True)
def _breadth_first(
    left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Old node ids in breadth-first order, children adjacent; each new node's left child (-1: leaf) and depth."""
    order = np.empty(left.shape[0], dtype=np.int64)
    new_left = np.full(left.shape[0], -1, dtype=np.int64)
    depth = np.zeros(left.shape[0], dtype=np.int64)
    order[0] = 0
    head, tail = 0, 1
    while head < tail:
        old = order[head]
        if left[old] != -1:
            order[tail] = left[old]
            order[tail + 1] = right[old]
            new_left[head] = tail
            depth[tail] = depth[tail + 1] = depth[head] + 1
            tail += 2
        head += 1
    return order, new_left, depth


def _float32_at_most(t: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 ``t`` (so ``x <= t`` iff ``x <= result`` for float32 x)."""
    with np.errstate(over="ignore"):  # beyond float32's range: inf, then stepped down to its max
        t32 = t.astype(np.float32)
    over = t32.astype(np.float64) > t
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


@njit(nogil=True, cache=True, inline="always")
def _step(X: np.ndarray, r: int, n: int, feature: np.ndarray, threshold: np.ndarray, child: np.ndarray) -> int:
    return child[n] + (X[r, feature[n]] > threshold[n])


@njit(nogil=True, cache=True)
def _forest_kernel(
    X: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    child: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    depths: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled; tested through CompiledForest.predict_proba
    """Add every tree's leaf values to ``out`` (rows, classes), tree by tree, for 512-row chunks."""
    n, k = X.shape[0], value.shape[1]
    for s in range(0, n, 512):
        e = min(n, s + 512)
        for t in range(roots.shape[0]):
            root = roots[t]
            steps = depths[t]
            for b in range(s, e, 8):
                last = e - 1
                r0, r1, r2, r3 = b, min(b + 1, last), min(b + 2, last), min(b + 3, last)
                r4, r5, r6, r7 = min(b + 4, last), min(b + 5, last), min(b + 6, last), min(b + 7, last)
                n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = root
                for _ in range(steps):
                    n0 = _step(X, r0, n0, feature, threshold, child)
                    n1 = _step(X, r1, n1, feature, threshold, child)
                    n2 = _step(X, r2, n2, feature, threshold, child)
                    n3 = _step(X, r3, n3, feature, threshold, child)
                    n4 = _step(X, r4, n4, feature, threshold, child)
                    n5 = _step(X, r5, n5, feature, threshold, child)
                    n6 = _step(X, r6, n6, feature, threshold, child)
                    n7 = _step(X, r7, n7, feature, threshold, child)
                m = e - b
                for c in range(k):
                    out[r0, c] += value[n0, c]
                    if m > 1:
                        out[r1, c] += value[n1, c]
                    if m > 2:
                        out[r2, c] += value[n2, c]
                    if m > 3:
                        out[r3, c] += value[n3, c]
                    if m > 4:
                        out[r4, c] += value[n4, c]
                    if m > 5:
                        out[r5, c] += value[n5, c]
                    if m > 6:
                        out[r6, c] += value[n6, c]
                    if m > 7:
                        out[r7, c] += value[n7, c]
