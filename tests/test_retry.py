"""anyway.retry / Retry: the policy, the decorator and Retry.call, on every
backend (virtual time, and the foreign clocks)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import math
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import anyway
from anyway import (
    Backoff,
    BulkheadFull,
    CircuitOpen,
    PolicyEvent,
    Rejected,
    Retry,
    RetryBudget,
    RetryGaveUp,
    RetryScheduled,
    retry,
    retrying,
)
from anyway.testing import Clock, no_backoff
from retry_support import (
    EXACT,
    Fatal,
    Flaky,
    Results,
    RetryAfter,
    Transient,
    honour_retry_after,
    judged_block,
    note_numbers,
    offsets,
    record_events,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = pytest.fixture(name="events")(record_events)


# --- construction and validation -------------------------------------------------


def test_on_is_required_and_keyword_only() -> None:
    with pytest.raises(TypeError, match="'on'"):
        retry()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        retry(Transient)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("on", "error", "match"),
    [
        (
            Transient("x"),
            TypeError,
            r"got the exception instance Transient\('x'\): pass the class Transient",
        ),
        (int, TypeError, r"got the class int, which is not an exception"),
        ((), ValueError, r"got on=\(\), which matches nothing"),
        ((Transient, "x"), TypeError, r"got 'x' in on=\(<class 'retry_support.Transient'>, 'x'\)"),
        ([Transient], TypeError, r"got a list \[<class 'retry_support.Transient'>\]: use a tuple"),
        (
            "Transient",
            TypeError,
            r"on must be callable, got 'Transient' \(str\)",
        ),
        (None, TypeError, r"got None \(NoneType\)"),
    ],
)
def test_bad_on(on: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        retry(on=on)  # type: ignore[arg-type]


def test_on_rejects_coroutine_objects_and_accepts_async_predicates() -> None:
    async def is_transient(exc: BaseException) -> bool:
        return True

    coroutine = is_transient(Transient())
    with pytest.raises(TypeError, match="not a coroutine object"):
        retry(on=coroutine)  # type: ignore[arg-type]
    assert retry(on=is_transient).on is is_transient  # issue 17: async predicates
    retry(on=Transient, retry_if_result=is_transient)
    with pytest.raises(TypeError, match="retry_if_result must be callable"):
        retry(on=Transient, retry_if_result=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attempts": 0}, ValueError, r"attempts must be >= 1, got 0; .*None removes the limit"),
        ({"attempts": -3}, ValueError, r"attempts must be >= 1, got -3"),
        ({"attempts": 2.5}, TypeError, r"attempts must be a whole number, got 2.5 \(float\)"),
        ({"attempts": True}, TypeError, r"attempts must be a whole number, got True \(bool\)"),
        ({"timeout": 0}, ValueError, r"timeout must be > 0, got 0; .*timeout=None to disable it"),
        ({"timeout": -1}, ValueError, r"timeout must be > 0, got -1"),
        ({"timeout": math.nan}, ValueError, r"timeout must be a number, got NaN"),
        ({"timeout": math.inf}, ValueError, r"timeout must be finite, got inf.*timeout=None"),
        ({"timeout": "5"}, TypeError, r"timeout must be a number, got '5' \(str\)"),
        ({"backoff": 0.5}, TypeError, r"backoff must be an anyway.Backoff, e.g. Backoff\("),
        ({"budget": 0.1}, TypeError, r"budget must be an anyway.RetryBudget"),
        ({"hooks": [1]}, TypeError, r"hooks must be callables"),
        ({"hooks": "log"}, TypeError, r"hooks must be callables"),
        ({"name": 3}, TypeError, r"name must be a string or None, got 3"),
    ],
)
def test_bad_options(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        retry(on=Transient, **kwargs)  # type: ignore[arg-type]


def test_unbounded_options_are_allowed() -> None:
    policy = retry(on=Transient, attempts=None, timeout=None)
    assert policy.attempts is None
    assert policy.timeout is None


def test_repr_properties_and_immutability() -> None:
    def is_transient(exc: BaseException) -> bool:
        return True

    def hook(event: PolicyEvent) -> None:
        pass

    budget = RetryBudget()
    assert repr(retry(on=Transient)) == (
        "Retry(on=Transient, attempts=10, timeout=45,"
        " backoff=Backoff(initial=0.1, max=10, multiplier=2, jitter='full'))"
    )
    policy = retry(
        on=(Transient, TimeoutError),
        attempts=None,
        timeout=None,
        backoff=EXACT,
        retry_if_result=bool,
        hooks=hook,
        budget=budget,
        name="db",
    )
    assert repr(policy) == (
        "Retry(on=(Transient, TimeoutError), attempts=None, timeout=None,"
        " backoff=Backoff(initial=1, max=8, multiplier=2, jitter=None),"
        f" retry_if_result=bool, hooks=(test_repr_properties_and_immutability.<locals>.hook,),"
        f" budget={budget!r}, name='db')"
    )
    assert repr(retry(on=(Transient,))).startswith("Retry(on=(Transient,), ")
    assert "on=test_repr_properties_and_immutability.<locals>.is_transient" in repr(
        retry(on=is_transient)
    )
    assert policy.on == (Transient, TimeoutError)
    assert policy.backoff is EXACT
    assert policy.budget is budget
    with pytest.raises(AttributeError, match="immutable"):
        policy.attempts = 3  # type: ignore[misc]
    assert not hasattr(policy, "__dict__")
    assert isinstance(retry(on=Transient), Retry)


def test_decorating_a_sync_function_is_a_type_error() -> None:
    def fetch() -> int:
        return 1

    with pytest.raises(
        TypeError,
        match=r"the function decorated by retry\(\) must be an async function \(async def\),"
        r" got .*fetch",
    ):
        retry(on=Transient)(fetch)  # type: ignore[arg-type]


def test_decorating_an_async_generator_or_a_coroutine_is_a_type_error() -> None:
    async def stream() -> AsyncIterator[int]:
        yield 1

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="cannot decorate the async generator function"):
        retry(on=Transient)(stream)  # type: ignore[arg-type]
    coroutine = fetch()
    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        retry(on=Transient)(coroutine)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an async function, got 3"):
        retry(on=Transient)(3)  # type: ignore[arg-type]


def test_signature_and_metadata_are_preserved() -> None:
    async def fetch(url: str, *, retries: int = 1) -> bytes:
        """Fetch *url*."""
        return b""

    wrapped = retry(on=Transient)(fetch)
    assert inspect.signature(wrapped) == inspect.signature(fetch)
    assert wrapped.__name__ == "fetch"
    assert wrapped.__doc__ == "Fetch *url*."
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(wrapped)


# --- the happy path and exact waits ---------------------------------------------


async def test_success_at_once_calls_once(clock: Clock) -> None:
    flaky = Flaky()

    @retry(on=Transient)
    async def fetch(x: int, *, y: int) -> object:
        return await flaky(x, y=y)

    t0 = clock.now()
    assert await fetch(1, y=2) == "ok"
    assert len(flaky.calls) == 1
    assert clock.now() - t0 == clock.approx(0)


async def test_exact_waits_without_jitter(clock: Clock) -> None:
    flaky = Flaky(Transient(1), Transient(2), Transient(3))
    policy = retry(on=Transient, backoff=EXACT)
    assert await policy.call(flaky) == "ok"
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1, 3, 7)]


async def test_waits_stay_at_the_cap(clock: Clock) -> None:
    flaky = Flaky(*[Transient() for _ in range(4)])
    backoff = Backoff(initial=0.5, max=1, jitter=None)
    assert await retry(on=Transient, backoff=backoff).call(flaky) == "ok"
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 0.5, 1.5, 2.5, 3.5)]


async def test_call_passes_arguments_and_methods_work() -> None:
    class Client:
        def __init__(self) -> None:
            self.flaky = Flaky(Transient())

        @retry(on=Transient, backoff=Backoff(initial=0, max=0))
        async def get(self, key: str, *, default: int = 0) -> tuple[str, int, object]:
            return key, default, await self.flaky()

    assert await Client().get("k", default=3) == ("k", 3, "ok")

    async def add(a: int, b: int) -> int:
        return a + b

    assert await retry(on=Transient).call(add, 1, b=2) == 3


async def test_callable_objects_and_partials_can_be_decorated() -> None:
    flaky = Flaky(Transient())
    wrapped = retry(on=Transient, backoff=Backoff(initial=0, max=0))(flaky)
    assert await wrapped() == "ok"

    async def add(a: int, b: int) -> int:
        return a + b

    assert await retry(on=Transient)(functools.partial(add, 1))(2) == 3


# --- giving up: the original error, notes, earlier errors -----------------------


async def test_give_up_reraises_the_last_error_with_notes(clock: Clock) -> None:
    flaky = Flaky(Transient("boom 1"), Transient("boom 2"), Transient("boom 3"))
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await retry(on=Transient, attempts=3, backoff=EXACT).call(flaky)
    assert clock.now() - t0 == clock.approx(3)
    error = info.value
    assert error is flaky.raised[-1]  # the original object, not a wrapper
    gave_up, earlier = error.__notes__
    (elapsed,) = note_numbers(
        gave_up, "gave up after 3 attempts in {} s: no attempts left (attempts=3)"
    )
    assert elapsed == clock.approx(3)
    assert earlier == "earlier attempts: #1 Transient('boom 1'); #2 Transient('boom 2')"
    assert error.__context__ is flaky.raised[1]  # the previous error object is reachable


async def test_one_attempt_gives_up_at_once(clock: Clock) -> None:
    flaky = Flaky(Transient("x"))
    with pytest.raises(Transient) as info:
        await retry(on=Transient, attempts=1).call(flaky)
    [note] = info.value.__notes__
    [elapsed] = note_numbers(note, "gave up after 1 attempt in {} s: no attempts left (attempts=1)")
    assert elapsed == clock.approx(0)
    assert info.value.__context__ is None


async def test_earlier_errors_are_listed_up_to_ten() -> None:
    flaky = Flaky(*[Fatal(i) for i in range(13)])
    with pytest.raises(Fatal) as info, no_backoff():
        await retry(on=Fatal, attempts=13).call(flaky)
    earlier = info.value.__notes__[1]
    assert earlier.startswith("earlier attempts (the last 10 of 12): #3 Fatal(2); #4 ")
    assert earlier.endswith("#12 Fatal(11)")


async def test_a_context_of_its_own_is_kept() -> None:
    async def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            raise Transient("outer") from None

    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=2).call(fail)
    assert isinstance(info.value.__context__, KeyError)


async def test_the_same_error_object_twice_makes_no_cycle() -> None:
    error = Transient("cached")

    async def fail() -> None:
        raise error

    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=3).call(fail)
    assert info.value is error
    assert error.__context__ is None
    assert len(error.__notes__) == 2


async def test_a_context_cycle_is_not_created() -> None:
    first = Transient("first")
    second = Transient("second")
    first.__context__ = second  # second will be the final error
    flaky = Flaky(first, second)
    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=2).call(flaky)
    assert info.value is second
    assert second.__context__ is None


class BadArg:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


async def test_a_broken_repr_does_not_hide_the_error() -> None:
    flaky = Flaky(Transient(BadArg()), Transient("last"))
    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=2).call(flaky)
    assert "#1 Transient(<BadArg (repr failed: RuntimeError)>)" in info.value.__notes__[1]


async def test_a_non_retryable_error_first_is_untouched() -> None:
    flaky = Flaky(Fatal("bad"))
    with pytest.raises(Fatal) as info:
        await retry(on=Transient).call(flaky)
    assert len(flaky.calls) == 1
    assert not hasattr(info.value, "__notes__")


async def test_a_non_retryable_error_after_retries_keeps_the_earlier_ones(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    flaky = Flaky(Transient("transient"), Fatal("bad request"))
    with pytest.raises(Fatal) as info:
        await retry(on=Transient, backoff=EXACT).call(flaky)
    stopped, earlier = info.value.__notes__
    (elapsed,) = note_numbers(
        stopped, "gave up after 2 attempts in {} s: Fatal is not retried (on=Transient)"
    )
    assert elapsed == clock.approx(1)
    assert earlier == "earlier attempts: #1 Transient('transient')"
    assert info.value.__context__ is flaky.raised[0]
    assert [type(e) for e in events] == [RetryScheduled]  # no give-up event: not a limit


# --- cancellation is never retried --------------------------------------------------


def is_anything(exc: BaseException) -> bool:
    return True


@pytest.mark.parametrize("on", [BaseException, is_anything], ids=["BaseException", "predicate"])
async def test_cancellation_during_an_attempt_propagates_at_once(clock: Clock, on: Any) -> None:
    flaky = Flaky(duration=10)
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        await retry(on=on, backoff=EXACT).call(flaky)
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(1)
    assert len(flaky.calls) == 1


@pytest.mark.parametrize("on", [BaseException, is_anything], ids=["BaseException", "predicate"])
async def test_cancellation_during_a_wait_propagates_at_once(clock: Clock, on: Any) -> None:
    flaky = Flaky(Transient())
    policy = retry(on=on, backoff=Backoff(initial=5, max=5, jitter=None))
    t0 = clock.now()
    caught: list[BaseException] = []

    async def call() -> None:
        try:
            await policy.call(flaky)
        except BaseException as exc:
            caught.append(exc)
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await anyio.sleep(2)
        tg.cancel_scope.cancel()
    assert clock.now() - t0 == clock.approx(2)
    assert len(flaky.calls) == 1
    (cancel,) = caught
    assert isinstance(cancel, anyio.get_cancelled_exc_class())
    assert not getattr(cancel, "__notes__", None)  # propagated untouched


async def test_a_predicate_never_sees_cancellation() -> None:
    seen: list[BaseException] = []

    def on(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    with anyio.move_on_after(1):
        await retry(on=on).call(Flaky(duration=5))
    assert seen == []


@pytest.mark.parametrize(
    "error",
    [
        KeyboardInterrupt(),
        SystemExit(1),
        GeneratorExit(),
        BaseExceptionGroup("group", [KeyboardInterrupt()]),
    ],
    ids=["KeyboardInterrupt", "SystemExit", "GeneratorExit", "group"],
)
async def test_interrupts_are_never_retried(error: BaseException) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)) as info:
        await retry(on=BaseException).call(flaky)
    assert info.value is error
    assert len(flaky.calls) == 1
    assert not hasattr(error, "__notes__")


async def test_other_base_exceptions_are_retried_when_asked() -> None:
    class Stop(BaseException):
        pass

    flaky = Flaky(Stop(), BaseExceptionGroup("g", [Stop()]))
    with no_backoff():
        assert await retry(on=BaseException).call(flaky) == "ok"
    assert len(flaky.calls) == 3


async def test_interrupt_after_retries_is_untouched() -> None:
    flaky = Flaky(Transient(), KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as info, no_backoff():
        await retry(on=Transient).call(flaky)
    assert not hasattr(info.value, "__notes__")


async def test_exception_groups_are_not_unwrapped() -> None:
    flaky = Flaky(ExceptionGroup("g", [Transient()]))
    with pytest.raises(ExceptionGroup):
        await retry(on=Transient).call(flaky)
    assert len(flaky.calls) == 1


# --- deadline awareness and the timeout -------------------------------------------


async def test_a_wait_that_would_cross_the_callers_deadline_is_not_started(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    flaky = Flaky(*[Transient(i) for i in range(5)])
    t0 = clock.now()
    with pytest.raises(Transient) as info, anyio.fail_after(2.5):
        await retry(on=Transient, backoff=EXACT).call(flaky)
    # waits 1 (ends at 1 < 2.5), then 2 would end at 3 > 2.5: give up at once at 1
    assert clock.now() - t0 == clock.approx(1)
    assert not isinstance(info.value, TimeoutError)  # the real error, not the timeout
    assert info.value is flaky.raised[-1]
    elapsed, left = note_numbers(
        info.value.__notes__[0],
        "gave up after 2 attempts in {} s: waiting 2 s would cross the caller's deadline in {} s",
    )
    # (late wake-ups move time from left to elapsed: their sum is the deadline's position)
    assert (elapsed, elapsed + left) == (clock.approx(1), clock.approx(2.5))
    (gave_up,) = [e for e in events if isinstance(e, RetryGaveUp)]
    assert gave_up.reason.startswith("waiting 2 s would cross the caller's deadline")


async def test_move_on_after_does_not_swallow_the_real_error(clock: Clock) -> None:
    flaky = Flaky(Transient(), Transient())
    with pytest.raises(Transient), anyio.move_on_after(1.5):
        await retry(on=Transient, backoff=Backoff(initial=3, max=3, jitter=None)).call(flaky)
    assert len(flaky.calls) == 1


async def test_anyway_deadline_is_respected(clock: Clock) -> None:
    flaky = Flaky(*[Transient() for _ in range(5)])
    with pytest.raises(Transient) as info, anyway.deadline(4):
        await retry(on=Transient, backoff=EXACT).call(flaky)
    # attempts at 0, 1, 3; then waiting 4 would end at 7 > 4
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1, 3)]
    assert "would cross the caller's deadline" in info.value.__notes__[0]


async def test_a_wait_that_would_cross_the_timeout_is_not_started(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    flaky = Flaky(*[Transient(i) for i in range(5)])
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await retry(on=Transient, backoff=EXACT, timeout=2.5).call(flaky)
    assert clock.now() - t0 == clock.approx(1)
    elapsed, left = note_numbers(
        info.value.__notes__[0],
        "gave up after 2 attempts in {} s: waiting 2 s would cross the retry timeout"
        " (timeout=2.5 s, {} s left)",
    )
    # (late wake-ups move time from left to elapsed: their sum is the deadline's position)
    assert (elapsed, elapsed + left) == (clock.approx(1), clock.approx(2.5))


async def test_total_time_never_overshoots_the_timeout(clock: Clock) -> None:
    backoff = Backoff(initial=0.5, max=2, jitter="full", random=random.Random(2024))
    flaky = Flaky(*[Transient() for _ in range(1000)])
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await retry(on=Transient, attempts=None, timeout=4, backoff=backoff).call(flaky)
    elapsed = clock.now() - t0
    # (on real time a timer may fire a little late: late_tolerance; 1 ns on virtual time)
    assert elapsed < 4 + clock.late_tolerance
    assert len(flaky.calls) > 3
    assert "would cross the retry timeout (timeout=4 s" in info.value.__notes__[0]


async def test_the_timeout_counts_from_the_first_failure(clock: Clock) -> None:
    """Attempts of 1 s, no wait, timeout 2.5: the first fails at 1 (the
    timeout starts), then 2 and 3; the fourth is cut at 3.5, and the third
    attempt's error is raised."""
    flaky = Flaky(*[Transient(i) for i in range(10)], duration=1)
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await retry(on=Transient, timeout=2.5, backoff=Backoff(initial=0, max=0)).call(flaky)
    assert clock.now() - t0 == clock.approx(3.5)
    assert len(flaky.calls) == 4
    assert info.value is flaky.raised[2]
    [elapsed] = note_numbers(
        info.value.__notes__[0],
        "gave up after 4 attempts in {} s: the retry timeout (timeout=2.5 s) expired:"
        " attempt 4 was cut",
    )
    assert elapsed == clock.approx(2.5)


