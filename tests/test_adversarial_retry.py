"""Adversarial probes of anyway.retry / retrying(): hooks and predicates that
misbehave, BaseExceptions from user code, a give-up hook cut by the timeout,
nesting, reuse across event loops."""

from __future__ import annotations

import gc
import warnings

import anyio
import pytest

import anyway
from anyway import Backoff, PolicyEvent, RetryBudget, RetryGaveUp, retry, retrying
from anyway.testing import Clock, backends
from retry_support import EXACT, Flaky, Transient, offsets

#: asyncio, and trio where installed (the suite also runs without Trio)
LOOPS = [name for name, _ in backends(uvloop=False)]

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


class Stop(BaseException):
    """A KeyboardInterrupt-like BaseException raised by user code."""


@pytest.fixture(params=["retry", "retrying"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def run(driver: str, fn: Flaky, **options: object) -> object:
    if driver == "retry":
        return await retry(**options)(fn)()  # type: ignore[arg-type]
    async for attempt in retrying(**options):  # type: ignore[arg-type]
        async with attempt:
            attempt.set_result(await fn())
    return attempt.result


async def test_a_slow_give_up_hook_cut_by_the_timeout_gives_up_once(
    clock: Clock, driver: str
) -> None:
    gave_up: list[RetryGaveUp] = []

    async def slow_hook(event: PolicyEvent) -> None:
        if isinstance(event, RetryGaveUp):
            gave_up.append(event)
            await anyio.sleep(5)

    fn = Flaky(Transient(), Transient(), Transient())
    start = clock.now()
    with pytest.raises(Transient) as info:
        await run(driver, fn, on=Transient, attempts=2, timeout=2, backoff=EXACT, hooks=slow_hook)
    notes = info.value.__notes__
    assert [n for n in notes if n.startswith("gave up")] == [notes[0]], notes
    assert len(gave_up) == 1
    assert clock.now() - start == clock.approx(2)


async def _async_true(exc: BaseException) -> bool:
    return True


@pytest.mark.parametrize("option", ["on", "retry_if_result", "wait"])
async def test_a_sync_function_returning_a_coroutine_is_a_clear_type_error(
    driver: str, option: str
) -> None:
    # lambda exc: async_check(exc) looks async but is not: the coroutine it
    # returns must be closed (no "never awaited" warning) and the fix named.
    options: dict[str, object] = {"on": Transient, "attempts": 3}
    if option == "on":
        options["on"] = lambda exc: _async_true(exc)
        fn = Flaky(Transient())
    elif option == "retry_if_result":
        options["retry_if_result"] = lambda result: _async_true(result)
        fn = Flaky(result="bad")
    else:
        options["wait"] = lambda attempt, exc: _async_true(exc)
        fn = Flaky(Transient())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="async def") as info:
            await run(driver, fn, **options)
        del info
        gc.collect()
    assert len(fn.calls) == 1


async def test_a_hook_error_keeps_the_retried_error_and_refunds_the_budget(driver: str) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, window=10.0)
    before = budget.balance

    def broken_hook(event: PolicyEvent) -> None:
        raise ValueError("hook bug")

    fn = Flaky(Transient("first"))
    with pytest.raises(ValueError, match="hook bug") as info:
        await run(driver, fn, on=Transient, backoff=EXACT, hooks=broken_hook, budget=budget)
    assert isinstance(info.value.__context__, Transient)
    assert budget.balance == before  # the retry that did not happen was refunded
    assert len(fn.calls) == 1


async def test_a_base_exception_from_a_hook_propagates_and_refunds(driver: str) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, window=10.0)
    before = budget.balance

    def fatal_hook(event: PolicyEvent) -> None:
        raise Stop()

    fn = Flaky(Transient())
    with pytest.raises(Stop):
        await run(driver, fn, on=Transient, backoff=EXACT, hooks=fatal_hook, budget=budget)
    assert budget.balance == before
    assert len(fn.calls) == 1


@pytest.mark.parametrize("on", [Exception, Transient, (OSError, Transient)])
async def test_a_base_exception_from_the_function_is_not_retried(driver: str, on: object) -> None:
    fn = Flaky(Stop())
    with pytest.raises(Stop) as info:
        await run(driver, fn, on=on, backoff=EXACT)
    assert len(fn.calls) == 1
    assert getattr(info.value, "__notes__", []) == []


async def test_an_exception_group_is_not_looked_into(driver: str) -> None:
    group = ExceptionGroup("several", [Transient()])
    fn = Flaky(group)
    with pytest.raises(ExceptionGroup) as info:
        await run(driver, fn, on=Transient, backoff=EXACT)
    assert info.value is group
    assert len(fn.calls) == 1


