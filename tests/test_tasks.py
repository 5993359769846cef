"""Task-group helpers: settle, race, hedge, map, map_all."""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType

import anyio
import pytest
from anyio.lowlevel import checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from outcome import Error, Value

import anyway
import anyway._tasks
from anyway._tasks import UNSIZED_WINDOW
from anyway.testing import Clock

pytestmark = pytest.mark.anyio

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
    with pytest.raises(TypeError, match=re.escape("settle() argument 1 must be callable, got 5")):
        await anyway.settle(5)  # type: ignore[arg-type]


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
    with pytest.raises(TypeError, match=re.escape("race() argument 1 must be callable, got None")):
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


# --- map ------------------------------------------------------------------------


class Worker:
    """fn(item) sleeping durations[item] (or item seconds); tracks concurrency."""

    def __init__(
        self,
        durations: dict[int, float] | None = None,
        *,
        fail: dict[int, BaseException] | None = None,
    ) -> None:
        self.durations = durations or {}
        self.fail = fail or {}
        self.running = 0
        self.peak = 0
        self.log = Log()

    async def __call__(self, item: int) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.log(f"start {item}")
        try:
            await anyio.sleep(self.durations.get(item, item))
            if item in self.fail:
                raise self.fail[item]
        except Cancelled():
            self.log(f"cancelled {item}")
            raise
        finally:
            self.running -= 1
        self.log(f"done {item}")
        return item * 10


def counting(source: Iterator[int], pulled: list[int]) -> Iterator[int]:
    for item in source:
        pulled.append(item)
        yield item


async def test_map_ordered_results_unbounded(clock: Clock) -> None:
    work = Worker()
    t0 = clock.now()
    async with anyway.map(work, [3, 1, 2]) as results:
        got = [r async for r in results]
    assert got == [30, 10, 20]
    assert work.peak == 3
    assert clock.now() - t0 == clock.approx(3)


async def test_map_unordered_results_come_as_they_finish(clock: Clock) -> None:
    seen: list[tuple[int, float]] = []
    t0 = clock.now()
    async with anyway.map(Worker(), [3, 1, 2], ordered=False) as results:
        async for r in results:
            seen.append((r, clock.now() - t0))  # noqa: PERF401 - keep what came before an error
    assert seen == [(10, clock.approx(1)), (20, clock.approx(2)), (30, clock.approx(3))]


async def test_map_peak_concurrency_equals_max_at_once(clock: Clock) -> None:
    work = Worker(dict.fromkeys(range(10), 1))
    t0 = clock.now()
    assert await anyway.map_all(work, range(10), max_at_once=3) == [i * 10 for i in range(10)]
    assert work.peak == 3
    assert clock.now() - t0 == clock.approx(4)  # ceil(10 / 3) rounds of 1 s


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_pulls_items_lazily_from_an_endless_iterator(ordered: bool) -> None:
    pulled: list[int] = []
    work = Worker(dict.fromkeys(range(100), 1))
    got = []
    async with anyway.map(
        work, counting(itertools.count(), pulled), max_at_once=3, ordered=ordered
    ) as results:
        async for r in results:
            got.append(r)
            if len(got) == 5:
                break
    assert len(got) == 5
    assert pulled == list(range(8))  # 5 yielded + a window of 3, nothing more
    # leaving the block early cancelled the calls still running: 6 and 7, started
    # when the fourth and fifth results were yielded (the eighth call may have
    # finished unyielded, or been cancelled as it was finishing)
    cancelled = {w for w, _ in work.log.entries if w.startswith("cancelled")}
    assert {"cancelled 6", "cancelled 7"} <= cancelled <= {f"cancelled {i}" for i in range(3, 8)}
    assert work.running == 0


async def test_map_reorder_buffer_is_bounded_by_max_at_once(clock: Clock) -> None:
    work = Worker({0: 5})  # item 0 is slow, the others take 1 s
    work.durations.update(dict.fromkeys(range(1, 6), 1))
    t0 = clock.now()
    assert await anyway.map_all(work, range(6), max_at_once=3) == [0, 10, 20, 30, 40, 50]
    starts = {w: t for w, t in work.log.entries if w.startswith("start")}
    # 1 and 2 finish at 1 and wait in the buffer; 3 cannot start before 0 is yielded
    assert starts == {
        "start 0": clock.approx(0),
        "start 1": clock.approx(0),
        "start 2": clock.approx(0),
        "start 3": clock.approx(5),
        "start 4": clock.approx(5),
        "start 5": clock.approx(5),
    }
    assert clock.now() - t0 == clock.approx(6)


