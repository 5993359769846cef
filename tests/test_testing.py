"""anyway.testing: virtual time on asyncio and Trio, worker threads under it,
backends(). The pytest side is in test_testing_plugin.py."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.lowlevel
import pytest

from anyway.testing import (
    Clock,
    VirtualTimeEventLoop,
    accelerated_uvloop_factory,
    backend_id,
    backends,
    is_virtual,
    virtual_time_options,
)

pytestmark = pytest.mark.anyio

HAVE_TRIO = importlib.util.find_spec("trio") is not None
# Trio is optional: the tests_without_trio session runs this file without it.
VIRTUAL = ["asyncio", "trio"] if HAVE_TRIO else ["asyncio"]


# --- virtual time through anyio.run -------------------------------------------


@pytest.mark.parametrize("backend", VIRTUAL)
def test_one_hour_sleep_is_instant(backend: str) -> None:
    async def main() -> tuple[float, float]:
        start = anyio.current_time()
        await anyio.sleep(3600)
        return start, anyio.current_time()

    wall = time.perf_counter()
    start, end = anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    wall = time.perf_counter() - wall
    assert start == 0.0
    assert end == 3600.0
    assert wall < 0.5  # measured: ~1 ms; loose so a loaded machine cannot flake it


@pytest.mark.parametrize("backend", VIRTUAL)
def test_timeouts_fire_on_virtual_time(backend: str) -> None:
    async def main() -> tuple[bool, float]:
        with anyio.move_on_after(2.5) as scope:
            await anyio.sleep_forever()
        return scope.cancelled_caught, anyio.current_time()

    opts = virtual_time_options(backend)
    assert anyio.run(main, backend=backend, backend_options=opts) == (True, 2.5)


@pytest.mark.parametrize("backend", VIRTUAL)
def test_concurrent_sleepers_wake_in_order(backend: str) -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await anyio.sleep(seconds)
        woke.append((name, anyio.current_time()))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "c", 3.0)
            tg.start_soon(sleeper, "a", 1.0)
            tg.start_soon(sleeper, "b", 2.0)

    anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]


@pytest.mark.parametrize("backend", VIRTUAL)
def test_time_never_jumps_over_a_worker_thread(backend: str) -> None:
    """The case trio's MockClock autojump and looptime get wrong."""

    async def main() -> tuple[bool, float]:
        with anyio.move_on_after(5) as scope:
            await anyio.to_thread.run_sync(time.sleep, 0.05)
        return scope.cancelled_caught, anyio.current_time()

    cancelled, now = anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    assert not cancelled
    assert now < 5  # the clock stood still while the thread slept


@pytest.mark.parametrize("backend", VIRTUAL)
def test_other_sleepers_wait_for_the_thread(backend: str) -> None:
    """A task sleeping 1 s beside a thread call does not wake first."""
    events: list[str] = []

    async def sleeper() -> None:
        await anyio.sleep(1)
        events.append("sleeper")

    async def worker() -> None:
        await anyio.to_thread.run_sync(time.sleep, 0.02)
        events.append("thread")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            tg.start_soon(worker)

    anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    assert events == ["thread", "sleeper"]


@pytest.mark.parametrize("backend", VIRTUAL)
def test_thread_with_custom_limiter_is_tracked(backend: str) -> None:
    async def main() -> bool:
        limiter = anyio.CapacityLimiter(1)
        with anyio.move_on_after(1) as scope:
            await anyio.to_thread.run_sync(time.sleep, 0.02, limiter=limiter)
        return scope.cancelled_caught

    assert not anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))


@pytest.mark.parametrize("backend", VIRTUAL)
def test_abandoned_thread_does_not_freeze_time(backend: str) -> None:
    release = threading.Event()

    async def main() -> float:
        with anyio.move_on_after(1):
            await anyio.to_thread.run_sync(
                lambda: anyio.from_thread.run_sync(anyio.current_time) and release.wait(),
                abandon_on_cancel=True,
            )
        # the thread is still blocked, but the scope gave up on it
        await anyio.sleep(10)
        return anyio.current_time()

    try:
        end = anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    finally:
        release.set()
    assert end >= 10


