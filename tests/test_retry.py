"""anyway.retry / Retry / retrying / Attempt / RetryBudget and the testing
helpers no_backoff() and cap_attempts(), on every backend in virtual time."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import anyway
from anyway import (
    Attempt,
    Backoff,
    BulkheadFull,
    CircuitOpen,
    Event,
    Rejected,
    Retry,
    RetryBudget,
    RetryGaveUp,
    RetryScheduled,
    retry,
    retrying,
)
from anyway.testing import Clock, cap_attempts, no_backoff


class Transient(Exception):
    """The error the tests retry."""


class Fatal(Exception):
    """An error the tests do not retry."""


EXACT = Backoff(initial=1, max=8, multiplier=2, jitter=None)  # waits 1, 2, 4, 8, 8...


class Flaky:
    """An async callable that raises the given errors in turn, then returns."""

    def __init__(self, *errors: BaseException, result: object = "ok", duration: float = 0) -> None:
        self.errors = list(errors)
        self.result = result
        self.duration = duration
        self.calls: list[float] = []
        self.raised: list[BaseException] = []

    async def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append(anyio.current_time())
        if self.duration:
            await anyio.sleep(self.duration)
        if self.errors:
            error = self.errors.pop(0)
            self.raised.append(error)
            raise error
        return self.result


async def run_block(
    attempts: AsyncIterator[Attempt], body: Callable[[Attempt], object] | None = None
) -> None:
    """A retrying() loop whose block calls *body(attempt)*, or raises Transient."""
    async for attempt in attempts:
        with attempt:
            if body is None:
                raise Transient()
            body(attempt)


def offsets(times: list[float]) -> list[float]:
    return [t - times[0] for t in times]


def note_numbers(note: str, template: str) -> list[float]:
    """Match *note* against *template*, where ``{}`` stands for a number of
    seconds; return those numbers (exact on virtual time, close on uvloop)."""
    pattern = re.escape(template).replace(r"\{\}", r"([0-9.]+)")
    match = re.fullmatch(pattern, note)
    assert match, f"{note!r} does not match {template!r}"
    return [float(x) for x in match.groups()]


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []
    anyway.add_hook(seen.append)
    try:
        yield seen
    finally:
        anyway.remove_hook(seen.append)


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
        ((), ValueError, r"got on=\(\), which retries nothing"),
        ((Transient, "x"), TypeError, r"got 'x' in on=\(<class 'test_retry.Transient'>, 'x'\)"),
        ([Transient], TypeError, r"got a list \[<class 'test_retry.Transient'>\]: use a tuple"),
        (
            "Transient",
            TypeError,
            r"on must be an exception type \(on=OSError\).*got 'Transient' \(str\)",
        ),
        (None, TypeError, r"got None \(NoneType\)"),
    ],
)
def test_bad_on(on: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        retry(on=on)  # type: ignore[arg-type]


def test_on_rejects_coroutines_and_async_predicates() -> None:
    async def is_transient(exc: BaseException) -> bool:
        return True

    coroutine = is_transient(Transient())
    with pytest.raises(TypeError, match="not a coroutine object"):
        retry(on=coroutine)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"plain \(sync\) predicate .*is_transient"):
        retry(on=is_transient)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_if_result must be a plain"):
        retry(on=Transient, retry_if_result=is_transient)  # type: ignore[arg-type]
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

    def hook(event: Event) -> None:
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
        TypeError, match=r"retry\(\) decorates async functions, but .*fetch is not one"
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
    with pytest.raises(TypeError, match="must be callable"):
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


@pytest.mark.anyio
async def test_success_at_once_calls_once(clock: Clock) -> None:
    flaky = Flaky()

    @retry(on=Transient)
    async def fetch(x: int, *, y: int) -> object:
        return await flaky(x, y=y)

    t0 = clock.now()
    assert await fetch(1, y=2) == "ok"
    assert len(flaky.calls) == 1
    assert clock.now() - t0 == clock.approx(0)


@pytest.mark.anyio
async def test_exact_waits_without_jitter(clock: Clock) -> None:
    flaky = Flaky(Transient(1), Transient(2), Transient(3))
    policy = retry(on=Transient, backoff=EXACT)
    assert await policy.call(flaky) == "ok"
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1, 3, 7)]


@pytest.mark.anyio
async def test_waits_stay_at_the_cap(clock: Clock) -> None:
    flaky = Flaky(*[Transient() for _ in range(4)])
    backoff = Backoff(initial=0.5, max=1, jitter=None)
    assert await retry(on=Transient, backoff=backoff).call(flaky) == "ok"
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 0.5, 1.5, 2.5, 3.5)]


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_callable_objects_and_partials_can_be_decorated() -> None:
    flaky = Flaky(Transient())
    wrapped = retry(on=Transient, backoff=Backoff(initial=0, max=0))(flaky)
    assert await wrapped() == "ok"

    async def add(a: int, b: int) -> int:
        return a + b

    assert await retry(on=Transient)(functools.partial(add, 1))(2) == 3


# --- giving up: the original error, notes, earlier errors -----------------------


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_one_attempt_gives_up_at_once() -> None:
    flaky = Flaky(Transient("x"))
    with pytest.raises(Transient) as info:
        await retry(on=Transient, attempts=1).call(flaky)
    assert info.value.__notes__ == ["gave up after 1 attempt in 0 s: no attempts left (attempts=1)"]
    assert info.value.__context__ is None


@pytest.mark.anyio
async def test_earlier_errors_are_listed_up_to_ten() -> None:
    flaky = Flaky(*[Fatal(i) for i in range(13)])
    with pytest.raises(Fatal) as info, no_backoff():
        await retry(on=Fatal, attempts=13).call(flaky)
    earlier = info.value.__notes__[1]
    assert earlier.startswith("earlier attempts (the last 10 of 12): #3 Fatal(2); #4 ")
    assert earlier.endswith("#12 Fatal(11)")


@pytest.mark.anyio
async def test_a_context_of_its_own_is_kept() -> None:
    async def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError:
            raise Transient("outer") from None

    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=2).call(fail)
    assert isinstance(info.value.__context__, KeyError)


@pytest.mark.anyio
async def test_the_same_error_object_twice_makes_no_cycle() -> None:
    error = Transient("cached")

    async def fail() -> None:
        raise error

    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=3).call(fail)
    assert info.value is error
    assert error.__context__ is None
    assert len(error.__notes__) == 2


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_a_broken_repr_does_not_hide_the_error() -> None:
    flaky = Flaky(Transient(BadArg()), Transient("last"))
    with pytest.raises(Transient) as info, no_backoff():
        await retry(on=Transient, attempts=2).call(flaky)
    assert "#1 Transient(<BadArg (repr failed: RuntimeError)>)" in info.value.__notes__[1]


@pytest.mark.anyio
async def test_a_non_retryable_error_first_is_untouched() -> None:
    flaky = Flaky(Fatal("bad"))
    with pytest.raises(Fatal) as info:
        await retry(on=Transient).call(flaky)
    assert len(flaky.calls) == 1
    assert not hasattr(info.value, "__notes__")


@pytest.mark.anyio
async def test_a_non_retryable_error_after_retries_keeps_the_earlier_ones(
    clock: Clock, events: list[Event]
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


@pytest.mark.anyio
@pytest.mark.parametrize("on", [BaseException, is_anything], ids=["BaseException", "predicate"])
async def test_cancellation_during_an_attempt_propagates_at_once(clock: Clock, on: Any) -> None:
    flaky = Flaky(duration=10)
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        await retry(on=on, backoff=EXACT).call(flaky)
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(1)
    assert len(flaky.calls) == 1


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_a_predicate_never_sees_cancellation() -> None:
    seen: list[BaseException] = []

    def on(exc: BaseException) -> bool:
        seen.append(exc)
        return True

    with anyio.move_on_after(1):
        await retry(on=on).call(Flaky(duration=5))
    assert seen == []


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_other_base_exceptions_are_retried_when_asked() -> None:
    class Stop(BaseException):
        pass

    flaky = Flaky(Stop(), BaseExceptionGroup("g", [Stop()]))
    with no_backoff():
        assert await retry(on=BaseException).call(flaky) == "ok"
    assert len(flaky.calls) == 3


@pytest.mark.anyio
async def test_interrupt_after_retries_is_untouched() -> None:
    flaky = Flaky(Transient(), KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as info, no_backoff():
        await retry(on=Transient).call(flaky)
    assert not hasattr(info.value, "__notes__")


@pytest.mark.anyio
async def test_exception_groups_are_not_unwrapped() -> None:
    flaky = Flaky(ExceptionGroup("g", [Transient()]))
    with pytest.raises(ExceptionGroup):
        await retry(on=Transient).call(flaky)
    assert len(flaky.calls) == 1


# --- deadline awareness and the timeout -------------------------------------------


@pytest.mark.anyio
async def test_a_wait_that_would_cross_the_callers_deadline_is_not_started(
    clock: Clock, events: list[Event]
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
    assert (elapsed, left) == (clock.approx(1), clock.approx(1.5))
    (gave_up,) = [e for e in events if isinstance(e, RetryGaveUp)]
    assert gave_up.reason.startswith("waiting 2 s would cross the caller's deadline")


@pytest.mark.anyio
async def test_move_on_after_does_not_swallow_the_real_error(clock: Clock) -> None:
    flaky = Flaky(Transient(), Transient())
    with pytest.raises(Transient), anyio.move_on_after(1.5):
        await retry(on=Transient, backoff=Backoff(initial=3, max=3, jitter=None)).call(flaky)
    assert len(flaky.calls) == 1


@pytest.mark.anyio
async def test_anyway_deadline_is_respected(clock: Clock) -> None:
    flaky = Flaky(*[Transient() for _ in range(5)])
    with pytest.raises(Transient) as info, anyway.deadline(4):
        await retry(on=Transient, backoff=EXACT).call(flaky)
    # attempts at 0, 1, 3; then waiting 4 would end at 7 > 4
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1, 3)]
    assert "would cross the caller's deadline" in info.value.__notes__[0]


@pytest.mark.anyio
async def test_a_wait_that_would_cross_the_timeout_is_not_started(
    clock: Clock, events: list[Event]
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
    assert (elapsed, left) == (clock.approx(1), clock.approx(1.5))


@pytest.mark.anyio
async def test_total_time_never_overshoots_the_timeout(clock: Clock) -> None:
    backoff = Backoff(initial=0.5, max=2, jitter="full", random=random.Random(2024))
    flaky = Flaky(*[Transient() for _ in range(1000)])
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await retry(on=Transient, attempts=None, timeout=4, backoff=backoff).call(flaky)
    elapsed = clock.now() - t0
    # exact on virtual time; on real time a timer may fire a little late
    assert elapsed < 4 if clock.virtual else elapsed < 4 + clock.tolerance
    assert len(flaky.calls) > 3
    assert "would cross the retry timeout (timeout=4 s" in info.value.__notes__[0]


@pytest.mark.anyio
async def test_the_timeout_counts_from_the_first_failure(clock: Clock) -> None:
    """Attempts of 1 s, no wait, timeout 2.5: the first fails at 1 (the
    timeout starts), then 2 and 3; at 3.5 no time is left."""
    flaky = Flaky(*[Transient() for _ in range(10)], duration=1)
    t0 = clock.now()
    with pytest.raises(Transient) as info:
        await retry(on=Transient, timeout=2.5, backoff=Backoff(initial=0, max=0)).call(flaky)
    assert clock.now() - t0 == clock.approx(4)
    assert len(flaky.calls) == 4
    assert (
        "waiting 0 s would cross the retry timeout (timeout=2.5 s, 0 s left)"
        in (info.value.__notes__[0])
    )


@pytest.mark.anyio
async def test_an_earlier_deadline_than_timeout_wins(clock: Clock) -> None:
    flaky = Flaky(*[Transient() for _ in range(5)])
    with pytest.raises(Transient) as info, anyio.fail_after(1.5):
        await retry(on=Transient, backoff=EXACT, timeout=30).call(flaky)
    assert "caller's deadline" in info.value.__notes__[0]


# --- on: predicates and delays -------------------------------------------------------


class RetryAfter(Exception):
    def __init__(self, seconds: float | None) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def honour_retry_after(exc: BaseException) -> bool | float:
    if isinstance(exc, RetryAfter):
        return True if exc.seconds is None else exc.seconds
    return False


@pytest.mark.anyio
async def test_a_float_from_the_predicate_is_the_delay(clock: Clock) -> None:
    flaky = Flaky(RetryAfter(1.5), RetryAfter(None), RetryAfter(4), Fatal())
    backoff = Backoff(initial=1, max=2, jitter=None)
    with pytest.raises(Fatal):
        await retry(on=honour_retry_after, backoff=backoff).call(flaky)
    # 1.5 from the error, then the backoff's first wait (1), then 4 (above backoff.max)
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1.5, 2.5, 6.5)]


@pytest.mark.anyio
async def test_a_predicate_delay_that_crosses_the_deadline_gives_up(clock: Clock) -> None:
    flaky = Flaky(RetryAfter(30))
    with pytest.raises(RetryAfter) as info, anyio.fail_after(10):
        await retry(on=honour_retry_after).call(flaky)
    (elapsed, left) = note_numbers(
        info.value.__notes__[0],
        "gave up after 1 attempt in {} s: waiting 30 s would cross the caller's deadline in {} s",
    )
    assert (elapsed, left) == (clock.approx(0), clock.approx(10))


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_a_predicate_that_raises_keeps_the_original_reachable() -> None:
    original = Transient("original")

    def on(exc: BaseException) -> bool:
        raise LookupError("predicate bug")

    with pytest.raises(LookupError) as info:
        await retry(on=on).call(Flaky(original))
    assert info.value.__context__ is original


@pytest.mark.anyio
async def test_an_int_delay_is_accepted(clock: Clock) -> None:
    flaky = Flaky(Transient())
    t0 = clock.now()
    await retry(on=lambda exc: 2).call(flaky)
    assert clock.now() - t0 == clock.approx(2)


# --- retry_if_result ------------------------------------------------------------------


class Results:
    def __init__(self, *results: object) -> None:
        self.results = list(results)
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        return self.results.pop(0)


@pytest.mark.anyio
async def test_retry_if_result_retries_until_accepted(clock: Clock) -> None:
    results = Results(503, 503, 200)
    t0 = clock.now()
    policy = retry(on=Transient, retry_if_result=lambda r: r == 503, backoff=EXACT)
    assert await policy.call(results) == 200
    assert results.calls == 3
    assert clock.now() - t0 == clock.approx(3)


@pytest.mark.anyio
async def test_retry_if_result_returns_the_last_rejected_result(
    clock: Clock, events: list[Event]
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


@pytest.mark.anyio
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


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_a_bad_result_verdict_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"retry_if_result .* returned 'x'"):
        await retry(on=Transient, retry_if_result=lambda r: "x").call(Results(1))


# --- CircuitOpen is only retried on request -----------------------------------------------


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_other_rejections_follow_on() -> None:
    flaky = Flaky(BulkheadFull("full"))
    with no_backoff():
        assert await retry(on=Exception).call(flaky) == "ok"


# --- concurrency: one policy, many calls ------------------------------------------------------


@pytest.mark.anyio
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
        if clock.virtual:
            assert finished[i] == clock.approx(expected_end[i % 4])
        else:  # 20 tasks, up to 3 waits each: real-time lateness adds up, never earliness
            assert finished[i] >= expected_end[i % 4] - 0.01


@pytest.mark.anyio
async def test_concurrent_decorrelated_calls_each_start_their_own_walk(clock: Clock) -> None:
    """Each call's decorrelated walk starts at ``initial``, whatever the others did."""
    backoff = Backoff(initial=1, max=100, jitter="decorrelated", random=random.Random(1))
    policy = retry(on=Transient, backoff=backoff, attempts=2)
    waits: list[float] = []

    def hook(event: Event) -> None:
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


