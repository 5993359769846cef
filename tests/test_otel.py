"""anyway.otel: events become OpenTelemetry metrics (read with the SDK's in-memory reader)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import anyway
from anyway import (
    Backoff,
    BreakerCallRecorded,
    BreakerStateChanged,
    CallRejected,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    DeadlineExpired,
    GiveUpKind,
    LimitChanged,
    LoopBlocked,
    PolicyEvent,
    RetryGaveUp,
    RetryScheduled,
)
from anyway.otel import OpenTelemetryHook, instrument
from anyway.redis import RedisFailedOpen

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN

Points = dict[tuple[str, frozenset[tuple[str, Any]]], Any]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> Points:
    """{(metric name, attributes): value} of every data point."""
    out: Points = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "anyway"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    out[(metric.name, frozenset(point.attributes.items()))] = point.value  # type: ignore[union-attr]
    return out


def key(name: str, **attributes: str) -> tuple[str, frozenset[tuple[str, Any]]]:
    return (name, frozenset((f"anyway.{k}", v) for k, v in attributes.items()))


def state(policy: str, value: str) -> tuple[str, frozenset[tuple[str, Any]]]:
    return (
        "anyway.breaker.state",
        frozenset({("anyway.policy", policy), ("anyway.breaker.state", value)}),
    )


def test_retries_and_give_ups(provider: MeterProvider, reader: InMemoryMetricReader) -> None:
    hook = OpenTelemetryHook(meter_provider=provider)
    for _ in range(3):
        hook(RetryScheduled(policy="fetch", attempt=1, delay=0.1))
    kinds: tuple[GiveUpKind, ...] = ("attempts", "timeout", "deadline", "budget", "other")
    for kind in kinds:
        # the label is the event's kind, never parsed from its words
        hook(RetryGaveUp(policy="fetch", attempts=3, elapsed=1.0, reason="budget?", kind=kind))
    hook(RetryGaveUp(policy="fetch", attempts=3, elapsed=1.0, reason="no attempts left"))
    got = points(reader)
    assert got[key("anyway.retry.retries", policy="fetch")] == 3
    for kind in kinds:
        expected = 2 if kind == "other" else 1  # no kind given: "other"
        assert got[key("anyway.retry.give_ups", policy="fetch", reason=kind)] == expected


def test_rejections_and_deadlines(provider: MeterProvider, reader: InMemoryMetricReader) -> None:
    hook = OpenTelemetryHook(meter_provider=provider)
    hook(CallRejected(policy="db", by="breaker", retry_after=3.0))
    hook(CallRejected(policy="db", by="breaker"))
    hook(CallRejected(policy="pool", by="bulkhead"))
    hook(DeadlineExpired(policy="deadline", seconds=1.0))
    hook(PolicyEvent(policy="unknown"))  # not a metric: ignored
    got = points(reader)
    assert got == {
        key("anyway.rejections", policy="db", rejected_by="breaker"): 2,
        key("anyway.rejections", policy="pool", rejected_by="bulkhead"): 1,
        key("anyway.deadlines.expired", policy="deadline"): 1,
    }


def test_breaker_state_up_down_counter(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    hook = OpenTelemetryHook(meter_provider=provider)

    def change(policy: str, old: CircuitState, new: CircuitState) -> None:
        hook(BreakerStateChanged(policy=policy, old=old, new=new, kind="failures"))

    change("db", CLOSED, OPEN)
    got = points(reader)
    assert got[state("db", "open")] == 1
    assert state("db", "closed") not in got  # never counted: no -1
    change("db", OPEN, HALF_OPEN)
    change("db", HALF_OPEN, CLOSED)
    change("cache", CLOSED, OPEN)
    got = points(reader)
    assert got[state("db", "open")] == 0
    assert got[state("db", "half_open")] == 0
    assert got[state("db", "closed")] == 1
    assert got[state("cache", "open")] == 1
    transitions = {k: v for k, v in got.items() if k[0] == "anyway.breaker.transitions"}
    assert len(transitions) == 4
    assert set(transitions.values()) == {1}
    assert ("anyway.breaker.kind", "failures") in next(iter(transitions))[1]
    assert repr(hook) == "<anyway.otel.OpenTelemetryHook breakers=2>"


def test_breaker_outcomes_and_transition_kinds(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    hook = OpenTelemetryHook(meter_provider=provider)
    hook(BreakerCallRecorded(policy="db", outcome="success"))
    hook(BreakerCallRecorded(policy="db", outcome="failure", slow=True, error=OSError()))
    hook(
        BreakerStateChanged(policy="db", old=CLOSED, new=OPEN, reason="words", kind="failure_rate")
    )
    hook(BreakerStateChanged(policy="db", old=OPEN, new=HALF_OPEN))  # no kind: "other"
    got = points(reader)
    outcomes = {k[1]: v for k, v in got.items() if k[0] == "anyway.breaker.outcomes"}
    assert outcomes == {
        frozenset(
            {
                ("anyway.policy", "db"),
                ("anyway.breaker.outcome", "success"),
                ("anyway.breaker.slow", False),
            }
        ): 1,
        frozenset(
            {
                ("anyway.policy", "db"),
                ("anyway.breaker.outcome", "failure"),
                ("anyway.breaker.slow", True),
            }
        ): 1,
    }
    kinds = {dict(k[1])["anyway.breaker.kind"] for k in got if k[0] == "anyway.breaker.transitions"}
    assert kinds == {"failure_rate", "other"}


@pytest.mark.anyio
async def test_instrument_records_real_policies(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    hook = instrument(meter_provider=provider)
    try:
        assert hook in anyway.global_hooks()
        breaker = CircuitBreaker(failure_threshold=2, name="svc")

        @anyway.resilient(
            retry=anyway.retry(
                on=ValueError, attempts=3, backoff=Backoff(initial=0, max=0, jitter=None)
            ),
            breaker=breaker,
        )
        async def op() -> None:
            await anyio.lowlevel.checkpoint()
            raise ValueError("down")

        with pytest.raises(CircuitOpen):
            await op()
    finally:
        anyway.remove_hook(hook)
    got = points(reader)
    policy = op.__qualname__
    assert got[key("anyway.retry.retries", policy=policy)] == 2
    assert got[key("anyway.rejections", policy="svc", rejected_by="breaker")] == 1
    assert got[state("svc", "open")] == 1


def test_meter_or_provider_not_both(provider: MeterProvider) -> None:
    meter = provider.get_meter("mine")
    OpenTelemetryHook(meter=meter)
    with pytest.raises(TypeError, match="pass meter= or meter_provider=, not both"):
        OpenTelemetryHook(meter=meter, meter_provider=provider)


def test_default_global_meter_provider() -> None:
    hook = OpenTelemetryHook()  # the API's no-op provider unless one is configured
    hook(CallRejected(policy="x", by="limiter"))


def test_clear_error_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "anyway.otel")
    with pytest.raises(ImportError, match="pip install 'anyway\\[otel\\]'"):
        importlib.import_module("anyway.otel")
    monkeypatch.undo()
    assert importlib.import_module("anyway.otel").OpenTelemetryHook is not None


def test_loop_stalls_and_redis_fail_open(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    hook = OpenTelemetryHook(meter_provider=provider)
    hook(LoopBlocked(policy="watchdog", seconds=0.25, threshold=0.1, stack=()))
    hook(LoopBlocked(policy="watchdog", seconds=0.5, threshold=0.1, stack=()))
    hook(RedisFailedOpen(policy="api", operation="acquire", error=OSError("down")))
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert [p.value for p in metrics["anyway.loop.blocked"]] == [2]  # type: ignore[attr-defined]
    [histogram] = metrics["anyway.loop.blocked.duration"]
    assert (histogram.count, histogram.sum) == (2, 0.75)  # type: ignore[attr-defined]
    [failed_open] = metrics["anyway.redis.failed_open"]
    assert failed_open.value == 1  # type: ignore[attr-defined]
    assert dict(failed_open.attributes or {}) == {
        "anyway.policy": "api",
        "anyway.operation": "acquire",
    }


def test_adaptive_limit_changes(provider: MeterProvider, reader: InMemoryMetricReader) -> None:
    hook = OpenTelemetryHook(meter_provider=provider)
    hook(LimitChanged(policy="db", old=10, new=13, reason="growth", latency=0.01, baseline=0.01))
    hook(LimitChanged(policy="db", old=13, new=7, reason="latency", latency=0.05, baseline=0.01))
    got = points(reader)
    assert got[key("anyway.limiter.limit", policy="db")] == -3
    assert got[key("anyway.limiter.limit_changes", policy="db", reason="growth")] == 1
    assert got[key("anyway.limiter.limit_changes", policy="db", reason="latency")] == 1
