"""AdaptiveLimiter: the limit's range and how it moves, cancellation
neutrality, FIFO and cancellation-safe waiting, events, statistics, a fresh
start in a new event loop, use as map()'s and resilient()'s limiter. Every
test runs on every loop and on the foreign clocks."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway
from anyway import AdaptiveLimiter, AdaptiveLimiterStatistics, LimitChanged, PolicyEvent
from anyway.testing import backends, virtual_time_options

#: asyncio, and trio where installed (the suite also runs without Trio)
LOOPS = [name for name, _ in backends(uvloop=False)]

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

SETTINGS = settings(
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class Boom(Exception):
    pass


async def call(limiter: AdaptiveLimiter, hold: float = 0.0, *, fail: bool = False) -> None:
    async with limiter:
        await anyio.sleep(hold)
        if fail:
            raise Boom


async def failing(limiter: AdaptiveLimiter, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await call(limiter, fail=True)


async def saturate(limiter: AdaptiveLimiter, workers: int, hold: float, rounds: int) -> list[int]:
    """*workers* tasks, each making *rounds* calls of *hold* seconds; the
    limit seen at every entry."""
    seen: list[int] = []

    async def worker() -> None:
        for _ in range(rounds):
            async with limiter:
                seen.append(limiter.limit)
                await anyio.sleep(hold)

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return seen


def stats(limiter: AdaptiveLimiter) -> AdaptiveLimiterStatistics:
    return limiter.statistics()


# --- construction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"initial": 0}, ValueError, "initial must be >= 1, got 0"),
        ({"initial": 2.5}, TypeError, "initial must be a whole number, got 2.5"),
        ({"initial": True}, TypeError, "initial must be a whole number, got True"),
        ({"min_limit": 0}, ValueError, "min_limit must be >= 1, got 0"),
        ({"max_limit": "9"}, TypeError, "max_limit must be a whole number, got '9'"),
        (
            {"min_limit": 5, "max_limit": 4, "initial": 4},
            ValueError,
            "max_limit must be >= min_limit",
        ),
        (
            {"initial": 20, "max_limit": 10},
            ValueError,
            r"initial must be within \[min_limit, max_limit\]",
        ),
        (
            {"initial": 1, "min_limit": 2},
            ValueError,
            r"initial must be within \[min_limit, max_limit\] = \[2, 1000\], got 1",
        ),
        ({"name": 3}, TypeError, "name must be a string or None, got 3"),
        ({"hooks": [3]}, TypeError, "hooks must be callables"),
    ],
)
def test_bad_arguments_name_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        AdaptiveLimiter(**kwargs)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        AdaptiveLimiter(10)  # type: ignore[call-arg]


async def test_defaults_repr_and_frozen_statistics() -> None:
    limiter = AdaptiveLimiter()
    assert (limiter.limit, limiter.min_limit, limiter.max_limit, limiter.name) == (
        10,
        1,
        1000,
        None,
    )
    assert repr(limiter) == "<AdaptiveLimiter limit=10 in [1, 1000] in_flight=0 waiting=0>"
    snapshot = limiter.statistics()
    assert snapshot == AdaptiveLimiterStatistics(
        limit=10, in_flight=0, waiting=0, successes=0, failures=0, baseline=None, latency=None
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.limit = 3  # type: ignore[misc]
    async with limiter:
        assert repr(AdaptiveLimiter(name="db", initial=3)).startswith(
            "<AdaptiveLimiter 'db' limit=3"
        )
        assert stats(limiter).in_flight == 1
    assert stats(limiter).successes == 1


# --- how the limit moves ---------------------------------------------------------------------


async def test_grows_while_latency_stays_steady_and_the_limit_is_used() -> None:
    events: list[PolicyEvent] = []
    limiter = AdaptiveLimiter(initial=4, hooks=events.append)
    seen = await saturate(limiter, workers=30, hold=3.0, rounds=6)  # (see below: 3 s)
    assert seen == sorted(seen)  # never shrinks
    changes = [(e.old, e.new, e.reason) for e in events if isinstance(e, LimitChanged)]
    # +sqrt(limit) per window of max(10, limit // 2) samples that used the limit
    assert changes[:4] == [
        (4, 6, "growth"),
        (6, 8, "growth"),
        (8, 11, "growth"),
        (11, 14, "growth"),
    ]
    assert stats(limiter).baseline == pytest.approx(3.0, abs=0.2)


async def test_an_idle_limit_does_not_grow() -> None:
    limiter = AdaptiveLimiter(initial=10)
    for _ in range(50):  # one call at a time: 1 of 10 used
        await call(limiter, 0.5)
    assert limiter.limit == 10
    assert stats(limiter).successes == 50


@settings(SETTINGS, max_examples=10)
@given(
    # Seconds, long enough that on uvloop's accelerated real time (1 s is
    # 20 ms) a loaded machine's scheduling jitter stays well under the 25 %
    # the limiter tolerates; a call that does not wait at all takes whatever
    # that jitter is there, which is not a steady latency.
    hold=st.sampled_from([2.0, 3.0]),
    batches=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    initial=st.integers(1, 30),
)
async def test_steady_latency_without_failures_never_shrinks(
    hold: float, batches: list[int], initial: int
) -> None:
    events: list[PolicyEvent] = []
    limiter = AdaptiveLimiter(initial=initial, max_limit=64, hooks=events.append)
    for size in batches:  # bursts of `size` concurrent calls of the same duration
        async with anyio.create_task_group() as tg:
            for _ in range(size):
                tg.start_soon(call, limiter, hold)
    for e in events:
        # Never a cut without a latency rise it measured: on virtual time every
        # call takes exactly `hold`, so nothing is ever cut; on uvloop's
        # accelerated real time a loaded machine's scheduling jitter can be a
        # real rise (a 30 ms stall is 0.6 s there), and only that may cut.
        assert isinstance(e, LimitChanged), e
        assert e.new > e.old or (
            e.reason == "latency"
            and e.latency is not None
            and e.baseline is not None
            and e.latency > 1.25 * e.baseline
        ), e
    assert limiter.limit == (events[-1].new if events else initial)  # type: ignore[attr-defined]


async def test_a_latency_rise_shrinks_the_limit() -> None:
    events: list[LimitChanged] = []
    limiter = AdaptiveLimiter(initial=20, hooks=events.append)  # type: ignore[arg-type]
    await saturate(limiter, workers=40, hold=1.0, rounds=3)  # baseline: 1 s
    grown = limiter.limit
    assert grown > 20
    await saturate(limiter, workers=40, hold=4.0, rounds=2)  # 4x slower
    cuts = [e for e in events if e.reason == "latency"]
    assert cuts, events
    first = cuts[0]
    assert first.old == grown
    assert first.baseline == pytest.approx(1.0, abs=0.05)
    assert first.latency is not None
    assert first.baseline is not None
    assert first.latency > 1.25 * first.baseline  # (a window may mix 1 s and 4 s calls)
    # cut in proportion, at most by half in one window
    expected = max(0.5, first.baseline / first.latency) * first.old
    assert first.new in (int(expected), int(expected) - 1, int(expected) + 1)
    assert limiter.limit < grown


async def test_failures_cut_the_limit_multiplicatively_down_to_min_limit() -> None:
    events: list[PolicyEvent] = []
    limiter = AdaptiveLimiter(initial=10, min_limit=2, hooks=events.append)
    await failing(limiter, 9)
    assert limiter.limit == 10  # a window is 10 samples
    await failing(limiter, 1)
    assert events == [
        LimitChanged(
            policy="AdaptiveLimiter", old=10, new=5, reason="failures", latency=None, baseline=None
        )
    ]
    await failing(limiter, 30)
    assert [e.new for e in events if isinstance(e, LimitChanged)] == [5, 2]  # 2.5, then min_limit
    assert limiter.limit == 2
    assert stats(limiter).failures == 40


async def test_some_failures_cut_in_proportion() -> None:
    limiter = AdaptiveLimiter(initial=10)
    await failing(limiter, 2)
    for _ in range(8):
        await call(limiter)
    assert limiter.limit == 9  # 10 * (1 - 0.2 / 2)


@SETTINGS
@given(
    bounds=st.tuples(st.integers(1, 8), st.integers(0, 40)),
    steps=st.lists(
        st.tuples(st.integers(1, 30), st.sampled_from([0.0, 0.1, 0.5]), st.booleans()),
        min_size=1,
        max_size=10,
    ),
)
async def test_the_limit_stays_within_its_bounds(
    bounds: tuple[int, int], steps: list[tuple[int, float, bool]]
) -> None:
    low, extra = bounds
    limiter = AdaptiveLimiter(initial=low + extra // 2, min_limit=low, max_limit=low + extra)
    most_inside = 0

    async def one(hold: float, fail: bool) -> None:
        nonlocal most_inside
        try:
            async with limiter:
                most_inside = max(most_inside, stats(limiter).in_flight)
                await anyio.sleep(hold)
                if fail:
                    raise Boom
        except Boom:
            pass

    for size, hold, fail in steps:
        async with anyio.create_task_group() as tg:
            for i in range(size):
                tg.start_soon(one, hold, fail and i % 2 == 0)
        assert low <= limiter.limit <= low + extra
    assert most_inside <= low + extra
    assert stats(limiter).in_flight == stats(limiter).waiting == 0


async def test_learns_the_capacity_of_a_queueing_server() -> None:
    capacity = 8
    server = anyio.CapacityLimiter(capacity)  # 8 at a time at 0.5 s, the rest queue
    limiter = AdaptiveLimiter(initial=2)
    limits: list[int] = []

    async def client() -> None:
        for _ in range(25):
            async with limiter, server:
                limits.append(limiter.limit)
                await anyio.sleep(0.5)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(client)
    late = limits[len(limits) // 2 :]  # once it has found the capacity
    # It probes above the capacity by sqrt(limit) and comes back: around C,
    # never flooding the server like the 20 clients would.
    assert capacity <= max(late) <= 2.5 * capacity
    assert capacity / 2 <= min(late)
    assert capacity <= sum(late) / len(late) <= 1.5 * capacity


# --- cancellation ----------------------------------------------------------------------------


async def test_a_call_cancelled_inside_is_no_sample() -> None:
    limiter = AdaptiveLimiter(initial=10)
    await failing(limiter, 9)
    before = stats(limiter)
    with anyio.move_on_after(0.5):
        async with limiter:
            await anyio.sleep(1)
    assert stats(limiter) == before  # no success, no failure, nothing inside
    await failing(limiter, 1)  # the 10th sample closes the window
    assert limiter.limit == 5


async def test_a_cancellation_group_is_no_sample_either() -> None:
    limiter = AdaptiveLimiter(initial=10)
    before = stats(limiter)
    with anyio.move_on_after(0.5):
        async with limiter, anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 1)
            await anyio.sleep(1)
    assert stats(limiter) == before


async def test_cancelled_before_entering_takes_nothing() -> None:
    limiter = AdaptiveLimiter(initial=1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with limiter:  # the entry checkpoint raises
            pytest.fail("entered a cancelled scope")
    assert stats(limiter) == AdaptiveLimiter(initial=1).statistics()


async def test_waiters_are_served_in_order_and_a_cancelled_waiter_takes_nothing(
    clock: Any,
) -> None:
    limiter = AdaptiveLimiter(initial=1)
    order: list[str] = []
    scopes: dict[str, anyio.CancelScope] = {}
    t0 = clock.now()

    async def enter(name: str, at: float) -> None:
        with anyio.CancelScope() as scopes[name]:
            await anyio.sleep(at)
            async with limiter:
                order.append(name)
                await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        for i, name in enumerate("abcde"):
            tg.start_soon(enter, name, i * 0.1)
        await anyio.sleep(0.5)
        assert (stats(limiter).in_flight, stats(limiter).waiting) == (1, 4)
        scopes["c"].cancel()
        await anyio.sleep(0.01)  # c's cancellation is delivered
        assert (stats(limiter).in_flight, stats(limiter).waiting) == (1, 3)
    assert order == ["a", "b", "d", "e"]
    assert clock.now() - t0 == clock.approx(4.0, ticks=4)
    assert (stats(limiter).in_flight, stats(limiter).waiting, limiter.limit) == (0, 0, 1)


async def test_a_place_handed_to_a_waiter_cancelled_at_that_moment_goes_to_the_next() -> None:
    limiter = AdaptiveLimiter(initial=1)
    order: list[str] = []
    b_scope = anyio.CancelScope()

    async def b() -> None:
        with b_scope:
            async with limiter:
                order.append("b")

    async def c() -> None:
        async with limiter:
            order.append("c")

    async with anyio.create_task_group() as tg, limiter:
        tg.start_soon(b)
        await anyio.sleep(0.1)
        tg.start_soon(c)
        await anyio.sleep(0.1)
        assert stats(limiter).waiting == 2
        b_scope.cancel()  # b is handed the place as it is cancelled
    assert order == ["c"]
    assert (stats(limiter).in_flight, stats(limiter).waiting) == (0, 0)
    assert stats(limiter).successes == 2  # the holder and c; b is no sample


async def test_cancelled_in_an_async_hook_while_leaving(clock: Any) -> None:
    async def slow_hook(event: PolicyEvent) -> None:
        await anyio.sleep(10)

    limiter = AdaptiveLimiter(initial=10, hooks=slow_hook)
    await failing(limiter, 9)
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        await call(limiter, fail=True)  # the window closes: the hook runs, and is cancelled
    assert scope.cancelled_caught  # the cancellation propagated out of the limiter
    assert clock.now() - t0 == clock.approx(1)
    assert limiter.limit == 5  # the sample was taken before the hook ran
    assert (stats(limiter).in_flight, stats(limiter).failures) == (0, 10)


# --- events, new loops, use as a limiter -------------------------------------------------------


async def test_limit_changes_go_to_the_global_hooks_too() -> None:
    seen: list[PolicyEvent] = []
    anyway.add_hook(seen.append)
    try:
        limiter = AdaptiveLimiter(initial=4, name="db")
        await failing(limiter, 10)
    finally:
        anyway.remove_hook(seen.append)
    assert seen == [
        LimitChanged(policy="db", old=4, new=2, reason="failures", latency=None, baseline=None)
    ]


def test_a_limiter_made_before_the_loop_starts_afresh_in_each_run() -> None:
    limiter = AdaptiveLimiter(initial=10)

    async def shrink() -> None:
        assert limiter.limit == 10
        assert stats(limiter) == AdaptiveLimiter(initial=10).statistics()
        await failing(limiter, 10)
        assert limiter.limit == 5

    for backend in ("asyncio", *LOOPS[1:], "asyncio"):  # via Trio when installed
        anyio.run(shrink, backend=backend, backend_options=virtual_time_options(backend))
    assert limiter.limit == 5  # outside a loop: the state as it was left


async def test_works_as_the_limiter_of_map_and_resilient() -> None:
    limiter = AdaptiveLimiter(initial=3)
    inside = most = 0

    async def work(item: int) -> int:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await anyio.sleep(1)
        inside -= 1
        return item * 2

    assert await anyway.map_all(work, range(12), limiter=limiter) == [i * 2 for i in range(12)]
    assert most == 3  # 12 calls, one at a time per slot: no window closed before the end
    assert stats(limiter).successes == 12

    guarded = anyway.resilient(limiter=limiter)(work)
    assert await guarded(5) == 10
    assert stats(limiter).successes == 13


async def test_entering_is_a_checkpoint() -> None:
    limiter = AdaptiveLimiter()
    with anyio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(anyio.get_cancelled_exc_class()):
            await limiter.__aenter__()
    assert stats(limiter).in_flight == 0
