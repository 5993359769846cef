"""CircuitBreaker: transitions, half-open probes, cancellation, windows, store."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyway import (
    BreakerCallRecorded,
    BreakerConfig,
    BreakerSnapshot,
    BreakerStateChanged,
    BreakerUpdate,
    BulkheadFull,
    CallRejected,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    InMemoryBreakerStore,
    PolicyEvent,
    TimeWindow,
    add_hook,
    remove_hook,
)
from anyway.abc import BreakerStore
from anyway.testing._pytest_plugin import Clock
from breaker_helpers import RemoteStore

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
STORE_TIMEOUT = 5.0  # how long a breaker waits, shielded, to give a slot back


class Boom(Exception):
    """The failure the tests' breakers count."""


class Other(Exception):
    """An error the tests' breakers are not told about."""


async def fail(breaker: CircuitBreaker, times: int = 1, exc: type[BaseException] = Boom) -> None:
    for _ in range(times):
        with pytest.raises(exc):
            async with breaker:
                raise exc("down")


async def fail_inside(breaker: CircuitBreaker) -> None:
    async with breaker:
        raise Boom("down")


async def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        async with breaker:
            pass


def changes(events: list[PolicyEvent]) -> list[tuple[CircuitState, CircuitState]]:
    return [(e.old, e.new) for e in events if isinstance(e, BreakerStateChanged)]


def rejections(events: list[PolicyEvent]) -> list[CallRejected]:
    return [e for e in events if isinstance(e, CallRejected)]


# --- transitions -------------------------------------------------------------------


async def test_opens_after_threshold_consecutive_failures() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=3, name="db", hooks=events.append)
    await fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.statistics().failure_count == 2
    with pytest.raises(Boom) as info:
        async with breaker:
            raise Boom("third")
    assert breaker.state is OPEN
    assert info.value.__notes__ == ["circuit breaker 'db' opened: 3 consecutive failures"]
    assert events == [
        BreakerStateChanged(
            policy="db", old=CLOSED, new=OPEN, reason="3 consecutive failures", kind="failures"
        )
    ]
    assert breaker.statistics().failure_count == 0  # a new state counts from zero


async def test_success_resets_the_streak() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    await fail(breaker, 2)
    await succeed(breaker)
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    ) == (0, 1, 3)
    await fail(breaker, 2)
    assert breaker.state is CLOSED
    await fail(breaker)
    assert breaker.state is OPEN


async def test_open_rejects_without_running_and_says_when(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5, name="db", hooks=events.append)
    await fail(breaker)
    t0 = clock.now()
    await anyio.sleep(2)
    ran = False
    with pytest.raises(CircuitOpen) as info:
        async with breaker:
            ran = True
    assert not ran
    assert info.value.name == "db"
    assert info.value.retry_after == clock.approx(5 - (clock.now() - t0))
    if clock.virtual:
        assert info.value.retry_after == 3
    assert "circuit breaker 'db' is open; a probe is allowed in" in str(info.value)
    assert breaker.statistics().retry_after == clock.approx(5 - (clock.now() - t0))
    (rejected,) = rejections(events)
    assert rejected.by == "breaker"
    assert rejected.policy == "db"
    assert rejected.retry_after == info.value.retry_after


async def test_half_opens_after_exactly_recovery_time(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5)
    await fail(breaker)
    t0 = clock.now()
    await anyio.sleep(3)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpen) as info:
        await succeed(breaker)
    assert info.value.retry_after == clock.approx(5 - (clock.now() - t0))
    await anyio.sleep(5 - (clock.now() - t0))
    if clock.virtual:  # exactly at the deadline (real time may wake a hair early)
        assert clock.now() - t0 == 5
        assert breaker.state is HALF_OPEN
        assert breaker.statistics().retry_after is None
    await anyio.sleep(1.5)
    assert breaker.state is HALF_OPEN


async def test_half_open_closes_when_every_probe_succeeds(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=2, half_open_max_calls=2, hooks=events.append
    )
    await fail(breaker)
    await anyio.sleep(3)
    await succeed(breaker)
    assert breaker.state is HALF_OPEN
    assert (
        breaker.statistics().success_count,
        breaker.statistics().call_count,
        breaker.statistics().probes_in_flight,
    ) == (1, 1, 0)
    await succeed(breaker)
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert [e.reason for e in events if isinstance(e, BreakerStateChanged)] == [
        "1 consecutive failure",
        "2 s since it opened",
        "2 probes succeeded",
    ]


async def test_failed_probe_reopens_for_a_fresh_recovery_time(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=4, half_open_max_calls=2, hooks=events.append, name="db"
    )
    await fail(breaker)
    await anyio.sleep(5)
    await succeed(breaker)  # one probe succeeded, one to go...
    await anyio.lowlevel.checkpoint()
    with pytest.raises(Boom) as info:
        async with breaker:
            raise Boom
    assert info.value.__notes__ == [f"circuit breaker {breaker.name!r} opened: a probe failed"]
    t1 = clock.now()
    assert breaker.state is OPEN
    assert breaker.statistics().retry_after == clock.approx(4)
    await anyio.sleep(2.5)
    assert breaker.state is OPEN
    await anyio.sleep(4 - (clock.now() - t1) + 1.5)
    assert breaker.state is HALF_OPEN
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


@pytest.mark.parametrize("max_calls", [1, 3])
async def test_half_open_runs_at_most_max_calls_probes(clock: Clock, max_calls: int) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=1, half_open_max_calls=max_calls, hooks=events.append
    )
    await fail(breaker)
    await anyio.sleep(2.5)
    running = peak = ran = 0
    refused: list[CircuitOpen] = []

    async def call() -> None:
        nonlocal running, peak, ran
        try:
            async with breaker:
                running += 1
                ran += 1
                peak = max(peak, running)
                await anyio.sleep(1)
                running -= 1
        except CircuitOpen as exc:
            refused.append(exc)

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
    assert clock.now() - t0 == clock.approx(1)
    assert (ran, peak, len(refused)) == (max_calls, max_calls, 10 - max_calls)
    assert all(exc.retry_after is None for exc in refused)
    probes = "1 probe is" if max_calls == 1 else f"{max_calls} probes are"
    assert f"is half-open and its {probes} already running" in str(refused[0])
    assert breaker.state is CLOSED
    assert len(rejections(events)) == 10 - max_calls


