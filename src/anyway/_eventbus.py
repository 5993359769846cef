"""``EventBus``: in-process publish/subscribe, structured.

The hand-written bus (a dict of topic -> handlers, ``create_task`` per event)
leaks tasks, loses handler errors and grows without bound when a handler is
slow. Here the handlers run in the bus's own task group, inside ``async with
EventBus() as bus:``; each subscriber has a bounded buffer, so ``publish``
waits while one is full (backpressure) and memory never grows without bound.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, TypeVar, overload

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._util import (
    check_async_function,
    is_async_function,
    name_of,
    short_repr,
)
from ._validate import check_callable, check_count

__all__ = ["EventBus"]

Handler = Callable[[Any], Awaitable[Any]]
H = TypeVar("H", bound=Handler)
ErrorHandler = Callable[[Exception, str, Any], object]

_DEFAULT_BUFFER: Final = 100


class _Subscriber:
    __slots__ = ("handler", "receive", "send", "topic")

    def __init__(self, topic: str, handler: Handler, buffer: int) -> None:
        self.topic = topic
        self.handler = handler
        send, receive = anyio.create_memory_object_stream[Any](buffer)
        self.send: MemoryObjectSendStream[Any] = send
        self.receive: MemoryObjectReceiveStream[Any] = receive


class EventBus:
    """In-process pub/sub whose handlers live inside an ``async with`` block.

    ::

        async with anyway.EventBus() as bus:

            @bus.subscribe("order.paid")
            async def ship(order):
                ...

            await bus.publish("order.paid", order)
        # here every published event has been handled

    * Each subscriber has its own task and a buffer of *buffer* events;
      :meth:`publish` waits while a subscriber's buffer is full, so a slow
      handler slows its publishers down instead of growing memory.
    * A subscriber sees its topic's events in publish order; different
      subscribers run concurrently. A handler that publishes to its own
      topic can wait forever on its own full buffer: give it another topic.
    * A handler's exception never stops the other handlers or later events.
      It goes to ``on_error(exc, topic, payload)`` (a plain function) if
      given, otherwise every such error is raised in one ``ExceptionGroup``
      when the block exits (the block's body is not cancelled by them).
      Cancellation never reaches ``on_error``.
    * Leaving the block normally delivers every event already published
      (including events that handlers publish meanwhile), then returns. If
      the body raises or is cancelled, the handlers are cancelled.
    """

    __slots__ = ("_closed", "_errors", "_idle", "_on_error", "_pending", "_subscribers", "_tg")

    def __init__(self, *, on_error: ErrorHandler | None = None) -> None:
        if on_error is not None:
            check_callable("on_error", on_error)
            if is_async_function(on_error):
                raise TypeError(
                    "on_error must be a plain (sync) function (exc, topic, payload) -> None,"
                    f" got the async function {name_of(on_error)}; publish to another topic"
                    " from it if the reaction must await"
                )
        self._on_error = on_error
        self._subscribers: dict[str, list[_Subscriber]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._errors: list[Exception] = []
        self._pending = 0  # events published and not yet handled
        self._idle: anyio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._tg is not None else "not entered"
        topics = {topic: len(subs) for topic, subs in self._subscribers.items()}
        return f"<EventBus {state} subscribers={topics} pending={self._pending}>"

    async def __aenter__(self) -> EventBus:
        if self._tg is not None or self._closed:
            raise RuntimeError("an EventBus can be entered once: create a new one per block")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg = self._tg
        assert tg is not None
        raised: list[BaseException] = []  # what must propagate besides the body's error
        if exc is None:
            try:
                await self._drain()
            except BaseException as drain_exc:  # cancelled while draining
                raised.append(drain_exc)
        if exc is not None or raised:
            tg.cancel_scope.cancel()  # the body failed or was cancelled: stop the handlers
        self._close()
        try:
            await tg.__aexit__(None, None, None)
        except BaseException as tg_exc:  # a handler raised a BaseException (or we were cancelled)
            raised.append(tg_exc)
        finally:
            self._tg = None
        errors, self._errors = self._errors, []
        if not errors:
            if raised:
                raise raised[0]
            return False  # the body's own error, if any, propagates as itself
        everything = [*([exc] if exc is not None else []), *raised, *errors]
        count = f"{len(errors)} error{'s' if len(errors) > 1 else ''}"
        if len(everything) == len(errors):
            raise ExceptionGroup(f"EventBus handlers raised {count}", errors)
        raise BaseExceptionGroup(
            f"EventBus: handlers raised {count} as the block failed", everything
        )

    async def _drain(self) -> None:
        while self._pending:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _close(self) -> None:
        self._closed = True
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.send.close()

    @overload
    def subscribe(self, topic: str, handler: H, *, buffer: int = ...) -> H: ...
    @overload
    def subscribe(
        self, topic: str, handler: None = None, *, buffer: int = ...
    ) -> Callable[[H], H]: ...
    def subscribe(
        self, topic: str, handler: H | None = None, *, buffer: int = _DEFAULT_BUFFER
    ) -> H | Callable[[H], H]:
        """Call ``await handler(payload)`` for every event published to *topic*.

        Inside the ``async with`` block only. *buffer* events may wait for this
        handler before :meth:`publish` waits too. Returns *handler*; without
        one, a decorator: ``@bus.subscribe("topic")``.
        """
        if not isinstance(topic, str):
            raise TypeError(
                f"topic must be a str, got {short_repr(topic, 60)} ({type(topic).__name__})"
            )
        size = check_count("buffer", buffer, hint="; how many events may wait for this handler")
        if handler is None:

            def register(fn: H) -> H:
                return self.subscribe(topic, fn, buffer=size)

            return register
        check_async_function("handler", handler)
        tg = self._open("subscribe")
        subscriber: _Subscriber = _Subscriber(topic, handler, size)
        self._subscribers.setdefault(topic, []).append(subscriber)
        tg.start_soon(
            self._serve, subscriber, name=f"EventBus handler {name_of(handler)} for {topic!r}"
        )
        return handler

    async def publish(self, topic: str, payload: object) -> None:
        """Hand *payload* to every subscriber of *topic*, in subscription order.

        Waits while a subscriber's buffer is full. A topic without subscribers
        drops the event. If the publisher is cancelled while waiting, the
        subscribers not reached yet do not get the event.
        """
        self._open("publish")
        for subscriber in self._subscribers.get(topic, ()):
            self._pending += 1
            try:
                await subscriber.send.send(payload)
            except BaseException:
                self._done()
                raise

    def _open(self, what: str) -> anyio.abc.TaskGroup:
        if self._tg is None or self._closed:
            raise RuntimeError(
                f"EventBus.{what}() works only inside its block: async with EventBus() as bus:"
                f" ... bus.{what}(...)"
            )
        return self._tg

    def _done(self) -> None:
        self._pending -= 1
        if not self._pending and self._idle is not None:
            self._idle.set()

    async def _serve(self, subscriber: _Subscriber) -> None:
        async with subscriber.receive:
            async for payload in subscriber.receive:
                try:
                    await subscriber.handler(payload)
                except Exception as exc:
                    self._report(exc, subscriber, payload)
                finally:
                    self._done()

    def _report(self, exc: Exception, subscriber: _Subscriber, payload: object) -> None:
        where = f"EventBus handler {name_of(subscriber.handler)} for {subscriber.topic!r} failed on {short_repr(payload, 80)}"
        if self._on_error is None:
            exc.add_note(where)
            self._errors.append(exc)
            return
        try:
            result = self._on_error(exc, subscriber.topic, payload)
            if inspect.isawaitable(result):  # e.g. lambda exc, topic, payload: log(...)
                if inspect.iscoroutine(result):
                    result.close()  # it would never run: no "never awaited" warning
                raise TypeError(
                    f"on_error {name_of(self._on_error)} returned {short_repr(result, 60)},"
                    " which the bus cannot await: on_error must be a plain function; an async"
                    " reaction can go to another topic (an async def handler)"
                )
        except Exception as error_handler_exc:  # never lose either error
            exc.add_note(where)
            error_handler_exc.add_note(
                f"raised by on_error {name_of(self._on_error)} while handling: {exc!r}"
            )
            self._errors.extend((exc, error_handler_exc))
