"""Properties of the limiters over random arrival schedules, costs and
cancellations (hypothesis), on virtual clocks: ours (asyncio and Trio),
trio's MockClock and looptime.

On clocks that show every float (ours, MockClock) the limiters must match an
exact reference model (rational arithmetic, no floats) grant for grant: the
window bound, FIFO order, and "cancelling waiters never loses or leaks
capacity" all follow from that. looptime counts whole microseconds, so a grant
comes at its first reading at or after the exact time: there we check the
invariants themselves (the window bound on the clock's readings, FIFO order,
everyone who was not cancelled served, nothing left held).

These run on virtual time only (they compare with exact models): each example
is its own ``anyio.run`` on a fresh virtual clock. The real-time leg (uvloop)
is covered by the example-based tests.

Arrivals sit on a grid of 1/64 s and the one cancellation time on an odd
multiple of 1/128 s. With rates 2..6 and ``per`` in {1/8, 1/4}, no grant can
coincide with the cancellation (``k * per / rate`` is never an odd multiple of
1/128), so the model has no tie to break that the loops might break otherwise.
"""

from __future__ import annotations

import importlib.util
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyway import Bulkhead, BulkheadFull, KeyedRateLimiter, RateLimiter
from anyway.testing import virtual_time_options

T = TypeVar("T")

