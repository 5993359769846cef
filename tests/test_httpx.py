"""anyway.httpx: ResilientTransport and fetch_all.

Two kinds of tests:

* against a real HTTP server on 127.0.0.1 (``tests/http_server.py``, in a
  thread): real sockets on every loop, marked ``real_time``, with tiny waits;
* against ``httpx.MockTransport`` on virtual time, where waits are exact.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import outcome
import pytest

import anyway
from anyway import KeyedRateLimiter, RateLimiter
from anyway._backoff import Backoff
from anyway._breaker import CircuitBreaker
from anyway._deadline import deadline
from anyway._errors import CircuitOpen, DeadlineExceeded
from anyway._events import CircuitState, Event, RetryGaveUp, RetryScheduled
from anyway._retry import RetryBudget
from anyway.httpx import (
    DEFAULT_RETRY_METHODS,
    ResilientTransport,
    default_key,
    fetch_all,
    retry_after,
)
from anyway.testing import no_backoff
from http_server import RealServer

pytestmark = pytest.mark.anyio

# Tiny, exact waits for the real-server tests.
TINY = Backoff(initial=0.001, max=0.01, jitter=None)
# Plain http only: skip loading the CA bundle for every transport (slow).
_NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def real_transport(**options: Any) -> ResilientTransport:
    options.setdefault("backoff", TINY)
    return ResilientTransport(httpx.AsyncHTTPTransport(verify=_NO_TLS), **options)


class Events:
    """A hook that keeps the events it receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def scheduled(self) -> list[RetryScheduled]:
        return [e for e in self.events if isinstance(e, RetryScheduled)]

    @property
    def gave_up(self) -> list[RetryGaveUp]:
        return [e for e in self.events if isinstance(e, RetryGaveUp)]


def state_of(breaker: object) -> CircuitState:
    assert isinstance(breaker, CircuitBreaker)
    return breaker.state


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


# --- real server: retries ------------------------------------------------------


@pytest.mark.real_time
async def test_retries_503_then_succeeds(server: RealServer, key: str, events: Events) -> None:
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        response = await client.get(server.url("/flaky", key=key, fails=2))
    assert response.status_code == 200
    assert response.text == "ok"
    assert server.count(key) == 3
    assert [e.attempt for e in events.scheduled] == [1, 2]
    assert [e.delay for e in events.scheduled] == [0.001, 0.002]
    assert events.scheduled[0].policy == f"GET http://127.0.0.1:{server.port}/flaky"


@pytest.mark.real_time
async def test_gives_up_and_returns_the_last_response(
    server: RealServer, key: str, events: Events
) -> None:
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        response = await client.get(server.url("/flaky", key=key, fails=-1, status=502))
        with pytest.raises(httpx.HTTPStatusError):
            response.raise_for_status()
    assert response.status_code == 502
    assert response.text == "unavailable"  # read, and usable
    assert server.count(key) == 3
    (gave_up,) = events.gave_up
    assert gave_up.attempts == 3
    assert gave_up.result is response


@pytest.mark.real_time
async def test_post_is_not_retried_unless_asked(server: RealServer, key: str) -> None:
    async with httpx.AsyncClient(transport=real_transport()) as client:
        response = await client.post(server.url("/flaky", key=key, fails=1), content=b"x")
    assert response.status_code == 503
    assert server.requests(key) == ["POST"]

    methods = {*DEFAULT_RETRY_METHODS, "POST"}
    async with httpx.AsyncClient(transport=real_transport(retry_methods=methods)) as client:
        response = await client.post(server.url("/flaky", key=key, fails=2), content=b"x")
    assert response.status_code == 200
    assert server.requests(key) == ["POST", "POST", "POST"]


