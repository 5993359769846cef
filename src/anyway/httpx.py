"""Resilient HTTP with `httpx <https://www.python-httpx.org/>`_ (the ``httpx``
extra: ``pip install "anyway[httpx]"``).

:class:`ResilientTransport` wraps any ``httpx.AsyncBaseTransport`` and adds,
per request: retries with backoff (idempotent methods, transport errors and
retryable statuses, ``Retry-After``), a per-host rate limiter and circuit
breaker, and httpx timeouts capped at the caller's deadline
(:func:`anyway.remaining`). :func:`fetch_all` fans a batch of requests out
with bounded concurrency and returns one outcome per request, in input order:
the partial-failure report, with a batch ``timeout=`` that keeps what
finished.

It runs wherever httpx runs: asyncio, uvloop and Trio (httpx's own transport
reaches the network through httpcore, on AnyIO).
"""

from __future__ import annotations

try:
    import httpx as _httpx  # noqa: F401 - only to explain a missing extra
except ImportError as _missing:
    raise ImportError(
        'anyway.httpx needs httpx: pip install "anyway[httpx]" (or pip install httpx)'
    ) from _missing

from typing import Final, TypeAlias

from . import _http_hosts, _http_policy
from ._http_fetch import fetch_all
from ._http_hosts import KeyedLimiter, default_key
from ._http_policy import Policy, retry_after
from ._http_transport import ResilientTransport

# The constants and aliases are documented here, where the docs look for them.

#: The idempotent methods (RFC 9110, section 9.2.2), retried by default.
DEFAULT_RETRY_METHODS: Final = _http_policy.DEFAULT_RETRY_METHODS
#: The statuses retried by default: 429 Too Many Requests and the 502, 503,
#: 504 family that means "try again later" (a 500 is usually a bug).
DEFAULT_RETRY_STATUSES: Final = _http_policy.DEFAULT_RETRY_STATUSES
#: The default waits between attempts: 0.1 s doubling up to 10 s, full jitter.
DEFAULT_BACKOFF: Final = _http_policy.DEFAULT_BACKOFF
#: The transport errors retried by default (``retry_on=``): timeouts
#: (connect, read, write, pool), network errors (refused, reset, broken pipe)
#: and a server that hung up mid-answer. Local protocol errors, unsupported
#: schemes and proxy errors are bugs or configuration: raised at once.
RETRY_ERRORS: Final = _http_policy.RETRY_ERRORS
#: The ``request.extensions`` key under which one request brings its own
#: :class:`Policy`: ``client.get(url, extensions={POLICY_EXTENSION: policy})``.
POLICY_EXTENSION: Final = _http_policy.POLICY_EXTENSION

LimiterArg: TypeAlias = _http_hosts.LimiterArg
"""What ``limiter=`` accepts: a keyed limiter (one limit per host), one async
context manager shared by every host, or a function ``host -> async context
manager`` (returning ``None``: no limit for that host)."""

HedgerArg: TypeAlias = _http_hosts.HedgerArg
"""What ``hedger=`` accepts: an :class:`anyway.PerKey` of
:class:`anyway.Hedger` (each host gets its own, and learns its own latency),
or a function ``host -> Hedger | None`` (``None``: that host is not hedged)."""

BreakerArg: TypeAlias = _http_hosts.BreakerArg
"""What ``breaker=`` accepts: a :class:`~anyway.CircuitBreaker` used as a
template (each host gets a breaker with its settings, see
:meth:`~anyway.CircuitBreaker.derive`), a factory ``host -> breaker`` (called
when a host has no breaker yet; the breaker is kept), or a mapping
``{host: breaker}``."""

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "POLICY_EXTENSION",
    "RETRY_ERRORS",
    "BreakerArg",
    "HedgerArg",
    "KeyedLimiter",
    "LimiterArg",
    "Policy",
    "ResilientTransport",
    "default_key",
    "fetch_all",
    "retry_after",
]

# Shown as anyway.httpx.X in reprs, tracebacks and the docs.
for _public in (KeyedLimiter, Policy, ResilientTransport, default_key, fetch_all, retry_after):
    _public.__module__ = __name__
del _public
