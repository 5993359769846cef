"""Hedged calls that learn their delay: :class:`Hedger`.

:func:`anyway.hedge` takes a fixed delay, a guess. A :class:`Hedger` keeps
the latencies of the winning copies of the last :data:`_WINDOW` successful
calls, each measured from that copy's own start (a sliding
window kept sorted: O(log n) to find, one memmove to insert and evict) and
hedges each call after the observed ``quantile`` of them. A token budget
bounds the extra load: every call deposits ``max_extra`` tokens (up to a
small burst), every extra copy spends one, so over any run of calls
``extra copies <= max_extra * calls + burst``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Generic, NoReturn, TypeVar, TypeVarTuple, Unpack, final

import anyio

from ._groups import raised_in_cleanup
from ._util import call_async, check_callable_arg, current_run, name_of
from ._validate import check_count, check_number

__all__ = ["Hedger", "HedgerStatistics"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: How many recent successful calls the delay is learned from.
_WINDOW: Final = 1000
#: Tokens are counted in millionths, exactly (0.1 * 10 is not 1.0 in floats).
_UNIT: Final = 1_000_000
#: The most tokens the budget holds: extra copies in a row after a quiet spell.
_BURST: Final = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgerStatistics:
    """A snapshot of a :class:`~anyway.Hedger` (see its ``statistics()``).

    ``calls`` counts calls started, ``extra`` the extra copies started,
    ``tokens`` the budget left (one extra copy costs one), ``delay`` the
    hedge delay a call starting now would get (``None``: no hedging yet),
    ``samples`` the successful calls it is learned from."""

    calls: int
    extra: int
    tokens: float
    delay: float | None
    samples: int


class _Contest(Generic[T]):
    """Shared state of the copies of one hedged call."""

    __slots__ = ("errors", "failed", "latency", "scope", "value", "waiter", "won")

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.won = False
        self.value: T | None = None
        self.latency = 0.0  # how long the winning copy took
        self.errors: list[Exception] = []
        self.failed = 0  # copies that failed and were not replaced yet
        self.waiter: anyio.CancelScope | None = None  # the starter's wait, cut short by a failure


async def _copy(contest: _Contest[T], index: int, awaitable: Awaitable[T]) -> None:
    start = anyio.current_time()
    try:
        value = await awaitable
    except Exception as exc:
        if raised_in_cleanup(exc):
            raise
        exc.add_note(f"Hedger copy #{index + 1}")
        contest.errors.append(exc)
        contest.failed += 1
        waiter = contest.waiter
        if waiter is not None:  # start a replacement now
            contest.waiter = None
            waiter.cancel()
        return
    if not contest.won:
        contest.won = True
        contest.value = value
        contest.latency = anyio.current_time() - start
        contest.scope.cancel()


def _reraise(exc: BaseException) -> NoReturn:
    """Raise *exc* as itself, keeping the context and cause it already had."""
    context, cause, suppress = exc.__context__, exc.__cause__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__cause__, exc.__suppress_context__ = context, cause, suppress
        del exc, context, cause


@final
class Hedger:
    """Hedged calls whose delay is learned from the calls themselves.

    ::

        hedger = anyway.Hedger(quantile=0.9, max_extra=0.1)

        row = await hedger(replica.fetch, key)

    Each call runs ``fn(*args)``; if it has not succeeded after *delay*
    seconds, a backup copy starts (up to *attempts* copies in all, one more
    each *delay*, or at once when a copy fails), and the first success wins.
    *delay* is the *quantile* of the latencies of the last 1000 successful
    calls, each the winning copy's own latency from its start (the first
    *warmup* calls are never hedged). The whole call's latency would include
    the hedge delay itself and feed it back, creeping up to the slow mode. At most
    *max_extra* extra copies are started per call on average: each call adds
    *max_extra* tokens to a budget (which holds at most 10, the burst),
    each extra copy spends one, and without a
    token no copy starts. So when the whole service slows down, hedging
    stops multiplying its load.

    Like :func:`anyway.hedge`: the losing copies are cancelled and have
    finished before the call returns; if every copy fails, an
    :class:`ExceptionGroup` of their exceptions (in the order they failed,
    each with a note naming the copy) is raised; cancellation from outside
    propagates (and teaches nothing). Use it for idempotent calls only.

    Used from a new event loop (a later :func:`anyio.run`), the hedger
    behaves as newly created there.
    """

    __slots__ = (
        "_attempts",
        "_burst",
        "_calls",
        "_deposit",
        "_extra",
        "_max_extra",
        "_order",
        "_quantile",
        "_run",
        "_sorted",
        "_tokens",
        "_warmup",
    )

    def __init__(
        self,
        *,
        quantile: float = 0.9,
        max_extra: float = 0.1,
        attempts: int = 2,
        warmup: int = 20,
    ) -> None:
        self._quantile = check_number(
            "quantile",
            quantile,
            minimum=0.0,
            allow_minimum=False,
            maximum=1.0,
            hint="; e.g. quantile=0.9 hedges the calls slower than 90 % of recent ones",
        )
        self._max_extra = check_number(
            "max_extra",
            max_extra,
            minimum=0.0,
            allow_minimum=False,
            maximum=1.0,
            hint="; it is the extra copies allowed per call on average, e.g. max_extra=0.1",
        )
        self._attempts = check_count(
            "attempts", attempts, minimum=2, hint="; it counts the first copy (2: one backup)"
        )
        self._warmup = check_count(
            "warmup", warmup, minimum=0, hint="; it is how many calls run unhedged at first"
        )
        self._deposit = max(1, round(self._max_extra * _UNIT))
        self._burst = _BURST * _UNIT
        self._run: object = None
        self._reset()

    def _reset(self) -> None:
        self._calls = 0
        self._extra = 0
        self._tokens = 0  # in millionths of a token
        self._order: deque[float] = deque()  # latencies in arrival order
        self._sorted: list[float] = []  # the same, sorted

    def __repr__(self) -> str:
        delay = self._delay()
        shown = "none" if delay is None else f"{delay:.3g}s"
        return (
            f"<Hedger quantile={self._quantile:g} delay={shown} calls={self._calls}"
            f" extra={self._extra} tokens={self._tokens / _UNIT:.2f}>"
        )

    def _check_run(self) -> None:
        """Start afresh on first use in an event loop (nothing outside one)."""
        try:
            run = current_run()
        except RuntimeError:  # no event loop here: the state as it was left
            return
        if run is not self._run:
            self._run = run
            self._reset()

    def statistics(self) -> HedgerStatistics:
        """A frozen snapshot: calls, extra copies, tokens left, the current
        delay and how many samples it comes from."""
        self._check_run()
        return HedgerStatistics(
            calls=self._calls,
            extra=self._extra,
            tokens=self._tokens / _UNIT,
            delay=self._delay(),
            samples=len(self._sorted),
        )

    def _delay(self) -> float | None:
        ordered = self._sorted
        if self._calls < self._warmup or not ordered:
            return None
        return ordered[min(len(ordered) - 1, math.ceil(self._quantile * len(ordered)) - 1)]

    def _learn(self, latency: float) -> None:
        latency = max(latency, 0.0)
        self._order.append(latency)
        insort(self._sorted, latency)
        if len(self._order) > _WINDOW:
            old = self._order.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def _spend(self) -> bool:
        if self._tokens >= _UNIT:
            self._tokens -= _UNIT
            self._extra += 1
            return True
        return False

    async def __call__(self, fn: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
        """Call ``fn(*args)``, hedged (see the class documentation)."""
        check_callable_arg("fn", fn)
        self._check_run()  # first use in this event loop: start afresh
        first = call_async("fn", fn, *args)  # not awaitable: NotAwaitableError, here
        delay = self._delay()  # None during the warm-up
        self._calls += 1
        self._tokens = min(self._burst, self._tokens + self._deposit)
        try:
            async with anyio.create_task_group() as tg:
                contest: _Contest[T] = _Contest(tg.cancel_scope)
                tg.start_soon(_copy, contest, 0, first, name=name_of(fn))
                started = 1
                while delay is not None and started < self._attempts:
                    if not contest.failed:  # wait for the delay, or for a copy to fail
                        with anyio.CancelScope() as waiter:
                            contest.waiter = waiter
                            await anyio.sleep(delay)
                        contest.waiter = None
                    # A win cancels this task group, so the wait above raised
                    # instead of returning: no need to check for one here.
                    if not self._spend():
                        break  # no budget: let the copies running finish
                    if contest.failed:
                        contest.failed -= 1
                    extra = call_async("fn", fn, *args)
                    tg.start_soon(_copy, contest, started, extra, name=name_of(fn))
                    started += 1
        except BaseExceptionGroup as group:
            rest = group.split(anyio.get_cancelled_exc_class())[1]
            if rest is not None and len(rest.exceptions) == 1:
                _reraise(rest.exceptions[0])
            raise
        if contest.won:
            self._learn(contest.latency)
            return contest.value  # type: ignore[return-value]
        raise ExceptionGroup(f"all {started} copies of {name_of(fn)} failed", list(contest.errors))
