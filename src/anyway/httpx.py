"""Resilient HTTP with `httpx <https://www.python-httpx.org/>`_ (the ``httpx`` extra).

:class:`ResilientTransport` wraps any ``httpx.AsyncBaseTransport`` and adds,
per request: retries with backoff (idempotent methods, transport errors and
retryable statuses, ``Retry-After``), a per-host rate limiter and circuit
breaker, and httpx timeouts capped at the caller's deadline
(:func:`anyway.remaining`). :func:`fetch_all` fans a batch of requests out
with bounded concurrency and returns one outcome per request, in input order:
the partial-failure report.

It runs wherever httpx runs: asyncio, uvloop and Trio (httpx's own transport
reaches the network through httpcore, on AnyIO).
"""

from __future__ import annotations

import collections
import email.utils
import math
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

import anyio
import httpx
import outcome

from ._backoff import Backoff
from ._breaker import CircuitBreaker
from ._deadline import deadline
from ._events import CircuitState, Hook
from ._retry import Retry, RetryBudget
from ._tasks import map_all
from ._validate import check_callable, check_count, check_seconds

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "RETRY_ERRORS",
    "BreakerArg",
    "KeyedLimiter",
    "LimiterArg",
    "ResilientTransport",
    "default_key",
    "fetch_all",
    "retry_after",
]

#: The idempotent methods (RFC 9110, section 9.2.2), retried by default.
DEFAULT_RETRY_METHODS: Final[frozenset[str]] = frozenset(
    {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
)
#: The statuses retried by default: 429 Too Many Requests and the 502, 503,
#: 504 family that means "try again later" (a 500 is usually a bug).
DEFAULT_RETRY_STATUSES: Final[tuple[int, ...]] = (429, 502, 503, 504)
#: The default waits between attempts: 0.1 s doubling up to 10 s, full jitter.
DEFAULT_BACKOFF: Final[Backoff] = Backoff(initial=0.1, max=10.0, multiplier=2.0, jitter="full")

#: The transport errors that are retried: timeouts (connect, read, write,
#: pool), network errors (refused, reset, broken pipe) and a server that hung
#: up mid-answer. Local protocol errors, unsupported schemes and proxy errors
#: are bugs or configuration: they are raised at once.
RETRY_ERRORS: Final[tuple[type[httpx.TransportError], ...]] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

# Closing a response is shielded from cancellation, within this bound.
_CLOSE_TIMEOUT: Final = 1.0
# The repr lists the breakers' states up to this many hosts, then counts them.
_REPR_HOSTS: Final = 8
_DELAY_SECONDS: Final = re.compile(r"\d+(\.\d+)?")


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


def default_key(request: httpx.Request) -> str:
    """The host a request is limited and broken by: the URL's host, with the
    port when it is not the scheme's default (``"api.example.com"``,
    ``"127.0.0.1:8080"``)."""
    return request.url.netloc.decode("ascii")


def retry_after(response: httpx.Response) -> float | None:
    """The seconds that *response*'s ``Retry-After`` header asks to wait, or
    ``None`` when it has none or it is malformed.

    Both forms are understood: delay seconds (``"120"``) and an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``). A date is measured from the
    response's own ``Date`` header when it has a valid one (so that clock
    skew between client and server does not matter), else from the wall
    clock; a date in the past means ``0.0``. The value is not capped here
    (it may be huge, even ``inf``): :class:`ResilientTransport` caps it.
    """
    value = response.headers.get("retry-after")
    if value is None:
        return None
    return _parse_retry_after(value, response.headers.get("date"))


def _parse_retry_after(value: str, date: str | None) -> float | None:
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)  # 400 digits give inf: "a very long time" still
    when = _parse_http_date(value)
    if when is None:
        return None
    now = _parse_http_date(date) if date is not None else None
    if now is None:
        now = _wall_clock()
    return max(0.0, (when - now).total_seconds())


def _wall_clock() -> datetime:
    """The current UTC date and time: the library's only wall-clock read
    (everything else uses :func:`anyio.current_time`). An HTTP-date
    ``Retry-After`` from a response without a usable ``Date`` header can only
    be measured against it: the event loop's clock has no epoch. Virtual
    time does not move it."""
    return datetime.now(UTC)


def _parse_http_date(value: str) -> datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, without saying so
        when = when.replace(tzinfo=UTC)
    return when


