"""periodic(): exact ticks, no drift, missed ticks skipped or burst."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway
from anyway.testing import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

PERIOD = 1.0  # on uvloop (20x accelerated real time) half a period is 25 ms of slack


async def _ticks(count: int, *, body: float = 0.0, **kwargs: Any) -> list[float]:
    ticks: list[float] = []
    async for tick in anyway.periodic(PERIOD, **kwargs):
        ticks.append(tick)
        if len(ticks) == count:
            break
        if body:
            await anyio.sleep(body)
    return ticks


async def test_tick_zero_at_once_then_exact_multiples(clock: Clock) -> None:
    before = clock.now()
    ticks = await _ticks(5)
    start = ticks[0]
    assert start - before == clock.approx(0)
    assert ticks == [start + n * PERIOD for n in range(5)]
    assert clock.now() - start == clock.approx(4 * PERIOD)


async def test_no_drift_when_the_body_takes_time(clock: Clock) -> None:
    ticks = await _ticks(6, body=0.3 * PERIOD)
    start = ticks[0]
    assert ticks == [start + n * PERIOD for n in range(6)]
    assert clock.now() - start == clock.approx(5 * PERIOD)


async def test_a_thousand_ticks_land_exactly(clock: Clock) -> None:
    # 0.001 is not a binary fraction: an accumulated sum drifts, a product does not
    period = 0.001
    start = last = math.nan
    count = 0
    async for tick in anyway.periodic(period, missed="burst"):
        if count == 0:
            start = tick
        last = tick
        count += 1
        if count == 1000:
            break
    assert last == start + 999 * period
    accumulated = 0.0
    for _ in range(999):  # what `next += period` in a hand-written loop does
        accumulated += period
    assert accumulated != 999 * period  # the drift this avoids
    assert clock.now() - start == clock.approx(999 * period)


async def test_skip_drops_ticks_that_passed(clock: Clock) -> None:
    start = math.nan
    seen: list[tuple[float, float]] = []
    async for tick in anyway.periodic(PERIOD):
        if not seen:
            start = tick
        seen.append((tick, clock.now() - start))
        if len(seen) == 1:
            await anyio.sleep(2.5 * PERIOD)  # ticks 1 and 2 pass meanwhile
        if len(seen) == 3:
            break
    # tick n is start + n * PERIOD exactly (tick - start need not be n * PERIOD
    # to the last bit: the subtraction rounds)
    assert [t for t, _ in seen] == [start + n * PERIOD for n in (0, 3, 4)]
    assert [at for _, at in seen] == [
        clock.approx(0),
        clock.approx(3 * PERIOD),
        clock.approx(4 * PERIOD),
    ]


async def test_burst_yields_missed_ticks_at_once(clock: Clock) -> None:
    start = math.nan
    seen: list[tuple[float, float]] = []
    async for tick in anyway.periodic(PERIOD, missed="burst"):
        if not seen:
            start = tick
        seen.append((tick, clock.now() - start))
        if len(seen) == 1:
            await anyio.sleep(2.5 * PERIOD)
        if len(seen) == 4:
            break
    assert [t for t, _ in seen] == [start + n * PERIOD for n in range(4)]
    late = clock.approx(2.5 * PERIOD)
    assert [at for _, at in seen] == [clock.approx(0), late, late, clock.approx(3 * PERIOD)]


async def test_skip_resumes_at_the_first_tick_not_in_the_past(clock: Clock) -> None:
    # On virtual time the body wakes exactly at tick 2's due time, which is
    # therefore not missed; on real time it wakes a little later, and tick 3
    # is the first one not in the past. Either way: the first due >= wake-up.
    # periodic reads the clock a moment after the body's last reading (a clock
    # in steps may tick in between): the tick is the first one due at or after
    # a reading between the two, exactly `woke`'s on virtual time.
    ticks: list[float] = []
    woke = yielded = math.nan
    async for tick in anyway.periodic(PERIOD):
        ticks.append(tick)
        if len(ticks) == 1:
            await anyio.sleep_until(tick + 2 * PERIOD)
            woke = clock.now()
        if len(ticks) == 2:
            yielded = clock.now()
            break
    start = ticks[0]

    def first_due_at_or_after(t: float) -> float:
        return start + min(n for n in range(2, 10) if start + n * PERIOD >= t) * PERIOD

    assert first_due_at_or_after(woke) <= ticks[1] <= first_due_at_or_after(yielded)


async def test_each_iteration_is_a_cancellation_point(clock: Clock) -> None:
    start = clock.now()
    ticks: list[float] = []
    with anyio.move_on_after(2.5 * PERIOD) as scope:
        async for tick in anyway.periodic(PERIOD):
            ticks.append(tick)  # noqa: PERF401 - the list must survive the cancellation
    assert scope.cancelled_caught
    assert ticks[0] - start == clock.approx(0)
    assert ticks == [ticks[0] + n * PERIOD for n in range(3)]
    assert clock.now() - start == clock.approx(2.5 * PERIOD)


async def test_a_deadline_cancels_even_when_no_wait_is_needed(clock: Clock) -> None:
    # "burst" with a body that always overruns never sleeps: the checkpoint
    # on every tick still lets the deadline through
    async def overrun() -> None:
        with anyway.deadline(1.0):
            async for _tick in anyway.periodic(PERIOD, missed="burst"):
                await anyio.sleep(2 * PERIOD)

    with pytest.raises(anyway.DeadlineExceeded):
        await overrun()
    with anyio.CancelScope() as scope:
        scope.cancel()
        async for _tick in anyway.periodic(PERIOD, missed="burst"):
            pytest.fail("a cancelled scope must not see a tick")


async def test_the_start_is_the_first_iteration_and_repr_shows_state(clock: Clock) -> None:
    ticks = anyway.periodic(PERIOD)
    assert repr(ticks) == "<periodic period=1.0 missed='skip' ticks=0>"
    await anyio.sleep(10)
    start = clock.now()
    async for tick in ticks:
        assert tick - start == clock.approx(0)
        break
    assert repr(ticks) == "<periodic period=1.0 missed='skip' ticks=1>"


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"period": 0}, ValueError, "period must be > 0"),
        ({"period": -1.0}, ValueError, "period must be > 0"),
        ({"period": math.nan}, ValueError, "NaN"),
        ({"period": math.inf}, ValueError, "finite"),
        ({"period": "1"}, TypeError, "period must be a number"),
        ({"period": True}, TypeError, "period must be a number"),
        ({"period": 1.0, "missed": "catch-up"}, ValueError, "missed must be 'skip'"),
    ],
)
def test_bad_arguments_fail_at_the_call(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        anyway.periodic(**kwargs)


@settings(
    deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bodies=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=8),
    missed=st.sampled_from(["skip", "burst"]),
)
async def test_ticks_are_exact_multiples_in_order(
    clock: Clock, bodies: list[int], missed: Literal["skip", "burst"]
) -> None:
    """Whatever the body's durations (in eighths of a period): every tick is
    start + k * period; "burst" yields every k; "skip" yields the first k
    not in the past when the body ended, and never sleeps past it."""
    start = math.nan
    indices: list[int] = []
    seen: list[float] = []
    ends: list[float] = []
    async for tick in anyway.periodic(PERIOD, missed=missed):
        seen.append(clock.now())
        if not indices:
            start = tick
        k = round((tick - start) / PERIOD)
        assert tick == start + k * PERIOD
        indices.append(k)
        if len(indices) > len(bodies):
            break
        await anyio.sleep(bodies[len(indices) - 1] * PERIOD / 8)
        ends.append(clock.now())
    if missed == "burst":
        assert indices == list(range(len(indices)))
        return
    for i, (previous, k) in enumerate(itertools.pairwise(indices)):
        assert k > previous
        assert start + k * PERIOD >= ends[i]  # never a tick from the past...
        if k > previous + 1:  # ...and only ticks that had passed are skipped
            assert start + (k - 1) * PERIOD < seen[i + 1]