@pytest.mark.anyio
async def test_sync_and_async_hooks_receive_the_events(clock: Clock) -> None:
    sync_seen: list[Event] = []
    async_seen: list[tuple[Event, float]] = []

    def sync_hook(event: Event) -> None:
        sync_seen.append(event)

    async def async_hook(event: Event) -> None:
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
    assert first == RetryScheduled(policy=name, attempt=1, delay=1.0, error=flaky.raised[0])
    assert second == RetryScheduled(policy=name, attempt=2, delay=2.0, error=flaky.raised[1])
    assert isinstance(gave_up, RetryGaveUp)
    assert (gave_up.policy, gave_up.attempts, gave_up.error) == (name, 3, flaky.raised[2])
    assert gave_up.elapsed == clock.approx(3)
    assert gave_up.reason == "no attempts left (attempts=3)"
    # hooks run before each wait: the first one at the first failure
    assert [t - t0 for _, t in async_seen] == [clock.approx(x) for x in (0, 1, 3)]


@pytest.mark.anyio
async def test_a_single_hook_and_a_name() -> None:
    seen: list[Event] = []
    policy = retry(on=Transient, hooks=seen.append, name="db", attempts=2)
    with pytest.raises(Transient), no_backoff():
        await policy.call(Flaky(Transient(), Transient()))
    assert [e.policy for e in seen] == ["db", "db"]


