"""anyway.testing's pytest side: the clock fixture, fresh_backend, foreign
clocks, the plugin's summary lines and --anyio-backends, the Hypothesis profile."""

from __future__ import annotations

import importlib.util
import os
import time
import types
from pathlib import Path
from typing import Any

import anyio
import pytest

import anyway.testing
from anyway.testing import (
    Clock,
    backend_id,
    backends,
    clock_id,
    foreign_clocks,
    fresh_backend,
    is_virtual,
)

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]
# The plugin's own options for pytester runs: looptime's plugin needs pytest-asyncio.
PLUGINS = ("-p", "anyio", "-p", "no:looptime_plugin")

HAVE_TRIO = importlib.util.find_spec("trio") is not None
# Trio is optional: the tests_without_trio session runs this file without it.
CONFTEST = Path(__file__).with_name("conftest.py")


def test_foreign_clocks_are_named_and_virtual() -> None:
    params = foreign_clocks()
    trio = ["mockclock"] if HAVE_TRIO else []
    assert [clock_id(p) for p in params] == ["looptime", *trio]
    assert [backend_id(p) for p in params] == ["asyncio", *(["trio"] if HAVE_TRIO else [])]
    assert all(is_virtual(p) for p in params)
    assert [clock_id(b) for b in backends()] == [backend_id(b) for b in backends()]


@pytest.mark.foreign_clocks
async def test_clock_approx_allows_a_tick_per_wait_on_a_quantized_clock(clock: Clock) -> None:
    """looptime keeps whole microseconds: each 1/3 s wait ends up to one tick
    late, and waits computed from the last wake-up add up."""
    start = clock.now()
    for _ in range(3):
        await anyio.sleep(1 / 3)
    elapsed = clock.now() - start
    assert elapsed == clock.approx(1.0, ticks=3)
    # far enough that a loaded machine's stalls on uvloop's accelerated real
    # time (1 s is 50 ms there) never reach it: 1.5 s did, once (1.24 s)
    assert elapsed != clock.approx(3.0, ticks=3)
    assert clock.resolution == (1e-6 if clock.backend == "looptime" else 0.0)


def test_clock_approx_on_a_quantized_clock() -> None:
    clock = Clock("looptime", virtual=True, tolerance=1e-6, resolution=1e-6)
    assert clock.approx(1.0, ticks=3) == 1.000002
    assert clock.approx(1.0) != 1.000002  # one wait: at most one tick late
    assert clock.approx(1.0) == 0.999999  # a due time computed before a late tick
    assert clock.approx(1.0, ticks=3) != 0.999998  # never more than a tick early
    assert "resolution=1e-06" in repr(clock)


# --- the fixtures, through the real plugin ------------------------------------


async def test_clock_fixture_measures_loop_time(clock: Clock) -> None:
    start = clock.now()
    await anyio.sleep(1.5)
    assert clock.now() - start == clock.approx(1.5)
    assert clock.now() - start != clock.approx(3.0)


def _request(param: object, *markers: str) -> Any:
    """What fresh_backend reads from pytest's request: the param and the markers."""
    node = types.SimpleNamespace(
        get_closest_marker=lambda name: getattr(pytest.mark, name).mark if name in markers else None
    )
    return types.SimpleNamespace(param=param, node=node)


VIRTUAL_PARAMS = [b for b in [*backends(virtual_time=True), *foreign_clocks()] if is_virtual(b)]


@pytest.mark.parametrize("param", VIRTUAL_PARAMS, ids=clock_id)
def test_fresh_backend_starts_every_test_at_zero(param: Any) -> None:
    async def main() -> float:
        start = anyio.current_time()
        await anyio.sleep(7)
        return start

    for _ in range(2):  # the second test does not inherit the first one's time
        fresh = fresh_backend(_request(param))
        assert isinstance(fresh, tuple)
        name, options = fresh
        assert anyio.run(main, backend=name, backend_options=options) == 0.0


@pytest.mark.parametrize("param", VIRTUAL_PARAMS, ids=clock_id)
def test_fresh_backend_puts_real_time_tests_on_real_time(param: Any) -> None:
    fresh = fresh_backend(_request(param, "real_time"))
    assert not is_virtual(fresh)
    assert backend_id(fresh) == backend_id(param)


@pytest.mark.real_time
async def test_real_time_marker(clock: Clock) -> None:
    assert not clock.virtual
    start = time.perf_counter()
    await anyio.sleep(0.01)
    assert time.perf_counter() - start >= 0.009


