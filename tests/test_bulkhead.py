"""Bulkhead: concurrency limit, bounded FIFO queue, rejection at once,
cancellation safety, bad input. Every test runs on every loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from anyway import Bulkhead, BulkheadFull, CallRejected, PolicyEvent
from anyway.testing import backend_id
from limit_helpers import run_fresh

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


class Crowd:
    """Tasks that enter a bulkhead at given times and stay inside for a while."""

    def __init__(self, bulkhead: Bulkhead, clock: Any) -> None:
        self.bulkhead = bulkhead
        self.clock = clock
        self.t0 = clock.now()
        self.entered: dict[str, float] = {}
        self.order: list[str] = []
        self.rejected: dict[str, float] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.inside = 0
        self.most_inside = 0

    async def call(self, name: str, at: float, hold: float) -> None:
        scope = self.scopes[name] = anyio.CancelScope()
        with scope:
            await anyio.sleep_until(self.t0 + at)
            try:
                async with self.bulkhead:
                    self.entered[name] = self.clock.now() - self.t0
                    self.order.append(name)
                    self.inside += 1
                    self.most_inside = max(self.most_inside, self.inside)
                    try:
                        await anyio.sleep(hold)
                    finally:
                        self.inside -= 1
            except BulkheadFull:
                self.rejected[name] = self.clock.now() - self.t0

    async def cancel(self, name: str, at: float) -> None:
        await anyio.sleep_until(self.t0 + at)
        self.scopes[name].cancel()

    def approx(self, times: dict[str, float]) -> dict[str, Any]:
        return {name: self.clock.approx(t) for name, t in times.items()}


async def test_rejects_at_once_when_full_and_no_queue(clock: Any) -> None:
    events: list[PolicyEvent] = []
    bulkhead = Bulkhead(2, name="db", hooks=events.append)
    crowd = Crowd(bulkhead, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(crowd.call, "a", 0.0, 2.0)
        tg.start_soon(crowd.call, "b", 0.0, 3.0)
        tg.start_soon(crowd.call, "c", 1.0, 1.0)  # both slots busy: rejected at 1
        tg.start_soon(crowd.call, "d", 2.5, 1.0)  # a left at 2: enters at once
        await anyio.sleep(1.5)
        assert (bulkhead.active, bulkhead.waiting) == (2, 0)
        assert repr(bulkhead) == "<Bulkhead 'db' active=2/2 waiting=0/0>"
    assert crowd.approx(crowd.entered) == crowd.approx({"a": 0, "b": 0, "d": 2.5})
    assert crowd.approx(crowd.rejected) == crowd.approx({"c": 1})
    (event,) = events
    assert event == CallRejected(policy="db", by="bulkhead", retry_after=None)
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


async def test_rejection_message_and_default_policy_name() -> None:
    events: list[PolicyEvent] = []
    bulkhead = Bulkhead(1, max_waiting=1, hooks=[events.append])
    async with anyio.create_task_group() as tg, bulkhead:
        tg.start_soon(bulkhead.__aenter__)  # queues (and is granted on exit)
        await anyio.sleep(0.5)
        with pytest.raises(BulkheadFull) as info:
            async with bulkhead:
                pytest.fail("entered a full bulkhead")  # pragma: no cover
        assert str(info.value) == (
            "Bulkhead(1): all 1 slot(s) are busy and 1 call(s) already wait (max_waiting=1)"
        )
        assert info.value.retry_after is None
        assert [e.policy for e in events] == ["Bulkhead(1)"]
    assert (bulkhead.active, bulkhead.waiting) == (1, 0)  # the queued one holds it


async def test_waiters_are_served_in_arrival_order(clock: Any) -> None:
    bulkhead = Bulkhead(1, max_waiting=3)
    crowd = Crowd(bulkhead, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(crowd.call, "a", 0.0, 2.0)
        for name, at in (("b", 0.1), ("c", 0.2), ("d", 0.3)):
            tg.start_soon(crowd.call, name, at, 1.0)
        tg.start_soon(crowd.call, "e", 0.5, 1.0)  # queue full: rejected at once
        tg.start_soon(crowd.call, "f", 2.5, 1.0)  # queued behind c and d
        await anyio.sleep(1)
        assert repr(bulkhead) == "<Bulkhead active=1/1 waiting=3/3>"
    assert crowd.order == ["a", "b", "c", "d", "f"]
    assert crowd.approx(crowd.entered) == crowd.approx({"a": 0, "b": 2, "c": 3, "d": 4, "f": 5})
    assert crowd.approx(crowd.rejected) == crowd.approx({"e": 0.5})
    assert crowd.most_inside == 1


async def test_free_slot_is_not_taken_by_a_newcomer_while_others_wait(clock: Any) -> None:
    # Two slots: when a leaves at 2, the slot goes straight to b (queued),
    # even though c arrives at the same moment.
    bulkhead = Bulkhead(2, max_waiting=2)
    crowd = Crowd(bulkhead, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(crowd.call, "a", 0.0, 2.0)
        tg.start_soon(crowd.call, "x", 0.0, 10.0)
        tg.start_soon(crowd.call, "b", 1.0, 2.0)
        tg.start_soon(crowd.call, "c", 2.0, 1.0)
    assert crowd.order[2:] == ["b", "c"]
    assert crowd.approx(crowd.entered) == crowd.approx({"a": 0, "x": 0, "b": 2, "c": 4})


async def test_cancelled_waiter_leaves_the_queue(clock: Any) -> None:
    bulkhead = Bulkhead(1, max_waiting=3)
    crowd = Crowd(bulkhead, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(crowd.call, "a", 0.0, 2.0)
        for name, at in (("b", 0.1), ("c", 0.2), ("d", 0.3)):
            tg.start_soon(crowd.call, name, at, 1.0)
        tg.start_soon(crowd.cancel, "b", 1.0)
        tg.start_soon(crowd.cancel, "c", 1.0)
        await anyio.sleep(1.5)
        assert bulkhead.waiting == 1
        tg.start_soon(crowd.call, "e", 1.5, 1.0)  # there is room in the queue again
    assert crowd.order == ["a", "d", "e"]
    assert crowd.approx(crowd.entered) == crowd.approx({"a": 0, "d": 2, "e": 3})
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


async def test_slot_handed_to_a_waiter_cancelled_at_that_moment_is_passed_on(
    clock: Any,
) -> None:
    bulkhead = Bulkhead(1, max_waiting=2)
    crowd = Crowd(bulkhead, clock)
    async with anyio.create_task_group() as tg:
        async with bulkhead:
            tg.start_soon(crowd.call, "b", 0.0, 1.0)
            tg.start_soon(crowd.call, "c", 0.5, 1.0)
            await anyio.sleep(1)
            assert bulkhead.waiting == 2
        # leaving handed the slot to b; b is cancelled before it could run
        crowd.scopes["b"].cancel()
    # c got the slot: either b passed it on while still waiting, or b (already
    # resumed on some loops) was cancelled inside and released it on the way out
    assert crowd.order in (["c"], ["b", "c"])
    assert crowd.entered["c"] == clock.approx(1.0)
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


async def test_native_cancel_of_a_just_granted_waiter_passes_the_slot_on(
    anyio_backend: Any, clock: Any
) -> None:
    # AnyIO never cancels a task whose wait is already over, but asyncio's own
    # task.cancel() (asyncio.timeout, wait_for...) can: the waiter was handed
    # the slot and dies before using it, so it must pass the slot on.
    bulkhead = Bulkhead(1, max_waiting=2)
    crowd = Crowd(bulkhead, clock)
    tasks: dict[str, asyncio.Task[Any]] = {}

    async def call(name: str) -> None:
        if backend_id(anyio_backend) != "trio":
            task = asyncio.current_task()
            assert task is not None
            tasks[name] = task
        await crowd.call(name, 0.0, 1.0)

    async with anyio.create_task_group() as tg:
        async with bulkhead:
            tg.start_soon(call, "b")
            await anyio.sleep(0.5)
            tg.start_soon(call, "c")
            await anyio.sleep(0.5)
        if tasks:
            tasks["b"].cancel()  # b holds the slot but has not run yet
        else:
            crowd.scopes["b"].cancel()
    assert crowd.order[-1] == "c"
    assert crowd.entered["c"] == clock.approx(1.0)
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


async def test_cancelled_holder_frees_its_slot(clock: Any) -> None:
    bulkhead = Bulkhead(1)
    crowd = Crowd(bulkhead, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(crowd.call, "a", 0.0, 10.0)
        tg.start_soon(crowd.cancel, "a", 1.0)
        tg.start_soon(crowd.call, "b", 2.0, 1.0)
    assert crowd.approx(crowd.entered) == crowd.approx({"a": 0, "b": 2})
    assert bulkhead.active == 0


async def test_cancelled_during_a_slow_rejection_hook(clock: Any) -> None:
    # A rejection emits CallRejected to the hooks first; a hook that awaits
    # can be cancelled there: the cancellation propagates (not BulkheadFull)
    # and nothing is taken or leaked.
    async def slow_hook(event: PolicyEvent) -> None:
        await anyio.sleep(10)

    bulkhead = Bulkhead(1, hooks=slow_hook)
    async with bulkhead:
        with anyio.move_on_after(0.5) as scope:
            async with bulkhead:
                pytest.fail("entered a full bulkhead")  # pragma: no cover
        assert scope.cancelled_caught
        assert (bulkhead.active, bulkhead.waiting) == (1, 0)
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


async def test_entering_is_a_checkpoint(clock: Any) -> None:
    bulkhead = Bulkhead(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with bulkhead:
            pytest.fail("entered in a cancelled scope")  # pragma: no cover
    assert scope.cancelled_caught
    assert bulkhead.active == 0

    ran = []

    async def other() -> None:
        ran.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        for _ in range(10):  # never has to wait, but yields to other tasks
            async with bulkhead:
                pass
        assert ran


async def test_properties() -> None:
    bulkhead = Bulkhead(3, max_waiting=7, name="api")
    assert (bulkhead.max_concurrent, bulkhead.max_waiting, bulkhead.name) == (3, 7, "api")
    async with bulkhead:
        assert bulkhead.active == 1
    assert bulkhead.active == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0,), {}, ValueError, "max_concurrent must be >= 1, got 0"),
        ((-1,), {}, ValueError, "max_concurrent must be >= 1, got -1"),
        ((1.5,), {}, TypeError, "max_concurrent must be a whole number, got 1.5"),
        ((True,), {}, TypeError, "max_concurrent must be a whole number, got True"),
        ((None,), {}, TypeError, "max_concurrent must be a whole number, got None"),
        ((float("nan"),), {}, TypeError, "max_concurrent must be a whole number, got nan"),
        ((float("inf"),), {}, TypeError, "max_concurrent must be a whole number, got inf"),
        ((1,), {"max_waiting": float("nan")}, TypeError, "max_waiting must be a whole number"),
        ((1,), {"max_waiting": float("-inf")}, TypeError, "max_waiting must be a whole number"),
        ((1,), {"max_waiting": -1}, ValueError, "max_waiting must be >= 0, got -1"),
        ((1,), {"max_waiting": 2.0}, TypeError, "max_waiting must be a whole number"),
        ((1,), {"max_waiting": False}, TypeError, "max_waiting must be a whole number"),
        ((1,), {"name": b"db"}, TypeError, "name must be a string or None"),
        ((1,), {"hooks": ["log"]}, TypeError, "hooks must be callables"),
    ],
)
def test_bad_construction(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        Bulkhead(*args, **kwargs)


MODULE_LEVEL = Bulkhead(1, max_waiting=1)  # created at import time


def test_a_bulkhead_from_import_time_works_in_each_run(
    anyio_backend: Any, request: pytest.FixtureRequest
) -> None:
    # Each run ends with a holder and a waiter inside (cancelled with the
    # run's task group): the next run starts empty, its events on its loop.
    # Steps wait for states, not for time, so real time (uvloop) runs them
    # in the same order.
    def run_once() -> tuple[list[str], int]:
        async def main() -> tuple[list[str], int]:
            order: list[str] = []
            rejected = 0
            release = {name: anyio.Event() for name in ("a", "b", "d")}

            async def call(name: str) -> None:
                nonlocal rejected
                try:
                    async with MODULE_LEVEL:
                        order.append(name)
                        await release[name].wait()
                except BulkheadFull:
                    rejected += 1

            async def until(condition: Callable[[], bool]) -> None:
                while not condition():
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "a")  # holds
                await until(lambda: MODULE_LEVEL.active == 1)
                tg.start_soon(call, "b")  # waits
                await until(lambda: MODULE_LEVEL.waiting == 1)
                tg.start_soon(call, "c")  # rejected
                await until(lambda: rejected == 1)
                release["a"].set()  # a leaves, b enters
                await until(lambda: order == ["a", "b"])
                tg.start_soon(call, "d")  # waits
                await until(lambda: MODULE_LEVEL.waiting == 1)
                tg.start_soon(call, "e")  # rejected
                await until(lambda: rejected == 2)
                assert (MODULE_LEVEL.active, MODULE_LEVEL.waiting) == (1, 1)
                tg.cancel_scope.cancel()  # the run ends with b holding, d waiting
            return order, rejected

        return run_fresh(main, request)

    assert run_once() == (["a", "b"], 2)
    assert run_once() == (["a", "b"], 2)
    assert (MODULE_LEVEL.active, MODULE_LEVEL.waiting) == (0, 0)
