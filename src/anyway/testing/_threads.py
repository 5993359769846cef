"""Know when a worker thread started by ``anyio.to_thread`` is doing work.

Virtual time may only jump when every task is blocked *and* no worker thread
is doing work on a task's behalf: a thread runs on real time, so jumping past
its work would fire timeouts that could never fire for real (trio's
``MockClock`` autojump and looptime both do this). A thread that is waiting
for the event loop (``anyio.from_thread.run``) is not doing work, though: it
waits for something the loop has to do, maybe an ``anyio.sleep`` that only a
jump can end. Holding the clock then would hang.

AnyIO sends every ``to_thread.run_sync`` call through its backend class's
``run_sync_in_worker_thread``, and every ``from_thread.run`` through
``run_async_from_thread``. We wrap both classmethods once, on the first use
of virtual time:

* the first asks the running loop (or trio clock) whether it is one of ours
  and, if so, opens a :class:`_ThreadCall`: busy from before the thread is
  handed the work until the result is back in the event-loop thread
  (counting down in the loop thread, not in the worker, closes the race where
  the worker has finished but its result has not been delivered yet);
* the second, called in the worker thread, finds that thread's call and runs
  the coroutine function under a wrapper that marks the call idle while it
  runs *in the loop thread*, and busy again before its result goes back to
  the thread.

Every change of the count happens in the loop thread, so no lock is needed.
``from_thread.run_sync`` is left alone: a synchronous callback runs in one go
in the loop thread, and time cannot move while it does. Off virtual time the
wrappers cost one check each.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["ThreadTracker", "install"]


class ThreadTracker(Protocol):
    """What a virtual clock exposes so that thread calls can be counted."""

    def thread_started(self) -> None: ...

    def thread_finished(self) -> None: ...


_BUSY, _WAITING, _DONE = "busy", "waiting for the loop", "done"


class _ThreadCall:
    """One ``to_thread`` call as the clock sees it. Used in the loop thread only."""

    __slots__ = ("state", "tracker")

    def __init__(self, tracker: ThreadTracker) -> None:
        self.tracker = tracker
        self.state = _BUSY
        tracker.thread_started()

    def __repr__(self) -> str:
        return f"<_ThreadCall {self.state}>"

    def wait_for_loop(self) -> None:
        if self.state == _BUSY:
            self.state = _WAITING
            self.tracker.thread_finished()

    def back_to_thread(self) -> None:
        if self.state == _WAITING:
            self.state = _BUSY
            self.tracker.thread_started()

    def finish(self) -> None:
        # also when the call was abandoned: the thread no longer holds the clock
        if self.state == _BUSY:
            self.tracker.thread_finished()
        self.state = _DONE


# The call each worker thread is running, if it was started under our clock.
_current = threading.local()


def _running_as(call: _ThreadCall, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def run(*args: Any) -> Any:
        outer = getattr(_current, "call", None)
        _current.call = call
        try:
            return func(*args)
        finally:
            _current.call = outer

    return run


_lock = threading.Lock()
_installed: set[str] = set()


def _wrap(backend_class: Any, find_tracker: Callable[[], ThreadTracker | None]) -> None:
    to_thread = backend_class.run_sync_in_worker_thread.__func__
    from_thread = backend_class.run_async_from_thread.__func__

    async def run_sync_in_worker_thread(
        cls: Any,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        abandon_on_cancel: bool = False,
        limiter: Any = None,
    ) -> Any:
        tracker = find_tracker()
        if tracker is None:
            return await to_thread(cls, func, args, abandon_on_cancel, limiter)
        call = _ThreadCall(tracker)
        try:
            return await to_thread(cls, _running_as(call, func), args, abandon_on_cancel, limiter)
        finally:
            call.finish()

    def run_async_from_thread(
        cls: Any, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], token: object
    ) -> Any:
        call: _ThreadCall | None = getattr(_current, "call", None)
        if call is None:
            return from_thread(cls, func, args, token)

        @functools.wraps(func)
        async def while_the_thread_waits(*args: Any) -> Any:
            # in the loop thread; with an explicit token this may be another
            # loop than the one the thread was started from: leave that alone
            mine = find_tracker() is call.tracker
            if mine:
                call.wait_for_loop()
            try:
                return await func(*args)
            finally:
                if mine:
                    call.back_to_thread()

        return from_thread(cls, while_the_thread_waits, args, token)

    run_sync_in_worker_thread.__wrapped__ = to_thread  # type: ignore[attr-defined]
    run_async_from_thread.__wrapped__ = from_thread  # type: ignore[attr-defined]
    backend_class.run_sync_in_worker_thread = classmethod(run_sync_in_worker_thread)
    backend_class.run_async_from_thread = classmethod(run_async_from_thread)


def install(backend: str) -> None:
    """Wrap AnyIO's worker-thread entry points for *backend* (idempotent)."""
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
