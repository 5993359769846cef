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
from ._backends import fresh_backend as fresh_backend
from ._backends import is_virtual as is_virtual
from ._backends import virtual_time_options as virtual_time_options

__all__ = [
    "DEFAULT_UVLOOP_SPEEDUP",
    "VirtualTimeEventLoop",
    "accelerated_uvloop_factory",
    "backend_id",
    "backends",
    "fresh_backend",
    "is_virtual",
    "virtual_time_options",
]
