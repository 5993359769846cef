"""Virtual time for asyncio: a small event-loop subclass, and fast uvloop.

``VirtualTimeEventLoop`` is a ``SelectorEventLoop`` whose ``time()`` is a
number we own. Its selector is wrapped: when asyncio is about to block until
the next timer, the wrapper first polls the real selector without blocking
(real I/O always wins), then, if nothing is ready and no worker thread is
busy, moves the clock straight to that timer instead of sleeping. Everything
that asyncio and AnyIO schedule goes through ``call_at``/``time()``, so
``anyio.sleep``, cancel-scope deadlines and ``anyio.current_time()`` all see
the same virtual clock, starting at 0.0 in every loop.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Callable, Mapping
from contextvars import Context
from typing import Any, TypeVar, TypeVarTuple, Unpack

from ._threads import install

_FOREVER = 1e9  # seconds; a timer this far away never fires in a test

__all__ = ["VirtualTimeEventLoop", "accelerated_uvloop_factory", "current_virtual_loop"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

# How long a real select may block while a worker thread is busy. The thread's
# result wakes the loop through its self-pipe anyway; this only bounds the
# damage if something else holds the loop.
_THREAD_POLL = 0.05


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to the real selector, but turns idle waits into clock jumps."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeEventLoop) -> None:
        self._real = real
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if timeout is not None and timeout <= 0:
            return self._real.select(0)
        if loop._anyway_busy_threads:
            # Time stands still while a worker thread runs on real time.
            return self._real.select(_THREAD_POLL)
        events = self._real.select(loop.autojump_threshold)
        if events or timeout is None:
            # Real I/O is ready, or there is no timer to jump to: wait for
            # real events only (a real loop would block here as well).
            return events or self._real.select(None)
        loop._advance(timeout)
        return []


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time.

    Time starts at ``0.0`` and only moves when every task is blocked, no
    callback is ready, no real I/O is pending and no worker thread started by
    ``anyio.to_thread`` (or ``loop.run_in_executor``) is running; then it jumps
    straight to the next timer. A one-hour ``anyio.sleep`` returns at once.
    A worker thread that waits for the loop in ``anyio.from_thread.run`` does
    not hold the clock. This holds however the loop is made: through
    :func:`virtual_time_options` or as
    ``backend_options={"loop_factory": VirtualTimeEventLoop}``.

    *autojump_threshold* is how long (real seconds) the loop must be idle
    before time jumps, as with trio's ``MockClock``; 0 jumps at once. Raise it
    when a test talks to a real server and must give its replies time to come.
    """

    def __init__(self, *, autojump_threshold: float = 0.0) -> None:
        install("asyncio")  # count anyio.to_thread calls made on this loop
        self._anyway_now = 0.0
        self._anyway_busy_threads = 0
        self.autojump_threshold: float = 0.0
        super().__init__(_VirtualSelector(selectors.DefaultSelector(), self))
        if not (autojump_threshold >= 0 and math.isfinite(autojump_threshold)):
            self.close()
            raise ValueError(
                f"autojump_threshold must be a finite number >= 0, got {autojump_threshold!r}"
            )
        self.autojump_threshold = float(autojump_threshold)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} time={self._anyway_now!r}"
            f" busy_threads={self._anyway_busy_threads} closed={self.is_closed()}>"
        )

    def time(self) -> float:
        return self._anyway_now

    def _advance(self, timeout: float) -> None:
        # asyncio computed timeout = next_timer - now (clamped to one day);
        # land on the timer exactly so durations come out exact.
        target = self._anyway_now + timeout
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if scheduled:
            target = min(target, scheduled[0].when())
        target = max(self._anyway_now, target)
        # asyncio runs the timers due before time() + clock resolution; far
        # from zero that sum rounds back to time() and nothing would ever be
        # due: step one float further so the timer we jumped to runs.
        resolution: float = self._clock_resolution  # type: ignore[attr-defined]
        if target + resolution <= target:
            target = math.nextafter(target, math.inf)
        self._anyway_now = target

    def thread_started(self) -> None:
        self._anyway_busy_threads += 1

    def thread_finished(self) -> None:
        self._anyway_busy_threads -= 1

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self.thread_started()
        future.add_done_callback(lambda _: self.thread_finished())
        return future


