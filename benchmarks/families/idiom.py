"""Family ``idiom``: anyway against the NATIVE idiom of each loop (portable at zero cost?).

The baseline is what a library author would write for one loop only, with the
same per-item work (one native yield: ``asyncio.sleep(0)`` or Trio's
``checkpoint()``):

* ``map_all(fn, items, max_at_once=100)`` against a task per item gated by a
  semaphore: ``asyncio.TaskGroup`` + ``asyncio.Semaphore(100)``, or a Trio
  nursery + ``trio.CapacityLimiter(100)``; results collected in order.
* ``settle(*fns)`` against ``asyncio.gather(..., return_exceptions=True)``
  (asyncio's collect-all) or a Trio nursery storing each result.

The scaling family reuses these builders at other sizes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from .._core import BatchFn, Case, Env, Target, Variant

TITLE = "anyway against the native idiom of each loop"

MAX_AT_ONCE = 100
ITEMS = 1_000
CALLS = 10

NATIVE_MAP = {"asyncio": "TaskGroup + Semaphore(100)", "trio": "nursery + CapacityLimiter(100)"}
NATIVE_SETTLE = {"asyncio": "asyncio.gather(return_exceptions)", "trio": "nursery + results"}


def native_yield(env: Env) -> Callable[[], Awaitable[None]]:
    """The loop's own cheapest yield: the per-item work of every variant."""
    if env.is_trio:
        import trio

        return trio.lowlevel.checkpoint  # type: ignore[no-any-return]
    import asyncio

    async def sleep0() -> None:
        await asyncio.sleep(0)

    return sleep0


def _work(env: Env) -> Callable[[int], Awaitable[int]]:
    yield_ = native_yield(env)

    async def work(item: int) -> int:
        await yield_()
        return item

    return work


def map_native(items: int) -> Callable[[Env], BatchFn]:
    def make(env: Env) -> BatchFn:
        work, data = _work(env), list(range(items))
        if env.is_trio:
            import trio

            async def one_call_trio() -> list[Any]:
                results: list[Any] = [None] * len(data)
                limiter = trio.CapacityLimiter(MAX_AT_ONCE)

                async def one(i: int, item: int) -> None:
                    async with limiter:
                        results[i] = await work(item)

                async with trio.open_nursery() as nursery:
                    for i, item in enumerate(data):
                        nursery.start_soon(one, i, item)
                return results

            call = one_call_trio
        else:
            import asyncio

            async def one_call_asyncio() -> list[Any]:
                semaphore = asyncio.Semaphore(MAX_AT_ONCE)

                async def one(item: int) -> int:
                    async with semaphore:
                        return await work(item)

                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(one(item)) for item in data]
                return [task.result() for task in tasks]

            call = one_call_asyncio

        async def run(n: int) -> None:
            for _ in range(n // items):
                await call()

        return run

    return make


def map_anyway(items: int) -> Callable[[Env], BatchFn]:
    def make(env: Env) -> BatchFn:
        import anyway

        work, data = _work(env), list(range(items))

        async def run(n: int) -> None:
            for _ in range(n // items):
                await anyway.map_all(work, data, max_at_once=MAX_AT_ONCE)

        return run

    return make


def settle_native(calls: int) -> Callable[[Env], BatchFn]:
    def make(env: Env) -> BatchFn:
        work = _work(env)
        if env.is_trio:
            import trio

            async def one_call_trio() -> list[Any]:
                results: list[Any] = [None] * calls

                async def one(i: int) -> None:
                    results[i] = await work(i)

                async with trio.open_nursery() as nursery:
                    for i in range(calls):
                        nursery.start_soon(one, i)
                return results

            call = one_call_trio
        else:
            import asyncio

            async def one_call_asyncio() -> list[Any]:
                return await asyncio.gather(
                    *[work(i) for i in range(calls)], return_exceptions=True
                )

            call = one_call_asyncio

        async def run(n: int) -> None:
            for _ in range(n // calls):
                await call()

        return run

    return make


def settle_anyway(calls: int) -> Callable[[Env], BatchFn]:
    def make(env: Env) -> BatchFn:
        import anyway

        work = _work(env)
        fns = [partial(work, i) for i in range(calls)]

        async def run(n: int) -> None:
            for _ in range(n // calls):
                await anyway.settle(*fns)

        return run

    return make


def cases() -> list[Case]:
    return [
        Case(
            "idiom",
            f"map_all, {ITEMS:,} items, max_at_once={MAX_AT_ONCE}",
            [
                Variant("native", map_native(ITEMS), labels=NATIVE_MAP),
                Variant("anyway.map_all", map_anyway(ITEMS), target=Target("ratio", 1.0)),
            ],
            "results in order; each item is one native yield (per item)",
            unit="item",
            step=ITEMS,
        ),
        Case(
            "idiom",
            f"settle, {CALLS} calls",
            [
                Variant("native", settle_native(CALLS), labels=NATIVE_SETTLE),
                Variant("anyway.settle", settle_anyway(CALLS)),
            ],
            "collect every outcome; each call is one native yield (per call)",
            unit="call",
            step=CALLS,
        ),
    ]
