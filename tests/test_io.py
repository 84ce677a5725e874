import os
import stat

import numpy as np
import pytest

from lcmodel.errors import InputFileError, OutputError
from lcmodel.io import atomic_path, ensure_output_dir, open_raster, sha256_file
from tests.rasters import write_raster


def test_atomic_path_renames_only_on_success(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert dest.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new"
    mode = stat.S_IMODE(os.stat(dest).st_mode)
    assert mode & stat.S_IRGRP  # not the 0600 of mkstemp


def test_open_raster_errors(tmp_path):
    with pytest.raises(InputFileError, match=r"embedding raster '.*nope.tif' does not exist"):
        open_raster(tmp_path / "nope.tif", "embedding raster")
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    with pytest.raises(InputFileError, match=r"is not a readable raster"):
        open_raster(bad)
    good = write_raster(tmp_path / "g.tif", np.ones((1, 4, 4), np.uint8))
    with open_raster(good) as src:
        assert src.count == 1
    assert len(sha256_file(good)) == 64


def test_output_dir_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match=r"cannot be created"):
        ensure_output_dir(f / "sub")
