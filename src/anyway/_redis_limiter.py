"""Rate limiters whose state lives in Redis: one limit shared by every process
and host that uses the same server (:class:`RedisRateLimiter`), or one per key
(:class:`RedisKeyedRateLimiter`). The machinery is in :mod:`._redis_gcra`.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, final

from ._events import Hook
from ._redis_call import OnUnavailable
from ._redis_gcra import RedisGcra, check_timeout

__all__ = ["RedisKeyedRateLimiter", "RedisRateLimiter"]


@final
class RedisRateLimiter(RedisGcra):
    """One exact rate limit shared by every process and host that uses the
    same Redis: ``rate`` units per ``per`` seconds for everyone together.

    ::

        async with coredis.Redis.from_url("redis://localhost") as client:
            limiter = RedisRateLimiter(client, "partner-api", 100, per=1.0, burst=10)
            async with limiter:  # one unit, shared with every other worker
                await call_partner()

    The same interface as :class:`anyway.RateLimiter`: ``async with limiter:``,
    ``await limiter.acquire(cost, timeout=...)``, and
    ``await limiter.try_acquire(cost)`` (a coroutine here: it asks Redis).
    The GCRA runs on the server, in one atomic Lua script on the server's
    clock: across any number of processes no window of ``per`` seconds grants
    more than ``rate + burst - 1`` units (for a whole-number rate).

    *on_unavailable* says what happens while Redis is unreachable, erroring or
    slower than *redis_timeout* per round trip: ``"fail_closed"`` (the
    default) raises :exc:`RedisUnavailable`; ``"fail_open"`` grants and emits
    a :class:`RedisFailedOpen` event. The key is ``{prefix}:rate:{{name}}``
    (hash-tagged for Redis Cluster) and expires once the limit has fully
    recovered.
    """

    __slots__ = ("_key",)

    def __init__(
        self,
        client: Any,
        name: str,
        rate: float,
        per: float = 1.0,
        *,
        burst: int = 1,
        on_unavailable: OnUnavailable = "fail_closed",
        redis_timeout: float = 1.0,
        prefix: str = "anyway",
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        super().__init__(
            client, name, rate, per, burst, on_unavailable, redis_timeout, prefix, hooks
        )
        self._key = f"{self._prefix}:rate:{{{self._name}}}"

    def __repr__(self) -> str:
        return f"<RedisRateLimiter{self._describe()} waiting={self._waiting}>"

    @property
    def key(self) -> str:
        """The Redis key holding the limit's state."""
        return self._key

    # timeout= decides up front whether to wait at all: a parameter, not a deadline.
    async def acquire(self, cost: int = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until *cost* units are granted.

        With *timeout* (seconds), raise :exc:`~anyway.RateLimitExceeded` (with
        ``retry_after``), taking nothing, when the grant cannot come within
        *timeout*: at once when Redis says so, or as soon as waiting shows it.
        *cost* must be a whole number between 1 and ``burst``.
        """
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        await self._acquire(self._key, self._name, cost, check_timeout(timeout))

    async def try_acquire(self, cost: int = 1) -> bool:
        """Take *cost* units if they conform right now (one round trip, never
        waits); whether they were taken. ``False`` at once while tasks of this
        process are waiting. Raises :exc:`RedisUnavailable` when Redis is
        unavailable and the limiter fails closed."""
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        return await self._try_acquire(self._key, self._name, cost)

    async def __aenter__(self) -> None:
        await self._acquire(self._key, self._name, 1, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


@final
class RedisKeyedRateLimiter(RedisGcra):
    """One exact rate limit per key, shared by every process that uses the
    same Redis: ``rate`` units per ``per`` seconds for each key.

    ::

        per_user = RedisKeyedRateLimiter(client, "login", 5, per=60.0, burst=5)
        async with per_user.limit(user_id):
            ...

    Each key behaves like its own :class:`RedisRateLimiter`. Keys are
    ``{prefix}:rate:{{name}}:{key}``: every key of one limiter lives on the
    Cluster slot of *name*. Each expires on the server once its state has
    fully recovered (rounded up to the next millisecond), so a flood of
    distinct keys cannot fill Redis and no limited key is ever reset early;
    there is no client-side sweep. A key is a ``str`` or an ``int``.
    """

    __slots__ = ("_base",)

    def __init__(
        self,
        client: Any,
        name: str,
        rate: float,
        per: float = 1.0,
        *,
        burst: int = 1,
        on_unavailable: OnUnavailable = "fail_closed",
        redis_timeout: float = 1.0,
        prefix: str = "anyway",
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        super().__init__(
            client, name, rate, per, burst, on_unavailable, redis_timeout, prefix, hooks
        )
        self._base = f"{self._prefix}:rate:{{{self._name}}}:"

    def __repr__(self) -> str:
        return f"<RedisKeyedRateLimiter{self._describe()} waiting={self._waiting}>"

    def key_for(self, key: str | int) -> str:
        """The Redis key holding *key*'s state."""
        value: object = key
        if isinstance(value, str):
            return self._base + value
        if isinstance(value, int) and not isinstance(value, bool):
            return self._base + str(value)
        raise TypeError(
            f"key must be a str or an int, got {key!r} ({type(key).__name__});"
            " turn it into a string first, e.g. str(user.id)"
        )

    def _label(self, key: str | int) -> str:
        return f"{self._name}[{key!r}]"

    # timeout=: see RedisRateLimiter.acquire
    async def acquire(self, key: str | int, cost: int = 1, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until *cost* units are granted for *key* (see
        :meth:`RedisRateLimiter.acquire`)."""
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        redis_key = self.key_for(key)
        await self._acquire(redis_key, self._label(key), cost, check_timeout(timeout))

    async def try_acquire(self, key: str | int, cost: int = 1) -> bool:
        """Take *cost* units for *key* if they conform right now (see
        :meth:`RedisRateLimiter.try_acquire`)."""
        if cost.__class__ is not int or cost != 1:
            cost = self._check_cost(cost)
        return await self._try_acquire(self.key_for(key), self._label(key), cost)

    def limit(self, key: str | int) -> AbstractAsyncContextManager[None]:
        """``async with limiter.limit(key):`` takes one unit for *key*."""
        return _KeyLimit(self, key, self.key_for(key))


@final
class _KeyLimit:
    """``async with limiter.limit(key):`` (takes one unit, gives nothing back)."""

    __slots__ = ("_key", "_limiter", "_redis_key")

    def __init__(self, limiter: RedisKeyedRateLimiter, key: str | int, redis_key: str) -> None:
        self._limiter = limiter
        self._key = key
        self._redis_key = redis_key

    def __repr__(self) -> str:
        return f"<limit {self._key!r} of {self._limiter!r}>"

    async def __aenter__(self) -> None:
        limiter = self._limiter
        await limiter._acquire(self._redis_key, limiter._label(self._key), 1, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None