async def test_probes_count_toward_closing_while_in_flight(clock: Clock) -> None:
    # half_open_max_calls=2: one probe succeeded, one runs: a third call is
    # refused, though only one probe is running.
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, half_open_max_calls=2)
    await fail(breaker)
    await anyio.sleep(2.5)
    await succeed(breaker)

    async def slow_probe() -> None:
        async with breaker:
            await anyio.sleep(2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_probe)
        await anyio.sleep(1)
        assert breaker.statistics().probes_in_flight == 1
        with pytest.raises(CircuitOpen):
            await succeed(breaker)
    assert breaker.state is CLOSED


# --- cancellation is neither success nor failure -----------------------------------


@pytest.mark.parametrize("how", ["async with", "call", "decorator"])
async def test_cancelled_call_counts_nothing_when_closed(how: str) -> None:
    seen: list[BaseException] = []

    def predicate(exc: Exception) -> bool:
        seen.append(exc)
        return True  # "everything is a failure": cancellation still is not

    breaker = CircuitBreaker(failure_threshold=3, on=predicate)
    await fail(breaker, 2)
    await succeed(breaker)
    await fail(breaker, 2)
    before = (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    )

    async def hang() -> None:
        await anyio.sleep_forever()

    guarded = breaker(hang)
    with anyio.move_on_after(1) as scope:
        if how == "async with":
            async with breaker:
                await hang()
        elif how == "call":
            await breaker.call(hang)
        else:
            await guarded()
    assert scope.cancelled_caught
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    ) == before
    assert breaker.state is CLOSED
    assert len(seen) == 4  # the predicate never saw the cancellation


@pytest.mark.parametrize("how", ["async with", "call", "decorator"])
async def test_cancelled_probe_frees_its_slot(clock: Clock, how: str) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, hooks=events.append)
    await fail(breaker)
    await anyio.sleep(2.5)

    async def hang() -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        if how == "async with":

            async def probe() -> None:
                async with breaker:
                    await hang()

            tg.start_soon(probe)
        elif how == "call":
            tg.start_soon(breaker.call, hang)
        else:
            tg.start_soon(breaker(hang))
        await anyio.sleep(1)
        assert breaker.statistics().probes_in_flight == 1
        with pytest.raises(CircuitOpen):
            await succeed(breaker)
        tg.cancel_scope.cancel()
    assert breaker.state is HALF_OPEN
    assert (
        breaker.statistics().probes_in_flight,
        breaker.statistics().success_count,
        breaker.statistics().failure_count,
    ) == (0, 0, 0)
    await succeed(breaker)  # the freed slot takes the next probe
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


async def test_keyboard_interrupt_like_errors_are_not_counted() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    with pytest.raises(GeneratorExit):
        async with breaker:
            raise GeneratorExit
    assert breaker.state is CLOSED
    assert breaker.statistics().call_count == 0


# --- what counts ---------------------------------------------------------------------


async def test_other_errors_pass_through_uncounted() -> None:
    breaker = CircuitBreaker(failure_threshold=2, on=Boom)
    await fail(breaker)
    await fail(breaker, 3, exc=Other)
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    ) == (1, 0, 1)
    await fail(breaker)
    assert breaker.state is OPEN


async def test_ignored_error_frees_the_probe_slot_without_closing() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, on=(Boom, KeyError))
    await fail(breaker, exc=KeyError)
    await anyio.sleep(2.5)
    await fail(breaker, exc=Other)
    assert breaker.state is HALF_OPEN
    assert breaker.statistics().probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_predicate_decides() -> None:
    class Status(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(code)
            self.code = code

    breaker = CircuitBreaker(
        failure_threshold=2, on=lambda e: isinstance(e, Status) and e.code >= 500
    )

    async def status(code: int) -> None:
        with pytest.raises(Status):
            async with breaker:
                raise Status(code)

    for _ in range(5):
        await status(404)
    assert (breaker.statistics().failure_count, breaker.statistics().call_count) == (0, 0)
    await status(503)
    await status(502)
    assert breaker.state is OPEN


async def test_broken_predicate_propagates_and_frees_the_probe_slot() -> None:
    def predicate(exc: Exception) -> bool:
        if isinstance(exc, Other):
            raise RuntimeError("predicate bug")
        return True

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, on=predicate)
    await fail(breaker)
    await anyio.sleep(2.5)
    with pytest.raises(RuntimeError, match="predicate bug") as info:
        async with breaker:
            raise Other
    assert isinstance(info.value.__context__, Other)
    assert breaker.statistics().probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_rejections_of_other_policies_are_not_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=1, on=lambda e: True)
    await fail(breaker, 3, exc=BulkheadFull)
    assert breaker.state is CLOSED
    assert breaker.statistics().call_count == 0


@pytest.mark.parametrize("how", ["call", "async with, slow calls tracked", "async with"])
async def test_outcome_of_a_call_admitted_before_a_change(how: str) -> None:
    if how == "call":
        breaker = CircuitBreaker(failure_threshold=1)
    else:
        breaker = CircuitBreaker(window=CountWindow(1), slow_call_duration=60)
        if how == "async with":
            breaker = CircuitBreaker(failure_threshold=1)
    started = anyio.Event()
    release = anyio.Event()

    async def slow_failure() -> None:
        started.set()
        await release.wait()
        raise Boom

    async def guarded_failure() -> None:
        if how == "call":
            await breaker.call(slow_failure)
        else:
            async with breaker:
                await slow_failure()

    async def run() -> None:
        with pytest.raises(Boom):
            await guarded_failure()

    success_started = anyio.Event()

    async def slow_success() -> None:
        success_started.set()
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await started.wait()
        if how == "call":
            tg.start_soon(breaker.call, slow_success)
            await success_started.wait()
        await breaker.open()
        await breaker.close()
        release.set()
    if how == "async with":
        # Light mode (see _breaker._Entry): a call admitted while closed that
        # ends while closed counts, even across an operator's open/close.
        assert breaker.state is OPEN
    else:
        assert breaker.state is CLOSED  # admitted before the change: ignored
        assert breaker.statistics().call_count == 0


# --- failure-rate mode -------------------------------------------------------------


async def test_count_window_opens_on_failure_rate() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        window=CountWindow(4), minimum_calls=4, failure_rate_threshold=0.5, hooks=events.append
    )
    await fail(breaker)
    await succeed(breaker, 3)  # F S S S: 25 %
    await fail(breaker)  # S S S F: 25 %
    assert breaker.state is CLOSED
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    ) == (1, 3, 4)
    await fail(breaker)  # S S F F: 50 %
    assert breaker.state is OPEN
    (change,) = events
    assert isinstance(change, BreakerStateChanged)
    assert change.reason == "failure rate 50% >= 50% over 4 calls"


