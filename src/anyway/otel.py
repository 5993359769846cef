"""OpenTelemetry metrics for anyway's events (the ``otel`` extra:
``pip install 'anyway[otel]'``).

::

    import anyway.otel

    anyway.otel.instrument()  # every policy's events -> metrics, via the global MeterProvider

or, to choose the provider and where the hook goes::

    hook = anyway.otel.OpenTelemetryHook(meter_provider=provider)
    breaker = anyway.CircuitBreaker(name="db", hooks=[hook])  # only this breaker

Metrics (every data point has the attribute ``anyway.policy``: the breaker's,
bulkhead's or limiter's name, or the retried function's qualified name):

``anyway.retry.retries`` (counter)
    retries scheduled (:class:`~anyway.RetryScheduled`).
``anyway.retry.give_ups`` (counter, ``anyway.reason``)
    retrying stopped at a limit (:class:`~anyway.RetryGaveUp`); the reason is
    the event's ``kind``: one of ``attempts``, ``timeout``, ``deadline``,
    ``budget``, ``other``.
``anyway.rejections`` (counter, ``anyway.rejected_by``)
    calls refused without running (:class:`~anyway.CallRejected`), by
    ``breaker``, ``bulkhead`` or ``limiter``.
``anyway.breaker.state`` (up-down counter, ``anyway.breaker.state``)
    how many breakers of that name are in each state (``closed``, ``open``,
    ``half_open``): 1 for the current state, 0 for the others. A breaker
    appears at its first change of state.
``anyway.breaker.transitions`` (counter, ``anyway.breaker.from``, ``anyway.breaker.to``, ``anyway.breaker.kind``)
    changes of state; the kind is the event's
    :data:`~anyway.TransitionKind` (``failures``, ``probe_failed``...).
``anyway.breaker.outcomes`` (counter, ``anyway.breaker.outcome``, ``anyway.breaker.slow``)
    outcomes recorded by breakers made with ``outcome_events=True``
    (:class:`~anyway.BreakerCallRecorded`): ``success`` or ``failure``.
``anyway.deadlines.expired`` (counter)
    expired deadlines (:class:`~anyway.DeadlineExpired`).
``anyway.limiter.limit`` (up-down counter) and ``anyway.limiter.limit_changes`` (counter, ``anyway.reason``)
    changes of an :class:`~anyway.AdaptiveLimiter`'s limit (:class:`~anyway.LimitChanged`):
    the up-down counter sums the changes (``new - old``), so it reads as the
    distance from the initial limit.
``anyway.loop.blocked`` (counter) and ``anyway.loop.blocked.duration`` (histogram, s)
    event-loop stalls reported by :func:`anyway.watchdog` (:class:`~anyway.LoopBlocked`).
``anyway.redis.failed_open`` (counter, ``anyway.operation``)
    calls let through unchecked while Redis was unavailable
    (``on_unavailable="fail_open"``, :class:`anyway.redis.RedisFailedOpen`).

The hook is synchronous and cheap (a dictionary lookup and an ``add`` per
event), and events only happen when a policy decides something, never on
the happy path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    from opentelemetry import metrics as _metrics
except ImportError as _missing:
    raise ImportError(
        "anyway.otel needs the OpenTelemetry API: pip install 'anyway[otel]' (or opentelemetry-api)"
    ) from _missing

from . import __version__
from ._events import (
    BreakerCallRecorded,
    BreakerStateChanged,
    CallRejected,
    DeadlineExpired,
    LimitChanged,
    LoopBlocked,
    PolicyEvent,
    RedisFailedOpen,
    RetryGaveUp,
    RetryScheduled,
    add_hook,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider

__all__ = ["OpenTelemetryHook", "instrument"]


class OpenTelemetryHook:
    """A hook (see :func:`anyway.add_hook`) that records anyway's events as
    OpenTelemetry metrics (listed in :mod:`anyway.otel`).

    *meter*: the meter to create the instruments on; otherwise one named
    ``"anyway"`` from *meter_provider* (default: the global provider).
    """

    __slots__ = (
        "_blocked",
        "_blocked_seconds",
        "_deadlines",
        "_failed_open",
        "_give_ups",
        "_limit",
        "_limit_changes",
        "_outcomes",
        "_rejections",
        "_retries",
        "_seen",
        "_state",
        "_transitions",
    )

    def __init__(
        self, *, meter_provider: MeterProvider | None = None, meter: Meter | None = None
    ) -> None:
        if meter is None:
            meter = _metrics.get_meter("anyway", __version__, meter_provider=meter_provider)
        elif meter_provider is not None:
            raise TypeError("pass meter= or meter_provider=, not both")
        self._retries = meter.create_counter(
            "anyway.retry.retries", unit="{retry}", description="Retries scheduled"
        )
        self._give_ups = meter.create_counter(
            "anyway.retry.give_ups", unit="{call}", description="Calls whose retrying gave up"
        )
        self._rejections = meter.create_counter(
            "anyway.rejections",
            unit="{call}",
            description="Calls refused without running (breaker, bulkhead, limiter)",
        )
        self._state = meter.create_up_down_counter(
            "anyway.breaker.state",
            unit="{breaker}",
            description="Circuit breakers in each state",
        )
        self._transitions = meter.create_counter(
            "anyway.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker changes of state",
        )
        self._outcomes = meter.create_counter(
            "anyway.breaker.outcomes",
            unit="{call}",
            description="Outcomes recorded by circuit breakers (with outcome_events=True)",
        )
        self._limit = meter.create_up_down_counter(
            "anyway.limiter.limit",
            unit="{call}",
            description="Changes of AdaptiveLimiter limits (the sum of changes since start)",
        )
        self._limit_changes = meter.create_counter(
            "anyway.limiter.limit_changes",
            unit="{change}",
            description="AdaptiveLimiter limit changes",
        )
        self._blocked = meter.create_counter(
            "anyway.loop.blocked",
            unit="{stall}",
            description="Event-loop stalls seen by watchdog()",
        )
        self._blocked_seconds = meter.create_histogram(
            "anyway.loop.blocked.duration", unit="s", description="How long each stall lasted"
        )
        self._failed_open = meter.create_counter(
            "anyway.redis.failed_open",
            unit="{call}",
            description="Calls let through unchecked while Redis was unavailable (fail_open)",
        )
        self._deadlines = meter.create_counter(
            "anyway.deadlines.expired", unit="{deadline}", description="Deadlines that expired"
        )
        self._seen: set[str] = set()  # breakers whose state is counted

    def __repr__(self) -> str:
        return f"<anyway.otel.OpenTelemetryHook breakers={len(self._seen)}>"

    def __call__(self, event: PolicyEvent) -> None:
        """Record *event*."""
        policy = event.policy
        match event:
            case RetryScheduled():
                self._retries.add(1, {"anyway.policy": policy})
            case RetryGaveUp():
                self._give_ups.add(1, {"anyway.policy": policy, "anyway.reason": event.kind})
            case CallRejected():
                self._rejections.add(1, {"anyway.policy": policy, "anyway.rejected_by": event.by})
            case BreakerStateChanged():
                old, new = event.old.value, event.new.value
                if policy in self._seen:
                    self._state.add(-1, {"anyway.policy": policy, "anyway.breaker.state": old})
                else:
                    self._seen.add(policy)
                self._state.add(1, {"anyway.policy": policy, "anyway.breaker.state": new})
                self._transitions.add(
                    1,
                    {
                        "anyway.policy": policy,
                        "anyway.breaker.from": old,
                        "anyway.breaker.to": new,
                        "anyway.breaker.kind": event.kind or "other",
                    },
                )
            case BreakerCallRecorded():
                self._outcomes.add(
                    1,
                    {
                        "anyway.policy": policy,
                        "anyway.breaker.outcome": event.outcome,
                        "anyway.breaker.slow": event.slow,
                    },
                )
            case DeadlineExpired():
                self._deadlines.add(1, {"anyway.policy": policy})
            case LimitChanged():
                self._limit.add(event.new - event.old, {"anyway.policy": policy})
                self._limit_changes.add(1, {"anyway.policy": policy, "anyway.reason": event.reason})
            case LoopBlocked():
                self._blocked.add(1)
                self._blocked_seconds.record(event.seconds)
            case RedisFailedOpen():
                self._failed_open.add(
                    1, {"anyway.policy": policy, "anyway.operation": event.operation}
                )
            case _:
                pass  # events of later versions: nothing to record yet


def instrument(
    *, meter_provider: MeterProvider | None = None, meter: Meter | None = None
) -> OpenTelemetryHook:
    """Record the events of every policy as metrics: build an
    :class:`OpenTelemetryHook` and add it to the global hooks. Returns it
    (``anyway.remove_hook(hook)`` stops the recording)."""
    hook = OpenTelemetryHook(meter_provider=meter_provider, meter=meter)
    add_hook(hook)
    return hook
