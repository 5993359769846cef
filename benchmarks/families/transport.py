"""Family ``httpx``: ResilientTransport against a plain ``httpx.AsyncHTTPTransport``.

A small threaded HTTP/1.1 server on 127.0.0.1 (started once for the case,
in this process) answers ``GET /`` with a 2-byte body; each client keeps its
connection alive, so a request is one round trip on loopback. Both clients
are open at once and measured interleaved; the ratio is the overhead of
going through ``anyway.httpx.ResilientTransport`` on the success path.

The batches are timed on the process's CPU clock, which counts the client
and the server thread and not the time both wait on the loopback: the ratio
is then stricter than a wall-clock ratio (idle time would add to both sides)
and it holds on a loaded machine.

A loopback round trip through a Python server is noisy (a few percent per
batch even on a quiet machine), so a second case wraps ``httpx.MockTransport``
instead: no network, so the difference between the two rows is the
wrapper's own cost per request, measured precisely.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .._core import BatchFn, Case, Env, Target, Variant

TITLE = "ResilientTransport against plain httpx"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def local_server() -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1; yields its URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _ok(request: Any) -> Any:
    import httpx

    return httpx.Response(200, content=b"ok")


def _client(env: Env, resilient: bool, *, mock: bool = False) -> Any:
    import httpx

    @asynccontextmanager
    async def context() -> AsyncIterator[BatchFn]:
        transport: Any = httpx.MockTransport(_ok) if mock else httpx.AsyncHTTPTransport()
        if resilient:
            from anyway.httpx import ResilientTransport

            transport = ResilientTransport(transport)
        async with httpx.AsyncClient(transport=transport) as client:
            url = "http://bench.invalid/" if mock else str(env.shared)

            async def run(n: int) -> None:
                get = client.get
                for _ in range(n):
                    response = await get(url)
                    if response.status_code != 200:
                        raise RuntimeError(f"unexpected status {response.status_code}")

            yield run

    return context()


def _plain(env: Env) -> Any:
    return _client(env, resilient=False)


def _resilient(env: Env) -> Any:
    return _client(env, resilient=True)


def _plain_mock(env: Env) -> Any:
    return _client(env, resilient=False, mock=True)


def _resilient_mock(env: Env) -> Any:
    return _client(env, resilient=True, mock=True)


def cases() -> list[Case]:
    return [
        Case(
            "httpx",
            "GET on keep-alive",
            [
                Variant(
                    "httpx.AsyncHTTPTransport",
                    _plain,
                ),
                Variant(
                    "anyway ResilientTransport",
                    _resilient,
                    target=Target("ratio", 1.05),
                ),
            ],
            "one GET through httpx.AsyncClient to a local server (per request)",
            unit="request",
            batch_scale=5.0,
            reps_scale=3.0,
            setup=local_server,
        ),
        Case(
            "httpx",
            "GET on MockTransport",
            [
                Variant(
                    "httpx.MockTransport",
                    _plain_mock,
                ),
                Variant(
                    "anyway ResilientTransport",
                    _resilient_mock,
                ),
            ],
            "the same without a network: the wrapper's own cost per request",
            unit="request",
            reps_scale=2.0,
        ),
    ]
