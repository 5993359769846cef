"""Family ``limits``: RateLimiter, KeyedRateLimiter and Bulkhead, speed and accuracy.

Speed: one uncontended ``async with limiter`` (a limit so high it never
waits) against ``anyio.CapacityLimiter``, and a rate-limited fan-out against
aiometer. Accuracy: a 100/s limit, 50 callers acquiring in a loop for 2 s;
the figure is the largest number of grants in any half-open 1-second window
``[t, t + 1)`` (the limit allows 100). On virtual time (asyncio, trio) the
run is instant and exact; on real time (asyncio, full mode only) the loop's
timer resolution shows.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from .._core import BatchFn, Case, Env, Target, Variant

TITLE = "rate limiters and bulkheads: speed and accuracy"

HUGE_RATE = 1_000_000_000.0  # 1 ns per unit: never waits at ~1 us per acquire
HUGE_BURST = 1_000_000
RATE = 100
PER = 1.0
CALLERS = 50
DURATION = 2.0
ITEMS = 100
MAX_AT_ONCE = 10
# Virtual time is exact but grant times are floats: k * 0.01 computed by
# repeated addition can land a few ulps below a window edge. Windows are
# [t, t + PER - EPSILON) with EPSILON = 1 ns, far below any real timer.
EPSILON = 1e-9


def _uncontended(limiter: Any) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n):
            async with limiter:
                pass

    return run


def _capacity(env: Env) -> BatchFn:
    return _uncontended(anyio.CapacityLimiter(1000))


class _CheckpointOnly:
    """The least a limiter owes on its uncontended path: a checkpoint."""

    async def __aenter__(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def _floor(env: Env) -> BatchFn:
    return _uncontended(_CheckpointOnly())


def _rate(env: Env) -> BatchFn:
    import anyway

    return _uncontended(anyway.RateLimiter(HUGE_RATE, burst=HUGE_BURST))


def _keyed(env: Env) -> BatchFn:
    import anyway

    limiter = anyway.KeyedRateLimiter(HUGE_RATE, burst=HUGE_BURST)

    async def run(n: int) -> None:
        limit = limiter.limit
        for _ in range(n):
            async with limit("key"):
                pass

    return run


def _bulkhead(env: Env) -> BatchFn:
    import anyway

    return _uncontended(anyway.Bulkhead(1000))


def _aiolimiter(env: Env) -> BatchFn:
    import aiolimiter

    env.asyncio_only("aiolimiter")
    return _uncontended(aiolimiter.AsyncLimiter(HUGE_RATE, 1.0))


# ------------------------------------------------------------------ rate-limited map


async def _work(item: int) -> int:
    await anyio.lowlevel.checkpoint()
    return item


_ITEMS = list(range(ITEMS))


def _map_raw(env: Env) -> BatchFn:
    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            limiter = anyio.CapacityLimiter(MAX_AT_ONCE)
            results: list[int | None] = [None] * ITEMS

            async def one(
                i: int,
                item: int,
                limiter: anyio.CapacityLimiter = limiter,
                results: list[int | None] = results,
            ) -> None:
                async with limiter:
                    results[i] = await _work(item)

            async with anyio.create_task_group() as tg:
                for i, item in enumerate(_ITEMS):
                    tg.start_soon(one, i, item)

    return run


def _map_anyway(env: Env) -> BatchFn:
    import anyway

    limiter = anyway.RateLimiter(HUGE_RATE, burst=HUGE_BURST)

    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            await anyway.map_all(_work, _ITEMS, max_at_once=MAX_AT_ONCE, limiter=limiter)

    return run


def _map_aiometer(env: Env) -> BatchFn:
    import aiometer

    async def run(n: int) -> None:
        for _ in range(n // ITEMS):
            async with aiometer.amap(
                _work, _ITEMS, max_at_once=MAX_AT_ONCE, max_per_second=HUGE_RATE
            ) as results:
                async for _ in results:
                    pass

    return run


# ------------------------------------------------------------------ accuracy


def worst_window(times: list[float], per: float = PER, epsilon: float = EPSILON) -> int:
    """The most grants in any half-open window ``[t, t + per)`` (a window starts at a grant)."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = bisect.bisect_left(ordered, start + per - epsilon, lo=i)
        best = max(best, end - i)
    return best


