"""The Redis limiters on a real three-master Redis Cluster: the same code as
standalone, one slot per limit (hash-tagged keys), NOSCRIPT on any node."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest

from anyway.redis import RedisKeyedRateLimiter, RedisRateLimiter
from redis_server import COREDIS_UNCLOSED_STREAMS, RedisClusterServers, redis_cluster  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.real_time, *COREDIS_UNCLOSED_STREAMS]


@pytest.fixture
async def cluster(redis_cluster: RedisClusterServers) -> AsyncIterator[Any]:  # noqa: F811
    node = redis_cluster.nodes[0]
    async with coredis.RedisCluster("127.0.0.1", node.port) as client:
        yield client


def _slot_of(redis_cluster: RedisClusterServers, key: str) -> int:  # noqa: F811
    reply = redis_cluster.nodes[0].command("CLUSTER", "KEYSLOT", key)
    return int(reply[1:].split(b"\r\n")[0])


async def test_limits_spread_over_the_nodes_each_on_one_slot(
    cluster: Any,
    redis_cluster: RedisClusterServers,  # noqa: F811
) -> None:
    slots = set()
    for i in range(12):
        name = f"c{i}-{uuid.uuid4().hex[:6]}"
        limiter = RedisRateLimiter(cluster, name, 1, per=10.0)
        keyed = RedisKeyedRateLimiter(cluster, name, 1, per=10.0)
        assert await limiter.try_acquire()
        assert not await limiter.try_acquire()
        assert await keyed.try_acquire("a")
        assert await keyed.try_acquire("b")
        assert not await keyed.try_acquire("a")
        slot = _slot_of(redis_cluster, name)
        # every key of the limit lives on the slot of its name
        assert _slot_of(redis_cluster, limiter.key) == slot
        assert _slot_of(redis_cluster, keyed.key_for("a")) == slot
        assert _slot_of(redis_cluster, keyed.key_for("b")) == slot
        slots.add(slot * 3 // 16384)  # which third of the slots: which master
    assert len(slots) > 1  # the limits are not all on one node


async def test_noscript_on_the_cluster_reloads(cluster: Any) -> None:
    limiter = RedisRateLimiter(cluster, f"ns-{uuid.uuid4().hex[:6]}", 1000, burst=5)
    await limiter.acquire()
    assert await cluster.script_flush()  # every node forgets the script
    await limiter.acquire()
    assert await limiter.try_acquire()


async def test_waiting_on_the_cluster(cluster: Any) -> None:
    limiter = RedisRateLimiter(cluster, f"w-{uuid.uuid4().hex[:6]}", 50, burst=2)  # T = 20 ms
    for _ in range(5):
        await limiter.acquire()  # two at once, three after waiting
    assert not await limiter.try_acquire()
