"""Task-group helpers: :func:`settle`, :func:`race`, :func:`hedge`,
:func:`map` and :func:`map_all`.

All of them run their work in an AnyIO task group that lives exactly as long
as the call (or the ``async with`` block of :func:`map`): nothing outlives
them, losers are cancelled *and finished* before a result is returned, and
cancellation from outside always propagates.

What AnyIO (>= 4.16) already offers is reused, not repeated: ``anyio.gather``
is the fail-fast "run these and give me all results", ``anyio.as_completed``
iterates a fixed set of awaitables in completion order, and every
``TaskGroup.start_soon`` returns a ``TaskHandle``. The helpers here cover what
those do not: collect-all outcomes, first-success races, hedged requests and
lazy, bounded fan-out over an iterable of any size.
"""

from __future__ import annotations

import math
import reprlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from inspect import isasyncgen
from types import TracebackType
from typing import Any, Final, Generic, Literal, NoReturn, TypeVar, TypeVarTuple, Unpack, overload

from anyio import (
    CancelScope,
    Event,
    create_task_group,
    current_effective_deadline,
    get_cancelled_exc_class,
    move_on_after,
    sleep,
)
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint
from outcome import Error, Outcome, Value

from ._validate import check_callable, check_count, check_seconds

__all__ = ["hedge", "map", "map_all", "race", "settle"]

T = TypeVar("T")
R = TypeVar("R")

# How long map() waits for an async generator it stopped pulling from to close.
_CLOSE_SECONDS = 5.0
# map(max_at_once=None) lets the calls run after this many pulls.
_PULLS_PER_CHECKPOINT = 16
#: How far ahead of the consumer ``map(max_at_once=None)`` reads items it
#: cannot count: at most this many calls started and not yet yielded when
#: *items* has no ``__len__`` (a generator, an async iterable,
#: ``itertools.count()``...), so that an endless iterable uses bounded memory.
#: Items with a ``__len__`` all start at once.
UNSIZED_WINDOW: Final = 1024
Ts = TypeVarTuple("Ts")


# --- shared machinery ----------------------------------------------------------


def _check_fns(where: str, fns: tuple[object, ...]) -> None:
    for i, fn in enumerate(fns):
        if not callable(fn):  # coroutine objects are not callable: check_callable explains
            check_callable(f"{where} argument {i + 1}", fn)


def _name(fn: object) -> str:
    """A short name for *fn*: its qualified name, a partial's function's, or its type's."""
    name = getattr(fn, "__qualname__", None) or getattr(
        getattr(fn, "func", None), "__qualname__", None
    )
    return name if isinstance(name, str) else type(fn).__qualname__


def _raised_in_cleanup(exc: BaseException) -> bool:
    """Was *exc* raised by code that was being cancelled (cleanup that failed)?

    True when the current task is inside a cancelled scope *and* *exc* was
    raised while a cancellation was propagating (it is in the ``__context__``
    chain). Such an error must propagate: capturing it into an outcome, or
    dropping it as a losing racer's failure, would lose it, since the work it
    belongs to is being thrown away.
    """
    if current_effective_deadline() != -math.inf:
        return False
    cancelled = get_cancelled_exc_class()
    context = exc.__context__
    depth = 0
    while context is not None and depth < 64:  # the bound guards against cycles
        if isinstance(context, cancelled):
            return True
        if isinstance(context, BaseExceptionGroup) and context.split(cancelled)[0] is not None:
            return True
        context = context.__context__
        depth += 1
    return False


def _reraise(exc: BaseException) -> NoReturn:
    """Raise *exc* as itself, keeping the context and cause it already had."""
    context, cause, suppress = exc.__context__, exc.__cause__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__cause__, exc.__suppress_context__ = context, cause, suppress
        del exc, context, cause


