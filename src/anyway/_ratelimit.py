"""Rate limiters: an exact GCRA, FIFO and cancellation-safe, for one stream
(:class:`RateLimiter`) or one stream per key (:class:`KeyedRateLimiter`).

GCRA (the generic cell rate algorithm) keeps one number per stream, the
*theoretical arrival time* ``TAT``: the time at which the stream would be idle
again if every unit granted so far had been spaced exactly ``T = per / rate``
apart. A request of ``n`` units conforms at time ``now`` when
``max(TAT, now) + n*T - burst*T <= now``; granting it moves ``TAT`` to
``max(TAT, now) + n*T``. That is the whole algorithm, and it gives the window
bound: whatever the arrivals, fewer than ``rate + burst`` units are granted in
any half-open window of ``per`` seconds (at most ``rate + burst - 1`` for a
whole-number rate).

Floats cannot represent ``T`` exactly (``1/3``...), and a bound that only holds
up to rounding is not a bound. So ``TAT`` is kept exactly, as a clock reading
``a`` plus a whole number ``k`` of intervals (``TAT = a + k*T``), and each
decision compares exactly: a float estimate decides when it is clearly on one
side, and exact rational arithmetic (:class:`fractions.Fraction` on the float
values) decides near the boundary. Grant times handed to sleeping waiters are
rounded *up* to the next float, so nobody is ever granted early.

Waiters queue FIFO per stream. Only the head of a queue sleeps on the clock
(until its grant time); the others wait for their turn, so a cancelled waiter
never consumed anything and the ones behind it move up. A new arrival or a
``try_acquire`` never jumps a queue.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from contextlib import AbstractAsyncContextManager
from fractions import Fraction
from types import TracebackType
from typing import Final, NoReturn, final

import anyio
from anyio import current_time
from anyio.lowlevel import checkpoint

from ._errors import RateLimitExceeded
from ._events import CallRejected, Hook, check_hooks, emit
from ._validate import check_count, check_number, check_seconds

__all__ = ["KeyedRateLimiter", "RateLimiter"]

# A float estimate of ``now - TAT`` is trusted when it is farther from the
# decision boundary than this, relative to the magnitudes involved. The actual
# rounding error is a few units of 2**-53 of those magnitudes, so 1e-12 leaves
# a margin of several thousand; inside it the exact path decides.
_REL_TOL: Final = 1e-12

# How many keys a KeyedRateLimiter examines per operation, at most.
_SWEEP: Final = 4

_INF: Final = math.inf


def _ceil_float(value: Fraction) -> float:
    """The smallest float >= *value* (``float()`` rounds to nearest)."""
    result = float(value)
    if Fraction(result) < value:
        result = math.nextafter(result, _INF)
    return result


class _Waiter:
    """One task waiting in a stream's queue."""

    __slots__ = ("cost", "event")

    def __init__(self, cost: int) -> None:
        self.cost = cost
        # Set when this waiter becomes the head of the queue (created only for
        # waiters that arrive behind others).
        self.event: anyio.Event | None = None


class _Bucket:
    """The GCRA state of one stream and its FIFO queue of waiters.

    ``TAT = a + k*T`` exactly (``a`` is a clock reading, ``k`` a whole number
    of emission intervals); ``tat`` is its float estimate. A fresh bucket has
    ``a = tat = -inf``: every request conforms.
    """

    __slots__ = ("a", "k", "queued", "tat", "waiters")

    def __init__(self, a: float = -_INF, k: int = 0, tat: float = -_INF) -> None:
        self.a = a
        self.k = k
        self.tat = tat
        self.waiters: OrderedDict[_Waiter, None] | None = None
        self.queued = 0  # total cost of the waiters


