"""A :class:`~anyway.abc.BreakerStore` on Redis: every process whose breaker
has the same name and uses the same Redis shares one circuit.

Each operation is one run of one Lua script (:mod:`._redis_breaker_script`),
atomic on the server and on the server's clock, so failures anywhere open the
circuit everywhere, and after the recovery time at most
``half_open_max_calls`` probes run across all processes together. A probe
slot is leased (``probe_lease``): a process that dies holding one cannot keep
the circuit half-open for longer than that.

Call ids are qualified with a random nonce per store object, so the ids of two
processes never collide.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Final, final

from anyio.lowlevel import checkpoint_if_cancelled

from ._breaker_types import BreakerConfig, BreakerSnapshot, BreakerUpdate
from ._breaker_windows import CountWindow
from ._events import CircuitState, Hook, RedisFailedOpen, check_hooks, emit
from ._redis_breaker_script import BREAKER
from ._redis_call import (
    OnUnavailable,
    RedisUnavailable,
    check_client,
    check_name,
    check_on_unavailable,
    check_redis_timeout,
    round_trip,
)
from ._validate import check_seconds

__all__ = ["RedisBreakerStore"]

_STATES: Final = {"c": CircuitState.CLOSED, "o": CircuitState.OPEN, "h": CircuitState.HALF_OPEN}
_CODES: Final = {CircuitState.CLOSED: "c", CircuitState.OPEN: "o"}
_FAILED_OPEN_TICKET: Final = -1  # admitted by the store itself while Redis is unavailable
_MIN_LEASE: Final = 10.0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


@final
class RedisBreakerStore:
    """Circuit breaker state in Redis, shared by every process::

        store = RedisBreakerStore(client)
        breaker = anyway.CircuitBreaker(name="payments", store=store)

    Each breaker name is one circuit for every process using the same Redis
    (keys ``{prefix}:breaker:{name}``, ``...:probes`` and ``...:window``, one
    Cluster slot). The state hash of a breaker does not expire (a breaker held
    open must stay open); the probe slots and a time window's buckets do.

    *on_unavailable*: ``"fail_closed"`` (the default) raises
    :exc:`RedisUnavailable` (a :exc:`~anyway.Rejected`: the breaker does not
    count it) when Redis cannot be reached in time; ``"fail_open"`` admits
    the call (a :class:`RedisFailedOpen` event) and drops its outcome.
    *redis_timeout* bounds each round trip (the caller's deadline may cut it
    shorter). *probe_lease* (seconds; default ``max(recovery_time, 10 s)``)
    is how long a probe slot is held at most.
    """

    __slots__ = (
        "_client",
        "_hooks",
        "_nonce",
        "_on_unavailable",
        "_prefix",
        "_probe_lease",
        "_redis_timeout",
    )

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "anyway",
        on_unavailable: OnUnavailable = "fail_closed",
        redis_timeout: float = 1.0,
        probe_lease: float | None = None,
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        self._client = check_client(client)
        self._prefix = check_name("prefix", prefix)
        self._on_unavailable = check_on_unavailable(on_unavailable)
        self._redis_timeout = check_redis_timeout(redis_timeout)
        self._probe_lease = (
            None
            if probe_lease is None
            else check_seconds("probe_lease", probe_lease, allow_zero=False)
        )
        self._hooks = check_hooks(hooks)
        self._nonce = secrets.token_hex(8)

    def __repr__(self) -> str:
        return (
            f"<RedisBreakerStore prefix={self._prefix!r} on_unavailable={self._on_unavailable!r}>"
        )

    def keys_for(self, key: str) -> tuple[str, str, str]:
        """The Redis keys of breaker *key*: state, probe slots, window."""
        base = f"{self._prefix}:breaker:{{{check_name('key', key)}}}"
        return base, base + ":probes", base + ":window"

    # -- the round trip ------------------------------------------------------

    def _args(self, op: str, config: BreakerConfig) -> list[int | str]:
        window = config.window
        if window is None:
            kind, size, width = "none", 1, 1
        elif isinstance(window, CountWindow):
            kind, size, width = "count", window.size, 1
        else:
            kind, size = "time", window.buckets
            width = max(1, _us(window.seconds / window.buckets))
        lease = self._probe_lease
        if lease is None:
            lease = max(config.recovery_time, _MIN_LEASE)
        slow = config.slow_call_rate_threshold
        return [
            op,
            config.failure_threshold,
            _us(config.recovery_time),
            config.half_open_max_calls,
            kind,
            size,
            width,
            config.minimum_calls,
            repr(float(config.failure_rate_threshold)),
            "-1" if slow is None else repr(float(slow)),
            _us(lease),
        ]

    async def _run(
        self, key: str, config: BreakerConfig, op: str, extra: Sequence[int | str]
    ) -> Sequence[Any] | None:
        """The script's reply, or ``None`` when failing open (or RedisUnavailable)."""
        try:
            reply = await round_trip(
                self._client,
                BREAKER,
                self.keys_for(key),
                [*self._args(op, config), *extra],
                self._redis_timeout,
            )
        except RedisUnavailable as exc:
            await checkpoint_if_cancelled()  # a cancellation (the deadline) wins
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if self._on_unavailable == "fail_open":
                await emit(RedisFailedOpen(policy=key, operation=op, error=cause), self._hooks)
                return None
            raise RedisUnavailable(f"breaker {key!r}: {exc}") from cause
        return list(reply)

    def _update(self, config: BreakerConfig, reply: Sequence[Any]) -> BreakerUpdate:
        state = _STATES[_text(reply[0])]
        retry_us = int(reply[6])
        snapshot = BreakerSnapshot(
            state=state,
            failure_count=int(reply[1]),
            success_count=int(reply[2]),
            call_count=int(reply[3]),
            slow_call_count=int(reply[4]),
            probes_in_flight=int(reply[5]),
            retry_after=None if retry_us < 0 else retry_us / 1e6,
        )
        ticket = int(reply[7])
        previous = _text(reply[8])
        kind = _text(reply[9])
        if not kind:
            return BreakerUpdate(snapshot=snapshot, ticket=None if ticket < 0 else ticket)
        reason = _reason(config, kind, int(reply[10]), int(reply[11]), _text(reply[12]))
        return BreakerUpdate(
            snapshot=snapshot,
            ticket=None if ticket < 0 else ticket,
            previous=_STATES[previous],
            reason=reason,
            kind=kind,  # type: ignore[arg-type]  # one of TransitionKind, from the script
        )

    # -- the protocol ----------------------------------------------------------

    async def acquire(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        """Admit *call* or refuse it (see :class:`anyway.abc.BreakerStore`)."""
        reply = await self._run(key, config, "acquire", [f"{self._nonce}:{call}"])
        await checkpoint_if_cancelled()
        if reply is None:
            return _failed_open(_FAILED_OPEN_TICKET)
        return self._update(config, reply)

    async def record(
        self,
        key: str,
        config: BreakerConfig,
        call: int,
        ticket: int,
        *,
        failure: bool,
        slow: bool,
    ) -> BreakerUpdate:
        """Record the outcome of an admitted call."""
        if ticket == _FAILED_OPEN_TICKET:
            return _failed_open(None)  # admitted while Redis was unavailable: not counted
        extra: list[int | str] = [
            f"{self._nonce}:{call}",
            ticket,
            int(failure),
            int(slow),
            repr(config.recovery_time),
        ]
        reply = await self._run(key, config, "record", extra)
        return _failed_open(None) if reply is None else self._update(config, reply)

    async def release(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
        """Give back *call*'s probe slot, if it holds one; count nothing."""
        reply = await self._run(key, config, "release", [f"{self._nonce}:{call}"])
        return _failed_open(None) if reply is None else self._update(config, reply)

    async def force(
        self,
        key: str,
        config: BreakerConfig,
        state: CircuitState,
        *,
        seconds: float | None = None,
        reset: bool = False,
    ) -> BreakerUpdate:
        """Open or close the circuit by hand."""
        code = _CODES.get(state)
        if code is None:
            raise ValueError(
                f"state must be CircuitState.OPEN or CircuitState.CLOSED, got {state!r}"
            )
        if seconds is not None:
            seconds = check_seconds("seconds", seconds, allow_zero=False)
        extra: list[int | str] = [
            code,
            -1 if seconds is None else _us(seconds),
            "" if seconds is None else repr(seconds),
            int(bool(reset)),
        ]
        reply = await self._run(key, config, "force", extra)
        await checkpoint_if_cancelled()
        if reply is None:
            return _failed_open(None)
        return self._update(config, reply)

    async def snapshot(self, key: str, config: BreakerConfig) -> BreakerSnapshot:
        """The state and counts now, changing nothing."""
        reply = await self._run(key, config, "snapshot", [])
        await checkpoint_if_cancelled()
        if reply is None:
            return BreakerSnapshot(state=CircuitState.CLOSED)
        return self._update(config, reply).snapshot


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _failed_open(ticket: int | None) -> BreakerUpdate:
    return BreakerUpdate(snapshot=BreakerSnapshot(state=CircuitState.CLOSED), ticket=ticket)


def _reason(config: BreakerConfig, kind: str, n1: int, n2: int, ofor: str) -> str:
    match kind:
        case "failures":
            return _plural(n1, "consecutive failure")
        case "failure_rate":
            return (
                f"failure rate {n1 / n2:.0%} >= {config.failure_rate_threshold:.0%}"
                f" over {_plural(n2, 'call')}"
            )
        case "slow_call_rate":
            return (
                f"slow call rate {n1 / n2:.0%} >= {config.slow_call_rate_threshold or 0:.0%}"
                f" over {_plural(n2, 'call')}"
            )
        case "recovery_time":
            return f"{float(ofor):g} s since it opened" if ofor else "recovery time passed"
        case "probe_failed":
            return "a probe failed"
        case "probe_slow":
            return "a probe was slow"
        case "probes_succeeded":
            return f"{_plural(n1, 'probe')} succeeded"
        case "operator_open":
            return "opened by hand " + (f"for {float(ofor):g} s" if ofor else "until closed")
        case "operator_close":
            return "closed by hand"
        case _:
            return "reset by hand"
