"""Standard errors of the Olofsson estimates when the test points come in clusters (the spatial test blocks).

A spatial test split puts whole blocks into the test part (:func:`lcmodel.accuracy.spatial_test_mask`), so the
test sample is a cluster sample: points of one block share its errors, and the variances of
:func:`lcmodel.accuracy.stratified_estimates`, which treat every point as an independent draw, are too small.

Method: Taylor linearisation with the blocks as clusters (the "ultimate cluster" variance of a ratio estimator;
Cochran 1977, *Sampling Techniques*, 3rd ed., ch. 6; Wolter 2007, *Introduction to Variance Estimation*, 2nd ed.,
ch. 6). This is the approach of Stehman (1997), "Estimating standard errors of accuracy assessment statistics
under cluster sampling", Remote Sensing of Environment 60:258-269, applied to the stratified estimators of
Olofsson et al. (2014). Every estimate is a smooth function of the stratum means ``q_ij = n_ij / n_i.`` (map
class i = stratum, reference class j), so its error is, to first order, ``sum_i c_i (q_ij - E q_ij)`` with known
coefficients ``c_i``:

* overall accuracy ``O = sum_i W_i q_ii``: ``c_i = W_i``, point value ``1[reference == map]``;
* user's accuracy ``U_i = q_ii``: ``c = 1`` for stratum i only;
* area proportion ``p_.k = sum_i W_i q_ik``: ``c_i = W_i``, point value ``1[reference == k]``;
* producer's accuracy ``P_j = W_j q_jj / p_.j``: ``c_i = W_i (1[i == j] - P_j) / p_.j``, value ``1[reference == j]``.

With ``e_ib = y_ib - q_i x_ib`` the residual total of stratum i in block b (``y`` the point values, ``x`` the
point count) and ``u_ib = c_i e_ib / n_i.``, the variance is

    V = sum_i a_i sum_b u_ib^2 + a sum_b sum_{i != k} u_ib u_kb,   a_i = m_i / (m_i - 1),   a = m / (m - 1),

with ``m_i`` the blocks holding test points of stratum i and ``m`` all test blocks. The first term is the
within-stratum cluster variance of each ratio ``q_i``; the second is the covariance between strata that share a
block (a block the model gets wrong is wrong in all its map classes). With one test point per block it is
exactly the Olofsson variance (``U (1 - U) / (n_i. - 1)`` etc.); ``V >= 0`` always (``a_i >= a``). 95 %
intervals are +/- t SE with the Student t quantile of ``m - 1`` degrees of freedom (the design degrees of freedom
of a cluster sample; Korn & Graubard 1999, *Analysis of Health Surveys*, sect. 5.2): with few blocks the SE is
itself uncertain, and 1.96 would give intervals that cover less than 95 %.

Why not a block bootstrap: a block holds points of several map classes, so resampling "blocks within strata"
either splits blocks (losing the between-strata covariance above) or is not stratified; a small map class with
few blocks gives degenerate replicates; and the linearisation is closed-form, needs no seed (it is
deterministic, so bit-for-bit reproducible) and reduces exactly to the independent-points figures. Caveat: the
spatial split chooses its blocks by a seeded greedy class balance, not a simple random draw of blocks; the
variance treats the test blocks as exchangeable draws (the simulation in tests/test_cluster.py checks that its
95 % intervals cover the truth). A stratum whose test points all lie in one block has an undefined variance
(NaN, with its reason under ``undefined``), as a stratum with one test point has in the Olofsson estimator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from lcmodel.accuracy.olofsson import confusion_counts
from lcmodel.accuracy.spatial_cv import grid_blocks
from lcmodel.errors import InputDataError

__all__ = ["cluster_estimates", "cluster_variance", "cluster_figures", "CLUSTER_ESTIMATOR"]

CLUSTER_ESTIMATOR = ("Taylor linearisation of the stratified estimators with the spatial test blocks as clusters "
                     "(Stehman 1997; Wolter 2007)")


def cluster_variance(counts: np.ndarray, values: np.ndarray, coef: np.ndarray) -> float:
    """Linearised variance of ``sum_i coef_i q_i``, ``q_i`` the mean point value of stratum i, blocks as clusters.

    Parameters
    ----------
    counts : (k, m) test points of stratum i in block b (``x_ib``).
    values : (k, m) sum of the point values of stratum i in block b (``y_ib``).
    coef : (k,) coefficient of each stratum mean; strata with a zero coefficient or no point are left out.

    Returns
    -------
    float
        The variance (see the module docstring); NaN when a stratum that counts lies in fewer than 2 blocks.
    """
    x = np.asarray(counts, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    c = np.asarray(coef, dtype=np.float64)
    n = x.sum(axis=1)
    use = (c != 0) & (n > 0)
    if not use.any():
        return 0.0
    x, y, c, n = x[use], y[use], c[use], n[use]
    m_i = (x > 0).sum(axis=1).astype(np.float64)
    m = float((x > 0).any(axis=0).sum())
    if (m_i < 2).any():
        return float("nan")
    q = y.sum(axis=1) / n
    u = c[:, None] * (y - q[:, None] * x) / n[:, None]
    a_i = m_i / (m_i - 1.0)
    a = m / (m - 1.0)
    return float(a * np.sum(u.sum(axis=0) ** 2) + np.sum((a_i - a) * np.sum(u**2, axis=1)))


def cluster_estimates(
    map_labels: Sequence[Any] | np.ndarray,
    reference_labels: Sequence[Any] | np.ndarray,
    blocks: Sequence[int] | np.ndarray,
    map_pixels: Sequence[float] | np.ndarray,
    *,
    classes: Sequence[Any],
    pixel_area_m2: float | None = None,
    z: float | None = None,
) -> dict[str, Any]:
    """Cluster-sample standard errors and 95 % CIs of the Olofsson et al. (2014) estimates (module docstring).

    Parameters
    ----------
    map_labels, reference_labels : the map's and the reference's class at each test point.
    blocks : the spatial block (cluster) of each test point, e.g. :func:`lcmodel.accuracy.grid_blocks`.
    map_pixels : pixels of each map class in the whole map, in the order of ``classes`` (the strata sizes).
    classes : every class, in matrix order (as for :func:`lcmodel.accuracy.stratified_estimates`).
    pixel_area_m2 : area of one pixel; when given, the area CIs are also in hectares.
    z : quantile of the intervals; default the Student t 97.5 % quantile with ``n_blocks - 1`` degrees of
        freedom (the design's degrees of freedom: clusters minus one; 1.98 for 100 blocks, 3.18 for 4), which
        tends to 1.96 (:data:`~lcmodel.accuracy.Z_95`) with many blocks and keeps the 95 % intervals honest with few.

    Returns
    -------
    dict
        ``estimator``, ``n_samples``, ``n_blocks``, ``overall_accuracy`` (the same point estimate as the
        stratified estimator), ``overall_accuracy_se``, ``overall_accuracy_ci95``, ``undefined`` (reason by NaN
        key) and ``per_class``: ``{str(class): {n_samples, n_blocks, users_se, users_ci95, producers_se,
        producers_ci95, area_proportion_se, area_pixels_se, area_pixels_ci95, [area_ha_se, area_ha_ci95],
        undefined}}``. A map class with pixels but no test point is left out of every sum and named under
        ``unsampled`` (its user's accuracy is NaN).

    Raises
    ------
    InputDataError
        Lengths or shapes disagree, labels outside ``classes``, negative or no map pixels.
    """
    b = np.asarray(blocks)
    labels = list(classes)
    k = len(labels)
    N = np.asarray(map_pixels, dtype=np.float64)
    if b.ndim != 1 or b.shape != np.shape(np.asarray(map_labels)):
        raise InputDataError(f"blocks {b.shape} and map labels {np.shape(np.asarray(map_labels))} differ in shape; "
                             "give one block id per test point")
    if N.shape != (k,) or not np.isfinite(N).all() or (N < 0).any() or N.sum() <= 0:
        raise InputDataError(f"map_pixels {N.tolist()[:10]} must be {k} finite non-negative pixel counts, not all 0; "
                             "give the map's pixel count of each class")
    index = {c: i for i, c in enumerate(np.asarray(labels).tolist())}
    confusion_counts(map_labels, reference_labels, labels)  # checks labels and shapes
    mi = np.array([index[v] for v in np.asarray(map_labels).tolist()], dtype=np.int64)
    ri = np.array([index[v] for v in np.asarray(reference_labels).tolist()], dtype=np.int64)
    _, bi = np.unique(b, return_inverse=True)
    bi = bi.reshape(-1)
    m = int(bi.max()) + 1 if bi.size else 0
    if z is None:
        z = float(student_t.ppf(0.975, m - 1)) if m > 1 else float("nan")
    cube = np.zeros((k, m, k), dtype=np.int64)  # (stratum, block, reference class): exact integer counts
    np.add.at(cube, (mi, bi, ri), 1)
    x = cube.sum(axis=2)
    n = x.sum(axis=1).astype(np.float64)
    # the population is the map area of the sampled strata, as in stratified_estimates (an unsampled stratum
    # is not assessed: W_i = N_i / sum of the sampled N)
    total = float(N[n > 0].sum()) or float(N.sum())
    W = N / total
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(n[:, None] > 0, cube.sum(axis=1) / n[:, None], 0.0)  # (k, k): q_ij
    weight = np.where(n > 0, W, 0.0)
    col = (weight[:, None] * q).sum(axis=0)  # p_.j
    oa = float(np.sum(weight * np.diag(q)))
    single = [labels[i] for i in range(k) if W[i] > 0 and n[i] > 0 and (x[i] > 0).sum() < 2]
    unsampled = [labels[i] for i in range(k) if W[i] > 0 and n[i] == 0]

    diag = cube[np.arange(k), :, np.arange(k)]  # (k, m): correct points per stratum and block
    se_oa = float(np.sqrt(cluster_variance(x, diag, weight)))
    per_class: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(labels):
        e_j = np.zeros(k)
        e_j[j] = 1.0
        se_u = float(np.sqrt(cluster_variance(x, diag, e_j))) if n[j] > 0 else float("nan")
        y_j = cube[:, :, j]
        se_area = float(np.sqrt(cluster_variance(x, y_j, weight)))
        if col[j] > 0:
            P = weight[j] * q[j, j] / col[j]
            se_p = float(np.sqrt(cluster_variance(x, y_j, weight * ((np.arange(k) == j) - P) / col[j])))
        else:
            se_p = float("nan")
        row: dict[str, Any] = {
            "n_samples": int(n[j]), "n_blocks": int((x[j] > 0).sum()),
            "users_se": se_u, "users_ci95": z * se_u, "producers_se": se_p, "producers_ci95": z * se_p,
            "area_proportion_se": se_area, "area_pixels_se": se_area * total, "area_pixels_ci95": z * se_area * total,
        }
        if pixel_area_m2:
            ha = pixel_area_m2 / 10_000.0
            row.update(area_ha_se=row["area_pixels_se"] * ha, area_ha_ci95=row["area_pixels_ci95"] * ha)
        row["undefined"] = _row_reasons(row, name, single, bool(col[j] > 0))
        per_class[str(name)] = row
    overall = {"overall_accuracy_se": se_oa, "overall_accuracy_ci95": z * se_oa}
    return {
        "estimator": CLUSTER_ESTIMATOR,
        "n_samples": int(n.sum()),
        "n_blocks": m,
        "overall_accuracy": oa,
        **overall,
        "z": z,
        "df": m - 1,
        "unsampled": [c.item() if isinstance(c, np.generic) else c for c in unsampled],
        "per_class": per_class,
        "undefined": {key: _single_block_reason(single) for key, v in overall.items() if not np.isfinite(v)},
    }


def _single_block_reason(single: Sequence[Any]) -> str:
    if not single:
        return "not computable from this sample"
    many = len(single) > 1
    return (f"map class{'es' if many else ''} {', '.join(str(c) for c in single)} "
            f"{'have' if many else 'has'} all test points in one spatial block: a cluster variance needs at least 2 "
            "blocks (lower sampling.block_size or raise sampling.test_size)")


def _row_reasons(row: Mapping[str, Any], name: Any, single: Sequence[Any], has_reference: bool) -> dict[str, str]:
    """Why each NaN figure of one class's row is undefined."""
    no_reference = f"no test point in a mapped stratum has reference class {name}: its estimated area is 0"
    reasons = {"users_se": f"no test point is mapped as class {name}" if row["n_samples"] == 0
               else _single_block_reason([name]),
               "producers_se": _single_block_reason(single) if has_reference else no_reference}
    reasons["users_ci95"] = reasons["users_se"]
    reasons["producers_ci95"] = reasons["producers_se"]
    return {key: reasons.get(key, _single_block_reason(single)) for key, value in row.items()
            if isinstance(value, float) and not np.isfinite(value)}


def cluster_figures(
    independent: Mapping[str, Any],
    split: str,
    block_size: float | None,
    x: np.ndarray,
    y: np.ndarray,
    map_labels: np.ndarray,
    reference_labels: np.ndarray,
) -> dict[str, Any]:
    """The assessment's keys for the design of its standard errors, beside the independent-points figures.

    ``independent`` is the :func:`lcmodel.accuracy.stratified_estimates` result of the same test points (its
    classes, strata sizes, pixel area and overall SE are reused). A ``spatial`` split is a cluster sample: the
    keys are ``se_design`` (``cluster``), ``se_design_note`` (one sentence), ``overall_accuracy_se_cluster``,
    ``overall_accuracy_ci95_cluster``, ``design_effect_cluster`` (cluster / independent variance of overall
    accuracy) and ``cluster`` (:func:`cluster_estimates`, blocks from :func:`grid_blocks` with the split's block
    size, hence the split's own blocks). Any other split: ``se_design`` ``independent`` and its note only.
    """
    if split != "spatial" or block_size is None:
        return {"se_design": "independent",
                "se_design_note": f"The test points are a {split} (not block-wise) split of the "
                                  "sample, so the independent-points standard errors above apply."}
    classes = list(independent["classes"])
    per_class = independent["per_class"]
    pixels = [per_class[str(c)]["map_pixels"] for c in classes]
    blocks = grid_blocks(np.asarray(x), np.asarray(y), float(block_size))
    result = cluster_estimates(map_labels, reference_labels, blocks, pixels, classes=classes,
                               pixel_area_m2=independent.get("pixel_area_m2"))
    se, se0 = result["overall_accuracy_se"], float(independent["overall_accuracy_se"])
    deff = se**2 / se0**2 if np.isfinite(se) and np.isfinite(se0) and se0 > 0 else float("nan")
    note = (f"The test part is {result['n_blocks']} whole spatial blocks of {float(block_size):.4g} "
            "CRS units (a cluster sample), so the cluster standard errors apply (blocks as clusters); the "
            "independent-points ones are shown beside them and are too small where errors cluster in space.")
    return {"se_design": "cluster", "se_design_note": note, "overall_accuracy_se_cluster": se,
            "overall_accuracy_ci95_cluster": result["overall_accuracy_ci95"], "design_effect_cluster": deff,
            "cluster": result}
