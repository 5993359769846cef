"""The ``anyway`` pytest plugin (registered through the ``pytest11`` entry point).

It adds:

* the ``real_time`` marker: :func:`~anyway.testing.fresh_backend` runs such a
  test on real time (for tests that talk to a real server);
* the ``clock`` fixture: ``clock.now()``, ``clock.virtual`` and
  ``clock.approx(seconds)`` to assert durations exactly on virtual time and
  within a tolerance on (accelerated) real time;
* a closing line ``backends: asyncio=N uvloop=N trio=N`` counting the tests
  that ran on each loop.
"""

from __future__ import annotations

import functools
import inspect
from collections import Counter
from typing import Any

import anyio
import pytest

from ._backends import backend_id, is_virtual

__all__ = ["Clock"]

_BACKEND_ORDER = ("asyncio", "uvloop", "trio")


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
    ``clock.approx(1.5)`` only forgives 1 ns. On real time (uvloop, or a
    ``real_time`` test) timers never fire early but the process may be late
    (scheduling, garbage collection, coverage tracing, a loaded machine), and
    on accelerated time every real millisecond counts many times over. So a
    real-time duration may come ``tolerance`` seconds of clock time early and
    ``late_tolerance`` (plus 25 %) late: exact timing is checked on the
    virtual loops; the real-time leg checks behaviour and that nothing happens
    early.
    """

    __slots__ = ("backend", "late_tolerance", "tolerance", "virtual")

    def __init__(
        self, backend: str, *, virtual: bool, tolerance: float, late_tolerance: float | None = None
    ) -> None:
        self.backend = backend
        self.virtual = virtual
        self.tolerance = tolerance
        self.late_tolerance = tolerance if late_tolerance is None else late_tolerance

    def __repr__(self) -> str:
        return (
            f"<Clock backend={self.backend} virtual={self.virtual} tolerance={self.tolerance}"
            f" late_tolerance={self.late_tolerance}>"
        )

    @staticmethod
    def now() -> float:
        """``anyio.current_time()``: the loop's (possibly virtual) clock."""
        return anyio.current_time()

    def approx(self, seconds: float) -> Any:
        """A value that compares equal to durations close enough to *seconds*."""
        if self.virtual:
            return pytest.approx(seconds, abs=self.tolerance)
        return _Within(seconds, self.tolerance, self.late_tolerance + 0.25 * abs(seconds))


@pytest.fixture
def clock(anyio_backend: Any) -> Clock:
    """Durations and time for a test, whichever loop it runs on."""
    name = backend_id(anyio_backend)
    virtual = is_virtual(anyio_backend)
    resolution = 1e-9
    if isinstance(anyio_backend, tuple):
        # a foreign virtual clock may be quantized (looptime: 1 us)
        factory = anyio_backend[1].get("loop_factory")
        resolution = max(resolution, getattr(factory, "_anyway_resolution", 0.0))
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
        return Clock(name, virtual=True, tolerance=resolution)
    return Clock(name, virtual=False, tolerance=0.015 * speedup, late_tolerance=0.06 * speedup)


class _BackendCounter:
    """Counts the tests that ran (passed or failed) on each loop."""

    def __init__(self) -> None:
        self.by_item: dict[str, str] = {}
        self.counts: Counter[str] = Counter()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            callspec = getattr(item, "callspec", None)
            if callspec is not None and "anyio_backend" in callspec.params:
                self.by_item[item.nodeid] = backend_id(callspec.params["anyio_backend"])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and not report.skipped:
            backend = self.by_item.get(report.nodeid)
            if backend is not None:
                self.counts[backend] += 1

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.by_item:
            return
        names = [*_BACKEND_ORDER, *sorted(set(self.counts) - set(_BACKEND_ORDER))]
        terminalreporter.write_line(
            "backends: " + " ".join(f"{name}={self.counts.get(name, 0)}" for name in names)
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_time: run this test on real time even where the suite uses virtual time"
        " (tests that talk to real servers)",
    )
    config.addinivalue_line(
        "markers",
        "foreign_clocks: also run this test on virtual clocks nobody here wrote"
        " (looptime on asyncio, trio's MockClock) where the suite's conftest provides them",
    )
    config.pluginmanager.register(_BackendCounter(), "anyway-backend-counter")
    config.stash[_BLOCK_THRESHOLD] = _block_threshold(config)


# --- --block-threshold: fail a test that blocks its event loop ----------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("anyway")
    help_text = (
        "fail an async test whose event loop does not reach a checkpoint for this many"
        " real seconds (a sync call blocking the loop), naming the blocking line"
    )
    group.addoption(
        "--block-threshold", type=float, default=None, metavar="SECONDS", help=help_text
    )
    parser.addini("block_threshold", help_text, default=None)


_BLOCK_THRESHOLD = pytest.StashKey[float | None]()


def _block_threshold(config: pytest.Config) -> float | None:
    value = config.getoption("block_threshold")
    if value is None:
        value = config.getini("block_threshold")
    if value in (None, ""):
        return None
    threshold = float(value)
    if not threshold > 0:
        raise pytest.UsageError(f"--block-threshold must be > 0 seconds, got {value!r}")
    return threshold


def _guarded(test: Any, threshold: float) -> Any:
    """*test* (an async test function) run inside a watchdog; fails on a stall."""
    from anyway import watchdog

    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        with watchdog(threshold, on_block=lambda event: None) as dog:
            result = await test(*args, **kwargs)
        if dog.blocked:
            pytest.fail(
                "\n\n".join(str(event) for event in dog.blocked)
                + f"\n(--block-threshold={threshold:g}: use anyio.to_thread.run_sync for"
                " blocking calls)",
                pytrace=False,
            )
        return result

    return guarded


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    threshold = pyfuncitem.config.stash.get(_BLOCK_THRESHOLD, None)
    original = pyfuncitem.obj
    if threshold is None or not inspect.iscoroutinefunction(original):
        return (yield)
    pyfuncitem.obj = _guarded(original, threshold)
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original