@pytest.mark.anyio
async def test_global_hooks_and_default_logging(
    clock: Clock, events: list[Event], caplog: pytest.LogCaptureFixture
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


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_a_failing_hook_keeps_the_error_reachable() -> None:
    def hook(event: Event) -> None:
        raise RuntimeError("hook bug")

    original = Transient("original")
    with pytest.raises(RuntimeError, match="hook bug") as info, no_backoff():
        await retry(on=Transient, hooks=hook).call(Flaky(original))
    assert info.value.__context__ is original


# --- the retry budget ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ratio": -0.1}, ValueError, r"ratio must be >= 0, got -0.1; retries allowed per call"),
        ({"ratio": math.inf}, ValueError, r"ratio must be finite"),
        ({"min_per_second": -1}, ValueError, r"min_per_second must be >= 0"),
        ({"window": 0}, ValueError, r"window must be > 0, got 0"),
        ({"window": True}, TypeError, r"window must be a number, got True"),
        ({"ratio": 0, "min_per_second": 0}, ValueError, r"would never allow a retry"),
    ],
)
def test_budget_validation(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_budget_repr_and_options() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=1, window=5)
    assert repr(budget) == (
        "<RetryBudget ratio=0.2 min_per_second=1 window=5 balance=5 calls=0 retries=0>"
    )
    assert (budget.ratio, budget.min_per_second, budget.window) == (0.2, 1.0, 5.0)
    budget.refund()  # nothing to refund yet: harmless
    assert not hasattr(budget, "__dict__")