async def test_cancelled_in_an_async_predicate_propagates_unannotated(driver: str) -> None:
    error = Transient()

    async def slow_predicate(exc: BaseException) -> bool:
        await anyio.sleep(10)
        return True

    fn = Flaky(error)
    with anyio.move_on_after(1) as scope:
        await run(driver, fn, on=slow_predicate, backoff=EXACT)
    assert scope.cancelled_caught
    assert getattr(error, "__notes__", []) == []


async def test_nested_retries_respect_the_outer_timeout_and_deadline(clock: Clock) -> None:
    inner_calls = Flaky(*[Transient(n) for n in range(100)])
    inner = retry(on=Transient, attempts=None, timeout=None, backoff=EXACT)(inner_calls)
    outer = retry(on=Transient, attempts=3, timeout=5, backoff=EXACT)(inner)
    start = clock.now()
    with anyway.deadline(20), pytest.raises(Transient) as info:
        await outer()
    # inner: fails at 0, 1, 3, 7, 15, then a wait of 8 would cross the
    # deadline: gives up at 15. outer waits 1; inner fails at 16, 17, 19,
    # then a wait of 4 would cross the outer timeout (15 + 5); so does the
    # outer's next wait of 2: the last error is raised at 19.
    assert offsets(inner_calls.calls) == [clock.approx(t) for t in (0, 1, 3, 7, 15, 16, 17, 19)]
    assert clock.now() - start == clock.approx(19)
    assert info.value is inner_calls.raised[-1]
    gave_up = [note for note in info.value.__notes__ if note.startswith("gave up")]
    assert len(gave_up) == 2
    assert "would cross the caller's deadline" in gave_up[0]
    assert "would cross the retry timeout" in gave_up[1]


RETRY_AT_IMPORT = retry(on=Transient, attempts=3, backoff=Backoff(initial=1, max=1, jitter=None))
BUDGET_AT_IMPORT = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)


@pytest.mark.parametrize("second", LOOPS)
@pytest.mark.parametrize("first", LOOPS)
def test_a_policy_made_at_import_works_in_successive_runs(first: str, second: str) -> None:
    async def main() -> tuple[object, float]:
        fn = Flaky(Transient(), Transient())
        start = anyio.current_time()
        result = await RETRY_AT_IMPORT(fn)()
        return result, anyio.current_time() - start

    for backend in (first, second):
        result, took = anyio.run(main, backend=backend, backend_options=_virtual(backend))
        assert result == "ok"
        assert took == pytest.approx(2)


def _virtual(backend: str) -> dict[str, object]:
    from anyway.testing import virtual_time_options

    return virtual_time_options(backend)


class _BrokenRandom:
    def __init__(self, value: object) -> None:
        self.value = value

    def uniform(self, low: float, high: float) -> object:
        return self.value


@pytest.mark.parametrize("value", [float("nan"), -1.0, float("inf"), "0.5"])
async def test_a_broken_random_is_a_clear_error_that_keeps_the_retried_error(
    driver: str, value: object
) -> None:
    # Was: anyio.sleep's "delay must be a non-negative number", with the
    # error being retried lost (NaN, -1), or a give-up note "waiting inf s".
    error = Transient("the real error")
    backoff = Backoff(random=_BrokenRandom(value))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uniform") as info:
        await run(driver, Flaky(error), on=Transient, backoff=backoff)
    assert info.value.__context__ is error


@pytest.mark.parametrize("window", [1e-310, 1e-4, 0.0, -1.0])
def test_a_budget_window_under_a_millisecond_is_refused(window: float) -> None:
    # A subnormal window made every call of the policy raise OverflowError.
    with pytest.raises(ValueError, match=r"window must be >= 0\.001"):
        RetryBudget(window=window)


async def test_a_slow_async_predicate_after_a_later_attempt_is_cut_by_the_timeout(
    clock: Clock, driver: str
) -> None:
    # The timeout bounds everything after the first failure, the judging of
    # later attempts included (retrying() judged them outside its scope).
    judged: list[float] = []

    async def slow_predicate(exc: BaseException) -> bool:
        judged.append(clock.now())
        if len(judged) > 1:
            await anyio.sleep(10)
        return True

    errors = [Transient(n) for n in range(5)]
    fn = Flaky(*errors)
    start = clock.now()
    with pytest.raises(Transient) as info:
        await run(driver, fn, on=slow_predicate, attempts=5, timeout=3, backoff=EXACT)
    assert clock.now() - start == clock.approx(3)
    assert info.value is errors[1]  # the error being judged when the timeout expired
    assert "the retry timeout (timeout=3 s) expired" in info.value.__notes__[0]
