"""RedisRateLimiter and RedisKeyedRateLimiter against a real redis-server:
exact grant times (the server's clock), burst, timeout, try_acquire, keys and
their TTLs, NOSCRIPT, cancellation, bad input. Real time on every loop (Redis
is a real server); the outage, Cluster and multi-process tests have their own
modules."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import coredis
import pytest

import anyway
from anyway import CallRejected, PolicyEvent, RateLimitExceeded
from anyway.redis import RedisKeyedRateLimiter, RedisRateLimiter
from redis_server import COREDIS_UNCLOSED_STREAMS, Recorder, RedisServer, redis_server, worst_window  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.real_time, *COREDIS_UNCLOSED_STREAMS]

Limiter = RedisRateLimiter | RedisKeyedRateLimiter


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Any]:  # noqa: F811
    async with coredis.Redis.from_url(redis_server.url) as c:
        yield c


def unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def make(kind: str, client: Any, rate: float, per: float = 1.0, **kw: Any) -> Limiter:
    if kind == "keyed":
        return RedisKeyedRateLimiter(client, unique(), rate, per, **kw)
    return RedisRateLimiter(client, unique(), rate, per, **kw)


async def acquire(limiter: Limiter, cost: int = 1, **kw: Any) -> None:
    if isinstance(limiter, RedisKeyedRateLimiter):
        await limiter.acquire("k", cost, **kw)
    else:
        await limiter.acquire(cost, **kw)


async def try_acquire(limiter: Limiter, cost: int = 1) -> bool:
    if isinstance(limiter, RedisKeyedRateLimiter):
        return await limiter.try_acquire("k", cost)
    return await limiter.try_acquire(cost)


def key_of(limiter: Limiter) -> str:
    if isinstance(limiter, RedisKeyedRateLimiter):
        return limiter.key_for("k")
    return limiter.key


async def server_state(client: Any, key: str) -> tuple[int, int | None, int]:
    """(server now in us, stored TAT or None, PTTL in ms), read atomically."""
    reply = await client.eval(
        "local t = redis.call('TIME')"
        " return {t[1] * 1000000 + t[2], redis.call('GET', KEYS[1]) or false,"
        " redis.call('PTTL', KEYS[1])}",
        [key],
        [],
    )
    now, tat, pttl = reply
    return int(now), None if tat is None else int(tat), int(pttl)


KINDS = pytest.mark.parametrize("kind", ["single", "keyed"])


@KINDS
async def test_burst_then_evenly_spaced_on_the_servers_clock(client: Any, kind: str) -> None:
    rec = Recorder(client)
    limiter = make(kind, rec, 20, burst=3)  # T = 50 ms
    for _ in range(6):
        await acquire(limiter)
    g = rec.grants
    assert len(g) == 6
    # three at once, then the n-th (from 0) conforms at first + (n - 2) * 50 ms
    assert g[2] - g[0] < 50_000
    for n in range(3, 6):
        assert g[n] - g[0] >= (n - 2) * 50_000
        assert g[n] - g[0] < (n - 2) * 50_000 + 20_000  # woken when it conformed
    # and no window of 1 s holds more than rate + burst - 1
    assert worst_window(g, 1.0) <= 20 + 3 - 1


@KINDS
async def test_try_acquire_never_waits_and_does_not_jump_the_queue(client: Any, kind: str) -> None:
    limiter = make(kind, client, 10, burst=2)
    assert await try_acquire(limiter)
    assert await try_acquire(limiter)
    with anyio.fail_after(0.05):  # one round trip, no waiting
        assert not await try_acquire(limiter)

    async with anyio.create_task_group() as tg:
        tg.start_soon(acquire, limiter)
        while limiter.waiting == 0:
            await anyio.sleep(0.001)
        assert not await try_acquire(limiter)  # somebody of ours is waiting
    assert limiter.waiting == 0


@KINDS
async def test_cost_above_burst_fails_at_the_call(client: Any, kind: str) -> None:
    limiter = make(kind, client, 10, burst=2)
    with pytest.raises(ValueError, match=r"cost=3 can never be granted: burst=2"):
        await acquire(limiter, 3)
    with pytest.raises(ValueError, match="cost"):
        await try_acquire(limiter, 0)
    with pytest.raises(TypeError, match="cost"):
        await acquire(limiter, 1.5)  # type: ignore[arg-type]
    assert await try_acquire(limiter, 2)  # nothing was taken by the refusals


@KINDS
async def test_timeout_raises_with_retry_after_and_takes_nothing(client: Any, kind: str) -> None:
    events: list[PolicyEvent] = []
    limiter = make(kind, client, 10, hooks=events.append)  # T = 100 ms
    await acquire(limiter)
    _, tat_before, _ = await server_state(client, key_of(limiter))
    with anyio.fail_after(0.05), pytest.raises(RateLimitExceeded) as info:
        await acquire(limiter, timeout=0.02)
    assert info.value.retry_after is not None
    assert 0.05 < info.value.retry_after <= 0.1
    _, tat_after, _ = await server_state(client, key_of(limiter))
    assert tat_after == tat_before
    assert [type(e) for e in events] == [CallRejected]
    assert isinstance(events[0], CallRejected)
    assert events[0].by == "limiter"
    # a timeout that the wait fits in waits
    await acquire(limiter, timeout=0.2)


@KINDS
async def test_queued_waiter_gives_up_no_later_than_its_timeout(client: Any, kind: str) -> None:
    limiter = make(kind, client, 20)  # T = 50 ms
    await acquire(limiter)
    start = anyio.current_time()  # ~ the first grant: the next ones conform at +50, +100, +150 ms
    results: list[str] = []

    async def waiter(max_wait: float | None) -> None:
        try:
            await acquire(limiter, timeout=max_wait)
            results.append("granted")
        except RateLimitExceeded:
            results.append("rejected")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, None)
        tg.start_soon(waiter, None)
        while limiter.waiting < 2:
            await anyio.sleep(0.001)
        # third in line: the estimate (two ahead: 100 ms) fits 0.11 s, then
        # waiting shows that its grant (+150 ms) cannot come in time
        await waiter(0.11)
        assert anyio.current_time() - start <= 0.11 + 0.03
    assert sorted(results) == ["granted", "granted", "rejected"]


@KINDS
async def test_key_is_hash_tagged_and_expires_when_fully_recovered(client: Any, kind: str) -> None:
    limiter = make(kind, client, 10, per=1.0, burst=4, prefix="pfx")  # T = 100 ms
    key = key_of(limiter)
    assert key.startswith(f"pfx:rate:{{{limiter.name}}}")
    for _ in range(3):
        await acquire(limiter)
    now, tat, pttl = await server_state(client, key)
    assert tat is not None
    recovery_ms = (tat - now) / 1000
    assert 250 < recovery_ms <= 300
    # expires at the first millisecond at or after full recovery: never before
    # (that would reset a limited key), at most a millisecond after
    assert recovery_ms - 1 <= pttl <= math.ceil(recovery_ms) + 1
    await anyio.sleep(pttl / 1000 + 0.01)
    assert await client.exists([key]) == 0
    # a fresh key: the whole burst again
    for _ in range(4):
        assert await try_acquire(limiter)


async def test_keyed_keys_are_independent_and_typed(client: Any) -> None:
    limiter = RedisKeyedRateLimiter(client, unique(), 1, per=10.0)
    assert await limiter.try_acquire("a")
    assert not await limiter.try_acquire("a")
    assert await limiter.try_acquire("b")
    assert await limiter.try_acquire(7)
    assert limiter.key_for(7) == f"anyway:rate:{{{limiter.name}}}:7"
    with pytest.raises(TypeError, match=r"key must be a str or an int, got \(1, 2\)"):
        await limiter.try_acquire((1, 2))  # type: ignore[arg-type]
    async with limiter.limit("c"):
        pass
    assert not await limiter.try_acquire("c")


@KINDS
async def test_noscript_after_script_flush_reloads(
    client: Any,
    kind: str,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    limiter = make(kind, client, 1000, burst=10)
    await acquire(limiter)
    assert redis_server.command("SCRIPT", "FLUSH") == b"+OK\r\n"
    await acquire(limiter)  # EVALSHA -> NOSCRIPT -> EVAL, invisible to the caller
    assert await try_acquire(limiter)
    assert (await client.script_exists([_gcra_sha()]))[0]


def _gcra_sha() -> str:
    from anyway._redis_scripts import GCRA

    return GCRA.sha


@KINDS
async def test_cancelled_waiter_takes_nothing_and_the_next_moves_up(client: Any, kind: str) -> None:
    rec = Recorder(client)
    limiter = make(kind, rec, 20)  # T = 50 ms
    await acquire(limiter)
    first = rec.grants[0]
    order: list[str] = []

    async def waiter(name: str) -> None:
        await acquire(limiter)
        order.append(name)

    async with anyio.create_task_group() as tg:
        doomed = anyio.CancelScope()
        tg.start_soon(_in_scope, doomed, waiter, "cancelled")
        await anyio.sleep(0.001)
        tg.start_soon(waiter, "second")
        await anyio.sleep(0.01)
        doomed.cancel()
    assert order == ["second"]
    # the second waiter got the slot the cancelled one would have had
    assert 50_000 <= rec.grants[1] - first < 70_000
    assert limiter.waiting == 0


async def _in_scope(scope: anyio.CancelScope, fn: Any, *args: Any) -> None:
    with scope:
        await fn(*args)


@KINDS
async def test_cancelled_while_the_grant_is_in_flight_gives_it_back(client: Any, kind: str) -> None:
    rec = Recorder(client, delay=0.05)  # the reply is held 50 ms after the server granted
    limiter = make(kind, rec, 1, per=10.0)
    key = key_of(limiter)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(acquire, limiter)
            await anyio.sleep(0.02)  # the server has granted; the reply is on its way
            scope.cancel()
    assert len(rec.grants) == 1  # it was granted...
    assert await client.exists([key]) == 0  # ...and given back: a limit at rest
    rec.delay = 0.0
    assert await try_acquire(limiter)


@KINDS
async def test_cancellation_propagates_from_every_await(client: Any, kind: str) -> None:
    limiter = make(kind, client, 20)
    await acquire(limiter)
    # cancelled before the call: nothing asked
    with anyio.CancelScope() as scope:
        scope.cancel()
        await acquire(limiter)
        pytest.fail("not cancelled")  # pragma: no cover
    # cancelled while sleeping at the head of the queue
    with anyio.move_on_after(0.01) as scope:
        await acquire(limiter)
    assert scope.cancelled_caught
    assert limiter.waiting == 0
    # the unit is still there, 50 ms after the first grant
    with anyio.fail_after(0.1):
        await acquire(limiter)


@KINDS
async def test_caller_deadline_cuts_the_wait(client: Any, kind: str) -> None:
    limiter = make(kind, client, 1, per=10.0)
    await acquire(limiter)
    start = anyio.current_time()
    with pytest.raises(anyway.DeadlineExceeded), anyway.deadline(0.05):
        await acquire(limiter)
    assert anyio.current_time() - start < 0.1
    assert limiter.waiting == 0


@KINDS
@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_a_round_trip_cut_at_the_callers_deadline_is_that_deadline(
    client: Any, kind: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply is held past the caller's deadline, and the deadline's own
    timer fires a tick after the round trip's cut (as uvloop's millisecond
    timers may): the cut must not surface as an outage (nor, with fail_open, as
    a grant unchecked): the caller gets its DeadlineExceeded."""
    import anyway._redis_call as redis_call

    events: list[PolicyEvent] = []
    rec = Recorder(client)
    limiter = make(kind, rec, 100, on_unavailable=mode, hooks=events.append)
    await acquire(limiter)  # the script is cached: the next call is one held EVALSHA
    rec.delay = 1.0
    tick = 0.003
    when = anyio.current_time() + 0.01
    # round_trip sees the deadline a tick before the scope's timer fires
    monkeypatch.setattr(redis_call, "current_effective_deadline", lambda: when)
    with pytest.raises(anyway.DeadlineExceeded), anyway.deadline_at(when + tick):
        await acquire(limiter)
    assert events == []  # neither an outage nor a fail-open grant was reported
    assert limiter.waiting == 0


