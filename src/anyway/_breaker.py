"""The circuit breaker, its sliding windows and its state store.

A :class:`CircuitBreaker` counts the failures of the calls it guards. Past a
threshold it *opens*: calls are refused at once with :class:`~anyway.CircuitOpen`
instead of piling onto a dependency that is down. After ``recovery_time`` it
turns *half-open* and lets a few probe calls through: if they all succeed it
closes again, if one fails it reopens for another ``recovery_time``.

Two ways to decide when to open:

* the default counts **consecutive failures** (``failure_threshold``);
* with ``window=CountWindow(n)`` or ``window=TimeWindow(seconds)`` it looks at
  the **failure rate** (and optionally the rate of slow calls) over a sliding
  window, like resilience4j.

State lives in a :class:`BreakerStore`, a small async protocol of atomic
operations that a store shared between processes (Redis) can implement. The
default :class:`InMemoryBreakerStore` is special-cased: the breaker talks to it
synchronously, so the happy path costs a few hundred nanoseconds.

Time is ``anyio.current_time()``; OPEN turns into HALF_OPEN lazily (when a
call or a look at ``state`` finds that ``recovery_time`` has passed), so there
is no background task.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import math
import sys
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, cast

import anyio
import anyio.lowlevel

from ._errors import CircuitOpen, Rejected
from ._events import (
    BreakerStateChanged,
    CallRejected,
    CircuitState,
    Hook,
    check_hooks,
    emit,
    global_hooks,
)
from ._util import NotAwaitableError as _NotAwaitable
from ._util import call_async
from ._validate import check_callable, check_count, check_number, check_seconds

__all__ = [
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerStore",
    "BreakerUpdate",
    "CircuitBreaker",
    "CountWindow",
    "InMemoryBreakerStore",
    "TimeWindow",
]

P = ParamSpec("P")
T = TypeVar("T")

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN

#: How long a breaker waits, shielded from cancellation, for a store other
#: than the in-memory one to answer (an admission or an outcome must not be
#: lost half-way because the caller was cancelled).
STORE_TIMEOUT = 5.0

ExceptionFilter: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], object]
)


# --- windows --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountWindow:
    """A sliding window over the outcomes of the last *size* calls.

    Pass it as ``CircuitBreaker(window=CountWindow(100))`` to open on the
    failure rate of the last 100 calls. Memory: one byte per call.
    """

    size: int

    def __post_init__(self) -> None:
        check_count("size", self.size, hint="; a CountWindow remembers the last `size` calls")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A sliding window over the outcomes of the calls of the last *seconds*.

    Outcomes are aggregated in *buckets* buckets of ``seconds / buckets``
    seconds each, so memory is bounded whatever the call rate; a call is
    forgotten between ``seconds - seconds / buckets`` and ``seconds`` after it
    ended (more buckets: a sharper edge).
    """

    seconds: float
    buckets: int = 10

    def __post_init__(self) -> None:
        check_seconds("seconds", self.seconds, allow_zero=False)
        check_count("buckets", self.buckets)


Window: TypeAlias = CountWindow | TimeWindow