@pytest.mark.real_time
async def test_streaming_body_is_not_retried(server: RealServer, key: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    async with httpx.AsyncClient(transport=real_transport()) as client:
        response = await client.put(server.url("/flaky", key=key, fails=1), content=body())
        assert response.status_code == 503
        assert server.count(key) == 1
        # Read first, the same body can be sent again.
        request = client.build_request(
            "PUT", server.url("/flaky", key=key, fails=1), content=body()
        )
        await request.aread()
        response = await client.send(request)
    assert response.status_code == 200
    assert server.requests(key) == ["PUT", "PUT"]


@pytest.mark.real_time
async def test_dropped_connection_is_retried(server: RealServer, key: str) -> None:
    async with httpx.AsyncClient(transport=real_transport()) as client:
        response = await client.get(server.url("/close", key=key, fails=2))
        assert response.status_code == 200
        assert server.count(key) == 3

        other = uuid.uuid4().hex
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.get(server.url("/close", key=other))
    assert server.count(other) == 3
    notes = caught.value.__notes__
    assert notes[0].startswith("gave up after 3 attempts in ")
    assert notes[0].endswith(": no attempts left (attempts=3)")
    assert "#1 RemoteProtocolError" in notes[1]


@pytest.mark.real_time
async def test_refused_connection_is_retried_then_raised(events: Events) -> None:
    port = await _closed_port()
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(f"http://127.0.0.1:{port}/")
    assert len(events.scheduled) == 2
    assert all(isinstance(e.error, httpx.ConnectError) for e in events.scheduled)
    assert "gave up after 3 attempts" in caught.value.__notes__[0]


async def _closed_port() -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


# --- real server: Retry-After --------------------------------------------------


@pytest.mark.real_time
@pytest.mark.parametrize(
    ("value", "max_retry_after", "delay"),
    [
        pytest.param("1", 0.05, 0.05, id="seconds-capped"),
        pytest.param("0", 60.0, 0.0, id="zero"),
        pytest.param("99999999999", 0.01, 0.01, id="huge-capped"),
        pytest.param("soon", 60.0, 0.001, id="malformed-uses-backoff"),
        pytest.param("-3", 60.0, 0.001, id="negative-is-malformed"),
    ],
)
async def test_retry_after_seconds(
    server: RealServer,
    key: str,
    events: Events,
    value: str,
    max_retry_after: float,
    delay: float,
) -> None:
    transport = real_transport(max_retry_after=max_retry_after, hooks=events)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(server.url("/flaky", key=key, fails=1, retry_after=value))
    assert response.status_code == 200
    assert server.count(key) == 2
    (scheduled,) = events.scheduled
    assert scheduled.delay == delay


@pytest.mark.real_time
async def test_retry_after_date_in_the_past_means_now(
    server: RealServer, key: str, events: Events
) -> None:
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        url = server.url("/flaky", key=key, fails=1, status=429, retry_after_in=-30)
        response = await client.get(url)
    assert response.status_code == 200
    assert [e.delay for e in events.scheduled] == [0.0]


@pytest.mark.real_time
async def test_retry_after_date_is_measured_from_the_date_header(
    server: RealServer, key: str, events: Events
) -> None:
    # The server's Date and Retry-After come from one clock reading: exactly 1 s.
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        url = server.url("/flaky", key=key, fails=1, retry_after_in=1)
        with deadline(0.5):  # 1 s would cross it: give up at once
            response = await client.get(url)
    assert response.status_code == 503
    assert response.text == "unavailable"
    assert server.count(key) == 1
    (gave_up,) = events.gave_up
    assert gave_up.reason.startswith("waiting 1 s would cross the caller's deadline in 0.")
    assert not events.scheduled

    capped = real_transport(max_retry_after=0.02, hooks=events)
    async with httpx.AsyncClient(transport=capped) as client:
        response = await client.get(server.url("/flaky", key=key, fails=2, retry_after_in=1))
    assert response.status_code == 200
    assert [e.delay for e in events.scheduled] == [0.02]


@pytest.mark.real_time
async def test_huge_retry_after_beyond_the_deadline_returns_at_once(
    server: RealServer, key: str, events: Events
) -> None:
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        start = anyio.current_time()
        with deadline(30):
            response = await client.get(server.url("/flaky", key=key, retry_after=3600))
        elapsed = anyio.current_time() - start
    assert response.status_code == 503
    assert server.count(key) == 1
    assert elapsed < 10  # it did not wait for the capped 60 s, nor for 30
    (gave_up,) = events.gave_up
    assert gave_up.reason.startswith("waiting 60 s would cross the caller's deadline")


# --- real server: deadlines ----------------------------------------------------


@pytest.mark.real_time
async def test_deadline_bounds_a_slow_response(server: RealServer, key: str) -> None:
    async with httpx.AsyncClient(transport=real_transport(), timeout=30.0) as client:
        start = anyio.current_time()
        with pytest.raises(DeadlineExceeded), deadline(0.05):
            await client.get(server.url("/slow", key=key, delay=1))
        elapsed = anyio.current_time() - start
    assert 0.04 <= elapsed < 0.5  # uvloop's timers round to the millisecond
    assert server.count(key) == 1  # no retry crossed the deadline


@pytest.mark.real_time
async def test_each_attempt_gets_timeouts_capped_at_the_deadline(
    server: RealServer, key: str
) -> None:
    seen: list[dict[str, float | None]] = []

    class Spy(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport(verify=_NO_TLS)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(dict(request.extensions["timeout"]))
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    transport = ResilientTransport(Spy(), backoff=TINY)
    timeout = httpx.Timeout(30.0, pool=None)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        request = client.build_request("GET", server.url("/flaky", key=key, fails=1))
        with deadline(5):
            response = await client.send(request)
        assert response.status_code == 200
        # Outside a deadline the client's timeouts go through untouched.
        await client.get(server.url("/ok", key=key))
    first, second, third = seen
    assert set(first) == {"connect", "read", "write", "pool"}
    assert all(0 < value <= 5 for value in first.values())  # type: ignore[operator]
    assert all(0 < value <= first["read"] for value in second.values())  # type: ignore[operator]
    assert third == {"connect": 30.0, "read": 30.0, "write": 30.0, "pool": None}
    # The caller's request keeps its own timeouts.
    assert request.extensions["timeout"] == third


# --- real server: per host -----------------------------------------------------


@pytest.mark.real_time
async def test_keyed_limiter_limits_each_host_separately(server: RealServer, key: str) -> None:
    limiter = KeyedRateLimiter(1, per=60.0)  # one request per host per minute
    async with httpx.AsyncClient(transport=real_transport(limiter=limiter)) as client:
        for host in ("127.0.0.1", "localhost"):
            response = await client.get(server.url("/ok", host=host, key=key))
            assert response.status_code == 200
        assert len(limiter) == 2  # one state per host, both still limited
        with anyio.move_on_after(0.05) as scope:  # a third request must wait ~60 s
            await client.get(server.url("/ok", key=key))
    assert scope.cancelled_caught
    assert server.count(key) == 2


@pytest.mark.real_time
async def test_limiter_forms(server: RealServer, key: str) -> None:
    shared = RateLimiter(1, per=60.0, burst=2)
    async with httpx.AsyncClient(transport=real_transport(limiter=shared)) as client:
        for host in ("127.0.0.1", "localhost"):
            await client.get(server.url("/ok", host=host, key=key))
    assert not shared.try_acquire()  # both requests took from the one budget

    hosts: list[str] = []

    @asynccontextmanager
    async def per_host(host: str) -> AsyncIterator[None]:
        hosts.append(host)
        yield

    async with httpx.AsyncClient(transport=real_transport(limiter=per_host)) as client:
        for host in ("127.0.0.1", "localhost", "127.0.0.1"):
            await client.get(server.url("/ok", host=host, key=key))
    port = server.port
    assert hosts == [f"127.0.0.1:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]


@pytest.mark.real_time
async def test_breaker_opens_per_host(server: RealServer, key: str) -> None:
    transport = real_transport(
        breaker=lambda host: CircuitBreaker(failure_threshold=3, recovery_time=60.0, name=host)
    )
    local, other = f"127.0.0.1:{server.port}", f"localhost:{server.port}"
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(server.url("/flaky", key=key))  # 3 x 503
        assert response.status_code == 503
        assert state_of(transport.breakers[local]) is CircuitState.OPEN
        with pytest.raises(CircuitOpen):
            await client.get(server.url("/ok", key=key))
        assert server.count(key) == 3  # refused without a request
        # The other host has its own breaker, closed.
        response = await client.get(server.url("/ok", host="localhost", key=key))
        assert response.status_code == 200
    assert state_of(transport.breakers[other]) is CircuitState.CLOSED
    assert "'open'" in repr(transport)


# --- real server: no leaks -----------------------------------------------------


@pytest.mark.real_time
async def test_retried_responses_do_not_leak_connections(server: RealServer, key: str) -> None:
    transport = real_transport()
    async with httpx.AsyncClient(transport=transport) as client:
        before = server.total_connections
        for i in range(5):  # 15 attempts, one after the other
            response = await client.get(server.url("/flaky", key=f"{key}-{i}", fails=2))
            assert response.status_code == 200
        # Every retried response was read: one connection served them all.
        assert server.total_connections - before == 1

        async with anyio.create_task_group() as tg:  # and now 10 at once
            for i in range(5, 15):
                tg.start_soon(client.get, server.url("/flaky", key=f"{key}-{i}", fails=2))
        pool = transport.transport._pool  # type: ignore[attr-defined]
        assert 1 <= len(pool.connections) <= 10
        assert all(connection.is_idle() for connection in pool.connections)
        assert sum(server.count(f"{key}-{i}") for i in range(15)) == 45
    assert transport.transport._pool.connections == []  # type: ignore[attr-defined]


# --- real server: fetch_all ------------------------------------------------------


@pytest.mark.real_time
async def test_fetch_all_reports_every_outcome_in_order(server: RealServer, key: str) -> None:
    dead = f"http://127.0.0.1:{await _closed_port()}/"
    urls: list[str | httpx.URL] = [
        server.url("/ok", key=key),
        server.url("/missing", key=key),
        dead,
        server.url("/flaky", key=f"{key}-f", fails=1),
        server.url("/flaky", key=f"{key}-g", fails=-1),
        httpx.URL(server.url("/ok", key=key)),
    ]
    async with httpx.AsyncClient(transport=real_transport()) as client:
        results = await fetch_all(client, urls, max_at_once=2)
    assert [type(r) for r in results] == [
        outcome.Value,
        outcome.Error,
        outcome.Error,
        outcome.Value,
        outcome.Error,
        outcome.Value,
    ]
    ok, missing, refused, flaky, down, ok_again = results
    assert ok.unwrap().text == "ok"
    assert isinstance(missing, outcome.Error)
    assert isinstance(missing.error, httpx.HTTPStatusError)
    assert missing.error.response.status_code == 404
    assert missing.error.response.text == "not found"  # read: usable after
    assert isinstance(refused, outcome.Error)
    assert isinstance(refused.error, httpx.ConnectError)
    assert flaky.unwrap().status_code == 200
    assert isinstance(down, outcome.Error)
    assert isinstance(down.error, httpx.HTTPStatusError)
    assert down.error.response.status_code == 503
    assert server.count(f"{key}-g") == 3  # the transport retried before giving up
    assert ok_again.unwrap().status_code == 200


@pytest.mark.real_time
async def test_fetch_all_per_request_timeout(server: RealServer, key: str) -> None:
    urls = [server.url("/slow", key=key, delay=1), server.url("/ok", key=key)]
    async with httpx.AsyncClient(transport=real_transport()) as client:
        slow, ok = await fetch_all(client, urls, per_request_timeout=0.05)
    assert isinstance(slow, outcome.Error)
    assert isinstance(slow.error, DeadlineExceeded)
    assert ok.unwrap().status_code == 200


@pytest.mark.real_time
async def test_fetch_all_lets_cancellation_through(server: RealServer, key: str) -> None:
    urls = [server.url("/slow", key=key, delay=1)] * 3
    async with httpx.AsyncClient(transport=real_transport()) as client:
        with anyio.move_on_after(0.05) as scope:
            await fetch_all(client, urls)
            pytest.fail("fetch_all returned although it was cancelled")
    assert scope.cancelled_caught


# --- MockTransport on virtual time: exact waits ----------------------------------


def mock(
    statuses: list[int | type[Exception]],
    headers: dict[str, str] | None = None,
    calls: list[httpx.Request] | None = None,
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
        return httpx.Response(answer, headers=headers, content=b"body")

    return httpx.MockTransport(handler)


def client_for(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


async def test_backoff_waits_are_exact(clock: Any, events: Events) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([503, 502, 200], calls=calls),
        attempts=3,
        backoff=Backoff(initial=1.0, max=10.0, jitter=None),
        hooks=events,
    )
    async with client_for(transport) as client:
        start = clock.now()
        response = await client.get("/items?token=secret")
    assert response.status_code == 200
    assert clock.now() - start == clock.approx(3.0)
    assert len(calls) == 3
    assert [e.delay for e in events.scheduled] == [1.0, 2.0]
    assert {e.policy for e in events.scheduled} == {"GET http://api.test/items"}


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param({"Retry-After": "2"}, 2.0, id="seconds"),
        pytest.param({"Retry-After": "30"}, 4.0, id="capped"),
        pytest.param(
            {
                "Retry-After": "Wed, 21 Oct 2015 07:28:03 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            3.0,
            id="date",
        ),
        pytest.param(
            {
                "Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            0.0,
            id="past-date",
        ),
        pytest.param({"Retry-After": "later"}, 1.0, id="malformed"),
    ],
)
async def test_retry_after_waits_are_exact(
    clock: Any, headers: dict[str, str], wait: float
) -> None:
    transport = ResilientTransport(
        mock([429, 200], headers=headers),
        backoff=Backoff(initial=1.0, max=1.0, jitter=None),
        max_retry_after=4.0,
    )
    async with client_for(transport) as client:
        start = clock.now()
        response = await client.get("/")
    assert response.status_code == 200
    assert clock.now() - start == clock.approx(wait)


async def test_backoff_wait_that_would_cross_the_deadline_is_not_started(clock: Any) -> None:
    transport = ResilientTransport(
        mock([httpx.ConnectError]), backoff=Backoff(initial=4.0, max=4.0, jitter=None)
    )
    async with client_for(transport) as client:
        start = clock.now()
        with pytest.raises(httpx.ConnectError) as caught, deadline(3):
            await client.get("/")
    assert clock.now() - start == clock.approx(0.0)
    note = caught.value.__notes__[0]
    assert "waiting 4 s would cross the caller's deadline in " in note
    if clock.virtual:
        assert note.endswith("in 3 s")


async def test_no_backoff_makes_retries_instant(clock: Any) -> None:
    transport = ResilientTransport(
        mock([503, 503, 200], headers={"Retry-After": "30"}), backoff=Backoff(initial=5, max=5)
    )
    async with client_for(transport) as client:
        start = clock.now()
        with no_backoff():
            response = await client.get("/")
    assert response.status_code == 200
    assert clock.now() - start == clock.approx(0.0)


async def test_cancellation_during_the_wait_is_not_retried(clock: Any, events: Events) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([503], headers={"Retry-After": "10"}, calls=calls), hooks=events
    )
    async with client_for(transport) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.get, "/")
        await anyio.sleep(2)  # it is waiting for the Retry-After of 10 s
        tg.cancel_scope.cancel()
    assert clock.now() == clock.approx(2.0)
    assert len(calls) == 1
    assert len(events.scheduled) == 1
    assert not events.gave_up


async def test_cancelled_body_read_still_closes_the_response(clock: Any) -> None:
    closed: list[bool] = []

    class Stalled(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            await anyio.sleep(3600)
            yield b""  # pragma: no cover

        async def aclose(self) -> None:
            await anyio.lowlevel.checkpoint()  # an await: it runs shielded
            closed.append(True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, stream=Stalled())

    async with client_for(ResilientTransport(httpx.MockTransport(handler))) as client:
        with anyio.move_on_after(1) as scope:
            await client.get("/")
    assert scope.cancelled_caught
    assert closed == [True]


async def test_timeouts_are_capped_and_restored(clock: Any) -> None:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200)

    transport = ResilientTransport(httpx.MockTransport(handler))
    timeout = httpx.Timeout(5.0, read=None, pool=1.0)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        request = client.build_request("GET", "http://api.test/")
        with deadline(2):
            await client.send(request)
        await anyio.sleep(1)
        with deadline(2), deadline(10):  # the earliest deadline wins
            await client.post("http://api.test/", content=b"x")  # not retried: capped too
        await client.send(request)
    capped = {"connect": clock.approx(2.0), "read": clock.approx(2.0), "write": clock.approx(2.0)}
    assert seen[0] == {**capped, "pool": 1.0}
    assert seen[1] == {**capped, "pool": 1.0}
    assert seen[2] == {"connect": 5.0, "read": None, "write": 5.0, "pool": 1.0}
    assert request.extensions["timeout"] == seen[2]


# --- MockTransport: what is retried ----------------------------------------------


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ReadError, httpx.WriteError],
)
async def test_transport_errors_are_retried(error: type[Exception]) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(mock([error, 200], calls=calls), backoff=TINY)
    async with client_for(transport) as client:
        assert (await client.get("/")).status_code == 200
    assert len(calls) == 2