async def _callers(acquire: Callable[[], Any], env: Env) -> float:
    """CALLERS tasks acquire in a loop for DURATION; returns the worst window."""
    grants: list[float] = []
    start = anyio.current_time()

    async def caller() -> None:
        while True:
            async with acquire():
                grants.append(anyio.current_time() - start)

    with anyio.move_on_after(DURATION):
        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller)
    return _summarize(grants, env)


def _summarize(grants: list[float], env: Env) -> float:
    inside = [t for t in grants if t < DURATION]
    env.extra["grants"] = float(len(inside))
    env.extra["expected"] = RATE * DURATION
    env.extra["worst_without_epsilon"] = float(worst_window(inside, epsilon=0.0))
    return float(worst_window(inside))


async def _accuracy_anyway(env: Env) -> float:
    import anyway

    limiter = anyway.RateLimiter(RATE, PER)
    return await _callers(lambda: limiter, env)


async def _accuracy_aiolimiter(env: Env) -> float:
    import aiolimiter

    env.asyncio_only("aiolimiter")
    limiter = aiolimiter.AsyncLimiter(RATE, PER)
    return await _callers(lambda: limiter, env)


async def _accuracy_aiometer(env: Env) -> float:
    import aiometer

    grants: list[float] = []
    start = anyio.current_time()

    async def job(_: int) -> None:
        grants.append(anyio.current_time() - start)

    with anyio.move_on_after(DURATION):
        async with aiometer.amap(
            job, range(RATE * 100), max_at_once=CALLERS, max_per_second=RATE / PER
        ) as results:
            async for _ in results:
                pass
    return _summarize(grants, env)


def _accuracy_variants(*, virtual: bool) -> list[Variant]:
    # Virtual time is exact, so the limit must be reached exactly; on real
    # time late wake-ups lose grants, and the promise is only "never above".
    return [
        Variant(
            "anyway.RateLimiter",
            measure=_accuracy_anyway,
            target=Target("value", RATE, exact=virtual),
        ),
        Variant("aiolimiter", measure=_accuracy_aiolimiter, peer=True),
        Variant("aiometer", measure=_accuracy_aiometer, peer=True),
    ]


def cases() -> list[Case]:
    family = "limits"
    return [
        Case(
            family,
            "uncontended acquire",
            [
                Variant("anyio.CapacityLimiter", _capacity),
                Variant("floor: async with + anyio checkpoint", _floor),
                Variant("anyway.RateLimiter", _rate, target=Target("ratio", 0.5, trio_limit=0.8)),
                Variant("anyway.KeyedRateLimiter", _keyed),
                Variant("anyway.Bulkhead", _bulkhead),
                Variant("aiolimiter", _aiolimiter, peer=True),
            ],
            "async with limiter, never waiting (acquire + release)",
            unit="acquire",
        ),
        Case(
            family,
            "rate-limited map",
            [
                Variant("raw task group + CapacityLimiter", _map_raw),
                Variant("anyway.map_all + RateLimiter", _map_anyway),
                Variant("aiometer.amap(max_per_second)", _map_aiometer, peer=True),
            ],
            f"{ITEMS} items, {MAX_AT_ONCE} at once, a rate limit that never waits (per item)",
            unit="item",
            step=ITEMS,
            wall_clock=True,  # aiometer sleeps between starts on uvloop
        ),
        Case(
            family,
            "accuracy, virtual time",
            _accuracy_variants(virtual=True),
            f"{RATE}/s limit, {CALLERS} callers for {DURATION:g} s: most grants in a 1-s window",
            kind="metric",
            unit="grants",
            backends=("asyncio", "trio"),  # uvloop has no virtual time
            virtual=True,
            baseline_value=RATE,
            baseline_label=f"limit {RATE}",
        ),
        Case(
            family,
            "accuracy, real time",
            _accuracy_variants(virtual=False),
            f"the same on real time ({DURATION:g} s per limiter)",
            kind="metric",
            unit="grants",
            backends=("asyncio",),  # measured once: it takes real seconds
            baseline_value=RATE,
            baseline_label=f"limit {RATE}",
            modes=frozenset({"full"}),
        ),
    ]
