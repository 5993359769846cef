"""The sliding windows of a failure-rate :class:`~anyway.CircuitBreaker`, and
the rings that hold their outcomes.

``CountWindow(n)`` remembers the last *n* outcomes; ``TimeWindow(seconds)``
the outcomes of the last *seconds*, in buckets. Each window has a ring with
the same small interface: ``add(now, failure, slow)``, ``advance(now)`` and
the running totals ``calls``, ``failures`` and ``slow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ._validate import check_count, check_seconds

__all__ = ["CountRing", "CountWindow", "Ring", "TimeRing", "TimeWindow", "Window", "new_ring"]


@dataclass(frozen=True, slots=True)
class CountWindow:
    """A sliding window over the outcomes of the last *size* calls.

    Pass it as ``CircuitBreaker(window=CountWindow(100))`` to open on the
    failure rate of the last 100 calls. Memory: one byte per call.
    """

    size: int

    def __post_init__(self) -> None:
        check_count("size", self.size, hint="; a CountWindow remembers the last `size` calls")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A sliding window over the outcomes of the calls of the last *seconds*.

    Outcomes are aggregated in *buckets* buckets of ``seconds / buckets``
    seconds each, so memory is bounded whatever the call rate; a call is
    forgotten between ``seconds - seconds / buckets`` and ``seconds`` after it
    ended (more buckets: a sharper edge).
    """

    seconds: float
    buckets: int = 10

    def __post_init__(self) -> None:
        check_seconds("seconds", self.seconds, allow_zero=False)
        check_count("buckets", self.buckets)


Window: TypeAlias = CountWindow | TimeWindow


class CountRing:
    """The last *size* outcomes in a ring (bit 0: failure, bit 1: slow)."""

    __slots__ = ("buf", "calls", "failures", "pos", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = bytearray(size)
        self.pos = 0
        self.calls = self.failures = self.slow = 0

    def add(self, now: float, failure: bool, slow: bool) -> None:
        """Add an outcome (*now* is not used: a count window does not age)."""
        pos = self.pos
        if self.calls == self.size:
            old = self.buf[pos]
            self.failures -= old & 1
            self.slow -= old >> 1
        else:
            self.calls += 1
        self.buf[pos] = failure | (slow << 1)
        self.pos = (pos + 1) % self.size
        self.failures += failure
        self.slow += slow

    def advance(self, now: float) -> None:
        """Count windows do not age."""


class TimeRing:
    """Per-bucket totals over the last *n* buckets of *width* seconds."""

    __slots__ = (
        "b_calls",
        "b_failures",
        "b_slow",
        "calls",
        "failures",
        "head",
        "n",
        "slow",
        "width",
    )

    def __init__(self, window: TimeWindow) -> None:
        self.n = window.buckets
        self.width = window.seconds / window.buckets
        self.b_calls = [0] * self.n
        self.b_failures = [0] * self.n
        self.b_slow = [0] * self.n
        self.calls = self.failures = self.slow = 0
        self.head: int | None = None  # index (time // width) of the newest bucket

    def advance(self, now: float) -> None:
        """Forget the buckets that fell out of the window by *now*."""
        index = int(now // self.width)
        head = self.head
        if head is not None and index <= head:
            return
        self.head = index
        if head is None:
            return
        n = self.n
        if index - head >= n:
            self.b_calls = [0] * n
            self.b_failures = [0] * n
            self.b_slow = [0] * n
            self.calls = self.failures = self.slow = 0
            return
        for i in range(head + 1, index + 1):
            slot = i % n
            self.calls -= self.b_calls[slot]
            self.failures -= self.b_failures[slot]
            self.slow -= self.b_slow[slot]
            self.b_calls[slot] = self.b_failures[slot] = self.b_slow[slot] = 0

    def add(self, now: float, failure: bool, slow: bool) -> None:
        self.advance(now)
        assert self.head is not None
        slot = self.head % self.n
        self.b_calls[slot] += 1
        self.b_failures[slot] += failure
        self.b_slow[slot] += slow
        self.calls += 1
        self.failures += failure
        self.slow += slow


Ring: TypeAlias = CountRing | TimeRing


def new_ring(window: Window) -> Ring:
    """An empty ring for *window*."""
    if isinstance(window, CountWindow):
        return CountRing(window.size)
    return TimeRing(window)
