"""anyway: structured-concurrency and resilience helpers for asyncio, uvloop
and Trio, built on AnyIO.

This module only re-exports; the code lives in private modules. Every public
name's ``__module__`` is rewritten to ``anyway`` so that reprs, tracebacks and
the docs show ``anyway.X``.
"""

from __future__ import annotations

# errors and events
from ._errors import BulkheadFull as BulkheadFull
from ._errors import CircuitOpen as CircuitOpen
from ._errors import DeadlineExceeded as DeadlineExceeded
from ._errors import RateLimitExceeded as RateLimitExceeded
from ._errors import Rejected as Rejected
from ._events import BreakerCallRecorded as BreakerCallRecorded
from ._events import BreakerStateChanged as BreakerStateChanged
from ._events import CallRejected as CallRejected
from ._events import CircuitState as CircuitState
from ._events import DeadlineExpired as DeadlineExpired
from ._events import PolicyEvent as PolicyEvent
from ._events import GiveUpKind as GiveUpKind
from ._events import Hook as Hook
from ._events import RetryAttemptStarted as RetryAttemptStarted
from ._events import RetryGaveUp as RetryGaveUp
from ._events import RetryScheduled as RetryScheduled
from ._events import TransitionKind as TransitionKind
from ._events import add_hook as add_hook
from ._events import global_hooks as global_hooks
from ._events import log_event as log_event
from ._events import remove_hook as remove_hook


# deadlines and task groups
from ._deadline import Budget as Budget
from ._deadline import deadline as deadline
from ._deadline import deadline_at as deadline_at
from ._deadline import fallback as fallback
from ._deadline import remaining as remaining
from ._deadline import shield as shield
from ._map import map as map
from ._map import map_all as map_all
from ._tasks import hedge as hedge
from ._tasks import race as race
from ._tasks import settle as settle

# retry
from ._backoff import Backoff as Backoff
from ._backoff import random_wait as random_wait
from ._retry import Retry as Retry
from ._retry import TryAgain as TryAgain
from ._retry import retry as retry
from ._retry_options import RetryOptions as RetryOptions
from ._retry_budget import RetryBudget as RetryBudget
from ._retry_stats import RetryStats as RetryStats
from ._retry_stats import retry_stats as retry_stats
from ._retrying import Attempt as Attempt
from ._retrying import retrying as retrying

# limits
from ._bulkhead import Bulkhead as Bulkhead
from ._keyed import KeyedRateLimiter as KeyedRateLimiter
from ._ratelimit import RateLimiter as RateLimiter

# circuit breaker and composition
from ._breaker import CircuitBreaker as CircuitBreaker
from ._breaker_types import BreakerConfig as BreakerConfig
from ._breaker_types import BreakerSnapshot as BreakerSnapshot
from ._breaker_types import BreakerUpdate as BreakerUpdate
from ._breaker_windows import CountWindow as CountWindow
from ._breaker_windows import TimeWindow as TimeWindow
from ._circuit import InMemoryBreakerStore as InMemoryBreakerStore
from .abc import BreakerStore as BreakerStore
from ._compose import NO_FALLBACK as NO_FALLBACK
from ._compose import FallbackDecorator as FallbackDecorator
from ._compose import ResilientDecorator as ResilientDecorator
from ._compose import resilient as resilient

# the seeds' remaining patterns
from ._eventbus import EventBus as EventBus
from ._periodic import periodic as periodic
from ._events import LoopBlocked as LoopBlocked
from ._watchdog import watchdog as watchdog

# adaptive
from ._adaptive import AdaptiveLimiter as AdaptiveLimiter
from ._adaptive import AdaptiveLimiterStatistics as AdaptiveLimiterStatistics
from ._events import LimitChanged as LimitChanged
from ._hedger import Hedger as Hedger
from ._hedger import HedgerStatistics as HedgerStatistics
from ._per_key import PerKey as PerKey

__version__ = "0.1.0.dev0"

__all__ = [  # noqa: RUF022 - grouped by area, sorted within each group
    # errors
    "BulkheadFull",
    "CircuitOpen",
    "DeadlineExceeded",
    "RateLimitExceeded",
    "Rejected",
    # events
    "BreakerCallRecorded",
    "BreakerStateChanged",
    "CallRejected",
    "CircuitState",
    "DeadlineExpired",
    "GiveUpKind",
    "Hook",
    "PolicyEvent",
    "RetryAttemptStarted",
    "RetryGaveUp",
    "RetryScheduled",
    "TransitionKind",
    "add_hook",
    "global_hooks",
    "log_event",
    "remove_hook",
    # deadlines and task groups
    "Budget",
    "deadline",
    "deadline_at",
    "fallback",
    "hedge",
    "map",
    "map_all",
    "race",
    "remaining",
    "settle",
    "shield",
    # retry
    "Attempt",
    "Backoff",
    "Retry",
    "RetryBudget",
    "RetryOptions",
    "RetryStats",
    "TryAgain",
    "random_wait",
    "retry",
    "retry_stats",
    "retrying",
    # limits
    "Bulkhead",
    "KeyedRateLimiter",
    "RateLimiter",
    # circuit breaker and composition
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerStore",
    "BreakerUpdate",
    "CircuitBreaker",
    "CountWindow",
    "FallbackDecorator",
    "InMemoryBreakerStore",
    "NO_FALLBACK",
    "ResilientDecorator",
    "TimeWindow",
    "resilient",
    # the seeds' remaining patterns
    "EventBus",
    "LoopBlocked",
    "periodic",
    "watchdog",
    # adaptive
    "AdaptiveLimiter",
    "AdaptiveLimiterStatistics",
    "Hedger",
    "HedgerStatistics",
    "LimitChanged",
    "PerKey",
]


def _rewrite_module_names() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("anyway._"):
            obj.__module__ = "anyway"


_rewrite_module_names()
del _rewrite_module_names