async def test_map_unordered_window_moves_on_each_result(clock: Clock) -> None:
    work = Worker({0: 5})
    work.durations.update(dict.fromkeys(range(1, 6), 1))
    got = await anyway.map_all(work, range(6), max_at_once=3, ordered=False)
    assert sorted(got) == [0, 10, 20, 30, 40, 50]
    assert work.log.at("start 3") == clock.approx(1)
    assert work.peak == 3


async def test_map_fail_fast_reraises_the_error_itself(clock: Clock) -> None:
    boom = ValueError("boom")
    work = Worker({0: 5, 1: 5, 2: 1}, fail={2: boom})
    t0 = clock.now()
    with pytest.raises(ValueError, match="boom") as info:
        await anyway.map_all(work, [0, 1, 2, 3])
    assert info.value is boom  # not wrapped in an ExceptionGroup
    assert boom.__notes__ == ["anyway.map: raised by Worker() for item #2 (2)"]
    assert clock.now() - t0 == clock.approx(1)
    assert sorted(w for w, _ in work.log.entries if w.startswith("cancelled")) == [
        "cancelled 0",
        "cancelled 1",
        "cancelled 3",
    ]


async def test_map_fail_fast_inside_the_block(clock: Clock) -> None:
    work = Worker(fail={1: KeyError("k")})
    seen: list[int] = []
    with pytest.raises(KeyError):  # noqa: PT012
        async with anyway.map(work, [3, 1, 2], ordered=False) as results:
            async for r in results:
                seen.append(r)  # noqa: PERF401 - keep what came before an error
    assert seen == []
    assert work.running == 0


async def test_map_several_errors_form_a_group() -> None:
    async def fail_at_once(item: int) -> None:
        raise KeyError(item)  # no checkpoint: both calls fail before any cancellation

    with pytest.raises(ExceptionGroup) as info:
        await anyway.map_all(fail_at_once, range(2), max_at_once=2)
    assert sorted(str(e) for e in info.value.exceptions) == ["0", "1"]


async def test_map_return_exceptions_yields_outcomes(clock: Clock) -> None:
    boom = ValueError("boom")
    work = Worker({0: 2, 1: 1}, fail={1: boom})
    t0 = clock.now()
    got = await anyway.map_all(work, [0, 1, 3], return_exceptions=True)
    assert got == [Value(0), Error(boom), Value(30)]
    assert clock.now() - t0 == clock.approx(3)  # nothing was cancelled


async def test_map_return_exceptions_still_propagates_cancellation(clock: Clock) -> None:
    work = Worker()
    with anyio.move_on_after(1) as outer:
        await anyway.map_all(work, [5, 5], return_exceptions=True)
    assert outer.cancelled_caught
    assert work.running == 0


async def test_map_return_exceptions_does_not_capture_failing_cleanup() -> None:
    async def bad_cleanup(item: int) -> int:
        try:
            await anyio.sleep(10)
        finally:
            raise RuntimeError(f"cleanup of {item} failed")
        return item

    with pytest.raises(RuntimeError, match="cleanup of 0 failed") as info, anyio.move_on_after(1):
        await anyway.map_all(bad_cleanup, [0], return_exceptions=True)
    (note,) = info.value.__notes__
    assert note.startswith("anyway.map: raised by ")
    assert note.endswith(".bad_cleanup() for item #0 (0)")


async def test_map_limiter_is_entered_around_each_call() -> None:
    log: list[str] = []

    class Recorder:
        def __init__(self) -> None:
            self.inner = anyio.CapacityLimiter(2)

        async def __aenter__(self) -> None:
            await self.inner.acquire()
            log.append("enter")

        async def __aexit__(
            self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
        ) -> None:
            log.append("exit")
            self.inner.release()

    work = Worker(dict.fromkeys(range(5), 1))
    assert await anyway.map_all(work, range(5), limiter=Recorder()) == [0, 10, 20, 30, 40]
    assert log.count("enter") == log.count("exit") == 5
    assert work.peak == 2  # the limiter bounds the calls, map itself does not


