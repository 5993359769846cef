"""Type-checked by mypy --strict, never run: pins the public API's types."""

from __future__ import annotations

from typing import Any, assert_type

from anyio import sleep as anyio_sleep

import anyway
import anyway.abc
from anyway.testing import backend_id, backends, virtual_time_options

assert_type(backends(), list[tuple[str, dict[str, Any]]])
assert_type(backends(virtual_time=True, uvloop=False), list[tuple[str, dict[str, Any]]])
assert_type(virtual_time_options("trio"), dict[str, Any])
assert_type(backend_id(("asyncio", {})), str)

exc = anyway.CircuitOpen("open", retry_after=1.0, name="db")
assert_type(exc.retry_after, float | None)
assert_type(exc.name, str | None)
assert_type(anyway.DeadlineExceeded("late", seconds=1.0).seconds, float | None)


async def _tasks_and_deadlines() -> None:
    import anyio
    import outcome

    async def fetch(url: str) -> bytes:
        return url.encode()

    async def one() -> int:
        return 1

    assert_type(await anyway.settle(one, one), list[outcome.Outcome[int]])
    assert_type(await anyway.race(one, one), int)
    assert_type(await anyway.hedge(fetch, "u", delay=0.1), bytes)
    assert_type(await anyway.map_all(fetch, ["a"]), list[bytes])
    with anyway.deadline(1.0) as scope:
        assert_type(scope, anyio.CancelScope)
    assert_type(anyway.remaining(), float)
    assert_type(await anyway.fallback(fetch, "u", timeout=1.0, default=b""), bytes)


def _breaker_and_composition() -> None:
    breaker = anyway.CircuitBreaker(name="db")
    assert_type(breaker.state, anyway.CircuitState)
    stats = breaker.statistics()
    assert_type(stats, anyway.BreakerSnapshot)
    assert_type(stats.retry_after, float | None)
    assert_type(stats.failure_count, int)
    assert_type(breaker.derive(name="db:replica"), anyway.CircuitBreaker)
    assert_type(breaker.reset_nowait(), None)  # the sync sibling (in-memory store)

    async def operate() -> None:
        assert_type(await breaker.open(seconds=5.0), None)
        assert_type(await breaker.close(), None)
        assert_type(await breaker.reset(), None)
        assert_type(await breaker.call(anyio_sleep, 0.1), None)

    store: anyway.abc.BreakerStore = anyway.InMemoryBreakerStore()
    anyway.CircuitBreaker(name="shared", store=store)
    limiter: anyway.abc.Limiter = anyway.Bulkhead(2)
    rate: anyway.abc.RateLimit = anyway.RateLimiter(5)
    del limiter, rate  # the assignments are the checks

    @breaker
    async def guarded(x: int, *, y: str = "") -> int:
        return x

    async def call_guarded() -> None:
        assert_type(await guarded(1, y="a"), int)

    @anyway.resilient(
        timeout=5.0,
        retry=anyway.retry(on=OSError),
        breaker=breaker,
        limiter=anyway.RateLimiter(5),
        bulkhead=anyway.Bulkhead(2),
    )
    async def composed(x: int) -> str:
        return str(x)

    async def use() -> None:
        assert_type(await composed(1), str)

    assert_type(anyway.RateLimiter(10).try_acquire(), bool)
    assert_type(len(anyway.KeyedRateLimiter(10)), int)
