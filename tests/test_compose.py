"""resilient(): the order of the layers, one test per boundary, and fallback."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import pytest

import anyway
from anyway import (
    NO_FALLBACK,
    Backoff,
    BreakerStateChanged,
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    DeadlineExceeded,
    KeyedRateLimiter,
    PolicyEvent,
    RateLimiter,
    RetryGaveUp,
    RetryScheduled,
    resilient,
)
from anyway.testing import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

TWO_SECONDS = Backoff(initial=2, max=2, multiplier=1, jitter=None)
NO_WAIT = Backoff(initial=0, max=0, multiplier=1, jitter=None)


class Boom(Exception):
    """A retryable failure."""


class Recorder:
    """An async context manager that logs when it is entered and left."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __aenter__(self) -> None:
        self.log.append(f"{self.name}>")

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.log.append(f"<{self.name}")


def flaky(failures: int, exc: Callable[[], BaseException] = Boom) -> Callable[[], Awaitable[str]]:
    """An async function that fails *failures* times, then returns "ok"."""
    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise exc()
        return "ok"

    op.calls = lambda: calls  # type: ignore[attr-defined]
    return op


def state_of(breaker: CircuitBreaker) -> CircuitState:
    return breaker.state  # (a call: mypy keeps no narrowing across it)


# --- the layers and their order ----------------------------------------------------


async def test_no_policy_returns_the_function_itself() -> None:
    async def op() -> int:
        return 1

    assert resilient()(op) is op


async def test_layers_run_in_the_documented_order(clock: Clock) -> None:
    log: list[str] = []
    left: list[float] = []
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=10, hooks=events.append)

    @resilient(
        timeout=60,
        attempt_timeout=5,
        retry=anyway.retry(on=Boom, attempts=3, backoff=NO_WAIT),
        breaker=breaker,
        bulkhead=Recorder("bulkhead", log),
        limiter=Recorder("limiter", log),
    )
    async def op(x: int) -> int:
        # the innermost deadline is the attempt's; the outer one is further out
        left.append(anyway.remaining())
        log.append("call")
        if len(log) < 10:
            raise Boom
        return x

    assert await op(7) == 7
    attempt = ["bulkhead>", "limiter>", "call", "<limiter", "<bulkhead"]
    assert log == attempt * 3
    # the innermost deadline is the attempt's (5 s), not the overall one (60 s)
    assert all(0 < seconds <= 5 for seconds in left)
    assert left == [clock.approx(5)] * 3
    assert breaker.statistics().call_count == 3  # the breaker saw every attempt
    assert breaker.statistics().failure_count == 0
    assert (breaker.statistics().success_count, events) == (1, [])


async def test_decorated_function_keeps_its_identity() -> None:
    @resilient(timeout=1)
    async def fetch(url: str, *, retries: int = 0) -> str:
        """Fetch *url*."""
        return url

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch *url*."
    assert fetch.__wrapped__ is not None  # type: ignore[attr-defined]
    assert await fetch("u", retries=1) == "u"


async def test_methods_can_be_decorated() -> None:
    class Client:
        def __init__(self) -> None:
            self.base = "http://x/"

        @resilient(retry=anyway.retry(on=Boom, backoff=NO_WAIT))
        async def get(self, path: str) -> str:
            return self.base + path

    assert await Client().get("a") == "http://x/a"


# --- retry / breaker boundary -------------------------------------------------------


async def test_breaker_sees_each_attempt_and_open_circuit_is_not_retried() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=60, hooks=events.append)
    op = flaky(100)
    composed = resilient(
        retry=anyway.retry(on=Boom, attempts=5, backoff=NO_WAIT, hooks=events.append),
        breaker=breaker,
    )(op)
    with pytest.raises(CircuitOpen) as info:
        await composed()
    assert op.calls() == 3  # type: ignore[attr-defined]
    assert breaker.state is CircuitState.OPEN
    assert "is not retried" in " ".join(info.value.__notes__)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "RetryScheduled",
        "RetryScheduled",
        "BreakerStateChanged",
        "RetryScheduled",
        "CallRejected",
    ]
    events.clear()
    with pytest.raises(CircuitOpen):
        await composed()
    assert op.calls() == 3  # type: ignore[attr-defined]
    assert [type(e).__name__ for e in events] == ["CallRejected"]


async def test_retry_can_be_told_to_retry_an_open_circuit(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=3)
    op = flaky(1)
    composed = resilient(
        retry=anyway.retry(on=(Boom, CircuitOpen), attempts=5, backoff=TWO_SECONDS),
        breaker=breaker,
    )(op)
    t0 = clock.now()
    assert await composed() == "ok"  # fails at 0, refused at 2 s, probes at 4 s
    assert clock.now() - t0 == clock.approx(4)
    assert op.calls() == 2  # type: ignore[attr-defined]
    assert breaker.state is CircuitState.CLOSED


