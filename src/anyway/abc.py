"""The protocols behind anyway's pluggable parts.

* :class:`BreakerStore`: where a :class:`~anyway.CircuitBreaker` keeps its
  state. :class:`~anyway.InMemoryBreakerStore` is the default;
  ``anyway.redis.RedisBreakerStore`` shares one circuit between processes.
* :class:`Limiter`: what ``map(limiter=...)``, ``resilient(limiter=...)`` and
  ``resilient(bulkhead=...)`` accept; :class:`RateLimit` adds ``acquire``
  (:class:`~anyway.RateLimiter`, ``anyway.redis.RedisRateLimiter``).

They are :class:`typing.Protocol` classes: implement the methods, no need to
inherit. See ``docs/breaker.md`` for the exact semantics a store must keep.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, runtime_checkable

from ._breaker_types import BreakerConfig, BreakerSnapshot, BreakerUpdate
from ._events import CircuitState

__all__ = [
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerStore",
    "BreakerUpdate",
    "Limiter",
    "RateLimit",
]


@runtime_checkable
class BreakerStore(Protocol):
    """Where a :class:`~anyway.CircuitBreaker` keeps its state: one state
    machine per *key* (the breaker's name), run by the store.

    **Atomic.** Each method is one atomic step of the state machine (a Lua
    script on Redis): it reads the state, applies the transition and returns
    what it did, with nothing of another caller in between.

    **The store owns time.** Every transition uses the store's own monotonic
    clock (the server's ``TIME`` on Redis; ``anyio.current_time()`` in
    memory): the caller passes no time. ``retry_after`` in a snapshot is in
    seconds from the store's *now*. Only the duration of a call (``slow``) is
    measured by the breaker.

    **Calls and tickets.** The breaker gives every admission attempt a *call*
    id, an ``int`` unique within the process (a store shared between
    processes qualifies it with an id of its own, e.g. a random nonce per
    store instance). ``acquire`` answers with a *ticket* (the circuit's
    generation, bumped on every change of state) or ``None`` (refused). In
    HALF_OPEN an admitted call holds one of ``half_open_max_calls`` probe
    slots, under its call id. For each admitted call the breaker later calls
    exactly one of ``record`` (an outcome) and ``release`` (no outcome).

    ``acquire(key, config, call)``
        Admit or refuse. OPEN whose recovery time has passed turns HALF_OPEN
        here (``previous``/``kind="recovery_time"`` in the update). CLOSED:
        admitted. HALF_OPEN: admitted while fewer than
        ``half_open_max_calls`` probes are running or have succeeded; the
        slot is reserved under *call*. OPEN: refused (``ticket=None``,
        ``snapshot.retry_after`` set unless held open).
    ``record(key, config, call, ticket, *, failure, slow)``
        The outcome of an admitted call. A ticket older than the current
        generation is ignored (the circuit changed since; the update shows no
        change). CLOSED: counts it (consecutive streak or window) and may open
        (``failures``, ``failure_rate``, ``slow_call_rate``). HALF_OPEN: frees
        *call*'s slot (an outcome of a call that holds no slot is ignored); a
        failure or a slow call reopens (``probe_failed``, ``probe_slow``) for
        ``recovery_time``; ``half_open_max_calls`` successes close
        (``probes_succeeded``) with every count cleared.
    ``release(key, config, call)``
        *call* ended without an outcome (cancelled, an ignored error, or its
        ``acquire`` was interrupted and may or may not have happened): free its
        probe slot if it holds one. Idempotent; an unknown call is a no-op.
    ``force(key, config, state, *, seconds=None, reset=False)``
        An operator's change. ``OPEN``: open for *seconds* (then half-open as
        after a trip), or until forced closed when ``None``
        (``operator_open``). ``CLOSED``: close, counts cleared
        (``operator_close``). When the circuit is already in *state* nothing
        changes, unless *reset*: then counts and window are cleared too
        (``operator_reset`` if the state changed). Any other state is a
        ``ValueError``.
    ``snapshot(key, config)``
        The state and counts now, changing nothing (OPEN past its recovery
        time shows as HALF_OPEN with zero counts).

    Every change of state bumps the generation and clears the counts, the
    window and the probe slots. An unknown key is a fresh CLOSED circuit.

    **Cancellation and failures.** ``acquire``, ``force`` and ``snapshot``
    honour the caller's cancellation and deadline; when ``acquire`` is
    interrupted the breaker calls ``release(call)`` (so a slot reserved by a
    script whose answer was lost is given back). ``record`` and ``release``
    run shielded, for a bounded time (``STORE_TIMEOUT``), since the call has
    already ended. A store that cannot reach its backend raises an
    :class:`~anyway.Rejected` subclass (never counted as a failure), or admits
    the call itself (fail-open); it never hangs past the caller's deadline.
    A shared store should let a probe slot expire after a lease of its choice
    (e.g. ``recovery_time``), so that a process that died holding one cannot
    keep the circuit half-open forever.
    """

    async def acquire(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        """Admit *call* (``ticket``) or refuse it (``ticket=None``)."""
        ...

    async def record(
        self,
        key: str,
        config: BreakerConfig,
        call: int,
        ticket: int,
        *,
        failure: bool,
        slow: bool,
    ) -> BreakerUpdate:
        """Record the outcome of an admitted call."""
        ...

    async def release(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        """Give back *call*'s probe slot, if it holds one; count nothing."""
        ...

    async def force(
        self,
        key: str,
        config: BreakerConfig,
        state: CircuitState,
        *,
        seconds: float | None = None,
        reset: bool = False,
    ) -> BreakerUpdate:
        """Open or close the circuit by hand."""
        ...

    async def snapshot(self, key: str, config: BreakerConfig) -> BreakerSnapshot:
        """Read the state and counts."""
        ...


@runtime_checkable
class Limiter(Protocol):
    """What ``map(limiter=...)``, ``resilient(limiter=...)`` and
    ``resilient(bulkhead=...)`` accept: an async context manager around one
    call.

    ``__aenter__`` waits until the call may run (it may raise a
    :class:`~anyway.Rejected` subclass instead: never counted by a breaker);
    ``__aexit__`` gives back what the limiter holds per call (a concurrency
    slot; nothing for a rate limiter, whose units are spent). A cancelled
    ``__aenter__`` takes nothing. Examples: :class:`~anyway.RateLimiter`,
    :class:`~anyway.Bulkhead`, :class:`anyio.CapacityLimiter`,
    ``anyway.redis.RedisRateLimiter``.
    """

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool | None: ...


@runtime_checkable
class RateLimit(Limiter, Protocol):
    """A :class:`Limiter` that also grants *cost* units at once:
    :class:`~anyway.RateLimiter` and ``anyway.redis.RedisRateLimiter``.

    ``acquire(cost, timeout=None)`` waits (FIFO) until *cost* units conform;
    with *timeout*, raises :class:`~anyway.RateLimitExceeded` (with
    ``retry_after``) at once when the wait would be longer, taking nothing. A
    cancelled waiter takes nothing. ``try_acquire`` is not part of the
    protocol: it is synchronous in memory and async on Redis.
    """

    async def acquire(self, cost: int = 1, *, timeout: float | None = None) -> None: ...  # noqa: ASYNC109
