"""Family ``scaling``: cost and memory as the number of items, tasks and keys grows.

* Cost per item of ``map_all`` (max_at_once=100) at 10, 1,000 and 100,000
  items and of ``settle`` at 10 and 10,000 calls, against the native idiom
  of the ``idiom`` family: flat is the goal.

* Cost per task at N concurrent tasks (N = 10 ... 100,000; quick mode stops
  at 10,000): N tasks are started in one task group, each blocks on an event;
  when the last one has started the event is set and the group joins.
  AnyIO's task group against the native one.
* Memory per blocked task (``tracemalloc``, 10,000 tasks) and per key tracked
  by ``KeyedRateLimiter`` (10,000 limited keys; a ``dict`` of floats is shown
  as the floor any per-key state pays).
* A flood of distinct keys on virtual time (100,000 in quick mode, 1,000,000
  in full mode, 1,000 new keys per second, each limited for 1 s): the number
  of keys the limiter still tracks stays at the keys active within one
  ``per``, and so does its memory.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._core import BatchFn, Case, Env, Variant
from . import idiom

TITLE = "cost and memory per task and per key"

SIZES = (10, 100, 1_000, 10_000, 100_000)
QUICK_MAX = 10_000
MEMORY_TASKS = {"quick": 2_000, "full": 10_000}
MEMORY_KEYS = {"quick": 2_000, "full": 10_000}
FLOOD_RATE = 1_000  # new keys per virtual second
FLOOD_STEP = 0.1  # virtual seconds between bursts of new keys


# ------------------------------------------------------------------ N concurrent tasks

Hold = Callable[[int, Callable[[], None]], Awaitable[None]]


def _hold_native(env: Env) -> Hold:
    """Start *size* tasks blocked on an event, call *during()*, release them, join."""
    if env.is_trio:
        import trio

        async def hold_trio(size: int, during: Callable[[], None]) -> None:
            go, ready = trio.Event(), trio.Event()
            started = 0

            async def child() -> None:
                nonlocal started
                started += 1
                if started == size:
                    ready.set()
                await go.wait()

            async with trio.open_nursery() as nursery:
                for _ in range(size):
                    nursery.start_soon(child)
                await ready.wait()
                during()
                go.set()

        return hold_trio
    import asyncio

    async def hold_asyncio(size: int, during: Callable[[], None]) -> None:
        go, ready = asyncio.Event(), asyncio.Event()
        started = 0

        async def child() -> None:
            nonlocal started
            started += 1
            if started == size:
                ready.set()
            await go.wait()

        async with asyncio.TaskGroup() as tg:
            for _ in range(size):
                tg.create_task(child())
            await ready.wait()
            during()
            go.set()

    return hold_asyncio


def _hold_anyio(env: Env) -> Hold:
    async def hold(size: int, during: Callable[[], None]) -> None:
        go, ready = anyio.Event(), anyio.Event()
        started = 0

        async def child() -> None:
            nonlocal started
            started += 1
            if started == size:
                ready.set()
            await go.wait()

        async with anyio.create_task_group() as tg:
            for _ in range(size):
                tg.start_soon(child)
            await ready.wait()
            during()
            go.set()

    return hold


def _nothing() -> None:
    return None


def _spawn(size: int, holder: Callable[[Env], Hold]) -> Callable[[Env], BatchFn]:
    def make(env: Env) -> BatchFn:
        hold = holder(env)

        async def run(n: int) -> None:
            for _ in range(n // size):
                await hold(size, _nothing)

        return run

    return make


# ------------------------------------------------------------------ memory per task


def _task_memory(holder: Callable[[Env], Hold]) -> Callable[[Env], Awaitable[float]]:
    async def measure(env: Env) -> float:
        hold = holder(env)
        held = 0

        def snapshot() -> None:
            nonlocal held
            held = tracemalloc.get_traced_memory()[0] - before

        size = MEMORY_TASKS[env.settings.mode]
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await hold(size, snapshot)
        finally:
            tracemalloc.stop()
        return held / size

    return measure


# ------------------------------------------------------------------ memory per key


async def _key_memory_dict(env: Env) -> float:
    keys = [f"key-{i}" for i in range(MEMORY_KEYS[env.settings.mode])]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table: dict[str, float] = {}
        for key in keys:
            table[key] = anyio.current_time() + 60.0
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held / len(keys)


async def _key_memory_anyway(env: Env) -> float:
    import anyway

    keys = [f"key-{i}" for i in range(MEMORY_KEYS[env.settings.mode])]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        limiter: Any = anyway.KeyedRateLimiter(1, per=60.0)
        for key in keys:
            await limiter.acquire(key)
        held = tracemalloc.get_traced_memory()[0] - before
        env.extra["tracked_keys"] = float(len(limiter))
    finally:
        tracemalloc.stop()
    return held / len(keys)


# ------------------------------------------------------------------ flood of keys


async def _flood(env: Env) -> float:
    """Distinct keys at FLOOD_RATE per virtual second; returns the most keys tracked.

    ``tracemalloc`` runs during the last 10% of the flood only (tracing a
    million acquisitions would take minutes); as every key still tracked at
    the end was created within the last ``per`` (1 s), the memory traced at
    the end is the memory the limiter holds.
    """
    import anyway

    total = 100_000 if env.settings.quick else 1_000_000
    per_step = int(FLOOD_RATE * FLOOD_STEP)
    steps = total // per_step
    traced_from = steps - steps // 10
    limiter: Any = anyway.KeyedRateLimiter(1, per=1.0)
    acquire = limiter.acquire
    peak = 0
    before = 0
    try:
        for step in range(steps):
            if step == traced_from:
                gc.collect()
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
            base = step * per_step
            for i in range(per_step):
                await acquire(base + i)
            peak = max(peak, len(limiter))
            await anyio.sleep(FLOOD_STEP)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    env.extra["keys_total"] = float(total)
    env.extra["tracked_at_end"] = float(len(limiter))
    env.extra["bytes_at_end"] = float(held)
    env.extra["bytes_per_tracked_key"] = held / max(len(limiter), 1)
    return float(peak)


def _idiom_series(
    name: str, sizes: tuple[int, ...], native: Any, anyway_: Any, labels: dict[str, str]
) -> list[Case]:
    what = "items" if name == "map_all" else "calls"
    return [
        Case(
            "scaling",
            f"{name}, {size:,} {what}",
            [
                Variant("native", native(size), labels=labels),
                Variant(f"anyway.{name}", anyway_(size)),
            ],
            f"one {name} call of {size:,} {what} against the native idiom",
            unit=what[:-1],
            step=size,
            # 100,000 items take seconds per batch: no separate warm-up, few repetitions
            fixed_n=size if size >= 100_000 else None,
            warmup=size < 100_000,
            max_reps={"quick": 1 if size >= 100_000 else 3, "full": 5} if size >= 10_000 else {},
            params={"series": f"{name}: cost per {what[:-1]}", "x": size, "xlabel": what},
        )
        for size in sizes
    ]


def cases() -> list[Case]:
    family = "scaling"
    out = _idiom_series(
        "map_all", (10, 1_000, 100_000), idiom.map_native, idiom.map_anyway, idiom.NATIVE_MAP
    )
    out += _idiom_series(
        "settle", (10, 10_000), idiom.settle_native, idiom.settle_anyway, idiom.NATIVE_SETTLE
    )
    for size in SIZES:
        out.append(
            Case(
                family,
                f"{size:,} concurrent tasks",
                [
                    Variant(
                        "native",
                        _spawn(size, _hold_native),
                        labels={"asyncio": "asyncio.TaskGroup", "trio": "trio nursery"},
                    ),
                    Variant("anyio task group", _spawn(size, _hold_anyio)),
                ],
                f"start {size:,} tasks blocked on an event, release and join them",
                unit="task",
                step=size,
                modes=frozenset({"quick", "full"} if size <= QUICK_MAX else {"full"}),
                max_reps={"quick": 3, "full": 5 if size < 100_000 else 3} if size >= 10_000 else {},
                params={
                    "series": "anyio task group: cost per task",
                    "x": size,
                    "xlabel": "concurrent tasks",
                },
            )
        )
    out.append(
        Case(
            family,
            "memory per task",
            [
                Variant(
                    "native",
                    measure=_task_memory(_hold_native),
                    labels={"asyncio": "asyncio.TaskGroup", "trio": "trio nursery"},
                ),
                Variant("anyio task group", measure=_task_memory(_hold_anyio)),
            ],
            f"tracemalloc: bytes per blocked task ({MEMORY_TASKS['full']:,} tasks; quick:"
            f" {MEMORY_TASKS['quick']:,})",
            kind="metric",
            unit="B/task",
        )
    )
    out.append(
        Case(
            family,
            "memory per limiter key",
            [
                Variant("dict[str, float] (floor)", measure=_key_memory_dict),
                Variant("anyway.KeyedRateLimiter", measure=_key_memory_anyway),
            ],
            f"tracemalloc: bytes per limited key ({MEMORY_KEYS['full']:,} keys; quick:"
            f" {MEMORY_KEYS['quick']:,})",
            kind="metric",
            unit="B/key",
        )
    )
    out.append(
        Case(
            family,
            "flood of distinct keys",
            [Variant("anyway.KeyedRateLimiter", measure=_flood)],
            f"most keys tracked while {FLOOD_RATE:,} new keys/s arrive (limit: 1 per key per s)",
            kind="metric",
            unit="keys",
            backends=("asyncio", "trio"),  # on virtual time
            virtual=True,
            baseline_value=FLOOD_RATE,
            baseline_label=f"{FLOOD_RATE:,} keys per s",
        )
    )
    return out
