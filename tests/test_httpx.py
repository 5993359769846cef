"""anyway.httpx's ResilientTransport over ``httpx.MockTransport``, on virtual
time: waits are exact."""

from __future__ import annotations

import importlib
import math
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import anyway
import httpx_support
from anyway import (
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    KeyedRateLimiter,
    RateLimiter,
    RetryBudget,
    deadline,
)
from anyway.httpx import POLICY_EXTENSION, RETRY_ERRORS, Policy, ResilientTransport, default_key
from anyway.testing import no_backoff
from httpx_support import TINY, Events, client_for, mock, state_of

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = httpx_support.events  # a fixture


# --- MockTransport on virtual time: exact waits ----------------------------------


async def test_backoff_waits_are_exact(clock: Any, events: Events) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([503, 502, 200], calls=calls),
        attempts=3,
        backoff=anyway.Backoff(initial=1.0, max=10.0, jitter=None),
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
        backoff=anyway.Backoff(initial=1.0, max=1.0, jitter=None),
        max_retry_after=4.0,
    )
    async with client_for(transport) as client:
        start = clock.now()
        response = await client.get("/")
    assert response.status_code == 200
    assert clock.now() - start == clock.approx(wait)


async def test_backoff_wait_that_would_cross_the_deadline_is_not_started(clock: Any) -> None:
    transport = ResilientTransport(
        mock([httpx.ConnectError]), backoff=anyway.Backoff(initial=4.0, max=4.0, jitter=None)
    )
    async with client_for(transport) as client:
        start = clock.now()
        with pytest.raises(httpx.ConnectError) as caught, deadline(3):
            await client.get("/")
    assert clock.now() - start == clock.approx(0.0)
    note = caught.value.__notes__[0]
    match = re.fullmatch(r".*waiting 4 s would cross the caller's deadline in (\S+) s", note)
    assert match is not None, note
    assert float(match[1]) == clock.approx(3.0)


async def test_no_backoff_makes_retries_instant(clock: Any) -> None:
    transport = ResilientTransport(
        mock([503, 503, 200], headers={"Retry-After": "30"}),
        backoff=anyway.Backoff(initial=5, max=5),
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
        # Every breaker was used since the last sweep (never): all kept, and
        # the next sweep waits for twice as many hosts.
        assert len(transport.breakers) == 5
        await get(client, "ok.test")  # used again
        for host in ("new2.test", "new3.test", "new4.test"):
            await get(client, host)
        assert len(transport.breakers) == 8
        await get(client, "new5.test")  # sweep
        # flaky.test was not used since the last sweep: its failure is old.
        # Open and half-open circuits are never dropped; the others were used.
        assert list(transport.breakers) == [
            "half.test",
            "open.test",
            "ok.test",
            "new1.test",
            "new2.test",
            "new3.test",
            "new4.test",
            "new5.test",
        ]
        assert all(transport.breakers[host] is kept[host] for host in kept if host != "flaky.test")
        await get(client, "flaky.test")  # back: a fresh breaker, the factory called again
        assert made.count("flaky.test") == 2
        assert state_of(transport.breakers["flaky.test"]) is CircuitState.CLOSED
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
            await get(client, "a.test")  # sweep: busy.test is in flight, kept
            await get(client, "b.test")  # sweep: all kept, a.test was used
            await get(client, "c.test")
            await get(client, "d.test")  # sweep: a.test goes, busy.test stays
            assert list(transport.breakers) == ["busy.test", "b.test", "c.test", "d.test"]
            assert transport.breakers["busy.test"] is busy
            gate.set()
        for host in ("e.test", "f.test", "g.test"):  # sweep at g: busy.test is idle now
            await get(client, host)
        # busy.test, b.test and c.test were not used since the last sweep.
        assert list(transport.breakers) == ["d.test", "e.test", "f.test", "g.test"]


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


async def test_breakers_with_open_circuits_are_all_kept() -> None:
    transport = ResilientTransport(
        mock([httpx.ConnectError]),
        breaker=CircuitBreaker(failure_threshold=1, recovery_time=60.0),
        attempts=1,
        max_breakers=2,
    )
    async with client_for(transport) as client:
        for i in range(16):
            await get(client, f"h{i}.test")  # every circuit opens: none can go
    assert len(transport.breakers) == 16
    assert "breakers=<16 hosts: 16 open>" in repr(transport)


def test_import_without_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "anyway.httpx" or m.startswith("anyway._http")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(anyway, "httpx", raising=False)
    monkeypatch.setitem(sys.modules, "httpx", None)  # "not installed"
    with pytest.raises(
        ImportError, match=r'anyway\.httpx needs httpx: pip install "anyway\[httpx\]"'
    ):
        importlib.import_module("anyway.httpx")


# --- what is retried, chosen by the caller (issue 17) ------------------------------


async def test_retry_on_adds_an_error() -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(mock([httpx.ProxyError, 200], calls=calls), backoff=TINY)
    async with client_for(transport) as client:
        with pytest.raises(httpx.ProxyError):  # not retried by default: configuration
            await client.get("/")
    assert len(calls) == 1

    calls.clear()
    transport = ResilientTransport(
        mock([httpx.ProxyError, 200], calls=calls),
        backoff=TINY,
        retry_on=(*RETRY_ERRORS, httpx.ProxyError),
    )
    async with client_for(transport) as client:
        assert (await client.get("/")).status_code == 200
    assert len(calls) == 2


async def test_retry_on_removes_an_error() -> None:
    def not_read_timeouts(exc: BaseException) -> bool:
        return isinstance(exc, RETRY_ERRORS) and not isinstance(exc, httpx.ReadTimeout)

    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([httpx.ConnectError, httpx.ReadTimeout, 200], calls=calls),
        backoff=TINY,
        retry_on=not_read_timeouts,
    )
    async with client_for(transport) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/")
    assert len(calls) == 2  # the ConnectError was retried, the ReadTimeout not


