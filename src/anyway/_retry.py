"""``retry`` / ``Retry``: a retry policy, also a decorator for async functions.

What sets it apart from its peers:

* cancellation (and ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``)
  is never retried, whatever ``on`` says;
* a wait that would cross ``timeout`` or the caller's effective deadline is
  not started, and nothing after the first failure outlives ``timeout``: the
  real error is re-raised, with a note saying why retrying stopped;
* the original exception is re-raised as itself, with PEP 678 notes that say
  why retrying stopped and what the earlier attempts raised;
* a ``Retry`` holds no per-call state, so one object can serve any number of
  concurrent calls;
* the success path does nothing but ``await`` the function: no clock read, no
  event; one context variable read (:func:`anyway.retry_stats`).

The loop after the first failure lives in :mod:`anyway._retry_loop` (shared
with ``retrying()``), the options in :mod:`anyway._retry_options`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack, cast

import anyio

from ._backoff import Backoff
from ._retry_budget import RetryBudget
from ._retry_loop import RetryLoop, announce_first
from ._retry_notes import secs
from ._retry_options import RetryOn, RetryOptions, Settings, TryAgain, WaitFn
from ._retry_stats import count_call, current_stats
from ._util import call_async, check_async_function, name_of
from ._validate import check_callable

if TYPE_CHECKING:
    from ._retrying import Attempt

__all__ = ["Retry", "RetryBudget", "RetryOn", "RetryOptions", "TryAgain", "retry"]

P = ParamSpec("P")
T = TypeVar("T")


class Retry:
    """A retry policy: what to retry, how often, how long to wait in between.

    Build one with :func:`retry` (same options). A ``Retry`` is immutable and
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

    __slots__ = ("_settings",)

    _settings: Settings

    def __init__(self, **options: Unpack[RetryOptions]) -> None:
        object.__setattr__(self, "_settings", Settings(options))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"Retry policies are immutable (one object serves concurrent calls); build a new"
            f" one with anyway.retry(...) instead of setting {name!r}"
        )

    def __repr__(self) -> str:
        s = self._settings
        parts = [
            f"on={s.on_repr()}",
            f"attempts={s.attempts}",
            f"timeout={None if s.timeout is None else secs(s.timeout)}",
            f"wait={name_of(s.wait)}" if s.wait is not None else f"backoff={s.backoff!r}",
        ]
        if s.result_check is not None:
            parts.append(f"retry_if_result={name_of(s.result_check)}")
        if s.hooks:
            parts.append(f"hooks=({', '.join(name_of(h) for h in s.hooks)},)")
        if s.before:
            parts.append(f"before=({', '.join(name_of(h) for h in s.before)},)")
        if s.budget is not None:
            parts.append(f"budget={s.budget!r}")
        if s.name is not None:
            parts.append(f"name={s.name!r}")
        return f"Retry({', '.join(parts)})"

    # --- read-only options ---

    @property
    def on(self) -> RetryOn:
        """What is retried (as given)."""
        return self._settings.on

    @property
    def attempts(self) -> int | None:
        """The most attempts (calls) per call, or ``None`` for no limit."""
        return self._settings.attempts

    @property
    def timeout(self) -> float | None:
        """Seconds retrying may take, counted from the first failure, or ``None``."""
        return self._settings.timeout

    @property
    def backoff(self) -> Backoff:
        """The waits between attempts."""
        return self._settings.backoff

    @property
    def wait(self) -> WaitFn | None:
        """The ``wait=`` function that replaces the backoff, if any."""
        return self._settings.wait

    @property
    def budget(self) -> RetryBudget | None:
        """The shared :class:`RetryBudget`, if any."""
        return self._settings.budget

    # --- calling ---

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate the async function *fn*: calls to it are retried by this
        policy. The signature (and ``__name__``, ``__doc__``...) is kept."""
        if inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"retry() cannot decorate the async generator function {name_of(fn)}: a stream"
                " that failed half-way cannot be replayed; retry the call that opens it"
            )
        check_async_function("the function decorated by retry()", fn)
        settings = self._settings
        function = name_of(fn)
        name = settings.name or function
        budget = settings.budget
        judges_results = settings.result_check is not None
        awaits = settings.awaits
        before = settings.before

        # The success path, inlined (about 0.15 us over a bare await; through
        # _run it would be 0.4 us): fn is an async def, checked above.
        @functools.wraps(fn)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            if budget is not None:
                budget.deposit()
            if before:
                await announce_first(settings, name, function)
            stats = current_stats()
            if stats is not None:
                count_call(stats)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                loop = (
                    await _after_error_async(settings, name, exc, function)
                    if awaits
                    else _after_error(settings, name, exc, function)
                )
                if loop is None:
                    raise
            else:
                if not judges_results:
                    return result
                loop = (
                    await _after_result_async(settings, name, result, function)
                    if awaits
                    else _after_result(settings, name, result, function)
                )
                if loop is None:
                    return result
            retrying = _retry(fn, args, kwargs, loop)
            del loop  # the loop owns the error now (no frame <-> traceback cycle)
            return await retrying

        # Like tenacity's wrappers (functools.wraps copies neither): tools that
        # read them see fn's defaults; the wrapper itself takes *args, **kwargs.
        setattr(retried, "__defaults__", getattr(fn, "__defaults__", None))  # noqa: B010
        setattr(retried, "__kwdefaults__", getattr(fn, "__kwdefaults__", None))  # noqa: B010
        return retried

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)``, retried by this policy."""
        settings = self._settings
        budget = settings.budget
        if budget is not None:
            budget.deposit()
        if settings.before:
            function = name_of(fn)
            await announce_first(settings, settings.name or function, function)
        stats = current_stats()
        if stats is not None:
            count_call(stats)
        try:
            result = await call_async("fn", fn, *args, **kwargs)
        except BaseException as exc:
            if not callable(fn_object := cast(object, fn)):  # e.g. a coroutine object:
                check_callable("fn", fn_object)  # a bug at the call site, explained
            function = name_of(fn)
            name = settings.name or function
            loop = (
                await _after_error_async(settings, name, exc, function)
                if settings.awaits
                else _after_error(settings, name, exc, function)
            )
            if loop is None:
                raise
        else:
            if settings.result_check is None:
                return result
            verdict = (
                await settings.result_verdict_async(result)
                if settings.awaits
                else settings.result_verdict(result)
            )
            if verdict is False:  # accepted: no name is built on the success path
                return result
            function = name_of(fn)
            loop = _start_loop(settings, settings.name or function, function, verdict, None, result)
        # Outside the except block, so later errors are not chained to the
        # first; the loop owns the error now (no frame <-> traceback cycle).
        retrying = _retry(fn, args, kwargs, loop)
        del loop
        return await retrying

    def retrying(self, *, name: str | None = None) -> AsyncIterator[Attempt]:
        """Retry a block of code with this policy::

            async for attempt in policy.retrying():
                with attempt:
                    ...

        See :func:`retrying`; with ``retry_if_result``, the block reports its
        result with :meth:`Attempt.set_result`.
        """
        from ._retrying import Attempts  # (a cycle at import time otherwise)

        return Attempts(self._settings, name or self._settings.name or "retrying")


