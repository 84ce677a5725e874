"""Remote files: https://, /vsicurl/, s3:// and /vsizip/ paths read through GDAL against local servers.

The servers (tests/remote_servers.py) run on 127.0.0.1: a range-capable HTTP/1.1 server that counts requests
per path, and moto's S3 API. The embedding is a small tiled COG in the AlphaEarth encoding (int8, -128 nodata,
64 bands A00..A63); extraction and prediction over a URL must give exactly what they give on the local file,
fetch each touched internal tile once, never list a folder, and survive a server that fails a few times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.shutil import copy as copy_raster

from lcmodel.errors import InputFileError
from lcmodel.extract import extract_values
from lcmodel.io import open_raster
from lcmodel.predict import predict_raster
from lcmodel.rasterio_io import ThreadReaders
from lcmodel.reference import sample_raster_points
from lcmodel.sources import (
    REMOTE_GDAL_DEFAULTS,
    REMOTE_READ_THREADS,
    configure_remote_gdal,
    file_name,
    gdal_path,
    identity_digest,
    is_remote,
    open_options,
    redact,
    remote_identity,
    split_archive,
)
from tests.rasters import write_raster
from tests.remote_servers import RangeServer, S3Server  # fixtures range_server, s3_server: tests/conftest.py
from tests.servers import free_port, subprocess_env
from tests.test_predict import _bundle, _fit

pytestmark = pytest.mark.integration

BANDS, SIZE, TILE = 64, 256, 64  # 16 internal tiles of 64 x 64 x 64 bytes (~256 KiB each, incompressible)
NODATA_PIXEL = (10, 20)


@pytest.fixture(scope="module", autouse=True)
def restore_environment() -> Iterator[None]:
    """configure_remote_gdal writes os.environ: give the next test module the environment it had."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own settings win over lcmodel's defaults: here, short retry delays."""
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")


def _write_cog(folder: Path, name: str, *, separate: bool = False) -> Path:
    """The test COG: seeded int8 values in -127..127, one all-bands -128 (nodata) pixel."""
    rng = np.random.default_rng(13)
    data = rng.integers(-127, 128, size=(BANDS, SIZE, SIZE), dtype=np.int8)
    data[:, NODATA_PIXEL[0], NODATA_PIXEL[1]] = -128
    plain = write_raster(folder / f".{name}.plain.tif", data, nodata=-128, blocksize=TILE,
                         descriptions=[f"A{b:02d}" for b in range(BANDS)])
    if separate:  # the public AlphaEarth tiles' layout: bands in separate planes, header first
        copy_raster(plain, folder / name, driver="GTiff", TILED="YES", BLOCKXSIZE=TILE, BLOCKYSIZE=TILE,
                    INTERLEAVE="BAND", COMPRESS="ZSTD", COPY_SRC_OVERVIEWS="YES")
    else:
        copy_raster(plain, folder / name, driver="COG", BLOCKSIZE=TILE, COMPRESS="ZSTD", OVERVIEWS="NONE")
    plain.unlink()
    return folder / name


@pytest.fixture(scope="module")
def cog(remote_folder: Path) -> Path:
    return _write_cog(remote_folder, "emb.tif")