async def test_an_earlier_deadline_than_timeout_wins(clock: Clock) -> None:
    flaky = Flaky(*[Transient() for _ in range(5)])
    with pytest.raises(Transient) as info, anyio.fail_after(1.5):
        await retry(on=Transient, backoff=EXACT, timeout=30).call(flaky)
    assert "caller's deadline" in info.value.__notes__[0]


# --- on: predicates and delays -------------------------------------------------------


async def test_a_float_from_the_predicate_is_the_delay(clock: Clock) -> None:
    flaky = Flaky(RetryAfter(1.5), RetryAfter(None), RetryAfter(4), Fatal())
    backoff = Backoff(initial=1, max=2, jitter=None)
    with pytest.raises(Fatal):
        await retry(on=honour_retry_after, backoff=backoff).call(flaky)
    # 1.5 from the error, then the backoff's first wait (1), then 4 (above backoff.max)
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1.5, 2.5, 6.5)]


async def test_a_predicate_delay_that_crosses_the_deadline_gives_up(clock: Clock) -> None:
    flaky = Flaky(RetryAfter(30))
    with pytest.raises(RetryAfter) as info, anyio.fail_after(10):
        await retry(on=honour_retry_after).call(flaky)
    (elapsed, left) = note_numbers(
        info.value.__notes__[0],
        "gave up after 1 attempt in {} s: waiting 30 s would cross the caller's deadline in {} s",
    )
    assert (elapsed, elapsed + left) == (clock.approx(0), clock.approx(10))


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (-1.0, ValueError, r"returned -1.0 as a delay; a delay must be a finite number"),
        (math.nan, ValueError, r"returned nan as a delay"),
        (math.inf, ValueError, r"returned inf as a delay"),
        (None, TypeError, r"returned None \(NoneType\); it must return True"),
        ("soon", TypeError, r"returned 'soon' \(str\)"),
        (dt.timedelta(seconds=1), TypeError, r"\(timedelta\).*\(use .total_seconds\(\)\)"),
    ],
)
async def test_a_bad_predicate_answer_is_an_error(answer: object, error: type, match: str) -> None:
    original = Transient("original")

    def on(exc: BaseException) -> Any:
        return answer

    with pytest.raises(error, match=match) as info:
        await retry(on=on).call(Flaky(original))
    assert info.value.__context__ is original  # the real error stays reachable