def _loop_after(
    settings: Settings,
    name: str,
    function: str,
    verdict: bool | float,
    exc: BaseException | None,
    result: object = None,
) -> RetryLoop | None:
    """The retry loop after a first attempt that failed (*exc*) or whose
    *result* was judged, or ``None`` if the *verdict* is not to retry."""
    if verdict is False:
        return None
    return _start_loop(settings, name, function, verdict, exc, result)


def _start_loop(
    settings: Settings,
    name: str,
    function: str,
    verdict: bool | float,
    exc: BaseException | None,
    result: object,
) -> RetryLoop:
    """The retry loop of a call whose first attempt is retried (*verdict*)."""
    loop = RetryLoop(settings, name, function)
    loop.fail(exc, result, verdict)
    return loop


def _after_error(
    settings: Settings, name: str, exc: BaseException, function: str
) -> RetryLoop | None:
    """The first attempt raised *exc*: the retry loop, or ``None`` if *exc*
    is not retried. Called in the ``except`` block."""
    return _loop_after(settings, name, function, settings.verdict(exc), exc)


def _after_result(settings: Settings, name: str, result: object, function: str) -> RetryLoop | None:
    """The first attempt returned *result*: the retry loop if
    ``retry_if_result`` rejects it, else ``None``."""
    return _loop_after(settings, name, function, settings.result_verdict(result), None, result)


async def _after_error_async(
    settings: Settings, name: str, exc: BaseException, function: str
) -> RetryLoop | None:
    """:func:`_after_error` with an async ``on`` predicate."""
    return _loop_after(settings, name, function, await settings.verdict_async(exc), exc)


async def _after_result_async(
    settings: Settings, name: str, result: object, function: str
) -> RetryLoop | None:
    """:func:`_after_result` with an async ``retry_if_result``."""
    verdict = await settings.result_verdict_async(result)
    return _loop_after(settings, name, function, verdict, None, result)


