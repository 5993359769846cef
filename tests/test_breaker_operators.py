"""CircuitBreaker's operators, events, statistics, repr and argument checks."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from anyway import (
    BreakerCallRecorded,
    BreakerSnapshot,
    BreakerStateChanged,
    CallRejected,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    InMemoryBreakerStore,
    PolicyEvent,
    TimeWindow,
    add_hook,
    remove_hook,
)
from anyway.testing import Clock
from breaker_helpers import (
    Boom,
    RemoteStore,
    changes,
    fail,
    succeed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
STORE_TIMEOUT = 5.0  # how long a breaker waits, shielded, to give a slot back


# --- operators -----------------------------------------------------------------------


async def test_open_holds_until_closed(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(recovery_time=1, name="db", hooks=events.append)
    await fail(breaker, 2)
    await breaker.open()
    await anyio.sleep(5)
    assert breaker.state is OPEN
    assert breaker.statistics().retry_after is None
    with pytest.raises(CircuitOpen, match="'db' is held open; close\\(\\) or reset\\(\\)") as info:
        await succeed(breaker)
    assert info.value.retry_after is None
    await breaker.close()
    assert breaker.state is CLOSED
    assert breaker.statistics().failure_count == 0
    await breaker.close()  # already closed: nothing happens
    assert [(e.old, e.new, e.reason) for e in events if isinstance(e, BreakerStateChanged)] == [
        (CLOSED, OPEN, "opened by hand until closed"),
        (OPEN, CLOSED, "closed by hand"),
    ]


async def test_open_for_seconds_then_half_opens(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(recovery_time=30, hooks=events.append)
    await breaker.open(seconds=3)
    assert breaker.statistics().retry_after == clock.approx(3)
    await anyio.sleep(1)
    await breaker.open(seconds=3)  # opening again restarts the hold
    await anyio.sleep(1.5)
    assert breaker.state is OPEN
    await anyio.sleep(3)
    await succeed(breaker)
    assert breaker.state is CLOSED
    assert [e.reason for e in events if isinstance(e, BreakerStateChanged)] == [
        "opened by hand for 3 s",
        "opened by hand for 3 s",
        "3 s since it opened",
        "1 probe succeeded",
    ]


async def test_reset_clears_counts_even_when_closed() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(window=CountWindow(10), hooks=events.append)
    await fail(breaker, 3)
    await breaker.close()
    assert breaker.statistics().failure_count == 3
    await breaker.reset()
    assert (breaker.statistics().failure_count, breaker.statistics().call_count) == (0, 0)
    assert events == []
    await breaker.open()
    await breaker.reset()
    assert breaker.state is CLOSED
    assert changes(events) == [(CLOSED, OPEN), (OPEN, CLOSED)]


async def test_close_from_half_open_drops_running_probes(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1)
    await fail(breaker)
    await anyio.sleep(2.5)
    async with anyio.create_task_group() as tg:

        async def failing_probe() -> None:
            async with breaker:
                await anyio.sleep(2)
                raise Boom

        async def probe() -> None:
            with pytest.raises(Boom):
                await failing_probe()

        tg.start_soon(probe)
        await anyio.sleep(1)
        await breaker.close()
    assert breaker.state is CLOSED  # the late probe failure is ignored
    assert breaker.statistics().failure_count == 0


# --- events and hooks ----------------------------------------------------------------


async def test_async_hooks_and_global_hooks_receive_events() -> None:
    mine: list[PolicyEvent] = []
    everyone: list[PolicyEvent] = []

    async def hook(event: PolicyEvent) -> None:
        await anyio.lowlevel.checkpoint()
        mine.append(event)

    add_hook(everyone.append)
    try:
        breaker = CircuitBreaker(failure_threshold=1, name="svc", hooks=[hook])
        await fail(breaker)
        with pytest.raises(CircuitOpen):
            await succeed(breaker)
    finally:
        remove_hook(everyone.append)
    assert mine == everyone
    assert [type(e) for e in mine] == [BreakerStateChanged, CallRejected]
    assert breaker.hooks == (hook,)


async def test_events_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="anyway")
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, name="svc")
    await fail(breaker)
    with pytest.raises(CircuitOpen):
        await succeed(breaker)
    await anyio.sleep(2.5)
    await succeed(breaker)
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert records[1][0] == "INFO"
    assert re.fullmatch(r"svc: call rejected by breaker, retry after [\d.]+ s", records[1][1])
    del records[1]
    assert records == [
        ("WARNING", "svc: circuit closed -> open (1 consecutive failure)"),
        ("INFO", "svc: circuit open -> half_open (1 s since it opened)"),
        ("INFO", "svc: circuit half_open -> closed (1 probe succeeded)"),
    ]


async def test_happy_path_emits_nothing() -> None:
    events: list[PolicyEvent] = []
    breaker = CircuitBreaker(hooks=events.append)
    await succeed(breaker, 100)
    await fail(breaker, 4)
    assert events == []


# --- repr, config, slots ------------------------------------------------------------


async def test_repr_shows_state(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, recovery_time=5, name="db")
    assert repr(breaker) == "<CircuitBreaker name='db' state=closed failures=0/3>"
    await fail(breaker, 3)
    assert repr(breaker).startswith("<CircuitBreaker name='db' state=open retry_after=")
    await anyio.sleep(6.5)
    assert repr(breaker) == "<CircuitBreaker name='db' state=half_open probes=0/1 succeeded=0/1>"
    await breaker.open()
    assert repr(breaker) == "<CircuitBreaker name='db' state=open retry_after=held>"
    rate = CircuitBreaker(window=CountWindow(5), slow_call_duration=1)
    await fail(rate)
    assert repr(rate) == (
        "<CircuitBreaker name=None state=closed failures=1/1 (opens at 50% of >= 5)"
        " slow=0/1 window=CountWindow(size=5)>"
    )
    assert not hasattr(breaker, "__dict__")
    assert repr(breaker.store) == "<InMemoryBreakerStore circuits=1>"


def test_repr_without_an_event_loop() -> None:
    breaker = CircuitBreaker(name="db")
    assert repr(breaker) == "<CircuitBreaker name='db' state=closed failures=0/5>"
    assert breaker.state is CLOSED
    anyio.run(functools.partial(breaker.open, seconds=5))
    # outside the loop the clock cannot be read: the state as stored
    assert repr(breaker) == "<CircuitBreaker name='db' state=open retry_after=?>"
    windowed = CircuitBreaker(window=TimeWindow(5))
    assert "failures=0/0" in repr(windowed)


def test_windows_are_small_values() -> None:
    assert CountWindow(3) == CountWindow(3)
    assert repr(TimeWindow(10)) == "TimeWindow(seconds=10, buckets=10)"
    with pytest.raises(AttributeError):
        CountWindow(3).size = 4  # type: ignore[misc]


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": True}, TypeError, "failure_threshold must be a whole number"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold must be a whole number"),
        ({"recovery_time": -1}, ValueError, "recovery_time must be > 0, got -1"),
        ({"recovery_time": 0}, ValueError, "recovery_time must be > 0, got 0"),
        ({"recovery_time": math.nan}, ValueError, "recovery_time must be a number, got NaN"),
        ({"recovery_time": math.inf}, ValueError, "await breaker.open\\(\\)"),
        ({"recovery_time": "30"}, TypeError, "recovery_time must be a number"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be >= 1, got 0"),
        ({"on": int}, TypeError, "on must be an exception type .*got the class int"),
        (
            {"on": ()},
            ValueError,
            "on must be an exception type .*got on=\\(\\), which matches nothing",
        ),
        ({"on": (Boom, "x")}, TypeError, "got 'x' in on="),
        ({"on": "Boom"}, TypeError, "on must be callable, got 'Boom' \\(str\\)"),
        ({"name": ""}, TypeError, "name must be a non-empty string or None"),
        ({"name": 3}, TypeError, "name must be a non-empty string or None, got 3"),
        ({"hooks": [1]}, TypeError, "hooks must be callables taking an event, got 1"),
        ({"window": 10}, TypeError, "window must be CountWindow\\(size\\), TimeWindow"),
        ({"minimum_calls": 5}, ValueError, "minimum_calls=5 needs a sliding window"),
        ({"failure_rate_threshold": 0.5}, ValueError, "failure_rate_threshold=0.5 needs a sliding"),
        ({"slow_call_duration": 1}, ValueError, "slow_call_duration=1 needs a sliding window"),
        (
            {"window": CountWindow(10), "failure_threshold": 3},
            ValueError,
            "failure_threshold=3 counts consecutive failures and does not apply with a window",
        ),
        (
            {"window": CountWindow(5), "minimum_calls": 10},
            ValueError,
            "window=CountWindow\\(5\\) is smaller than minimum_calls=10",
        ),
        (
            {"window": CountWindow(5), "minimum_calls": 0},
            ValueError,
            "minimum_calls must be >= 1",
        ),
        (
            {"window": CountWindow(5), "failure_rate_threshold": 0},
            ValueError,
            "failure_rate_threshold must be > 0, got 0 \\(a rate in \\(0, 1\\]",
        ),
        (
            {"window": CountWindow(5), "failure_rate_threshold": 50},
            ValueError,
            "failure_rate_threshold must be <= 1, got 50",
        ),
        (
            {"window": CountWindow(5), "failure_rate_threshold": math.nan},
            ValueError,
            "failure_rate_threshold must be a number, got NaN",
        ),
        (
            {"window": CountWindow(5), "slow_call_rate_threshold": 0.5},
            ValueError,
            "slow_call_rate_threshold=0.5 needs slow_call_duration=",
        ),
        (
            {"window": CountWindow(5), "slow_call_duration": -1},
            ValueError,
            "slow_call_duration must be > 0, got -1",
        ),
        (
            {"window": CountWindow(5), "slow_call_duration": 1, "slow_call_rate_threshold": 1.5},
            ValueError,
            "slow_call_rate_threshold must be <= 1, got 1.5",
        ),
        (
            {"store": InMemoryBreakerStore()},
            ValueError,
            "a breaker given a store= needs a name=",
        ),
        (
            {"store": object(), "name": "x"},
            TypeError,
            "store must implement the anyway.abc.BreakerStore protocol; .* has no acquire, record,",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CircuitBreaker(**kwargs)


def test_bad_predicates() -> None:
    async def async_predicate(exc: Exception) -> bool:
        return True

    with pytest.raises(TypeError, match="a predicate must be a plain \\(sync\\) function"):
        CircuitBreaker(on=async_predicate)
    coro = async_predicate(Boom())
    with pytest.raises(TypeError, match="not a coroutine object"):
        CircuitBreaker(on=coro)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CountWindow(0), "size must be >= 1, got 0; a CountWindow remembers"),
        (lambda: CountWindow(2.0), "size must be a whole number"),  # type: ignore[arg-type]
        (lambda: TimeWindow(0), "seconds must be > 0, got 0"),
        (lambda: TimeWindow(-5), "seconds must be > 0, got -5"),
        (lambda: TimeWindow(math.inf), "seconds must be finite"),
        (lambda: TimeWindow(5, buckets=0), "buckets must be >= 1, got 0"),
    ],
)
def test_bad_windows(make: Callable[[], object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        make()


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (0, "seconds must be > 0, got 0; use seconds=None to hold it open"),
        (-1, "seconds must be > 0, got -1"),
        (math.inf, "seconds must be finite, got inf; use seconds=None"),
        (math.nan, "seconds must be a number, got NaN"),
    ],
)
async def test_bad_open_seconds(seconds: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await CircuitBreaker().open(seconds=seconds)


# --- statistics() ----------------------------------------------------------------


async def test_statistics_is_a_frozen_snapshot_in_every_state(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=4, half_open_max_calls=2)
    assert breaker.statistics() == BreakerSnapshot(state=CLOSED)
    await succeed(breaker, 3)
    await fail(breaker)
    stats = breaker.statistics()
    assert stats == BreakerSnapshot(state=CLOSED, failure_count=1, success_count=3, call_count=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.failure_count = 0  # type: ignore[misc]
    await fail(breaker)
    assert breaker.statistics() == BreakerSnapshot(state=OPEN, retry_after=clock.approx(4))
    assert stats.failure_count == 1  # a snapshot does not move
    await anyio.sleep(1)
    assert breaker.statistics().retry_after == clock.approx(3)
    await anyio.sleep(3.5)
    assert breaker.statistics() == BreakerSnapshot(state=HALF_OPEN)
    await succeed(breaker)  # one probe succeeded, one to go
    async with breaker:
        assert breaker.statistics() == BreakerSnapshot(
            state=HALF_OPEN, success_count=1, call_count=1, probes_in_flight=1
        )
    assert breaker.statistics() == BreakerSnapshot(state=CLOSED)
    await breaker.open()
    assert breaker.statistics() == BreakerSnapshot(state=OPEN, retry_after=None)  # held


async def test_statistics_in_window_mode(clock: Clock) -> None:
    breaker = CircuitBreaker(window=CountWindow(4), slow_call_duration=1, minimum_calls=4)
    await succeed(breaker)
    async with breaker:
        await anyio.sleep(1.5)
    await fail(breaker)
    assert breaker.statistics() == BreakerSnapshot(
        state=CLOSED, failure_count=1, success_count=2, call_count=3, slow_call_count=1
    )


# --- outcome events (purgatory-style) -----------------------------------------------


@pytest.mark.parametrize("store", ["memory", "remote"])
async def test_outcome_events_for_every_recorded_success_and_failure(
    clock: Clock, store: str
) -> None:
    events: list[PolicyEvent] = []
    kwargs: dict[str, Any] = {} if store == "memory" else {"store": RemoteStore()}
    breaker = CircuitBreaker(
        failure_threshold=2,
        recovery_time=1,
        name="db",
        hooks=events.append,
        outcome_events=True,
        **kwargs,
    )
    await succeed(breaker)
    await fail(breaker, 2)
    with pytest.raises(CircuitOpen):  # refused: no outcome
        await succeed(breaker)
    await anyio.sleep(1.5)
    await succeed(breaker)  # the probe: recovery
    recorded = [
        (e.outcome, type(e.error).__name__ if e.error else None)
        for e in events
        if isinstance(e, BreakerCallRecorded)
    ]
    assert recorded == [
        ("success", None),
        ("failure", "Boom"),
        ("failure", "Boom"),
        ("success", None),
    ]
    kinds = [e.kind for e in events if isinstance(e, BreakerStateChanged)]
    assert kinds == ["failures", "recovery_time", "probes_succeeded"]  # the last: recovered
    # the outcome comes before the change it causes
    opened = next(i for i, e in enumerate(events) if isinstance(e, BreakerStateChanged))
    assert isinstance(events[opened - 1], BreakerCallRecorded)
    derived_events: list[PolicyEvent] = []
    derived = breaker.derive(name="db2")
    await succeed(CircuitBreaker(name="db3", hooks=derived_events.append, outcome_events=True))
    assert derived_events  # (and derive copies outcome_events:)
    events.clear()
    await succeed(derived)
    assert [type(e) for e in events] == [BreakerCallRecorded]


@pytest.mark.parametrize("store", ["memory", "remote"])
async def test_no_outcome_events_by_default(store: str) -> None:
    events: list[PolicyEvent] = []
    kwargs: dict[str, Any] = {} if store == "memory" else {"store": RemoteStore(), "name": "db"}
    breaker = CircuitBreaker(hooks=events.append, **kwargs)
    await succeed(breaker)
    await fail(breaker)
    assert events == []


async def test_outcome_events_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anyway")
    breaker = CircuitBreaker(name="db", outcome_events=True)
    await fail(breaker)
    await succeed(breaker)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == [
        "db: failure recorded (Boom: down)",
        "db: success recorded",
    ]
