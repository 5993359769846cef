"""Family ``retry``: anyway's retry against tenacity, stamina and backoff.

Two paths. *success*: the wrapped function succeeds at once; the baseline is
a bare ``await`` and the figure that matters is the overhead in ns. *failure*:
three ``ValueError``s then success, with zero waits everywhere
(``Backoff(initial=0, max=0, jitter=None)``, ``wait_none()``, ``wait_initial=0``,
``backoff.constant`` with ``interval=0``); the baseline is the retry loop a
user would write by hand (``anyio.sleep(0)`` between attempts, like the
zero waits of the libraries). A second hand-written loop gives the same
guarantee as ``anyway.retry``'s ``timeout``: its retries run inside
``anyio.move_on_after(timeout)``, so an attempt still running then is cut.

stamina's instrumentation hooks (which log every retry at WARNING) are turned
off while it is measured, so every library is timed without logging output;
anyway keeps its default hook, which logs retries at INFO and costs one
``isEnabledFor`` check when INFO is off. backoff calls ``asyncio.sleep``, so
it runs on asyncio and uvloop only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .._core import BatchFn, Case, Env, Target, Variant

TITLE = "retry against tenacity, stamina and backoff"

FAILURES = 3
ATTEMPTS = 10

AsyncFn = Callable[[], Awaitable[int]]


class _Flaky:
    """Fails ``FAILURES`` times after each ``reset()``, then returns 1."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = 0

    def reset(self, failures: int) -> None:
        self.left = failures


def _operation(state: _Flaky) -> AsyncFn:
    async def operation() -> int:
        if state.left:
            state.left -= 1
            raise ValueError("transient")
        return 1

    return operation


def _hand_loop(fn: AsyncFn) -> AsyncFn:
    async def looped() -> int:
        for attempt in range(ATTEMPTS):
            try:
                return await fn()
            except ValueError:
                if attempt == ATTEMPTS - 1:
                    raise
                await anyio.sleep(0)  # noqa: ASYNC115 - a zero wait, like the libraries'
        raise AssertionError("unreachable")

    return looped


def _hand_loop_with_timeout(fn: AsyncFn) -> AsyncFn:
    async def looped() -> int:
        try:
            return await fn()
        except ValueError:
            error = None
        # Everything after the first failure under the timeout, as anyway.retry
        # runs it (timeout=45.0): a hung later attempt is cut.
        with anyio.move_on_after(45.0):
            for attempt in range(1, ATTEMPTS):
                await anyio.sleep(0)  # noqa: ASYNC115 - a zero wait, like the libraries'
                try:
                    return await fn()
                except ValueError as exc:
                    if attempt == ATTEMPTS - 1:
                        raise
                    error = exc
        raise TimeoutError("retry timeout") from error

    return looped


def _wrap_anyway(fn: AsyncFn, failing: bool) -> AsyncFn:
    import anyway

    if failing:
        zero = anyway.Backoff(initial=0, max=0, jitter=None)
        wrapped: AsyncFn = anyway.retry(on=ValueError, attempts=ATTEMPTS, backoff=zero)(fn)
    else:
        wrapped = anyway.retry(on=ValueError, attempts=ATTEMPTS)(fn)
    return wrapped


def _wrap_tenacity(fn: AsyncFn, failing: bool) -> AsyncFn:
    import tenacity

    wait = tenacity.wait_none() if failing else tenacity.wait_exponential_jitter()
    wrapped: AsyncFn = tenacity.retry(
        retry=tenacity.retry_if_exception_type(ValueError),
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=wait,
        reraise=True,
    )(fn)
    return wrapped


def _wrap_stamina(fn: AsyncFn, failing: bool) -> AsyncFn:
    import stamina

    if failing:
        wrapped: AsyncFn = stamina.retry(
            on=ValueError, attempts=ATTEMPTS, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0
        )(fn)
    else:
        wrapped = stamina.retry(on=ValueError, attempts=ATTEMPTS)(fn)
    return wrapped


def _wrap_backoff(fn: AsyncFn, failing: bool) -> AsyncFn:
    import backoff

    if failing:
        wrapped: AsyncFn = backoff.on_exception(
            backoff.constant, ValueError, interval=0, jitter=None, max_tries=ATTEMPTS
        )(fn)
    else:
        wrapped = backoff.on_exception(backoff.expo, ValueError, max_tries=ATTEMPTS)(fn)
    return wrapped


def _bare(fn: AsyncFn, failing: bool) -> AsyncFn:
    return fn


def _hand(fn: AsyncFn, failing: bool) -> AsyncFn:
    return _hand_loop(fn)


def _hand_with_timeout(fn: AsyncFn, failing: bool) -> AsyncFn:
    return _hand_loop_with_timeout(fn)


@asynccontextmanager
async def _quiet_stamina() -> AsyncIterator[None]:
    import stamina.instrumentation as instrumentation

    hooks = instrumentation.get_on_retry_hooks()
    instrumentation.set_on_retry_hooks([])
    try:
        yield
    finally:
        instrumentation.set_on_retry_hooks(hooks)


def _factory(wrap: Callable[[AsyncFn, bool], AsyncFn], *, failing: bool, library: str = "") -> Any:
    def make(env: Env) -> Any:
        if library == "backoff":
            env.asyncio_only("backoff (it calls asyncio.sleep)")
        state = _Flaky()
        call = wrap(_operation(state), failing)
        failures = FAILURES if failing else 0

        async def run(n: int) -> None:
            reset = state.reset
            for _ in range(n):
                reset(failures)
                await call()

        @asynccontextmanager
        async def context() -> AsyncIterator[BatchFn]:
            if library == "stamina":
                async with _quiet_stamina():
                    yield run
            else:
                yield run

        return context()

    return make


def _variants(*, failing: bool) -> list[Variant]:
    if failing:
        baseline = Variant("hand-written loop", _factory(_hand, failing=True))
        target = Target("ratio", 1.5)
    else:
        baseline = Variant("bare await", _factory(_bare, failing=False))
        target = Target("overhead", 500.0)
    same_guarantee = []
    if failing:
        same_guarantee = [
            Variant("hand-written loop, timeout", _factory(_hand_with_timeout, failing=True))
        ]
    return [
        baseline,
        *same_guarantee,
        Variant("anyway.retry", _factory(_wrap_anyway, failing=failing), target=target),
        Variant("tenacity", _factory(_wrap_tenacity, failing=failing), peer=True),
        Variant("stamina", _factory(_wrap_stamina, failing=failing, library="stamina"), peer=True),
        Variant("backoff", _factory(_wrap_backoff, failing=failing, library="backoff"), peer=True),
    ]


def cases() -> list[Case]:
    return [
        Case(
            "retry",
            "success path",
            _variants(failing=False),
            "the wrapped call succeeds at once; overhead over a bare await",
            unit="call",
        ),
        Case(
            "retry",
            f"{FAILURES} failures then success",
            _variants(failing=True),
            "three ValueErrors then success, zero waits; against a hand-written loop",
            unit="call",
        ),
    ]
