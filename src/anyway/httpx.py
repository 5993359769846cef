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
except ImportError as exc:
    raise ImportError(
        'anyway.httpx needs httpx: pip install "anyway[httpx]" (or pip install httpx)'
    ) from exc

from ._http_fetch import fetch_all
from ._http_hosts import BreakerArg, KeyedLimiter, LimiterArg, default_key
from ._http_policy import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRY_METHODS,
    DEFAULT_RETRY_STATUSES,
    POLICY_EXTENSION,
    RETRY_ERRORS,
    Policy,
    retry_after,
)
from ._http_transport import ResilientTransport

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "POLICY_EXTENSION",
    "RETRY_ERRORS",
    "BreakerArg",
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
