"""Any orientation (issue 13, item 1): south-up and ModelTransformation-georeferenced embeddings sample, extract,
predict and assess exactly as their north-up copies; maps are written north-up."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from sklearn.ensemble import RandomForestClassifier

from lcmodel.classes import ClassTable
from lcmodel.embedding import NodataRule, band_names
from lcmodel.errors import InputDataError
from lcmodel.extract import extract_values
from lcmodel.geo import grid_orientation, normalised_bounds, north_up_transform
from lcmodel.model_io import ModelBundle, current_versions, utc_now
from lcmodel.predict import predict_blocks, predict_raster, prepare_prediction
from lcmodel.predict.job import PredictionOptions
from tests.aef_fixtures import (
    AEF_NODATA,
    MODEL_TRANSFORMATION_TAG,
    aef_band_names,
    dequantize_aef,
    gee_piece_name,
    north_up_copy,
    quantize_aef,
    tiff_tags,
    write_aef_tile,
    write_gee_pieces,
)
from tests.rasters import write_raster

LEFT, TOP, RES = 822400.0, 9668000.0, 10.0
H, W, B = 50, 70, 8  # 50 rows: not a multiple of the 16 px blocks, so mirrored windows straddle tiles
PIXEL_SCALE, TIE_POINT = 33550, 33922


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A south-up AEF tile (nodata pixels included) and its north-up copy."""
    root = tmp_path_factory.mktemp("orient")
    south = write_aef_tile(root / "south.tif", left=LEFT, top=TOP, width=W, height=H, bands=B, block=16,
                           seed=5, nodata_fraction=0.05)
    return south, north_up_copy(south, root / "north.tif")


# --- the fixtures ---------------------------------------------------------------------------------------


def test_aef_tile_has_the_public_layout(pair: tuple[Path, Path]) -> None:
    south, north = pair
    with rasterio.open(south) as src:
        assert src.dtypes == ("int8",) * B and src.nodatavals == (AEF_NODATA,) * B
        assert list(src.descriptions) == aef_band_names(B)
        assert src.tags(ns="IMAGE_STRUCTURE") == {"COMPRESSION": "ZSTD", "INTERLEAVE": "BAND"}
        assert src.profile["tiled"] and src.block_shapes[0] == (16, 16)
        assert src.overviews(1) and src.overviews(1)[-1] >= max(H, W)  # down to 1 x 1
        assert src.transform == Affine(RES, 0, LEFT, 0, RES, TOP - RES * H)  # positive e: south-up
        assert src.bounds.bottom > src.bounds.top  # what rasterio reports, and what broke the overlap check
        data = src.read()
    assert MODEL_TRANSFORMATION_TAG in tiff_tags(south) and not {PIXEL_SCALE, TIE_POINT} & tiff_tags(south)
    assert (data == AEF_NODATA).all(axis=0).any() and ((data == AEF_NODATA).any(axis=0)
                                                       == (data == AEF_NODATA).all(axis=0)).all()
    with rasterio.open(north) as dst:
        assert dst.transform == Affine(RES, 0, LEFT, 0, -RES, TOP)
        np.testing.assert_array_equal(dst.read(), data[:, ::-1, :])
        assert list(dst.descriptions) == aef_band_names(B) and dst.nodata == AEF_NODATA
    assert {PIXEL_SCALE, TIE_POINT} <= tiff_tags(north) and MODEL_TRANSFORMATION_TAG not in tiff_tags(north)


def test_tile_values_depend_on_place_only(tmp_path: Path) -> None:
    a = write_aef_tile(tmp_path / "a.tif", left=LEFT, top=TOP, width=32, height=32, bands=4, block=16)
    b = write_aef_tile(tmp_path / "b.tif", bounds=(LEFT + 160, TOP - 480, LEFT + 480, TOP - 160), bands=4,
                       block=16, south_up=False)
    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        va = sa.read()[:, ::-1, :]  # north-up
        vb = sb.read()
        assert sb.width == sb.height == 32
    np.testing.assert_array_equal(va[:, 16:, 16:], vb[:, :16, :16])  # the overlap holds the same vectors


def test_quantization_round_trips() -> None:
    f = np.linspace(-1, 1, 401)
    q = quantize_aef(f)
    assert q.dtype == np.int8 and q.min() == -127 and q.max() == 127
    assert np.abs(dequantize_aef(q) - f).max() < 0.01
    rule = NodataRule("int8", AEF_NODATA, False, "aef_int8")
    np.testing.assert_allclose(rule.to_features(q[:, None])[:, 0], dequantize_aef(q), rtol=0, atol=1e-7)
    assert np.isnan(dequantize_aef(np.array([AEF_NODATA], dtype=np.int8)))[0]