async def test_retry_names_events_after_the_function() -> None:
    events: list[PolicyEvent] = []

    @resilient(retry=anyway.retry(on=Boom, attempts=2, backoff=NO_WAIT, hooks=events.append))
    async def lookup() -> None:
        raise Boom

    with pytest.raises(Boom):
        await lookup()
    assert [e.policy for e in events] == [lookup.__qualname__] * 2
    assert isinstance(events[0], RetryScheduled)
    assert isinstance(events[1], RetryGaveUp)


# --- breaker / bulkhead boundary ----------------------------------------------------


async def test_open_breaker_refuses_before_the_bulkhead() -> None:
    log: list[str] = []
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=60)
    composed = resilient(breaker=breaker, bulkhead=Recorder("bulkhead", log))(flaky(100))
    with pytest.raises(Boom):
        await composed()
    with pytest.raises(CircuitOpen):
        await composed()
    assert log == ["bulkhead>", "<bulkhead"]


async def test_bulkhead_refusal_is_not_a_breaker_failure() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    bulkhead = Bulkhead(1)
    release = anyio.Event()

    @resilient(breaker=breaker, bulkhead=bulkhead)
    async def op() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(op)
        await anyio.sleep(0.5)
        with pytest.raises(BulkheadFull):
            await op()
        release.set()
    assert breaker.state is CircuitState.CLOSED
    assert (breaker.statistics().call_count, bulkhead.active) == (1, 0)


async def test_each_attempt_takes_its_own_bulkhead_slot(clock: Clock) -> None:
    bulkhead = Bulkhead(1)
    seen: list[int] = []

    @resilient(retry=anyway.retry(on=Boom, attempts=3, backoff=TWO_SECONDS), bulkhead=bulkhead)
    async def op() -> None:
        seen.append(bulkhead.active)
        raise Boom

    async def watch() -> None:
        await anyio.sleep(1)
        seen.append(-bulkhead.active)  # between attempts: the slot is free

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        with pytest.raises(Boom):
            await op()
    assert seen == [1, 0, 1, 1]
    assert bulkhead.active == 0


# --- bulkhead / limiter boundary ------------------------------------------------------


async def test_limiter_is_entered_inside_the_bulkhead_per_attempt(clock: Clock) -> None:
    limiter = RateLimiter(1, per=1)
    bulkhead = Bulkhead(1, max_waiting=0)
    op = flaky(2)
    composed = resilient(
        retry=anyway.retry(on=Boom, attempts=3, backoff=NO_WAIT),
        bulkhead=bulkhead,
        limiter=limiter,
    )(op)
    t0 = clock.now()
    assert await composed() == "ok"
    # three attempts, one rate unit each: spaced 1 s apart by the limiter
    assert clock.now() - t0 == clock.approx(2)


async def test_bulkhead_refusal_takes_no_rate_unit() -> None:
    limiter = RateLimiter(1, per=10)
    bulkhead = Bulkhead(1)
    release = anyio.Event()

    @resilient(bulkhead=bulkhead, limiter=limiter)
    async def op() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(op)
        await anyio.sleep(1)
        with pytest.raises(BulkheadFull):
            await op()
        release.set()
    assert 5 < limiter.wait_time() <= 10  # one unit spent (two would make it ~19 s)


# --- limiter / attempt timeout boundary ---------------------------------------------


async def test_attempt_timeout_does_not_count_the_wait_for_the_limiter(clock: Clock) -> None:
    limiter = RateLimiter(1, per=4)

    @resilient(limiter=limiter, attempt_timeout=2)
    async def op() -> None:
        await anyio.sleep(0.5)

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        tg.start_soon(op)
        tg.start_soon(op)  # waits 4 s for its unit, then runs 0.5 s: within 2 s
    assert clock.now() - t0 == clock.approx(4.5)


async def test_breaker_slow_clock_starts_after_the_queues(clock: Clock) -> None:
    breaker = CircuitBreaker(window=CountWindow(1), slow_call_duration=2)

    @resilient(breaker=breaker, limiter=RateLimiter(1, per=3.5))
    async def op(seconds: float) -> None:
        await anyio.sleep(seconds)

    await op(0.5)
    await op(0.5)  # waited 3 s for the limiter, ran 0.5 s: not slow
    assert breaker.state is CircuitState.CLOSED
    assert (breaker.statistics().slow_call_count, breaker.statistics().call_count) == (0, 1)
    await op(3.5)  # at t=4 waits until 7, runs 3.5 s: slow
    assert state_of(breaker) is CircuitState.OPEN


