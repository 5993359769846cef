"""Per-call retry statistics (``retry_stats``), the ``before=`` hooks
(``RetryAttemptStarted``) and what the retry events carry (issue 17)."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway
from anyway import (
    PolicyEvent,
    RetryAttemptStarted,
    RetryBudget,
    RetryGaveUp,
    RetryScheduled,
    RetryStats,
    retry,
    retry_stats,
    retrying,
)
from anyway.testing import Clock
from retry_support import EXACT, Fatal, Flaky, Transient, record_events, run_block

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = pytest.fixture(name="events")(record_events)


# --- retry_stats ---------------------------------------------------------------------------------


async def test_stats_of_one_call(clock: Clock) -> None:
    seen_inside: list[int] = []
    flaky = Flaky(Transient(), Transient(), duration=0.5)

    @retry(on=Transient, backoff=EXACT)
    async def fetch() -> object:
        seen_inside.append(stats.attempts)  # live: the running attempt's number
        return await flaky()

    with retry_stats() as stats:
        assert await fetch() == "ok"
        await anyio.sleep(0.25)
    # three attempts of 0.5 s, waits of 1 and 2 s, then 0.25 s in the block
    assert (stats.calls, stats.attempts, stats.retries) == (1, 3, 2)
    assert stats.waited == 3.0
    assert stats.elapsed == clock.approx(4.75)
    assert seen_inside == [1, 2, 3]
    await anyio.sleep(5)
    assert stats.elapsed == clock.approx(4.75)  # frozen when the block ended
    shown = repr(stats)
    assert shown.startswith("<RetryStats calls=1 attempts=3 waited=3 elapsed=")
    assert float(shown.rsplit("=", 1)[1].rstrip(">")) == clock.approx(4.75)


async def test_the_success_path_counts_one_attempt_and_no_wait(clock: Clock) -> None:
    @retry(on=Transient)
    async def fetch() -> int:
        return 1

    with retry_stats() as stats:
        await fetch()
        await fetch()
    assert (stats.calls, stats.attempts, stats.retries, stats.waited) == (2, 2, 0, 0.0)
    assert stats.elapsed == clock.approx(0)
    assert isinstance(stats, RetryStats)


async def test_concurrent_calls_each_see_their_own_stats(clock: Clock) -> None:
    # tenacity#701: fn.statistics is shared, so concurrent calls mix their numbers.
    policy = retry(on=Transient, backoff=EXACT)
    results: dict[str, RetryStats] = {}

    async def call(key: str, failures: int) -> None:
        with retry_stats() as stats:
            await policy.call(Flaky(*[Transient() for _ in range(failures)]))
        results[key] = stats

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "one failure", 1)
        tg.start_soon(call, "three failures", 3)
    one, three = results["one failure"], results["three failures"]
    assert (one.calls, one.attempts, one.waited) == (1, 2, 1.0)
    assert (three.calls, three.attempts, three.waited) == (1, 4, 7.0)
    assert one.elapsed == clock.approx(1)
    assert three.elapsed == clock.approx(7)


async def test_retrying_blocks_and_call_count_too(clock: Clock) -> None:
    flaky = Flaky(Transient())
    with retry_stats() as stats:
        async for attempt in retrying(on=Transient, backoff=EXACT):
            with attempt:
                await flaky()
        await retry(on=Transient, backoff=EXACT).call(Flaky(Transient(), Transient()))
    assert (stats.calls, stats.attempts, stats.retries, stats.waited) == (2, 5, 3, 4.0)


async def test_an_inner_block_counts_for_itself_only() -> None:
    policy = retry(on=Transient, attempts=3, timeout=None)
    with anyway.testing.no_backoff(), retry_stats() as outer:
        await policy.call(Flaky(Transient()))
        with retry_stats() as inner:
            await policy.call(Flaky(Transient(), Transient()))
        await policy.call(Flaky())
    assert (outer.calls, outer.attempts) == (2, 3)
    assert (inner.calls, inner.attempts) == (1, 3)


async def test_a_cut_wait_counts_the_part_waited(clock: Clock) -> None:
    policy = retry(on=Transient, backoff=EXACT, attempts=None, timeout=None)
    flaky = Flaky(*[Transient() for _ in range(10)])

    async def call() -> None:
        with retry_stats() as stats:
            try:
                await policy.call(flaky)
            finally:
                results.append(stats)

    results: list[RetryStats] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await anyio.sleep(1.5)  # within the second wait (1 to 3)
        tg.cancel_scope.cancel()
    [stats] = results
    assert stats.attempts == 2
    assert stats.waited == clock.approx(1.5)
    assert len(flaky.calls) == 2  # the cancellation was not retried


async def test_waits_that_would_cross_the_timeout_are_not_counted(clock: Clock) -> None:
    async def slow_hook(event: PolicyEvent) -> None:
        await anyio.sleep(1)

    policy = retry(on=Transient, backoff=EXACT, timeout=2.5, hooks=slow_hook)
    with retry_stats() as stats, pytest.raises(Transient) as info:
        await policy.call(Flaky(Transient(), Transient()))
    # attempt 1 fails at 0, hook until 1, wait 1 to 2, attempt 2 fails at 2:
    # the second wait (2 s) would cross the timeout and never starts
    assert stats.waited == 1.0
    assert stats.attempts == 2
    assert "would cross the retry timeout" in info.value.__notes__[0]


def test_stats_need_an_event_loop() -> None:
    with pytest.raises(Exception, match=r"loop|async"):
        retry_stats().__enter__()


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    failures=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    attempts=st.integers(1, 5),
    block=st.booleans(),
)
async def test_invariants_of_concurrent_stats(
    clock: Clock, failures: list[int], attempts: int, block: bool
) -> None:
    """Each call's scope sees exactly its own attempts and waits (EXACT: 1, 2, 4, 8...)."""
    policy = retry(on=Transient, backoff=EXACT, attempts=attempts, timeout=None)
    seen: dict[int, tuple[int, int, float]] = {}

    async def call(key: int, count: int) -> None:
        flaky = Flaky(*[Transient() for _ in range(count)])
        with retry_stats() as stats:
            try:
                if block:
                    async for attempt in policy.retrying():
                        with attempt:
                            await flaky()
                else:
                    await policy.call(flaky)
            except Transient:
                pass
        seen[key] = (stats.calls, stats.attempts, stats.waited)

    async with anyio.create_task_group() as tg:
        for key, count in enumerate(failures):
            tg.start_soon(call, key, count)
    for key, count in enumerate(failures):
        made = min(count + 1, attempts)
        assert seen[key] == (1, made, float(sum(2**n for n in range(made - 1))))


