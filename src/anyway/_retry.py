"""Retry: ``retry`` / ``Retry`` (a policy and decorator), ``retrying`` (a loop
of ``Attempt`` context managers) and ``RetryBudget``.

What sets it apart from its peers:

* cancellation (and ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``)
  is never retried, whatever ``on`` says;
* a wait that would cross ``timeout`` or the caller's effective deadline is
  not started: the real error is re-raised at once, with a note saying why;
* the original exception is re-raised as itself, with PEP 678 notes that say
  why retrying stopped and what the earlier attempts raised;
* a ``Retry`` holds no per-call state, so one object can serve any number of
  concurrent calls;
* the success path does nothing but ``await`` the function: no clock read, no
  context variable, no event (measured: about 0.15 us over a bare ``await``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from contextvars import ContextVar
from types import CoroutineType, TracebackType
from typing import Any, Final, ParamSpec, TypeAlias, TypeVar, cast

import anyio

from ._backoff import Backoff
from ._errors import CircuitOpen, Rejected
from ._events import (
    Event,
    Hook,
    RetryGaveUp,
    RetryScheduled,
    check_hooks,
    emit,
    global_hooks,
    log_event,
)
from ._validate import check_callable, check_count, check_number, check_seconds

__all__ = ["Attempt", "Retry", "RetryBudget", "RetryOn", "retry", "retrying"]

P = ParamSpec("P")
T = TypeVar("T")

Predicate: TypeAlias = Callable[[BaseException], bool | float]
RetryOn: TypeAlias = type[BaseException] | tuple[type[BaseException], ...] | Predicate
"""What ``on=`` accepts: an exception type, a tuple of them, or a predicate
``exc -> bool | float`` (a float is the delay to use)."""

ResultCheck: TypeAlias = Callable[[Any], bool | float]

_DEFAULT_BACKOFF: Final = Backoff()
#: How many earlier attempts the give-up note describes (the most recent ones).
_EARLIER_KEPT: Final = 10
#: A RetryBudget reads the clock once every this many deposits.
_DEPOSITS_PER_CLOCK_READ: Final = 16
#: Never retried, whatever ``on`` says (plus the backend's cancellation class).
_NEVER_RETRIED: Final = (KeyboardInterrupt, SystemExit, GeneratorExit)
#: The logger of the default hook, :func:`anyway.log_event`.
_logger: Final = logging.getLogger("anyway")
#: What calling an ``async def`` function returns (checked before the others).
_COROUTINE: Final = CoroutineType


# --- test mode (set by anyway.testing.no_backoff / cap_attempts) --------------


class _TestMode:
    """What ``anyway.testing.no_backoff()`` / ``cap_attempts()`` ask for."""

    __slots__ = ("max_attempts", "zero_waits")

    def __init__(self, *, zero_waits: bool, max_attempts: int | None) -> None:
        self.zero_waits = zero_waits
        self.max_attempts = max_attempts

    def __repr__(self) -> str:
        return f"<_TestMode zero_waits={self.zero_waits} max_attempts={self.max_attempts}>"


#: Read only on the retry path (after a failure), never on the success path.
_test_mode: ContextVar[_TestMode | None] = ContextVar("anyway_retry_test_mode", default=None)


# --- helpers ------------------------------------------------------------------


def _secs(seconds: float) -> str:
    """``1.6``, ``0.3``, ``45``: seconds for humans, to the millisecond."""
    text = f"{round(seconds, 3):f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _short_repr(value: object, limit: int = 120) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__qualname__} (repr failed: {type(exc).__name__})>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(kind: type[BaseException], args: tuple[object, ...]) -> str:
    """``OSError('refused')``: an exception's usual repr, from its type and args."""
    shown = ", ".join(_short_repr(arg, 80) for arg in args)
    text = f"{kind.__qualname__}({shown})"
    return text if len(text) <= 120 else text[:117] + "..."


