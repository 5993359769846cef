"""The exact GCRA shared by :class:`~anyway.RateLimiter` and
:class:`~anyway.KeyedRateLimiter`: one stream's state, its FIFO queue, and the
decision "may *cost* units go now?".

GCRA (the generic cell rate algorithm) keeps one number per stream, the
*theoretical arrival time* ``TAT``: the time at which the stream would be idle
again if every unit granted so far had been spaced exactly ``T = per / rate``
apart. A request of ``n`` units conforms at time ``now`` when
``max(TAT, now) + n*T - burst*T <= now``; granting it moves ``TAT`` to
``max(TAT, now) + n*T``. That is the whole algorithm, and it gives the window
bound: whatever the arrivals, the units granted in any half-open window of
``per`` seconds add up to less than ``rate + burst`` (at most
``rate + burst - 1`` for whole-number rates and costs).

Floats cannot represent ``T`` exactly (``1/3``...), and a bound that only holds
up to rounding is not a bound. So ``TAT`` is kept exactly, as a clock reading
``a`` plus ``k`` intervals (``TAT = a + k*T``; ``k`` is a whole number, or a
:class:`~fractions.Fraction` once a fractional cost was granted), and each
decision is exact: a float estimate decides when it is clearly on one side,
exact rational arithmetic decides near the boundary.

A waiter sleeps until the first float at or after its exact grant time. A
clock may not be able to show that time (looptime counts whole microseconds,
Windows' monotonic clock moves in 15.6 ms steps, asyncio fires timers up to
its clock resolution early): a waiter woken before its grant time sleeps
again, each time at least twice as long as the last, so the clock has to move
and the waiter never spins; it is granted at the first reading that conforms
exactly, never early.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from fractions import Fraction
from typing import Final, NoReturn, TypeAlias

import anyio
from anyio import current_time
from anyio.lowlevel import checkpoint, current_token

from ._errors import RateLimitExceeded
from ._events import CallRejected, Hook, check_hooks, emit
from ._validate import check_count, check_number, check_seconds

__all__ = ["NO_KEY", "REL_TOL", "Bucket", "Cost", "Gcra"]

#: A cost as the algorithm keeps it: exact (a float cost becomes a Fraction).
Cost: TypeAlias = int | Fraction

# A float estimate of ``now - TAT`` is trusted when it is farther from the
# decision boundary than this, relative to the magnitudes involved. The actual
# rounding error is a few units of 2**-53 of those magnitudes, so 1e-12 leaves
# a margin of several thousand; inside it the exact path decides.
REL_TOL: Final = 1e-12

_INF: Final = math.inf


def _no_loop() -> object:
    """The token check of a limiter not used yet: no loop is its loop."""
    raise RuntimeError("not used in an event loop yet")


#: The key of a stream that has none (:class:`~anyway.RateLimiter`).
NO_KEY: Final = object()


def _ceil_float(value: Fraction) -> float:
    """The smallest float >= *value* (``float()`` rounds to nearest)."""
    result = float(value)
    if Fraction(result) < value:
        result = math.nextafter(result, _INF)
    return result


class _Waiter:
    """One task waiting in a stream's queue."""

    __slots__ = ("cost", "event")

    def __init__(self, cost: Cost) -> None:
        self.cost = cost
        # Set when this waiter becomes the head of the queue (created only for
        # waiters that arrive behind others).
        self.event: anyio.Event | None = None


class Bucket:
    """The GCRA state of one stream and its FIFO queue of waiters.

    ``TAT = a + k*T`` exactly (``a`` is a clock reading, ``k`` a number of
    emission intervals); ``tat`` is its float estimate. A fresh bucket has
    ``a = tat = -inf``: every request conforms.
    """

    __slots__ = ("a", "k", "queued", "tat", "waiters")

    def __init__(self, a: float = -_INF, k: Cost = 0, tat: float = -_INF) -> None:
        self.a = a
        self.k = k
        self.tat = tat
        self.waiters: OrderedDict[_Waiter, None] | None = None
        self.queued: Cost = 0  # total cost of the waiters


