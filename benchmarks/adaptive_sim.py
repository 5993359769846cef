"""Simulations of AdaptiveLimiter and Hedger, in virtual time (deterministic, seeded).

    python benchmarks/adaptive_sim.py [--plot-dir docs/_static] [--backend asyncio|trio]

1. limiter: an overloadable server (C requests served at once at the base
   latency, the rest queue, FIFO) and 200 closed-loop clients. The
   AdaptiveLimiter is compared with a fixed limit of 200; the capacity
   halves at 30 s and comes back at 60 s.
2. hedger: a heavy-tailed service (90 % of attempts take ~10 ms, 10 % take
   ~1 s); no hedging, a Hedger, and hedge() with a fixed 12 ms delay. At
   30 s the whole service slows down (every attempt ~1 s).

Prints a table per scenario and, with matplotlib installed and --plot-dir,
writes adaptive_limit.png and adaptive_hedger.png. Nothing here is asserted:
the numbers go in docs/adaptive.md.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import anyway
from anyway.testing import virtual_time_options

SEED = 20261203
CLIENTS = 200
CAPACITY = 50
BASE = 0.05  # seconds at the server when it is not overloaded
DURATION = 90.0
HALVED = (30.0, 60.0)  # capacity is CAPACITY // 2 during this interval


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- 1. the adaptive limit against an overloadable server --------------------------


class Server:
    """C requests in service at once at about BASE seconds each; the rest queue (FIFO)."""

    def __init__(self, rng: random.Random) -> None:
        self.slots = anyio.CapacityLimiter(CAPACITY)
        self.rng = rng
        self.inside = 0

    async def call(self) -> None:
        self.inside += 1
        try:
            async with self.slots:
                await anyio.sleep(BASE * self.rng.uniform(0.9, 1.1))
        finally:
            self.inside -= 1


async def limiter_run(adaptive: bool) -> dict[str, Any]:
    rng = random.Random(SEED)
    server = Server(rng)
    limiter: Any = (
        anyway.AdaptiveLimiter(initial=10, max_limit=1000)
        if adaptive
        else anyio.CapacityLimiter(CLIENTS)
    )
    t0 = anyio.current_time()
    # per completed call: (time done, latency at the server incl. its queue)
    done: list[tuple[float, float]] = []
    series: list[tuple[float, float, int]] = []  # (t, limit, at the server)

    async def client() -> None:
        while anyio.current_time() - t0 < DURATION:
            async with limiter:
                start = anyio.current_time()
                await server.call()
                now = anyio.current_time()
            done.append((now - t0, now - start))

    async def operator() -> None:
        await anyio.sleep(HALVED[0])
        server.slots.total_tokens = CAPACITY // 2
        await anyio.sleep(HALVED[1] - HALVED[0])
        server.slots.total_tokens = CAPACITY

    async def sampler() -> None:
        while (t := anyio.current_time() - t0) < DURATION:
            limit = limiter.limit if adaptive else CLIENTS
            series.append((t, limit, server.inside))
            await anyio.sleep(0.25)

    async with anyio.create_task_group() as tg:
        tg.start_soon(operator)
        tg.start_soon(sampler)
        for _ in range(CLIENTS):
            tg.start_soon(client)
    return {"done": done, "series": series}


def limiter_table(name: str, run: dict[str, Any]) -> list[str]:
    rows = []
    phases = [
        ("full capacity (10-30 s)", 10.0, HALVED[0], CAPACITY),
        ("halved (35-60 s)", HALVED[0] + 5, HALVED[1], CAPACITY // 2),
        ("restored (70-90 s)", HALVED[1] + 10, DURATION, CAPACITY),
    ]
    for label, lo, hi, capacity in phases:
        lat = [lat for t, lat in run["done"] if lo <= t < hi]
        limits = [limit for t, limit, _ in run["series"] if lo <= t < hi]
        goodput = len(lat) / (hi - lo)
        rows.append(
            f"| {name} | {label} | {sum(limits) / len(limits):.0f} | {capacity}"
            f" | {pct(lat, 0.5) / BASE:.1f}x | {pct(lat, 0.99) / BASE:.1f}x"
            f" | {goodput:.0f} ({goodput / (capacity / BASE):.0%}) |"
        )
    return rows


def follow_times(run: dict[str, Any]) -> str:
    """Seconds after each capacity change until the limit is within 25 % of the capacity."""
    out = []
    for at, capacity in ((HALVED[0], CAPACITY // 2), (HALVED[1], CAPACITY)):
        for t, limit, _ in run["series"]:
            if t >= at and abs(limit - capacity) <= 0.25 * capacity:
                out.append(f"{t - at:.2f} s to reach {capacity} +-25 %")
                break
    return "; ".join(out)


# --- 2. the Hedger against a heavy-tailed service ------------------------------------

RATE = 100.0  # calls per second
HEDGE_DURATION = 60.0
SLOWDOWN = 30.0  # from here on every attempt is slow
HEDGERS: dict[str, dict[str, Any]] = {
    "Hedger() (defaults)": {},
    "Hedger(quantile=0.95, max_extra=0.25, attempts=3)": {
        "quantile": 0.95,
        "max_extra": 0.25,
        "attempts": 3,
    },
}


class TailService:
    def __init__(self, rng: random.Random, t0: float) -> None:
        self.rng = rng
        self.t0 = t0
        self.attempts = 0
        self.attempt_times: list[float] = []

    async def call(self) -> str:
        now = anyio.current_time() - self.t0
        self.attempts += 1
        self.attempt_times.append(now)
        slow = now >= SLOWDOWN or self.rng.random() < 0.1
        base = 1.0 if slow else 0.010
        await anyio.sleep(base * self.rng.uniform(0.9, 1.1))
        return "ok"


async def hedger_run(mode: str) -> dict[str, Any]:
    rng = random.Random(SEED)
    t0 = anyio.current_time()
    service = TailService(rng, t0)
    hedger = anyway.Hedger(**HEDGERS.get(mode, {}))
    call: Callable[[], Awaitable[str]]
    if mode == "none":
        call = service.call
    elif mode in HEDGERS:

        async def call() -> str:
            return await hedger(service.call)

    else:

        async def call() -> str:
            return await anyway.hedge(service.call, delay=0.012, attempts=3)

    results: list[tuple[float, float]] = []  # (started, latency)
    delays: list[tuple[float, float]] = []

    async def one(started: float) -> None:
        await call()
        results.append((started, anyio.current_time() - t0 - started))

    async with anyio.create_task_group() as tg:
        n = 0
        while (t := n / RATE) < HEDGE_DURATION:
            await anyio.sleep_until(t0 + t)
            if mode in HEDGERS and n % 10 == 0:
                delays.append((t, hedger.statistics().delay or math.nan))
            tg.start_soon(one, t)
            n += 1
    return {"results": results, "attempts": service.attempt_times, "delays": delays}


def hedger_table(name: str, run: dict[str, Any]) -> list[str]:
    rows = []
    for label, lo, hi in (
        ("heavy tail (5-30 s)", 5.0, SLOWDOWN),
        ("all slow (35-60 s)", 35.0, 60.0),
    ):
        lat = [lat for s, lat in run["results"] if lo <= s < hi]
        attempts = sum(1 for t in run["attempts"] if lo <= t < hi)
        calls = sum(1 for s, _ in run["results"] if lo <= s < hi)
        rows.append(
            f"| {name} | {label} | {pct(lat, 0.5) * 1000:.0f} ms | {pct(lat, 0.99) * 1000:.0f} ms"
            f" | {attempts / calls - 1:+.0%} |"
        )
    return rows


# --- plots and main -----------------------------------------------------------------------


def plot(
    plot_dir: Path, fixed: dict[str, Any], adaptive: dict[str, Any], hedges: dict[str, Any]
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plots)")
        return
    plot_dir.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    t = [s[0] for s in adaptive["series"]]
    top.plot(t, [s[1] for s in adaptive["series"]], label="AdaptiveLimiter limit")
    cap = [CAPACITY // 2 if HALVED[0] <= x < HALVED[1] else CAPACITY for x in t]
    top.plot(t, cap, "k--", label="server capacity C")
    top.set_ylabel("concurrency")
    top.legend(loc="upper right")
    for name, run in (("fixed limit 200", fixed), ("AdaptiveLimiter", adaptive)):
        buckets: dict[int, list[float]] = {}
        for when, lat in run["done"]:
            buckets.setdefault(int(when), []).append(lat)
        xs = sorted(buckets)
        bottom.plot(xs, [pct(buckets[x], 0.99) / BASE for x in xs], label=f"{name}: p99")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency at the server / base")
    bottom.set_xlabel("time (s, virtual)")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(plot_dir / "adaptive_limit.png", dpi=100)

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, run in hedges.items():
        buckets = {}  # 5 s each: 500 calls, so that a p99 is 5 of them
        for s, lat in run["results"]:
            buckets.setdefault(int(s) // 5 * 5, []).append(lat)
        xs = sorted(buckets)
        top.plot(xs, [pct(buckets[x], 0.99) * 1000 for x in xs], "o-", label=name)
        per_s: dict[int, int] = {}
        for a in run["attempts"]:
            per_s[int(a) // 5 * 5] = per_s.get(int(a) // 5 * 5, 0) + 1
        bottom.plot(xs, [per_s.get(x, 0) / len(buckets[x]) for x in xs], "o-", label=name)
    top.set_yscale("log")
    top.set_ylabel("call latency p99 (ms), per 5 s")
    top.legend(loc="center left", fontsize="small")
    bottom.set_ylabel("attempts per call, per 5 s")
    bottom.set_xlabel("time (s, virtual); every attempt slow from 30 s")
    bottom.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(plot_dir / "adaptive_hedger.png", dpi=100)
    print(f"plots written to {plot_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--plot-dir", type=Path, default=None)
    args = parser.parse_args()
    anyway.remove_hook(anyway.log_event)  # no log line per limit change

    def run(fn: Callable[..., Awaitable[dict[str, Any]]], *a: Any) -> dict[str, Any]:
        return anyio.run(
            fn, *a, backend=args.backend, backend_options=virtual_time_options(args.backend)
        )

    fixed = run(limiter_run, False)
    adaptive = run(limiter_run, True)
    print(
        f"## limiter: C={CAPACITY} (halved {HALVED[0]:g}-{HALVED[1]:g} s), base {BASE * 1000:g} ms, {CLIENTS} clients"
    )
    print(
        "| limiter | phase | mean limit | C | p50 at server | p99 at server | goodput/s (of capacity) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in limiter_table("fixed 200", fixed) + limiter_table("adaptive", adaptive):
        print(row)
    print(f"adaptive limit follows: {follow_times(adaptive)}")

    hedges = {
        name: run(hedger_run, name) for name in ("none", *HEDGERS, "hedge(delay=12ms, attempts=3)")
    }
    print(
        f"\n## hedger: {RATE:g} calls/s, 90 % ~10 ms / 10 % ~1 s; every attempt ~1 s from {SLOWDOWN:g} s"
    )
    print("| calls | phase | p50 | p99 | extra attempts |")
    print("|---|---|---|---|---|")
    for name, result in hedges.items():
        for row in hedger_table(name, result):
            print(row)
    if args.plot_dir is not None:
        plot(args.plot_dir, fixed, adaptive, hedges)


if __name__ == "__main__":
    main()
