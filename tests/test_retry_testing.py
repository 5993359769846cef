"""anyway.testing: no_backoff(), cap_attempts() and is_testing()."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from anyway import (
    retry,
)
from anyway.testing import Clock, cap_attempts, is_testing, no_backoff
from retry_support import (
    EXACT,
    Flaky,
    RetryAfter,
    Transient,
    honour_retry_after,
    record_events,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = pytest.fixture(name="events")(record_events)


# --- testing helpers: no_backoff() and cap_attempts() ----------------------------------------------


async def test_no_backoff_makes_waits_zero(clock: Clock) -> None:
    flaky = Flaky(RetryAfter(30), Transient(), Transient())
    t0 = clock.now()
    with no_backoff():
        assert await retry(on=(Transient, RetryAfter)).call(flaky) == "ok"
        assert await retry(on=honour_retry_after).call(Flaky(RetryAfter(30))) == "ok"
    assert clock.now() - t0 == clock.approx(0)
    assert len(flaky.calls) == 4


async def test_no_backoff_with_attempts_caps_them() -> None:
    flaky = Flaky(*[Transient() for _ in range(5)])
    with pytest.raises(Transient) as info, no_backoff(attempts=2):
        await retry(on=Transient, attempts=10).call(flaky)
    assert len(flaky.calls) == 2
    assert info.value.__notes__[0].endswith("no attempts left (attempts=2 by anyway.testing)")
    # a policy with fewer attempts keeps its own
    with pytest.raises(Transient) as info, no_backoff(attempts=5):
        await retry(on=Transient, attempts=1).call(Flaky(Transient()))
    assert info.value.__notes__[0].endswith("no attempts left (attempts=1)")
    with pytest.raises(Transient), no_backoff(attempts=3):
        await retry(on=Transient, attempts=None).call(Flaky(*[Transient() for _ in range(5)]))


async def test_cap_attempts_keeps_the_waits(clock: Clock) -> None:
    flaky = Flaky(Transient(), Transient())
    t0 = clock.now()
    with pytest.raises(Transient), cap_attempts(2):
        await retry(on=Transient, backoff=EXACT).call(flaky)
    assert clock.now() - t0 == clock.approx(1)
    with pytest.raises(Transient), cap_attempts(1):
        await retry(on=Transient).call(Flaky(Transient()))


async def test_nested_test_modes_combine(clock: Clock) -> None:
    mode = cap_attempts(3)
    with mode, no_backoff(attempts=5):
        flaky = Flaky(*[Transient() for _ in range(5)])
        t0 = clock.now()
        with pytest.raises(Transient):
            await retry(on=Transient, backoff=EXACT).call(flaky)
        assert len(flaky.calls) == 3
        assert clock.now() - t0 == clock.approx(0)
        assert is_testing()
    assert not is_testing()
    with no_backoff(), cap_attempts(2):
        flaky = Flaky(*[Transient() for _ in range(5)])
        with pytest.raises(Transient):
            await retry(on=Transient).call(flaky)
        assert len(flaky.calls) == 2


async def test_test_modes_are_per_task(clock: Clock) -> None:
    started = anyio.Event()
    go = anyio.Event()
    elapsed: dict[str, float] = {}
    policy = retry(on=Transient, backoff=EXACT)

    async def outside() -> None:
        started.set()
        await go.wait()
        t0 = clock.now()
        await policy.call(Flaky(Transient()))
        elapsed["outside"] = clock.now() - t0

    async def inside() -> None:
        t0 = clock.now()
        await policy.call(Flaky(Transient()))
        elapsed["inside"] = clock.now() - t0

    async with anyio.create_task_group() as tg:
        tg.start_soon(outside)
        await started.wait()
        with no_backoff():
            tg.start_soon(inside)
            go.set()
    assert elapsed == {"inside": clock.approx(0), "outside": clock.approx(1)}


async def test_no_backoff_as_a_decorator(clock: Clock) -> None:
    @no_backoff()
    async def scenario() -> int:
        flaky = Flaky(Transient(), Transient())
        await retry(on=Transient, backoff=EXACT).call(flaky)
        return len(flaky.calls)

    t0 = clock.now()
    assert await scenario() == 3
    assert clock.now() - t0 == clock.approx(0)

    @cap_attempts(1)
    def sync_scenario() -> bool:
        return is_testing()

    assert sync_scenario()
    assert not is_testing()


def test_testing_helpers_validate() -> None:
    with pytest.raises(ValueError, match="attempts must be >= 1, got 0"):
        no_backoff(attempts=0)
    with pytest.raises(TypeError, match="attempts must be a whole number, got True"):
        cap_attempts(True)
    assert repr(no_backoff()) == "<RetryTestMode zero_waits=True max_attempts=None>"
    assert repr(cap_attempts(2)) == "<RetryTestMode zero_waits=False max_attempts=2>"


def test_is_testing_outside_any_loop() -> None:
    assert not is_testing()
    with no_backoff():
        assert is_testing()
        with cap_attempts(2):
            assert is_testing()
        assert is_testing()
    assert not is_testing()


async def test_one_helper_object_shared_by_concurrent_tasks(clock: Clock) -> None:
    """Defect 9 of issue 11: a shared no_backoff() entered by two tasks at
    once raised "Token was created in a different Context" in both."""
    shared = no_backoff(attempts=3)
    policy = retry(on=Transient, backoff=EXACT)
    calls: dict[str, int] = {}

    async def task(name: str, delay: float) -> None:
        with shared:
            await anyio.sleep(delay)  # the two tasks leave in the other order
            flaky = Flaky(*[Transient() for _ in range(5)])
            with pytest.raises(Transient):
                await policy.call(flaky)
            calls[name] = len(flaky.calls)
            assert is_testing()
        assert not is_testing()

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        tg.start_soon(task, "first", 1.0)  # entered first, leaves first
        tg.start_soon(task, "second", 2.0)
    assert calls == {"first": 3, "second": 3}
    assert clock.now() - t0 == clock.approx(2)  # zero waits: only the sleeps took time

    @shared
    async def decorated() -> bool:
        await anyio.lowlevel.checkpoint()
        return is_testing()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(decorated)
    assert await decorated()
    assert not is_testing()


def test_nested_reuse_of_one_object() -> None:
    mode = cap_attempts(2)
    with mode:
        with mode:
            assert is_testing()
        assert is_testing()
    assert not is_testing()