async def test_map_with_a_capacity_limiter_and_max_at_once(clock: Clock) -> None:
    work = Worker(dict.fromkeys(range(6), 1))
    t0 = clock.now()
    # unordered: in order, a call that waits long for the limiter would hold the window
    await anyway.map_all(
        work, range(6), max_at_once=3, limiter=anyio.CapacityLimiter(2), ordered=False
    )
    assert work.peak == 2
    assert clock.now() - t0 == clock.approx(3)


async def test_map_outer_cancellation_propagates(clock: Clock) -> None:
    work = Worker()
    reached = []
    with anyio.move_on_after(1) as outer:
        async with anyway.map(work, [5, 5, 5], max_at_once=2) as results:
            async for r in results:
                reached.append(r)  # noqa: PERF401 - keep what came before an error
    assert outer.cancelled_caught
    assert reached == []
    assert sorted(w for w, _ in work.log.entries) == ["cancelled 5"] * 2 + ["start 5"] * 2


async def test_map_an_error_in_the_block_cancels_the_calls() -> None:
    work = Worker()
    with pytest.raises(LookupError):  # as itself  # noqa: PT012
        async with anyway.map(work, [1, 5, 5], max_at_once=2) as results:
            async for _ in results:
                raise LookupError
    assert work.running == 0
    assert "cancelled 5" in work.log.whats()


async def test_map_async_iterable_is_pulled_lazily(clock: Clock) -> None:
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for item in itertools.count():
            await anyio.sleep(0.5 if item < 3 else 0)
            pulled.append(item)
            yield item

    work = Worker(dict.fromkeys(range(100), 1))
    got: list[int] = []
    async with anyway.map(work, source(), max_at_once=2) as results:
        async for r in results:
            got.append(r)
            if len(got) == 4:
                break
    assert got == [0, 10, 20, 30]
    assert 4 <= len(pulled) <= 4 + 2  # never more than the window ahead of the consumer
    assert work.peak == 2


@pytest.mark.parametrize("max_at_once", [None, 2])
async def test_map_async_iterable_to_the_end(max_at_once: int | None) -> None:
    async def source() -> AsyncIterator[int]:
        for item in (2, 1, 3):
            yield item

    assert await anyway.map_all(Worker(), source(), max_at_once=max_at_once) == [20, 10, 30]


async def test_map_unbounded_over_an_endless_source_still_pulls_lazily(clock: Clock) -> None:
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for item in itertools.count():
            await anyio.sleep(2)  # items arrive every 2 s
            pulled.append(item)
            yield item

    work = Worker(dict.fromkeys(range(100), 5))
    t0 = clock.now()
    async with anyway.map(work, source(), ordered=False) as results:
        first = await anext(aiter(results))
    assert first == 0
    assert clock.now() - t0 == clock.approx(7)
    assert len(pulled) == 3  # calls run while items are pulled; no limit on how many
    assert work.peak == 3
    assert work.running == 0


async def test_map_unbounded_sync_items_are_pulled_between_calls() -> None:
    pulled: list[int] = []
    pulled_when_started: list[int] = []

    async def work(item: int) -> int:
        pulled_when_started.append(len(pulled))
        await anyio.sleep(1)
        return item

    got = await anyway.map_all(work, counting(iter(range(40)), pulled))
    assert got == list(range(40))
    assert pulled_when_started[0] < 40  # calls started before the items ran out


async def test_map_empty() -> None:
    assert await anyway.map_all(Worker(), []) == []
    assert await anyway.map_all(Worker(), [], max_at_once=2, ordered=False) == []


@pytest.mark.parametrize("max_at_once", [None, 2])
@pytest.mark.parametrize("where", [0, 3])
async def test_map_items_raising_is_reraised_with_a_note(
    max_at_once: int | None, where: int
) -> None:
    def source() -> Iterator[int]:
        yield from range(where)
        raise OSError("disk")

    work = Worker(dict.fromkeys(range(5), 1))
    with pytest.raises(OSError, match="disk") as info:
        await anyway.map_all(work, source(), max_at_once=max_at_once)
    assert info.value.__notes__ == [f"anyway.map: raised while taking item #{where} from items"]
    assert work.running == 0


async def test_map_async_items_raising() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise OSError("socket")

    with pytest.raises(OSError, match="socket") as info:
        await anyway.map_all(Worker(), source(), max_at_once=3)
    assert info.value.__notes__ == ["anyway.map: raised while taking item #1 from items"]


