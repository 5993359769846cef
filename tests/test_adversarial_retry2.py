"""An adversarial pass over ``retry_stats()``, the ``before=`` hooks and
``random_wait``: what the existing tests (test_retry_stats.py,
test_adversarial_retry.py) do not already pin down. Virtual time, exact
durations (EXACT waits 1, 2, 4, 8 s)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import anyway
from anyway import PolicyEvent, RetryAttemptStarted, RetryStats, retry, retry_stats
from anyway.testing import Clock
from retry_support import EXACT, Flaky, Transient

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

DRIVERS = pytest.mark.parametrize("driver", ["decorator", "call", "retrying"])


def runner(driver: str, policy: anyway.Retry, flaky: Flaky) -> Callable[[], Awaitable[object]]:
    """One call of *flaky* retried by *policy*, through *driver*."""
    if driver == "decorator":
        return policy(flaky.__call__)
    if driver == "call":
        return lambda: policy.call(flaky)

    async def block() -> object:
        async for attempt in policy.retrying():
            with attempt:
                return await flaky()
        raise AssertionError("unreachable")  # pragma: no cover

    return block


# --- before= hooks ---------------------------------------------------------------------------


@DRIVERS
@pytest.mark.parametrize("answer", [1, "logged", True], ids=["int", "str", "bool"])
async def test_a_sync_before_hook_returning_a_value_is_a_hook_like_any_other(
    driver: str, answer: object
) -> None:
    """hooks= ignores what a sync hook returns (a logger call, dict.setdefault...);
    before= awaited any non-None answer: `await 1` failed the call."""
    seen: list[int] = []

    def hook(event: PolicyEvent) -> object:
        assert isinstance(event, RetryAttemptStarted)
        seen.append(event.attempt)
        return answer

    flaky = Flaky(Transient())
    policy = retry(on=Transient, backoff=EXACT, before=hook)
    assert await runner(driver, policy, flaky)() == "ok"
    assert seen == [1, 2]


@DRIVERS
async def test_a_sync_before_hook_returning_an_awaitable_is_awaited(driver: str) -> None:
    """As for hooks=: a sync function returning a coroutine is an async hook."""
    seen: list[int] = []

    async def record(event: RetryAttemptStarted) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(event.attempt)

    def hook(event: PolicyEvent) -> Awaitable[None]:
        assert isinstance(event, RetryAttemptStarted)
        return record(event)

    flaky = Flaky(Transient())
    assert await runner(driver, retry(on=Transient, backoff=EXACT, before=hook), flaky)() == "ok"
    assert seen == [1, 2]


@DRIVERS
@pytest.mark.parametrize("failing", [1, 2])
async def test_a_hook_with_the_wrong_signature_propagates_unretried(
    clock: Clock, driver: str, failing: int
) -> None:
    """Even with on=Exception: the hook's TypeError is not the attempt's error."""
    calls = 0

    def hook(event: PolicyEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == failing:
            (lambda: None)(event)  # type: ignore[call-arg]

    flaky = Flaky(Transient(), Transient())
    policy = retry(on=Exception, backoff=EXACT, before=hook)
    with retry_stats() as stats, pytest.raises(TypeError, match="positional argument") as info:
        await runner(driver, policy, flaky)()
    assert len(flaky.calls) == failing - 1  # the announced attempt never ran
    # a call counts once its first attempt starts: never more retries than made
    assert (stats.calls, stats.attempts, stats.retries) == (failing - 1, failing - 1, 0)
    if failing == 2:  # the error being retried stays reachable
        assert info.value.__context__ is flaky.raised[0]


@DRIVERS
async def test_stats_read_in_a_before_hook_count_the_attempts_before_it(
    clock: Clock, driver: str
) -> None:
    """The same rule for the first attempt and the later ones: the announced
    attempt (and, for the first, its call) has not started yet; the first
    attempt used to count before its hooks ran, the later ones after."""
    seen: list[tuple[int, int, int, float]] = []

    def hook(event: PolicyEvent) -> None:
        assert isinstance(event, RetryAttemptStarted)
        seen.append((event.attempt, stats.calls, stats.attempts, stats.waited))

    flaky = Flaky(Transient(), Transient())
    with retry_stats() as stats:
        await runner(driver, retry(on=Transient, backoff=EXACT, before=hook), flaky)()
    assert seen == [(1, 0, 0, 0.0), (2, 1, 1, 1.0), (3, 1, 2, 3.0)]
    assert (stats.calls, stats.attempts, stats.retries, stats.waited) == (1, 3, 2, 3.0)


@DRIVERS
async def test_a_before_hook_cut_by_the_retry_timeout_gives_up_with_the_real_error(
    clock: Clock, driver: str
) -> None:
    async def hook(event: PolicyEvent) -> None:
        assert isinstance(event, RetryAttemptStarted)
        if event.attempt == 2:
            await anyio.sleep(10)

    flaky = Flaky(Transient(), Transient())
    policy = retry(on=Transient, backoff=EXACT, timeout=3, before=hook)
    t0 = clock.now()
    with retry_stats() as stats, pytest.raises(Transient) as info:
        await runner(driver, policy, flaky)()
    assert clock.now() - t0 == clock.approx(3)
    assert info.value is flaky.raised[0]
    assert "gave up after 1 attempt in" in info.value.__notes__[0]
    assert (stats.attempts, stats.waited) == (1, 1.0)
    assert stats.elapsed == clock.approx(3)


# --- retry_stats -----------------------------------------------------------------------------


async def test_a_task_outliving_the_block_no_longer_counts_into_it(clock: Clock) -> None:
    """A task started in the block by an outer task group copies the block's
    context: what it does after the block ended must not change the numbers the
    block reported (elapsed is frozen; so are the counters)."""
    policy = retry(on=Transient, backoff=EXACT)
    async with anyio.create_task_group() as tg:
        with retry_stats() as stats:
            tg.start_soon(lambda: anyio.sleep(0.5))  # keeps the group open
            tg.start_soon(policy.call, Flaky(Transient()))  # runs after the block ends
        frozen = (stats.calls, stats.attempts, stats.waited, stats.elapsed)
    assert frozen[:3] == (0, 0, 0.0)
    assert (stats.calls, stats.attempts, stats.waited, stats.elapsed) == frozen


async def test_a_retrying_block_cancelled_mid_wait(clock: Clock) -> None:
    results: list[RetryStats] = []

    async def loop() -> None:
        with retry_stats() as stats:
            try:
                async for attempt in retry(on=Transient, backoff=EXACT).retrying():
                    with attempt:
                        await anyio.sleep(0.25)
                        raise Transient()
            finally:
                results.append(stats)

    async with anyio.create_task_group() as tg:  # (a deadline would not start the wait)
        tg.start_soon(loop)  # attempt 0-0.25, wait to 1.25, attempt to 1.5, wait...
        await anyio.sleep(2)
        tg.cancel_scope.cancel()
    [stats] = results
    assert (stats.calls, stats.attempts) == (1, 2)
    assert stats.waited == clock.approx(1.5)  # 1 s, then the 0.5 s of the cut wait
    assert stats.elapsed == clock.approx(2)


async def test_a_block_left_by_an_error_is_frozen_and_nested_blocks_sum_up(clock: Clock) -> None:
    policy = retry(on=Transient, backoff=EXACT, attempts=2)
    with retry_stats() as outer:
        with pytest.raises(Transient), retry_stats() as inner:
            await policy.call(Flaky(Transient(), Transient()))
        await anyio.sleep(5)
        await policy.call(Flaky(Transient()))
    assert (inner.calls, inner.attempts, inner.waited, inner.elapsed) == (
        1,
        2,
        1.0,
        clock.approx(1),
    )
    # the inner block's call is not the outer one's
    assert (outer.calls, outer.attempts, outer.waited) == (1, 2, 1.0)
    assert outer.elapsed == clock.approx(7)


# --- random_wait -----------------------------------------------------------------------------


async def test_a_delay_from_on_wins_over_random_wait_and_the_timeout_still_applies(
    clock: Clock,
) -> None:
    draws: list[float] = []
    source = random.Random(7)

    class Spy(random.Random):
        def uniform(self, a: float, b: float) -> float:
            value = source.uniform(a, b)
            draws.append(value)
            return value

    def on(exc: BaseException) -> bool | float:
        return 0.25 if "hint" in str(exc) else isinstance(exc, Transient)

    # seed 7 draws 1.32, 1.15, 1.65, 1.07: attempts at 0.25, 1.57, 2.72, 4.38, and the
    # next wait would end at 5.45 (the timeout leaves room for uvloop's jitter)
    flaky = Flaky(Transient("hint"), *[Transient() for _ in range(8)])
    policy = retry(on=on, wait=anyway.random_wait(1, 2, random=Spy()), timeout=4.95)
    with retry_stats() as stats, pytest.raises(Transient) as info:
        await policy.call(flaky)
    assert len(flaky.calls) == 5
    gaps = [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)]
    assert gaps[0] == clock.approx(0.25)  # on='s delay; nothing drawn for it
    assert gaps[1:] == [clock.approx(d) for d in draws[: len(gaps) - 1]]
    assert stats.waited == pytest.approx(0.25 + sum(draws[: len(gaps) - 1]))
    assert "would cross the retry timeout" in info.value.__notes__[0]


def test_random_wait_is_reproducible_with_a_seeded_random() -> None:
    first = anyway.random_wait(0.5, 2.0, random=random.Random(11))
    second = anyway.random_wait(0.5, 2.0, random=random.Random(11))
    assert [first(n, None) for n in range(1, 6)] == [second(n, None) for n in range(1, 6)]
    assert anyway.random_wait(1.5, 1.5)(3, None) == 1.5


@pytest.mark.parametrize(
    ("bounds", "error", "match"),
    [
        ((float("nan"), 1), ValueError, r"min must be a number, got NaN"),
        ((0, float("nan")), ValueError, r"max must be a number, got NaN"),
        ((0, float("inf")), ValueError, r"max must be finite"),
        ((True, 2), TypeError, r"min must be a number, got True \(bool\)"),
        ((0, "2"), TypeError, r"max must be a number, got '2' \(str\)"),
        ((0.5, -1), ValueError, r"max must be >= 0"),
    ],
)
def test_random_wait_refuses_bad_bounds(bounds: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        anyway.random_wait(*bounds)


class _Returns(random.Random):
    def __init__(self, value: object) -> None:
        super().__init__(0)
        self.value = value

    def uniform(self, a: float, b: float) -> Any:
        return self.value


@pytest.mark.parametrize("value", [100.0, 0.1, True], ids=["above", "below", "bool"])
async def test_random_wait_refuses_a_draw_outside_its_bounds(clock: Clock, value: object) -> None:
    """A user's uniform() that ignores its arguments would wait 100 s for a
    random_wait(0.5, 2.0); the check said "between its arguments" but only
    refused NaN, negative and infinite values (and named Backoff)."""
    error = Transient("the real error")
    wait = anyway.random_wait(0.5, 2.0, random=_Returns(value))
    t0 = clock.now()
    with pytest.raises(
        ValueError, match=r"random=.* returned .* from uniform\(0\.5, 2\.0\)"
    ) as info:
        await retry(on=Transient, wait=wait).call(Flaky(error))
    assert "Backoff" not in str(info.value)
    assert info.value.__context__ is error
    assert clock.now() - t0 == clock.approx(0)  # nothing waited
