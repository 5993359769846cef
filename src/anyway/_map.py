"""Bounded, lazy fan-out over an iterable: :func:`map` and :func:`map_all`.

A pool of worker tasks (at most the concurrency limit; each pull starts up to
two more, so a short input never pays for a large pool) lives in one task
group for as long as the ``async with`` block or the ``map_all`` call. Each
worker pulls the next item, calls ``fn(item)`` and hands the result over.
:func:`map` yields the results; a window bounds how far the workers run ahead
of the consumer (memory, laziness). :func:`map_all` has no consumer to wait
for: results go straight into its list; only the concurrency limit applies.
"""

from __future__ import annotations

import reprlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from inspect import isasyncgen, isgenerator
from types import TracebackType
from typing import Any, Final, Generic, Literal, NoReturn, TypeVar, overload

from anyio import Event, Lock, create_task_group, move_on_after
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from outcome import Error, Outcome, Value

from ._groups import raise_group, raised_in_cleanup
from ._util import NotAwaitableError, call_async, check_callable_arg, name_of
from ._validate import check_async_cm, check_count

__all__ = ["map", "map_all"]

T = TypeVar("T")
R = TypeVar("R")

#: How far ahead of the consumer ``map(max_at_once=None)`` reads items it
#: cannot count (a generator, an async iterable, ``itertools.count()``...):
#: at most this many calls started and not yet yielded, so that an endless
#: iterable uses bounded memory. Items with a ``__len__`` all start at once.
UNSIZED_WINDOW: Final = 1024
_CLOSE_SECONDS: Final = 5.0  # the most map() waits for an async generator to close
# A worker lets the other tasks run (and notices a cancellation) at least once
# every this many items, even if its calls never wait.
_ITEMS_PER_CHECKPOINT: Final = 16
_FIRST_WORKERS: Final = 16  # the pool's size at the start, if there are that many items
_EMPTY: Final[Any] = object()  # no item left; map_all: a slot whose result has not come yet
_FULL: Final[Any] = object()  # the window filled while a worker waited to pull