class _Gcra:
    """Configuration and the algorithm shared by both limiters."""

    __slots__ = ("_burst", "_exact", "_hooks", "_interval", "_name", "_per", "_rate", "_waiting")

    def __init__(
        self,
        rate: float,
        per: float,
        burst: int,
        name: str | None,
        hooks: Iterable[Hook] | Hook,
    ) -> None:
        kind = type(self).__name__
        rate = check_number(
            "rate",
            rate,
            minimum=0.0,
            allow_minimum=False,
            hint=f"; rate is the number of units per `per` seconds, e.g. {kind}(10, per=1.0)",
        )
        per = check_seconds(
            "per",
            per,
            allow_zero=False,
            hint=f"; per is the length of the window in seconds, e.g. {kind}(10, per=60.0)",
        )
        self._burst = check_count(
            "burst",
            burst,
            minimum=1,
            hint="; burst=1 spaces units evenly, burst=n lets n units through at once",
        )
        interval = per / rate
        if not 0.0 < interval < _INF:
            raise ValueError(
                f"per / rate must be a positive, finite number of seconds, got"
                f" per={per!r} / rate={rate!r} = {interval!r}; use a less extreme rate or per"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        self._rate = rate
        self._per = per
        self._interval = interval
        self._exact = Fraction(per) / Fraction(rate)
        self._name = name
        self._hooks = check_hooks(hooks)
        self._waiting = 0

    # -- introspection -------------------------------------------------------

    @property
    def rate(self) -> float:
        """Units granted per ``per`` seconds, in the long run."""
        return self._rate

    @property
    def per(self) -> float:
        """The length of the rate's window, in seconds."""
        return self._per

    @property
    def burst(self) -> int:
        """How many units may be granted at once after an idle period (also the
        largest ``cost`` a single request may have)."""
        return self._burst

    @property
    def name(self) -> str | None:
        """The name given at construction (used in events), or ``None``."""
        return self._name

    @property
    def waiting(self) -> int:
        """How many tasks are waiting for a grant right now."""
        return self._waiting

    def _describe(self) -> str:
        name = f" {self._name!r}" if self._name is not None else ""
        return f"{name} rate={self._rate:g} per={self._per:g} burst={self._burst}"

    def _policy(self) -> str:
        if self._name is not None:
            return self._name
        return f"{type(self).__name__}({self._rate:g}/{self._per:g}s)"

    # -- arguments -----------------------------------------------------------

    def _check_cost(self, cost: object) -> int:
        checked = check_count("cost", cost, minimum=1)
        if checked > self._burst:
            raise ValueError(
                f"cost={checked} can never be granted: burst={self._burst} caps a single"
                f" request at {self._burst} unit(s); split the request or raise burst"
            )
        return checked

    # -- the algorithm -------------------------------------------------------

    def _take(self, b: _Bucket, now: float, cost: int) -> bool:
        """Grant *cost* units at *now* if they conform (ignores the queue)."""
        tat = b.tat
        slack = now - tat
        tol = (abs(now) + abs(tat) + abs(b.a)) * _REL_TOL
        if slack >= tol:
            # Clearly idle (TAT < now): the stream starts over at now.
            b.a = now
            b.k = cost
            b.tat = now + cost * self._interval
            return True
        if slack > -tol:
            return self._take_exact(b, now, cost)
        # TAT > now: conforms if TAT + (cost - burst) * T <= now.
        margin = slack + (self._burst - cost) * self._interval
        if margin >= tol:
            k = b.k + cost
            b.k = k
            b.tat = b.a + k * self._interval
            return True
        if margin <= -tol:
            return False
        return self._take_exact(b, now, cost)

    def _take_exact(self, b: _Bucket, now: float, cost: int) -> bool:
        interval = self._exact
        tat = Fraction(b.a) + b.k * interval
        exact_now = Fraction(now)
        if exact_now >= tat:
            b.a = now
            b.k = cost
            b.tat = now + cost * self._interval
            return True
        if tat + (cost - self._burst) * interval <= exact_now:
            k = b.k + cost
            b.k = k
            b.tat = b.a + k * self._interval
            return True
        return False

    def _due(self, b: _Bucket, cost: int) -> float:
        """The earliest float time at which *cost* units conform (b is not idle)."""
        return _ceil_float(Fraction(b.a) + (b.k + cost - self._burst) * self._exact)

    def _projected_wait(self, b: _Bucket, now: float, cost: int) -> Fraction:
        """How long a request of *cost* arriving now would wait behind the queue,
        if every waiter is granted as soon as it conforms."""
        exact_now = Fraction(now)
        base = exact_now
        if b.a != -_INF:
            base = max(base, Fraction(b.a) + b.k * self._exact)
        grant = base + (b.queued + cost - self._burst) * self._exact
        return max(grant - exact_now, Fraction(0))

    async def _wait(
        self, b: _Bucket, cost: int, max_wait: float | None, now: float, key: object
    ) -> None:
        """Queue for *cost* units (the fast path did not grant them at *now*)."""
        if max_wait is not None and max_wait != _INF:
            wait = self._projected_wait(b, now, cost)
            if wait > Fraction(max_wait):
                await self._reject(cost, max_wait, float(wait), key)
        waiter = _Waiter(cost)
        waiters = b.waiters
        if waiters is None:
            waiters = b.waiters = OrderedDict()
        else:
            waiter.event = anyio.Event()
        waiters[waiter] = None
        b.queued += cost
        self._waiting += 1
        try:
            if waiter.event is not None:
                await waiter.event.wait()  # until we are the head of the queue
            while True:
                now = current_time()
                if self._take(b, now, cost):
                    break
                await anyio.sleep(self._due(b, cost) - now)
        except BaseException:
            # Cancelled (or anything else): nothing was consumed; step aside.
            self._leave(b, waiter)
            raise
        self._leave(b, waiter)

    def _leave(self, b: _Bucket, waiter: _Waiter) -> None:
        waiters = b.waiters
        assert waiters is not None
        was_head = next(iter(waiters)) is waiter
        del waiters[waiter]
        b.queued -= waiter.cost
        self._waiting -= 1
        if not waiters:
            b.waiters = None
        elif was_head:
            head = next(iter(waiters))
            assert head.event is not None
            head.event.set()

    async def _reject(self, cost: int, max_wait: float, wait: float, key: object) -> NoReturn:
        policy = self._policy()
        if key is not _NO_KEY:
            policy = f"{policy}[{key!r}]"
        await emit(CallRejected(policy=policy, by="limiter", retry_after=wait), self._hooks)
        raise RateLimitExceeded(
            f"{policy}: {cost} unit(s) would be granted in {wait:.6g} s,"
            f" later than timeout={max_wait:g} s",
            retry_after=wait,
        )

    def _wait_time(self, b: _Bucket | None, cost: int) -> float:
        if b is None:
            return 0.0
        return _ceil_float(self._projected_wait(b, current_time(), cost))


_NO_KEY: Final = object()


@final
class RateLimiter(_Gcra):
    """An exact, fair rate limit: ``rate`` units per ``per`` seconds.

    ::

        limiter = anyway.RateLimiter(10)  # 10 per second, evenly spaced

        async with limiter:  # takes one unit; leaving the block gives nothing back
            await call_the_api()

        await limiter.acquire(5, timeout=2.0)  # 5 units, or RateLimitExceeded at once
        if limiter.try_acquire():  # never waits
            ...

    It is a GCRA (generic cell rate algorithm) on :func:`anyio.current_time`:
    units are spaced ``per / rate`` seconds apart, and after an idle period up
    to *burst* units may go at once. In any half-open window of ``per``
    seconds fewer than ``rate + burst`` units are granted: at most
    ``rate + burst - 1`` for a whole-number rate, exactly, whatever the
    arrival pattern (no float drift, no double bursts at window edges).

    It limits a *rate*, not concurrency: leaving ``async with`` returns
    nothing (use :class:`Bulkhead` or :class:`anyio.CapacityLimiter` to cap
    how many calls run at once).

    Waiters are granted strictly in arrival order, so a large ``cost`` is
    never starved by a stream of small ones, and neither a new arrival nor
    :meth:`try_acquire` can jump the queue. A waiter that is cancelled
    consumes nothing and the waiters behind it move up. ``acquire`` is always
    a checkpoint (it checks for cancellation and yields), even when it does
    not have to wait.

    *name* and *hooks* are used for the :class:`~anyway.CallRejected` event
    emitted when ``acquire(timeout=...)`` gives up.
    """

    __slots__ = ("_bucket",)

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
        self._bucket = _Bucket()

    def __repr__(self) -> str:
        return f"<RateLimiter{self._describe()} waiting={self._waiting}>"

    # timeout= is not a deadline for the call: it decides up front whether to
    # wait at all, and the grant time is known exactly, so it must be a parameter.
    async def acquire(self, cost: int = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until *cost* units are granted (a checkpoint even if it need not wait).

        With *timeout* (seconds), raise :exc:`~anyway.RateLimitExceeded` at once,
        without waiting, when the grant would come later than *timeout* from
        now; its ``retry_after`` says how long the wait would have been.
        *cost* must be a whole number between 1 and ``burst``.
        """
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        if timeout is not None:
            timeout = check_seconds("timeout", timeout, allow_inf=True)
        await checkpoint()
        b = self._bucket
        now = current_time()
        if b.waiters is None:
            tat = b.tat
            if now - tat >= (abs(now) + abs(tat) + abs(b.a)) * _REL_TOL:
                b.a = now  # idle (the common uncontended case): inlined _take
                b.k = cost
                b.tat = now + cost * self._interval
                return
            if self._take(b, now, cost):
                return
        await self._wait(b, cost, timeout, now, _NO_KEY)

    def try_acquire(self, cost: int = 1) -> bool:
        """Take *cost* units if they are available right now and nobody is
        waiting; never waits. Returns whether the units were taken."""
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        b = self._bucket
        return b.waiters is None and self._take(b, current_time(), cost)

    def wait_time(self, cost: int = 1) -> float:
        """Seconds a call to ``acquire(cost)`` made now would wait (``0.0`` when
        it would be granted at once), counting the tasks already waiting."""
        return self._wait_time(self._bucket, self._check_cost(cost))

    async def __aenter__(self) -> None:
        await checkpoint()
        b = self._bucket
        now = current_time()
        if b.waiters is None:
            tat = b.tat
            if now - tat >= (abs(now) + abs(tat) + abs(b.a)) * _REL_TOL:
                b.a = now  # idle (the common uncontended case): inlined _take
                b.k = 1
                b.tat = now + self._interval
                return
            if self._take(b, now, 1):
                return
        await self._wait(b, 1, None, now, _NO_KEY)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


@final
class KeyedRateLimiter(_Gcra):
    """One exact GCRA rate limit per key: ``rate`` units per ``per`` seconds
    for each key (a user, a host, an API token...).

    ::

        per_host = anyway.KeyedRateLimiter(5, per=1.0, burst=5)

        async with per_host.limit(url.host):
            await fetch(url)

    Each key behaves exactly like its own :class:`RateLimiter` (same window
    bound, FIFO waiters, cancellation safety). Memory is bounded by the keys
    that are still being limited: a key whose state has fully recovered
    (its theoretical arrival time is in the past, so a fresh key would behave
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
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()
        self._sweep_after = -_INF  # no key can be recovered before this time

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
                now = current_time()
            except RuntimeError:  # no event loop here: the count as it stands
                return len(buckets)
            if now >= self._sweep_after:
                self._sweep(now, None, len(buckets))
        return len(buckets)

    def __bool__(self) -> bool:
        """Always true: a limiter with no keys tracked still limits
        (``if limiter:`` must not depend on ``len()``)."""
        return True

    def _sweep(self, now: float, keep: _Bucket | None, most: int = _SWEEP) -> None:
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
            if now - tat < (abs(now) + abs(tat) + abs(b.a)) * _REL_TOL:
                self._sweep_after = tat  # (possibly) still limited, and so the keys behind it
                return
            del buckets[key]

    def _grant_now(self, key: Hashable, now: float, cost: int) -> _Bucket | None:
        """Grant at once if *key* has nobody waiting and *cost* conforms
        (``None``); else return the key's bucket, to wait on."""
        buckets = self._buckets
        b = buckets.get(key)
        if now >= self._sweep_after:
            self._sweep(now, b)
        if b is None:
            buckets[key] = _Bucket(now, cost, now + cost * self._interval)
            return None
        if b.waiters is None and self._take(b, now, cost):
            buckets.move_to_end(key)
            return None
        return b

    # timeout=: see RateLimiter.acquire
    async def acquire(self, key: Hashable, cost: int = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until *cost* units are granted for *key* (see
        :meth:`RateLimiter.acquire`)."""
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        if timeout is not None:
            timeout = check_seconds("timeout", timeout, allow_inf=True)
        await checkpoint()
        now = current_time()
        b = self._grant_now(key, now, cost)
        if b is not None:
            await self._wait(b, cost, timeout, now, key)
            self._buckets.move_to_end(key)

    def try_acquire(self, key: Hashable, cost: int = 1) -> bool:
        """Take *cost* units for *key* if they are available right now and
        nobody is waiting for that key; never waits."""
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        return self._grant_now(key, current_time(), cost) is None

    def limit(self, key: Hashable) -> AbstractAsyncContextManager[None]:
        """An async context manager taking one unit for *key*:
        ``async with limiter.limit(key): ...``."""
        return _KeyLimit(self, key)

    def wait_time(self, key: Hashable, cost: int = 1) -> float:
        """Seconds a call to ``acquire(key, cost)`` made now would wait."""
        return self._wait_time(self._buckets.get(key), self._check_cost(cost))


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
        await checkpoint()
        now = current_time()
        limiter = self._limiter
        b = limiter._grant_now(self._key, now, 1)
        if b is not None:
            await limiter._wait(b, 1, None, now, self._key)
            limiter._buckets.move_to_end(self._key)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None