class _CountRing:
    """The last *size* outcomes in a ring (bit 0: failure, bit 1: slow)."""

    __slots__ = ("buf", "calls", "failures", "pos", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = bytearray(size)
        self.pos = 0
        self.calls = self.failures = self.slow = 0

    def add(self, now: float | None, failure: bool, slow: bool) -> None:
        pos = self.pos
        if self.calls == self.size:
            old = self.buf[pos]
            self.failures -= old & 1
            self.slow -= old >> 1
        else:
            self.calls += 1
        self.buf[pos] = failure | (slow << 1)
        self.pos = (pos + 1) % self.size
        self.failures += failure
        self.slow += slow

    def advance(self, now: float) -> None:
        """Count windows do not age."""


class _TimeRing:
    """Per-bucket totals over the last *n* buckets of *width* seconds."""

    __slots__ = (
        "b_calls",
        "b_failures",
        "b_slow",
        "calls",
        "failures",
        "head",
        "n",
        "slow",
        "width",
    )

    def __init__(self, window: TimeWindow) -> None:
        self.n = window.buckets
        self.width = window.seconds / window.buckets
        self.b_calls = [0] * self.n
        self.b_failures = [0] * self.n
        self.b_slow = [0] * self.n
        self.calls = self.failures = self.slow = 0
        self.head: int | None = None  # index (time // width) of the newest bucket

    def advance(self, now: float) -> None:
        index = int(now // self.width)
        head = self.head
        if head is not None and index <= head:
            return
        self.head = index
        if head is None:
            return
        n = self.n
        if index - head >= n:
            self.b_calls = [0] * n
            self.b_failures = [0] * n
            self.b_slow = [0] * n
            self.calls = self.failures = self.slow = 0
            return
        for i in range(head + 1, index + 1):
            slot = i % n
            self.calls -= self.b_calls[slot]
            self.failures -= self.b_failures[slot]
            self.slow -= self.b_slow[slot]
            self.b_calls[slot] = self.b_failures[slot] = self.b_slow[slot] = 0

    def add(self, now: float | None, failure: bool, slow: bool) -> None:
        self.advance(anyio.current_time() if now is None else now)
        assert self.head is not None
        slot = self.head % self.n
        self.b_calls[slot] += 1
        self.b_failures[slot] += failure
        self.b_slow[slot] += slow
        self.calls += 1
        self.failures += failure
        self.slow += slow


# --- the store protocol ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """What a :class:`BreakerStore` needs to know to run a breaker's state
    machine; built by :class:`CircuitBreaker` from its arguments and passed to
    every store operation (so a shared store keeps no configuration).

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
    """A breaker's state and counts at one moment.

    ``failure_count``: the failures that count toward opening (the current
    streak of consecutive failures, or the failures in the sliding window).
    ``success_count``: successes since the circuit closed (in the window, in
    failure-rate mode; successful probes when half-open). ``call_count``:
    calls recorded since the circuit closed (in the window; finished probes
    when half-open). ``slow_call_count``: slow calls in the window.
    ``probes_in_flight``: probes running now (half-open only).
    ``retry_after``: when open, seconds until a probe is let through
    (``None`` if held open by :meth:`CircuitBreaker.open`); else ``None``.
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
    """What a store operation did: the state after it (``snapshot``); the
    ``ticket`` of an admitted call (``acquire`` only; ``None`` when the call is
    refused); and, when the operation changed the state, the state before it
    (``previous``) and why (``reason``)."""

    snapshot: BreakerSnapshot
    ticket: int | None = None
    previous: CircuitState | None = None
    reason: str = ""


class BreakerStore(Protocol):
    """Where a :class:`CircuitBreaker` keeps its state.

    Every operation is atomic, takes the breaker's *key* (its name) and
    :class:`BreakerConfig`, and uses the store's own monotonic clock, so that
    a store shared by several processes (e.g. on Redis, with the server's
    clock) runs one state machine for all of them:

    ``acquire``
        admit a call or refuse it. OPEN past its recovery time turns
        HALF_OPEN here. An admitted call gets a ``ticket``; in HALF_OPEN the
        ticket holds one of the ``half_open_max_calls`` probe slots.
    ``record``
        the outcome of an admitted call (``failure``, ``slow``); may open or
        close the circuit. An outcome whose ticket was issued before the last
        state change is ignored.
    ``release``
        an admitted call ended with no outcome (cancelled, or an error the
        breaker ignores): frees its probe slot, counts nothing.
    ``force``
        an operator's change: ``state`` is ``OPEN`` (for ``seconds``, or until
        forced closed when ``None``) or ``CLOSED`` (counts cleared). When the
        circuit is already in ``state`` nothing happens unless ``reset``.
    ``snapshot``
        read the state and counts.

    The breaker calls these shielded from cancellation for at most
    ``STORE_TIMEOUT`` seconds, and calls exactly one of ``record`` and
    ``release`` for each admitted call.
    """

    async def acquire(self, key: str, config: BreakerConfig) -> BreakerUpdate: ...

    async def record(
        self, key: str, config: BreakerConfig, ticket: int, *, failure: bool, slow: bool
    ) -> BreakerUpdate: ...

    async def release(self, key: str, config: BreakerConfig, ticket: int) -> BreakerUpdate: ...

    async def force(
        self,
        key: str,
        config: BreakerConfig,
        state: CircuitState,
        *,
        seconds: float | None = None,
        reset: bool = False,
    ) -> BreakerUpdate: ...

    async def snapshot(self, key: str, config: BreakerConfig) -> BreakerSnapshot: ...


_STORE_METHODS = ("acquire", "record", "release", "force", "snapshot")

# A change of state: (old, new, reason).
_Change: TypeAlias = tuple[CircuitState, CircuitState, str]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Circuit:
    """One breaker's state machine, in memory (synchronous: an event loop
    runs it one operation at a time, which makes every operation atomic)."""

    __slots__ = (
        "calls",
        "config",
        "consecutive",
        "generation",
        "open_for",
        "open_until",
        "probe_successes",
        "probes",
        "state",
        "successes",
        "window",
    )

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.state = _CLOSED
        # Bumped on every change of state: a ticket is the generation that
        # admitted the call, so late outcomes of older calls are ignored.
        self.generation = 0
        self.open_until = 0.0
        self.open_for: float | None = None
        self.window: _CountRing | _TimeRing | None = None
        self._clear()

    def _clear(self) -> None:
        self.consecutive = self.successes = self.calls = 0
        self.probes = self.probe_successes = 0
        window = self.config.window
        if window is None:
            self.window = None
        elif isinstance(window, CountWindow):
            self.window = _CountRing(window.size)
        else:
            self.window = _TimeRing(window)

    def _change(self, new: CircuitState, reason: str) -> _Change:
        old = self.state
        self.state = new
        self.generation += 1
        self._clear()
        return (old, new, reason)

    def _open(self, now: float | None, seconds: float | None, reason: str) -> _Change:
        if now is None:
            now = anyio.current_time()
        self.open_for = seconds
        self.open_until = math.inf if seconds is None else now + seconds
        return self._change(_OPEN, reason)

    def _recovered(self, now: float) -> _Change | None:
        if self.state is _OPEN and now >= self.open_until:
            return self._change(_HALF_OPEN, f"{self.open_for:g} s since it opened")
        return None

    def admit(self, now: float) -> tuple[int | None, _Change | None]:
        """A ticket (or ``None``: refused), and the change of state it made."""
        change = self._recovered(now)
        state = self.state
        if state is _CLOSED:
            return self.generation, change
        if state is _HALF_OPEN and self.probes + self.probe_successes < (
            self.config.half_open_max_calls
        ):
            self.probes += 1
            return self.generation, change
        return None, change

    def retry_after(self, now: float | None) -> float | None:
        if self.state is _OPEN and self.open_until != math.inf:
            return self.open_until - (now if now is not None else self.open_until)
        return None

    def record(
        self, ticket: int, failure: bool, slow: bool, now: float | None = None
    ) -> _Change | None:
        """Record an outcome; *now* is read from the clock only when needed
        (``None``: not read yet), as that costs more than the rest."""
        if ticket != self.generation:
            return None  # admitted before the last change: says nothing now
        config = self.config
        if self.state is _CLOSED:
            window = self.window
            if window is None:
                self.calls += 1
                if not failure:
                    self.consecutive = 0
                    self.successes += 1
                    return None
                self.consecutive += 1
                if self.consecutive >= config.failure_threshold:
                    reason = f"{_plural(self.consecutive, 'consecutive failure')}"
                    return self._open(now, config.recovery_time, reason)
                return None
            window.add(now, failure, slow)
            calls = window.calls
            if calls >= config.minimum_calls:
                rate = window.failures / calls
                if rate >= config.failure_rate_threshold:
                    reason = (
                        f"failure rate {rate:.0%} >= {config.failure_rate_threshold:.0%}"
                        f" over {_plural(calls, 'call')}"
                    )
                    return self._open(now, config.recovery_time, reason)
                slow_threshold = config.slow_call_rate_threshold
                if slow_threshold is not None and window.slow / calls >= slow_threshold:
                    reason = (
                        f"slow call rate {window.slow / calls:.0%} >= {slow_threshold:.0%}"
                        f" over {_plural(calls, 'call')}"
                    )
                    return self._open(now, config.recovery_time, reason)
            return None
        if self.state is _HALF_OPEN:
            self.probes -= 1
            if failure or slow:
                reason = "a probe failed" if failure else "a probe was slow"
                return self._open(now, config.recovery_time, reason)
            self.probe_successes += 1
            self.calls += 1
            if self.probe_successes >= config.half_open_max_calls:
                return self._change(_CLOSED, f"{_plural(self.probe_successes, 'probe')} succeeded")
        return None  # pragma: no cover - OPEN issues no tickets

    def release(self, ticket: int | None) -> None:
        if ticket == self.generation and self.state is _HALF_OPEN:  # (None: nothing to free)
            self.probes -= 1

    def force(
        self, state: CircuitState, now: float, seconds: float | None, reset: bool
    ) -> _Change | None:
        current = self.state
        if state is _OPEN:
            if current is _OPEN and not reset:
                return None
            how = "until closed" if seconds is None else f"for {seconds:g} s"
            return self._open(now, seconds, f"opened by hand {how}")
        if state is _CLOSED:
            if current is _CLOSED:
                if reset:
                    self.generation += 1
                    self._clear()
                return None
            return self._change(_CLOSED, "closed by hand")
        raise ValueError(f"state must be CircuitState.OPEN or CircuitState.CLOSED, got {state!r}")

    def snapshot(self, now: float | None) -> BreakerSnapshot:
        """The counts as of *now* (OPEN shows as HALF_OPEN once recovered);
        ``None``: as stored, without looking at the clock."""
        state = self.state
        if now is not None and state is _OPEN and now >= self.open_until:
            return BreakerSnapshot(state=_HALF_OPEN)
        window = self.window
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
        return BreakerSnapshot(
            state=state,
            failure_count=self.consecutive,
            success_count=self.probe_successes if state is _HALF_OPEN else self.successes,
            call_count=self.calls,
            probes_in_flight=self.probes,
            retry_after=self.retry_after(now),
        )


class InMemoryBreakerStore:
    """The default :class:`BreakerStore`: state in this process's memory.

    Each breaker gets its own store unless you pass one; share a store (and
    a ``name``) between breakers to make them one circuit. A breaker on this
    store reads and changes it synchronously, without awaiting.
    """

    __slots__ = ("_circuits",)

    def __init__(self) -> None:
        self._circuits: dict[str, _Circuit] = {}

    def __repr__(self) -> str:
        return f"<InMemoryBreakerStore circuits={len(self._circuits)}>"

    def _circuit(self, key: str, config: BreakerConfig) -> _Circuit:
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit(config)
        elif circuit.config != config:
            raise ValueError(
                f"the circuit {key!r} in this store was configured with {circuit.config};"
                f" a breaker with the same name cannot use {config} (give it another name"
                " or the same settings)"
            )
        return circuit

    async def acquire(self, key: str, config: BreakerConfig) -> BreakerUpdate:
        """Admit a call or refuse it (see :class:`BreakerStore`)."""
        now = anyio.current_time()
        circuit = self._circuit(key, config)
        ticket, change = circuit.admit(now)
        return _update(circuit, now, change, ticket)

    async def record(
        self, key: str, config: BreakerConfig, ticket: int, *, failure: bool, slow: bool
    ) -> BreakerUpdate:
        """Record the outcome of an admitted call."""
        now = anyio.current_time()
        circuit = self._circuit(key, config)
        return _update(circuit, now, circuit.record(ticket, failure, slow, now))

    async def release(self, key: str, config: BreakerConfig, ticket: int) -> BreakerUpdate:
        """An admitted call ended without an outcome."""
        now = anyio.current_time()
        circuit = self._circuit(key, config)
        circuit.release(ticket)
        return _update(circuit, now, None)

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
        now = anyio.current_time()
        circuit = self._circuit(key, config)
        return _update(circuit, now, circuit.force(state, now, seconds, reset))

    async def snapshot(self, key: str, config: BreakerConfig) -> BreakerSnapshot:
        """The state and counts now."""
        return self._circuit(key, config).snapshot(anyio.current_time())


def _update(
    circuit: _Circuit, now: float, change: _Change | None, ticket: int | None = None
) -> BreakerUpdate:
    snapshot = circuit.snapshot(now)
    if change is None:
        return BreakerUpdate(snapshot=snapshot, ticket=ticket)
    return BreakerUpdate(snapshot=snapshot, ticket=ticket, previous=change[0], reason=change[2])


# --- the breaker ----------------------------------------------------------------


def _check_filter(
    on: object,
) -> tuple[tuple[type[Exception], ...], Callable[[Exception], object] | None]:
    """Split ``on`` into exception types or a predicate."""
    if isinstance(on, type | tuple):
        items: tuple[object, ...] = on if isinstance(on, tuple) else (on,)
        if not items:
            raise ValueError("on must name at least one exception type, got ()")
        types: list[type[Exception]] = []
        for tp in items:
            if not (isinstance(tp, type) and issubclass(tp, BaseException)):
                raise TypeError(
                    "on must be an exception type, a tuple of them, or a predicate"
                    f" taking the exception, got {tp!r} in on={on!r}"
                )
            if not issubclass(tp, Exception):
                raise ValueError(
                    f"on={tp.__name__} can never count: only Exception subclasses are"
                    " failures (cancellation and other BaseExceptions never count)"
                )
            types.append(tp)
        return tuple(types), None
    if not callable(on) and not inspect.iscoroutine(on):
        raise TypeError(
            "on must be an exception type, a tuple of them, or a predicate taking the"
            f" exception, got {on!r} ({type(on).__name__})"
        )
    predicate = check_callable("on", on)
    if inspect.iscoroutinefunction(predicate):
        raise TypeError(
            f"on must be a synchronous predicate (exc -> bool), got the async function {on!r}"
        )
    return (), predicate


def _require_async_function(name: str, fn: object) -> Callable[..., Any]:
    """*fn* must be an ``async def`` function (or a callable whose
    ``__call__`` is one); a sync function gets a TypeError with the fix."""
    fn = check_callable(name, fn, want_async=True)
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - the method, not callable()
    ):
        return fn
    raise TypeError(
        f"{name} must be an async function (async def), got the synchronous {fn!r};"
        " wrap blocking code with `await anyio.to_thread.run_sync(...)` inside an async function"
    )


_names = itertools.count(1)

# ``async with breaker:`` keeps the tickets of the calls it admitted in a
# context variable (one per breaker), as a linked stack: (ticket, start time,
# the outer entry). ``__aexit__`` pops its own.
#
# Setting a context variable costs about as much as the rest of the happy path,
# so on the in-memory store without slow-call tracking ("light" mode) a call
# admitted while CLOSED pushes nothing: only probes do. At exit, an empty
# stack means "admitted while closed": counted if the circuit is still closed
# (possibly after a full open/close cycle: it is a fresh outcome), ignored
# otherwise. A probe entry on top is this call's, except in one case that
# needs the same breaker nested in one task across an operator's close() (or
# a full open/half-open/close cycle): then the inner call pops the outer
# probe's stale entry, so the inner outcome is ignored and the outer one is
# counted as a closed call. Both are real, recent outcomes; no probe slot or
# count is corrupted, since a stale ticket changes nothing.
_Entry: TypeAlias = tuple[int, float, Any]


# --- what open(), close() and reset() return -------------------------------------
#
# An operator may call ``breaker.reset()`` from synchronous code, or forget the
# ``await``. On the in-memory store the change is made at the call, and the
# result is an awaitable that can be awaited or dropped (awaiting runs async
# hooks, if any). On another store the change needs the store, so it happens
# only when awaited; a result dropped without being awaited warns (at the
# caller's line), naming the breaker and the fix, instead of Python's bare
# "coroutine ... was never awaited".

_CallSite: TypeAlias = tuple[str, int, str, dict[Any, Any]]


def _call_site() -> _CallSite:
    """The line that called open(), close() or reset(), for a warning."""
    frame = sys._getframe(3)  # _call_site <- _operate <- open() <- the caller
    f_globals = frame.f_globals
    return (
        frame.f_code.co_filename,
        frame.f_lineno,
        f_globals.get("__name__", "<string>"),
        f_globals.setdefault("__warningregistry__", {}),
    )


def _warn_at(site: _CallSite, message: str) -> None:
    filename, lineno, module, registry = site
    warnings.warn_explicit(message, RuntimeWarning, filename, lineno, module, registry)


def _discard(awaitables: Iterable[Awaitable[object]]) -> None:
    for awaitable in awaitables:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # no "never awaited" warning on top of ours


class _Done:
    """Done already: awaiting it returns at once (no checkpoint)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # an exhausted iterator: done

    def __repr__(self) -> str:
        return "<done>"