def _derive_per_host(
    template: CircuitBreaker,
) -> Callable[[str], AbstractAsyncContextManager[Any]]:
    """The factory for ``breaker=template``: each host gets a breaker with the
    template's settings, named ``"<template name>:<host>"`` (or just the host
    when the template has no name)."""
    prefix = template.name

    def per_host(host: str) -> CircuitBreaker:
        return template.derive(name=host if prefix is None else f"{prefix}:{host}")

    return per_host


class _Host:
    """A host's breaker (``None``: the factory gave none), with the requests
    going through it now and whether it was used since the last sweep."""

    __slots__ = ("active", "breaker", "used")

    def __init__(self, breaker: AbstractAsyncContextManager[Any] | None) -> None:
        self.breaker = breaker
        self.active = 0
        self.used = True

    def __repr__(self) -> str:
        return f"<_Host breaker={self.breaker!r} active={self.active} used={self.used}>"

    def forgettable(self) -> bool:
        """Whether dropping this breaker loses nothing worth keeping: no request
        in flight, and a closed circuit that counts no failure or that was not
        used since the last sweep. An open or half-open circuit, or a breaker
        that is not a :class:`~anyway.CircuitBreaker` (its state is unknown), is
        kept."""
        if self.active:
            return False
        breaker = self.breaker
        if breaker is None:
            return True
        if not isinstance(breaker, CircuitBreaker) or breaker.state is not CircuitState.CLOSED:
            return False
        return not self.used or breaker.statistics().failure_count == 0


class _StatusFailure(httpx.HTTPStatusError):
    """Raised inside a breaker so that a retryable 5xx counts as a failure."""


def _is_replayable(request: httpx.Request) -> bool:
    # A body held in memory (content=, data=, json=, files= after aread(), or
    # no body) can be sent again; a streaming body is consumed by the first try.
    return isinstance(request.stream, httpx.ByteStream)


def _policy_name(request: httpx.Request) -> str:
    # Without the query string: it may carry credentials, and events get logged.
    url = request.url
    return f"{request.method} {url.scheme}://{url.netloc.decode('ascii')}{url.path}"


async def _read_and_close(response: httpx.Response) -> None:
    """Read a response's body (its connection goes back to the pool) and make
    sure it is closed, even when reading fails or is cancelled."""
    try:
        await response.aread()
    finally:
        if not response.is_closed:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await response.aclose()


def _check_statuses(value: object) -> frozenset[int]:
    if isinstance(value, (str, bytes, int)) or not isinstance(value, Iterable):
        raise TypeError(
            f"retry_statuses must be a collection of HTTP status codes, got {value!r}"
            " (e.g. retry_statuses=(429, 503), or () to retry no status)"
        )
    statuses = set()
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(
                f"retry_statuses must hold HTTP status codes (100-599), got {status!r} in {value!r}"
            )
        statuses.add(status)
    return frozenset(statuses)


def _check_methods(value: object) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"retry_methods must be a collection of HTTP methods, got {value!r}"
            ' (e.g. retry_methods={"GET", "POST"})'
        )
    methods = set()
    for method in value:
        if not isinstance(method, str) or not method.isalpha():
            raise ValueError(
                f"retry_methods must hold method names such as 'GET', got {method!r} in {value!r}"
            )
        methods.add(method.upper())
    return frozenset(methods)


def _limiter_resolver(
    limiter: object, name: str = "limiter"
) -> Callable[[str], AbstractAsyncContextManager[Any] | None] | None:
    """Turn a ``limiter=`` argument into ``key -> async context manager | None``."""
    if limiter is None:
        return None
    limit = getattr(limiter, "limit", None)
    if callable(limit) and not hasattr(limiter, "__aenter__"):
        return limit  # type: ignore[no-any-return]
    if hasattr(limiter, "__aenter__") and hasattr(limiter, "__aexit__"):
        shared: AbstractAsyncContextManager[Any] = limiter

        def shared_limit(key: str) -> AbstractAsyncContextManager[Any]:
            return shared

        return shared_limit
    if callable(limiter):
        return check_callable(name, limiter)
    raise TypeError(
        f"{name} must be a keyed limiter with .limit(host) (e.g. anyway.KeyedRateLimiter),"
        " an async context manager shared by every host (e.g. anyway.RateLimiter) or a"
        f" function host -> async context manager; got {limiter!r} ({type(limiter).__name__})"
    )


