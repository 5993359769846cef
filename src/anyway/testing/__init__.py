"""Testing helpers for code built on anyway and AnyIO: virtual time on
asyncio and Trio, ready ``anyio_backend`` parameters, and a pytest plugin.

This is the only part of anyway that touches the event loops directly.
"""

from __future__ import annotations

from ._asyncio import VirtualTimeEventLoop as VirtualTimeEventLoop
from ._asyncio import accelerated_uvloop_factory as accelerated_uvloop_factory
from ._backends import DEFAULT_UVLOOP_SPEEDUP as DEFAULT_UVLOOP_SPEEDUP
from ._backends import backend_id as backend_id
from ._backends import backends as backends
from ._backends import clock_id as clock_id
from ._backends import fresh_backend as fresh_backend
from ._backends import is_virtual as is_virtual
from ._backends import virtual_time_options as virtual_time_options
from ._clock import Clock as Clock
from ._foreign import foreign_clocks as foreign_clocks
from ._retry import RetryTestMode as RetryTestMode
from ._retry import cap_attempts as cap_attempts
from ._retry import is_testing as is_testing
from ._retry import no_backoff as no_backoff

__all__ = [
    "DEFAULT_UVLOOP_SPEEDUP",
    "Clock",
    "RetryTestMode",
    "VirtualTimeEventLoop",
    "accelerated_uvloop_factory",
    "backend_id",
    "backends",
    "cap_attempts",
    "clock_id",
    "foreign_clocks",
    "fresh_backend",
    "is_testing",
    "is_virtual",
    "no_backoff",
    "virtual_time_options",
]
