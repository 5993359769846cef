"""KeyedRateLimiter: one exact GCRA rate limit per key, with memory bounded
by the keys still being limited (the algorithm is in :mod:`anyway._gcra`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Final, final

from ._events import Hook
from ._gcra import REL_TOL, Bucket, Cost, Gcra
from ._validate import check_seconds

__all__ = ["KeyedRateLimiter"]

# How many keys a KeyedRateLimiter examines per operation, at most.
_SWEEP: Final = 4


@final
class KeyedRateLimiter(Gcra):
    """One exact GCRA rate limit per key: ``rate`` units per ``per`` seconds
    for each key (a user, a host, an API token...).

    ::

        per_host = anyway.KeyedRateLimiter(5, per=1.0, burst=5)

        async with per_host.limit(url.host):
            await fetch(url)

    Each key behaves exactly like its own :class:`RateLimiter` (same window
    bound, FIFO waiters, fractional and weighted costs, cancellation safety,
    a fresh start in a new event loop). Memory is bounded by the keys that
    are still being limited: a key whose state has fully recovered (its
    theoretical arrival time is in the past, so a fresh key would behave
    identically) carries no information and is dropped. Every operation
    examines a few of the oldest keys and drops the recovered ones (amortized
    O(1)), so each key is forgotten at most ``burst * per / rate`` seconds
    after its last grant: a flood of distinct keys cannot grow memory without
    bound, and a key that is still limited is never reset (no LRU eviction).
    Keys with waiters are never dropped. ``len(limiter)`` is the number of
    keys still being limited (see :meth:`__len__`).
    """

    __slots__ = ("_buckets", "_sweep_after")

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: int = 1,
        name: str | None = None,
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        super().__init__(rate, per, burst, name, hooks)
        # Oldest grant first: the front is where the recovered keys are.
        self._buckets: OrderedDict[Hashable, Bucket] = OrderedDict()
        self._sweep_after = -float("inf")  # no key can be recovered before this time

    def __repr__(self) -> str:
        return (
            f"<KeyedRateLimiter{self._describe()} keys={len(self._buckets)}"
            f" waiting={self._waiting}>"
        )

    def __len__(self) -> int:
        """The number of keys tracked: those still being limited.

        Called in an event loop (where :func:`anyio.current_time` works), it
        first runs the sweep that operations run, without their limit on how
        many keys it looks at: the recovered keys are dropped even if nothing
        was acquired since, so a key counts at most ``burst * per / rate``
        seconds after its last grant (as for memory). The sweep stops at the
        first key that may still be limited and drops each key once, so it
        costs amortized O(1) per key. Outside an event loop (another thread,
        no loop running) nothing is swept: the count as of the last operation.
        """
        buckets = self._buckets
        if buckets:
            try:
                self._here()
                now = self._clock()
            except RuntimeError:  # no event loop here: the count as it stands
                return len(buckets)
            buckets = self._buckets
            if now >= self._sweep_after:
                self._sweep(now, None, len(buckets))
        return len(buckets)

    def __bool__(self) -> bool:
        """Always true: a limiter with no keys tracked still limits
        (``if limiter:`` must not depend on ``len()``)."""
        return True

    def _start_over(self) -> None:
        self._buckets = OrderedDict()
        self._sweep_after = -float("inf")

    def _sweep(self, now: float, keep: Bucket | None, most: int = _SWEEP) -> None:
        """Drop up to *most* recovered keys from the front (the oldest grants).

        A key granted at time ``g`` is fully recovered by ``g + burst * T``,
        and every key in front of it was granted earlier, so stopping at the
        first key that may still be limited (and not looking again before its
        TAT) never keeps a key much longer than that. Keys with waiters go to
        the back: they are never dropped; so does *keep*, about to be used.
        """
        buckets = self._buckets
        for _ in range(most):
            if not buckets:
                return
            key = next(iter(buckets))
            b = buckets[key]
            if b is keep or b.waiters is not None:
                if len(buckets) == 1:
                    return
                buckets.move_to_end(key)
                continue
            tat = b.tat
            if now - tat < (abs(now) + abs(tat) + abs(b.a)) * REL_TOL:
                self._sweep_after = tat  # (possibly) still limited, and so the keys behind it
                return
            del buckets[key]

    def _grant_now(self, key: Hashable, now: float, cost: Cost) -> Bucket | None:
        """Grant at once if *key* has nobody waiting and *cost* conforms
        (``None``); else return the key's bucket, to wait on."""
        buckets = self._buckets
        b = buckets.get(key)
        if now >= self._sweep_after:
            self._sweep(now, b)
        if b is None:
            buckets[key] = Bucket(now, cost, now + cost * self._interval)
            return None
        if b.waiters is None and self._take(b, now, cost):
            buckets.move_to_end(key)
            return None
        return b

    # timeout=: see RateLimiter.acquire
    async def acquire(
        self,
        key: Hashable,
        cost: float = 1,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Wait until *cost* units are granted for *key* (see
        :meth:`RateLimiter.acquire`)."""
        units: Cost = 1 if cost == 1 and type(cost) is int else self._check_cost(cost)
        if timeout is not None:
            timeout = check_seconds("timeout", timeout, allow_inf=True)
        self._here()  # see RateLimiter.acquire
        await self._checkpoint()
        now = self._clock()
        b = self._grant_now(key, now, units)
        if b is not None:
            await self._wait(b, units, timeout, now, key)
            self._buckets.move_to_end(key)

    def try_acquire(self, key: Hashable, cost: float = 1) -> bool:
        """Take *cost* units for *key* if they are available right now and
        nobody is waiting for that key; never waits."""
        units: Cost = 1 if cost == 1 and type(cost) is int else self._check_cost(cost)
        self._here()
        now = self._clock()
        return self._grant_now(key, now, units) is None

    def limit(self, key: Hashable) -> AbstractAsyncContextManager[None]:
        """An async context manager taking one unit for *key*:
        ``async with limiter.limit(key): ...``."""
        return _KeyLimit(self, key)

    def wait_time(self, key: Hashable, cost: float = 1) -> float:
        """Seconds a call to ``acquire(key, cost)`` made now would wait."""
        checked = self._check_cost(cost)
        self._here()
        return self._wait_time(self._buckets.get(key), checked)


@final
class _KeyLimit:
    """``async with limiter.limit(key):`` (takes one unit, gives nothing back).

    Not a subclass of ``contextlib.AbstractAsyncContextManager`` (it satisfies
    that protocol): on Python 3.11 that base has no ``__slots__``, which would
    give every one of these short-lived objects a ``__dict__``."""

    __slots__ = ("_key", "_limiter")

    def __init__(self, limiter: KeyedRateLimiter, key: Hashable) -> None:
        self._limiter = limiter
        self._key = key

    def __repr__(self) -> str:
        return f"<limit {self._key!r} of {self._limiter!r}>"

    async def __aenter__(self) -> None:
        await self._limiter.acquire(self._key)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None
