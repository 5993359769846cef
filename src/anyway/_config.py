"""The retry test mode (stamina's ``_config.py`` pattern): what
``anyway.testing.no_backoff()`` / ``cap_attempts()`` switch on, and what the
retry loop reads after a failure (never on the success path).

The mode lives in a context variable, so it applies to the current task and
the tasks it starts, never to other tasks or tests. Each entered mode links
to the one it replaced, so leaving restores that one without a
``contextvars.Token``: one helper object can be entered by any number of
concurrent tasks (a token belongs to the context that made it).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

__all__ = ["TestMode", "enter_test_mode", "exit_test_mode", "is_testing", "test_mode"]


@dataclass(frozen=True, slots=True)
class TestMode:
    """An active test mode: zero waits and/or a cap on the attempts."""

    __test__ = False  # not a pytest test class

    zero_waits: bool
    max_attempts: int | None
    outer: TestMode | None = None

    def __repr__(self) -> str:
        return f"<TestMode zero_waits={self.zero_waits} max_attempts={self.max_attempts}>"


_mode: Final[ContextVar[TestMode | None]] = ContextVar("anyway_retry_test_mode", default=None)


def test_mode() -> TestMode | None:
    """The test mode of the current context, if any."""
    return _mode.get()


def is_testing() -> bool:
    """Whether a retry test mode (``no_backoff()`` / ``cap_attempts()``) is
    active in the current task."""
    return _mode.get() is not None


def enter_test_mode(*, zero_waits: bool, max_attempts: int | None) -> TestMode:
    """Switch a test mode on in the current context; nested modes combine
    (the strictest of both wins)."""
    outer = _mode.get()
    if outer is not None:
        zero_waits = zero_waits or outer.zero_waits
        if outer.max_attempts is not None:
            max_attempts = (
                outer.max_attempts
                if max_attempts is None
                else min(max_attempts, outer.max_attempts)
            )
    mode = TestMode(zero_waits, max_attempts, outer)
    _mode.set(mode)
    return mode


def exit_test_mode() -> None:
    """Leave the innermost test mode of the current context."""
    mode = _mode.get()
    if mode is None:
        raise RuntimeError("no retry test mode is active in this context: nothing to leave")
    _mode.set(mode.outer)
