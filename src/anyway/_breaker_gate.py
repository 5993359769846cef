"""The way in and out of a circuit breaker: admitting a call, recording how it
ended, and the events of both. :class:`BreakerGate` is the base of
:class:`~anyway.CircuitBreaker` (which adds the arguments, the operators and
introspection); ``async with`` and the guarded function (the decorator and
``call()``) share one path: :meth:`BreakerGate._enter` and
:meth:`BreakerGate._exit`, with a happy path that needs neither.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeAlias, TypeVar

import anyio

from ._breaker_remote import RemoteCircuit
from ._breaker_types import BreakerConfig
from ._circuit import Change, Circuit, plural
from ._errors import CircuitOpen, Rejected
from ._events import (
    BreakerCallRecorded,
    BreakerStateChanged,
    CallRejected,
    CircuitState,
    Hook,
    emit,
)
from ._util import (
    NotAwaitableError,
    call_async,
    check_async_function,
    check_callable_arg,
    is_control_flow,
    short_repr,
)
from .abc import BreakerStore

__all__ = ["BreakerGate"]

P = ParamSpec("P")
T = TypeVar("T")

_OPEN = CircuitState.OPEN

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


class BreakerGate:
    """Admits calls and records their outcomes (see the module docstring).

    The attributes are set by :class:`~anyway.CircuitBreaker`'s constructor.
    """

    __slots__ = (
        "_call",
        "_circuit",
        "_config",
        "_entries",
        "_fast",
        "_hooks",
        "_key",
        "_outcome_events",
        "_own_store",
        "_policy",
        "_predicate",
        "_remote",
        "_slow",
        "_stacked",
        "_started",
        "_store",
        "_types",
        "name",
    )

    name: str | None
    _call: Callable[..., Coroutine[Any, Any, Any]]
    _circuit: Circuit | None
    _config: BreakerConfig
    _entries: contextvars.ContextVar[_Node]
    _fast: Circuit | None
    _hooks: tuple[Hook, ...]
    _key: str
    _outcome_events: bool
    _own_store: bool
    _policy: str
    _predicate: Callable[[BaseException], Any] | None
    _remote: RemoteCircuit | None
    _slow: float | None
    _stacked: bool
    _started: contextvars.ContextVar[list[float]]
    _store: BreakerStore
    _types: tuple[type[BaseException], ...]

    def _open_gate(self) -> None:
        """Set up the call path, once the circuit (or the remote one) is set."""
        # the in-memory circuit, when a call admitted while closed needs no entry
        untimed = self._slow is None and not self._outcome_events
        self._fast = self._circuit if untimed else None
        self._entries = contextvars.ContextVar(f"anyway.CircuitBreaker({self._policy})")
        # whether an entry was ever pushed: until then no context holds one, and
        # __aexit__ need not look (a breaker that never left CLOSED never does)
        self._stacked = False
        # the start-time cell of the call admitted last in this context (slow calls)
        self._started = contextvars.ContextVar(f"anyway.CircuitBreaker({self._policy}).started")
        self._call = self._guard(call_async)

    # --- one way in, one way out ---------------------------------------------------

    def _changed(self, change: Change) -> BreakerStateChanged:
        old, new, reason, kind = change
        return BreakerStateChanged(policy=self._policy, old=old, new=new, reason=reason, kind=kind)

    async def _give_back(self, call: int, exc: BaseException) -> None:
        """*call* ends without an outcome, with *exc* on its way out: free its
        probe slot (bounded, shielded). A store that fails to do so never
        hides *exc* (it gets a note; a shared store's slot lease expires)."""
        circuit, remote = self._circuit, self._remote
        if circuit is not None:
            circuit.release(call)
            return
        assert remote is not None
        try:
            await remote.release(call)
        except Exception as store_error:
            exc.add_note(
                f"circuit breaker {self._policy!r} could not give back the call's probe"
                f" slot: {short_repr(store_error)}"
            )

    async def _enter(self) -> _Entry:
        """Admit a call (or raise :class:`~anyway.CircuitOpen`): the slow way,
        through the store, with events."""
        call = next(_calls)
        circuit, remote = self._circuit, self._remote
        try:
            if circuit is not None:
                ticket, change = circuit.acquire(call)
            else:
                assert remote is not None
                ticket, change = await remote.acquire(call)
            if change is not None:
                await emit(self._changed(change), self._hooks)
        except BaseException as exc:
            # cancelled or failed while asking, or in a hook: the call will not
            # run, so its probe slot goes back (a leaked slot would keep the
            # circuit half-open and refusing forever)
            await self._give_back(call, exc)
            raise
        if ticket is None:
            raise await self._refuse()
        if self._slow is None:
            return (call, ticket, _UNTIMED)
        cell = [anyio.current_time()]
        self._started.set(cell)
        return (call, ticket, cell)

    async def _refuse(self) -> CircuitOpen:
        circuit, remote = self._circuit, self._remote
        snap = circuit.snapshot() if circuit is not None else remote.cached()  # type: ignore[union-attr]
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
            except BaseException as broken:
                await self._give_back(call, broken)  # a broken predicate must not leak a slot
                raise
            if not failed:
                await self._give_back(call, exc)
                return
        limit = self._slow
        slow = limit is not None and anyio.current_time() - cell[0] > limit
        failure = exc is not None
        circuit, remote = self._circuit, self._remote
        if circuit is not None:
            change = circuit.record(call, ticket, failure=failure, slow=slow)
        else:
            assert remote is not None
            try:
                change = await remote.record(call, ticket, failure=failure, slow=slow)
            except Exception as store_error:
                if exc is None:
                    raise  # the call succeeded: the store's error is the one to report
                exc.add_note(
                    f"circuit breaker {self._policy!r} could not record this failure:"
                    f" {short_repr(store_error)}"
                )
                return
        if self._outcome_events:
            outcome: Literal["success", "failure"] = "failure" if failure else "success"
            recorded = BreakerCallRecorded(
                policy=self._policy, outcome=outcome, slow=slow, error=exc
            )
            await emit(recorded, self._hooks)
        if change is not None:
            if exc is not None and change[1] is _OPEN:
                exc.add_note(f"circuit breaker {self._policy!r} opened: {change[2]}")
            await emit(self._changed(change), self._hooks)

    # The happy path, on the in-memory store without slow-call tracking: a
    # call admitted while closed takes its ticket from the circuit and, if it
    # succeeds, records the success there (succeed_closed, or succeed_light
    # for `async with`, which keeps no ticket); both without an
    # await, and without the clock except for a time window. Anything else goes
    # through _enter() and _exit(). `async with` and the guarded function
    # (decorator and call()) are the two ways in.

    async def __aenter__(self) -> None:
        fast = self._fast
        if fast is not None and fast.closed_ticket is not None:
            return  # a light entry: nothing to remember (see _Node)
        entry = await self._enter()
        var = self._entries
        var.set((entry, var.get(None)))
        self._stacked = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        var = self._entries
        node = var.get(None) if self._stacked else None
        if node is None:  # admitted while closed (a light entry)
            fast = self._fast
            assert fast is not None, "__aexit__ without __aenter__"
            if exc is None:  # counts if the circuit is still closed
                change = fast.succeed_light()
                if change is not None:
                    await emit(self._changed(change), self._hooks)
                return
            ticket = fast.closed_ticket
            if ticket is None:
                return  # no longer closed: stale
            entry: _Entry = (0, ticket, _UNTIMED)
        else:
            var.set(node[1])
            entry = node[0]
        await self._exit(entry, exc)

    def _guard(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """*fn* through the breaker: the body of the decorator and of call()."""
        fast = self._fast
        enter = self._enter
        leave = self._exit

        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            ticket = fast.closed_ticket if fast is not None else None
            entry = (0, ticket, _UNTIMED) if ticket is not None else await enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                await leave(entry, exc)
                raise
            if ticket is None:
                await leave(entry, None)
            else:
                change = fast.succeed_closed(ticket)  # type: ignore[union-attr]
                if change is not None:
                    await emit(self._changed(change), self._hooks)
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

    def call(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """``await breaker.call(fn, *args, **kwargs)``: ``await fn(*args,
        **kwargs)`` through the breaker. A sync *fn* is a ``TypeError`` (never
        counted). (A plain method returning the guarded coroutine: one
        coroutine fewer than an ``async def`` wrapper.)"""
        target: object = fn
        if not callable(target):
            check_callable_arg("fn", target)
        guarded: Coroutine[Any, Any, T] = self._call("fn", fn, *args, **kwargs)
        return guarded

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call goes through the breaker.
        A synchronous function is a ``TypeError``."""
        check_async_function("the decorated function", fn)
        return functools.wraps(fn)(self._guard(fn))