async def test_retry_on_never_retries_cancellation(clock: Any) -> None:
    calls: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        await anyio.sleep(10)
        return httpx.Response(200)  # pragma: no cover

    transport = ResilientTransport(httpx.MockTransport(handler), retry_on=BaseException)
    async with client_for(transport) as client:
        with anyio.move_on_after(1) as scope:
            await client.get("/")
    assert scope.cancelled_caught
    assert clock.now() == clock.approx(1.0)
    assert len(calls) == 1


def not_ready(response: httpx.Response) -> bool:
    return response.text == "not ready"


async def test_retry_if_response_sees_the_body(clock: Any, events: Events) -> None:
    bodies = [b"not ready", b"not ready", b"ready"]

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return httpx.Response(200, stream=httpx.ByteStream(body))

    transport = ResilientTransport(
        httpx.MockTransport(handler),
        backoff=anyway.Backoff(initial=1.0, max=1.0, jitter=None),
        retry_if_response=not_ready,
        hooks=events,
    )
    async with client_for(transport) as client:
        start = clock.now()
        response = await client.get("/")
        assert clock.now() - start == clock.approx(2.0)
    assert response.text == "ready"
    assert [e.delay for e in events.scheduled] == [1.0, 1.0]

    # When retrying stops, the last answer is returned, read and usable.
    bodies[:] = [b"not ready"]
    async with client_for(transport) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.text == "not ready"
    assert events.gave_up[-1].attempts == 3


async def test_retry_if_response_honours_retry_after(clock: Any) -> None:
    transport = ResilientTransport(
        mock([200], headers={"Retry-After": "3"}, content=b"not ready"),
        attempts=2,
        retry_if_response=not_ready,
    )
    async with client_for(transport) as client:
        start = clock.now()
        await client.get("/")
        assert clock.now() - start == clock.approx(3.0)


def test_retry_if_response_must_be_sync() -> None:
    async def check(response: httpx.Response) -> bool:
        return True  # pragma: no cover

    with pytest.raises(TypeError, match="retry_if_response must be a plain"):
        ResilientTransport(mock([200]), retry_if_response=check)
    with pytest.raises(TypeError, match="retry_if_response must be callable"):
        ResilientTransport(mock([200]), retry_if_response=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(("respect", "wait"), [(True, 30.0), (False, 1.0)])
async def test_retry_after_can_be_ignored(clock: Any, respect: bool, wait: float) -> None:
    transport = ResilientTransport(
        mock([429, 200], headers={"Retry-After": "30"}),
        backoff=anyway.Backoff(initial=1.0, max=1.0, jitter=None),
        respect_retry_after=respect,
    )
    assert ("respect_retry_after=False" in repr(transport)) is not respect
    async with client_for(transport) as client:
        start = clock.now()
        assert (await client.get("/")).status_code == 200
        assert clock.now() - start == clock.approx(wait)


async def test_a_request_may_bring_its_own_policy(clock: Any) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([503], calls=calls), backoff=anyway.Backoff(initial=1.0, max=1.0, jitter=None)
    )
    no_retry = transport.policy.replace(attempts=1)
    post_too = Policy(
        attempts=2,
        retry_methods={"POST"},
        backoff=anyway.Backoff(initial=5.0, max=5.0, jitter=None),
    )
    async with client_for(transport) as client:
        assert (await client.get("/", extensions={POLICY_EXTENSION: no_retry})).status_code == 503
        assert len(calls) == 1
        start = clock.now()
        await client.post("/", content=b"x", extensions={POLICY_EXTENSION: post_too})
        assert clock.now() - start == clock.approx(5.0)
        assert len(calls) == 3
        await client.get("/")  # the transport's own policy: 3 attempts
        assert len(calls) == 6
        await client.post("/", content=b"x")  # not retried by the transport's policy
        assert len(calls) == 7
        with pytest.raises(TypeError, match=r"must be an anyway\.httpx\.Policy"):
            await client.get("/", extensions={POLICY_EXTENSION: {"attempts": 1}})
    assert no_retry.attempts == 1
    assert transport.policy.attempts == 3


