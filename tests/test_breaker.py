"""CircuitBreaker: transitions, half-open probes, cancellation, windows, store."""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyway import (
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
    Event,
    InMemoryBreakerStore,
    TimeWindow,
    _breaker,
    add_hook,
    remove_hook,
)
from anyway.testing import Clock

pytestmark = pytest.mark.anyio

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


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


def changes(events: list[Event]) -> list[tuple[CircuitState, CircuitState]]:
    return [(e.old, e.new) for e in events if isinstance(e, BreakerStateChanged)]


def rejections(events: list[Event]) -> list[CallRejected]:
    return [e for e in events if isinstance(e, CallRejected)]


# --- transitions -------------------------------------------------------------------


async def test_opens_after_threshold_consecutive_failures() -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(failure_threshold=3, name="db", hooks=events.append)
    await fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.failure_count == 2
    with pytest.raises(Boom) as info:
        async with breaker:
            raise Boom("third")
    assert breaker.state is OPEN
    assert info.value.__notes__ == ["circuit breaker 'db' opened: 3 consecutive failures"]
    assert events == [
        BreakerStateChanged(policy="db", old=CLOSED, new=OPEN, reason="3 consecutive failures")
    ]
    assert breaker.failure_count == 0  # a new state counts from zero


async def test_success_resets_the_streak() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    await fail(breaker, 2)
    await succeed(breaker)
    assert (breaker.failure_count, breaker.success_count, breaker.call_count) == (0, 1, 3)
    await fail(breaker, 2)
    assert breaker.state is CLOSED
    await fail(breaker)
    assert breaker.state is OPEN


async def test_open_rejects_without_running_and_says_when(clock: Clock) -> None:
    events: list[Event] = []
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
    assert breaker.retry_after == clock.approx(5 - (clock.now() - t0))
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
        assert breaker.retry_after is None
    await anyio.sleep(1.5)
    assert breaker.state is HALF_OPEN


async def test_half_open_closes_when_every_probe_succeeds(clock: Clock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=2, half_open_max_calls=2, hooks=events.append
    )
    await fail(breaker)
    await anyio.sleep(3)
    await succeed(breaker)
    assert breaker.state is HALF_OPEN
    assert (breaker.success_count, breaker.call_count, breaker.probes_in_flight) == (1, 1, 0)
    await succeed(breaker)
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert [e.reason for e in events if isinstance(e, BreakerStateChanged)] == [
        "1 consecutive failure",
        "2 s since it opened",
        "2 probes succeeded",
    ]


async def test_failed_probe_reopens_for_a_fresh_recovery_time(clock: Clock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=4, half_open_max_calls=2, hooks=events.append
    )
    await fail(breaker)
    await anyio.sleep(5)
    await succeed(breaker)  # one probe succeeded, one to go...
    await anyio.lowlevel.checkpoint()
    with pytest.raises(Boom) as info:
        async with breaker:
            raise Boom
    assert info.value.__notes__ == [f"circuit breaker {breaker._policy!r} opened: a probe failed"]
    t1 = clock.now()
    assert breaker.state is OPEN
    assert breaker.retry_after == clock.approx(4)
    await anyio.sleep(2.5)
    assert breaker.state is OPEN
    await anyio.sleep(4 - (clock.now() - t1) + 1.5)
    assert breaker.state is HALF_OPEN
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


@pytest.mark.parametrize("max_calls", [1, 3])
async def test_half_open_runs_at_most_max_calls_probes(clock: Clock, max_calls: int) -> None:
    events: list[Event] = []
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
        assert breaker.probes_in_flight == 1
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
    before = (breaker.failure_count, breaker.success_count, breaker.call_count)

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
    assert (breaker.failure_count, breaker.success_count, breaker.call_count) == before
    assert breaker.state is CLOSED
    assert len(seen) == 4  # the predicate never saw the cancellation


