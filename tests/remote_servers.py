"""Remote-file test servers on 127.0.0.1: a range-capable HTTP/1.1 server that counts requests, and an S3 API.

* :class:`RangeServer` serves a folder over HTTP/1.1 (keep-alive) with HEAD, single and multi-range GET
  (``multipart/byteranges``), ETag and Last-Modified, a plain HTML listing for folders (as a web server with
  auto-index gives, so that a directory listing costs what it costs in the wild), injected failures
  (:meth:`RangeServer.fail_next`) and per-path counts of requests and body bytes (:meth:`RangeServer.stats`).
* :class:`S3Server` is moto's S3 API (``moto.server.ThreadedMotoServer``) with one bucket that
  :meth:`S3Server.upload` fills through boto3, and the GDAL settings that read it through ``/vsis3/``
  (:meth:`S3Server.gdal_env`).

Both run in a CHILD process: some GDAL calls hold the GIL while they wait for an HTTP answer (rasterio's
``open`` fetching a directory listing does), so a server thread in the test process could never answer them
(a deadlock until curl times out). The child binds a free port on 127.0.0.1, prints it, and stops when its
stdin closes; the parent reads the HTTP server's counts through a control path (``/__control__/...``) that is
itself never counted.

GDAL caches what it fetched per URL for the whole process; :meth:`RangeServer.reset` therefore also moves the
files under a new URL prefix (``/g<n>/``), so that counts after a reset are never hidden by that cache.

Fixtures: ``remote_folder`` (a module-scoped folder that tests fill), ``range_server`` serving it, and
``s3_server``; both servers stop at module teardown.
"""

from __future__ import annotations

import email.utils
import html
import json
import select
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, subprocess_env

__all__ = ["PathStats", "RangeServer", "S3Server", "parse_ranges"]

#: an idle keep-alive connection is closed after this many seconds (bounds the handler threads)
IDLE_TIMEOUT_S = 5.0
#: how long a child may take to print its port
START_TIMEOUT_S = 60.0
BOUNDARY = "lcmodel-byteranges"
CONTROL = "/__control__/"


