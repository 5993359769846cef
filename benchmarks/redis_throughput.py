"""What a shared rate limit costs: RedisRateLimiter against raw coredis.

    python benchmarks/redis_throughput.py                  # starts its own redis-server
    python benchmarks/redis_throughput.py --url redis://localhost:6379
    python benchmarks/redis_throughput.py --peers-python /path/to/venv/bin/python

Measures, with 50 concurrent tasks on one client (a limit that never makes
anyone wait, so every call is one round trip):

* ``raw EVALSHA``: ``client.evalsha`` of a trivial script (``return 1``) with
  the same key and arguments: the floor for one round trip;
* ``raw GCRA``: ``client.evalsha`` of anyway's GCRA script: the same round
  trip plus the script's own work on the server;
* ``RedisRateLimiter.acquire``: the above plus anyway's bookkeeping.

Rounds alternate between the three (so load from elsewhere hits all alike);
the medians of ``--repeat`` rounds are reported per event loop, and the
ratios are the medians of the per-round ratios. Then the
aggregate throughput of ``acquire`` from 1, 2 and 4 processes on one
limit. With ``--peers-python`` (an interpreter with ``limits[async-redis]``
and ``throttled-py[redis]``; they need other versions of coredis/redis than
anyway, so they live in their own environment) the peers' async Redis
limiters are measured the same way, on asyncio (neither runs on Trio).
A benchmark, never asserted on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASKS = 50
ROOT = Path(__file__).resolve().parent.parent


# -- a throw-away redis-server ---------------------------------------------------


def start_server() -> tuple[subprocess.Popen[bytes], str, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server not found: install it, or pass --url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="anyway-bench-redis-")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
         "--save", "", "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.01)
    return proc, f"redis://127.0.0.1:{port}", folder


# -- one process's measurements --------------------------------------------------


async def _rounds(url: str, ops: int, repeat: int) -> dict[str, list[float]]:
    import anyio
    import coredis

    from anyway._redis_scripts import GCRA
    from anyway.redis import RedisRateLimiter

    results: dict[str, list[float]] = {"raw EVALSHA": [], "raw GCRA": [], "acquire": []}
    async with coredis.Redis.from_url(url) as client:
        trivial = await client.script_load("return 1")
        await client.script_load(GCRA.text)
        limiter = RedisRateLimiter(client, "bench", 1_000_000, burst=1_000_000)
        args = [limiter._interval, limiter.burst, 1, 1]
        key = [limiter.key]
        per_task = ops // TASKS

        async def raw() -> None:
            for _ in range(per_task):
                await client.evalsha(trivial, key, args)

        async def raw_gcra() -> None:
            for _ in range(per_task):
                await client.evalsha(GCRA.sha, key, args)

        async def acquire() -> None:
            for _ in range(per_task):
                await limiter.acquire()

        cases = {"raw EVALSHA": raw, "raw GCRA": raw_gcra, "acquire": acquire}
        for fn in cases.values():  # warm up
            async with anyio.create_task_group() as tg:
                for _ in range(TASKS):
                    tg.start_soon(fn)
        for _ in range(repeat):
            for name, fn in cases.items():
                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for _ in range(TASKS):
                        tg.start_soon(fn)
                results[name].append(per_task * TASKS / (time.perf_counter() - start))
    return results


async def _hammer(url: str, seconds: float, start_at: float) -> int:
    import anyio
    import coredis

    from anyway.redis import RedisRateLimiter

    done = 0
    async with coredis.Redis.from_url(url) as client:
        limiter = RedisRateLimiter(client, "scaling", 1_000_000, burst=1_000_000)
        await limiter.acquire()  # connected
        await anyio.sleep(max(0.0, start_at - time.time()))

        async def worker() -> None:
            nonlocal done
            while True:
                await limiter.acquire()
                done += 1

        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for _ in range(TASKS):
                    tg.start_soon(worker)
    return done


def run(backend: str, fn: Any, *args: Any) -> Any:
    import anyio

    if backend == "uvloop":
        return anyio.run(fn, *args, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(fn, *args, backend=backend)


# -- the peers (run with --peers-python, in their own environment) -------------------

PEERS = r"""
import asyncio, json, sys, time
url, ops, repeat, tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
results = {}