def test_hypothesis_is_deterministic_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What nox sets (and CI=true, which hypothesis honours itself): the "ci"
    profile, derandomized, no example database (an earlier failure is never
    replayed), no deadline."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "ci")
    # the subprocess imports this anyway, wherever it comes from
    source = str(Path(anyway.testing.__file__).parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]))
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
from hypothesis import given, settings, strategies as st

def test_profile():
    assert settings.default.derandomize
    assert settings.default.database is None
    assert settings.default.deadline is None

@given(st.integers())
def test_runs(n):
    assert isinstance(n, int)
"""
    )
    result = pytester.runpytest_subprocess(*PLUGINS)
    result.assert_outcomes(passed=2)
    assert not (pytester.path / ".hypothesis" / "examples").exists()


def test_plugin_prints_backend_counts(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from anyway.testing import backend_id, backends, fresh_backend

@pytest.fixture(params=backends(virtual_time=True), ids=backend_id)
def anyio_backend(request):
    return fresh_backend(request)
"""
    )
    pytester.makepyfile(
        """
import anyio, pytest

async def test_sleep(clock):
    start = clock.now()
    await anyio.sleep(5)
    assert clock.now() - start == clock.approx(5)

async def test_skipped_on_trio(anyio_backend):
    if anyio_backend[0] == "trio":
        pytest.skip("not counted")

def test_sync():
    pass
"""
    )
    result = pytester.runpytest_inprocess(*PLUGINS, "-v")
    if HAVE_TRIO:
        result.assert_outcomes(passed=6, skipped=1)
        counts = "backends: asyncio=2 uvloop=2 trio=1"
    else:
        result.assert_outcomes(passed=5)
        counts = "backends: asyncio=2 uvloop=2 trio=0"
    result.stdout.fnmatch_lines(["*test_sleep?asyncio? PASSED*", counts])


FOREIGN_CONFTEST = """
import pytest
from anyway.testing import backends, clock_id, foreign_clocks, fresh_backend

def pytest_generate_tests(metafunc):
    if "anyio_backend" in metafunc.fixturenames:
        params = [*backends(virtual_time=True), *foreign_clocks()]
        metafunc.parametrize("anyio_backend", params, ids=clock_id, indirect=True)

@pytest.fixture
def anyio_backend(request):
    return fresh_backend(request)
"""


def test_plugin_counts_foreign_clocks_and_ends_with_the_backends_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(FOREIGN_CONFTEST)
    pytester.makepyfile(
        """
import anyio, pytest

pytestmark = pytest.mark.anyio

async def test_sleep(clock):
    start = clock.now()
    await anyio.sleep(1 / 3)
    assert clock.now() - start == clock.approx(1 / 3)
"""
    )
    result = pytester.runpytest_inprocess(*PLUGINS, "-v")
    if HAVE_TRIO:
        result.assert_outcomes(passed=5)
        lines = ["*test_sleep?looptime? PASSED*", "*test_sleep?mockclock? PASSED*"]
        lines += ["foreign clocks: looptime=1 mockclock=1", "backends: asyncio=2 uvloop=1 trio=2"]
    else:
        result.assert_outcomes(passed=3)
        lines = ["foreign clocks: looptime=1 mockclock=0", "backends: asyncio=2 uvloop=1 trio=0"]
    result.stdout.fnmatch_lines(lines, consecutive=False)
    summary = [line for line in result.outlines if line.startswith(("backends:", "foreign"))]
    assert summary == lines[-2:]
    # the backends line is the last one before pytest's own summary
    assert result.outlines[result.outlines.index(lines[-1]) + 1].startswith("=")


CHOSEN_TESTS = """
import anyio, pytest

pytestmark = pytest.mark.anyio

async def test_sleep(clock):
    start = clock.now()
    await anyio.sleep(2)
    assert clock.now() - start == clock.approx(2)

def test_sync():
    pass
"""


@pytest.mark.parametrize("where", ["command line", "ini"])
def test_anyio_backends_option_chooses_the_loops(pytester: pytest.Pytester, where: str) -> None:
    pytester.makeconftest(FOREIGN_CONFTEST)
    pytester.makepyfile(CHOSEN_TESTS)
    if where == "ini":
        pytester.makeini("[pytest]\nanyio_backends = uvloop, looptime\n")
        result = pytester.runpytest_inprocess(*PLUGINS, "-v")
    else:
        result = pytester.runpytest_inprocess(*PLUGINS, "-v", "--anyio-backends=uvloop,looptime")
    result.assert_outcomes(passed=3, deselected=3 if HAVE_TRIO else 1)
    result.stdout.fnmatch_lines(
        [
            "*test_sleep?uvloop? PASSED*",
            "*test_sleep?looptime? PASSED*",
            "*test_sync PASSED*",
            "backends: asyncio=1 uvloop=1 trio=0",
        ]
    )
    assert "test_sleep[asyncio]" not in result.stdout.str()


