"""The breaker's cancellation matrix, and its invariants under hypothesis.

Cancelled at each await point (while admitted, during a probe, during a
state-change or rejection hook, while another store answers), a call counts
nothing, gives back its probe slot and lets the cancellation propagate; on
the in-memory store and on another store alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyway import (
    BreakerStateChanged,
    CallRejected,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    PolicyEvent,
)
from anyway.testing import Clock
from breaker_helpers import Boom, RemoteStore, fail, succeed

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
WAYS = ["async with", "call", "decorator"]
STORES = ["memory", "remote"]


def make(store: str, **kwargs: Any) -> CircuitBreaker:
    if store == "memory":
        return CircuitBreaker(**kwargs)
    return CircuitBreaker(name="remote", store=RemoteStore(), **kwargs)


async def through(breaker: CircuitBreaker, how: str, body: Callable[[], Awaitable[None]]) -> None:
    if how == "async with":
        async with breaker:
            await body()
    elif how == "call":
        await breaker.call(body)
    else:
        await breaker(body)()


async def truth(breaker: CircuitBreaker) -> tuple[CircuitState, int, int, int]:
    """State, failures, calls and probes in flight, as the store has them."""
    snap = await breaker.snapshot()
    return snap.state, snap.failure_count, snap.call_count, snap.probes_in_flight


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("how", WAYS)
async def test_cancelled_while_admitted(how: str, store: str) -> None:
    breaker = make(store, failure_threshold=3)
    await fail(breaker, 2)
    before = await truth(breaker)
    with anyio.move_on_after(1) as scope:
        await through(breaker, how, anyio.sleep_forever)
    assert scope.cancelled_caught
    assert await truth(breaker) == before == (CLOSED, 2, 2, 0)
    await fail(breaker)  # the streak goes on where it was
    assert breaker.state is OPEN


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("how", WAYS)
async def test_cancelled_during_a_probe(how: str, store: str) -> None:
    breaker = make(store, failure_threshold=1, recovery_time=1, half_open_max_calls=2)
    await fail(breaker)
    await anyio.sleep(1.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(through, breaker, how, anyio.sleep_forever)
        tg.start_soon(through, breaker, how, anyio.sleep_forever)
        await anyio.sleep(0.5)
        assert (await truth(breaker))[3] == 2
        with pytest.raises(CircuitOpen):  # both slots are taken
            await succeed(breaker)
        tg.cancel_scope.cancel()
    assert await truth(breaker) == (HALF_OPEN, 0, 0, 0)
    await succeed(breaker, 2)  # the slots take the next probes
    assert breaker.state is CLOSED


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("how", WAYS)
async def test_cancelled_in_the_hook_that_sees_half_open(how: str, store: str) -> None:
    async def slow_hook(event: PolicyEvent) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is HALF_OPEN:
            await anyio.sleep(5)

    breaker = make(store, failure_threshold=1, recovery_time=1, hooks=slow_hook)
    await fail(breaker)
    await anyio.sleep(1.5)
    ran: list[str] = []

    async def body() -> None:
        ran.append("body")  # pragma: no cover - cancelled before

    with anyio.move_on_after(1) as scope:
        await through(breaker, how, body)
    assert scope.cancelled_caught
    assert ran == []
    assert await truth(breaker) == (HALF_OPEN, 0, 0, 0)
    await succeed(breaker)
    assert breaker.state is CLOSED


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("how", WAYS)
async def test_cancelled_in_the_hook_that_sees_the_probe_close(how: str, store: str) -> None:
    async def slow_hook(event: PolicyEvent) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is CLOSED:
            await anyio.sleep(5)

    breaker = make(store, failure_threshold=1, recovery_time=1, hooks=slow_hook)
    await fail(breaker)
    await anyio.sleep(1.5)
    with anyio.move_on_after(1) as scope:
        await through(breaker, how, anyio.lowlevel.checkpoint)
    assert scope.cancelled_caught  # the cancellation propagates...
    assert await truth(breaker) == (CLOSED, 0, 0, 0)  # ...and the outcome was recorded


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("how", WAYS)
async def test_cancelled_in_the_rejection_hook(how: str, store: str) -> None:
    async def slow_hook(event: PolicyEvent) -> None:
        if isinstance(event, CallRejected):
            await anyio.sleep(5)

    breaker = make(store, failure_threshold=1, recovery_time=10, hooks=slow_hook)
    await fail(breaker)
    with anyio.move_on_after(1) as scope:
        await through(breaker, how, anyio.lowlevel.checkpoint)
    assert scope.cancelled_caught
    assert await truth(breaker) == (OPEN, 0, 0, 0)


@pytest.mark.parametrize("how", WAYS)
async def test_cancelled_while_another_store_records(clock: Clock, how: str) -> None:
    store = RemoteStore()
    breaker = CircuitBreaker(failure_threshold=1, name="remote", store=store)

    async def body() -> None:
        store.delay = 2  # the store now takes 2 s per answer
        raise Boom

    t0 = clock.now()
    with anyio.move_on_after(1) as scope, pytest.raises(Boom):
        await through(breaker, how, body)
    assert not scope.cancelled_caught  # cancelled during the shielded record...
    assert clock.now() - t0 == clock.approx(2)
    store.delay = 0
    assert await truth(breaker) == (OPEN, 0, 0, 0)  # ...which finished: the failure counts


# --- invariants ----------------------------------------------------------------------

# A call: (start delay, duration, how it ends). "F" fails, "S" succeeds, "C" is
# cancelled from outside, "I" raises an error the breaker ignores.
_calls = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]),
        st.sampled_from([0.0, 0.5, 1.0, 3.0]),
        st.sampled_from("FSCI"),
    ),
    max_size=12,
)


class Ignored(Exception):
    pass


@settings(deadline=None, max_examples=60)
@given(calls=_calls, max_calls=st.integers(1, 3), remote=st.booleans())
async def test_at_most_max_calls_probes_at_once_and_nothing_leaks(
    calls: list[tuple[float, float, str]], max_calls: int, remote: bool
) -> None:
    episode = [0]  # bumped each time the circuit half-opens
    running: dict[int, int] = {}  # probes running, per half-open episode
    worst = [0]

    def hook(event: PolicyEvent) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is HALF_OPEN:
            episode[0] += 1

    breaker = make(
        "remote" if remote else "memory",
        failure_threshold=1,
        recovery_time=1,
        half_open_max_calls=max_calls,
        hooks=hook,
        on=Boom,
    )

    async def one(delay: float, duration: float, end: str) -> None:
        await anyio.sleep(delay)
        with anyio.move_on_after(duration / 2 if end == "C" else 60):
            try:
                async with breaker:
                    probe = breaker.state is HALF_OPEN
                    mine = episode[0]
                    if probe:
                        running[mine] = running.get(mine, 0) + 1
                        worst[0] = max(worst[0], running[mine])
                    try:
                        await anyio.sleep(duration)
                    finally:
                        if probe:
                            running[mine] -= 1
                    if end == "F":
                        raise Boom
                    if end == "I":
                        raise Ignored
            except (Boom, Ignored, CircuitOpen):
                pass

    async with anyio.create_task_group() as tg:
        for delay, duration, end in calls:
            tg.start_soon(one, delay, duration, end)
    assert worst[0] <= max_calls
    state, _, _, in_flight = await truth(breaker)
    assert in_flight == 0  # every slot came back, whatever happened
    if state is not CLOSED:  # ... and the circuit still recovers
        await anyio.sleep(1.5)
        await succeed(breaker, max_calls)
        assert breaker.state is CLOSED


@settings(deadline=None, max_examples=60)
@given(outcomes=st.lists(st.sampled_from("SFC"), max_size=30), threshold=st.integers(1, 4))
async def test_cancellation_is_neutral(outcomes: list[str], threshold: int) -> None:
    """The same outcomes with cancelled calls mixed in leave the same state
    and counts as without them."""
    with_cancels = CircuitBreaker(failure_threshold=threshold, recovery_time=1000)
    without = CircuitBreaker(failure_threshold=threshold, recovery_time=1000)
    for outcome in outcomes:
        if outcome == "C":
            if with_cancels.state is not CLOSED:
                continue
            with anyio.CancelScope() as scope:
                async with with_cancels:
                    scope.cancel()
                    await anyio.sleep_forever()
            continue
        for breaker in (with_cancels, without):
            if breaker.state is not CLOSED:
                continue
            if outcome == "S":
                await succeed(breaker)
            else:
                await fail(breaker)
    got, expected = with_cancels.statistics(), without.statistics()
    # (retry_after: read at two moments; on real time they differ)
    assert replace(got, retry_after=None) == replace(expected, retry_after=None)