SETTINGS = settings(
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _ours(name: str) -> Callable[[], tuple[str, dict[str, Any]]]:
    return lambda: (name, virtual_time_options(name))


def _looptime() -> tuple[str, dict[str, Any]]:
    import looptime

    return ("asyncio", {"loop_factory": lambda: looptime.new_event_loop(start=0.0)})


def _mock_clock() -> tuple[str, dict[str, Any]]:
    import trio.testing

    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


_HAVE_TRIO = importlib.util.find_spec("trio") is not None
_HAVE_LOOPTIME = importlib.util.find_spec("looptime") is not None

#: Virtual clocks that show every float: grant times match the exact model.
EXACT_CLOCKS = [
    pytest.param(_ours("asyncio"), id="asyncio"),
    pytest.param(
        _ours("trio"), id="trio", marks=pytest.mark.skipif(not _HAVE_TRIO, reason="no trio")
    ),
    pytest.param(
        _mock_clock, id="mockclock", marks=pytest.mark.skipif(not _HAVE_TRIO, reason="no trio")
    ),
]
#: ... and one that counts whole microseconds.
ALL_CLOCKS = [
    *EXACT_CLOCKS,
    pytest.param(
        _looptime, id="looptime", marks=pytest.mark.skipif(not _HAVE_LOOPTIME, reason="no looptime")
    ),
]


def run(backend: Callable[[], tuple[str, dict[str, Any]]], main: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(main)`` on a fresh loop with a fresh virtual clock."""
    name, options = backend()
    return anyio.run(main, backend=name, backend_options=options)


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


async def run_limiter(
    limiter: RateLimiter | KeyedRateLimiter, s: Scenario
) -> tuple[dict[int, float], list[int]]:
    """Play the scenario; return each grant's time and the grant order. On
    virtual time nothing passes between the decision and the return, so the
    reading right after ``acquire`` is the reading the grant was decided at."""
    granted: dict[int, float] = {}
    order: list[int] = []
    scopes: dict[int, anyio.CancelScope] = {}
    t0 = anyio.current_time()

    async def acquirer(i: int, scope: anyio.CancelScope) -> None:
        a = s.arrivals[i]
        with scope:
            if isinstance(limiter, KeyedRateLimiter):
                await limiter.acquire(a.key, a.cost)
            else:
                await limiter.acquire(a.cost)
            granted[i] = anyio.current_time()
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


def check_invariants(
    s: Scenario,
    granted: dict[int, float],
    order: list[int],
    limiter: RateLimiter | KeyedRateLimiter,
) -> None:
    keys = {a.key for a in s.arrivals}
    bound = s.rate + s.burst - 1
    for key in keys:
        mine = [i for i in order if s.arrivals[i].key == key]
        # FIFO: granted in arrival order
        assert mine == sorted(mine)
        # the window bound, on the clock's own readings, exactly
        times = sorted((Fraction(granted[i]), s.arrivals[i].cost) for i in mine)
        for start, _ in times:
            in_window = sum(c for t, c in times if start <= t < start + s.per)
            assert in_window <= bound, (key, start, times)
    # whoever was not cancelled was served; nobody is left waiting
    assert set(range(len(s.arrivals))) - s.cancelled <= set(granted)
    assert limiter.waiting == 0


def check_model(s: Scenario, granted: dict[int, float]) -> None:
    expected = gcra_model(s)
    assert set(granted) == set(expected)
    for i, t in expected.items():
        assert granted[i] == pytest.approx(float(t), abs=1e-9), i


def make_limiter(s: Scenario, keyed: bool) -> RateLimiter | KeyedRateLimiter:
    if keyed:
        return KeyedRateLimiter(s.rate, float(s.per), burst=s.burst)
    return RateLimiter(s.rate, float(s.per), burst=s.burst)


@pytest.mark.parametrize("keyed", [False, True], ids=["single", "keyed"])
@pytest.mark.parametrize("backend", EXACT_CLOCKS)
@SETTINGS
@given(data=st.data())
def test_limiters_match_the_exact_model(backend: Any, keyed: bool, data: st.DataObject) -> None:
    s = data.draw(scenarios(keys=("a", "b") if keyed else ("k",)))
    limiter = make_limiter(s, keyed)
    granted, order = run(backend, lambda: run_limiter(limiter, s))
    check_invariants(s, granted, order, limiter)
    check_model(s, granted)


@pytest.mark.parametrize("keyed", [False, True], ids=["single", "keyed"])
@pytest.mark.parametrize("backend", ALL_CLOCKS)
@SETTINGS
@given(data=st.data())
def test_limiter_invariants_on_every_virtual_clock(
    backend: Any, keyed: bool, data: st.DataObject
) -> None:
    s = data.draw(scenarios(keys=("a", "b") if keyed else ("k",)))
    limiter = make_limiter(s, keyed)
    granted, order = run(backend, lambda: run_limiter(limiter, s))
    check_invariants(s, granted, order, limiter)


@pytest.mark.parametrize("backend", ALL_CLOCKS)
@SETTINGS
@given(s=scenarios(keys=("a", "b")))
def test_recovered_keys_are_dropped(backend: Any, s: Scenario) -> None:
    limiter = KeyedRateLimiter(s.rate, float(s.per), burst=s.burst)

    async def main() -> int:
        await run_limiter(limiter, s)
        await anyio.sleep(float(s.burst * s.per / s.rate) + 1)
        limiter.try_acquire("a")  # every key has recovered: the sweep leaves only "a"
        return len(limiter)

    assert run(backend, main) == 1


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


async def run_bulkhead(
    bulkhead: Bulkhead, s: Scenario, max_concurrent: int, max_waiting: int
) -> tuple[dict[int, float], list[int], set[int]]:
    """Play the scenario; return entry times, entry order and rejections."""
    entered: dict[int, float] = {}
    order: list[int] = []
    rejected: set[int] = set()
    scopes: dict[int, anyio.CancelScope] = {}
    inside = 0
    t0 = anyio.current_time()

    async def caller(i: int, scope: anyio.CancelScope) -> None:
        nonlocal inside
        with scope:
            try:
                async with bulkhead:
                    entered[i] = anyio.current_time() - t0
                    order.append(i)
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

    with anyio.fail_after(100):  # a lost slot would hang forever
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
    return entered, order, rejected


@pytest.mark.parametrize("backend", ALL_CLOCKS)
@SETTINGS
@given(
    s=scenarios(),
    max_concurrent=st.integers(1, 3),
    max_waiting=st.integers(0, 3),
)
def test_bulkhead_invariants_and_model(
    backend: Any, s: Scenario, max_concurrent: int, max_waiting: int
) -> None:
    bulkhead = Bulkhead(max_concurrent, max_waiting=max_waiting)
    entered, order, rejected = run(
        backend, lambda: run_bulkhead(bulkhead, s, max_concurrent, max_waiting)
    )
    # FIFO: entered in arrival order; everyone not cancelled entered or was
    # refused; nothing leaked
    assert order == sorted(order)
    assert set(range(len(s.arrivals))) - s.cancelled <= set(entered) | rejected
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)
    # the exact model: arrivals and holds are whole microseconds apart... except
    # the tie-breaking powers of two, which looptime rounds; entry times then
    # move by less than a microsecond
    expected, expected_rejected = bulkhead_model(s, max_concurrent, max_waiting)
    assert rejected == expected_rejected
    assert set(entered) == set(expected)
    for i, t in expected.items():
        assert entered[i] == pytest.approx(float(t), abs=1e-5), i
