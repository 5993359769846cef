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

__version__ = "0.1.0.dev0"

__all__ = [
    "BulkheadFull",
    "CircuitOpen",
    "DeadlineExceeded",
    "RateLimitExceeded",
    "Rejected",
]


def _rewrite_module_names() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("anyway._"):
            obj.__module__ = "anyway"


_rewrite_module_names()
del _rewrite_module_names
