"""Every async test runs on asyncio, asyncio+uvloop and trio.

asyncio and trio run on virtual time (exact durations); uvloop cannot, so it
runs on accelerated real time and ``clock.approx`` allows for its jitter.
Tests marked ``real_time`` run on real time on every loop.
"""

from __future__ import annotations

import pytest

from anyway.testing import backend_id, backends, fresh_backend


@pytest.fixture(params=backends(virtual_time=True), ids=backend_id)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return fresh_backend(request)