@pytest.fixture(scope="module")
def points(cog: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y of 40 points in 5 of the 16 tiles (the nodata pixel among them, one point outside), rows, cols."""
    rng = np.random.default_rng(5)
    tiles = [(0, 0), (0, 3), (1, 2), (2, 1), (3, 3)]
    rows = np.concatenate([rng.integers(r * TILE, (r + 1) * TILE, 8) for r, _ in tiles])
    cols = np.concatenate([rng.integers(c * TILE, (c + 1) * TILE, 8) for _, c in tiles])
    rows[0], cols[0] = NODATA_PIXEL
    with rasterio.open(cog) as src:
        t = src.transform
    xs, ys = t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e
    xs = np.append(xs, t.c - 100.0)  # outside
    ys = np.append(ys, t.f)
    return xs, ys, rows, cols


def _tile_spans(path: Path, touched: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """[first, last] byte offsets of the touched internal blocks (every band's block when separate)."""
    with rasterio.open(path) as src:
        bands = range(1, src.count + 1) if src.interleaving.name == "band" else [1]
        spans = []
        for b in bands:
            for r, c in sorted(touched):
                off = int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=b))
                size = int(src.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=b))
                spans.append((off, off + size - 1))
    return spans


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _assert_one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --- specs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "remote", "gdal"),
    [
        ("https://h/a/b.tif", True, "/vsicurl/https://h/a/b.tif"),
        ("http://h:8080/b.tif?x=1", True, "/vsicurl/http://h:8080/b.tif?x=1"),
        ("s3://bucket/k/b.tif", True, "/vsis3/bucket/k/b.tif"),
        ("gs://bucket/b.tif", True, "/vsigs/bucket/b.tif"),
        ("az://container/b.tif", True, "/vsiaz/container/b.tif"),
        ("/vsicurl/https://h/b.tif", True, "/vsicurl/https://h/b.tif"),
        ("/vsis3/bucket/b.tif", True, "/vsis3/bucket/b.tif"),
        ("/vsizip/{/vsicurl/https://h/a.zip}/b.tif", True, "/vsizip/{/vsicurl/https://h/a.zip}/b.tif"),
        ("/vsizip//vsis3/bucket/a.zip/b.tif", True, "/vsizip//vsis3/bucket/a.zip/b.tif"),
        ("/vsizip/local/a.zip/b.tif", False, "/vsizip/local/a.zip/b.tif"),
        ("/vsimem/b.tif", False, "/vsimem/b.tif"),
        ("data/b.tif", False, "data/b.tif"),
        (Path("https://h/a/b.tif"), True, "/vsicurl/https://h/a/b.tif"),  # pathlib collapsed the //
    ],
)
def test_remote_specs_map_to_gdal_paths(spec: str | Path, remote: bool, gdal: str) -> None:
    assert is_remote(spec) is remote
    assert gdal_path(spec) == gdal


def test_archives_credentials_and_names_in_specs() -> None:
    assert split_archive("/vsizip/{/vsicurl/https://h/a.zip}/x/b.tif") == ("/vsicurl/https://h/a.zip", "x/b.tif")
    assert split_archive("/vsizip//vsis3/bucket/a.zip/b.tif") == ("/vsis3/bucket/a.zip", "b.tif")
    shown = redact("https://user:pw@h/b.tif?X-Amz-Credential=AKIA1&X-Amz-Signature=s3cr3t&version=2")
    assert shown == "https://h/b.tif?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&version=2"
    assert redact("/vsicurl/https://h/b.tif?sig=abc&sv=1") == "/vsicurl/https://h/b.tif?sig=REDACTED&sv=REDACTED"
    assert file_name("https://h/a/b.tif?sig=abc") == "b.tif" and file_name("s3://b/k/c.tif") == "c.tif"
    assert open_options("https://h/a/b.tif?sig=abc") == {"NUM_THREADS": str(REMOTE_READ_THREADS)}
    assert open_options("data/b.tif") == {} and open_options("https://h/points.csv") == {}