class Gcra:
    """Configuration and the algorithm shared by both limiters."""

    __slots__ = (
        "_burst",
        "_checkpoint",
        "_clock",
        "_exact",
        "_hooks",
        "_interval",
        "_loop",
        "_name",
        "_per",
        "_rate",
        "_token",
        "_waiting",
    )

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
        # The event loop the state belongs to (None: not used yet), and its
        # AnyIO backend's token, checkpoint and clock (what
        # anyio.lowlevel.current_token(), anyio.lowlevel.checkpoint() and
        # anyio.current_time() call, without looking the backend up on every
        # call; bound once per loop). Another loop has another clock: the
        # limiter starts over.
        self._loop: object = None
        self._token: Callable[[], object] = _no_loop
        self._checkpoint: Callable[[], Awaitable[None]] = checkpoint
        self._clock: Callable[[], float] = current_time

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

    def _policy(self, key: object) -> str:
        policy = self._name
        if policy is None:
            policy = f"{type(self).__name__}({self._rate:g}/{self._per:g}s)"
        if key is not NO_KEY:
            policy = f"{policy}[{key!r}]"
        return policy

    # -- the event loop ------------------------------------------------------

    def _here(self) -> None:
        """Make sure the state belongs to the running loop: it starts over first
        if this is not the loop it was used in last.

        Asking the backend of the last loop for the running loop is the cheap
        way to know it is the same (``anyio.lowlevel.current_token()`` looks the
        backend up and builds a token on every call, about as much as the rest
        of an uncontended acquire); under another backend that question raises
        RuntimeError, and the slow path looks the backend up.
        """
        try:
            if self._token() is self._loop:
                return
        except RuntimeError:  # the last loop's backend is not the one running here
            pass
        token = current_token()
        backend = token.backend_class
        self._loop = token.native_token
        self._token = backend.current_token
        self._checkpoint = backend.checkpoint
        self._clock = backend.current_time
        self._waiting = 0
        self._start_over()

    def _start_over(self) -> None:
        """Forget the state of another event loop: behave as if created here."""
        raise NotImplementedError

    # -- arguments -----------------------------------------------------------

    def _check_cost(self, cost: object) -> Cost:
        number = check_number(
            "cost",
            cost,
            minimum=0.0,
            allow_minimum=False,
            hint="; cost is how many units a request takes, e.g. 1, 0.5 or len(data)",
        )
        if number > self._burst:
            raise ValueError(
                f"cost={cost!r} can never be granted: burst={self._burst} caps a single"
                f" request at {self._burst} unit(s); split the request or raise burst"
            )
        if isinstance(cost, int):
            return cost
        if number.is_integer():
            return int(number)
        return Fraction(number)  # exact: the float's own value

    # -- the algorithm -------------------------------------------------------

    def _take(self, b: Bucket, now: float, cost: Cost) -> bool:
        """Grant *cost* units at *now* if they conform (ignores the queue)."""
        tat = b.tat
        slack = now - tat
        tol = (abs(now) + abs(tat) + abs(b.a)) * REL_TOL
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

    def _take_exact(self, b: Bucket, now: float, cost: Cost) -> bool:
        if now == b.a:
            # The clock has not moved since the stream last started over (a
            # clock that moves in steps: uvloop's in milliseconds). Then
            # TAT = now + k*T >= now, and cost conforms iff k + cost <= burst:
            # exact, without rational arithmetic.
            k = b.k + cost
            if k > self._burst:
                return False
            b.k = k
            b.tat = now + k * self._interval
            return True
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

    def _due(self, b: Bucket, cost: Cost) -> float:
        """The earliest float time at which *cost* units conform (b is not idle)."""
        return _ceil_float(Fraction(b.a) + (b.k + cost - self._burst) * self._exact)

    def _projected_wait(self, b: Bucket, now: float, cost: Cost) -> Fraction:
        """How long a request of *cost* arriving now would wait behind the queue,
        if every waiter is granted as soon as it conforms."""
        exact_now = Fraction(now)
        base = exact_now
        if b.a != -_INF:
            base = max(base, Fraction(b.a) + b.k * self._exact)
        grant = base + (b.queued + cost - self._burst) * self._exact
        return max(grant - exact_now, Fraction(0))

    def _wait_time(self, b: Bucket | None, cost: Cost) -> float:
        if b is None:
            return 0.0
        return _ceil_float(self._projected_wait(b, current_time(), cost))

    # -- waiting -------------------------------------------------------------

    async def _wait(
        self, b: Bucket, cost: Cost, max_wait: float | None, now: float, key: object
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
            await self._sleep_until_granted(b, cost)
        finally:
            # Granted, or cancelled (then nothing was consumed): step aside.
            self._leave(b, waiter)

    async def _sleep_until_granted(self, b: Bucket, cost: Cost) -> None:
        """As the head of the queue, sleep until *cost* units conform, then take them."""
        due = -_INF  # the grant time we last slept toward
        nap = 0.0  # how long we last slept after waking up before it
        while True:
            now = current_time()
            if self._take(b, now, cost):
                return
            target = self._due(b, cost)
            if target == due:
                # Woken before the time we slept toward: this clock cannot show
                # it yet. Sleep at least twice as long as last time, so the
                # clock must move: never spin, never grant early.
                nap = max(2.0 * nap, target - now)
                await anyio.sleep(nap)
            else:
                due = target
                await anyio.sleep(target - now)

    def _leave(self, b: Bucket, waiter: _Waiter) -> None:
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

    async def _reject(self, cost: Cost, max_wait: float, wait: float, key: object) -> NoReturn:
        policy = self._policy(key)
        units = cost if isinstance(cost, int) else f"{float(cost):g}"
        await emit(CallRejected(policy=policy, by="limiter", retry_after=wait), self._hooks)
        raise RateLimitExceeded(
            f"{policy}: {units} unit(s) would be granted in {wait:.6g} s,"
            f" later than timeout={max_wait:g} s",
            retry_after=wait,
        )