async def test_many_waiters_cost_one_round_trip_per_grant(client: Any) -> None:
    rec = Recorder(client)
    limiter = RedisRateLimiter(rec, unique(), 50)  # T = 20 ms
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(limiter.acquire)
    assert len(rec.grants) == 20
    # 20 grants; every waiter asks when its turn comes, plus a few early ones
    assert rec.calls < 2 * 20 + 5
    assert worst_window(rec.grants, 1.0) <= 50


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"rate": 0}, ValueError, "rate must be > 0"),
        ({"per": -1}, ValueError, "per must be"),
        ({"burst": 0}, ValueError, "burst must be"),
        ({"on_unavailable": "open"}, ValueError, "on_unavailable must be 'fail_open'"),
        ({"name": "a{b}"}, ValueError, "hash tag"),
        ({"name": 3}, TypeError, "name must be a string"),
        ({"prefix": ""}, ValueError, "prefix must be a non-empty string"),
        ({"redis_timeout": 0}, ValueError, "redis_timeout"),
        ({"client": object()}, TypeError, "client must be a coredis client"),
    ],
)
async def test_bad_arguments_fail_at_construction(
    client: Any, kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"client": client, "name": "n", "rate": 10, **kw}
    for cls in (RedisRateLimiter, RedisKeyedRateLimiter):
        with pytest.raises(error, match=match):
            cls(**args)


async def test_repr_and_properties(client: Any) -> None:
    limiter = RedisRateLimiter(client, "api", 10, per=2.0, burst=3)
    assert repr(limiter) == (
        "<RedisRateLimiter 'api' rate=10 per=2 burst=3 on_unavailable='fail_closed' waiting=0>"
    )
    assert (limiter.name, limiter.rate, limiter.per, limiter.burst) == ("api", 10, 2, 3)
    keyed = RedisKeyedRateLimiter(client, "api", 10, on_unavailable="fail_open")
    assert keyed.on_unavailable == "fail_open"
    assert "RedisKeyedRateLimiter 'api'" in repr(keyed)
    assert "limit 'x' of" in repr(keyed.limit("x"))


async def test_works_where_limiters_are_accepted(client: Any) -> None:
    rec = Recorder(client)
    limiter = RedisRateLimiter(rec, unique(), 1000, burst=5)

    async def double(x: int) -> int:
        return 2 * x

    assert await anyway.map_all(double, range(8), limiter=limiter) == [2 * x for x in range(8)]
    guarded = anyway.resilient(limiter=limiter)(double)
    assert await guarded(4) == 8
    assert len(rec.grants) == 9