@pytest.mark.anyio
async def test_budget_caps_retries_under_a_flood(clock: Clock, events: list[Event]) -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0, window=10)
    policy = retry(on=Transient, attempts=3, budget=budget, backoff=Backoff(initial=0, max=0))
    flakies = [Flaky(*[Transient(i) for i in range(3)]) for _ in range(50)]

    async def call(flaky: Flaky) -> None:
        with pytest.raises(Transient):
            await policy.call(flaky)

    async with anyio.create_task_group() as tg:
        for flaky in flakies:
            tg.start_soon(call, flaky)
    # 50 calls deposit 5 retries; 100 were wanted
    assert sum(len(f.calls) for f in flakies) == 55
    assert sum(isinstance(e, RetryScheduled) for e in events) == 5
    give_ups = [e for e in events if isinstance(e, RetryGaveUp)]
    assert len(give_ups) == 50
    exhausted = [e for e in give_ups if e.reason.startswith("retry budget exhausted (<RetryBudget")]
    assert len(exhausted) >= 50 - 2  # at most two calls used up their 3 attempts
    assert budget.balance == pytest.approx(0, abs=1e-9)
    assert "calls=50 retries=5" in repr(budget)


@pytest.mark.anyio
async def test_budget_floor_and_window(clock: Clock) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.25, window=4)  # reserve: 1 retry
    assert budget.balance == pytest.approx(1)
    budget.deposit()
    budget.deposit()
    assert budget.balance == pytest.approx(2)
    assert budget.try_withdraw()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    await anyio.sleep(1.5)  # within the window: nothing expired yet
    assert not budget.try_withdraw()
    await anyio.sleep(3.5)  # past the window: deposits and withdrawals expired
    assert budget.balance == pytest.approx(1)
    budget.deposit()
    assert budget.balance == pytest.approx(1.5)


@pytest.mark.anyio
async def test_budget_slices_expire_one_by_one(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.0001, window=5)  # slices of 0.5 s
    budget.deposit()  # at 0: expires at 5
    await anyio.sleep(2)
    assert budget.balance == pytest.approx(1.0005)  # reading the balance reads the clock
    budget.deposit()  # at 2: expires at 7
    assert budget.balance == pytest.approx(2.0005)
    await anyio.sleep(4)  # at 6: the first deposit expired, the second not
    assert budget.balance == pytest.approx(1.0005)


@pytest.mark.anyio
async def test_budget_refunds_a_cancelled_wait(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)  # reserve: 1
    policy = retry(on=Transient, budget=budget, backoff=Backoff(initial=5, max=5, jitter=None))
    async with anyio.create_task_group() as tg:
        tg.start_soon(policy.call, Flaky(Transient()))
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)  # withdrawn for the wait
        tg.cancel_scope.cancel()
    assert budget.balance == pytest.approx(2)  # 1 deposit + reserve; the withdrawal refunded


@pytest.mark.anyio
async def test_budget_refunds_when_a_hook_fails() -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)

    def hook(event: Event) -> None:
        raise RuntimeError("hook bug")

    with pytest.raises(RuntimeError):
        await retry(on=Transient, budget=budget, hooks=hook).call(Flaky(Transient()))
    assert budget.balance == pytest.approx(2)


@pytest.mark.anyio
async def test_the_clock_can_go_back_for_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)
    now = [100.0]
    monkeypatch.setattr(anyio, "current_time", lambda: now[0])
    budget.deposit()
    now[0] = 50.0  # another loop's clock: start over rather than misplace slices
    assert budget.balance == pytest.approx(1)


# --- retrying() blocks -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_retrying_succeeds_after_failures(clock: Clock) -> None:
    seen: list[tuple[int, float, float]] = []
    t0 = clock.now()
    async for attempt in retrying(on=Transient, backoff=EXACT):
        with attempt:
            seen.append((attempt.num, attempt.next_wait, clock.now() - t0))
            if attempt.num < 3:
                raise Transient(attempt.num)
    assert seen == [(1, 1.0, clock.approx(0)), (2, 2.0, clock.approx(1)), (3, 4.0, clock.approx(3))]


@pytest.mark.anyio
async def test_next_wait_is_the_wait_that_is_used(clock: Clock) -> None:
    backoff = Backoff(initial=1, max=4, jitter="full", random=random.Random(3))
    previous = clock.now()
    promised: list[float] = []
    waited: list[float] = []
    async for attempt in retrying(on=Transient, backoff=backoff):
        with attempt:
            now = clock.now()
            if promised:
                waited.append(now - previous)
            previous = now
            promised.append(attempt.next_wait)
            if attempt.num < 4:
                raise Transient()
    assert waited == [clock.approx(x) for x in promised[:3]]
    assert len(set(promised)) == 4


@pytest.mark.anyio
async def test_attempt_repr_and_slots() -> None:
    async for attempt in retrying(on=Transient, backoff=Backoff(initial=0.4, max=1, jitter=None)):
        with attempt as entered:
            assert entered is attempt
            assert isinstance(attempt, Attempt)
            assert (
                repr(attempt)
                == f"<Attempt num={attempt.num} next_wait={0.4 * 2 ** (attempt.num - 1):g}>"
            )
            assert not hasattr(attempt, "__dict__")
            assert attempt.next_wait == 0.4 * 2 ** (attempt.num - 1)  # drawn once, kept
            if attempt.num == 1:
                raise Transient()
    with no_backoff():
        async for attempt in retrying(on=Transient):
            with attempt:
                assert repr(attempt) == "<Attempt num=1 next_wait=0>"


