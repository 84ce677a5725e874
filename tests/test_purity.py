"""Cleaner labels: only reference pixels whose whole window holds one class go into the training part.

The purity flags come from the reference raster read block by block with a halo, so they are the
whole raster's for any block layout; the test part keeps its design (not filtered by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from lcmodel.errors import InputDataError
from lcmodel.label_purity import apply_purity, purity_note
from lcmodel.reference import sample_raster_points
from lcmodel.reference.class_pixels import ClassPixelSampler
from lcmodel.reference.purity import check_purity_window
from tests.rasters import write_raster

NODATA = 0


def _classes(height: int = 45, width: int = 53, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.kron(rng.integers(1, 5, (height // 3 + 1, width // 3 + 1)), np.ones((3, 3), dtype=np.int64))
    arr = arr[:height, :width].astype(np.uint8)
    arr[rng.random(arr.shape) < 0.03] = 7  # specks
    arr[rng.random(arr.shape) < 0.02] = NODATA
    return arr


def _pure_brute_force(arr: np.ndarray, size: int) -> np.ndarray:
    """The whole raster's answer, pixel by pixel."""
    r = size // 2
    h, w = arr.shape
    out = np.zeros(arr.shape, dtype=bool)
    for i in range(h):
        for j in range(w):
            if arr[i, j] == NODATA or i < r or j < r or i + r >= h or j + r >= w:
                continue
            out[i, j] = bool((arr[i - r : i + r + 1, j - r : j + r + 1] == arr[i, j]).all())
    return out


def _draw_all(path: Path, size: int) -> pd.DataFrame:
    with rasterio.open(path) as src:
        sampler = ClassPixelSampler(path, src, purity_window=size)
    drawn = sampler.draw(lambda classes, totals: totals, random_state=0, n_threads=2)
    assert drawn.pure is not None
    return pd.DataFrame({"row": drawn.rows.astype(int), "col": drawn.cols.astype(int), "pure": drawn.pure}
                        ).sort_values(["row", "col"]).reset_index(drop=True)


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("blocksize", [16, 32, None])  # tiles of 16, of 32, and strips
def test_purity_flags_are_the_whole_rasters_for_any_block_layout(tmp_path: Path, size: int,
                                                                 blocksize: int | None) -> None:
    arr = _classes()
    path = write_raster(tmp_path / f"ref_{blocksize}.tif", arr, nodata=NODATA, blocksize=blocksize)
    found = _draw_all(path, size)  # every valid pixel, with its flag
    expected = _pure_brute_force(arr, size)
    rows, cols = np.nonzero(arr != NODATA)
    assert len(found) == rows.size
    assert np.array_equal(found["pure"].to_numpy(), expected[found["row"], found["col"]])
    assert 0 < found["pure"].sum() < len(found)  # both kinds are there: the check is not vacuous
    # pixels on the raster's edge are never pure (their window leaves the raster)
    assert not found.loc[(found["row"] < size // 2) | (found["col"] < size // 2), "pure"].any()


def test_the_points_are_the_same_with_and_without_purity(tmp_path: Path) -> None:
    arr = _classes()
    path = write_raster(tmp_path / "ref.tif", arr, nodata=NODATA, blocksize=16)
    plain = sample_raster_points(path, 300, random_state=7)
    flagged = sample_raster_points(path, 300, random_state=7, purity_window=3)
    assert "pure" not in plain.table.columns
    pd.testing.assert_frame_equal(plain.table, flagged.table.drop(columns=["pure"]))
    with rasterio.open(path) as src:
        inverse = ~src.transform
    cols, rows = inverse * (flagged.table["x"].to_numpy(), flagged.table["y"].to_numpy())
    rows, cols = np.floor(rows).astype(int), np.floor(cols).astype(int)
    assert np.array_equal(flagged.table["pure"].to_numpy(), _pure_brute_force(arr, 3)[rows, cols])


def _split_table() -> pd.DataFrame:
    return pd.DataFrame({
        "value": [1, 1, 2, 2, 1, 2, 1, 2],
        "split": ["train"] * 5 + ["test"] * 3,
        "pure": [True, False, True, False, False, True, False, False],
        "A00": np.arange(8, dtype=np.float32),
    })


def test_only_pure_training_points_stay_and_the_test_part_is_kept_whole() -> None:
    df = _split_table()
    out, info = apply_purity(df, 3)
    assert info is not None and "pure" not in out.columns
    assert out.loc[out["split"] == "train", "A00"].tolist() == [0.0, 2.0]
    assert out.loc[out["split"] == "test", "A00"].tolist() == [5.0, 6.0, 7.0]  # impure test points kept
    assert info["train_dropped"] == 3 and info["test_impure"] == 2 and info["test_dropped"] == 0
    assert info["train_dropped_by_class"] == {"1": 2, "2": 1}
    assert "The test part is NOT filtered" in purity_note(info)


def test_a_class_with_too_few_pure_points_keeps_its_edges() -> None:
    df = _split_table()
    df.loc[1, "pure"] = True  # class 1: two pure training points, class 2: one
    out, info = apply_purity(df, 3, min_per_class=2)
    assert info is not None and info["classes_kept_whole"] == [2]
    assert out.loc[out["split"] == "train", "A00"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert "Classes [2] have fewer than 2 pure training points" in purity_note(info)


def test_purity_test_filters_the_test_part_too() -> None:
    out, info = apply_purity(_split_table(), 5, test_too=True)
    assert info is not None and out["A00"].tolist() == [0.0, 2.0, 5.0]
    assert info["test_dropped"] == 2 and "optimistic" in purity_note(info)


def test_purity_off_changes_nothing_but_the_flag_column() -> None:
    df = _split_table()
    out, info = apply_purity(df, None)
    assert info is None and out.equals(df.drop(columns=["pure"]))


def test_purity_errors_are_one_line_and_name_the_fix() -> None:
    with pytest.raises(InputDataError, match="needs the purity flags of a raster reference"):
        apply_purity(_split_table().drop(columns=["pure"]), 3)
    all_edges = _split_table().assign(pure=False)
    with pytest.raises(InputDataError, match="no training point is pure in a 5x5 window"):
        apply_purity(all_edges, 5)
    with pytest.raises(ValueError, match="purity window 4 is not an odd size"):
        check_purity_window(4)