def current_virtual_loop() -> VirtualTimeEventLoop | None:
    """The running loop if it is a :class:`VirtualTimeEventLoop`, else ``None``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop if isinstance(loop, VirtualTimeEventLoop) else None


def accelerated_uvloop_factory(speedup: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """A uvloop factory whose clock runs *speedup* times faster than real time.

    uvloop keeps its timers and its idle phase in libuv's C code, out of
    Python's reach, so it cannot be put on virtual time: nothing can tell when
    all of its tasks are blocked. What we can do is scale: ``time()`` reports
    libuv's clock (whole milliseconds, as uvloop's own ``time()`` does)
    multiplied by *speedup*, and ``call_at``/``call_later`` divide delays by
    it, so a 1 s timeout fires after ``1/speedup`` real seconds. A timer fires
    on the first millisecond at which ``time()`` has reached its due time,
    never earlier, and timers fire in the order they are due (one registered
    after its due time fires on the next millisecond, after the timers already
    due). Timers still come from libuv on real time (real scheduling jitter),
    so durations are approximate, and time moves in steps of ``speedup``
    milliseconds.
    """
    import uvloop

    if not (speedup >= 1 and math.isfinite(speedup)):
        raise ValueError(f"speedup must be a finite number >= 1, got {speedup!r}")
    if speedup == 1:
        return uvloop.new_event_loop

    class AcceleratedUVLoop(uvloop.Loop):
        # Time is libuv's own clock (whole milliseconds, what uvloop's time()
        # reports too), scaled: then "time() >= when" holds exactly when libuv
        # considers a timer due at `when`, so a deadline registered before it
        # passed has always fired by the next loop iteration once time() shows
        # it passed.
        _anyway_speedup = float(speedup)
        _anyway_origin_ms = 0

        def _libuv_ms(self) -> int:
            # libuv's cached clock: updated each loop iteration and when a
            # timer starts (uvloop's time() does not update it)
            return round(uvloop.Loop.time(self) * 1e3)

        def time(self) -> float:
            return self._at(self._libuv_ms())

        def _at(self, ms: int) -> float:
            """What time() says at libuv's millisecond *ms*."""
            return (ms - self._anyway_origin_ms) * self._anyway_speedup / 1e3

        def call_later(
            self,
            delay: float,
            callback: Callable[[Unpack[_Ts]], object],
            *args: *_Ts,
            context: Context | None = None,
        ) -> asyncio.TimerHandle:
            if not delay < _FOREVER:  # inf, or too far to matter: uvloop caps it
                return super().call_later(_FOREVER, callback, *args, context=context)
            return self._at_ms(self.time() + max(0.0, delay), callback, args, context)

        def call_at(
            self,
            when: float,
            callback: Callable[[Unpack[_Ts]], object],
            *args: *_Ts,
            context: Context | None = None,
        ) -> asyncio.TimerHandle:
            if not when - self.time() < _FOREVER:  # inf, NaN or too far to matter
                return super().call_later(_FOREVER, callback, *args, context=context)
            return self._at_ms(when, callback, args, context)

        def _at_ms(
            self,
            when: float,
            callback: Callable[[Unpack[_Ts]], object],
            args: tuple[*_Ts],
            context: Context | None,
        ) -> asyncio.TimerHandle:
            # The first libuv millisecond at which time() >= when (found with
            # time()'s own arithmetic, so that the two agree to the last bit).
            # libuv measures the delay from the moment the timer starts: if its
            # clock ticked since we read it, start the timer again. A timer
            # already due gets the next millisecond, never a zero delay: uvloop
            # turns that into call_soon, whose callback would run a round of
            # ready callbacks after the timers already due (and before them,
            # once those wake their tasks through a future).
            due_ms = self._anyway_origin_ms + math.ceil(when * 1e3 / self._anyway_speedup)
            while self._at(due_ms - 1) >= when:
                due_ms -= 1
            while self._at(due_ms) < when:
                due_ms += 1
            while True:
                now_ms = self._libuv_ms()
                handle: asyncio.TimerHandle = uvloop.Loop.call_later(
                    self, max(1, due_ms - now_ms) / 1e3, callback, *args, context=context
                )
                if due_ms <= now_ms or round(handle.when() * 1e3) <= due_ms:
                    return handle
                handle.cancel()

    def factory() -> asyncio.AbstractEventLoop:
        loop = AcceleratedUVLoop()
        loop._anyway_origin_ms = loop._libuv_ms()
        return loop

    factory._anyway_kind = "uvloop"  # type: ignore[attr-defined]
    factory.__qualname__ = factory.__name__ = f"AcceleratedUVLoop[x{speedup:g}]"
    return factory
