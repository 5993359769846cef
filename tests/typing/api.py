"""Type-checked by mypy --strict, never run: pins the public API's types."""

from __future__ import annotations

from typing import Any, assert_type

import anyway
from anyway.testing import backend_id, backends, virtual_time_options

assert_type(backends(), list[tuple[str, dict[str, Any]]])
assert_type(backends(virtual_time=True, uvloop=False), list[tuple[str, dict[str, Any]]])
assert_type(virtual_time_options("trio"), dict[str, Any])
assert_type(backend_id(("asyncio", {})), str)

exc = anyway.CircuitOpen("open", retry_after=1.0, name="db")
assert_type(exc.retry_after, float | None)
assert_type(exc.name, str | None)
assert_type(anyway.DeadlineExceeded("late", seconds=1.0).seconds, float | None)
