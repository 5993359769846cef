"""``watchdog``: notice when something blocks the event loop, and say where.

A sync call inside async code (``time.sleep``, ``requests.get``, a heavy
loop) stalls every task. asyncio's debug mode only notices it afterwards,
on asyncio alone, without saying where. Here a helper thread asks the loop
to run a tiny callback (AnyIO's ``run_sync_soon``: no task, no timer, so
virtual time is untouched); when the loop has not run it within
``threshold`` real seconds, the thread takes the loop thread's stack
(``sys._current_frames()``: the one place it is the right tool), waits for
the stall to end, and reports it once, on the loop, as a
:class:`LoopBlocked` event.

The stall is measured in real seconds (the loop's own clock may be virtual,
and it is the wall-clock stall that hurts), so this module reads
``time.monotonic()``, in the helper thread only.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Final

import anyio
import anyio.lowlevel

from ._events import LoopBlocked, emit_sync
from ._validate import check_callable, check_number

__all__ = ["LoopBlocked", "watchdog"]

#: The shortest threshold, in real seconds.
_MIN_THRESHOLD: Final = 0.001

OnBlock = Callable[[LoopBlocked], object]


class watchdog:
    """Report every stall of the running event loop longer than *threshold*.

    ::

        async def main():
            with anyway.watchdog(0.1):
                ...  # a time.sleep(0.5) in here is reported, with its line

    A context manager (``with`` or ``async with``) entered in the event
    loop's thread: it starts a helper thread and joins it on exit, so no
    thread outlives the block. Each stall longer than *threshold* real
    seconds is reported once, when it ends, as a :class:`LoopBlocked`
    event: to ``on_block(event)`` (a plain function, called in the loop's
    thread) if given, otherwise to the global hooks (by default, a warning
    on the ``"anyway"`` logger). ``blocked`` lists the events of this block.
    An error raised by ``on_block`` (or a hook) does not disturb the loop:
    it is raised when the block exits (with the body's own error, if any,
    in an exception group).

    Works the same on asyncio, uvloop and Trio, and on virtual time (it
    never sleeps on the loop's clock).
    """

    __slots__ = (
        "_beat",
        "_errors",
        "_loop_thread",
        "_on_block",
        "_reports",
        "_stop",
        "_thread",
        "_token",
        "blocked",
        "threshold",
    )

    def __init__(self, threshold: float = 0.1, *, on_block: OnBlock | None = None) -> None:
        # Not under a millisecond (the helper thread's own wake-ups take that
        # long: every check would be a "stall"), nor past what a thread can
        # wait for (threading.TIMEOUT_MAX: the thread would die at once).
        self.threshold: float = check_number(
            "threshold",
            threshold,
            minimum=_MIN_THRESHOLD,
            maximum=threading.TIMEOUT_MAX,
            hint="; real seconds, e.g. threshold=0.1",
        )
        if on_block is not None:
            check_callable("on_block", on_block)
        self._on_block = on_block
        self.blocked: list[LoopBlocked] = []
        self._reports: list[LoopBlocked] = []  # noticed by the thread, not yet reported
        self._errors: list[Exception] = []  # raised by on_block or a hook, for the exit
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._beat = threading.Event()
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread = 0

    def __repr__(self) -> str:
        state = "watching" if self._thread is not None else "idle"
        return f"<watchdog threshold={self.threshold:g} {state} blocked={len(self.blocked)}>"

    def __enter__(self) -> watchdog:
        if self._thread is not None:
            raise RuntimeError("this watchdog is already watching: use one per block")
        try:
            self._token = anyio.lowlevel.current_token()
        except RuntimeError:
            raise RuntimeError(
                "watchdog() watches the running event loop: enter it inside async code"
                " (in the loop's thread)"
            ) from None
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="anyway watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thread = self._thread
        assert thread is not None
        self._stop.set()
        self._beat.set()  # the loop is running this very line: a heartbeat
        thread.join()  # returns at once: nothing the thread waits for needs the loop now
        self._thread = None
        self._deliver()  # a stall that ended just before the exit is still reported
        errors, self._errors = self._errors, []
        if not errors:
            return
        if exc is not None:  # the body's error (or cancellation) goes on, with them
            raise BaseExceptionGroup(
                "watchdog: on_block raised as the block failed", [exc, *errors]
            )
        if len(errors) == 1:
            raise errors[0]
        raise ExceptionGroup(f"watchdog: on_block raised {len(errors)} errors", errors)

    async def __aenter__(self) -> watchdog:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- the helper thread ----------------------------------------------------

    def _schedule(self, fn: Callable[..., object], *args: object) -> bool:
        token = self._token
        assert token is not None
        try:
            token.backend_class.run_sync_soon(fn, args, token.native_token)
        except Exception:  # the loop has finished (RunFinishedError): nothing to watch
            return False
        return True

    def _watch(self) -> None:
        interval = self.threshold / 2
        while not self._stop.is_set():
            beat = self._beat = threading.Event()
            if self._stop.is_set():  # the exit may have set the previous beat, not this one
                return
            if not self._schedule(beat.set):
                return
            sent = time.monotonic()
            if not beat.wait(self.threshold):
                frame = sys._current_frames().get(self._loop_thread)
                stack = tuple(traceback.extract_stack(frame)) if frame is not None else ()
                beat.wait()  # until the loop runs again (at the latest: the block's exit)
                stalled = time.monotonic() - sent
                event = LoopBlocked(
                    policy="watchdog", seconds=stalled, threshold=self.threshold, stack=stack
                )
                self._reports.append(event)
                if not self._stop.is_set():
                    self._schedule(self._deliver)  # else the exit delivers it
            if self._stop.wait(interval):
                return

    def _deliver(self) -> None:
        """Report what the thread noticed; runs in the loop's thread, often as
        a loop callback, which must not raise (Trio would crash the run,
        asyncio only log it): errors are raised by the block's exit."""
        while self._reports:
            event = self._reports.pop(0)
            self.blocked.append(event)
            try:
                if self._on_block is not None:
                    self._on_block(event)
                else:
                    emit_sync(event)
            except Exception as exc:
                self._errors.append(exc)