@pytest.mark.anyio
async def test_retrying_gives_up_with_the_notes(clock: Clock, events: list[Event]) -> None:
    raised: list[Transient] = []
    iterator = retrying(on=Transient, attempts=3, backoff=EXACT, name="block")

    def body(attempt: Attempt) -> None:
        raised.append(Transient(attempt.num))
        raise raised[-1]

    with pytest.raises(Transient) as info:
        await run_block(iterator, body)
    assert info.value is raised[-1]
    assert info.value.__notes__[0].startswith("gave up after 3 attempts in ")
    assert info.value.__notes__[1] == "earlier attempts: #1 Transient(1); #2 Transient(2)"
    assert [e.policy for e in events] == ["block", "block", "block"]
    assert "state=done" in repr(iterator)
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()


@pytest.mark.anyio
async def test_retrying_lets_other_errors_through(clock: Clock) -> None:
    def fatal(attempt: Attempt) -> None:
        raise Fatal("bad")

    def transient_then_fatal(attempt: Attempt) -> None:
        raise Transient() if attempt.num == 1 else Fatal("bad")

    with pytest.raises(Fatal) as info:
        await run_block(retrying(on=Transient, backoff=EXACT), fatal)
    assert not hasattr(info.value, "__notes__")
    with pytest.raises(Fatal) as info:
        await run_block(retrying(on=Transient, backoff=EXACT), transient_then_fatal)
    assert info.value.__notes__[0].endswith("Fatal is not retried (on=Transient)")


@pytest.mark.anyio
async def test_retrying_never_retries_cancellation(clock: Clock) -> None:
    attempts = 0
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        async for attempt in retrying(on=BaseException):
            with attempt:
                attempts += 1
                await anyio.sleep(10)
    assert scope.cancelled_caught
    assert attempts == 1
    assert clock.now() - t0 == clock.approx(1)


@pytest.mark.anyio
async def test_retrying_cancelled_in_a_wait(clock: Clock) -> None:
    attempts = 0
    t0 = clock.now()

    async def loop() -> None:
        nonlocal attempts
        async for attempt in retrying(
            on=BaseException, backoff=Backoff(initial=5, max=5, jitter=None)
        ):
            with attempt:
                attempts += 1
                raise Transient()

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    assert attempts == 1
    assert clock.now() - t0 == clock.approx(1)


@pytest.mark.anyio
async def test_retrying_is_deadline_aware(clock: Clock) -> None:
    with pytest.raises(Transient) as info, anyio.fail_after(2.5):
        await run_block(retrying(on=Transient, backoff=EXACT))
    assert "would cross the caller's deadline" in info.value.__notes__[0]


@pytest.mark.anyio
async def test_retrying_needs_with_attempt() -> None:
    iterator = retrying(on=Transient)
    await iterator.__anext__()
    with pytest.raises(RuntimeError, match="must run its code in 'with attempt:'"):
        await iterator.__anext__()


@pytest.mark.anyio
async def test_a_stale_attempt_changes_nothing() -> None:
    iterator = retrying(on=Transient, backoff=Backoff(initial=0, max=0))
    first = await iterator.__anext__()
    with first:
        raise Transient()
    second = await iterator.__anext__()
    with pytest.raises(Transient), first:  # the old one does not swallow errors any more
        raise Transient()
    with second:
        pass
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()


@pytest.mark.anyio
async def test_retrying_with_a_budget_and_a_policy() -> None:
    budget = RetryBudget(ratio=0, min_per_second=0.1, window=10)  # one retry
    policy = retry(on=Transient, budget=budget, backoff=Backoff(initial=0, max=0))
    with pytest.raises(Transient) as info:
        await run_block(policy.retrying(name="loop"))
    assert "retry budget exhausted" in info.value.__notes__[0]
    assert info.value.__notes__[0].startswith("gave up after 2 attempts")


# --- retrying() with retry_if_result: the block reports its result ---------------------------


async def judged_block(
    attempts: AsyncIterator[Attempt], outcomes: list[object], seen: list[float] | None = None
) -> Attempt:
    """A retrying() loop whose block reports (or raises) the next outcome;
    returns the last attempt."""
    async for attempt in attempts:
        with attempt:
            if seen is not None:
                seen.append(anyio.current_time())
            outcome = outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            assert attempt.set_result(outcome) is outcome
    return attempt


@pytest.mark.anyio
async def test_retrying_retry_if_result_retries_until_accepted(
    clock: Clock, events: list[Event]
) -> None:
    seen: list[float] = []
    t0 = clock.now()
    outcomes: list[object] = [503, 503, 200]
    loop = retrying(on=Transient, retry_if_result=lambda r: r == 503, backoff=EXACT, name="blk")
    last = await judged_block(loop, outcomes, seen)
    assert (last.num, last.result) == (3, 200)
    assert offsets(seen) == [clock.approx(x) for x in (0, 1, 3)]
    assert clock.now() - t0 == clock.approx(3)
    assert [(type(e), e.attempt, e.delay, e.result, e.error) for e in events] == [  # type: ignore[attr-defined]
        (RetryScheduled, 1, 1.0, 503, None),
        (RetryScheduled, 2, 2.0, 503, None),
    ]
    assert not outcomes
    with pytest.raises(StopAsyncIteration):
        await loop.__anext__()


@pytest.mark.anyio
async def test_retrying_gives_up_on_a_rejected_result_like_retry(
    clock: Clock, events: list[Event]
) -> None:
    # The same rejected results through retry().call and through retrying():
    # same waits, same events; the loop ends without an error and the last
    # (rejected) result stays on the attempt, as call() returns it.
    def policy() -> Retry:
        return retry(on=Transient, attempts=3, retry_if_result=lambda r: r >= 500, backoff=EXACT)

    def steps(events: list[Event]) -> list[tuple[str, int, object]]:
        return [
            ("retry", e.attempt, e.result)
            if isinstance(e, RetryScheduled)
            else ("gave up", e.attempts, e.result)
            for e in events
            if isinstance(e, (RetryScheduled, RetryGaveUp))
        ]

    t0 = clock.now()
    assert await policy().call(Results(503, 502, 504)) == 504
    assert clock.now() - t0 == clock.approx(3)
    by_call = steps(events)
    events.clear()

    t0 = clock.now()
    loop = policy().retrying()
    last = await judged_block(loop, [503, 502, 504])
    assert clock.now() - t0 == clock.approx(3)
    assert (last.num, last.result) == (3, 504)
    assert steps(events) == by_call == [("retry", 1, 503), ("retry", 2, 502), ("gave up", 3, 504)]
    (gave_up,) = [e for e in events if isinstance(e, RetryGaveUp)]
    assert (gave_up.error, gave_up.reason) == (None, "no attempts left (attempts=3)")
    assert gave_up.elapsed == clock.approx(3)
    assert "state=done" in repr(loop)
    with pytest.raises(StopAsyncIteration):
        await loop.__anext__()