class ResilientTransport(httpx.AsyncBaseTransport):
    """An httpx transport that retries, rate-limits, breaks circuits and
    respects deadlines, on asyncio, uvloop and Trio::

        transport = anyway.httpx.ResilientTransport(
            limiter=anyway.KeyedRateLimiter(10, per=1.0),
            breaker=anyway.CircuitBreaker(failure_threshold=5),  # one per host
        )
        async with httpx.AsyncClient(transport=transport) as client:
            with anyway.deadline(5):
                response = await client.get("https://api.example.com/items")

    Each request goes to *transport* (default: a new
    ``httpx.AsyncHTTPTransport()``) up to *attempts* times (``1``: never
    retry):

    * Only *retry_methods* are retried (by default the idempotent ones: a
      ``POST`` may have taken effect before the failure). A request with a
      streaming body is never retried, since it cannot be sent twice; call
      ``await request.aread()`` first to make it retryable.
    * What is retried: the transport errors in :data:`RETRY_ERRORS`
      (connect/read/write/pool timeouts, refused or reset connections, a
      server that hung up) and responses whose status is in
      *retry_statuses*. Such a response is read in full and closed by the
      transport, so its connection goes back to the pool, and the last one
      is still readable when retrying stops.
    * The wait is the server's ``Retry-After`` (seconds or an HTTP date, see
      :func:`retry_after`) when the response has a valid one, capped at
      *max_retry_after*; else the next *backoff* delay.
    * The httpx timeouts of each attempt (connect, read, write, pool) are
      capped at :func:`anyway.remaining`, so a deadline around the call
      bounds every socket wait, and a wait that would reach the caller's
      deadline is not started: retrying stops at once.
    * When retrying stops, the last response is returned as it is (so
      ``raise_for_status()`` sees it), or the last error is raised as itself
      with notes saying how many attempts were made and why it stopped.

    The retry loop is :func:`anyway.retry`'s, so :func:`anyway.testing.no_backoff`
    applies, *budget* (a :class:`anyway.RetryBudget`) can cap retries across
    callers, and *hooks* receive :class:`anyway.RetryScheduled` and
    :class:`anyway.RetryGaveUp` events whose ``policy`` is ``"METHOD url"``
    (without the query string, which may hold credentials).

    *limiter* and *breaker* apply per host (see *key*), around every attempt:
    breaker outside, limiter inside, as in :func:`anyway.resilient`.

    *limiter*
        A keyed limiter such as :class:`anyway.KeyedRateLimiter` (used as
        ``limiter.limit(host)``: one budget per host), any async context
        manager such as :class:`anyway.RateLimiter` (one budget shared by
        every host), or a function ``host -> async context manager or None``.
    *breaker*
        A :class:`anyway.CircuitBreaker` used as a **template**: each host
        gets its own breaker with the template's settings (thresholds,
        window, *on*, ``recovery_time``, ``half_open_max_calls``, hooks,
        store; see :meth:`~anyway.CircuitBreaker.derive`) named
        ``"<template name>:<host>"``, or just ``"<host>"`` when the template
        has no name; the template itself guards nothing. Or a factory
        ``host -> breaker`` (``lambda host: CircuitBreaker(name=host)``;
        returning ``None``: no breaker for that host), or a mapping
        ``{host: breaker}`` (other hosts get none; ``breaker=lambda host:
        shared`` shares one breaker on purpose). Transport errors, and
        statuses of 500 and above that are in *retry_statuses* (whatever the
        method), count as failures: the breaker sees an
        ``httpx.HTTPStatusError`` for those. While a host's circuit is open
        its requests fail at once with :class:`anyway.CircuitOpen`, which is
        not retried: when it opens between two attempts, it is raised with
        notes about the earlier attempts.
    *max_breakers*
        How many hosts' breakers (template or factory) are kept before
        forgetting some (``None``: never): when a new host would go beyond
        it, the breakers that remember nothing worth keeping are dropped
        (no request in flight, circuit closed, and no failure counted or no
        request since the previous sweep); an open or half-open circuit, or
        a factory's object that is not a :class:`~anyway.CircuitBreaker`, is
        never dropped. A dropped host gets a fresh breaker (the factory is
        called again) on its next request. So a crawler's memory is bounded
        by *max_breakers* plus the hosts whose circuit is open or recently
        failing.
    *key*
        ``request -> str``, the host a request counts against (default
        :func:`default_key`: host, plus the port when it is not the default).
    """

    # No __slots__: httpx.AsyncBaseTransport has none, so instances get a
    # __dict__ anyway (and one transport serves a whole client: not hot).

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        attempts: int = 3,
        backoff: Backoff = DEFAULT_BACKOFF,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        retry_methods: Iterable[str] = DEFAULT_RETRY_METHODS,
        max_retry_after: float = 60.0,
        limiter: LimiterArg = None,
        breaker: BreakerArg = None,
        key: Callable[[httpx.Request], str] = default_key,
        budget: RetryBudget | None = None,
        hooks: Iterable[Hook] | Hook = (),
        max_breakers: int | None = 1000,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport such as"
                f" httpx.AsyncHTTPTransport(), got {transport!r} (ResilientTransport is for"
                " httpx.AsyncClient; a sync transport cannot be wrapped)"
            )
        self._attempts = check_count("attempts", attempts, hint="; use attempts=1 to never retry")
        self._retry_statuses = _check_statuses(retry_statuses)
        self._retry_methods = _check_methods(retry_methods)
        self._max_retry_after = check_seconds(
            "max_retry_after",
            max_retry_after,
            hint=" (the longest Retry-After wait honoured, in seconds)",
        )
        self._limiter = limiter
        self._limit_for = _limiter_resolver(limiter)
        self._breaker_arg = breaker
        self._breaker_map: Mapping[str, AbstractAsyncContextManager[Any]] | None = None
        self._make_breaker: Callable[[str], AbstractAsyncContextManager[Any] | None] | None = None
        if isinstance(breaker, CircuitBreaker):
            self._make_breaker = _derive_per_host(breaker)
        elif breaker is not None and hasattr(breaker, "__aenter__"):
            raise TypeError(
                f"breaker must be a CircuitBreaker (a template: each host gets one with its"
                f" settings), a factory host -> breaker or a mapping {{host: breaker}}, got"
                f" {breaker!r}: one breaker for every host would let one failing host cut"
                " off all the others (breaker=lambda host: shared shares one on purpose)"
            )
        elif isinstance(breaker, Mapping):
            self._breaker_map = breaker
        elif breaker is not None:
            self._make_breaker = check_callable("breaker", breaker)
        self._hosts: dict[str, _Host] = {}
        self._max_breakers = (
            None
            if max_breakers is None
            else check_count(
                "max_breakers", max_breakers, hint="; or max_breakers=None to keep every breaker"
            )
        )
        # len(self._hosts) that triggers the next sweep (see _host)
        self._sweep_at: float = math.inf if self._max_breakers is None else self._max_breakers
        self._key = check_callable("key", key)
        # Validates backoff, budget and hooks. No timeout of its own: deadlines
        # come from the caller (anyway.deadline, anyway.Budget...).
        self._policy = Retry(
            on=RETRY_ERRORS,
            attempts=self._attempts,
            timeout=None,
            backoff=backoff,
            retry_if_result=self._retry_verdict,
            hooks=hooks,
            budget=budget,
        )
        # Last, so that bad arguments do not leave a connection pool behind.
        self._transport = httpx.AsyncHTTPTransport() if transport is None else transport

    # -- public surface ----------------------------------------------------

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The wrapped transport."""
        return self._transport

    @property
    def retry(self) -> Retry:
        """The :class:`anyway.Retry` policy that retries the requests."""
        return self._policy

    @property
    def breakers(self) -> dict[str, AbstractAsyncContextManager[Any]]:
        """The breakers in use, by host (a snapshot)."""
        if self._breaker_map is not None:
            return dict(self._breaker_map)
        return {key: host.breaker for key, host in self._hosts.items() if host.breaker is not None}

    def __repr__(self) -> str:
        parts = [
            f"attempts={self._attempts}",
            f"backoff={self._policy.backoff!r}",
            f"retry_statuses={tuple(sorted(self._retry_statuses))}",
            f"max_retry_after={self._max_retry_after:g}",
        ]
        if self._retry_methods != DEFAULT_RETRY_METHODS:
            parts.append(f"retry_methods={tuple(sorted(self._retry_methods))}")
        if self._limiter is not None:
            parts.append(f"limiter={self._limiter!r}")
        if self._breaker_arg is not None:
            states = {
                host: getattr(getattr(b, "state", None), "value", type(b).__name__)
                for host, b in self.breakers.items()
            }
            if len(states) <= _REPR_HOSTS:
                parts.append(f"breakers={states!r}")
            else:  # a crawler's thousand hosts: counts by state
                counts = collections.Counter(states.values())
                by_state = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
                parts.append(f"breakers=<{len(states)} hosts: {by_state}>")
        parts.append(f"transport={self._transport!r}")
        return f"<ResilientTransport {' '.join(parts)}>"

    async def __aenter__(self) -> ResilientTransport:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._transport.__aexit__(exc_type, exc_value, traceback)

    async def aclose(self) -> None:
        """Close the wrapped transport (and its connection pool)."""
        await self._transport.aclose()

    # -- sending -----------------------------------------------------------

    def _retry_verdict(self, response: httpx.Response) -> bool | float:
        """``retry_if_result``: is this response retried, and after how long?"""
        if response.status_code not in self._retry_statuses:
            return False
        wait = retry_after(response)
        if wait is None:
            return True  # the backoff's turn
        return min(wait, self._max_retry_after)

    def _host(self, key: str) -> _Host:
        """*key*'s breaker, made (factory or template) the first time it is
        needed; a new host may first sweep the forgettable ones away."""
        hosts = self._hosts
        host = hosts.get(key)
        if host is not None:
            return host
        if len(hosts) >= self._sweep_at:
            self._sweep()
        assert self._make_breaker is not None
        breaker = self._make_breaker(key)
        if breaker is not None and not hasattr(breaker, "__aenter__"):
            raise TypeError(
                f"the breaker factory returned {breaker!r} for {key!r}; it must return an"
                " async context manager such as anyway.CircuitBreaker (or None)"
            )
        host = hosts[key] = _Host(breaker)
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
        assert self._max_breakers is not None
        self._sweep_at = max(self._max_breakers, 2 * len(hosts))

    async def _send_once(self, request: httpx.Request) -> httpx.Response:
        """One attempt: breaker, then limiter, then the wrapped transport."""
        if self._limit_for is None and self._breaker_arg is None:
            return await self._transport.handle_async_request(request)
        key = self._key(request)
        limit = self._limit_for(key) if self._limit_for is not None else None
        host: _Host | None = None
        if self._make_breaker is not None:
            host = self._host(key)
            breaker = host.breaker
        elif self._breaker_map is not None:
            breaker = self._breaker_map.get(key)
        else:
            breaker = None
        if breaker is None:
            if limit is None:
                return await self._transport.handle_async_request(request)
        elif host is not None:
            # In flight: a sweep leaves this host's breaker alone.
            host.used = True
            host.active += 1
        response: httpx.Response | None = None
        try:
            async with breaker if breaker is not None else nullcontext():
                if limit is None:
                    response = await self._transport.handle_async_request(request)
                else:
                    async with limit:
                        response = await self._transport.handle_async_request(request)
                status = response.status_code
                if breaker is not None and status >= 500 and status in self._retry_statuses:
                    # Counted as a failure; the response itself goes on.
                    raise _StatusFailure(
                        f"{status} {response.reason_phrase} from {key}",
                        request=request,
                        response=response,
                    )
        except _StatusFailure as failure:
            return failure.response
        except BaseException:
            # The answer came, then leaving the limiter or the breaker failed
            # (a hook raised or was cancelled): nobody will get the response,
            # so close it now (its connection goes back to the pool).
            if response is not None and not response.is_closed:
                with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                    await response.aclose()
            raise
        finally:
            if host is not None and breaker is not None:
                host.active -= 1
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request*, with the retries, limits and deadline described above."""
        extensions = request.extensions
        timeouts: dict[str, float | None] | None = extensions.get("timeout")
        try:
            if (
                self._attempts == 1
                or request.method not in self._retry_methods
                or not _is_replayable(request)
            ):
                if timeouts:
                    _cap_timeouts(request, extensions, timeouts)
                return await self._send_once(request)
            return await self._policy.call(_Attempt(self, request, extensions, timeouts))
        finally:
            # The caller's request keeps its own timeouts (it may be sent again).
            request.extensions = extensions


