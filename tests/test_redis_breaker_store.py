"""RedisBreakerStore against a real redis-server: the BreakerStore protocol
(anyway.abc) operation by operation, the same answers as the in-memory store
for the same operations, probe slots shared by several store objects (as by
several processes), leases, windows, outages, and CircuitBreakers in
different "processes" sharing one circuit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anyio
import coredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyway import BreakerConfig, CircuitOpen, CircuitState, CountWindow, Rejected, TimeWindow
from anyway.redis import RedisBreakerStore, RedisFailedOpen, RedisUnavailable
from redis_server import (
    COREDIS_UNCLOSED_STREAMS,
    RedisServer,
    own_redis_server,  # noqa: F401
    redis_server,  # noqa: F401
)

pytestmark = [pytest.mark.anyio, pytest.mark.real_time, *COREDIS_UNCLOSED_STREAMS]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Any]:  # noqa: F811
    async with coredis.Redis.from_url(redis_server.url) as c:
        yield c


def unique() -> str:
    return f"b-{uuid.uuid4().hex[:12]}"


def config(**kw: Any) -> BreakerConfig:
    return BreakerConfig(
        **{"failure_threshold": 3, "recovery_time": 60.0, "half_open_max_calls": 2, **kw}
    )


async def test_consecutive_failures_open_then_probes_close(client: Any) -> None:
    store, key, cfg = RedisBreakerStore(client), unique(), config(recovery_time=0.1)
    snap = await store.snapshot(key, cfg)
    assert snap.state is CLOSED
    assert await client.exists(list(store.keys_for(key))) == 0  # reading stores nothing
    update = await store.acquire(key, cfg, 1)
    assert update.ticket is not None
    assert update.previous is None
    ticket = update.ticket
    for call in (1, 2):
        update = await store.record(key, cfg, call, ticket, failure=True, slow=False)
        assert update.snapshot.failure_count == call
        assert update.previous is None
    update = await store.record(key, cfg, 3, ticket, failure=True, slow=False)
    assert (update.previous, update.snapshot.state) == (CLOSED, OPEN)
    assert (update.kind, update.reason) == ("failures", "3 consecutive failures")
    assert update.snapshot.retry_after is not None
    assert 0.09 < update.snapshot.retry_after <= 0.1
    refused = await store.acquire(key, cfg, 4)
    assert refused.ticket is None
    assert refused.snapshot.state is OPEN
    # a stale ticket says nothing
    stale = await store.record(key, cfg, 1, ticket, failure=False, slow=False)
    assert (stale.previous, stale.snapshot.state) == (None, OPEN)

    await anyio.sleep(0.11)
    assert (await store.snapshot(key, cfg)).state is HALF_OPEN
    probe = await store.acquire(key, cfg, 5)
    assert (probe.previous, probe.kind, probe.reason) == (
        OPEN,
        "recovery_time",
        "0.1 s since it opened",
    )
    assert probe.snapshot.state is HALF_OPEN
    assert probe.snapshot.probes_in_flight == 1
    assert probe.ticket is not None
    second = await store.acquire(key, cfg, 6)
    assert second.ticket == probe.ticket
    assert (await store.acquire(key, cfg, 7)).ticket is None  # two probes at most
    done = await store.record(key, cfg, 5, probe.ticket, failure=False, slow=False)
    assert done.snapshot.success_count == 1
    assert done.snapshot.probes_in_flight == 1
    assert (await store.acquire(key, cfg, 8)).ticket is None  # running + succeeded = 2
    closed = await store.record(key, cfg, 6, probe.ticket, failure=False, slow=False)
    assert (closed.previous, closed.snapshot.state, closed.kind) == (
        HALF_OPEN,
        CLOSED,
        "probes_succeeded",
    )
    assert closed.reason == "2 probes succeeded"


async def test_probe_slots_are_shared_by_every_store_object(client: Any) -> None:
    """Ten store objects (ten processes, each with its own call ids) racing for
    the probe slots after the recovery time: two get one."""
    key, cfg = unique(), config(recovery_time=0.05, half_open_max_calls=2)
    stores = [RedisBreakerStore(client) for _ in range(10)]
    await stores[0].force(key, cfg, OPEN, seconds=0.05)
    await anyio.sleep(0.06)
    tickets: dict[int, int | None] = {}

    async def race(i: int) -> None:
        tickets[i] = (await stores[i].acquire(key, cfg, 1)).ticket  # same call id everywhere

    async with anyio.create_task_group() as tg:
        for i in range(len(stores)):
            tg.start_soon(race, i)
    admitted = [i for i, t in tickets.items() if t is not None]
    assert len(admitted) == 2
    # a probe that fails reopens for everyone
    ticket = tickets[admitted[0]]
    assert ticket is not None
    update = await stores[admitted[0]].record(key, cfg, 1, ticket, failure=True, slow=False)
    assert (update.previous, update.snapshot.state, update.kind) == (
        HALF_OPEN,
        OPEN,
        "probe_failed",
    )
    assert (await stores[5].acquire(key, cfg, 2)).ticket is None


async def test_release_frees_a_slot_and_a_lease_runs_out(client: Any) -> None:
    key, cfg = unique(), config(recovery_time=0.02, half_open_max_calls=1)
    store = RedisBreakerStore(client, probe_lease=0.1)
    await store.force(key, cfg, OPEN, seconds=0.02)
    await anyio.sleep(0.03)
    first = await store.acquire(key, cfg, 1)
    assert first.ticket is not None
    assert (await store.acquire(key, cfg, 2)).ticket is None
    released = await store.release(key, cfg, 1)
    assert released.snapshot.probes_in_flight == 0
    await store.release(key, cfg, 1)  # idempotent
    await store.release(key, cfg, 99)  # unknown: a no-op
    assert (await store.acquire(key, cfg, 2)).ticket is not None
    # call 2 "dies" holding the slot: after its lease another call gets it
    assert (await store.acquire(key, cfg, 3)).ticket is None
    await anyio.sleep(0.11)
    assert (await store.acquire(key, cfg, 3)).ticket is not None
    # the dead call's late outcome says nothing
    late = await store.record(key, cfg, 2, first.ticket, failure=True, slow=False)
    assert late.previous is None


async def test_count_window_failure_and_slow_rates(client: Any) -> None:
    store, key = RedisBreakerStore(client), unique()
    cfg = config(window=CountWindow(4), minimum_calls=4, failure_rate_threshold=0.5)
    ticket = (await store.acquire(key, cfg, 1)).ticket
    assert ticket is not None
    for failure in (True, False, False):
        update = await store.record(key, cfg, 1, ticket, failure=failure, slow=False)
        assert update.previous is None
    update = await store.record(key, cfg, 1, ticket, failure=False, slow=False)
    assert update.snapshot.call_count == 4
    assert update.snapshot.failure_count == 1
    # the oldest (a failure) drops out; two new failures: 2 of 4
    await store.record(key, cfg, 1, ticket, failure=False, slow=False)
    assert (await store.snapshot(key, cfg)).failure_count == 0
    await store.record(key, cfg, 1, ticket, failure=True, slow=False)
    update = await store.record(key, cfg, 1, ticket, failure=True, slow=False)
    assert (update.snapshot.state, update.kind) == (OPEN, "failure_rate")
    assert update.reason == "failure rate 50% >= 50% over 4 calls"

    key2 = unique()
    slow_cfg = config(window=CountWindow(2), minimum_calls=2, slow_call_rate_threshold=1.0)
    ticket = (await store.acquire(key2, slow_cfg, 1)).ticket
    assert ticket is not None
    await store.record(key2, slow_cfg, 1, ticket, failure=False, slow=True)
    update = await store.record(key2, slow_cfg, 1, ticket, failure=False, slow=True)
    assert (update.kind, update.reason) == (
        "slow_call_rate",
        "slow call rate 100% >= 100% over 2 calls",
    )


async def test_time_window_forgets_old_outcomes(client: Any) -> None:
    store, key = RedisBreakerStore(client), unique()
    cfg = config(window=TimeWindow(0.2, buckets=2), minimum_calls=10)
    ticket = (await store.acquire(key, cfg, 1)).ticket
    assert ticket is not None
    for _ in range(3):
        await store.record(key, cfg, 1, ticket, failure=True, slow=False)
    assert (await store.snapshot(key, cfg)).failure_count == 3
    await anyio.sleep(0.25)
    assert (await store.snapshot(key, cfg)).failure_count == 0
    update = await store.record(key, cfg, 1, ticket, failure=False, slow=False)
    assert (update.snapshot.call_count, update.snapshot.failure_count) == (1, 0)


async def test_force(client: Any) -> None:
    store, key, cfg = RedisBreakerStore(client), unique(), config()
    held = await store.force(key, cfg, OPEN)
    assert (held.previous, held.kind, held.reason) == (
        CLOSED,
        "operator_open",
        "opened by hand until closed",
    )
    assert held.snapshot.retry_after is None
    assert (await store.force(key, cfg, OPEN, seconds=5.0)).previous is None  # already open
    again = await store.force(key, cfg, OPEN, seconds=5.0, reset=True)
    assert again.reason == "opened by hand for 5 s"
    assert again.snapshot.retry_after is not None
    closed = await store.force(key, cfg, CLOSED)
    assert (closed.previous, closed.kind, closed.reason) == (
        OPEN,
        "operator_close",
        "closed by hand",
    )
    ticket = (await store.acquire(key, cfg, 1)).ticket
    assert ticket is not None
    await store.record(key, cfg, 1, ticket, failure=True, slow=False)
    assert (await store.force(key, cfg, CLOSED)).snapshot.failure_count == 1  # nothing to do
    reset = await store.force(key, cfg, CLOSED, reset=True)
    assert reset.previous is None
    assert reset.snapshot.failure_count == 0
    assert (await store.acquire(key, cfg, 2)).ticket != ticket  # a new generation
    await store.force(key, cfg, OPEN)
    reopened = await store.force(key, cfg, CLOSED, reset=True)
    assert reopened.kind == "operator_reset"
    with pytest.raises(ValueError, match="state must be"):
        await store.force(key, cfg, HALF_OPEN)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(1, 4)),
        st.tuples(st.just("record"), st.integers(1, 4), st.booleans(), st.booleans()),
        st.tuples(st.just("release"), st.integers(1, 4)),
        st.tuples(st.just("force"), st.sampled_from([OPEN, CLOSED]), st.booleans()),
    ),
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, window=st.sampled_from([None, CountWindow(3)]))
async def test_same_answers_as_the_in_memory_store(
    client: Any, ops: list[tuple[Any, ...]], window: CountWindow | None
) -> None:
    """Any sequence of operations (without the clock: nothing recovers in the
    test's time) gets the same answers from Redis as from memory."""
    from anyway import InMemoryBreakerStore

    cfg = config(window=window, minimum_calls=2, failure_rate_threshold=0.5)
    redis_store, memory, key = RedisBreakerStore(client), InMemoryBreakerStore(), unique()
    tickets: dict[str, dict[int, int]] = {"r": {}, "m": {}}
    gen_offset: int | None = None
    for op in ops:
        if op[0] == "acquire":
            r = await redis_store.acquire(key, cfg, op[1])
            m = await memory.acquire(key, cfg, op[1])
            assert (r.ticket is None) == (m.ticket is None)
            if r.ticket is not None and m.ticket is not None:
                tickets["r"][op[1]], tickets["m"][op[1]] = r.ticket, m.ticket
                if gen_offset is None:
                    gen_offset = m.ticket - r.ticket
                assert m.ticket - r.ticket == gen_offset
        elif op[0] == "record":
            if op[1] not in tickets["r"]:
                continue
            r = await redis_store.record(
                key, cfg, op[1], tickets["r"][op[1]], failure=op[2], slow=op[3]
            )
            m = await memory.record(key, cfg, op[1], tickets["m"][op[1]], failure=op[2], slow=op[3])
        elif op[0] == "release":
            r = await redis_store.release(key, cfg, op[1])
            m = await memory.release(key, cfg, op[1])
        else:
            r = await redis_store.force(key, cfg, op[1], reset=op[2])
            m = await memory.force(key, cfg, op[1], reset=op[2])
        assert (r.previous, r.kind, r.reason) == (m.previous, m.kind, m.reason), op
        # retry_after is on two clocks (the server's, ours): equal up to the test's time
        r_after, m_after = r.snapshot.retry_after, m.snapshot.retry_after
        assert (r_after is None) == (m_after is None), op
        if r_after is not None and m_after is not None:
            assert abs(r_after - m_after) < 1.0
        assert replace(r.snapshot, retry_after=None) == replace(m.snapshot, retry_after=None), op


async def test_outage_fail_closed_and_fail_open(own_redis_server: RedisServer) -> None:  # noqa: F811
    cfg, events = config(), []
    async with coredis.Redis.from_url(own_redis_server.url) as client:
        closed = RedisBreakerStore(client)
        opened = RedisBreakerStore(client, on_unavailable="fail_open", hooks=events.append)
        own_redis_server.stop()
        with pytest.raises(RedisUnavailable) as info:
            await closed.acquire("k", cfg, 1)
        assert isinstance(info.value, Rejected)
        update = await opened.acquire("k", cfg, 1)
        assert update.ticket is not None
        assert update.snapshot.state is CLOSED
        await opened.record("k", cfg, 1, update.ticket, failure=True, slow=False)  # dropped
        assert [type(e) for e in events] == [RedisFailedOpen]
        own_redis_server.start()
        assert (await closed.acquire("k", cfg, 2)).ticket is not None
        assert (await closed.snapshot("k", cfg)).failure_count == 0


async def test_breakers_in_several_processes_share_one_circuit(client: Any) -> None:
    from anyway import CircuitBreaker

    name = unique()
    # two breakers, two stores: as in two processes
    a = CircuitBreaker(
        name=name, failure_threshold=2, recovery_time=60.0, store=RedisBreakerStore(client)
    )
    b = CircuitBreaker(
        name=name, failure_threshold=2, recovery_time=60.0, store=RedisBreakerStore(client)
    )

    async def fail() -> None:
        raise OSError("down")

    for breaker in (a, b):
        with pytest.raises(OSError, match="down"):
            await breaker.call(fail)
    # one failure in each process: the circuit is open in both
    for breaker in (a, b):
        with pytest.raises(CircuitOpen):
            await breaker.call(fail)