class _Map(Generic[T, R]):
    """What :func:`map` returns: the async context manager and, once
    entered, the async iterator of results (``collect=True``: map_all's list)."""

    __slots__ = (
        "_aiterator",
        "_collect",
        "_done",
        "_exhausted",
        "_failed",
        "_fn",
        "_items",
        "_iterator",
        "_limit",
        "_limiter",
        "_ordered",
        "_outcomes",
        "_pull_lock",
        "_pulled",
        "_ready",
        "_results",
        "_size",
        "_slot_waiters",
        "_state",
        "_task_name",
        "_tg",
        "_waiter",
        "_window",
        "_workers",
        "_yielded",
    )

    def __init__(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        max_at_once: int | None,
        limiter: AbstractAsyncContextManager[object] | None,
        ordered: bool,
        return_exceptions: bool,
        *,
        collect: bool = False,
    ) -> None:
        self._fn = fn
        self._items = items
        self._limit = max_at_once
        self._limiter = limiter
        self._ordered = ordered
        self._outcomes = return_exceptions
        self._collect = collect
        # The pool's size, and the most calls started and not yet yielded:
        # max_at_once, else all of a sized input, else a bounded read-ahead.
        sized = hasattr(type(items), "__len__")
        self._size: int
        self._window: int | None
        if max_at_once is not None:
            self._size = self._window = max_at_once
        elif sized:
            self._size, self._window = max(len(items), 1), None  # type: ignore[arg-type]
        else:
            self._size = self._window = UNSIZED_WINDOW
        if collect:
            self._window = None  # nobody to wait for: the list holds every result
        self._task_name = f"anyway.map({name_of(fn)})"
        self._tg: TaskGroup | None = None
        self._state = "new"  # -> "open" -> "closed"
        self._iterator: Iterator[T] | None = None
        self._aiterator: AsyncIterator[T] | None = None
        self._pull_lock: Lock | None = None  # async items: one worker pulls at a time
        self._workers = 0
        self._pulled = 0  # items taken from `items` (= calls started)
        self._yielded = 0  # results handed to the consumer
        self._done: dict[int, Any] = {}  # ordered: finished, not yet yielded
        self._ready: deque[Any] = deque()  # unordered: finished, not yet yielded
        self._results: list[Any] = []  # collect: the list map_all returns
        self._exhausted = False
        self._failed = False
        self._waiter: Event | None = None  # the consumer, waiting for a result
        self._slot_waiters: deque[Event] = deque()  # workers waiting for the window

    def __repr__(self) -> str:
        limit: object = self._limit
        if limit is None:
            limit = "unbounded" if self._window is None else f"unbounded window={self._window}"
        return (
            f"<anyway.map fn={name_of(self._fn)} {self._state} max_at_once={limit}"
            f" pulled={self._pulled} in_flight={self._pulled - self._yielded}"
            f"{' exhausted' if self._exhausted else ''}>"
        )

    # Misuse gets the fix, as trio does.
    def __enter__(self) -> NoReturn:
        raise TypeError("use 'async with anyway.map(...) as results:', not 'with'")

    def __exit__(self, *exc_info: object) -> None:  # pragma: no cover - never entered
        raise AssertionError("unreachable")

    def __await__(self) -> NoReturn:
        raise TypeError(
            "anyway.map() is an async context manager: use 'async with anyway.map(...) as"
            " results: async for result in results: ...', or 'await anyway.map_all(...)'"
            " for a list"
        )

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._state != "open":
            if self._state == "new":
                raise TypeError(
                    "use 'async with anyway.map(...) as results: async for result in"
                    " results', not 'async for result in anyway.map(...)': the block"
                    " bounds the lifetime of the calls"
                )
            raise RuntimeError("this anyway.map() block has already exited")
        return self

    async def __aenter__(self) -> AsyncIterator[Any]:
        if self._state != "new":
            raise RuntimeError("an anyway.map() can only be entered once; call map() again")
        if hasattr(type(self._items), "__aiter__"):
            self._aiterator = aiter(self._items)  # type: ignore[arg-type]
            self._pull_lock = Lock(fast_acquire=True)
        else:
            self._iterator = iter(self._items)  # type: ignore[arg-type]
        tg = create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = "open"
        # A few workers to begin with (one if the items may be few): a huge pool
        # grows in a few steps without holding the event loop while it spawns.
        start = 1
        if hasattr(type(self._items), "__len__"):
            start = max(min(self._size, len(self._items), _FIRST_WORKERS), 1)  # type: ignore[arg-type]
        for _ in range(start):
            self._spawn()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg = self._tg
        assert tg is not None
        self._state = "closed"
        if (
            exc_type is not None
            if self._collect
            else not self._exhausted or self._pulled != self._yielded
        ):
            # Left early (break, error, cancellation): the work is not wanted.
            self._failed = True
            tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            raise_group(group)
        finally:
            del exc, tb
            # We stopped pulling from a generator: close it now (its finally
            # blocks run here), not whenever it is garbage-collected.
            if isgenerator(self._iterator):
                self._iterator.close()
            elif isasyncgen(self._aiterator):
                with move_on_after(_CLOSE_SECONDS, shield=True):
                    await self._aiterator.aclose()

    def _spawn(self) -> None:
        self._workers += 1
        assert self._tg is not None
        self._tg.start_soon(self._work, name=self._task_name)

    async def _pull(self) -> Any:
        """The next item (counted), ``_EMPTY`` once the items have run out, or
        ``_FULL`` if the window filled while this worker waited to pull."""
        try:
            if self._iterator is not None:
                item = next(self._iterator)
            else:
                assert self._pull_lock is not None
                assert self._aiterator is not None
                async with self._pull_lock:  # other workers may have pulled meanwhile
                    if self._exhausted or self._failed:
                        return _EMPTY
                    window = self._window
                    if window is not None and self._pulled - self._yielded >= window:
                        return _FULL
                    item = await anext(self._aiterator)
                    self._pulled += 1
                    return item
        except (StopIteration, StopAsyncIteration):
            self._exhausted = True
            self._wake()
            while self._slot_waiters:  # workers waiting for the window: nothing left to do
                self._slot_waiters.popleft().set()
            return _EMPTY
        except Exception as exc:
            exc.add_note(f"anyway.map: raised while taking item #{self._pulled} from items")
            raise
        self._pulled += 1
        return item

    async def _work(self) -> None:
        """A worker: pull an item, call fn, hand the result over; repeat."""
        fn, limiter, collect, window = self._fn, self._limiter, self._collect, self._window
        while not self._exhausted and not self._failed:
            if window is not None and self._pulled - self._yielded >= window:
                waiter = Event()
                self._slot_waiters.append(waiter)
                await waiter.wait()
                continue
            item = await self._pull()
            if item is _FULL:
                continue
            if item is _EMPTY or self._failed:
                return
            index = self._pulled - 1
            if collect and self._ordered:
                self._results.append(_EMPTY)
            if self._workers < self._size:  # grow the pool: 1, 3, 7, 15... workers
                self._spawn()
                if self._workers < self._size:
                    self._spawn()
            result: Any
            try:
                if limiter is None:
                    result = await call_async("map() fn", fn, item)
                else:
                    async with limiter:
                        result = await call_async("map() fn", fn, item)
            except Exception as exc:
                if (
                    not self._outcomes
                    or isinstance(exc, NotAwaitableError)
                    or raised_in_cleanup(exc)
                ):
                    self._failed = True
                    exc.add_note(
                        f"anyway.map: raised by {name_of(fn)}() for item #{index}"
                        f" ({reprlib.repr(item)})"
                    )
                    raise
                result = Error(exc)
            else:
                if self._outcomes:
                    result = Value(result)
            if collect:
                if self._ordered:
                    self._results[index] = result
                else:
                    self._results.append(result)
            elif self._ordered:
                self._done[index] = result
                if index == self._yielded:
                    self._wake()
            else:
                self._ready.append(result)
                self._wake()
            if index % _ITEMS_PER_CHECKPOINT == _ITEMS_PER_CHECKPOINT - 1:
                await checkpoint()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def _wait(self) -> None:
        if self._state != "open":
            raise RuntimeError("this anyway.map() block has already exited")
        if self._waiter is not None:
            raise RuntimeError("another task is already iterating over these anyway.map() results")
        waiter = self._waiter = Event()
        try:
            await waiter.wait()
        finally:
            self._waiter = None

    async def __anext__(self) -> Any:
        if self._ordered:
            done = self._done
            while self._yielded not in done:
                if self._exhausted and self._pulled == self._yielded:
                    raise StopAsyncIteration
                await self._wait()
            result = done.pop(self._yielded)
        else:
            ready = self._ready
            while not ready:
                if self._exhausted and self._pulled == self._yielded:
                    raise StopAsyncIteration
                await self._wait()
            result = ready.popleft()
        self._yielded += 1
        if self._slot_waiters and not self._failed:
            self._slot_waiters.popleft().set()
        return result


