"""Limits and circuit breakers shared by every process and host, on Redis or
Valkey (standalone or Cluster) through coredis (``pip install 'anyway[redis]'``).

::

    import coredis
    from anyway.redis import RedisRateLimiter

    async with coredis.Redis.from_url("redis://localhost:6379") as client:
        limiter = RedisRateLimiter(client, "partner-api", 100, per=1.0)
        async with limiter:
            await call_partner()

The caller owns the client: anyway never opens a connection behind your back.
coredis is AnyIO-native, so this works on asyncio, uvloop and Trio.

* :class:`RedisRateLimiter`, :class:`RedisKeyedRateLimiter`: exact GCRA
  limits in one atomic Lua script on the server's clock.
* :class:`RedisBreakerStore`: a breaker store, so that
  ``CircuitBreaker(name=..., store=RedisBreakerStore(client))`` in every
  process shares one circuit.
* :exc:`RedisUnavailable` (a :exc:`~anyway.Rejected`) and the
  :class:`RedisFailedOpen` event: what ``on_unavailable="fail_closed"`` and
  ``"fail_open"`` do while Redis is down.
"""

from __future__ import annotations

try:
    import coredis as _coredis  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "anyway.redis needs coredis >= 6: install the extra with pip install 'anyway[redis]'"
    ) from _exc

from ._events import RedisFailedOpen as RedisFailedOpen
from ._redis_breaker import RedisBreakerStore as RedisBreakerStore
from ._redis_call import OnUnavailable as OnUnavailable
from ._redis_call import RedisUnavailable as RedisUnavailable
from ._redis_limiter import RedisKeyedRateLimiter as RedisKeyedRateLimiter
from ._redis_limiter import RedisRateLimiter as RedisRateLimiter

__all__ = [
    "OnUnavailable",
    "RedisBreakerStore",
    "RedisFailedOpen",
    "RedisKeyedRateLimiter",
    "RedisRateLimiter",
    "RedisUnavailable",
]

for _name in (
    "RedisBreakerStore",
    "RedisFailedOpen",
    "RedisKeyedRateLimiter",
    "RedisRateLimiter",
    "RedisUnavailable",
):
    globals()[_name].__module__ = __name__
del _name