@pytest.mark.parametrize("error", [httpx.LocalProtocolError, httpx.UnsupportedProtocol])
async def test_other_errors_are_not_retried(error: type[Exception]) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(mock([error, 200], calls=calls), backoff=TINY)
    async with client_for(transport) as client:
        with pytest.raises(error):
            await client.get("/")
    assert len(calls) == 1


@pytest.mark.parametrize(("status", "calls_made"), [(500, 1), (404, 1), (503, 3), (429, 3)])
async def test_only_listed_statuses_are_retried(status: int, calls_made: int) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(mock([status], calls=calls), backoff=TINY)
    async with client_for(transport) as client:
        response = await client.get("/")
    assert response.status_code == status
    assert response.content == b"body"
    assert len(calls) == calls_made


async def test_attempts_and_statuses_are_configurable() -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([500, 500, 500, 200], calls=calls), attempts=4, retry_statuses=[500], backoff=TINY
    )
    async with client_for(transport) as client:
        assert (await client.get("/")).status_code == 200
    assert len(calls) == 4

    calls.clear()
    transport = ResilientTransport(mock([503, 200], calls=calls), attempts=1)
    async with client_for(transport) as client:
        assert (await client.get("/")).status_code == 503
    assert len(calls) == 1


async def test_retry_budget_is_shared() -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0.0)
    calls: list[httpx.Request] = []
    transport = ResilientTransport(mock([503], calls=calls), budget=budget, backoff=TINY)
    assert transport.retry.budget is budget
    async with client_for(transport) as client:
        with pytest.raises(httpx.HTTPStatusError):
            (await client.get("/")).raise_for_status()
    assert len(calls) == 1  # the empty budget allowed no retry