def test_gee_pieces_are_named_by_offsets_and_reassemble(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(3, 40, 70)).astype(np.float32)
    mask = np.zeros((40, 70), dtype=bool)
    mask[5, 6] = True
    t = Affine(RES, 0, LEFT, 0, -RES, TOP)
    paths = write_gee_pieces(tmp_path / "gee", "emb", data, t, piece=(32, 48), nodata_mask=mask)
    assert [p.name for p in paths] == [gee_piece_name("emb", r, c) for r in (0, 32) for c in (0, 48)]
    assert paths[1].name == "emb-0000000000-0000000048.tif"
    merged = np.zeros_like(data)
    for p in paths:
        with rasterio.open(p) as src:
            assert src.dtypes[0] == "float32" and src.nodata is None and list(src.descriptions)[0] == "A00"
            c, r = ~t @ (src.transform.c, src.transform.f)
            merged[:, round(r) : round(r) + src.height, round(c) : round(c) + src.width] = src.read()
    expected = data.copy()
    expected[:, 5, 6] = 0.0
    np.testing.assert_array_equal(merged, expected)


# --- geometry -------------------------------------------------------------------------------------------


def test_bounds_and_north_up_transform_of_every_orientation() -> None:
    north = Affine(RES, 0, LEFT, 0, -RES, TOP)
    south = Affine(RES, 0, LEFT, 0, RES, TOP - RES * H)
    east_west = Affine(-RES, 0, LEFT + RES * W, 0, -RES, TOP)
    both = Affine(-RES, 0, LEFT + RES * W, 0, RES, TOP - RES * H)
    for t in (north, south, east_west, both):
        assert tuple(normalised_bounds(t, W, H)) == (LEFT, TOP - RES * H, LEFT + RES * W, TOP)
        assert north_up_transform(t, W, H) == north
    o = grid_orientation(both, W, H)
    assert o.flip_rows and o.flip_cols and not o.identity and grid_orientation(north, W, H).identity
    rotated = Affine.translation(LEFT, TOP) @ Affine.rotation(30.0) @ Affine.scale(RES, -RES)
    xs, ys = zip(*(rotated @ (c, r) for c in (0, W) for r in (0, H)), strict=True)
    assert tuple(normalised_bounds(rotated, W, H)) == (min(xs), min(ys), max(xs), max(ys))
    with pytest.raises(InputDataError, match=r"^embedding 'r.tif' has a rotated or sheared grid .*gdalwarp"):
        grid_orientation(rotated, W, H, name="embedding 'r.tif'")


def test_orientation_mirrors_indices_windows_and_arrays() -> None:
    o = grid_orientation(Affine(-RES, 0, LEFT + RES * W, 0, RES, TOP - RES * H), W, H)
    row, col = o.index(np.array([0, H - 1, -1]), np.array([0, 3, -1]))
    assert row.tolist() == [H - 1, 0, -1] and col.tolist() == [W - 1, W - 4, -1]
    w = rasterio.windows.Window(16, 32, 16, 18)
    assert o.window(w) == rasterio.windows.Window(W - 32, 0, 16, 18) and o.window(o.window(w)) == w
    block = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(o.array(block), block[:, ::-1, ::-1])
    assert o.array(block).flags.c_contiguous and o.array(np.int64(7)) == 7


# --- extraction and the training table ------------------------------------------------------------------


