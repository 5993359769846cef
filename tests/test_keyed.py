"""KeyedRateLimiter: keys are independent, memory is bounded by the keys still
limited, a limited key is never reset, ``len()``. What it shares with
RateLimiter (grant times, FIFO, cancellation, bad input) is tested for both in
test_ratelimit.py. Every test runs on every loop, foreign clocks included."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from anyway import KeyedRateLimiter, PolicyEvent, RateLimitExceeded
from limit_helpers import Recorder, at_times

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


async def test_keyed_timeout_names_the_key(clock: Any) -> None:
    events: list[PolicyEvent] = []
    limiter = KeyedRateLimiter(1, name="api", hooks=[events.append])
    await limiter.acquire("alice")
    with pytest.raises(RateLimitExceeded, match=r"api\['alice'\]: 1 unit\(s\)"):
        await limiter.acquire("alice", timeout=0.25)
    await limiter.acquire("bob", timeout=0)  # another key is not limited
    assert [e.policy for e in events] == ["api['alice']"]
    assert limiter.wait_time("alice") == clock.approx(1.0)
    assert limiter.wait_time("carol") == 0.0


def tracked(limiter: KeyedRateLimiter) -> int:
    """The keys held, without the sweep that ``len()`` does first: what the
    operations alone leave behind (the repr shows it)."""
    match = re.search(r" keys=(\d+) ", repr(limiter))
    assert match is not None
    return int(match.group(1))


async def test_keys_are_independent(clock: Any) -> None:
    limiter = KeyedRateLimiter(1, burst=2)
    t0 = clock.now()
    for key in ("a", "b", "c"):
        async with limiter.limit(key):
            pass
        await limiter.acquire(key)
    assert clock.now() - t0 == clock.approx(0)
    assert len(limiter) == 3
    assert not limiter.try_acquire("a")
    async with limiter.limit("a"):
        assert clock.now() - t0 == clock.approx(1)


async def test_flood_of_keys_keeps_memory_bounded(clock: Any) -> None:
    # 10 per second per key, burst 2: a key that took a whole burst is fully
    # recovered 0.2 s later. 10,000 distinct keys arrive in batches of 100
    # every 0.05 s: only the keys granted within the last 0.2 s (the current
    # batch and the 4 before it) are tracked, never the whole flood.
    limiter = KeyedRateLimiter(10, burst=2)
    sizes = []
    for batch in range(100):
        for i in range(100):
            assert limiter.try_acquire((batch, i), 2)
        sizes.append(tracked(limiter))
        await anyio.sleep(0.05)
    assert max(sizes) <= 500
    await anyio.sleep(1)
    for _ in range(125):  # each operation sweeps a few recovered keys
        limiter.try_acquire("late")
    assert tracked(limiter) == 1


async def test_limited_key_is_never_reset_by_a_flood(clock: Any) -> None:
    # One unit per second, bursts of 3. "hot" takes a whole burst at 0 (full
    # again at 3); 100 other keys take one unit each every 0.5 s. A key is
    # kept at most burst * per / rate = 3 s after its grant, so the flood is
    # swept as it goes, but "hot" is never reset: its next burst comes at 3.
    limiter = KeyedRateLimiter(1, burst=3)
    t0 = clock.now()
    await limiter.acquire("hot", 3)
    sizes = []
    for batch in range(10):  # up to 4.5 s
        for i in range(100):
            assert limiter.try_acquire((batch, i))
        sizes.append(tracked(limiter))
        if clock.now() - t0 < 2.5:
            assert not limiter.try_acquire("hot", 3)
        await anyio.sleep(0.5)
    assert max(sizes) <= 7 * 100 + 1
    assert sizes[-1] < 10 * 100


async def test_keys_with_waiters_are_never_dropped(clock: Any) -> None:
    limiter = KeyedRateLimiter(1, per=3.0)  # one unit per 3 s
    rec = Recorder(limiter, clock)
    await limiter.acquire("slow")
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.acquire, "w1", 0.0, 1, "slow")
        tg.start_soon(rec.acquire, "w2", 0.5, 1, "slow")
        for step in range(10):  # others sweep the front again and again
            await anyio.sleep(0.5)
            for i in range(20):
                assert limiter.try_acquire((step, i))
    assert rec.times() == {"w1": clock.approx(3.0), "w2": clock.approx(6.0)}
    assert limiter.waiting == 0


async def test_recovered_key_is_dropped_and_comes_back_fresh(clock: Any) -> None:
    limiter = KeyedRateLimiter(1, burst=4)
    await limiter.acquire("a", 4)  # full again at 4
    await anyio.sleep(2)  # half recovered: kept
    assert limiter.try_acquire("b", 4)  # full again at 6
    assert len(limiter) == 2
    await anyio.sleep(2.5)  # "a" fully recovered, "b" still limited
    assert limiter.try_acquire("c")
    assert len(limiter) == 2  # "a" dropped
    assert limiter.try_acquire("a", 4)  # a fresh key: a whole burst


async def test_len_drops_recovered_keys_without_another_acquire(clock: Any) -> None:
    limiter = KeyedRateLimiter(1, burst=2)  # a key recovers 2 s after its last grant
    for key in range(100):
        await limiter.acquire(key)
    assert len(limiter) == 100
    await anyio.sleep(3)  # every key recovered 2 s after its grant
    assert tracked(limiter) == 100  # nothing has swept them yet
    assert len(limiter) == 0  # len() does, at once
    assert "keys=0" in repr(limiter)
    assert limiter.try_acquire(0, 2)  # a fresh key: a whole burst


async def test_len_keeps_keys_still_limited(clock: Any) -> None:
    limiter = KeyedRateLimiter(1, burst=3)
    t0 = clock.now()
    for key in range(50):
        assert limiter.try_acquire(key)  # recovered 1 s later
    await anyio.sleep(0.5)
    assert limiter.try_acquire("hot", 3)  # recovered 3 s after its grant, at 3.5
    await anyio.sleep(1.5)  # at 2: the 50 keys recovered, "hot" half-way
    assert len(limiter) == 1
    assert not limiter.try_acquire("hot", 2)  # not reset
    assert limiter.wait_time("hot", 3) == clock.approx(1.5)
    await anyio.sleep(1.5)  # at 3.5, exactly recovered
    assert clock.now() - t0 == clock.approx(3.5)
    await anyio.sleep(1)
    assert len(limiter) == 0


async def test_len_never_drops_a_key_with_waiters(clock: Any) -> None:
    limiter = KeyedRateLimiter(1, burst=3)  # one unit per second per key
    rec = Recorder(limiter, clock)
    await limiter.acquire("a", 3)  # "a" in front, limited until 3
    async with anyio.create_task_group() as tg:
        tg.start_soon(rec.acquire, "w", 0.0, 3, "a")  # 3 more units for "a": at 3
        await anyio.sleep(0.5)
        for key in ("b", "c"):
            await limiter.acquire(key)  # recovered at 1.5
        await anyio.sleep(2)  # at 2.5: "b" and "c" recovered; "a" has a waiter
        assert len(limiter) == 1
        assert limiter.waiting == 1
    assert rec.times() == {"w": clock.approx(3)}
    assert len(limiter) == 1  # "a", limited again until 6


def test_len_outside_an_event_loop_is_the_count_as_it_stands() -> None:
    limiter = KeyedRateLimiter(1)

    async def use() -> None:
        for key in range(3):
            assert limiter.try_acquire(key)

    assert len(limiter) == 0
    anyio.run(use)
    assert len(limiter) == 3  # no loop, no clock: nothing swept
    assert KeyedRateLimiter(1)  # a limiter is true even with no keys tracked


def test_len_keeps_a_key_until_it_has_recovered() -> None:
    async def body(set_time: Callable[[float], None]) -> None:
        limiter = KeyedRateLimiter(1, burst=3)
        assert limiter.try_acquire("hot", 3)  # recovered at exactly 3
        set_time(math.nextafter(3.0, 0))
        assert len(limiter) == 1
        set_time(3.0)
        assert len(limiter) == 1  # exactly recovered: kept, as the operations do
        set_time(3.001)
        assert len(limiter) == 0

    at_times(body)
