"""An adversarial pass over the bounded, shielded Redis round trip
(``round_trip`` / ``yield_to_deadline``) as the rate limiters and the breaker
store use it: deadlines that expire while a reply is held, cancellation while
a grant or a probe slot is in flight, a hung server (SIGSTOP) with
``redis_timeout`` on either side of the caller's deadline. Real time against a
real redis-server, as the other Redis tests; what they already cover
(test_redis_limiter.py, test_redis_outage.py) is not repeated."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import coredis
import pytest

import anyway
from anyway import CircuitBreaker, CircuitState, PolicyEvent
from anyway.redis import (
    RedisBreakerStore,
    RedisFailedOpen,
    RedisKeyedRateLimiter,
    RedisRateLimiter,
    RedisUnavailable,
)
from redis_server import (
    COREDIS_UNCLOSED_STREAMS,
    Recorder,
    RedisServer,
    own_redis_server,  # noqa: F401
    redis_server,  # noqa: F401
)

pytestmark = [pytest.mark.anyio, pytest.mark.real_time, *COREDIS_UNCLOSED_STREAMS]

KINDS = pytest.mark.parametrize("kind", ["single", "keyed"])
MODES = pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Any]:  # noqa: F811
    async with coredis.Redis.from_url(redis_server.url) as c:
        yield c


def unique() -> str:
    return f"adv-{uuid.uuid4().hex[:12]}"


class Limit:
    """One limiter of either kind, with the operations the tests need."""

    def __init__(self, kind: str, client: Any, rate: float, per: float, **kw: Any) -> None:
        self.keyed = kind == "keyed"
        cls = RedisKeyedRateLimiter if self.keyed else RedisRateLimiter
        self.limiter: Any = cls(client, unique(), rate, per, **kw)

    async def acquire(self) -> None:
        await (self.limiter.acquire("k") if self.keyed else self.limiter.acquire())

    async def try_acquire(self) -> bool:
        return bool(
            await (self.limiter.try_acquire("k") if self.keyed else self.limiter.try_acquire())
        )

    @property
    def key(self) -> str:
        return str(self.limiter.key_for("k") if self.keyed else self.limiter.key)


# --- a reply held past the caller's deadline -------------------------------------------------


@KINDS
@MODES
async def test_a_deadline_expiring_while_the_grant_is_held(
    client: Any, kind: str, mode: str
) -> None:
    """The server granted, the reply is held past the caller's deadline: the
    caller gets its DeadlineExceeded (no outage, no unchecked fail-open grant,
    no event) without waiting for the reply, and the unit it cannot know it was
    granted stays spent: never more than the limit (rate 1 per 10 s here)."""
    events: list[PolicyEvent] = []
    await Limit(kind, client, 1, 10.0).try_acquire()  # the script is cached: one held EVALSHA
    rec = Recorder(client)
    limit = Limit(kind, rec, 1, 10.0, on_unavailable=mode, hooks=events.append)
    rec.delay = 0.2  # after the server has answered
    start = anyio.current_time()
    with pytest.raises(anyway.DeadlineExceeded), anyway.deadline(0.03):
        await limit.acquire()
    assert anyio.current_time() - start < 0.15  # not held until the reply
    assert events == []
    assert limit.limiter.waiting == 0
    assert len(rec.grants) == 1  # the script ran and granted
    rec.delay = 0.0
    assert await client.exists([limit.key]) == 1
    assert not await limit.try_acquire()  # the unit is spent, not granted twice


@KINDS
async def test_try_acquire_cancelled_while_its_grant_is_in_flight_gives_it_back(
    client: Any, kind: str
) -> None:
    rec = Recorder(client, delay=0.05)
    limit = Limit(kind, rec, 1, 10.0)
    answers: list[bool] = []

    async def take() -> None:
        answers.append(await limit.try_acquire())

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await anyio.sleep(0.02)  # granted on the server, the reply held
            scope.cancel()
    assert answers == []  # the cancellation propagated, no answer
    assert len(rec.grants) == 1
    assert await client.exists([limit.key]) == 0  # given back: a limit at rest
    rec.delay = 0.0
    assert await limit.try_acquire()


# --- the breaker store ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["cancelled", "deadline"])
async def test_a_probe_slot_in_flight_is_given_back(client: Any, how: str) -> None:
    """A half-open circuit's only probe slot is granted on the server while the
    reply is held, and the caller is cancelled (the round trip finishes,
    shielded) or its deadline expires (the round trip is cut): the slot goes
    back either way, so the next call probes instead of being refused until
    the slot's lease runs out."""
    rec = Recorder(client)
    breaker = CircuitBreaker(
        name=unique(),
        failure_threshold=1,
        recovery_time=0.05,
        half_open_max_calls=1,
        store=RedisBreakerStore(rec, probe_lease=30.0),
    )
    ran: list[str] = []

    async def body(label: str) -> None:
        ran.append(label)
        if label == "fail":
            raise OSError("down")

    with pytest.raises(OSError, match="down"):
        await breaker.call(body, "fail")
    await anyio.sleep(0.06)  # half-open now: one probe slot
    rec.delay = 0.1
    if how == "cancelled":
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(breaker.call, body, "cancelled")
                await anyio.sleep(0.03)
                scope.cancel()
    else:
        with pytest.raises(anyway.DeadlineExceeded), anyway.deadline(0.03):
            await breaker.call(body, "cut")
    rec.delay = 0.0
    assert ran == ["fail"]  # the admitted-then-cancelled call never ran
    snapshot = await breaker.store.snapshot(breaker.name, breaker.config)  # type: ignore[union-attr]
    assert snapshot.probes_in_flight == 0
    await breaker.call(body, "probe")  # admitted: the slot was given back
    assert ran == ["fail", "probe"]
    assert breaker.state is CircuitState.CLOSED


