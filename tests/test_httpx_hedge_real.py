"""Hedging and adaptive limits per host against a real HTTP server on
127.0.0.1 (``tests/http_server.py``, in a thread): real sockets on every
loop, with tiny waits."""

from __future__ import annotations

import anyio
import httpx
import pytest

import httpx_support
from anyway import AdaptiveLimiter, Hedger, PerKey
from http_server import RealServer
from httpx_support import real_transport

# The shared fixtures.
server = httpx_support.server
key = httpx_support.key

pytestmark = [pytest.mark.anyio, pytest.mark.real_time]


def hedgers() -> PerKey[Hedger]:
    return PerKey(lambda host: Hedger(quantile=0.5, max_extra=1.0, warmup=3))


async def wait_for_connections(server: RealServer, count: int) -> int:
    """The server's open connections, once they are at most *count* (or after
    2 s). At most: the server is shared, and a connection an earlier test left
    to the pool may close meanwhile, below the baseline."""
    with anyio.move_on_after(2.0):
        while server.open_connections > count:
            await anyio.sleep(0.005)
    return server.open_connections


async def test_a_hedged_request_closes_the_losers_connection(server: RealServer, key: str) -> None:
    per_host = hedgers()
    baseline = server.open_connections
    async with httpx.AsyncClient(transport=real_transport(hedger=per_host)) as client:
        for _ in range(3):  # learn: a few milliseconds
            assert (await client.get(server.url("/ok", key=key))).status_code == 200
        delay = per_host[f"127.0.0.1:{server.port}"].statistics().delay
        assert delay is not None
        assert delay < 0.05
        slow = server.url("/slow", key=key, delay=0.06)
        response = await client.get(slow)  # slower than learned: hedged
        assert response.status_code == 200
        assert response.text == "ok"
        assert server.requests(key) == ["GET"] * 5  # both copies reached the server
        stats = per_host[f"127.0.0.1:{server.port}"].statistics()
        assert (stats.calls, stats.extra) == (4, 1)
        # The loser's connection was closed (it could not go back to the
        # pool mid-answer); the winner's is idle in the pool.
        assert await wait_for_connections(server, baseline + 1) <= baseline + 1
        for _ in range(3):  # the pool still works
            assert (await client.get(server.url("/ok", key=key))).status_code == 200
    assert await wait_for_connections(server, baseline) <= baseline


async def test_hosts_are_hedged_separately_and_post_never(server: RealServer, key: str) -> None:
    per_host = hedgers()
    async with httpx.AsyncClient(transport=real_transport(hedger=per_host)) as client:
        for host in ("127.0.0.1", "localhost"):
            for _ in range(3):
                await client.get(server.url("/ok", host=host, key=key))
        assert sorted(per_host) == sorted([f"127.0.0.1:{server.port}", f"localhost:{server.port}"])
        assert all(per_host[host].statistics().samples == 3 for host in per_host)
        other = f"{key}-post"
        response = await client.post(server.url("/slow", key=other, delay=0.06), content=b"x")
        assert response.status_code == 200
    assert server.requests(other) == ["POST"]


async def test_cancelling_a_hedged_request_leaks_no_connection(
    server: RealServer, key: str
) -> None:
    limiters = PerKey(lambda host: AdaptiveLimiter(initial=4, name=host))
    baseline = server.open_connections
    transport = real_transport(hedger=hedgers(), limiter=limiters)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            await client.get(server.url("/ok", key=key))
        # the hedge delay is the median of the /ok latencies: under load tens
        # of ms, so the second copy needs room before the cancellation
        with anyio.move_on_after(0.1) as scope:
            await client.get(server.url("/slow", key=key, delay=0.3))
        assert scope.cancelled_caught
        assert server.count(key) == 5  # both copies were sent, both cancelled
        stats = limiters[f"127.0.0.1:{server.port}"].statistics()
        assert (stats.in_flight, stats.waiting) == (0, 0)
        response = await client.get(server.url("/ok", key=key))
        assert response.status_code == 200
    assert await wait_for_connections(server, baseline) <= baseline