def test_a_policy_is_immutable_and_validated() -> None:
    policy = Policy()
    with pytest.raises(AttributeError, match="immutable"):
        policy.attempts = 2  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown options atempts"):
        policy.replace(atempts=2)
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        policy.replace(attempts=0)
    with pytest.raises(TypeError, match="retry_on must be an exception type"):
        Policy(retry_on=[httpx.ConnectError])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="respect_retry_after must be True or False"):
        Policy(respect_retry_after=1)  # type: ignore[arg-type]
    changed = policy.replace(retry_statuses=[500], respect_retry_after=False)
    assert "retry_statuses=(500,)" in repr(changed)
    assert "respect_retry_after=False" in repr(changed)
    assert repr(policy) == repr(Policy())


@pytest.mark.parametrize("early", [0.0, 1e-3])
async def test_a_timeout_capped_to_the_deadline_is_the_deadline(clock: Any, early: float) -> None:
    # The socket's read timeout was cut down to the deadline; it fires at the
    # deadline, or a hair before it (two timers racing): the caller gets the
    # deadline's DeadlineExceeded (the ReadTimeout in its context).
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(request.extensions["timeout"]["read"] - early)
        raise httpx.ReadTimeout("timed out", request=request)

    transport = ResilientTransport(httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport, timeout=30.0) as client:
        start = clock.now()
        with pytest.raises(anyway.DeadlineExceeded), deadline(2):
            await client.get("http://api.test/")
        assert clock.now() - start == clock.approx(2.0)
        with pytest.raises(anyway.DeadlineExceeded), deadline(2):
            await client.post("http://api.test/")  # not retried: the same


async def test_a_timeout_shorter_than_the_deadline_is_a_timeout(clock: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(request.extensions["timeout"]["read"])
        raise httpx.ReadTimeout("timed out", request=request)

    transport = ResilientTransport(httpx.MockTransport(handler), attempts=1)
    async with httpx.AsyncClient(transport=transport, timeout=1.0) as client:
        start = clock.now()
        with pytest.raises(httpx.ReadTimeout), deadline(10):
            await client.get("http://api.test/")
        assert clock.now() - start == clock.approx(1.0)


async def test_cancelled_while_waiting_for_the_limiter(clock: Any) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([200], calls=calls),
        limiter=KeyedRateLimiter(1, per=10.0),
        breaker=CircuitBreaker(),
        attempts=1,
        max_breakers=1,
    )
    async with client_for(transport) as client:
        await client.get("http://a.test/")
        with anyio.move_on_after(1) as scope:
            await client.get("http://a.test/")  # waits 10 s for a.test's next token
        assert scope.cancelled_caught
        assert clock.now() == clock.approx(1.0)
        assert len(calls) == 1  # never sent
        # Nothing stays reserved: a.test's breaker is idle, so sweeps drop it.
        await client.get("http://b.test/")  # sweep: a.test was used, kept
        await client.get("http://c.test/")  # sweep: a.test idle since, dropped
        assert list(transport.breakers) == ["b.test", "c.test"]
        assert state_of(transport.breakers["b.test"]) is CircuitState.CLOSED


# --- a breaker template: one breaker per host ------------------------------------


async def test_a_breaker_template_copies_settings_and_hooks(clock: Any) -> None:
    changed: list[anyway.PolicyEvent] = []
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


async def test_a_breaker_template_with_a_shared_store_shares_each_hosts_circuit() -> None:
    # Two transports (two processes, with Redis) on one store: a host's
    # circuit opened by one is open for the other, under "<name>:<host>".
    store = anyway.InMemoryBreakerStore()
    template = CircuitBreaker(failure_threshold=1, recovery_time=60.0, name="api", store=store)
    calls: list[httpx.Request] = []
    one = ResilientTransport(mock([httpx.ConnectError]), breaker=template, attempts=1)
    two = ResilientTransport(mock([200], calls=calls), breaker=template, attempts=1)
    async with client_for(one) as first, client_for(two) as second:
        with pytest.raises(httpx.ConnectError):
            await first.get("/")
        with pytest.raises(CircuitOpen, match=r"'api:api\.test' is open"):
            await second.get("/")
        assert calls == []  # refused without a request
        assert (await second.get("http://b.test/")).status_code == 200  # another host
    assert state_of(two.breakers["api.test"]) is CircuitState.OPEN
    assert state_of(two.breakers["b.test"]) is CircuitState.CLOSED


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
    for public in (ResilientTransport, Policy, module.fetch_all, module.retry_after, default_key):
        assert public.__doc__
        assert public.__module__ == "anyway.httpx"
