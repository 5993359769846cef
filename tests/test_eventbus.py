"""EventBus: structured pub/sub with backpressure and no lost errors."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway
from anyway.testing import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


async def test_every_published_event_is_handled_in_order_before_the_block_exits() -> None:
    got: dict[str, list[object]] = {"a": [], "b": []}
    async with anyway.EventBus() as bus:

        @bus.subscribe("orders")
        async def first(payload: object) -> None:
            await anyio.sleep(0.1)
            got["a"].append(payload)

        async def second(payload: object) -> None:
            got["b"].append(payload)

        assert bus.subscribe("orders", second) is second
        for n in range(5):
            await bus.publish("orders", n)
        await bus.publish("nobody-listens", "dropped")
    assert got == {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3, 4]}
    assert "closed" in repr(bus)


async def test_publish_waits_while_a_buffer_is_full(clock: Clock) -> None:
    start = clock.now()
    published: list[float] = []
    handled: list[int] = []
    async with anyway.EventBus() as bus:

        @bus.subscribe("slow", buffer=1)
        async def slow(payload: int) -> None:
            await anyio.sleep(1)
            handled.append(payload)

        for n in range(5):
            await bus.publish("slow", n)
            published.append(clock.now() - start)
    # one event in the handler, one in the buffer: the third waits for the first
    assert published == [
        clock.approx(0),
        clock.approx(0),
        clock.approx(1),
        clock.approx(2),
        clock.approx(3),
    ]
    assert clock.now() - start == clock.approx(5)
    assert handled == [0, 1, 2, 3, 4]


async def test_a_handler_error_stops_nothing_and_is_raised_at_exit(clock: Clock) -> None:
    seen: list[object] = []
    body_ran_to_the_end = False

    async def scenario() -> None:
        async with anyway.EventBus() as bus:

            @bus.subscribe("t")
            async def flaky(payload: int) -> None:
                if payload % 2:
                    raise ValueError(f"odd {payload}")
                seen.append(payload)

            @bus.subscribe("t")
            async def steady(payload: int) -> None:
                seen.append(("steady", payload))

            for n in range(4):
                await bus.publish("t", n)
            await anyio.sleep(1)  # the body is not cancelled by the handler errors
            nonlocal body_ran_to_the_end
            body_ran_to_the_end = True

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    assert body_ran_to_the_end
    errors = info.value.exceptions
    assert [str(e) for e in errors] == ["odd 1", "odd 3"]
    assert "handler" in errors[0].__notes__[0]
    assert "'t'" in errors[0].__notes__[0]
    assert sorted(p for p in seen if isinstance(p, int)) == [0, 2]
    assert [p for p in seen if isinstance(p, tuple)] == [("steady", n) for n in range(4)]


async def test_on_error_gets_the_error_topic_and_payload() -> None:
    reported: list[tuple[str, str, object]] = []

    def on_error(exc: Exception, topic: str, payload: object) -> None:
        reported.append((str(exc), topic, payload))

    async with anyway.EventBus(on_error=on_error) as bus:

        @bus.subscribe("t")
        async def boom(payload: object) -> None:
            raise RuntimeError("boom")

        await bus.publish("t", {"id": 1})
        await bus.publish("t", {"id": 2})
    assert reported == [("boom", "t", {"id": 1}), ("boom", "t", {"id": 2})]


async def test_an_on_error_that_raises_loses_neither_error() -> None:
    def on_error(exc: Exception, topic: str, payload: object) -> None:
        raise KeyError("in on_error")

    async def scenario() -> None:
        async with anyway.EventBus(on_error=on_error) as bus:

            @bus.subscribe("t")
            async def boom(payload: object) -> None:
                raise RuntimeError("boom")

            await bus.publish("t", 1)

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    kinds = [type(e) for e in info.value.exceptions]
    assert kinds == [RuntimeError, KeyError]
    assert "raised by on_error" in info.value.exceptions[1].__notes__[0]


async def test_handlers_may_publish_while_the_block_drains() -> None:
    got: list[str] = []
    async with anyway.EventBus() as bus:

        @bus.subscribe("first")
        async def relay(payload: str) -> None:
            await anyio.sleep(0.5)
            await bus.publish("second", payload + "!")

        @bus.subscribe("second")
        async def sink(payload: str) -> None:
            await anyio.sleep(0.5)
            got.append(payload)

        await bus.publish("first", "hi")
    assert got == ["hi!"]


async def test_cancelling_the_block_cancels_the_handlers(clock: Clock) -> None:
    cleaned: list[object] = []
    errors: list[Exception] = []
    start = clock.now()
    with anyio.move_on_after(1.5) as scope:
        async with anyway.EventBus(on_error=lambda e, t, p: errors.append(e)) as bus:

            @bus.subscribe("t")
            async def forever(payload: object) -> None:
                try:
                    await anyio.sleep_forever()
                finally:
                    cleaned.append(payload)

            await bus.publish("t", 1)
            await anyio.sleep(1)
    assert scope.cancelled_caught
    assert cleaned == [1]
    assert errors == []  # cancellation never reaches on_error
    assert clock.now() - start == clock.approx(1.5)


async def test_a_cancelled_wait_while_draining_stops_the_handlers(clock: Clock) -> None:
    start = clock.now()
    with anyio.move_on_after(2) as scope:
        async with anyway.EventBus() as bus:

            @bus.subscribe("t")
            async def slow(payload: object) -> None:
                await anyio.sleep(10)

            await bus.publish("t", 1)
    assert scope.cancelled_caught
    assert clock.now() - start == clock.approx(2)


async def test_a_failing_body_cancels_the_handlers_and_raises_as_itself() -> None:
    cancelled: list[bool] = []

    async def scenario() -> None:
        async with anyway.EventBus() as bus:

            @bus.subscribe("t")
            async def slow(payload: object) -> None:
                try:
                    await anyio.sleep(10)
                except anyio.get_cancelled_exc_class():
                    cancelled.append(True)
                    raise

            await bus.publish("t", 1)
            await anyio.sleep(0.1)
            raise LookupError("body")

    with pytest.raises(LookupError, match="body"):
        await scenario()
    assert cancelled == [True]


async def test_a_failing_body_and_handler_errors_make_one_group() -> None:
    async def scenario() -> None:
        async with anyway.EventBus() as bus:

            @bus.subscribe("t")
            async def boom(payload: object) -> None:
                raise RuntimeError("handler")

            await bus.publish("t", 1)
            await anyio.sleep(0.1)
            raise LookupError("body")

    with pytest.raises(BaseExceptionGroup) as info:
        await scenario()
    assert [type(e) for e in info.value.exceptions] == [LookupError, RuntimeError]


async def test_a_publisher_cancelled_on_a_full_buffer_leaves_nothing_pending(
    clock: Clock,
) -> None:
    handled: list[int] = []
    start = clock.now()
    async with anyway.EventBus() as bus:

        @bus.subscribe("t", buffer=1)
        async def slow(payload: int) -> None:
            await anyio.sleep(1)
            handled.append(payload)

        await bus.publish("t", 0)
        await bus.publish("t", 1)
        with anyio.move_on_after(0.5) as scope:
            await bus.publish("t", 2)  # the buffer is full until t=1
        assert scope.cancelled_caught
    assert handled == [0, 1]
    assert clock.now() - start == clock.approx(2)
    assert "pending=0" in repr(bus)


async def test_misuse_fails_at_the_call() -> None:
    bus = anyway.EventBus()

    async def handler(payload: object) -> None:
        pass

    with pytest.raises(RuntimeError, match="inside its block"):
        bus.subscribe("t", handler)
    with pytest.raises(RuntimeError, match="inside its block"):
        await bus.publish("t", 1)
    async with bus:
        with pytest.raises(TypeError, match="handler must be an async function"):
            bus.subscribe("t", lambda payload: None)
        with pytest.raises(TypeError, match="topic must be a str"):
            bus.subscribe(1, handler)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="buffer must be >= 1"):
            bus.subscribe("t", handler, buffer=0)
        with pytest.raises(TypeError, match="buffer must be a whole number"):
            bus.subscribe("t", handler, buffer=1.5)  # type: ignore[call-overload]
    with pytest.raises(RuntimeError, match="entered once"):
        async with bus:
            pass
    with pytest.raises(RuntimeError, match="inside its block"):
        await bus.publish("t", 1)

    async def async_on_error(exc: Exception, topic: str, payload: object) -> None:
        pass

    with pytest.raises(TypeError, match="on_error must be a plain"):
        anyway.EventBus(on_error=async_on_error)
    with pytest.raises(TypeError, match="on_error must be callable"):
        anyway.EventBus(on_error="print")  # type: ignore[arg-type]


@settings(
    deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), max_size=30),
    buffers=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
async def test_each_subscriber_gets_exactly_its_topic_in_order(
    anyio_backend: Any, events: list[tuple[str, int]], buffers: tuple[int, int]
) -> None:
    got: dict[str, list[int]] = {"a": [], "b": [], "a2": []}
    async with anyway.EventBus() as bus:

        @bus.subscribe("a", buffer=buffers[0])
        async def on_a(payload: int) -> None:
            await anyio.sleep(payload / 10)
            got["a"].append(payload)

        @bus.subscribe("b", buffer=buffers[1])
        async def on_b(payload: int) -> None:
            await anyio.sleep(payload / 10)
            got["b"].append(payload)

        @bus.subscribe("a", buffer=1)
        async def on_a2(payload: int) -> None:
            got["a2"].append(payload)

        for topic, payload in events:
            await bus.publish(topic, payload)
    expected_a = [p for t, p in events if t == "a"]
    assert got == {"a": expected_a, "b": [p for t, p in events if t == "b"], "a2": expected_a}
