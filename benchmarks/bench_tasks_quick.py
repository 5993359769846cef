"""Quick side-by-side costs of anyway's deadlines and task-group helpers
against what you would write by hand on AnyIO.

    python benchmarks/bench_tasks_quick.py [--reps 15] [--backends asyncio,trio]

Every case runs inside one ``anyio.run`` per backend, variants interleaved
(rotated order, ``gc.collect()`` between batches, outside the timed region);
reported: median time per operation and the median of per-repetition ratios
to the first (baseline) variant. Real time, not virtual.
"""

# ruff: noqa: ASYNC100 - empty deadline blocks are what is measured

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiometer
import anyio
from anyio.lowlevel import checkpoint

import anyway

Batch = Callable[[], Awaitable[None]]


async def _time(batch: Batch) -> float:
    gc.collect()
    start = time.perf_counter()
    await batch()
    return time.perf_counter() - start


async def run_case(
    title: str, per: int, variants: dict[str, Batch], reps: int
) -> list[tuple[str, float, float]]:
    names = list(variants)
    for name in names:  # warm up
        await variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            times[name].append(await _time(variants[name]))
    base = times[names[0]]
    rows = []
    for name in names:
        ratio = statistics.median(t / b for t, b in zip(times[name], base, strict=True))
        rows.append((name, statistics.median(times[name]) / per * 1e9, ratio))
    print(f"  {title}")
    for name, ns, ratio in rows:
        print(f"    {name:<34} {ns:10.0f} ns/op   x{ratio:.3f}")
    return rows


# --- workloads ----------------------------------------------------------------


async def work() -> int:
    await checkpoint()
    return 1


async def work_item(x: int) -> int:
    await checkpoint()
    return x


async def instant() -> int:
    return 1