async def test_minimum_calls_before_judging() -> None:
    breaker = CircuitBreaker(window=CountWindow(20), minimum_calls=10, failure_rate_threshold=0.9)
    await fail(breaker, 9)
    assert breaker.state is CLOSED
    assert breaker.statistics().failure_count == 9
    await succeed(breaker)  # 9 / 10 = 90 %: a success can be the call that opens it
    assert breaker.state is OPEN


async def test_count_window_default_minimum_is_the_smaller_of_10_and_its_size() -> None:
    assert CircuitBreaker(window=CountWindow(4)).config.minimum_calls == 4
    assert CircuitBreaker(window=CountWindow(100)).config.minimum_calls == 10
    assert CircuitBreaker(window=TimeWindow(60)).config.minimum_calls == 10
    config = CircuitBreaker(window=CountWindow(100)).config
    assert (config.failure_rate_threshold, config.slow_call_rate_threshold) == (0.5, None)


async def test_time_window_forgets_old_calls(clock: Clock) -> None:
    # buckets of 2 s: [0, 2), [2, 4)...; the window is the current bucket and
    # the one before. Calls happen mid-bucket, 1 s from every edge.
    breaker = CircuitBreaker(
        window=TimeWindow(4, buckets=2), minimum_calls=2, failure_rate_threshold=1.0
    )
    await anyio.sleep(1)
    await fail(breaker)  # t=1, bucket 0
    await anyio.sleep(4)
    assert breaker.statistics().call_count == 0  # t=5, bucket 2: bucket 0 is gone
    await fail(breaker)  # t=5
    assert breaker.state is CLOSED  # one failure, not two
    await anyio.sleep(2)
    await succeed(breaker)  # t=7, bucket 3
    assert (breaker.statistics().call_count, breaker.statistics().failure_count) == (2, 1)
    await anyio.sleep(2)  # t=9, bucket 4: bucket 2 (the failure at 5) is gone
    assert (breaker.statistics().call_count, breaker.statistics().failure_count) == (1, 0)
    await fail(breaker, 2)  # 2 failures of 3 calls: 67 % < 100 %
    assert breaker.state is CLOSED
    await anyio.sleep(2)  # t=11, bucket 5: the success (bucket 3) is gone
    await fail(breaker)  # 3 failures of 3
    assert breaker.state is OPEN


async def test_time_window_after_a_long_idle_starts_empty() -> None:
    breaker = CircuitBreaker(window=TimeWindow(1, buckets=4), minimum_calls=3)
    await fail(breaker, 2)
    await anyio.sleep(3)
    assert breaker.statistics().call_count == 0
    await fail(breaker, 2)
    assert breaker.state is CLOSED


async def test_time_window_memory_is_bounded() -> None:
    breaker = CircuitBreaker(window=TimeWindow(2, buckets=4), minimum_calls=1000)
    for _ in range(20):
        await succeed(breaker, 10)
        await anyio.sleep(0.25)
    assert breaker.statistics().call_count <= 80  # 4 buckets of 0.5 s, 20 calls each


async def test_slow_calls_open_on_slow_call_rate(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        window=CountWindow(4),
        slow_call_duration=2,
        slow_call_rate_threshold=0.5,
        hooks=events.append,
    )

    async def call(seconds: float) -> None:
        async with breaker:
            await anyio.sleep(seconds)

    await call(0.5)
    await call(3.5)
    await call(0.5)
    assert breaker.statistics().slow_call_count == 1
    await call(3.5)  # 2 slow of 4
    assert breaker.state is OPEN
    assert [e.reason for e in events if isinstance(e, BreakerStateChanged)] == [
        "slow call rate 50% >= 50% over 4 calls"
    ]


async def test_slow_failure_counts_both_ways() -> None:
    breaker = CircuitBreaker(
        window=CountWindow(10), minimum_calls=10, slow_call_duration=1, failure_rate_threshold=1.0
    )

    async def slow_fail() -> None:
        await anyio.sleep(2.5)
        raise Boom

    with pytest.raises(Boom):
        await breaker.call(slow_fail)
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().slow_call_count,
        breaker.statistics().call_count,
    ) == (1, 1, 1)


async def test_slow_probe_reopens(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        window=CountWindow(2),
        recovery_time=1,
        slow_call_duration=2,
        hooks=events.append,
        name="db",
    )
    await fail(breaker, 2)
    await anyio.sleep(2.5)
    async with breaker:
        await anyio.sleep(3.5)
    assert breaker.state is OPEN
    assert events[-1] == BreakerStateChanged(
        policy="db", old=HALF_OPEN, new=OPEN, reason="a probe was slow", kind="probe_slow"
    )
    await anyio.sleep(2.5)
    async with breaker:
        await anyio.sleep(0.5)
    assert breaker.state is CLOSED


async def test_window_is_cleared_on_every_change(clock: Clock) -> None:
    breaker = CircuitBreaker(window=CountWindow(4), recovery_time=1)
    await fail(breaker, 4)
    await anyio.sleep(2.5)
    await succeed(breaker)
    assert breaker.state is CLOSED
    assert breaker.statistics().call_count == 0
    await fail(breaker, 3)
    assert breaker.state is CLOSED


@settings(deadline=None, max_examples=40)
@given(
    outcomes=st.lists(st.sampled_from("SFI"), max_size=40),
    size=st.integers(1, 8),
    minimum=st.integers(1, 8),
    threshold=st.sampled_from([0.25, 0.3, 0.5, 0.75, 1.0]),
)
async def test_count_window_matches_a_model(
    outcomes: list[str], size: int, minimum: int, threshold: float
) -> None:
    minimum = min(minimum, size)
    breaker = CircuitBreaker(
        window=CountWindow(size), minimum_calls=minimum, failure_rate_threshold=threshold
    )
    last: list[str] = []
    for outcome in outcomes:
        if outcome == "S":
            await succeed(breaker)
        else:
            await fail(breaker, exc=Boom if outcome == "F" else KeyboardInterruptLike)
        if outcome != "I":
            last = [*last, outcome][-size:]
        rate = last.count("F") / len(last) if last else 0.0
        should_open = len(last) >= minimum and rate >= threshold
        assert breaker.state is (OPEN if should_open else CLOSED)
        if should_open:
            break
        assert (breaker.statistics().call_count, breaker.statistics().failure_count) == (
            len(last),
            last.count("F"),
        )