@contextmanager
def hang_guard(seconds: float = 5.0) -> Iterator[None]:
    """Fails the test instead of hanging when the loop's clock is stuck.

    A stuck virtual clock fires no timeout: a real-time thread cancels the block.
    """
    token = anyio.lowlevel.current_token()
    with anyio.CancelScope() as scope:
        timer = threading.Timer(
            seconds, anyio.from_thread.run_sync, (scope.cancel,), {"token": token}
        )
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
    assert not scope.cancelled_caught, f"hung for {seconds} real seconds"


@pytest.mark.foreign_clocks
async def test_a_thread_waiting_on_the_loop_does_not_hold_the_clock(clock: Clock) -> None:
    """A worker thread that calls back into the loop (from_thread.run) and
    waits there is not busy: the loop's sleep must be able to end."""
    start = clock.now()
    with hang_guard():
        await anyio.to_thread.run_sync(anyio.from_thread.run, anyio.sleep, 1)
    assert clock.now() - start == clock.approx(1)


@pytest.mark.parametrize("backend", VIRTUAL)
def test_the_clock_is_held_again_when_the_loop_answers_the_thread(backend: str) -> None:
    """Between two calls back into the loop the thread works on real time
    again, and a concurrent busy thread holds the clock meanwhile."""
    events: list[tuple[str, float]] = []

    def waits_then_works() -> None:
        anyio.from_thread.run(anyio.sleep, 1)
        time.sleep(0.03)  # busy: a sleeper due at 1.5 must not wake yet
        events.append(("worked", anyio.from_thread.run_sync(anyio.current_time)))
        anyio.from_thread.run(anyio.sleep, 1)

    async def sleeper() -> None:
        await anyio.sleep(1.5)
        events.append(("sleeper", anyio.current_time()))

    async def main() -> float:
        with hang_guard():
            async with anyio.create_task_group() as tg:
                tg.start_soon(sleeper)
                await anyio.to_thread.run_sync(waits_then_works)
        return anyio.current_time()

    end = anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    assert events == [("worked", 1.0), ("sleeper", 1.5)]
    assert end == 2.0


@pytest.mark.parametrize("backend", VIRTUAL)
def test_an_abandoned_thread_waiting_on_the_loop_leaves_the_count_right(backend: str) -> None:
    async def main() -> float:
        with hang_guard():
            with anyio.move_on_after(1):
                await anyio.to_thread.run_sync(
                    anyio.from_thread.run, anyio.sleep, 3, abandon_on_cancel=True
                )
            await anyio.sleep(10)  # the clock is free again, not held twice nor never
            with anyio.move_on_after(5) as scope:
                await anyio.to_thread.run_sync(time.sleep, 0.02)  # and held again
        assert not scope.cancelled_caught
        return anyio.current_time()

    end = anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    assert end == 11.0


def test_virtual_loop_used_directly_holds_the_clock_for_threads() -> None:
    """VirtualTimeEventLoop as a bare loop_factory tracks worker threads, even
    in a process where nothing else put anyio on virtual time first."""
    code = """if True:
        import time, anyio
        from anyway.testing import VirtualTimeEventLoop

        async def main():
            with anyio.move_on_after(5) as scope:
                await anyio.to_thread.run_sync(time.sleep, 0.05)
            await anyio.to_thread.run_sync(anyio.from_thread.run, anyio.sleep, 1)
            return scope.cancelled_caught, anyio.current_time()

        opts = {"loop_factory": VirtualTimeEventLoop}
        print(anyio.run(main, backend="asyncio", backend_options=opts))
    """
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=30
    )
    assert out.stdout.strip() == "(False, 1.0)"


def test_run_in_executor_is_tracked() -> None:
    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        with anyio.move_on_after(1) as scope:
            await loop.run_in_executor(None, time.sleep, 0.02)
        return scope.cancelled_caught, loop.time()

    loop = VirtualTimeEventLoop()
    try:
        cancelled, now = loop.run_until_complete(main())
    finally:
        loop.close()
    assert not cancelled
    assert now < 1


