"""Checking a :class:`~anyway.CircuitBreaker`'s arguments and building the
:class:`~anyway.BreakerConfig` its store runs the state machine with."""

from __future__ import annotations

import enum
from typing import Final, Literal, TypeAlias

from ._breaker_types import BreakerConfig
from ._breaker_windows import CountWindow, TimeWindow
from ._validate import check_count, check_number, check_seconds

__all__ = ["NOT_GIVEN", "NotGiven", "build_config"]


class _NotGiven(enum.Enum):
    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = _NotGiven.NOT_GIVEN
"""An argument left out (so an explicit default value can be told apart)."""
NotGiven: TypeAlias = Literal[_NotGiven.NOT_GIVEN]

DEFAULT_FAILURE_THRESHOLD: Final = 5


def _check_rate(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    return check_number(
        name,
        value,
        minimum=0.0,
        allow_minimum=False,
        maximum=1.0,
        hint=" (a rate in (0, 1], e.g. 0.5 for 50%)",
    )


def build_config(
    *,
    failure_threshold: int | NotGiven,
    recovery_time: float,
    half_open_max_calls: int,
    window: object,
    minimum_calls: int | None,
    failure_rate_threshold: float | None,
    slow_call_duration: float | None,
    slow_call_rate_threshold: float | None,
) -> tuple[BreakerConfig, float | None]:
    """The store's configuration, and the slow-call duration (``None``: not tracked)."""
    threshold = check_count(
        "failure_threshold",
        DEFAULT_FAILURE_THRESHOLD if failure_threshold is NOT_GIVEN else failure_threshold,
    )
    recovery_time = check_seconds(
        "recovery_time",
        recovery_time,
        allow_zero=False,
        hint="; to keep a circuit open until you close it, call `await breaker.open()`",
    )
    half_open_max_calls = check_count("half_open_max_calls", half_open_max_calls)
    if window is None:
        for option, value in (
            ("minimum_calls", minimum_calls),
            ("failure_rate_threshold", failure_rate_threshold),
            ("slow_call_duration", slow_call_duration),
            ("slow_call_rate_threshold", slow_call_rate_threshold),
        ):
            if value is not None:
                raise ValueError(
                    f"{option}={value!r} needs a sliding window: pass"
                    " window=CountWindow(size) or window=TimeWindow(seconds)"
                    " (without one the breaker counts consecutive failures)"
                )
        config = BreakerConfig(
            failure_threshold=threshold,
            recovery_time=recovery_time,
            half_open_max_calls=half_open_max_calls,
        )
        return config, None
    if not isinstance(window, CountWindow | TimeWindow):
        raise TypeError(
            f"window must be CountWindow(size), TimeWindow(seconds) or None, got {window!r}"
        )
    if failure_threshold is not NOT_GIVEN:
        raise ValueError(
            f"failure_threshold={failure_threshold!r} counts consecutive failures and"
            " does not apply with a window; use failure_rate_threshold= (a rate in (0, 1])"
        )
    if minimum_calls is None:
        minimum_calls = min(10, window.size) if isinstance(window, CountWindow) else 10
    minimum_calls = check_count("minimum_calls", minimum_calls)
    if isinstance(window, CountWindow) and window.size < minimum_calls:
        raise ValueError(
            f"window=CountWindow({window.size}) is smaller than minimum_calls="
            f"{minimum_calls}: the failure rate would never be judged; use"
            " a larger window or a smaller minimum_calls"
        )
    rate = _check_rate("failure_rate_threshold", failure_rate_threshold, 0.5)
    slow_rate: float | None = None
    slow = None
    if slow_call_duration is not None:
        slow = check_seconds("slow_call_duration", slow_call_duration, allow_zero=False)
        slow_rate = _check_rate("slow_call_rate_threshold", slow_call_rate_threshold, 1.0)
    elif slow_call_rate_threshold is not None:
        raise ValueError(
            f"slow_call_rate_threshold={slow_call_rate_threshold!r} needs"
            " slow_call_duration= (the duration above which a call is slow)"
        )
    config = BreakerConfig(
        failure_threshold=DEFAULT_FAILURE_THRESHOLD,
        recovery_time=recovery_time,
        half_open_max_calls=half_open_max_calls,
        window=window,
        minimum_calls=minimum_calls,
        failure_rate_threshold=rate,
        slow_call_rate_threshold=slow_rate,
    )
    return config, slow
