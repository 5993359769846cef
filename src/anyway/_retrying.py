"""``retrying()``: retry a block of code, one :class:`Attempt` at a time::

    async for attempt in anyway.retrying(on=OSError, attempts=3):
        with attempt:
            await connect()

The decisions, waits and give-up notes are the shared retry loop's
(:mod:`anyway._retry_loop`), exactly as for :func:`anyway.retry`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final, TypeVar, Unpack

import anyio

from ._retry import Retry
from ._retry_loop import RetryLoop
from ._retry_notes import secs
from ._retry_options import RetryOptions, Settings
from ._retry_stats import count_call, current_stats
from ._util import short_repr

__all__ = ["Attempt", "Attempts", "retrying"]

T = TypeVar("T")

_FRESH: Final = 0  # no attempt yet
_RUNNING: Final = 1  # an attempt's block runs (or should)
_FAILED: Final = 2  # the last attempt failed retryably
_CUT: Final = 3  # the retry timeout cut the last attempt
_DONE: Final = 4

#: The result of an attempt whose block reported none.
_NO_RESULT: Final = object()


def _cuts(end: float) -> bool:
    """Whether the retry timeout ending at *end* needs a cancel scope of its
    own: not without a timeout, nor when the caller's deadline comes first
    (that one cuts the block then, and its cancellation propagates as it
    would through our scope)."""
    return end != math.inf and end < anyio.current_effective_deadline()


class Attempt:
    """One attempt of a :func:`retrying` loop; use it as ``with attempt:`` (or
    ``async with attempt:``).

    A retryable error raised in the block is swallowed and the loop goes on
    (after the backoff); success ends the loop; any other error propagates.

    With ``retry_if_result``, the block reports its result with
    :meth:`set_result` (or ``attempt.result = value``); leaving the block
    without an error then hands the result to the predicate, and a rejected
    result is retried like a retryable error. A block that reports no result
    is not judged: leaving it without an error ends the loop.
    """

    __slots__ = ("_next_wait", "_num", "_owner", "_result", "_scope")

    def __init__(self, num: int, owner: Attempts) -> None:
        self._num = num
        self._owner = owner
        self._next_wait: float | None = None
        self._result: object = _NO_RESULT
        self._scope: anyio.CancelScope | None = None

    @property
    def num(self) -> int:
        """The number of this attempt: 1 for the first call."""
        return self._num

    @property
    def next_wait(self) -> float:
        """The backoff wait before the next attempt if this one fails
        (``0.0`` under :func:`anyway.testing.no_backoff`). It is drawn once
        and is the wait that will be used, unless ``on`` returns a delay
        of its own."""
        if self._next_wait is None:
            self._next_wait = self._owner._loop.peek_backoff()
        return self._next_wait

    def set_result(self, value: T, /) -> T:
        """Report the block's result and return it, for ``retry_if_result``::

            async for attempt in anyway.retrying(
                on=httpx.TransportError, retry_if_result=lambda r: r.status_code == 503
            ):
                with attempt:
                    response = attempt.set_result(await client.get(url))

        Call it inside ``with attempt:`` (a later call would not be judged, so
        it raises ``RuntimeError``); a second call replaces the result. When
        the block leaves without an error, ``retry_if_result`` judges the
        result: a rejected one is retried (same waits, events and limits as
        :func:`retry`); when retrying stops with a rejected result, the loop
        ends (no error) and :attr:`result` still holds it. Without
        ``retry_if_result`` the result is only kept in :attr:`result`.
        """
        owner = self._owner
        if self is not owner._current or owner._state != _RUNNING:
            raise RuntimeError(
                f"set_result() reports the result of the running attempt, but attempt"
                f" {self._num} is over: call it inside 'with attempt:'"
            )
        self._result = value
        return value

    @property
    def result(self) -> Any:
        """The result this attempt reported with :meth:`set_result` (after the
        loop: the last attempt's result, accepted or, when retrying stopped,
        rejected). ``AttributeError`` if it reported none. Setting it is the
        same as calling :meth:`set_result`."""
        result = self._result
        if result is _NO_RESULT:
            raise AttributeError(
                f"attempt {self._num} reported no result: call attempt.set_result(value)"
                " inside 'with attempt:'"
            )
        return result

    @result.setter
    def result(self, value: object) -> None:
        self.set_result(value)

    def __repr__(self) -> str:
        shown = "" if self._result is _NO_RESULT else f" result={short_repr(self._result, 60)}"
        return f"<Attempt num={self._num} next_wait={secs(self.next_wait)}{shown}>"

    def __enter__(self) -> Attempt:
        if self._owner._loop.settings.awaits:
            raise TypeError(
                "this retrying() loop has an async predicate (on= or retry_if_result=), which"
                " 'with attempt:' cannot await: use 'async with attempt:'"
            )
        return self._enter()

    def _enter(self) -> Attempt:
        owner = self._owner
        end = owner._loop.end
        if self is owner._current and _cuts(end):
            # A later attempt runs under the retry timeout (the first failure + timeout).
            scope = self._scope = anyio.CancelScope(deadline=end)
            scope.__enter__()
        return self

    def _cut(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Leave the timeout's scope; whether it cut the block."""
        scope = self._scope
        if scope is None:
            return False
        self._scope = None
        scope.__exit__(exc_type, exc, tb)
        return scope.cancelled_caught

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._cut(exc_type, exc, tb):
            return self._owner._cut(self)
        return self._owner._exit(self, exc)

    async def __aenter__(self) -> Attempt:
        return self._enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._cut(exc_type, exc, tb):
            return self._owner._cut(self)
        owner = self._owner
        if not owner._loop.settings.awaits:
            return owner._exit(self, exc)
        end = owner._loop.end
        if self is not owner._current or not _cuts(end):
            return await owner._exit_async(self, exc)
        # An async predicate judging a later attempt runs under the retry
        # timeout too, as in retry(): cut, the failure it judged is the last.
        with anyio.CancelScope(deadline=end):
            return await owner._exit_async(self, exc)
        owner._state = _CUT
        return True