def test_anyio_backends_option_names_the_valid_loops(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CHOSEN_TESTS)
    result = pytester.runpytest_inprocess(*PLUGINS, "--anyio-backends=asyncio,tokio")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown loop 'tokio'*asyncio, uvloop, trio, looptime, mockclock*"]
    )


def test_plugin_prints_no_counts_when_nothing_ran(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FOREIGN_CONFTEST)
    pytester.makepyfile(
        """
import pytest

@pytest.mark.anyio
async def test_nothing():
    pass
"""
    )
    result = pytester.runpytest_inprocess(*PLUGINS, "--collect-only")
    assert not [line for line in result.outlines if line.startswith(("backends:", "foreign"))]
    result = pytester.runpytest_inprocess(*PLUGINS, "-k", "no_such_test")
    assert not [line for line in result.outlines if line.startswith(("backends:", "foreign"))]


VIRTUAL_TIME_TESTS = """
import anyio, pytest, time

pytestmark = pytest.mark.anyio

@pytest.mark.virtual_time
@pytest.mark.parametrize("seconds", [1, 2])
async def test_marked(clock, seconds):
    assert clock.virtual or clock.backend == "uvloop"  # uvloop: accelerated real time
    start = clock.now()
    await anyio.sleep(seconds)
    assert clock.now() - start == clock.approx(seconds)

async def test_unmarked(anyio_backend):
    start = time.monotonic()
    await anyio.sleep(0.01)
    assert time.monotonic() - start >= 0.009  # real time
"""


def test_virtual_time_marker_without_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(VIRTUAL_TIME_TESTS)
    result = pytester.runpytest_inprocess(*PLUGINS, "-v")
    trio = 1 if HAVE_TRIO else 0
    result.assert_outcomes(passed=2 * (2 + trio) + 1 + trio)
    result.stdout.fnmatch_lines(
        [
            "*test_marked?1-asyncio? PASSED*",
            "*test_marked?1-uvloop? PASSED*",
            *(["*test_marked?2-trio? PASSED*"] if HAVE_TRIO else []),
        ]
    )
    assert "test_unmarked[uvloop]" not in result.stdout.str()


