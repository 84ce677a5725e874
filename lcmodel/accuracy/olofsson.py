"""Area-adjusted accuracy and area estimates: the stratified estimators of Olofsson et al. (2014).

Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014). Good practices
for estimating area and assessing accuracy of land change. Remote Sensing of Environment 148:42-57.

The input is a sample error matrix whose ROWS are the map classes (the strata) and whose COLUMNS are the
reference classes, in the same class order, plus the number of map pixels of each class. With
``W_i = A_m,i / A_tot`` the map share of stratum i and ``n_i.`` its sample size:

* ``p_ij = W_i n_ij / n_i.``, the error matrix in estimated area proportions;
* overall accuracy ``O = sum_j p_jj``;
* user's accuracy ``U_i = p_ii / p_i. = n_ii / n_i.``;
* producer's accuracy ``P_j = p_jj / p_.j``;
* variance of O: ``sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)``;
* variance of U_i: ``U_i (1 - U_i) / (n_i. - 1)``;
* variance of P_j: ``[N_j.^2 (1-P_j)^2 U_j (1-U_j) / (n_j. - 1)
  + P_j^2 sum_{i != j} N_i.^2 (n_ij / n_i.) (1 - n_ij / n_i.) / (n_i. - 1)] / N_.j^2`` with ``N_i.`` the map
  pixels of class i and ``N_.j = sum_i N_i. n_ij / n_i.`` the estimated reference pixels of class j;
* area proportion ``p_.k = sum_i W_i n_ik / n_i.`` and its standard error
  ``sqrt(sum_i (W_i p_ik - p_ik^2) / (n_i. - 1))`` (the same as ``sqrt(sum_i W_i^2 q (1 - q) / (n_i. - 1))``
  with ``q = n_ik / n_i.``);
* area ``A_k = A_tot p_.k`` with standard error ``A_tot S(p_.k)``; 95 % intervals are +/- 1.96 SE.

These are the estimators for stratified random sampling with the map classes as strata. They also hold
(as post-stratified estimators) for a simple random or systematic sample (Olofsson et al. 2013, 2014 sect. 4.3).
A map class with pixels but no sample is not assessed: the estimates are restricted to the sampled strata
(see :func:`stratified_estimates`, Notes) and the result names what was left out (``not_assessed``, ``scope``).
A stratum with one sample has an undefined variance: its standard errors are NaN. Every estimate that
cannot be computed is NaN (null in JSON) and its reason is under ``undefined`` (:func:`undefined_reasons`):
the report and the MLflow run say it is undefined and why, rather than printing a number or crashing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from lcmodel.errors import InputDataError, InsufficientDataError

__all__ = ["Z_95", "stratified_estimates", "confusion_counts", "undefined_reasons", "scope_sentence"]

logger = logging.getLogger(__name__)

#: Normal quantile of a two-sided 95 % interval (Olofsson 2014 uses 1.96).
Z_95 = 1.96


def confusion_counts(
    map_labels: Sequence[Any] | np.ndarray,
    reference_labels: Sequence[Any] | np.ndarray,
    classes: Sequence[Any],
) -> np.ndarray:
    """Sample error matrix: rows = map class, columns = reference class, in the order of ``classes``.

    Parameters
    ----------
    map_labels, reference_labels : the map's and the reference's class at each sample unit.
    classes : every class, in the matrix order; labels outside it raise.

    Returns
    -------
    ndarray of int64, shape (k, k)
    """
    m = np.asarray(map_labels)
    r = np.asarray(reference_labels)
    if m.shape != r.shape or m.ndim != 1:
        raise InputDataError(
            f"map labels {m.shape} and reference labels {r.shape} differ in shape; give one of each per sample"
        )
    index = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    unknown = sorted({str(v) for v in (*m.tolist(), *r.tolist()) if v not in index})
    if unknown:
        raise InputDataError(
            f"labels {unknown[:5]} are not among the classes {list(index)[:10]}; add them to the class list"
        )
    counts = np.zeros((len(index), len(index)), dtype=np.int64)
    np.add.at(counts, ([index[v] for v in m.tolist()], [index[v] for v in r.tolist()]), 1)
    return counts


def stratified_estimates(
    counts: Sequence[Sequence[int]] | np.ndarray,
    map_pixels: Sequence[float] | np.ndarray,
    *,
    classes: Sequence[Any] | None = None,
    pixel_area_m2: float | None = None,
    z: float = Z_95,
) -> dict[str, Any]:
    """Olofsson et al. (2014) area-weighted accuracy and area estimates with standard errors and CIs.

    Parameters
    ----------
    counts : (k, k) sample counts; rows = map class (stratum), columns = reference class, same class order.
    map_pixels : (k,) pixels of each map class in the whole map (the strata sizes ``N_i.``).
    classes : names or values of the k classes (default ``0..k-1``), used as keys in ``per_class``.
    pixel_area_m2 : area of one pixel; when given, areas are also reported in hectares.
    z : quantile of the interval (1.96 for 95 %).

    Returns
    -------
    dict
        ``overall_accuracy``, ``overall_accuracy_se``, ``overall_accuracy_ci95`` (half-width ``z * se``),
        ``n_samples``, ``total_pixels``, ``error_matrix_proportions`` (k x k ``p_ij``), ``classes``, and
        ``per_class``: ``{str(class): {n_samples, map_pixels, map_proportion, users_accuracy, users_se,
        users_ci95, producers_accuracy, producers_se, producers_ci95, area_proportion, area_proportion_se,
        area_pixels, area_pixels_se, area_pixels_ci95, [area_ha, area_ha_se, area_ha_ci95]}}``.
        Ratios with a zero denominator are NaN. ``undefined`` maps each NaN overall figure to its reason, and
        each ``per_class`` row has its own ``undefined`` (see :func:`undefined_reasons`).

    Raises
    ------
    InputDataError
        Shapes disagree, negative counts or pixels, or no map pixel at all.
    InsufficientDataError
        No map class with pixels has a sample.

    Notes
    -----
    A map class with pixels but no sample (an unsampled stratum) is NOT ASSESSED: the estimators are those
    of Olofsson et al. restricted to the sampled strata, i.e. applied to the population "the map area of the
    assessed strata" (``W_i = N_i / sum of the assessed N``). Overall accuracy, the error matrix and the
    producer's accuracies are over that area; ``area_*`` is each reference class's area within it; an
    unassessed class's user's and producer's accuracies are undefined (NaN, with the reason). The result
    names the unassessed strata under ``not_assessed`` (map pixels, share, ha), says what the estimates
    cover under ``scope`` and bounds the whole map's overall accuracy
    (``overall_accuracy_whole_map_bounds``: all unassessed pixels wrong / all right). ``map_proportion`` is a
    class's share of the whole map, ``stratum_weight`` its weight in the estimate.
    """
    n = np.asarray(counts, dtype=np.float64)
    N = np.asarray(map_pixels, dtype=np.float64)
    if n.ndim != 2 or n.shape[0] != n.shape[1]:
        raise InputDataError(
            f"counts has shape {n.shape}; give a square (k, k) matrix, rows = map classes"
        )
    k = n.shape[0]
    if N.shape != (k,):
        raise InputDataError(
            f"map_pixels has shape {N.shape}; give one pixel count per class ({k})"
        )
    if (n < 0).any() or (N < 0).any() or not np.isfinite(N).all():
        raise InputDataError(
            "counts and map_pixels must be finite and non-negative; check the inputs"
        )
    labels = list(range(k)) if classes is None else list(classes)
    if len(labels) != k:
        raise InputDataError(
            f"{len(labels)} class names for a {k} x {k} matrix; give one name per row"
        )
    total = float(N.sum())
    if total <= 0:
        raise InputDataError("map_pixels sums to 0; give the map's pixel count of each class")
    ni = n.sum(axis=1)
    unassessed = (N > 0) & (ni == 0)  # strata with map pixels but no sample: left out of the estimate
    if not ((N > 0) & (ni > 0)).any():
        raise InsufficientDataError(
            f"no map class with pixels has a sample ({int(n.sum())} sample(s) in all); the stratified estimator "
            "needs samples in the map classes (draw them with `lcmodel validation-sample`)"
        )
    map_total, N_map = total, N
    N = np.where(unassessed, 0.0, N)  # the assessed strata: the population the estimates describe
    total = float(N.sum())

    W = N / total
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(ni[:, None] > 0, n / ni[:, None], 0.0)  # n_ij / n_i.
        dof = np.where(ni > 1, ni - 1.0, np.nan)  # n_i. - 1; variance undefined for n_i. < 2
        # strata without map pixels carry no weight, whatever their sample
        dof = np.where(W > 0, dof, np.inf)
        p = W[:, None] * q
        oa = float(np.trace(p))
        users = np.where(ni > 0, np.diag(q), np.nan)
        col = p.sum(axis=0)  # p_.j: area proportions
        producers = np.where(col > 0, np.diag(p) / col, np.nan)

        u0 = np.nan_to_num(users)
        var_oa = float(np.sum(W**2 * u0 * (1 - u0) / dof))
        var_users = np.where(
            ni > 0, users * (1 - users) / np.where(ni > 1, ni - 1.0, np.nan), np.nan
        )

        # producer's variance; N_.j estimated reference pixels of class j
        N_ref = (N[:, None] * q).sum(axis=0)
        var_prod = np.full(k, np.nan)
        for j in range(k):
            if N_ref[j] <= 0:
                continue
            P = producers[j]
            term1 = N[j] ** 2 * (1 - P) ** 2 * u0[j] * (1 - u0[j]) / dof[j] if N[j] > 0 else 0.0
            others = [i for i in range(k) if i != j and N[i] > 0]
            term2 = P**2 * sum(N[i] ** 2 * q[i, j] * (1 - q[i, j]) / dof[i] for i in others)
            var_prod[j] = (term1 + term2) / N_ref[j] ** 2

        var_area = np.sum(W[:, None] ** 2 * q * (1 - q) / dof[:, None], axis=0)

    se_oa = float(np.sqrt(var_oa))
    se_users = np.sqrt(var_users)
    se_prod = np.sqrt(var_prod)
    se_area = np.sqrt(var_area)
    per_class: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(labels):
        row: dict[str, Any] = {
            "n_samples": int(ni[j]),
            "assessed": not bool(unassessed[j]),
            "map_pixels": float(N_map[j]),
            "map_proportion": float(N_map[j] / map_total),
            "stratum_weight": float(W[j]),
            "users_accuracy": float(users[j]),
            "users_se": float(se_users[j]),
            "users_ci95": float(z * se_users[j]),
            "producers_accuracy": float(producers[j]),
            "producers_se": float(se_prod[j]),
            "producers_ci95": float(z * se_prod[j]),
            "area_proportion": float(col[j]),
            "area_proportion_se": float(se_area[j]),
            "area_pixels": float(col[j] * total),
            "area_pixels_se": float(se_area[j] * total),
            "area_pixels_ci95": float(z * se_area[j] * total),
        }
        if pixel_area_m2:
            ha = pixel_area_m2 / 10_000.0
            row.update(
                area_ha=row["area_pixels"] * ha,
                area_ha_se=row["area_pixels_se"] * ha,
                area_ha_ci95=row["area_pixels_ci95"] * ha,
                map_area_ha=float(N_map[j]) * ha,
            )
        per_class[str(name)] = row
    single = [labels[i] for i in range(k) if W[i] > 0 and ni[i] == 1]
    for j, name in enumerate(labels):
        row = per_class[str(name)]
        if unassessed[j]:  # its own stratum is outside the estimate: a producer's accuracy over the rest is not its
            row.update(producers_accuracy=float("nan"), producers_se=float("nan"), producers_ci95=float("nan"))
        row["undefined"] = undefined_reasons(row, name, single)
        if unassessed[j]:
            why = (f"not assessed: no test point is mapped as class {name}, so its stratum ({int(N_map[j])} map "
                   "pixels) is outside the estimate")
            row["undefined"].update({key: why for key in row["undefined"] if key.startswith(("users", "producers"))})
    not_assessed = [{"class": _plain(labels[j]), "map_pixels": float(N_map[j]),
                     "map_share": float(N_map[j] / map_total),
                     **({"map_area_ha": float(N_map[j]) * pixel_area_m2 / 10_000.0} if pixel_area_m2 else {})}
                    for j in np.flatnonzero(unassessed)]
    assessed_share = total / map_total
    if not_assessed:
        logger.warning("area-adjusted assessment restricted to the sampled strata (%.1f %% of the map): map "
                       "class(es) %s have no test point", 100 * assessed_share, [r["class"] for r in not_assessed])
    overall = {"overall_accuracy_se": se_oa, "overall_accuracy_ci95": z * se_oa}
    undefined = {key: _single_point_reason(single) for key, v in overall.items() if not np.isfinite(v)}
    if undefined:
        logger.warning("overall accuracy standard error undefined: %s", undefined["overall_accuracy_se"])
    return {
        "estimator": "stratified (Olofsson et al. 2014, section 4); strata = map classes",
        "overall_accuracy": oa,
        "overall_accuracy_se": se_oa,
        "overall_accuracy_ci95": z * se_oa,
        "z": z,
        "n_samples": int(n.sum()),
        "total_pixels": map_total,
        "assessed_pixels": total,
        "assessed_share": assessed_share,
        "not_assessed": not_assessed,
        "scope": scope_sentence(not_assessed, assessed_share),
        # whatever the unassessed strata hold, the whole map's accuracy lies within these
        "overall_accuracy_whole_map_bounds": [oa * assessed_share, oa * assessed_share + 1.0 - assessed_share],
        "pixel_area_m2": pixel_area_m2,
        "classes": [_plain(c) for c in labels],
        "sample_counts": n.astype(np.int64).tolist(),
        "error_matrix_proportions": p.tolist(),
        "per_class": per_class,
        "undefined": undefined,
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def scope_sentence(not_assessed: Sequence[dict[str, Any]], assessed_share: float) -> str:
    """What the estimates cover: the whole map, or the assessed strata only (and which are left out)."""
    if not not_assessed:
        return "The estimates cover the whole map: every map class has test points."
    names = ", ".join(str(r["class"]) for r in not_assessed)
    return (f"The estimates cover the assessed strata only ({100 * assessed_share:.2f} % of the map): map class(es) "
            f"{names} ({100 * (1 - assessed_share):.2f} % of the map) have no test point and are not assessed. "
            "Olofsson's estimators are applied to the sampled strata as the population (weights = their share of "
            "the assessed area): overall accuracy and the error matrix are over that area, and class areas are "
            "the areas of each reference class within it.")


def _single_point_reason(single: Sequence[Any]) -> str:
    if not single:
        return "not computable from this sample"
    return (f"map class{'es' if len(single) > 1 else ''} {', '.join(str(c) for c in single)} "
            f"{'have' if len(single) > 1 else 'has'} a single test point: a stratum's variance needs at least 2 "
            "(draw more with `lcmodel validation-sample`)")


def undefined_reasons(row: dict[str, Any], name: Any, single: Sequence[Any]) -> dict[str, str]:
    """Why each estimate of one class's ``per_class`` row that is not a finite number could not be computed.

    ``single`` lists the map classes (strata with map pixels) that have exactly one test point: their
    variance is undefined, and so is every standard error that sums over them.
    """
    no_mapped = f"no test point is mapped as class {name}"
    no_reference = f"no test point in a mapped stratum has reference class {name}: its estimated area is 0"
    if row["n_samples"] == 1:
        users_se = f"a single test point is mapped as class {name}: a standard error needs at least 2"
    else:
        users_se = no_mapped
    prod_undefined = not np.isfinite(row["producers_accuracy"])
    spread = _single_point_reason(single)
    reasons = {
        "users_accuracy": no_mapped, "users_se": users_se, "users_ci95": users_se,
        "producers_accuracy": no_reference,
        "producers_se": no_reference if prod_undefined else spread,
        "producers_ci95": no_reference if prod_undefined else spread,
    }
    return {key: reasons.get(key, spread) for key, value in row.items()
            if isinstance(value, float) and not np.isfinite(value)}
