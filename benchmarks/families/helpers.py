"""Family ``helpers``: anyway's task-group and deadline helpers against raw AnyIO.

Each baseline is what a careful user would write by hand with AnyIO for the
same happy path (a task group storing results, a task group cancelled by the
first result, a task group gated by a ``CapacityLimiter``, ``fail_after``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel

from .._core import BatchFn, Case, Env, Target, Variant

TITLE = "anyway's helpers against raw AnyIO"

FANOUT = 10  # callables per settle/race call
ITEMS = 100  # items per map_all call
MAX_AT_ONCE = 10


async def _value() -> int:
    return 1


async def _value_after_checkpoint() -> int:
    await anyio.lowlevel.checkpoint()
    return 1


async def _never() -> int:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def _work(item: int) -> int:
    await anyio.lowlevel.checkpoint()
    return item


def _feature(name: str) -> Any:
    import anyway

    return getattr(anyway, name)


# ------------------------------------------------------------------ settle


async def _raw_settle(fns: list[Callable[[], Awaitable[int]]]) -> list[int | None]:
    results: list[int | None] = [None] * len(fns)

    async def one(i: int, fn: Callable[[], Awaitable[int]]) -> None:
        results[i] = await fn()

    async with anyio.create_task_group() as tg:
        for i, fn in enumerate(fns):
            tg.start_soon(one, i, fn)
    return results


def _settle_raw(env: Env) -> BatchFn:
    fns: list[Callable[[], Awaitable[int]]] = [_value] * FANOUT

    async def run(n: int) -> None:
        for _ in range(n):
            await _raw_settle(fns)

    return run


def _settle_anyway(env: Env) -> BatchFn:
    settle = _feature("settle")
    fns = [_value] * FANOUT

    async def run(n: int) -> None:
        for _ in range(n):
            await settle(*fns)

    return run


# ------------------------------------------------------------------ race


async def _raw_race(fns: list[Callable[[], Awaitable[int]]]) -> int | None:
    winner: int | None = None

    async with anyio.create_task_group() as tg:

        async def one(fn: Callable[[], Awaitable[int]]) -> None:
            nonlocal winner
            value = await fn()
            if winner is None:
                winner = value
                tg.cancel_scope.cancel()

        for fn in fns:
            tg.start_soon(one, fn)
    return winner


_RACERS: list[Callable[[], Awaitable[int]]] = [_value_after_checkpoint, *[_never] * (FANOUT - 1)]


def _race_raw(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            await _raw_race(_RACERS)

    return run


def _race_anyway(env: Env) -> BatchFn:
    race = _feature("race")

    async def run(n: int) -> None:
        for _ in range(n):
            await race(*_RACERS)

    return run


# ------------------------------------------------------------------ hedge


async def _raw_hedge(fn: Callable[[], Awaitable[int]], delay: float) -> int | None:
    """The first copy plus a timer that would start the backup; the winner cancels both."""
    winner: int | None = None
    async with anyio.create_task_group() as tg:

        async def copy() -> None:
            nonlocal winner
            winner = await fn()
            tg.cancel_scope.cancel()

        async def backup_timer() -> None:
            await anyio.sleep(delay)
            tg.start_soon(copy)

        tg.start_soon(copy)
        tg.start_soon(backup_timer)
    return winner


def _hedge_raw(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            await _raw_hedge(_value_after_checkpoint, 10.0)

    return run


def _hedge_bare(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            await _value_after_checkpoint()

    return run


def _hedge_anyway(env: Env) -> BatchFn:
    hedge = _feature("hedge")

    async def run(n: int) -> None:
        for _ in range(n):
            await hedge(_value_after_checkpoint, delay=10.0)

    return run


# ------------------------------------------------------------------ map_all


async def _raw_map(items: list[int]) -> list[int | None]:
    results: list[int | None] = [None] * len(items)
    limiter = anyio.CapacityLimiter(MAX_AT_ONCE)

    async def one(i: int, item: int) -> None:
        async with limiter:
            results[i] = await _work(item)

    async with anyio.create_task_group() as tg:
        for i, item in enumerate(items):
            tg.start_soon(one, i, item)
    return results


_ITEMS = list(range(ITEMS))


def _map_raw(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            await _raw_map(_ITEMS)

    return run


def _map_anyway(env: Env) -> BatchFn:
    map_all = _feature("map_all")

    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            await map_all(_work, _ITEMS, max_at_once=MAX_AT_ONCE)

    return run


def _map_aiometer(env: Env) -> BatchFn:
    import aiometer

    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            async with aiometer.amap(_work, _ITEMS, max_at_once=MAX_AT_ONCE) as results:
                async for _ in results:
                    pass

    return run


def _map_aiometer_run_all(env: Env) -> BatchFn:
    import aiometer

    jobs = [partial(_work, item) for item in _ITEMS]

    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            await aiometer.run_all(jobs, max_at_once=MAX_AT_ONCE)

    return run


# ------------------------------------------------------------------ deadlines


def _scope_run(factory: Callable[[], Any]) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            with factory():
                pass

    return run


def _fail_after(env: Env) -> BatchFn:
    return _scope_run(lambda: anyio.fail_after(60))


def _deadline(env: Env) -> BatchFn:
    deadline = _feature("deadline")
    return _scope_run(lambda: deadline(60))


def _budget(env: Env) -> BatchFn:
    budget = _feature("Budget")(3600)

    async def run(n: int) -> None:
        for _ in range(n):
            with budget:
                pass

    return run


def _remaining_raw(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        with anyio.fail_after(60):  # noqa: ASYNC100 - gives remaining() a deadline
            for _ in range(n):
                max(0.0, anyio.current_effective_deadline() - anyio.current_time())

    return run


def _remaining_anyway(env: Env) -> BatchFn:
    remaining = _feature("remaining")

    async def run(n: int) -> None:
        with anyio.fail_after(60):  # noqa: ASYNC100 - gives remaining() a deadline
            for _ in range(n):
                remaining()

    return run


# ------------------------------------------------------------------ shield, fallback


def _shield_raw(env: Env) -> BatchFn:
    return _scope_run(lambda: anyio.move_on_after(60, shield=True))


def _shield_anyway(env: Env) -> BatchFn:
    shield = _feature("shield")
    return _scope_run(lambda: shield(60))


def _fallback_raw(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            result = None
            with anyio.move_on_after(60):
                result = await _value()
            assert result == 1

    return run


def _fallback_anyway(env: Env) -> BatchFn:
    fallback = _feature("fallback")

    async def run(n: int) -> None:
        for _ in range(n):
            await fallback(_value, timeout=60, default=None)

    return run


def _map_unordered(env: Env) -> BatchFn:
    map_all = _feature("map_all")

    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            await map_all(_work, _ITEMS, max_at_once=MAX_AT_ONCE, ordered=False)

    return run


def cases() -> list[Case]:
    family = "helpers"
    return [
        Case(
            family,
            "settle",
            [
                Variant("raw task group", _settle_raw),
                Variant("anyway.settle", _settle_anyway, target=Target("ratio", 1.2)),
            ],
            f"collect {FANOUT} immediate results (per call)",
            unit=f"call of {FANOUT}",
        ),
        Case(
            family,
            "race",
            [
                Variant("raw task group + cancel", _race_raw),
                Variant("anyway.race", _race_anyway, target=Target("ratio", 1.2)),
            ],
            f"first of {FANOUT} wins, {FANOUT - 1} losers cancelled (per call)",
            unit=f"call of {FANOUT}",
        ),
        Case(
            family,
            "hedge",
            [
                Variant("raw task group + timer", _hedge_raw),
                Variant("bare await", _hedge_bare),
                Variant("anyway.hedge", _hedge_anyway),
            ],
            "first copy succeeds before delay=10 s (no backup started)",
            unit="call",
        ),
        Case(
            family,
            "map_all",
            [
                Variant("raw task group + CapacityLimiter", _map_raw),
                Variant("anyway.map_all", _map_anyway, target=Target("ratio", 1.15)),
                Variant("anyway.map_all(ordered=False)", _map_unordered),
                Variant("aiometer.amap", _map_aiometer, peer=True),
                Variant("aiometer.run_all", _map_aiometer_run_all, peer=True),
            ],
            f"{ITEMS} items, {MAX_AT_ONCE} at once, each one checkpoint (per item)",
            unit="item",
            step=ITEMS,
        ),
        Case(
            family,
            "deadline scope",
            [
                Variant("anyio.fail_after(60)", _fail_after),
                Variant("anyway.deadline(60)", _deadline),
                Variant("with Budget(3600)", _budget),
            ],
            "enter and exit a deadline that does not expire",
            unit="scope",
        ),
        Case(
            family,
            "shield scope",
            [
                Variant("anyio.move_on_after(60, shield=True)", _shield_raw),
                Variant("anyway.shield(60)", _shield_anyway),
            ],
            "enter and exit a shielded, bounded scope",
            unit="scope",
        ),
        Case(
            family,
            "fallback",
            [
                Variant("move_on_after + await", _fallback_raw),
                Variant("anyway.fallback", _fallback_anyway),
            ],
            "the call returns in time (no fallback used)",
            unit="call",
        ),
        Case(
            family,
            "remaining",
            [
                Variant("effective deadline - current_time", _remaining_raw),
                Variant("anyway.remaining()", _remaining_anyway),
            ],
            "seconds left inside a 60 s deadline",
            unit="call",
        ),
    ]
