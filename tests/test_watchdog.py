"""watchdog(): a helper thread reports each stall of the event loop once,
naming the blocking line. Stalls are real seconds, so most of these tests run
on real time (kept short: no stall over 0.1 s)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import anyio
import pytest

import anyway
from anyway.testing import Clock, backends

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]

THRESHOLD = 0.03
STALL = 0.08


def _ours(events: list[anyway.LoopBlocked], line: int) -> list[anyway.LoopBlocked]:
    """The events that name *line* of this file (a loaded machine may add others)."""
    return [
        e for e in events if e.frame and e.frame.filename == __file__ and e.frame.lineno == line
    ]


def _stall() -> int:
    """Block the calling thread (the loop's) and return the blocking line."""
    time.sleep(STALL)
    return _stall.__code__.co_firstlineno + 2


@pytest.mark.real_time
async def test_a_blocking_call_is_reported_once_with_its_line() -> None:
    events: list[anyway.LoopBlocked] = []
    with anyway.watchdog(THRESHOLD, on_block=events.append) as dog:
        await anyio.sleep(0.01)
        line = _stall()
        await anyio.sleep(0.01)
    [event] = _ours(events, line)
    assert dog.blocked == events
    assert event.threshold == THRESHOLD
    assert STALL - THRESHOLD <= event.seconds < 10
    assert event.frame is not None
    assert event.frame.name == "_stall"
    assert any(f.name == "test_a_blocking_call_is_reported_once_with_its_line" for f in event.stack)
    text = str(event)
    assert "blocked for" in text
    assert f"line {line}" in text
    assert "time.sleep(STALL)" in text


@pytest.mark.real_time
async def test_two_stalls_are_two_reports_and_on_block_runs_on_the_loop_thread() -> None:
    threads: list[int] = []
    events: list[anyway.LoopBlocked] = []

    def on_block(event: anyway.LoopBlocked) -> None:
        threads.append(threading.get_ident())
        events.append(event)

    async with anyway.watchdog(THRESHOLD, on_block=on_block):
        line = _stall()
        await anyio.sleep(0.01)
        _stall()
    assert len(_ours(events, line)) == 2
    assert set(threads) == {threading.get_ident()}


@pytest.mark.real_time
async def test_without_on_block_the_global_hooks_get_the_event() -> None:
    events: list[anyway.PolicyEvent] = []
    anyway.add_hook(events.append)
    try:
        with anyway.watchdog(THRESHOLD):
            line = _stall()
    finally:
        anyway.remove_hook(events.append)
    blocked = [e for e in events if isinstance(e, anyway.LoopBlocked)]
    assert len(_ours(blocked, line)) == 1


@pytest.mark.real_time
async def test_a_loop_that_keeps_reaching_checkpoints_is_not_reported() -> None:
    events: list[anyway.LoopBlocked] = []
    with anyway.watchdog(0.05, on_block=events.append):
        for _ in range(10):
            time.sleep(0.002)  # noqa: ASYNC251 - short sync work between checkpoints is fine
            await anyio.sleep(0.005)
    assert _ours(events, 0) == []
    assert not [e for e in events if e.frame and e.frame.filename == __file__]


async def test_no_thread_outlives_the_block_and_virtual_time_is_untouched(clock: Clock) -> None:
    before = {t for t in threading.enumerate() if t.name == "anyway watchdog"}
    start = clock.now()
    with anyway.watchdog(THRESHOLD) as dog:
        assert "watching" in repr(dog)
        await anyio.sleep(1)  # virtual: instant; uvloop: 50 ms of real time
    assert clock.now() - start == clock.approx(1)
    assert "idle" in repr(dog)
    after = {t for t in threading.enumerate() if t.name == "anyway watchdog"}
    assert after == before


async def test_a_watchdog_watches_one_block_at_a_time() -> None:
    dog = anyway.watchdog()
    with dog, pytest.raises(RuntimeError, match="already watching"):
        dog.__enter__()
    with dog:  # reusable once the block has exited
        pass


def test_outside_an_event_loop_it_says_where_to_enter_it() -> None:
    with pytest.raises(RuntimeError, match="inside async code"), anyway.watchdog():
        pass


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"threshold": 0}, ValueError, "threshold must be >= 0.001"),
        ({"threshold": -1}, ValueError, "threshold must be >= 0.001"),
        ({"threshold": math.nan}, ValueError, "NaN"),
        ({"threshold": math.inf}, ValueError, "finite"),
        ({"threshold": "0.1"}, TypeError, "threshold must be a number"),
        ({"on_block": "print"}, TypeError, "on_block must be callable"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        anyway.watchdog(**kwargs)


#: asyncio, and trio where it is installed (the suite also runs without it)
LOOPS = len(backends(uvloop=False))

_BLOCKING_TESTS = """
import time
import anyio
import pytest
from anyway.testing import backends

pytestmark = pytest.mark.anyio

@pytest.fixture(params=[name for name, _ in backends(uvloop=False)])
def anyio_backend(request):
    return request.param

async def test_blocks():
    await anyio.sleep(0)
    time.sleep(0.08)  # the blocking line

def test_sync_is_not_watched():
    time.sleep(0.01)
"""


BLOCKING_LINE = 1 + _BLOCKING_TESTS.strip().splitlines().index(
    "    time.sleep(0.08)  # the blocking line"
)


def test_block_threshold_option_fails_a_test_that_blocks_and_names_the_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_blocking=_BLOCKING_TESTS)
    result = pytester.runpytest_inprocess(
        "-p", "anyio", "-p", "no:looptime_plugin", "--block-threshold=0.03"
    )
    result.assert_outcomes(passed=1, failed=LOOPS)
    result.stdout.fnmatch_lines(
        [
            "*the event loop was blocked for *(threshold 0.03 s)*",
            f"*test_blocking.py*, line {BLOCKING_LINE}, in test_blocks*",
            "*time.sleep(0.08)  # the blocking line*",
        ]
    )


def test_block_threshold_ini_and_off_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_blocking=_BLOCKING_TESTS)
    result = pytester.runpytest_inprocess("-p", "anyio", "-p", "no:looptime_plugin")
    result.assert_outcomes(passed=1 + LOOPS)
    pytester.makeini("[pytest]\nblock_threshold = 0.03\n")
    result = pytester.runpytest_inprocess("-p", "anyio", "-p", "no:looptime_plugin")
    result.assert_outcomes(passed=1, failed=LOOPS)
    result = pytester.runpytest_inprocess(
        "-p", "anyio", "-p", "no:looptime_plugin", "--block-threshold=-1"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--block-threshold=-1.0: threshold must be >= 0.001*"])
    # A threshold the watchdog refuses is a usage error at startup, not an
    # error in every test (inf, under a millisecond) or a traceback (not a number).
    for bad, words in [("inf", "finite"), ("0.0001", ">= 0.001")]:
        result = pytester.runpytest_inprocess(
            "-p", "anyio", "-p", "no:looptime_plugin", f"--block-threshold={bad}"
        )
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*--block-threshold={bad}: *{words}*"])
    pytester.makeini("[pytest]\nblock_threshold = soon\n")
    result = pytester.runpytest_inprocess("-p", "anyio", "-p", "no:looptime_plugin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--block-threshold=soon: *float*"])


@pytest.mark.real_time
async def test_by_default_a_stall_is_a_warning_on_the_anyway_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="anyway"), anyway.watchdog(THRESHOLD):
        line = _stall()
    warnings = [r for r in caplog.records if r.name == "anyway" and r.levelname == "WARNING"]
    assert any(f"line {line}" in r.getMessage() for r in warnings)
