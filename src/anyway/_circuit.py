"""A circuit's state machine, and the default in-memory store that runs one per key.

:class:`Circuit` is the state machine of :class:`~anyway.abc.BreakerStore`
(see its docstring for the rules), in memory and synchronous: the event loop
runs each method to completion, which makes every method atomic.
:class:`InMemoryBreakerStore` implements the async protocol on top of it; a
breaker on that store calls the circuit's synchronous methods directly (no
await, no allocation on the happy path), never its fields.

Time is the running event loop's ``anyio.current_time()``. A circuit
remembers the loop it last read the clock in; seen from a new loop (an
``anyio.run()`` after the one it was used in: another clock) it restarts as
new, so no wait ever comes from another loop's clock.
"""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel

from ._breaker_types import BreakerConfig, BreakerSnapshot, BreakerUpdate
from ._breaker_windows import Ring, TimeWindow, new_ring
from ._events import CircuitState, TransitionKind

__all__ = ["Change", "Circuit", "InMemoryBreakerStore", "plural"]

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_NAN = math.nan

#: A change of state: (old, new, reason, kind).
Change = tuple[CircuitState, CircuitState, str, TransitionKind | None]


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Circuit:
    """One circuit's state machine, in memory. Each public method is one
    atomic transition; those that may change the state return the
    :data:`Change` (or ``None``)."""

    __slots__ = (
        "_calls",
        "_config",
        "_consecutive",
        "_generation",
        "_loop",
        "_open_for",
        "_open_until",
        "_probe_successes",
        "_probes",
        "_state",
        "_successes",
        "_timed",
        "_window",
        "closed_ticket",
    )

    def __init__(self, config: BreakerConfig) -> None:
        self._config = config
        self._timed = isinstance(config.window, TimeWindow)  # its window needs the time
        self._loop: object = None  # the event loop whose clock the times below are on
        self._generation = 0
        self._start()

    def _start(self) -> None:
        """As new: closed, nothing counted (a new generation: older tickets go stale)."""
        self._state = _CLOSED
        self._open_until = 0.0
        self._open_for: float | None = None
        self._generation += 1
        self._clear()

    def _clear(self) -> None:
        """Clear the counts (after a change of state or generation)."""
        #: The ticket of a call admitted now while closed (``None``: not
        #: closed, ask :meth:`acquire`). Read-only outside this class: the
        #: breaker's happy path reads it instead of calling a method.
        self.closed_ticket: int | None = self._generation if self._state is _CLOSED else None
        self._consecutive = self._successes = self._calls = 0
        self._probes: set[int] = set()
        self._probe_successes = 0
        window = self._config.window
        self._window: Ring | None = None if window is None else new_ring(window)

    def _now(self) -> tuple[float, bool]:
        """The time, and whether the circuit just restarted (first look from a new loop)."""
        now = anyio.current_time()
        token = anyio.lowlevel.current_token()
        if token == self._loop:
            return now, False
        restart = self._loop is not None
        self._loop = token
        if restart:
            self._start()
        return now, restart

    def _change(self, new: CircuitState, reason: str, kind: TransitionKind) -> Change:
        old = self._state
        self._state = new
        self._generation += 1
        self._clear()
        return (old, new, reason, kind)

    def _open(self, now: float, seconds: float | None, reason: str, kind: TransitionKind) -> Change:
        self._open_for = seconds
        self._open_until = math.inf if seconds is None else now + seconds
        return self._change(_OPEN, reason, kind)

    # --- read ------------------------------------------------------------------

    @property
    def config(self) -> BreakerConfig:
        return self._config

    def state(self) -> CircuitState:
        """The state now (OPEN shows as HALF_OPEN once recovered)."""
        if self._state is _CLOSED:
            return _CLOSED
        now, _ = self._now()
        if self._state is _OPEN and now >= self._open_until:
            return _HALF_OPEN
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        """The state and counts now, changing nothing."""
        now, _ = self._now()
        return self._snapshot(now)

    def snapshot_unaged(self) -> BreakerSnapshot:
        """The state and counts as stored, without the clock (works outside an event loop)."""
        return self._snapshot(None)

    def _snapshot(self, now: float | None) -> BreakerSnapshot:
        state = self._state
        if state is _OPEN:
            if now is None or self._open_until == math.inf:
                return BreakerSnapshot(state=_OPEN, retry_after=None)
            if now >= self._open_until:
                return BreakerSnapshot(state=_HALF_OPEN)
            return BreakerSnapshot(state=_OPEN, retry_after=self._open_until - now)
        window = self._window
        if state is _CLOSED and window is not None:
            if now is not None:
                window.advance(now)
            return BreakerSnapshot(
                state=state,
                failure_count=window.failures,
                success_count=window.calls - window.failures,
                call_count=window.calls,
                slow_call_count=window.slow,
            )
        if state is _HALF_OPEN:
            return BreakerSnapshot(
                state=state,
                success_count=self._probe_successes,
                call_count=self._probe_successes,
                probes_in_flight=len(self._probes),
            )
        return BreakerSnapshot(
            state=state,
            failure_count=self._consecutive,
            success_count=self._successes,
            call_count=self._calls,
        )

    # --- the happy path ------------------------------------------------------------

    def succeed_closed(self, ticket: int) -> Change | None:
        """Record a success of a call admitted while closed with *ticket* (the
        happy path: without the clock, except for a time window)."""
        if ticket != self.closed_ticket or self._window is not None:
            return self._record(0, ticket, False, False)
        self._consecutive = 0
        self._successes += 1
        self._calls += 1
        return None

    def succeed_light(self) -> Change | None:
        """Record a success of a call admitted while closed that kept no ticket
        (``async with``'s happy path): it counts if the circuit is still
        closed, else it is stale and ignored."""
        if self._window is None and self._state is _CLOSED:
            self._consecutive = 0
            self._successes += 1
            self._calls += 1
            return None
        ticket = self.closed_ticket
        if ticket is None:
            return None
        return self._record(0, ticket, False, False)

    # --- the protocol's operations ---------------------------------------------------

    def acquire(self, call: int) -> tuple[int | None, Change | None]:
        """A ticket for *call* (``None``: refused), and the change of state it made."""
        if self._state is _CLOSED:
            return self._generation, None  # (no clock: the loop is checked before any decision)
        now, _ = self._now()
        change: Change | None = None
        if self._state is _OPEN and now >= self._open_until:
            change = self._change(
                _HALF_OPEN, f"{self._open_for:g} s since it opened", "recovery_time"
            )
        state = self._state
        if state is _CLOSED:
            return self._generation, change
        if state is _HALF_OPEN and len(self._probes) + self._probe_successes < (
            self._config.half_open_max_calls
        ):
            self._probes.add(call)
            return self._generation, change
        return None, change

    def record(self, call: int, ticket: int, *, failure: bool, slow: bool) -> Change | None:
        """The outcome of a call admitted with *ticket*."""
        return self._record(call, ticket, failure, slow)

    def _record(self, call: int, ticket: int, failure: bool, slow: bool) -> Change | None:
        """:meth:`record`, with positional arguments (a little cheaper).

        The happy path (a success while closed) reads the clock only for a
        time window, and never the event loop: the loop is checked before
        any failure is counted and before any change of state, so stale
        state from another loop is never acted upon."""
        decides = failure or self._state is not _CLOSED
        if decides:
            now, restarted = self._now()
            if restarted:
                ticket = self._generation  # every call now running was admitted in this loop
        elif self._timed:
            now = anyio.current_time()  # ages the window (not a decision)
        else:
            now = _NAN  # not needed: a success in a count window or streak
        if ticket != self._generation:
            return None  # admitted before the last change: says nothing now
        config = self._config
        state = self._state
        if state is _CLOSED:
            window = self._window
            if window is None:
                self._calls += 1
                if not failure:
                    self._consecutive = 0
                    self._successes += 1
                    return None
                self._consecutive += 1
                if self._consecutive >= config.failure_threshold:
                    reason = plural(self._consecutive, "consecutive failure")
                    return self._open(now, config.recovery_time, reason, "failures")
                return None
            window.add(now, failure, slow)
            calls = window.calls
            if calls < config.minimum_calls:
                return None
            rate = window.failures / calls
            slow_threshold = config.slow_call_rate_threshold
            kind: TransitionKind
            if rate >= config.failure_rate_threshold:
                kind = "failure_rate"
                reason = (
                    f"failure rate {rate:.0%} >= {config.failure_rate_threshold:.0%}"
                    f" over {plural(calls, 'call')}"
                )
            elif slow_threshold is not None and window.slow / calls >= slow_threshold:
                kind = "slow_call_rate"
                reason = (
                    f"slow call rate {window.slow / calls:.0%} >= {slow_threshold:.0%}"
                    f" over {plural(calls, 'call')}"
                )
            else:
                return None
            if not decides:
                # a success (or a slow call) tipped a rate: first, is it still this loop?
                now, restarted = self._now()
                if restarted:
                    return self._record(call, self._generation, failure, slow)
            return self._open(now, config.recovery_time, reason, kind)
        if state is not _HALF_OPEN or call not in self._probes:
            return None  # (OPEN issues no tickets; a call without a slot is no probe)
        self._probes.discard(call)
        if failure:
            return self._open(now, config.recovery_time, "a probe failed", "probe_failed")
        if slow:
            return self._open(now, config.recovery_time, "a probe was slow", "probe_slow")
        self._probe_successes += 1
        if self._probe_successes >= config.half_open_max_calls:
            reason = f"{plural(self._probe_successes, 'probe')} succeeded"
            return self._change(_CLOSED, reason, "probes_succeeded")
        return None

    def release(self, call: int) -> None:
        """Give back *call*'s probe slot, if it holds one."""
        self._probes.discard(call)

    def force(
        self, state: CircuitState, *, seconds: float | None = None, reset: bool = False
    ) -> Change | None:
        """An operator's change (see :meth:`anyway.abc.BreakerStore.force`).
        Only opening reads the clock, so closing works outside an event loop."""
        current = self._state
        if state is _OPEN:
            now, _ = self._now()
            if self._state is _OPEN and not reset:
                return None
            how = "until closed" if seconds is None else f"for {seconds:g} s"
            return self._open(now, seconds, f"opened by hand {how}", "operator_open")
        if state is _CLOSED:
            if current is _CLOSED:
                if reset:
                    self._generation += 1
                    self._clear()
                return None
            if reset:
                return self._change(_CLOSED, "reset by hand", "operator_reset")
            return self._change(_CLOSED, "closed by hand", "operator_close")
        raise ValueError(f"state must be CircuitState.OPEN or CircuitState.CLOSED, got {state!r}")

    def update(
        self, change: Change | None, ticket: int | None = None, *, now: bool = True
    ) -> BreakerUpdate:
        """A :class:`~anyway.BreakerUpdate` for what an operation did."""
        snapshot = self.snapshot() if now else self.snapshot_unaged()
        if change is None:
            return BreakerUpdate(snapshot=snapshot, ticket=ticket)
        old, _, reason, kind = change
        return BreakerUpdate(
            snapshot=snapshot, ticket=ticket, previous=old, reason=reason, kind=kind
        )


