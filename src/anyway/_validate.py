"""Argument checks shared by every helper: fail at construction, name the
parameter, the bad value and the fix (design principle 5)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

__all__ = ["check_callable", "check_count", "check_number", "check_seconds"]


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
