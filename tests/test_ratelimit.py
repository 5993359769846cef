"""RateLimiter and KeyedRateLimiter (on one key): exact GCRA grant times,
burst, timeout, FIFO, cancellation at each await point, fractional costs, a
new event loop, clocks that move in steps, bad input. Every test runs on every
loop, foreign clocks included (KeyedRateLimiter's own behaviour: test_keyed.py)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyway import (
    CallRejected,
    KeyedRateLimiter,
    PolicyEvent,
    RateLimiter,
    RateLimitExceeded,
    map_all,
)
from anyway.testing import virtual_time_options
from limit_helpers import Recorder, acquire, at_times, both, run_fresh, try_acquire, wait_time

# Every test also runs on clocks nobody here wrote: looptime (time in whole
# microseconds) and trio's MockClock. Grant times are asserted where the
# interval is a binary fraction (exact on every clock); elsewhere a quantized
# clock grants at its first reading at or after the exact time.
pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

# --- exact grant times -----------------------------------------------------------


@pytest.mark.parametrize("make", both(2))
async def test_evenly_spaced_grants(make: Any, clock: Any) -> None:
    limiter = make()
    t0 = clock.now()
    times = []
    for _ in range(5):
        await acquire(limiter)
        times.append(clock.now() - t0)
    assert times == [clock.approx(t) for t in (0.0, 0.5, 1.0, 1.5, 2.0)]


async def test_async_with_takes_one_unit_and_gives_nothing_back(clock: Any) -> None:
    limiter = RateLimiter(1)
    t0 = clock.now()
    async with limiter:
        pass
    async with limiter:
        assert clock.now() - t0 == clock.approx(1.0)
    async with limiter:
        assert clock.now() - t0 == clock.approx(2.0)


async def test_async_with_bursts_and_queues(clock: Any) -> None:
    limiter = RateLimiter(1, burst=2)
    t0 = clock.now()
    async with limiter:
        pass
    async with limiter:  # still within the burst
        assert clock.now() - t0 == clock.approx(0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)  # granted at 1
        await anyio.sleep(0.5)
        async with limiter:  # behind it: 2
            assert clock.now() - t0 == clock.approx(2)


@pytest.mark.parametrize("make", both(3, burst=3))
async def test_burst_then_steady_rate_then_burst_again(make: Any, clock: Any) -> None:
    limiter = make()
    t0 = clock.now()
    times = []
    for _ in range(5):
        await acquire(limiter)
        times.append(clock.now() - t0)
    # 3 at once, then one every 1/3 s
    assert times == [clock.approx(t) for t in (0, 0, 0, 1 / 3, 2 / 3)]
    await anyio.sleep(5)  # fully recovered: a whole burst again
    assert [try_acquire(limiter) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("make", both(1, per=2.0, burst=2))
async def test_cost_consumes_several_units(make: Any, clock: Any) -> None:
    limiter = make()  # one unit every 2 s, bursts of 2
    t0 = clock.now()
    await acquire(limiter, 2)
    assert clock.now() - t0 == clock.approx(0)
    await acquire(limiter, 1)
    assert clock.now() - t0 == clock.approx(2)
    await acquire(limiter, 2)  # needs 2 free units: TAT 6 - 2*2
    assert clock.now() - t0 == clock.approx(6)


async def test_window_never_exceeds_rate_plus_burst_minus_one(clock: Any) -> None:
    # 8 per second with burst 3, 20 eager callers taking 2 units each: 3 at
    # once, then one every 1/8 s, so the busiest 1-second window holds exactly
    # 8 + 3 - 1 = 10 grants, and no window more.
    limiter = RateLimiter(8, burst=3)
    t0 = clock.now()
    grants: list[float] = []

    async def caller() -> None:
        for _ in range(2):
            await limiter.acquire()
            grants.append(clock.now() - t0)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(caller)
    expected = [0.0, 0.0, 0.0, *(k / 8 for k in range(1, 38))]
    assert sorted(grants) == [clock.approx(t) for t in expected]
    busiest = max(sum(1 for g in expected if start <= g < start + 1.0) for start in expected)
    assert busiest == 10


def test_decisions_are_exact_where_floats_are_not() -> None:
    # rate=3: T = 1/3 is no float. After a grant at 0 the next unit conforms at
    # exactly 1/3: not at the float just below it, yes at the one just above.
    below = 0.3333333333333333
    assert below < Fraction(1, 3) < math.nextafter(below, 1)

    async def body(set_time: Callable[[float], None]) -> None:
        limiter = RateLimiter(3)
        assert limiter.try_acquire()
        set_time(below)
        assert not limiter.try_acquire()
        wait = limiter.wait_time()  # rounded up: never early
        assert Fraction(below) + Fraction(wait) >= Fraction(1, 3)
        set_time(math.nextafter(below, 1))
        assert limiter.wait_time() == 0.0
        assert limiter.try_acquire()
        # offered every float next to k/3, it never fits 4 units in [t, t+1)
        limiter = RateLimiter(3)
        near = {math.nextafter(k / 3, to) for k in range(1, 10) for to in (0, 2)}
        granted = []
        for t in sorted({0.0, *near, *(k / 3 for k in range(1, 10))}):
            set_time(t)
            if limiter.try_acquire():
                granted.append(t)
        assert len(granted) >= 8  # arriving a hair late costs a hair of capacity
        for start in granted:
            window = [g for g in granted if Fraction(start) <= g < Fraction(start) + 1]
            assert len(window) <= 3

    at_times(body)


def test_near_boundary_on_a_large_clock() -> None:
    # Trio's real clock starts far from 0 and monotonic clocks run for days:
    # rounding grows with the magnitude, decisions must stay exact.
    async def body(set_time: Callable[[float], None]) -> None:
        limiter = RateLimiter(7, per=3.0, burst=2)
        start = 1e6 + 0.1
        set_time(start)
        assert limiter.try_acquire(2)
        due = start + limiter.wait_time()  # 3/7 s later, give or take a float
        while Fraction(due) < Fraction(start) + Fraction(3, 7):
            due = math.nextafter(due, math.inf)
        while Fraction(math.nextafter(due, 0)) >= Fraction(start) + Fraction(3, 7):
            due = math.nextafter(due, 0)
        set_time(math.nextafter(due, 0))
        assert not limiter.try_acquire()
        set_time(due)
        assert limiter.try_acquire()

    at_times(body)


@settings(deadline=None, max_examples=200)
@given(
    rate=st.integers(1, 50),
    per=st.sampled_from([0.1, 0.25, 1 / 3, 1.0, 7.0]),
    burst=st.integers(1, 5),
    start=st.sampled_from([0.0, 1 / 3, 12345.678, 1e6 + 0.1]),
    steps=st.lists(
        st.tuples(
            st.integers(-3, 3),
            st.sampled_from([1, 2, 3, 0.5, 0.1]),
            st.sampled_from([0.0, 0.0, 0.01, 1.0]),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_window_bound_on_adversarial_float_times(
    rate: int,
    per: float,
    burst: int,
    start: float,
    steps: list[tuple[int, float, float]],
) -> None:
    # Ask at clock readings a few floats either side of the moment the next
    # request would conform (or a little later): the exact decisions never let
    # rate + burst units into any half-open window of `per` seconds (nor
    # rate + burst - 1 with whole-number costs).
    granted: list[tuple[Fraction, Fraction]] = []

    async def body(set_time: Callable[[float], None]) -> None:
        limiter = RateLimiter(rate, per, burst=burst)
        now = start
        for ulps, cost, pause in steps:
            cost = min(cost, burst)
            set_time(now)
            when = now + max(pause, limiter.wait_time(cost))
            for _ in range(abs(ulps)):
                when = math.nextafter(when, math.inf if ulps > 0 else -math.inf)
            now = max(now, when)  # the clock never goes back
            set_time(now)
            if limiter.try_acquire(cost):
                granted.append((Fraction(now), Fraction(cost)))

    at_times(body)
    whole = all(c.denominator == 1 for _, c in granted)
    bound = rate + burst - 1 if whole else rate + burst
    for first, _ in granted:
        in_window = sum(c for t, c in granted if first <= t < first + Fraction(per))
        assert in_window <= bound if whole else in_window < bound


@settings(deadline=None, max_examples=100)
@given(
    rate=st.sampled_from([1e6, 3e7, 1e9]),
    burst=st.integers(1, 40),
    start=st.sampled_from([1e6 + 0.1, 12345.678, 1 / 3]),
    steps=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 12), st.sampled_from([1, 2, 0.5])),
        min_size=1,
        max_size=30,
    ),
)
def test_exact_decisions_on_a_clock_that_stands_still(
    rate: float,
    burst: int,
    start: float,
    steps: list[tuple[int, int, float]],
) -> None:
    # A clock that moves in steps (uvloop: 1 ms) shows the same reading to
    # many requests in a row, and at a high rate the interval is far below
    # the float tolerance: each decision is checked against exact GCRA.
    interval = Fraction(1.0) / Fraction(rate)

    async def body(set_time: Callable[[float], None]) -> None:
        limiter = RateLimiter(rate, burst=burst)
        tat: Fraction | None = None
        now = start
        for ulps, repeat, cost in steps:
            for _ in range(ulps):  # a few floats later, or the same reading
                now = math.nextafter(now, math.inf)
            set_time(now)
            exact_now = Fraction(now)
            cost = min(cost, burst)
            for _ in range(repeat):
                base = exact_now if tat is None else max(tat, exact_now)
                conforms = base + (Fraction(cost) - burst) * interval <= exact_now
                assert limiter.try_acquire(cost) == conforms
                if conforms:
                    tat = base + Fraction(cost) * interval

    at_times(body)


# --- try_acquire and timeout -------------------------------------------------------


@pytest.mark.parametrize("make", both(1, per=4.0, burst=2))
async def test_try_acquire_never_waits(make: Any, clock: Any) -> None:
    limiter = make()  # one unit per 4 s, bursts of 2
    t0 = clock.now()
    assert try_acquire(limiter, 2)
    assert not try_acquire(limiter)
    assert clock.now() - t0 == clock.approx(0)
    await anyio.sleep(5)  # one unit back at 4, the next at 8
    assert try_acquire(limiter)
    assert not try_acquire(limiter)


@pytest.mark.parametrize("make", both(1))
async def test_timeout_raises_at_once_with_retry_after(make: Any, clock: Any) -> None:
    events: list[PolicyEvent] = []
    limiter = make(hooks=events.append)
    t0 = clock.now()
    await acquire(limiter)
    with pytest.raises(RateLimitExceeded) as info:
        await acquire(limiter, timeout=0.5)
    assert clock.now() - t0 == clock.approx(0)  # did not wait
    assert info.value.retry_after == clock.approx(1.0)
    assert "later than timeout=0.5 s" in str(info.value)
    (event,) = events
    assert isinstance(event, CallRejected)
    assert event.by == "limiter"
    assert event.retry_after == clock.approx(1.0)
    # exactly at the timeout is fine, and so is math.inf
    await acquire(limiter, timeout=1.0)
    assert clock.now() - t0 == clock.approx(1.0)
    await acquire(limiter, timeout=math.inf)
    assert clock.now() - t0 == clock.approx(2.0)
    await anyio.sleep(5)
    await acquire(limiter, timeout=0)  # conforms now: granted even with no time to wait


async def test_timeout_counts_the_queue(clock: Any) -> None:
    limiter = RateLimiter(1, burst=2)
    rec = Recorder(limiter, clock)
    assert limiter.try_acquire(2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.acquire, "a", 0.0, 2)  # due at 2
        await anyio.sleep(0.5)
        assert limiter.waiting == 1
        assert limiter.wait_time() == clock.approx(2.5)  # behind a: 3
        with pytest.raises(RateLimitExceeded) as info:
            await limiter.acquire(timeout=1.5)
        assert info.value.retry_after == clock.approx(2.5)
        await limiter.acquire(timeout=3.5)
        assert clock.now() - rec.t0 == clock.approx(3.0)
    assert rec.times() == {"a": clock.approx(2.0)}
    assert limiter.wait_time() == clock.approx(1.0)
    assert limiter.wait_time(2) == clock.approx(2.0)


# --- FIFO --------------------------------------------------------------------------


@pytest.mark.parametrize("make", both(1, burst=3))
async def test_big_cost_is_not_starved_by_small_ones(make: Any, clock: Any) -> None:
    # After a full burst at 0, "big" (cost 3) needs the bucket empty again: t=3.
    # A stream of cost-1 callers arrives meanwhile; each could conform on its
    # own (at 1 and 2), but none may overtake "big".
    limiter = make()
    rec = Recorder(limiter, clock)
    await acquire(limiter, 3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.acquire, "big", 0.1, 3)
        for i, at in enumerate((0.5, 1.0, 1.5, 2.0, 2.5)):
            tg.start_soon(rec.acquire, f"small{i}", at)
        await anyio.sleep(1.25)
        assert not try_acquire(limiter)  # a unit is free, but "big" is waiting
    assert rec.order == ["big", "small0", "small1", "small2", "small3", "small4"]
    assert rec.times() == {
        "big": clock.approx(3.0),
        "small0": clock.approx(4.0),
        "small1": clock.approx(5.0),
        "small2": clock.approx(6.0),
        "small3": clock.approx(7.0),
        "small4": clock.approx(8.0),
    }


async def test_waiting_and_repr(clock: Any) -> None:
    limiter = RateLimiter(2, per=8.0, burst=1, name="db")  # one unit per 4 s
    assert repr(limiter) == "<RateLimiter 'db' rate=2 per=8 burst=1 waiting=0>"
    assert (limiter.rate, limiter.per, limiter.burst, limiter.name) == (2.0, 8.0, 1, "db")
    assert limiter.wait_time() == 0.0  # never used
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        tg.start_soon(limiter.acquire)
        await anyio.sleep(0.25)
        assert limiter.waiting == 2
        assert "waiting=2" in repr(limiter)
    assert limiter.waiting == 0
    keyed = KeyedRateLimiter(0.5, per=60)
    assert repr(keyed) == "<KeyedRateLimiter rate=0.5 per=60 burst=1 keys=0 waiting=0>"
    await keyed.acquire(("a", 1))
    assert "keys=1" in repr(keyed)
    assert "limit ('a', 1)" in repr(keyed.limit(("a", 1)))


# --- cancellation ------------------------------------------------------------------


@pytest.mark.parametrize("make", both(1))
async def test_cancelled_waiter_consumes_nothing_and_others_move_up(make: Any, clock: Any) -> None:
    limiter = make()
    rec = Recorder(limiter, clock)
    async with anyio.create_task_group() as tg:
        for name, at in (("a", 0.0), ("b", 0.1), ("c", 0.2), ("d", 0.3), ("e", 0.4)):
            tg.start_soon(rec.acquire, name, at)
        tg.start_soon(rec.cancel, "b", 0.5)  # the head (due at 1): c takes its place
        tg.start_soon(rec.cancel, "d", 0.5)  # in the middle: e moves up
    assert rec.order == ["a", "c", "e"]
    assert rec.times() == {"a": clock.approx(0), "c": clock.approx(1), "e": clock.approx(2)}
    assert limiter.waiting == 0


@pytest.mark.parametrize("make", both(1))
async def test_cancel_racing_the_handoff_passes_the_turn_on(make: Any, clock: Any) -> None:
    # At t=1 "b" is granted and hands the head of the queue to "c" while "c" is
    # cancelled at that very moment: "d" must take over, granted at 2.
    limiter = make()
    rec = Recorder(limiter, clock)
    async with anyio.create_task_group() as tg:
        for name, at in (("a", 0.0), ("b", 0.1), ("c", 0.2), ("d", 0.3)):
            tg.start_soon(rec.acquire, name, at)
        tg.start_soon(rec.cancel, "c", 1.0)
    assert rec.order == ["a", "b", "d"]
    assert rec.times() == {"a": clock.approx(0), "b": clock.approx(1), "d": clock.approx(2)}


@pytest.mark.parametrize("make", both(1))
async def test_acquire_is_a_checkpoint(make: Any, clock: Any) -> None:
    limiter = make()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await acquire(limiter)
        pytest.fail("acquire did not check for cancellation")  # pragma: no cover
    assert scope.cancelled_caught
    assert try_acquire(limiter)  # the cancelled call took nothing

    ran = []

    async def other() -> None:
        ran.append(clock.now())

    unlimited = type(limiter)(1e6, burst=1000)
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        for _ in range(10):  # never has to wait, but yields to other tasks
            await acquire(unlimited)
        assert ran


async def test_async_with_is_a_checkpoint() -> None:
    limiter = RateLimiter(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with limiter:
            pytest.fail("entered a cancelled scope")  # pragma: no cover
    assert scope.cancelled_caught
    assert limiter.try_acquire()


# --- fractional and weighted costs ---------------------------------------------------


@pytest.mark.parametrize("make", both(2, burst=1))
async def test_fractional_costs_are_exact_and_fifo(make: Any, clock: Any) -> None:
    # 2 units per second (T = 1/2 s per unit), burst 1: a request of c units
    # conforms once TAT - (1 - c) * T <= now.
    limiter = make()
    rec = Recorder(limiter, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.acquire, "a", 0.0, 0.5)  # at once; TAT 1/4
        tg.start_soon(rec.acquire, "b", 1 / 64, 0.5)  # fits too (1/4 - 1/4); TAT 1/2
        tg.start_soon(rec.acquire, "big", 2 / 64, 1)  # a whole unit: at TAT, 1/2
        # alone, c would go at 1/2 - 3/8 = 1/8; behind big it waits for
        # TAT 1 - 3/8 = 5/8 (FIFO: a small cost never overtakes a big one)
        tg.start_soon(rec.acquire, "c", 3 / 64, 0.25)
    assert rec.order == ["a", "b", "big", "c"]
    assert rec.times() == {
        "a": clock.approx(0.0),
        "b": clock.approx(1 / 64),
        "big": clock.approx(0.5),
        "c": clock.approx(0.625),
    }


async def test_weighted_costs_limit_bytes_per_second(clock: Any) -> None:
    # 1,024 bytes per second, bursts up to 512 bytes: sending 2,048 bytes in
    # chunks of 256 takes 1.5 s after the first 512 go at once.
    limiter = RateLimiter(1024, burst=512)
    t0 = clock.now()
    sent = []
    for _ in range(8):
        await limiter.acquire(256)
        sent.append(clock.now() - t0)
    assert sent == [clock.approx(t) for t in (0, 0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)]
    assert limiter.wait_time(512) == clock.approx(0.5)  # TAT is 2.0


# --- a new event loop --------------------------------------------------------------


MODULE_LEVEL = RateLimiter(1, per=4.0)  # created at import time, as the README does
MODULE_LEVEL_KEYED = KeyedRateLimiter(1, per=4.0)


def test_a_limiter_from_import_time_starts_over_in_each_run(
    anyio_backend: Any, request: pytest.FixtureRequest
) -> None:
    # Each anyio.run has its own clock (virtual clocks restart at 0; Trio's
    # real clock has a random offset): state from the last run means nothing.
    def run_once() -> list[float]:
        async def main() -> list[float]:
            t0 = anyio.current_time()
            times = []
            for _ in range(3):
                async with MODULE_LEVEL:
                    pass
                await MODULE_LEVEL_KEYED.acquire("k")
                times.append(anyio.current_time() - t0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(MODULE_LEVEL.acquire)  # left waiting when the run ends
                tg.start_soon(MODULE_LEVEL_KEYED.acquire, "k")
                await anyio.sleep(0.25)
                assert (MODULE_LEVEL.waiting, MODULE_LEVEL_KEYED.waiting) == (1, 1)
                tg.cancel_scope.cancel()
            return times

        return run_fresh(main, request)

    first = run_once()
    second = run_once()
    assert first == pytest.approx([0, 4, 8], abs=1.0)  # (uvloop: accelerated real time)
    assert second == pytest.approx(first, abs=1.0)


def test_a_limiter_moves_between_backends() -> None:
    # asyncio, then Trio, then asyncio again (each on a fresh virtual clock
    # starting at 0): each run sees a limiter as if created there.
    pytest.importorskip("trio")
    limiter = RateLimiter(2, burst=2)
    keyed = KeyedRateLimiter(2, burst=2)

    async def main() -> tuple[list[float], list[bool]]:
        t0 = anyio.current_time()
        times = []
        whole_bursts = []
        for _ in range(4):
            await limiter.acquire()
            times.append(anyio.current_time() - t0)
            whole_bursts.append(keyed.try_acquire("k", 2))
        return times, whole_bursts

    for name in ("asyncio", "trio", "asyncio", "trio"):
        result = anyio.run(main, backend=name, backend_options=virtual_time_options(name))
        assert result == ([0.0, 0.0, 0.5, 1.0], [True, False, False, True]), name


async def test_a_limiter_used_before_in_another_loop_waits_nothing_here(clock: Any) -> None:
    limiter = RateLimiter(1, per=100_000.0)

    async def fill() -> None:
        assert limiter.try_acquire()
        assert not limiter.try_acquire()

    # another loop (on real time), whose clock is unrelated to this one's
    await anyio.to_thread.run_sync(lambda: anyio.run(fill))
    assert limiter.wait_time() == 0.0
    assert limiter.try_acquire()


# --- cancellation at each await point ----------------------------------------------


@pytest.mark.parametrize("make", both(1))
async def test_cancelled_while_holding_gives_nothing_back_and_loses_nothing(
    make: Any, clock: Any
) -> None:
    # A rate limit is spent when granted: cancelling the body neither returns
    # the unit nor takes another.
    limiter = make()
    t0 = clock.now()
    with anyio.move_on_after(0.5):
        await acquire(limiter)
        await anyio.sleep(10)
    assert not try_acquire(limiter)
    assert wait_time(limiter) == clock.approx(0.5)
    await acquire(limiter)
    assert clock.now() - t0 == clock.approx(1.0)


@pytest.mark.parametrize("make", both(1))
async def test_cancelled_during_a_slow_rejection_hook(make: Any, clock: Any) -> None:
    # timeout= rejects after emitting CallRejected to the hooks; a hook that
    # awaits can be cancelled there: the cancellation propagates (not
    # RateLimitExceeded) and the limiter is untouched.
    async def slow_hook(event: PolicyEvent) -> None:
        await anyio.sleep(10)

    limiter = make(hooks=slow_hook)
    await acquire(limiter)
    with anyio.move_on_after(0.25) as scope:
        await acquire(limiter, timeout=0.5)
    assert scope.cancelled_caught
    assert limiter.waiting == 0
    assert wait_time(limiter) == clock.approx(0.75)


@pytest.mark.parametrize("make", both(1, per=4.0))
async def test_cancelled_head_and_middle_waiters_and_timeouts(make: Any, clock: Any) -> None:
    # One unit per 4 s. Cancel the sleeping head, a waiter in the middle and
    # one that would have been rejected: the others keep their FIFO order and
    # exact times, and nothing is leaked (a fresh request afterwards waits
    # only for the last grant).
    limiter = make()
    rec = Recorder(limiter, clock)
    async with anyio.create_task_group() as tg:
        for name, at in (("a", 0.0), ("b", 0.5), ("c", 1.0), ("d", 1.5), ("e", 2.0)):
            tg.start_soon(rec.acquire, name, at)
        tg.start_soon(rec.cancel, "b", 3.0)  # the head, asleep until 4
        tg.start_soon(rec.cancel, "d", 6.0)  # in the middle
        await anyio.sleep(2.5)
        with pytest.raises(RateLimitExceeded):
            await acquire(limiter, timeout=4.0)  # behind 4 others: rejected at once
    assert rec.order == ["a", "c", "e"]
    assert rec.times() == {"a": clock.approx(0), "c": clock.approx(4), "e": clock.approx(8)}
    assert limiter.waiting == 0
    assert wait_time(limiter) == clock.approx(4.0)


@pytest.mark.parametrize("make", both(1, per=4.0))
async def test_cancelled_waiter_with_a_timeout_consumes_nothing(make: Any, clock: Any) -> None:
    # A timeout that can be met admits the waiter; cancelled while it waits,
    # it takes nothing: the next one is granted as if it had never asked.
    limiter = make()
    rec = Recorder(limiter, clock)
    await acquire(limiter)  # next unit at 4
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.acquire, "b", 1.0)

        async def with_timeout() -> None:
            with rec.scopes.setdefault("a", anyio.CancelScope()):
                await acquire(limiter, timeout=5.0)
                pytest.fail("granted although cancelled")  # pragma: no cover

        tg.start_soon(with_timeout)  # queued first, due at 4
        tg.start_soon(rec.cancel, "a", 2.0)
    assert rec.times() == {"b": clock.approx(4.0)}
    assert limiter.waiting == 0


# --- never spin --------------------------------------------------------------------


def _finishes_within(seconds: float, fn: Callable[[], object]) -> bool:
    """Whether *fn* returns within *seconds* of real time (a livelock would
    spin forever at 100% CPU; the thread is a daemon)."""
    done = threading.Event()

    def target() -> None:
        fn()
        done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(seconds)


@pytest.mark.parametrize("resolution", [1e-6, 1 / 64])  # looptime; a Windows-like 15.6 ms
def test_no_livelock_on_a_quantized_clock(resolution: float) -> None:
    # RateLimiter(5): the grant at 3/5 s is just above the float 0.6, which is
    # all a 1 us clock can show; the waiter used to sleep 1e-16 s forever.
    looptime = pytest.importorskip("looptime")
    out: list[Any] = []

    async def main() -> None:
        t0 = anyio.current_time()

        async def item(x: int) -> int:
            return x

        out.append(await map_all(item, range(11), limiter=RateLimiter(5, per=1.0)))
        keyed = KeyedRateLimiter(3, per=1.0)
        for _ in range(7):
            await keyed.acquire("k")
        out.append(anyio.current_time() - t0)

    def run() -> None:
        anyio.run(
            main,
            backend="asyncio",
            backend_options={
                "loop_factory": lambda: looptime.new_event_loop(start=0.0, resolution=resolution)
            },
        )

    assert _finishes_within(10, run), "the limiter spins on a quantized clock"
    results, elapsed = out
    assert results == list(range(11))
    # 2 s for the 11 items, then 2 s for 7 units at 3 per second; a clock that
    # cannot show a grant time grants at its first reading after it
    assert 4.0 <= elapsed <= 4.0 + 20 * resolution


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RateLimiter, KeyedRateLimiter])
@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0,), {}, ValueError, "rate must be > 0, got 0"),
        ((-1,), {}, ValueError, "rate must be > 0, got -1"),
        ((math.nan,), {}, ValueError, "rate must be a number, got NaN"),
        ((math.inf,), {}, ValueError, "rate must be finite, got inf"),
        ((True,), {}, TypeError, "rate must be a number, got True"),
        (("10",), {}, TypeError, "rate must be a number, got '10'"),
        ((1, 0), {}, ValueError, "per must be > 0, got 0"),
        ((1, -2.0), {}, ValueError, "per must be > 0, got -2.0"),
        ((1, math.nan), {}, ValueError, "per must be a number, got NaN"),
        ((1, math.inf), {}, ValueError, "per must be finite"),
        ((1,), {"burst": 0}, ValueError, "burst must be >= 1, got 0"),
        ((1,), {"burst": 1.5}, TypeError, "burst must be a whole number, got 1.5"),
        ((1,), {"burst": math.nan}, TypeError, "burst must be a whole number, got nan"),
        ((1,), {"burst": -1}, ValueError, "burst must be >= 1, got -1"),
        ((1, True), {}, TypeError, "per must be a number, got True"),
        ((-math.inf,), {}, ValueError, "rate must be finite, got -inf"),
        ((1,), {"burst": True}, TypeError, "burst must be a whole number, got True"),
        ((1e-300, 1e300), {}, ValueError, "per / rate must be a positive, finite"),
        ((1e300, 1e-300), {}, ValueError, "per / rate must be a positive, finite"),
        ((1,), {"name": 3}, TypeError, "name must be a string or None"),
        ((1,), {"hooks": [3]}, TypeError, "hooks must be callables"),
    ],
)
def test_bad_construction(
    cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match.replace("(", r"\(").replace(")", r"\)")):
        cls(*args, **kwargs)


@pytest.mark.parametrize("make", both(1, burst=2))
@pytest.mark.parametrize(
    ("cost", "error", "match"),
    [
        (0, ValueError, "cost must be > 0, got 0"),
        (-1, ValueError, "cost must be > 0, got -1"),
        (0.0, ValueError, "cost must be > 0, got 0.0"),
        (-0.5, ValueError, "cost must be > 0, got -0.5"),
        (math.nan, ValueError, "cost must be a number, got NaN"),
        (math.inf, ValueError, "cost must be finite, got inf"),
        (-math.inf, ValueError, "cost must be finite, got -inf"),
        (True, TypeError, "cost must be a number, got True"),
        ("1", TypeError, "cost must be a number, got '1'"),
        (None, TypeError, "cost must be a number, got None"),
        (3, ValueError, "cost=3 can never be granted: burst=2 caps a single request"),
        (2.5, ValueError, "cost=2.5 can never be granted: burst=2 caps a single request"),
    ],
)
async def test_bad_cost(make: Any, cost: Any, error: type, match: str) -> None:
    limiter = make()
    with pytest.raises(error, match=match):
        await acquire(limiter, cost)
    with pytest.raises(error, match=match):
        try_acquire(limiter, cost)
    with pytest.raises(error, match=match):
        wait_time(limiter, cost)
    assert try_acquire(limiter, 2)  # nothing was taken


@pytest.mark.parametrize("make", both(1))
@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, "timeout must be >= 0, got -1"),
        (-math.inf, ValueError, "timeout must be >= 0, got -inf"),
        (math.nan, ValueError, "timeout must be a number, got NaN"),
        (True, TypeError, "timeout must be a number, got True"),
        ("1", TypeError, "timeout must be a number"),
    ],
)
async def test_bad_timeout(make: Any, value: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        await acquire(make(), timeout=value)


# --- audit ---------------------------------------------------------------------


def test_limiters_and_key_limits_have_no_instance_dict() -> None:
    # __slots__ must not be a lie: no base class may bring a __dict__ back
    # (limit(key) makes one short-lived object per call).
    keyed = KeyedRateLimiter(1)
    for obj in (RateLimiter(1), keyed, keyed.limit("k")):
        assert not hasattr(obj, "__dict__"), type(obj)
