"""The ``anyway`` pytest plugin (registered through the ``pytest11`` entry point).

It adds:

* the ``real_time`` marker: :func:`~anyway.testing.fresh_backend` runs such a
  test on real time (for tests that talk to a real server);
* the ``clock`` fixture: ``clock.now()``, ``clock.virtual`` and
  ``clock.approx(seconds)`` to assert durations exactly on virtual time and
  within a tolerance on (accelerated) real time;
* a closing line ``backends: asyncio=N uvloop=N trio=N`` counting the tests
  that ran on each loop, after a ``foreign clocks: looptime=N mockclock=N``
  line when tests ran on :func:`~anyway.testing.foreign_clocks` (they count
  under asyncio and trio too). Nothing is printed when no test ran;
* the ``virtual_time`` marker: an async test marked with it runs on virtual
  time on asyncio and Trio (and accelerated uvloop), without a conftest;
* the ``--block-threshold=SECONDS`` option (ini: ``block_threshold``): an
  async test whose event loop is blocked longer fails, naming the blocking
  line (see :func:`anyway.watchdog`);
* the ``--anyio-backends=asyncio,trio`` option (ini: ``anyio_backends``):
  run the async tests only on the named loops and clocks (their test ids:
  asyncio, uvloop, trio, looptime, mockclock); the other legs are deselected;
* cooperation with pytest-trio (``trio_mode = true``): AnyIO's tests stay
  AnyIO's, pytest-trio's run once and count as ``trio`` (the rules are in
  the module ``anyway.testing._pytest_trio``).
"""

from __future__ import annotations

import functools
import inspect
from collections import Counter
from collections.abc import Generator
from typing import Any, cast

import pytest

from ._backends import backend_id, backends, clock_id
from ._clock import Clock, clock_for
from ._foreign import foreign_clock
from ._pytest_trio import is_pytest_trio_test, keep_one_trio_leg, trio_mode, untake_anyio_tests

__all__ = ["Clock", "clock"]

_BACKEND_ORDER = ("asyncio", "uvloop", "trio")
_FOREIGN_ORDER = ("looptime", "mockclock")


@pytest.fixture
def clock(anyio_backend: Any, request: pytest.FixtureRequest) -> Clock:
    """Durations and time for a test, whichever loop it runs on.

    An AnyIO test's loop is its ``anyio_backend``. A pytest-trio test runs on
    Trio whatever ``anyio_backend`` says: on virtual time when it also asks
    for pytest-trio's ``autojump_clock`` or ``mock_clock``, else on real time.
    """
    if not is_pytest_trio_test(request.node, in_trio_mode=trio_mode(request.config)):
        return clock_for(anyio_backend)
    for name in ("autojump_clock", "mock_clock"):
        if name in request.fixturenames:
            return clock_for(("trio", {"clock": request.getfixturevalue(name)}))
    return clock_for("trio")


#: The user property that tells a test report which loop and clock it ran on.
_CLOCK_PROPERTY = "anyway_clock"


class _BackendCounter:
    """Counts the tests that ran (passed or failed) on each loop and clock."""

    def __init__(self) -> None:
        self.loops: Counter[str] = Counter()
        self.foreign: Counter[str] = Counter()
        self.ran = False
        self.foreign_ran = False

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        # around pytest-trio's automark (trio mode marks every async test `trio`)
        marked_before = {id(item) for item in items if item.get_closest_marker("trio")}
        yield
        in_trio_mode = trio_mode(config)
        if in_trio_mode:
            untake_anyio_tests(items, marked_before)
        items[:], deselected = keep_one_trio_leg(
            items, in_trio_mode=in_trio_mode, param_of=_backend_param_id
        )
        chosen = _chosen_backends(config)
        kept: list[pytest.Item] = []
        for item in items:
            param = _backend_param(item)
            if is_pytest_trio_test(item, in_trio_mode=in_trio_mode):
                clock: tuple[str, str | None] | None = ("trio", None)  # pytest-trio runs it
            elif param is not _NO_PARAM:
                foreign = foreign_clock(param)
                clock = (backend_id(param), None if foreign is None else foreign.name)
            else:
                clock = None  # not an async test on a loop we know
            if clock is not None and chosen is not None and (clock[1] or clock[0]) not in chosen:
                deselected.append(item)
                continue
            kept.append(item)
            if clock is not None:
                # on the item's reports, so that pytest-xdist's workers pass it on
                item.user_properties.append((_CLOCK_PROPERTY, clock))
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        clock = next(
            (value for name, value in report.user_properties if name == _CLOCK_PROPERTY), None
        )
        if clock is None:
            return
        self.ran = True
        # a tuple here, a list when it came through pytest-xdist
        loop, foreign = cast("tuple[str, str | None]", tuple(cast("list[object]", clock)))
        self.foreign_ran |= foreign is not None
        if report.when == "call" and not report.skipped:
            self.loops[loop] += 1
            if foreign is not None:
                self.foreign[foreign] += 1

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.ran:  # e.g. --collect-only: nothing ran, nothing to count
            return
        if self.foreign_ran:
            terminalreporter.write_line("foreign clocks: " + _counts(self.foreign, _FOREIGN_ORDER))
        # the last line, in this exact form: CI greps it
        terminalreporter.write_line("backends: " + _counts(self.loops, _BACKEND_ORDER))


