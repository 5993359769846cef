"""Adversarial probes of the newest httpx-side code: hedged attempts of
ResilientTransport (cancellation at each await, errors of several copies),
PerKey (eviction, misuse, several event loops, concurrency), RetryBudget in a
new event loop, and deadline-capped timeouts against a real server."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import anyway
import httpx_support
from anyway import AdaptiveLimiter, CircuitBreaker, CircuitState, Hedger, PerKey, RetryBudget
from anyway.httpx import ResilientTransport
from anyway.testing import backends
from http_server import RealServer
from httpx_support import real_transport

server = httpx_support.server  # the shared fixtures
key = httpx_support.key

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


class Stream(httpx.AsyncByteStream):
    """A response body that counts its closes; closing takes *close_time*."""

    def __init__(self, log: list[str], close_time: float = 0.0) -> None:
        self.log = log
        self.close_time = close_time

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"ok"

    async def aclose(self) -> None:
        self.log.append("closing")
        if self.close_time:
            await anyio.sleep(self.close_time)
        self.log.append("closed")


class Host:
    """A MockTransport: answers take *latencies* seconds in turn (the last one
    from then on); *errors* maps a request number (1-based) to the error it
    raises instead; *shielded* answers come even after their copy lost."""

    def __init__(
        self,
        latencies: list[float],
        *,
        errors: dict[int, Exception] | None = None,
        shielded: bool = False,
        status: int = 200,
        slow_close: int = 0,
    ) -> None:
        self.latencies = list(latencies)
        self.errors = errors or {}
        self.shielded = shielded
        self.status = status
        self.slow_close = slow_close  # this request's body takes 0.5 s to close
        self.sent = 0
        self.log: list[str] = []
        self.transport = httpx.MockTransport(self.handler)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        number = self.sent
        latency = self.latencies.pop(0) if len(self.latencies) > 1 else self.latencies[0]
        with anyio.CancelScope(shield=self.shielded):
            await anyio.sleep(latency)
        if number in self.errors:
            raise self.errors[number]
        self.log.append("answered")
        close_time = 0.5 if number == self.slow_close else 0.0
        return httpx.Response(self.status, stream=Stream(self.log, close_time))

    def all_closed(self) -> bool:
        return self.log.count("answered") == self.log.count("closed")


async def cancel_after(seconds: float, scope: anyio.CancelScope) -> None:
    await anyio.sleep(seconds)
    scope.cancel()


def hedgers() -> PerKey[Hedger]:
    return PerKey(lambda host: Hedger(quantile=0.5, max_extra=1.0, warmup=3))


async def warm_up(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.get("http://a/")).status_code == 200


# --- hedged attempts: errors ---------------------------------------------------------


class Bug(Exception):
    pass


class FailingSecondEntry:
    """A limiter shared by every host whose fifth entry (the hedged copy) fails."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.entries = 0

    async def __aenter__(self) -> None:
        self.entries += 1
        if self.entries == 5:
            raise self.error

    async def __aexit__(self, *exc_info: object) -> None:
        pass


@pytest.mark.parametrize("where", ["transport", "limiter"])
async def test_a_bug_in_a_losing_copy_is_raised_not_dropped(clock: Any, where: str) -> None:
    # Copy 1 would answer at 3 s; copy 2 (at 1 s) hits a bug. Without
    # hedging the bug propagates; hedged, it was dropped when copy 1 won.
    errors: dict[int, Exception] = {5: Bug("transport bug")} if where == "transport" else {}
    host = Host([1.0, 1.0, 1.0, 3.0, 0.0], errors=errors)
    limiter = FailingSecondEntry(Bug("limiter bug")) if where == "limiter" else None
    transport = ResilientTransport(host.transport, hedger=hedgers(), limiter=limiter)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        start = clock.now()
        with pytest.raises(Bug, match=f"{where} bug") as caught:
            await client.get("http://a/")
    assert clock.now() - start == clock.approx(1.0)  # at once: copy 1 was cancelled
    assert "Hedger copy #2" in caught.value.__notes__
    assert host.all_closed(), str(host.log)


async def test_a_bug_after_another_copy_failed_keeps_that_error(clock: Any) -> None:
    # Copy 1 fails at 0.5 s and is replaced at once by copy 2, which hits a bug.
    host = Host([1.0, 1.0, 1.0, 0.5, 0.0], errors={4: httpx.ReadError("read"), 5: Bug("bug")})
    transport = ResilientTransport(host.transport, hedger=hedgers(), attempts=1)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        with pytest.raises(Bug) as caught:
            await client.get("http://a/")
    assert caught.value.__notes__[-1] == "another hedged copy also failed: ReadError('read')"