def _points(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.uniform(LEFT - 50, LEFT + RES * W + 50, n)
    y = rng.uniform(TOP - RES * H - 50, TOP + 50, n)
    # pixel edges and corners, the raster's own edges included
    ex = np.array([LEFT, LEFT, LEFT + RES * W, LEFT + 5, LEFT + 160, LEFT + RES * W - 1e-6])
    ey = np.array([TOP, TOP - RES * H, TOP - 5, TOP - 160, TOP - 160, TOP - RES * H + 1e-6])
    return np.r_[x, ex], np.r_[y, ey]


def test_south_up_extracts_what_its_north_up_copy_does(pair: tuple[Path, Path]) -> None:
    south, north = pair
    x, y = _points()
    a, b = extract_values(south, x, y), extract_values(north, x, y)
    for name in ("values", "valid", "inside", "row", "col"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.transform == b.transform == Affine(RES, 0, LEFT, 0, -RES, TOP)
    assert a.inside[-6:].tolist() == [True, False, False, True, True, True]  # north/west edges in, south/east out
    assert (~a.inside).sum() > 0 and (a.inside & ~a.valid).sum() > 0
    with rasterio.open(south) as src:  # what GDAL itself reads at those points (away from pixel edges)
        inner = a.valid & ~np.isin(np.arange(x.size), np.arange(x.size - 6, x.size))
        raw = np.array(list(src.sample(zip(x[inner], y[inner], strict=True))))
    np.testing.assert_array_equal(a.values[inner], NodataRule.detect(rasterio.open(south)).to_features(raw))


def test_east_to_west_columns_extract_like_the_copy(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    _, north = pair
    with rasterio.open(north) as src:
        data, profile = src.read(), src.profile
    profile.update(transform=Affine(-RES, 0, LEFT + RES * W, 0, -RES, TOP))
    with rasterio.open(tmp_path / "ew.tif", "w", **profile) as dst:
        dst.write(np.ascontiguousarray(data[:, :, ::-1]))
    x, y = _points()
    a, b = extract_values(tmp_path / "ew.tif", x, y), extract_values(north, x, y)
    for name in ("values", "valid", "inside", "row", "col"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_rotated_embedding_is_refused_in_one_line(tmp_path: Path) -> None:
    t = Affine(RES, 2.0, LEFT, 1.5, -RES, TOP)
    path = write_raster(tmp_path / "rot.tif", np.ones((2, 16, 16), dtype=np.float32), transform=t)
    with pytest.raises(InputDataError, match=r"^embedding raster '.*rot.tif' has a rotated or sheared grid"):
        extract_values(path, [LEFT + 5], [TOP - 5])


# --- prediction -----------------------------------------------------------------------------------------


def _bundle(embedding: Path, classes: int = 3) -> ModelBundle:
    rng = np.random.default_rng(0)
    X = dequantize_aef(quantize_aef(rng.uniform(-0.3, 0.3, size=(400, B))))
    y = np.digitize(X[:, 0] + X[:, 1], np.quantile(X[:, 0] + X[:, 1], np.linspace(0, 1, classes + 1)[1:-1])) + 1
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    with rasterio.open(embedding) as src:
        return ModelBundle(
            estimator=est, band_names=band_names(src), crs_wkt=src.crs.to_wkt(), nodata_rule=NodataRule.detect(src),
            class_table=ClassTable({v: v for v in est.classes_.tolist()}), config={}, training_table_sha256=None,
            versions=current_versions(), created=utc_now(),
        )


def _outputs(folder: Path) -> dict[str, Path]:
    return {name: folder / f"{name}.tif" for name in ("map", "confidence", "probabilities", "margin", "entropy")}


def _predict(bundle: ModelBundle, embedding: Path, folder: Path, **kw: object) -> dict[str, Path]:
    out = _outputs(folder)
    folder.mkdir()
    predict_raster(bundle, embedding, out["map"], confidence_path=out["confidence"],
                   probabilities_path=out["probabilities"], margin_path=out["margin"], entropy_path=out["entropy"],
                   block_size=16, **kw)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_south_up_maps_are_north_up_and_byte_identical_to_the_copys(
    pair: tuple[Path, Path], tmp_path: Path, n_jobs: int
) -> None:
    south, north = pair
    bundle = _bundle(north)
    a = _predict(bundle, south, tmp_path / "a", n_jobs=n_jobs)
    b = _predict(bundle, north, tmp_path / "b")
    for name in a:
        assert _sha(a[name]) == _sha(b[name]), name  # every layer, pixel data, tags, overviews: the same bytes
    with rasterio.open(a["map"]) as m, rasterio.open(south) as src:
        assert m.transform == Affine(RES, 0, LEFT, 0, -RES, TOP) and m.transform.e < 0
        assert (m.width, m.height) == (W, H) and m.overviews(1)
        labels = m.read(1)
        mask, feats = NodataRule.detect(src).block_features(src.read())
    expected = np.zeros((H, W), dtype=labels.dtype)
    expected[mask] = bundle.estimator.predict(feats)
    np.testing.assert_array_equal(labels, expected[::-1])  # pixel for pixel the source grid, rows mirrored
    assert MODEL_TRANSFORMATION_TAG not in tiff_tags(a["map"])


def test_a_resumed_south_up_prediction_gives_the_same_bytes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    south, _ = pair
    bundle = _bundle(south)
    whole = _predict(bundle, south, tmp_path / "whole")
    out = _outputs(tmp_path / "resumed")
    (tmp_path / "resumed").mkdir()
    options = PredictionOptions(confidence_path=out["confidence"], probabilities_path=out["probabilities"],
                                margin_path=out["margin"], entropy_path=out["entropy"], block_size=16)
    plan = prepare_prediction(bundle, south, out["map"], options)
    predict_blocks(bundle, south, out["map"], plan.groups(3)[1], options)  # a part finished before a "crash"
    summary = predict_raster(bundle, south, out["map"], confidence_path=out["confidence"],
                             probabilities_path=out["probabilities"], margin_path=out["margin"],
                             entropy_path=out["entropy"], block_size=16)
    assert summary.n_resumed == 3
    for name in out:
        assert _sha(out[name]) == _sha(whole[name]), name


def test_rotated_embedding_is_refused_before_any_prediction_output(pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, north = pair
    with rasterio.open(north) as src:
        data, profile = src.read(), src.profile
    profile.update(transform=Affine(RES, 0.5, LEFT, 0.25, -RES, TOP))
    with rasterio.open(tmp_path / "rot.tif", "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(InputDataError, match=r"rot.tif' has a rotated or sheared grid"):
        predict_raster(_bundle(north), tmp_path / "rot.tif", tmp_path / "map.tif")
    assert not (tmp_path / "map.tif").exists() and not list(tmp_path.glob(".map.tif.partial"))