_DONE = _Done()


class _HooksPending:
    """The change is made; awaiting runs the async hooks that received its event."""

    __slots__ = ("_breaker", "_op", "_pending", "_site")

    def __init__(
        self,
        pending: list[Awaitable[object]],
        breaker: CircuitBreaker,
        op: str,
        site: _CallSite,
    ) -> None:
        self._pending = pending
        self._breaker = breaker
        self._op = op
        self._site = site

    def __await__(self) -> Generator[Any, None, None]:
        pending, self._pending = self._pending, []
        for i, awaitable in enumerate(pending):
            try:
                yield from awaitable.__await__()
            except BaseException:
                _discard(pending[i + 1 :])
                raise

    def __del__(self) -> None:
        pending = self._pending
        if pending:
            _discard(pending)
            _warn_at(
                self._site,
                f"{self._op}() of circuit breaker {self._breaker._policy!r} was not awaited:"
                f" the change was made, but {_plural(len(pending), 'async hook')} did not"
                f" run; write `await breaker.{self._op}()`",
            )

    def __repr__(self) -> str:
        return f"<{self._op}() of {self._breaker._policy!r}: {len(self._pending)} hooks to await>"


class _StoreOperation:
    """An operator's change on a store other than the in-memory one: made when
    awaited; dropped without being awaited, it warns."""

    __slots__ = ("_breaker", "_coro", "_op", "_site")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None],
        breaker: CircuitBreaker,
        op: str,
        site: _CallSite,
    ) -> None:
        self._coro: Coroutine[Any, Any, None] | None = coro
        self._breaker = breaker
        self._op = op
        self._site = site

    def __await__(self) -> Generator[Any, None, None]:
        coro, self._coro = self._coro, None
        if coro is None:
            raise RuntimeError(f"{self._op}() of {self._breaker._policy!r} was already awaited")
        return coro.__await__()

    def __del__(self) -> None:
        coro = self._coro
        if coro is not None:
            coro.close()
            breaker = self._breaker
            _warn_at(
                self._site,
                f"{self._op}() of circuit breaker {breaker._policy!r} was never awaited, so"
                f" nothing happened: on {breaker._store!r} the change is made by the store"
                f" when awaited; write `await breaker.{self._op}()`",
            )

    def __repr__(self) -> str:
        how = "pending" if self._coro is not None else "awaited"
        return f"<{self._op}() of {self._breaker._policy!r} on {self._breaker._store!r}: {how}>"


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

    **What counts.** An exception matching *on* (types, or a predicate taking
    the exception) is a failure; returning is a success. Anything else is
    ignored, neither success nor failure: other exceptions (they propagate,
    uncounted), cancellation (whatever *on* says), other ``BaseException``\\ s,
    and :class:`~anyway.Rejected` errors of other policies (a bulkhead or
    rate limiter that refused the call: the dependency was never reached). An
    ignored call in half-open frees its probe slot.

    **When it opens.** By default after ``failure_threshold`` consecutive
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

    **Operators.** :meth:`open`, :meth:`close` and :meth:`reset` change the
    state by hand. On the in-memory store they act at once and may be awaited
    or not; on another store they act when awaited. :meth:`derive` makes a
    breaker with the same settings under another name (one per host, say).
    """

    __slots__ = (
        "_circuit",
        "_config",
        "_entries",
        "_exact",
        "_hooks",
        "_key",
        "_last",
        "_last_time",
        "_own_store",
        "_policy",
        "_predicate",
        "_slow",
        "_store",
        "_types",
        "name",
    )

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
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
        failure_threshold = check_count("failure_threshold", failure_threshold)
        recovery_time = check_seconds(
            "recovery_time",
            recovery_time,
            allow_zero=False,
            hint="; to keep a circuit open until you close it, call `await breaker.open()`",
        )
        half_open_max_calls = check_count("half_open_max_calls", half_open_max_calls)
        self._types, self._predicate = _check_filter(on)
        given: object = name
        if given is not None and (not isinstance(given, str) or not given):
            raise TypeError(f"name must be a non-empty string or None, got {name!r}")
        self._hooks = check_hooks(hooks)

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
            slow = None
        else:
            if not isinstance(window, CountWindow | TimeWindow):
                raise TypeError(
                    f"window must be CountWindow(size), TimeWindow(seconds) or None, got {window!r}"
                )
            if failure_threshold != 5:
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
        self._config = config
        self._slow = slow
        self.name = name
        self._policy = name if name is not None else f"CircuitBreaker#{next(_names)}"

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
                    f"store must implement the BreakerStore protocol; {store!r} has no"
                    f" {', '.join(missing)}"
                )
        self._store = store
        self._key = self._policy
        self._circuit: _Circuit | None = None
        if isinstance(store, InMemoryBreakerStore):
            self._circuit = store._circuit(self._key, config)
        self._last = BreakerSnapshot(state=_CLOSED)
        self._last_time = -math.inf
        # exact: every call of `async with` remembers its ticket (see _Entry)
        self._exact = self._circuit is None or slow is not None
        self._entries: contextvars.ContextVar[_Entry] = contextvars.ContextVar(
            f"anyway.CircuitBreaker({self._policy})"
        )

    # --- configuration and introspection ------------------------------------

    @property
    def config(self) -> BreakerConfig:
        """The settings, as given to the store."""
        return self._config

    @property
    def store(self) -> BreakerStore:
        """Where the state lives."""
        return self._store

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
            failure_threshold=config.failure_threshold,
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
    def hooks(self) -> tuple[Hook, ...]:
        """This breaker's own hooks (the global ones are called after them)."""
        return self._hooks

    def _now_snapshot(self) -> BreakerSnapshot:
        circuit = self._circuit
        if circuit is not None:
            if circuit.state is _CLOSED and circuit.window is None:
                return circuit.snapshot(None)  # no clock needed
            return circuit.snapshot(anyio.current_time())
        last = self._last
        if last.state is _OPEN and last.retry_after is not None:
            left = last.retry_after - (anyio.current_time() - self._last_time)
            if left <= 0:
                return BreakerSnapshot(state=_HALF_OPEN)
            return BreakerSnapshot(state=_OPEN, retry_after=left)
        return last

    @property
    def state(self) -> CircuitState:
        """``CLOSED``, ``OPEN`` or ``HALF_OPEN`` now (OPEN shows HALF_OPEN as soon
        as ``recovery_time`` has passed). With a store other than the in-memory
        one: the state the last operation saw; ``await snapshot()`` asks the store."""
        circuit = self._circuit
        if circuit is not None:
            state = circuit.state
            if state is _OPEN and anyio.current_time() >= circuit.open_until:
                return _HALF_OPEN
            return state
        return self._now_snapshot().state

    @property
    def failure_count(self) -> int:
        """Failures that count toward opening: the current streak of consecutive
        failures, or the failures in the window (failure-rate mode)."""
        return self._now_snapshot().failure_count

    @property
    def success_count(self) -> int:
        """Successes since the circuit closed (in the window in failure-rate
        mode; successful probes when half-open)."""
        return self._now_snapshot().success_count

    @property
    def call_count(self) -> int:
        """Calls recorded since the circuit closed (in the window in
        failure-rate mode; finished probes when half-open)."""
        return self._now_snapshot().call_count

    @property
    def slow_call_count(self) -> int:
        """Slow calls in the window (failure-rate mode with ``slow_call_duration``)."""
        return self._now_snapshot().slow_call_count

    @property
    def probes_in_flight(self) -> int:
        """Probe calls running now (half-open only)."""
        return self._now_snapshot().probes_in_flight

    @property
    def retry_after(self) -> float | None:
        """Seconds until an open circuit lets a probe through (``None`` unless
        open, or when held open by :meth:`open`)."""
        return self._now_snapshot().retry_after

    async def snapshot(self) -> BreakerSnapshot:
        """The state and counts, read from the store."""
        if self._circuit is not None:
            return self._circuit.snapshot(anyio.current_time())
        snapshot = await self._ask("snapshot", self._store.snapshot, self._key, self._config)
        self._remember(snapshot)
        return snapshot

    def __repr__(self) -> str:
        try:
            snap = self._now_snapshot()
        except RuntimeError:  # no event loop: what is stored, unaged
            snap = self._circuit.snapshot(None) if self._circuit is not None else self._last
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
            after = "held" if snap.retry_after is None else f"{snap.retry_after:.3g}"
            parts.append(f"retry_after={after}")
        else:
            n = config.half_open_max_calls
            parts.append(f"probes={snap.probes_in_flight}/{n} succeeded={snap.success_count}/{n}")
        return f"<CircuitBreaker {' '.join(parts)}>"

    # --- operators -----------------------------------------------------------

    def open(self, *, seconds: float | None = None) -> Awaitable[None]:
        """Open the circuit now. With ``seconds=None`` (the default) it stays open
        until :meth:`close` or :meth:`reset`; with a number it half-opens after
        that many seconds, as after a trip. Calls running now finish, but their
        outcomes no longer count.

        On the default in-memory store the change is made when this is called:
        ``breaker.open()`` and ``await breaker.open()`` both work (awaiting
        also runs the breaker's async hooks). On another store the change is
        made by the store, when the result is awaited: write ``await
        breaker.open()`` (forgetting the ``await`` warns, and changes nothing).
        """
        if seconds is not None:
            seconds = check_seconds(
                "seconds", seconds, allow_zero=False, hint="; use seconds=None to hold it open"
            )
        return self._operate("open", _OPEN, seconds, True)

    def close(self) -> Awaitable[None]:
        """Close the circuit now, counting from zero. Nothing happens if it is
        already closed. Called or awaited, as :meth:`open`."""
        return self._operate("close", _CLOSED, None, False)

    def reset(self) -> Awaitable[None]:
        """Back to the initial state: closed, every count and the window cleared,
        whatever the state. Called or awaited, as :meth:`open`."""
        return self._operate("reset", _CLOSED, None, True)

    def _operate(
        self, op: str, state: CircuitState, seconds: float | None, reset: bool
    ) -> Awaitable[None]:
        circuit = self._circuit
        if circuit is None:
            return _StoreOperation(self._force(state, seconds, reset), self, op, _call_site())
        # Only opening needs the clock: close() and reset() also work outside
        # the event loop (in a synchronous test fixture, say).
        now = anyio.current_time() if state is _OPEN else 0.0
        change = circuit.force(state, now, seconds, reset)
        if change is None:
            return _DONE
        old, new, reason = change
        event = BreakerStateChanged(policy=self._policy, old=old, new=new, reason=reason)
        pending: list[Awaitable[object]] = []
        try:
            for hook in (*self._hooks, *global_hooks()):
                result = hook(event)
                if inspect.isawaitable(result):
                    pending.append(result)  # an async hook: runs when awaited
        except BaseException:
            _discard(pending)
            raise
        if not pending:
            return _DONE
        return _HooksPending(pending, self, op, _call_site())

    async def _force(self, state: CircuitState, seconds: float | None, reset: bool) -> None:
        update = await self._ask(
            "force", self._store.force, self._key, self._config, state, seconds=seconds, reset=reset
        )
        await self._absorb(update)

    # --- the call protocol ---------------------------------------------------

    async def _ask(
        self, op: str, method: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call a store operation, shielded from cancellation for a bounded time
        (an admission or an outcome must not be lost half-way)."""
        with anyio.move_on_after(STORE_TIMEOUT, shield=True):
            return await method(*args, **kwargs)
        raise TimeoutError(
            f"the store of circuit breaker {self._policy!r} ({self._store!r}) did not"
            f" answer {op}() within {STORE_TIMEOUT:g} s"
        )

    def _remember(self, snapshot: BreakerSnapshot) -> None:
        self._last = snapshot
        self._last_time = anyio.current_time()

    async def _absorb(self, update: BreakerUpdate) -> None:
        self._remember(update.snapshot)
        if update.previous is not None and update.previous is not update.snapshot.state:
            await self._emit_change((update.previous, update.snapshot.state, update.reason))

    async def _emit_change(self, change: _Change) -> None:
        old, new, reason = change
        await emit(
            BreakerStateChanged(policy=self._policy, old=old, new=new, reason=reason), self._hooks
        )

    async def _reject(self, retry_after: float | None, state: CircuitState) -> CircuitOpen:
        if state is _HALF_OPEN:
            n = self._config.half_open_max_calls
            message = (
                f"circuit breaker {self._policy!r} is half-open and its"
                f" {_plural(n, 'probe')} {'is' if n == 1 else 'are'} already running"
            )
        elif retry_after is None:
            message = (
                f"circuit breaker {self._policy!r} is held open; close() or reset()"
                " lets calls through again"
            )
        else:
            message = (
                f"circuit breaker {self._policy!r} is open; a probe is allowed"
                f" in {retry_after:.3g} s"
            )
        await emit(
            CallRejected(policy=self._policy, by="breaker", retry_after=retry_after), self._hooks
        )
        return CircuitOpen(message, retry_after=retry_after, name=self.name)

    async def _admit(self) -> int:
        """A ticket for a call, or raise :class:`~anyway.CircuitOpen`."""
        circuit = self._circuit
        if circuit is not None:
            if circuit.state is _CLOSED:
                return circuit.generation
            now = anyio.current_time()
            ticket, change = circuit.admit(now)
            if change is not None:
                try:
                    await self._emit_change(change)
                except BaseException:
                    # An async hook was cancelled, or a hook raised: the call
                    # will not run, so its probe slot goes back (a leaked slot
                    # would keep the circuit half-open and refusing forever).
                    circuit.release(ticket)
                    raise
            if ticket is not None:
                return ticket
            raise await self._reject(circuit.retry_after(now), circuit.state)
        update = await self._ask("acquire", self._store.acquire, self._key, self._config)
        ticket = update.ticket
        if ticket is None:
            await self._absorb(update)
            raise await self._reject(update.snapshot.retry_after, update.snapshot.state)
        try:
            await self._absorb(update)
            # cancelled while the (shielded) store answered: do not run the call
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            await self._release(ticket)
            raise
        return ticket

    def _failed(self, exc: BaseException) -> bool | None:
        """Whether *exc* is a failure (``None``: ignored, neither way)."""
        if not isinstance(exc, Exception) or isinstance(exc, (Rejected, _NotAwaitable)):
            # cancellation, KeyboardInterrupt..., refused by a local policy, or
            # a sync function passed to call(): the dependency was not reached
            return None
        predicate = self._predicate
        if predicate is None:
            return True if isinstance(exc, self._types) else None
        return True if predicate(exc) else None

    async def _settle(self, ticket: int, start: float, exc: BaseException | None) -> None:
        """Record how the call admitted with *ticket* ended (*start*: when it
        started, for slow calls)."""
        failure = False
        if exc is not None:
            try:
                verdict = self._failed(exc)
            except BaseException:
                await self._release(ticket)  # a broken predicate must not leak a probe slot
                raise
            if verdict is None:
                await self._release(ticket)
                return
            failure = verdict
        limit = self._slow
        circuit = self._circuit
        if circuit is not None:
            now = None if limit is None else anyio.current_time()
            slow = now is not None and limit is not None and now - start > limit
            change = circuit.record(ticket, failure, slow, now)
            if change is not None:
                if exc is not None and change[1] is _OPEN:
                    exc.add_note(f"circuit breaker {self._policy!r} opened: {change[2]}")
                await self._emit_change(change)
            return
        slow = limit is not None and anyio.current_time() - start > limit
        update = await self._ask(
            "record",
            self._store.record,
            self._key,
            self._config,
            ticket,
            failure=failure,
            slow=slow,
        )
        if exc is not None and update.previous is not None and update.snapshot.state is _OPEN:
            exc.add_note(f"circuit breaker {self._policy!r} opened: {update.reason}")
        await self._absorb(update)

    async def _release(self, ticket: int) -> None:
        circuit = self._circuit
        if circuit is not None:
            circuit.release(ticket)
            return
        # Cleanup, maybe of a cancelled call: bounded, and it never raises a
        # timeout in place of the exception on its way out.
        with anyio.move_on_after(STORE_TIMEOUT, shield=True):
            update = await self._store.release(self._key, self._config, ticket)
            self._remember(update.snapshot)

    async def __aenter__(self) -> None:
        circuit = self._circuit
        if circuit is not None and circuit.state is _CLOSED and not self._exact:
            return  # light mode: nothing to remember (see _Entry)
        ticket = await self._admit()
        start = anyio.current_time() if self._slow is not None else 0.0
        var = self._entries
        var.set((ticket, start, var.get(None)))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        var = self._entries
        entry = var.get(None)
        if entry is not None:
            var.set(entry[2])
            await self._settle(entry[0], entry[1], exc)
            return
        circuit = self._circuit
        assert circuit is not None, "__aexit__ without __aenter__"
        if circuit.state is not _CLOSED:
            return  # admitted while closed, ends after the circuit left CLOSED
        if exc is None:
            if circuit.window is None:
                circuit.consecutive = 0  # the happy path, inlined
                circuit.successes += 1
                circuit.calls += 1
                return
            change = circuit.record(circuit.generation, False, False)
            if change is not None:  # a success can complete minimum_calls
                await self._emit_change(change)
            return
        await self._settle(circuit.generation, 0.0, exc)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` through the breaker."""
        circuit = self._circuit
        if circuit is not None and circuit.state is _CLOSED and self._slow is None:
            ticket = circuit.generation
            start = 0.0
        else:
            ticket = await self._admit()
            start = anyio.current_time() if self._slow is not None else 0.0
        try:
            result = await call_async("fn", fn, *args, **kwargs)
        except BaseException as exc:
            if not callable(fn_object := cast(object, fn)):  # e.g. a coroutine object:
                await self._release(ticket)  # a bug at the call site, explained
                check_callable("fn", fn_object)
            await self._settle(ticket, start, exc)
            raise
        if circuit is not None and self._slow is None:
            if ticket == circuit.generation and circuit.state is _CLOSED and circuit.window is None:
                circuit.consecutive = 0  # the happy path, inlined
                circuit.successes += 1
                circuit.calls += 1
            else:
                change = circuit.record(ticket, False, False)
                if change is not None:
                    await self._emit_change(change)
        else:
            await self._settle(ticket, start, None)
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call goes through the breaker.
        A synchronous function is a ``TypeError``."""
        _require_async_function("the decorated function", fn)
        breaker = self

        # The body of call(), repeated to save a coroutine per call.
        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            circuit = breaker._circuit
            if circuit is not None and circuit.state is _CLOSED and breaker._slow is None:
                ticket = circuit.generation
                start = 0.0
            else:
                ticket = await breaker._admit()
                start = anyio.current_time() if breaker._slow is not None else 0.0
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                await breaker._settle(ticket, start, exc)
                raise
            if circuit is not None and breaker._slow is None:
                if (
                    ticket == circuit.generation
                    and circuit.state is _CLOSED
                    and circuit.window is None
                ):
                    circuit.consecutive = 0
                    circuit.successes += 1
                    circuit.calls += 1
                else:
                    change = circuit.record(ticket, False, False)
                    if change is not None:
                        await breaker._emit_change(change)
            else:
                await breaker._settle(ticket, start, None)
            return result

        return guarded


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
