"""``resilient``: timeout, retry, breaker, bulkhead, rate limit and a per-attempt
timeout around one async function, always in the same order.

::

    overall deadline (timeout)            one budget for the whole call
      retry                                 each attempt below runs again
        circuit breaker                       sees every attempt
          bulkhead                              a slot per attempt
            rate limiter                          a unit per attempt
              per-attempt deadline (attempt_timeout)
                the call
    fallback (outside everything)         used when the call finally fails

The layers are built once, at decoration time, and only for the policies
given, so an absent policy costs nothing.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any, Final, ParamSpec, TypeVar

import anyio

from ._breaker import CircuitBreaker, _require_async_function
from ._deadline import deadline
from ._retry import Retry
from ._validate import check_seconds

__all__ = ["NO_FALLBACK", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")


class _NoFallback(enum.Enum):
    """The type of :data:`NO_FALLBACK`."""

    NO_FALLBACK = "NO_FALLBACK"

    def __repr__(self) -> str:
        return "NO_FALLBACK"


NO_FALLBACK: Final = _NoFallback.NO_FALLBACK
"""``resilient(fallback=NO_FALLBACK)`` (the default): no fallback, the error
propagates. A sentinel, because ``None`` is a fine fallback value."""


def _check_async_cm(name: str, value: object, example: str) -> AbstractAsyncContextManager[Any]:
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


def resilient(
    *,
    timeout: float | None = None,
    attempt_timeout: float | None = None,
    retry: Retry | None = None,
    breaker: CircuitBreaker | None = None,
    bulkhead: AbstractAsyncContextManager[Any] | None = None,
    limiter: AbstractAsyncContextManager[Any] | None = None,
    fallback: Any = NO_FALLBACK,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate an async function with resilience policies, applied in one order::

        @anyway.resilient(
            timeout=10,                                   # the whole call, retries included
            retry=anyway.retry(on=(OSError, TimeoutError), attempts=4),
            breaker=anyway.CircuitBreaker(name="profiles"),
            bulkhead=anyway.Bulkhead(20),
            limiter=anyway.RateLimiter(50),
            attempt_timeout=2,                            # each attempt
            fallback=lambda exc: None,
        )
        async def get_profile(user_id: str) -> Profile | None: ...

    From the outside in: *timeout* (one :func:`~anyway.deadline` for the
    whole call) -> *retry* (a :class:`~anyway.Retry`) -> *breaker* (a
    :class:`~anyway.CircuitBreaker`) -> *bulkhead* -> *limiter* ->
    *attempt_timeout* (a deadline per attempt) -> the function. So the
    breaker sees every attempt, each attempt takes its own bulkhead slot and
    rate-limit unit, an open breaker refuses an attempt before it takes
    either, the per-attempt deadline measures only the call (not the queueing)
    and the overall deadline bounds everything, waits included; retry never
    starts a wait that would cross it.

    *bulkhead* and *limiter* may be any async context manager (e.g.
    :class:`~anyway.Bulkhead`, :class:`~anyway.RateLimiter`,
    :class:`anyio.CapacityLimiter`). An expired *attempt_timeout* raises
    :class:`~anyway.DeadlineExceeded`, a :class:`TimeoutError`: *retry*
    retries it only if its ``on`` matches (e.g. ``on=(OSError,
    TimeoutError)``); the breaker counts it as a failure. Refusals of the
    bulkhead or limiter are never counted by the breaker, and
    :class:`~anyway.CircuitOpen` is not retried unless ``on`` asks for it.

    *fallback*: when the call finally fails with an :class:`Exception`
    (after the retries, or refused, or out of time), return this value
    instead; if it is callable, return ``fallback(exc)`` (awaited when it
    returns an awaitable). It runs outside the overall deadline, and never
    on cancellation. The default :data:`NO_FALLBACK` lets the error
    propagate; to return a callable as the value, wrap it in a lambda.

    With no policy and no fallback the function is returned unchanged.
    A synchronous function is a ``TypeError``.
    """
    if timeout is not None:
        timeout = check_seconds("timeout", timeout, allow_zero=False, hint=" (or None)")
    if attempt_timeout is not None:
        attempt_timeout = check_seconds(
            "attempt_timeout", attempt_timeout, allow_zero=False, hint=" (or None)"
        )
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(
            f"retry must be a policy made by anyway.retry(on=...), got {retry!r}"
            f" ({type(retry).__name__})"
        )
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise TypeError(
            f"breaker must be an anyway.CircuitBreaker, got {breaker!r} ({type(breaker).__name__})"
        )
    if bulkhead is not None:
        bulkhead = _check_async_cm("bulkhead", bulkhead, "anyway.Bulkhead(10)")
    if limiter is not None:
        limiter = _check_async_cm("limiter", limiter, "anyway.RateLimiter(10)")
    if inspect.iscoroutine(fallback):
        fallback.close()
        raise TypeError(
            "fallback must be a value or a callable taking the exception, not a coroutine"
            " object (pass the function itself: it is called with the exception)"
        )

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        _require_async_function("the decorated function", fn)
        if (
            timeout is None
            and attempt_timeout is None
            and retry is None
            and breaker is None
            and bulkhead is None
            and limiter is None
            and fallback is NO_FALLBACK
        ):
            return fn  # type: ignore[return-value]  # nothing to apply
        attempt = _build_attempt(fn, attempt_timeout, breaker, bulkhead, limiter)
        return _build_outer(fn, attempt, timeout, retry, fallback)

    return decorate


