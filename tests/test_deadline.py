"""Deadlines: deadline, deadline_at, remaining, Budget, shield, fallback."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import anyio
import pytest
from anyio.lowlevel import checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway
from anyway import Budget, DeadlineExceeded, DeadlineExpired, PolicyEvent
from anyway.testing import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


@pytest.fixture
def events() -> Iterator[list[PolicyEvent]]:
    """The events emitted during the test."""
    seen: list[PolicyEvent] = []
    anyway.add_hook(seen.append)
    try:
        yield seen
    finally:
        anyway.remove_hook(seen.append)


def expired(events: list[PolicyEvent]) -> list[tuple[str, float | None]]:
    return [(e.policy, e.seconds) for e in events if isinstance(e, DeadlineExpired)]


# --- deadline -------------------------------------------------------------------


async def test_deadline_raises_with_the_budget_in_the_message(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    t0 = clock.now()
    with pytest.raises(DeadlineExceeded) as info, anyway.deadline(2.5):
        await anyio.sleep(10)
    assert clock.now() - t0 == clock.approx(2.5)
    assert str(info.value) == "deadline of 2.5 s exceeded"
    assert info.value.seconds == 2.5
    assert isinstance(info.value, TimeoutError)
    # like asyncio.timeout: the cancellation (where the block was waiting) is the cause
    assert isinstance(info.value.__cause__, anyio.get_cancelled_exc_class())
    assert expired(events) == [("deadline", 2.5)]


async def test_deadline_in_time_is_silent(clock: Clock, events: list[PolicyEvent]) -> None:
    t0 = clock.now()
    with anyway.deadline(2) as scope:
        assert isinstance(scope, anyio.CancelScope)
        assert scope.deadline == clock.approx(t0 + 2)
        await anyio.sleep(1)
    assert not scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(1)
    assert expired(events) == []


async def test_deadline_zero_expires_at_the_first_checkpoint(clock: Clock) -> None:
    t0 = clock.now()
    with pytest.raises(DeadlineExceeded, match=r"^deadline of 0 s exceeded$"), anyway.deadline(0):
        await checkpoint()
    assert clock.now() - t0 == clock.approx(0)


async def test_deadline_inf_is_no_deadline() -> None:
    with anyway.deadline(math.inf) as scope:
        assert anyway.remaining() == math.inf
        await anyio.sleep(1)
    assert scope.deadline == math.inf


async def test_errors_in_the_block_propagate_unchanged() -> None:
    async def fail_later() -> None:
        await anyio.sleep(1)
        raise KeyError("x")

    with pytest.raises(KeyError), anyway.deadline(5):
        await fail_later()


async def test_nested_inner_earlier_reports_the_inner_budget(clock: Clock) -> None:
    t0 = clock.now()
    with anyway.deadline(3) as outer:
        with pytest.raises(DeadlineExceeded) as info, anyway.deadline(1):
            await anyio.sleep(10)
        assert info.value.seconds == 1
        assert clock.now() - t0 == clock.approx(1)
        await anyio.sleep(1)  # the outer deadline is still running
    assert not outer.cancelled_caught
    assert clock.now() - t0 == clock.approx(2)


async def test_nested_outer_earlier_is_reported_by_the_outer(clock: Clock) -> None:
    t0 = clock.now()
    with pytest.raises(DeadlineExceeded) as info, anyway.deadline(1):  # noqa: PT012
        with anyway.deadline(3):
            assert anyway.remaining() == clock.approx(1)  # the earliest wins
            await anyio.sleep(10)
        pytest.fail("the inner block must not swallow the outer deadline")
    assert info.value.seconds == 1
    assert clock.now() - t0 == clock.approx(1)


async def test_equal_deadlines_are_reported_by_the_outer_one(clock: Clock) -> None:
    # AnyIO: a cancellation the outer scope can see belongs to the outer scope.
    t0 = clock.now()
    with (
        pytest.raises(DeadlineExceeded) as info,
        anyway.deadline(2),
        anyway.deadline_at(anyio.current_time() + 2),
    ):
        await anyio.sleep(10)
    assert info.value.seconds == 2  # the outer deadline(2), not the inner deadline_at
    assert clock.now() - t0 == clock.approx(2)


async def test_outer_cancel_scope_is_not_reported_as_ours(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    t0 = clock.now()
    with anyio.move_on_after(1) as outer, anyway.deadline(5):
        await anyio.sleep(10)
    assert outer.cancelled_caught
    assert clock.now() - t0 == clock.approx(1)
    assert expired(events) == []


async def test_cancelled_task_group_is_not_reported_as_ours(clock: Clock) -> None:
    seen: list[str] = []

    async def worker() -> None:
        try:
            with anyway.deadline(5):
                await anyio.sleep_forever()
        except DeadlineExceeded:
            seen.append("deadline")
        except anyio.get_cancelled_exc_class():
            seen.append("cancelled")
            raise

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    assert seen == ["cancelled"]
    assert clock.now() - t0 == clock.approx(1)


async def test_cancelling_the_yielded_scope_moves_on(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    t0 = clock.now()
    with anyway.deadline(5) as scope:
        scope.cancel()
        await anyio.sleep(1)
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(0)
    assert expired(events) == []


async def test_deadline_moved_inside_the_block_reports_the_new_budget(clock: Clock) -> None:
    t0 = clock.now()
    with pytest.raises(DeadlineExceeded) as info, anyway.deadline(1) as scope:  # noqa: PT012
        scope.deadline += 1
        await anyio.sleep(10)
    assert clock.now() - t0 == clock.approx(2)
    assert info.value.seconds == pytest.approx(2)
    assert re.fullmatch(r"deadline of 2(\.0+\d*)? s exceeded", str(info.value))


async def test_shielded_deadline_ignores_outer_cancellation(clock: Clock) -> None:
    done: list[float] = []
    t0 = clock.now()
    with anyio.move_on_after(1) as outer:
        with anyway.deadline(3, shield=True):
            await anyio.sleep(2)
            done.append(clock.now() - t0)
        await checkpoint()  # the outer cancellation arrives here
        pytest.fail("not reached")
    assert outer.cancelled_caught
    assert done == [clock.approx(2)]


async def test_shielded_deadline_still_expires(clock: Clock) -> None:
    t0 = clock.now()
    with anyio.move_on_after(1):
        with pytest.raises(DeadlineExceeded), anyway.deadline(3, shield=True):
            await anyio.sleep(10)
        assert clock.now() - t0 == clock.approx(3)


async def test_a_deadline_object_can_be_reused_but_not_nested(clock: Clock) -> None:
    budget = anyway.deadline(2)
    assert repr(budget) == "<anyway.deadline(2 s) idle>"
    for _ in range(2):  # each block gets the full 2 s, measured from its entry
        with budget:
            await anyio.sleep(1.5)
    t0 = clock.now()
    with pytest.raises(DeadlineExceeded), budget:  # noqa: PT012
        assert re.fullmatch(r"<anyway.deadline\(2 s\) active remaining=[\d.]+ s>", repr(budget))
        await anyio.sleep(10)
    assert clock.now() - t0 == clock.approx(2)
    with budget, pytest.raises(RuntimeError, match="already active"), budget:
        pass


async def test_deadline_at(clock: Clock, events: list[PolicyEvent]) -> None:
    t0 = clock.now()
    block = anyway.deadline_at(t0 + 2)
    with pytest.raises(DeadlineExceeded) as info, block:  # noqa: PT012
        assert re.fullmatch(r"<anyway.deadline_at\(.*\) active remaining=[\d.]+ s>", repr(block))
        await anyio.sleep(10)
    assert clock.now() - t0 == clock.approx(2)
    assert info.value.seconds is None
    # the deadline is exact on every clock; a real clock moves between reading
    # t0 and entering the block, which clock.approx allows for
    match = re.fullmatch(
        r"deadline at clock time (\S+) exceeded \((\S+) s after the block was entered\)",
        str(info.value),
    )
    assert match is not None
    assert match[1] == f"{t0 + 2:g}"
    assert float(match[2]) == clock.approx(2)
    assert expired(events) == [("deadline_at", None)]


async def test_deadline_at_in_the_past_expires_at_once(clock: Clock) -> None:
    t0 = clock.now()
    with pytest.raises(DeadlineExceeded), anyway.deadline_at(t0 - 1):  # noqa: PT012
        assert anyway.remaining() == 0.0
        await checkpoint()
    assert clock.now() - t0 == clock.approx(0)
    with anyway.deadline_at(math.inf):
        assert anyway.remaining() == math.inf


async def test_active_deadline_repr_outside_the_loop() -> None:
    block = anyway.deadline(2)
    with block as scope:
        text = await anyio.to_thread.run_sync(repr, block)
    assert text == f"<anyway.deadline(2 s) active deadline={scope.deadline:g}>"


def test_deadline_repr_without_a_loop() -> None:
    d = anyway.deadline_at(12.5)
    assert repr(d) == "<anyway.deadline_at(12.5) idle>"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: anyway.deadline(math.nan), ValueError, "seconds must be a number, got NaN"),
        (lambda: anyway.deadline(-1), ValueError, "seconds must be >= 0, got -1"),
        (lambda: anyway.deadline("1"), TypeError, "seconds must be a number, got '1' (str)"),
        (lambda: anyway.deadline(True), TypeError, "seconds must be a number, got True (bool)"),
        (lambda: anyway.deadline(None), TypeError, "use math.inf for no deadline"),
        (lambda: anyway.deadline(1, shield=1), TypeError, "shield must be True or False, got 1"),
        (lambda: anyway.deadline_at(math.nan), ValueError, "when must be a number, got NaN"),
        (lambda: anyway.deadline_at(None), TypeError, "when must be a number, got None"),
        (lambda: anyway.deadline_at(1, shield="y"), TypeError, "shield must be True or False"),
    ],
)
def test_deadline_bad_input(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()  # type: ignore[operator]


# --- remaining ------------------------------------------------------------------


async def test_remaining_without_deadline_is_inf() -> None:
    assert anyway.remaining() == math.inf


async def test_remaining_counts_down_exactly(clock: Clock) -> None:
    with anyio.move_on_after(2.5):
        assert anyway.remaining() == clock.approx(2.5)
        await anyio.sleep(1)
        assert anyway.remaining() == clock.approx(1.5)
        with anyway.deadline(10):
            assert anyway.remaining() == clock.approx(1.5)  # the earliest wins
        with anyio.CancelScope(shield=True):  # noqa: ASYNC100
            assert anyway.remaining() == math.inf  # a shield hides outer deadlines


async def test_remaining_is_never_negative() -> None:
    with anyio.CancelScope() as scope:  # noqa: ASYNC100
        scope.cancel()
        assert anyway.remaining() == 0.0  # effective deadline is -inf
    with anyio.CancelScope(deadline=anyio.current_time() - 5):  # noqa: ASYNC100
        assert anyway.remaining() == 0.0


@settings(
    deadline=None, max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(budget=st.floats(0.0, 0.4), waited=st.floats(0.0, 0.4))
async def test_remaining_property(clock: Clock, budget: float, waited: float) -> None:
    with anyway.deadline(budget):
        with anyio.CancelScope(shield=True):  # wait, even past the deadline, without expiring
            await anyio.sleep(waited)
        left = anyway.remaining()
    assert left >= 0.0
    assert left == clock.approx(max(0.0, budget - waited))


# --- Budget ---------------------------------------------------------------------


async def test_budget_is_fixed_at_creation(clock: Clock) -> None:
    t0 = clock.now()
    budget = Budget(5)
    assert budget.seconds == 5
    assert budget.deadline == clock.approx(t0 + 5)
    assert budget.remaining() == clock.approx(5)
    assert not budget.expired
    await anyio.sleep(2)
    assert budget.remaining() == clock.approx(3)
    await anyio.sleep(4)
    assert budget.remaining() == 0.0
    assert budget.expired
    assert repr(budget) == "<Budget seconds=5 expired>"


async def test_budget_is_shared_across_stages(clock: Clock, events: list[PolicyEvent]) -> None:
    t0 = clock.now()
    budget = Budget(5)
    with budget as scope:
        assert scope.deadline == budget.deadline
        await anyio.sleep(2)
    match = re.fullmatch(r"<Budget seconds=5 remaining=([\d.]+)>", repr(budget))
    assert match is not None
    assert float(match[1]) == clock.approx(3)
    with pytest.raises(DeadlineExceeded) as info, budget:
        await anyio.sleep(10)  # gets the 3 s left, not a fresh 5
    assert clock.now() - t0 == clock.approx(5)
    assert str(info.value) == "budget of 5 s exceeded"
    assert info.value.seconds == 5
    assert expired(events) == [("Budget", 5)]


async def test_budget_shared_by_two_tasks(clock: Clock) -> None:
    budget = Budget(3)
    finished: dict[str, float] = {}

    async def stage(name: str, seconds: float) -> None:
        try:
            with budget:
                await anyio.sleep(seconds)
            finished[name] = clock.now()
        except DeadlineExceeded:
            finished[name + " timed out"] = clock.now()

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        # entered in order a, b, c; exited in order b, a, c: each task has its own blocks
        tg.start_soon(stage, "a", 2)
        tg.start_soon(stage, "b", 1)
        tg.start_soon(stage, "c", 10)
    assert {k: v - t0 for k, v in finished.items()} == {
        "b": clock.approx(1),
        "a": clock.approx(2),
        "c timed out": clock.approx(3),
    }


async def test_budget_nested_in_itself_raises_once(clock: Clock, events: list[PolicyEvent]) -> None:
    budget = Budget(2)
    with pytest.raises(DeadlineExceeded), budget, budget:
        await anyio.sleep(10)
    assert expired(events) == [("Budget", 2)]


async def test_budget_with_a_tighter_stage_deadline(clock: Clock) -> None:
    budget = Budget(5)
    t0 = clock.now()
    with budget:
        with pytest.raises(DeadlineExceeded) as info, anyway.deadline(1):
            await anyio.sleep(10)
        assert info.value.seconds == 1
        await anyio.sleep(1)
    assert clock.now() - t0 == clock.approx(2)
    assert budget.remaining() == clock.approx(3)


async def test_budget_does_not_report_outer_cancellation(clock: Clock) -> None:
    budget = Budget(5)
    with anyio.move_on_after(1) as outer, budget:
        await anyio.sleep(10)
    assert outer.cancelled_caught


async def test_budget_unlimited() -> None:
    budget = Budget(math.inf)
    assert budget.remaining() == math.inf
    with budget:
        assert anyway.remaining() == math.inf


async def test_budget_blocks_exited_out_of_order() -> None:
    first, second = Budget(5), Budget(5)
    first.__enter__()
    second.__enter__()
    with pytest.raises(RuntimeError, match="exited in the task and order they were entered"):
        first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    first.__exit__(None, None, None)


def test_budget_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="create it inside async code"):
        Budget(5)


def test_budget_has_slots_and_a_repr_outside_the_loop() -> None:
    async def make() -> Budget:
        return Budget(2)

    budget = anyio.run(make)
    with pytest.raises(AttributeError):
        budget.other = 1  # type: ignore[attr-defined]
    # repr must not fail where there is no loop (a log line in a thread...)
    assert repr(budget) == f"<Budget seconds=2 deadline={budget.deadline:g}>"


@pytest.mark.parametrize(
    ("seconds", "error", "message"),
    [
        (math.nan, ValueError, "seconds must be a number, got NaN"),
        (-0.5, ValueError, "seconds must be >= 0, got -0.5"),
        ("5", TypeError, "seconds must be a number, got '5' (str)"),
    ],
)
def test_budget_bad_input(seconds: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Budget(seconds)  # type: ignore[arg-type]


# --- shield ---------------------------------------------------------------------


async def test_shield_finishes_cleanup_despite_outer_cancellation(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    log: list[tuple[str, float]] = []
    t0 = clock.now()
    with anyio.move_on_after(1) as outer:
        try:
            await anyio.sleep(10)
        finally:
            with anyway.shield(5) as scope:
                await anyio.sleep(2)  # cleanup that awaits
                log.append(("cleaned up", clock.now() - t0))
    assert outer.cancelled_caught
    assert not scope.cancelled_caught
    assert log == [("cleaned up", clock.approx(3))]
    assert expired(events) == []


async def test_shield_is_bounded_and_moves_on(clock: Clock, events: list[PolicyEvent]) -> None:
    t0 = clock.now()
    with anyio.move_on_after(1) as outer:
        try:
            await anyio.sleep(10)
        finally:
            with anyway.shield(2) as scope:
                await anyio.sleep(60)  # cleanup that hangs
    assert outer.cancelled_caught  # the original cancellation still propagated
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(3)
    assert expired(events) == [("shield", 2)]


async def test_shield_repr_and_reentry() -> None:
    guard = anyway.shield(1.5)
    assert repr(guard) == "<anyway.shield(1.5 s) idle>"
    with guard:
        assert repr(guard) == "<anyway.shield(1.5 s) active>"
        with pytest.raises(RuntimeError, match="already active"), guard:
            pass


@pytest.mark.parametrize(
    ("seconds", "error", "message"),
    [
        (0, ValueError, "seconds must be > 0, got 0"),
        (math.inf, ValueError, "a shield must be bounded"),
        (math.nan, ValueError, "got NaN"),
        (-1, ValueError, "must be > 0"),
        (None, TypeError, "seconds must be a number, got None"),
    ],
)
def test_shield_bad_input(seconds: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        anyway.shield(seconds)  # type: ignore[arg-type]


# --- fallback -------------------------------------------------------------------


async def slow_value(seconds: float, value: str = "fresh") -> str:
    await anyio.sleep(seconds)
    return value


async def test_fallback_in_time_returns_the_result(clock: Clock, events: list[PolicyEvent]) -> None:
    t0 = clock.now()
    assert await anyway.fallback(slow_value, 1, "x", timeout=2, default="stale") == "x"
    assert clock.now() - t0 == clock.approx(1)
    assert expired(events) == []


async def test_fallback_on_timeout_returns_the_default(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    t0 = clock.now()
    assert await anyway.fallback(slow_value, 5, timeout=2, default="stale") == "stale"
    assert clock.now() - t0 == clock.approx(2)
    assert expired(events) == [("slow_value", 2)]


async def test_fallback_zero_timeout() -> None:
    async def instant() -> int:
        return 1

    assert await anyway.fallback(instant, timeout=0, default=0) == 1
    assert await anyway.fallback(slow_value, 1, timeout=0, default="stale") == "stale"


async def test_fallback_lets_other_errors_through(clock: Clock) -> None:
    async def broken() -> str:
        await anyio.sleep(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError, match="down"):
        await anyway.fallback(broken, timeout=5, default="stale")


async def test_fallback_lets_outer_cancellation_through(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    reached: list[str] = []
    t0 = clock.now()
    with anyio.move_on_after(1) as outer:
        reached.append(await anyway.fallback(slow_value, 10, timeout=5, default="stale"))
    assert outer.cancelled_caught
    assert reached == []
    assert clock.now() - t0 == clock.approx(1)
    # an outer deadline that fires at the same moment is not absorbed either
    with anyio.move_on_after(2) as outer:
        reached.append(await anyway.fallback(slow_value, 10, timeout=2, default="stale"))
    assert outer.cancelled_caught
    assert reached == []
    assert expired(events) == []


async def test_fallback_bad_input() -> None:
    coro = slow_value(1)
    with pytest.raises(TypeError, match="not a coroutine object: you probably wrote slow_value"):
        await anyway.fallback(coro, timeout=1, default=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must be an async function, got 5: pass"):
        await anyway.fallback(5, timeout=1, default=None)  # type: ignore[arg-type]


async def test_fallback_sync_function_is_a_type_error_at_the_call(
    events: list[PolicyEvent],
) -> None:
    def sync_fn(x: int) -> int:
        return x

    with pytest.raises(TypeError) as info:
        await anyway.fallback(sync_fn, 3, timeout=1, default=0)  # type: ignore[arg-type]
    assert type(info.value).__name__ == "NotAwaitableError"
    assert str(info.value).startswith(
        "fallback() fn: test_fallback_sync_function_is_a_type_error_at_the_call.<locals>"
        ".sync_fn(...) returned 3, which cannot be awaited: pass an async function"
    )
    assert expired(events) == []
    with pytest.raises(ValueError, match="timeout must be a number, got NaN"):
        await anyway.fallback(slow_value, 1, timeout=math.nan, default=None)
    with pytest.raises(ValueError, match="timeout must be >= 0, got -1"):
        await anyway.fallback(slow_value, 1, timeout=-1, default=None)
