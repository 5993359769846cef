"""Argument checks shared by every helper: fail at construction, name the
parameter, the bad value and the fix (design principle 5)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

from ._util import is_async_function, name_of

__all__ = [
    "ExceptionFilter",
    "check_async_cm",
    "check_callable",
    "check_count",
    "check_exception_filter",
    "check_number",
    "check_seconds",
    "check_sync_function",
]

ExceptionFilter: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], Any]
)
"""What ``on=`` accepts everywhere (retry, breaker): an exception type, a
tuple of them, or a predicate taking the exception."""


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    allow_minimum: bool = True,
    maximum: float = math.inf,
    allow_inf: bool = False,
    hint: str = "",
) -> float:
    """Return *value* as a float, or raise ``TypeError``/``ValueError``.

    Rejects bools, non-numbers, NaN, values below *minimum* (or equal to it
    unless *allow_minimum*), above *maximum*, and infinity unless *allow_inf*.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){hint}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must be a number, got NaN{hint}")
    if math.isinf(number) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value!r}{hint}")
    if number < minimum or (number == minimum and not allow_minimum):
        bound = ">=" if allow_minimum else ">"
        raise ValueError(f"{name} must be {bound} {minimum:g}, got {value!r}{hint}")
    if number > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}{hint}")
    return number


def check_seconds(
    name: str, value: object, *, allow_zero: bool = True, allow_inf: bool = False, hint: str = ""
) -> float:
    """A duration in seconds: a finite number >= 0 (> 0 unless *allow_zero*)."""
    return check_number(
        name, value, minimum=0.0, allow_minimum=allow_zero, allow_inf=allow_inf, hint=hint
    )


def check_count(name: str, value: object, *, minimum: int = 1, hint: str = "") -> int:
    """A whole number >= *minimum* (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be a whole number, got {value!r} ({type(value).__name__}){hint}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}{hint}")
    return value


def check_callable(name: str, fn: object, *, want_async: bool = False) -> Callable[..., Any]:
    """A callable; a coroutine *object* (``f()`` instead of ``f``) gets the fix."""
    if inspect.iscoroutine(fn):
        fn.close()  # avoid "coroutine was never awaited" on top of our error
        qualname = getattr(fn, "__qualname__", "fn")
        raise TypeError(
            f"{name} must be an async function, not a coroutine object: you probably wrote"
            f" {qualname}(...) where you meant {qualname} (pass the function and its"
            " arguments separately, or a lambda / functools.partial)"
        )
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {fn!r} ({type(fn).__name__})")
    if want_async and inspect.isclass(fn):
        raise TypeError(f"{name} must be an async function, got the class {fn!r}")
    return fn


def check_exception_filter(
    name: str, on: object
) -> tuple[tuple[type[BaseException], ...], Callable[[BaseException], Any] | None]:
    """Split an ``on=`` filter into exception types, or a sync predicate.

    Cancellation, ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit``
    never match whatever the filter says (see ``_util.is_control_flow``): the
    policies check that first.
    """
    fix = (
        f"{name} must be an exception type ({name}=OSError), a tuple of them"
        f" ({name}=(OSError, TimeoutError)) or a predicate taking the exception"
    )
    if isinstance(on, type):
        if issubclass(on, BaseException):
            return (on,), None
        raise TypeError(f"{fix}; got the class {on.__qualname__}, which is not an exception")
    if isinstance(on, tuple):
        if not on:
            raise ValueError(f"{fix}; got {name}=(), which matches nothing")
        for item in on:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(
                    f"{fix}; got {item!r} in {name}={on!r}, which is not an exception type"
                )
        return on, None
    if isinstance(on, BaseException):
        raise TypeError(
            f"{fix}; got the exception instance {on!r}: pass the class {type(on).__qualname__}"
        )
    if isinstance(on, (list, set, frozenset)):
        raise TypeError(f"{fix}; got a {type(on).__name__} {on!r}: use a tuple")
    predicate = check_callable(name, on)
    if inspect.iscoroutinefunction(predicate):
        raise TypeError(
            f"{fix}; a predicate must be a plain (sync) function, got the async function {predicate!r}"
        )
    return (), predicate


def check_async_cm(name: str, value: object, example: str) -> AbstractAsyncContextManager[Any]:
    """*value* must be an async context manager instance (e.g. a limiter)."""
    if isinstance(value, type):
        raise TypeError(
            f"{name} must be an instance, got the class {value.__qualname__}; e.g. {name}={example}"
        )
    if not (
        callable(getattr(value, "__aenter__", None)) and callable(getattr(value, "__aexit__", None))
    ):
        hint = ""
        if callable(getattr(value, "limit", None)):
            hint = " (a KeyedRateLimiter needs a key: use limiter.limit(key) inside the function)"
        raise TypeError(
            f"{name} must be an async context manager such as {example}, got {value!r}{hint}"
        )
    return value  # type: ignore[return-value]


def check_sync_function(
    name: str, fn: object, *, argument: str, example: str
) -> Callable[..., Any]:
    """*fn* must be a plain (sync) function that can be called with one
    positional argument, *argument* (e.g. ``"the host"``): an ``async def``,
    or a function taking no argument, fails here rather than at its first
    call. *example* is the fix (``"limiter=lambda host: ..."``)."""
    check_callable(name, fn)
    if is_async_function(fn):
        raise TypeError(
            f"{name} must be a plain function called with {argument}, got the async function"
            f" {name_of(fn)} (it is called without await); e.g. {example}"
        )
    try:
        signature = inspect.signature(fn)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # some builtins have none: found out at the first call
        return fn  # type: ignore[return-value]
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            f"{name} is called with {argument}, but {name_of(fn)}{signature} cannot take it"
            f" as its one argument; e.g. {example}"
        ) from None
    return fn  # type: ignore[return-value]
