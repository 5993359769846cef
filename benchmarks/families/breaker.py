"""Family ``breaker``: CircuitBreaker call overhead (closed, success) against purgatory.

The baseline is a bare ``await`` of the same coroutine function; the rows
show the breaker as a context manager and as a decorator. The floor row is an
``async with`` of a context manager whose ``__aenter__`` and ``__aexit__`` do
nothing: what the ``async with`` protocol alone costs, the least any breaker
used that way can add. purgatory's
decorator looks its breaker up by name on every call (that is its API); its
context-manager row uses a breaker fetched once, the cheapest way to use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._core import BatchFn, Case, Env, Target, Variant

TITLE = "circuit breaker overhead against purgatory"

AsyncFn = Callable[[], Awaitable[int]]


async def _operation() -> int:
    return 1


def _calls(call: AsyncFn) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            await call()

    return run


def _bare(env: Env) -> BatchFn:
    return _calls(_operation)


def _anyway_context(env: Env) -> BatchFn:
    import anyway

    breaker = anyway.CircuitBreaker()

    async def run(n: int) -> None:
        for _ in range(n):
            async with breaker:
                await _operation()

    return run


class _Nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def _empty_context(env: Env) -> BatchFn:
    nothing = _Nothing()

    async def run(n: int) -> None:
        for _ in range(n):
            async with nothing:
                await _operation()

    return run


def _anyway_decorator(env: Env) -> BatchFn:
    import anyway

    breaker: Any = anyway.CircuitBreaker()
    return _calls(breaker(_operation))


def _purgatory_context(env: Env) -> Any:
    import purgatory

    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)

    class _Context:
        async def __aenter__(self) -> BatchFn:
            await factory.initialize()
            breaker = await factory.get_breaker("bench")

            async def run(n: int) -> None:
                for _ in range(n):
                    async with breaker:
                        await _operation()

            return run

        async def __aexit__(self, *exc_info: object) -> None:
            return None

    return _Context()


def _purgatory_decorator(env: Env) -> Any:
    import purgatory

    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    call = factory("bench")(_operation)

    class _Context:
        async def __aenter__(self) -> BatchFn:
            await factory.initialize()
            return _calls(call)

        async def __aexit__(self, *exc_info: object) -> None:
            return None

    return _Context()


def cases() -> list[Case]:
    return [
        Case(
            "breaker",
            "closed call",
            [
                Variant("bare await", _bare),
                Variant("floor: async with doing nothing", _empty_context),
                Variant(
                    "anyway async with breaker", _anyway_context, target=Target("overhead", 400.0)
                ),
                Variant("anyway @breaker", _anyway_decorator, target=Target("overhead", 400.0)),
                Variant("purgatory async with breaker", _purgatory_context, peer=True),
                Variant("purgatory @factory(name)", _purgatory_decorator, peer=True),
            ],
            "a successful call through a closed breaker",
            unit="call",
        )
    ]