async def test_map_does_not_start_calls_after_a_failure() -> None:
    work = Worker({0: 1, 1: 2, 2: 3}, fail={1: KeyError("k")})
    seen: list[int] = []
    with pytest.raises(KeyError):  # noqa: PT012
        async with anyway.map(work, range(5), max_at_once=2) as results:
            async for r in results:
                seen.append(r)
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(5)  # item 1 fails meanwhile
    assert seen == [0]
    assert "start 3" not in work.log.whats()  # the window was not refilled


async def test_map_misuse_gets_the_fix() -> None:
    mapping = anyway.map(Worker(), [1])
    with (
        pytest.raises(
            TypeError, match=re.escape("use 'async with anyway.map(...) as results:', not 'with'")
        ),
        mapping,
    ):  # type: ignore[attr-defined]
        pass
    with pytest.raises(TypeError, match=re.escape("not 'async for result in anyway.map")):
        async for _ in mapping:  # type: ignore[attr-defined]
            pass
    with pytest.raises(TypeError, match=re.escape("or 'await anyway.map_all(...)' for a list")):
        await mapping  # type: ignore[misc]
    async with mapping as results:
        assert re.fullmatch(
            r"<anyway.map fn=Worker open max_at_once=unbounded pulled=\d in_flight=\d( exhausted)?>",
            repr(mapping),
        )
        with pytest.raises(RuntimeError, match="can only be entered once"):
            async with mapping:
                pass
        assert [r async for r in results] == [10]
    assert repr(mapping) == (
        "<anyway.map fn=Worker closed max_at_once=unbounded pulled=1 in_flight=0 exhausted>"
    )
    with pytest.raises(RuntimeError, match="already exited"):
        aiter(results)
    async with anyway.map(Worker(), [1, 1], max_at_once=1) as results:
        async for _ in results:
            break
    with pytest.raises(RuntimeError, match="already exited"):
        await anext(results)


async def test_map_results_belong_to_one_consumer() -> None:
    async with (
        anyway.map(Worker(), [2, 2], max_at_once=1) as results,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(anext, results)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="another task is already iterating"):
            await anext(results)
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_at_once": 0}, ValueError, "max_at_once must be >= 1, got 0 (or None for no limit)"),
        ({"max_at_once": True}, TypeError, "max_at_once must be a whole number, got True (bool)"),
        ({"max_at_once": 2.0}, TypeError, "max_at_once must be a whole number, got 2.0"),
        (
            {"limiter": anyio.CapacityLimiter},
            TypeError,
            "got the class CapacityLimiter: create one",
        ),
        ({"limiter": threading.Lock()}, TypeError, "limiter must be an async context manager"),
        ({"ordered": "yes"}, TypeError, "ordered must be True or False, got 'yes'"),
        ({"return_exceptions": 1}, TypeError, "return_exceptions must be True or False, got 1"),
    ],
)
async def test_map_bad_input(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        anyway.map(Worker(), [1], **kwargs)  # type: ignore[call-overload]
    with pytest.raises(error, match=re.escape(message)):
        await anyway.map_all(Worker(), [1], **kwargs)  # type: ignore[call-overload]


async def test_map_bad_fn_and_items() -> None:
    work = Worker()
    with pytest.raises(TypeError, match="fn must be an async function, not a coroutine object"):
        anyway.map(work(1), [1])  # type: ignore[call-overload]
    with pytest.raises(
        TypeError, match=re.escape("items must be an iterable or an async iterable, got 5 (int)")
    ):
        anyway.map(work, 5)  # type: ignore[call-overload]


def simulate(durations: list[float], k: int, ordered: bool) -> float:
    """When the last result of map(max_at_once=k) is yielded, consuming at once."""
    if ordered:
        starts: list[float] = []
        yields: list[float] = []
        for i, d in enumerate(durations):
            start = 0.0 if i < k else yields[i - k]
            starts.append(start)
            yields.append(max(yields[-1] if yields else 0.0, start + d))
        return yields[-1] if yields else 0.0
    finish: list[float] = []  # a slot frees when a call finishes (and is yielded)
    for i, d in enumerate(durations):
        start = 0.0 if i < k else sorted(finish)[i - k]
        finish.append(start + d)
    return max(finish, default=0.0)


@settings(
    deadline=None, max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    durations=st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.3]), max_size=5),
    k=st.integers(1, 3),
    ordered=st.booleans(),
)
async def test_map_schedule_property(
    clock: Clock, durations: list[float], k: int, ordered: bool
) -> None:
    work = Worker(dict(enumerate(durations)))
    t0 = clock.now()
    got = await anyway.map_all(work, range(len(durations)), max_at_once=k, ordered=ordered)
    if ordered:
        assert got == [i * 10 for i in range(len(durations))]
    else:
        assert sorted(got) == [i * 10 for i in range(len(durations))]
    assert work.peak <= k
    if clock.virtual:  # exact schedule; real time only approximates it
        assert clock.now() - t0 == clock.approx(simulate(durations, k, ordered))


