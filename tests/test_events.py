"""anyway._events: event objects, hooks, the global registry, default logging."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Generator, Iterator

import pytest

from anyway import (
    BreakerStateChanged,
    CallRejected,
    CircuitState,
    DeadlineExpired,
    PolicyEvent,
    RetryGaveUp,
    RetryScheduled,
    add_hook,
    global_hooks,
    log_event,
    remove_hook,
)
from anyway._events import check_hooks, emit, emit_sync


@pytest.fixture(autouse=True)
def _restore_global_hooks() -> Iterator[None]:
    before = global_hooks()
    yield
    for hook in global_hooks():
        if hook not in before:
            remove_hook(hook)
    for hook in before:
        if hook not in global_hooks():
            add_hook(hook)
    assert global_hooks() == before


# --- event objects -------------------------------------------------------------------


def test_events_are_small_frozen_values() -> None:
    event = CallRejected(policy="db", by="breaker", retry_after=1.5)
    assert event == CallRejected(policy="db", by="breaker", retry_after=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.by = "limiter"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    with pytest.raises(TypeError):
        CallRejected("db", "breaker")  # type: ignore[call-arg]  # keyword-only
    assert isinstance(event, PolicyEvent)
    assert RetryScheduled(policy="f", attempt=1, delay=0.5).error is None
    assert BreakerStateChanged(
        policy="b", old=CircuitState.CLOSED, new=CircuitState.OPEN
    ).reason == ("")


def test_circuit_state_values() -> None:
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]


# --- hooks and the global registry ------------------------------------------------


def test_default_global_hook_is_logging() -> None:
    assert global_hooks() == (log_event,)


def test_add_and_remove_global_hooks() -> None:
    seen: list[PolicyEvent] = []
    add_hook(seen.append)
    add_hook(seen.append)  # once only
    assert global_hooks() == (log_event, seen.append)
    event = DeadlineExpired(policy="deadline", seconds=1.0)
    emit_sync(event)
    assert seen == [event]
    remove_hook(seen.append)
    assert global_hooks() == (log_event,)
    emit_sync(event)
    assert seen == [event]


def test_remove_hook_errors() -> None:
    with pytest.raises(ValueError, match="is not a registered global hook"):
        remove_hook(print)


def test_add_hook_refuses_non_callables() -> None:
    with pytest.raises(TypeError, match="hook must be callable, got 42"):
        add_hook(42)  # type: ignore[arg-type]


def test_silencing_the_default_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anyway")
    remove_hook(log_event)
    emit_sync(CallRejected(policy="db", by="bulkhead"))
    assert caplog.records == []


def test_check_hooks_normalises() -> None:
    def hook(event: PolicyEvent) -> None:
        pass

    assert check_hooks(hook) == (hook,)
    assert check_hooks([hook, print]) == (hook, print)
    assert check_hooks(()) == ()
    assert check_hooks(h for h in [hook]) == (hook,)
    with pytest.raises(TypeError, match="hooks must be callables taking an event, got 1"):
        check_hooks([hook, 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="hooks must be a callable taking an event, or an iterable"):
        check_hooks(5)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_emit_calls_policy_hooks_then_global_hooks_and_awaits_async_ones() -> None:
    order: list[str] = []

    def sync_hook(event: PolicyEvent) -> None:
        order.append("policy sync")

    async def async_hook(event: PolicyEvent) -> None:
        order.append("policy async")

    def global_sync(event: PolicyEvent) -> None:
        order.append("global sync")

    add_hook(global_sync)
    await emit(CallRejected(policy="p", by="limiter"), (sync_hook, async_hook))
    assert order == ["policy sync", "policy async", "global sync"]


def test_add_hook_refuses_async_global_hooks() -> None:
    async def global_async(event: PolicyEvent) -> None:
        pass

    with pytest.raises(TypeError, match="global hooks must be synchronous"):
        add_hook(global_async)
    assert global_async not in global_hooks()


@pytest.mark.anyio
async def test_a_hook_may_remove_itself_while_events_are_emitted() -> None:
    calls: list[str] = []

    def once(event: PolicyEvent) -> None:
        calls.append("once")
        remove_hook(once)

    add_hook(once)
    await emit(CallRejected(policy="p", by="limiter"))
    await emit(CallRejected(policy="p", by="limiter"))
    assert calls == ["once"]


@pytest.mark.anyio
async def test_a_failing_hook_propagates() -> None:
    def broken(event: PolicyEvent) -> None:
        raise RuntimeError("hook bug")

    with pytest.raises(RuntimeError, match="hook bug"):
        await emit(CallRejected(policy="p", by="limiter"), (broken,))


def test_emit_sync_with_sync_hooks() -> None:
    seen: list[PolicyEvent] = []
    event = CallRejected(policy="p", by="bulkhead")
    emit_sync(event, (seen.append,))
    assert seen == [event]


def test_emit_sync_refuses_an_async_hook_and_closes_its_coroutine() -> None:
    async def async_hook(event: PolicyEvent) -> None:
        pytest.fail("never runs")  # pragma: no cover

    # filterwarnings=error: a coroutine left unawaited would fail the test
    with pytest.raises(
        TypeError,
        match=r"hook .*async_hook.* is async, but CallRejected is emitted from synchronous code",
    ):
        emit_sync(CallRejected(policy="p", by="bulkhead"), (async_hook,))


def test_emit_sync_refuses_other_awaitables() -> None:
    class Later:
        def __await__(self) -> Generator[None, None, None]:
            yield None  # pragma: no cover

    def returns_awaitable(event: PolicyEvent) -> Awaitable[None]:
        return Later()

    with pytest.raises(TypeError, match="use a sync hook here"):
        emit_sync(DeadlineExpired(policy="d", seconds=None), (returns_awaitable,))


# --- default logging ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "level", "message"),
    [
        (
            RetryScheduled(policy="fetch", attempt=2, delay=0.25, error=OSError("reset")),
            logging.INFO,
            "fetch: attempt 2 failed (OSError: reset); retrying in 0.25 s",
        ),
        (
            RetryScheduled(policy="fetch", attempt=1, delay=1.0, result=503),
            logging.INFO,
            "fetch: attempt 1 failed (result 503); retrying in 1 s",
        ),
        (
            RetryGaveUp(policy="fetch", attempts=3, elapsed=1.5, reason="no attempts left"),
            logging.WARNING,
            "fetch: gave up after 3 attempts in 1.5 s: no attempts left",
        ),
        (
            BreakerStateChanged(
                policy="db", old=CircuitState.CLOSED, new=CircuitState.OPEN, reason="5 failures"
            ),
            logging.WARNING,
            "db: circuit closed -> open (5 failures)",
        ),
        (
            BreakerStateChanged(policy="db", old=CircuitState.OPEN, new=CircuitState.HALF_OPEN),
            logging.INFO,
            "db: circuit open -> half_open",
        ),
        (
            CallRejected(policy="db", by="breaker", retry_after=12.5),
            logging.INFO,
            "db: call rejected by breaker, retry after 12.5 s",
        ),
        (
            CallRejected(policy="pool", by="bulkhead"),
            logging.INFO,
            "pool: call rejected by bulkhead",
        ),
        (
            DeadlineExpired(policy="deadline", seconds=2.5),
            logging.INFO,
            "deadline: deadline of 2.5 s expired",
        ),
        (
            DeadlineExpired(policy="deadline_at", seconds=None),
            logging.INFO,
            "deadline_at: deadline expired",
        ),
        (PolicyEvent(policy="custom"), logging.DEBUG, "PolicyEvent(policy='custom')"),
    ],
)
def test_log_levels_and_messages(
    caplog: pytest.LogCaptureFixture, event: PolicyEvent, level: int, message: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="anyway")
    log_event(event)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("anyway", level, message)
    ]


def test_retry_scheduled_is_not_formatted_when_info_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:  # pragma: no cover - must not be called
            raise AssertionError("formatted although nobody listens")

    caplog.set_level(logging.WARNING, logger="anyway")
    log_event(RetryScheduled(policy="f", attempt=1, delay=0.1, error=Unprintable()))
    assert caplog.records == []


def test_long_rejected_results_are_shortened(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="anyway")
    log_event(RetryScheduled(policy="f", attempt=1, delay=0.1, result="x" * 10_000))
    (record,) = caplog.records
    assert len(record.getMessage()) < 200
