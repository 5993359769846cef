"""Virtual clocks that anyway did not write, as ``anyio_backend`` parameters.

Code that passes on anyway's own virtual time should also pass on the clocks
its users test with, which differ in ways that find real bugs:

``looptime`` (asyncio)
    `looptime <https://github.com/nolar/looptime>`_'s event loop keeps time
    in integer microseconds: a due time it cannot represent is rounded, and a
    wait shorter than a microsecond still takes one. Code that busy-waits on
    an exact due time spins forever there. It also jumps over worker threads.
``mockclock`` (Trio)
    ``trio.testing.MockClock(autojump_threshold=0)``, Trio's own virtual
    clock, as-is: it too jumps while a task waits for a worker thread.

A test that needs a worker thread to hold the clock (anyway's clocks do)
does not belong on these.
"""

from __future__ import annotations

import asyncio
import importlib.util
import weakref
from dataclasses import dataclass
from typing import Any

__all__ = ["ForeignClock", "foreign_clock", "foreign_clocks", "fresh_foreign"]

Backend = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class ForeignClock:
    """What anyway knows about a foreign clock: its test id and its tick."""

    name: str
    resolution: float  # the clock's tick in seconds (0.0: a float clock)


LOOPTIME = ForeignClock("looptime", 1e-6)
MOCKCLOCK = ForeignClock("mockclock", 0.0)

# Trio clocks cannot carry attributes (MockClock is final and slotted).
_trio_clocks: weakref.WeakKeyDictionary[object, ForeignClock] = weakref.WeakKeyDictionary()


def _looptime_loop() -> asyncio.AbstractEventLoop:
    import looptime

    return looptime.new_event_loop(start=0.0, resolution=LOOPTIME.resolution)


_looptime_loop._anyway_kind = "foreign"  # type: ignore[attr-defined]
_looptime_loop._anyway_foreign = LOOPTIME  # type: ignore[attr-defined]
_looptime_loop.__qualname__ = _looptime_loop.__name__ = "looptime.new_event_loop"


def _mock_clock(threshold: float = 0.0) -> Any:
    import trio.testing

    clock = trio.testing.MockClock(autojump_threshold=threshold)
    _trio_clocks[clock] = MOCKCLOCK
    return clock


def foreign_clocks() -> list[Backend]:
    """``anyio_backend`` parameters for virtual clocks that anyway did not write.

    ``("asyncio", {"loop_factory": <looptime>})`` when looptime is installed,
    and ``("trio", {"clock": MockClock(autojump_threshold=0)})`` when Trio is.
    Give them ids with :func:`~anyway.testing.clock_id` (``looptime``,
    ``mockclock``); like :func:`~anyway.testing.backends`' parameters, pass each test's value through
    :func:`~anyway.testing.fresh_backend` so that every test starts at time 0. The plugin
    counts them under asyncio and trio in the ``backends:`` line and prints a
    ``foreign clocks:`` line before it.
    """
    result: list[Backend] = []
    if importlib.util.find_spec("looptime") is not None:
        result.append(("asyncio", {"loop_factory": _looptime_loop}))
    if importlib.util.find_spec("trio") is not None:
        result.append(("trio", {"clock": _mock_clock()}))
    return result


def foreign_clock(backend: object) -> ForeignClock | None:
    """The foreign clock an ``anyio_backend`` value runs on, if it is one."""
    if not isinstance(backend, tuple) or len(backend) != 2:
        return None
    name, options = backend
    if not isinstance(options, dict):
        return None
    if name == "trio":
        clock = options.get("clock")
        try:
            return _trio_clocks.get(clock)
        except TypeError:  # not weak-referenceable: not one of ours
            return None
    found = getattr(options.get("loop_factory"), "_anyway_foreign", None)
    return found if isinstance(found, ForeignClock) else None


def fresh_foreign(backend: Backend) -> Backend:
    """The same foreign clock, fresh for one test (a looptime loop is made per run)."""
    name, options = backend
    if name == "trio":
        return (name, {**options, "clock": _mock_clock(options["clock"].autojump_threshold)})
    return (name, dict(options))
