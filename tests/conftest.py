"""Every async test runs on asyncio, asyncio+uvloop and trio.

asyncio and trio run on virtual time (exact durations); uvloop cannot, so it
runs on accelerated real time and ``clock.approx`` allows for its jitter.
Tests marked ``real_time`` run on real time on every loop.

Modules (or tests) marked ``foreign_clocks`` also run on two virtual clocks
that nobody here wrote: looptime's event loop on asyncio (whose time is
quantized to 1 us) and trio's own ``MockClock(autojump_threshold=0)``. They
are counted under asyncio and trio in the ``backends:`` line.

Hypothesis runs on the ``ci`` profile (derandomized, no example database)
when ``CI`` is set, and under nox; locally on ``dev`` (random exploration,
failures remembered in ``.hypothesis/``). ``HYPOTHESIS_PROFILE=...`` picks one.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import settings

from anyway.testing import backends, clock_id, foreign_clocks, fresh_backend, is_virtual

# Both start from hypothesis' defaults, not from whatever it auto-loaded.
_DEFAULT = settings.get_profile("default")
settings.register_profile(
    "ci", _DEFAULT, derandomize=True, database=None, deadline=None, print_blob=True
)
settings.register_profile("dev", _DEFAULT, deadline=None, print_blob=True)


def hypothesis_profile(environ: Mapping[str, str]) -> str:
    """HYPOTHESIS_PROFILE if set, else ``ci`` when CI is set (and not false), else ``dev``."""
    chosen = environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    ci = environ.get("CI", "").strip().lower()
    return "ci" if ci not in ("", "0", "false", "no") else "dev"


settings.load_profile(hypothesis_profile(os.environ))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("virtual_time") is not None:
        return  # the anyway plugin parametrizes it (over the same backends)
    params = backends(virtual_time=True)
    if metafunc.definition.get_closest_marker("foreign_clocks") is not None:
        params = [*params, *foreign_clocks()]
    metafunc.parametrize("anyio_backend", params, ids=clock_id, indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return fresh_backend(request)


@pytest.fixture(autouse=True)
def _no_gc_pause_on_real_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """On accelerated real time (uvloop: 1 s of clock time is 50 ms) a full
    garbage collection, tens of ms on a loaded machine, looks like seconds:
    the collector waits until the test is over."""
    if "anyio_backend" not in request.fixturenames or is_virtual(
        request.getfixturevalue("anyio_backend")
    ):
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def collect_coredis_streams() -> Iterator[None]:
    """coredis (6.9) drops AnyIO memory streams unclosed when a connection
    fails; collect them at the end of the Redis test that made them, where
    their ResourceWarning is expected, not in whichever test runs next."""
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", r"Unclosed <MemoryObject(Send|Receive)Stream", ResourceWarning
        )
        gc.collect()
