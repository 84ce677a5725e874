"""lcmodel.change on tiny rasters with planted change: transitions, embedding angle, agreement, temporal filter."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine

from lcmodel.change import (
    agreement_table,
    angle_degrees,
    temporal_majority,
    transition_codes,
    write_embedding_change,
    write_matrix,
    write_transitions,
)
from lcmodel.classes import ClassTable
from lcmodel.errors import InputDataError

H, W = 37, 45  # not a multiple of the block sizes used
UTM = "EPSG:32631"
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
BLOCK = (slice(5, 17), slice(8, 23))  # the planted change: class 1 -> 3


def _table() -> ClassTable:
    return ClassTable.from_labels([1, 2, 3])


def _write(path: Path, data: np.ndarray, *, transform: Affine = T, nodata: float | None = 0, dtype: str | None = None,
           crs: str = UTM) -> Path:
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=dtype or data.dtype.name, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data.astype(dtype or data.dtype))
    return path


def _maps(tmp: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    a = np.ones((H, W), np.uint8)
    a[:, 30:] = 2
    a[30:, :10] = 3
    a[0, 0] = 0  # nodata in year a
    b = a.copy()
    b[BLOCK] = 3
    b[-1, -1] = 0  # nodata in year b
    return _write(tmp / "a.tif", a), _write(tmp / "b.tif", b), a, b


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_transitions_find_the_planted_change(tmp_path: Path) -> None:
    pa, pb, a, b = _maps(tmp_path)
    codes = transition_codes([3, 1, 2])
    assert codes[(1, 1)] == 1 and codes[(1, 3)] == 3 and codes[(3, 3)] == 9 and len(codes) == 9
    result = write_transitions(pa, pb, tmp_path / "t.tif", class_table=_table(), nodata_a=0, nodata_b=0,
                               year_a=2020, year_b=2021, block_size=16)
    m = result.matrix
    valid = (a != 0) & (b != 0)
    planted = int((a[BLOCK] == 1).sum())  # the block lies in class 1 only
    assert planted == 12 * 15
    assert int(m.at[1, 3]) == planted
    assert int(m.to_numpy().sum()) == int(valid.sum())
    off = m.to_numpy().copy()
    np.fill_diagonal(off, 0)
    assert int(off.sum()) == planted  # nothing else changed
    with rasterio.open(result.path) as src:
        t = src.read(1)
        assert src.transform == T and src.nodata == 0 and src.dtypes[0] == "uint8"
        assert src.tags()["TRANSITION_3"] == "1 -> 3" or "->" in src.tags()["TRANSITION_3"]
        assert src.colormap(1)[0][3] == 0  # nodata transparent
        assert src.overviews(1)  # a COG with overviews
    assert (t[BLOCK] == codes[(1, 3)]).all()
    assert t[0, 0] == 0 and t[-1, -1] == 0
    assert (t[valid & (a == 2)] == codes[(2, 2)]).all()
    aux = (tmp_path / "t.tif.aux.xml").read_text()
    assert "<CategoryNames>" in aux and aux.count("<Category>") == 10  # 0 (nodata) and the 9 values
    # hectares: 10 m pixels are 0.01 ha
    assert result.pixel_area_m2 == 100.0
    rows = write_matrix(result, tmp_path / "t.csv", tmp_path / "t.png", class_table=_table())
    csv = pd.read_csv(tmp_path / "t.csv")
    change = csv[(csv.from_value == 1) & (csv.to_value == 3)].iloc[0]
    assert change.pixels == planted and change.hectares == pytest.approx(planted * 0.01) and change.value == 3
    assert bool(change.changed) and int(csv.pixels.sum()) == int(valid.sum()) and len(rows) == len(csv)
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_transitions_are_block_size_free_and_byte_identical(tmp_path: Path) -> None:
    pa, pb, _, _ = _maps(tmp_path)
    one = write_transitions(pa, pb, tmp_path / "one.tif", class_table=None, nodata_a=0, nodata_b=0, block_size=7)
    two = write_transitions(pa, pb, tmp_path / "two.tif", class_table=None, nodata_a=0, nodata_b=0, block_size=4096)
    assert one.matrix.equals(two.matrix)
    with rasterio.open(one.path) as x, rasterio.open(two.path) as y:
        assert np.array_equal(x.read(1), y.read(1))
    again = write_transitions(pa, pb, tmp_path / "again.tif", class_table=None, nodata_a=0, nodata_b=0,
                              block_size=7)
    assert _sha(again.path) == _sha(one.path)


def test_a_grid_mismatch_is_refused_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    pa, _, a, _ = _maps(tmp_path)
    shifted = _write(tmp_path / "shifted.tif", a, transform=T @ Affine.translation(1, 0))
    with pytest.raises(InputDataError) as err:
        write_transitions(pa, shifted, tmp_path / "t.tif", class_table=None, nodata_a=0, nodata_b=0)
    assert "not on one grid" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "t.tif").exists()


def _embeddings(rng: np.random.Generator, bands: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centres = rng.standard_normal((3, bands))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    classes = np.zeros((H, W), np.int64)
    classes[:, 30:] = 1
    a = centres[classes].transpose(2, 0, 1) + 0.02 * rng.standard_normal((bands, H, W))
    b = a + 0.02 * rng.standard_normal((bands, H, W))
    b[:, BLOCK[0], BLOCK[1]] = 0.1 * b[:, BLOCK[0], BLOCK[1]] + 0.9 * centres[2][:, None, None]
    a /= np.linalg.norm(a, axis=0)
    b /= np.linalg.norm(b, axis=0)
    return a.astype(np.float32), b.astype(np.float32), centres


def test_the_embedding_angle_is_high_exactly_where_the_embedding_changed(tmp_path: Path) -> None:
    a, b, _ = _embeddings(np.random.default_rng(0))
    a[:, 2, 3] = 0.0  # an all-zero vector: nodata
    pa = _write(tmp_path / "ea.tif", a, nodata=None)
    pb = _write(tmp_path / "eb.tif", b, nodata=None)
    res = write_embedding_change(pa, pb, tmp_path / "angle.tif", tmp_path / "changed.tif", threshold_deg=30,
                                 block_size=16)
    with rasterio.open(res.angle_path) as s1, rasterio.open(res.mask_path) as s2:
        angle, mask = s1.read(1), s2.read(1)
        assert float(s1.tags()["scale_degrees_per_unit"]) == pytest.approx(0.72)
    inside = np.zeros((H, W), bool)
    inside[BLOCK] = True
    assert angle[2, 3] == 255 and mask[2, 3] == 255
    valid = mask != 255
    assert (mask[inside] == 1).all() and (mask[~inside & valid] == 0).all()
    assert res.changed == int(inside.sum()) and res.valid == H * W - 1
    assert (angle[inside] * 0.72 >= 30).all() and (angle[~inside & valid] * 0.72 < 10).all()
    assert res.percentiles["p50"] < 10 < res.percentiles["p99"]
    # the stored angle is the exact one, rounded to 0.72-degree steps
    exact = angle_degrees(a[:, 10, 10][None], b[:, 10, 10][None])[0]
    assert abs(angle[10, 10] * 0.72 - exact) <= 0.36 + 1e-6
    assert _sha(write_embedding_change(pa, pb, tmp_path / "a2.tif", tmp_path / "c2.tif", threshold_deg=30,
                                       block_size=5).angle_path) == _sha(res.angle_path)


def test_int8_and_south_up_embeddings_give_the_north_up_result(tmp_path: Path) -> None:
    a, b, _ = _embeddings(np.random.default_rng(1))
    ref = write_embedding_change(_write(tmp_path / "a.tif", a, nodata=None), _write(tmp_path / "b.tif", b, nodata=None),
                                 tmp_path / "ref_angle.tif", tmp_path / "ref_mask.tif", threshold_deg=30)
    # south-up storage (row 0 is the south edge): the same pixels, mirrored
    south = Affine(10.0, 0.0, T.c, 0.0, 10.0, T.f - 10.0 * H)
    res = write_embedding_change(_write(tmp_path / "sa.tif", a[:, ::-1], transform=south, nodata=None),
                                 _write(tmp_path / "sb.tif", b[:, ::-1], transform=south, nodata=None),
                                 tmp_path / "s_angle.tif", tmp_path / "s_mask.tif", threshold_deg=30, block_size=8)
    with rasterio.open(ref.mask_path) as r, rasterio.open(res.mask_path) as s:
        assert s.transform == r.transform == T
        assert np.array_equal(r.read(1), s.read(1))
    # int8 AlphaEarth storage: sign(v) * sqrt(|v|) * 127.5, -128 as nodata
    def q(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(np.sign(x) * np.sqrt(np.abs(x)) * 127.5), -127, 127).astype(np.int8)

    qa, qb = q(a), q(b)
    qa[:, 0, 0] = -128
    res8 = write_embedding_change(_write(tmp_path / "qa.tif", qa, nodata=-128), _write(tmp_path / "qb.tif", qb,
                                  nodata=-128), tmp_path / "q_angle.tif", tmp_path / "q_mask.tif", threshold_deg=30)
    with rasterio.open(ref.mask_path) as r, rasterio.open(res8.mask_path) as s:
        m8, m = s.read(1), r.read(1)
    assert m8[0, 0] == 255
    m8[0, 0] = m[0, 0]
    assert np.array_equal(m8, m)


def test_agreement_tells_class_flips_without_embedding_change(tmp_path: Path) -> None:
    pa, pb, a, b = _maps(tmp_path)
    b2 = b.copy()
    b2[32:35, 32:36] = 1  # a class flip where the embedding did not change (12 px of class 2 -> 1)
    pb2 = _write(tmp_path / "b2.tif", b2)
    result = write_transitions(pa, pb2, tmp_path / "t.tif", class_table=None, nodata_a=0, nodata_b=0)
    mask = np.zeros((H, W), np.uint8)
    mask[BLOCK] = 1
    mask[0, 0] = 255
    cases, per = agreement_table(result, _write(tmp_path / "m.tif", mask, nodata=255), block_size=10)
    got = dict(zip(cases.case, cases.pixels, strict=True))
    assert got["class changed, embedding changed"] == 180
    assert got["class changed, no embedding change"] == 12
    assert got["likely_noise_share"] == 12 and cases.share.iloc[-1] == pytest.approx(12 / 192)
    assert got["class stable, embedding changed"] == 0
    row = per[(per.from_value == 1) & (per.to_value == 3)].iloc[0]
    assert row.pixels == 180 and row.share_with_embedding_change == 1.0
    assert per[(per.from_value == 2) & (per.to_value == 1)].iloc[0].share_with_embedding_change == 0.0


def test_the_temporal_filter_removes_a_one_year_flip_and_keeps_a_lasting_change(tmp_path: Path) -> None:
    base = np.ones((H, W), np.uint8)
    y1, y2, y3 = base.copy(), base.copy(), base.copy()
    y2[0:5, 0:5] = 2          # A-B-A: a one-year flip (25 px)
    y2[10:14, 10:14] = 3      # A-B-B: a lasting change (16 px)
    y3[10:14, 10:14] = 3
    y2[20, 20] = 2            # a flip next to nodata in year 3: kept
    y3[20, 20] = 0
    maps = [_write(tmp_path / f"y{i}.tif", y) for i, y in enumerate((y1, y2, y3))]
    outs = [tmp_path / f"f{i}.tif" for i in range(3)]
    info = temporal_majority(maps, outs, nodata=0, years=[2020, 2021, 2022], block_size=8)
    assert info["changed_per_year"] == {"2020": 0, "2021": 25, "2022": 0}
    assert info["changed_by_pair"] == {"2->1": 25}
    with rasterio.open(outs[1]) as src:
        f2 = src.read(1)
    assert (f2[0:5, 0:5] == 1).all() and (f2[10:14, 10:14] == 3).all() and f2[20, 20] == 2
    for m, o in ((maps[0], outs[0]), (maps[2], outs[2])):
        with rasterio.open(m) as x, rasterio.open(o) as y:
            assert np.array_equal(x.read(1), y.read(1))
    with pytest.raises(InputDataError, match="three or more years"):
        temporal_majority(maps[:2], outs[:2], nodata=0)


def test_a_labelled_change_sample_gives_change_areas_with_confidence_intervals(tmp_path: Path) -> None:
    """Item 4 of the issue: the transition map as strata -> validation sample -> assess (Olofsson)."""
    from lcmodel.accuracy import assess_labelled, design_sample, draw_validation_sample, write_sample

    pa, pb, _, _ = _maps(tmp_path)
    result = write_transitions(pa, pb, tmp_path / "t.tif", class_table=None, nodata_a=0, nodata_b=0)
    design = design_sample(result.path, n=120, target_se=0.01, expected_users=0.8, min_per_class=10, exclude=())
    table, crs = draw_validation_sample(result.path, design, random_state=0)
    with rasterio.open(result.path) as src:
        rows, cols = rasterio.transform.rowcol(src.transform, table["x"].to_numpy(), table["y"].to_numpy())
        truth = src.read(1)[np.asarray(rows), np.asarray(cols)].astype(int)
    stable, changed = result.codes[(1, 1)], result.codes[(1, 3)]
    missed = np.flatnonzero(truth == stable)[:3]
    truth[missed] = changed  # three stable-mapped points are a change on the ground: the map missed them
    table["reference"] = truth
    path = write_sample(table, crs, tmp_path / "labelled.csv")
    assessed = assess_labelled(result.path, path, reference_column="reference")
    change = assessed["per_class"][str(changed)]
    mapped_ha = 180 * 0.01
    assert change["users_accuracy"] == pytest.approx(1.0) and change["producers_accuracy"] < 1.0
    assert change["area_ha"] > mapped_ha and change["area_ha_ci95"] > 0.0  # more change than mapped, with its CI
