"""Virtual time for Trio: a ``MockClock`` that never jumps over a worker thread.

``trio.testing.MockClock(autojump_threshold=0)`` jumps to the next deadline as
soon as every task is blocked, including a task blocked on a worker thread,
so a timeout around ``to_thread.run_sync`` fires at once. ``MockClock`` is
final, so instead of subclassing it we keep a small tracker beside each clock
we hand out: while a worker thread started by ``anyio.to_thread`` runs, the
clock's autojump is switched off (``autojump_threshold = inf``, so time
stands still and the run loop sleeps until the thread reports back), and it
is switched back on when the thread's result has been delivered.
"""

from __future__ import annotations

import math
import weakref

import trio
import trio.testing

__all__ = ["TrioThreadTracker", "current_virtual_clock", "virtual_clock"]


class TrioThreadTracker:
    """Turns a clock's autojump off while worker threads are busy."""

    __slots__ = ("_busy", "_clock", "_threshold")

    def __init__(self, clock: trio.testing.MockClock, threshold: float) -> None:
        self._clock = clock
        self._threshold = threshold
        self._busy = 0

    def __repr__(self) -> str:
        return f"<TrioThreadTracker busy={self._busy} clock={self._clock!r}>"

    def thread_started(self) -> None:
        self._busy += 1
        if self._busy == 1:
            self._clock.autojump_threshold = math.inf

    def thread_finished(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._clock.autojump_threshold = self._threshold


_trackers: weakref.WeakKeyDictionary[trio.testing.MockClock, TrioThreadTracker] = (
    weakref.WeakKeyDictionary()
)


def virtual_clock(*, autojump_threshold: float = 0.0) -> trio.testing.MockClock:
    """A ``MockClock`` that autojumps, except while a worker thread runs."""
    clock = trio.testing.MockClock(autojump_threshold=autojump_threshold)
    _trackers[clock] = TrioThreadTracker(clock, float(autojump_threshold))
    return clock


def is_virtual_clock(clock: object) -> bool:
    return isinstance(clock, trio.testing.MockClock) and clock in _trackers


def is_mock_clock(clock: object) -> bool:
    """Any ``MockClock``, ours or a plain one: virtual time either way."""
    return isinstance(clock, trio.testing.MockClock)


def fresh_mock_clock(clock: trio.testing.MockClock) -> trio.testing.MockClock:
    """A new plain ``MockClock`` with the same autojump threshold, at time 0."""
    return trio.testing.MockClock(autojump_threshold=clock.autojump_threshold)


def current_virtual_clock() -> TrioThreadTracker | None:
    """The tracker of the running Trio clock if it is one of ours, else ``None``."""
    try:
        clock = trio.lowlevel.current_clock()
    except RuntimeError:
        return None
    if isinstance(clock, trio.testing.MockClock):
        return _trackers.get(clock)
    return None
