"""Helpers shared by every policy: names for messages, what is never retried
or counted, the one check that a callable gave us something to await, and
the wait that lets a caller's deadline win against a cut at that deadline.

Every helper that runs a user's async callable goes through
:func:`call_async` (or checks a decorated function with
:func:`check_async_function`), so a sync function where an async one is
needed is the same clear ``TypeError`` everywhere, raised at the call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from types import CoroutineType
from typing import Any, Final, TypeVar

import anyio
from anyio.lowlevel import RunVar

__all__ = [
    "NotAwaitableError",
    "call_async",
    "check_async_function",
    "check_callable_arg",
    "check_late_binding",
    "current_run",
    "is_async_function",
    "is_control_flow",
    "name_of",
    "short_repr",
    "yield_to_deadline",
]

T = TypeVar("T")

#: What calling an ``async def`` function returns: checked first, at no cost.
_COROUTINE: Final = CoroutineType
#: Never retried, counted or reported as a failure, whatever a user's filter
#: says (plus the running backend's cancellation class).
_CONTROL_FLOW: Final = (KeyboardInterrupt, SystemExit, GeneratorExit)
#: How late a deadline's cancellation may arrive after the clock shows the
#: deadline passed: one timer tick (1 ms on uvloop, 15.6 ms on Windows).
_TIMER_TICK: Final = 0.02

_FIX: Final = (
    "pass an async function (async def), or a lambda / functools.partial that returns"
    " a coroutine; run blocking code with anyio.to_thread.run_sync inside one"
)


def short_repr(value: object, limit: int = 120) -> str:
    """``repr(value)``, cut to *limit* characters; a broken ``__repr__`` is survived."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__qualname__} (repr failed: {type(exc).__name__})>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_of(fn: object) -> str:
    """A short name for *fn*: its qualified name, a partial's function's, or a repr."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    return type(fn).__qualname__ if callable(fn) else short_repr(fn, 60)


class NotAwaitableError(TypeError):
    """A callable that had to be async returned something that cannot be
    awaited: a bug at the call site, so it is never retried, never counted by
    a breaker and never turned into an outcome; it propagates as itself."""


def _refuse_coroutine_object(where: str, fn: object) -> None:
    if inspect.iscoroutine(fn):
        fn.close()  # no "coroutine was never awaited" warning on top of ours
        name = name_of(fn)
        raise TypeError(
            f"{where} must be an async function, not a coroutine object: you probably wrote"
            f" {name}(...) where you meant {name} (pass the function and its arguments"
            " separately, or a lambda / functools.partial)"
        )


def call_async(
    where: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> Awaitable[T]:
    """``fn(*args, **kwargs)``, which must return an awaitable.

    Otherwise :class:`NotAwaitableError` names *where* (the parameter), *fn*,
    what it returned and the fix. An ``async def`` function costs one class
    comparison.
    """
    value: object = fn(*args, **kwargs)
    if value.__class__ is _COROUTINE or inspect.isawaitable(value):
        return value
    raise NotAwaitableError(
        f"{where}: {name_of(fn)}(...) returned {short_repr(value, 60)}, which cannot be"
        f" awaited: {_FIX}"
    )


def check_callable_arg(where: str, fn: object) -> Callable[..., Any]:
    """*fn* must be callable (a coroutine object or a class gets the fix)."""
    _refuse_coroutine_object(where, fn)
    if not callable(fn):
        raise TypeError(f"{where} must be an async function, got {short_repr(fn, 60)}: {_FIX}")
    if inspect.isclass(fn):
        raise TypeError(f"{where} must be an async function, got the class {fn.__qualname__}")
    return fn


def is_async_function(fn: object) -> bool:
    """``async def`` (through any ``functools.partial``), or an object whose
    ``__call__`` is one."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's method
    return (
        not inspect.isroutine(fn) and not inspect.isclass(fn) and inspect.iscoroutinefunction(call)
    )


def check_async_function(where: str, fn: object) -> Callable[..., Any]:
    """For decorators: *fn* must be an ``async def`` function (statically).

    A sync function gets a ``TypeError`` naming *where*, *fn* and the fix.
    """
    check_callable_arg(where, fn)
    if is_async_function(fn):
        return fn  # type: ignore[return-value]
    raise TypeError(f"{where} must be an async function (async def), got {name_of(fn)}: {_FIX}")


def check_late_binding(where: str, fns: Iterable[object]) -> None:
    """Refuse several lambdas that share one closure over a loop variable.

    ``[lambda: fetch(i) for i in range(3)]`` makes three functions that all
    call ``fetch(2)``: Python closes over the variable, not its value.
    """
    seen: dict[tuple[object, tuple[int, ...]], object] = {}
    for fn in fns:
        code = getattr(fn, "__code__", None)
        closure = getattr(fn, "__closure__", None)
        if code is None or not closure:
            continue
        key = (code, tuple(id(cell) for cell in closure))
        if key in seen and seen[key] is not fn:  # the same function twice is fine
            raise TypeError(
                f"{where}: several functions are the same closure over the same variables"
                f" ({name_of(fn)} closes over {', '.join(code.co_freevars)}), so they all see"
                " its last value (Python's late binding). Bind the value now:"
                " functools.partial(fetch, i) or lambda i=i: fetch(i)"
            )
        seen[key] = fn


def is_control_flow(exc: BaseException) -> bool:
    """Cancellation, KeyboardInterrupt, SystemExit, GeneratorExit, or a group
    holding one: never retried, counted, or reported as a failure."""
    if isinstance(exc, Exception):  # the fast answer: none of those is an Exception
        return False
    never = (*_CONTROL_FLOW, anyio.get_cancelled_exc_class())
    if isinstance(exc, never):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(never) is not None


#: A token per run of an event loop (one ``anyio.run``), for primitives that may
#: be created at import time: used from a new run, they start afresh there.
_RUN: RunVar[object] = RunVar("anyway.run")


def current_run() -> object:
    """An object that identifies the running ``anyio.run`` (the same for the
    whole run, a new one in the next). ``RuntimeError`` outside an event loop."""
    run = _RUN.get(None)
    if run is None:
        run = object()
        _RUN.set(run)
    return run


async def yield_to_deadline(deadline_at: float) -> None:
    """Something was cut at the caller's deadline *deadline_at* (a socket
    timeout, a bounded round trip): wait, once, for the deadline's own
    cancellation, so that the caller gets its deadline and not the cut's error,
    which may win the race by a hair (the two timers are distinct, and a clock
    in steps may fire them a tick apart). Returns, and the caller raises the
    cut's error, if no cancellation comes within a timer tick past the deadline.
    """
    await anyio.sleep(max(0.0, deadline_at - anyio.current_time()) + _TIMER_TICK)