@pytest.mark.anyio
async def test_retrying_a_rejected_result_respects_timeout_and_deadline(
    clock: Clock, events: list[Event]
) -> None:
    # timeout=2.5 from the first rejection: waits 1 (to 1), then 2 would end at 3.
    t0 = clock.now()
    loop = retrying(on=Transient, timeout=2.5, retry_if_result=lambda r: True, backoff=EXACT)
    last = await judged_block(loop, ["busy"] * 5)
    assert (last.num, last.result) == (2, "busy")
    assert clock.now() - t0 == clock.approx(1)
    assert events[-1].reason.startswith("waiting 2 s would cross the retry timeout")  # type: ignore[attr-defined]
    # the caller's deadline at 2.5 s: the same stop, at the same time
    t0 = clock.now()
    with anyio.fail_after(2.5):
        last = await judged_block(
            retrying(on=Transient, retry_if_result=lambda r: True, backoff=EXACT), ["busy"] * 5
        )
    assert (last.num, last.result) == (2, "busy")
    assert clock.now() - t0 == clock.approx(1)
    assert "would cross the caller's deadline" in events[-1].reason  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_retrying_a_result_delay_and_mixed_outcomes(clock: Clock) -> None:
    # Transient (backoff 1), a result asking for 4 s, then an accepted result.
    seen: list[float] = []
    loop = retrying(
        on=Transient,
        backoff=EXACT,
        retry_if_result=lambda r: 4.0 if r == "retry-after-4" else False,
    )
    last = await judged_block(loop, [Transient("down"), "retry-after-4", "fine"], seen)
    assert last.result == "fine"
    assert offsets(seen) == [clock.approx(x) for x in (0, 1, 5)]


@pytest.mark.anyio
async def test_retrying_lists_a_rejected_result_among_earlier_attempts(clock: Clock) -> None:
    loop = retrying(on=Transient, attempts=2, retry_if_result=lambda r: r == "busy", backoff=EXACT)
    with pytest.raises(Transient) as info:
        await judged_block(loop, ["busy", Transient("down")])
    assert note_numbers(
        info.value.__notes__[0], "gave up after 2 attempts in {} s: no attempts left (attempts=2)"
    ) == [clock.approx(1)]
    assert info.value.__notes__[1] == "earlier attempts: #1 rejected result 'busy'"
    # a non-retryable error after a rejected result keeps it listed too
    loop = retrying(on=Transient, retry_if_result=lambda r: r == "busy", backoff=EXACT)
    with pytest.raises(Fatal) as fatal:
        await judged_block(loop, ["busy", Fatal("bad")])
    assert fatal.value.__notes__[1] == "earlier attempts: #1 rejected result 'busy'"


@pytest.mark.anyio
async def test_retrying_judges_only_reported_results(clock: Clock) -> None:
    judged: list[object] = []

    def reject_everything(result: object) -> bool:
        judged.append(result)
        return True

    t0 = clock.now()
    async for attempt in retrying(on=Transient, retry_if_result=reject_everything, backoff=EXACT):
        with attempt:
            pass  # no result reported: not judged, the loop ends
    assert (attempt.num, judged) == (1, [])
    assert clock.now() - t0 == clock.approx(0)
    with pytest.raises(AttributeError, match=r"attempt 1 reported no result: call attempt\.set"):
        attempt.result  # noqa: B018

    def reject_one(result: object) -> bool:
        judged.append(result)
        return result == 1

    # an error after set_result() is what counts: it is retried as an error
    async for attempt in retrying(on=Transient, retry_if_result=reject_one, backoff=EXACT):
        with attempt:
            attempt.result = attempt.num  # the setter is set_result()
            if attempt.num == 1:
                raise Transient()  # 1 would be rejected, but the error counts
            attempt.set_result("second")  # replaces 2
    assert (attempt.num, attempt.result, judged) == (2, "second", ["second"])
    assert clock.now() - t0 == clock.approx(1)


@pytest.mark.anyio
async def test_retrying_keeps_a_result_without_retry_if_result() -> None:
    async for attempt in retrying(on=Transient):
        with attempt:
            attempt.set_result([1, 2])
    assert attempt.result == [1, 2]
    assert repr(attempt).endswith(" result=[1, 2]>")


@pytest.mark.anyio
async def test_set_result_outside_the_block_is_an_error() -> None:
    loop = retrying(on=Transient, retry_if_result=lambda r: r == "busy")
    async for attempt in loop:
        with attempt:
            pass
    match = r"attempt 1 is over: call it inside 'with attempt:'"
    with pytest.raises(RuntimeError, match=match):
        attempt.set_result("busy")  # too late to be judged
    with pytest.raises(RuntimeError, match=match):
        attempt.result = "busy"
    with no_backoff():
        stale = await (loop := retrying(on=Transient)).__anext__()
        with stale:
            raise Transient()
        await loop.__anext__()
    with pytest.raises(RuntimeError, match="attempt 1 is over"):
        stale.set_result(1)  # a stale attempt


@pytest.mark.anyio
async def test_retrying_a_failing_result_check_propagates_from_the_block() -> None:
    def broken(result: object) -> bool:
        raise LookupError("bug in the predicate")

    loop = retrying(on=Transient, retry_if_result=broken)
    with pytest.raises(LookupError, match="bug in the predicate"):
        await judged_block(loop, [1])
    with pytest.raises(StopAsyncIteration):
        await loop.__anext__()
    with pytest.raises(TypeError, match=r"retry_if_result .* returned 'x'"):
        await judged_block(
            retrying(on=Transient, retry_if_result=lambda r: "x"),  # type: ignore[arg-type,return-value]
            [1],
        )


