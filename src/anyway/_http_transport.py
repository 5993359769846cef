""":class:`ResilientTransport`: the retry loop, per-host limits and breakers
and deadline-capped timeouts around any ``httpx.AsyncBaseTransport``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from types import TracebackType
from typing import Any, Final, NoReturn

import anyio
import httpx

from . import Backoff, Hook, Retry, RetryBudget
from ._http_hedge import close_response, send_hedged
from ._http_hosts import (
    BreakerArg,
    HedgerArg,
    HostBreakers,
    LimiterArg,
    default_key,
    hedger_resolver,
    limiter_resolver,
)
from ._http_policy import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRY_METHODS,
    DEFAULT_RETRY_STATUSES,
    POLICY_EXTENSION,
    RETRY_ERRORS,
    Policy,
)
from ._util import call_async, short_repr, yield_to_deadline
from ._validate import ExceptionFilter, check_sync_function

__all__ = ["ResilientTransport"]

# A capped socket timeout firing this close before the deadline is the deadline.
_DEADLINE_SLACK: Final = 0.05
_NONE_CAPPED: Final[frozenset[str]] = frozenset()
_TIMEOUT_KINDS: Final[dict[type[BaseException], str]] = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}

#: Where a wrapped transport's sync ``handle_async_request`` is reported.
_SEND: Final = "transport.handle_async_request"

_SYNC_CLIENT: Final = (
    "ResilientTransport is an async transport: use it with httpx.AsyncClient"
    " (async with httpx.AsyncClient(transport=transport) as client: ...), not httpx.Client"
)


class _StatusFailure(httpx.HTTPStatusError):
    """Raised inside a breaker so that a retryable 5xx counts as a failure."""


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
        await close_response(response)


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
    * What is retried: the errors *retry_on* matches (an exception type, a
      tuple of them or a predicate; default :data:`RETRY_ERRORS`:
      connect/read/write/pool timeouts, refused or reset connections, a
      server that hung up), responses whose status is in *retry_statuses*,
      and responses for which *retry_if_response* (a sync function
      ``response -> bool``, given the response with its body read) is true.
      Such a response is read in full and closed by the transport, so its
      connection goes back to the pool, and the last one is still readable
      when retrying stops. Cancellation is never retried.
    * The wait is the server's ``Retry-After`` (seconds or an HTTP date, see
      :func:`retry_after`) when the response has a valid one, capped at
      *max_retry_after*; else the next *backoff* delay. With
      ``respect_retry_after=False`` the header is ignored (a hostile or buggy
      server): always the backoff.
    * The httpx timeouts of each attempt (connect, read, write, pool) are
      capped at :func:`anyway.remaining`, so a deadline around the call
      bounds every socket wait, and a wait that would reach the caller's
      deadline is not started: retrying stops at once.
    * When retrying stops, the last response is returned as it is (so
      ``raise_for_status()`` sees it), or the last error is raised as itself
      with notes saying how many attempts were made and why it stopped.

    These options make the transport's :attr:`policy`; one request can use
    another one through its extensions:
    ``client.get(url, extensions={anyway.httpx.POLICY_EXTENSION:
    transport.policy.replace(attempts=1)})``.

    The retry loop is :func:`anyway.retry`'s, so :func:`anyway.testing.no_backoff`
    applies, *budget* (a :class:`anyway.RetryBudget`) can cap retries across
    callers, and *hooks* receive :class:`anyway.RetryScheduled` and
    :class:`anyway.RetryGaveUp` events whose ``policy`` is ``"METHOD url"``
    (without the query string, which may hold credentials).

    *limiter*, *breaker* and *hedger* apply per host (see *key*), around
    every attempt: breaker outside, then the hedger, then the limiter (each
    hedged copy passes it), as in :func:`anyway.resilient`.

    *limiter*
        A keyed limiter such as :class:`anyway.KeyedRateLimiter` (used as
        ``limiter.limit(host)``) or an :class:`anyway.PerKey` of limiters
        (``anyway.PerKey(lambda host: anyway.AdaptiveLimiter(name=host))``:
        each host gets its own, learning its own capacity), one async context
        manager shared by every host (e.g. :class:`anyway.RateLimiter`), or a
        function ``host -> async context manager | None``.
    *hedger*
        An :class:`anyway.PerKey` of :class:`anyway.Hedger`
        (``anyway.PerKey(lambda host: anyway.Hedger())``: each host learns
        its own latency), or a function ``host -> Hedger | None``. Only
        requests that may be sent twice are hedged: a method in
        *retry_methods* and a body held in memory. Each attempt is hedged
        on its own; the first response wins whatever its status (the retry
        loop then judges it), the losers are cancelled and their responses
        closed before the attempt returns, and the breaker counts the
        attempt once. When every copy fails, the first copy's error is
        raised (with a note per other copy's error). A copy's error that is
        not an ``httpx.TransportError`` or an :class:`anyway.Rejected` (a
        bug) ends the attempt at once and is raised, as without hedging.
    *breaker*
        A :class:`anyway.CircuitBreaker` used as a template: each host gets
        its own breaker with the same settings (named ``"<name>:<host>"``).
        Or a factory ``host -> breaker | None``, or a mapping
        ``{host: breaker}``. A retryable 5xx counts as a failure, as do the
        transport errors; a 4xx does not. While a host's circuit is open its
        requests raise :class:`anyway.CircuitOpen` without being sent.
    *max_breakers*
        The breakers made by a template or factory are kept per host; past
        *max_breakers* hosts, those that remember nothing (a closed circuit
        not used since the last sweep, no request in flight) are dropped,
        so a crawler meeting thousands of hosts keeps bounded memory (at
        most about twice *max_breakers* hosts). ``None`` keeps them all.
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
        retry_on: ExceptionFilter = RETRY_ERRORS,
        retry_if_response: Callable[[httpx.Response], object] | None = None,
        max_retry_after: float = 60.0,
        respect_retry_after: bool = True,
        limiter: LimiterArg = None,
        breaker: BreakerArg = None,
        hedger: HedgerArg = None,
        key: Callable[[httpx.Request], str] = default_key,
        budget: RetryBudget | None = None,
        hooks: Iterable[Hook] | Hook = (),
        max_breakers: int | None = 1000,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                "transport must be an httpx.AsyncBaseTransport such as"
                f" httpx.AsyncHTTPTransport(), got {short_repr(transport, 80)} (ResilientTransport"
                " is for httpx.AsyncClient; a sync transport cannot be wrapped)"
            )
        self._policy = Policy(
            attempts=attempts,
            backoff=backoff,
            retry_statuses=retry_statuses,
            retry_methods=retry_methods,
            retry_on=retry_on,
            retry_if_response=retry_if_response,
            max_retry_after=max_retry_after,
            respect_retry_after=respect_retry_after,
            budget=budget,
            hooks=hooks,
        )
        self._limiter = limiter
        self._limit_for = limiter_resolver(limiter)
        self._breakers = HostBreakers(breaker, max_breakers)
        self._hedger = hedger
        self._hedger_for = hedger_resolver(hedger)
        self._plain = (
            self._limit_for is None and not self._breakers.enabled and self._hedger_for is None
        )
        self._key = check_sync_function(
            "key", key, argument="the request", example="key=lambda request: request.url.host"
        )
        # Last, so that bad arguments do not leave a connection pool behind.
        self._transport = httpx.AsyncHTTPTransport() if transport is None else transport

    # -- public surface ----------------------------------------------------

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The wrapped transport."""
        return self._transport

    @property
    def policy(self) -> Policy:
        """The :class:`Policy` (what is retried, and how) of every request
        that does not bring its own."""
        return self._policy

    @property
    def retry(self) -> Retry:
        """The :class:`anyway.Retry` policy that retries the requests."""
        return self._policy.retry

    @property
    def breakers(self) -> dict[str, AbstractAsyncContextManager[Any]]:
        """The breakers in use, by host (a snapshot)."""
        return self._breakers.snapshot()

    def __repr__(self) -> str:
        parts = [repr(self._policy)]
        if self._limiter is not None:
            parts.append(f"limiter={self._limiter!r}")
        if self._breakers.enabled:
            parts.append(f"breakers={self._breakers.describe()}")
        if self._hedger is not None:
            parts.append(f"hedger={self._hedger!r}")
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

    # What httpx.Client (the sync one) calls: a clear error, not an AttributeError.

    def handle_request(self, request: httpx.Request) -> NoReturn:
        """Refused: this transport is for ``httpx.AsyncClient``."""
        raise TypeError(_SYNC_CLIENT)

    def __enter__(self) -> NoReturn:
        raise TypeError(_SYNC_CLIENT)

    def close(self) -> NoReturn:
        """Refused: this transport is for ``httpx.AsyncClient`` (see :meth:`aclose`)."""
        raise TypeError(_SYNC_CLIENT)

    # -- sending -----------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request*, with the retries, limits and deadline described above."""
        extensions = request.extensions
        policy = extensions.get(POLICY_EXTENSION, self._policy)
        if policy.__class__ is not Policy:
            raise TypeError(
                f"request.extensions[{POLICY_EXTENSION!r}] must be an anyway.httpx.Policy"
                f" (e.g. transport.policy.replace(attempts=1)), got {short_repr(policy, 80)}"
            )
        timeouts: dict[str, float | None] | None = extensions.get("timeout")
        try:
            if not policy.retries(request):
                return await _send_capped(self, request, policy, extensions, timeouts)
            return await policy.retry.call(_Attempt(self, policy, request, extensions, timeouts))
        finally:
            # The caller's request keeps its own timeouts (it may be sent again).
            request.extensions = extensions

    async def _send_once(self, request: httpx.Request, policy: Policy) -> httpx.Response:
        """One attempt: breaker, then (in each hedged copy) limiter, then the
        wrapped transport."""
        send = self._transport.handle_async_request
        if self._plain:
            return await call_async(_SEND, send, request)
        key = self._key(request)
        hedger = None
        if self._hedger_for is not None and policy.replayable(request):
            hedger = self._hedger_for(key)
        limit = None
        if hedger is None and self._limit_for is not None:
            limit = self._limit_for(key)
        breaker, host = self._breakers.lookup(key)
        if breaker is None:
            if limit is None and hedger is None:
                return await call_async(_SEND, send, request)
            host = None
        elif host is not None:
            # In flight: a sweep leaves this host's breaker alone.
            host.used = True
            host.active += 1
        response: httpx.Response | None = None
        try:
            async with breaker if breaker is not None else nullcontext():
                if hedger is not None:
                    response = await send_hedged(hedger, _Copy(self, key, request))
                elif limit is None:
                    response = await call_async(_SEND, send, request)
                else:
                    async with limit:
                        response = await call_async(_SEND, send, request)
                if breaker is not None and policy.counts_as_failure(response):
                    # Counted as a failure; the response itself goes on.
                    raise _StatusFailure(
                        f"{response.status_code} {response.reason_phrase} from {key}",
                        request=request,
                        response=response,
                    )
        except _StatusFailure as failure:
            return failure.response
        except BaseException:
            # The answer came, then leaving the limiter or the breaker failed
            # (a hook raised or was cancelled): nobody will get the response,
            # so close it now (its connection goes back to the pool).
            if response is not None:
                await close_response(response)
            raise
        finally:
            if host is not None:
                host.active -= 1
        return response


