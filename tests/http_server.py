"""A real HTTP/1.1 server on 127.0.0.1 for the httpx tests, run in a thread.

It is independent of the event loop under test (asyncio, uvloop or Trio all
talk to it over real sockets), so one server serves the whole session. Every
endpoint takes a ``key`` query parameter: the server counts the requests it
saw per key, so each test uses its own key and reads its own counters.

Endpoints (all methods):

``/ok``
    200 ``ok``.
``/flaky?fails=N&status=503&retry_after=V&retry_after_in=S``
    Answers ``status`` (default 503) to the first ``N`` requests of the key
    (``N=-1``: always), then 200 ``ok``. ``retry_after=V`` sends
    ``Retry-After: V`` verbatim; ``retry_after_in=S`` sends an HTTP date ``S``
    seconds after the server's ``Date`` header (negative: in the past).
``/slow?delay=S``
    Waits ``S`` seconds (at most 5), then 200 ``ok``.
``/close?fails=N``
    Drops the connection without an answer ``N`` times (``-1``: always),
    then 200 ``ok``.
``/count``
    ``{"requests": n, "methods": [...]}`` for the key (not counted itself).
``/connections``
    ``{"open": n, "total": m}``: connections open now and ever accepted.
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["RealServer"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests: defaultdict[str, list[str]] = defaultdict(list)
        self.open_connections = 0
        self.total_connections = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (deadline, cancellation) leaves a broken pipe
        # behind; that is expected here, not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.open_connections += 1
            self.server.total_connections += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.open_connections -= 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: bytes = b"ok", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> None:
        # Read the whole request body, so the connection stays usable.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0], 16)
                self.rfile.read(size + 2)  # the chunk and its CRLF
                if size == 0:
                    return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def _handle(self) -> None:
        self._read_body()
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        key = query.get("key", "")
        path = parts.path
        server = self.server
        if path == "/count":
            with server.lock:
                methods = list(server.requests[key])
            body = json.dumps({"requests": len(methods), "methods": methods}).encode()
            self._reply(200, body)
            return
        if path == "/connections":
            with server.lock:
                body = json.dumps(
                    {"open": server.open_connections - 1, "total": server.total_connections}
                ).encode()
            self._reply(200, body)
            return
        with server.lock:
            server.requests[key].append(self.command)
            seen = len(server.requests[key])
        fails = int(query.get("fails", "-1"))
        failing = fails < 0 or seen <= fails
        if path == "/ok":
            self._reply(200)
        elif path == "/flaky":
            if not failing:
                self._reply(200)
                return
            headers: dict[str, str] = {}
            now = datetime.now(UTC).replace(microsecond=0)
            headers["Date"] = email.utils.format_datetime(now, usegmt=True)
            if "retry_after" in query:
                headers["Retry-After"] = query["retry_after"]
            if "retry_after_in" in query:
                when = now + timedelta(seconds=float(query["retry_after_in"]))
                headers["Retry-After"] = email.utils.format_datetime(when, usegmt=True)
            status = int(query.get("status", "503"))
            self._reply(status, b"unavailable", headers)
        elif path == "/slow":
            server.stopping.wait(min(float(query.get("delay", "1")), 5.0))
            self._reply(200)
        elif path == "/close":
            if failing:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._reply(200)
        else:
            self._reply(404, b"not found")

    def send_response(self, code: int, message: str | None = None) -> None:
        # BaseHTTPRequestHandler adds its own Date header; /flaky sends one
        # computed together with its Retry-After date instead.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", "anyway-tests")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle


class RealServer:
    """A running test server; ``url()`` builds request URLs for it."""

    def __init__(self) -> None:
        self._server = _Server()
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> RealServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def url(self, path: str, *, host: str = "127.0.0.1", **params: object) -> str:
        """``http://host:port/path?params`` (``host="localhost"`` for a second host)."""
        query = urlencode({name: str(value) for name, value in params.items()})
        return f"http://{host}:{self.port}{path}" + (f"?{query}" if query else "")

    def requests(self, key: str) -> list[str]:
        """The methods of the requests the server saw for *key*, in order."""
        with self._server.lock:
            return list(self._server.requests[key])

    def count(self, key: str) -> int:
        """How many requests the server saw for *key*."""
        return len(self.requests(key))

    @property
    def open_connections(self) -> int:
        """Connections open right now (server side)."""
        with self._server.lock:
            return self._server.open_connections

    @property
    def total_connections(self) -> int:
        """Connections accepted since the server started."""
        with self._server.lock:
            return self._server.total_connections
