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
from typing import Any, Final, Literal, ParamSpec, Protocol, TypeVar, overload

from ._breaker import CircuitBreaker
from ._deadline import deadline
from ._retry import Retry
from ._util import check_async_function
from ._validate import check_async_cm, check_seconds
from .abc import Limiter

__all__ = ["NO_FALLBACK", "FallbackDecorator", "ResilientDecorator", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class _NoFallback(enum.Enum):
    """The type of :data:`NO_FALLBACK`."""

    NO_FALLBACK = "NO_FALLBACK"

    def __repr__(self) -> str:
        return "NO_FALLBACK"


NO_FALLBACK: Final = _NoFallback.NO_FALLBACK
"""``resilient(fallback=NO_FALLBACK)`` (the default): no fallback, the error
propagates. A sentinel, because ``None`` is a fine fallback value."""


class ResilientDecorator(Protocol):
    """What :func:`resilient` returns without a fallback: a decorator that
    keeps the function's parameters and return type."""

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


class FallbackDecorator(Protocol[R_co]):
    """What :func:`resilient` returns with a fallback producing ``R_co``: a
    decorator whose function returns ``T | R_co``, the function's type or the
    fallback's.

    So ``@resilient(fallback=None)`` on a function returning ``int`` makes it
    return ``int | None``, and ``@resilient(fallback="")`` makes it return
    ``int | str``: a type error wherever the result is used as an ``int``.
    A fallback of the function's own type (or a subtype) leaves it unchanged.
    """

    def __call__(
        self, fn: Callable[P, Awaitable[T]], /
    ) -> Callable[P, Coroutine[Any, Any, T | R_co]]: ...


@overload
def resilient(
    *,
    timeout: float | None = ...,
    attempt_timeout: float | None = ...,
    retry: Retry | None = ...,
    breaker: CircuitBreaker | None = ...,
    bulkhead: Limiter | None = ...,
    limiter: Limiter | None = ...,
    fallback: Literal[_NoFallback.NO_FALLBACK] = ...,
) -> ResilientDecorator: ...


@overload
def resilient(
    *,
    timeout: float | None = ...,
    attempt_timeout: float | None = ...,
    retry: Retry | None = ...,
    breaker: CircuitBreaker | None = ...,
    bulkhead: Limiter | None = ...,
    limiter: Limiter | None = ...,
    fallback: Callable[[Exception], Awaitable[R]],
) -> FallbackDecorator[R]: ...


@overload
def resilient(
    *,
    timeout: float | None = ...,
    attempt_timeout: float | None = ...,
    retry: Retry | None = ...,
    breaker: CircuitBreaker | None = ...,
    bulkhead: Limiter | None = ...,
    limiter: Limiter | None = ...,
    fallback: Callable[[Exception], R],
) -> FallbackDecorator[R]: ...


@overload
def resilient(
    *,
    timeout: float | None = ...,
    attempt_timeout: float | None = ...,
    retry: Retry | None = ...,
    breaker: CircuitBreaker | None = ...,
    bulkhead: Limiter | None = ...,
    limiter: Limiter | None = ...,
    fallback: R,
) -> FallbackDecorator[R]: ...


def resilient(
    *,
    timeout: float | None = None,
    attempt_timeout: float | None = None,
    retry: Retry | None = None,
    breaker: CircuitBreaker | None = None,
    bulkhead: Limiter | None = None,
    limiter: Limiter | None = None,
    fallback: Any = NO_FALLBACK,
) -> ResilientDecorator | FallbackDecorator[Any]:
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

    *bulkhead* and *limiter* may be any async context manager
    (:class:`anyway.abc.Limiter`, e.g.
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
    Typed: the decorated function returns its own type or the fallback's
    (``int | None`` for ``fallback=None`` on a function returning ``int``;
    unchanged when the fallback produces the function's type).

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
        check_async_cm("bulkhead", bulkhead, "anyway.Bulkhead(10)")
    if limiter is not None:
        check_async_cm("limiter", limiter, "anyway.RateLimiter(10)")
    if inspect.iscoroutine(fallback):
        fallback.close()
        raise TypeError(
            "fallback must be a value or a callable taking the exception, not a coroutine"
            " object (pass the function itself: it is called with the exception)"
        )

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        check_async_function("the decorated function", fn)
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
    bulkhead: Limiter | None,
    limiter: Limiter | None,
) -> Callable[P, Awaitable[T]]:
    """One attempt: breaker -> bulkhead -> limiter -> attempt_timeout -> fn.
    Each layer is one coroutine, and only the policies given get one."""
    call: Callable[P, Awaitable[T]] = fn
    if attempt_timeout is not None:
        call = _within_deadline(fn, call, attempt_timeout)
    if (
        breaker is not None
        and breaker.slow_call_duration is not None
        and (bulkhead is not None or limiter is not None)
    ):
        # slow calls are timed from when the call gets past the bulkhead and
        # the limiter: queueing is not the dependency's slowness
        call = _stamped(fn, call, breaker)
    if limiter is not None:
        call = _within(fn, call, limiter)
    if bulkhead is not None:
        call = _within(fn, call, bulkhead)
    if breaker is not None:
        call = breaker(call)
    return call


def _stamped(
    meta: Callable[..., Any], call: Callable[P, Awaitable[T]], breaker: CircuitBreaker
) -> Callable[P, Awaitable[T]]:
    @functools.wraps(meta)
    async def stamped(*args: P.args, **kwargs: P.kwargs) -> T:
        breaker.mark_call_start()
        return await call(*args, **kwargs)

    return stamped


def _within(
    meta: Callable[..., Any], call: Callable[P, Awaitable[T]], manager: Limiter
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
