"""The test split meets sampling.test_size overall and per class (whole blocks), and says by how much and why
when it cannot; the split summary reaches the training table's record and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from lcmodel import pipeline
from lcmodel.accuracy import assign_groups, grid_blocks, spatial_test_mask
from lcmodel.accuracy.split_balance import balanced_test_blocks, split_shares
from lcmodel.config import load_config
from lcmodel.errors import DataWarning, InsufficientDataError
from lcmodel.report import split_markdown
from lcmodel.split import split_meeting_shares, split_summary, split_train_test
from tests.rasters import tiny_demo_config


def _within(summary: dict) -> None:
    """Every share within its allowed deviation, and the summary agrees."""
    t = summary["target"]
    assert abs(summary["test_share"] - t) <= summary["allowed"] + 1e-12
    for value, c in summary["per_class"].items():
        assert abs(c["test_share"] - t) <= c["allowed"] + 1e-12, (value, c)
        assert 0 < c["n_test"] < c["n"], (value, c)
        assert c["met"] and c["reason"] is None
    assert summary["met"] and summary["unmet"] == []


def _clustered(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on a 6 km square whose classes come in patches (a smoothed field cut at quantiles): a rare
    class (about 4 %) sits in a few patches, as Built-up or wetland do on real maps."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal((600, 600)), 25)
    cuts = np.quantile(field, [0.4, 0.7, 0.9, 0.96])
    labels_grid = np.searchsorted(cuts, field)
    r, c = rng.integers(0, 600, n), rng.integers(0, 600, n)
    return c * 10.0 + 5, -(r * 10.0 + 5), labels_grid[r, c]


def test_clustered_case_meets_the_shares_where_block_by_block_did_not() -> None:
    x, y, labels = _clustered()
    blocks = grid_blocks(x, y, 1000.0)  # 36 blocks of 1 km: few blocks, clustered classes
    old = assign_groups(blocks, labels, [0.8, 0.2], random_state=42) == 1  # the rule before
    before = split_shares(labels, old, 0.2, strategy="spatial", blocks=blocks)
    assert not before["met"]  # a class's share off the target by more than the tolerance
    test = spatial_test_mask(x, y, labels, 0.2, block_size=1000.0, random_state=42)
    for b in np.unique(blocks):  # whole blocks on one side
        assert np.unique(test[blocks == b]).size == 1
    _within(split_shares(labels, test, 0.2, strategy="spatial", blocks=blocks))
    again = spatial_test_mask(x, y, labels, 0.2, block_size=1000.0, random_state=42)
    np.testing.assert_array_equal(test, again)  # seeded: bit-for-bit the same


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_other_seeds_and_a_tighter_tolerance(seed: int) -> None:
    x, y, labels = _clustered(seed)
    blocks = grid_blocks(x, y, 500.0)
    test = balanced_test_blocks(blocks, labels, 0.25, tolerance=0.03, random_state=seed)
    _within(split_shares(labels, test, 0.25, strategy="spatial", tolerance=0.03, blocks=blocks))


def test_a_class_in_one_block_is_reported_with_by_how_much_and_why() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 4000, 800), rng.uniform(0, 4000, 800)
    labels = rng.integers(0, 3, 800)
    lonely = (x < 400) & (y < 400)  # class 9: only in the block at the origin
    labels[lonely] = 9
    df = pd.DataFrame({"x": x, "y": y, "value": labels})
    with pytest.warns(DataWarning, match="fall only in the train or only in the test part"):
        out = split_train_test(df, 0.2, strategy="spatial", block_size=400.0, random_state=1)
    summary = split_summary(out, 0.2, strategy="spatial", block_size=400.0)
    row = summary["per_class"]["9"]
    assert not summary["met"] and not row["met"] and row["n_blocks"] == 1
    assert "lie in one block" in row["reason"]
    others = [c for v, c in summary["per_class"].items() if v != "9"]
    assert all(c["met"] for c in others) and summary["overall_met"]
    [line] = summary["unmet"]
    assert line.startswith(f"class 9: test share {row['test_share']:.3f}") and "off the target 0.2 by" in line
    assert "lower sampling.block_size" in line
    text = "\n".join(split_markdown(summary, {"9": {"name": "Lonely"}}))
    assert "NOT met" in text and "| 9 | Lonely |" in text and line in text


def test_few_blocks_give_the_nearest_share_blocks_allow() -> None:
    # class 1 in two blocks of 10 rows each: its test share can only be 0, 0.5 or 1
    labels = np.array([1] * 20 + [0] * 200)
    blocks = np.array([0] * 10 + [1] * 10 + list(range(2, 202)))
    test = balanced_test_blocks(blocks, labels, 0.2, random_state=0)
    summary = split_shares(labels, test, 0.2, strategy="spatial", blocks=blocks)
    assert not summary["per_class"]["1"]["met"]
    assert "the nearest test share whole blocks allow is 0.500" in summary["per_class"]["1"]["reason"]


def test_random_split_is_summarised_the_same_way() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.uniform(0, 1, 700), "y": rng.uniform(0, 1, 700),
                       "value": rng.choice([1, 2, 3, 4], 700, p=[0.6, 0.25, 0.1, 0.05])})
    out = split_train_test(df, 0.2, random_state=0)
    summary = split_summary(out, 0.2, strategy="random")
    assert summary["strategy"] == "random" and "n_blocks" not in summary
    _within(summary)


def test_tiny_demo_training_table_records_and_reports_the_split(tmp_path: Path) -> None:
    cfg = load_config(tiny_demo_config(tmp_path, stages=[{"max_features": ["sqrt"], "n_estimators": [10]}]))
    runner = pipeline.StageRun(cfg)
    for stage in pipeline.SAMPLING:
        runner(stage)
    root = Path(cfg.output.dir)
    blocks = json.loads((root / "spatial_blocks.json").read_text())
    summary = blocks["summary"]
    assert blocks["split"] == "spatial" == summary["strategy"] and summary["tolerance"] == 0.05
    table = pd.read_csv(root / "training_table.csv")
    assert summary["n_test"] == int((table["split"] == "test").sum()) and summary["n_rows"] == len(table)
    _within(summary)
    for name in ("tune", "evaluate", "report"):
        runner(pipeline.STAGES[name])
    report = (root / "report.md").read_text()
    assert "## Test split" in report and "sampling.split_tolerance" in report and ": met." in report
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["split"]["summary"] == summary


def test_an_automatic_block_size_is_made_smaller_for_the_split_when_it_cannot_meet_the_shares() -> None:
    x, y, labels = _clustered()
    df = pd.DataFrame({"x": x, "y": y, "value": labels})
    _, as_given = split_meeting_shares(df, 0.2, strategy="spatial", block_size=3000.0, tolerance=0.05,
                                          random_state=42, refine=False)  # a configured size: used as given
    assert as_given["block_size"] == 3000.0 and "block_size_refined_from" not in as_given
    assert not as_given["met"] and as_given["unmet"] and as_given["n_blocks"] == 4
    out, refined = split_meeting_shares(df, 0.2, strategy="spatial", block_size=3000.0, tolerance=0.05,
                                        random_state=42, refine=True)
    assert refined["met"] and refined["block_size"] == 2250.0  # 3/4 of it
    assert refined["block_size_refined_from"] == 3000.0
    blocks = grid_blocks(x, y, refined["block_size"])
    test = (out["split"] == "test").to_numpy()
    assert all(np.unique(test[blocks == b]).size == 1 for b in np.unique(blocks))
    assert "of 2250 CRS units (the automatic 3000 gave too few blocks" in "\n".join(split_markdown(refined, {}))
    _, random_summary = split_meeting_shares(df, 0.2, strategy="random", block_size=None, tolerance=0.05,
                                                      random_state=42, refine=True)
    assert random_summary["met"] and random_summary["block_size"] is None


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 40), st.integers(2, 5), st.floats(0.1, 0.5))
def test_whole_blocks_and_a_reproducible_choice(seed: int, n_blocks: int, n_classes: int, test_size: float) -> None:
    """Whatever the blocks and classes: every block on one side, the same choice for the same seed, and the
    summary's counts are the mask's."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, n_blocks, 300)
    labels = rng.integers(0, n_classes, 300)
    test = balanced_test_blocks(blocks, labels, test_size, random_state=seed)
    assert all(np.unique(test[blocks == b]).size == 1 for b in np.unique(blocks))
    np.testing.assert_array_equal(test, balanced_test_blocks(blocks, labels, test_size, random_state=seed))
    summary = split_shares(labels, test, test_size, strategy="spatial", blocks=blocks)
    assert summary["n_test"] == int(test.sum()) and summary["n_test_blocks"] == np.unique(blocks[test]).size
    assert sum(c["n_test"] for c in summary["per_class"].values()) == summary["n_test"]
    assert summary["met"] == (summary["overall_met"] and not summary["unmet"])


def test_one_block_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(InsufficientDataError, match="1 spatial block.*lower sampling.block_size"):
        balanced_test_blocks(np.zeros(50, dtype=int), np.arange(50) % 2, 0.2)