async def test_a_copy_refused_by_its_limiter_lets_the_other_copy_win(clock: Any) -> None:
    # A limiter refusing one copy (anyway.Rejected) is a failure on the way,
    # like a transport error: not a bug that ends the attempt.
    host = Host([1.0, 1.0, 1.0, 3.0])
    limiter = FailingSecondEntry(anyway.Rejected("no room for a copy", retry_after=1.0))
    transport = ResilientTransport(host.transport, hedger=hedgers(), limiter=limiter)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        start = clock.now()
        response = await client.get("http://a/")
    assert response.status_code == 200
    assert clock.now() - start == clock.approx(3.0)
    assert host.sent == 4


async def test_every_copy_failing_differently_keeps_every_error(clock: Any) -> None:
    host = Host(
        [1.0, 1.0, 1.0, 2.0, 0.5],
        errors={4: httpx.ReadError("read"), 5: httpx.ConnectError("connect")},
    )
    transport = ResilientTransport(host.transport, hedger=hedgers(), attempts=1)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        with pytest.raises(httpx.ConnectError) as caught:  # the first to fail
            await client.get("http://a/")
    assert caught.value.__notes__[-1] == "another hedged copy also failed: ReadError('read')"


class SyncSend(httpx.AsyncBaseTransport):
    """A wrapped transport whose handle_async_request is not async."""

    def __init__(self) -> None:
        self.sent = 0

    def handle_async_request(self, request: httpx.Request) -> httpx.Response:  # type: ignore[override]
        self.sent += 1
        return httpx.Response(200)


@pytest.mark.parametrize("options", ["plain", "hedger", "breaker", "limiter"])
async def test_a_sync_handle_async_request_is_a_clear_type_error(options: str) -> None:
    wrapped = SyncSend()
    breaker = CircuitBreaker(failure_threshold=1)
    kwargs: dict[str, Any] = {
        "plain": {},
        "hedger": {"hedger": PerKey(lambda host: Hedger(warmup=0))},
        "breaker": {"breaker": breaker},
        "limiter": {"limiter": anyway.RateLimiter(100)},
    }[options]
    transport = ResilientTransport(wrapped, **kwargs)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            with pytest.raises(TypeError, match=r"transport\.handle_async_request") as caught:
                await client.get("http://a/")
            assert "async def" in str(caught.value)
    assert wrapped.sent == 2  # never retried
    if options == "breaker":
        assert transport.breakers["a"].state is CircuitState.CLOSED  # type: ignore[attr-defined]


# --- hedged attempts: cancellation ---------------------------------------------------


async def test_cancelled_while_a_loser_is_being_closed(clock: Any) -> None:
    # Copy 2 wins at 2 s; copy 1's answer (shielded) comes at 3 s and takes
    # 0.5 s to close; the caller is cancelled at 3.25 s, during that close.
    host = Host([1.0, 1.0, 1.0, 3.0, 1.0], shielded=True, slow_close=4)
    transport = ResilientTransport(host.transport, hedger=hedgers())
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        start = clock.now()
        with anyio.move_on_after(3.25) as scope:
            await client.get("http://a/")  # the winner's body is read without a checkpoint
            await anyio.lowlevel.checkpoint()
            pytest.fail("not cancelled")  # pragma: no cover
    assert scope.cancelled_caught
    assert clock.now() - start == clock.approx(3.5)  # the close was not cut
    assert host.log.count("answered") == 5
    assert host.all_closed(), str(host.log)


async def test_cancelled_while_a_copy_waits_for_the_limiter(clock: Any) -> None:
    host = Host([1.0, 1.0, 1.0, 10.0, 1.0])
    limiters: PerKey[AdaptiveLimiter] = PerKey(
        lambda h: AdaptiveLimiter(initial=1, max_limit=1, name=h)
    )
    transport = ResilientTransport(host.transport, hedger=hedgers(), limiter=limiters)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        with anyio.move_on_after(1.5) as scope:
            await client.get("http://a/")  # copy 2 waits for copy 1's place
        assert scope.cancelled_caught
        stats = limiters["a"].statistics()
        assert (stats.in_flight, stats.waiting, stats.failures) == (0, 0, 0)
        assert host.sent == 4  # copy 2 never reached the host
        start = clock.now()
        assert (await client.get("http://a/")).status_code == 200
        assert clock.now() - start == clock.approx(1.0)  # the place was given back
    assert host.all_closed(), str(host.log)


