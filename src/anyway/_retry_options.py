"""The retry options, written once: :class:`RetryOptions` (what ``retry()``,
``retrying()`` and ``Retry()`` take) and :class:`Settings` (the same,
validated, with the defaults applied, and the verdicts that use them)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Required, TypeAlias, TypedDict, cast

from ._backoff import Backoff
from ._errors import CircuitOpen, Rejected
from ._events import Hook, check_hooks
from ._retry_budget import RetryBudget
from ._util import NotAwaitableError, is_async_function, is_control_flow, name_of, short_repr
from ._validate import check_callable, check_count, check_exception_filter, check_seconds

__all__ = ["ResultCheck", "RetryOn", "RetryOptions", "Settings", "TryAgain", "WaitFn"]

Predicate: TypeAlias = Callable[[BaseException], bool | float | Awaitable[bool | float]]
RetryOn: TypeAlias = type[BaseException] | tuple[type[BaseException], ...] | Predicate
"""What ``on=`` accepts: an exception type, a tuple of them, or a predicate
``exc -> bool | float`` (a float is the delay to use), sync or async."""

ResultCheck: TypeAlias = Callable[[Any], bool | float | Awaitable[bool | float]]
"""What ``retry_if_result=`` accepts: a predicate ``result -> bool | float``,
sync or async."""

WaitFn: TypeAlias = Callable[[int, BaseException | None], float]
"""What ``wait=`` accepts: ``(attempt, exc) -> seconds``, called after
attempt number ``attempt`` failed with ``exc`` (``None`` for a result that
``retry_if_result`` rejected)."""


class TryAgain(Exception):
    """Raise it in a retried function or a ``retrying()`` block to ask for
    another attempt, whatever ``on`` says (tenacity's ``TryAgain``).

    It is retried like any retryable error: after the backoff, and never
    past ``attempts``, ``timeout``, the caller's deadline or the budget; when
    retrying stops, it is raised with the give-up notes.
    """


class RetryOptions(TypedDict, total=False):
    """The options of :func:`anyway.retry`, :func:`anyway.retrying` and
    :class:`anyway.Retry` (all keyword-only; see :func:`anyway.retry`)."""

    on: Required[RetryOn]
    attempts: int | None
    timeout: float | None
    backoff: Backoff
    wait: WaitFn | None
    retry_if_result: ResultCheck | None
    hooks: Iterable[Hook] | Hook
    before: Iterable[Hook] | Hook
    budget: RetryBudget | None
    name: str | None


_DEFAULT_BACKOFF: Final = Backoff()
#: The defaults of the options that have one (``on`` has none).
DEFAULTS: Final[dict[str, object]] = {
    "attempts": 10,
    "timeout": 45.0,
    "backoff": _DEFAULT_BACKOFF,
    "wait": None,
    "retry_if_result": None,
    "hooks": (),
    "before": (),
    "budget": None,
    "name": None,
}


def _check_before(before: object) -> tuple[Hook, ...]:
    """The ``before=`` hooks: one callable or an iterable of them."""
    if callable(before):
        return (cast(Hook, before),)
    hooks: tuple[object, ...] = (None,)
    if isinstance(before, Iterable) and not isinstance(before, (str, bytes)):
        hooks = tuple(before)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(
                f"before must be a hook (a callable taking a RetryAttemptStarted event) or an"
                f" iterable of them, got {short_repr(before, 60)}"
            )
    return cast(tuple[Hook, ...], hooks)


def _refuse_awaitable(value: object, what: str, fn: object) -> None:
    """A sync function (e.g. ``lambda exc: check(exc)`` around an async
    ``check``) returned something to await, which is never awaited here."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # no "coroutine was never awaited" warning on top of ours
        raise TypeError(
            f"{what} {name_of(fn)} returned {short_repr(value, 60)}, which this sync call"
            " cannot await: make the function itself async (async def), not a lambda or"
            " sync function that returns a coroutine"
        )


def _coerce_verdict(value: object, what: str, fn: object) -> bool | float:
    """A predicate's answer: ``True``/``False``, or a delay in seconds."""
    if value is True or value is False:
        return value
    _refuse_awaitable(value, what, fn)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        delay = float(value)
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(
                f"{what} {name_of(fn)} returned {value!r} as a delay; a delay must be a"
                " finite number of seconds >= 0 (or return True to use the backoff, False"
                " not to retry)"
            )
        return delay
    hint = " (use .total_seconds())" if hasattr(value, "total_seconds") else ""
    raise TypeError(
        f"{what} {name_of(fn)} returned {short_repr(value)} ({type(value).__name__}); it"
        " must return True (retry after the backoff), False (do not retry) or a delay in"
        f" seconds as a float, e.g. from a Retry-After header{hint}"
    )


class Settings:
    """Validated retry options (immutable, shared by every call of a policy)."""

    __slots__ = (
        "attempts",
        "awaits",
        "backoff",
        "before",
        "budget",
        "circuit_open_ok",
        "hooks",
        "name",
        "never_waits",
        "on",
        "predicate",
        "result_check",
        "timeout",
        "types",
        "wait",
    )

    def __init__(self, options: RetryOptions) -> None:
        unknown = options.keys() - DEFAULTS.keys() - {"on"}
        if unknown:
            raise TypeError(
                f"unexpected retry option {sorted(unknown)[0]!r}; the options are: on, "
                + ", ".join(DEFAULTS)
            )
        if "on" not in options:
            raise TypeError("missing the required keyword argument 'on' (what to retry)")
        given: dict[str, Any] = {**DEFAULTS, **options}
        on = given["on"]
        types: tuple[type[BaseException], ...]
        predicate: Callable[[BaseException], Any] | None
        awaits: bool = not isinstance(on, (type, tuple)) and is_async_function(on)
        if awaits:  # an async predicate (the shared filter check takes sync ones)
            types, predicate = (), check_callable("on", on)
        else:
            types, predicate = check_exception_filter("on", on)
        attempts = given["attempts"]
        if attempts is not None:
            attempts = check_count(
                "attempts",
                attempts,
                hint="; the total number of calls, e.g. 3 (1 disables retrying, None removes"
                " the limit)",
            )
        timeout = given["timeout"]
        if timeout is not None:
            timeout = check_seconds(
                "timeout",
                timeout,
                allow_zero=False,
                hint="; the seconds retrying may take, counted from the first failure"
                " (use timeout=None to disable it)",
            )
        backoff = given["backoff"]
        if not isinstance(backoff, Backoff):
            raise TypeError(
                f"backoff must be an anyway.Backoff, e.g. Backoff(initial=0.5, max=30), got"
                f" {backoff!r} ({type(backoff).__name__})"
            )
        wait = given["wait"]
        if wait is not None:
            if "backoff" in options:
                raise TypeError(
                    "pass either backoff= (a Backoff) or wait= (a function (attempt, exc) ->"
                    " seconds), not both"
                )
            check_callable("wait", wait)
            if is_async_function(wait):
                raise TypeError(
                    "wait must be a plain (sync) function (attempt, exc) -> seconds, got the"
                    f" async function {name_of(wait)}"
                )
        budget = given["budget"]
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(
                f"budget must be an anyway.RetryBudget shared by the callers, got {budget!r}"
                f" ({type(budget).__name__})"
            )
        name = given["name"]
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        result_check = given["retry_if_result"]
        if result_check is not None:
            check_callable("retry_if_result", result_check)
            awaits = awaits or is_async_function(result_check)
        #: Whether a predicate is async: the verdicts must then be awaited
        #: (:meth:`verdict_async`), and retrying() blocks use ``async with``.
        self.awaits: bool = awaits
        self.on: RetryOn = on
        self.types: tuple[type[BaseException], ...] | None = types or None
        self.predicate: Predicate | None = predicate
        self.circuit_open_ok: bool = not types or any(
            t is CircuitOpen or t is Rejected for t in types
        )
        self.attempts: int | None = attempts
        self.timeout: float | None = timeout
        self.backoff: Backoff = backoff
        self.wait: WaitFn | None = wait
        #: The backoff draws nothing but zeros (e.g. stamina's ``wait_max=0``):
        #: the retry loop skips drawing them.
        self.never_waits: bool = wait is None and (backoff.max == 0 or backoff.initial == 0)
        self.result_check: ResultCheck | None = result_check
        self.hooks: tuple[Hook, ...] = check_hooks(given["hooks"])
        self.before: tuple[Hook, ...] = _check_before(given["before"])
        self.budget: RetryBudget | None = budget
        self.name: str | None = name

    def on_repr(self) -> str:
        types = self.types
        if types is None:
            return name_of(self.on)
        if len(types) == 1 and not isinstance(self.on, tuple):
            return types[0].__qualname__
        return (
            "(" + ", ".join(t.__qualname__ for t in types) + ("," if len(types) == 1 else "") + ")"
        )

    def _verdict(self, exc: BaseException) -> bool | float | None:
        """The verdict on *exc* without the predicate (``None``: ask it)."""
        if not isinstance(exc, Exception):
            if is_control_flow(exc):
                return False
        elif isinstance(exc, NotAwaitableError):
            return False  # a bug at the call site: retrying cannot help
        elif isinstance(exc, TryAgain):
            return True
        types = self.types
        if types is not None:
            if not isinstance(exc, types):
                return False
            return not isinstance(exc, CircuitOpen) or self.circuit_open_ok
        return None

    def verdict(self, exc: BaseException) -> bool | float:
        """Whether *exc* is retried: ``False``, ``True`` (after the backoff) or
        a delay in seconds. Called in the ``except`` block that caught *exc*
        (sync predicates only: see :meth:`verdict_async`)."""
        verdict = self._verdict(exc)
        if verdict is not None:
            return verdict
        assert self.predicate is not None
        return _coerce_verdict(self.predicate(exc), "the on predicate", self.predicate)

    async def verdict_async(self, exc: BaseException) -> bool | float:
        """:meth:`verdict`, awaiting an async predicate."""
        verdict = self._verdict(exc)
        if verdict is not None:
            return verdict
        predicate = self.predicate
        assert predicate is not None
        answer = predicate(exc)
        if inspect.isawaitable(answer):
            answer = await answer
        return _coerce_verdict(answer, "the on predicate", predicate)

    def waited(self, attempt: int, exc: BaseException | None) -> float:
        """The ``wait=`` function's wait after attempt *attempt* failed."""
        wait = self.wait
        assert wait is not None
        delay = wait(attempt, exc)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            _refuse_awaitable(delay, "wait", wait)
            hint = " (use .total_seconds())" if hasattr(delay, "total_seconds") else ""
            raise TypeError(
                f"wait {name_of(wait)} returned {short_repr(delay)} ({type(delay).__name__});"
                f" it must return the seconds to wait as a float{hint}"
            )
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(
                f"wait {name_of(wait)} returned {delay!r}; a wait must be a finite number of"
                " seconds >= 0"
            )
        return float(delay)

    def result_verdict(self, result: object) -> bool | float:
        """Whether *result* is retried (only with ``retry_if_result``)."""
        check = self.result_check
        assert check is not None
        return _coerce_verdict(check(result), "retry_if_result", check)

    async def result_verdict_async(self, result: object) -> bool | float:
        """:meth:`result_verdict`, awaiting an async predicate."""
        check = self.result_check
        assert check is not None
        answer = check(result)
        if inspect.isawaitable(answer):
            answer = await answer
        return _coerce_verdict(answer, "retry_if_result", check)