@dataclass
class PathStats:
    """What one path was asked for since the last reset."""

    requests: int = 0
    bytes: int = 0
    #: [method, status, ranges] per request; ranges as [first, last] byte offsets, inclusive
    log: list[tuple[str, int, list[tuple[int, int]]]] = field(default_factory=list)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """Every byte range served (206 answers), in request order."""
        return [(int(a), int(b)) for _, status, rs in self.log if status == 206 for a, b in rs]

    @property
    def methods(self) -> list[str]:
        return [m for m, _, _ in self.log]


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """``bytes=a-b,c-,-n`` -> inclusive (first, last) pairs clipped to the file; None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or not spec:
        return None
    out = []
    for part in spec.split(","):
        first_s, dash, last_s = part.strip().partition("-")
        if not dash or not (first_s or last_s):
            return None
        if first_s == "":  # suffix: the last n bytes
            first, last = max(0, size - int(last_s)), size - 1
        else:
            first = int(first_s)
            last = min(int(last_s), size - 1) if last_s else size - 1
        if first > last or first >= size:
            return None
        out.append((first, last))
    return out


# --- the HTTP server (runs in the child) -----------------------------------------------------------------


class _State:
    """Counts and pending failures of the child's HTTP server."""

    def __init__(self, root: Path, latency_s: float = 0.0) -> None:
        self.root = root.resolve()
        self.latency_s = latency_s
        self.lock = threading.Lock()
        self.stats: dict[str, PathStats] = defaultdict(PathStats)
        self.failures: list[int] = []

    def relative(self, url_path: str) -> str:
        parts = urllib.parse.unquote(url_path).lstrip("/").split("/", 1)
        if parts[0].startswith("g") and parts[0][1:].isdigit():
            return parts[1] if len(parts) > 1 else ""
        return "/".join(parts)

    def resolve(self, rel: str) -> Path | None:
        target = (self.root / rel).resolve()
        if target != self.root and self.root not in target.parents:
            return None
        return target if target.exists() else None

    def record(self, rel: str, method: str, status: int, ranges: list[tuple[int, int]], nbytes: int) -> None:
        with self.lock:
            s = self.stats[rel]
            s.requests += 1
            s.bytes += nbytes
            s.log.append((method, status, list(ranges)))

    def take_failure(self) -> int | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    state: _State  # set on the subclass made by _serve_http

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Quiet: the counts are in the stats."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        if self.path.startswith(CONTROL):
            self._control()
        else:
            self._serve(head=False)

    def do_POST(self) -> None:
        self._control()

    def _control(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        what = url.path[len(CONTROL):]
        st = self.state
        with st.lock:
            if what == "stats":
                body = json.dumps({k: [v.requests, v.bytes, v.log] for k, v in st.stats.items()}).encode()
            elif what == "reset":
                st.stats.clear()
                st.failures.clear()
                body = b"{}"
            elif what == "fail":
                st.failures.extend([int(query.get("status", 503))] * int(query.get("n", 1)))
                body = b"{}"
            else:
                body = b""
        self._send(200 if body else 404, body, False, {"Content-Type": "application/json"})

    def _serve(self, *, head: bool) -> None:
        st = self.state
        rel = st.relative(urllib.parse.urlsplit(self.path).path)
        method = "HEAD" if head else "GET"
        if st.latency_s:
            time.sleep(st.latency_s)  # a network's round trip
        status = st.take_failure()
        if status is not None:
            st.record(rel, method, status, [], 0)
            self._send(status, b"injected failure\n", head)
            return
        target = st.resolve(rel)
        if target is None:
            st.record(rel, method, 404, [], 0)
            self._send(404, b"not found\n", head)
            return
        if target.is_dir():
            body = _listing(target)
            st.record(rel.rstrip("/") + "/", method, 200, [], 0 if head else len(body))
            self._send(200, body, head, {"Content-Type": "text/html"})
            return
        info = target.stat()
        size = info.st_size
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": f'"{size:x}-{info.st_mtime_ns:x}"',
            "Last-Modified": email.utils.formatdate(info.st_mtime, usegmt=True),
            "Content-Type": "application/octet-stream",
        }
        range_header = self.headers.get("Range")
        if range_header is None:
            st.record(rel, method, 200, [], 0 if head else size)
            self._send(200, b"" if head else target.read_bytes(), head, headers, length=size)
            return
        ranges = parse_ranges(range_header, size)
        if ranges is None:
            st.record(rel, method, 416, [], 0)
            self._send(416, b"", head, {"Content-Range": f"bytes */{size}"})
            return
        with target.open("rb") as f:
            chunks = []
            for first, last in ranges:
                f.seek(first)
                chunks.append(f.read(last - first + 1))
        if len(ranges) == 1:
            body = chunks[0]
            headers["Content-Range"] = f"bytes {ranges[0][0]}-{ranges[0][1]}/{size}"
        else:
            parts = [
                f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n".encode() + chunk + b"\r\n"
                for (first, last), chunk in zip(ranges, chunks, strict=True)
            ]
            body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
            headers["Content-Type"] = f"multipart/byteranges; boundary={BOUNDARY}"
        st.record(rel, method, 206, ranges, 0 if head else len(body))
        self._send(206, body, head, headers)

    def _send(self, status: int, body: bytes, head: bool, headers: dict[str, str] | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _listing(folder: Path) -> bytes:
    rows = "".join(
        f'<li><a href="{urllib.parse.quote(p.name)}{"/" if p.is_dir() else ""}">{html.escape(p.name)}</a></li>'
        for p in sorted(folder.iterdir())
    )
    return f"<html><body><ul>{rows}</ul></body></html>\n".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # GDAL's parallel range requests open dozens of connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (GDAL aborting a transfer it no longer needs) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _serve_http(root: str, latency_s: float) -> None:
    """Child: serve ``root`` on a free port of 127.0.0.1, print the port, stop when stdin closes."""
    handler = type("Handler", (_Handler,), {"state": _State(Path(root), latency_s)})
    httpd = _Server(("127.0.0.1", 0), handler)
    print(httpd.server_address[1], flush=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    httpd.shutdown()
    httpd.server_close()


def _serve_s3() -> None:
    """Child: moto's S3 API on a free port of 127.0.0.1, print the port, stop when stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


# --- the parent's side -----------------------------------------------------------------------------------


class _Child:
    """A server child process: started with ``args``, its port read from its first line of output."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.remote_servers", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env=subprocess_env(Path(ROOT)),
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"test server {args} did not start within {START_TIMEOUT_S:.0f} s")
        self.port = int(line)

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class RangeServer:
    """A range-capable HTTP/1.1 server on 127.0.0.1 serving ``root`` (in a child process), counting requests.

    ``latency_s`` delays every answer (a network's round trip, for benchmarks).

    Use as a context manager (or :meth:`start` / :meth:`stop`). Paths in :meth:`stats` are relative to the
    served folder (``"sub/a.tif"``; a folder ends with ``/``, the root is ``"/"``), whatever URL prefix they were
    asked under.
    """

    def __init__(self, root: Path | str, *, latency_s: float = 0.0) -> None:
        self.root = Path(root).resolve()
        self.latency_s = latency_s
        self._generation = 0
        self._child: _Child | None = None

    def start(self) -> RangeServer:
        self._child = _Child(["http", str(self.root), str(self.latency_s)])
        return self

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
        self._child = None

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._child is not None, "the server is not started"
        return self._child.port

    def url(self, rel: str = "") -> str:
        """``http://127.0.0.1:<port>/g<n>/<rel>``: a served file's URL under the current prefix."""
        return f"http://127.0.0.1:{self.port}/g{self._generation}/{rel}"

    def _control(self, what: str, **query: int) -> Any:
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{CONTROL}{what}{q}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests (any path) with ``status``."""
        self._control("fail", n=n, status=status)

    def stats(self) -> dict[str, PathStats]:
        """Counts per path since the last :meth:`reset`."""
        raw = self._control("stats")
        return {k: PathStats(n, b, [(m, s, [(r[0], r[1]) for r in rs]) for m, s, rs in log])
                for k, (n, b, log) in raw.items()}

    def listing_requests(self) -> int:
        """Requests for a folder (a directory listing) since the last reset."""
        return sum(s.requests for k, s in self.stats().items() if k.endswith("/"))

    def total_requests(self) -> int:
        return sum(s.requests for s in self.stats().values())

    def reset(self) -> None:
        """Clear the counts and pending failures; later URLs get a new prefix (GDAL's cache cannot hide them)."""
        self._control("reset")
        self._generation += 1


class S3Server:
    """moto's S3 API on 127.0.0.1 (in a child process) with one bucket; :meth:`upload` puts files in it."""

    ACCESS_KEY = "testing-key"  # moto accepts any credentials; these are dummies, not secrets
    SECRET_KEY = "testing-secret"

    def __init__(self, bucket: str = "lcmodel-test") -> None:
        self.bucket = bucket
        self._child: _Child | None = None

    def start(self) -> S3Server:
        pytest.importorskip("moto.server")
        self._child = _Child(["s3"])
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
        self._child = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._child is not None, "the server is not started"
        return f"127.0.0.1:{self._child.port}"

    def client(self) -> Any:
        boto3 = pytest.importorskip("boto3")
        return boto3.client(
            "s3", endpoint_url=f"http://{self.endpoint}", region_name="us-east-1",
            aws_access_key_id=self.ACCESS_KEY, aws_secret_access_key=self.SECRET_KEY,
        )

    def upload(self, path: Path | str, key: str) -> str:
        """Put a local file at ``key``; return its ``s3://bucket/key``."""
        self.client().upload_file(str(path), self.bucket, key)
        return f"s3://{self.bucket}/{key}"

    def gdal_env(self, *, signed: bool = True) -> dict[str, str]:
        """The variables that point GDAL's /vsis3/ (and lcmodel's identity probe) at this server."""
        env = {
            "AWS_S3_ENDPOINT": self.endpoint,
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": "us-east-1",
        }
        if signed:
            env.update(AWS_ACCESS_KEY_ID=self.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=self.SECRET_KEY)
        else:
            env["AWS_NO_SIGN_REQUEST"] = "YES"
        return env


@pytest.fixture(scope="module")
def remote_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``range_server`` serves (module-scoped; tests write their files into it)."""
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def range_server(remote_folder: Path) -> Iterator[RangeServer]:
    """A :class:`RangeServer` over ``remote_folder``, stopped at module teardown."""
    with RangeServer(remote_folder) as server:
        yield server


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server with an empty bucket, stopped at module teardown."""
    with S3Server() as server:
        yield server


if __name__ == "__main__":  # the child: python -m tests.remote_servers http ROOT LATENCY_S | s3
    if sys.argv[1] == "http":
        _serve_http(sys.argv[2], float(sys.argv[3]))
    else:
        _serve_s3()