@pytest.mark.parametrize("how", ["async with", "call", "decorator"])
async def test_cancelled_probe_frees_its_slot(clock: Clock, how: str) -> None:
    events: list[Event] = []
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
        assert breaker.probes_in_flight == 1
        with pytest.raises(CircuitOpen):
            await succeed(breaker)
        tg.cancel_scope.cancel()
    assert breaker.state is HALF_OPEN
    assert (breaker.probes_in_flight, breaker.success_count, breaker.failure_count) == (0, 0, 0)
    await succeed(breaker)  # the freed slot takes the next probe
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


async def test_keyboard_interrupt_like_errors_are_not_counted() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    with pytest.raises(GeneratorExit):
        async with breaker:
            raise GeneratorExit
    assert breaker.state is CLOSED
    assert breaker.call_count == 0


# --- what counts ---------------------------------------------------------------------


async def test_other_errors_pass_through_uncounted() -> None:
    breaker = CircuitBreaker(failure_threshold=2, on=Boom)
    await fail(breaker)
    await fail(breaker, 3, exc=Other)
    assert (breaker.failure_count, breaker.success_count, breaker.call_count) == (1, 0, 1)
    await fail(breaker)
    assert breaker.state is OPEN


async def test_ignored_error_frees_the_probe_slot_without_closing() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, on=(Boom, KeyError))
    await fail(breaker, exc=KeyError)
    await anyio.sleep(2.5)
    await fail(breaker, exc=Other)
    assert breaker.state is HALF_OPEN
    assert breaker.probes_in_flight == 0
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
    assert (breaker.failure_count, breaker.call_count) == (0, 0)
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
    assert breaker.probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_rejections_of_other_policies_are_not_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=1, on=lambda e: True)
    await fail(breaker, 3, exc=BulkheadFull)
    assert breaker.state is CLOSED
    assert breaker.call_count == 0


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
        assert breaker.call_count == 0


# --- failure-rate mode -------------------------------------------------------------


async def test_count_window_opens_on_failure_rate() -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        window=CountWindow(4), minimum_calls=4, failure_rate_threshold=0.5, hooks=events.append
    )
    await fail(breaker)
    await succeed(breaker, 3)  # F S S S: 25 %
    await fail(breaker)  # S S S F: 25 %
    assert breaker.state is CLOSED
    assert (breaker.failure_count, breaker.success_count, breaker.call_count) == (1, 3, 4)
    await fail(breaker)  # S S F F: 50 %
    assert breaker.state is OPEN
    (change,) = events
    assert isinstance(change, BreakerStateChanged)
    assert change.reason == "failure rate 50% >= 50% over 4 calls"


async def test_minimum_calls_before_judging() -> None:
    breaker = CircuitBreaker(window=CountWindow(20), minimum_calls=10, failure_rate_threshold=0.9)
    await fail(breaker, 9)
    assert breaker.state is CLOSED
    assert breaker.failure_count == 9
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
    assert breaker.call_count == 0  # t=5, bucket 2: bucket 0 is gone
    await fail(breaker)  # t=5
    assert breaker.state is CLOSED  # one failure, not two
    await anyio.sleep(2)
    await succeed(breaker)  # t=7, bucket 3
    assert (breaker.call_count, breaker.failure_count) == (2, 1)
    await anyio.sleep(2)  # t=9, bucket 4: bucket 2 (the failure at 5) is gone
    assert (breaker.call_count, breaker.failure_count) == (1, 0)
    await fail(breaker, 2)  # 2 failures of 3 calls: 67 % < 100 %
    assert breaker.state is CLOSED
    await anyio.sleep(2)  # t=11, bucket 5: the success (bucket 3) is gone
    await fail(breaker)  # 3 failures of 3
    assert breaker.state is OPEN


async def test_time_window_after_a_long_idle_starts_empty() -> None:
    breaker = CircuitBreaker(window=TimeWindow(1, buckets=4), minimum_calls=3)
    await fail(breaker, 2)
    await anyio.sleep(3)
    assert breaker.call_count == 0
    await fail(breaker, 2)
    assert breaker.state is CLOSED