# --- MockTransport: breakers -----------------------------------------------------


async def test_breaker_counts_retryable_5xx_and_transport_errors_only() -> None:
    breakers: dict[str, CircuitBreaker] = {}

    def factory(host: str) -> CircuitBreaker:
        breakers[host] = CircuitBreaker(failure_threshold=2, recovery_time=60.0, name=host)
        return breakers[host]

    # 429 is not the server failing; 404 and 500 are not retryable statuses.
    answers: list[int | type[Exception]] = [429, 429, 404, 500, 503, httpx.ConnectError]
    transport = ResilientTransport(mock(answers), breaker=factory, attempts=1)
    async with client_for(transport) as client:
        for _ in range(4):
            await client.get("/")
        assert state_of(breakers["api.test"]) is CircuitState.CLOSED
        assert (await client.get("/")).status_code == 503  # failure 1
        with pytest.raises(httpx.ConnectError):  # failure 2
            await client.get("/")
        assert state_of(breakers["api.test"]) is CircuitState.OPEN
        with pytest.raises(CircuitOpen):
            await client.post("/")  # whatever the method


async def test_breaker_opening_between_attempts_raises_circuit_open(events: Events) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.host == "api.test":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=60.0, name="api")
    transport = ResilientTransport(
        httpx.MockTransport(handler), breaker={"api.test": breaker}, backoff=TINY, hooks=events
    )
    async with client_for(transport) as client:
        with pytest.raises(CircuitOpen) as caught:
            await client.get("/")
        assert len(calls) == 1
        assert caught.value.__notes__[0].startswith("gave up after 2 attempts in ")
        assert "CircuitOpen is not retried" in caught.value.__notes__[0]
        assert isinstance(caught.value.__context__, httpx.ConnectError)
        # A host missing from the mapping has no breaker.
        for _ in range(3):
            assert (await client.get("http://other.test/")).status_code == 200
    assert transport.breakers == {"api.test": breaker}