class KeyboardInterruptLike(BaseException):
    """Never counted: not an Exception."""


# --- operators -----------------------------------------------------------------------


async def test_open_holds_until_closed(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(recovery_time=1, name="db", hooks=events.append)
    await fail(breaker, 2)
    await breaker.open()
    await anyio.sleep(5)
    assert breaker.state is OPEN
    assert breaker.statistics().retry_after is None
    with pytest.raises(CircuitOpen, match="'db' is held open; close\\(\\) or reset\\(\\)") as info:
        await succeed(breaker)
    assert info.value.retry_after is None
    await breaker.close()
    assert breaker.state is CLOSED
    assert breaker.statistics().failure_count == 0
    await breaker.close()  # already closed: nothing happens
    assert [(e.old, e.new, e.reason) for e in events if isinstance(e, BreakerStateChanged)] == [
        (CLOSED, OPEN, "opened by hand until closed"),
        (OPEN, CLOSED, "closed by hand"),
    ]


async def test_open_for_seconds_then_half_opens(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(recovery_time=30, hooks=events.append)
    await breaker.open(seconds=3)
    assert breaker.statistics().retry_after == clock.approx(3)
    await anyio.sleep(1)
    await breaker.open(seconds=3)  # opening again restarts the hold
    await anyio.sleep(1.5)
    assert breaker.state is OPEN
    await anyio.sleep(3)
    await succeed(breaker)
    assert breaker.state is CLOSED
    assert [e.reason for e in events if isinstance(e, BreakerStateChanged)] == [
        "opened by hand for 3 s",
        "opened by hand for 3 s",
        "3 s since it opened",
        "1 probe succeeded",
    ]


async def test_reset_clears_counts_even_when_closed() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(window=CountWindow(10), hooks=events.append)
    await fail(breaker, 3)
    await breaker.close()
    assert breaker.statistics().failure_count == 3
    await breaker.reset()
    assert (breaker.statistics().failure_count, breaker.statistics().call_count) == (0, 0)
    assert events == []
    await breaker.open()
    await breaker.reset()
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, CLOSED)]


async def test_close_from_half_open_drops_running_probes(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1)
    await fail(breaker)
    await anyio.sleep(2.5)
    async with anyio.create_task_group() as tg:

        async def failing_probe() -> None:
            async with breaker:
                await anyio.sleep(2)
                raise Boom

        async def probe() -> None:
            with pytest.raises(Boom):
                await failing_probe()

        tg.start_soon(probe)
        await anyio.sleep(1)
        await breaker.close()
    assert breaker.state is CLOSED  # the late probe failure is ignored
    assert breaker.statistics().failure_count == 0


# --- events and hooks ----------------------------------------------------------------


async def test_async_hooks_and_global_hooks_receive_events() -> None:
    mine: list[PolicyEvent] = []
    everyone: list[PolicyEvent] = []

    async def hook(event: PolicyEvent) -> None:
        await anyio.lowlevel.checkpoint()
        mine.append(event)

    add_hook(everyone.append)
    try:
        breaker = CircuitBreaker(failure_threshold=1, name="svc", hooks=[hook])
        await fail(breaker)
        with pytest.raises(CircuitOpen):
            await succeed(breaker)
    finally:
        remove_hook(everyone.append)
    assert mine == everyone
    assert [type(e) for e in mine] == [BreakerStateChanged, CallRejected]
    assert breaker.hooks == (hook,)


async def test_events_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="anyway")
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, name="svc")
    await fail(breaker)
    with pytest.raises(CircuitOpen):
        await succeed(breaker)
    await anyio.sleep(2.5)
    await succeed(breaker)
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert records[1][0] == "INFO"
    assert re.fullmatch(r"svc: call rejected by breaker, retry after [\d.]+ s", records[1][1])
    del records[1]
    assert records == [
        ("WARNING", "svc: circuit closed -> open (1 consecutive failure)"),
        ("INFO", "svc: circuit open -> half_open (1 s since it opened)"),
        ("INFO", "svc: circuit half_open -> closed (1 probe succeeded)"),
    ]


async def test_happy_path_emits_nothing() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(hooks=events.append)
    await succeed(breaker, 100)
    await fail(breaker, 4)
    assert events == []


# --- decorator and call --------------------------------------------------------------


async def test_decorator_preserves_the_function() -> None:
    breaker = CircuitBreaker(failure_threshold=2)

    @breaker
    async def add(a: int, b: int = 1) -> int:
        """Adds."""
        if a < 0:
            raise Boom
        return a + b

    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    assert await add(1, b=2) == 3
    with pytest.raises(Boom):
        await add(-1)
    with pytest.raises(Boom):
        await add(-1)
    with pytest.raises(CircuitOpen):
        await add(1)


async def test_decorator_on_methods_and_callable_objects() -> None:
    breaker = CircuitBreaker()

    class Client:
        @breaker
        async def get(self, key: str) -> str:
            return key * 2

    class Callable:
        async def __call__(self, x: int) -> int:
            return -x

    assert await Client().get("a") == "aa"
    assert await breaker(Callable())(3) == -3

    async def echo(prefix: str, key: str) -> str:
        return prefix + key

    assert await breaker(functools.partial(echo, ">"))("b") == ">b"
    assert await breaker.call(echo, "<", "c") == "<c"
    assert breaker.statistics().success_count == 4


async def test_decorator_refuses_sync_functions() -> None:
    breaker = CircuitBreaker()

    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match="must be an async function \\(async def\\), got "):
        breaker(sync)  # type: ignore[arg-type]

    async def coro() -> None:
        pass

    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        breaker(coro())  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["call", "decorator"])
async def test_call_and_decorator_paths_through_every_state(clock: Clock, how: str) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1)

    async def op(x: int) -> int:
        if x < 0:
            raise Boom
        return x

    run: Callable[[int], Awaitable[int]] = (
        (lambda x: breaker.call(op, x)) if how == "call" else breaker(op)
    )
    with pytest.raises(Boom):
        await run(-1)
    with pytest.raises(CircuitOpen):
        await run(1)
    await anyio.sleep(2.5)
    assert await run(2) == 2
    assert breaker.state is CLOSED


async def test_slow_tracking_through_call_and_decorator() -> None:
    breaker = CircuitBreaker(window=CountWindow(2), slow_call_duration=1)

    async def op(seconds: float) -> None:
        await anyio.sleep(seconds)

    await breaker.call(op, 2)
    await breaker(op)(0.5)
    counted = CircuitBreaker(window=CountWindow(3))
    await counted.call(op, 0)
    await counted(op)(0)
    assert counted.statistics().success_count == 2
    assert (breaker.statistics().slow_call_count, breaker.statistics().call_count) == (1, 2)
    assert breaker.state is CLOSED  # 50 % slow < 100 %