async def _retry(
    fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any], loop: RetryLoop
) -> T:
    """After the first failure: the later attempts, all under the retry
    timeout (a cancel scope whose deadline is the first failure + timeout).

    No scope when the timeout is ``None`` or the caller's own deadline comes
    first: that one cuts the call then (its cancellation propagates, as it
    would through our scope), and a cancel scope with a deadline costs about
    10 us on asyncio and Trio, most of a fast-failing call's retrying."""
    end = loop.end
    if end == math.inf or end >= anyio.current_effective_deadline():
        return await _again(fn, args, kwargs, loop)
    with anyio.CancelScope(deadline=end):
        return await _again(fn, args, kwargs, loop)
    # Only reached when the timeout's scope cut an attempt, a hook or a wait.
    await loop.cut()  # raises the last error, or returns: a rejected result
    return cast(T, loop.result)


async def _again(
    fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any], loop: RetryLoop
) -> T:
    judges_results = loop.settings.result_check is not None
    awaits = loop.settings.awaits
    while await loop.pause():
        try:
            result = await call_async("fn", fn, *args, **kwargs)
        except BaseException as exc:
            if not (await loop.failed_async(exc) if awaits else loop.failed(exc)):
                raise
        else:
            if not judges_results:
                del loop  # free the earlier errors now, not at the next collection
                return result
            if not (await loop.rejected_async(result) if awaits else loop.rejected(result)):
                del loop  # free the earlier errors now, not at the next collection
                return result
    return cast(T, loop.result)  # retrying stopped on a rejected result


def retry(**options: Unpack[RetryOptions]) -> Retry:
    """A :class:`Retry` policy, also a decorator for async functions::

        @anyway.retry(on=(ConnectionError, TimeoutError), attempts=5, timeout=10)
        async def fetch(url: str) -> bytes: ...

    The options, all keyword-only:

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
    *attempts* (default ``10``)
        The most calls in total (``1``: no retry); ``None``: no limit (then
        *timeout*, the caller's deadline or the budget must end it).
    *timeout* (default ``45.0``)
        Seconds that retrying may take, counted from the first failure (the
        success path reads no clock). Everything after the first failure
        happens within it: a wait that would end at or after it is not
        started, and a hook, wait or attempt still running when it expires is
        cancelled; the last real error is then re-raised. A call that keeps
        failing thus takes at most its first attempt plus *timeout*. For a
        hard limit on the whole call, first attempt included, wrap it in a
        deadline (:func:`anyway.deadline`), which retry respects as well.
        ``None``: no limit.
    *backoff* (default ``Backoff()``)
        The waits (:class:`Backoff`: full jitter from 0.1 s, capped at 10 s).
    *wait* (default ``None``)
        Instead of *backoff*: a function ``(attempt, exc) -> seconds`` that
        gives the wait after attempt number ``attempt`` failed with ``exc``
        (``None`` for a rejected result), e.g. :func:`anyway.random_wait`. A
        delay returned by *on* still wins, and the timeout and deadline rules
        apply to it.
    *retry_if_result* (default ``None``)
        A predicate ``result -> bool | float`` to retry on results too (e.g.
        an HTTP 503 response). When the last result is rejected and retrying
        stops, that result is returned. A :func:`retrying` block reports its
        result with :meth:`Attempt.set_result`.
    *hooks* (default ``()``)
        Hooks (sync or async) that receive :class:`~anyway.RetryScheduled`
        before each wait and :class:`~anyway.RetryGaveUp` when retrying stops
        at a limit; then the global hooks get them (by default: logging).
    *before* (default ``()``)
        Hooks (sync or async) that receive :class:`~anyway.RetryAttemptStarted`
        before each attempt, the first included (tenacity's ``before``); only
        they get it, not the global hooks. An error they raise propagates and
        is not retried. ``before=anyway.log_event`` logs each attempt at
        ``DEBUG``. With none, the success path builds no event.
    *budget* (default ``None``)
        A :class:`RetryBudget` shared by the callers of a dependency.
    *name* (default ``None``)
        The ``policy`` of the events (default: the function's qualified name).

    Retrying stops at the first of: success, a non-retryable error, no
    attempts left, a wait that would cross *timeout* or the caller's
    effective deadline (:func:`anyio.current_effective_deadline`, checked
    again after the hooks ran), the end of *timeout*, or an exhausted
    budget. The last error is then re-raised as itself with a note
    ``gave up after N attempts in X s: <why>`` (``X``: the seconds since the
    first attempt failed) and a note listing the earlier attempts' errors;
    the previous error is also its ``__context__`` when that was free.

    The attempts, waits and duration of a call: :func:`anyway.retry_stats`.
    """
    return Retry(**options)
