"""dataset and split: aligned samples, pixel de-duplication, subsampling, rare classes, stratified split, table I/O."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from lcmodel.dataset import (
    META_COLUMNS,
    build_samples,
    drop_rare_classes,
    feature_columns,
    read_training_table,
    subsample,
    write_training_table,
)
from lcmodel.embedding import NodataRule
from lcmodel.errors import (
    ConfigError,
    DataWarning,
    InputDataError,
    InputFileError,
    InsufficientDataError,
    NoOverlapError,
)
from lcmodel.extract import Extraction, extract_values
from lcmodel.split import split_train_test
from tests.rasters import write_raster

X0, Y0, RES = 500000.0, 8000000.0, 10.0
FLOAT_RULE = NodataRule(dtype="float32", nodata=None, zero_vector=True)


# ---------------------------------------------------------------- build_samples


def test_build_samples_keeps_each_label_with_its_own_vector(tmp_path: Path) -> None:
    """The notebook's bug: all-zero rows dropped from features only. Here labels and values stay paired."""
    h, w, bands = 30, 30, 3
    r, c = np.mgrid[0:h, 0:w]
    data = np.stack([(r * 1000 + c + 1 + b / 10).astype(np.float32) for b in range(bands)])
    zero_rows = [5, 6, 17]
    data[:, zero_rows, :] = 0.0  # all-zero (nodata) pixels in the middle of the point list
    path = write_raster(tmp_path / "emb.tif", data, blocksize=16)
    rows = np.arange(h)  # one point per row, on the diagonal, in order
    cols = np.arange(h)
    x = X0 + RES * (cols + 0.5)
    y = Y0 - RES * (rows + 0.5)
    x = np.r_[x, X0 - 100.0]  # plus one point outside
    y = np.r_[y, Y0 - 5.0]
    points = pd.DataFrame({"x": x, "y": y, "code": np.arange(x.size) * 10, "value": np.arange(x.size) + 1})
    ext = extract_values(path, x, y)
    with pytest.warns(DataWarning, match=r"dropped 4 of 31 reference points: 1 outside .*, 3 on nodata"):
        samples, stats = build_samples(points, ext, dedupe=False)
    assert stats == {"n_points": 31, "n_outside": 1, "n_nodata": 3, "n_merged_duplicates": 0, "n_samples": 27}
    assert list(samples.columns) == ["x", "y", "row", "col", "code", "value", "band_1", "band_2", "band_3"]
    assert samples["band_1"].dtype == np.float32 and samples["value"].dtype == np.int64
    kept = np.setdiff1d(rows, zero_rows)
    # value = row + 1 and band_1 = row * 1000 + col + 1: each sample has its OWN label and vector.
    np.testing.assert_array_equal(samples["value"].to_numpy(), kept + 1)
    np.testing.assert_array_equal(samples["code"].to_numpy(), kept * 10)
    np.testing.assert_array_equal(samples["band_1"].to_numpy(), (kept * 1000 + kept + 1).astype(np.float32))
    np.testing.assert_array_equal(samples["band_3"].to_numpy(), (kept * 1000 + kept + 1.2).astype(np.float32))
    np.testing.assert_array_equal(samples["x"].to_numpy(), x[kept])


def _extraction(rows: list[int], cols: list[int], values: np.ndarray, transform: Affine | None) -> Extraction:
    n = len(rows)
    return Extraction(
        values=values.astype(np.float32),
        valid=np.ones(n, bool),
        inside=np.ones(n, bool),
        row=np.array(rows, np.int64),
        col=np.array(cols, np.int64),
        band_names=["A00", "A01"],
        rule=FLOAT_RULE,
        transform=transform,
    )


