"""Know when a worker thread started by ``anyio.to_thread`` is running.

Virtual time may only jump when every task is blocked *and* no worker thread
is doing work on a task's behalf: a thread runs on real time, so jumping past
its work would fire timeouts that could never fire for real (trio's
``MockClock`` autojump and looptime both do this).

AnyIO sends every ``to_thread.run_sync`` call through its backend class's
``run_sync_in_worker_thread``. We wrap that classmethod once, on the first use
of virtual time: the wrapper asks the running loop (or trio clock) whether it
is one of ours and, if so, counts the call as busy from before the thread is
handed the work until the result is back in the event-loop thread. Counting
down in the loop thread (not in the worker) closes the race where the worker
has finished but its result has not been delivered yet. Off virtual time the
wrapper costs one ``isinstance`` check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["ThreadTracker", "install"]


class ThreadTracker(Protocol):
    """What a virtual clock exposes so that thread calls can be counted."""

    def thread_started(self) -> None: ...

    def thread_finished(self) -> None: ...


_lock = threading.Lock()
_installed: set[str] = set()


def _wrap(backend_class: Any, find_tracker: Callable[[], ThreadTracker | None]) -> None:
    original = backend_class.run_sync_in_worker_thread.__func__

    async def run_sync_in_worker_thread(
        cls: Any,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        abandon_on_cancel: bool = False,
        limiter: Any = None,
    ) -> Any:
        tracker = find_tracker()
        if tracker is None:
            return await original(cls, func, args, abandon_on_cancel, limiter)
        tracker.thread_started()
        try:
            return await original(cls, func, args, abandon_on_cancel, limiter)
        finally:
            tracker.thread_finished()

    run_sync_in_worker_thread.__wrapped__ = original  # type: ignore[attr-defined]
    backend_class.run_sync_in_worker_thread = classmethod(run_sync_in_worker_thread)


def install(backend: str) -> None:
    """Wrap AnyIO's worker-thread entry point for *backend* (idempotent)."""
    with _lock:
        if backend in _installed:
            return
        if backend == "asyncio":
            from anyio._backends._asyncio import AsyncIOBackend

            from ._asyncio import current_virtual_loop

            _wrap(AsyncIOBackend, current_virtual_loop)
        elif backend == "trio":
            from anyio._backends._trio import TrioBackend

            from ._trio import current_virtual_clock

            _wrap(TrioBackend, current_virtual_clock)
        else:  # pragma: no cover - guarded by callers
            raise ValueError(f"unknown backend {backend!r}")
        _installed.add(backend)
