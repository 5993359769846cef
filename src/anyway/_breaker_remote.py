"""A circuit breaker's view of a store other than the in-memory one.

:class:`RemoteCircuit` asks a :class:`~anyway.abc.BreakerStore` (Redis, say)
and turns its answers into the same small results the in-memory
:class:`~anyway._circuit.Circuit` gives (a ticket, a change of state), so
the breaker has one way of handling both. It remembers the last snapshot the
store sent, to answer ``state`` and ``statistics()`` without a round trip
(``retry_after`` aged on the local clock; forgotten in a new event loop).

Cancellation: ``acquire``, ``force`` and ``snapshot`` honour the caller's
cancellation and deadline; ``record`` and ``release`` run after the call has
ended and must not be lost, so they are shielded, for at most
:data:`STORE_TIMEOUT` seconds.
"""

from __future__ import annotations

import math
from typing import Final

import anyio
import anyio.lowlevel

from ._breaker_types import BreakerConfig, BreakerSnapshot, BreakerUpdate
from ._circuit import Change
from ._events import CircuitState
from .abc import BreakerStore

__all__ = ["STORE_TIMEOUT", "RemoteCircuit"]

#: How long a breaker waits, shielded from cancellation, for a store to
#: record an outcome or give back a probe slot.
STORE_TIMEOUT: Final = 5.0

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


class RemoteCircuit:
    """One key of a :class:`~anyway.abc.BreakerStore`, as a breaker sees it."""

    __slots__ = ("_config", "_key", "_last", "_loop", "_time", "store")

    def __init__(self, store: BreakerStore, key: str, config: BreakerConfig) -> None:
        self.store = store
        self._key = key
        self._config = config
        self._last = BreakerSnapshot(state=_CLOSED)  # what the store said last...
        self._time = -math.inf  # ...when, on the local clock...
        self._loop: object = None  # ...in which event loop

    def _seen(self, update: BreakerUpdate) -> Change | None:
        """Remember what the store said; the change of state it reports, if any."""
        snapshot = update.snapshot
        self._remember(snapshot)
        previous = update.previous
        if previous is None or previous is snapshot.state:
            return None
        return (previous, snapshot.state, update.reason, update.kind)

    def _remember(self, snapshot: BreakerSnapshot) -> None:
        self._last = snapshot
        self._time = anyio.current_time()
        self._loop = anyio.lowlevel.current_token()

    def cached(self) -> BreakerSnapshot:
        """The last snapshot, aged: OPEN turns HALF_OPEN once its time has passed."""
        last = self._last
        if last.state is not _OPEN or last.retry_after is None:
            return last
        if anyio.lowlevel.current_token() != self._loop:
            return BreakerSnapshot(state=_CLOSED)  # a new loop: nothing seen yet
        left = last.retry_after - (anyio.current_time() - self._time)
        if left <= 0:
            return BreakerSnapshot(state=_HALF_OPEN)
        return BreakerSnapshot(state=_OPEN, retry_after=left)

    def cached_unaged(self) -> BreakerSnapshot:
        """The last snapshot, as received (works outside an event loop)."""
        return self._last

    async def snapshot(self) -> BreakerSnapshot:
        snapshot = await self.store.snapshot(self._key, self._config)
        self._remember(snapshot)
        return snapshot

    async def acquire(self, call: int) -> tuple[int | None, Change | None]:
        update = await self.store.acquire(self._key, self._config, call)
        return update.ticket, self._seen(update)

    async def record(self, call: int, ticket: int, *, failure: bool, slow: bool) -> Change | None:
        with anyio.move_on_after(STORE_TIMEOUT, shield=True):
            update = await self.store.record(
                self._key, self._config, call, ticket, failure=failure, slow=slow
            )
            return self._seen(update)
        return None  # the store did not answer in time: the outcome is lost, not the call

    async def release(self, call: int) -> None:
        with anyio.move_on_after(STORE_TIMEOUT, shield=True):
            self._seen(await self.store.release(self._key, self._config, call))

    async def force(
        self, state: CircuitState, *, seconds: float | None, reset: bool
    ) -> Change | None:
        update = await self.store.force(
            self._key, self._config, state, seconds=seconds, reset=reset
        )
        return self._seen(update)
