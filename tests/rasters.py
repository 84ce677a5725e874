"""Tiny raster makers for tests (seeded, deterministic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

UTM20S = CRS.from_epsg(32720)


def origin_transform(west: float, north: float, xres: float, yres: float | None = None) -> Affine:
    """North-up transform from the top-left corner (like rasterio's from_origin, without its warning)."""
    return Affine.translation(west, north) @ Affine.scale(xres, -(yres if yres is not None else xres))


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: Any = UTM20S,
    transform: Any = None,
    nodata: float | None = None,
    blocksize: int | None = 16,
    descriptions: list[str] | None = None,
    **extra: Any,
) -> Path:
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF; tiled when blocksize is set."""
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    if transform is None:
        transform = origin_transform(500000.0, 8000000.0, 10.0)
    profile: dict[str, Any] = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
        crs=crs, transform=transform, nodata=nodata,
    )
    if blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
    return path


def xy_encoded_embedding(path: Path, height: int = 40, width: int = 50, bands: int = 4, **kw: Any) -> Path:
    """A float32 raster whose pixel (r, c) holds band b = r * 1000 + c + b / 10 (values encode position)."""
    r, c = np.mgrid[0:height, 0:width]
    data = np.stack([(r * 1000 + c + b / 10).astype(np.float32) for b in range(bands)])
    return write_raster(path, data, **kw)


def tiny_demo_config(folder: Path, stages: list[dict[str, Any]] | None = None, **sections: Any) -> Path:
    """The demo case at 96 x 96 px with a fast grid (seconds end to end), written into ``folder``.

    ``stages`` replaces the tuning stages (default: the demo's, with n_estimators [10, 20]); each keyword
    replaces a whole config section (e.g. ``tracking={...}``).
    """
    import yaml

    from lcmodel.demo import make_demo_data

    cfg_path = make_demo_data(folder, size=96, n_points=700)
    data = yaml.safe_load(cfg_path.read_text())
    data["sampling"]["n_sample"] = 500
    if stages is None:
        data["tuning"]["stages"][1]["n_estimators"] = [10, 20]
    else:
        data["tuning"]["stages"] = stages
    data.update(sections)
    cfg_path.write_text(yaml.safe_dump(data))
    return cfg_path


#: 1-based bands of :func:`hyperspectral_demo_config`'s raster that are nodata in every pixel
HYPERSPECTRAL_DEAD = (20, 66)


def hyperspectral_demo_config(folder: Path) -> tuple[Path, Path]:
    """The tiny demo (:func:`tiny_demo_config`) with its embedding as int16 x 10000 (nodata -32768, all-zero
    vectors as -32768) plus bands :data:`HYPERSPECTRAL_DEAD` at -32768 in every pixel: the config and the raster."""
    import yaml

    cfg_path = tiny_demo_config(folder)
    data = yaml.safe_load(cfg_path.read_text())
    source = cfg_path.parent / data["embedding"]["path"]
    with rasterio.open(source) as src:
        emb = src.read()
        profile = src.profile
    nodata = ~emb.any(axis=0)
    values = np.round(emb * 10000).astype(np.int16)
    values[:, nodata] = -32768
    bands = list(values)
    for d in HYPERSPECTRAL_DEAD:
        bands.insert(d - 1, np.full(values.shape[1:], -32768, np.int16))
    out = np.stack(bands)
    profile.update(dtype="int16", nodata=-32768, count=out.shape[0])
    path = cfg_path.parent / "hyperspectral.tif"
    with rasterio.open(path, "w", **profile) as dst:  # no band descriptions: band_1..band_66
        dst.write(out)
    data["embedding"]["path"] = path.name
    cfg_path.write_text(yaml.safe_dump(data))
    return cfg_path, path


def sample_label_assess(folder: Path, data: np.ndarray, label: Any) -> Any:
    """``data`` as a class map (nodata 0, 16 px blocks), a 60-point `validation-sample` of it (at least 8 per
    class), labelled by ``label`` (a function of the sample's DataFrame returning the labelled one), then
    `assess` with ``--out folder/a.json``: the `assess` CLI result."""
    import pandas as pd
    from click.testing import CliRunner

    from lcmodel.cli import cli

    class_map = write_raster(folder / "map.tif", data, nodata=0, blocksize=16)
    points = folder / "pts.csv"
    r = CliRunner().invoke(cli, ["validation-sample", str(class_map), "--n", "60", "--min-per-class", "8",
                                 "--out", str(points)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    label(pd.read_csv(points)).to_csv(points, index=False)
    return CliRunner().invoke(cli, ["assess", str(class_map), str(points), "--out", str(folder / "a.json")],
                              catch_exceptions=False)


def tiny_years_config(folder: Path, years: tuple[int, ...] = (2021, 2022, 2023), *, listed: tuple[int, ...] | None
                      = None, **sections: Any) -> Path:
    """The multi-year demo (:mod:`lcmodel.demo_years`) at 96 x 96 px with the tiny demo's fast grid: embeddings
    for ``years`` on disk, ``listed`` (default: all) in ``embedding.years``; each keyword replaces a section."""
    import yaml

    from lcmodel.demo_years import make_demo_years

    cfg_path = make_demo_years(folder, years=years, size=96, n_points=700)
    data = yaml.safe_load(cfg_path.read_text())
    data["sampling"]["n_sample"] = 500
    data["tuning"]["stages"][1]["n_estimators"] = [10, 20]
    if listed is not None:
        data["embedding"]["years"] = list(listed)
    data.update(sections)
    cfg_path.write_text(yaml.safe_dump(data))
    return cfg_path