_OPTION_HELP = (
    "run async tests only on these loops and clocks, comma-separated test ids:"
    " asyncio, uvloop, trio, looptime, mockclock (default: every one the suite parametrizes)"
)


_NO_PARAM: Any = object()


def _backend_param(item: pytest.Item) -> Any:
    """The item's ``anyio_backend`` parameter, or ``_NO_PARAM``."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return _NO_PARAM
    return callspec.params.get("anyio_backend", _NO_PARAM)


def _backend_param_id(item: pytest.Item) -> str | None:
    """The test id of the item's ``anyio_backend`` parameter, or None."""
    param = _backend_param(item)
    return None if param is _NO_PARAM else clock_id(param)


def _chosen_backends(config: pytest.Config) -> frozenset[str] | None:
    """The --anyio-backends (or anyio_backends ini) choice; None: all of them."""
    value = config.getoption("anyway_backends") or config.getini("anyio_backends")
    names = [name.strip() for name in str(value or "").split(",") if name.strip()]
    if not names:
        return None
    known = (*_BACKEND_ORDER, *_FOREIGN_ORDER)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise pytest.UsageError(
            f"--anyio-backends / anyio_backends: unknown loop {unknown[0]!r};"
            f" use comma-separated names from {', '.join(known)}, e.g. --anyio-backends=asyncio,trio"
        )
    return frozenset(names)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("anyway", "anyway: loops and virtual time")
    group.addoption(
        "--anyio-backends", dest="anyway_backends", default=None, metavar="NAMES", help=_OPTION_HELP
    )
    parser.addini("anyio_backends", _OPTION_HELP, default="")
    group.addoption(
        "--block-threshold", type=float, default=None, metavar="SECONDS", help=_BLOCK_HELP
    )
    parser.addini("block_threshold", _BLOCK_HELP, default=None)


_BLOCK_HELP = (
    "fail an async test whose event loop does not reach a checkpoint for this many"
    " real seconds (a sync call blocking the loop), naming the blocking line"
)


def _counts(counts: Counter[str], first: tuple[str, ...]) -> str:
    """``a=1 b=0 c=2``: the names in *first* always, then others alphabetically."""
    names = [*first, *sorted(set(counts) - set(first))]
    return " ".join(f"{name}={counts.get(name, 0)}" for name in names)


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
    config.addinivalue_line(
        "markers",
        "virtual_time: run this async test on virtual time on asyncio, uvloop (accelerated)"
        " and trio, in a suite that does not parametrize anyio_backend itself",
    )
    config.pluginmanager.register(_BackendCounter(), "anyway-backend-counter")
    config.stash[_BLOCK_THRESHOLD] = _block_threshold(config)


# --- --block-threshold: fail a test that blocks its event loop ----------------


_BLOCK_THRESHOLD = pytest.StashKey[float | None]()


def _block_threshold(config: pytest.Config) -> float | None:
    value = config.getoption("block_threshold")
    if value is None:
        value = config.getini("block_threshold")
    if value in (None, ""):
        return None
    from anyway import watchdog

    try:  # the watchdog's own checks (a millisecond at least, finite...), at startup
        return watchdog(float(value)).threshold
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"--block-threshold={value}: {exc}") from None


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


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The ``virtual_time`` marker: the test parametrizes ``anyio_backend``
    over ``backends(virtual_time=True)`` itself, as if it carried that
    ``parametrize`` mark (so it takes precedence over the fixture's params)."""
    definition = metafunc.definition
    if (
        "anyio_backend" in metafunc.fixturenames
        and definition.get_closest_marker("virtual_time") is not None
    ):
        definition.add_marker(
            pytest.mark.parametrize(
                "anyio_backend", backends(virtual_time=True), ids=clock_id, indirect=True
            )
        )