async def test_breaker_factory_may_return_none_and_is_called_once_per_host() -> None:
    seen: list[str] = []

    def factory(host: str) -> CircuitBreaker | None:
        seen.append(host)
        return None if host == "free.test" else CircuitBreaker(name=host)

    transport = ResilientTransport(mock([200]), breaker=factory)
    async with client_for(transport) as client:
        for url in ("http://free.test/", "http://api.test/", "http://free.test/", "/"):
            await client.get(url)
    assert seen == ["free.test", "api.test"]
    assert list(transport.breakers) == ["api.test"]


async def test_breaker_factory_must_return_a_breaker() -> None:
    transport = ResilientTransport(mock([200]), breaker=lambda host: "oops")  # type: ignore[arg-type,return-value]
    async with client_for(transport) as client:
        with pytest.raises(TypeError, match=r"the breaker factory returned 'oops' for 'api\.test'"):
            await client.get("/")


# --- MockTransport: limiters, lifecycle, repr ----------------------------------


async def test_keyed_limiter_and_custom_key() -> None:
    limiter = KeyedRateLimiter(1, per=60.0)
    transport = ResilientTransport(mock([200]), limiter=limiter, key=lambda r: r.url.path)
    async with client_for(transport) as client:
        await client.get("/a")
        await client.get("/b")
    assert len(limiter) == 2


async def test_lifecycle_is_forwarded_to_the_wrapped_transport() -> None:
    log: list[str] = []

    class Inner(httpx.AsyncBaseTransport):
        async def __aenter__(self) -> Inner:
            log.append("enter")
            return self

        async def __aexit__(self, *exc_info: object) -> None:
            log.append("exit")

        async def aclose(self) -> None:
            log.append("close")

    transport = ResilientTransport(Inner())
    async with transport as entered:
        assert entered is transport
    await transport.aclose()
    assert log == ["enter", "exit", "close"]

    async with httpx.AsyncClient(transport=ResilientTransport(Inner())):
        pass
    assert log[-2:] == ["enter", "exit"]


async def test_default_transport_is_a_fresh_http_transport() -> None:
    transport = ResilientTransport()
    assert isinstance(transport.transport, httpx.AsyncHTTPTransport)
    assert ResilientTransport().transport is not transport.transport
    await transport.aclose()


def test_repr_shows_the_configuration() -> None:
    limiter = KeyedRateLimiter(5)
    transport = ResilientTransport(
        mock([200]),
        retry_methods=["get", "post"],
        limiter=limiter,
        breaker=lambda host: CircuitBreaker(name=host),
    )
    text = repr(transport)
    assert text.startswith("<ResilientTransport attempts=3 backoff=Backoff(initial=0.1, max=10,")
    assert "retry_statuses=(429, 502, 503, 504)" in text
    assert "retry_methods=('GET', 'POST')" in text
    assert f"limiter={limiter!r}" in text
    assert "breakers={}" in text
    assert "transport=<httpx.MockTransport" in text
    assert "retry_methods" not in repr(ResilientTransport(mock([200])))


# --- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"attempts": 0}, ValueError, "attempts must be >= 1, got 0; use attempts=1"),
        ({"attempts": 2.0}, TypeError, "attempts must be a whole number"),
        ({"retry_statuses": 503}, TypeError, "retry_statuses must be a collection"),
        ({"retry_statuses": [600]}, ValueError, r"HTTP status codes \(100-599\), got 600"),
        ({"retry_statuses": [True]}, ValueError, "got True"),
        ({"retry_methods": "GET"}, TypeError, "retry_methods must be a collection"),
        ({"retry_methods": ["GET", 1]}, ValueError, "method names such as 'GET', got 1"),
        ({"max_retry_after": -1}, ValueError, "max_retry_after must be >= 0, got -1"),
        ({"max_retry_after": math.inf}, ValueError, "max_retry_after must be finite"),
        ({"max_retry_after": math.nan}, ValueError, "max_retry_after must be a number, got NaN"),
        ({"backoff": 0.5}, TypeError, "backoff must be an anyway.Backoff"),
        ({"limiter": 5}, TypeError, "limiter must be a keyed limiter"),
        ({"breaker": RateLimiter(1)}, TypeError, "one breaker for every host would let"),
        ({"breaker": 5}, TypeError, "breaker must be callable"),
        ({"max_breakers": 0}, ValueError, "max_breakers must be >= 1, got 0; or max_breakers=None"),
        ({"max_breakers": 1.5}, TypeError, "max_breakers must be a whole number"),
        ({"max_breakers": True}, TypeError, "max_breakers must be a whole number"),
        ({"key": "host"}, TypeError, "key must be callable"),
        ({"hooks": [5]}, TypeError, "hooks must be callables"),
        ({"budget": 5}, TypeError, "budget must be an anyway.RetryBudget"),
    ],
)
def test_bad_options_fail_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ResilientTransport(mock([200]), **options)