class Attempts(AsyncIterator[Attempt]):
    """The async iterator behind :func:`retrying` (one per loop, never shared)."""

    __slots__ = ("_current", "_loop", "_state")

    def __init__(self, settings: Settings, name: str) -> None:
        self._loop = RetryLoop(settings, name)
        self._state = _FRESH
        self._current: Attempt | None = None

    def __repr__(self) -> str:
        state = ("fresh", "running", "failed", "cut", "done")[self._state]
        return f"<retrying {self._loop.name} attempts={self._loop.attempts} state={state}>"

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempt:
        state = self._state
        loop = self._loop
        if state == _FAILED:
            self._state = _DONE  # unless the loop goes on
            if not _cuts(loop.end):
                go_on = await loop.pause()
            else:
                with anyio.CancelScope(deadline=loop.end) as scope:
                    go_on = await loop.pause()
                if scope.cancelled_caught:  # the retry timeout cut a hook or the wait
                    await loop.cut()  # raises the last error, or returns: a rejected result
                    go_on = False
            if not go_on:
                raise StopAsyncIteration  # the rejected result stays on the attempt
        elif state == _FRESH:
            budget = loop.settings.budget
            if budget is not None:
                budget.deposit()
            if loop.settings.before:
                await loop.announce(1)
            stats = loop.stats = current_stats()  # the scope the loop starts in
            if stats is not None:
                count_call(stats)
        elif state == _CUT:
            self._state = _DONE
            await loop.cut()  # raises the last error, or returns: a rejected result
            assert self._current is not None
            self._current._result = loop.result  # the last attempt shows it
            raise StopAsyncIteration
        elif state == _DONE:
            raise StopAsyncIteration
        else:
            self._state = _DONE
            raise RuntimeError(
                "each attempt of a retrying() loop must run its code in 'with attempt:';"
                " this one never entered or left it"
            )
        attempt = self._current = Attempt(loop.attempts, self)
        self._state = _RUNNING
        return attempt

    def _exit(self, attempt: Attempt, exc: BaseException | None) -> bool:
        if attempt is not self._current or self._state != _RUNNING:
            return False  # a stale attempt: leave its exception alone
        self._state = _DONE
        loop = self._loop
        if exc is None:
            result = attempt._result
            if (
                result is not _NO_RESULT
                and loop.settings.result_check is not None
                and loop.rejected(result)
            ):
                self._state = _FAILED  # __anext__ retries or gives up
            return False
        if loop.failed(exc):
            self._state = _FAILED
            return True
        return False

    async def _exit_async(self, attempt: Attempt, exc: BaseException | None) -> bool:
        """:meth:`_exit`, awaiting async predicates (``async with attempt:``)."""
        if attempt is not self._current or self._state != _RUNNING:
            return False
        self._state = _DONE
        loop = self._loop
        if exc is None:
            result = attempt._result
            if (
                result is not _NO_RESULT
                and loop.settings.result_check is not None
                and await loop.rejected_async(result)
            ):
                self._state = _FAILED
            return False
        if await loop.failed_async(exc):
            self._state = _FAILED
            return True
        return False

    def _cut(self, attempt: Attempt) -> bool:
        if attempt is self._current and self._state == _RUNNING:
            self._state = _CUT  # __anext__ gives up with the last real failure
        return True


def retrying(**options: Unpack[RetryOptions]) -> AsyncIterator[Attempt]:
    """Retry a block of code: an async iterator of :class:`Attempt` context
    managers, with the options of :func:`retry`::

        async for attempt in anyway.retrying(on=OSError, attempts=3):
            with attempt:
                await connect()

    A retryable error in the ``with`` block is swallowed and the next
    iteration waits for the backoff; success ends the loop; when retrying
    stops, the last error is raised from the ``async for`` line with the
    same notes as :func:`retry`. Other errors propagate from the block.
    After the first failure, each block runs under the retry timeout: a
    block still running when it expires is cancelled, and the last real
    error is raised from the ``async for`` line.

    With *retry_if_result*, the block reports its result with
    :meth:`Attempt.set_result`; a rejected result is retried like an error.
    When retrying stops on a rejected result the loop just ends, and the
    last attempt's :attr:`Attempt.result` holds it::

        async for attempt in anyway.retrying(
            on=httpx.TransportError, retry_if_result=lambda r: r.status_code == 503
        ):
            with attempt:
                attempt.set_result(await client.get(url))
        response = attempt.result
    """
    return Retry(**options).retrying()