async def test_a_predicate_that_raises_keeps_the_original_reachable() -> None:
    original = Transient("original")

    def on(exc: BaseException) -> bool:
        raise LookupError("predicate bug")

    with pytest.raises(LookupError) as info:
        await retry(on=on).call(Flaky(original))
    assert info.value.__context__ is original


async def test_an_int_delay_is_accepted(clock: Clock) -> None:
    flaky = Flaky(Transient())
    t0 = clock.now()
    await retry(on=lambda exc: 2).call(flaky)
    assert clock.now() - t0 == clock.approx(2)


# --- retry_if_result ------------------------------------------------------------------


async def test_retry_if_result_retries_until_accepted(clock: Clock) -> None:
    results = Results(503, 503, 200)
    t0 = clock.now()
    policy = retry(on=Transient, retry_if_result=lambda r: r == 503, backoff=EXACT)
    assert await policy.call(results) == 200
    assert results.calls == 3
    assert clock.now() - t0 == clock.approx(3)


async def test_retry_if_result_returns_the_last_rejected_result(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    results = Results(503, 502, 504)

    @retry(on=Transient, attempts=3, retry_if_result=lambda r: r >= 500, backoff=EXACT)
    async def status() -> object:
        return await results()

    assert await status() == 504
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert [(e.attempt, e.result, e.error) for e in retries] == [(1, 503, None), (2, 502, None)]
    (gave_up,) = [e for e in events if isinstance(e, RetryGaveUp)]
    assert (gave_up.attempts, gave_up.result, gave_up.error) == (3, 504, None)
    assert gave_up.reason == "no attempts left (attempts=3)"


async def test_retry_if_result_delay_and_mixed_outcomes(clock: Clock) -> None:
    outcomes: list[object] = [Transient("down"), "retry-after-4", "fine"]

    async def call() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    policy = retry(
        on=Transient,
        backoff=EXACT,
        retry_if_result=lambda r: 4.0 if r == "retry-after-4" else False,
    )
    t0 = clock.now()
    assert await policy.call(call) == "fine"
    assert clock.now() - t0 == clock.approx(5)


async def test_a_rejected_result_is_listed_among_earlier_attempts() -> None:
    results: list[object] = ["busy", Transient("down")]

    async def call() -> object:
        outcome = results.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=2, retry_if_result=lambda r: r == "busy").call(call)
    assert info.value.__notes__[1] == "earlier attempts: #1 rejected result 'busy'"


