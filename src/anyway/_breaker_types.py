"""The values a circuit breaker and its store exchange: the configuration the
store runs the state machine with, a snapshot of the state, and what one store
operation did. Shared by :mod:`anyway.abc` (the protocol), the in-memory store
and :class:`~anyway.CircuitBreaker`."""

from __future__ import annotations

from dataclasses import dataclass

from ._breaker_windows import Window
from ._events import CircuitState, TransitionKind

__all__ = ["BreakerConfig", "BreakerSnapshot", "BreakerUpdate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """What a :class:`~anyway.abc.BreakerStore` needs to run a breaker's state
    machine; built by :class:`~anyway.CircuitBreaker` from its arguments and
    passed to every store operation (so a shared store keeps no configuration).

    ``window`` is ``None`` in the consecutive-failures mode (then only
    ``failure_threshold`` decides); otherwise ``minimum_calls``,
    ``failure_rate_threshold`` and ``slow_call_rate_threshold`` (``None`` when
    slow calls are not tracked) decide over the window.
    """

    failure_threshold: int
    recovery_time: float
    half_open_max_calls: int
    window: Window | None = None
    minimum_calls: int = 1
    failure_rate_threshold: float = 1.0
    slow_call_rate_threshold: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSnapshot:
    """A breaker's state and counts at one moment (what
    :meth:`~anyway.CircuitBreaker.statistics` returns).

    ``failure_count``: the failures that count toward opening (the current
    streak of consecutive failures, or the failures in the sliding window).
    ``success_count``: successes since the circuit closed (in the window, in
    failure-rate mode; successful probes when half-open). ``call_count``:
    calls recorded since the circuit closed (in the window; finished probes
    when half-open). ``slow_call_count``: slow calls in the window.
    ``probes_in_flight``: probes running now (half-open only).
    ``retry_after``: when open, seconds until a probe is let through
    (``None`` if held open by :meth:`~anyway.CircuitBreaker.open`); else ``None``.
    """

    state: CircuitState
    failure_count: int = 0
    success_count: int = 0
    call_count: int = 0
    slow_call_count: int = 0
    probes_in_flight: int = 0
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerUpdate:
    """What one store operation did.

    ``snapshot``: the state after it. ``ticket``: for ``acquire`` only, the
    ticket of the admitted call, or ``None`` when it is refused. When the
    operation changed the state: ``previous`` (the state before), ``reason``
    (why, in words) and ``kind`` (why, as a :data:`~anyway.TransitionKind`).
    """

    snapshot: BreakerSnapshot
    ticket: int | None = None
    previous: CircuitState | None = None
    reason: str = ""
    kind: TransitionKind | None = None
