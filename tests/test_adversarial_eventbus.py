"""Adversarial probes of anyway.EventBus: BaseExceptions and misbehaving
callbacks from user code, deadlines around the block, nested publishing."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import anyio
import pytest

import anyway
from anyway.testing import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


class Stop(BaseException):
    """A KeyboardInterrupt-like BaseException raised by user code."""


async def _log_async(exc: Exception, topic: str, payload: object) -> None:
    pass


async def test_an_on_error_returning_a_coroutine_is_refused_not_dropped() -> None:
    # lambda ...: log_async(...) looks like an async on_error, but its
    # coroutine would never run: the handler's error must not vanish.
    async def scenario() -> None:
        async with anyway.EventBus(on_error=lambda e, t, p: _log_async(e, t, p)) as bus:

            @bus.subscribe("t")
            async def bad(payload: object) -> None:
                raise ValueError("handler bug")

            await bus.publish("t", 1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ExceptionGroup) as info:
            await scenario()
        gc.collect()
    kinds = [type(e) for e in info.value.exceptions]
    assert kinds == [ValueError, TypeError]
    assert "async def" in str(info.value.exceptions[1])


async def test_a_base_exception_from_a_handler_propagates_and_nothing_hangs(clock: Clock) -> None:
    async def scenario() -> None:
        async with anyway.EventBus() as bus:

            @bus.subscribe("t", buffer=1)
            async def fatal(payload: object) -> None:
                raise Stop()

            @bus.subscribe("other")
            async def forever(payload: object) -> None:
                await anyio.sleep_forever()

            await bus.publish("other", 0)
            await bus.publish("t", 1)
            await anyio.sleep(10)  # cancelled: the handler's Stop ends the block

    start = clock.now()
    with pytest.raises(BaseExceptionGroup) as info:
        await scenario()
    assert info.value.subgroup(Stop) is not None
    assert clock.now() - start == clock.approx(0)


async def test_a_base_exception_from_on_error_propagates(clock: Clock) -> None:
    def on_error(exc: Exception, topic: str, payload: object) -> None:
        raise Stop()

    async def scenario() -> None:
        async with anyway.EventBus(on_error=on_error) as bus:

            @bus.subscribe("t")
            async def bad(payload: object) -> None:
                raise ValueError("handler bug")

            await bus.publish("t", 1)

    with pytest.raises(BaseExceptionGroup) as info:
        await scenario()
    stop = info.value.subgroup(Stop)
    assert stop is not None
    assert isinstance(stop.exceptions[0].__context__, ValueError)  # the handler's error


async def test_a_deadline_around_the_block_cuts_a_slow_drain_and_keeps_handler_errors(
    clock: Clock,
) -> None:
    async def scenario() -> None:
        with anyway.deadline(1):
            async with anyway.EventBus() as bus:

                @bus.subscribe("slow")
                async def slow(payload: object) -> None:
                    await anyio.sleep(10)

                @bus.subscribe("bad")
                async def bad(payload: object) -> None:
                    raise ValueError("handler bug")

                await bus.publish("bad", 1)
                await bus.publish("slow", 1)

    start = clock.now()
    with pytest.raises(BaseExceptionGroup) as info:
        await scenario()
    assert clock.now() - start == clock.approx(1)
    # The deadline's scope takes its cancellation out of the group (as trio's
    # fail_after does with a nursery's): the handler's error is what is left.
    assert info.value.subgroup(ValueError) is not None


async def test_a_handler_may_wait_on_another_topics_full_buffer_while_the_block_drains(
    clock: Clock,
) -> None:
    handled: list[Any] = []
    start = clock.now()
    async with anyway.EventBus() as bus:

        @bus.subscribe("slow", buffer=1)
        async def slow(payload: object) -> None:
            await anyio.sleep(1)
            handled.append(("slow", payload))

        @bus.subscribe("fan")
        async def fan(payload: int) -> None:
            for n in range(3):
                await bus.publish("slow", (payload, n))  # waits on slow's full buffer

        await bus.publish("fan", 0)
        await bus.publish("fan", 1)
    assert len(handled) == 6
    assert clock.now() - start == clock.approx(6)


async def test_a_cancelled_publisher_on_a_full_buffer_gives_the_event_to_no_one(
    clock: Clock,
) -> None:
    handled: list[object] = []
    async with anyway.EventBus() as bus:

        @bus.subscribe("t", buffer=1)
        async def slow(payload: object) -> None:
            await anyio.sleep(1)
            handled.append(payload)

        await bus.publish("t", 1)  # taken by the handler
        await bus.publish("t", 2)  # in the buffer
        with anyio.move_on_after(0.5):
            await bus.publish("t", 3)  # waits, cancelled
        assert "pending=2" in repr(bus)
    assert handled == [1, 2]


async def test_a_publisher_cancelled_just_as_its_event_is_taken_counts_it_once(
    clock: Clock,
) -> None:
    # The handler takes the event a publisher waits with (its send completes)
    # and cancels that publisher in the same step: the event is delivered and
    # counted once, so the drain neither hangs nor ends early.
    scope = anyio.CancelScope()
    got: list[int] = []
    start = clock.now()
    async with anyway.EventBus() as bus:

        @bus.subscribe("t", buffer=1)
        async def handler(payload: int) -> None:
            if payload == 3:
                scope.cancel()
            got.append(payload)
            await anyio.sleep(1)

        with scope:
            for n in range(1, 10):
                await bus.publish("t", n)
        assert "pending=2" in repr(bus)  # 3 in the handler, 4 in the buffer
    assert got == [1, 2, 3, 4]
    assert "pending=0" in repr(bus)
    assert clock.now() - start == clock.approx(4)
