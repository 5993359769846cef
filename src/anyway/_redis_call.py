"""What every ``anyway.redis`` object shares: the outage error and event, the
argument checks, and one bounded round trip that runs a Lua script.

A round trip is ``EVALSHA`` (the digest is computed here, so nothing is loaded
up front) and, on ``NOSCRIPT`` (a restarted server, a ``SCRIPT FLUSH``, a new
Cluster node), ``EVAL``, which runs the script and caches it on that node.
Every failure of Redis or of the network comes out as
:exc:`RedisUnavailable`, never as a coredis exception.

The round trip is shielded from cancellation and bounded: it ends no later
than the caller's deadline (:func:`anyio.current_effective_deadline`) and no
later than ``redis_timeout`` after it started. Shielded, because a script that
granted something must be *known* to have granted it, so that a caller
cancelled meanwhile can give it back; bounded, so that a hung server never
holds the caller past its deadline. A round trip cut at the caller's
deadline lets that deadline's cancellation through instead of an outage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias

import anyio
from anyio import current_effective_deadline, current_time
from coredis.exceptions import NoScriptError
from coredis.typing import RedisError

from ._errors import Rejected
from ._util import yield_to_deadline
from ._validate import check_seconds

__all__ = [
    "OnUnavailable",
    "RedisUnavailable",
    "Script",
    "check_client",
    "check_name",
    "check_on_unavailable",
    "round_trip",
]

OnUnavailable: TypeAlias = Literal["fail_open", "fail_closed"]

# What a broken, refusing or unreachable Redis raises through coredis.
_UNAVAILABLE: Final = (RedisError, OSError, TimeoutError)


class RedisUnavailable(Rejected):
    """Redis could not be reached or answered with an error, and the object was
    created with ``on_unavailable="fail_closed"`` (the default): the call was
    not run. The coredis error, if any, is the ``__cause__``.

    A :exc:`~anyway.Rejected`, so code that already handles rejections (a
    fallback, a retry on ``Rejected``) handles an outage the same way.
    """

    _default_message = "Redis unavailable"


class Script:
    """A Lua script and its SHA1 digest (for ``EVALSHA``)."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def check_client(client: object) -> Any:
    """A coredis client (``coredis.Redis`` or ``coredis.RedisCluster``), or TypeError."""
    if not callable(getattr(client, "evalsha", None)) or not callable(
        getattr(client, "eval", None)
    ):
        raise TypeError(
            f"client must be a coredis client, got {client!r} ({type(client).__name__});"
            " pass the client you opened: async with coredis.Redis(...) as client: ..."
        )
    return client


def check_name(what: str, value: object) -> str:
    """A non-empty string without braces (it becomes a Cluster hash tag)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r} ({type(value).__name__})")
    if not value or "{" in value or "}" in value:
        raise ValueError(
            f"{what} must be a non-empty string without '{{' or '}}' (it becomes the"
            f" key's Cluster hash tag), got {value!r}"
        )
    return value


def check_on_unavailable(value: object) -> OnUnavailable:
    if value == "fail_open":
        return "fail_open"
    if value == "fail_closed":
        return "fail_closed"
    raise ValueError(
        f"on_unavailable must be 'fail_open' (let calls through while Redis is down)"
        f" or 'fail_closed' (raise RedisUnavailable), got {value!r}"
    )


def check_redis_timeout(value: object) -> float:
    return check_seconds(
        "redis_timeout",
        value,
        allow_zero=False,
        allow_inf=True,
        hint="; it bounds one round trip to Redis, e.g. redis_timeout=0.5",
    )


async def round_trip(
    client: Any,
    script: Script,
    keys: Sequence[str],
    args: Sequence[int | str],
    redis_timeout: float,
) -> Any:
    """Run *script* once; its reply, or :exc:`RedisUnavailable`.

    Shielded from cancellation but never past the caller's deadline nor
    *redis_timeout* (see the module docstring); the caller checks for a
    pending cancellation afterwards.
    """
    start = current_time()
    deadline_at = current_effective_deadline()
    end = min(deadline_at, start + redis_timeout)
    with anyio.CancelScope(shield=True, deadline=end):
        try:
            try:
                return await client.evalsha(script.sha, keys, args)
            except NoScriptError:
                return await client.eval(script.text, keys, args)
        except _UNAVAILABLE as exc:
            raise RedisUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc
    if end == deadline_at:
        # Cut at the caller's deadline: the caller gets that deadline, not an
        # outage that won the race against it by a hair.
        await yield_to_deadline(deadline_at)
    raise RedisUnavailable(
        f"Redis unavailable: no reply within {end - start:.3g} s"
        f" (redis_timeout={redis_timeout:g} s, or the caller's deadline)"
    ) from TimeoutError("no reply from Redis in time")