async def test_a_bad_result_verdict_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"retry_if_result .* returned 'x'"):
        await retry(on=Transient, retry_if_result=lambda r: "x").call(Results(1))


# --- CircuitOpen is only retried on request -----------------------------------------------


@pytest.mark.parametrize(
    ("on", "retried"),
    [
        (Exception, False),
        ((Transient, Exception), False),
        (CircuitOpen, True),
        (Rejected, True),
        ((Transient, Rejected), True),
        (is_anything, True),
    ],
    ids=["Exception", "tuple-Exception", "CircuitOpen", "Rejected", "tuple-Rejected", "predicate"],
)
async def test_circuit_open_is_retried_only_when_named(on: Any, retried: bool) -> None:
    flaky = Flaky(CircuitOpen("open", retry_after=1.0))
    with no_backoff():
        if retried:
            assert await retry(on=on).call(flaky) == "ok"
        else:
            with pytest.raises(CircuitOpen) as info:
                await retry(on=on).call(flaky)
            assert not hasattr(info.value, "__notes__")
    assert len(flaky.calls) == (2 if retried else 1)


async def test_other_rejections_follow_on() -> None:
    flaky = Flaky(BulkheadFull("full"))
    with no_backoff():
        assert await retry(on=Exception).call(flaky) == "ok"


