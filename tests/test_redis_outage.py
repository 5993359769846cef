"""Redis down, refusing or hung: ``fail_open`` grants and emits an event,
``fail_closed`` raises RedisUnavailable (a Rejected), never a raw coredis
error nor a hang past the caller's deadline; the same client and limiter work
again once the server is back on the same port. Each test owns its server."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import anyio
import coredis
import pytest
from coredis.exceptions import ConnectionError as RedisConnectionError

import anyway
from anyway import CallRejected, PolicyEvent, Rejected
from anyway.redis import RedisFailedOpen, RedisKeyedRateLimiter, RedisRateLimiter, RedisUnavailable
from redis_server import COREDIS_UNCLOSED_STREAMS, RedisServer, own_redis_server  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.real_time, *COREDIS_UNCLOSED_STREAMS]


@pytest.fixture
async def client(own_redis_server: RedisServer) -> AsyncIterator[Any]:  # noqa: F811
    async with coredis.Redis.from_url(own_redis_server.url) as c:
        yield c


@pytest.mark.parametrize("keyed", [False, True], ids=["single", "keyed"])
async def test_fail_closed_raises_and_recovers_after_a_restart(
    client: Any,
    own_redis_server: RedisServer,  # noqa: F811
    keyed: bool,
) -> None:
    events: list[PolicyEvent] = []
    if keyed:
        keyed_limiter = RedisKeyedRateLimiter(client, "out", 1000, burst=5, hooks=events.append)

        async def acquire() -> None:
            await keyed_limiter.acquire("k")

        async def try_acquire() -> bool:
            return await keyed_limiter.try_acquire("k")
    else:
        limiter = RedisRateLimiter(client, "out", 1000, burst=5, hooks=events.append)
        acquire, try_acquire = limiter.acquire, limiter.try_acquire
    await acquire()
    own_redis_server.stop()
    with anyio.fail_after(2), pytest.raises(RedisUnavailable) as info:
        await acquire()
    assert isinstance(info.value, Rejected)
    assert isinstance(info.value.__cause__, RedisConnectionError)
    assert "out" in str(info.value)
    with pytest.raises(RedisUnavailable):
        await try_acquire()  # raises rather than returning False
    assert [type(e) for e in events] == [CallRejected, CallRejected]
    assert all(isinstance(e, CallRejected) and e.by == "redis" for e in events)

    own_redis_server.start()  # same port, empty server (no script cached)
    with anyio.fail_after(2):
        await acquire()
        assert await try_acquire()


async def test_fail_open_grants_with_an_event_and_recovers(
    client: Any,
    own_redis_server: RedisServer,  # noqa: F811
) -> None:
    events: list[PolicyEvent] = []
    limiter = RedisRateLimiter(client, "open", 1, per=60.0, on_unavailable="fail_open")
    anyway.add_hook(events.append)
    try:
        await limiter.acquire()
        assert not await limiter.try_acquire()  # limited
        own_redis_server.stop()
        with anyio.fail_after(2):
            await limiter.acquire()  # granted unchecked
            assert await limiter.try_acquire()
        assert [type(e) for e in events] == [RedisFailedOpen, RedisFailedOpen]
        first = events[0]
        assert isinstance(first, RedisFailedOpen)
        assert (first.policy, first.operation) == ("open", "acquire")
        assert isinstance(first.error, RedisConnectionError)
        own_redis_server.start()
        await limiter.acquire()  # a fresh server: a limit at rest
        assert not await limiter.try_acquire()  # limited again
    finally:
        anyway.remove_hook(events.append)


async def test_a_server_going_away_mid_run(
    client: Any,
    own_redis_server: RedisServer,  # noqa: F811
) -> None:
    """Tasks hammering a limit while the server stops and comes back: every
    call ends in a grant or RedisUnavailable, never anything else."""
    limiter = RedisRateLimiter(client, "mid", 2000, burst=20)
    outcomes: dict[str, int] = {"granted": 0, "unavailable": 0}

    async def worker() -> None:
        with anyio.move_on_after(0.6):
            while True:
                try:
                    await limiter.acquire()
                    outcomes["granted"] += 1
                except RedisUnavailable:
                    outcomes["unavailable"] += 1
                    await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(worker)
        await anyio.sleep(0.15)
        own_redis_server.stop()
        await anyio.sleep(0.15)
        own_redis_server.start()
    assert outcomes["granted"] > 0
    assert outcomes["unavailable"] > 0
    assert limiter.waiting == 0
    with anyio.fail_after(1):
        await limiter.acquire()  # and it works after the restart


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
async def test_hung_server_never_holds_past_the_deadline_or_redis_timeout(
    client: Any,
    own_redis_server: RedisServer,  # noqa: F811
    mode: Any,
) -> None:
    limiter = RedisRateLimiter(client, "hung", 100, on_unavailable=mode, redis_timeout=0.1)
    await limiter.acquire()  # connected
    assert own_redis_server.pid is not None
    os.kill(own_redis_server.pid, signal.SIGSTOP)
    try:
        # the caller's deadline comes first: its cancellation wins
        start = anyio.current_time()
        with pytest.raises(anyway.DeadlineExceeded), anyway.deadline(0.05):
            await limiter.acquire()
        assert anyio.current_time() - start < 0.09
        # no deadline: redis_timeout bounds the round trip
        start = anyio.current_time()
        if mode == "fail_closed":
            with pytest.raises(RedisUnavailable, match=r"no reply within 0\.1 s"):
                await limiter.acquire()
        else:
            await limiter.acquire()
        assert anyio.current_time() - start < 0.2
    finally:
        os.kill(own_redis_server.pid, signal.SIGCONT)