def _check_map_args(
    fn: object,
    items: object,
    max_at_once: object,
    limiter: object,
    ordered: object,
    return_exceptions: object,
) -> None:
    check_callable_arg("fn", fn)
    kind = type(items)
    if not (hasattr(kind, "__aiter__") or hasattr(kind, "__iter__")):
        raise TypeError(
            f"items must be an iterable or an async iterable, got {items!r} ({kind.__name__})"
        )
    if max_at_once is not None:
        check_count("max_at_once", max_at_once, hint=" (or None for no limit)")
    if limiter is not None:
        check_async_cm("limiter", limiter, "anyio.CapacityLimiter(10)")
    for name, flag in (("ordered", ordered), ("return_exceptions", return_exceptions)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")


@overload
def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int | None = None,
    limiter: AbstractAsyncContextManager[object] | None = None,
    ordered: bool = True,
    return_exceptions: Literal[False] = False,
) -> AbstractAsyncContextManager[AsyncIterator[R]]: ...


@overload
def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int | None = None,
    limiter: AbstractAsyncContextManager[object] | None = None,
    ordered: bool = True,
    return_exceptions: Literal[True],
) -> AbstractAsyncContextManager[AsyncIterator[Outcome[R]]]: ...


def map(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int | None = None,
    limiter: AbstractAsyncContextManager[object] | None = None,
    ordered: bool = True,
    return_exceptions: bool = False,
) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
    """Call ``await fn(item)`` for every item, concurrently, and iterate over
    the results.

    An async context manager: the calls run in a task group that lives as
    long as the ``async with`` block, which yields an async iterator of
    results::

        async with anyway.map(fetch, urls, max_at_once=10) as results:
            async for page in results:
                handle(page)

    *items* may be an iterable or an async iterable, and is pulled lazily:
    an item is only taken when a call can start for it, so an endless
    iterator (``itertools.count()``) works and memory stays bounded by
    *max_at_once*. At most *max_at_once* items are in flight (started and
    not yet yielded): with ``ordered=True`` (the default) results come in
    input order and a finished result waits in a reorder buffer of at most
    *max_at_once* entries for its predecessors (item ``k + max_at_once`` is
    not started before item ``k`` is yielded); with ``ordered=False`` they
    come in completion order. ``max_at_once=None`` lifts the concurrency
    limit: items with a ``len()`` may all start at once; items of unknown
    length (an iterator, a generator, an async iterable) are still read at
    most ``UNSIZED_WINDOW`` (1024) calls ahead of the consumer, so an endless
    iterable keeps memory bounded. Items are pulled as the calls run (a few
    at a time, letting the calls and the consumer run in between).

    *limiter* is any async context manager (an :class:`anyio.CapacityLimiter`,
    an :class:`anyio.Semaphore`, a rate limiter...) entered around each call.

    Fail-fast by default: the first exception cancels the other calls and
    leaves the block as itself (not wrapped in an exception group), with a
    note naming the item. With ``return_exceptions=True`` the results are
    :class:`outcome.Value`/:class:`outcome.Error` instead, and a failure
    cancels nothing. Leaving the block early (``break``, an exception)
    cancels the calls still running; cancellation from outside propagates.
    """
    _check_map_args(fn, items, max_at_once, limiter, ordered, return_exceptions)
    return _Map(fn, items, max_at_once, limiter, ordered, return_exceptions)


