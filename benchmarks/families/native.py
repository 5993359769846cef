"""Family ``anyio``: what AnyIO's portable layer costs over the native loop.

The baseline of every case is the native primitive of the loop it runs on
(asyncio's on asyncio and uvloop, Trio's on Trio); AnyIO's equivalent is
measured in the same loop run, interleaved with it.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

from .._core import BatchFn, Case, Env, Variant

TITLE = "AnyIO against the native loop"

GROUP = 100  # tasks per task group in the spawn case
BUFFER = 100  # memory-stream buffer size


async def _noop() -> None:
    return None


# ------------------------------------------------------------------ task spawn


def _spawn_native(env: Env) -> BatchFn:
    if env.is_trio:
        import trio

        async def run_trio(n: int) -> None:
            for _ in range(n // GROUP):
                async with trio.open_nursery() as nursery:
                    for _ in range(GROUP):
                        nursery.start_soon(_noop)

        return run_trio
    import asyncio

    async def run_asyncio(n: int) -> None:
        for _ in range(n // GROUP):
            async with asyncio.TaskGroup() as tg:
                for _ in range(GROUP):
                    tg.create_task(_noop())

    return run_asyncio


def _spawn_anyio(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n // GROUP):
            async with anyio.create_task_group() as tg:
                for _ in range(GROUP):
                    tg.start_soon(_noop)

    return run


# ------------------------------------------------------------------ cancel scopes


def _scope_native(env: Env) -> BatchFn:
    if env.is_trio:
        import trio

        async def run_trio(n: int) -> None:
            for _ in range(n):
                with trio.CancelScope():  # noqa: ASYNC100 - the scope is what we time
                    pass

        return run_trio
    import asyncio

    async def run_asyncio(n: int) -> None:
        for _ in range(n):
            async with asyncio.timeout(None):  # noqa: ASYNC100 - the scope is what we time
                pass

    return run_asyncio


def _scope_anyio(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            with anyio.CancelScope():  # noqa: ASYNC100 - the scope is what we time
                pass

    return run


def _timeout_native(env: Env) -> BatchFn:
    if env.is_trio:
        import trio

        async def run_trio(n: int) -> None:
            for _ in range(n):
                with trio.move_on_after(60):  # noqa: ASYNC100 - the scope is what we time
                    pass

        return run_trio
    import asyncio

    async def run_asyncio(n: int) -> None:
        for _ in range(n):
            async with asyncio.timeout(60):  # noqa: ASYNC100 - the scope is what we time
                pass

    return run_asyncio


def _timeout_anyio(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            with anyio.move_on_after(60):  # noqa: ASYNC100 - the scope is what we time
                pass

    return run


# ------------------------------------------------------------------ checkpoint


def _checkpoint_native(env: Env) -> BatchFn:
    if env.is_trio:
        import trio

        checkpoint = trio.lowlevel.checkpoint

        async def run_trio(n: int) -> None:
            for _ in range(n):
                await checkpoint()

        return run_trio
    import asyncio

    sleep = asyncio.sleep

    async def run_asyncio(n: int) -> None:
        for _ in range(n):
            await sleep(0)

    return run_asyncio


def _checkpoint_anyio(env: Env) -> BatchFn:
    checkpoint = anyio.lowlevel.checkpoint

    async def run(n: int) -> None:
        for _ in range(n):
            await checkpoint()

    return run


# ------------------------------------------------------------------ memory streams


def _stream_native(env: Env) -> BatchFn:
    if env.is_trio:
        import trio

        async def run_trio(n: int) -> None:
            send, receive = trio.open_memory_channel[int](BUFFER)

            async def produce() -> None:
                async with send:
                    for i in range(n):
                        await send.send(i)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                async with receive:
                    async for _ in receive:
                        pass

        return run_trio
    import asyncio

    async def run_asyncio(n: int) -> None:
        queue: asyncio.Queue[int | None] = asyncio.Queue(BUFFER)

        async def produce() -> None:
            for i in range(n):
                await queue.put(i)
            await queue.put(None)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce())
            while await queue.get() is not None:
                pass

    return run_asyncio


def _stream_anyio(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        send, receive = anyio.create_memory_object_stream[int](BUFFER)

        async def produce() -> None:
            async with send:
                for i in range(n):
                    await send.send(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async with receive:
                async for _ in receive:
                    pass

    return run


# ------------------------------------------------------------------ limiters


def _limiter_native(env: Env) -> BatchFn:
    limiter: Any
    if env.is_trio:
        import trio

        limiter = trio.CapacityLimiter(10)
    else:
        import asyncio

        limiter = asyncio.Semaphore(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with limiter:
                pass

    return run


def _limiter_anyio(env: Env) -> BatchFn:
    limiter = anyio.CapacityLimiter(10)

    async def run(n: int) -> None:
        for _ in range(n):
            async with limiter:
                pass

    return run


def _native(make: Any, asyncio_label: str, trio_label: str) -> Variant:
    return Variant("native", make, labels={"asyncio": asyncio_label, "trio": trio_label})


def cases() -> list[Case]:
    family = "anyio"
    return [
        Case(
            family,
            "task spawn",
            [
                _native(_spawn_native, "asyncio.TaskGroup", "trio nursery"),
                Variant("anyio task group", _spawn_anyio),
            ],
            "start and join a no-op task, in groups of 100",
            unit="task",
            step=GROUP,
        ),
        Case(
            family,
            "cancel scope",
            [
                _native(_scope_native, "asyncio.timeout(None)", "trio.CancelScope()"),
                Variant("anyio.CancelScope()", _scope_anyio),
            ],
            "enter and exit a cancel scope without a deadline",
            unit="scope",
        ),
        Case(
            family,
            "timeout scope",
            [
                _native(_timeout_native, "asyncio.timeout(60)", "trio.move_on_after(60)"),
                Variant("anyio.move_on_after(60)", _timeout_anyio),
            ],
            "enter and exit a scope with a deadline that does not expire",
            unit="scope",
        ),
        Case(
            family,
            "checkpoint",
            [
                _native(_checkpoint_native, "asyncio.sleep(0)", "trio checkpoint()"),
                Variant("anyio checkpoint()", _checkpoint_anyio),
            ],
            "yield to the loop once",
            unit="checkpoint",
        ),
        Case(
            family,
            "memory stream",
            [
                _native(_stream_native, "asyncio.Queue(100)", "trio memory channel(100)"),
                Variant("anyio memory object stream(100)", _stream_anyio),
            ],
            "send and receive one item between two tasks (buffer 100)",
            unit="item",
        ),
        Case(
            family,
            "capacity limiter",
            [
                _native(_limiter_native, "asyncio.Semaphore(10)", "trio.CapacityLimiter(10)"),
                Variant("anyio.CapacityLimiter(10)", _limiter_anyio),
            ],
            "uncontended async with limiter",
            unit="acquire",
        ),
    ]
