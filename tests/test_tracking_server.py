"""An unreachable tracking server fails in one line within seconds, before any compute (issue 15, item 7)."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

from flows.tracking.stores import TrackingStoreError, require_reachable_server  # noqa: E402


def _serve(status: int) -> tuple[http.server.HTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_a_refused_connection_is_one_line_within_seconds() -> None:
    started = time.monotonic()
    with pytest.raises(TrackingStoreError, match=r"tracking server 'http://127.0.0.1:1' does not answer .*; start it"):
        require_reachable_server("http://127.0.0.1:1")
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("status", [200, 401, 404])
def test_any_http_answer_counts_as_reachable(status: int) -> None:
    server, url = _serve(status)
    try:
        require_reachable_server(url)
    finally:
        server.shutdown()


def test_local_stores_are_not_probed(tmp_path: Path) -> None:
    require_reachable_server(f"sqlite:///{tmp_path / 'mlflow.db'}")
    require_reachable_server("databricks")


def test_the_flow_tracker_refuses_an_unreachable_server_before_any_stage(tmp_path: Path) -> None:
    from flows.config import flow_config_from_dict
    from flows.tracking import Tracker

    cfg = flow_config_from_dict({"reference": {"path": "ref.tif"}, "embedding": {"path": "emb.tif"},
                                 "tracking": {"uri": "http://127.0.0.1:1"}, "output": {"dir": str(tmp_path / "out")}},
                                base_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(TrackingStoreError, match="does not answer"):
        Tracker(cfg)
    assert time.monotonic() - started < 15
    assert not (tmp_path / "out").exists()
