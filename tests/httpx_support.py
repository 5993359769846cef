"""Helpers and fixtures shared by the anyway.httpx tests.

Two kinds of tests use them:

* against a real HTTP server on 127.0.0.1 (``tests/http_server.py``, in a
  thread): real sockets on every loop, marked ``real_time``, with tiny waits;
* against ``httpx.MockTransport`` on virtual time, where waits are exact.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import anyway
from anyway.httpx import ResilientTransport
from http_server import RealServer

__all__ = [
    "TINY",
    "Events",
    "client_for",
    "closed_port",
    "events",
    "key",
    "mock",
    "real_transport",
    "server",
    "state_of",
]

# Tiny, exact waits for the real-server tests.
TINY = anyway.Backoff(initial=0.001, max=0.01, jitter=None)
# Plain http only: skip loading the CA bundle for every transport (slow).
NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def real_transport(**options: Any) -> ResilientTransport:
    """A transport over real sockets, with tiny waits unless told otherwise."""
    options.setdefault("backoff", TINY)
    return ResilientTransport(httpx.AsyncHTTPTransport(verify=NO_TLS), **options)


class Events:
    """A hook that keeps the events it receives."""

    def __init__(self) -> None:
        self.events: list[anyway.PolicyEvent] = []

    def __call__(self, event: anyway.PolicyEvent) -> None:
        self.events.append(event)

    @property
    def scheduled(self) -> list[anyway.RetryScheduled]:
        return [e for e in self.events if isinstance(e, anyway.RetryScheduled)]

    @property
    def gave_up(self) -> list[anyway.RetryGaveUp]:
        return [e for e in self.events if isinstance(e, anyway.RetryGaveUp)]


def state_of(breaker: object) -> anyway.CircuitState:
    assert isinstance(breaker, anyway.CircuitBreaker)
    return breaker.state


def mock(
    statuses: list[int | type[Exception]],
    headers: dict[str, str] | None = None,
    calls: list[httpx.Request] | None = None,
    content: bytes = b"body",
) -> httpx.MockTransport:
    """A transport answering *statuses* in turn (the last one from then on);
    an exception class is raised instead."""
    answers = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(request)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, type):
            raise answer("boom", request=request)  # type: ignore[call-arg]
        return httpx.Response(answer, headers=headers, content=content)

    return httpx.MockTransport(handler)


def client_for(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


async def closed_port() -> int:
    """A local port that nothing listens on (connections are refused)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


@pytest.fixture(scope="session")
def server() -> Iterator[RealServer]:
    running = RealServer().start()
    yield running
    running.stop()


@pytest.fixture
def key() -> str:
    """A key of the server's request counters that only this test uses."""
    return uuid.uuid4().hex


@pytest.fixture
def events() -> Events:
    return Events()
