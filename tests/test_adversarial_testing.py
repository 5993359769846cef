"""Adversarial probes of anyway.testing's retry modes: misuse as a decorator,
concurrent and nested use, reuse across event loops."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

import anyway
from anyway.testing import cap_attempts, is_testing, no_backoff

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


class Transient(Exception):
    pass


def test_decorating_a_generator_function_is_refused() -> None:
    # Its body would run after the call returned, outside the mode.
    def sync_fixture() -> Iterator[None]:
        yield

    async def async_fixture() -> AsyncIterator[None]:
        yield

    for fn in (sync_fixture, async_fixture):
        with pytest.raises(TypeError, match="generator function"):
            no_backoff()(fn)
        with pytest.raises(TypeError, match="generator function"):
            cap_attempts(1)(fn)


SHARED = no_backoff(attempts=2)  # made at import time, used in every run below


async def test_a_shared_mode_in_concurrent_tasks_applies_to_each_and_leaks_nowhere(
    clock: anyway.testing.Clock,
) -> None:
    calls: list[int] = []

    @anyway.retry(on=Transient, attempts=5, backoff=anyway.Backoff(initial=1, jitter=None))
    async def flaky(n: int) -> None:
        calls.append(n)
        raise Transient(n)

    async def in_mode(n: int) -> None:
        await anyio.sleep(n * 0.001)
        with SHARED, pytest.raises(Transient):
            await flaky(n)
        assert not is_testing()

    start = clock.now()
    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(in_mode, n)
    assert sorted(calls) == [0, 0, 1, 1, 2, 2]  # capped at 2, zero waits
    assert clock.now() - start == clock.approx(0.002)
    assert not is_testing()


async def test_a_mode_is_left_when_the_body_is_cancelled() -> None:
    with anyio.move_on_after(0.01):
        with no_backoff():
            await anyio.sleep(1)
    assert not is_testing()