# --- before= and RetryAttemptStarted ------------------------------------------------------------


async def test_before_hooks_see_every_attempt(clock: Clock, events: list[PolicyEvent]) -> None:
    sync_seen: list[RetryAttemptStarted] = []
    async_seen: list[tuple[RetryAttemptStarted, float]] = []
    flaky = Flaky(Transient(), Transient())

    def sync_hook(event: PolicyEvent) -> None:
        assert isinstance(event, RetryAttemptStarted)
        sync_seen.append(event)

    async def async_hook(event: PolicyEvent) -> None:
        await anyio.lowlevel.checkpoint()
        assert isinstance(event, RetryAttemptStarted)
        async_seen.append((event, anyio.current_time()))

    @retry(on=Transient, backoff=EXACT, before=[sync_hook, async_hook])
    async def fetch() -> object:
        return await flaky()

    t0 = clock.now()
    assert await fetch() == "ok"
    name = "test_before_hooks_see_every_attempt.<locals>.fetch"
    assert sync_seen == [
        RetryAttemptStarted(policy=name, attempt=1, waited=0.0, function=name),
        RetryAttemptStarted(policy=name, attempt=2, waited=1.0, function=name),
        RetryAttemptStarted(policy=name, attempt=3, waited=3.0, function=name),
    ]
    assert sync_seen == [e for e, _ in async_seen]
    assert [t - t0 for _, t in async_seen] == [clock.approx(x) for x in (0, 1, 3)]
    assert [t - t0 for t in flaky.calls] == [clock.approx(x) for x in (0, 1, 3)]
    # only the before= hooks get it (the global hooks would get one per call)
    assert not any(isinstance(e, RetryAttemptStarted) for e in events)
    assert [type(e) for e in events] == [RetryScheduled, RetryScheduled]


async def test_before_in_call_and_retrying_blocks() -> None:
    seen: list[RetryAttemptStarted] = []
    policy = retry(on=Transient, before=seen.append, name="db", timeout=None)  # type: ignore[arg-type]
    with anyway.testing.no_backoff():
        await policy.call(Flaky(Transient()))
        async for attempt in policy.retrying():
            with attempt:
                if attempt.num < 3:
                    raise Transient()
    assert [(e.policy, e.attempt, e.function) for e in seen] == [
        ("db", 1, "Flaky"),
        ("db", 2, "Flaky"),
        ("db", 1, None),
        ("db", 2, None),
        ("db", 3, None),
    ]
    assert "before=(list.append,)" in repr(policy)


async def test_the_success_path_announces_the_first_attempt_only() -> None:
    seen: list[PolicyEvent] = []

    @retry(on=Transient, before=seen.append)
    async def fetch() -> int:
        return 1

    assert await fetch() == 1
    assert [(type(e), e.attempt) for e in seen] == [(RetryAttemptStarted, 1)]  # type: ignore[attr-defined]