def test_configure_sets_defaults_the_user_wins_and_no_sign_only_without_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, no ~/.boto
    for key in [*REMOTE_GDAL_DEFAULTS, "AWS_NO_SIGN_REQUEST", "GS_NO_SIGN_REQUEST", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
                "GOOGLE_APPLICATION_CREDENTIALS"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")  # the user's own
    applied = configure_remote_gdal()
    assert os.environ["GDAL_HTTP_MAX_RETRY"] == "9" and "GDAL_HTTP_MAX_RETRY" not in applied
    assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "TRUE"
    assert os.environ["AWS_NO_SIGN_REQUEST"] == "YES" and os.environ["GS_NO_SIGN_REQUEST"] == "YES"
    assert configure_remote_gdal() == {}  # idempotent

    monkeypatch.delenv("AWS_NO_SIGN_REQUEST")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")  # present: never read
    assert "AWS_NO_SIGN_REQUEST" not in configure_remote_gdal()
    assert "AWS_NO_SIGN_REQUEST" not in os.environ


def test_local_aux_xml_still_read_under_the_remote_defaults(tmp_path: Path) -> None:
    """GDAL_DISABLE_READDIR_ON_OPEN=TRUE (not EMPTY_DIR) keeps a local raster's .aux.xml metadata."""
    configure_remote_gdal()
    path = write_raster(tmp_path / "a.tif", np.zeros((1, 4, 4), np.uint8))
    Path(f"{path}.aux.xml").write_text('<PAMDataset><Metadata><MDI key="k">v</MDI></Metadata></PAMDataset>')
    with open_raster(path) as src:
        assert src.tags()["k"] == "v"


# --- HTTP ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [1, 2])
def test_extraction_over_http_equals_local_and_fetches_each_touched_tile_once(
    range_server: RangeServer, cog: Path, points: tuple[np.ndarray, ...], n_threads: int
) -> None:
    xs, ys, rows, cols = points
    local = extract_values(cog, xs, ys)
    range_server.reset()
    url = range_server.url("emb.tif")
    with open_raster(url, "embedding raster") as src:  # the header, cached by GDAL for the URL
        assert src.count == BANDS and src.descriptions[0] == "A00"
    opened = range_server.stats()["emb.tif"]
    remote = extract_values(url, xs, ys, n_threads=n_threads)

    np.testing.assert_array_equal(remote.values, local.values)
    np.testing.assert_array_equal(remote.valid, local.valid)
    assert not remote.valid[0] and not remote.inside[-1] and remote.valid[1:-1].all()
    stats = range_server.stats()
    assert set(stats) == {"emb.tif"}  # no folder listing, no .aux.xml / .msk / .ovr probes
    log = stats["emb.tif"]
    data_ranges = log.ranges[len(opened.ranges):]
    touched = {(int(r) // TILE, int(c) // TILE) for r, c in zip(rows, cols, strict=True)}
    spans = _tile_spans(cog, touched)
    # one request per touched tile, no byte fetched twice, every touched tile fetched
    assert len(data_ranges) == len(touched) == 5
    all_ranges = log.ranges
    assert all(not _overlaps(a, b) for i, a in enumerate(all_ranges) for b in all_ranges[i + 1:])
    assert all(any(_overlaps(s, r) for r in all_ranges) for s in spans)
    assert log.bytes < 0.4 * cog.stat().st_size  # 5 of 16 tiles plus the header


@pytest.mark.parametrize("n_threads", [1, 2])
def test_alphaearth_layout_over_http_fetches_each_touched_block_once(
    range_server: RangeServer, remote_folder: Path, points: tuple[np.ndarray, ...], n_threads: int
) -> None:
    """Bands in separate planes: a touched tile is 64 blocks, one per band. With GDAL's reading threads (the
    NUM_THREADS open option) a window's blocks are fetched in parallel, one request of exactly its bytes per
    block; nothing else is fetched after the header."""
    sep = remote_folder / "emb_separate.tif"
    if not sep.exists():
        _write_cog(remote_folder, sep.name, separate=True)
    xs, ys, rows, cols = points
    local = extract_values(sep, xs, ys)
    range_server.reset()
    url = range_server.url(sep.name)
    with open_raster(url):
        pass
    n_open = len(range_server.stats()[sep.name].ranges)
    remote = extract_values(url, xs, ys, n_threads=n_threads)
    np.testing.assert_array_equal(remote.values, local.values)
    stats = range_server.stats()
    assert set(stats) == {sep.name}
    touched = {(int(r) // TILE, int(c) // TILE) for r, c in zip(rows, cols, strict=True)}
    spans = _tile_spans(sep, touched)
    assert len(spans) == BANDS * len(touched)
    assert sorted(stats[sep.name].ranges[n_open:]) == sorted(spans)


def test_vsicurl_path_and_a_zip_member_over_http(range_server: RangeServer, remote_folder: Path) -> None:
    small = write_raster(remote_folder / "small.tif", np.arange(64, dtype=np.uint8).reshape(1, 8, 8))
    with zipfile.ZipFile(remote_folder / "small.zip", "w", zipfile.ZIP_STORED) as zf:
        zf.write(small, "inner/small.tif")
    range_server.reset()
    with open_raster("/vsicurl/" + range_server.url("small.tif")) as src:
        assert src.read(1)[7, 7] == 63
    with open_raster(f"/vsizip/{{/vsicurl/{range_server.url('small.zip')}}}/inner/small.tif") as src:
        assert src.read(1)[1, 0] == 8
    assert range_server.listing_requests() == 0


def test_the_settings_hold_in_a_fresh_thread_and_in_a_child_process(
    range_server: RangeServer, cog: Path
) -> None:
    configure_remote_gdal()
    range_server.reset()
    readers = ThreadReaders(range_server.url("emb.tif"))  # a thread with no rasterio.Env of its own
    out: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: out.append(readers.read(rasterio.windows.Window(0, 0, 4, 4), 1)))
    worker.start()
    worker.join(timeout=60)
    readers.close()
    assert out and out[0].shape == (4, 4)
    range_server.reset()
    code = (f"import rasterio; rasterio.open('/vsicurl/{range_server.url('emb.tif')}').close(); "
            "from rasterio.env import get_gdal_config; print(get_gdal_config('GDAL_HTTP_MAX_RETRY'))")
    child = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == REMOTE_GDAL_DEFAULTS["GDAL_HTTP_MAX_RETRY"]  # inherited, never set there
    assert set(range_server.stats()) == {"emb.tif"}


def test_a_server_that_fails_a_few_times_is_retried(range_server: RangeServer, cog: Path) -> None:
    range_server.reset()
    range_server.fail_next(3, status=503)
    with open_raster(range_server.url("emb.tif")) as src:
        assert src.count == BANDS
    methods = [(m, s) for m, s, _ in range_server.stats()["emb.tif"].log]
    assert methods[:3] == [("HEAD", 503)] * 3 and methods[3] == ("HEAD", 200)


def test_no_retries_when_the_user_says_so(
    range_server: RangeServer, cog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    range_server.reset()
    range_server.fail_next(1, status=503)
    with pytest.raises(InputFileError, match=r"answered HTTP 503 after GDAL's retries; .*GDAL_HTTP_MAX_RETRY"):
        open_raster(range_server.url("emb.tif"), "embedding raster")


def test_missing_unreachable_and_refused_files_fail_in_one_line(
    range_server: RangeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    missing = range_server.url("nope.tif") + "?X-Amz-Signature=s3cr3t"
    with pytest.raises(InputFileError, match=r"^embedding raster '.*/nope.tif\?X-Amz-Signature=REDACTED' was "
                       r"not found \(HTTP 404\); check the URL"):
        extract_values(missing, [0.0], [0.0])
    assert "s3cr3t" not in str(pytest.raises(InputFileError, open_raster, missing).value)
    with pytest.raises(InputFileError) as exc:
        open_raster(f"http://127.0.0.1:{free_port()}/a.tif", "reference raster")
    assert "cannot be reached" in _assert_one_line(exc)
    with pytest.raises(InputFileError, match="CPL_VSIL_CURL_ALLOWED_EXTENSIONS"):
        open_raster(range_server.url("emb.dat"))
    range_server.fail_next(1, status=403)
    with pytest.raises(InputFileError, match=r"refused \(access denied, HTTP 403\); .*GDAL_HTTP_AUTH"):
        open_raster(range_server.url("emb.tif") + "?fresh=1")


def test_identity_from_one_head_request_changes_with_the_file(range_server: RangeServer, remote_folder: Path) -> None:
    path = write_raster(remote_folder / "ident.tif", np.zeros((1, 8, 8), np.uint8))
    range_server.reset()
    first = remote_identity(range_server.url("ident.tif"))
    assert range_server.stats()["ident.tif"].methods == ["HEAD"]
    assert first["size"] == path.stat().st_size and first["etag"] and first["last_modified"]
    write_raster(path, np.ones((1, 8, 8), np.uint8))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert remote_identity(range_server.url("ident.tif"))["etag"] != first["etag"]
    with pytest.raises(InputFileError, match="not found"):
        remote_identity(range_server.url("gone.tif"))
    assert identity_digest(range_server.url("ident.tif")) == identity_digest(range_server.url("ident.tif"))
    assert identity_digest(path) != identity_digest(range_server.url("ident.tif"))


def test_reference_sampling_over_http_equals_local(range_server: RangeServer, remote_folder: Path) -> None:
    codes = np.repeat(np.array([10, 20, 30, 40], dtype=np.uint8), 32 * 128 // 4).reshape(32, 128)
    path = write_raster(remote_folder / "reference.tif", codes, nodata=0, blocksize=16)
    local = sample_raster_points(path, 60, random_state=1)
    range_server.reset()
    remote = sample_raster_points(range_server.url("reference.tif"), 60, random_state=1, n_threads=2)
    assert remote.table.equals(local.table) and remote.crs == local.crs
    assert set(range_server.stats()) == {"reference.tif"}


def test_prediction_of_a_remote_raster_equals_local(range_server: RangeServer, cog: Path, tmp_path: Path) -> None:
    rf = _fit([1, 2, 3], bands=BANDS)
    bundle = _bundle(cog, rf)
    predict_raster(bundle, cog, tmp_path / "local.tif")
    range_server.reset()
    summary = predict_raster(bundle, range_server.url("emb.tif"), tmp_path / "remote.tif", n_jobs=2)
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert summary.n_nodata == 1
    assert range_server.listing_requests() == 0


def test_predict_flow_over_http_equals_local(
    prefect_harness: None, range_server: RangeServer, cog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The landcover-predict Prefect flow on a URL: the same map as the library on the local file, tracked
    with the remote file's identity digest (never downloaded whole)."""
    from flows.predict import landcover_predict
    from lcmodel.model_io import save_bundle

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.sqlite'}")
    bundle = _bundle(cog, _fit([1, 2, 3], bands=BANDS))
    bundle_path = save_bundle(bundle, tmp_path / "model.skops")
    predict_raster(bundle, cog, tmp_path / "local.tif")
    range_server.reset()
    url = range_server.url("emb.tif")
    result = landcover_predict(str(bundle_path), url, str(tmp_path / "remote.tif"))
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert result["input_sha256"] == identity_digest(url)
    assert range_server.listing_requests() == 0


# --- S3 --------------------------------------------------------------------------------------------------


@pytest.fixture()
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for key, value in s3_server.gdal_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_NO_SIGN_REQUEST", raising=False)
    return s3_server


def test_s3_extraction_prediction_and_identity_equal_local(
    s3_env: S3Server, cog: Path, points: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    uri = s3_env.upload(cog, "aef/2024/emb.tif")
    xs, ys, *_ = points
    np.testing.assert_array_equal(extract_values(uri, xs, ys, n_threads=2).values,
                                  extract_values(cog, xs, ys).values)
    np.testing.assert_array_equal(extract_values(gdal_path(uri), xs, ys).values,
                                  extract_values(cog, xs, ys).values)
    ident = remote_identity(uri)
    assert ident["size"] == cog.stat().st_size and ident["etag"] and ident["url"] == uri
    rf = _fit([1, 2], bands=BANDS)
    predict_raster(_bundle(cog, rf), cog, tmp_path / "local.tif")
    predict_raster(_bundle(cog, rf), uri, tmp_path / "s3.tif")
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "s3.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_s3_public_object_read_unsigned(
    s3_server: S3Server, cog: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s3_server.client().upload_file(str(cog), s3_server.bucket, "public/emb.tif", ExtraArgs={"ACL": "public-read"})
    env = s3_server.gdal_env(signed=False)
    code = (
        "from lcmodel.extract import extract_values; from lcmodel.sources import remote_identity; "
        f"uri = 's3://{s3_server.bucket}/public/emb.tif'; "
        "e = extract_values(uri, [500000.0 + 5.0], [8000000.0 - 5.0]); "
        "print(int(e.valid.sum()), remote_identity(uri)['size'])"
    )
    child_env = subprocess_env(tmp_path, **env)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        child_env.pop(key, None)
    child_env["HOME"] = str(tmp_path)  # no ~/.aws: the child signs nothing
    child = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["1", str(cog.stat().st_size)]


def test_s3_missing_object_fails_in_one_line(s3_env: S3Server) -> None:
    with pytest.raises(InputFileError) as exc:
        open_raster(f"s3://{s3_env.bucket}/aef/none.tif", "embedding raster")
    text = _assert_one_line(exc)
    assert text.startswith(f"embedding raster 's3://{s3_env.bucket}/aef/none.tif' was not found")
    assert S3Server.SECRET_KEY not in text and S3Server.ACCESS_KEY not in text