async def test_nesting_the_same_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, half_open_max_calls=2)
    async with breaker, breaker:
        pass
    assert breaker.statistics().success_count == 2
    await fail(breaker)
    await anyio.sleep(2.5)
    async with breaker:
        async with breaker:
            assert breaker.statistics().probes_in_flight == 2
        assert breaker.state is HALF_OPEN
    assert breaker.state is CLOSED


async def test_closed_call_that_ends_after_the_circuit_opened_is_ignored() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1)
    async with anyio.create_task_group() as tg:

        async def failing_call() -> None:
            async with breaker:
                await anyio.sleep(5)
                raise Boom

        async def long_call() -> None:
            with pytest.raises(Boom):
                await failing_call()

        tg.start_soon(long_call)
        await anyio.sleep(1)
        await fail(breaker)
        await anyio.sleep(2.5)
        assert breaker.state is HALF_OPEN
    assert breaker.state is HALF_OPEN  # the late failure was not a probe


# --- repr, config, slots ------------------------------------------------------------


async def test_repr_shows_state(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=5, name="db")
    assert repr(breaker) == "<CircuitBreaker name='db' state=closed failures=0/3>"
    await fail(breaker, 3)
    assert repr(breaker).startswith("<CircuitBreaker name='db' state=open retry_after=")
    await anyio.sleep(6.5)
    assert repr(breaker) == "<CircuitBreaker name='db' state=half_open probes=0/1 succeeded=0/1>"
    await breaker.open()
    assert repr(breaker) == "<CircuitBreaker name='db' state=open retry_after=held>"
    rate = CircuitBreaker(window=CountWindow(5), slow_call_duration=1)
    await fail(rate)
    assert repr(rate) == (
        "<CircuitBreaker name=None state=closed failures=1/1 (opens at 50% of >= 5)"
        " slow=0/1 window=CountWindow(size=5)>"
    )
    assert not hasattr(breaker, "__dict__")
    assert repr(breaker.store) == "<InMemoryBreakerStore circuits=1>"


def test_repr_without_an_event_loop() -> None:
    breaker = CircuitBreaker(name="db")
    assert repr(breaker) == "<CircuitBreaker name='db' state=closed failures=0/5>"
    assert breaker.state is CLOSED
    anyio.run(functools.partial(breaker.open, seconds=5))
    # outside the loop the clock cannot be read: the state as stored
    assert repr(breaker) == "<CircuitBreaker name='db' state=open retry_after=?>"
    windowed = CircuitBreaker(window=TimeWindow(5))
    assert "failures=0/0" in repr(windowed)


