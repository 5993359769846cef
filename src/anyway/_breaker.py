"""The circuit breaker policy.

A :class:`CircuitBreaker` counts the failures of the calls it guards. Past a
threshold it *opens*: calls are refused at once with :class:`~anyway.CircuitOpen`
instead of piling onto a dependency that is down. After ``recovery_time`` it
turns *half-open* and lets a few probe calls through: if they all succeed it
closes again, if one fails it reopens for another ``recovery_time``.

The state machine runs in a store (:class:`~anyway.abc.BreakerStore`; the
default :class:`~anyway.InMemoryBreakerStore`, see ``_circuit.py``). This
module decides what counts, enters and leaves calls (one path for ``async
with``, :meth:`CircuitBreaker.call` and the decorator), and emits events.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Final, ParamSpec, TypeVar

from ._breaker_config import NOT_GIVEN, NotGiven, build_config
from ._breaker_gate import BreakerGate
from ._breaker_remote import RemoteCircuit
from ._breaker_types import BreakerConfig, BreakerSnapshot
from ._breaker_windows import CountWindow, TimeWindow
from ._circuit import Circuit, InMemoryBreakerStore
from ._events import (
    CircuitState,
    Hook,
    check_hooks,
    emit,
    emit_sync,
)
from ._validate import ExceptionFilter, check_exception_filter, check_seconds
from .abc import BreakerStore

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN

_STORE_METHODS: Final = ("acquire", "record", "release", "force", "snapshot")

_names = itertools.count(1)


class CircuitBreaker(BreakerGate):
    """Stop calling a dependency that keeps failing; probe it after a pause.

    ::

        breaker = anyway.CircuitBreaker(failure_threshold=5, recovery_time=30, name="db")

        async with breaker:          # raises CircuitOpen at once while open
            await db.query(...)

        @breaker                     # or as a decorator
        async def fetch(key: str) -> bytes: ...

    **States.** ``CLOSED``: calls run; failures are counted.
    ``OPEN``: calls raise :class:`~anyway.CircuitOpen` without running;
    ``retry_after`` says when a probe will be allowed. ``HALF_OPEN``: once
    ``recovery_time`` has passed, up to ``half_open_max_calls`` probe calls run
    at once (the others are refused); when that many probes have succeeded
    the circuit closes; the first probe that fails (or is slow) reopens it for
    a fresh ``recovery_time``.

    **What counts.** An exception matching *on* (exception types, or a
    predicate taking the exception, as for :func:`~anyway.retry`) is a
    failure; returning is a success. Anything else is ignored, neither success
    nor failure: other exceptions (they propagate, uncounted), cancellation,
    ``KeyboardInterrupt`` and ``SystemExit`` (whatever *on* says),
    :class:`~anyway.Rejected` errors of other policies (a bulkhead or rate
    limiter that refused the call: the dependency was never reached) and a
    sync function passed where an async one is needed. An ignored call in
    half-open gives back its probe slot.

    **When it opens.** By default after ``failure_threshold`` (5) consecutive
    failures (a success resets the streak). With *window*
    (:class:`CountWindow` or :class:`TimeWindow`) it opens instead when, over
    the window and once it holds at least ``minimum_calls`` calls (default:
    10, or the window size if smaller), the failure rate reaches
    ``failure_rate_threshold`` (default 0.5), or, with ``slow_call_duration``,
    the share of calls slower than that reaches ``slow_call_rate_threshold``
    (default 1.0).

    **Store.** *store* (default: a private :class:`InMemoryBreakerStore`) keeps
    the state under the breaker's *name*; breakers sharing a store and a name
    share one circuit. *hooks* receive :class:`~anyway.BreakerStateChanged` on
    every change of state and :class:`~anyway.CallRejected` on every refusal,
    before the global hooks; with ``outcome_events=True`` also
    :class:`~anyway.BreakerCallRecorded` for every recorded success and
    failure (this costs the happy path an event per call).

    **Operators.** ``await`` :meth:`open`, :meth:`close` and :meth:`reset` to
    change the state by hand (``*_nowait`` siblings for synchronous code, on
    the in-memory store). :meth:`statistics` reads the counts.
    :meth:`derive` makes a breaker with the same settings under another name
    (one per host, say).

    **Event loops.** A breaker may be created at import time and used in
    successive ``anyio.run()`` calls: in a new event loop it behaves as if
    newly created there (see ``docs/breaker.md``).
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        failure_threshold: int | NotGiven = NOT_GIVEN,
        recovery_time: float = 30.0,
        half_open_max_calls: int = 1,
        on: ExceptionFilter = Exception,
        name: str | None = None,
        store: BreakerStore | None = None,
        window: CountWindow | TimeWindow | None = None,
        minimum_calls: int | None = None,
        failure_rate_threshold: float | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float | None = None,
        hooks: Iterable[Hook] | Hook = (),
        outcome_events: bool = False,
    ) -> None:
        self._config, self._slow = build_config(
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
            half_open_max_calls=half_open_max_calls,
            window=window,
            minimum_calls=minimum_calls,
            failure_rate_threshold=failure_rate_threshold,
            slow_call_duration=slow_call_duration,
            slow_call_rate_threshold=slow_call_rate_threshold,
        )
        self._types, self._predicate = check_exception_filter("on", on)
        given: object = name
        if given is not None and (not isinstance(given, str) or not given):
            raise TypeError(f"name must be a non-empty string or None, got {name!r}")
        self._hooks = check_hooks(hooks)
        if not isinstance(outcome_events, bool):
            raise TypeError(f"outcome_events must be True or False, got {outcome_events!r}")
        self._outcome_events = outcome_events
        self.name = name
        self._policy = name if name is not None else f"CircuitBreaker#{next(_names)}"
        self._key = self._policy

        self._own_store = store is None
        if store is None:
            store = InMemoryBreakerStore()
        elif name is None:
            raise ValueError(
                "a breaker given a store= needs a name=: the store keeps the state under"
                " that name (breakers with the same name share one circuit)"
            )
        else:
            missing = [m for m in _STORE_METHODS if not callable(getattr(store, m, None))]
            if missing:
                raise TypeError(
                    f"store must implement the anyway.abc.BreakerStore protocol; {store!r}"
                    f" has no {', '.join(missing)}"
                )
        self._store: BreakerStore = store
        # Exactly one of these runs the state machine: the in-memory circuit
        # (synchronous), or the client of another store.
        self._circuit: Circuit | None = None
        self._remote: RemoteCircuit | None = None
        if isinstance(store, InMemoryBreakerStore):
            self._circuit = store.circuit(self._key, self._config)
        else:
            self._remote = RemoteCircuit(store, self._key, self._config)
        self._open_gate()

    # --- configuration and introspection ------------------------------------

    @property
    def config(self) -> BreakerConfig:
        """The settings, as given to the store."""
        return self._config

    @property
    def store(self) -> BreakerStore:
        """Where the state lives."""
        return self._store

    @property
    def hooks(self) -> tuple[Hook, ...]:
        """This breaker's own hooks (the global ones are called after them)."""
        return self._hooks

    @property
    def slow_call_duration(self) -> float | None:
        """Calls longer than this are slow (``None``: slow calls are not tracked)."""
        return self._slow

    def derive(self, *, name: str) -> CircuitBreaker:
        """A new breaker with this one's settings (thresholds, window, *on*,
        ``recovery_time``, ``half_open_max_calls``, slow calls, *hooks*) under
        another *name*, with a circuit of its own.

        Its state lives in this breaker's *store* when one was given (under
        the new name: a shared store, such as Redis, keeps one circuit per
        name), else in a fresh private store. This breaker's state is not
        copied: the new one starts closed. Handy to make one breaker per
        host, tenant or shard from a template (as
        :class:`anyway.httpx.ResilientTransport` does)::

            template = anyway.CircuitBreaker(failure_threshold=3, name="api")
            per_host = {host: template.derive(name=f"api:{host}") for host in hosts}
        """
        given: object = name
        if not isinstance(given, str) or not given:
            raise TypeError(
                f"name must be a non-empty string, got {name!r}: a derived breaker needs"
                " a name of its own (e.g. f'{template.name}:{host}')"
            )
        config = self._config
        window = config.window
        return CircuitBreaker(
            failure_threshold=NOT_GIVEN if window is not None else config.failure_threshold,
            recovery_time=config.recovery_time,
            half_open_max_calls=config.half_open_max_calls,
            on=self._types if self._predicate is None else self._predicate,
            name=name,
            store=None if self._own_store else self._store,
            window=window,
            minimum_calls=None if window is None else config.minimum_calls,
            failure_rate_threshold=None if window is None else config.failure_rate_threshold,
            slow_call_duration=self._slow,
            slow_call_rate_threshold=config.slow_call_rate_threshold,
            hooks=self._hooks,
            outcome_events=self._outcome_events,
        )

    @property
    def state(self) -> CircuitState:
        """``CLOSED``, ``OPEN`` or ``HALF_OPEN`` now (OPEN shows HALF_OPEN as soon
        as ``recovery_time`` has passed). With a store other than the in-memory
        one: the state the last operation saw; ``await snapshot()`` asks the store."""
        circuit = self._circuit
        if circuit is not None:
            return circuit.state()
        assert self._remote is not None
        return self._remote.cached().state

    def statistics(self) -> BreakerSnapshot:
        """The state and counts now, as a frozen :class:`~anyway.BreakerSnapshot`
        (``failure_count``, ``success_count``, ``call_count``,
        ``slow_call_count``, ``probes_in_flight``, ``retry_after``).

        With a store other than the in-memory one: what the last operation
        saw (``retry_after`` aged on the local clock); ``await snapshot()``
        asks the store."""
        circuit = self._circuit
        if circuit is not None:
            return circuit.snapshot()
        assert self._remote is not None
        return self._remote.cached()

    async def snapshot(self) -> BreakerSnapshot:
        """The state and counts, read from the store."""
        circuit = self._circuit
        if circuit is not None:
            return circuit.snapshot()
        assert self._remote is not None
        return await self._remote.snapshot()

    def __repr__(self) -> str:
        aged = True
        try:
            snap = self.statistics()
        except RuntimeError:  # no event loop: what is stored, unaged
            circuit, remote = self._circuit, self._remote
            snap = circuit.snapshot_unaged() if circuit is not None else remote.cached_unaged()  # type: ignore[union-attr]
            aged = False
        config = self._config
        parts = [f"name={self.name!r}", f"state={snap.state.value}"]
        if snap.state is _CLOSED:
            if config.window is None:
                parts.append(f"failures={snap.failure_count}/{config.failure_threshold}")
            else:
                parts.append(
                    f"failures={snap.failure_count}/{snap.call_count}"
                    f" (opens at {config.failure_rate_threshold:.0%}"
                    f" of >= {config.minimum_calls})"
                )
                if config.slow_call_rate_threshold is not None:
                    parts.append(f"slow={snap.slow_call_count}/{snap.call_count}")
                parts.append(f"window={config.window!r}")
        elif snap.state is _OPEN:
            if not aged:
                after = "?"
            else:
                after = "held" if snap.retry_after is None else f"{snap.retry_after:.3g}"
            parts.append(f"retry_after={after}")
        else:
            n = config.half_open_max_calls
            parts.append(f"probes={snap.probes_in_flight}/{n} succeeded={snap.success_count}/{n}")
        return f"<CircuitBreaker {' '.join(parts)}>"

    # --- operators -----------------------------------------------------------

    async def open(self, *, seconds: float | None = None) -> None:
        """Open the circuit now. With ``seconds=None`` (the default) it stays open
        until :meth:`close` or :meth:`reset`; with a number it half-opens after
        that many seconds, as after a trip. Opening an open circuit starts the
        hold again. Calls running now finish, but their outcomes no longer count."""
        await self._force(_OPEN, _check_open_seconds(seconds), reset=True)

    async def close(self) -> None:
        """Close the circuit now, counting from zero. Nothing happens if it is
        already closed."""
        await self._force(_CLOSED, None, reset=False)

    async def reset(self) -> None:
        """Back to the initial state: closed, every count and the window cleared,
        whatever the state."""
        await self._force(_CLOSED, None, reset=True)

    def open_nowait(self, *, seconds: float | None = None) -> None:
        """:meth:`open` for synchronous code (in-memory store, sync hooks only)."""
        self._force_nowait("open", _OPEN, _check_open_seconds(seconds), reset=True)

    def close_nowait(self) -> None:
        """:meth:`close` for synchronous code (in-memory store, sync hooks only)."""
        self._force_nowait("close", _CLOSED, None, reset=False)

    def reset_nowait(self) -> None:
        """:meth:`reset` for synchronous code (in-memory store, sync hooks only)."""
        self._force_nowait("reset", _CLOSED, None, reset=True)

    async def _force(self, state: CircuitState, seconds: float | None, *, reset: bool) -> None:
        circuit, remote = self._circuit, self._remote
        if circuit is not None:
            change = circuit.force(state, seconds=seconds, reset=reset)
        else:
            assert remote is not None
            change = await remote.force(state, seconds=seconds, reset=reset)
        if change is not None:
            await emit(self._changed(change), self._hooks)

    def _force_nowait(
        self, op: str, state: CircuitState, seconds: float | None, *, reset: bool
    ) -> None:
        circuit = self._circuit
        if circuit is None:
            raise TypeError(
                f"{op}_nowait() needs the in-memory store; {self._store!r} is asked"
                f" asynchronously: write `await breaker.{op}()`"
            )
        change = circuit.force(state, seconds=seconds, reset=reset)
        if change is not None:
            emit_sync(self._changed(change), self._hooks)


def _check_open_seconds(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return check_seconds(
        "seconds", seconds, allow_zero=False, hint="; use seconds=None to hold it open"
    )