# --- concurrency: one policy, many calls ------------------------------------------------------


async def test_one_policy_serves_concurrent_calls_independently(clock: Clock) -> None:
    policy = retry(on=Transient, backoff=Backoff(initial=0.5, max=8, jitter=None))
    flakies = [Flaky(*[Transient() for _ in range(i % 4)], result=i) for i in range(20)]
    finished: dict[int, float] = {}
    t0 = clock.now()

    async def call(i: int) -> None:
        assert await policy.call(flakies[i]) == i
        finished[i] = clock.now() - t0

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(call, i)
    expected_end = {0: 0, 1: 0.5, 2: 1.5, 3: 3.5}
    for i in range(20):
        assert len(flakies[i].calls) == i % 4 + 1
        assert finished[i] == clock.approx(expected_end[i % 4])


async def test_concurrent_decorrelated_calls_each_start_their_own_walk(clock: Clock) -> None:
    """Each call's decorrelated walk starts at ``initial``, whatever the others did."""
    backoff = Backoff(initial=1, max=100, jitter="decorrelated", random=random.Random(1))
    policy = retry(on=Transient, backoff=backoff, attempts=2)
    waits: list[float] = []

    def hook(event: PolicyEvent) -> None:
        if isinstance(event, RetryScheduled):
            waits.append(event.delay)

    policy = retry(on=Transient, backoff=backoff, attempts=2, hooks=hook)

    async def call() -> None:
        await policy.call(Flaky(Transient()))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
    assert len(waits) == 10
    assert all(1 <= w <= 3 for w in waits)