def test_windows_are_small_values() -> None:
    assert CountWindow(3) == CountWindow(3)
    assert repr(TimeWindow(10)) == "TimeWindow(seconds=10, buckets=10)"
    with pytest.raises(AttributeError):
        CountWindow(3).size = 4  # type: ignore[misc]


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": True}, TypeError, "failure_threshold must be a whole number"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold must be a whole number"),
        ({"recovery_time": -1}, ValueError, "recovery_time must be > 0, got -1"),
        ({"recovery_time": 0}, ValueError, "recovery_time must be > 0, got 0"),
        ({"recovery_time": math.nan}, ValueError, "recovery_time must be a number, got NaN"),
        ({"recovery_time": math.inf}, ValueError, "await breaker.open\\(\\)"),
        ({"recovery_time": "30"}, TypeError, "recovery_time must be a number"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be >= 1, got 0"),
        ({"on": int}, TypeError, "on must be an exception type .*got the class int"),
        (
            {"on": ()},
            ValueError,
            "on must be an exception type .*got on=\\(\\), which matches nothing",
        ),
        ({"on": (Boom, "x")}, TypeError, "got 'x' in on="),
        ({"on": "Boom"}, TypeError, "on must be callable, got 'Boom' \\(str\\)"),
        ({"name": ""}, TypeError, "name must be a non-empty string or None"),
        ({"name": 3}, TypeError, "name must be a non-empty string or None, got 3"),
        ({"hooks": [1]}, TypeError, "hooks must be callables taking an event, got 1"),
        ({"window": 10}, TypeError, "window must be CountWindow\\(size\\), TimeWindow"),
        ({"minimum_calls": 5}, ValueError, "minimum_calls=5 needs a sliding window"),
        ({"failure_rate_threshold": 0.5}, ValueError, "failure_rate_threshold=0.5 needs a sliding"),
        ({"slow_call_duration": 1}, ValueError, "slow_call_duration=1 needs a sliding window"),
        (
            {"window": CountWindow(10), "failure_threshold": 3},
            ValueError,
            "failure_threshold=3 counts consecutive failures and does not apply with a window",
        ),
        (
            {"window": CountWindow(5), "minimum_calls": 10},
            ValueError,
            "window=CountWindow\\(5\\) is smaller than minimum_calls=10",
        ),
        (
            {"window": CountWindow(5), "minimum_calls": 0},
            ValueError,
            "minimum_calls must be >= 1",
        ),
        (
            {"window": CountWindow(5), "failure_rate_threshold": 0},
            ValueError,
            "failure_rate_threshold must be > 0, got 0 \\(a rate in \\(0, 1\\]",
        ),
        (
            {"window": CountWindow(5), "failure_rate_threshold": 50},
            ValueError,
            "failure_rate_threshold must be <= 1, got 50",
        ),
        (
            {"window": CountWindow(5), "failure_rate_threshold": math.nan},
            ValueError,
            "failure_rate_threshold must be a number, got NaN",
        ),
        (
            {"window": CountWindow(5), "slow_call_rate_threshold": 0.5},
            ValueError,
            "slow_call_rate_threshold=0.5 needs slow_call_duration=",
        ),
        (
            {"window": CountWindow(5), "slow_call_duration": -1},
            ValueError,
            "slow_call_duration must be > 0, got -1",
        ),
        (
            {"window": CountWindow(5), "slow_call_duration": 1, "slow_call_rate_threshold": 1.5},
            ValueError,
            "slow_call_rate_threshold must be <= 1, got 1.5",
        ),
        (
            {"store": InMemoryBreakerStore()},
            ValueError,
            "a breaker given a store= needs a name=",
        ),
        (
            {"store": object(), "name": "x"},
            TypeError,
            "store must implement the anyway.abc.BreakerStore protocol; .* has no acquire, record,",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CircuitBreaker(**kwargs)


def test_bad_predicates() -> None:
    async def async_predicate(exc: Exception) -> bool:
        return True

    with pytest.raises(TypeError, match="a predicate must be a plain \\(sync\\) function"):
        CircuitBreaker(on=async_predicate)
    coro = async_predicate(Boom())
    with pytest.raises(TypeError, match="not a coroutine object"):
        CircuitBreaker(on=coro)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CountWindow(0), "size must be >= 1, got 0; a CountWindow remembers"),
        (lambda: CountWindow(2.0), "size must be a whole number"),  # type: ignore[arg-type]
        (lambda: TimeWindow(0), "seconds must be > 0, got 0"),
        (lambda: TimeWindow(-5), "seconds must be > 0, got -5"),
        (lambda: TimeWindow(math.inf), "seconds must be finite"),
        (lambda: TimeWindow(5, buckets=0), "buckets must be >= 1, got 0"),
    ],
)
def test_bad_windows(make: Callable[[], object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        make()


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (0, "seconds must be > 0, got 0; use seconds=None to hold it open"),
        (-1, "seconds must be > 0, got -1"),
        (math.inf, "seconds must be finite, got inf; use seconds=None"),
        (math.nan, "seconds must be a number, got NaN"),
    ],
)
async def test_bad_open_seconds(seconds: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await CircuitBreaker().open(seconds=seconds)


# --- stores ------------------------------------------------------------------------


async def test_a_remote_store_runs_the_same_state_machine(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    store = RemoteStore()
    breaker = CircuitBreaker(
        failure_threshold=2, recovery_time=4, on=Boom, name="api", store=store, hooks=events.append
    )
    await succeed(breaker)
    await fail(breaker, 2)
    t0 = clock.now()
    assert breaker.state is OPEN
    await anyio.sleep(1)
    with pytest.raises(CircuitOpen) as info:
        await succeed(breaker)
    assert info.value.retry_after == clock.approx(4 - (clock.now() - t0))
    # aged locally from the last answer
    assert breaker.statistics().retry_after == clock.approx(4 - (clock.now() - t0))
    await anyio.sleep(4.5)
    assert breaker.state is HALF_OPEN  # last known OPEN, aged past its recovery time
    await fail(breaker, exc=Other)  # ignored: frees the probe slot (release)
    await breaker.call(anyio.sleep, 0)
    assert breaker.state is CLOSED
    snapshot = await breaker.snapshot()
    assert snapshot == BreakerSnapshot(state=CLOSED)
    local = CircuitBreaker()
    await fail(local, exc=Other)
    assert await local.snapshot() == BreakerSnapshot(state=CLOSED, failure_count=1, call_count=1)
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert {"acquire", "record", "release", "snapshot"} <= set(store.calls)
    await breaker.open(seconds=1)
    assert breaker.state is OPEN
    await breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.statistics().failure_count == 0
    assert changes(events)[-2:] == [(CLOSED, OPEN), (OPEN, CLOSED)]


async def test_remote_store_slow_calls_and_decorator(clock: Clock) -> None:
    store = RemoteStore()
    breaker = CircuitBreaker(
        name="api", store=store, window=CountWindow(2), slow_call_duration=1, recovery_time=1
    )

    @breaker
    async def op(seconds: float) -> None:
        await anyio.sleep(seconds)

    await op(2.5)
    async with breaker:
        await anyio.sleep(2.5)
    assert breaker.state is OPEN
    assert breaker.statistics().slow_call_count == 0  # counts start over once open
    await anyio.sleep(2.5)
    with pytest.raises(Boom) as info:
        await fail_inside(breaker)
    assert info.value.__notes__ == ["circuit breaker 'api' opened: a probe failed"]


async def test_cancelled_while_the_store_admits_frees_the_slot(clock: Clock) -> None:
    store = RemoteStore()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, name="api", store=store)
    await fail(breaker)
    await anyio.sleep(2.5)
    store.delay = 2  # each store operation now takes 2 s
    t0 = clock.now()
    with anyio.move_on_after(0.5) as scope:
        async with breaker:
            pytest.fail("cancelled before the body runs")  # pragma: no cover
    assert scope.cancelled_caught
    # the admission honours the caller's deadline; the slot is given back, shielded
    assert clock.now() - t0 == clock.approx(0.5 + 2)
    store.delay = 0
    assert store.calls[-2:] == ["acquire", "release"]
    assert (await breaker.snapshot()).probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_an_admission_whose_answer_is_lost_gives_the_slot_back(clock: Clock) -> None:
    class LateAnswer(RemoteStore):
        """The store admits at once (the script ran), the answer comes late."""

        async def acquire(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
            update = await self.inner.acquire(key, config, call)
            await self._io("acquire")
            return update

    store = LateAnswer(delay=2)
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, name="api", store=store)
    store.delay = 0
    await fail(breaker)
    await anyio.sleep(2.5)
    store.delay = 2
    with anyio.move_on_after(0.5):
        async with breaker:
            pytest.fail("cancelled before the body runs")  # pragma: no cover
    store.delay = 0
    assert (await breaker.snapshot()).probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_a_store_that_does_not_answer(clock: Clock) -> None:
    class Stuck(RemoteStore):
        async def _io(self, op: str) -> None:
            self.calls.append(op)
            if op != "snapshot":
                await anyio.sleep_forever()

    store = Stuck()
    breaker = CircuitBreaker(name="api", store=store)
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        await succeed(breaker)
    assert scope.cancelled_caught
    # the admission ends at the caller's deadline; giving the slot back is
    # shielded but bounded, and never raises in place of the cancellation
    assert clock.now() - t0 == clock.approx(1 + STORE_TIMEOUT)
    assert store.calls == ["acquire", "release"]


async def test_breakers_sharing_a_store_and_a_name_share_the_circuit() -> None:
    store = InMemoryBreakerStore()
    a = CircuitBreaker(failure_threshold=2, name="db", store=store)
    b = CircuitBreaker(failure_threshold=2, name="db", store=store)
    other = CircuitBreaker(failure_threshold=2, name="cache", store=store)
    await fail(a)
    await fail(b)
    assert a.state is b.state is OPEN
    assert other.state is CLOSED
    with pytest.raises(ValueError, match="the circuit 'db' in this store was configured with"):
        CircuitBreaker(failure_threshold=3, name="db", store=store)


async def test_in_memory_store_protocol_directly(clock: Clock) -> None:
    store = InMemoryBreakerStore()
    assert isinstance(store, BreakerStore)
    config = BreakerConfig(failure_threshold=1, recovery_time=1, half_open_max_calls=1)
    admitted = await store.acquire("k", config, 1)
    assert admitted.snapshot == BreakerSnapshot(state=CLOSED)
    assert admitted.ticket is not None
    first = admitted.ticket
    opened = await store.record("k", config, 1, first, failure=True, slow=False)
    assert (opened.previous, opened.snapshot.state, opened.reason, opened.kind) == (
        CLOSED,
        OPEN,
        "1 consecutive failure",
        "failures",
    )
    refused = await store.acquire("k", config, 2)
    assert refused.ticket is None
    assert refused.snapshot.retry_after == clock.approx(1)
    await anyio.sleep(2.5)
    probe = await store.acquire("k", config, 3)
    assert (probe.previous, probe.kind, probe.snapshot.probes_in_flight) == (
        OPEN,
        "recovery_time",
        1,
    )
    assert probe.ticket is not None
    assert (await store.acquire("k", config, 4)).ticket is None  # the one slot is taken
    released = await store.release("k", config, 3)
    assert released.snapshot.probes_in_flight == 0
    assert (await store.release("k", config, 3)).snapshot.probes_in_flight == 0  # idempotent
    assert (await store.release("k", config, 99)).previous is None  # unknown call: nothing
    stale = await store.record("k", config, 1, first, failure=True, slow=False)
    assert stale.previous is None
    assert stale.snapshot.state is HALF_OPEN
    # an outcome of a call that holds no slot is no probe
    assert (
        await store.record("k", config, 4, probe.ticket, failure=True, slow=False)
    ).previous is None
    with pytest.raises(
        ValueError, match=r"state must be CircuitState\.OPEN or CircuitState\.CLOSED"
    ):
        await store.force("k", config, HALF_OPEN)
    closed = await store.force("k", config, CLOSED)
    assert (closed.previous, closed.kind) == (HALF_OPEN, "operator_close")
    opened = await store.force("k", config, OPEN, seconds=5)
    again = await store.force("k", config, OPEN, seconds=50)  # already open, no reset: kept
    assert (opened.previous, opened.kind, again.previous) == (CLOSED, "operator_open", None)
    assert again.snapshot.retry_after == clock.approx(5)
    reset = await store.force("k", config, CLOSED, reset=True)
    assert (reset.previous, reset.kind) == (OPEN, "operator_reset")
    assert (await store.snapshot("k", config)).state is CLOSED


@pytest.fixture(autouse=True)
def _no_leaked_global_hooks() -> Iterator[None]:
    from anyway._events import global_hooks

    before = global_hooks()
    yield
    assert global_hooks() == before


# --- audit: the half-open transition's hooks cannot leak a probe slot ----------------


@pytest.mark.parametrize("how", ["async with", "call", "decorator"])
async def test_cancelled_while_hooks_see_half_open_frees_the_probe_slot(
    clock: Clock, how: str
) -> None:
    # The call that turns OPEN into HALF_OPEN takes a probe slot, then awaits
    # the hooks; cancelled there, it must give the slot back (else the circuit
    # stays half-open, refusing every call, forever).
    async def slow_hook(event: PolicyEvent) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is HALF_OPEN:
            await anyio.sleep(2)

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, hooks=[slow_hook])
    await fail(breaker)
    await anyio.sleep(1.5)
    ran: list[str] = []

    async def work() -> None:
        ran.append("body")

    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        if how == "async with":
            async with breaker:
                await work()
        elif how == "call":
            await breaker.call(work)
        else:
            await breaker(work)()
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(1)
    assert ran == []
    assert breaker.state is HALF_OPEN
    assert breaker.statistics().probes_in_flight == 0
    await succeed(breaker)  # the slot takes the next probe
    assert breaker.state is CLOSED