def _build_attempt(
    fn: Callable[P, Awaitable[T]],
    attempt_timeout: float | None,
    breaker: CircuitBreaker | None,
    bulkhead: AbstractAsyncContextManager[Any] | None,
    limiter: AbstractAsyncContextManager[Any] | None,
) -> Callable[P, Awaitable[T]]:
    """One attempt: breaker -> bulkhead -> limiter -> attempt_timeout -> fn.
    Each layer is one coroutine, and only the policies given get one."""
    call: Callable[P, Awaitable[T]] = fn
    if attempt_timeout is not None:
        call = _within_deadline(fn, call, attempt_timeout)
    timed = breaker is not None and breaker._slow is not None
    if timed and (bulkhead is not None or limiter is not None):
        call = _stamped(fn, call)
    if limiter is not None:
        call = _within(fn, call, limiter)
    if bulkhead is not None:
        call = _within(fn, call, bulkhead)
    if breaker is not None:
        call = _guarded(fn, call, breaker)
    return call


# The breaker measures slow calls from when the call gets past the bulkhead
# and the limiter (queueing is not the dependency's slowness): its layer puts
# a cell here, the innermost layer writes the start time in it.
_started: ContextVar[list[float]] = ContextVar("anyway.resilient.started")


def _stamped(
    meta: Callable[..., Any], call: Callable[P, Awaitable[T]]
) -> Callable[P, Awaitable[T]]:
    @functools.wraps(meta)
    async def stamped(*args: P.args, **kwargs: P.kwargs) -> T:
        _started.get()[0] = anyio.current_time()  # set by the breaker's layer, just outside
        return await call(*args, **kwargs)

    return stamped


def _within(
    meta: Callable[..., Any],
    call: Callable[P, Awaitable[T]],
    manager: AbstractAsyncContextManager[Any],
) -> Callable[P, Awaitable[T]]:
    @functools.wraps(meta)
    async def within(*args: P.args, **kwargs: P.kwargs) -> T:
        async with manager:
            return await call(*args, **kwargs)

    return within


def _within_deadline(
    meta: Callable[..., Any], call: Callable[P, Awaitable[T]], seconds: float
) -> Callable[P, Awaitable[T]]:
    @functools.wraps(meta)
    async def bounded(*args: P.args, **kwargs: P.kwargs) -> T:
        with deadline(seconds):
            return await call(*args, **kwargs)
        # the scope swallows only a cancel() of its own, and nobody else sees it
        raise AssertionError("unreachable")  # pragma: no cover

    return bounded


def _guarded(
    meta: Callable[..., Any], call: Callable[P, Awaitable[T]], breaker: CircuitBreaker
) -> Callable[P, Awaitable[T]]:
    if breaker._slow is not None:
        admit = breaker._admit
        settle = breaker._settle

        @functools.wraps(meta)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
            ticket = await admit()
            cell = [anyio.current_time()]
            token = _started.set(cell)
            try:
                result = await call(*args, **kwargs)
            except BaseException as exc:
                await settle(ticket, cell[0], exc)
                raise
            finally:
                _started.reset(token)
            await settle(ticket, cell[0], None)
            return result

        return timed
    # Without slow calls, CircuitBreaker.__call__ is this layer (and is fast).
    return breaker(call)


def _build_outer(
    fn: Callable[P, Awaitable[T]],
    attempt: Callable[P, Awaitable[T]],
    timeout: float | None,
    retry: Retry | None,
    fallback: object,
) -> Callable[P, Coroutine[Any, Any, T]]:
    """fallback -> overall deadline -> retry -> attempt."""
    body = attempt
    if retry is not None:
        # Retry names its events after the function: the attempt carries fn's name.
        body = retry(attempt)
    if timeout is not None:
        body = _within_deadline(fn, body, timeout)
    if fallback is NO_FALLBACK:
        return body  # type: ignore[return-value]  # (some policy wrapped it: not fn itself)
    run = body
    if callable(fallback):
        handler: Callable[[Exception], Any] = fallback

        @functools.wraps(fn)
        async def composed(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await run(*args, **kwargs)
            except Exception as exc:
                # (in the except block: an error of the fallback chains to exc)
                value = handler(exc)
                if inspect.isawaitable(value):
                    value = await value
                return value  # type: ignore[no-any-return]

    else:
        default = fallback

        @functools.wraps(fn)
        async def composed(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await run(*args, **kwargs)
            except Exception:
                return default  # type: ignore[return-value]

    return composed
