"""The machinery shared by the Redis rate limiters (:mod:`._redis_limiter`):
configuration, one decision (a round trip to the GCRA script), and the
per-process FIFO queue of waiters.

Each decision is one round trip: the GCRA script (:mod:`._redis_scripts`)
reads the server's clock, decides and, when the request conforms, takes the
units, atomically. A request that does not conform takes nothing; the script
says when it will conform, and the caller sleeps until exactly then and asks
again. Nothing is reserved in Redis for a sleeping waiter, so cancelling it
costs nothing and needs no clean-up.

Within one process, waiters of one limit queue FIFO (as in
:class:`anyway.RateLimiter`): only the head of the queue asks Redis, so a
thousand waiting tasks cost one request per grant, not a thousand. When the
head is granted, the script's answer tells its successor when to ask. Across
processes there is no queue: each process's head asks when the script says
it may conform, so one grant costs at most one round trip per process.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterable
from fractions import Fraction
from typing import Any, Final, NoReturn

import anyio
from anyio import current_time, get_cancelled_exc_class
from anyio.lowlevel import checkpoint, checkpoint_if_cancelled

from ._errors import RateLimitExceeded
from ._events import CallRejected, Hook, RedisFailedOpen, check_hooks, emit
from ._redis_call import (
    OnUnavailable,
    RedisUnavailable,
    check_client,
    check_name,
    check_on_unavailable,
    check_redis_timeout,
    round_trip,
)
from ._redis_scripts import GCRA, GIVE_BACK
from ._validate import check_count, check_number, check_seconds

__all__ = ["RedisGcra", "check_timeout"]

_UNKNOWN: Final = -1  # no server state known (no reply yet, or failed open)

# The longest a cancelled task waits, shielded, to give back a grant.
_GIVE_BACK_LIMIT: Final = 5.0


class _Waiter:
    __slots__ = ("cost", "event")

    def __init__(self, cost: int) -> None:
        self.cost = cost
        self.event: anyio.Event | None = None  # set when it becomes the head


class _Queue:
    """The waiters of one limit in this process, and the last answer the head
    got when it was granted (to tell its successor when to ask)."""

    __slots__ = ("at", "now", "queued", "tat", "waiters")

    def __init__(self) -> None:
        self.waiters: OrderedDict[_Waiter, None] = OrderedDict()
        self.queued = 0
        self.tat = _UNKNOWN  # the server's TAT (us) after the last grant
        self.now = 0  # the server's time (us) of that grant
        self.at = 0.0  # our clock when that answer arrived


class RedisGcra:
    """Configuration, the round trip and the waiting shared by both limiters."""

    __slots__ = (
        "_burst",
        "_client",
        "_hooks",
        "_interval",
        "_name",
        "_on_unavailable",
        "_per",
        "_prefix",
        "_queues",
        "_rate",
        "_redis_timeout",
        "_waiting",
    )

    def __init__(
        self,
        client: Any,
        name: str,
        rate: float,
        per: float,
        burst: int,
        on_unavailable: OnUnavailable,
        redis_timeout: float,
        prefix: str,
        hooks: Iterable[Hook] | Hook,
    ) -> None:
        kind = type(self).__name__
        self._client = check_client(client)
        self._name = check_name("name", name)
        self._rate = check_number(
            "rate",
            rate,
            minimum=0.0,
            allow_minimum=False,
            hint=f"; rate is the number of units per `per` seconds, e.g. {kind}(client, 'api', 10)",
        )
        self._per = check_seconds(
            "per",
            per,
            allow_zero=False,
            hint=f"; per is the window in seconds, e.g. {kind}(client, 'api', 10, per=60.0)",
        )
        self._burst = check_count(
            "burst",
            burst,
            minimum=1,
            hint="; burst=1 spaces units evenly, burst=n lets n units through at once",
        )
        # The emission interval in whole microseconds of the server's clock,
        # rounded up: never more than `rate` per `per` (at most 1 us per unit slower).
        interval = math.ceil(Fraction(self._per) * 1_000_000 / Fraction(self._rate))
        if interval > 2**40:
            raise ValueError(
                f"per / rate is too long: per={per!r} / rate={rate!r}; use a larger rate"
            )
        self._interval = max(1, interval)
        self._on_unavailable = check_on_unavailable(on_unavailable)
        self._redis_timeout = check_redis_timeout(redis_timeout)
        self._prefix = check_name("prefix", prefix)
        self._hooks = check_hooks(hooks)
        self._queues: dict[str, _Queue] = {}
        self._waiting = 0

    # -- introspection -------------------------------------------------------

    @property
    def name(self) -> str:
        """The limit's name: every process using it shares one limit."""
        return self._name

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
        """How many units may be granted at once after an idle period."""
        return self._burst

    @property
    def on_unavailable(self) -> OnUnavailable:
        """What happens while Redis is unavailable: ``"fail_open"`` or ``"fail_closed"``."""
        return self._on_unavailable

    @property
    def waiting(self) -> int:
        """How many tasks of this process are waiting for a grant right now."""
        return self._waiting

    def _describe(self) -> str:
        return (
            f" {self._name!r} rate={self._rate:g} per={self._per:g} burst={self._burst}"
            f" on_unavailable={self._on_unavailable!r}"
        )

    # -- arguments -----------------------------------------------------------

    def _check_cost(self, cost: object) -> int:
        checked = check_count("cost", cost, minimum=1)
        if checked > self._burst:
            raise ValueError(
                f"cost={checked} can never be granted: burst={self._burst} caps a single"
                f" request at {self._burst} unit(s); split the request or raise burst"
            )
        return checked

    # -- one decision --------------------------------------------------------

    async def _take(self, key: str, cost: int, label: str, operation: str) -> tuple[bool, int, int]:
        """Ask the script for *cost* units: ``(granted, TAT, server now)``.

        Fails open (granted, state unknown) or raises :exc:`RedisUnavailable`.
        A task cancelled while the script ran gets its grant given back.
        """
        try:
            reply = await round_trip(
                self._client,
                GCRA,
                (key,),
                (self._interval, self._burst, cost, 1),
                self._redis_timeout,
            )
        except RedisUnavailable as exc:
            await checkpoint_if_cancelled()  # a cancellation (the deadline...) wins over the outage
            await self._unavailable(exc, label, operation)
            return True, _UNKNOWN, 0
        granted = reply[0] == 1
        tat = int(reply[1])
        try:
            await checkpoint_if_cancelled()
        except get_cancelled_exc_class():
            if granted:
                await self._give_back(key, tat, cost)
            raise
        return granted, tat, int(reply[2])

    async def _give_back(self, key: str, tat: int, cost: int) -> None:
        """Undo a grant nobody will use (shielded; bounded by ``redis_timeout``
        and never longer than :data:`_GIVE_BACK_LIMIT`). If it cannot be given
        back, the unit stays spent: never more than the limit is granted."""
        with anyio.CancelScope(shield=True), contextlib.suppress(RedisUnavailable):
            await round_trip(
                self._client,
                GIVE_BACK,
                (key,),
                (str(tat), cost * self._interval),
                min(self._redis_timeout, _GIVE_BACK_LIMIT),
            )

    async def _unavailable(self, exc: RedisUnavailable, label: str, operation: str) -> None:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if self._on_unavailable == "fail_open":
            await emit(RedisFailedOpen(policy=label, operation=operation, error=cause), self._hooks)
            return
        await emit(CallRejected(policy=label, by="redis"), self._hooks)
        raise RedisUnavailable(f"{label}: {exc}") from cause

    def _wait_for(self, tat: int, now: int, cost: int) -> float:
        """Seconds from the server's *now* until *cost* units conform, given *tat*."""
        return max(0, tat + (cost - self._burst) * self._interval - now) / 1e6

    # -- acquire -------------------------------------------------------------

    async def _acquire(self, key: str, label: str, cost: int, max_wait: float | None) -> None:
        # (a checkpoint: the round trip yields, and a cancellation is checked after it)
        limit_at = None if max_wait is None else current_time() + max_wait
        queue = self._queues.get(key)
        due = 0.0
        if queue is None:
            granted, tat, now = await self._take(key, cost, label, "acquire")
            if granted:
                return
            wait = self._wait_for(tat, now, cost)
            if max_wait is not None and wait > max_wait:
                await self._reject(label, cost, max_wait, wait)
            due = current_time() + wait
            queue = self._queues.get(key)
        elif max_wait is not None:
            # At the very least, everyone queued here must be granted first.
            least = max(0, queue.queued + cost - self._burst) * self._interval / 1e6
            if least > max_wait:
                await self._reject(label, cost, max_wait, least)
        if queue is None:
            queue = self._queues[key] = _Queue()
        await self._wait(queue, key, label, cost, due, max_wait, limit_at)

    async def _wait(
        self,
        queue: _Queue,
        key: str,
        label: str,
        cost: int,
        due: float,
        max_wait: float | None,
        limit_at: float | None,
    ) -> None:
        """Queue for *cost* units; the head asks Redis at *due* and gives up when
        its grant cannot come by *limit_at* (our clock)."""
        waiter = _Waiter(cost)
        if queue.waiters:
            waiter.event = anyio.Event()
        queue.waiters[waiter] = None
        queue.queued += cost
        self._waiting += 1
        try:
            if waiter.event is not None:
                await waiter.event.wait()  # until we are the head
                due = current_time()
                if queue.tat != _UNKNOWN:
                    due = queue.at + self._wait_for(queue.tat, queue.now, cost)
            while True:
                now = current_time()
                if due > now:
                    if max_wait is not None and limit_at is not None and due > limit_at:
                        await self._reject(label, cost, max_wait, due - now)
                    await anyio.sleep(due - now)
                granted, tat, srv_now = await self._take(key, cost, label, "acquire")
                if granted:
                    queue.tat, queue.now, queue.at = tat, srv_now, current_time()
                    break
                due = current_time() + self._wait_for(tat, srv_now, cost)
        except BaseException:
            queue.tat = _UNKNOWN  # the successor asks at once
            self._leave(queue, key, waiter)
            raise
        self._leave(queue, key, waiter)

    def _leave(self, queue: _Queue, key: str, waiter: _Waiter) -> None:
        was_head = next(iter(queue.waiters)) is waiter
        del queue.waiters[waiter]
        queue.queued -= waiter.cost
        self._waiting -= 1
        if not queue.waiters:
            if self._queues.get(key) is queue:
                del self._queues[key]
        elif was_head:
            head = next(iter(queue.waiters))
            assert head.event is not None
            head.event.set()

    async def _reject(self, label: str, cost: int, max_wait: float, wait: float) -> NoReturn:
        await emit(CallRejected(policy=label, by="limiter", retry_after=wait), self._hooks)
        raise RateLimitExceeded(
            f"{label}: {cost} unit(s) cannot be granted within timeout={max_wait:g} s"
            f" (they would be in {wait:.6g} s)",
            retry_after=wait,
        )

    async def _try_acquire(self, key: str, label: str, cost: int) -> bool:
        if key in self._queues:
            await checkpoint()
            return False  # never jump the queue of this process
        granted, _, _ = await self._take(key, cost, label, "try_acquire")
        return granted


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    return check_seconds("timeout", timeout, allow_inf=True)
