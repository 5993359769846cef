"""Properties of the limiters over random arrival schedules, costs and
cancellations (hypothesis), on every loop.

On virtual time the limiters must match an exact reference model (rational
arithmetic, no floats) grant for grant: the window bound, FIFO order, and
"cancelling waiters never loses or leaks capacity" all follow from that. On
uvloop (accelerated real time) the schedule is jittered by real timers, so we
check the invariants themselves: the window bound on the clock readings the
grants were decided at, FIFO order, everyone who was not cancelled served,
nothing left held.

Arrivals sit on a grid of 1/64 s and the one cancellation time on an odd
multiple of 1/128 s. With rates 2..6 and ``per`` in {1/8, 1/4}, no grant can
coincide with the cancellation (``k * per / rate`` is never an odd multiple of
1/128), so the model has no tie to break that the loops might break otherwise.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from unittest import mock

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway._bulkhead as _bulkhead
import anyway._ratelimit as _ratelimit
from anyway import Bulkhead, BulkheadFull, KeyedRateLimiter, RateLimiter

pytestmark = pytest.mark.anyio

SETTINGS = settings(
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Arrival:
    at: Fraction
    cost: int
    key: str
    hold: Fraction = Fraction(0)  # bulkhead only


@dataclass(frozen=True)
class Scenario:
    rate: int
    per: Fraction
    burst: int
    arrivals: tuple[Arrival, ...]
    cancel_at: Fraction
    cancelled: frozenset[int]

    def events(self) -> list[tuple[Fraction, int]]:
        """(time, index) in time order; index -1 is the cancellation."""
        events = [(a.at, i) for i, a in enumerate(self.arrivals)]
        return sorted([*events, (self.cancel_at, -1)])


@st.composite
def scenarios(draw: Callable[..., Any], keys: tuple[str, ...] = ("k",)) -> Scenario:
    rate = draw(st.integers(2, 6))
    per = draw(st.sampled_from([Fraction(1, 8), Fraction(1, 4)]))
    burst = draw(st.integers(1, 3))
    n = draw(st.integers(1, 10))
    t = 0
    arrivals = []
    for i in range(n):
        t += draw(st.integers(1, 6))
        arrivals.append(
            Arrival(
                at=Fraction(t, 64),
                cost=draw(st.integers(1, burst)),
                key=draw(st.sampled_from(keys)),
                # distinct powers of two keep every release time distinct
                hold=Fraction(draw(st.integers(1, 12)), 64) + Fraction(1, 2 ** (10 + i)),
            )
        )
    cancel_at = Fraction(2 * draw(st.integers(0, t + 16)) + 1, 128)
    cancelled = draw(st.frozensets(st.integers(0, n - 1)))
    return Scenario(rate, per, burst, tuple(arrivals), cancel_at, cancelled)


# --- the rate limiters ---------------------------------------------------------------


def gcra_model(s: Scenario) -> dict[int, Fraction]:
    """Exact grant times (relative) of a per-key FIFO GCRA, with cancellation."""
    interval = s.per / s.rate
    tat: dict[str, Fraction] = {}
    queues: dict[str, deque[int]] = {}
    since: dict[str, Fraction] = {}  # when the head of each queue became the head
    granted: dict[int, Fraction] = {}

    def grant(i: int, at: Fraction) -> None:
        a = s.arrivals[i]
        tat[a.key] = max(tat.get(a.key, at), at) + a.cost * interval
        granted[i] = at

    def due(key: str) -> Fraction:
        a = s.arrivals[queues[key][0]]
        if key not in tat:
            return since[key]
        return max(since[key], tat[key] + (a.cost - s.burst) * interval)

    def drain(until: Fraction | float) -> None:
        for key, queue in queues.items():
            while queue and due(key) <= until:
                at = due(key)
                grant(queue.popleft(), at)
                since[key] = at

    for at, i in s.events():
        drain(at)
        if i >= 0:
            a = s.arrivals[i]
            queue = queues.setdefault(a.key, deque())
            if not queue and (a.key not in tat or tat[a.key] + (a.cost - s.burst) * interval <= at):
                grant(i, at)
            else:
                queue.append(i)
                if len(queue) == 1:
                    since[a.key] = at
        else:
            for key, queue in queues.items():
                head = queue[0] if queue else None
                for j in s.cancelled:
                    if j in queue:
                        queue.remove(j)
                if queue and queue[0] != head:
                    since[key] = at
    drain(math.inf)
    return granted


@contextmanager
def decision_times() -> Iterator[list[float]]:
    """Record every clock reading the limiters make. Right after an acquire
    returns, the last one is the time its grant was decided at (on real time
    the caller's own reading would come a little later)."""
    readings: list[float] = []

    def current_time() -> float:
        now = anyio.current_time()
        readings.append(now)
        return now

    with mock.patch.object(_ratelimit, "current_time", current_time):
        yield readings


async def run_limiter(
    limiter: RateLimiter | KeyedRateLimiter, s: Scenario
) -> tuple[dict[int, float], list[int]]:
    """Play the scenario; return each grant's decision time and the grant order."""
    granted: dict[int, float] = {}
    order: list[int] = []
    scopes: dict[int, anyio.CancelScope] = {}
    with decision_times() as readings:
        t0 = anyio.current_time()

        async def acquirer(i: int, scope: anyio.CancelScope) -> None:
            a = s.arrivals[i]
            with scope:
                if isinstance(limiter, KeyedRateLimiter):
                    await limiter.acquire(a.key, a.cost)
                else:
                    await limiter.acquire(a.cost)
                granted[i] = readings[-1]
                order.append(i)

        with anyio.fail_after(100):  # a lost wake-up would hang forever
            async with anyio.create_task_group() as tg:
                for at, i in s.events():
                    await anyio.sleep_until(t0 + float(at))
                    if i >= 0:
                        scopes[i] = anyio.CancelScope()
                        tg.start_soon(acquirer, i, scopes[i])
                    else:
                        for j in sorted(s.cancelled):
                            if j in scopes:
                                scopes[j].cancel()
    return {i: t - t0 for i, t in granted.items()}, order


def check_limiter(
    s: Scenario,
    granted: dict[int, float],
    order: list[int],
    limiter: RateLimiter | KeyedRateLimiter,
    virtual: bool,
) -> None:
    keys = {a.key for a in s.arrivals}
    bound = s.rate + s.burst - 1
    for key in keys:
        mine = [i for i in order if s.arrivals[i].key == key]
        # FIFO: granted in arrival order
        assert mine == sorted(mine)
        # the window bound, on the exact clock readings
        times = sorted((Fraction(granted[i]), s.arrivals[i].cost) for i in mine)
        for start, _ in times:
            in_window = sum(c for t, c in times if start <= t < start + s.per)
            assert in_window <= bound, (key, start, times)
    # whoever was not cancelled was served
    assert set(range(len(s.arrivals))) - s.cancelled <= set(granted)
    assert limiter.waiting == 0
    if virtual:
        expected = gcra_model(s)
        assert set(granted) == set(expected)
        for i, t in expected.items():
            assert granted[i] == pytest.approx(float(t), abs=1e-9), i


@SETTINGS
@given(s=scenarios())
async def test_rate_limiter_matches_the_exact_model(s: Scenario, clock: Any) -> None:
    limiter = RateLimiter(s.rate, float(s.per), burst=s.burst)
    granted, order = await run_limiter(limiter, s)
    check_limiter(s, granted, order, limiter, clock.virtual)


@SETTINGS
@given(s=scenarios(keys=("a", "b")))
async def test_keyed_rate_limiter_matches_the_exact_model(s: Scenario, clock: Any) -> None:
    limiter = KeyedRateLimiter(s.rate, float(s.per), burst=s.burst)
    granted, order = await run_limiter(limiter, s)
    check_limiter(s, granted, order, limiter, clock.virtual)
    await anyio.sleep(float(s.burst * s.per / s.rate) + 1)  # (uvloop may wake early)
    limiter.try_acquire("a")  # every key has recovered: the sweep leaves only "a"
    assert len(limiter) == 1


@settings(deadline=None, max_examples=300)
@given(
    rate=st.integers(1, 50),
    per=st.sampled_from([0.1, 0.25, 1 / 3, 1.0, 7.0]),
    burst=st.integers(1, 5),
    start=st.sampled_from([0.0, 1 / 3, 12345.678, 1e6 + 0.1]),
    steps=st.lists(
        st.tuples(st.integers(-3, 3), st.integers(1, 5), st.sampled_from([0.0, 0.0, 0.01, 1.0])),
        min_size=1,
        max_size=60,
    ),
)
def test_window_bound_on_adversarial_float_times(
    rate: int,
    per: float,
    burst: int,
    start: float,
    steps: list[tuple[int, int, float]],
) -> None:
    # Ask at clock readings a few floats either side of the moment the next
    # request would conform (or a little later): the exact decisions never let
    # rate + burst units into any half-open window of `per` seconds.
    limiter = RateLimiter(rate, per, burst=burst)
    b = limiter._bucket
    now = start
    granted: list[tuple[Fraction, int]] = []
    for ulps, cost, pause in steps:
        cost = min(cost, burst)
        when = now + pause
        if b.tat > when:
            when = limiter._due(b, cost)
        for _ in range(abs(ulps)):
            when = math.nextafter(when, math.inf if ulps > 0 else -math.inf)
        now = max(now, when)  # the clock never goes back
        if limiter._take(b, now, cost):
            granted.append((Fraction(now), cost))
    window = Fraction(per)
    for first, _ in granted:
        in_window = sum(c for t, c in granted if first <= t < first + window)
        assert in_window <= rate + burst - 1


# --- the bulkhead --------------------------------------------------------------------


def bulkhead_model(
    s: Scenario, max_concurrent: int, max_waiting: int
) -> tuple[dict[int, Fraction], set[int]]:
    """Exact entry times and rejections of a FIFO bulkhead, with cancellation."""
    entered: dict[int, Fraction] = {}
    rejected: set[int] = set()
    holders: dict[int, Fraction] = {}  # index -> release time
    queue: deque[int] = deque()

    def enter(i: int, at: Fraction) -> None:
        entered[i] = at
        holders[i] = at + s.arrivals[i].hold

    def release(i: int, at: Fraction) -> None:
        del holders[i]
        if queue:
            enter(queue.popleft(), at)

    def drain(until: Fraction | float) -> None:
        while holders and min(holders.values()) < until:
            i = min(holders, key=holders.__getitem__)
            release(i, holders[i])

    for at, i in s.events():
        drain(at)
        if i >= 0:
            if len(holders) < max_concurrent and not queue:
                enter(i, at)
            elif len(queue) < max_waiting:
                queue.append(i)
            else:
                rejected.add(i)
        else:
            for j in sorted(s.cancelled):
                if j in queue:
                    queue.remove(j)
            for j in sorted(s.cancelled):
                if j in holders:
                    release(j, at)
    drain(math.inf)
    return entered, rejected


@SETTINGS
@given(
    s=scenarios(),
    max_concurrent=st.integers(1, 3),
    max_waiting=st.integers(0, 3),
)
async def test_bulkhead_matches_the_exact_model(
    s: Scenario, max_concurrent: int, max_waiting: int, clock: Any
) -> None:
    bulkhead = Bulkhead(max_concurrent, max_waiting=max_waiting)
    entered: dict[int, float] = {}
    grants: list[int] = []  # in the order slots were given (not when tasks ran)
    rejected: set[int] = set()
    scopes: dict[int, anyio.CancelScope] = {}
    inside = 0
    t0 = clock.now()
    caller_index: ContextVar[int] = ContextVar("caller_index")

    base_granted: Any = _bulkhead._Slot.__dict__["granted"]  # the slot descriptor

    class RecordingSlot(_bulkhead._Slot):
        """Logs the moment a leaving task hands this waiter its slot."""

        __slots__ = ("index",)

        def __init__(self) -> None:
            super().__init__()
            self.index = caller_index.get()

        @property
        def granted(self) -> bool:
            return bool(base_granted.__get__(self))

        @granted.setter
        def granted(self, value: bool) -> None:
            if value:
                grants.append(self.index)
            base_granted.__set__(self, value)

    async def caller(i: int, scope: anyio.CancelScope) -> None:
        nonlocal inside
        caller_index.set(i)
        with scope:
            try:
                async with bulkhead:
                    if i not in grants:
                        grants.append(i)  # got a free slot (no await since)
                    entered[i] = clock.now() - t0
                    inside += 1
                    assert inside <= max_concurrent
                    try:
                        await anyio.sleep(float(s.arrivals[i].hold))
                    finally:
                        inside -= 1
            except BulkheadFull:
                # refused only when every slot is busy and the queue is full
                assert (bulkhead.active, bulkhead.waiting) == (max_concurrent, max_waiting)
                rejected.add(i)

    with (
        mock.patch.object(_bulkhead, "_Slot", RecordingSlot),
        anyio.fail_after(100),  # a lost slot would hang forever
    ):
        async with anyio.create_task_group() as tg:
            for at, i in s.events():
                await anyio.sleep_until(t0 + float(at))
                if i >= 0:
                    scopes[i] = anyio.CancelScope()
                    tg.start_soon(caller, i, scopes[i])
                else:
                    for j in sorted(s.cancelled):
                        if j in scopes:
                            scopes[j].cancel()

    # FIFO: slots were given in arrival order (a task handed a slot as it was
    # cancelled passes it on, so it may appear without having entered)
    assert grants == sorted(grants)
    assert set(range(len(s.arrivals))) - s.cancelled <= set(entered) | rejected
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)  # nothing leaked
    if clock.virtual:
        expected, expected_rejected = bulkhead_model(s, max_concurrent, max_waiting)
        assert rejected == expected_rejected
        assert set(entered) == set(expected)
        for i, t in expected.items():
            assert entered[i] == pytest.approx(float(t), abs=1e-9), i
