"""anyway.httpx against a real HTTP server on 127.0.0.1 (``tests/http_server.py``,
in a thread): real sockets on every loop, with tiny waits."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import outcome
import pytest

import httpx_support
from anyway import (
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    DeadlineExceeded,
    KeyedRateLimiter,
    RateLimiter,
    deadline,
)
from anyway.httpx import DEFAULT_RETRY_METHODS, ResilientTransport, fetch_all
from http_server import RealServer
from httpx_support import (
    NO_TLS,
    TINY,
    Events,
    closed_port,
    real_transport,
    state_of,
)

# The shared fixtures.
server = httpx_support.server
key = httpx_support.key
events = httpx_support.events

pytestmark = [pytest.mark.anyio, pytest.mark.real_time]


# --- real server: retries ------------------------------------------------------


async def test_retries_503_then_succeeds(server: RealServer, key: str, events: Events) -> None:
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        response = await client.get(server.url("/flaky", key=key, fails=2))
    assert response.status_code == 200
    assert response.text == "ok"
    assert server.count(key) == 3
    assert [e.attempt for e in events.scheduled] == [1, 2]
    assert [e.delay for e in events.scheduled] == [0.001, 0.002]
    assert events.scheduled[0].policy == f"GET http://127.0.0.1:{server.port}/flaky"


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


async def test_refused_connection_is_retried_then_raised(events: Events) -> None:
    port = await closed_port()
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(f"http://127.0.0.1:{port}/")
    assert len(events.scheduled) == 2
    assert all(isinstance(e.error, httpx.ConnectError) for e in events.scheduled)
    assert "gave up after 3 attempts" in caught.value.__notes__[0]


# --- real server: Retry-After --------------------------------------------------


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


async def test_retry_after_date_in_the_past_means_now(
    server: RealServer, key: str, events: Events
) -> None:
    async with httpx.AsyncClient(transport=real_transport(hooks=events)) as client:
        url = server.url("/flaky", key=key, fails=1, status=429, retry_after_in=-30)
        response = await client.get(url)
    assert response.status_code == 200
    assert [e.delay for e in events.scheduled] == [0.0]


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


async def test_deadline_bounds_a_slow_response(server: RealServer, key: str) -> None:
    async with httpx.AsyncClient(transport=real_transport(), timeout=30.0) as client:
        start = anyio.current_time()
        with pytest.raises(DeadlineExceeded), deadline(0.05):
            await client.get(server.url("/slow", key=key, delay=1))
        elapsed = anyio.current_time() - start
    assert 0.04 <= elapsed < 0.5  # uvloop's timers round to the millisecond
    assert server.count(key) == 1  # no retry crossed the deadline


async def test_each_attempt_gets_timeouts_capped_at_the_deadline(
    server: RealServer, key: str
) -> None:
    seen: list[dict[str, float | None]] = []

    class Spy(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport(verify=NO_TLS)

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
        assert sum(server.count(f"{key}-{i}") for i in range(15)) == 45
        # Every connection went back to the pool, idle: ten more requests,
        # one after the other, open no new connection.
        before = server.total_connections
        for i in range(15, 25):
            response = await client.get(server.url("/flaky", key=f"{key}-{i}", fails=1))
            assert response.status_code == 200
        assert server.total_connections == before


# --- one breaker as a template: a breaker per host ------------------------------


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
    # The template guards nothing itself.
    assert template.state is CircuitState.CLOSED


async def test_max_breakers_with_real_requests(server: RealServer, key: str) -> None:
    # One breaker per path here, to meet more "hosts" than the server has names.
    transport = real_transport(
        breaker=CircuitBreaker(failure_threshold=3, recovery_time=60.0),
        max_breakers=1,
        key=lambda request: request.url.path,
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url("/ok", key=key))
        response = await client.get(server.url("/flaky", key=key))
        assert response.status_code == 503  # 3 x 503: its circuit opens
        # /ok was used since the last sweep: it may be counting failures, kept.
        assert list(transport.breakers) == ["/ok", "/flaky"]
        await client.get(server.url("/missing", key=key))
        # Swept: /ok's closed circuit was idle since; an open circuit is kept.
        assert list(transport.breakers) == ["/flaky", "/missing"]
        with pytest.raises(CircuitOpen):
            await client.get(server.url("/flaky", key=key))
    assert server.count(key) == 5  # the refused one never reached the server


# --- real server ------------------------------------------------------------------


async def test_fetch_all_reports_every_outcome_in_order(server: RealServer, key: str) -> None:
    dead = f"http://127.0.0.1:{await closed_port()}/"
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


async def test_fetch_all_per_request_timeout(server: RealServer, key: str) -> None:
    urls = [server.url("/slow", key=key, delay=1), server.url("/ok", key=key)]
    async with httpx.AsyncClient(transport=real_transport()) as client:
        slow, ok = await fetch_all(client, urls, per_request_timeout=0.05)
    assert isinstance(slow, outcome.Error)
    assert isinstance(slow.error, DeadlineExceeded)
    assert ok.unwrap().status_code == 200


async def test_fetch_all_lets_cancellation_through(server: RealServer, key: str) -> None:
    urls = [server.url("/slow", key=key, delay=1)] * 3
    async with httpx.AsyncClient(transport=real_transport()) as client:
        with anyio.move_on_after(0.05) as scope:
            await fetch_all(client, urls)
            pytest.fail("fetch_all returned although it was cancelled")
    assert scope.cancelled_caught


async def test_fetch_all_timeout_keeps_what_finished(server: RealServer, key: str) -> None:
    # One at a time: ok, then a hung request, then two that never start.
    urls = [
        server.url("/ok", key=f"{key}-a"),
        server.url("/slow", key=f"{key}-b", delay=1),
        server.url("/ok", key=f"{key}-c"),
        server.url("/flaky", key=f"{key}-d", fails=-1),
    ]
    async with httpx.AsyncClient(transport=real_transport()) as client:
        await warm_up(client, server, 1)
        start = anyio.current_time()
        ok, hung, never, never_either = await fetch_all(client, urls, max_at_once=1, timeout=0.08)
        elapsed = anyio.current_time() - start
        assert elapsed < 0.5  # not the slow request's 1 s (uvloop's timers: ~1 ms)
        assert ok.unwrap().text == "ok"
        for result, what in ((hung, "finished"), (never, "was sent"), (never_either, "was sent")):
            assert isinstance(result, outcome.Error)
            assert isinstance(result.error, DeadlineExceeded)
            assert result.error.seconds == 0.08
            assert (
                str(result.error) == f"fetch_all(timeout=0.08) expired before this request {what}"
            )
        assert [server.count(f"{key}-{k}") for k in "abcd"] == [1, 1, 0, 0]
        # The hung request's connection was dropped, not left in the pool: the
        # client still works, on a new connection.
        (again,) = await fetch_all(client, [server.url("/ok", key=key)], timeout=5)
        assert again.unwrap().status_code == 200


async def warm_up(client: httpx.AsyncClient, server: RealServer, connections: int) -> None:
    """Open *connections* to the server (then idle in the pool): the timed
    requests that follow need no new connection, so a loaded machine does
    not make them miss a real-time timeout."""
    async with anyio.create_task_group() as tg:
        for _ in range(connections):
            tg.start_soon(client.get, server.url("/ok", key="warm-up"))


async def test_fetch_all_timeout_in_parallel(server: RealServer, key: str) -> None:
    urls = [server.url("/slow", key=key, delay=1)] + [server.url("/ok", key=key)] * 5
    async with httpx.AsyncClient(transport=real_transport()) as client:
        await warm_up(client, server, 3)
        hung, *oks = await fetch_all(client, urls, max_at_once=3, timeout=0.08)
    assert isinstance(hung, outcome.Error)
    assert isinstance(hung.error, DeadlineExceeded)
    assert [r.unwrap().status_code for r in oks] == [200] * 5


async def test_fetch_all_timeout_lets_outside_cancellation_through(
    server: RealServer, key: str
) -> None:
    urls = [server.url("/slow", key=key, delay=1)] * 3
    async with httpx.AsyncClient(transport=real_transport()) as client:
        with anyio.move_on_after(0.03) as scope:
            await fetch_all(client, urls, timeout=0.08)
            pytest.fail("fetch_all returned although it was cancelled")
    assert scope.cancelled_caught


async def test_a_sync_client_is_refused_before_any_request(server: RealServer, key: str) -> None:
    with (
        httpx.Client() as client,
        pytest.raises(TypeError, match=r"needs an httpx\.AsyncClient, got a sync httpx\.Client"),
    ):
        await fetch_all(client, [server.url("/ok", key=key)])  # type: ignore[arg-type]
    assert server.count(key) == 0
    with pytest.raises(TypeError, match=r"client must be an httpx\.AsyncClient, got 'http"):
        await fetch_all(server.url("/ok", key=key), [server.url("/ok", key=key)])  # type: ignore[arg-type]


async def test_a_sync_client_is_refused_by_the_transport(server: RealServer, key: str) -> None:
    transport = real_transport()
    client = httpx.Client(transport=transport)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"use it with httpx\.AsyncClient"):
        client.get(server.url("/ok", key=key))  # noqa: ASYNC212 - refused before any I/O
    with (
        pytest.raises(TypeError, match=r"use it with httpx\.AsyncClient"),
        httpx.Client(transport=transport),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover
    with pytest.raises(TypeError, match=r"use it with httpx\.AsyncClient"):
        transport.close()
    await transport.aclose()
    assert server.count(key) == 0