class _Copy:
    """One hedged copy of an attempt: through the host's limiter (each copy
    is a request on the wire), then the wrapped transport."""

    __slots__ = ("_key", "_request", "_transport")

    def __init__(self, transport: ResilientTransport, key: str, request: httpx.Request) -> None:
        self._transport = transport
        self._key = key
        self._request = request

    def __getattr__(self, name: str) -> str:
        # The Hedger names its tasks and errors after the function it runs.
        if name in {"__qualname__", "__name__"}:
            return _policy_name(self._request)
        raise AttributeError(name)

    async def __call__(self) -> httpx.Response:
        transport = self._transport
        send = transport._transport.handle_async_request
        limit_for = transport._limit_for
        limit = limit_for(self._key) if limit_for is not None else None
        if limit is None:
            return await call_async(_SEND, send, self._request)
        response: httpx.Response | None = None
        try:
            async with limit:
                response = await call_async(_SEND, send, self._request)
        except BaseException:
            if response is not None:  # leaving the limiter failed: nobody gets it
                await close_response(response)
            raise
        return response


class _Attempt:
    """One attempt of a request, as the retry policy calls it."""

    __slots__ = ("_extensions", "_policy", "_request", "_timeouts", "_transport")

    def __init__(
        self,
        transport: ResilientTransport,
        policy: Policy,
        request: httpx.Request,
        extensions: dict[str, Any],
        timeouts: dict[str, float | None] | None,
    ) -> None:
        self._transport = transport
        self._policy = policy
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
        response = await _send_capped(
            self._transport, request, self._policy, self._extensions, self._timeouts
        )
        if self._policy.may_retry(response):
            # It may be retried: free its connection now. Read, it also stays
            # usable if it turns out to be the last one.
            await _read_and_close(response)
        return response