async def test_a_half_open_probe_cancelled_mid_hedge_frees_its_slot(clock: Any) -> None:
    down = httpx.ConnectError("down")
    host = Host([1.0, 1.0, 1.0, 0.0, 0.0, 10.0, 10.0, 1.0], errors={4: down, 5: down})
    transport = ResilientTransport(
        host.transport,
        hedger=hedgers(),
        attempts=1,
        breaker=CircuitBreaker(failure_threshold=1, recovery_time=5.0, half_open_max_calls=1),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        with pytest.raises(httpx.ConnectError):
            await client.get("http://a/")
        await anyio.sleep(5.0)
        with anyio.move_on_after(1.5) as scope:
            await client.get("http://a/")  # the probe: two copies, cancelled
        assert scope.cancelled_caught
        assert host.sent == 7
        response = await client.get("http://a/")  # the slot is free: another probe
    assert response.status_code == 200
    assert transport.breakers["a"].state is CircuitState.CLOSED  # type: ignore[attr-defined]


async def test_cancelled_during_a_retry_wait_gives_the_budget_back(clock: Any) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.1, window=10.0)  # 1 retry in reserve
    host = Host([0.0], status=503)
    transport = ResilientTransport(
        host.transport,
        hedger=hedgers(),
        budget=budget,
        backoff=anyway.Backoff(initial=5.0, jitter=None),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with anyio.CancelScope() as scope:  # not a deadline: the wait is started
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_after, 1.0, scope)
                await client.get("http://a/")
        assert scope.cancelled_caught
        assert budget.balance == pytest.approx(1.5)  # the deposit kept, the retry refunded
    assert host.sent == 1
    assert host.all_closed(), str(host.log)


async def test_a_breaker_hook_raising_closes_the_hedged_response(clock: Any) -> None:
    def broken(event: anyway.PolicyEvent) -> None:
        if isinstance(event, anyway.BreakerStateChanged) and event.new is CircuitState.OPEN:
            raise Bug("hook bug")

    host = Host([1.0, 1.0, 1.0, 3.0, 1.0], status=200)
    transport = ResilientTransport(
        host.transport,
        hedger=hedgers(),
        attempts=1,
        breaker=CircuitBreaker(failure_threshold=1, hooks=broken),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client)
        host.status = 503
        with pytest.raises(Bug, match="hook bug"):
            await client.get("http://a/")
    assert host.log.count("answered") == 4  # the winner's; the loser was cancelled
    assert host.all_closed(), str(host.log)


# --- PerKey --------------------------------------------------------------------------


async def _async_host(host: str) -> Hedger:
    return Hedger()  # pragma: no cover


def _make(option: str, fn: Any) -> object:
    if option == "factory":
        return PerKey(fn)
    return ResilientTransport(httpx.MockTransport(lambda r: httpx.Response(200)), **{option: fn})


@pytest.mark.parametrize("option", ["factory", "hedger", "limiter", "breaker", "key"])
def test_a_function_that_cannot_take_its_argument_is_refused_at_construction(option: str) -> None:
    # Was accepted, then every request failed ("<lambda>() takes 0 positional
    # arguments"), or with an async def, "coroutine was never awaited".
    with pytest.raises(TypeError, match=rf"^{option} is called with the .*<lambda>\(\).*e\.g\. "):
        _make(option, lambda: None)
    with pytest.raises(TypeError, match=rf"^{option} must be a plain .*got the async function"):
        _make(option, _async_host)
    _make(option, lambda arg, *, extra=1: None)  # one argument is all it takes
    _make(option, lambda *args: None)


def test_a_factory_without_a_signature_or_with_keyword_only_options() -> None:
    assert PerKey(repr)["a"] == "'a'"
    with pytest.raises(TypeError, match="cannot take it as its one argument"):
        PerKey(functools.partial(Hedger, quantile=0.5))  # Hedger(key) would fail


async def test_a_factory_error_propagates_and_stores_nothing() -> None:
    calls = 0

    def factory(key: str) -> Hedger:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Bug("factory bug")
        return Hedger(warmup=0)

    per_host = PerKey(factory)
    transport = ResilientTransport(httpx.MockTransport(lambda r: httpx.Response(200)))
    transport = ResilientTransport(transport.transport, hedger=per_host)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(Bug, match="factory bug"):
            await client.get("http://a/")
        assert "a" not in per_host
        assert (await client.get("http://a/")).status_code == 200
    assert calls == 2