def test_virtual_time_marker_is_exact_on_the_virtual_loops(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(VIRTUAL_TIME_TESTS)
    result = pytester.runpytest_inprocess(*PLUGINS, "-v", "--anyio-backends=asyncio,trio")
    trio = 1 if HAVE_TRIO else 0
    result.assert_outcomes(passed=2 * (1 + trio) + 1 + trio, deselected=2)


def test_virtual_time_marker_with_a_backend_fixture(pytester: pytest.Pytester) -> None:
    """A conftest whose anyio_backend fixture has params (real time here): the
    marked test's own parametrization wins, through the fixture."""
    pytester.makeconftest(
        """
import pytest
from anyway.testing import backend_id, backends, fresh_backend

@pytest.fixture(params=backends(), ids=backend_id)
def anyio_backend(request):
    return fresh_backend(request)
"""
    )
    pytester.makepyfile(VIRTUAL_TIME_TESTS)
    result = pytester.runpytest_inprocess(*PLUGINS, "-v", "--anyio-backends=asyncio,trio")
    trio = 1 if HAVE_TRIO else 0
    result.assert_outcomes(passed=2 * (1 + trio) + 1 + trio, deselected=3)


@pytest.mark.virtual_time
async def test_virtual_time_marker_in_a_suite_that_parametrizes_itself(clock: Clock) -> None:
    """This suite's conftest steps aside for marked tests: no duplicate parametrization."""
    start = clock.now()
    await anyio.sleep(2)
    assert clock.now() - start == clock.approx(2)


# --- pytest-trio's trio_mode: its tests are its own, AnyIO's are AnyIO's -------

HAVE_PYTEST_TRIO = importlib.util.find_spec("pytest_trio") is not None
needs_pytest_trio = pytest.mark.skipif(not HAVE_PYTEST_TRIO, reason="pytest-trio not installed")

BACKENDS_CONFTEST = """
import pytest
from anyway.testing import backend_id, backends, fresh_backend

@pytest.fixture(params=backends(virtual_time=True), ids=backend_id)
def anyio_backend(request):
    return fresh_backend(request)
"""

TRIO_MODE_TESTS = """
import anyio, pytest, sniffio, trio

async def test_trio_only():
    await trio.sleep(0)

async def test_trio_clock(clock):
    assert sniffio.current_async_library() == "trio"
    assert (clock.backend, clock.virtual) == ("trio", False)  # pytest-trio: real time

async def test_trio_autojump(clock, autojump_clock):
    assert (clock.backend, clock.virtual) == ("trio", True)
    start = clock.now()
    await trio.sleep(5)
    assert clock.now() - start == clock.approx(5)

async def test_trio_asks_for_the_backend(anyio_backend):
    assert sniffio.current_async_library() == "trio"

@pytest.fixture
async def resource(anyio_backend):
    yield sniffio.current_async_library()

@pytest.mark.anyio
async def test_portable(anyio_backend, resource):
    assert sniffio.current_async_library() == resource == anyio_backend[0]
    await anyio.sleep(1)
"""


@needs_pytest_trio
@pytest.mark.parametrize("enabled_by", ["ini", "conftest"])
def test_pytest_trio_mode_keeps_its_tests_and_leaves_anyio_its_own(
    pytester: pytest.Pytester, enabled_by: str
) -> None:
    """trio_mode marks every async test `trio`: without the plugin's help the
    AnyIO test's asyncio and uvloop legs ran on Trio (and its async fixture
    hit a nested trio.run), and the Trio tests asking for `clock` or
    `anyio_backend` ran once per backend, every copy on Trio."""
    if enabled_by == "ini":
        pytester.makeconftest(BACKENDS_CONFTEST)
        pytester.makeini("[pytest]\ntrio_mode = true\n")
    else:  # pytest-trio's other way to turn trio mode on
        pytester.makeconftest("from pytest_trio.enable_trio_mode import *\n" + BACKENDS_CONFTEST)
    pytester.makepyfile(TRIO_MODE_TESTS)
    result = pytester.runpytest_inprocess(*PLUGINS, "-v")
    # the Trio tests with an anyio_backend parameter keep one leg each (3 x 2 dropped)
    result.assert_outcomes(passed=4 + 3, deselected=6)
    result.stdout.fnmatch_lines(
        [
            "*::test_trio_only PASSED*",
            "*::test_trio_clock?trio? PASSED*",
            "*::test_portable?asyncio? PASSED*",
            "*::test_portable?uvloop? PASSED*",
            "*::test_portable?trio? PASSED*",
            "backends: asyncio=1 uvloop=1 trio=5",
        ],
        consecutive=False,
    )
    assert "test_trio_clock[asyncio]" not in result.stdout.str()


@needs_pytest_trio
def test_pytest_trio_tests_follow_anyio_backends(pytester: pytest.Pytester) -> None:
    """--anyio-backends=asyncio runs no Trio test, pytest-trio's included."""
    pytester.makeconftest(BACKENDS_CONFTEST)
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(TRIO_MODE_TESTS)
    result = pytester.runpytest_inprocess(*PLUGINS, "-v", "--anyio-backends=asyncio")
    result.assert_outcomes(passed=1, deselected=6 + 4 + 2)
    result.stdout.fnmatch_lines(["*::test_portable?asyncio? PASSED*", "backends: asyncio=1 *"])


@needs_pytest_trio
def test_a_test_marked_trio_counts_as_trio_without_trio_mode(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(BACKENDS_CONFTEST)
    pytester.makepyfile(
        """
import pytest, sniffio

@pytest.mark.trio
async def test_trio(clock):
    assert sniffio.current_async_library() == "trio"
    assert clock.backend == "trio"

@pytest.mark.anyio
async def test_portable(anyio_backend):
    assert sniffio.current_async_library() == anyio_backend[0]
"""
    )
    result = pytester.runpytest_inprocess(*PLUGINS, "-v")
    result.assert_outcomes(passed=1 + 3, deselected=2)
    result.stdout.fnmatch_lines(["backends: asyncio=1 uvloop=1 trio=2"])


def test_a_trio_mark_means_nothing_without_pytest_trio(pytester: pytest.Pytester) -> None:
    """Somebody's own `trio` marker (no pytest-trio): the legs stay as they are."""
    pytester.makeconftest(BACKENDS_CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    trio: ours\n")
    pytester.makepyfile(
        """
import pytest

@pytest.mark.trio
@pytest.mark.anyio
async def test_marked(anyio_backend):
    pass

@pytest.mark.trio
async def test_clock_only(clock):  # AnyIO runs it: it has an anyio_backend
    pass
"""
    )
    result = pytester.runpytest_inprocess(*PLUGINS, "-p", "no:trio", "-v")
    trio = 1 if HAVE_TRIO else 0
    result.assert_outcomes(passed=2 * (2 + trio))
    result.stdout.fnmatch_lines([f"backends: asyncio=2 uvloop=2 trio={2 * trio}"])