async def test_a_raising_hook_at_half_open_frees_the_probe_slot(clock: Clock) -> None:
    def bad_hook(event: PolicyEvent) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is HALF_OPEN:
            raise RuntimeError("hook is broken")

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, hooks=bad_hook)
    await fail(breaker)
    await anyio.sleep(1.5)
    with pytest.raises(RuntimeError, match="hook is broken"):
        await succeed(breaker)
    assert (breaker.state, breaker.statistics().probes_in_flight) == (HALF_OPEN, 0)
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_call_with_a_sync_function_is_a_type_error_and_not_a_failure() -> None:
    breaker = CircuitBreaker(failure_threshold=1)

    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match=r"sync\(\.\.\.\) returned 1, which cannot be awaited"):
        await breaker.call(sync)  # type: ignore[arg-type]
    assert (breaker.state, breaker.statistics().call_count) == (
        CLOSED,
        0,
    )  # a bug here, not the dependency

    async def fetch() -> None:
        pass

    coro = fetch()
    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        await breaker.call(coro)  # type: ignore[arg-type]
    assert (breaker.state, breaker.statistics().call_count) == (CLOSED, 0)


# @@OPERATORS@@


# --- derive: one breaker's settings, another name -----------------------------------


async def test_derive_copies_the_settings_not_the_state(clock: Clock) -> None:
    events: list[PolicyEvent] = []

    def predicate(exc: Exception) -> bool:
        return isinstance(exc, Boom)

    template = CircuitBreaker(
        window=CountWindow(4),
        minimum_calls=2,
        failure_rate_threshold=0.5,
        slow_call_duration=1,
        slow_call_rate_threshold=0.75,
        recovery_time=7,
        half_open_max_calls=2,
        on=predicate,
        name="api",
        hooks=events.append,
    )
    await fail(template, 2)
    assert template.state is OPEN
    child = template.derive(name="api:one")
    assert (child.name, child.state, child.statistics().call_count) == ("api:one", CLOSED, 0)
    assert child.config == template.config
    assert child.hooks == template.hooks
    assert isinstance(child.store, InMemoryBreakerStore)
    assert child.store is not template.store  # its own private store
    await fail(child, exc=Other)  # the predicate is copied: ignored
    assert child.statistics().call_count == 0

    async def slow() -> None:
        async with child:
            await anyio.sleep(1.5)

    t0 = clock.now()
    async with anyio.create_task_group() as tg:  # slow calls are tracked too
        tg.start_soon(slow)
        tg.start_soon(slow)
    assert clock.now() - t0 == clock.approx(1.5)
    assert child.state is OPEN
    assert [(e.policy, e.reason) for e in events if isinstance(e, BreakerStateChanged)] == [
        ("api", "failure rate 100% >= 50% over 2 calls"),
        ("api:one", "slow call rate 100% >= 75% over 2 calls"),
    ]