async def test_an_error_in_a_before_hook_propagates_and_is_not_retried() -> None:
    budget = RetryBudget(ratio=0, min_per_second=0.1, window=10)  # reserve: 1 retry
    calls = 0

    def hook(event: PolicyEvent) -> None:
        assert isinstance(event, RetryAttemptStarted)
        if event.attempt == 2:
            raise Transient("from the hook")

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise Transient("from fn")

    policy = retry(on=Transient, before=hook, budget=budget, backoff=EXACT)
    with pytest.raises(Transient, match="from the hook") as info:
        await policy.call(fn)
    assert calls == 1
    assert str(info.value.__context__) == "from fn"  # the error being retried stays reachable
    assert budget.balance == pytest.approx(1)  # the retry did not happen: refunded


@pytest.mark.parametrize("attempt", [1, 2])
async def test_cancelled_in_a_before_hook(clock: Clock, attempt: int) -> None:
    budget = RetryBudget(ratio=0, min_per_second=0.1, window=10)
    hook_started = anyio.Event()
    flaky = Flaky(Transient())

    async def hook(event: PolicyEvent) -> None:
        assert isinstance(event, RetryAttemptStarted)
        if event.attempt == attempt:
            hook_started.set()
            await anyio.sleep_forever()

    policy = retry(on=Transient, before=hook, budget=budget, backoff=EXACT)
    async with anyio.create_task_group() as tg:
        tg.start_soon(policy.call, flaky)
        await hook_started.wait()
        tg.cancel_scope.cancel()
    assert len(flaky.calls) == attempt - 1  # the attempt never started
    assert budget.balance == pytest.approx(1)  # nothing kept for a retry that did not happen


def test_before_is_validated() -> None:
    with pytest.raises(TypeError, match=r"before must be a hook .* got 3"):
        retry(on=Transient, before=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"before must be a hook .* got \[None\]"):
        retry(on=Transient, before=[None])  # type: ignore[list-item]
    assert "before=(log_event,)" in repr(retry(on=Transient, before=anyway.log_event))


def test_old_style_event_constructors_still_work() -> None:
    scheduled = RetryScheduled(policy="p", attempt=1, delay=0.5)
    gave_up = RetryGaveUp(policy="p", attempts=2, elapsed=1.0, reason="r")
    assert (scheduled.waited, scheduled.function) == (0.0, None)
    assert (gave_up.waited, gave_up.function) == (0.0, None)
    assert RetryAttemptStarted(policy="p", attempt=2).waited == 0.0


async def test_retrying_events_have_no_function(events: list[PolicyEvent]) -> None:
    with anyway.testing.no_backoff(), pytest.raises(Transient):
        await run_block(retrying(on=Transient, attempts=2))
    assert [(type(e), e.function) for e in events] == [  # type: ignore[attr-defined]
        (RetryScheduled, None),
        (RetryGaveUp, None),
    ]


async def test_a_non_retried_error_with_before_hooks() -> None:
    seen: list[PolicyEvent] = []
    with pytest.raises(Fatal):
        await retry(on=Transient, before=seen.append).call(Flaky(Fatal()))
    assert len(seen) == 1


# --- random_wait ---------------------------------------------------------------------------------


async def test_random_wait_draws_between_min_and_max(clock: Clock) -> None:
    class Stub(random.Random):
        def uniform(self, a: float, b: float) -> float:
            draws.append((a, b))
            return b if len(draws) % 2 else a

    draws: list[tuple[float, float]] = []
    wait = anyway.random_wait(0.5, 2.0, random=Stub())
    flaky = Flaky(Transient(), Transient(), Transient())
    with retry_stats() as stats:
        await retry(on=Transient, wait=wait).call(flaky)
    assert draws == [(0.5, 2.0)] * 3
    assert stats.waited == 2.0 + 0.5 + 2.0
    assert [t - flaky.calls[0] for t in flaky.calls] == [clock.approx(x) for x in (0, 2, 2.5, 4.5)]


@given(
    low=st.floats(0, 100, allow_nan=False),
    span=st.floats(0, 100, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_random_wait_stays_within_its_bounds(low: float, span: float, seed: int) -> None:
    wait = anyway.random_wait(low, low + span, random=random.Random(seed))
    for attempt in range(1, 5):
        assert low <= wait(attempt, None) <= low + span


def test_random_wait_validation_and_repr() -> None:
    assert repr(anyway.random_wait(0.5, 2)) == "random_wait(0.5, 2)"
    assert repr(anyway.random_wait(1, 1, random=random.Random(3))).startswith(
        "random_wait(1, 1, random=<random.Random object"
    )
    with pytest.raises(ValueError, match=r"max must be >= min, got min=2 and max=1"):
        anyway.random_wait(2, 1)
    with pytest.raises(ValueError, match=r"min must be >= 0"):
        anyway.random_wait(-1, 1)
    with pytest.raises(TypeError, match=r"random must be a random.Random"):
        anyway.random_wait(0, 1, random=object())  # type: ignore[arg-type]
