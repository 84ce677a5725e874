"""Shared fixtures. Environment is made hermetic before prefect or mlflow can be imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HERMETIC = Path(tempfile.mkdtemp(prefix="lcmodel-tests-"))
for _key, _sub in {
    "PREFECT_HOME": "prefect",
    "MPLCONFIGDIR": "mpl",
    "XDG_CACHE_HOME": "cache",
    "XDG_CONFIG_HOME": "config",
}.items():
    os.environ[_key] = str(_HERMETIC / _sub)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_HERMETIC / 'mlruns.sqlite'}"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

# The property tests draw the same examples on every run (`make test` and CI give the same result for the same
# code); `HYPOTHESIS_PROFILE=explore` draws new examples on each run, to look for new failures.
hypothesis_settings.register_profile("default", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# the remote-file servers (an HTTP range server that counts requests, moto's S3), for any test module
from tests.remote_servers import range_server, remote_folder, s3_server  # noqa: E402, F401

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real test data); tests that use it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real-data tests need it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server (SQLite) for the flow tests, started once per test session (per xdist worker):
    a start costs 5-10 s on 2 cores, and every flow test uses its own output folder and MLflow store."""
    pytest.importorskip("prefect")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