class _Attempt:
    """One attempt of a request, as the retry policy calls it."""

    __slots__ = ("_extensions", "_request", "_timeouts", "_transport")

    def __init__(
        self,
        transport: ResilientTransport,
        request: httpx.Request,
        extensions: dict[str, Any],
        timeouts: dict[str, float | None] | None,
    ) -> None:
        self._transport = transport
        self._request = request
        self._extensions = extensions
        self._timeouts = timeouts

    def __getattr__(self, name: str) -> str:
        # The retry policy names its events after the ``__qualname__`` of the
        # function it retries, and reads it only once an attempt has failed:
        # computed here on demand, the success path never builds the name.
        if name == "__qualname__":
            return _policy_name(self._request)
        raise AttributeError(name)

    async def __call__(self) -> httpx.Response:
        request = self._request
        if self._timeouts:
            _cap_timeouts(request, self._extensions, self._timeouts)
        transport = self._transport
        response = await transport._send_once(request)
        if response.status_code in transport._retry_statuses:
            # It may be retried: free its connection now. Read, it also stays
            # usable if it turns out to be the last one.
            await _read_and_close(response)
        return response


def _cap_timeouts(
    request: httpx.Request, extensions: dict[str, Any], timeouts: dict[str, float | None]
) -> None:
    """Give this attempt httpx timeouts no longer than the time left."""
    # anyway.remaining(), without reading the clock when there is no deadline.
    deadline_at = anyio.current_effective_deadline()
    if deadline_at == math.inf:
        return
    left = max(0.0, deadline_at - anyio.current_time())
    request.extensions = {
        **extensions,
        "timeout": {
            name: left if value is None or value > left else value
            for name, value in timeouts.items()
        },
    }