def test_dedupe_majority_value_and_tie_rules() -> None:
    rows = [2, 2, 2, 1, 1, 0, 1, 1, 1, 1]
    cols = [3, 3, 3, 1, 1, 0, 2, 2, 2, 2]
    value = [5, 7, 5, 6, 4, 3, 2, 2, 2, 2]
    code = [50, 70, 51, 60, 40, 30, 21, 20, 21, 20]
    feats = np.array([[r + c / 10, -r] for r, c in zip(rows, cols, strict=True)])
    points = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0), "code": code, "value": value})
    transform = Affine(RES, 0, X0, 0, -RES, Y0)
    samples, stats = build_samples(points, _extraction(rows, cols, feats, transform))
    assert stats["n_merged_duplicates"] == 6 and stats["n_samples"] == 4
    assert samples[["row", "col"]].values.tolist() == [[0, 0], [1, 1], [1, 2], [2, 3]]  # sorted by pixel
    # (1,1): 6 vs 4 tie -> smallest value 4; (1,2): value 2, codes 21/20 tie -> 20; (2,3): 5 wins 2:1,
    # its codes 50/51 tie -> 50.
    assert samples["value"].tolist() == [3, 4, 2, 5]
    assert samples["code"].tolist() == [30, 40, 20, 50]
    assert samples["x"].tolist() == [X0 + 5, X0 + 15, X0 + 25, X0 + 35]  # pixel centres
    assert samples["y"].tolist() == [Y0 - 5, Y0 - 15, Y0 - 15, Y0 - 25]
    np.testing.assert_array_equal(samples["A00"].to_numpy(), np.float32([0.0, 1.1, 1.2, 2.3]))
    # Deterministic whatever the input order.
    perm = np.random.default_rng(0).permutation(10)
    shuffled = points.iloc[perm].reset_index(drop=True)
    again, _ = build_samples(
        shuffled, _extraction([rows[i] for i in perm], [cols[i] for i in perm], feats[perm], transform)
    )
    pd.testing.assert_frame_equal(samples, again)


def test_dedupe_without_transform_keeps_first_point_and_string_codes() -> None:
    points = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0], "code": ["tree", "grass", "grass"], "value": [1, 2, 2]}
    )
    samples, stats = build_samples(points, _extraction([0, 0, 0], [0, 0, 0], np.ones((3, 2)), None))
    assert stats["n_merged_duplicates"] == 2
    assert samples[["x", "y", "code", "value"]].values.tolist() == [[1.0, 4.0, "grass", 2]]


def test_build_samples_errors() -> None:
    points = pd.DataFrame({"x": [1.0], "y": [2.0], "code": [10], "value": [1]})
    ext = _extraction([0], [0], np.ones((1, 2)), None)
    with pytest.raises(InputDataError, match="lacks column"):
        build_samples(points.drop(columns="value"), ext)
    with pytest.raises(InputDataError, match="extraction has 1 rows but the points table has 2"):
        build_samples(pd.concat([points, points]), ext)
    with pytest.raises(InputDataError, match="missing or non-numeric labels"):
        build_samples(points.assign(value=[np.nan]), ext)
    none_valid = Extraction(
        values=np.zeros((1, 2), np.float32), valid=np.zeros(1, bool), inside=np.zeros(1, bool),
        row=np.array([-1]), col=np.array([-1]), band_names=["a", "b"], rule=FLOAT_RULE,
    )
    with pytest.raises(NoOverlapError, match="none of the 1 reference points.*1 outside"):
        build_samples(points, none_valid)


# ---------------------------------------------------------------- subsample