def _cap_timeouts(
    request: httpx.Request, extensions: dict[str, Any], timeouts: dict[str, float | None]
) -> frozenset[str]:
    """Give this attempt httpx timeouts no longer than the time left; return
    the kinds (``"read"``...) that were cut down to it."""
    # anyway.remaining(), without reading the clock when there is no deadline.
    deadline_at = anyio.current_effective_deadline()
    if deadline_at == math.inf:
        return _NONE_CAPPED
    left = max(0.0, deadline_at - anyio.current_time())
    capped = frozenset(name for name, value in timeouts.items() if value is None or value > left)
    request.extensions = {
        **extensions,
        "timeout": {name: left if name in capped else value for name, value in timeouts.items()},
    }
    return capped


async def _send_capped(
    transport: ResilientTransport,
    request: httpx.Request,
    policy: Policy,
    extensions: dict[str, Any],
    timeouts: dict[str, float | None] | None,
) -> httpx.Response:
    """One attempt with capped timeouts. A socket timeout that was cut down to
    the caller's deadline *is* that deadline: the caller gets the deadline's
    error (``anyway.DeadlineExceeded``, the timeout in its context), not an
    ``httpx.ReadTimeout`` that won the race against it by a hair."""
    capped = _cap_timeouts(request, extensions, timeouts) if timeouts else _NONE_CAPPED
    try:
        return await transport._send_once(request, policy)
    except httpx.TimeoutException as exc:
        if capped and _TIMEOUT_KINDS.get(type(exc)) in capped:
            deadline_at = anyio.current_effective_deadline()
            if deadline_at - anyio.current_time() <= _DEADLINE_SLACK:
                await yield_to_deadline(deadline_at)
        raise