def test_sync_transport_is_refused() -> None:
    with pytest.raises(TypeError, match=r"transport must be an httpx\.AsyncBaseTransport"):
        ResilientTransport(httpx.HTTPTransport())  # type: ignore[arg-type]


async def test_fetch_all_bad_input() -> None:
    async with client_for(mock([200])) as client:
        with pytest.raises(ValueError, match="max_at_once must be >= 1"):
            await fetch_all(client, ["/"], max_at_once=0)
        with pytest.raises(ValueError, match="per_request_timeout must be > 0"):
            await fetch_all(client, ["/"], per_request_timeout=0)
        with pytest.raises(TypeError, match="wrap a single one in a list"):
            await fetch_all(client, "http://api.test/")
        with pytest.raises(TypeError, match="limiter must be a keyed limiter"):
            await fetch_all(client, ["/"], limiter=3)  # type: ignore[arg-type]


# --- fetch_all on MockTransport --------------------------------------------------


async def test_fetch_all_takes_requests_urls_and_a_limiter(clock: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"Location": "/"})
        return httpx.Response(
            200, json={"method": request.method, "body": request.content.decode()}
        )

    limiter = KeyedRateLimiter(1, per=1.0)
    async with client_for(httpx.MockTransport(handler)) as client:
        items: list[str | httpx.URL | httpx.Request] = [
            client.build_request("POST", "/", content=b"hello"),
            "http://api.test/a",
            httpx.URL("http://other.test/"),
            "http://api.test/moved",
        ]
        start = clock.now()
        results = await fetch_all(client, iter(items), limiter=limiter, max_at_once=4)
        elapsed = clock.now() - start
    post, first, other, moved = (r.unwrap() for r in results)
    assert json.loads(post.content) == {"method": "POST", "body": "hello"}
    assert first.json()["method"] == "GET"
    assert other.status_code == 200
    assert moved.status_code == 302  # a redirect is not an error
    # Three requests to api.test at 1 per second, other.test in parallel.
    assert elapsed == clock.approx(2.0)


