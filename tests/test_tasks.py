"""Task-group helpers: settle, race, hedge, map, map_all."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from outcome import Error, Value

import anyway
from anyway import DeadlineExceeded, DeadlineExpired, PolicyEvent
from anyway.testing import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

Cancelled = anyio.get_cancelled_exc_class


class Halt(BaseException):
    """A BaseException that is not a cancellation."""


def after(
    seconds: float, value: object = None, *, error: BaseException | None = None
) -> Callable[[], Awaitable[object]]:
    """An async function that waits *seconds*, then returns *value* or raises."""

    async def fn() -> object:
        await anyio.sleep(seconds)
        if error is not None:
            raise error
        return value

    fn.__qualname__ = f"after({seconds})"
    return fn


class Log:
    """Records what happens, with the (clock) time since it was created."""

    def __init__(self) -> None:
        self.t0 = anyio.current_time()
        self.entries: list[tuple[str, float]] = []

    def __call__(self, what: str) -> None:
        self.entries.append((what, anyio.current_time() - self.t0))

    def whats(self) -> list[str]:
        return [what for what, _ in self.entries]

    def at(self, what: str) -> float:
        (time,) = [t for w, t in self.entries if w == what]
        return time


def tracked(
    log: Log, name: str, seconds: float, value: object = None, *, cleanup: float = 0
) -> Callable[[], Awaitable[object]]:
    """An async function that logs start/done/cancelled and, if cancelled,
    runs a shielded cleanup of *cleanup* seconds before re-raising."""

    async def fn() -> object:
        log(f"{name} start")
        try:
            await anyio.sleep(seconds)
        except Cancelled():
            log(f"{name} cancelled")
            if cleanup:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(cleanup)
                log(f"{name} cleaned up")
            raise
        log(f"{name} done")
        return value

    return fn


# --- settle ---------------------------------------------------------------------


async def test_settle_returns_outcomes_in_argument_order(clock: Clock) -> None:
    t0 = clock.now()
    boom = ValueError("boom")
    results = await anyway.settle(after(3, "a"), after(1, error=boom), after(2, "c"))
    assert results == [Value("a"), Error(boom), Value("c")]
    assert clock.now() - t0 == clock.approx(3)  # concurrent: the slowest sets the pace


async def test_settle_failure_does_not_cancel_the_others() -> None:
    log = Log()
    results = await anyway.settle(tracked(log, "slow", 2, "ok"), after(1, error=KeyError("k")))
    assert isinstance(results[1], Error)
    assert results[0] == Value("ok")
    assert log.whats() == ["slow start", "slow done"]


async def test_settle_of_nothing() -> None:
    assert await anyway.settle() == []


async def test_settle_propagates_cancellation_after_cleanup(clock: Clock) -> None:
    log = Log()
    with anyio.move_on_after(1) as outer:
        await anyway.settle(tracked(log, "a", 5, cleanup=1), tracked(log, "b", 5))
        log("not reached")
    assert outer.cancelled_caught
    assert sorted(log.whats()) == [
        "a cancelled",
        "a cleaned up",
        "a start",
        "b cancelled",
        "b start",
    ]
    assert log.at("a cleaned up") == clock.approx(2)  # settle waited for the cleanup


async def test_settle_lets_other_base_exceptions_through() -> None:
    async def halt() -> None:
        await anyio.sleep(1)
        raise Halt

    with pytest.raises(Halt):  # as itself, not in an exception group
        await anyway.settle(halt, after(5))


async def test_settle_does_not_capture_an_error_raised_while_cancelled() -> None:
    async def bad_cleanup() -> None:
        try:
            await anyio.sleep(10)
        finally:
            raise RuntimeError("cleanup failed")

    with pytest.raises(RuntimeError, match="cleanup failed"), anyio.move_on_after(1):
        await anyway.settle(bad_cleanup, after(10))


async def test_settle_several_cleanup_errors_form_a_group() -> None:
    async def bad_cleanup() -> None:
        try:
            await anyio.sleep(10)
        finally:
            raise RuntimeError("cleanup failed")

    with pytest.raises(BaseExceptionGroup) as info, anyio.move_on_after(1):
        await anyway.settle(bad_cleanup, bad_cleanup)
    assert [str(e) for e in info.value.exceptions] == ["cleanup failed"] * 2


async def test_settle_bad_input() -> None:
    coro = after(1)()
    with pytest.raises(
        TypeError,
        match=re.escape(
            "settle() argument 2 must be an async function, not a coroutine object:"
            " you probably wrote after(1)(...) where you meant after(1)"
        ),
    ):
        await anyway.settle(after(1), coro)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=re.escape("settle() argument 1 must be an async function, got 5: pass")
    ):
        await anyway.settle(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("got the class int")):
        await anyway.settle(int)  # type: ignore[arg-type]


# --- settle(timeout=): a batch deadline that keeps what finished -----------------


@pytest.fixture
def events() -> Iterator[list[PolicyEvent]]:
    """The events emitted during the test."""
    seen: list[PolicyEvent] = []
    anyway.add_hook(seen.append)
    try:
        yield seen
    finally:
        anyway.remove_hook(seen.append)


async def test_settle_timeout_keeps_what_finished(clock: Clock, events: list[PolicyEvent]) -> None:
    log = Log()
    boom = ValueError("boom")
    t0 = clock.now()
    results = await anyway.settle(
        after(1, "a"), tracked(log, "slow", 10, cleanup=1), after(2, error=boom), timeout=3
    )
    log("returned")
    assert results[0] == Value("a")
    assert results[2] == Error(boom)
    assert isinstance(results[1], Error)
    late = results[1].error
    assert isinstance(late, DeadlineExceeded)
    assert str(late) == (
        "settle() argument 2 (tracked.<locals>.fn) did not finish within the timeout of 3 s"
    )
    assert late.seconds == 3
    # the slow call was cancelled at 3 and its cleanup ran before settle returned
    assert log.entries == [
        ("slow start", clock.approx(0)),
        ("slow cancelled", clock.approx(3)),
        ("slow cleaned up", clock.approx(4)),
        ("returned", clock.approx(4)),
    ]
    assert clock.now() - t0 == clock.approx(4)
    assert [(e.policy, e.seconds) for e in events if isinstance(e, DeadlineExpired)] == [
        ("settle", 3)
    ]


async def test_settle_timeout_not_reached(clock: Clock, events: list[PolicyEvent]) -> None:
    t0 = clock.now()
    assert await anyway.settle(after(1, "a"), after(2, "b"), timeout=3) == [
        Value("a"),
        Value("b"),
    ]
    assert clock.now() - t0 == clock.approx(2)
    assert await anyway.settle(after(1, "a"), timeout=math.inf) == [Value("a")]
    assert events == []


async def test_settle_timeout_zero_cancels_every_waiting_call(clock: Clock) -> None:
    t0 = clock.now()
    results = await anyway.settle(after(1, "a"), after(2, "b"), timeout=0)
    assert clock.now() - t0 == clock.approx(0)
    assert [type(r.error) for r in results if isinstance(r, Error)] == [DeadlineExceeded] * 2
    # each outcome has its own exception (tracebacks do not mix)
    assert results[0].error is not results[1].error  # type: ignore[union-attr]


async def test_settle_timeout_still_propagates_outer_cancellation(clock: Clock) -> None:
    log = Log()
    with anyio.move_on_after(1) as outer:
        await anyway.settle(tracked(log, "a", 5), after(0.5, "b"), timeout=3)
        log("not reached")
    assert outer.cancelled_caught
    assert log.whats() == ["a start", "a cancelled"]
    assert log.at("a cancelled") == clock.approx(1)


async def test_settle_timeout_and_outer_deadline_at_the_same_time() -> None:
    reached = []
    with anyio.move_on_after(2) as outer:
        await anyway.settle(after(5), timeout=2)
        reached.append("returned")  # the outer cancellation wins: settle does not return
    assert outer.cancelled_caught
    assert reached == []


async def test_settle_timeout_does_not_capture_a_failing_cleanup() -> None:
    async def bad_cleanup() -> None:
        try:
            await anyio.sleep(10)
        finally:
            raise RuntimeError("cleanup failed")

    with pytest.raises(RuntimeError, match="cleanup failed"):
        await anyway.settle(bad_cleanup, after(1), timeout=2)


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        (-1, ValueError, "timeout must be >= 0, got -1 (or None)"),
        (math.nan, ValueError, "timeout must be a number, got NaN (or None)"),
        ("1", TypeError, "timeout must be a number, got '1' (str) (or None)"),
    ],
)
async def test_settle_timeout_bad_input(
    timeout: object,  # noqa: ASYNC109 - a parameter of the test
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        await anyway.settle(after(1), timeout=timeout)  # type: ignore[arg-type]


@settings(
    deadline=None, max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    durations=st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0]), max_size=5),
    timeout=st.sampled_from([0.25, 0.75, 1.25, 1.75, 2.25]),
)
async def test_settle_timeout_property(
    clock: Clock,
    durations: list[float],
    timeout: float,  # noqa: ASYNC109 - a parameter of the test
) -> None:
    t0 = clock.now()
    results = await anyway.settle(*[after(d, i) for i, d in enumerate(durations)], timeout=timeout)
    # in argument order: a value for each call shorter than the timeout, else the deadline
    assert [r.value if isinstance(r, Value) else type(r.error) for r in results] == [
        i if d < timeout else DeadlineExceeded for i, d in enumerate(durations)
    ]
    assert clock.now() - t0 == clock.approx(min(timeout, max(durations, default=0.0)))


# --- a sync function where an async one is needed: a TypeError, never an outcome --


def sync_fn(*args: object) -> int:
    return 1


FIX = "which cannot be awaited: pass an async function (async def)"


async def test_settle_sync_function_is_a_type_error_at_the_call(clock: Clock) -> None:
    log = Log()
    with pytest.raises(TypeError) as info:
        await anyway.settle(tracked(log, "good", 5, cleanup=1), sync_fn)  # type: ignore[arg-type]
    assert type(info.value).__name__ == "NotAwaitableError"  # itself, not in a group
    assert str(info.value).startswith(f"settle() argument 2: sync_fn(...) returned 1, {FIX}")
    # the other call was cancelled and finished first
    assert log.entries == [
        ("good start", clock.approx(0)),
        ("good cancelled", clock.approx(0)),
        ("good cleaned up", clock.approx(1)),
    ]


async def test_settle_several_sync_functions_are_one_type_error() -> None:
    with pytest.raises(
        TypeError, match=r"^settle\(\) argument [12]: sync_fn\(\.\.\.\) returned 1"
    ) as info:
        await anyway.settle(sync_fn, sync_fn, timeout=1)  # type: ignore[arg-type]
    assert type(info.value).__name__ == "NotAwaitableError"  # one, not a group
    assert info.value.__notes__ == ["(1 other calls made the same mistake at the same time)"]


@pytest.mark.parametrize("first", [True, False])
async def test_race_does_not_hide_a_sync_function_behind_a_winner(first: bool) -> None:
    async def instant() -> str:
        return "won"

    fns = [sync_fn, instant] if first else [instant, sync_fn]
    with pytest.raises(TypeError, match=re.escape(f"sync_fn(...) returned 1, {FIX}")):
        await anyway.race(*fns)  # type: ignore[arg-type]


async def test_hedge_sync_function_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=re.escape("hedge() fn (copy 1): sync_fn(...) returned")):
        await anyway.hedge(sync_fn, delay=0, attempts=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("helper", ["settle", "race"])
async def test_the_late_binding_trap_is_refused(helper: str) -> None:
    seen: list[int] = []

    async def fetch(i: int) -> int:
        seen.append(i)
        return i

    fns = [lambda: fetch(i) for i in range(3)]  # noqa: B023 - the trap itself: all call fetch(2)
    with pytest.raises(
        TypeError, match=re.escape(f"{helper}(): several functions are the same closure")
    ) as info:
        await getattr(anyway, helper)(*fns)
    assert "functools.partial(fetch, i)" in str(info.value)
    assert seen == []  # refused before anything ran
    # the fix: bind the value now
    fixed = [functools.partial(fetch, i) for i in range(3)]
    if helper == "settle":
        assert await anyway.settle(*fixed) == [Value(0), Value(1), Value(2)]
    else:
        assert await anyway.race(*fixed) in (0, 1, 2)
    one = fns[0]
    assert await anyway.settle(one, one) == [Value(2), Value(2)]  # one function twice is fine


# --- race -----------------------------------------------------------------------


async def test_race_first_success_wins(clock: Clock) -> None:
    t0 = clock.now()
    winner = await anyway.race(after(1, error=OSError("down")), after(3, "slow"), after(2, "fast"))
    assert winner == "fast"
    assert clock.now() - t0 == clock.approx(2)


async def test_race_losers_finish_their_cleanup_before_it_returns(clock: Clock) -> None:
    log = Log()
    winner = await anyway.race(tracked(log, "loser", 10, cleanup=1), tracked(log, "winner", 2, "w"))
    log("race returned")
    assert winner == "w"
    assert sorted(log.entries[:2]) == [
        ("loser start", clock.approx(0)),
        ("winner start", clock.approx(0)),
    ]
    assert log.entries[2:] == [
        ("winner done", clock.approx(2)),
        ("loser cancelled", clock.approx(2)),
        ("loser cleaned up", clock.approx(3)),
        ("race returned", clock.approx(3)),
    ]


async def test_race_all_fail_raises_a_group_in_argument_order(clock: Clock) -> None:
    errors = [OSError("a"), KeyError("b"), ValueError("c")]
    t0 = clock.now()
    with pytest.raises(ExceptionGroup) as info:
        await anyway.race(
            after(3, error=errors[0]), after(1, error=errors[1]), after(2, error=errors[2])
        )
    assert str(info.value) == "all 3 racers failed (3 sub-exceptions)"
    assert list(info.value.exceptions) == errors
    assert [e.__notes__ for e in errors] == [
        ["raised by race() argument #1"],
        ["raised by race() argument #2"],
        ["raised by race() argument #3"],
    ]
    assert clock.now() - t0 == clock.approx(3)


@pytest.mark.parametrize("success_first", [True, False])
async def test_race_tie_between_a_failure_and_a_success(success_first: bool) -> None:
    fns = [after(1, "ok"), after(1, error=OSError("down"))]
    if not success_first:
        fns.reverse()
    assert await anyway.race(*fns) == "ok"


async def test_race_propagates_outer_cancellation(clock: Clock) -> None:
    log = Log()
    with anyio.move_on_after(1) as outer:
        await anyway.race(tracked(log, "a", 5), tracked(log, "b", 5))
        log("not reached")
    assert outer.cancelled_caught
    assert sorted(log.whats()) == ["a cancelled", "a start", "b cancelled", "b start"]


async def test_race_loser_failing_its_cleanup_is_not_lost() -> None:
    async def bad_loser() -> None:
        try:
            await anyio.sleep(10)
        except Cancelled():
            raise RuntimeError("cleanup failed") from None

    with pytest.raises(RuntimeError, match="cleanup failed"):
        await anyway.race(bad_loser, after(1, "w"))


async def test_race_several_losers_failing_their_cleanup_form_a_group() -> None:
    async def bad_loser() -> None:
        try:
            await anyio.sleep(10)
        except Cancelled():
            raise RuntimeError("cleanup failed") from None

    with pytest.raises(ExceptionGroup) as info:
        await anyway.race(bad_loser, bad_loser, after(1, "w"))
    assert [str(e) for e in info.value.exceptions] == ["cleanup failed"] * 2


async def test_a_cleanup_error_is_found_deep_in_the_context_chain() -> None:
    async def nested_cleanup_error() -> None:
        try:
            await anyio.sleep(10)
        except Cancelled() as cancel:
            try:
                raise BaseExceptionGroup("while cancelled", [cancel])
            except BaseExceptionGroup:
                try:
                    raise OSError("flush failed")
                except OSError:
                    raise RuntimeError("cleanup failed") from None

    with pytest.raises(RuntimeError, match="cleanup failed"):
        await anyway.race(nested_cleanup_error, after(1, "w"))


async def test_race_tie_between_two_successes() -> None:
    assert await anyway.race(after(1, "a"), after(1, "b")) in ("a", "b")

    async def instant(value: str) -> str:
        return value

    assert await anyway.race(lambda: instant("a"), lambda: instant("b")) in ("a", "b")


async def test_race_bad_input() -> None:
    with pytest.raises(ValueError, match=re.escape("race() needs at least one async function")):
        await anyway.race()
    with pytest.raises(
        TypeError, match=re.escape("race() argument 1 must be an async function, got None: pass")
    ):
        await anyway.race(None)  # type: ignore[arg-type]


# --- hedge ----------------------------------------------------------------------


class Copies:
    """An async function whose n-th call takes durations[n] and then
    returns f"copy {n}", or raises when the duration is given as an
    exception (raised after one second); logs starts, ends and cancellations."""

    def __init__(self, *durations: float | BaseException, cleanup: float = 0) -> None:
        self.durations = durations
        self.cleanup = cleanup
        self.log = Log()
        self.calls = 0
        self.__qualname__ = "Copies"

    async def __call__(self, tag: str = "copy") -> str:
        n = self.calls
        self.calls += 1
        self.log(f"start {n}")
        duration = self.durations[n]
        try:
            await anyio.sleep(1 if isinstance(duration, BaseException) else duration)
        except Cancelled():
            self.log(f"cancelled {n}")
            if self.cleanup:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(self.cleanup)
                self.log(f"cleaned up {n}")
            raise
        if isinstance(duration, BaseException):
            self.log(f"failed {n}")
            raise duration
        self.log(f"done {n}")
        return f"{tag} {n}"


async def test_hedge_starts_a_backup_after_the_delay(clock: Clock) -> None:
    fn = Copies(10, 1)
    t0 = clock.now()
    assert await anyway.hedge(fn, "copy", delay=2) == "copy 1"
    assert clock.now() - t0 == clock.approx(3)
    assert fn.log.entries == [
        ("start 0", clock.approx(0)),
        ("start 1", clock.approx(2)),
        ("done 1", clock.approx(3)),
        ("cancelled 0", clock.approx(3)),
    ]


async def test_hedge_no_backup_when_the_first_copy_is_fast(clock: Clock) -> None:
    fn = Copies(1, 1)
    assert await anyway.hedge(fn, delay=3) == "copy 0"
    assert fn.calls == 1


async def test_hedge_starts_a_backup_at_once_when_a_copy_fails(clock: Clock) -> None:
    fn = Copies(OSError("down"), 1)
    assert await anyway.hedge(fn, delay=3) == "copy 1"
    assert fn.log.entries == [
        ("start 0", clock.approx(0)),
        ("failed 0", clock.approx(1)),
        ("start 1", clock.approx(1)),  # not at 3
        ("done 1", clock.approx(2)),
    ]


async def test_hedge_replaces_a_failure_even_while_other_copies_run(clock: Clock) -> None:
    fn = Copies(10, OSError("down"), 10, 1)
    assert await anyway.hedge(fn, delay=2, attempts=4) == "copy 3"
    assert [e for e in fn.log.entries if e[0].startswith("start")] == [
        ("start 0", clock.approx(0)),
        ("start 1", clock.approx(2)),
        ("start 2", clock.approx(3)),  # copy 1 failed at 3: replaced at once
        ("start 3", clock.approx(5)),  # then the delay again
    ]


async def test_hedge_two_failures_at_once_start_two_replacements(clock: Clock) -> None:
    log = Log()

    async def fn() -> int:
        n = len(log.entries)
        log(f"start {n}")
        if n < 2:  # copy 0 (started at 0) and copy 1 (at 2) both fail at 3
            await anyio.sleep(3 if n == 0 else 1)
            raise OSError(n)
        await anyio.sleep(1)
        return n

    assert await anyway.hedge(fn, delay=2, attempts=4) in (2, 3)
    assert [t for _, t in log.entries] == [
        clock.approx(0),
        clock.approx(2),
        clock.approx(3),
        clock.approx(3),
    ]


async def test_hedge_never_exceeds_attempts(clock: Clock) -> None:
    fn = Copies(5, 5, 5, 5)
    t0 = clock.now()
    assert await anyway.hedge(fn, delay=1, attempts=3) == "copy 0"
    assert fn.calls == 3  # started at 0, 1 and 2; no fourth at 3
    assert clock.now() - t0 == clock.approx(5)


async def test_hedge_all_fail_raises_a_group_in_start_order(clock: Clock) -> None:
    errors = [OSError("a"), OSError("b"), OSError("c")]
    fn = Copies(*errors)
    t0 = clock.now()
    with pytest.raises(ExceptionGroup) as info:
        await anyway.hedge(fn, delay=5, attempts=3)
    assert str(info.value) == "all 3 copies of Copies failed (3 sub-exceptions)"
    assert list(info.value.exceptions) == errors
    assert errors[2].__notes__ == ["hedge() copy #3"]
    assert clock.now() - t0 == clock.approx(3)  # each failure started the next at once


async def test_hedge_one_attempt() -> None:
    with pytest.raises(ExceptionGroup, match="all 1 copies"):
        await anyway.hedge(Copies(OSError("x")), delay=0, attempts=1)
    assert await anyway.hedge(Copies(1), delay=0, attempts=1) == "copy 0"


async def test_hedge_delay_zero_starts_every_copy_at_once(clock: Clock) -> None:
    fn = Copies(3, 2, 1)
    assert await anyway.hedge(fn, delay=0, attempts=3) == "copy 2"
    assert [t for w, t in fn.log.entries if w.startswith("start")] == [clock.approx(0)] * 3


async def test_hedge_delay_inf_only_replaces_failures(clock: Clock) -> None:
    fn = Copies(OSError("x"), 5)
    assert await anyway.hedge(fn, delay=math.inf, attempts=3) == "copy 1"
    assert fn.log.at("start 1") == clock.approx(1)
    assert fn.calls == 2


async def test_hedge_win_at_the_moment_the_delay_expires() -> None:
    fn = Copies(1, 1)
    assert await anyway.hedge(fn, delay=1) == "copy 0"
    assert fn.calls in (1, 2)  # a copy started at that moment is cancelled at once


@pytest.mark.parametrize("failing", [1, 2])
async def test_hedge_copies_failing_their_cleanup_are_not_lost(failing: int) -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls > failing:
            await anyio.sleep(1)
            return "ok"
        try:
            await anyio.sleep(10)
        except Cancelled():
            raise RuntimeError("cleanup failed") from None
        return "slow"

    expected = RuntimeError if failing == 1 else ExceptionGroup
    with pytest.raises(expected):
        await anyway.hedge(fn, delay=0, attempts=failing + 1)


async def test_hedge_losers_finish_their_cleanup_before_it_returns(clock: Clock) -> None:
    fn = Copies(10, 1, cleanup=1)
    assert await anyway.hedge(fn, delay=1) == "copy 1"
    fn.log("returned")
    assert fn.log.entries[-3:] == [
        ("cancelled 0", clock.approx(2)),
        ("cleaned up 0", clock.approx(3)),
        ("returned", clock.approx(3)),
    ]


async def test_hedge_cancelled_while_waiting_for_the_delay(clock: Clock) -> None:
    fn = Copies(10, 10, cleanup=1)
    with anyio.move_on_after(1) as outer:
        await anyway.hedge(fn, delay=2)
    assert outer.cancelled_caught
    assert fn.log.entries == [  # no second copy; the first finished its cleanup
        ("start 0", clock.approx(0)),
        ("cancelled 0", clock.approx(1)),
        ("cleaned up 0", clock.approx(2)),
    ]


async def test_hedge_propagates_outer_cancellation(clock: Clock) -> None:
    fn = Copies(10, 10)
    with anyio.move_on_after(3) as outer:
        await anyway.hedge(fn, delay=1)
    assert outer.cancelled_caught
    assert sorted(w for w, _ in fn.log.entries) == [
        "cancelled 0",
        "cancelled 1",
        "start 0",
        "start 1",
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"delay": 1, "attempts": 0}, ValueError, "attempts must be >= 1, got 0"),
        ({"delay": 1, "attempts": 1.5}, TypeError, "attempts must be a whole number, got 1.5"),
        ({"delay": 1, "attempts": True}, TypeError, "attempts must be a whole number, got True"),
        ({"delay": -1}, ValueError, "delay must be >= 0, got -1"),
        ({"delay": math.nan}, ValueError, "delay must be a number, got NaN"),
    ],
)
async def test_hedge_bad_input(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        await anyway.hedge(Copies(1), **kwargs)  # type: ignore[arg-type]


async def test_hedge_coroutine_object() -> None:
    fn = Copies(1)
    with pytest.raises(TypeError, match="fn must be an async function, not a coroutine object"):
        await anyway.hedge(fn(), delay=1)  # type: ignore[arg-type]
