"""Helpers shared by the limiter and bulkhead tests: both limiters behind one
interface, a recorder of grant times, a clock the test sets, fresh runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from types import SimpleNamespace
from typing import Any, TypeVar

import anyio
import pytest

from anyway import KeyedRateLimiter, RateLimiter
from anyway.testing import fresh_backend

Limiter = RateLimiter | KeyedRateLimiter
T = TypeVar("T")


async def acquire(limiter: Limiter, cost: float = 1, key: Hashable = "k", **kw: Any) -> None:
    if isinstance(limiter, KeyedRateLimiter):
        await limiter.acquire(key, cost, **kw)
    else:
        await limiter.acquire(cost, **kw)


def try_acquire(limiter: Limiter, cost: float = 1, key: Hashable = "k") -> bool:
    if isinstance(limiter, KeyedRateLimiter):
        return limiter.try_acquire(key, cost)
    return limiter.try_acquire(cost)


def wait_time(limiter: Limiter, cost: float = 1, key: Hashable = "k") -> float:
    if isinstance(limiter, KeyedRateLimiter):
        return limiter.wait_time(key, cost)
    return limiter.wait_time(cost)


def both(rate: float, per: float = 1.0, **kw: Any) -> list[Any]:
    """Parameters making a RateLimiter and a KeyedRateLimiter (used on one key)."""
    return [
        pytest.param(lambda **extra: RateLimiter(rate, per, **kw, **extra), id="single"),
        pytest.param(lambda **extra: KeyedRateLimiter(rate, per, **kw, **extra), id="keyed"),
    ]


class Recorder:
    """Starts acquirers at given times and records when each was granted."""

    def __init__(self, limiter: Limiter, clock: Any) -> None:
        self.limiter = limiter
        self.t0 = clock.now()
        self.clock = clock
        self.granted: dict[str, float] = {}
        self.order: list[str] = []
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def acquire(self, name: str, at: float, cost: float = 1, key: Hashable = "k") -> None:
        scope = self.scopes[name] = anyio.CancelScope()
        with scope:
            await anyio.sleep_until(self.t0 + at)
            await acquire(self.limiter, cost, key)
            self.granted[name] = self.clock.now() - self.t0
            self.order.append(name)

    async def cancel(self, name: str, at: float) -> None:
        await anyio.sleep_until(self.t0 + at)
        self.scopes[name].cancel()

    def times(self) -> dict[str, Any]:
        return {name: self.clock.approx(t) for name, t in self.granted.items()}


class ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock reads whatever the test sets: to ask the
    limiters at exact float times, through the public API only (nothing here
    sleeps; acquire is only called when it is granted at once)."""

    now = 0.0

    def time(self) -> float:
        return self.now


def at_times(body: Callable[[Callable[[float], None]], Awaitable[None]]) -> None:
    """Run *body* with a function that sets the clock."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, ManualClockLoop)

        def set_time(t: float) -> None:
            loop.now = t

        await body(set_time)

    anyio.run(main, backend="asyncio", backend_options={"loop_factory": ManualClockLoop})


def run_fresh(main: Callable[[], Awaitable[T]], request: pytest.FixtureRequest) -> T:
    """``anyio.run(main)`` on this test's backend, with a fresh loop and clock."""
    param = request.node.callspec.params["anyio_backend"]
    backend = fresh_backend(SimpleNamespace(param=param, node=request.node))
    name, options = backend if isinstance(backend, tuple) else (backend, {})
    return anyio.run(main, backend=name, backend_options=options)