async def test_time_window_memory_is_bounded() -> None:
    breaker = CircuitBreaker(window=TimeWindow(2, buckets=4), minimum_calls=1000)
    for _ in range(20):
        await succeed(breaker, 10)
        await anyio.sleep(0.25)
    circuit = breaker._circuit
    assert circuit is not None
    ring = circuit.window
    assert isinstance(ring, _breaker._TimeRing)
    assert len(ring.b_calls) == 4
    assert breaker.call_count <= 80  # 4 buckets of 0.5 s, 20 calls each


async def test_slow_calls_open_on_slow_call_rate(clock: Clock) -> None:
    events: list[Event] = []
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
    assert breaker.slow_call_count == 1
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
    assert (breaker.failure_count, breaker.slow_call_count, breaker.call_count) == (1, 1, 1)


async def test_slow_probe_reopens(clock: Clock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(
        window=CountWindow(2), recovery_time=1, slow_call_duration=2, hooks=events.append
    )
    await fail(breaker, 2)
    await anyio.sleep(2.5)
    async with breaker:
        await anyio.sleep(3.5)
    assert breaker.state is OPEN
    assert events[-1] == BreakerStateChanged(
        policy=breaker._policy, old=HALF_OPEN, new=OPEN, reason="a probe was slow"
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
    assert breaker.call_count == 0
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
        assert (breaker.call_count, breaker.failure_count) == (len(last), last.count("F"))


class KeyboardInterruptLike(BaseException):
    """Never counted: not an Exception."""


# --- operators -----------------------------------------------------------------------


async def test_open_holds_until_closed(clock: Clock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(recovery_time=1, name="db", hooks=events.append)
    await fail(breaker, 2)
    await breaker.open()
    await anyio.sleep(5)
    assert breaker.state is OPEN
    assert breaker.retry_after is None
    with pytest.raises(CircuitOpen, match="'db' is held open; close\\(\\) or reset\\(\\)") as info:
        await succeed(breaker)
    assert info.value.retry_after is None
    await breaker.close()
    assert breaker.state is CLOSED
    assert breaker.failure_count == 0
    await breaker.close()  # already closed: nothing happens
    assert [(e.old, e.new, e.reason) for e in events if isinstance(e, BreakerStateChanged)] == [
        (CLOSED, OPEN, "opened by hand until closed"),
        (OPEN, CLOSED, "closed by hand"),
    ]


async def test_open_for_seconds_then_half_opens(clock: Clock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(recovery_time=30, hooks=events.append)
    await breaker.open(seconds=3)
    assert breaker.retry_after == clock.approx(3)
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
    events: list[Event] = []
    breaker = CircuitBreaker(window=CountWindow(10), hooks=events.append)
    await fail(breaker, 3)
    await breaker.close()
    assert breaker.failure_count == 3
    await breaker.reset()
    assert (breaker.failure_count, breaker.call_count) == (0, 0)
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
    assert breaker.failure_count == 0


# --- events and hooks ----------------------------------------------------------------


async def test_async_hooks_and_global_hooks_receive_events() -> None:
    mine: list[Event] = []
    everyone: list[Event] = []

    async def hook(event: Event) -> None:
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
    events: list[Event] = []
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
    assert breaker.success_count == 4


async def test_decorator_refuses_sync_functions() -> None:
    breaker = CircuitBreaker()

    def sync() -> int:
        return 1

    with pytest.raises(
        TypeError, match="must be an async function \\(async def\\), got the synchronous"
    ):
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
    assert counted.success_count == 2
    assert (breaker.slow_call_count, breaker.call_count) == (1, 2)
    assert breaker.state is CLOSED  # 50 % slow < 100 %


async def test_nesting_the_same_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, half_open_max_calls=2)
    async with breaker, breaker:
        pass
    assert breaker.success_count == 2
    await fail(breaker)
    await anyio.sleep(2.5)
    async with breaker:
        async with breaker:
            assert breaker.probes_in_flight == 2
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
    circuit = breaker._circuit
    assert circuit is not None
    circuit.force(OPEN, 0.0, 5.0, True)
    assert repr(breaker) == "<CircuitBreaker name='db' state=open retry_after=0>"
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
        ({"on": int}, TypeError, "on must be an exception type, a tuple of them, or a predicate"),
        ({"on": ()}, ValueError, "on must name at least one exception type"),
        ({"on": (Boom, "x")}, TypeError, "got 'x' in on="),
        ({"on": KeyboardInterrupt}, ValueError, "on=KeyboardInterrupt can never count"),
        ({"on": "Boom"}, TypeError, "on must be an exception type.*got 'Boom' \\(str\\)"),
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
            "store must implement the BreakerStore protocol; .* has no acquire, record,",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CircuitBreaker(**kwargs)


def test_bad_predicates() -> None:
    async def async_predicate(exc: Exception) -> bool:
        return True

    with pytest.raises(TypeError, match="on must be a synchronous predicate"):
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


class RemoteStore:
    """A BreakerStore that is not the in-memory one (so the breaker goes
    through the async protocol), each operation taking a checkpoint like a
    network round trip, and logging what it was asked."""

    def __init__(self, delay: float = 0.0) -> None:
        self.inner = InMemoryBreakerStore()
        self.delay = delay
        self.calls: list[str] = []

    async def _io(self, op: str) -> None:
        self.calls.append(op)
        if self.delay:
            await anyio.sleep(self.delay)
        else:
            await anyio.lowlevel.checkpoint()

    async def acquire(self, key: str, config: BreakerConfig) -> BreakerUpdate:
        await self._io("acquire")
        return await self.inner.acquire(key, config)

    async def record(
        self, key: str, config: BreakerConfig, ticket: int, *, failure: bool, slow: bool
    ) -> BreakerUpdate:
        await self._io("record")
        return await self.inner.record(key, config, ticket, failure=failure, slow=slow)

    async def release(self, key: str, config: BreakerConfig, ticket: int) -> BreakerUpdate:
        await self._io("release")
        return await self.inner.release(key, config, ticket)

    async def force(
        self,
        key: str,
        config: BreakerConfig,
        state: CircuitState,
        *,
        seconds: float | None = None,
        reset: bool = False,
    ) -> BreakerUpdate:
        await self._io("force")
        return await self.inner.force(key, config, state, seconds=seconds, reset=reset)

    async def snapshot(self, key: str, config: BreakerConfig) -> BreakerSnapshot:
        await self._io("snapshot")
        return await self.inner.snapshot(key, config)


async def test_a_remote_store_runs_the_same_state_machine(clock: Clock) -> None:
    events: list[Event] = []
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
    assert breaker.retry_after == clock.approx(4 - (clock.now() - t0))
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
    assert breaker.failure_count == 0
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
    assert breaker.slow_call_count == 0  # counts start over once open
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
    with anyio.move_on_after(0.5) as scope:
        async with breaker:
            pytest.fail("cancelled before the body runs")  # pragma: no cover
    assert scope.cancelled_caught
    store.delay = 0
    # the shielded admission finished (2 s), then the call was cancelled and released
    assert store.calls[-2:] == ["acquire", "release"]
    assert (await breaker.snapshot()).probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_a_store_that_does_not_answer(clock: Clock) -> None:
    class Stuck(RemoteStore):
        async def _io(self, op: str) -> None:
            self.calls.append(op)
            if op != "release" or self.delay:
                await anyio.sleep_forever()

    store = Stuck()
    breaker = CircuitBreaker(name="api", store=store)
    t0 = clock.now()
    with pytest.raises(TimeoutError, match="did not answer acquire\\(\\) within 5 s"):
        await succeed(breaker)
    assert clock.now() - t0 == clock.approx(_breaker.STORE_TIMEOUT)
    # release (cleanup) gives up quietly, so it never hides the error on its way out
    await breaker._release(0)
    store.delay = 1
    t0 = clock.now()
    await breaker._release(0)
    assert clock.now() - t0 == clock.approx(_breaker.STORE_TIMEOUT)


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
    config = BreakerConfig(failure_threshold=1, recovery_time=1, half_open_max_calls=1)
    admitted = await store.acquire("k", config)
    assert admitted == BreakerUpdate(snapshot=BreakerSnapshot(state=CLOSED), ticket=0)
    assert admitted.ticket is not None
    opened = await store.record("k", config, admitted.ticket, failure=True, slow=False)
    assert (opened.previous, opened.snapshot.state, opened.reason) == (
        CLOSED,
        OPEN,
        "1 consecutive failure",
    )
    refused = await store.acquire("k", config)
    assert refused.ticket is None
    assert refused.snapshot.retry_after == clock.approx(1)
    await anyio.sleep(2.5)
    probe = await store.acquire("k", config)
    assert (probe.ticket, probe.previous, probe.snapshot.probes_in_flight) == (2, OPEN, 1)
    released = await store.release("k", config, 2)
    assert released.snapshot.probes_in_flight == 0
    stale = await store.record("k", config, 0, failure=True, slow=False)
    assert stale.previous is None
    assert stale.snapshot.state is HALF_OPEN
    with pytest.raises(
        ValueError, match=r"state must be CircuitState\.OPEN or CircuitState\.CLOSED"
    ):
        await store.force("k", config, HALF_OPEN)
    closed = await store.force("k", config, CLOSED)
    assert closed.previous is HALF_OPEN
    opened = await store.force("k", config, OPEN, seconds=5)
    again = await store.force("k", config, OPEN, seconds=50)  # already open, no reset: kept
    assert (opened.previous, again.previous) == (CLOSED, None)
    assert again.snapshot.retry_after == clock.approx(5)
    await store.force("k", config, CLOSED)
    assert (await store.snapshot("k", config)).state is CLOSED


def test_exports_typed_protocol() -> None:
    store: _breaker.BreakerStore = InMemoryBreakerStore()
    assert store is not None


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
    async def slow_hook(event: Event) -> None:
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
    assert breaker.probes_in_flight == 0
    await succeed(breaker)  # the slot takes the next probe
    assert breaker.state is CLOSED


async def test_a_raising_hook_at_half_open_frees_the_probe_slot(clock: Clock) -> None:
    def bad_hook(event: Event) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is HALF_OPEN:
            raise RuntimeError("hook is broken")

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, hooks=bad_hook)
    await fail(breaker)
    await anyio.sleep(1.5)
    with pytest.raises(RuntimeError, match="hook is broken"):
        await succeed(breaker)
    assert (breaker.state, breaker.probes_in_flight) == (HALF_OPEN, 0)
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_call_with_a_sync_function_is_a_type_error_and_not_a_failure() -> None:
    breaker = CircuitBreaker(failure_threshold=1)

    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match=r"sync\(\.\.\.\) returned 1, which cannot be awaited"):
        await breaker.call(sync)  # type: ignore[arg-type]
    assert (breaker.state, breaker.call_count) == (CLOSED, 0)  # a bug here, not the dependency

    async def fetch() -> None:
        pass

    coro = fetch()
    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        await breaker.call(coro)  # type: ignore[arg-type]
    assert (breaker.state, breaker.call_count) == (CLOSED, 0)


# --- operators: called or awaited ------------------------------------------------


def _line_below(lines: int) -> int:
    """The number of the line *lines* below the caller's (where the call to check is)."""
    frame = inspect.currentframe()
    assert frame is not None
    assert frame.f_back is not None
    return frame.f_back.f_lineno + lines


async def test_operators_act_at_once_without_await_on_the_in_memory_store(clock: Clock) -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(recovery_time=5, name="db", hooks=events.append)
    result = breaker.open()  # no await: the change is made by the call
    assert breaker.state is OPEN
    assert changes(events) == [(CLOSED, OPEN)]
    assert inspect.isawaitable(result)
    assert not inspect.iscoroutine(result)
    assert await result is None
    assert await result is None  # awaiting again is harmless
    breaker.close()  # dropped without being awaited: no warning (filterwarnings=error)
    assert breaker.state is CLOSED
    await fail(breaker, 2)
    breaker.reset()
    assert (breaker.state, breaker.failure_count, breaker.call_count) == (CLOSED, 0, 0)
    breaker.open(seconds=2)
    with pytest.raises(CircuitOpen) as info:
        await succeed(breaker)
    assert info.value.retry_after == clock.approx(2)  # a known time: a number
    breaker.reset()
    assert breaker.state is CLOSED
    assert [(e.old, e.new, e.reason) for e in events if isinstance(e, BreakerStateChanged)] == [
        (CLOSED, OPEN, "opened by hand until closed"),
        (OPEN, CLOSED, "closed by hand"),
        (CLOSED, OPEN, "opened by hand for 2 s"),
        (OPEN, CLOSED, "closed by hand"),
    ]


async def test_awaited_operators_emit_the_same_events_as_called_ones() -> None:
    awaited: list[Event] = []
    called: list[Event] = []
    for log, wait in ((awaited, True), (called, False)):
        breaker = CircuitBreaker(window=CountWindow(4), name="db", hooks=log.append)
        for op in (breaker.open, breaker.open, breaker.close, breaker.close, breaker.reset):
            result = op()
            if wait:
                await result
        await fail(breaker)
        result = breaker.reset()
        if wait:
            await result
        assert breaker.call_count == 0
    assert [(e.old, e.new, e.reason) for e in awaited if isinstance(e, BreakerStateChanged)] == [
        (CLOSED, OPEN, "opened by hand until closed"),
        (OPEN, OPEN, "opened by hand until closed"),
        (OPEN, CLOSED, "closed by hand"),
    ]
    assert [(e.policy, e.old, e.new, e.reason) for e in awaited] == [
        (e.policy, e.old, e.new, e.reason) for e in called if isinstance(e, BreakerStateChanged)
    ]


def test_close_and_reset_work_outside_an_event_loop() -> None:
    events: list[Event] = []
    breaker = CircuitBreaker(name="db", hooks=events.append)
    circuit = breaker._circuit
    assert circuit is not None
    circuit.force(OPEN, 0.0, None, True)
    breaker.close()
    assert breaker.state is CLOSED
    circuit.consecutive = 3
    breaker.reset()
    assert breaker.failure_count == 0
    assert changes(events) == [(OPEN, CLOSED)]
    assert repr(breaker.reset()) == "<done>"


async def test_async_hooks_run_when_the_operator_is_awaited(clock: Clock) -> None:
    log: list[str] = []

    async def slow_hook(event: Event) -> None:
        log.append("slow started")
        await anyio.sleep(1)
        log.append("slow done")

    async def fast_hook(event: Event) -> None:
        log.append("fast")

    breaker = CircuitBreaker(name="db", hooks=[slow_hook, log.append, fast_hook])
    t0 = clock.now()
    pending = breaker.open()
    assert breaker.state is OPEN  # made at the call; the sync hook has run
    assert [entry for entry in log if isinstance(entry, str)] == []
    assert len(log) == 1
    assert re.fullmatch(r"<open\(\) of 'db': 2 hooks to await>", repr(pending))
    await pending
    assert clock.now() - t0 == clock.approx(1)
    assert log[1:] == ["slow started", "slow done", "fast"]


async def test_async_hooks_of_an_unawaited_operator_warn_at_the_call_site() -> None:
    ran: list[Event] = []

    async def hook(event: Event) -> None:
        ran.append(event)

    breaker = CircuitBreaker(name="db", hooks=hook)
    line = _line_below(2)
    with pytest.warns(RuntimeWarning) as record:
        breaker.open()
    assert breaker.state is OPEN  # the change itself was made
    assert ran == []
    assert len(record) == 1  # and no "coroutine ... was never awaited" on top
    warning = record[0]
    assert str(warning.message) == (
        "open() of circuit breaker 'db' was not awaited: the change was made, but 1 async"
        " hook did not run; write `await breaker.open()`"
    )
    assert (warning.filename, warning.lineno) == (__file__, line)


async def test_a_failing_hook_of_an_operator_raises_after_the_change() -> None:
    async def async_hook(event: Event) -> None:
        raise AssertionError("never started")  # pragma: no cover

    def broken(event: Event) -> None:
        raise RuntimeError("hook is broken")

    class NotACoroutine:
        def __await__(self) -> Iterator[None]:
            raise AssertionError("never awaited")  # pragma: no cover

    breaker = CircuitBreaker(hooks=[async_hook, lambda event: NotACoroutine(), broken])
    with pytest.raises(RuntimeError, match="hook is broken"):
        breaker.open()  # the pending async hooks are discarded: no warning
    assert breaker.state is OPEN

    async def failing(event: Event) -> None:
        raise RuntimeError("async hook is broken")

    started: list[Event] = []

    async def after(event: Event) -> None:
        started.append(event)  # pragma: no cover

    other = CircuitBreaker(hooks=[failing, after])
    with pytest.raises(RuntimeError, match="async hook is broken"):
        await other.open()
    assert other.state is OPEN
    assert started == []


async def test_cancelling_an_awaited_operator_keeps_the_change(clock: Clock) -> None:
    log: list[str] = []

    async def slow_hook(event: Event) -> None:
        log.append("slow")
        await anyio.sleep(5)
        log.append("never")  # pragma: no cover

    async def next_hook(event: Event) -> None:
        log.append("next")  # pragma: no cover

    breaker = CircuitBreaker(hooks=[slow_hook, next_hook])
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        await breaker.open()
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(1)
    assert breaker.state is OPEN
    assert log == ["slow"]  # the rest is dropped, and nothing warns


async def test_operators_on_another_store_act_when_awaited() -> None:
    events: list[Event] = []
    store = RemoteStore()
    breaker = CircuitBreaker(name="api", store=store, hooks=events.append)
    operation = breaker.reset()
    assert not inspect.iscoroutine(operation)
    assert repr(operation) == f"<reset() of 'api' on {store!r}: pending>"
    assert store.calls == []  # nothing yet: the store acts when awaited
    await operation
    assert store.calls == ["force"]
    assert repr(operation) == f"<reset() of 'api' on {store!r}: awaited>"
    with pytest.raises(RuntimeError, match=r"reset\(\) of 'api' was already awaited"):
        await operation
    await breaker.open(seconds=3)
    assert breaker.state is OPEN
    await breaker.close()
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, CLOSED)]


