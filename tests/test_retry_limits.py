"""The limits of retry() and retrying() at their edges (issue 11): the
timeout bounds everything after the first failure, slow hooks cannot push a
wait past a deadline, and cancellation at each await point of the retry loop
propagates, is never retried or counted, and gives the budget back.

Each scenario runs through both drivers of the one retry loop: ``Retry.call``
and a ``retrying()`` block."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway
from anyway import Backoff, PolicyEvent, RetryBudget, RetryGaveUp, RetryScheduled, retry
from anyway.testing import Clock
from retry_support import Transient, note_numbers, record_events

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = pytest.fixture(name="events")(record_events)

DRIVERS = ["call", "retrying"]


class Timed:
    """An async callable whose n-th call takes ``durations[n]`` seconds (the
    last one repeats), then raises a fresh ``Transient(n)``, or returns
    ``"ok"`` from call ``succeed_at`` on."""

    def __init__(self, *durations: float, succeed_at: int | None = None) -> None:
        self.durations = durations or (0.0,)
        self.succeed_at = succeed_at
        self.calls: list[float] = []
        self.raised: list[Transient] = []

    async def __call__(self) -> str:
        n = len(self.calls)
        self.calls.append(anyio.current_time())
        await anyio.sleep(self.durations[min(n, len(self.durations) - 1)])
        if self.succeed_at is not None and n >= self.succeed_at:
            return "ok"
        error = Transient(n)
        self.raised.append(error)
        raise error


async def drive(driver: str, policy: anyway.Retry, fn: Callable[[], Awaitable[Any]]) -> Any:
    """``policy.call(fn)``, or the same through a ``retrying()`` block."""
    if driver == "call":
        return await policy.call(fn)
    async for attempt in policy.retrying():
        with attempt:
            return await fn()
    raise AssertionError("retrying() ended without a result or an error")


def gave_up(events: list[PolicyEvent]) -> list[RetryGaveUp]:
    return [e for e in events if isinstance(e, RetryGaveUp)]


# --- defect 4: a slow hook cannot push a wait past the deadline or the timeout ----------


def slow_hook(seconds: float) -> Callable[[PolicyEvent], Awaitable[None]]:
    async def hook(event: PolicyEvent) -> None:
        if isinstance(event, RetryScheduled):
            await anyio.sleep(seconds)

    return hook


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_slow_hook_cannot_push_the_wait_past_the_callers_deadline(
    clock: Clock, driver: str
) -> None:
    """Hook 0.05 s, wait 0.08 s, deadline 0.1 s: after the hook only 0.05 s
    are left, so the wait is not started and the real error is raised."""
    fn = Timed()
    policy = retry(
        on=Transient, backoff=Backoff(initial=0.08, max=0.08, jitter=None), hooks=slow_hook(0.05)
    )
    t0 = clock.now()
    with pytest.raises(Transient) as info, anyway.deadline(0.1):
        await drive(driver, policy, fn)
    assert clock.now() - t0 == clock.approx(0.05)
    assert info.value is fn.raised[0]
    assert len(fn.calls) == 1
    elapsed, left = note_numbers(
        info.value.__notes__[0],
        "gave up after 1 attempt in {} s: waiting 0.08 s would cross the caller's deadline in {} s",
    )
    assert (elapsed, elapsed + left) == (clock.approx(0.05), clock.approx(0.1))


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_slow_hook_cannot_push_the_wait_past_the_timeout(
    clock: Clock, driver: str, events: list[PolicyEvent]
) -> None:
    fn = Timed()
    policy = retry(
        on=Transient,
        timeout=0.1,
        backoff=Backoff(initial=0.08, max=0.08, jitter=None),
        hooks=slow_hook(0.05),
    )
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await drive(driver, policy, fn)
    assert clock.now() - t0 == clock.approx(0.05)
    assert len(fn.calls) == 1  # the second attempt is never started (it was, at 0.13)
    assert (
        "waiting 0.08 s would cross the retry timeout (timeout=0.1 s" in (info.value.__notes__[0])
    )
    assert len(gave_up(events)) == 1


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_hook_still_running_at_the_timeout_is_cut(
    clock: Clock, driver: str, events: list[PolicyEvent]
) -> None:
    fn = Timed(0.2)
    policy = retry(on=Transient, timeout=0.5, backoff=Backoff(initial=0), hooks=slow_hook(10))
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await drive(driver, policy, fn)
    assert clock.now() - t0 == clock.approx(0.7)  # the first attempt, then the whole timeout
    assert info.value is fn.raised[0]
    assert info.value.__notes__[0].endswith(
        "the retry timeout (timeout=0.5 s) expired: during the wait after attempt 1"
    )
    assert [e.reason for e in gave_up(events)] == [
        "the retry timeout (timeout=0.5 s) expired: during the wait after attempt 1"
    ]


# --- defect 5: the timeout bounds everything after the first failure -----------------------


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_later_attempt_is_cut_at_the_timeout(
    clock: Clock, driver: str, events: list[PolicyEvent]
) -> None:
    """Attempts of 0.15 s, a 0.08 s wait, timeout 0.2: the first fails at
    0.15, the second starts at 0.23 and is cut at 0.35 (it ran to 0.38)."""
    fn = Timed(0.15)
    policy = retry(on=Transient, timeout=0.2, backoff=Backoff(initial=0.08, jitter=None))
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await drive(driver, policy, fn)
    assert clock.now() - t0 == clock.approx(0.35)
    assert len(fn.calls) == 2
    assert info.value is fn.raised[0]  # the last real error; the cut attempt raised none
    elapsed = note_numbers(
        info.value.__notes__[0],
        "gave up after 2 attempts in {} s: the retry timeout (timeout=0.2 s) expired:"
        " attempt 2 was cut",
    )
    assert elapsed == [clock.approx(0.2)]
    assert info.value.__notes__[1] == "earlier attempts: #1 Transient(0)"
    (event,) = gave_up(events)
    assert (event.attempts, event.error) == (2, info.value)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_cut_attempt_after_a_rejected_result_returns_that_result(
    clock: Clock, driver: str
) -> None:
    results = iter([503, 200])

    async def fetch() -> int:
        status = next(results)
        if status == 200:
            await anyio.sleep(10)  # the second attempt hangs
        return status

    policy = retry(
        on=Transient, timeout=1, backoff=Backoff(initial=0), retry_if_result=lambda r: r == 503
    )
    if driver == "call":
        assert await policy.call(fetch) == 503
    else:
        async for attempt in policy.retrying():
            with attempt:
                attempt.set_result(await fetch())
        assert attempt.result == 503
    assert clock.now() == clock.approx(1)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("outer", "cut_at"), [(0.5, 0.5), (1.0, 1.0), (3.0, 1.0)])
async def test_a_hung_attempt_is_cut_by_the_earlier_of_timeout_and_caller_deadline(
    clock: Clock, driver: str, outer: float, cut_at: float
) -> None:
    # (retry() enters no scope of its own when the caller's deadline comes
    # first: the caller's cancellation then propagates, as through a scope.)
    fn = Timed(0.0, 100.0)
    policy = retry(on=Transient, timeout=1.0, backoff=Backoff(initial=0))
    with anyio.move_on_after(outer) as scope, pytest.raises(Transient) as info:
        await drive(driver, policy, fn)
    assert clock.now() == clock.approx(cut_at)
    if outer > 1.0:
        assert not scope.cancelled_caught
        assert "attempt 2 was cut" in info.value.__notes__[0]
        assert info.value is fn.raised[0]
    else:
        assert scope.cancelled_caught  # cancellation: propagated, never retried
    assert len(fn.calls) == 2


async def test_the_first_attempt_is_not_cut(clock: Clock) -> None:
    """The success path reads no clock: the timeout starts at the first
    failure, so a slow first attempt is not cut (a deadline does that)."""
    fn = Timed(5.0, 0.0, succeed_at=1)
    assert await retry(on=Transient, timeout=1, backoff=Backoff(initial=0)).call(fn) == "ok"
    assert clock.now() == clock.approx(5)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_without_a_timeout_nothing_is_cut(clock: Clock, driver: str) -> None:
    fn = Timed(0.0, 100.0, succeed_at=1)
    policy = retry(on=Transient, timeout=None, backoff=Backoff(initial=0))
    assert await drive(driver, policy, fn) == "ok"
    assert clock.now() == clock.approx(100)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    durations=st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.5]), min_size=1, max_size=6),
    waits=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    attempts=st.integers(1, 6),
    limit=st.sampled_from([0.2, 0.5, 1.0, 2.0]),
    driver=st.sampled_from(DRIVERS),
)
async def test_invariants_timeout_and_attempts(
    clock: Clock,
    durations: list[float],
    waits: float,
    attempts: int,
    limit: float,
    driver: str,
) -> None:
    """Whatever the attempts take: never more than ``attempts`` calls, and
    nothing after the first failure outlives ``timeout``."""
    fn = Timed(*durations)
    policy = retry(
        on=Transient,
        attempts=attempts,
        timeout=limit,
        backoff=Backoff(initial=waits, max=waits, jitter=None),
    )
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await drive(driver, policy, fn)
    first_failure = t0 + durations[0]
    assert 1 <= len(fn.calls) <= attempts
    assert clock.now() - first_failure <= limit + clock.late_tolerance
    assert info.value in fn.raised
    assert info.value.__notes__[0].startswith(f"gave up after {len(fn.calls)} attempt")


# --- cancellation at each await point of the loop ------------------------------------------


async def cancel_at(
    seconds: float, driver: str, policy: anyway.Retry, fn: Callable[[], Awaitable[Any]]
) -> anyio.CancelScope:
    """Run the retry in a scope that another task cancels after *seconds*
    (no deadline: retry cannot see it coming)."""
    scope = anyio.CancelScope()

    async def canceller() -> None:
        await anyio.sleep(seconds)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(canceller)
        with scope:
            await drive(driver, policy, fn)
    return scope


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("where", "at", "calls", "refunded"),
    [
        # (seconds of margin on each side: uvloop runs on accelerated real time,
        # where 1 s is 50 ms and a loaded machine may stall for tens of ms)
        ("the first attempt", 2, 1, True),  # nothing withdrawn yet
        ("the wait", 8, 1, True),  # attempt 0-4, wait 4-12
        ("a later attempt", 14, 2, False),  # the retry happened: its withdrawal stays
    ],
)
async def test_cancelled_during(
    clock: Clock,
    events: list[PolicyEvent],
    driver: str,
    where: str,
    at: float,
    calls: int,
    refunded: bool,
) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=100)  # reserve: 10
    fn = Timed(4.0)
    policy = retry(on=BaseException, budget=budget, backoff=Backoff(initial=8, jitter=None))
    scope = await cancel_at(at, driver, policy, fn)
    assert scope.cancelled_caught  # the cancellation propagated to its scope
    assert clock.now() == clock.approx(at)
    await anyio.sleep(10)
    assert len(fn.calls) == calls  # never retried
    assert gave_up(events) == []  # never a give-up, never a failure
    assert budget.balance == pytest.approx(11 if refunded else 10)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_cancelled_during_a_hook(
    clock: Clock, events: list[PolicyEvent], driver: str
) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=100)
    fn = Timed(0.0)
    policy = retry(on=Transient, budget=budget, hooks=slow_hook(5))
    scope = await cancel_at(1, driver, policy, fn)
    assert scope.cancelled_caught
    assert clock.now() == clock.approx(1)
    assert len(fn.calls) == 1
    assert gave_up(events) == []
    assert budget.balance == pytest.approx(11)  # the withdrawal for the retry came back
