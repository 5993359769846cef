"""Per-host state of :mod:`anyway.httpx`: which limiter and which circuit
breaker a request goes through, and forgetting the breakers of hosts that are
gone (a crawler meets thousands).

Only public API of the policies is used: a :class:`~anyway.CircuitBreaker`
template is copied with ``derive`` and inspected with ``state``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

import httpx

from . import CircuitBreaker, CircuitState, Hedger, PerKey
from ._util import short_repr
from ._validate import check_count, check_sync_function

__all__ = [
    "BreakerArg",
    "HedgerArg",
    "HostBreakers",
    "KeyedLimiter",
    "LimiterArg",
    "default_key",
    "hedger_resolver",
    "limiter_resolver",
]

# The repr lists the breakers' states up to this many hosts, then counts them.
_REPR_HOSTS: Final = 8

AsyncCM: TypeAlias = AbstractAsyncContextManager[Any]


@runtime_checkable
class KeyedLimiter(Protocol):
    """Anything with ``limit(key)`` returning an async context manager, such as
    :class:`anyway.KeyedRateLimiter`: one limit per key."""

    def limit(self, key: str, /) -> AbstractAsyncContextManager[Any]:
        """The async context manager that waits for *key*'s turn."""
        ...


LimiterArg: TypeAlias = (
    KeyedLimiter
    | AbstractAsyncContextManager[Any]
    | Callable[[str], AbstractAsyncContextManager[Any] | None]
    | None
)
"""What ``limiter=`` accepts: a keyed limiter (one limit per host), one async
context manager shared by every host, or a function ``host -> async context
manager`` (returning ``None``: no limit for that host)."""

BreakerArg: TypeAlias = (
    CircuitBreaker
    | Callable[[str], AbstractAsyncContextManager[Any] | None]
    | Mapping[str, AbstractAsyncContextManager[Any]]
    | None
)
"""What ``breaker=`` accepts: a :class:`~anyway.CircuitBreaker` used as a
template (each host gets a breaker with its settings, see
:meth:`~anyway.CircuitBreaker.derive`), a factory ``host -> breaker`` (called
when a host has no breaker yet; the breaker is kept), or a mapping
``{host: breaker}``."""


HedgerArg: TypeAlias = PerKey[Hedger] | Callable[[str], Hedger | None] | None
"""What ``hedger=`` accepts: a :class:`~anyway.PerKey` of
:class:`~anyway.Hedger` (each host gets its own, and learns its own latency),
or a function ``host -> Hedger | None`` (``None``: that host is not hedged)."""


def default_key(request: httpx.Request) -> str:
    """The host a request is limited and broken by: the URL's host, with the
    port when it is not the scheme's default (``"api.example.com"``,
    ``"127.0.0.1:8080"``)."""
    return request.url.netloc.decode("ascii")


def limiter_resolver(
    limiter: object, name: str = "limiter"
) -> Callable[[str], AsyncCM | None] | None:
    """Turn a ``limiter=`` argument into ``key -> async context manager | None``."""
    if limiter is None:
        return None
    if isinstance(limiter, type):  # limiter=RateLimiter: every request would fail later
        raise TypeError(
            f"{name} must be an instance, got the class {limiter.__qualname__}; e.g."
            f" {name}=anyway.KeyedRateLimiter(10, per=1.0)"
        )
    limit = getattr(limiter, "limit", None)
    if callable(limit) and not hasattr(limiter, "__aenter__"):
        return limit  # type: ignore[no-any-return]
    if hasattr(limiter, "__aenter__") and hasattr(limiter, "__aexit__"):
        shared: AsyncCM = limiter

        def shared_limit(key: str) -> AsyncCM:
            return shared

        return shared_limit
    if callable(limiter) and not isinstance(limiter, type):
        return check_sync_function(
            name,
            limiter,
            argument="the host",
            example=f"{name}=lambda host: api_limiter if host == 'api.example.com' else None",
        )
    raise TypeError(
        f"{name} must be a keyed limiter with .limit(host) (e.g. anyway.KeyedRateLimiter),"
        " an async context manager shared by every host (e.g. anyway.RateLimiter) or a"
        f" function host -> async context manager; got {short_repr(limiter, 80)}"
        f" ({type(limiter).__name__})"
    )


def hedger_resolver(hedger: object) -> Callable[[str], Hedger | None] | None:
    """Turn a ``hedger=`` argument into ``key -> Hedger | None``."""
    if hedger is None:
        return None
    if isinstance(hedger, PerKey):
        per_host: PerKey[Hedger] = hedger

        def hedger_of(key: str) -> Hedger:
            found = per_host[key]
            if not isinstance(found, Hedger):
                raise TypeError(
                    f"hedger=PerKey(...) must make anyway.Hedger objects, got"
                    f" {short_repr(found, 80)} for {key!r}; e.g."
                    " hedger=anyway.PerKey(lambda host: anyway.Hedger())"
                )
            return found

        return hedger_of
    fix = (
        "hedger=anyway.PerKey(lambda host: anyway.Hedger(...)) gives each host its own Hedger"
        " (each learns its host's latency)"
    )
    if isinstance(hedger, Hedger):
        raise TypeError(
            f"hedger must be per host: {fix}; got the single {short_repr(hedger, 80)}, whose delay"
            " would mix every host's latency (hedger=lambda host: shared shares one on purpose)"
        )
    if isinstance(hedger, type):
        raise TypeError(f"hedger must be an instance, got the class {hedger.__qualname__}: {fix}")
    if not callable(hedger):
        raise TypeError(
            f"hedger must be a PerKey of Hedgers or a function host -> Hedger | None: {fix};"
            f" got {short_repr(hedger, 80)} ({type(hedger).__name__})"
        )
    make = check_sync_function(
        "hedger", hedger, argument="the host", example="hedger=lambda host: shared_hedger"
    )

    def checked(key: str) -> Hedger | None:
        found = make(key)
        if found is not None and not isinstance(found, Hedger):
            raise TypeError(
                f"the hedger function {short_repr(make, 60)} returned {short_repr(found, 80)}"
                f" for {key!r}; it must return an anyway.Hedger (or None: no hedging); {fix}"
            )
        return found

    return checked