async def fetch_all(
    client: httpx.AsyncClient,
    urls_or_requests: Iterable[str | httpx.URL | httpx.Request],
    *,
    max_at_once: int = 10,
    limiter: LimiterArg = None,
    per_request_timeout: float | None = None,
) -> list[outcome.Outcome[httpx.Response]]:
    """Fetch every URL (``GET``) or send every ``httpx.Request`` with *client*,
    at most *max_at_once* at a time, and return one outcome per item, in input
    order (the partial-failure report)::

        results = await anyway.httpx.fetch_all(client, urls, max_at_once=20)
        pages = [r.value.json() for r in results if isinstance(r, outcome.Value)]
        failed = [r.error for r in results if isinstance(r, outcome.Error)]

    A success is ``outcome.Value(response)``, its body read. A failure is
    ``outcome.Error(exc)``: an error status (4xx or 5xx, after the client's
    transport stopped retrying) is an ``httpx.HTTPStatusError`` whose
    ``.response`` is read and usable; an unreachable host is the transport's
    error (``httpx.ConnectError``...). Redirects (3xx) that the client did
    not follow are values.

    *limiter* is entered around each request, per host, and accepts what
    :class:`ResilientTransport`'s does. *per_request_timeout* is a deadline
    in seconds for each request (all its retries included); one that expires
    is an ``Error(`` :class:`anyway.DeadlineExceeded` ``)``. Cancellation is
    never captured: it propagates, after every request in flight has been
    cancelled. Items are pulled lazily, as :func:`anyway.map` does.
    """
    max_at_once = check_count("max_at_once", max_at_once)
    if per_request_timeout is not None:
        per_request_timeout = check_seconds(
            "per_request_timeout",
            per_request_timeout,
            allow_zero=False,
            hint="; a deadline in seconds for each request, or None",
        )
    limit_for = _limiter_resolver(limiter)
    if isinstance(urls_or_requests, (str, bytes, httpx.URL, httpx.Request)):
        raise TypeError(
            f"urls_or_requests must be an iterable of URLs or requests, got {urls_or_requests!r}"
            " (wrap a single one in a list)"
        )

    async def fetch(item: str | httpx.URL | httpx.Request) -> httpx.Response:
        request = item if isinstance(item, httpx.Request) else client.build_request("GET", item)
        with deadline(per_request_timeout) if per_request_timeout else nullcontext():
            limit = limit_for(default_key(request)) if limit_for is not None else None
            if limit is None:
                response = await client.send(request)
            else:
                async with limit:
                    response = await client.send(request)
        if response.is_error:
            response.raise_for_status()
        return response

    return await map_all(fetch, urls_or_requests, max_at_once=max_at_once, return_exceptions=True)