async def test_map_typed_results_are_plain_values() -> None:
    async def double(x: int) -> int:
        await checkpoint()
        return 2 * x

    fn: Callable[[int], Awaitable[int]] = double
    assert await anyway.map_all(fn, range(4), max_at_once=2) == [0, 2, 4, 6]


# --- map(max_at_once=None) over items of unknown length: a bounded read-ahead ----------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_unbounded_over_itertools_count_returns_promptly(
    clock: Clock, ordered: bool
) -> None:
    counter = itertools.count()
    running = peak = 0

    async def fn(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await anyio.sleep(1)
        finally:
            running -= 1
        return item

    got: list[int] = []
    t0 = clock.now()
    async with anyway.map(fn, counter, ordered=ordered) as results:
        async for r in results:
            got.append(r)
            if len(got) == 3:
                break
    assert clock.now() - t0 == clock.approx(1)  # the clock could advance: no busy pulling
    if ordered:
        assert got == [0, 1, 2]
    pulled = next(counter)  # the items taken so far
    assert pulled <= UNSIZED_WINDOW + 3  # bounded: a window ahead of the consumer
    assert peak <= UNSIZED_WINDOW
    if clock.virtual:  # on real time the first calls may end before the window fills
        assert pulled >= UNSIZED_WINDOW
        assert peak == UNSIZED_WINDOW
    assert running == 0


async def test_map_unbounded_window_refills_as_results_are_yielded(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anyway._tasks, "UNSIZED_WINDOW", 4)
    pulled: list[int] = []
    work = Worker(dict.fromkeys(range(100), 1))
    got: list[int] = []
    t0 = clock.now()
    async with anyway.map(work, counting(itertools.count(), pulled)) as results:
        assert "max_at_once=unbounded window=4 " in repr(results)
        async for r in results:
            got.append(r)
            if len(got) == 10:
                break
    assert got == [i * 10 for i in range(10)]
    assert work.peak == 4
    # rounds of 1 s: items 0-3 from 0, 4-7 from 1, 8-11 from 2
    assert clock.now() - t0 == clock.approx(3)
    assert 10 <= len(pulled) <= 10 + 4
    starts = {w: t for w, t in work.log.entries if w.startswith("start")}
    assert [starts[f"start {i}"] for i in range(10)] == [clock.approx(i // 4) for i in range(10)]


async def test_map_unbounded_endless_async_iterable_is_bounded(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anyway._tasks, "UNSIZED_WINDOW", 4)
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for item in itertools.count():  # items are ready at once
            pulled.append(item)
            yield item

    work = Worker(dict.fromkeys(range(100), 2))
    t0 = clock.now()
    async with anyway.map(work, source(), ordered=False) as results:
        first = await anext(aiter(results))
    assert first in {0, 10, 20, 30}
    assert clock.now() - t0 == clock.approx(2)
    assert 4 <= len(pulled) <= 5
    assert work.peak == 4
    assert work.running == 0


async def test_map_unbounded_sized_items_all_start_at_once(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anyway._tasks, "UNSIZED_WINDOW", 4)
    work = Worker(dict.fromkeys(range(10), 0.5))
    t0 = clock.now()
    assert await anyway.map_all(work, list(range(10))) == [i * 10 for i in range(10)]
    assert work.peak == 10  # len() is known: no window, no limit
    assert "max_at_once=unbounded pulled" in repr(anyway.map(work, [1]))
    assert "max_at_once=3 pulled" in repr(anyway.map(work, iter([1]), max_at_once=3))
    assert clock.now() - t0 == clock.approx(0.5)
    work = Worker(dict.fromkeys(range(10), 0.5))
    t0 = clock.now()
    assert await anyway.map_all(work, iter(range(10))) == [i * 10 for i in range(10)]
    assert work.peak == 4  # an iterator has no len(): the window applies
    assert clock.now() - t0 == clock.approx(1.5)  # three rounds
