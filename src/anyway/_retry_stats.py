"""``retry_stats()``: the retry statistics of one call (or one block), kept
in a context variable so that concurrent calls never mix theirs.

tenacity keeps its statistics on the decorated function (``fn.statistics``),
so concurrent calls overwrite each other's (tenacity#701); stamina has none.
Here the caller opens a scope and reads what the calls made in it did::

    with anyway.retry_stats() as stats:
        await fetch(url)
    log.info("fetch: %d attempts, %.1f s waited", stats.attempts, stats.waited)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

import anyio

from ._retry_notes import secs

__all__ = [
    "RetryStats",
    "count_attempt",
    "count_call",
    "count_wait",
    "current_stats",
    "retry_stats",
]

#: The innermost open ``retry_stats()`` scope of this context, if any.
_STATS: Final[ContextVar[RetryStats | None]] = ContextVar("anyway.retry_stats", default=None)

#: The context variable's ``get``: what the retry drivers call on each call.
current_stats: Final = _STATS.get


class RetryStats:
    """What the retried calls made in one :func:`retry_stats` block did.

    ``calls``
        The calls of retry policies (:func:`anyway.retry` decorated
        functions, :meth:`anyway.Retry.call`, :func:`anyway.retrying` loops)
        made in the block; a call counts once its first attempt starts.
    ``attempts``
        The attempts they started, the first ones included (``calls`` plus
        the retries). An attempt starts after its ``before=`` hooks ran: a
        hook reading the counters sees the attempts before the one it
        announces, and an attempt whose hook raised or was cut never counts.
    ``retries``
        ``attempts - calls``.
    ``waited``
        The seconds spent in backoff waits (a wait cut short counts the part
        that was waited).
    ``elapsed``
        The seconds since the block started, first attempt included; frozen
        when the block ends.

    The counters are live: they can be read inside the block (e.g. in the
    retried function, where ``attempts`` is the number of the running
    attempt for a single call). They stop when the block ends, like
    ``elapsed``: a task started in the block that outlives it (in an outer
    task group) no longer counts into it. Only read them in the event loop.
    """

    __slots__ = ("_end", "_start", "attempts", "calls", "waited")

    def __init__(self) -> None:
        self.calls: int = 0
        self.attempts: int = 0
        self.waited: float = 0.0
        self._start = anyio.current_time()
        self._end: float | None = None

    @property
    def retries(self) -> int:
        """The attempts after the first of each call."""
        return self.attempts - self.calls

    @property
    def elapsed(self) -> float:
        """Seconds since the block started (until it ended, once it has)."""
        end = self._end if self._end is not None else anyio.current_time()
        return end - self._start

    def __repr__(self) -> str:
        return (
            f"<RetryStats calls={self.calls} attempts={self.attempts}"
            f" waited={secs(self.waited)} elapsed={secs(self.elapsed)}>"
        )


@contextmanager
def retry_stats() -> Iterator[RetryStats]:
    """Collect the retry statistics of the calls made in the block::

        with anyway.retry_stats() as stats:
            await fetch(url)            # a function decorated with @anyway.retry
        print(stats.attempts, stats.waited, stats.elapsed)

    The scope is a context variable: concurrent calls, each in its own
    ``with anyway.retry_stats()`` (in its own task), never see each other's
    numbers, unlike tenacity's shared ``fn.statistics``. Tasks started in the
    block (a task group opened inside it) count into it too, until it ends; an inner
    ``retry_stats()`` block counts for itself only. See :class:`RetryStats`
    for the numbers. Use it inside the event loop.
    """
    stats = RetryStats()
    token = _STATS.set(stats)
    try:
        yield stats
    finally:
        _STATS.reset(token)
        stats._end = anyio.current_time()


def count_call(stats: RetryStats) -> None:
    """A call's first attempt starts (its ``before=`` hooks have run)."""
    if stats._end is None:
        stats.calls += 1
        stats.attempts += 1


def count_attempt(stats: RetryStats) -> None:
    """A later attempt starts (its ``before=`` hooks have run)."""
    if stats._end is None:
        stats.attempts += 1


def count_wait(stats: RetryStats, seconds: float) -> None:
    """*seconds* of backoff were waited."""
    if stats._end is None:
        stats.waited += seconds
