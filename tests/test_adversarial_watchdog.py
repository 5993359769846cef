"""Adversarial probes of anyway.watchdog: an on_block that raises. The report
is delivered by a callback on the loop, which must not raise (Trio would
crash the whole run; asyncio would only log it and lose the error)."""

from __future__ import annotations

import time

import anyio
import pytest

import anyway

pytestmark = [pytest.mark.anyio, pytest.mark.real_time]

THRESHOLD = 0.03
STALL = 0.08


class Broken(Exception):
    pass


def _stall() -> None:
    time.sleep(STALL)


def _broken(event: anyway.LoopBlocked) -> None:
    raise Broken("on_block bug")


async def test_an_on_block_error_is_raised_at_the_exit_and_the_loop_survives() -> None:
    calls: list[anyway.LoopBlocked] = []

    def on_block(event: anyway.LoopBlocked) -> None:
        calls.append(event)
        raise Broken("on_block bug")

    async def body() -> None:
        with anyway.watchdog(THRESHOLD, on_block=on_block):
            _stall()  # reported on the loop, by a callback, while the block runs
            for _ in range(20):
                await anyio.sleep(0.01)  # the loop goes on

    with pytest.raises(Broken, match="on_block bug"):
        await body()
    assert calls


async def test_an_on_block_error_and_the_bodys_error_are_both_raised() -> None:
    async def body() -> None:
        with anyway.watchdog(THRESHOLD, on_block=_broken):
            _stall()
            await anyio.sleep(0.01)
            raise KeyError("body")

    with pytest.raises(ExceptionGroup) as info:
        await body()
    assert [type(e) for e in info.value.exceptions] == [KeyError, Broken]


async def test_cancellation_of_the_body_still_reaches_its_scope_with_an_on_block_error() -> None:
    async def body() -> anyio.CancelScope:
        with anyio.move_on_after(0.05) as scope, anyway.watchdog(THRESHOLD, on_block=_broken):
            _stall()
            await anyio.sleep(1)
        return scope

    with pytest.raises(ExceptionGroup) as info:
        await body()
    assert [type(e) for e in info.value.exceptions] == [Broken]


@pytest.mark.parametrize(
    ("threshold", "words"),
    [(1e-300, r"threshold must be >= 0\.001"), (1e-4, r">= 0\.001"), (1e300, "must be <=")],
)
def test_a_threshold_no_thread_can_keep_is_refused(threshold: float, words: str) -> None:
    # 1e-300: every check was reported as a stall; 1e300: the helper thread
    # died at once (OverflowError in Event.wait) and nothing was watched.
    with pytest.raises(ValueError, match=words):
        anyway.watchdog(threshold)
