"""One worker process of the multi-process test (``test_redis_multiprocess.py``):
many tasks hammer one RedisRateLimiter for a while; prints the server times
(us) of the grants this process got, as JSON, on stdout.

    python redis_worker.py URL NAME RATE PER BURST SECONDS BACKEND TASKS
"""

from __future__ import annotations

import json
import sys

import anyio
import coredis

from anyway.redis import RedisRateLimiter
from redis_server import Recorder


async def main(
    url: str, name: str, rate: float, per: float, burst: int, seconds: float, tasks: int
) -> None:
    async with coredis.Redis.from_url(url) as client:
        recorder = Recorder(client)
        limiter = RedisRateLimiter(recorder, name, rate, per, burst=burst)

        async def hammer() -> None:
            while True:
                await limiter.acquire()

        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for _ in range(tasks):
                    tg.start_soon(hammer)
        print(json.dumps({"grants": recorder.grants, "calls": recorder.calls}))


if __name__ == "__main__":
    url, name, rate, per, burst, seconds, backend, tasks = sys.argv[1:]
    options = {"use_uvloop": True} if backend == "uvloop" else {}
    anyio.run(
        main,
        url,
        name,
        float(rate),
        float(per),
        int(burst),
        float(seconds),
        int(tasks),
        backend="asyncio" if backend == "uvloop" else backend,
        backend_options=options,
    )