async def test_one_limit_object_entered_by_many_tasks() -> None:
    per_key = PerKey(lambda k: AdaptiveLimiter(initial=2, max_limit=2, name=k), max_keys=1)
    shared = per_key.limit("a")
    inside = 0
    most = 0

    async def use() -> None:
        nonlocal inside, most
        async with shared:
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.001)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(use)
    assert most == 2
    stats = per_key["a"].statistics()
    assert (stats.in_flight, stats.successes) == (0, 6)
    per_key["b"]
    assert list(per_key) == ["b"]  # "a" was released by every task


async def test_many_tasks_few_keys_never_share_a_key_between_two_limiters() -> None:
    # max_keys=1 with three keys evicts constantly; a key in use must keep
    # its limiter, so no key ever has two calls inside its limit of one.
    per_key = PerKey(lambda k: AdaptiveLimiter(initial=1, max_limit=1, name=k), max_keys=1)
    inside: dict[str, int] = {}
    most = 0

    async def use(n: int) -> None:
        nonlocal most
        k = "abc"[n % 3]
        async with per_key.limit(k):
            inside[k] = inside.get(k, 0) + 1
            most = max(most, inside[k])
            await anyio.sleep(0.001 * (n % 4))
            inside[k] -= 1

    async with anyio.create_task_group() as tg:
        for n in range(60):
            tg.start_soon(use, n)
    assert most == 1
    assert len(per_key) == 1  # keys kept while in use were dropped as they were left


HEDGERS_AT_IMPORT: PerKey[Hedger] = PerKey(lambda host: Hedger(warmup=0))
BUDGET_AT_IMPORT = RetryBudget(ratio=1.0, min_per_second=0.0, window=1000.0)
DOWN = {"a": False}


def _answer(request: httpx.Request) -> httpx.Response:
    if DOWN["a"]:
        raise httpx.ConnectError("down", request=request)
    return httpx.Response(200)


TRANSPORT_AT_IMPORT = ResilientTransport(
    httpx.MockTransport(_answer),
    attempts=1,
    hedger=HEDGERS_AT_IMPORT,
    limiter=PerKey(lambda host: AdaptiveLimiter(initial=1, name=host)),
    breaker=CircuitBreaker(failure_threshold=1, recovery_time=1000.0),
)


def test_objects_made_at_import_start_afresh_in_each_run() -> None:
    seen: list[tuple[int, bool]] = []
    keys: list[list[object]] = []

    async def use() -> None:
        keys.append(list(HEDGERS_AT_IMPORT))  # the last run's keys are forgotten
        async with httpx.AsyncClient(transport=TRANSPORT_AT_IMPORT) as client:
            for _ in range(3):  # the last run opened the circuit: forgotten too
                await client.get("http://a/")
            DOWN["a"] = True
            with pytest.raises(httpx.ConnectError):
                await client.get("http://a/")  # opens the circuit
            DOWN["a"] = False
            with pytest.raises(anyway.CircuitOpen):
                await client.get("http://a/")
        # Each run: its own hedger, and a budget that forgot the last run's calls.
        seen.append((HEDGERS_AT_IMPORT["a"].statistics().calls, BUDGET_AT_IMPORT.try_withdraw()))
        for _ in range(40):
            BUDGET_AT_IMPORT.deposit()

    for backend, options in backends() * 2:
        anyio.run(use, backend=backend, backend_options=options)
    assert seen == [(4, False)] * 2 * len(backends())
    assert keys == [[]] * 2 * len(backends())


# --- a real server ---------------------------------------------------------------


@pytest.mark.real_time
async def test_a_hedged_request_at_its_deadline_raises_it_and_leaks_nothing(
    server: RealServer, key: str
) -> None:
    baseline = server.open_connections
    transport = real_transport(hedger=hedgers())
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        for _ in range(3):
            assert (await client.get(server.url("/ok", key=key))).status_code == 200
        with pytest.raises(anyway.DeadlineExceeded), anyway.deadline(0.05):
            await client.get(server.url("/slow", key=key, delay=0.3))
        assert server.count(key) == 5  # both copies were sent
        assert (await client.get(server.url("/ok", key=key))).status_code == 200
        # Both copies' connections were closed; one is idle in the pool.
        assert await connections(server, baseline + 1) == baseline + 1
    assert await connections(server, baseline) == baseline


async def connections(server: RealServer, count: int) -> int:
    """The server's open connections, once they are *count* (or after 2 s)."""
    with anyio.move_on_after(2.0):
        while server.open_connections != count:
            await anyio.sleep(0.005)
    return server.open_connections
