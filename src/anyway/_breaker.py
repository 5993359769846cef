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

import contextvars
import enum
import functools
import itertools
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeAlias, TypeVar

import anyio
import anyio.lowlevel

from ._breaker_types import BreakerConfig, BreakerSnapshot, BreakerUpdate
from ._breaker_windows import CountWindow, TimeWindow
from ._circuit import Change, Circuit, InMemoryBreakerStore, plural
from ._errors import CircuitOpen, Rejected
from ._events import (
    BreakerStateChanged,
    CallRejected,
    CircuitState,
    Hook,
    check_hooks,
    emit,
    emit_sync,
)
from ._util import (
    NotAwaitableError,
    call_async,
    check_async_function,
    check_callable_arg,
    is_control_flow,
)
from ._validate import (
    ExceptionFilter,
    check_count,
    check_exception_filter,
    check_number,
    check_seconds,
)
from .abc import BreakerStore

__all__ = ["STORE_TIMEOUT", "CircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN

#: How long a breaker waits, shielded from cancellation, for a store to
#: record an outcome or give back a probe slot (the call has ended: that must
#: not be lost to a cancellation, nor hang).
STORE_TIMEOUT: Final = 5.0

_STORE_METHODS: Final = ("acquire", "record", "release", "force", "snapshot")


class _NotGiven(enum.Enum):
    NOT_GIVEN = enum.auto()


_NOT_GIVEN: Final = _NotGiven.NOT_GIVEN
_DEFAULT_FAILURE_THRESHOLD: Final = 5

_names = itertools.count(1)
#: Call ids, unique in the process (see anyway.abc.BreakerStore).
_calls = itertools.count(1)

# (call id, ticket, [start time]): what the exit of an admitted call needs.
# The start time sits in a cell that mark_call_start() can move.
_Entry: TypeAlias = tuple[int, int, list[float]]
_UNTIMED: Final[list[float]] = [0.0]  # the cell of calls whose duration does not matter

# ``async with breaker:`` keeps the entries of the calls it admitted in a
# context variable (one per breaker), as a linked stack: (entry, the outer
# node). ``__aexit__`` pops its own.
#
# Setting a context variable costs about as much as the rest of the happy
# path, so on the in-memory store without slow-call tracking a call admitted
# while CLOSED pushes nothing ("light" entry): only probes do. At exit, an
# empty stack means "admitted while closed": counted if the circuit is still
# closed, ignored otherwise. A probe entry on top is this call's, except when
# the same breaker is nested in one task across an operator's close(): then
# the inner call pops the outer probe's stale entry, so the inner outcome is
# ignored and the outer one is counted as a closed call. Both are real,
# recent outcomes; no probe slot or count is corrupted, since a stale ticket
# changes nothing and the slot is given back when the circuit changes.
_Node: TypeAlias = tuple[_Entry, Any]


def _check_rate(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    return check_number(
        name,
        value,
        minimum=0.0,
        allow_minimum=False,
        maximum=1.0,
        hint=" (a rate in (0, 1], e.g. 0.5 for 50%)",
    )


class CircuitBreaker:
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
    before the global hooks.

    **Operators.** ``await`` :meth:`open`, :meth:`close` and :meth:`reset` to
    change the state by hand (``*_nowait`` siblings for synchronous code, on
    the in-memory store). :meth:`statistics` reads the counts.
    :meth:`derive` makes a breaker with the same settings under another name
    (one per host, say).

    **Event loops.** A breaker may be created at import time and used in
    successive ``anyio.run()`` calls: in a new event loop it behaves as if
    newly created there (see ``docs/breaker.md``).
    """

    __slots__ = (
        "_call",
        "_circuit",
        "_config",
        "_entries",
        "_failure_threshold_given",
        "_fast",
        "_hooks",
        "_key",
        "_last",
        "_last_loop",
        "_last_time",
        "_own_store",
        "_policy",
        "_predicate",
        "_slow",
        "_started",
        "_store",
        "_types",
        "name",
    )

    def __init__(
        self,
        *,
        failure_threshold: int | Literal[_NotGiven.NOT_GIVEN] = _NOT_GIVEN,
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
    ) -> None:
        self._failure_threshold_given = failure_threshold is not _NOT_GIVEN
        threshold = check_count(
            "failure_threshold",
            _DEFAULT_FAILURE_THRESHOLD if failure_threshold is _NOT_GIVEN else failure_threshold,
        )
        recovery_time = check_seconds(
            "recovery_time",
            recovery_time,
            allow_zero=False,
            hint="; to keep a circuit open until you close it, call `await breaker.open()`",
        )
        half_open_max_calls = check_count("half_open_max_calls", half_open_max_calls)
        self._types, self._predicate = check_exception_filter("on", on)
        given: object = name
        if given is not None and (not isinstance(given, str) or not given):
            raise TypeError(f"name must be a non-empty string or None, got {name!r}")
        self._hooks = check_hooks(hooks)
        self._config, self._slow = self._configure(
            threshold,
            recovery_time,
            half_open_max_calls,
            window,
            minimum_calls,
            failure_rate_threshold,
            slow_call_duration,
            slow_call_rate_threshold,
        )
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
        self._circuit: Circuit | None = None
        if isinstance(store, InMemoryBreakerStore):
            self._circuit = store.circuit(self._key, self._config)
        # the in-memory circuit, when calls admitted while closed need no entry
        self._fast = self._circuit if self._slow is None else None
        # another store: the last snapshot it sent, when (local clock) and in which loop
        self._last = BreakerSnapshot(state=_CLOSED)
        self._last_time = -math.inf
        self._last_loop: object = None
        self._entries: contextvars.ContextVar[_Node] = contextvars.ContextVar(
            f"anyway.CircuitBreaker({self._policy})"
        )
        self._call = self._guard(call_async)
        # the start-time cell of the call admitted last in this context (slow calls)
        self._started: contextvars.ContextVar[list[float]] = contextvars.ContextVar(
            f"anyway.CircuitBreaker({self._policy}).started"
        )

    def _configure(
        self,
        failure_threshold: int,
        recovery_time: float,
        half_open_max_calls: int,
        window: object,
        minimum_calls: int | None,
        failure_rate_threshold: float | None,
        slow_call_duration: float | None,
        slow_call_rate_threshold: float | None,
    ) -> tuple[BreakerConfig, float | None]:
        """The store's configuration, and the slow-call duration."""
        if window is None:
            for option, value in (
                ("minimum_calls", minimum_calls),
                ("failure_rate_threshold", failure_rate_threshold),
                ("slow_call_duration", slow_call_duration),
                ("slow_call_rate_threshold", slow_call_rate_threshold),
            ):
                if value is not None:
                    raise ValueError(
                        f"{option}={value!r} needs a sliding window: pass"
                        " window=CountWindow(size) or window=TimeWindow(seconds)"
                        " (without one the breaker counts consecutive failures)"
                    )
            config = BreakerConfig(
                failure_threshold=failure_threshold,
                recovery_time=recovery_time,
                half_open_max_calls=half_open_max_calls,
            )
            return config, None
        if not isinstance(window, CountWindow | TimeWindow):
            raise TypeError(
                f"window must be CountWindow(size), TimeWindow(seconds) or None, got {window!r}"
            )
        if self._failure_threshold_given:
            raise ValueError(
                f"failure_threshold={failure_threshold!r} counts consecutive failures and"
                " does not apply with a window; use failure_rate_threshold= (a rate in (0, 1])"
            )
        if minimum_calls is None:
            minimum_calls = min(10, window.size) if isinstance(window, CountWindow) else 10
        minimum_calls = check_count("minimum_calls", minimum_calls)
        if isinstance(window, CountWindow) and window.size < minimum_calls:
            raise ValueError(
                f"window=CountWindow({window.size}) is smaller than minimum_calls="
                f"{minimum_calls}: the failure rate would never be judged; use"
                " a larger window or a smaller minimum_calls"
            )
        rate = _check_rate("failure_rate_threshold", failure_rate_threshold, 0.5)
        slow_rate: float | None = None
        slow = None
        if slow_call_duration is not None:
            slow = check_seconds("slow_call_duration", slow_call_duration, allow_zero=False)
            slow_rate = _check_rate("slow_call_rate_threshold", slow_call_rate_threshold, 1.0)
        elif slow_call_rate_threshold is not None:
            raise ValueError(
                f"slow_call_rate_threshold={slow_call_rate_threshold!r} needs"
                " slow_call_duration= (the duration above which a call is slow)"
            )
        config = BreakerConfig(
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
            half_open_max_calls=half_open_max_calls,
            window=window,
            minimum_calls=minimum_calls,
            failure_rate_threshold=rate,
            slow_call_rate_threshold=slow_rate,
        )
        return config, slow

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
            failure_threshold=_NOT_GIVEN if window is not None else config.failure_threshold,
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
        )

    @property
    def state(self) -> CircuitState:
        """``CLOSED``, ``OPEN`` or ``HALF_OPEN`` now (OPEN shows HALF_OPEN as soon
        as ``recovery_time`` has passed). With a store other than the in-memory
        one: the state the last operation saw; ``await snapshot()`` asks the store."""
        circuit = self._circuit
        if circuit is not None:
            return circuit.state()
        return self._cached().state

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
        return self._cached()

    async def snapshot(self) -> BreakerSnapshot:
        """The state and counts, read from the store."""
        circuit = self._circuit
        if circuit is not None:
            return circuit.snapshot()
        snapshot = await self._store.snapshot(self._key, self._config)
        self._remember(snapshot)
        return snapshot

    def __repr__(self) -> str:
        aged = True
        try:
            snap = self.statistics()
        except RuntimeError:  # no event loop: what is stored, unaged
            snap = self._circuit.snapshot_unaged() if self._circuit is not None else self._last
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

    # --- what another store told us -------------------------------------------

    def _remember(self, snapshot: BreakerSnapshot) -> None:
        self._last = snapshot
        self._last_time = anyio.current_time()
        self._last_loop = anyio.lowlevel.current_token()

    def _seen(self, update: BreakerUpdate) -> Change | None:
        """Remember what the store said; the change of state it reports, if any."""
        snapshot = update.snapshot
        self._remember(snapshot)
        previous = update.previous
        if previous is None or previous is snapshot.state:
            return None
        return (previous, snapshot.state, update.reason, update.kind or "recovery_time")

    def _cached(self) -> BreakerSnapshot:
        last = self._last
        if last.state is not _OPEN or last.retry_after is None:
            return last
        if anyio.lowlevel.current_token() != self._last_loop:
            return BreakerSnapshot(state=_CLOSED)  # a new loop: nothing seen yet
        left = last.retry_after - (anyio.current_time() - self._last_time)
        if left <= 0:
            return BreakerSnapshot(state=_HALF_OPEN)
        return BreakerSnapshot(state=_OPEN, retry_after=left)

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
        circuit = self._circuit
        if circuit is not None:
            change = circuit.force(state, seconds=seconds, reset=reset)
        else:
            update = await self._store.force(
                self._key, self._config, state, seconds=seconds, reset=reset
            )
            change = self._seen(update)
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

    # --- one way in, one way out ---------------------------------------------------

    def _changed(self, change: Change) -> BreakerStateChanged:
        old, new, reason, kind = change
        return BreakerStateChanged(policy=self._policy, old=old, new=new, reason=reason, kind=kind)

    async def _give_back(self, call: int) -> None:
        """*call* ends without an outcome: free its probe slot (bounded, shielded)."""
        circuit = self._circuit
        if circuit is not None:
            circuit.release(call)
            return
        with anyio.move_on_after(STORE_TIMEOUT, shield=True):
            self._seen(await self._store.release(self._key, self._config, call))

    async def _enter(self) -> _Entry:
        """Admit a call (or raise :class:`~anyway.CircuitOpen`): the slow way,
        through the store, with events."""
        call = next(_calls)
        circuit = self._circuit
        try:
            if circuit is not None:
                ticket, change = circuit.acquire(call)
            else:
                update = await self._store.acquire(self._key, self._config, call)
                ticket, change = update.ticket, self._seen(update)
            if change is not None:
                await emit(self._changed(change), self._hooks)
        except BaseException:
            # cancelled or failed while asking, or in a hook: the call will not
            # run, so its probe slot goes back (a leaked slot would keep the
            # circuit half-open and refusing forever)
            await self._give_back(call)
            raise
        if ticket is None:
            raise await self._refuse()
        if self._slow is None:
            return (call, ticket, _UNTIMED)
        cell = [anyio.current_time()]
        self._started.set(cell)
        return (call, ticket, cell)

    async def _refuse(self) -> CircuitOpen:
        snap = self.statistics()
        retry_after = snap.retry_after if snap.state is _OPEN else None
        if snap.state is _OPEN and retry_after is None:
            message = (
                f"circuit breaker {self._policy!r} is held open; close() or reset()"
                " lets calls through again"
            )
        elif snap.state is _OPEN:
            message = (
                f"circuit breaker {self._policy!r} is open; a probe is allowed"
                f" in {retry_after:.3g} s"
            )
        else:
            n = self._config.half_open_max_calls
            message = (
                f"circuit breaker {self._policy!r} is half-open and its"
                f" {plural(n, 'probe')} {'is' if n == 1 else 'are'} already running"
            )
        await emit(
            CallRejected(policy=self._policy, by="breaker", retry_after=retry_after), self._hooks
        )
        return CircuitOpen(message, retry_after=retry_after, name=self.name)

    def _failed(self, exc: BaseException) -> bool:
        """Whether *exc* counts as a failure (else it is ignored, neither way)."""
        if is_control_flow(exc) or isinstance(exc, (Rejected, NotAwaitableError)):
            # cancellation, KeyboardInterrupt..., refused by a local policy, or a
            # sync function where an async one is needed: the dependency was not reached
            return False
        predicate = self._predicate
        if predicate is None:
            return isinstance(exc, self._types)
        return bool(predicate(exc))

    async def _exit(self, entry: _Entry, exc: BaseException | None) -> None:
        """Record how the call admitted as *entry* ended."""
        call, ticket, cell = entry
        if exc is not None:
            try:
                failed = self._failed(exc)
            except BaseException:
                await self._give_back(call)  # a broken predicate must not leak a probe slot
                raise
            if not failed:
                await self._give_back(call)
                return
        limit = self._slow
        slow = limit is not None and anyio.current_time() - cell[0] > limit
        failure = exc is not None
        circuit = self._circuit
        if circuit is not None:
            change = circuit.record(call, ticket, failure=failure, slow=slow)
        else:
            change = None
            with anyio.move_on_after(STORE_TIMEOUT, shield=True):
                update = await self._store.record(
                    self._key, self._config, call, ticket, failure=failure, slow=slow
                )
                change = self._seen(update)
        if change is not None:
            if exc is not None and change[1] is _OPEN:
                exc.add_note(f"circuit breaker {self._policy!r} opened: {change[2]}")
            await emit(self._changed(change), self._hooks)

    # The happy path, on the in-memory store without slow-call tracking: a
    # call admitted while closed takes its ticket from the circuit and, if it
    # succeeds with the circuit still closed, records the success there; both
    # without the clock, an await or an allocation. Anything else goes
    # through _enter() and _exit(). `async with` and the guarded function
    # (decorator and call()) are the two ways in.

    async def __aenter__(self) -> None:
        fast = self._fast
        if fast is not None and fast.closed_ticket() is not None:
            return  # a light entry: nothing to remember (see _Node)
        entry = await self._enter()
        var = self._entries
        var.set((entry, var.get(None)))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        var = self._entries
        node = var.get(None)
        if node is not None:
            var.set(node[1])
            entry = node[0]
        else:
            fast = self._fast
            assert fast is not None, "__aexit__ without __aenter__"
            ticket = fast.closed_ticket()  # admitted while closed: counts if still closed
            if ticket is None:
                return  # ...else it is stale
            if exc is None and fast.succeeded_closed(ticket):
                return
            entry = (0, ticket, _UNTIMED)
        await self._exit(entry, exc)

    def _guard(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """*fn* through the breaker: the body of the decorator and of call()."""
        fast = self._fast
        enter = self._enter
        leave = self._exit

        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            ticket = fast.closed_ticket() if fast is not None else None
            entry = (0, ticket, _UNTIMED) if ticket is not None else await enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                await leave(entry, exc)
                raise
            if ticket is None or not fast.succeeded_closed(ticket):  # type: ignore[union-attr]
                await leave(entry, None)
            return result

        return guarded

    def mark_call_start(self) -> None:
        """Time the current call's slowness from now rather than from its
        admission (for a layer inside the breaker that queues first, e.g. a
        bulkhead: queueing is not the dependency's slowness). Does nothing
        when slow calls are not tracked."""
        if self._slow is not None:
            cell = self._started.get(None)
            if cell is not None:
                cell[0] = anyio.current_time()

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` through the breaker. A sync *fn* is a
        ``TypeError`` (never counted)."""
        target: object = fn
        if not callable(target):
            check_callable_arg("fn", target)
        return await self._call("fn", fn, *args, **kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call goes through the breaker.
        A synchronous function is a ``TypeError``."""
        check_async_function("the decorated function", fn)

        return functools.wraps(fn)(self._guard(fn))


def _check_open_seconds(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return check_seconds(
        "seconds", seconds, allow_zero=False, hint="; use seconds=None to hold it open"
    )