# --- hooks and events ----------------------------------------------------------------------


async def test_sync_and_async_hooks_receive_the_events(clock: Clock) -> None:
    sync_seen: list[PolicyEvent] = []
    async_seen: list[tuple[PolicyEvent, float]] = []

    def sync_hook(event: PolicyEvent) -> None:
        sync_seen.append(event)

    async def async_hook(event: PolicyEvent) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append((event, anyio.current_time()))

    flaky = Flaky(Transient("a"), Transient("b"), Transient("c"))

    @retry(on=Transient, attempts=3, backoff=EXACT, hooks=[sync_hook, async_hook])
    async def fetch() -> object:
        return await flaky()

    t0 = clock.now()
    with pytest.raises(Transient):
        await fetch()
    assert sync_seen == [e for e, _ in async_seen]
    first, second, gave_up = sync_seen
    name = "test_sync_and_async_hooks_receive_the_events.<locals>.fetch"
    assert first == RetryScheduled(
        policy=name, attempt=1, delay=1.0, error=flaky.raised[0], function=name
    )
    assert second == RetryScheduled(
        policy=name, attempt=2, delay=2.0, error=flaky.raised[1], waited=1.0, function=name
    )
    assert isinstance(gave_up, RetryGaveUp)
    assert (gave_up.policy, gave_up.attempts, gave_up.error) == (name, 3, flaky.raised[2])
    assert (gave_up.waited, gave_up.function) == (3.0, name)
    assert gave_up.elapsed == clock.approx(3)
    assert gave_up.reason == "no attempts left (attempts=3)"
    # hooks run before each wait: the first one at the first failure
    assert [t - t0 for _, t in async_seen] == [clock.approx(x) for x in (0, 1, 3)]


async def test_a_single_hook_and_a_name() -> None:
    seen: list[PolicyEvent] = []
    policy = retry(on=Transient, hooks=seen.append, name="db", attempts=2)
    with pytest.raises(Transient), no_backoff():
        await policy.call(Flaky(Transient(), Transient()))
    assert [e.policy for e in seen] == ["db", "db"]


async def test_global_hooks_and_default_logging(
    clock: Clock, events: list[PolicyEvent], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="anyway")
    with pytest.raises(Transient), no_backoff():
        await retry(on=Transient, attempts=2, name="svc").call(
            Flaky(Transient("x"), Transient("y"))
        )
    assert [type(e) for e in events] == [RetryScheduled, RetryGaveUp]
    retried, gave_up = [r.getMessage() for r in caplog.records]
    assert retried == "svc: attempt 1 failed (Transient: x); retrying in 0 s"
    (elapsed,) = note_numbers(
        gave_up, "svc: gave up after 2 attempts in {} s: no attempts left (attempts=2)"
    )
    assert elapsed == clock.approx(0)


async def test_no_retry_event_is_built_when_nobody_listens(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="anyway")
    built: list[object] = []
    original = RetryScheduled.__init__

    def spy(self: RetryScheduled, **kwargs: Any) -> None:
        built.append(kwargs)
        original(self, **kwargs)

    monkeypatch.setattr(RetryScheduled, "__init__", spy)
    with no_backoff():
        assert await retry(on=Transient).call(Flaky(Transient())) == "ok"
    assert built == []


async def test_a_failing_hook_keeps_the_error_reachable() -> None:
    def hook(event: PolicyEvent) -> None:
        raise RuntimeError("hook bug")

    original = Transient("original")
    with pytest.raises(RuntimeError, match="hook bug") as info, no_backoff():
        await retry(on=Transient, hooks=hook).call(Flaky(original))
    assert info.value.__context__ is original


# --- odds and ends ------------------------------------------------------------------------------------


async def test_no_timeout_and_no_deadline(clock: Clock) -> None:
    flaky = Flaky(Transient(), Transient())
    assert await retry(on=Transient, timeout=None, backoff=EXACT).call(flaky) == "ok"
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1, 3)]