async def main(reps: int) -> None:
    loops = 20_000

    # deadlines: enter + exit of an unexpired block, no await inside
    async def b_cancel_scope() -> None:
        now = anyio.current_time
        for _ in range(loops):
            with anyio.CancelScope(deadline=now() + 10):
                pass

    async def b_fail_after() -> None:
        for _ in range(loops):
            with anyio.fail_after(10):
                pass

    async def b_deadline() -> None:
        for _ in range(loops):
            with anyway.deadline(10):
                pass

    async def b_budget() -> None:
        budget = anyway.Budget(1000)
        for _ in range(loops):
            with budget:
                pass

    async def b_shield() -> None:
        for _ in range(loops):
            with anyway.shield(10):
                pass

    async def b_move_on_shield() -> None:
        for _ in range(loops):
            with anyio.move_on_after(10, shield=True):
                pass

    async def b_remaining() -> None:
        for _ in range(loops):
            anyway.remaining()

    async def b_raw_remaining() -> None:
        for _ in range(loops):
            anyio.current_effective_deadline() - anyio.current_time()

    await run_case(
        "deadline enter+exit",
        loops,
        {
            "anyio.fail_after(10)": b_fail_after,
            "anyio.CancelScope(deadline=...)": b_cancel_scope,
            "anyway.deadline(10)": b_deadline,
            "with budget (anyway.Budget)": b_budget,
        },
        reps,
    )
    await run_case(
        "shield enter+exit",
        loops,
        {"anyio.move_on_after(10, shield=True)": b_move_on_shield, "anyway.shield(10)": b_shield},
        reps,
    )
    await run_case(
        "remaining()",
        loops,
        {"effective_deadline - current_time": b_raw_remaining, "anyway.remaining()": b_remaining},
        reps,
    )

    # fallback: fn finishes in time
    async def b_move_on() -> None:
        for _ in range(loops // 4):
            with anyio.move_on_after(10):
                await instant()

    async def b_fallback() -> None:
        for _ in range(loops // 4):
            await anyway.fallback(instant, timeout=10, default=None)

    await run_case(
        "fallback (in time)",
        loops // 4,
        {"move_on_after + await": b_move_on, "anyway.fallback": b_fallback},
        reps,
    )

    # settle / race vs a raw task group
    fans = 100
    groups = 20

    async def b_raw_tg() -> None:
        for _ in range(groups):
            async with anyio.create_task_group() as tg:
                for _ in range(fans):
                    tg.start_soon(work)

    fns = [work] * fans

    async def b_settle() -> None:
        for _ in range(groups):
            await anyway.settle(*fns)

    async def b_gather() -> None:
        for _ in range(groups):
            await anyio.gather(*[fn() for fn in fns])

    await run_case(
        f"settle: {fans} calls (checkpoint + return)",
        groups * fans,
        {"raw task group": b_raw_tg, "anyio.gather": b_gather, "anyway.settle": b_settle},
        reps,
    )

    async def slow() -> int:
        await anyio.sleep(60)
        return 2

    contenders = [work, slow, slow]
    races = 300

    async def b_raw_race() -> None:
        for _ in range(races):
            result: list[int] = []

            async def run(
                fn: Callable[[], Awaitable[int]],
                scope: anyio.CancelScope,
                result: list[int] = result,
            ) -> None:
                value = await fn()
                if not result:
                    result.append(value)
                    scope.cancel()

            async with anyio.create_task_group() as tg:
                for fn in contenders:
                    tg.start_soon(run, fn, tg.cancel_scope)

    async def b_race() -> None:
        for _ in range(races):
            await anyway.race(*contenders)

    await run_case(
        "race: 1 fast + 2 slow (cancelled)",
        races,
        {"raw task group + cancel": b_raw_race, "anyway.race": b_race},
        reps,
    )

    async def b_raw_tg_all() -> None:
        for _ in range(groups):
            async with anyio.create_task_group() as tg:
                for _ in range(fans):
                    tg.start_soon(work)

    async def b_race_all() -> None:
        for _ in range(groups):
            await anyway.race(*fns)

    async def b_raw_race_all() -> None:
        for _ in range(groups):
            result: list[int] = []

            async def run(
                fn: Callable[[], Awaitable[int]],
                scope: anyio.CancelScope,
                result: list[int] = result,
            ) -> None:
                value = await fn()
                if not result:
                    result.append(value)
                    scope.cancel()

            async with anyio.create_task_group() as tg:
                for fn in fns:
                    tg.start_soon(run, fn, tg.cancel_scope)

    await run_case(
        f"race: {fans} calls that all succeed at once",
        groups * fans,
        {
            "raw task group (no cancel)": b_raw_tg_all,
            "raw task group + cancel": b_raw_race_all,
            "anyway.race": b_race_all,
        },
        reps,
    )

    async def b_hedge() -> None:
        for _ in range(races):
            await anyway.hedge(work, delay=1.0)

    async def b_plain_call() -> None:
        for _ in range(races):
            async with anyio.create_task_group() as tg:
                tg.start_soon(work)

    await run_case(
        "hedge: first copy succeeds",
        races,
        {"raw task group, 1 task": b_plain_call, "anyway.hedge": b_hedge},
        reps,
    )

    # map_all vs raw task group + CapacityLimiter vs aiometer.amap
    for n, k in ((2000, 10), (2000, 100), (2000, None)):

        async def b_raw_limited(n: int = n, k: int | None = k) -> None:
            results: list[Any] = [None] * n
            limiter = anyio.CapacityLimiter(k) if k else None

            async def one(i: int) -> None:
                if limiter is None:
                    results[i] = await work_item(i)
                else:
                    async with limiter:
                        results[i] = await work_item(i)

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)

        async def b_map_all(n: int = n, k: int | None = k) -> None:
            await anyway.map_all(work_item, range(n), max_at_once=k)

        async def b_map_unordered(n: int = n, k: int | None = k) -> None:
            await anyway.map_all(work_item, range(n), max_at_once=k, ordered=False)

        async def b_aiometer(n: int = n, k: int | None = k) -> None:
            async with aiometer.amap(work_item, range(n), max_at_once=k) as results:
                [r async for r in results]

        await run_case(
            f"map_all: {n} items, max_at_once={k}",
            n,
            {
                "raw task group + CapacityLimiter": b_raw_limited,
                "anyway.map_all": b_map_all,
                "anyway.map_all(ordered=False)": b_map_unordered,
                "aiometer.amap": b_aiometer,
            },
            reps,
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--backends", default="asyncio,trio")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        print(f"== {backend}")
        anyio.run(main, args.reps, backend=backend)


if __name__ == "__main__":
    cli()