@pytest.mark.anyio
async def test_retrying_cancelled_in_the_wait_after_a_rejected_result(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)
    policy = retry(
        on=Transient,
        budget=budget,
        retry_if_result=lambda r: True,
        backoff=Backoff(initial=5, max=5, jitter=None),
    )
    blocks = 0

    async def loop() -> None:
        nonlocal blocks
        async for attempt in policy.retrying():
            with attempt:
                blocks += 1
                attempt.set_result("busy")

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)  # the retry is paid for
        tg.cancel_scope.cancel()
    assert blocks == 1
    assert clock.now() - t0 == clock.approx(1)
    assert budget.balance == pytest.approx(2)  # and refunded


@pytest.mark.anyio
async def test_retrying_rejected_results_under_no_backoff(clock: Clock) -> None:
    t0 = clock.now()
    with no_backoff():
        last = await judged_block(
            retrying(on=Transient, attempts=4, retry_if_result=lambda r: r < 3), [0, 1, 2, 3]
        )
    assert (last.num, last.result) == (4, 3)
    assert clock.now() - t0 == clock.approx(0)


def test_a_policy_with_retry_if_result_gives_a_retrying_loop() -> None:
    policy = retry(on=Transient, retry_if_result=bool)
    assert "state=fresh" in repr(policy.retrying())
    assert "state=fresh" in repr(retrying(on=Transient, retry_if_result=bool))
    with pytest.raises(TypeError, match="retry_if_result must be callable"):
        retrying(on=Transient, retry_if_result=3)  # type: ignore[arg-type]


# --- testing helpers: no_backoff() and cap_attempts() ----------------------------------------------


@pytest.mark.anyio
async def test_no_backoff_makes_waits_zero(clock: Clock) -> None:
    flaky = Flaky(RetryAfter(30), Transient(), Transient())
    t0 = clock.now()
    with no_backoff():
        assert await retry(on=(Transient, RetryAfter)).call(flaky) == "ok"
        assert await retry(on=honour_retry_after).call(Flaky(RetryAfter(30))) == "ok"
    assert clock.now() - t0 == clock.approx(0)
    assert len(flaky.calls) == 4


@pytest.mark.anyio
async def test_no_backoff_with_attempts_caps_them() -> None:
    flaky = Flaky(*[Transient() for _ in range(5)])
    with pytest.raises(Transient) as info, no_backoff(attempts=2):
        await retry(on=Transient, attempts=10).call(flaky)
    assert len(flaky.calls) == 2
    assert info.value.__notes__[0].endswith("no attempts left (attempts=2 by anyway.testing)")
    # a policy with fewer attempts keeps its own
    with pytest.raises(Transient) as info, no_backoff(attempts=5):
        await retry(on=Transient, attempts=1).call(Flaky(Transient()))
    assert info.value.__notes__[0].endswith("no attempts left (attempts=1)")
    with pytest.raises(Transient), no_backoff(attempts=3):
        await retry(on=Transient, attempts=None).call(Flaky(*[Transient() for _ in range(5)]))


@pytest.mark.anyio
async def test_cap_attempts_keeps_the_waits(clock: Clock) -> None:
    flaky = Flaky(Transient(), Transient())
    t0 = clock.now()
    with pytest.raises(Transient), cap_attempts(2):
        await retry(on=Transient, backoff=EXACT).call(flaky)
    assert clock.now() - t0 == clock.approx(1)
    with pytest.raises(Transient), cap_attempts(1):
        await retry(on=Transient).call(Flaky(Transient()))


@pytest.mark.anyio
async def test_nested_test_modes_combine(clock: Clock) -> None:
    mode = cap_attempts(3)
    with mode, no_backoff(attempts=5):
        flaky = Flaky(*[Transient() for _ in range(5)])
        t0 = clock.now()
        with pytest.raises(Transient):
            await retry(on=Transient, backoff=EXACT).call(flaky)
        assert len(flaky.calls) == 3
        assert clock.now() - t0 == clock.approx(0)
        assert "active=True" in repr(mode)
    assert "active=False" in repr(mode)
    with no_backoff(), cap_attempts(2):
        flaky = Flaky(*[Transient() for _ in range(5)])
        with pytest.raises(Transient):
            await retry(on=Transient).call(flaky)
        assert len(flaky.calls) == 2


@pytest.mark.anyio
async def test_test_modes_are_per_task(clock: Clock) -> None:
    started = anyio.Event()
    go = anyio.Event()
    elapsed: dict[str, float] = {}
    policy = retry(on=Transient, backoff=EXACT)

    async def outside() -> None:
        started.set()
        await go.wait()
        t0 = clock.now()
        await policy.call(Flaky(Transient()))
        elapsed["outside"] = clock.now() - t0

    async def inside() -> None:
        t0 = clock.now()
        await policy.call(Flaky(Transient()))
        elapsed["inside"] = clock.now() - t0

    async with anyio.create_task_group() as tg:
        tg.start_soon(outside)
        await started.wait()
        with no_backoff():
            tg.start_soon(inside)
            go.set()
    assert elapsed == {"inside": clock.approx(0), "outside": clock.approx(1)}


@pytest.mark.anyio
async def test_no_backoff_as_a_decorator(clock: Clock) -> None:
    @no_backoff()
    async def scenario() -> int:
        flaky = Flaky(Transient(), Transient())
        await retry(on=Transient, backoff=EXACT).call(flaky)
        return len(flaky.calls)

    t0 = clock.now()
    assert await scenario() == 3
    assert clock.now() - t0 == clock.approx(0)

    from anyway._retry import _test_mode

    @cap_attempts(4)
    def sync_scenario() -> int | None:
        mode = _test_mode.get()
        return None if mode is None else mode.max_attempts

    assert sync_scenario() == 4
    assert _test_mode.get() is None


def test_testing_helpers_validate() -> None:
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        no_backoff(attempts=0)
    with pytest.raises(TypeError, match="attempts must be a whole number, got True"):
        cap_attempts(True)
    assert repr(no_backoff()) == "<RetryTestMode zero_waits=True max_attempts=None active=False>"


# --- odds and ends ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_decorator_with_a_budget_and_a_result_check() -> None:
    budget = RetryBudget()
    results = Results(200)

    @retry(on=Transient, budget=budget, retry_if_result=lambda r: r == 503)
    async def fetch(fail: bool) -> object:
        if fail:
            raise Fatal("not retried")
        return await results()

    assert await fetch(False) == 200
    with pytest.raises(Fatal):
        await fetch(True)
    assert "calls=2 retries=0" in repr(budget)
    assert await retry(on=Transient, retry_if_result=lambda r: False).call(Results(1)) == 1


