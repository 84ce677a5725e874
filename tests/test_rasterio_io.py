"""The shared raster readers: one dataset per thread, the ordered bounded map, the one-pass cache."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from lcmodel.errors import InputFileError
from lcmodel.rasterio_io import ThreadReaders, map_ordered, one_pass_cache, submit_in_order
from tests.rasters import xy_encoded_embedding


@pytest.fixture()
def raster(tmp_path: Path) -> Path:
    return xy_encoded_embedding(tmp_path / "xy.tif", height=40, width=50, bands=3)


def test_reads_all_bands_or_one_and_opens_one_dataset_per_thread(raster: Path) -> None:
    window = Window(3, 2, 4, 5)
    with ThreadReaders(raster) as readers:
        block = readers.read(window)
        assert block.shape == (3, 5, 4)
        assert block[1, 0, 0] == pytest.approx(2 * 1000 + 3 + 0.1)
        band = readers.read(window, 1)
        assert band.shape == (5, 4)
        np.testing.assert_array_equal(band, block[0])
        assert readers.dataset() is readers.dataset()  # the same dataset within a thread
        mine = readers.dataset()
        seen: dict[int, rasterio.io.DatasetReader] = {}
        lock = threading.Lock()

        def read(_: int) -> None:
            readers.read(window)
            with lock:
                seen[id(readers.dataset())] = readers.dataset()

        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(read, range(12)))
        assert 1 <= len(seen) <= 3 and id(mine) not in seen  # one per pool thread, none shared
    assert mine.closed and all(ds.closed for ds in seen.values())


def test_read_errors_propagate_or_become_the_callers_error(tmp_path: Path, raster: Path) -> None:
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raster.read_bytes()[: raster.stat().st_size // 2])
    last = Window(0, 32, 50, 8)
    with ThreadReaders(cut) as readers, pytest.raises(RasterioIOError):
        readers.read(last)

    def named(window: Window, exc: RasterioIOError) -> InputFileError:
        return InputFileError(f"cannot read rows {window.row_off}..")

    with ThreadReaders(cut, on_error=named) as readers, pytest.raises(InputFileError, match="cannot read rows 32"):
        readers.read(last)


def test_map_ordered_keeps_order_and_bounds_the_work_in_flight() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def slow_square(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002 * (x % 3))
        with lock:
            running -= 1
        return x * x

    items = list(range(40))
    assert list(map_ordered(slow_square, items, 3)) == [x * x for x in items]
    assert peak <= 3
    assert list(map_ordered(slow_square, items, 1)) == [x * x for x in items]


def test_submit_in_order_never_has_more_than_max_pending() -> None:
    submitted: list[int] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        def submit(x: int) -> Future[int]:
            submitted.append(x)
            return pool.submit(lambda: x)

        for item, future in submit_in_order(submit, range(10), 3):
            assert future.result() == item
            assert len(submitted) - item <= 3  # taken results + at most 3 pending


def test_map_ordered_reraises_and_cancels_the_rest() -> None:
    started: list[int] = []

    def fail_at_2(x: int) -> int:
        started.append(x)
        if x == 2:
            raise ValueError("boom")
        time.sleep(0.01)
        return x

    with pytest.raises(ValueError, match="boom"):
        list(map_ordered(fail_at_2, list(range(100)), 2, ahead=2))
    assert len(started) < 100  # the items not started were cancelled


def test_one_pass_cache_sets_a_small_gdal_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    with one_pass_cache() as env:
        assert env.options.get("GDAL_CACHEMAX") == 64
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    with one_pass_cache() as env:
        assert "GDAL_CACHEMAX" not in env.options  # the user's setting is left to GDAL