async def measure(name, call):
    per_task = ops // tasks
    async def worker():
        for _ in range(per_task):
            await call()
    await asyncio.gather(*(worker() for _ in range(tasks)))  # warm up
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        rates.append(per_task * tasks / (time.perf_counter() - start))
    results[name] = rates

async def main():
    from limits import parse
    from limits.storage import storage_from_string
    from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
    storage = storage_from_string("async+" + url)
    item = parse("1000000/second")
    fixed = FixedWindowRateLimiter(storage)
    moving = MovingWindowRateLimiter(storage)
    await measure("limits FixedWindow hit", lambda: fixed.hit(item, "bench"))
    await measure("limits MovingWindow hit", lambda: moving.hit(item, "bench2"))

    from throttled.asyncio import RateLimiterType, Throttled, rate_limiter, store
    redis_store = store.RedisStore(server=url)
    gcra = Throttled(using=RateLimiterType.GCRA.value, quota=rate_limiter.per_sec(1_000_000, burst=1_000_000), store=redis_store)
    async def throttled_limit():
        await gcra.limit("bench3")
    await measure("throttled-py GCRA limit", throttled_limit)

asyncio.run(main())
print(json.dumps(results))
"""


# -- the report --------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Redis to use (default: start a throw-away redis-server)")
    parser.add_argument("--ops", type=int, default=10_000, help="calls per round (default 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per case (default 5)")
    parser.add_argument("--backends", default="asyncio,uvloop,trio")
    parser.add_argument("--processes", default="1,2,4", help="process counts for the scaling run")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of a scaling run")
    parser.add_argument("--peers-python", help="interpreter with limits and throttled-py")
    parser.add_argument("--hammer", nargs=3, help=argparse.SUPPRESS)  # worker: url seconds start_at
    options = parser.parse_args()

    if options.hammer:
        url, seconds, start_at = options.hammer
        print(run("asyncio", _hammer, url, float(seconds), float(start_at)))
        return

    server = None
    url = options.url
    if url is None:
        server, url, folder = start_server()
    try:
        report(options, url)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
            shutil.rmtree(folder, ignore_errors=True)


def report(options: argparse.Namespace, url: str) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {TASKS} tasks, one client")
    print(f"{'loop':8} {'case':28} {'median ops/s':>13} {'vs raw EVALSHA':>15} {'vs raw GCRA':>12}")
    for backend in options.backends.split(","):
        try:
            results = run(backend, _rounds, url, options.ops, options.repeat)
        except ImportError as exc:
            print(f"{backend:8} skipped: {exc}")
            continue
        # ratios are paired by round (the cases of one round ran back to back),
        # then the median is taken: load from elsewhere cancels out
        for name, rates in results.items():
            vs_raw = statistics.median(
                a / b for a, b in zip(rates, results["raw EVALSHA"], strict=True)
            )
            vs_gcra = statistics.median(
                a / b for a, b in zip(rates, results["raw GCRA"], strict=True)
            )
            median = statistics.median(rates)
            print(f"{backend:8} {name:28} {median:13,.0f} {vs_raw:15.2f} {vs_gcra:12.2f}")

    print(f"\nscaling: RedisRateLimiter.acquire, {TASKS} tasks per process, asyncio")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    base = None
    for n in [int(x) for x in options.processes.split(",")]:
        start_at = time.time() + 3.0 + 0.5 * n  # after every process has imported and connected
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--hammer", url, str(options.seconds), str(start_at)],
                stdout=subprocess.PIPE,
                env=env,
            )
            for _ in range(n)
        ]
        total = sum(int(proc.communicate()[0]) for proc in procs)
        rate = total / options.seconds
        base = base or rate
        print(f"{n} process{'es' if n > 1 else '  '} {rate:13,.0f} ops/s  {rate / base:5.2f}x")

    if options.peers_python:
        print(f"\npeers (asyncio, {TASKS} tasks; their own client libraries)")
        out = subprocess.run(
            [
                options.peers_python,
                "-c",
                PEERS,
                url,
                str(options.ops),
                str(options.repeat),
                str(TASKS),
            ],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        for name, rates in json.loads(out.splitlines()[-1]).items():
            print(f"{'asyncio':8} {name:28} {statistics.median(rates):13,.0f}")


if __name__ == "__main__":
    main()
