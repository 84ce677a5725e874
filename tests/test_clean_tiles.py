"""Clean maps of a tile collection without a mosaic (issue 16, item 4 on the collections' outputs): with
``prediction.mosaic: none`` each tile's map is cleaned on its own grid into ``tiles/<stem>/map_clean.tif``,
and the area of applicability stays per tile with no mosaic of it.

The fixture is tests/test_tiles.py's four tiles across the 6 E UTM zone border, run through ``lcmodel run``
(the Prefect flow) with ``postprocess.mmu_pixels: 4`` and ``postprocess.majority: 3``, then again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from tests.test_tiles import TILES, run_collection_twice

STEMS = [t[0] for t in TILES]


def _read(path: Path) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    return run_collection_twice(tmp_path_factory.mktemp("clean_tiles"), "postprocess",
                                {"postprocess": {"mmu_pixels": 4, "majority": 3}}, mosaic="none")


def test_each_tile_s_clean_map_is_that_tile_cleaned_alone(clean_run: dict[str, Any], tmp_path: Path) -> None:
    from lcmodel.postprocess import CleanOptions, clean_map

    out = clean_run["out"]
    assert not (out / "map_clean.tif").exists()  # no mosaic: nothing to clean at the root
    options = CleanOptions(4, 4, 3)
    total = _read(out / "postprocess.json")
    assert total["n_tiles"] == 4 and "per tile" in total["counting"]
    changed = n_valid = 0
    for stem, t in zip(STEMS, total["tiles"], strict=True):
        folder = out / "tiles" / stem
        alone = clean_map(folder / "map.tif", tmp_path / f"{stem}.tif", options)
        with rasterio.open(folder / "map_clean.tif") as c, rasterio.open(tmp_path / f"{stem}.tif") as a, \
                rasterio.open(folder / "map.tif") as m:
            assert (c.crs, c.transform, c.shape, c.nodata) == (m.crs, m.transform, m.shape, m.nodata)
            assert c.colormap(1) == m.colormap(1)
            clean, raw = c.read(1), m.read(1)
            np.testing.assert_array_equal(clean, a.read(1))
        assert alone.changed > 0 and int((clean != raw).sum()) == alone.changed
        own = _read(folder / "postprocess.json")
        assert (t["tile"], t["changed"], own["changed"], t["map"]) == \
            (stem, alone.changed, alone.changed, f"tiles/{stem}/map_clean.tif")
        changed, n_valid = changed + alone.changed, n_valid + alone.n_valid
    assert (total["changed"], total["n_valid"]) == (changed, n_valid)
    report = (out / "report.md").read_text()
    assert "## Clean map (postprocess)" in report and "| tile | clean map | pixels changed |" in report


def test_the_aoa_stays_per_tile_and_a_rerun_reuses_both_stages(clean_run: dict[str, Any]) -> None:
    out = clean_run["out"]
    summary = _read(out / "aoa.json")
    assert summary["computed"] and summary["mosaics"] == {} and "per-tile rasters are the product" in \
        summary["mosaic_note"]
    assert all((out / "tiles" / s / "aoa.tif").is_file() for s in STEMS) and not list(out.glob("aoa_*.vrt"))
    again = clean_run["again"]
    assert again.exit_code == 0, again.output
    assert "nothing changed since the last run" in again.output
    assert (out / ".lcmodel" / "stages" / "postprocess.json").stat().st_mtime_ns == clean_run["record_mtime"]
    record = _read(out / ".lcmodel" / "stages" / "postprocess.json")
    files = {a["path"] for key in ("tile_maps", "tile_summaries") for a in record["artifacts"][key]}
    assert {f"tiles/{s}/{n}" for s in STEMS for n in ("map_clean.tif", "postprocess.json")} == files
