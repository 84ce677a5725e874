"""Cluster (spatial block) standard errors of the area-adjusted assessment: lcmodel.accuracy.cluster.

The simulation draws synthetic maps with known truth and spatially clustered errors, splits each with the
pipeline's spatial split, and counts how often each 95 % interval of overall accuracy covers the truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from lcmodel.accuracy import (
    cluster_estimates,
    cluster_figures,
    cluster_variance,
    confusion_counts,
    grid_blocks,
    spatial_test_mask,
    stratified_estimates,
)
from lcmodel.errors import InputDataError

CLASSES = [1, 2, 3, 4]
PIXELS = [5000, 3000, 1500, 500]


def _sample(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mapped = rng.choice(CLASSES, n, p=[0.4, 0.3, 0.2, 0.1])
    reference = np.where(rng.random(n) < 0.8, mapped, rng.choice(CLASSES, n))
    return mapped, reference


def test_one_point_per_block_is_the_olofsson_estimator() -> None:
    mapped, reference = _sample(0)
    independent = stratified_estimates(confusion_counts(mapped, reference, CLASSES), PIXELS, classes=CLASSES,
                                       pixel_area_m2=100.0)
    cluster = cluster_estimates(mapped, reference, np.arange(mapped.size), PIXELS, classes=CLASSES,
                                pixel_area_m2=100.0)
    assert cluster["n_blocks"] == mapped.size and cluster["undefined"] == {}
    for key in ("overall_accuracy", "overall_accuracy_se"):
        assert cluster[key] == pytest.approx(independent[key], rel=1e-12)
    for c in CLASSES:
        got, want = cluster["per_class"][str(c)], independent["per_class"][str(c)]
        for key in ("users_se", "producers_se", "area_proportion_se", "area_pixels_se", "area_ha_se"):
            assert got[key] == pytest.approx(want[key], rel=1e-12), (c, key)
    # the intervals: Student t with (blocks - 1) degrees of freedom, or the independent 1.96 when asked
    t = stats.t.ppf(0.975, mapped.size - 1)
    assert cluster["df"] == mapped.size - 1 and cluster["z"] == pytest.approx(t, rel=1e-12)
    assert cluster["overall_accuracy_ci95"] == pytest.approx(t * independent["overall_accuracy_se"], rel=1e-12)
    same_z = cluster_estimates(mapped, reference, np.arange(mapped.size), PIXELS, classes=CLASSES,
                               pixel_area_m2=100.0, z=1.96)
    assert same_z["overall_accuracy_ci95"] == pytest.approx(independent["overall_accuracy_ci95"], rel=1e-12)
    for c in CLASSES:
        got, want = same_z["per_class"][str(c)], independent["per_class"][str(c)]
        for key in ("users_ci95", "producers_ci95", "area_pixels_ci95", "area_ha_ci95"):
            assert got[key] == pytest.approx(want[key], rel=1e-12), (c, key)


def test_few_blocks_widen_the_interval_by_the_t_quantile() -> None:
    mapped, reference = _sample(8, n=80)
    result = cluster_estimates(mapped, reference, np.arange(80) % 4, PIXELS, classes=CLASSES)
    assert result["n_blocks"] == 4 and result["df"] == 3
    assert result["overall_accuracy_ci95"] == pytest.approx(3.182446 * result["overall_accuracy_se"], rel=1e-6)


def test_one_stratum_is_the_classical_cluster_ratio_variance() -> None:
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 12, 90)
    correct = rng.random(90) < 0.7
    mapped = np.ones(90, dtype=int)
    reference = np.where(correct, 1, 2)
    got = cluster_estimates(mapped, reference, blocks, [1000, 0], classes=[1, 2])
    r = correct.mean()
    m = np.unique(blocks).size
    resid = np.array([np.sum(correct[blocks == b]) - r * np.sum(blocks == b) for b in np.unique(blocks)])
    want = m / (m - 1) * np.sum(resid**2) / 90**2  # Cochran's ratio estimator, blocks as clusters
    assert got["overall_accuracy_se"] ** 2 == pytest.approx(want, rel=1e-12)
    assert got["per_class"]["1"]["users_se"] == pytest.approx(np.sqrt(want), rel=1e-12)


def test_clustered_errors_widen_the_interval_and_shared_blocks_add_covariance() -> None:
    mapped, reference = _sample(1)
    blocks = np.arange(mapped.size) // 10
    # every point of half the blocks is wrong, of the other half right: errors fully clustered
    reference = np.where(blocks % 2 == 0, mapped, mapped % 4 + 1)
    independent = stratified_estimates(confusion_counts(mapped, reference, CLASSES), PIXELS, classes=CLASSES)
    cluster = cluster_estimates(mapped, reference, blocks, PIXELS, classes=CLASSES)
    assert cluster["overall_accuracy"] == pytest.approx(independent["overall_accuracy"], rel=1e-12)
    assert cluster["overall_accuracy_se"] > 2 * independent["overall_accuracy_se"]
    # the same residuals with the strata's blocks kept apart (no shared block) give a smaller variance
    x = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    shared = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    y_shared = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    coef = np.array([0.5, 0.5])
    assert cluster_variance(shared, y_shared, coef) > cluster_variance(x, y, coef) > 0


def test_reproducible_bit_for_bit_and_independent_of_row_order() -> None:
    mapped, reference = _sample(2)
    blocks = np.random.default_rng(2).integers(0, 40, mapped.size)
    first = cluster_estimates(mapped, reference, blocks, PIXELS, classes=CLASSES, pixel_area_m2=100.0)
    again = cluster_estimates(mapped, reference, blocks, PIXELS, classes=CLASSES, pixel_area_m2=100.0)
    order = np.random.default_rng(9).permutation(mapped.size)
    shuffled = cluster_estimates(mapped[order], reference[order], blocks[order], PIXELS, classes=CLASSES,
                                 pixel_area_m2=100.0)
    assert json.dumps(first) == json.dumps(again) == json.dumps(shuffled)


def test_a_stratum_in_one_block_is_undefined_with_its_reason() -> None:
    mapped, reference = _sample(4, n=120)
    blocks = np.arange(mapped.size) // 4
    blocks[mapped == 4] = 999  # every class-4 test point in one block
    result = cluster_estimates(mapped, reference, blocks, PIXELS, classes=CLASSES)
    assert np.isnan(result["overall_accuracy_se"])
    assert "map class 4 has all test points in one spatial block" in result["undefined"]["overall_accuracy_se"]
    row = result["per_class"]["4"]
    assert np.isnan(row["users_se"]) and "at least 2 blocks" in row["undefined"]["users_ci95"]
    assert np.isfinite(result["per_class"]["1"]["users_se"])


def test_bad_input_is_one_clear_line() -> None:
    mapped, reference = _sample(5, n=20)
    with pytest.raises(InputDataError, match=r"blocks \(19,\) and map labels \(20,\).*one block id per test point"):
        cluster_estimates(mapped, reference, np.arange(19), PIXELS, classes=CLASSES)
    with pytest.raises(InputDataError, match="map_pixels .* must be 4 finite non-negative"):
        cluster_estimates(mapped, reference, np.arange(20), [1, 2], classes=CLASSES)


def test_figures_follow_the_split_design() -> None:
    mapped, reference = _sample(6, n=200)
    rng = np.random.default_rng(6)
    x, y = rng.uniform(0, 1000, 200), rng.uniform(0, 1000, 200)
    independent = stratified_estimates(confusion_counts(mapped, reference, CLASSES), PIXELS, classes=CLASSES)
    plain = cluster_figures(independent, "random", 100.0, x, y, mapped, reference)
    assert plain["se_design"] == "independent" and "cluster" not in plain
    assert "independent-points standard errors above apply" in plain["se_design_note"]
    spatial = cluster_figures(independent, "spatial", 100.0, x, y, mapped, reference)
    want = cluster_estimates(mapped, reference, grid_blocks(x, y, 100.0), PIXELS, classes=CLASSES)
    assert spatial["se_design"] == "cluster" and spatial["cluster"] == want
    assert spatial["overall_accuracy_se_cluster"] == want["overall_accuracy_se"]
    assert spatial["design_effect_cluster"] == pytest.approx(
        (want["overall_accuracy_se"] / independent["overall_accuracy_se"]) ** 2)
    assert f"{want['n_blocks']} whole spatial blocks" in spatial["se_design_note"]


def _coverage_draw(seed: int, size: int = 200, block: float = 10.0, n_points: int = 3000) -> tuple[bool, bool]:
    """One synthetic map (4 classes in 25 px patches) whose error rate varies by 16 px patch (logit-normal),
    a random sample of its pixels split by the pipeline's spatial split; does each 95 % CI cover the map's OA?"""
    rng = np.random.default_rng(seed)
    coarse = rng.choice(4, (8, 8), p=[0.4, 0.3, 0.2, 0.1])
    mapped = np.kron(coarse, np.ones((25, 25), dtype=int))[:size, :size]
    rate = 1.0 / (1.0 + np.exp(-rng.normal(np.log(0.25), 1.3, (13, 13))))
    wrong = rng.random((size, size)) < np.kron(rate, np.ones((16, 16)))[:size, :size]
    reference = np.where(wrong, (mapped + rng.integers(1, 4, (size, size))) % 4, mapped)
    truth = float((reference == mapped).mean())  # the map's overall accuracy, every pixel counted
    pixels = np.bincount(mapped.ravel(), minlength=4)
    idx = rng.choice(size * size, n_points, replace=False)
    row, col = np.divmod(idx, size)
    x, y = col + 0.5, size - row - 0.5
    ref, mp = reference.ravel()[idx], mapped.ravel()[idx]
    test = spatial_test_mask(x, y, ref, 0.2, block_size=block, random_state=seed)
    independent = stratified_estimates(confusion_counts(mp[test], ref[test], range(4)), pixels, classes=list(range(4)))
    cluster = cluster_figures(independent, "spatial", block, x[test], y[test], mp[test], ref[test])
    error = abs(independent["overall_accuracy"] - truth)
    return bool(error <= independent["overall_accuracy_ci95"]), bool(error <= cluster["overall_accuracy_ci95_cluster"])


def test_cluster_interval_covers_the_truth_under_clustered_errors() -> None:
    draws = np.array([_coverage_draw(seed) for seed in range(300)])
    independent, cluster = draws.mean(axis=0)
    print(f"95 % CI coverage of overall accuracy over {len(draws)} spatial splits: "
          f"cluster {cluster:.3f}, independent points {independent:.3f}")
    assert cluster >= 0.90
    assert independent < cluster


def test_report_lines_name_the_design_and_say_undefined_and_why(tmp_path) -> None:
    from lcmodel.io import write_json
    from lcmodel.report import assessment_markdown

    mapped, reference = _sample(7, n=160)
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0, 1000, 160), rng.uniform(0, 1000, 160)
    x[mapped == 4], y[mapped == 4] = 5.0, 5.0  # class 4 in one block: its cluster user's SE is undefined
    independent = stratified_estimates(confusion_counts(mapped, reference, CLASSES), PIXELS, classes=CLASSES)
    result = {**independent, "computed": True, "design": ["Sampling design: a test."],
              **cluster_figures(independent, "spatial", 100.0, x, y, mapped, reference)}
    text = assessment_markdown(json.loads(write_json(result, tmp_path / "a.json").read_text()), "## Assessment")
    assert "**Standard errors.** The test part is" in text and "cluster: " in text
    row = [line for line in text.splitlines() if line.startswith("| 4 |")][-1]  # the cluster table
    assert row.split(" | ")[3] == "undefined"  # user's +/- 95 % (cluster)
    assert "cluster standard error undefined: map class 4 has all test points in one spatial block" in text
    random = {**independent, "computed": True, **cluster_figures(independent, "random", 100.0, x, y, mapped,
                                                                 reference)}
    assert "independent-points standard errors above apply" in assessment_markdown(random, "## Assessment")