# --- attempt timeout / the call -----------------------------------------------------


async def test_attempt_timeout_applies_per_attempt_and_is_retried(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=5)
    durations = iter([5, 5, 0.5])

    @resilient(
        retry=anyway.retry(on=TimeoutError, attempts=3, backoff=NO_WAIT),
        breaker=breaker,
        attempt_timeout=1,
    )
    async def op() -> str:
        await anyio.sleep(next(durations))
        return "ok"

    t0 = clock.now()
    assert await op() == "ok"
    assert clock.now() - t0 == clock.approx(2.5)
    assert breaker.statistics().success_count == 1  # the streak of 2 timeouts ended with a success
    assert breaker.statistics().call_count == 3


async def test_attempt_timeout_error_says_how_long() -> None:
    @resilient(attempt_timeout=1)
    async def op() -> None:
        await anyio.sleep(5)

    with pytest.raises(DeadlineExceeded, match="deadline of 1 s exceeded") as info:
        await op()
    assert info.value.seconds == 1
    assert isinstance(info.value, TimeoutError)


async def test_attempt_timeout_not_retried_unless_on_says_so(clock: Clock) -> None:
    op_calls = 0

    @resilient(retry=anyway.retry(on=Boom, attempts=3, backoff=NO_WAIT), attempt_timeout=1)
    async def op() -> None:
        nonlocal op_calls
        op_calls += 1
        await anyio.sleep(5)

    with pytest.raises(DeadlineExceeded):
        await op()
    assert op_calls == 1


# --- the overall deadline -------------------------------------------------------------


async def test_overall_timeout_bounds_a_slow_attempt(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1)

    @resilient(timeout=3, retry=anyway.retry(on=Boom, backoff=NO_WAIT), breaker=breaker)
    async def op() -> None:
        await anyio.sleep(60)

    t0 = clock.now()
    with pytest.raises(DeadlineExceeded, match="deadline of 3 s exceeded") as info:
        await op()
    assert clock.now() - t0 == clock.approx(3)
    assert info.value.seconds == 3
    # for the breaker this was a cancellation, not a failure
    assert (breaker.state, breaker.statistics().call_count) == (CircuitState.CLOSED, 0)