def test_virtual_loop_prefers_real_io() -> None:
    """Data already waiting on a socket is read before time jumps."""

    async def main() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(sock=left)
        other.sendall(b"ping")
        async with asyncio.timeout(10):
            data = await reader.readexactly(4)
        writer.close()
        return data, asyncio.get_running_loop().time()

    import socket

    left, other = socket.socketpair()
    loop = VirtualTimeEventLoop()
    try:
        data, now = loop.run_until_complete(main())
    finally:
        loop.close()
        other.close()
    assert data == b"ping"
    assert now == 0.0


def test_virtual_loop_repr_and_validation() -> None:
    loop = VirtualTimeEventLoop()
    try:
        assert "time=0.0" in repr(loop)
        assert "busy_threads=0" in repr(loop)
    finally:
        loop.close()
    with pytest.raises(ValueError, match="autojump_threshold"):
        VirtualTimeEventLoop(autojump_threshold=-1)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_virtual_time_options_rejects_bad_threshold(bad: float) -> None:
    with pytest.raises(ValueError, match="autojump_threshold"):
        virtual_time_options("asyncio", autojump_threshold=bad)


def test_virtual_time_options_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="autojump_threshold"):
        virtual_time_options("trio", autojump_threshold="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uvloop"):
        virtual_time_options("uvloop")


@pytest.mark.parametrize("backend", VIRTUAL)
def test_autojump_threshold_waits_for_real_idleness(backend: str) -> None:
    async def main() -> float:
        await anyio.sleep(1)
        return anyio.current_time()

    opts = virtual_time_options(backend, autojump_threshold=0.01)
    wall = time.perf_counter()
    assert anyio.run(main, backend=backend, backend_options=opts) == 1.0
    assert time.perf_counter() - wall >= 0.01


# --- backends() and friends --------------------------------------------------


def test_backends_lists_every_loop() -> None:
    trio = ["trio"] if HAVE_TRIO else []
    assert [backend_id(b) for b in backends()] == ["asyncio", "uvloop", *trio]
    assert [backend_id(b) for b in backends(uvloop=False)] == ["asyncio", *trio]
    assert not any(is_virtual(b) for b in backends())
    virtual = backends(virtual_time=True)
    assert [is_virtual(b) for b in virtual] == [True, False] + [True] * len(trio)