async def test_a_failing_hook_on_a_rejected_result() -> None:
    def hook(event: PolicyEvent) -> None:
        if isinstance(event, RetryGaveUp):
            raise RuntimeError("hook bug")

    policy = retry(on=Transient, attempts=2, retry_if_result=lambda r: True, hooks=hook)
    with pytest.raises(RuntimeError, match="hook bug") as info, no_backoff():
        await policy.call(Results(1, 2))
    assert info.value.__context__ is None


# --- audit: Retry.call refuses what cannot be awaited, and never retries it ---------------------


async def test_call_with_a_sync_function_is_a_type_error_not_a_retry(clock: Clock) -> None:
    calls: list[int] = []

    def sync(x: int) -> int:
        calls.append(x)
        return x

    t0 = clock.now()
    policy = retry(on=Exception, attempts=5, backoff=EXACT)
    with pytest.raises(
        TypeError, match=r"sync\(\.\.\.\) returned 1, which cannot be awaited"
    ) as info:
        await policy.call(sync, 1)  # type: ignore[arg-type]
    assert calls == [1]  # called once, never retried
    assert clock.now() - t0 == clock.approx(0)
    assert not hasattr(info.value, "__notes__")


async def test_call_with_a_coroutine_object_explains_the_fix() -> None:
    async def fetch() -> int:
        return 1

    coro = fetch()
    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        await retry(on=Exception, attempts=5).call(coro)  # type: ignore[arg-type]
    # (check_callable closed it: no "never awaited" warning under filterwarnings=error)


async def test_call_accepts_any_awaitable_result() -> None:
    async def fetch(x: int) -> int:
        return x

    class Awaitable:
        def __await__(self) -> Iterator[Any]:
            return fetch(7).__await__()

    def sync_returning_a_coroutine(x: int) -> Any:
        return fetch(x)

    policy = retry(on=Exception)
    assert await policy.call(sync_returning_a_coroutine, 3) == 3
    assert await policy.call(Awaitable) == 7


# --- issue 17: TryAgain, defaults kept ---------------------------------------------------------


async def test_try_again_is_retried_whatever_on_says(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    flaky = Flaky(anyway.TryAgain(), anyway.TryAgain())
    assert await retry(on=Fatal, backoff=EXACT).call(flaky) == "ok"
    assert offsets(flaky.calls) == [0, clock.approx(1), clock.approx(3)]
    assert [type(e).__name__ for e in events] == ["RetryScheduled", "RetryScheduled"]


async def test_try_again_never_goes_past_attempts_or_timeout(clock: Clock) -> None:
    flaky = Flaky(*[anyway.TryAgain(i) for i in range(10)])
    with pytest.raises(anyway.TryAgain) as info:
        await retry(on=Fatal, attempts=3, backoff=EXACT).call(flaky)
    assert len(flaky.calls) == 3
    assert info.value.__notes__[0].endswith("no attempts left (attempts=3)")
    flaky = Flaky(*[anyway.TryAgain(i) for i in range(10)])
    with pytest.raises(anyway.TryAgain) as info:
        await retry(on=Fatal, timeout=2.5, backoff=EXACT).call(flaky)
    assert len(flaky.calls) == 2  # waits 1, then 2 would cross the timeout
    assert "would cross the retry timeout" in info.value.__notes__[0]


async def test_try_again_does_not_retry_cancellation_or_a_sync_function(clock: Clock) -> None:
    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match="cannot be awaited"):
        await retry(on=BaseException).call(sync)  # type: ignore[arg-type]


def test_decorated_functions_keep_defaults() -> None:
    async def fetch(url: str, wait: float = 5.0, *, retries: int = 1) -> bytes:
        return b""

    async def plain() -> None:
        pass

    wrapped = retry(on=Transient)(fetch)
    assert wrapped.__defaults__ == (5.0,)
    assert wrapped.__kwdefaults__ == {"retries": 1}
    assert retry(on=Transient)(plain).__defaults__ is None
    assert inspect.signature(wrapped) == inspect.signature(fetch)


async def test_decorated_functions_with_defaults_still_get_the_callers_arguments() -> None:
    @retry(on=Transient)
    async def echo(a: int, b: int = 2, *, c: int = 3) -> tuple[int, int, int]:
        return a, b, c

    assert await echo(1) == (1, 2, 3)
    assert await echo(1, 5, c=4) == (1, 5, 4)


async def test_a_backoff_with_initial_above_max_waits_max(clock: Clock) -> None:
    flaky = Flaky(Transient(), Transient())
    policy = retry(on=Transient, backoff=Backoff(initial=5, max=0.5, jitter=None))
    assert await policy.call(flaky) == "ok"
    assert offsets(flaky.calls) == [0, clock.approx(0.5), clock.approx(1)]


# --- issue 17: wait=, a function (attempt, exc) -> seconds ----------------------------------------


class Slow(Exception):
    """An error that asks for a longer wait."""


def by_error(attempt: int, exc: BaseException | None) -> float:
    return 5.0 if isinstance(exc, Slow) else 0.5 * attempt


