"""Adversarial probes of anyway.periodic: periods at the float edges,
cancellation at each await point, reuse across event loops."""

from __future__ import annotations

import anyio
import pytest

import anyway
from anyway.testing import Clock, backends

#: asyncio, and trio where installed (the suite also runs without Trio)
LOOPS = [name for name, _ in backends(uvloop=False)]

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


@pytest.mark.parametrize("period", [1e-320, 5e-324, 1e-10])
def test_a_period_under_a_nanosecond_is_refused(period: float) -> None:
    # Such a period cannot be told from the start on a real clock, and
    # skipping the ticks a slow body missed overflowed (OverflowError).
    with pytest.raises(ValueError, match="period must be at least 1e-09 s"):
        anyway.periodic(period)


async def test_the_shortest_period_skips_a_long_body_exactly(clock: Clock) -> None:
    ticks = anyway.periodic(1e-9)
    first = await ticks.__anext__()
    await anyio.sleep(2)
    second = await ticks.__anext__()
    assert second - first == clock.approx(2)


async def test_cancelled_in_the_sleep_then_the_next_tick_is_still_exact(clock: Clock) -> None:
    ticks = anyway.periodic(1.0)
    start = await ticks.__anext__()
    with anyio.move_on_after(0.5) as scope:
        await ticks.__anext__()  # cancelled while sleeping to tick 1
    assert scope.cancelled_caught
    assert await ticks.__anext__() == start + 1.0  # tick 1 was not consumed
    assert clock.now() - start == clock.approx(1.0)


async def test_a_huge_period_sleeps_until_cancelled(clock: Clock) -> None:
    start = clock.now()
    ticks = anyway.periodic(1e300)
    await ticks.__anext__()
    with pytest.raises(anyway.DeadlineExceeded), anyway.deadline(5):
        await ticks.__anext__()
    assert clock.now() - start == clock.approx(5)


TICKS_AT_IMPORT = anyway.periodic(1.0, missed="burst")


@pytest.mark.parametrize("second", LOOPS)
@pytest.mark.parametrize("first", LOOPS)
def test_ticks_made_at_import_start_again_in_each_run(first: str, second: str) -> None:
    # Trio's clock has a random offset per run and virtual clocks restart at
    # 0: the first run's start on the second run's clock meant a flood of
    # "missed" ticks or a sleep of thousands of seconds.
    from anyway.testing import virtual_time_options

    async def three_ticks() -> list[float]:
        start = anyio.current_time()
        got = []
        async for tick in TICKS_AT_IMPORT:
            got.append(tick - start)
            if len(got) == 3:
                break
        return got

    for backend in (first, second):
        got = anyio.run(three_ticks, backend=backend, backend_options=virtual_time_options(backend))
        assert got == [0.0, 1.0, 2.0]
