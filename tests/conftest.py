"""Every async test runs on asyncio, asyncio+uvloop and trio.

asyncio and trio run on virtual time (exact durations); uvloop cannot, so it
runs on accelerated real time and ``clock.approx`` allows for its jitter.
Tests marked ``real_time`` run on real time on every loop.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from anyway.testing import backend_id, backends, fresh_backend, is_virtual


@pytest.fixture(params=backends(virtual_time=True), ids=backend_id)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return fresh_backend(request)


@pytest.fixture(autouse=True)
def _no_gc_pause_on_real_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """On accelerated real time (uvloop: 1 s of clock time is 20 ms) a full
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