async def test_retry_stops_before_crossing_the_overall_timeout(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    op = flaky(100)
    composed = resilient(
        timeout=7,
        retry=anyway.retry(on=Boom, attempts=10, backoff=TWO_SECONDS, hooks=events.append),
    )(op)
    t0 = clock.now()
    with pytest.raises(Boom) as info:
        await composed()
    # attempts at 0, 2, 4, 6; the next wait would end at 8 > 7: given up at once
    assert clock.now() - t0 == clock.approx(6)
    assert op.calls() == 4  # type: ignore[attr-defined]
    assert "would cross the caller's deadline" in info.value.__notes__[0]
    assert isinstance(events[-1], RetryGaveUp)


async def test_overall_timeout_covers_limiter_waits(clock: Clock) -> None:
    limiter = RateLimiter(1, per=10)

    @resilient(timeout=2, limiter=limiter)
    async def op() -> str:
        return "ok"

    assert await op() == "ok"
    t0 = clock.now()
    with pytest.raises(DeadlineExceeded):
        await op()  # would wait 10 s for a unit
    assert clock.now() - t0 == clock.approx(2)


# --- fallback -----------------------------------------------------------------------


async def test_fallback_value_on_final_failure() -> None:
    op = flaky(100)
    composed = resilient(retry=anyway.retry(on=Boom, attempts=3, backoff=NO_WAIT), fallback=None)(
        op
    )
    assert await composed() is None
    assert op.calls() == 3  # type: ignore[attr-defined]


async def test_fallback_not_used_on_success() -> None:
    assert await resilient(fallback="fallback")(flaky(0))() == "ok"
    assert await resilient(fallback=lambda exc: "fallback")(flaky(0))() == "ok"


async def test_fallback_callable_gets_the_exception() -> None:
    seen: list[BaseException] = []

    def sync_fallback(exc: Exception) -> str:
        seen.append(exc)
        return f"sync: {type(exc).__name__}"

    async def async_fallback(exc: Exception) -> str:
        await anyio.lowlevel.checkpoint()
        return f"async: {type(exc).__name__}"

    assert await resilient(fallback=sync_fallback)(flaky(1))() == "sync: Boom"
    assert await resilient(fallback=async_fallback)(flaky(1))() == "async: Boom"
    assert isinstance(seen[0], Boom)


async def test_fallback_on_open_circuit() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    composed = resilient(breaker=breaker, fallback=lambda exc: type(exc).__name__)(flaky(100))
    assert await composed() == "Boom"
    assert await composed() == "CircuitOpen"


async def test_fallback_runs_outside_the_expired_deadline(clock: Clock) -> None:
    async def cached(exc: Exception) -> str:
        await anyio.sleep(1)  # would be cancelled at once inside the expired deadline
        return f"cached after {type(exc).__name__}"

    @resilient(timeout=2, fallback=cached)
    async def op() -> str:
        await anyio.sleep(60)
        return "fresh"

    t0 = clock.now()
    assert await op() == "cached after DeadlineExceeded"
    assert clock.now() - t0 == clock.approx(3)


async def test_fallback_never_on_cancellation() -> None:
    used: list[BaseException] = []

    @resilient(
        retry=anyway.retry(on=lambda exc: True, backoff=NO_WAIT),
        fallback=used.append,
    )
    async def op() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(1) as scope:
        await op()
    assert scope.cancelled_caught
    assert used == []


async def test_fallback_errors_chain_the_original() -> None:
    def broken(exc: Exception) -> None:
        raise RuntimeError("fallback failed")

    with pytest.raises(RuntimeError, match="fallback failed") as info:
        await resilient(fallback=broken)(flaky(1))()
    assert isinstance(info.value.__context__, Boom)


async def test_fallback_does_not_catch_base_exceptions() -> None:
    with pytest.raises(KeyboardInterrupt):
        await resilient(fallback=0)(flaky(1, KeyboardInterrupt))()


def test_no_fallback_sentinel() -> None:
    assert repr(NO_FALLBACK) == "NO_FALLBACK"
    assert NO_FALLBACK is anyway.NO_FALLBACK


# --- cancellation through every layer ---------------------------------------------------


async def test_cancellation_leaves_every_layer_clean() -> None:
    breaker = CircuitBreaker(failure_threshold=1, window=None)
    bulkhead = Bulkhead(1)
    limiter = RateLimiter(1, per=1, burst=1)

    @resilient(
        timeout=30,
        retry=anyway.retry(on=lambda exc: True, backoff=NO_WAIT),
        breaker=breaker,
        bulkhead=bulkhead,
        limiter=limiter,
        attempt_timeout=20,
    )
    async def op() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(1) as scope:
        await op()
    assert scope.cancelled_caught
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().call_count == 0
    assert bulkhead.active == 0


async def test_slow_breaker_with_cancelled_attempt() -> None:
    breaker = CircuitBreaker(window=CountWindow(1), slow_call_duration=1)
    events: list[PolicyEvent] = []

    @resilient(breaker=breaker, bulkhead=Bulkhead(2, hooks=events.append))
    async def op() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(5):
        await op()
    assert breaker.statistics().call_count == 0
    assert not any(isinstance(e, BreakerStateChanged) for e in events)


async def test_breaker_in_half_open_through_resilient(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, window=None)
    composed = resilient(breaker=breaker, bulkhead=Bulkhead(5))(flaky(1))
    with pytest.raises(Boom):
        await composed()
    await anyio.sleep(2.5)
    assert await composed() == "ok"
    assert breaker.state is CircuitState.CLOSED


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"timeout": 0}, ValueError, "timeout must be > 0, got 0 \\(or None\\)"),
        ({"timeout": -1}, ValueError, "timeout must be > 0, got -1"),
        ({"timeout": math.nan}, ValueError, "timeout must be a number, got NaN"),
        ({"timeout": math.inf}, ValueError, "timeout must be finite"),
        ({"timeout": "5"}, TypeError, "timeout must be a number"),
        ({"attempt_timeout": 0}, ValueError, "attempt_timeout must be > 0, got 0"),
        ({"retry": 3}, TypeError, "retry must be a policy made by anyway.retry\\(on=...\\), got 3"),
        ({"breaker": object()}, TypeError, "breaker must be an anyway.CircuitBreaker"),
        ({"bulkhead": Bulkhead}, TypeError, "bulkhead must be an instance, got the class Bulkhead"),
        ({"bulkhead": 10}, TypeError, "bulkhead must be an async context manager such as"),
        (
            {"limiter": KeyedRateLimiter(1)},
            TypeError,
            "a KeyedRateLimiter needs a key: use limiter.limit\\(key\\)",
        ),
        ({"limiter": RateLimiter}, TypeError, "limiter must be an instance, got the class"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        resilient(**kwargs)


def test_fallback_coroutine_object_is_refused() -> None:
    async def compute(exc: Exception) -> int:
        return 0

    with pytest.raises(TypeError, match="not a coroutine object"):
        resilient(fallback=compute(Boom()))


def test_sync_functions_are_refused() -> None:
    def sync() -> None:
        pass

    with pytest.raises(TypeError, match="must be an async function"):
        resilient(timeout=1)(sync)  # type: ignore[arg-type]
