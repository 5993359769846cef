"""anyway: structured-concurrency and resilience helpers for asyncio, uvloop
and Trio, built on AnyIO.

This module only re-exports; the code lives in private modules. Every public
name's ``__module__`` is rewritten to ``anyway`` so that reprs, tracebacks and
the docs show ``anyway.X``.
"""

from __future__ import annotations

from ._errors import BulkheadFull as BulkheadFull
from ._errors import CircuitOpen as CircuitOpen
from ._errors import DeadlineExceeded as DeadlineExceeded
from ._errors import RateLimitExceeded as RateLimitExceeded
from ._errors import Rejected as Rejected
from ._events import BreakerStateChanged as BreakerStateChanged
from ._events import CallRejected as CallRejected
from ._events import CircuitState as CircuitState
from ._events import DeadlineExpired as DeadlineExpired
from ._events import Event as Event
from ._events import Hook as Hook
from ._events import RetryGaveUp as RetryGaveUp
from ._events import RetryScheduled as RetryScheduled
from ._events import add_hook as add_hook
from ._events import global_hooks as global_hooks
from ._events import log_event as log_event
from ._events import remove_hook as remove_hook

# --- deadlines and task groups (_deadline.py, _tasks.py): imports ---
# --- retry (_backoff.py, _retry.py): imports ---
# --- limits (_ratelimit.py, _bulkhead.py): imports ---
# --- breaker and composition (_breaker.py, _compose.py): imports ---

__version__ = "0.1.0.dev0"

__all__ = [  # noqa: RUF022 - grouped by area, sorted within each group
    # errors
    "BulkheadFull",
    "CircuitOpen",
    "DeadlineExceeded",
    "RateLimitExceeded",
    "Rejected",
    # events
    "BreakerStateChanged",
    "CallRejected",
    "CircuitState",
    "DeadlineExpired",
    "Event",
    "Hook",
    "RetryGaveUp",
    "RetryScheduled",
    "add_hook",
    "global_hooks",
    "log_event",
    "remove_hook",
    # --- deadlines and task groups: __all__ ---
    # --- retry: __all__ ---
    # --- limits: __all__ ---
    # --- breaker and composition: __all__ ---
]


def _rewrite_module_names() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("anyway._"):
            obj.__module__ = "anyway"


_rewrite_module_names()
del _rewrite_module_names