async def test_derive_in_consecutive_mode_with_exception_types() -> None:
    template = CircuitBreaker(failure_threshold=2, recovery_time=3, on=(Boom, KeyError))
    child = template.derive(name="child")
    assert child.config == template.config
    await fail(child, exc=Other)
    await fail(child, exc=KeyError)
    await fail(child)
    assert child.state is OPEN
    assert template.state is CLOSED


async def test_derive_shares_a_given_store_under_the_new_name() -> None:
    store = InMemoryBreakerStore()
    template = CircuitBreaker(failure_threshold=1, name="api", store=store)
    child = template.derive(name="api:host")
    assert child.store is store
    await fail(child)
    again = template.derive(name="api:host")  # the same name: the same circuit
    assert again.state is OPEN
    assert template.state is CLOSED
    assert repr(store) == "<InMemoryBreakerStore circuits=2>"

    remote = RemoteStore()
    shared = CircuitBreaker(failure_threshold=1, name="api", store=remote).derive(name="api:x")
    assert shared.store is remote
    await fail(shared)
    assert remote.calls == ["acquire", "record"]


@pytest.mark.parametrize("name", ["", None, 5])
def test_derive_needs_a_name(name: object) -> None:
    with pytest.raises(
        TypeError, match=r"name must be a non-empty string, got .*a derived breaker"
    ):
        CircuitBreaker().derive(name=name)  # type: ignore[arg-type]


# --- statistics() ----------------------------------------------------------------


async def test_statistics_is_a_frozen_snapshot_in_every_state(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=4, half_open_max_calls=2)
    assert breaker.statistics() == BreakerSnapshot(state=CLOSED)
    await succeed(breaker, 3)
    await fail(breaker)
    stats = breaker.statistics()
    assert stats == BreakerSnapshot(state=CLOSED, failure_count=1, success_count=3, call_count=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.failure_count = 0  # type: ignore[misc]
    await fail(breaker)
    assert breaker.statistics() == BreakerSnapshot(state=OPEN, retry_after=clock.approx(4))
    assert stats.failure_count == 1  # a snapshot does not move
    await anyio.sleep(1)
    assert breaker.statistics().retry_after == clock.approx(3)
    await anyio.sleep(3.5)
    assert breaker.statistics() == BreakerSnapshot(state=HALF_OPEN)
    await succeed(breaker)  # one probe succeeded, one to go
    async with breaker:
        assert breaker.statistics() == BreakerSnapshot(
            state=HALF_OPEN, success_count=1, call_count=1, probes_in_flight=1
        )
    assert breaker.statistics() == BreakerSnapshot(state=CLOSED)
    await breaker.open()
    assert breaker.statistics() == BreakerSnapshot(state=OPEN, retry_after=None)  # held


async def test_statistics_in_window_mode(clock: Clock) -> None:
    breaker = CircuitBreaker(window=CountWindow(4), slow_call_duration=1, minimum_calls=4)
    await succeed(breaker)
    async with breaker:
        await anyio.sleep(1.5)
    await fail(breaker)
    assert breaker.statistics() == BreakerSnapshot(
        state=CLOSED, failure_count=1, success_count=2, call_count=3, slow_call_count=1
    )


# --- what on= accepts --------------------------------------------------------------


async def test_on_accepts_base_exception_types_but_control_flow_never_counts() -> None:
    class Stop(BaseException):
        pass

    breaker = CircuitBreaker(failure_threshold=1, on=(Stop, KeyboardInterrupt))
    await fail(breaker, exc=KeyboardInterrupt)  # control flow: never a failure
    assert breaker.statistics() == BreakerSnapshot(state=CLOSED)
    await fail(breaker, exc=Stop)
    assert breaker.state is OPEN


def test_an_explicit_failure_threshold_is_refused_with_a_window_even_the_default() -> None:
    with pytest.raises(ValueError, match="failure_threshold=5 counts consecutive failures"):
        CircuitBreaker(window=CountWindow(10), failure_threshold=5)
    assert CircuitBreaker(window=CountWindow(10)).config.window == CountWindow(10)


# --- outcome events (purgatory-style) -----------------------------------------------


@pytest.mark.parametrize("store", ["memory", "remote"])
async def test_outcome_events_for_every_recorded_success_and_failure(
    clock: Clock, store: str
) -> None:
    events: list[PolicyEvent] = []
    kwargs: dict[str, Any] = {} if store == "memory" else {"store": RemoteStore()}
    breaker = CircuitBreaker(
        failure_threshold=2,
        recovery_time=1,
        name="db",
        hooks=events.append,
        outcome_events=True,
        **kwargs,
    )
    await succeed(breaker)
    await fail(breaker, 2)
    with pytest.raises(CircuitOpen):  # refused: no outcome
        await succeed(breaker)
    await anyio.sleep(1.5)
    await succeed(breaker)  # the probe: recovery
    recorded = [
        (e.outcome, type(e.error).__name__ if e.error else None)
        for e in events
        if isinstance(e, BreakerCallRecorded)
    ]
    assert recorded == [
        ("success", None),
        ("failure", "Boom"),
        ("failure", "Boom"),
        ("success", None),
    ]
    kinds = [e.kind for e in events if isinstance(e, BreakerStateChanged)]
    assert kinds == ["failures", "recovery_time", "probes_succeeded"]  # the last: recovered
    # the outcome comes before the change it causes
    opened = next(i for i, e in enumerate(events) if isinstance(e, BreakerStateChanged))
    assert isinstance(events[opened - 1], BreakerCallRecorded)
    derived_events: list[PolicyEvent] = []
    derived = breaker.derive(name="db2")
    await succeed(CircuitBreaker(name="db3", hooks=derived_events.append, outcome_events=True))
    assert derived_events  # (and derive copies outcome_events:)
    events.clear()
    await succeed(derived)
    assert [type(e) for e in events] == [BreakerCallRecorded]


async def test_no_outcome_events_by_default() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(hooks=events.append)
    await succeed(breaker)
    await fail(breaker)
    assert events == []


async def test_outcome_events_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anyway")
    breaker = CircuitBreaker(name="db", outcome_events=True)
    await fail(breaker)
    await succeed(breaker)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == [
        "db: failure recorded (Boom: down)",
        "db: success recorded",
    ]
