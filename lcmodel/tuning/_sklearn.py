"""Every private scikit-learn API the tuning package uses, in one place.

Each function here wraps one private name, attribute or implementation detail of scikit-learn, with a comment
saying what it relies on. Checked against scikit-learn 1.9 (file and line numbers below are 1.9.1's);
``pyproject.toml`` pins scikit-learn below the next minor version for that reason. When scikit-learn is
upgraded, re-read the sources cited here and run ``tests/test_tuning.py``: it checks the out-of-bag scores
against ``oob_decision_function_`` and the prefix forests against separately fitted forests, bit for bit.

Nothing else in ``lcmodel.tuning`` touches a private scikit-learn name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

# private: the out-of-bag rows of one tree, as the forest's own OOB score computes them
from sklearn.ensemble._forest import _generate_unsampled_indices


def unsampled_rows(forest: RandomForestClassifier, tree: Any, n_samples: int) -> np.ndarray:
    """The rows of the ``n_samples`` training rows that ``tree`` (one of ``forest.estimators_``) did not draw.

    Relies on (sklearn/ensemble/_forest.py, 1.9): ``_generate_unsampled_indices(random_state, n_samples,
    n_samples_bootstrap, sample_weight)`` (lines 116-130; the ``sample_weight`` argument is new in 1.9: the
    bootstrap draws rows with probability proportional to the sample weights, 'balanced' class weights
    included), and the private attributes ``_n_samples_bootstrap`` and ``_sample_weight`` that ``fit`` stores
    (lines 398-424) and that ``_compute_oob_predictions`` passes for each tree (lines 575-581).
    """
    return _generate_unsampled_indices(
        tree.random_state, n_samples, forest._n_samples_bootstrap, forest._sample_weight
    )


def scorer_response_method(scorer: Any) -> str | None:
    """What a scorer calls on the estimator (``"predict"`` for label scorers), or None when unknown.

    Relies on the private attribute ``_BaseScorer._response_method`` (sklearn/metrics/_scorer.py, line 260).
    """
    return getattr(scorer, "_response_method", None)


def scorer_metric(scorer: Any) -> tuple[Callable[..., float], int, dict[str, Any]]:
    """A scorer's metric: ``(score_func, sign, kwargs)``; the score is ``sign * score_func(y, y_pred, **kwargs)``.

    Relies on the private attributes ``_score_func``, ``_sign`` and ``_kwargs`` of ``_BaseScorer``
    (sklearn/metrics/_scorer.py, lines 257-259) and on a label scorer calling exactly that on the predictions.
    """
    return scorer._score_func, scorer._sign, dict(scorer._kwargs)


def prefix_forest(forest: RandomForestClassifier, k: int) -> RandomForestClassifier:
    """The forest of the first ``k`` trees of a fitted ``forest`` (shares the trees; nothing is refitted).

    With a fixed ``random_state`` this IS the forest ``make_forest({..., n_estimators: k})`` would fit. It
    relies on how scikit-learn 1.9 seeds and uses the trees, an implementation detail:
    ``BaseForest.fit`` (sklearn/ensemble/_forest.py, lines 431-459) builds
    ``random_state = check_random_state(self.random_state)`` and then
    ``trees = [self._make_estimator(append=False, random_state=random_state) for i in range(n)]``;
    ``_make_estimator`` -> ``_set_random_states`` (sklearn/ensemble/_base.py, lines 77-81) draws one
    ``random_state.randint(np.iinfo(np.int32).max)`` per tree, in order. Tree ``i``'s seed is therefore the
    ``i``-th draw of ``RandomState(random_state)`` whatever ``n_estimators`` is, and everything a tree depends
    on is a function of that seed and of the data: its bootstrap rows (``_generate_sample_indices(
    tree.random_state, n_samples, n_samples_bootstrap, sample_weight)``, _forest.py lines 95-113, where
    ``n_samples_bootstrap`` depends on ``max_samples`` and ``sample_weight`` is the 'balanced' class weight
    of ``y``, lines 398-424: neither depends on ``n_estimators``), its ``balanced_subsample`` weights
    (computed from those rows) and its split search. ``predict_proba`` of the prefix forest (``n_jobs=1``)
    partitions ``n_estimators`` (hence it is set too), sums the probabilities of ``estimators_`` in order and
    divides by their number (lines 945-962), as the ``k``-tree forest does.
    ``tests/test_tuning.py`` checks both claims.
    """
    sub = copy.copy(forest)
    sub.estimators_ = forest.estimators_[:k]
    sub.n_estimators = k
    return sub
