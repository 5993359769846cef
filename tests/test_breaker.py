"""CircuitBreaker: transitions, half-open probes, what counts, the ways in."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest

import anyway
from anyway import (
    BreakerSnapshot,
    BreakerStateChanged,
    BulkheadFull,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    PolicyEvent,
)
from anyway.testing import Clock
from breaker_helpers import (
    Boom,
    Other,
    changes,
    fail,
    rejections,
    succeed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
STORE_TIMEOUT = 5.0  # how long a breaker waits, shielded, to give a slot back


@pytest.fixture(autouse=True)
def _no_leaked_global_hooks() -> Iterator[None]:
    before = anyway.global_hooks()
    yield
    assert anyway.global_hooks() == before


# --- transitions -------------------------------------------------------------------


async def test_opens_after_threshold_consecutive_failures() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=3, name="db", hooks=events.append)
    await fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.statistics().failure_count == 2
    with pytest.raises(Boom) as info:
        async with breaker:
            raise Boom("third")
    assert breaker.state is OPEN
    assert info.value.__notes__ == ["circuit breaker 'db' opened: 3 consecutive failures"]
    assert events == [
        BreakerStateChanged(
            policy="db", old=CLOSED, new=OPEN, reason="3 consecutive failures", kind="failures"
        )
    ]
    assert breaker.statistics().failure_count == 0  # a new state counts from zero


async def test_success_resets_the_streak() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    await fail(breaker, 2)
    await succeed(breaker)
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    ) == (0, 1, 3)
    await fail(breaker, 2)
    assert breaker.state is CLOSED
    await fail(breaker)
    assert breaker.state is OPEN


async def test_open_rejects_without_running_and_says_when(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5, name="db", hooks=events.append)
    await fail(breaker)
    t0 = clock.now()
    await anyio.sleep(2)
    ran = False
    with pytest.raises(CircuitOpen) as info:
        async with breaker:
            ran = True
    assert not ran
    assert info.value.name == "db"
    assert info.value.retry_after == clock.approx(5 - (clock.now() - t0))
    assert "circuit breaker 'db' is open; a probe is allowed in" in str(info.value)
    assert breaker.statistics().retry_after == clock.approx(5 - (clock.now() - t0))
    (rejected,) = rejections(events)
    assert rejected.by == "breaker"
    assert rejected.policy == "db"
    assert rejected.retry_after == info.value.retry_after


async def test_half_opens_after_exactly_recovery_time(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=5)
    await fail(breaker)
    t0 = clock.now()
    await anyio.sleep(3)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpen) as info:
        await succeed(breaker)
    assert info.value.retry_after == clock.approx(5 - (clock.now() - t0))
    await anyio.sleep(5 - (clock.now() - t0))
    # exactly at the deadline (timers never fire early, on real time either)
    assert clock.now() - t0 == clock.approx(5)
    assert breaker.state is HALF_OPEN
    assert breaker.statistics().retry_after is None
    await anyio.sleep(1.5)
    assert breaker.state is HALF_OPEN


async def test_half_open_closes_when_every_probe_succeeds(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=2, half_open_max_calls=2, hooks=events.append
    )
    await fail(breaker)
    await anyio.sleep(3)
    await succeed(breaker)
    assert breaker.state is HALF_OPEN
    assert (
        breaker.statistics().success_count,
        breaker.statistics().call_count,
        breaker.statistics().probes_in_flight,
    ) == (1, 1, 0)
    await succeed(breaker)
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert [e.reason for e in events if isinstance(e, BreakerStateChanged)] == [
        "1 consecutive failure",
        "2 s since it opened",
        "2 probes succeeded",
    ]


async def test_failed_probe_reopens_for_a_fresh_recovery_time(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=4, half_open_max_calls=2, hooks=events.append, name="db"
    )
    await fail(breaker)
    await anyio.sleep(5)
    await succeed(breaker)  # one probe succeeded, one to go...
    await anyio.lowlevel.checkpoint()
    with pytest.raises(Boom) as info:
        async with breaker:
            raise Boom
    assert info.value.__notes__ == [f"circuit breaker {breaker.name!r} opened: a probe failed"]
    t1 = clock.now()
    assert breaker.state is OPEN
    assert breaker.statistics().retry_after == clock.approx(4)
    await anyio.sleep(2.5)
    assert breaker.state is OPEN
    await anyio.sleep(4 - (clock.now() - t1) + 1.5)
    assert breaker.state is HALF_OPEN
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


@pytest.mark.parametrize("max_calls", [1, 3])
async def test_half_open_runs_at_most_max_calls_probes(clock: Clock, max_calls: int) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(
        failure_threshold=1, recovery_time=1, half_open_max_calls=max_calls, hooks=events.append
    )
    await fail(breaker)
    await anyio.sleep(2.5)
    running = peak = ran = 0
    refused: list[CircuitOpen] = []

    async def call() -> None:
        nonlocal running, peak, ran
        try:
            async with breaker:
                running += 1
                ran += 1
                peak = max(peak, running)
                await anyio.sleep(1)
                running -= 1
        except CircuitOpen as exc:
            refused.append(exc)

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
    assert clock.now() - t0 == clock.approx(1)
    assert (ran, peak, len(refused)) == (max_calls, max_calls, 10 - max_calls)
    assert all(exc.retry_after is None for exc in refused)
    probes = "1 probe is" if max_calls == 1 else f"{max_calls} probes are"
    assert f"is half-open and its {probes} already running" in str(refused[0])
    assert breaker.state is CLOSED
    assert len(rejections(events)) == 10 - max_calls


async def test_probes_count_toward_closing_while_in_flight(clock: Clock) -> None:
    # half_open_max_calls=2: one probe succeeded, one runs: a third call is
    # refused, though only one probe is running.
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, half_open_max_calls=2)
    await fail(breaker)
    await anyio.sleep(2.5)
    await succeed(breaker)

    async def slow_probe() -> None:
        async with breaker:
            await anyio.sleep(2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_probe)
        await anyio.sleep(1)
        assert breaker.statistics().probes_in_flight == 1
        with pytest.raises(CircuitOpen):
            await succeed(breaker)
    assert breaker.state is CLOSED


# --- cancellation is neither success nor failure -----------------------------------


@pytest.mark.parametrize("how", ["async with", "call", "decorator"])
async def test_cancelled_call_counts_nothing_when_closed(how: str) -> None:
    seen: list[BaseException] = []

    def predicate(exc: Exception) -> bool:
        seen.append(exc)
        return True  # "everything is a failure": cancellation still is not

    breaker = CircuitBreaker(failure_threshold=3, on=predicate)
    await fail(breaker, 2)
    await succeed(breaker)
    await fail(breaker, 2)
    before = (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    )

    async def hang() -> None:
        await anyio.sleep_forever()

    guarded = breaker(hang)
    with anyio.move_on_after(1) as scope:
        if how == "async with":
            async with breaker:
                await hang()
        elif how == "call":
            await breaker.call(hang)
        else:
            await guarded()
    assert scope.cancelled_caught
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    ) == before
    assert breaker.state is CLOSED
    assert len(seen) == 4  # the predicate never saw the cancellation


@pytest.mark.parametrize("how", ["async with", "call", "decorator"])
async def test_cancelled_probe_frees_its_slot(clock: Clock, how: str) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, hooks=events.append)
    await fail(breaker)
    await anyio.sleep(2.5)

    async def hang() -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        if how == "async with":

            async def probe() -> None:
                async with breaker:
                    await hang()

            tg.start_soon(probe)
        elif how == "call":
            tg.start_soon(breaker.call, hang)
        else:
            tg.start_soon(breaker(hang))
        await anyio.sleep(1)
        assert breaker.statistics().probes_in_flight == 1
        with pytest.raises(CircuitOpen):
            await succeed(breaker)
        tg.cancel_scope.cancel()
    assert breaker.state is HALF_OPEN
    assert (
        breaker.statistics().probes_in_flight,
        breaker.statistics().success_count,
        breaker.statistics().failure_count,
    ) == (0, 0, 0)
    await succeed(breaker)  # the freed slot takes the next probe
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


async def test_keyboard_interrupt_like_errors_are_not_counted() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    with pytest.raises(GeneratorExit):
        async with breaker:
            raise GeneratorExit
    assert breaker.state is CLOSED
    assert breaker.statistics().call_count == 0


# --- what counts ---------------------------------------------------------------------


async def test_other_errors_pass_through_uncounted() -> None:
    breaker = CircuitBreaker(failure_threshold=2, on=Boom)
    await fail(breaker)
    await fail(breaker, 3, exc=Other)
    assert (
        breaker.statistics().failure_count,
        breaker.statistics().success_count,
        breaker.statistics().call_count,
    ) == (1, 0, 1)
    await fail(breaker)
    assert breaker.state is OPEN


async def test_ignored_error_frees_the_probe_slot_without_closing() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, on=(Boom, KeyError))
    await fail(breaker, exc=KeyError)
    await anyio.sleep(2.5)
    await fail(breaker, exc=Other)
    assert breaker.state is HALF_OPEN
    assert breaker.statistics().probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_predicate_decides() -> None:
    class Status(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(code)
            self.code = code

    breaker = CircuitBreaker(
        failure_threshold=2, on=lambda e: isinstance(e, Status) and e.code >= 500
    )

    async def status(code: int) -> None:
        with pytest.raises(Status):
            async with breaker:
                raise Status(code)

    for _ in range(5):
        await status(404)
    assert (breaker.statistics().failure_count, breaker.statistics().call_count) == (0, 0)
    await status(503)
    await status(502)
    assert breaker.state is OPEN


async def test_broken_predicate_propagates_and_frees_the_probe_slot() -> None:
    def predicate(exc: Exception) -> bool:
        if isinstance(exc, Other):
            raise RuntimeError("predicate bug")
        return True

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, on=predicate)
    await fail(breaker)
    await anyio.sleep(2.5)
    with pytest.raises(RuntimeError, match="predicate bug") as info:
        async with breaker:
            raise Other
    assert isinstance(info.value.__context__, Other)
    assert breaker.statistics().probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_rejections_of_other_policies_are_not_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=1, on=lambda e: True)
    await fail(breaker, 3, exc=BulkheadFull)
    assert breaker.state is CLOSED
    assert breaker.statistics().call_count == 0


@pytest.mark.parametrize("how", ["call", "async with, slow calls tracked", "async with"])
async def test_outcome_of_a_call_admitted_before_a_change(how: str) -> None:
    if how == "call":
        breaker = CircuitBreaker(failure_threshold=1)
    else:
        breaker = CircuitBreaker(window=CountWindow(1), slow_call_duration=60)
        if how == "async with":
            breaker = CircuitBreaker(failure_threshold=1)
    started = anyio.Event()
    release = anyio.Event()

    async def slow_failure() -> None:
        started.set()
        await release.wait()
        raise Boom

    async def guarded_failure() -> None:
        if how == "call":
            await breaker.call(slow_failure)
        else:
            async with breaker:
                await slow_failure()

    async def run() -> None:
        with pytest.raises(Boom):
            await guarded_failure()

    success_started = anyio.Event()

    async def slow_success() -> None:
        success_started.set()
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await started.wait()
        if how == "call":
            tg.start_soon(breaker.call, slow_success)
            await success_started.wait()
        await breaker.open()
        await breaker.close()
        release.set()
    if how == "async with":
        # Light mode (see _breaker._Entry): a call admitted while closed that
        # ends while closed counts, even across an operator's open/close.
        assert breaker.state is OPEN
    else:
        assert breaker.state is CLOSED  # admitted before the change: ignored
        assert breaker.statistics().call_count == 0


# --- decorator and call --------------------------------------------------------------


async def test_decorator_preserves_the_function() -> None:
    breaker = CircuitBreaker(failure_threshold=2)

    @breaker
    async def add(a: int, b: int = 1) -> int:
        """Adds."""
        if a < 0:
            raise Boom
        return a + b

    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    assert await add(1, b=2) == 3
    with pytest.raises(Boom):
        await add(-1)
    with pytest.raises(Boom):
        await add(-1)
    with pytest.raises(CircuitOpen):
        await add(1)


async def test_decorator_on_methods_and_callable_objects() -> None:
    breaker = CircuitBreaker()

    class Client:
        @breaker
        async def get(self, key: str) -> str:
            return key * 2

    class Callable:
        async def __call__(self, x: int) -> int:
            return -x

    assert await Client().get("a") == "aa"
    assert await breaker(Callable())(3) == -3

    async def echo(prefix: str, key: str) -> str:
        return prefix + key

    assert await breaker(functools.partial(echo, ">"))("b") == ">b"
    assert await breaker.call(echo, "<", "c") == "<c"
    assert breaker.statistics().success_count == 4


async def test_decorator_refuses_sync_functions() -> None:
    breaker = CircuitBreaker()

    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match="must be an async function \\(async def\\), got "):
        breaker(sync)  # type: ignore[arg-type]

    async def coro() -> None:
        pass

    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        breaker(coro())  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["call", "decorator"])
async def test_call_and_decorator_paths_through_every_state(clock: Clock, how: str) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1)

    async def op(x: int) -> int:
        if x < 0:
            raise Boom
        return x

    run: Callable[[int], Awaitable[int]] = (
        (lambda x: breaker.call(op, x)) if how == "call" else breaker(op)
    )
    with pytest.raises(Boom):
        await run(-1)
    with pytest.raises(CircuitOpen):
        await run(1)
    await anyio.sleep(2.5)
    assert await run(2) == 2
    assert breaker.state is CLOSED


async def test_slow_tracking_through_call_and_decorator() -> None:
    breaker = CircuitBreaker(window=CountWindow(2), slow_call_duration=1)

    async def op(seconds: float) -> None:
        await anyio.sleep(seconds)

    await breaker.call(op, 2)
    await breaker(op)(0.5)
    counted = CircuitBreaker(window=CountWindow(3))
    await counted.call(op, 0)
    await counted(op)(0)
    assert counted.statistics().success_count == 2
    assert (breaker.statistics().slow_call_count, breaker.statistics().call_count) == (1, 2)
    assert breaker.state is CLOSED  # 50 % slow < 100 %


async def test_nesting_the_same_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, half_open_max_calls=2)
    async with breaker, breaker:
        pass
    assert breaker.statistics().success_count == 2
    await fail(breaker)
    await anyio.sleep(2.5)
    async with breaker:
        async with breaker:
            assert breaker.statistics().probes_in_flight == 2
        assert breaker.state is HALF_OPEN
    assert breaker.state is CLOSED


async def test_closed_call_that_ends_after_the_circuit_opened_is_ignored() -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1)
    async with anyio.create_task_group() as tg:

        async def failing_call() -> None:
            async with breaker:
                await anyio.sleep(5)
                raise Boom

        async def long_call() -> None:
            with pytest.raises(Boom):
                await failing_call()

        tg.start_soon(long_call)
        await anyio.sleep(1)
        await fail(breaker)
        await anyio.sleep(2.5)
        assert breaker.state is HALF_OPEN
    assert breaker.state is HALF_OPEN  # the late failure was not a probe


# --- what on= accepts --------------------------------------------------------------


async def test_on_accepts_base_exception_types_but_control_flow_never_counts() -> None:
    class Stop(BaseException):
        pass

    breaker = CircuitBreaker(failure_threshold=1, on=(Stop, KeyboardInterrupt))
    await fail(breaker, exc=KeyboardInterrupt)  # control flow: never a failure
    assert breaker.statistics() == BreakerSnapshot(state=CLOSED)
    await fail(breaker, exc=Stop)
    assert breaker.state is OPEN


def test_an_explicit_failure_threshold_is_refused_with_a_window_even_the_default() -> None:
    with pytest.raises(ValueError, match="failure_threshold=5 counts consecutive failures"):
        CircuitBreaker(window=CountWindow(10), failure_threshold=5)
    assert CircuitBreaker(window=CountWindow(10)).config.window == CountWindow(10)


# --- audit: the half-open transition's hooks cannot leak a probe slot ----------------


@pytest.mark.parametrize("how", ["async with", "call", "decorator"])
async def test_cancelled_while_hooks_see_half_open_frees_the_probe_slot(
    clock: Clock, how: str
) -> None:
    # The call that turns OPEN into HALF_OPEN takes a probe slot, then awaits
    # the hooks; cancelled there, it must give the slot back (else the circuit
    # stays half-open, refusing every call, forever).
    async def slow_hook(event: PolicyEvent) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is HALF_OPEN:
            await anyio.sleep(2)

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, hooks=[slow_hook])
    await fail(breaker)
    await anyio.sleep(1.5)
    ran: list[str] = []

    async def work() -> None:
        ran.append("body")

    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        if how == "async with":
            async with breaker:
                await work()
        elif how == "call":
            await breaker.call(work)
        else:
            await breaker(work)()
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(1)
    assert ran == []
    assert breaker.state is HALF_OPEN
    assert breaker.statistics().probes_in_flight == 0
    await succeed(breaker)  # the slot takes the next probe
    assert breaker.state is CLOSED


async def test_a_raising_hook_at_half_open_frees_the_probe_slot(clock: Clock) -> None:
    def bad_hook(event: PolicyEvent) -> None:
        if isinstance(event, BreakerStateChanged) and event.new is HALF_OPEN:
            raise RuntimeError("hook is broken")

    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, hooks=bad_hook)
    await fail(breaker)
    await anyio.sleep(1.5)
    with pytest.raises(RuntimeError, match="hook is broken"):
        await succeed(breaker)
    assert (breaker.state, breaker.statistics().probes_in_flight) == (HALF_OPEN, 0)
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_call_with_a_sync_function_is_a_type_error_and_not_a_failure() -> None:
    breaker = CircuitBreaker(failure_threshold=1)

    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match=r"sync\(\.\.\.\) returned 1, which cannot be awaited"):
        await breaker.call(sync)  # type: ignore[arg-type]
    assert (breaker.state, breaker.statistics().call_count) == (
        CLOSED,
        0,
    )  # a bug here, not the dependency

    async def fetch() -> None:
        pass

    coro = fetch()
    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote"):
        await breaker.call(coro)  # type: ignore[arg-type]
    assert (breaker.state, breaker.statistics().call_count) == (CLOSED, 0)


# @@OPERATORS@@


async def test_async_with_counts_closed_calls_before_and_after_a_probe(clock: Clock) -> None:
    # `async with` keeps nothing for a call admitted while closed until some
    # call is admitted otherwise (a probe): before and after one, closed
    # calls are counted, and the probe's own outcome closes the circuit.
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=1.0)
    for _ in range(3):
        async with breaker:
            pass
    assert breaker.statistics().success_count == 3
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            async with breaker:
                1 / 0  # noqa: B018
    assert breaker.state is CircuitState.OPEN
    await anyio.sleep(1.0)
    async with breaker:  # the probe
        assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.state is CircuitState.CLOSED
    for _ in range(3):
        async with breaker:
            pass
    assert breaker.statistics().success_count == 3
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            async with breaker:
                1 / 0  # noqa: B018
    assert breaker.state is CircuitState.OPEN
