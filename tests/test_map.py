"""map and map_all: a bounded, lazy pool of workers over an iterable."""

from __future__ import annotations

import itertools
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
from anyway.testing import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

Cancelled = anyio.get_cancelled_exc_class
#: map(max_at_once=None) reads at most this many items ahead of the consumer
#: when the items have no len() (documented in map()'s docstring).
UNSIZED_WINDOW = 1024


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
    assert got == [i * 10 for i in range(5)] if ordered else len(set(got)) == 5
    # 5 yielded + at most a window of 3, nothing more (a worker woken by the
    # last yields may not have pulled yet when the block was left)
    assert pulled == list(range(len(pulled)))
    assert 6 <= len(pulled) <= 8
    # leaving the block early cancelled the calls still running
    started = {int(w.split()[1]) for w in work.log.whats() if w.startswith("start")}
    assert started == set(range(len(pulled)))
    ended = {int(w.split()[1]) for w in work.log.whats() if w.startswith(("cancelled", "done"))}
    assert ended == started  # each call finished or was cancelled: none is left running
    assert work.running == 0


async def test_map_reorder_buffer_is_bounded_by_max_at_once(clock: Clock) -> None:
    work = Worker({0: 5})  # item 0 is slow, the others take 1 s
    work.durations.update(dict.fromkeys(range(1, 6), 1))
    t0 = clock.now()
    async with anyway.map(work, range(6), max_at_once=3) as results:
        assert [r async for r in results] == [0, 10, 20, 30, 40, 50]
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


async def test_map_all_does_not_hold_calls_back_behind_a_slow_one(clock: Clock) -> None:
    work = Worker({0: 5})  # item 0 is slow, the others take 1 s
    work.durations.update(dict.fromkeys(range(1, 6), 1))
    t0 = clock.now()
    assert await anyway.map_all(work, range(6), max_at_once=3) == [0, 10, 20, 30, 40, 50]
    starts = {w: t for w, t in work.log.entries if w.startswith("start")}
    # nobody consumes: a finished call frees its place at once (only max_at_once bounds)
    assert [starts[f"start {i}"] for i in range(6)] == [clock.approx(t) for t in (0, 0, 0, 1, 1, 2)]
    assert work.peak == 3
    assert clock.now() - t0 == clock.approx(5)


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
    gate = anyio.Event()

    async def fail_at_once(item: int) -> None:
        await gate.wait()
        raise KeyError(item)  # both wake together and fail before any cancellation

    with pytest.raises(ExceptionGroup) as info:  # noqa: PT012
        async with anyway.map(fail_at_once, range(2), max_at_once=2) as results:
            await anyio.sleep(1)
            gate.set()
            async for _ in results:
                pass
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
            "limiter must be an instance, got the class CapacityLimiter;"
            " e.g. limiter=anyio.CapacityLimiter(10)",
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
    """When the last result of map(max_at_once=k) is yielded, consuming at once.

    Unordered (and map_all, whatever the order), k workers: item i starts when
    the (i - k + 1)-th call finishes. Ordered, item i + k cannot start before
    item i is yielded, after its predecessors.
    """
    if ordered:
        starts: list[float] = []
        yields: list[float] = []
        for i, d in enumerate(durations):
            start = 0.0 if i < k else yields[i - k]
            starts.append(start)
            yields.append(max(yields[-1] if yields else 0.0, start + d))
        return yields[-1] if yields else 0.0
    finish: list[float] = []
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
    collect=st.booleans(),
)
async def test_map_schedule_property(
    clock: Clock, durations: list[float], k: int, ordered: bool, collect: bool
) -> None:
    work = Worker(dict(enumerate(durations)))
    t0 = clock.now()
    if collect:
        got = await anyway.map_all(work, range(len(durations)), max_at_once=k, ordered=ordered)
    else:
        async with anyway.map(
            work, range(len(durations)), max_at_once=k, ordered=ordered
        ) as results:
            got = [r async for r in results]
    if ordered:
        assert got == [i * 10 for i in range(len(durations))]
    else:
        assert sorted(got) == [i * 10 for i in range(len(durations))]
    assert work.peak <= k
    expected = simulate(durations, k, ordered and not collect)
    assert clock.now() - t0 == clock.approx(expected)