@overload
async def map_all(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int | None = None,
    limiter: AbstractAsyncContextManager[object] | None = None,
    ordered: bool = True,
    return_exceptions: Literal[False] = False,
) -> list[R]: ...


@overload
async def map_all(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int | None = None,
    limiter: AbstractAsyncContextManager[object] | None = None,
    ordered: bool = True,
    return_exceptions: Literal[True],
) -> list[Outcome[R]]: ...


async def map_all(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    max_at_once: int | None = None,
    limiter: AbstractAsyncContextManager[object] | None = None,
    ordered: bool = True,
    return_exceptions: bool = False,
) -> list[Any]:
    """:func:`map`, collected into a list: results in input order (completion
    order with ``ordered=False``), or outcomes with ``return_exceptions=True``.

    Same options and guarantees, with one difference: no consumer has to
    catch up, so a call that finishes frees its place for the next item at
    once (only *max_at_once* bounds the calls; there is no window of results
    waiting for a slow predecessor).

    Example::

        pages = await anyway.map_all(fetch, urls, max_at_once=10)
    """
    _check_map_args(fn, items, max_at_once, limiter, ordered, return_exceptions)
    mapping = _Map(fn, items, max_at_once, limiter, ordered, return_exceptions, collect=True)
    async with mapping:
        pass
    return mapping._results