async def test_fetch_all_captures_errors_but_not_cancellation(clock: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/boom":
            raise ValueError("not an HTTP error")
        await anyio.sleep(10)
        return httpx.Response(200)

    async with client_for(httpx.MockTransport(handler)) as client:
        with anyio.move_on_after(1) as scope:
            await fetch_all(client, ["/boom", "/slow"])
        assert scope.cancelled_caught
        (boom,) = await fetch_all(client, ["/boom"])
    assert isinstance(boom, outcome.Error)
    assert isinstance(boom.error, ValueError)


# --- retry_after() -------------------------------------------------------------------


def _response(**headers: str) -> httpx.Response:
    return httpx.Response(503, headers={k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("9" * 400, math.inf),
        ("-1", None),
        ("soon", None),
        ("", None),
        ("1e3", None),
        ("Mon, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_parses_seconds(value: str, expected: float | None) -> None:
    assert retry_after(_response(retry_after=value)) == expected


def test_retry_after_parses_dates() -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after(_response()) is None
    assert retry_after(_response(retry_after="Wed, 21 Oct 2015 07:30:00 GMT", date=date)) == 120.0
    # "-0000" (UTC without saying so) and a past date
    assert retry_after(_response(retry_after="Wed, 21 Oct 2015 07:29:00 -0000", date=date)) == 60
    assert retry_after(_response(retry_after="Wed, 21 Oct 2015 07:00:00 GMT", date=date)) == 0.0
    # No usable Date header: measured from the wall clock.
    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    for headers in ({}, {"date": "yesterday"}):
        wait = retry_after(_response(retry_after=soon, **headers))
        assert wait is not None
        assert 3500 < wait <= 3600
    assert retry_after(_response(retry_after="Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0


def test_default_key_is_host_and_non_default_port() -> None:
    for url, expected in [
        ("https://api.example.com/x?y=1", "api.example.com"),
        ("http://127.0.0.1:8080/", "127.0.0.1:8080"),
        ("http://user:pw@example.com:80/", "example.com"),
    ]:
        assert default_key(httpx.Request("GET", url)) == expected


def test_is_a_public_submodule_with_documented_names() -> None:
    import anyway.httpx as module

    assert "httpx" not in anyway.__all__
    for name in module.__all__:
        assert hasattr(module, name), name
    for public in (ResilientTransport, fetch_all, retry_after, default_key):
        assert public.__doc__


async def test_requests_without_timeouts_go_through() -> None:
    # A request built by hand (no client) has no timeout extension to cap.
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions))
        return httpx.Response(200)

    transport = ResilientTransport(httpx.MockTransport(handler))
    with deadline(5):
        for method in ("GET", "POST"):
            response = await transport.handle_async_request(
                httpx.Request(method, "http://api.test/")
            )
            assert response.status_code == 200
    assert seen == [{}, {}]


def test_attempts_are_named_after_the_request_on_demand() -> None:
    from anyway.httpx import _Attempt

    request = httpx.Request("GET", "http://api.test:8080/items?token=secret")
    attempt = _Attempt(ResilientTransport(mock([200])), request, {}, None)
    assert attempt.__qualname__ == "GET http://api.test:8080/items"
    with pytest.raises(AttributeError):
        attempt.__name__  # noqa: B018


# --- audit: a response is never dropped unclosed --------------------------------------


class _TrackedStream(httpx.AsyncByteStream):
    """A response body that records whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"body"

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()  # an await: it must run shielded
        self.closed = True


@pytest.mark.parametrize("with_breaker", [False, True], ids=["limiter", "limiter+breaker"])
@pytest.mark.parametrize("how", ["raises", "cancelled"])
async def test_response_is_closed_when_leaving_the_limiter_fails(
    clock: Any, with_breaker: bool, how: str
) -> None:
    streams: list[_TrackedStream] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(_TrackedStream())
        return httpx.Response(200, stream=streams[-1])

    class BadExit:
        async def __aenter__(self) -> None:
            pass

        async def __aexit__(self, *exc_info: object) -> None:
            if how == "raises":
                raise RuntimeError("limiter broke")
            await anyio.sleep(10)  # cancelled here, the response in hand

    transport = ResilientTransport(
        httpx.MockTransport(handler),
        limiter=BadExit(),
        breaker=(lambda host: CircuitBreaker(name=host)) if with_breaker else None,
    )
    async with client_for(transport) as client:
        start = clock.now()
        with anyio.move_on_after(1) as scope:
            if how == "raises":
                with pytest.raises(RuntimeError, match="limiter broke"):
                    await client.get("/")
            else:
                await client.get("/")
    assert scope.cancelled_caught is (how == "cancelled")
    assert clock.now() - start == clock.approx(0 if how == "raises" else 1)
    assert len(streams) == 1
    assert streams[0].closed


def test_declared_slots_are_not_a_lie() -> None:
    # httpx.AsyncBaseTransport has no __slots__, so a __slots__ declared here
    # would not prevent a __dict__: the transport declares none.
    transport = ResilientTransport(mock([200]))
    assert "__slots__" not in vars(ResilientTransport)
    assert hasattr(transport, "__dict__")


def test_retry_after_date_without_a_date_header_reads_the_wall_clock_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The one wall-clock read of the library is isolated in _wall_clock:
    # only an HTTP-date Retry-After without a usable Date header reaches it.
    import anyway.httpx as module

    reads: list[datetime] = []

    def fake_now() -> datetime:
        reads.append(datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC))
        return reads[-1]

    monkeypatch.setattr(module, "_wall_clock", fake_now)
    assert retry_after(_response(retry_after="Wed, 21 Oct 2015 07:28:30 GMT")) == 30.0
    assert len(reads) == 1
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after(_response(retry_after="Wed, 21 Oct 2015 07:28:30 GMT", date=date)) == 20.0
    assert retry_after(_response(retry_after="12")) == 12.0
    assert len(reads) == 1  # the Date header and delay-seconds need no wall clock


# --- one breaker as a template: a breaker per host ------------------------------


@pytest.mark.real_time
async def test_a_breaker_template_gives_each_host_its_own(server: RealServer, key: str) -> None:
    template = CircuitBreaker(failure_threshold=3, recovery_time=60.0, name="api")
    transport = real_transport(breaker=template)
    local, other = f"127.0.0.1:{server.port}", f"localhost:{server.port}"
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(server.url("/flaky", key=key))  # 3 x 503
        assert response.status_code == 503
        with pytest.raises(CircuitOpen, match=re.escape(f"'api:{local}' is open")):
            await client.get(server.url("/ok", key=key))
        assert server.count(key) == 3  # refused without a request
        response = await client.get(server.url("/ok", host="localhost", key=key))
        assert response.status_code == 200
    breakers = transport.breakers
    assert list(breakers) == [local, other]
    assert [state_of(b) for b in breakers.values()] == [CircuitState.OPEN, CircuitState.CLOSED]
    for host, breaker in breakers.items():
        assert isinstance(breaker, CircuitBreaker)
        assert breaker.name == f"api:{host}"
        assert breaker.config == template.config
    # The template guards nothing itself.
    assert (template.state, template.call_count) == (CircuitState.CLOSED, 0)


@pytest.mark.real_time
async def test_max_breakers_with_real_hosts(server: RealServer, key: str) -> None:
    transport = real_transport(
        breaker=CircuitBreaker(failure_threshold=3, recovery_time=60.0), max_breakers=1
    )
    local, other = f"127.0.0.1:{server.port}", f"localhost:{server.port}"
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url("/ok", key=key))
        await client.get(server.url("/ok", host="localhost", key=key))
        assert list(transport.breakers) == [other]  # local's breaker remembered nothing
        response = await client.get(server.url("/flaky", host="localhost", key=key))
        assert response.status_code == 503  # 3 x 503: other's circuit opens
        await client.get(server.url("/ok", key=key))
        assert list(transport.breakers) == [other, local]  # an open circuit is kept
        with pytest.raises(CircuitOpen):
            await client.get(server.url("/ok", host="localhost", key=key))
    assert server.count(key) == 6  # the refused one never reached the server


async def test_a_breaker_template_copies_settings_and_hooks(clock: Any) -> None:
    changed: list[Event] = []
    template = CircuitBreaker(
        failure_threshold=2, recovery_time=5.0, on=httpx.ConnectError, hooks=changed.append
    )
    answers: list[int | type[Exception]] = [
        httpx.ReadTimeout,  # not in on=: ignored
        httpx.ConnectError,
        httpx.ConnectError,
    ]
    transport = ResilientTransport(mock(answers), breaker=template, attempts=1)
    async with client_for(transport) as client:
        for error in (httpx.ReadTimeout, httpx.ConnectError, httpx.ConnectError):
            with pytest.raises(error):
                await client.get("/")
        with pytest.raises(CircuitOpen) as caught:
            await client.get("/")
    assert caught.value.name == "api.test"  # an unnamed template: the host alone
    assert caught.value.retry_after == clock.approx(5.0)
    assert [(e.policy, e.new) for e in changed if isinstance(e, anyway.BreakerStateChanged)] == [
        ("api.test", CircuitState.OPEN)
    ]
    assert template.state is CircuitState.CLOSED


async def test_a_breaker_template_with_a_shared_store_keeps_state_across_drops() -> None:
    store = anyway.InMemoryBreakerStore()
    template = CircuitBreaker(failure_threshold=1, recovery_time=60.0, name="api", store=store)
    transport = ResilientTransport(
        mock([httpx.ConnectError, 200]), breaker=template, attempts=1, max_breakers=1
    )
    async with client_for(transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")
        assert transport.breakers["api.test"].store is store  # type: ignore[attr-defined]
        # Another host: the first one's breaker is open, so it is kept.
        assert (await client.get("http://b.test/")).status_code == 200
        assert list(transport.breakers) == ["api.test", "b.test"]
        with pytest.raises(CircuitOpen, match=r"'api:api\.test' is open"):
            await client.get("/")
    assert repr(store) == "<InMemoryBreakerStore circuits=3>"  # api, api:api.test, api:b.test


# --- a bounded number of per-host breakers ---------------------------------------


def gate_handler(
    failing: set[str], gates: dict[str, anyio.Event]
) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """Hosts in *failing* refuse connections; a host with a gate waits for it."""

    async def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in gates:
            await gates[host].wait()
        if host in failing:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    return handler


async def get(client: httpx.AsyncClient, host: str) -> None:
    with suppress(httpx.ConnectError, CircuitOpen):
        await client.get(f"http://{host}/")


async def test_breakers_that_remember_nothing_are_dropped_beyond_max_breakers(
    clock: Any,
) -> None:
    made: list[str] = []
    template = CircuitBreaker(failure_threshold=2, recovery_time=1.0)

    def factory(host: str) -> CircuitBreaker:
        made.append(host)
        return template.derive(name=host)

    failing = {"open.test", "half.test", "flaky.test"}
    transport = ResilientTransport(
        httpx.MockTransport(gate_handler(failing, {})),
        breaker=factory,
        attempts=1,
        max_breakers=4,
    )
    async with client_for(transport) as client:
        for _ in range(2):
            await get(client, "half.test")  # opens, and will be half-open
        await anyio.sleep(1.5)
        assert state_of(transport.breakers["half.test"]) is CircuitState.HALF_OPEN
        for _ in range(2):
            await get(client, "open.test")  # open
        await get(client, "flaky.test")  # closed, one failure
        await get(client, "ok.test")  # closed, no failure
        assert list(transport.breakers) == ["half.test", "open.test", "flaky.test", "ok.test"]
        kept = dict(transport.breakers)
        await get(client, "new1.test")  # a fifth host: sweep
        # ok.test remembered nothing; flaky.test has a recent failure; open and
        # half-open circuits are never dropped.
        assert list(transport.breakers) == ["half.test", "open.test", "flaky.test", "new1.test"]
        assert all(transport.breakers[host] is kept[host] for host in kept if host != "ok.test")
        # Three were kept: the next sweep waits for twice as many hosts.
        for host in ("new2.test", "new3.test"):
            await get(client, host)
        assert len(transport.breakers) == 6
        await get(client, "new4.test")  # sweep
        # flaky.test was not used since the last sweep: its failure is old.
        assert list(transport.breakers) == ["half.test", "open.test", "new4.test"]
        await get(client, "ok.test")  # back: a fresh breaker, the factory called again
        assert made.count("ok.test") == 2
        assert transport.breakers["half.test"] is kept["half.test"]
        assert state_of(transport.breakers["open.test"]) is CircuitState.OPEN


async def test_a_breaker_with_requests_in_flight_is_never_dropped(clock: Any) -> None:
    gate = anyio.Event()
    transport = ResilientTransport(
        httpx.MockTransport(gate_handler(set(), {"busy.test": gate})),
        breaker=CircuitBreaker(),
        attempts=1,
        max_breakers=1,
    )
    async with client_for(transport) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(get, client, "busy.test")
            await anyio.sleep(1)
            busy = transport.breakers["busy.test"]
            await get(client, "a.test")  # sweeps: busy.test is in flight, kept
            await get(client, "b.test")  # sweeps: a.test goes, busy.test stays
            assert list(transport.breakers) == ["busy.test", "b.test"]
            assert transport.breakers["busy.test"] is busy
            assert repr(transport._hosts["busy.test"]) == (
                f"<_Host breaker={busy!r} active=1 used=False>"
            )
            gate.set()
        await get(client, "c.test")  # sweeps: busy.test is idle now
        assert list(transport.breakers) == ["c.test"]


async def test_factory_results_other_than_breakers_are_kept_and_none_forgotten() -> None:
    made: list[str] = []
    other = RateLimiter(100)

    def factory(host: str) -> Any:
        made.append(host)
        return other if host == "custom.test" else None

    transport = ResilientTransport(mock([200]), breaker=factory, max_breakers=1)
    async with client_for(transport) as client:
        for host in ("custom.test", "a.test", "b.test", "a.test", "custom.test"):
            await get(client, host)
    assert made == ["custom.test", "a.test", "b.test", "a.test"]
    assert transport.breakers == {"custom.test": other}


async def test_max_breakers_none_keeps_every_breaker() -> None:
    transport = ResilientTransport(mock([200]), breaker=CircuitBreaker(), max_breakers=None)
    async with client_for(transport) as client:
        for i in range(12):
            await get(client, f"h{i}.test")
    assert len(transport.breakers) == 12
    assert "breakers=<12 hosts: 12 closed>" in repr(transport)


async def test_sweeps_stay_rare_when_most_breakers_must_be_kept() -> None:
    sweeps = 0
    transport = ResilientTransport(
        mock([httpx.ConnectError]),
        breaker=CircuitBreaker(failure_threshold=1, recovery_time=60.0),
        attempts=1,
        max_breakers=2,
    )
    sweep = transport._sweep

    def counted() -> None:
        nonlocal sweeps
        sweeps += 1
        sweep()

    transport._sweep = counted  # type: ignore[method-assign]
    async with client_for(transport) as client:
        for i in range(16):
            await get(client, f"h{i}.test")  # every circuit opens: none can go
    assert len(transport.breakers) == 16
    assert sweeps == 3  # with 2, 4 and 8 hosts: amortized O(1) per new host
    assert "breakers=<16 hosts: 16 open>" in repr(transport)