def _classes(counts: dict[int, int], seed: int = 0) -> pd.DataFrame:
    code = np.concatenate([np.full(n, c) for c, n in counts.items()])
    rng = np.random.default_rng(seed)
    code = rng.permutation(code)
    return pd.DataFrame({"code": code, "value": code // 10, "band_1": rng.random(code.size).astype(np.float32)})


def _notebook_subsample(df: pd.DataFrame, n_sample: int) -> pd.DataFrame:
    class_props = df["code"].value_counts(normalize=True)
    samples = []
    for cls, prop in class_props.items():
        n_cls = max(1, int(round(prop * n_sample)))
        samples.append(df[df["code"] == cls].sample(n=n_cls, random_state=42))
    return (
        pd.concat(samples).sample(n=min(n_sample, sum(len(s) for s in samples)), random_state=42)
        .reset_index(drop=True)
    )


def test_subsample_proportions_match_notebook() -> None:
    df = _classes({10: 600, 20: 300, 30: 90, 40: 10})
    out = subsample(df, 100)
    assert out["code"].value_counts().to_dict() == {10: 60, 20: 30, 30: 9, 40: 1}
    pd.testing.assert_frame_equal(out, _notebook_subsample(df, 100))  # same draw where the notebook works


def test_subsample_is_seeded() -> None:
    df = _classes({10: 500, 20: 500})
    pd.testing.assert_frame_equal(subsample(df, 50, random_state=1), subsample(df, 50, random_state=1))
    assert not subsample(df, 50, random_state=1).equals(subsample(df, 50, random_state=2))


def test_subsample_small_data_does_not_crash() -> None:
    """BUGS.md #4: fewer rows than n_sample made the notebook ask for more rows than a class has."""
    df = _classes({10: 300, 20: 140, 30: 10})  # 450 rows, n_sample 500
    with pytest.raises(ValueError, match="larger sample than population"):
        _notebook_subsample(df, 500)
    out = subsample(df, 500, random_state=3)
    assert len(out) == 450 and out["code"].value_counts().to_dict() == {10: 300, 20: 140, 30: 10}
    assert not out["code"].equals(df["code"])  # shuffled...
    pd.testing.assert_frame_equal(out, subsample(df, 500, random_state=3))  # ...deterministically
    with pytest.raises(ConfigError, match="sampling.n_sample is 0"):
        subsample(df, 0)


# ---------------------------------------------------------------- drop_rare_classes


def test_drop_rare_classes_warns_with_names_and_counts() -> None:
    df = _classes({10: 950, 90: 8, 80: 42})
    with pytest.warns(DataWarning, match=r"dropped 1 rare class.*sampling.min_class_fraction=0.01.*value 9 \(8 rows"):
        kept, dropped = drop_rare_classes(df, 0.01)
    assert dropped == [9] and len(kept) == 992 and set(kept["value"]) == {1, 8}
    assert isinstance(dropped[0], int)
    kept0, dropped0 = drop_rare_classes(df, 0.0)
    assert dropped0 == [] and len(kept0) == 1000
    with pytest.raises(InsufficientDataError, match="every class is under sampling.min_class_fraction=0.99"):
        drop_rare_classes(_classes({10: 50, 20: 50}), 0.99)


# ---------------------------------------------------------------- split_train_test


def test_split_is_stratified_and_matches_sklearn_draw() -> None:
    df = _classes({10: 500, 20: 300, 30: 200})
    out = split_train_test(df, 0.2, random_state=42)
    assert list(out.columns) == ["code", "value", "split", "band_1"]
    assert out["split"].value_counts().to_dict() == {"train": 800, "test": 200}
    assert out[out["split"] == "test"]["value"].value_counts().to_dict() == {1: 100, 2: 60, 3: 40}
    pd.testing.assert_frame_equal(out.drop(columns="split"), df)  # rows unchanged, in order
    pd.testing.assert_frame_equal(out, split_train_test(df, 0.2, random_state=42))


def test_split_too_few_members_names_class_and_fix() -> None:
    df = _classes({10: 500, 20: 300, 70: 1})
    with pytest.raises(
        InsufficientDataError,
        match=r"class value=7 has 1 sample\(s\);.*test_size=0.2.*needs at least 5 per class;.*"
        r"sampling.n_sample / reference.n_points.*sampling.min_class_fraction",
    ):
        split_train_test(df, 0.2)
    with pytest.raises(InsufficientDataError, match="class value=7 has 3 sample"):
        split_train_test(_classes({10: 500, 70: 3}), 0.2)  # 2 members, but 3 * 0.2 < 1 test row
    with pytest.raises(InsufficientDataError, match="needs at least 2 classes"):
        split_train_test(_classes({10: 50}), 0.2)
    with pytest.raises(ConfigError, match="sampling.test_size is 1.5"):
        split_train_test(df, 1.5)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=6),
    test_size=st.floats(min_value=0.05, max_value=0.6),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_split_property(counts: list[int], test_size: float, seed: int) -> None:
    df = _classes({10 * (i + 1): n for i, n in enumerate(counts)}, seed=seed % 1000)
    n = len(df)
    n_test = math.ceil(test_size * n)
    feasible = all(c >= 2 and c * n_test >= n and c * (n - n_test) >= n for c in counts)
    if not feasible:
        with pytest.raises(InsufficientDataError):
            split_train_test(df, test_size, random_state=seed)
        return
    out = split_train_test(df, test_size, random_state=seed)
    pd.testing.assert_frame_equal(out.drop(columns="split"), df)  # union = input, each row once
    assert set(out["split"]) <= {"train", "test"} and (out["split"] == "test").sum() == n_test
    for i, c in enumerate(counts):
        parts = out[out["value"] == i + 1]["split"]
        n_cls_test = int((parts == "test").sum())
        assert 1 <= n_cls_test <= c - 1  # every class in both parts
        assert abs(n_cls_test - c * n_test / n) < 1  # proportions within one sample


# ---------------------------------------------------------------- training table I/O


def test_training_table_round_trips_float32_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n, bands = 2000, 16
    bits = rng.integers(0, 2**32, (n, bands), dtype=np.uint64).astype(np.uint32)
    feats = bits.view(np.float32)
    feats[~np.isfinite(feats)] = 0.5
    feats[0] = np.float32([0.1, 1 / 3, -1e-38, 1e-45, 3.4028235e38, -0.0] + [0.7] * (bands - 6))
    df = pd.DataFrame(
        {
            "x": rng.uniform(0, 1e6, n), "y": rng.uniform(0, 1e7, n),
            "row": rng.integers(0, 10000, n), "col": rng.integers(0, 10000, n),
            "code": rng.choice([10, 20, 95], n), "value": rng.integers(1, 5, n),
            "split": rng.choice(["train", "test"], n),
        }
    )
    df = pd.concat([df, pd.DataFrame(feats, columns=[f"A{i:02d}" for i in range(bands)])], axis=1)
    path = write_training_table(df, tmp_path / "out")
    assert path == tmp_path / "out" / "training_table.csv"
    assert sorted(p.name for p in path.parent.iterdir()) == ["training_table.csv"]  # no temp file left
    assert path.read_text().splitlines()[0].startswith("x,y,row,col,code,value,split,A00,A01")
    back = read_training_table(path)
    assert feature_columns(back) == [f"A{i:02d}" for i in range(bands)]
    assert all(back[b].dtype == np.float32 for b in feature_columns(back))
    np.testing.assert_array_equal(back[feature_columns(back)].to_numpy().view(np.uint32), feats.view(np.uint32))
    np.testing.assert_array_equal(back["x"].to_numpy(), df["x"].to_numpy())
    assert back["value"].dtype == np.int64 and back["split"].tolist() == df["split"].tolist()
    assert list(back.columns[: len(META_COLUMNS)]) == list(META_COLUMNS)


def test_training_table_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        read_training_table(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputDataError, match="lacks column"):
        read_training_table(bad)
    with pytest.raises(InputDataError, match="lacks column"):
        write_training_table(pd.DataFrame({"x": [1.0]}), tmp_path)


def test_a_training_table_cut_short_is_refused(tmp_path: Path) -> None:
    """Issue 15: a table cut mid-line was read with a row of NaN bands, and trained on."""
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0], "row": [0, 1, 2], "col": [0, 1, 2],
                       "code": [10, 20, 10], "value": [1, 2, 1], "split": ["train", "test", "train"],
                       "A00": np.float32([0.1, 0.2, 0.3]), "A01": np.float32([0.4, 0.5, 0.6])})
    path = write_training_table(df, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b",") + 1])  # the last row cut after its first band
    with pytest.raises(InputDataError, match=r"training table '.*training_table.csv' is incomplete \(its last line "
                       r"ends mid-row\): .* delete it and rerun"):
        read_training_table(path)
    path.write_bytes(data.replace(b"0.5", b""))  # a band value missing, the file otherwise complete
    with pytest.raises(InputDataError, match=r"is incomplete \(row 2 has missing values\)"):
        read_training_table(path)
