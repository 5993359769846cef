"""The ``clock`` fixture's object: time and durations, whichever loop a test runs on."""

from __future__ import annotations

from typing import Any

import anyio

from ._backends import clock_id, is_virtual
from ._foreign import foreign_clock

__all__ = ["Clock", "clock_for"]

# float rounding of differences of ticks (i / 1e6 - j / 1e6)
_FLOAT_SLACK = 1e-9


class _Within:
    """Compares equal to durations in ``[expected - early, expected + late]``."""

    __slots__ = ("early", "expected", "late")

    def __init__(self, expected: float, early: float, late: float) -> None:
        self.expected = expected
        self.early = early
        self.late = late

    def __eq__(self, actual: object) -> bool:
        if isinstance(actual, _Within):
            # both sides were approximated: either may be the measured one
            return self._holds(actual.expected) or actual._holds(self.expected)
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return NotImplemented
        return self._holds(actual)

    def _holds(self, actual: float) -> bool:
        return self.expected - self.early <= actual <= self.expected + self.late

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{self.expected!r} (-{self.early:g}/+{self.late:g})"


class Clock:
    """What the ``clock`` fixture gives a test.

    On virtual time durations are exact (up to float rounding), so
    ``clock.approx(1.5)`` only forgives 1 ns. A quantized virtual clock
    (looptime keeps integer microseconds) lands each timer on a tick, up to
    one ``resolution`` late (a due time between two ticks waits for the next
    one); ``clock.approx`` forgives ``ticks`` ticks (default 1: one wait, or
    several that were all due on ticks). On real time (uvloop, or a
    ``real_time`` test) timers never fire early but the process may be late
    (scheduling, garbage collection, coverage tracing, a loaded machine), and
    on accelerated time every real millisecond counts many times over. So a
    real-time duration may come ``tolerance`` seconds of clock time early and
    ``late_tolerance`` (plus 25 %) late: exact timing is checked on the
    virtual loops; the real-time leg checks behaviour and that nothing happens
    early.

    Attributes: ``backend``, the leg's test id (asyncio, uvloop, trio,
    looptime, mockclock); ``virtual``, whether the loop runs on virtual time;
    ``tolerance`` and ``late_tolerance``, how early and how late (seconds of
    clock time) a duration may come; ``resolution``, the clock's tick
    (looptime: ``1e-06``; ``0.0`` for a float clock).
    """

    __slots__ = ("backend", "late_tolerance", "resolution", "tolerance", "virtual")

    def __init__(
        self,
        backend: str,
        *,
        virtual: bool,
        tolerance: float,
        late_tolerance: float | None = None,
        resolution: float = 0.0,
    ) -> None:
        self.backend: str = backend
        self.virtual: bool = virtual
        self.tolerance: float = tolerance
        self.late_tolerance: float = tolerance if late_tolerance is None else late_tolerance
        self.resolution: float = resolution

    def __repr__(self) -> str:
        return (
            f"<Clock backend={self.backend} virtual={self.virtual} tolerance={self.tolerance}"
            f" late_tolerance={self.late_tolerance} resolution={self.resolution}>"
        )

    @staticmethod
    def now() -> float:
        """``anyio.current_time()``: the loop's (possibly virtual) clock."""
        return anyio.current_time()

    def approx(self, seconds: float, *, ticks: int = 1) -> Any:
        """A value that compares equal to durations close enough to *seconds*.

        *ticks*: on a quantized clock, how many of its ticks the duration may
        be late: one per wait whose due time falls between two ticks (a
        limiter waiting ``1/3`` s three times in a row: ``ticks=3``). It does
        not matter on other clocks.
        """
        if self.resolution:
            return _Within(
                seconds, self.resolution + _FLOAT_SLACK, ticks * self.resolution + _FLOAT_SLACK
            )
        if self.virtual:
            import pytest

            return pytest.approx(seconds, abs=self.tolerance)
        return _Within(seconds, self.tolerance, self.late_tolerance + 0.25 * abs(seconds))


def clock_for(anyio_backend: Any) -> Clock:
    """The :class:`Clock` for a test that runs on *anyio_backend*."""
    name = clock_id(anyio_backend)
    virtual = is_virtual(anyio_backend)
    foreign = foreign_clock(anyio_backend)
    if foreign is not None and foreign.resolution:
        return Clock(
            name, virtual=True, tolerance=foreign.resolution, resolution=foreign.resolution
        )
    speedup = 1.0
    if isinstance(anyio_backend, tuple):
        factory = anyio_backend[1].get("loop_factory")
        loop_class = getattr(factory, "__qualname__", "")
        if "AcceleratedUVLoop[x" in loop_class:
            speedup = float(loop_class.split("[x", 1)[1].rstrip("]"))
    # Real time, seen as clock time on a loop that runs `speedup` times faster:
    # at most 15 ms early (libuv's 1 ms timer resolution and its cached time),
    # and up to 60 ms late.
    if virtual:
        return Clock(name, virtual=True, tolerance=1e-9)
    return Clock(name, virtual=False, tolerance=0.015 * speedup, late_tolerance=0.06 * speedup)
