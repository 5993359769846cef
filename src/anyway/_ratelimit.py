"""RateLimiter: an exact GCRA rate limit for one stream, FIFO and
cancellation-safe (the algorithm is in :mod:`anyway._gcra`)."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import final

from ._events import Hook
from ._gcra import NO_KEY, REL_TOL, Bucket, Cost, Gcra
from ._validate import check_seconds

__all__ = ["RateLimiter"]


@final
class RateLimiter(Gcra):
    """An exact, fair rate limit: ``rate`` units per ``per`` seconds.

    ::

        limiter = anyway.RateLimiter(10)  # 10 per second, evenly spaced

        async with limiter:  # takes one unit; leaving the block gives nothing back
            await call_the_api()

        await limiter.acquire(5, timeout=2.0)  # 5 units, or RateLimitExceeded at once
        if limiter.try_acquire():  # never waits
            ...

    It is a GCRA (generic cell rate algorithm) on :func:`anyio.current_time`:
    units are spaced ``per / rate`` seconds apart, and after an idle period up
    to *burst* units may go at once. In any half-open window of ``per``
    seconds fewer than ``rate + burst`` units are granted: at most
    ``rate + burst - 1`` for a whole-number rate and whole-number costs,
    exactly, whatever the arrival pattern (no float drift, no double bursts at
    window edges), on the clock's own readings, even a clock that only moves
    in steps (a waiter is granted at the first reading that conforms, never
    early, and never spins waiting for it).

    A ``cost`` may be fractional or a weight (``acquire(len(data))`` with
    ``rate`` in bytes per ``per`` and a *burst* at least as large as the
    biggest request): the bound and the order are the same.

    It limits a *rate*, not concurrency: leaving ``async with`` returns
    nothing (use :class:`Bulkhead` or :class:`anyio.CapacityLimiter` to cap
    how many calls run at once).

    Waiters are granted strictly in arrival order, so a large ``cost`` is
    never starved by a stream of small ones, and neither a new arrival nor
    :meth:`try_acquire` can jump the queue. A waiter that is cancelled
    consumes nothing and the waiters behind it move up. ``acquire`` is always
    a checkpoint (it checks for cancellation and yields), even when it does
    not have to wait.

    It may be created at import time and used from successive
    :func:`anyio.run` calls: in a new event loop (a new clock) it starts over,
    as if created there.

    *name* and *hooks* are used for the :class:`~anyway.CallRejected` event
    emitted when ``acquire(timeout=...)`` gives up.
    """

    __slots__ = ("_bucket",)

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: int = 1,
        name: str | None = None,
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        super().__init__(rate, per, burst, name, hooks)
        self._bucket = Bucket()

    def __repr__(self) -> str:
        return f"<RateLimiter{self._describe()} waiting={self._waiting}>"

    def _start_over(self) -> None:
        self._bucket = Bucket()

    # timeout= is not a deadline for the call: it decides up front whether to
    # wait at all, and the grant time is known exactly, so it must be a parameter.
    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until *cost* units are granted (a checkpoint even if it need not wait).

        With *timeout* (seconds), raise :exc:`~anyway.RateLimitExceeded` at once,
        without waiting, when the grant would come later than *timeout* from
        now; its ``retry_after`` says how long the wait would have been.
        *cost* is a number of units greater than 0 and at most ``burst``
        (fractions and weights welcome).
        """
        units: Cost = 1 if cost == 1 and type(cost) is int else self._check_cost(cost)
        if timeout is not None:
            timeout = check_seconds("timeout", timeout, allow_inf=True)
        self._here()
        await self._checkpoint()
        b = self._bucket
        now = self._clock()
        if b.waiters is None:
            # The common case of Gcra._take inline: the stream is clearly idle
            # (TAT < now), so it starts over at now.
            tat = b.tat
            if now - tat >= (abs(now) + abs(tat) + abs(b.a)) * REL_TOL:
                b.a = now
                b.k = units
                b.tat = now + units * self._interval
                return
            if self._take(b, now, units):
                return
        await self._wait(b, units, timeout, now, NO_KEY)

    def try_acquire(self, cost: float = 1) -> bool:
        """Take *cost* units if they are available right now and nobody is
        waiting; never waits. Returns whether the units were taken."""
        units: Cost = 1 if cost == 1 and type(cost) is int else self._check_cost(cost)
        self._here()
        now = self._clock()
        b = self._bucket
        return b.waiters is None and self._take(b, now, units)

    def wait_time(self, cost: float = 1) -> float:
        """Seconds a call to ``acquire(cost)`` made now would wait (``0.0`` when
        it would be granted at once), counting the tasks already waiting."""
        checked = self._check_cost(cost)
        self._here()
        return self._wait_time(self._bucket, checked)

    # ``async with limiter:`` is acquire() itself (one unit, no timeout): one
    # path, and no extra coroutine frame on the fast path.
    __aenter__ = acquire

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None
