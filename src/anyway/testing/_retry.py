"""Test helpers for code that retries with :func:`anyway.retry`.

Both helpers set a context variable, so they apply to the current task and
to the tasks it starts *inside* the ``with`` block, and never leak into other
tests or tasks. Library code reads it only after a failure.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .._config import enter_test_mode, exit_test_mode
from .._config import is_testing as is_testing
from .._validate import check_count

__all__ = ["RetryTestMode", "cap_attempts", "is_testing", "no_backoff"]

F = TypeVar("F", bound=Callable[..., Any])


class RetryTestMode:
    """What :func:`no_backoff` and :func:`cap_attempts` return: a context
    manager (``with no_backoff():``) that is also a decorator for sync and
    async test functions (``@no_backoff()``).

    It holds no per-use state: one object can be entered by several tasks at
    once, and nested in itself.
    """

    __slots__ = ("_max_attempts", "_zero_waits")

    def __init__(self, *, zero_waits: bool, max_attempts: int | None) -> None:
        self._zero_waits = zero_waits
        self._max_attempts = max_attempts

    def __repr__(self) -> str:
        return f"<RetryTestMode zero_waits={self._zero_waits} max_attempts={self._max_attempts}>"

    def __enter__(self) -> None:
        enter_test_mode(zero_waits=self._zero_waits, max_attempts=self._max_attempts)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        exit_test_mode()

    def __call__(self, fn: F) -> F:
        """Decorate a (sync or async) function: it runs in this mode."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            # Its body runs after the call returns, outside the mode: a
            # decorated fixture would silently retry with the real waits.
            raise TypeError(
                f"{self!r} cannot decorate the generator function {fn.__qualname__} (e.g. a"
                " fixture with yield): its body runs after the call has returned, outside the"
                " mode; enter it in the test instead: with anyway.testing.no_backoff(): ..."
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def no_backoff(*, attempts: int | None = None) -> RetryTestMode:
    """Make retries happen with zero wait (backoff and delays returned by
    ``on`` alike), and with *attempts*, cap the attempts of every retry
    policy at that number too::

        with anyway.testing.no_backoff():
            assert await flaky() == "ok"      # retried without waiting

        @anyway.testing.no_backoff(attempts=2)
        async def test_gives_up(): ...

    Timeouts, deadlines and budgets still apply. Zero waits are still
    checkpoints (``anyio.sleep(0)``), so cancellation is noticed.
    """
    if attempts is not None:
        attempts = check_count("attempts", attempts, hint="; or None to keep each policy's")
    return RetryTestMode(zero_waits=True, max_attempts=attempts)


def cap_attempts(attempts: int) -> RetryTestMode:
    """Cap the attempts of every retry policy at *attempts* (a policy with
    fewer keeps its own), without changing the waits::

        with anyway.testing.cap_attempts(1):
            with pytest.raises(ConnectionError):
                await fetch()   # fails at once instead of retrying 10 times
    """
    return RetryTestMode(
        zero_waits=False,
        max_attempts=check_count("attempts", attempts, hint="; e.g. 1 to disable retrying"),
    )
