"""Helpers shared by the circuit breaker's test modules."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from anyway import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerStateChanged,
    BreakerUpdate,
    CallRejected,
    CircuitBreaker,
    CircuitState,
    InMemoryBreakerStore,
    PolicyEvent,
)


class Boom(Exception):
    """The failure the tests' breakers count."""


class Other(Exception):
    """An error the tests' breakers are not told about."""


async def fail(breaker: CircuitBreaker, times: int = 1, exc: type[BaseException] = Boom) -> None:
    for _ in range(times):
        with pytest.raises(exc):
            async with breaker:
                raise exc("down")


async def fail_inside(breaker: CircuitBreaker) -> None:
    async with breaker:
        raise Boom("down")


async def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        async with breaker:
            pass


def changes(events: list[PolicyEvent]) -> list[tuple[CircuitState, CircuitState]]:
    return [(e.old, e.new) for e in events if isinstance(e, BreakerStateChanged)]


def rejections(events: list[PolicyEvent]) -> list[CallRejected]:
    return [e for e in events if isinstance(e, CallRejected)]


class RemoteStore:
    """A BreakerStore that is not the in-memory one (so the breaker goes
    through the async protocol), each operation taking a checkpoint like a
    network round trip (or ``delay`` seconds), and logging what it was asked."""

    def __init__(self, delay: float = 0.0) -> None:
        self.inner = InMemoryBreakerStore()
        self.delay = delay
        self.calls: list[str] = []

    async def _io(self, op: str) -> None:
        self.calls.append(op)
        if self.delay:
            await anyio.sleep(self.delay)
        else:
            await anyio.lowlevel.checkpoint()

    async def acquire(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        await self._io("acquire")
        return await self.inner.acquire(key, config, call)

    async def record(
        self,
        key: str,
        config: BreakerConfig,
        call: int,
        ticket: int,
        *,
        failure: bool,
        slow: bool,
    ) -> BreakerUpdate:
        await self._io("record")
        return await self.inner.record(key, config, call, ticket, failure=failure, slow=slow)

    async def release(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        await self._io("release")
        return await self.inner.release(key, config, call)

    async def force(
        self,
        key: str,
        config: BreakerConfig,
        state: CircuitState,
        *,
        seconds: float | None = None,
        reset: bool = False,
    ) -> BreakerUpdate:
        await self._io("force")
        return await self.inner.force(key, config, state, seconds=seconds, reset=reset)

    async def snapshot(self, key: str, config: BreakerConfig) -> BreakerSnapshot:
        await self._io("snapshot")
        return await self.inner.snapshot(key, config)
