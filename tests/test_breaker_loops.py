"""A breaker created at import time and used from successive ``anyio.run()``
calls behaves, in each new event loop, as if newly created there (design.md,
"Primitives that outlive one event loop"). Trio's clock has a random offset
per run; virtual clocks restart at 0: no wait may come from another loop's
clock.

These tests start event loops themselves (``anyio.run``), one per leg:
real time and virtual time on asyncio, uvloop and Trio, looptime and Trio's
plain MockClock.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from anyway import (
    BreakerSnapshot,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    TimeWindow,
)
from anyway.testing import virtual_time_options
from breaker_helpers import RemoteStore

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def _legs() -> list[tuple[str, Callable[[], tuple[str, dict[str, Any]]]]]:
    legs: list[tuple[str, Callable[[], tuple[str, dict[str, Any]]]]] = [
        ("asyncio", lambda: ("asyncio", {})),
        ("asyncio-virtual", lambda: ("asyncio", virtual_time_options("asyncio"))),
    ]
    if importlib.util.find_spec("uvloop") is not None:
        legs.append(("uvloop", lambda: ("asyncio", {"use_uvloop": True})))
    if importlib.util.find_spec("looptime") is not None:

        def looptime_leg() -> tuple[str, dict[str, Any]]:
            import looptime

            return ("asyncio", {"loop_factory": lambda: looptime.new_event_loop(start=0.0)})

        legs.append(("looptime", looptime_leg))
    if importlib.util.find_spec("trio") is not None:

        def mockclock_leg() -> tuple[str, dict[str, Any]]:
            import trio.testing

            return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

        legs += [
            ("trio", lambda: ("trio", {})),
            ("trio-virtual", lambda: ("trio", virtual_time_options("trio"))),
            ("mockclock", mockclock_leg),
        ]
    return legs


LEGS = _legs()


def run(leg: Callable[[], tuple[str, dict[str, Any]]], fn: Callable[[], Awaitable[Any]]) -> Any:
    backend, options = leg()  # a fresh clock each run
    return anyio.run(fn, backend=backend, backend_options=options)


class Boom(Exception):
    pass


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            async with breaker:
                raise Boom


# Created at import time, as the README does; reset per test by the tests below.
MODULE_BREAKER = CircuitBreaker(failure_threshold=2, recovery_time=30, name="module-level")


@pytest.mark.parametrize(("leg_id", "leg"), LEGS, ids=[leg_id for leg_id, _ in LEGS])
def test_an_open_circuit_from_another_loop_is_forgotten(
    leg_id: str, leg: Callable[[], tuple[str, dict[str, Any]]]
) -> None:
    breaker = MODULE_BREAKER
    breaker.reset_nowait()

    async def first() -> CircuitState:
        await fail(breaker, 2)
        return breaker.state

    async def second() -> tuple[CircuitState, BreakerSnapshot, str]:
        state, stats = breaker.state, breaker.statistics()
        async with breaker:  # not refused: no recovery time from another clock
            pass
        await fail(breaker)
        with pytest.raises(Boom) as info:
            async with breaker:
                raise Boom
        return state, stats, info.value.__notes__[0]

    assert run(leg, first) is OPEN
    state, stats, note = run(leg, second)
    assert (state, stats) == (CLOSED, BreakerSnapshot(state=CLOSED))
    # a fresh streak in this loop: 1 failure + 1 success + 2 failures opens at the second
    assert note == "circuit breaker 'module-level' opened: 2 consecutive failures"


@pytest.mark.parametrize(("leg_id", "leg"), LEGS, ids=[leg_id for leg_id, _ in LEGS])
def test_a_failure_streak_from_another_loop_is_forgotten(
    leg_id: str, leg: Callable[[], tuple[str, dict[str, Any]]]
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=30)

    async def first() -> None:
        await fail(breaker)

    async def second() -> tuple[CircuitState, int]:
        await fail(breaker)  # the first failure of this loop: the circuit stays closed
        return breaker.state, breaker.statistics().failure_count

    run(leg, first)
    assert run(leg, second) == (CLOSED, 1)


@pytest.mark.parametrize(("leg_id", "leg"), LEGS, ids=[leg_id for leg_id, _ in LEGS])
def test_a_time_window_from_another_loop_is_forgotten(
    leg_id: str, leg: Callable[[], tuple[str, dict[str, Any]]]
) -> None:
    breaker = CircuitBreaker(window=TimeWindow(60), minimum_calls=4, failure_rate_threshold=0.5)

    async def first() -> int:
        await fail(breaker, 3)
        return breaker.statistics().call_count

    async def second() -> tuple[CircuitState, int]:
        await fail(breaker)  # with the old window's 3 failures this would open
        return breaker.state, breaker.statistics().call_count

    assert run(leg, first) == 3
    assert run(leg, second) == (CLOSED, 1)


@pytest.mark.parametrize(("leg_id", "leg"), LEGS, ids=[leg_id for leg_id, _ in LEGS])
def test_held_open_and_half_open_from_another_loop(
    leg_id: str, leg: Callable[[], tuple[str, dict[str, Any]]]
) -> None:
    held = CircuitBreaker()
    probing = CircuitBreaker(failure_threshold=1, recovery_time=1)

    async def first() -> tuple[CircuitState, CircuitState]:
        await held.open()
        await fail(probing)
        await anyio.sleep(1.5)
        with anyio.CancelScope() as scope:
            async with probing:  # a probe in flight when the loop ends
                scope.cancel()
                await anyio.sleep_forever()
        return held.state, probing.state

    async def second() -> tuple[CircuitState, BreakerSnapshot]:
        async with held, probing:
            pass
        return held.state, probing.statistics()

    assert run(leg, first) == (OPEN, HALF_OPEN)
    assert run(leg, second) == (
        CLOSED,
        BreakerSnapshot(state=CLOSED, success_count=1, call_count=1),
    )


@pytest.mark.parametrize(("leg_id", "leg"), LEGS, ids=[leg_id for leg_id, _ in LEGS])
def test_another_stores_cached_answer_is_not_aged_on_another_clock(
    leg_id: str, leg: Callable[[], tuple[str, dict[str, Any]]]
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=30, name="s", store=RemoteStore())

    async def first() -> float | None:
        await fail(breaker)
        with pytest.raises(CircuitOpen) as info:
            async with breaker:
                pass  # pragma: no cover
        return info.value.retry_after

    async def second() -> tuple[CircuitState, CircuitState]:
        cached = breaker.state  # nothing seen in this loop yet
        async with breaker:  # the store (here: in memory, restarted) decides
            pass
        return cached, breaker.state

    assert run(leg, first) == pytest.approx(30, abs=1)
    assert run(leg, second) == (CLOSED, CLOSED)


@pytest.mark.parametrize(("leg_id", "leg"), LEGS, ids=[leg_id for leg_id, _ in LEGS])
def test_a_success_does_not_open_on_another_loops_failures(
    leg_id: str, leg: Callable[[], tuple[str, dict[str, Any]]]
) -> None:
    breaker = CircuitBreaker(window=CountWindow(4), minimum_calls=4, failure_rate_threshold=0.5)

    async def first() -> BreakerSnapshot:
        await fail(breaker, 3)  # 3 of the 4 calls needed to judge
        return breaker.statistics()

    async def second() -> BreakerSnapshot:
        async with breaker:  # the 4th call: 75% failures, but those were another loop's
            pass
        return breaker.statistics()

    assert run(leg, first).failure_count == 3
    assert run(leg, second) == BreakerSnapshot(state=CLOSED, success_count=1, call_count=1)