async def test_wait_gives_the_wait_from_the_attempt_and_the_error(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    flaky = Flaky(Transient(), Slow(), Transient())
    policy = retry(on=(Transient, Slow), wait=by_error)
    assert await policy.call(flaky) == "ok"
    assert offsets(flaky.calls) == [0, clock.approx(0.5), clock.approx(5.5), clock.approx(7)]
    assert [e.delay for e in events if isinstance(e, RetryScheduled)] == [0.5, 5.0, 1.5]
    assert "wait=by_error" in repr(policy)
    assert policy.wait is by_error
    assert retry(on=Transient).wait is None


async def test_wait_in_a_block_and_for_rejected_results(clock: Clock) -> None:
    seen: list[tuple[int, BaseException | None]] = []

    def wait(attempt: int, exc: BaseException | None) -> float:
        seen.append((attempt, exc))
        return 1.0

    attempts = retrying(on=Transient, wait=wait, retry_if_result=lambda r: r == 503)
    last = await judged_block(attempts, [error := Transient(), 503, 200])
    assert last.result == 200
    assert seen == [(1, error), (2, None)]
    assert clock.now() == clock.approx(2)


async def test_wait_follows_the_limits_and_on_delays(clock: Clock) -> None:
    flaky = Flaky(*[RetryAfter(2) for _ in range(3)])
    assert await retry(on=honour_retry_after, wait=lambda n, e: 100).call(flaky) == "ok"
    assert clock.now() == clock.approx(6)  # on's delays win over wait
    flaky = Flaky(Transient(), Transient())
    with pytest.raises(Transient) as info:
        await retry(on=Transient, wait=lambda n, e: 100, timeout=10).call(flaky)
    assert "waiting 100 s would cross the retry timeout" in info.value.__notes__[0]
    with no_backoff():
        assert await retry(on=Transient, wait=lambda n, e: 100).call(Flaky(Transient())) == "ok"
    assert clock.now() == clock.approx(6)


def test_wait_validation() -> None:
    async def slow(attempt: int, exc: BaseException | None) -> float:
        return 1.0

    with pytest.raises(TypeError, match=r"either backoff= .* or wait= .*not both"):
        retry(on=Transient, wait=by_error, backoff=EXACT)
    with pytest.raises(TypeError, match="wait must be a plain"):
        retry(on=Transient, wait=slow)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wait must be callable"):
        retry(on=Transient, wait=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (-1, ValueError, r"returned -1; a wait must be a finite number of seconds >= 0"),
        (math.nan, ValueError, "returned nan"),
        ("1", TypeError, r"returned '1' \(str\)"),
        (dt.timedelta(seconds=1), TypeError, r"use \.total_seconds\(\)"),
        (True, TypeError, r"returned True \(bool\)"),
    ],
)
async def test_a_bad_wait_answer_is_an_error(answer: object, error: type, match: str) -> None:
    flaky = Flaky(Transient())
    with pytest.raises(error, match=match) as info:
        await retry(on=Transient, wait=lambda n, e: answer).call(flaky)  # type: ignore[arg-type,return-value]
    assert info.value.__context__ is flaky.raised[0]  # the real error stays reachable


# --- issue 17: async predicates -------------------------------------------------------------------


async def transient_later(exc: BaseException) -> bool | float:
    await anyio.sleep(0.25)  # e.g. ask a service whether the error is transient
    if isinstance(exc, RetryAfter):
        return exc.seconds or True
    return isinstance(exc, Transient)


async def is_503(result: object) -> bool:
    await anyio.lowlevel.checkpoint()
    return result == 503


async def test_async_on_predicate(clock: Clock) -> None:
    flaky = Flaky(Transient(), RetryAfter(2))
    assert await retry(on=transient_later, backoff=EXACT).call(flaky) == "ok"
    # 0.25 s to judge each failure, then the waits: 1 s, then 2 s from Retry-After
    assert offsets(flaky.calls) == [0, clock.approx(1.25), clock.approx(3.5)]
    flaky = Flaky(Transient(), Fatal("no"))
    with pytest.raises(Fatal) as info:
        await retry(on=transient_later, backoff=EXACT)(flaky)()
    assert info.value.__notes__[0].endswith("Fatal is not retried (on=transient_later)")


async def test_async_on_predicate_never_sees_cancellation(clock: Clock) -> None:
    seen: list[BaseException] = []

    async def anything(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    async def hang() -> None:
        await anyio.sleep(10)

    with anyio.move_on_after(1) as scope:
        await retry(on=anything).call(hang)
    assert scope.cancelled_caught
    assert seen == []


async def test_async_retry_if_result(clock: Clock) -> None:
    results = Results(503, 503, 200)
    policy = retry(on=Transient, retry_if_result=is_503, backoff=EXACT)
    assert await policy.call(results) == 200
    assert results.calls == 3
    assert clock.now() == clock.approx(3)
    assert await retry(on=Transient, retry_if_result=is_503, attempts=2)(Results(503, 503))() == 503


async def test_an_async_predicate_cut_by_the_timeout_keeps_the_error(clock: Clock) -> None:
    async def slowly(exc: BaseException) -> bool:
        await anyio.sleep(0 if exc.args == (0,) else 10)
        return True

    flaky = Flaky(Transient(0), Transient(1))
    with pytest.raises(Transient) as info:
        await retry(on=slowly, timeout=1, backoff=Backoff(initial=0)).call(flaky)
    assert info.value is flaky.raised[1]  # the latest error, though its verdict was cut
    assert clock.now() == clock.approx(1)
    assert "the retry timeout (timeout=1 s) expired" in info.value.__notes__[0]