class Host:
    """A host's breaker (``None``: the factory gave none), with the requests
    going through it now and whether it was used since the last sweep."""

    __slots__ = ("active", "breaker", "used")

    def __init__(self, breaker: AsyncCM | None) -> None:
        self.breaker = breaker
        self.active = 0
        self.used = True

    def __repr__(self) -> str:
        return f"<Host breaker={self.breaker!r} active={self.active} used={self.used}>"

    def forgettable(self) -> bool:
        """Whether dropping this breaker loses nothing worth keeping: no request
        in flight, and a closed circuit not used since the last sweep (a
        closed circuit in use may be counting failures). An open or
        half-open circuit, or a breaker that is not a
        :class:`~anyway.CircuitBreaker` (its state is unknown), is kept."""
        if self.active:
            return False
        breaker = self.breaker
        if breaker is None:
            return True
        if not isinstance(breaker, CircuitBreaker) or breaker.state is not CircuitState.CLOSED:
            return False
        return not self.used


class HostBreakers:
    """The ``breaker=`` argument of a transport, resolved per host."""

    __slots__ = ("_arg", "_hosts", "_make", "_mapping", "_max", "_sweep_at")

    def __init__(self, breaker: object, max_breakers: object) -> None:
        self._arg = breaker
        self._mapping: Mapping[str, AsyncCM] | None = None
        self._make: Callable[[str], AsyncCM | None] | None = None
        if isinstance(breaker, CircuitBreaker):
            self._make = _derive_per_host(breaker)
        elif breaker is not None and hasattr(breaker, "__aenter__"):
            raise TypeError(
                "breaker must be a CircuitBreaker (a template: each host gets one with its"
                " settings), a factory host -> breaker or a mapping {host: breaker}, got"
                f" {short_repr(breaker, 80)}: one breaker for every host would let one failing"
                " host cut off all the others (breaker=lambda host: shared shares one on purpose)"
            )
        elif isinstance(breaker, Mapping):
            self._mapping = breaker
        elif breaker is not None:
            self._make = check_sync_function(
                "breaker",
                breaker,
                argument="the host",
                example="breaker=lambda host: anyway.CircuitBreaker(name=host)",
            )
        self._hosts: dict[str, Host] = {}
        self._max = (
            None
            if max_breakers is None
            else check_count(
                "max_breakers", max_breakers, hint="; or max_breakers=None to keep every breaker"
            )
        )
        # len(self._hosts) that triggers the next sweep (see host())
        self._sweep_at: float = float("inf") if self._max is None else self._max

    @property
    def enabled(self) -> bool:
        """Whether any request may go through a breaker."""
        return self._arg is not None

    def lookup(self, key: str) -> tuple[AsyncCM | None, Host | None]:
        """*key*'s breaker, and its host record when the transport made it
        (a factory or a template: the record counts requests in flight)."""
        if self._mapping is not None:
            return self._mapping.get(key), None
        if self._make is None:
            return None, None
        host = self._hosts.get(key)
        if host is None:
            host = self._new_host(key)
        return host.breaker, host

    def _new_host(self, key: str) -> Host:
        hosts = self._hosts
        if len(hosts) >= self._sweep_at:
            self._sweep()
        assert self._make is not None
        breaker = self._make(key)
        if breaker is not None and not hasattr(breaker, "__aenter__"):
            raise TypeError(
                f"the breaker factory returned {short_repr(breaker, 80)} for {key!r}; it must"
                " return an async context manager such as anyway.CircuitBreaker (or None)"
            )
        host = hosts[key] = Host(breaker)
        return host

    def _sweep(self) -> None:
        """Drop the breakers that remember nothing worth keeping (see
        ``max_breakers``). Those kept may exceed the bound: the next sweep
        waits until there are twice as many, so sweeping stays amortized O(1)
        per new host."""
        hosts = self._hosts
        for key, host in list(hosts.items()):
            if host.forgettable():
                del hosts[key]
            else:
                host.used = False
        assert self._max is not None
        self._sweep_at = max(self._max, 2 * len(hosts))

    def snapshot(self) -> dict[str, AsyncCM]:
        """The breakers in use, by host."""
        if self._mapping is not None:
            return dict(self._mapping)
        return {key: host.breaker for key, host in self._hosts.items() if host.breaker is not None}

    def describe(self) -> str:
        """For the transport's repr: each host's state, or counts by state."""
        states = {
            host: getattr(getattr(b, "state", None), "value", type(b).__name__)
            for host, b in self.snapshot().items()
        }
        if len(states) <= _REPR_HOSTS:
            return repr(states)
        counts = collections.Counter(states.values())  # a crawler's thousand hosts
        by_state = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        return f"<{len(states)} hosts: {by_state}>"


def _derive_per_host(template: CircuitBreaker) -> Callable[[str], AsyncCM]:
    """The factory for ``breaker=template``: each host gets a breaker with the
    template's settings, named ``"<template name>:<host>"`` (or just the host
    when the template has no name)."""
    prefix = template.name

    def per_host(host: str) -> CircuitBreaker:
        return template.derive(name=host if prefix is None else f"{prefix}:{host}")

    return per_host
