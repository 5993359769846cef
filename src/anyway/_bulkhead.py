"""A bulkhead: a concurrency limit with a bounded FIFO queue that rejects at
once when both are full."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from types import TracebackType
from typing import final

import anyio
from anyio.lowlevel import checkpoint

from ._errors import BulkheadFull
from ._events import CallRejected, Hook, check_hooks, emit
from ._validate import check_count

__all__ = ["Bulkhead"]


class _Slot:
    """A task waiting for a slot; ``granted`` once a leaving task handed it one."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


@final
class Bulkhead:
    """At most *max_concurrent* calls inside at once, at most *max_waiting*
    more queued for a slot; anything beyond is refused at once with
    :exc:`~anyway.BulkheadFull`.

    ::

        db = anyway.Bulkhead(10, max_waiting=100)

        async with db:  # BulkheadFull right away if 10 run and 100 wait
            await query()

    The point of a bulkhead is to fail fast instead of piling up work behind
    a saturated dependency: with the default ``max_waiting=0`` a call either
    gets a slot now or is rejected now. Waiters are served in arrival order
    (a slot that frees up goes to the oldest waiter, never to a newcomer), and
    are cancellation-safe: a cancelled waiter leaves the queue, and a slot
    handed to a waiter that is cancelled at that very moment is passed on to
    the next one, never lost. Entering is always a checkpoint.

    Each rejection emits :class:`~anyway.CallRejected` (``by="bulkhead"``) to
    *hooks* and the global hooks; *name* names the bulkhead in it.

    Use :class:`anyio.CapacityLimiter` instead when callers should simply wait
    (an unbounded queue), or when you need to borrow on behalf of another
    object (thread pools).
    """

    __slots__ = ("_active", "_hooks", "_max_concurrent", "_max_waiting", "_name", "_waiters")

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_waiting: int = 0,
        name: str | None = None,
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        self._max_concurrent = check_count(
            "max_concurrent",
            max_concurrent,
            minimum=1,
            hint="; it is how many calls may run at once",
        )
        self._max_waiting = check_count(
            "max_waiting",
            max_waiting,
            minimum=0,
            hint="; it is how many calls may queue for a slot (0: reject at once when full)",
        )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        self._name = name
        self._hooks = check_hooks(hooks)
        self._active = 0
        self._waiters: OrderedDict[_Slot, None] = OrderedDict()

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name is not None else ""
        return (
            f"<Bulkhead{name} active={self._active}/{self._max_concurrent}"
            f" waiting={len(self._waiters)}/{self._max_waiting}>"
        )

    @property
    def max_concurrent(self) -> int:
        """How many calls may be inside at once."""
        return self._max_concurrent

    @property
    def max_waiting(self) -> int:
        """How many calls may wait for a slot."""
        return self._max_waiting

    @property
    def name(self) -> str | None:
        """The name given at construction (used in events), or ``None``."""
        return self._name

    @property
    def active(self) -> int:
        """How many calls hold a slot right now."""
        return self._active

    @property
    def waiting(self) -> int:
        """How many calls are queued for a slot right now."""
        return len(self._waiters)

    async def __aenter__(self) -> None:
        await checkpoint()
        # Nobody waits while a slot is free: a leaving task hands its slot
        # straight to the oldest waiter, so a newcomer can never jump the queue.
        if self._active < self._max_concurrent:
            self._active += 1
            return
        await self._wait()

    async def _wait(self) -> None:
        waiters = self._waiters
        if len(waiters) >= self._max_waiting:
            policy = self._name if self._name is not None else f"Bulkhead({self._max_concurrent})"
            await emit(CallRejected(policy=policy, by="bulkhead"), self._hooks)
            raise BulkheadFull(
                f"{policy}: all {self._max_concurrent} slot(s) are busy and"
                f" {len(waiters)} call(s) already wait (max_waiting={self._max_waiting})"
            )
        slot = _Slot()
        waiters[slot] = None
        try:
            await slot.event.wait()
        except BaseException:
            if slot.granted:
                self._release()  # handed a slot as we were cancelled: pass it on
            else:
                del waiters[slot]
            raise

    def _release(self) -> None:
        if self._waiters:
            slot, _ = self._waiters.popitem(last=False)
            slot.granted = True  # the slot moves over: active stays the same
            slot.event.set()
        else:
            self._active -= 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()