@pytest.mark.parametrize("op", ["open", "close", "reset"])
async def test_an_unawaited_operator_on_another_store_warns_and_does_nothing(op: str) -> None:
    store = RemoteStore()
    breaker = CircuitBreaker(name="api", store=store)
    if op != "open":
        await breaker.open()
    calls = len(store.calls)
    state = breaker.state
    line = _line_below(2)
    with pytest.warns(RuntimeWarning) as record:
        getattr(breaker, op)()
    assert len(record) == 1  # no "coroutine ... was never awaited" on top
    warning = record[0]
    assert str(warning.message) == (
        f"{op}() of circuit breaker 'api' was never awaited, so nothing happened: on"
        f" {store!r} the change is made by the store when awaited; write"
        f" `await breaker.{op}()`"
    )
    assert (warning.filename, warning.lineno) == (__file__, line)
    assert len(store.calls) == calls  # the store was never asked
    assert breaker.state is state
    assert (await breaker.snapshot()).state is state


async def test_cancelled_operator_on_another_store_still_reaches_the_store() -> None:
    store = RemoteStore()
    breaker = CircuitBreaker(name="api", store=store)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await breaker.open()  # the store call is shielded (a bounded time)
    assert store.calls == ["force"]
    assert breaker.state is OPEN


# --- derive: one breaker's settings, another name -----------------------------------


async def test_derive_copies_the_settings_not_the_state(clock: Clock) -> None:
    events: list[Event] = []

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
    assert (child.name, child.state, child.call_count) == ("api:one", CLOSED, 0)
    assert child.config == template.config
    assert child.hooks == template.hooks
    assert isinstance(child.store, InMemoryBreakerStore)
    assert child.store is not template.store  # its own private store
    await fail(child, exc=Other)  # the predicate is copied: ignored
    assert child.call_count == 0

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