def _name_of(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else _short_repr(fn, 60)


class _NotAwaitable(TypeError):
    """``fn(...)`` returned something that cannot be awaited: a bug at the call
    site (a sync function where an async one is needed), never retried, and
    never counted by a circuit breaker."""


def _awaitable(fn: object, value: object) -> Awaitable[Any]:
    """*value*, the result of calling *fn*, if it can be awaited; else raise
    :class:`_NotAwaitable` explaining the fix (trio's ``start_soon`` does the
    same). Callers test ``value.__class__ is _COROUTINE`` first: that costs
    nothing for ``async def`` functions."""
    if inspect.isawaitable(value):
        return value
    raise _NotAwaitable(
        f"{_name_of(fn)}(...) returned {_short_repr(value, 60)}, which cannot be awaited:"
        " pass an async function (async def); run sync code with"
        " anyio.to_thread.run_sync inside one"
    )


def _is_never_retried(exc: BaseException) -> bool:
    """Cancellation, KeyboardInterrupt, SystemExit, GeneratorExit, or a group
    holding one of them."""
    if isinstance(exc, Exception):  # the fast answer: none of those is an Exception
        return False
    never = (*_NEVER_RETRIED, anyio.get_cancelled_exc_class())
    if isinstance(exc, never):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(never) is not None


def _check_on(
    on: object,
) -> tuple[tuple[type[BaseException], ...] | None, Predicate | None]:
    fix = (
        "on must be an exception type (on=OSError), a tuple of them"
        " (on=(OSError, TimeoutError)) or a predicate exc -> bool | float"
    )
    if isinstance(on, type):
        if issubclass(on, BaseException):
            return (on,), None
        raise TypeError(f"{fix}; got the class {on.__qualname__}, which is not an exception")
    if isinstance(on, tuple):
        if not on:
            raise ValueError(f"{fix}; got on=(), which retries nothing")
        for item in on:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(f"{fix}; got {item!r} in on={on!r}, which is not an exception type")
        return on, None
    if isinstance(on, BaseException):
        raise TypeError(
            f"{fix}; got the exception instance {on!r}: pass the class {type(on).__qualname__}"
        )
    if isinstance(on, (list, set, frozenset)):
        raise TypeError(f"{fix}; got a {type(on).__name__} {on!r}: use a tuple")
    if inspect.iscoroutine(on):
        check_callable("on", on)  # explains a coroutine object
    if not callable(on):
        raise TypeError(f"{fix}; got {on!r} ({type(on).__name__})")
    if inspect.iscoroutinefunction(on):
        raise TypeError(
            f"on must be a plain (sync) predicate returning bool or a delay, got the async"
            f" function {_name_of(on)}"
        )
    return None, on


def _check_result_check(check: object) -> ResultCheck | None:
    if check is None:
        return None
    check_callable("retry_if_result", check)
    if inspect.iscoroutinefunction(check):
        raise TypeError(
            "retry_if_result must be a plain (sync) predicate returning bool or a delay,"
            f" got the async function {_name_of(check)}"
        )
    return check  # type: ignore[return-value]


def _coerce_verdict(value: object, what: str, fn: object) -> bool | float:
    """A predicate's answer: ``True``/``False``, or a delay in seconds."""
    if value is True or value is False:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        delay = float(value)
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(
                f"{what} {_name_of(fn)} returned {value!r} as a delay; a delay must be a"
                " finite number of seconds >= 0 (or return True to use the backoff, False"
                " not to retry)"
            )
        return delay
    hint = " (use .total_seconds())" if hasattr(value, "total_seconds") else ""
    raise TypeError(
        f"{what} {_name_of(fn)} returned {_short_repr(value)} ({type(value).__name__}); it"
        " must return True (retry after the backoff), False (do not retry) or a delay in"
        f" seconds as a float, e.g. from a Retry-After header{hint}"
    )


def _is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we want the class's method
    return (
        not inspect.isroutine(fn)
        and not inspect.isclass(fn)
        and call is not None
        and inspect.iscoroutinefunction(call)
    )


def _link(final: BaseException, previous: BaseException) -> None:
    """Make *previous* reachable from *final* as its ``__context__`` when that
    is free and no cycle results."""
    if final.__context__ is not None or previous is final:
        return
    seen = 0
    link: BaseException | None = previous
    while link is not None and seen < 100:
        if link is final:
            return
        link = link.__context__
        seen += 1
    final.__context__ = previous


async def _emit(event: Event, hooks: tuple[Hook, ...], error: BaseException | None) -> None:
    """Emit *event*; if a hook raises, the error being retried stays reachable."""
    try:
        await emit(event, hooks)
    except Exception as hook_error:
        if error is not None and hook_error.__context__ is None and hook_error is not error:
            hook_error.__context__ = error
        raise


def _listening() -> bool:
    """Whether anyone would see a :class:`RetryScheduled`: a global hook other
    than the default logger, or the logger at INFO. Saves building events
    nobody reads (about 1 us per retry)."""
    hooks = global_hooks()
    return len(hooks) != 1 or hooks[0] is not log_event or _logger.isEnabledFor(logging.INFO)


# --- the retry budget ----------------------------------------------------------


class RetryBudget:
    """A budget of retries shared by many calls, so that a failing dependency
    cannot turn into a retry storm (Finagle's ``RetryBudget``).

    Every call that a policy with ``budget=`` starts *deposits* ``ratio``
    retries; every retry *withdraws* one. On top of that a floor of
    ``min_per_second`` retries per second is always allowed (so that a
    service with little traffic can still retry). Deposits and withdrawals
    expire after about ``window`` seconds. When the budget cannot pay for a
    retry, the policy gives up at once and the error gets the note
    ``retry budget exhausted``.

    With the defaults, retries add at most 10 % to the calls of the last
    10 seconds, plus 10 per second.

    Share one budget between all the policies that call the same dependency,
    within one event loop; time comes from :func:`anyio.current_time`.
    Memory is constant (ten time slices). On the success path a budget adds
    about 0.1 us per call (it reads the clock once every 16 calls).
    """

    __slots__ = (
        "_calls",
        "_countdown",
        "_epoch",
        "_index",
        "_min_per_second",
        "_ratio",
        "_reserve",
        "_retries",
        "_slice",
        "_window",
    )

    _SLICES: Final = 10

    def __init__(
        self, *, ratio: float = 0.1, min_per_second: float = 10.0, window: float = 10.0
    ) -> None:
        self._ratio = check_number(
            "ratio", ratio, hint="; retries allowed per call, e.g. 0.1 for 10 %"
        )
        self._min_per_second = check_number(
            "min_per_second",
            min_per_second,
            hint="; retries per second always allowed, e.g. 10",
        )
        self._window = check_seconds(
            "window",
            window,
            allow_zero=False,
            hint="; how many seconds deposits and withdrawals count, e.g. 10",
        )
        if self._ratio == 0 and self._min_per_second == 0:
            raise ValueError(
                "ratio=0 and min_per_second=0 would never allow a retry; raise one of them"
                " (or use attempts=1 to disable retries)"
            )
        self._reserve = self._min_per_second * self._window
        self._slice = self._window / self._SLICES
        self._calls = [0] * self._SLICES
        self._retries = [0] * self._SLICES
        self._epoch: int | None = None  # the time slice of the last clock reading
        self._index = 0  # its index in the lists
        self._countdown = 0  # deposits left before the next clock reading

    def __repr__(self) -> str:
        return (
            f"<RetryBudget ratio={_secs(self._ratio)} min_per_second={_secs(self._min_per_second)}"
            f" window={_secs(self._window)} balance={_secs(self._available())}"
            f" calls={sum(self._calls)} retries={sum(self._retries)}>"
        )

    @property
    def ratio(self) -> float:
        """Retries allowed per call."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Retries per second allowed whatever the traffic."""
        return self._min_per_second

    @property
    def window(self) -> float:
        """Seconds after which deposits and withdrawals expire."""
        return self._window

    @property
    def balance(self) -> float:
        """How many retries the budget can pay for now (read it in the event loop)."""
        self._now()
        return max(0.0, self._available())

    def deposit(self) -> None:
        """Record a call (policies do it for you at the start of each call).

        To keep the success path cheap the clock is read once every
        16 deposits; the others count in the slice of the last reading, which
        can only make them expire early (the safe side)."""
        countdown = self._countdown
        if countdown:
            self._countdown = countdown - 1
            self._calls[self._index] += 1
        else:
            self._countdown = _DEPOSITS_PER_CLOCK_READ - 1
            self._calls[self._now()] += 1

    def try_withdraw(self) -> bool:
        """Pay for one retry if the budget allows it; ``False`` if exhausted."""
        return self._withdraw() is not None

    def refund(self) -> None:
        """Give back a withdrawal whose retry did not happen (e.g. cancelled
        wait): the most recent one that has not expired yet, if any."""
        if self._epoch is None:
            return
        self._now()
        epoch = self._epoch
        assert epoch is not None
        for e in range(epoch, epoch - self._SLICES, -1):
            if self._refund(e):
                return

    def _withdraw(self) -> int | None:
        """Pay for one retry: the time slice it was counted in (for
        :meth:`_refund`), or ``None`` if the budget is exhausted."""
        index = self._now()
        if self._available() < 1.0 - 1e-9:
            return None
        self._retries[index] += 1
        return self._epoch

    def _refund(self, epoch: int) -> bool:
        """Give back a withdrawal counted in the time slice *epoch*, unless it
        has expired already (then it no longer counts, and crediting it would
        allow a retry that was never paid for). Whether anything was given back."""
        self._now()
        current = self._epoch
        assert current is not None
        if not 0 <= current - epoch < self._SLICES:
            return False
        index = epoch % self._SLICES
        if self._retries[index] <= 0:
            return False
        self._retries[index] -= 1
        return True

    def _available(self) -> float:
        return self._reserve + self._ratio * sum(self._calls) - sum(self._retries)

    def _now(self) -> int:
        """Bring the slices up to the current time; the current slice's index."""
        epoch = int(anyio.current_time() // self._slice)
        if epoch != self._epoch:
            self._rotate(epoch)
            self._index = epoch % self._SLICES
        return self._index

    def _rotate(self, epoch: int) -> None:
        last = self._epoch
        if last is None or epoch < last or epoch - last >= self._SLICES:
            for i in range(self._SLICES):
                self._calls[i] = self._retries[i] = 0
        else:
            for e in range(last + 1, epoch + 1):
                i = e % self._SLICES
                self._calls[i] = self._retries[i] = 0
        self._epoch = epoch


# --- per-call state -----------------------------------------------------------


class _Run:
    """The state of one call that failed at least once (never shared)."""

    __slots__ = (
        "attempts",
        "delays",
        "earlier",
        "earlier_count",
        "listening",
        "max_attempts",
        "name",
        "now",
        "pending",
        "policy",
        "previous",
        "start",
        "testing",
        "withdrawn",
        "zero_waits",
    )

    def __init__(self, policy: Retry, name: str) -> None:
        self.policy = policy
        self.name = name
        self.attempts = 1  # attempts made so far
        self.start: float | None = None  # the first failure
        self.now = 0.0
        self.delays: Iterator[float] | None = None
        self.pending: float | None = None  # a backoff drawn ahead (Attempt.next_wait)
        # (attempt number, exception type and args, or the repr of a rejected
        # result): cheap to keep, and it keeps no traceback (no frames) alive.
        self.earlier: deque[tuple[int, type[BaseException] | None, tuple[object, ...]]] | None = (
            None
        )
        self.listening: bool | None = None  # snapshot of _listening() for this call
        self.earlier_count = 0
        self.previous: BaseException | None = None
        self.withdrawn = 0  # the budget's time slice of the last withdrawal
        mode = _test_mode.get()
        limit = policy._attempts
        if mode is None:
            self.testing = self.zero_waits = False
        else:
            self.zero_waits = mode.zero_waits
            self.testing = mode.max_attempts is not None
            if mode.max_attempts is not None:
                limit = mode.max_attempts if limit is None else min(limit, mode.max_attempts)
        self.max_attempts = limit

    def peek_backoff(self) -> float:
        if self.zero_waits:
            return 0.0
        if self.pending is None:
            self.pending = self._draw()
        return self.pending

    def _draw(self) -> float:
        if self.delays is None:
            self.delays = self.policy._backoff.delays()
        return next(self.delays)

    def clock(self) -> float:
        now = self.now = anyio.current_time()
        if self.start is None:
            self.start = now
        return now

    def elapsed(self) -> float:
        assert self.start is not None
        return self.now - self.start

    def plan(self, verdict: bool | float) -> tuple[float, str | None]:
        """After attempt ``self.attempts`` failed retryably: the delay before the
        next attempt, or the reason to stop."""
        now = self.clock()
        policy = self.policy
        limit = self.max_attempts
        if limit is not None and self.attempts >= limit:
            capped = " by anyway.testing" if self.testing and limit != policy._attempts else ""
            return 0.0, f"no attempts left (attempts={limit}{capped})"
        if self.zero_waits:
            delay = 0.0
        elif verdict is True:
            delay = self.pending if self.pending is not None else self._draw()
            self.pending = None
        else:
            delay = float(verdict)
        timeout = policy._timeout
        if timeout is not None:
            assert self.start is not None
            left = self.start + timeout - now
            if delay >= left:
                return delay, (
                    f"waiting {_secs(delay)} s would cross the retry timeout"
                    f" (timeout={_secs(timeout)} s, {_secs(max(left, 0.0))} s left)"
                )
        # A zero wait (no_backoff(), or `on` returning 0) is only a checkpoint:
        # it crosses no deadline, so the caller's is only read before real
        # waits (reading it costs about 1 us on asyncio).
        if delay > 0:
            deadline = anyio.current_effective_deadline()
            if now + delay >= deadline:
                return delay, (
                    f"waiting {_secs(delay)} s would cross the caller's deadline"
                    f" in {_secs(max(deadline - now, 0.0))} s"
                )
        budget = policy._budget
        if budget is not None:
            withdrawn = budget._withdraw()
            if withdrawn is None:
                return delay, f"retry budget exhausted ({budget!r})"
            self.withdrawn = withdrawn
        return delay, None

    def wants_events(self) -> bool:
        """Whether a :class:`RetryScheduled` would reach anyone (checked once
        per call: building events nobody reads costs about 1 us per retry)."""
        listening = self.listening
        if listening is None:
            listening = self.listening = bool(self.policy._hooks) or _listening()
        return listening

    async def announce(self, delay: float, error: BaseException | None, result: object) -> None:
        """Send :class:`RetryScheduled` to the hooks."""
        await _emit(
            RetryScheduled(
                policy=self.name, attempt=self.attempts, delay=delay, error=error, result=result
            ),
            self.policy._hooks,
            error,
        )

    async def wait(self, delay: float, error: BaseException | None, result: object) -> None:
        """Tell the hooks, sleep *delay* seconds (a checkpoint even at 0), then
        count the next attempt. (``Retry._retry`` inlines this.)"""
        policy = self.policy
        try:
            if self.wants_events():
                await self.announce(delay, error, result)
            await anyio.sleep(delay)
        except BaseException:
            if policy._budget is not None:
                policy._budget._refund(self.withdrawn)  # the retry will not happen
            raise
        self.record(error, result)

    def record(self, error: BaseException | None, result: object) -> None:
        """Remember what the attempt that just failed did; count the next one."""
        earlier = self.earlier
        if earlier is None:
            earlier = self.earlier = deque(maxlen=_EARLIER_KEPT)
        if error is not None:
            earlier.append((self.attempts, type(error), error.args))
        else:
            earlier.append((self.attempts, None, (_short_repr(result),)))
        self.earlier_count += 1
        self.previous = error
        self.attempts += 1

    def annotate(self, error: BaseException, reason: str) -> None:
        """Add the give-up note and the earlier attempts to *error*."""
        error.add_note(
            f"gave up after {_plural(self.attempts, 'attempt')} in {_secs(self.elapsed())} s:"
            f" {reason}"
        )
        earlier = self.earlier
        if earlier:
            if self.earlier_count > len(earlier):
                head = f"earlier attempts (the last {len(earlier)} of {self.earlier_count})"
            else:
                head = "earlier attempts"
            described = "; ".join(
                f"#{num} {_describe(kind, what)}"
                if kind is not None
                else f"#{num} rejected result {what[0]}"
                for num, kind, what in earlier
            )
            error.add_note(f"{head}: {described}")
        if self.previous is not None:
            _link(error, self.previous)

    async def give_up(self, reason: str, error: BaseException | None, result: object) -> None:
        """Stop retrying: annotate *error* and tell the hooks (the caller then
        re-raises *error* or returns *result*)."""
        if error is not None:
            self.annotate(error, reason)
        await _emit(
            RetryGaveUp(
                policy=self.name,
                attempts=self.attempts,
                elapsed=self.elapsed(),
                reason=reason,
                error=error,
                result=None if error is not None else result,
            ),
            self.policy._hooks,
            error,
        )

    def not_retryable(self, error: BaseException) -> None:
        """A later attempt raised an error that is not retried: keep the
        earlier ones reachable (cancellation and friends stay untouched)."""
        if _is_never_retried(error):
            return
        self.clock()
        self.annotate(
            error,
            f"{type(error).__qualname__} is not retried (on={self.policy._on_repr()})",
        )


# --- the policy -----------------------------------------------------------------


class Retry:
    """A retry policy: what to retry, how often, how long to wait in between.

    Build one with :func:`retry` (same arguments). A ``Retry`` is immutable and
    keeps no per-call state, so one object can decorate functions and serve
    any number of concurrent calls::

        policy = anyway.retry(on=httpx.TransportError, attempts=5)

        @policy
        async def fetch(url: str) -> bytes: ...

        await policy.call(fetch_raw, url)          # or call a function directly

        async for attempt in policy.retrying():    # or retry a block
            with attempt:
                ...
    """

    __slots__ = (
        "_attempts",
        "_backoff",
        "_budget",
        "_circuit_open_ok",
        "_hooks",
        "_name",
        "_on",
        "_predicate",
        "_result_check",
        "_timeout",
        "_types",
    )

    _on: RetryOn
    _types: tuple[type[BaseException], ...] | None
    _predicate: Predicate | None
    _circuit_open_ok: bool
    _attempts: int | None
    _timeout: float | None
    _backoff: Backoff
    _result_check: ResultCheck | None
    _hooks: tuple[Hook, ...]
    _budget: RetryBudget | None
    _name: str | None

    def __init__(
        self,
        *,
        on: RetryOn,
        attempts: int | None = 10,
        timeout: float | None = 45.0,
        backoff: Backoff = _DEFAULT_BACKOFF,
        retry_if_result: ResultCheck | None = None,
        hooks: Iterable[Hook] | Hook = (),
        budget: RetryBudget | None = None,
        name: str | None = None,
    ) -> None:
        types, predicate = _check_on(on)
        if attempts is not None:
            attempts = check_count(
                "attempts",
                attempts,
                hint="; the total number of calls, e.g. 3 (1 disables retrying, None removes"
                " the limit)",
            )
        if timeout is not None:
            timeout = check_seconds(
                "timeout",
                timeout,
                allow_zero=False,
                hint="; the seconds retrying may take, counted from the first failure"
                " (use timeout=None to disable it)",
            )
        if not isinstance(backoff, Backoff):
            raise TypeError(
                f"backoff must be an anyway.Backoff, e.g. Backoff(initial=0.5, max=30), got"
                f" {backoff!r} ({type(backoff).__name__})"
            )
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(
                f"budget must be an anyway.RetryBudget shared by the callers, got {budget!r}"
                f" ({type(budget).__name__})"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        setter = object.__setattr__
        setter(self, "_on", on)
        setter(self, "_types", types)
        setter(self, "_predicate", predicate)
        setter(
            self,
            "_circuit_open_ok",
            types is None or any(t is CircuitOpen or t is Rejected for t in types),
        )
        setter(self, "_attempts", attempts)
        setter(self, "_timeout", timeout)
        setter(self, "_backoff", backoff)
        setter(self, "_result_check", _check_result_check(retry_if_result))
        setter(self, "_hooks", check_hooks(hooks))
        setter(self, "_budget", budget)
        setter(self, "_name", name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"Retry policies are immutable (one object serves concurrent calls); build a new"
            f" one with anyway.retry(...) instead of setting {name!r}"
        )

    def _on_repr(self) -> str:
        types = self._types
        if types is None:
            return _name_of(self._on)
        if len(types) == 1 and not isinstance(self._on, tuple):
            return types[0].__qualname__
        return (
            "(" + ", ".join(t.__qualname__ for t in types) + ("," if len(types) == 1 else "") + ")"
        )

    def __repr__(self) -> str:
        parts = [
            f"on={self._on_repr()}",
            f"attempts={self._attempts}",
            f"timeout={None if self._timeout is None else _secs(self._timeout)}",
            f"backoff={self._backoff!r}",
        ]
        if self._result_check is not None:
            parts.append(f"retry_if_result={_name_of(self._result_check)}")
        if self._hooks:
            parts.append(f"hooks=({', '.join(_name_of(h) for h in self._hooks)},)")
        if self._budget is not None:
            parts.append(f"budget={self._budget!r}")
        if self._name is not None:
            parts.append(f"name={self._name!r}")
        return f"Retry({', '.join(parts)})"

    # --- read-only options ---

    @property
    def on(self) -> RetryOn:
        """What is retried (as given)."""
        return self._on

    @property
    def attempts(self) -> int | None:
        """The most attempts (calls) per call, or ``None`` for no limit."""
        return self._attempts

    @property
    def timeout(self) -> float | None:
        """Seconds retrying may take, counted from the first failure, or ``None``."""
        return self._timeout

    @property
    def backoff(self) -> Backoff:
        """The waits between attempts."""
        return self._backoff

    @property
    def budget(self) -> RetryBudget | None:
        """The shared :class:`RetryBudget`, if any."""
        return self._budget

    # --- deciding ---

    def _verdict(self, exc: BaseException) -> bool | float:
        """Whether *exc* is retried: ``False``, ``True`` (after the backoff) or
        a delay in seconds. Called in the ``except`` block that caught *exc*."""
        if not isinstance(exc, Exception):
            if _is_never_retried(exc):
                return False
        elif exc.__class__ is _NotAwaitable:
            return False  # a bug at the call site: retrying cannot help
        types = self._types
        if types is not None:
            if not isinstance(exc, types):
                return False
            return not isinstance(exc, CircuitOpen) or self._circuit_open_ok
        assert self._predicate is not None
        return _coerce_verdict(self._predicate(exc), "the on predicate", self._predicate)

    def _result_verdict(self, result: object) -> bool | float:
        check = self._result_check
        assert check is not None
        return _coerce_verdict(check(result), "retry_if_result", check)

    # --- calling ---

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate the async function *fn*: calls to it are retried by this
        policy. The signature (and ``__name__``, ``__doc__``...) is kept."""
        check_callable("the decorated object", fn)
        if not _is_async_callable(fn):
            name = _name_of(fn)
            if inspect.isasyncgenfunction(fn):
                raise TypeError(
                    f"retry() cannot decorate the async generator function {name}: a stream"
                    " that failed half-way cannot be replayed; retry the call that opens it"
                )
            raise TypeError(
                f"retry() decorates async functions, but {name} is not one (it is a"
                f" {type(fn).__name__}); define it with 'async def' or run sync code in"
                " anyio.to_thread.run_sync inside an async function"
            )
        name = self._name or _name_of(fn)
        policy = self
        budget = self._budget
        has_check = self._result_check is not None

        @functools.wraps(fn)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            if budget is not None:
                budget.deposit()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                verdict = policy._verdict(exc)
                if verdict is False:
                    raise
                error: BaseException | None = exc
                rejected: object = None
            else:
                if not has_check:
                    return result
                verdict = policy._result_verdict(result)
                if verdict is False:
                    return result
                error = None
                rejected = result
            retrying = policy._retry(fn, args, kwargs, name, error, rejected, verdict)
            del error  # the loop owns it now (no frame <-> traceback cycle)
            return await retrying

        return retried

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)``, retried by this policy."""
        budget = self._budget
        if budget is not None:
            budget.deposit()
        try:
            awaitable = fn(*args, **kwargs)
            if awaitable.__class__ is not _COROUTINE:
                awaitable = _awaitable(fn, awaitable)
            result = await awaitable
        except BaseException as exc:
            if not callable(fn_object := cast(object, fn)):  # e.g. a coroutine object:
                check_callable("fn", fn_object)  # a bug at the call site, explained
            verdict = self._verdict(exc)
            if verdict is False:
                raise
            error: BaseException | None = exc
            rejected: object = None
        else:
            if self._result_check is None:
                return result
            verdict = self._result_verdict(result)
            if verdict is False:
                return result
            error = None
            rejected = result
        name = self._name or _name_of(fn)
        retrying = self._retry(fn, args, kwargs, name, error, rejected, verdict)
        del error  # the loop owns it now (no frame <-> traceback cycle)
        return await retrying

    async def _retry(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str,
        error: BaseException | None,
        rejected: object,
        verdict: bool | float,
    ) -> T:
        """The retry loop, entered after the first attempt failed (outside the
        ``except`` block, so later errors are not chained to the first)."""
        run = _Run(self, name)
        has_check = self._result_check is not None
        hooks = self._hooks
        budget = self._budget
        while True:
            delay, reason = run.plan(verdict)
            if reason is not None:
                await run.give_up(reason, error, rejected)
                if error is not None:
                    raise error
                return cast(T, rejected)  # retry_if_result rejected the last result
            try:
                if hooks or run.wants_events():
                    await run.announce(delay, error, rejected)
                await anyio.sleep(delay)
            except BaseException:
                if budget is not None:
                    budget._refund(run.withdrawn)  # the retry will not happen
                raise
            run.record(error, rejected)
            # Hold no error across the next attempt: on success nothing then
            # refers back to this frame, and the errors are freed at once
            # instead of waiting for the cycle collector.
            error = rejected = None
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                verdict = self._verdict(exc)
                if verdict is False:
                    run.not_retryable(exc)
                    raise
                error = exc
            else:
                if not has_check:
                    del run
                    return result
                verdict = self._result_verdict(result)
                if verdict is False:
                    del run
                    return result
                rejected = result

    def retrying(self, *, name: str | None = None) -> AsyncIterator[Attempt]:
        """Retry a block of code with this policy::

            async for attempt in policy.retrying():
                with attempt:
                    ...

        See :func:`retrying`; with ``retry_if_result``, the block reports its
        result with :meth:`Attempt.set_result`.
        """
        return _Attempts(self, name or self._name or "retrying")


# --- retrying() blocks ------------------------------------------------------------

_FRESH: Final = 0
_RUNNING: Final = 1
_FAILED: Final = 2
_DONE: Final = 3


#: The result of an attempt whose block reported none.
_NO_RESULT: Final = object()


class Attempt:
    """One attempt of a :func:`retrying` loop; use it as ``with attempt:``.

    A retryable error raised in the block is swallowed and the loop goes on
    (after the backoff); success ends the loop; any other error propagates.

    With ``retry_if_result``, the block reports its result with
    :meth:`set_result` (or ``attempt.result = value``); leaving the block
    without an error then hands the result to the predicate, and a rejected
    result is retried like a retryable error. A block that reports no result
    is not judged: leaving it without an error ends the loop.
    """

    __slots__ = ("_next_wait", "_num", "_owner", "_result")

    def __init__(self, num: int, owner: _Attempts) -> None:
        self._num = num
        self._owner = owner
        self._next_wait: float | None = None
        self._result: object = _NO_RESULT

    @property
    def num(self) -> int:
        """The number of this attempt: 1 for the first call."""
        return self._num

    @property
    def next_wait(self) -> float:
        """The backoff wait before the next attempt if this one fails
        (``0.0`` under :func:`anyway.testing.no_backoff`). It is drawn once
        and is the wait that will be used, unless ``on`` returns a delay
        of its own."""
        if self._next_wait is None:
            self._next_wait = self._owner._run.peek_backoff()
        return self._next_wait

    def set_result(self, value: T, /) -> T:
        """Report the block's result and return it, for ``retry_if_result``::

            async for attempt in anyway.retrying(
                on=httpx.TransportError, retry_if_result=lambda r: r.status_code == 503
            ):
                with attempt:
                    response = attempt.set_result(await client.get(url))

        Call it inside ``with attempt:`` (a later call would not be judged, so
        it raises ``RuntimeError``); a second call replaces the result. When
        the block leaves without an error, ``retry_if_result`` judges the
        result: a rejected one is retried (same waits, events and limits as
        :func:`retry`); when retrying stops with a rejected result, the loop
        ends (no error) and :attr:`result` still holds it. Without
        ``retry_if_result`` the result is only kept in :attr:`result`.
        """
        owner = self._owner
        if self is not owner._current or owner._state != _RUNNING:
            raise RuntimeError(
                f"set_result() reports the result of the running attempt, but attempt"
                f" {self._num} is over: call it inside 'with attempt:'"
            )
        self._result = value
        return value

    @property
    def result(self) -> Any:
        """The result this attempt reported with :meth:`set_result` (after the
        loop: the last attempt's result, accepted or, when retrying stopped,
        rejected). ``AttributeError`` if it reported none. Setting it is the
        same as calling :meth:`set_result`."""
        result = self._result
        if result is _NO_RESULT:
            raise AttributeError(
                f"attempt {self._num} reported no result: call attempt.set_result(value)"
                " inside 'with attempt:'"
            )
        return result

    @result.setter
    def result(self, value: object) -> None:
        self.set_result(value)

    def __repr__(self) -> str:
        shown = "" if self._result is _NO_RESULT else f" result={_short_repr(self._result, 60)}"
        return f"<Attempt num={self._num} next_wait={_secs(self.next_wait)}{shown}>"

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._owner._exit(self, exc)


class _Attempts(AsyncIterator[Attempt]):
    """The async iterator behind :func:`retrying` (one per loop, never shared)."""

    __slots__ = ("_current", "_error", "_policy", "_run", "_state", "_verdict")

    def __init__(self, policy: Retry, name: str) -> None:
        self._policy = policy
        self._run = _Run(policy, name)
        self._state = _FRESH
        self._current: Attempt | None = None
        self._error: BaseException | None = None
        self._verdict: bool | float = True

    def __repr__(self) -> str:
        state = ("fresh", "running", "failed", "done")[self._state]
        return f"<retrying {self._run.name} attempts={self._run.attempts} state={state}>"

    def __aiter__(self) -> _Attempts:
        return self

    async def __anext__(self) -> Attempt:
        state = self._state
        run = self._run
        if state == _FRESH:
            budget = self._policy._budget
            if budget is not None:
                budget.deposit()
        elif state == _DONE:
            raise StopAsyncIteration
        elif state == _RUNNING:
            self._state = _DONE
            raise RuntimeError(
                "each attempt of a retrying() loop must run its code in 'with attempt:';"
                " this one never entered or left it"
            )
        else:
            error = self._error
            self._error = None
            attempt = self._current
            assert attempt is not None
            # No error: retry_if_result rejected the result the attempt reported.
            rejected = attempt._result if error is None else None
            delay, reason = run.plan(self._verdict)
            if reason is not None:
                self._state = _DONE
                await run.give_up(reason, error, rejected)
                if error is None:
                    raise StopAsyncIteration  # the rejected result stays on the attempt
                raise error
            await run.wait(delay, error, rejected)
        attempt = self._current = Attempt(run.attempts, self)
        self._state = _RUNNING
        return attempt

    def _exit(self, attempt: Attempt, exc: BaseException | None) -> bool:
        if attempt is not self._current or self._state != _RUNNING:
            return False  # a stale attempt: leave its exception alone
        self._state = _DONE
        if exc is None:
            result = attempt._result
            if result is not _NO_RESULT and self._policy._result_check is not None:
                verdict = self._policy._result_verdict(result)
                if verdict is not False:
                    self._verdict = verdict
                    self._state = _FAILED  # rejected: __anext__ retries or gives up
                    return False
            self._run.previous = None  # free the last error now, not at the next GC
            return False
        verdict = self._policy._verdict(exc)
        if verdict is False:
            if self._run.attempts > 1:
                self._run.not_retryable(exc)
            return False
        self._error = exc
        self._verdict = verdict
        self._state = _FAILED
        return True


# --- the public constructors ---------------------------------------------------------


def retry(
    *,
    on: RetryOn,
    attempts: int | None = 10,
    timeout: float | None = 45.0,
    backoff: Backoff = _DEFAULT_BACKOFF,
    retry_if_result: ResultCheck | None = None,
    hooks: Iterable[Hook] | Hook = (),
    budget: RetryBudget | None = None,
    name: str | None = None,
) -> Retry:
    """A :class:`Retry` policy, also a decorator for async functions::

        @anyway.retry(on=(ConnectionError, TimeoutError), attempts=5, timeout=10)
        async def fetch(url: str) -> bytes: ...

    *on* (required)
        What to retry: an exception type, a tuple of them, or a predicate
        ``exc -> bool | float``. A float is the delay to wait before the next
        attempt instead of the backoff (e.g. a ``Retry-After`` value); it is
        not capped by ``backoff.max`` but the deadline rules below apply.
        Cancellation, ``KeyboardInterrupt``, ``SystemExit`` and
        ``GeneratorExit`` are never retried, whatever *on* says.
        :class:`~anyway.CircuitOpen` is only retried when *on* names
        ``CircuitOpen`` or ``Rejected`` itself or is a predicate: retrying an
        open breaker right away is useless, and ``on=Exception`` should not
        do it by accident.
    *attempts*
        The most calls in total (``1``: no retry); ``None``: no limit (then
        *timeout*, the caller's deadline or the budget must end it).
    *timeout*
        Seconds that retrying may take, counted from the first failure (the
        success path reads no clock). A wait that would end at or after it is
        not started: the last error is re-raised at once. ``None``: no limit.
        A call that keeps failing thus takes at most its first attempt, plus
        *timeout*, plus its last attempt. For a hard limit on the whole call,
        first attempt included, wrap it in a deadline
        (:func:`anyway.deadline`), which retry respects as well.
    *backoff*
        The waits (:class:`Backoff`; default: full jitter from 0.1 s, capped
        at 10 s).
    *retry_if_result*
        A predicate ``result -> bool | float`` to retry on results too (e.g.
        an HTTP 503 response). When the last result is rejected and retrying
        stops, that result is returned. A :func:`retrying` block reports its
        result with :meth:`Attempt.set_result`.
    *hooks*
        Hooks (sync or async) that receive :class:`~anyway.RetryScheduled`
        before each wait and :class:`~anyway.RetryGaveUp` when retrying stops
        at a limit; then the global hooks get them (by default: logging).
    *budget*
        A :class:`RetryBudget` shared by the callers of a dependency.
    *name*
        The ``policy`` of the events (default: the function's qualified name).

    Retrying stops at the first of: success, a non-retryable error, no
    attempts left, a wait that would cross *timeout* or the caller's
    effective deadline (:func:`anyio.current_effective_deadline`), or an
    exhausted budget. The last error is then re-raised as itself with a
    note ``gave up after N attempts in X s: <why>`` (``X``: the seconds
    since the first attempt failed) and a note listing the
    earlier attempts' errors; the previous error is also its
    ``__context__`` when that was free.
    """
    return Retry(
        on=on,
        attempts=attempts,
        timeout=timeout,
        backoff=backoff,
        retry_if_result=retry_if_result,
        hooks=hooks,
        budget=budget,
        name=name,
    )


def retrying(
    *,
    on: RetryOn,
    attempts: int | None = 10,
    timeout: float | None = 45.0,
    backoff: Backoff = _DEFAULT_BACKOFF,
    retry_if_result: ResultCheck | None = None,
    hooks: Iterable[Hook] | Hook = (),
    budget: RetryBudget | None = None,
    name: str | None = None,
) -> AsyncIterator[Attempt]:
    """Retry a block of code: an async iterator of :class:`Attempt` context
    managers, with the options of :func:`retry`::

        async for attempt in anyway.retrying(on=OSError, attempts=3):
            with attempt:
                await connect()

    A retryable error in the ``with`` block is swallowed and the next
    iteration waits for the backoff; success ends the loop; when retrying
    stops, the last error is raised from the ``async for`` line with the
    same notes as :func:`retry`. Other errors propagate from the block.

    With *retry_if_result*, the block reports its result with
    :meth:`Attempt.set_result`; a rejected result is retried like an error.
    When retrying stops on a rejected result the loop just ends, and the
    last attempt's :attr:`Attempt.result` holds it::

        async for attempt in anyway.retrying(
            on=httpx.TransportError, retry_if_result=lambda r: r.status_code == 503
        ):
            with attempt:
                attempt.set_result(await client.get(url))
        response = attempt.result
    """
    return Retry(
        on=on,
        attempts=attempts,
        timeout=timeout,
        backoff=backoff,
        retry_if_result=retry_if_result,
        hooks=hooks,
        budget=budget,
        name=name,
    ).retrying()