class InMemoryBreakerStore:
    """The default :class:`~anyway.abc.BreakerStore`: state in this process's memory.

    Each breaker gets its own store unless you pass one; share a store (and
    a ``name``) between breakers to make them one circuit. A breaker on this
    store uses the circuit's synchronous methods (``circuit()``), without
    awaiting.
    """

    __slots__ = ("_circuits",)

    def __init__(self) -> None:
        self._circuits: dict[str, Circuit] = {}

    def __repr__(self) -> str:
        return f"<InMemoryBreakerStore circuits={len(self._circuits)}>"

    def circuit(self, key: str, config: BreakerConfig) -> Circuit:
        """The state machine of *key* (made on first use)."""
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = Circuit(config)
        elif circuit.config != config:
            raise ValueError(
                f"the circuit {key!r} in this store was configured with {circuit.config};"
                f" a breaker with the same name cannot use {config} (give it another name"
                " or the same settings)"
            )
        return circuit

    async def acquire(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        """Admit a call or refuse it (see :class:`~anyway.abc.BreakerStore`)."""
        circuit = self.circuit(key, config)
        ticket, change = circuit.acquire(call)
        return circuit.update(change, ticket)

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
        circuit = self.circuit(key, config)
        return circuit.update(circuit.record(call, ticket, failure=failure, slow=slow))

    async def release(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        """An admitted call ended without an outcome: free its probe slot."""
        circuit = self.circuit(key, config)
        circuit.release(call)
        return circuit.update(None)

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
        circuit = self.circuit(key, config)
        return circuit.update(circuit.force(state, seconds=seconds, reset=reset))

    async def snapshot(self, key: str, config: BreakerConfig) -> BreakerSnapshot:
        """The state and counts now."""
        return self.circuit(key, config).snapshot()