def _single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception a task group's *group* stands for, if there is one.

    Cancellations do not count (the cancelled scope delivers them again at the
    next checkpoint, like trio's ``raise_single_exception_from_group``): one
    other exception is returned as itself. Otherwise ``None``: the group must
    be raised as it is (several errors; AnyIO already turns a group of only
    cancellations into one cancellation).
    """
    rest = group.split(get_cancelled_exc_class())[1]
    if rest is not None and len(rest.exceptions) == 1:
        return rest.exceptions[0]
    return None


# --- settle --------------------------------------------------------------------


async def _settle_one(
    fn: Callable[[], Awaitable[T]], results: list[Outcome[T] | None], index: int
) -> None:
    try:
        results[index] = Value(await fn())
    except Exception as exc:
        if _raised_in_cleanup(exc):
            raise
        results[index] = Error(exc)


async def settle(*fns: Callable[[], Awaitable[T]]) -> list[Outcome[T]]:
    """Run every ``fn()`` concurrently, wait for all of them, and return their
    outcomes in argument order: :class:`outcome.Value` for a result,
    :class:`outcome.Error` for an exception (collect-all, partial failure).

    A failure does not cancel the others. Only cancellation propagates (and
    exceptions that are not :class:`Exception`, like
    :exc:`KeyboardInterrupt`): if ``settle`` is cancelled, every call is
    cancelled and finished before the cancellation leaves ``settle``. An
    error raised by a call *while it was being cancelled* (failing cleanup)
    is not captured either: it propagates, so it cannot be lost with the
    discarded outcomes.

    Pass functions, not coroutine objects (use a ``lambda`` or
    :func:`functools.partial` for arguments)::

        user, orders = await anyway.settle(
            lambda: fetch_user(uid), lambda: fetch_orders(uid)
        )
        if isinstance(orders, outcome.Error):
            log.warning("no orders: %r", orders.error)
    """
    _check_fns("settle()", fns)
    results: list[Outcome[T] | None] = [None] * len(fns)
    try:
        async with create_task_group() as tg:
            for index, fn in enumerate(fns):
                tg.create_task(_settle_one(fn, results, index), name=_name(fn))
    except BaseExceptionGroup as group:
        if (single := _single_error(group)) is None:
            raise
        _reraise(single)
    return results  # type: ignore[return-value]  # every slot is filled


# --- race and hedge ------------------------------------------------------------


class _Contest(Generic[T]):
    """Shared state of the tasks of one :func:`race` or :func:`hedge`."""

    __slots__ = ("errors", "scope", "unreplaced", "value", "waiter", "won")

    def __init__(self, scope: CancelScope, size: int) -> None:
        self.scope = scope
        self.won = False
        self.value: T | None = None
        self.errors: list[BaseException | None] = [None] * size
        self.unreplaced = 0  # hedge: failed copies not yet replaced
        self.waiter: CancelScope | None = None  # hedge: the starter's wait, cut short by a failure


async def _contender(
    contest: _Contest[T], index: int, fn: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts
) -> None:
    try:
        value = await fn(*args)
    except Exception as exc:
        if _raised_in_cleanup(exc):
            raise
        contest.errors[index] = exc
        contest.unreplaced += 1
        waiter = contest.waiter
        if waiter is not None:  # hedge: start a replacement now
            contest.waiter = None
            waiter.cancel()
        return
    if not contest.won:
        contest.won = True
        contest.value = value
        contest.scope.cancel()


def _all_failed(
    message: str, errors: list[BaseException | None], what: str
) -> ExceptionGroup[Exception]:
    excs: list[Exception] = []
    for index, exc in enumerate(errors):
        assert isinstance(exc, Exception)
        exc.add_note(f"{what} #{index + 1}")
        excs.append(exc)
    return ExceptionGroup(message, excs)


async def race(*fns: Callable[[], Awaitable[T]]) -> T:
    """Run every ``fn()`` concurrently and return the first *successful*
    result.

    As soon as one call succeeds the others are cancelled, and ``race``
    returns only once they have finished (their cleanup has run). Failures
    do not end the race; if every call fails, an :class:`ExceptionGroup` of
    their exceptions (in argument order, each with a note saying which
    argument raised it) is raised. A loser that raises while being cancelled
    (failing cleanup) makes ``race`` raise that error. Cancellation from
    outside propagates. At least one function is required.

    Example::

        body = await anyway.race(
            lambda: fetch(PRIMARY, path), lambda: fetch(MIRROR, path)
        )
    """
    if not fns:
        raise ValueError("race() needs at least one async function to run")
    _check_fns("race()", fns)
    try:
        async with create_task_group() as tg:
            contest: _Contest[T] = _Contest(tg.cancel_scope, len(fns))
            for index, fn in enumerate(fns):
                tg.create_task(_contender(contest, index, fn), name=_name(fn))
    except BaseExceptionGroup as group:
        if (single := _single_error(group)) is None:
            raise
        _reraise(single)
    if contest.won:
        return contest.value  # type: ignore[return-value]
    raise _all_failed(f"all {len(fns)} racers failed", contest.errors, "raised by race() argument")


async def hedge(
    fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    delay: float,
    attempts: int = 2,
) -> T:
    """Call ``fn(*args)``, and start backup copies of the call if it is slow
    or fails; return the first successful result.

    A new copy starts when *delay* seconds have passed since the last copy
    started and none has succeeded yet, or at once when a running copy
    fails; at most *attempts* copies are started in total. The first success
    wins: the other copies are cancelled and have finished before ``hedge``
    returns. If every copy fails, an :class:`ExceptionGroup` of their
    exceptions (in start order) is raised. Cancellation from outside
    propagates.

    ``delay=0`` starts all copies at once (a race of identical calls);
    ``delay=math.inf`` only starts a copy when one fails (immediate retries).
    Use it for idempotent calls whose latency has a long tail.

    Example::

        row = await anyway.hedge(replica.fetch, key, delay=0.05, attempts=3)
    """
    check_callable("fn", fn)
    delay = check_seconds("delay", delay, allow_inf=True)
    attempts = check_count("attempts", attempts)
    name = _name(fn)
    try:
        async with create_task_group() as tg:
            contest: _Contest[T] = _Contest(tg.cancel_scope, attempts)
            tg.create_task(_contender(contest, 0, fn, *args), name=name)
            started = 1
            while started < attempts:
                if not contest.unreplaced:  # wait for the delay, or for a copy to fail
                    with CancelScope() as waiter:
                        contest.waiter = waiter
                        await sleep(delay)
                    contest.waiter = None
                # No need to check for a win here: a win cancels this task group,
                # so the wait above raised instead of returning.
                if contest.unreplaced:
                    contest.unreplaced -= 1
                tg.create_task(_contender(contest, started, fn, *args), name=name)
                started += 1
    except BaseExceptionGroup as group:
        if (single := _single_error(group)) is None:
            raise
        _reraise(single)
    if contest.won:
        return contest.value  # type: ignore[return-value]
    raise _all_failed(f"all {attempts} copies of {name} failed", contest.errors, "hedge() copy")


# --- map -----------------------------------------------------------------------


class _Map(Generic[T, R]):
    """What :func:`map` returns: the async context manager and, once
    entered, the async iterator of results."""

    __slots__ = (
        "_async_items",
        "_done",
        "_exhausted",
        "_failed",
        "_fn",
        "_in_flight",
        "_items",
        "_iterator",
        "_limit",
        "_limiter",
        "_next",
        "_ordered",
        "_outcomes",
        "_pulled",
        "_ready",
        "_slot_waiter",
        "_state",
        "_task_name",
        "_tg",
        "_waiter",
        "_window",
    )

    def __init__(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        max_at_once: int | None,
        limiter: AbstractAsyncContextManager[object] | None,
        ordered: bool,
        return_exceptions: bool,
    ) -> None:
        self._fn = fn
        self._items = items
        self._async_items = hasattr(type(items), "__aiter__")
        self._limit = max_at_once
        # The most calls started and not yet yielded: max_at_once, else (no
        # limit) a bounded read-ahead for items of unknown length.
        self._window = max_at_once
        if max_at_once is None and not hasattr(type(items), "__len__"):
            self._window = UNSIZED_WINDOW
        self._limiter = limiter
        self._ordered = ordered
        self._outcomes = return_exceptions
        self._task_name = f"anyway.map({_name(fn)})"
        self._tg: TaskGroup | None = None
        self._state = "new"  # -> "open" -> "closed"
        self._iterator: Iterator[T] | None = None
        self._pulled = 0  # items taken from `items` (= calls started)
        self._in_flight = 0  # calls started whose result has not been yielded yet
        self._next = 0  # ordered: index of the next result to yield
        self._done: dict[int, Any] = {}  # ordered: finished, not yet yielded
        self._ready: deque[Any] = deque()  # unordered: finished, not yet yielded
        self._exhausted = False
        self._failed = False
        self._waiter: Event | None = None  # the consumer, waiting for a result
        self._slot_waiter: Event | None = None  # the feeder, waiting for a free slot

    def __repr__(self) -> str:
        limit: object = self._limit
        if limit is None:
            limit = "unbounded" if self._window is None else f"unbounded window={self._window}"
        return (
            f"<anyway.map fn={_name(self._fn)} {self._state} max_at_once={limit}"
            f" pulled={self._pulled} in_flight={self._in_flight}"
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
        tg = create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = "open"
        if self._async_items or self._limit is None:
            tg.start_soon(self._feed, name=f"{self._task_name} feeder")
        else:
            try:
                self._iterator = iter(self._items)  # type: ignore[arg-type]
                self._fill()
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)  # re-raises exc
                raise  # pragma: no cover
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
        if not self._exhausted or self._in_flight:
            # Left early (break, error, cancellation): the work is not wanted.
            self._failed = True
            tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if (single := _single_error(group)) is None:
                raise
            _reraise(single)
        finally:
            del exc, tb

    def _fill(self) -> None:
        """Start calls until the window is full (sync items, bounded)."""
        iterator = self._iterator
        assert iterator is not None
        assert self._limit is not None
        limit = self._limit
        while self._in_flight < limit:
            try:
                item = next(iterator)
            except StopIteration:
                self._exhausted = True
                self._wake()
                return
            except Exception as exc:
                exc.add_note(f"anyway.map: raised while taking item #{self._pulled} from items")
                raise
            self._start(item)

    async def _feed(self) -> None:
        """Pull items and start calls (async items, or max_at_once=None)."""
        limit = self._window
        lazy = self._limit is None  # no window of the user's: let the calls run now and then
        aiterator: AsyncIterator[T] | None = None
        iterator: Iterator[T] | None = None
        if self._async_items:
            aiterator = aiter(self._items)  # type: ignore[arg-type]
        else:
            iterator = iter(self._items)  # type: ignore[arg-type]
        try:
            while True:
                if limit is not None and self._in_flight >= limit:
                    waiter = self._slot_waiter = Event()
                    await waiter.wait()
                    continue
                try:
                    if aiterator is not None:
                        item = await anext(aiterator)
                    else:
                        item = next(iterator)  # type: ignore[arg-type]
                except (StopIteration, StopAsyncIteration):
                    self._exhausted = True
                    self._wake()
                    return
                except Exception as exc:
                    exc.add_note(f"anyway.map: raised while taking item #{self._pulled} from items")
                    raise
                self._start(item)
                if lazy and not self._pulled % _PULLS_PER_CHECKPOINT:
                    await checkpoint()  # lazy: let the calls run between pulls
        finally:
            if isasyncgen(aiterator):
                # We stopped pulling from an async generator: close it now (its
                # finally blocks run here, bounded), not whenever it is collected.
                with move_on_after(_CLOSE_SECONDS, shield=True):
                    await aiterator.aclose()

    def _start(self, item: T) -> None:
        index = self._pulled
        self._pulled = index + 1
        self._in_flight += 1
        assert self._tg is not None
        self._tg.create_task(self._call(index, item), name=self._task_name)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def _call(self, index: int, item: T) -> None:
        result: Any
        try:
            limiter = self._limiter
            if limiter is None:
                result = await self._fn(item)
            else:
                async with limiter:
                    result = await self._fn(item)
        except Exception as exc:
            if not self._outcomes or _raised_in_cleanup(exc):
                self._failed = True
                exc.add_note(
                    f"anyway.map: raised by {_name(self._fn)}() for item #{index}"
                    f" ({reprlib.repr(item)})"
                )
                raise
            result = Error(exc)
        else:
            if self._outcomes:
                result = Value(result)
        if self._ordered:
            self._done[index] = result
            if index == self._next:
                self._wake()
        else:
            self._ready.append(result)
            self._wake()

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
            index = self._next
            done = self._done
            while index not in done:
                if self._exhausted and not self._in_flight:
                    raise StopAsyncIteration
                await self._wait()
            result = done.pop(index)
            self._next = index + 1
        else:
            ready = self._ready
            while not ready:
                if self._exhausted and not self._in_flight:
                    raise StopAsyncIteration
                await self._wait()
            result = ready.popleft()
        self._in_flight -= 1
        if not self._exhausted and not self._failed:
            if self._iterator is not None:
                self._fill()
            else:
                waiter = self._slot_waiter
                if waiter is not None:
                    self._slot_waiter = None
                    waiter.set()
        return result

    async def _collect(self) -> list[Any]:
        return [result async for result in self]


def _check_map_args(
    fn: object,
    items: object,
    max_at_once: object,
    limiter: object,
    ordered: object,
    return_exceptions: object,
) -> None:
    check_callable("fn", fn)
    kind = type(items)
    if not (hasattr(kind, "__aiter__") or hasattr(kind, "__iter__")):
        raise TypeError(
            f"items must be an iterable or an async iterable, got {items!r} ({kind.__name__})"
        )
    if max_at_once is not None:
        check_count("max_at_once", max_at_once, hint=" (or None for no limit)")
    if limiter is not None:
        if isinstance(limiter, type):
            raise TypeError(
                f"limiter must be an async context manager instance, got the class"
                f" {limiter.__qualname__}: create one, e.g. limiter=anyio.CapacityLimiter(10)"
            )
        if not (hasattr(type(limiter), "__aenter__") and hasattr(type(limiter), "__aexit__")):
            raise TypeError(
                f"limiter must be an async context manager (entered with 'async with' around"
                f" each call), got {limiter!r}"
            )
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
    """:func:`map`, collected into a list (same options and guarantees).

    Example::

        pages = await anyway.map_all(fetch, urls, max_at_once=10)
    """
    _check_map_args(fn, items, max_at_once, limiter, ordered, return_exceptions)
    mapping = _Map(fn, items, max_at_once, limiter, ordered, return_exceptions)
    async with mapping:
        results = await mapping._collect()
    return results