# --- a hung server ----------------------------------------------------------------------------


@pytest.fixture
async def own_client(own_redis_server: RedisServer) -> AsyncIterator[Any]:  # noqa: F811
    async with coredis.Redis.from_url(own_redis_server.url) as c:
        yield c


@MODES
async def test_a_hung_server_with_redis_timeout_inside_the_deadline(
    own_client: Any,
    own_redis_server: RedisServer,  # noqa: F811
    mode: str,
) -> None:
    """redis_timeout comes first: the outage is reported (fail_closed) or the
    call let through with an event (fail_open) at redis_timeout, well within
    the caller's deadline, which is not touched."""
    events: list[PolicyEvent] = []
    limiter = RedisRateLimiter(
        own_client, unique(), 100, on_unavailable=mode, redis_timeout=0.05, hooks=events.append
    )
    breaker = CircuitBreaker(
        name=unique(),
        store=RedisBreakerStore(
            own_client, on_unavailable=mode, redis_timeout=0.05, hooks=events.append
        ),
    )
    await limiter.acquire()  # connected
    assert own_redis_server.pid is not None
    os.kill(own_redis_server.pid, signal.SIGSTOP)
    try:
        with anyway.deadline(1.0):
            start = anyio.current_time()
            if mode == "fail_closed":
                with pytest.raises(RedisUnavailable, match=r"no reply within 0\.05 s"):
                    await limiter.acquire()
                with pytest.raises(RedisUnavailable, match=r"no reply within 0\.05 s"):
                    await breaker.call(anyio.sleep, 0)
            else:
                await limiter.acquire()
                await breaker.call(anyio.sleep, 0)
            assert anyio.current_time() - start < 0.5
    finally:
        os.kill(own_redis_server.pid, signal.SIGCONT)
    if mode == "fail_open":
        assert [type(e) for e in events] == [RedisFailedOpen, RedisFailedOpen]
    with anyio.fail_after(2):
        await limiter.acquire()  # the same client works again
        await breaker.call(anyio.sleep, 0)


@MODES
async def test_a_hung_breaker_store_holds_the_caller_no_longer_than_the_slots_give_back(
    own_client: Any,
    own_redis_server: RedisServer,  # noqa: F811
    mode: str,
) -> None:
    """The caller's deadline cuts the admission's round trip: the caller gets
    its DeadlineExceeded (the call neither runs nor is let through unchecked,
    even failing open), after the shielded give-back of the probe slot the
    admission may have taken, which redis_timeout bounds (a slot left taken
    would refuse every probe for the lease, 10 s at least)."""
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        name=unique(),
        store=RedisBreakerStore(
            own_client, on_unavailable=mode, redis_timeout=0.2, hooks=events.append
        ),
    )
    ran: list[int] = []

    async def body() -> None:
        ran.append(1)

    await breaker.call(body)  # connected
    assert own_redis_server.pid is not None
    os.kill(own_redis_server.pid, signal.SIGSTOP)
    try:
        start = anyio.current_time()
        with pytest.raises(anyway.DeadlineExceeded), anyway.deadline(0.05):
            await breaker.call(body)
        assert anyio.current_time() - start < 0.05 + 0.2 + 0.15
    finally:
        os.kill(own_redis_server.pid, signal.SIGCONT)
    assert ran == [1]
    # the give-back found Redis unavailable: raised into a note on the way out
    # (fail_closed), or reported (fail_open); nothing was admitted either way
    if mode == "fail_open":
        assert [(type(e), getattr(e, "operation", None)) for e in events] == [
            (RedisFailedOpen, "release")
        ]
    else:
        assert events == []
    with anyio.fail_after(2):
        await breaker.call(body)