def test_importing_anyway_does_not_import_trio_or_pytest() -> None:
    code = (
        "import sys, anyway, anyway.testing;"
        " imported = {'trio', 'pytest', 'looptime'} & set(sys.modules);"
        " assert not imported, imported"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backend_id_of_plain_values() -> None:
    assert backend_id("trio") == "trio"
    assert backend_id(("asyncio", {"use_uvloop": True})) == "uvloop"
    assert not is_virtual("asyncio")
    with pytest.raises(TypeError, match="anyio_backend"):
        backend_id(42)


@pytest.mark.parametrize("bad", [0.5, math.inf, math.nan])
def test_accelerated_uvloop_rejects_bad_speedup(bad: float) -> None:
    with pytest.raises(ValueError, match="speedup"):
        accelerated_uvloop_factory(bad)


def test_accelerated_uvloop_runs_faster() -> None:
    factory = accelerated_uvloop_factory(100)

    async def main() -> float:
        start = anyio.current_time()
        await anyio.sleep(2)
        with anyio.move_on_after(1):
            await anyio.sleep_forever()
        return anyio.current_time() - start

    wall = time.perf_counter()
    elapsed = anyio.run(main, backend="asyncio", backend_options={"loop_factory": factory})
    wall = time.perf_counter() - wall
    assert elapsed >= 3.0
    assert wall < 3.0 / 2  # measured ~30 ms; only proves time is scaled


def test_accelerated_uvloop_timers_fire_in_order_and_never_early() -> None:
    """libuv rounds timers to its own milliseconds: two deadlines due a few
    microseconds apart used to fire in the wrong order now and then (an outer
    deadline then lost a tie to an inner one)."""
    factory = accelerated_uvloop_factory(20)

    async def main() -> list[tuple[int, float, float]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[int, float, float]] = []
        done = anyio.Event()
        for i in range(400):
            due = loop.time() + 0.2
            loop.call_at(due, lambda i=i, due=due: fired.append((i, due, loop.time())))
            sum(range(i * 20))  # busy work moves libuv's clock between the timers
        loop.call_at(loop.time() + 0.3, done.set)
        await done.wait()
        return fired

    fired = anyio.run(main, backend="asyncio", backend_options={"loop_factory": factory})
    assert [i for i, _, _ in fired] == list(range(400))
    assert all(at >= due for _, due, at in fired)


def test_accelerated_uvloop_a_timer_registered_late_keeps_its_place() -> None:
    """A timer registered after its due time (the loop was held up) must still
    fire before a timer due after it. uvloop turns a zero delay into
    ``call_soon``, whose callback then waits for the next round of ready
    callbacks, while the later timer fires in this round's timer phase: a
    sleeper woken through a future (two hops) then arrived after a later one
    (the rate limiter's FIFO test saw 'big' overtake 'b' under load)."""
    factory = accelerated_uvloop_factory(20)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        done = anyio.Event()
        start = loop.time()  # libuv's cached millisecond, as a sleep reads it

        def wake(name: str) -> None:  # a timer that wakes a task: one more hop
            loop.call_soon(fired.append, name)

        time.sleep(0.003)  # noqa: ASYNC251 - held up: "early" is past due when registered
        loop.call_at(start + 0.02, wake, "early")  # due 1 ms (real) after start
        loop.call_at(start + 0.1, wake, "late")  # due 5 ms after start
        time.sleep(0.004)  # noqa: ASYNC251 - "late" is due too by the end of this round
        loop.call_at(loop.time() + 0.5, done.set)
        await done.wait()
        return fired

    fired = anyio.run(main, backend="asyncio", backend_options={"loop_factory": factory})
    assert fired == ["early", "late"]


@pytest.mark.parametrize("backend", VIRTUAL)
def test_virtual_time_far_from_zero_keeps_moving(backend: str) -> None:
    """At 1e9 s, adding asyncio's 1 ns clock resolution no longer changes a
    float; timers must still fire (it used to spin forever)."""

    async def main() -> int:
        await anyio.sleep(1e9)  # noqa: ASYNC116 - the point of the test
        ticks = 0
        with anyio.move_on_after(1):
            while True:
                await anyio.sleep(0.01)
                ticks += 1
        return ticks

    ticks = anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    assert 50 <= ticks <= 101


@pytest.mark.skipif(not HAVE_TRIO, reason="the trio-only leg of the no-trio session")
def test_trio_thread_tracking_only_under_our_clock() -> None:
    """Somebody else's MockClock keeps its own behaviour (it jumps over the
    thread), even once anyway's tracking is installed."""
    import trio.testing

    virtual_time_options("trio")  # installs the tracking

    async def main() -> float:
        with anyio.move_on_after(5):
            await anyio.to_thread.run_sync(time.sleep, 0.02)
        return anyio.current_time()

    plain = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    assert anyio.run(main, backend="trio", backend_options=plain) == 5.0
    assert anyio.run(main, backend="trio", backend_options=virtual_time_options("trio")) == 0.0


@pytest.mark.parametrize("backend", VIRTUAL)
def test_concurrent_threads_hold_the_clock_until_the_last_is_done(backend: str) -> None:
    async def main() -> tuple[bool, float]:
        with anyio.move_on_after(1) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, time.sleep, 0.01)
                tg.start_soon(anyio.to_thread.run_sync, time.sleep, 0.03)
        await anyio.sleep(2)  # and the clock moves again afterwards
        return scope.cancelled_caught, anyio.current_time()

    cancelled, now = anyio.run(main, backend=backend, backend_options=virtual_time_options(backend))
    assert not cancelled
    assert 2 <= now < 3