@pytest.mark.anyio
async def test_no_timeout_and_no_deadline(clock: Clock) -> None:
    flaky = Flaky(Transient(), Transient())
    assert await retry(on=Transient, timeout=None, backoff=EXACT).call(flaky) == "ok"
    assert offsets(flaky.calls) == [clock.approx(x) for x in (0, 1, 3)]


@pytest.mark.anyio
async def test_retrying_refunds_the_budget_when_cancelled_in_a_wait(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)
    policy = retry(on=Transient, budget=budget, backoff=Backoff(initial=5, max=5, jitter=None))

    async def loop() -> None:
        async for attempt in policy.retrying():
            with attempt:
                raise Transient()

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)
        tg.cancel_scope.cancel()
    assert budget.balance == pytest.approx(2)


@pytest.mark.anyio
async def test_next_wait_after_a_delay_from_the_predicate(clock: Clock) -> None:
    """A delay from ``on`` does not use up the backoff draw shown by next_wait."""
    seen: list[float] = []
    backoff = Backoff(initial=1, max=4, jitter=None)
    async for attempt in retrying(on=honour_retry_after, backoff=backoff):
        with attempt:
            seen.append(attempt.next_wait)
            if attempt.num == 1:
                raise RetryAfter(0.5)
            if attempt.num == 2:
                raise RetryAfter(None)
    assert seen == [1.0, 1.0, 2.0]


@pytest.mark.anyio
async def test_a_failing_hook_on_a_rejected_result() -> None:
    def hook(event: Event) -> None:
        if isinstance(event, RetryGaveUp):
            raise RuntimeError("hook bug")

    policy = retry(on=Transient, attempts=2, retry_if_result=lambda r: True, hooks=hook)
    with pytest.raises(RuntimeError, match="hook bug") as info, no_backoff():
        await policy.call(Results(1, 2))
    assert info.value.__context__ is None


def test_test_mode_repr() -> None:
    from anyway._retry import _TestMode

    assert repr(_TestMode(zero_waits=True, max_attempts=2)) == (
        "<_TestMode zero_waits=True max_attempts=2>"
    )


@pytest.mark.anyio
async def test_budget_deposits_between_clock_readings_only_expire_early(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.2, window=5)  # floor: 1 retry
    budget.deposit()  # reads the clock: slice of t=0
    await anyio.sleep(2)
    for _ in range(15):  # no clock reading: counted in the slice of t=0
        budget.deposit()
    assert budget.balance == pytest.approx(17)
    budget.deposit()  # the 17th reads the clock again: slice of t=2
    await anyio.sleep(4)  # t=6: the slice of t=0 expired, the one of t=2 not
    assert budget.balance == pytest.approx(2)


# --- audit: a refund gives back exactly what was withdrawn ---------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["call", "retrying"])
async def test_budget_refund_after_the_withdrawal_expired_adds_nothing(
    clock: Clock, how: str
) -> None:
    # The wait outlives the window: by the time it is cancelled, the call's
    # deposit and the wait's withdrawal have both expired. Refunding must not
    # then credit a retry that was never paid for in the current window.
    budget = RetryBudget(ratio=1, min_per_second=0.25, window=4)  # reserve: 1, slices of 0.4 s
    policy = retry(
        on=Transient, budget=budget, timeout=None, backoff=Backoff(initial=6, max=6, jitter=None)
    )

    async def block() -> None:
        async for attempt in policy.retrying():
            with attempt:
                raise Transient()

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            policy.call if how == "call" else block,
            *([Flaky(Transient())] if how == "call" else []),
        )
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)  # 1 reserve + 1 deposit - 1 withdrawal
        await anyio.sleep(4)  # at 5: both expired (at 3.6 to 4)
        assert budget.balance == pytest.approx(1)  # the reserve
        tg.cancel_scope.cancel()
    assert budget.balance == pytest.approx(1)  # still the reserve, not 2


@pytest.mark.anyio
async def test_budget_refund_goes_to_the_slice_of_the_withdrawal(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.25, window=4)  # reserve: 1, slices of 0.4 s
    policy = retry(
        on=Transient, budget=budget, timeout=None, backoff=Backoff(initial=5, max=5, jitter=None)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(policy.call, Flaky(Transient()))  # deposit + withdrawal at 0
        await anyio.sleep(2)
        assert budget.balance == pytest.approx(1)  # (reading it reads the clock)
        budget.deposit()  # at 2: expires at 5.6 to 6
        tg.cancel_scope.cancel()  # refund the withdrawal made at 0
    assert budget.balance == pytest.approx(3)  # reserve + 2 deposits
    await anyio.sleep(3)  # at 5: the deposit and withdrawal made at 0 expired together
    assert budget.balance == pytest.approx(2)  # reserve + the deposit made at 2


# --- audit: Retry.call refuses what cannot be awaited, and never retries it ---------------------


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_call_with_a_coroutine_object_explains_the_fix() -> None:
    async def fetch() -> int:
        return 1

    coro = fetch()
    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        await retry(on=Exception, attempts=5).call(coro)  # type: ignore[arg-type]
    # (check_callable closed it: no "never awaited" warning under filterwarnings=error)


@pytest.mark.anyio
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


@pytest.mark.anyio
async def test_budget_public_refund_gives_back_the_latest_live_withdrawal(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.25, window=4)  # reserve: 1, slices of 0.4 s
    budget.deposit()
    assert budget.try_withdraw()  # at 0
    await anyio.sleep(1)
    assert budget.try_withdraw()  # at 1
    assert budget.balance == pytest.approx(0)
    budget.refund()  # the one made at 1
    budget.refund()  # then the one made at 0
    assert budget.balance == pytest.approx(2)
    budget.refund()  # nothing left to give back: no credit out of thin air
    assert budget.balance == pytest.approx(2)
    assert budget.try_withdraw()  # at 1
    await anyio.sleep(5)  # at 6: everything expired (by 5)
    budget.refund()
    assert budget.balance == pytest.approx(1)  # the reserve only
