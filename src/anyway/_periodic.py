"""``periodic``: ticks at exact multiples of a period, with no drift.

The hand-written loop ``while True: work(); await sleep(period)`` drifts by
the body's duration on every round, and a slow round makes the next one late
forever. Here tick *n* is due at ``start + n * period``, computed from *n*,
never accumulated, so after a thousand ticks the last is exactly
``start + 999 * period``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import AsyncIterator
from typing import Final, Literal

import anyio
import anyio.lowlevel

from ._validate import check_seconds

__all__ = ["periodic"]

Missed = Literal["skip", "burst"]
_MISSED: Final = ("skip", "burst")
#: The shortest period: a nanosecond, finer than any event loop's clock. A
#: shorter one cannot be told apart from the start time on a real clock
#: (``start + period == start``), and skipping missed ticks would overflow.
_MIN_PERIOD: Final = 1e-9


class _Ticks(AsyncIterator[float]):
    """The iterator :func:`periodic` returns (one per ``async for``)."""

    __slots__ = ("_burst", "_loop", "_n", "_period", "_start")

    def __init__(self, period: float, burst: bool) -> None:
        self._period = period
        self._burst = burst
        self._start: float | None = None
        self._n = -1  # the tick yielded last
        self._loop: weakref.ref[object] | None = None  # the event loop of _start

    def __repr__(self) -> str:
        mode = "burst" if self._burst else "skip"
        return f"<periodic period={self._period!r} missed={mode!r} ticks={self._n + 1}>"

    def _due(self, n: int) -> float:
        assert self._start is not None
        return self._start + n * self._period

    def _next_index(self, now: float) -> int:
        """The next tick to yield: the one after the last, or with ``"skip"``
        the first one not yet in the past."""
        n = self._n + 1
        if self._burst or self._due(n) >= now:
            return n
        assert self._start is not None
        k = max(n, math.ceil((now - self._start) / self._period))
        # float division may be off by one either way: settle on the exact index
        while self._due(k) < now:
            k += 1
        while k > n and self._due(k - 1) >= now:
            k -= 1
        return k

    async def __anext__(self) -> float:
        now = anyio.current_time()
        # A start on another loop's clock (Trio's has a random offset, virtual
        # clocks restart at 0) would mean a flood of ticks or a long sleep:
        # from a new event loop, the ticks start again.
        loop = anyio.lowlevel.current_token().native_token
        if self._start is None or self._loop is None or self._loop() is not loop:
            self._start = now
            self._n = -1
            self._loop = weakref.ref(loop)
        n = self._next_index(now)
        due = self._due(n)
        if due > now:
            # Sleep once to the due time. A clock that cannot represent `due`
            # exactly may wake a hair early: the tick is still this one (never
            # re-check and sleep again: that would spin on a quantized clock).
            await anyio.sleep_until(due)
        else:
            await anyio.lowlevel.checkpoint()
        self._n = n
        return due


def periodic(period: float, *, missed: Missed = "skip") -> AsyncIterator[float]:
    """Yield tick times every *period* seconds, without drift.

    ::

        async for tick in anyway.periodic(5.0):
            await refresh()   # runs at start, start + 5, start + 10, ...

    Tick 0 is yielded at once (the start is the time of the first
    iteration); tick *n* is due at exactly ``start + n * period`` and the
    value yielded is that due time (on ``anyio.current_time()``'s clock).
    When the body runs past one or more due times, *missed* decides:
    ``"skip"`` (the default) drops the ticks that passed and waits for the
    next one still ahead (a tick due exactly now is not missed); ``"burst"``
    yields each of them at once, in order, to catch up.

    Iterated from a new event loop (another ``anyio.run()``), the ticks
    start again there: tick 0 at once.

    Every iteration is a cancellation point, and the loop ends only when
    the caller leaves it (``break``) or is cancelled, e.g. by a
    :func:`~anyway.deadline` around it. Bad *period* (zero, negative, NaN,
    infinite, or under a nanosecond) or *missed* raises ``ValueError``.
    """
    seconds = check_seconds(
        "period", period, allow_zero=False, hint="; the time between ticks, e.g. period=1.0"
    )
    if seconds < _MIN_PERIOD:
        raise ValueError(
            f"period must be at least {_MIN_PERIOD:g} s (finer than any event loop's clock),"
            f" got {period!r}; e.g. period=0.001"
        )
    if missed not in _MISSED:
        raise ValueError(
            f"missed must be 'skip' (drop ticks that passed while the body ran) or 'burst'"
            f" (yield them at once), got {missed!r}"
        )
    return _Ticks(seconds, burst=missed == "burst")
