"""The clean map: the sieve (minimum mapping unit) and the majority filter, block-wise equal to a whole-raster run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.features import sieve as gdal_sieve
from rasterio.transform import from_origin

from lcmodel.errors import InputDataError
from lcmodel.postprocess import CleanOptions, clean_array, clean_map, halo, majority, patches, sieve

NODATA = 0


@st.composite
def class_maps(draw: st.DrawFn) -> np.ndarray:
    """Small class maps of 1..4 classes, patchy (blocks of 1..4 px upsampled), with some nodata."""
    h, w = draw(st.integers(4, 36)), draw(st.integers(4, 36))
    cell = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, draw(st.integers(2, 5)), size=(h // cell + 1, w // cell + 1)).astype(np.uint8)
    arr = np.kron(coarse, np.ones((cell, cell), dtype=np.uint8))[:h, :w]
    noise = rng.random((h, w)) < draw(st.sampled_from([0.0, 0.05, 0.3]))
    arr = np.where(noise, rng.integers(1, 4, size=(h, w)).astype(np.uint8), arr)
    arr[rng.random((h, w)) < draw(st.sampled_from([0.0, 0.05]))] = NODATA
    return np.ascontiguousarray(arr)


options = st.builds(
    CleanOptions,
    mmu_pixels=st.one_of(st.none(), st.integers(2, 12)),
    connectivity=st.sampled_from([4, 8]),
    majority=st.one_of(st.none(), st.sampled_from([3, 5])),
).filter(lambda o: o.active)


@settings(max_examples=300, deadline=None)
@given(arr=class_maps(), opts=options, block=st.integers(1, 40))
def test_blockwise_equals_the_whole_raster(arr: np.ndarray, opts: CleanOptions, block: int) -> None:
    whole = clean_array(arr, opts, nodata=NODATA)
    assert np.array_equal(clean_array(arr, opts, nodata=NODATA, block_size=block), whole)


@settings(max_examples=100, deadline=None)
@given(arr=class_maps(), mmu=st.integers(2, 10), connectivity=st.sampled_from([4, 8]))
def test_the_sieve_leaves_no_small_patch_next_to_a_large_one(arr: np.ndarray, mmu: int, connectivity: int) -> None:
    out = sieve(arr, mmu, connectivity=connectivity, nodata=NODATA)
    assert np.array_equal(out == NODATA, arr == NODATA)  # nodata stays, nothing becomes nodata
    labels, sizes = patches(arr, NODATA, connectivity)
    large = sizes >= mmu
    large[0] = False
    assert np.array_equal(out[large[labels]], arr[large[labels]])  # large patches are never touched
    # every changed pixel took a value present in a large patch of the input
    changed = out != arr
    assert set(np.unique(out[changed])) <= set(np.unique(arr[large[labels]]))


def test_a_speck_in_a_field_goes_as_with_rasterio_sieve() -> None:
    arr = np.full((20, 20), 1, dtype=np.uint8)
    arr[3, 3] = 2  # 1 px
    arr[8:10, 8] = 3  # 2 px
    arr[15:18, 15:18] = 4  # 9 px, stays
    arr[0, 19] = 5  # corner speck
    for connectivity in (4, 8):
        ours = sieve(arr, 5, connectivity=connectivity)
        assert np.array_equal(ours, gdal_sieve(arr, 5, connectivity=connectivity))
    assert set(np.unique(sieve(arr, 5))) == {1, 4}


def test_connectivity_decides_what_a_patch_is() -> None:
    arr = np.full((6, 6), 1, dtype=np.uint8)
    arr[1, 1] = arr[2, 2] = arr[3, 3] = 2  # a diagonal line: three 1-px patches, or one 3-px patch
    assert (sieve(arr, 3, connectivity=4) == 1).all()
    assert np.array_equal(sieve(arr, 3, connectivity=8), arr)


def test_the_longest_border_wins_and_ties_go_to_the_lowest_value() -> None:
    arr = np.array([[1, 1, 1, 1],
                    [1, 9, 9, 2],
                    [2, 2, 2, 2]], dtype=np.uint8)
    # the 2-px patch of 9 borders class 1 over 3 edges and class 2 over 3 edges: a tie, 1 wins
    assert sieve(arr, 3)[1, 1] == 1 and sieve(arr, 3)[1, 2] == 1
    arr[0, 2] = 2  # now 2 borders it over 4 edges (and the lone 2 at the top is itself small)
    arr[0, 3] = 2
    out = sieve(arr, 3)
    assert out[1, 1] == 2 and out[1, 2] == 2


def test_a_small_patch_with_only_small_or_nodata_neighbours_stays() -> None:
    arr = np.array([[0, 0, 0], [0, 3, 0], [0, 0, 0]], dtype=np.uint8)
    assert np.array_equal(sieve(arr, 4, nodata=0), arr)


def test_majority_keeps_the_centre_on_a_tie_and_nodata_never_wins() -> None:
    arr = np.array([[1, 1, 2],
                    [2, 2, 1],
                    [0, 0, 0]], dtype=np.uint8)
    out = majority(arr, 3, nodata=0)
    assert out[1, 1] == 2  # 1 and 2 both 3 times around it: the centre (2) keeps its value
    assert (out[2] == 0).all()  # nodata stays nodata
    assert out[0, 2] == 2  # 1 twice, 2 twice (the window is cut by the raster's edge): the centre keeps
    other = np.array([[2, 2, 3],
                      [3, 1, 2],
                      [3, 0, 0]], dtype=np.uint8)
    assert majority(other, 3, nodata=0)[1, 1] == 2  # 2 and 3 tie, the centre is not among them: the lowest
    sparse = np.array([[0, 0, 0], [0, 1, 2], [3, 0, 0]], dtype=np.uint8)
    assert majority(sparse, 3, nodata=0)[1, 1] == 1  # six nodata around it do not count: 1, 2, 3 tie
    assert majority(sparse, 3)[1, 1] == 0  # without a nodata value, 0 is a class like any other


def test_halo_is_the_proved_overlap() -> None:
    assert halo(10, None) == 18 and halo(None, 5) == 2 and halo(4, 3) == 7


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(InputDataError, match="mmu_pixels 1 removes nothing"):
        CleanOptions(mmu_pixels=1)
    with pytest.raises(InputDataError, match="connectivity 6 is not 4 or 8"):
        CleanOptions(mmu_pixels=4, connectivity=6)
    with pytest.raises(InputDataError, match="majority window 4 is not odd"):
        CleanOptions(majority=4)


def _write_map(path: Path, arr: np.ndarray, *, tile: int = 16) -> Path:
    profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1, "dtype": "uint8",
               "nodata": NODATA, "crs": "EPSG:32633", "transform": from_origin(500000, 4000000, 10, 10),
               "tiled": True, "blockxsize": tile, "blockysize": tile}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
        dst.update_tags(CLASS_1="Tree cover", CLASS_2="Water")
        dst.set_band_description(1, "class")
        dst.build_overviews([2, 4])
        dst.write_colormap(1, {0: (0, 0, 0, 0), 1: (0, 100, 0, 255), 2: (0, 100, 200, 255), 3: (250, 0, 0, 255)})
    return path


def test_clean_map_is_a_cog_with_the_raw_maps_colours_tags_and_grid(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    arr = np.kron(rng.integers(1, 4, (10, 13)), np.ones((8, 8), dtype=np.int64)).astype(np.uint8)[:75, :97]
    arr[rng.random(arr.shape) < 0.08] = 3
    arr[:5, :5] = NODATA
    raw = _write_map(tmp_path / "map.tif", arr)
    opts = CleanOptions(mmu_pixels=6, connectivity=8, majority=3)
    summary = clean_map(raw, tmp_path / "map_clean.tif", opts, block_size=16)
    with rasterio.open(raw) as a, rasterio.open(tmp_path / "map_clean.tif") as b:
        assert b.profile["driver"] == "GTiff" and b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (b.crs, b.transform, b.shape, b.dtypes, b.nodata) == (a.crs, a.transform, a.shape, a.dtypes, a.nodata)
        assert b.colormap(1)[2] == a.colormap(1)[2] == (0, 100, 200, 255)
        assert b.tags()["CLASS_2"] == "Water" and "sieve" in b.tags()["LCMODEL_POSTPROCESS"]
        assert b.descriptions == ("class",) and b.overviews(1) == [2, 4]
        clean = b.read(1)
    # the file holds the whole-raster result, and the summary counts what changed
    assert np.array_equal(clean, clean_array(arr, opts, nodata=NODATA))
    assert np.array_equal(clean == NODATA, arr == NODATA)
    assert summary.changed == int((clean != arr).sum()) > 0
    assert summary.n_valid == int((arr != NODATA).sum())
    assert summary.changed <= summary.changed_by_sieve + summary.changed_by_majority
    assert sum(summary.class_counts.values()) == summary.n_valid
    # the raw map is untouched; a second run writes the same bytes (and a block size changes nothing)
    with rasterio.open(raw) as a:
        assert np.array_equal(a.read(1), arr)
    clean_map(raw, tmp_path / "again.tif", opts, block_size=1000)
    assert (tmp_path / "again.tif").read_bytes() == (tmp_path / "map_clean.tif").read_bytes()


def test_clean_map_refuses_what_it_cannot_clean(tmp_path: Path) -> None:
    raw = _write_map(tmp_path / "map.tif", np.ones((8, 8), dtype=np.uint8))
    with pytest.raises(InputDataError, match="no postprocess option is set"):
        clean_map(raw, tmp_path / "out.tif", CleanOptions())
    probs = tmp_path / "probs.tif"
    with rasterio.open(probs, "w", driver="GTiff", width=4, height=4, count=2, dtype="float32", crs="EPSG:32633",
                       transform=from_origin(500000, 4000000, 10, 10)) as dst:
        dst.write(np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(InputDataError, match="has 2 band"):
        clean_map(probs, tmp_path / "out.tif", CleanOptions(majority=3))
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("mmu", [2, 3, 5, 9])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_the_sieve_overlap_is_tight(mmu: int, connectivity: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small patch of mmu - 1 px running out of the core in a line, then a line of exactly mmu px: with
    the overlap one pixel short the block sees the second line as small and keeps the first."""
    block = 8
    arr = np.zeros((5, block + 2 * mmu + 2), dtype=np.uint8)
    arr[2, block - 1 : block + mmu - 2] = 2  # mmu - 1 px, the first in the core of block 0
    arr[2, block + mmu - 2 : block + 2 * mmu - 2] = 3  # exactly mmu px: large
    opts = CleanOptions(mmu_pixels=mmu, connectivity=connectivity)
    whole = clean_array(arr, opts, nodata=NODATA)
    assert whole[2, block - 1] == 3
    assert np.array_equal(clean_array(arr, opts, nodata=NODATA, block_size=block), whole)
    monkeypatch.setattr(CleanOptions, "halo", property(lambda o: halo(o.mmu_pixels, o.majority) - 1))
    assert clean_array(arr, opts, nodata=NODATA, block_size=block)[2, block - 1] == 2


def test_the_majority_overlap_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CleanOptions, "halo", property(lambda o: halo(o.mmu_pixels, o.majority) - 1))
    rng = np.random.default_rng(0)
    arr = rng.integers(1, 4, size=(24, 24)).astype(np.uint8)
    opts = CleanOptions(majority=5)
    assert not np.array_equal(clean_array(arr, opts, block_size=5), clean_array(arr, opts))
