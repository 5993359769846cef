"""CircuitBreaker's failure-rate mode: count and time windows, slow calls."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyway import (
    BreakerStateChanged,
    CircuitBreaker,
    CircuitState,
    CountWindow,
    PolicyEvent,
    TimeWindow,
)
from anyway.testing import Clock
from breaker_helpers import (
    Boom,
    fail,
    succeed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
STORE_TIMEOUT = 5.0  # how long a breaker waits, shielded, to give a slot back


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