async def test_map_typed_results_are_plain_values() -> None:
    async def double(x: int) -> int:
        await checkpoint()
        return 2 * x

    fn: Callable[[int], Awaitable[int]] = double
    assert await anyway.map_all(fn, range(4), max_at_once=2) == [0, 2, 4, 6]


# --- map(max_at_once=None) over items of unknown length: a bounded read-ahead ----------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_unbounded_over_itertools_count_is_bounded_by_the_window(ordered: bool) -> None:
    counter = itertools.count()
    running = peak = 0
    full = anyio.Event()  # the calls wait until the window is full: no timing involved

    async def fn(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == UNSIZED_WINDOW:
            full.set()
        try:
            await full.wait()
            await anyio.sleep(1)
        finally:
            running -= 1
        return item

    got: list[int] = []
    async with anyway.map(fn, counter, ordered=ordered) as results:
        async for r in results:
            got.append(r)
            if len(got) == 3:
                break
    # each result is a call that returned after its whole sleep: nothing cut them short
    if ordered:
        assert got == [0, 1, 2]
    pulled = next(counter)  # the items taken so far
    assert UNSIZED_WINDOW <= pulled <= UNSIZED_WINDOW + 3  # a window ahead of the consumer
    assert peak == UNSIZED_WINDOW
    assert running == 0


async def test_map_unbounded_window_refills_as_results_are_yielded() -> None:
    pulled: list[int] = []
    inner = Worker(dict.fromkeys(range(3 * UNSIZED_WINDOW), 1))
    full = anyio.Event()  # the first window's calls wait for each other: no timing involved

    started = 0

    async def work(item: int) -> int:
        nonlocal started
        started += 1
        if started == UNSIZED_WINDOW:
            full.set()
        await full.wait()
        return await inner(item)

    count = UNSIZED_WINDOW + 10
    got: list[int] = []
    async with anyway.map(work, counting(itertools.count(), pulled)) as results:
        assert f"max_at_once=unbounded window={UNSIZED_WINDOW} " in repr(results)
        async for r in results:
            inner.log(f"yielded {r // 10}")
            got.append(r)
            if len(got) == count:
                break
    assert got == [i * 10 for i in range(count)]
    assert inner.peak == UNSIZED_WINDOW
    assert count <= len(pulled) <= count + UNSIZED_WINDOW
    # item k + window starts only once item k has been yielded (the order of
    # events, whatever the clock)
    order = {what: n for n, what in enumerate(inner.log.whats())}
    for k in range(10):
        assert order[f"start {k + UNSIZED_WINDOW}"] > order[f"yielded {k}"]
    assert order[f"start {UNSIZED_WINDOW - 1}"] < order["yielded 0"]


async def test_map_unbounded_endless_async_iterable_is_bounded(clock: Clock) -> None:
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for item in itertools.count():  # items are ready at once
            pulled.append(item)
            yield item

    inner = Worker(dict.fromkeys(range(3 * UNSIZED_WINDOW), 2))
    full = anyio.Event()  # the calls wait until the window is full: no timing involved
    started = 0
    opened = 0.0

    async def work(item: int) -> int:
        nonlocal started, opened
        started += 1
        if started == UNSIZED_WINDOW:
            opened = clock.now()
            full.set()
        await full.wait()
        return await inner(item)

    async with anyway.map(work, source(), ordered=False) as results:
        first = await anext(aiter(results))
    assert first % 10 == 0
    assert first // 10 < UNSIZED_WINDOW
    # (a lower bound only: on accelerated real time a thousand tasks waking at
    # once can make the first result late, never early)
    assert clock.now() - opened >= 2 - clock.tolerance
    assert UNSIZED_WINDOW <= len(pulled) <= UNSIZED_WINDOW + 1
    assert inner.peak == UNSIZED_WINDOW
    assert inner.running == 0


@pytest.mark.parametrize("sized", [True, False])
async def test_map_unbounded_sized_items_all_start_at_once(sized: bool) -> None:
    n = UNSIZED_WINDOW + 6
    running = peak = 0
    gate = anyio.Event()

    async def fn(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == (n if sized else UNSIZED_WINDOW):
            gate.set()
        try:
            await gate.wait()
        finally:
            running -= 1
        return item

    items = list(range(n))
    async with anyway.map(fn, items if sized else iter(items)) as results:
        assert [r async for r in results] == items
    # len() is known: no window, no limit; an iterator has no len(): the window applies
    assert peak == (n if sized else UNSIZED_WINDOW)
    assert "max_at_once=unbounded pulled" in repr(anyway.map(fn, [1]))
    assert "max_at_once=3 pulled" in repr(anyway.map(fn, iter([1]), max_at_once=3))


# --- a sync function where an async one is needed -------------------------------------


def sync_fn(item: int) -> int:
    return item


@pytest.mark.parametrize("return_exceptions", [False, True])
async def test_map_all_sync_function_is_a_type_error_not_an_outcome(
    return_exceptions: bool,
) -> None:
    with pytest.raises(TypeError) as info:
        await anyway.map_all(
            sync_fn,  # type: ignore[arg-type]
            range(5),
            max_at_once=3,
            return_exceptions=return_exceptions,
        )
    assert type(info.value).__name__ == "NotAwaitableError"  # itself, not in a group
    assert str(info.value).startswith(
        "map() fn: sync_fn(...) returned 0, which cannot be awaited: pass an async function"
    )


async def test_map_sync_function_cancels_the_other_calls() -> None:
    work = Worker()

    def first_async_then_sync(item: int) -> Awaitable[int] | int:
        return item if item else work(5)  # a bug: no coroutine for the later items

    with pytest.raises(TypeError, match="returned 1, which cannot be awaited"):  # noqa: PT012
        async with anyway.map(first_async_then_sync, [0, 1], max_at_once=2) as results:  # type: ignore[arg-type]
            async for _ in results:
                pass
    assert work.log.whats() == ["start 5", "cancelled 5"]
    assert work.running == 0


# --- generators we stopped pulling from are closed at block exit ----------------------


class Source:
    """A sync or async generator of 0, 1, 2... that records when it is closed."""

    def __init__(self) -> None:
        self.pulled: list[int] = []
        self.closed = False

    def sync(self) -> Iterator[int]:
        try:
            for item in itertools.count():
                self.pulled.append(item)
                yield item
        finally:
            self.closed = True

    async def asynchronous(self, delay: float = 0) -> AsyncIterator[int]:
        try:
            for item in itertools.count():
                await anyio.sleep(delay)
                self.pulled.append(item)
                yield item
        finally:
            self.closed = True


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("max_at_once", [None, 2])
async def test_map_closes_the_generator_when_the_block_is_left_early(
    kind: str, max_at_once: int | None
) -> None:
    source = Source()
    items = source.sync() if kind == "sync" else source.asynchronous()
    async with anyway.map(
        Worker(dict.fromkeys(range(5000), 1)), items, max_at_once=max_at_once
    ) as results:
        async for _ in results:
            break
        assert not source.closed
    assert source.closed  # at block exit, not at garbage collection


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_map_closes_the_generator_when_a_call_fails(kind: str) -> None:
    source = Source()
    items = source.sync() if kind == "sync" else source.asynchronous()
    work = Worker(dict.fromkeys(range(10), 1), fail={3: KeyError("k")})
    with pytest.raises(KeyError):
        await anyway.map_all(work, items, max_at_once=2)
    assert source.closed
    assert work.running == 0


# --- cancellation at each await point: nothing lost, nothing leaked, it propagates -----


async def test_map_cancelled_while_workers_wait_for_the_window(clock: Clock) -> None:
    source = Source()
    work = Worker({0: 5, 1: 1, 2: 1})  # item 1 finishes, waits for 0: its worker waits
    with anyio.move_on_after(3) as outer:
        async with anyway.map(work, source.sync(), max_at_once=2) as results:
            async for _ in results:
                pytest.fail("item 0 is not done before the cancellation")
    assert outer.cancelled_caught
    assert source.pulled == [0, 1]  # the window held the worker back
    assert work.log.whats() == ["start 0", "start 1", "done 1", "cancelled 0"]
    assert work.running == 0
    assert source.closed


async def test_map_cancelled_while_a_worker_pulls_from_an_async_source(clock: Clock) -> None:
    source = Source()
    work = Worker(dict.fromkeys(range(10), 1))
    t0 = clock.now()
    with anyio.move_on_after(3.5) as outer:
        await anyway.map_all(work, source.asynchronous(delay=2), max_at_once=3)
    assert outer.cancelled_caught
    assert clock.now() - t0 == clock.approx(3.5)
    assert source.pulled == [0]  # the second pull was waiting (due at 4)
    assert work.log.whats() == ["start 0", "done 0"]
    assert source.closed


async def test_map_cancelled_while_calls_wait_for_the_limiter(clock: Clock) -> None:
    limiter = anyio.CapacityLimiter(1)
    work = Worker(dict.fromkeys(range(5), 2))
    with anyio.move_on_after(1) as outer:
        await anyway.map_all(work, range(5), max_at_once=3, limiter=limiter)
    assert outer.cancelled_caught
    assert work.log.whats() == ["start 0", "cancelled 0"]  # 1 and 2 never got the limiter
    stats = limiter.statistics()
    assert (stats.borrowed_tokens, stats.tasks_waiting) == (0, 0)  # nothing kept


async def test_map_cancelled_while_the_consumer_waits(clock: Clock) -> None:
    work = Worker(dict.fromkeys(range(4), 2))
    got: list[int] = []
    with anyio.move_on_after(3) as outer:
        async with anyway.map(work, range(4), max_at_once=2) as results:
            async for r in results:
                got.append(r)  # noqa: PERF401 - keep what came before the cancellation
    assert outer.cancelled_caught
    assert got == [0, 10]
    assert sorted(work.log.whats()) == [
        "cancelled 2",
        "cancelled 3",
        "done 0",
        "done 1",
        "start 0",
        "start 1",
        "start 2",
        "start 3",
    ]
    assert work.running == 0


# --- invariants --------------------------------------------------------------------------


@settings(
    deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    durations=st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.5]), max_size=12),
    consumer=st.lists(st.sampled_from([0.0, 0.3]), min_size=1, max_size=4),
    k=st.integers(1, 4),
    ordered=st.booleans(),
    async_items=st.booleans(),
)
async def test_map_invariants(
    clock: Clock,
    durations: list[float],
    consumer: list[float],
    k: int,
    ordered: bool,
    async_items: bool,
) -> None:
    """Output order, the concurrency bound and laziness, with a consumer that
    sometimes lags behind."""
    pulled = yielded = running = 0
    violations: list[str] = []

    def pull(item: int) -> int:
        nonlocal pulled
        pulled += 1
        if pulled > yielded + k:
            violations.append(f"item {item} pulled with {yielded} yielded")
        return item

    def items() -> Iterator[int]:
        for item in range(len(durations)):
            yield pull(item)

    async def async_items_() -> AsyncIterator[int]:
        for item in range(len(durations)):
            await anyio.sleep(durations[item] / 2)  # pulls that wait: workers queue up
            yield pull(item)

    async def fn(item: int) -> int:
        nonlocal running
        running += 1
        if running > k:
            violations.append(f"{running} calls running")
        try:
            await anyio.sleep(durations[item])
        finally:
            running -= 1
        return item

    got: list[int] = []
    source = async_items_() if async_items else items()
    async with anyway.map(fn, source, max_at_once=k, ordered=ordered) as results:
        async for r in results:
            yielded += 1
            got.append(r)
            await anyio.sleep(consumer[len(got) % len(consumer)])
    assert violations == []
    assert running == 0
    if ordered:
        assert got == list(range(len(durations)))
    else:
        assert sorted(got) == list(range(len(durations)))
