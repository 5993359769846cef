"""What :class:`anyway.httpx.ResilientTransport` retries, and how: one
immutable :class:`Policy`, validated once, shared by a transport's requests
or given to one request through its ``extensions``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Final

import httpx

from . import Backoff, Hook, Retry, RetryBudget
from ._http_retry_after import parse_retry_after
from ._util import is_async_function, name_of, short_repr
from ._validate import (
    ExceptionFilter,
    check_callable,
    check_count,
    check_exception_filter,
    check_seconds,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "POLICY_EXTENSION",
    "RETRY_ERRORS",
    "Policy",
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
#: The transport errors that are retried by default (see ``retry_on``):
#: timeouts (connect, read, write, pool), network errors (refused, reset,
#: broken pipe) and a server that hung up mid-answer. Local protocol errors,
#: unsupported schemes and proxy errors are bugs or configuration: they are
#: raised at once.
RETRY_ERRORS: Final[tuple[type[httpx.TransportError], ...]] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
#: The ``request.extensions`` key of a per-request :class:`Policy`.
POLICY_EXTENSION: Final = "anyway.policy"

_UNSET: Any = object()
_FIELDS: Final = (
    "attempts",
    "backoff",
    "retry_statuses",
    "retry_methods",
    "retry_on",
    "retry_if_response",
    "max_retry_after",
    "respect_retry_after",
    "budget",
    "hooks",
)


def retry_after(response: httpx.Response, *, now: Any = None) -> float | None:
    """The seconds that *response*'s ``Retry-After`` header asks to wait, or
    ``None`` when it has none or it is malformed.

    Both forms of RFC 9110 are understood: delay seconds (``"120"``, ASCII
    digits only; a decimal fraction such as ``"1.5"`` is accepted too) and an
    HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``). A date is measured from
    the response's own ``Date`` header when it has a valid one (so that clock
    skew between client and server does not matter), else from *now* (an
    aware :class:`~datetime.datetime`; default: the wall clock); a date in the
    past means ``0.0``. The value is not capped here (it may be huge, even
    ``inf``): :class:`ResilientTransport` caps it at ``max_retry_after``.
    """
    value = response.headers.get("retry-after")
    if value is None:
        return None
    return parse_retry_after(value, response.headers.get("date"), now)


class Policy:
    """How a :class:`ResilientTransport` retries a request (see its options,
    which build one). Immutable; :meth:`replace` makes a changed copy, e.g.
    for one request::

        no_retry = transport.policy.replace(attempts=1)
        await client.post(url, extensions={anyway.httpx.POLICY_EXTENSION: no_retry})
    """

    __slots__ = (
        "_attempts",
        "_backoff",
        "_budget",
        "_hooks",
        "_max_retry_after",
        "_respect_retry_after",
        "_retry",
        "_retry_if_response",
        "_retry_methods",
        "_retry_on",
        "_retry_statuses",
    )

    _attempts: int
    _backoff: Backoff
    _budget: RetryBudget | None
    _hooks: Iterable[Hook] | Hook
    _max_retry_after: float
    _respect_retry_after: bool
    _retry: Retry
    _retry_if_response: Callable[[httpx.Response], object] | None
    _retry_methods: frozenset[str]
    _retry_on: ExceptionFilter
    _retry_statuses: frozenset[int]

    def __init__(
        self,
        *,
        attempts: int = 3,
        backoff: Backoff = DEFAULT_BACKOFF,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        retry_methods: Iterable[str] = DEFAULT_RETRY_METHODS,
        retry_on: ExceptionFilter = RETRY_ERRORS,
        retry_if_response: Callable[[httpx.Response], object] | None = None,
        max_retry_after: float = 60.0,
        respect_retry_after: bool = True,
        budget: RetryBudget | None = None,
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        setter = object.__setattr__
        setter(
            self,
            "_attempts",
            check_count("attempts", attempts, hint="; use attempts=1 to never retry"),
        )
        setter(self, "_retry_statuses", _check_statuses(retry_statuses))
        setter(self, "_retry_methods", _check_methods(retry_methods))
        check_exception_filter("retry_on", retry_on)
        setter(self, "_retry_on", retry_on)
        if retry_if_response is not None:
            check_callable("retry_if_response", retry_if_response)
            if is_async_function(retry_if_response):
                raise TypeError(
                    "retry_if_response must be a plain (sync) function response -> bool, got"
                    f" the async function {name_of(retry_if_response)}: the response's body"
                    " is already read when it is called (response.text, response.json())"
                )
        setter(self, "_retry_if_response", retry_if_response)
        setter(
            self,
            "_max_retry_after",
            check_seconds(
                "max_retry_after",
                max_retry_after,
                hint=" (the longest Retry-After wait honoured, in seconds)",
            ),
        )
        if not isinstance(respect_retry_after, bool):
            raise TypeError(
                f"respect_retry_after must be True or False, got {short_repr(respect_retry_after)}"
            )
        setter(self, "_respect_retry_after", respect_retry_after)
        setter(self, "_budget", budget)
        setter(self, "_hooks", hooks)
        # Validates backoff, budget and hooks. No timeout of its own:
        # deadlines come from the caller (anyway.deadline, anyway.Budget...).
        setter(
            self,
            "_retry",
            Retry(
                on=retry_on,
                attempts=self._attempts,
                timeout=None,
                backoff=backoff,
                retry_if_result=self._verdict,
                hooks=hooks,
                budget=budget,
            ),
        )
        setter(self, "_backoff", backoff)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace({name}=...)")

    def replace(self, **changes: Any) -> Policy:
        """A copy with *changes* (the constructor's options), validated."""
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise TypeError(
                f"Policy.replace() got unknown options {', '.join(unknown)}; the options are"
                f" {', '.join(_FIELDS)}"
            )
        options = {name: getattr(self, f"_{name}") for name in _FIELDS}
        return Policy(**{**options, **changes})

    def __repr__(self) -> str:
        parts = [
            f"attempts={self._attempts}",
            f"backoff={self._backoff!r}",
            f"retry_statuses={tuple(sorted(self._retry_statuses))}",
            f"max_retry_after={self._max_retry_after:g}",
        ]
        if self._retry_methods != DEFAULT_RETRY_METHODS:
            parts.append(f"retry_methods={tuple(sorted(self._retry_methods))}")
        if self._retry_on is not RETRY_ERRORS:
            parts.append(f"retry_on={short_repr(self._retry_on, 80)}")
        if self._retry_if_response is not None:
            parts.append(f"retry_if_response={name_of(self._retry_if_response)}")
        if not self._respect_retry_after:
            parts.append("respect_retry_after=False")
        return " ".join(parts)

    @property
    def attempts(self) -> int:
        """The most times a request is sent (``1``: never retried)."""
        return self._attempts

    @property
    def retry(self) -> Retry:
        """The :class:`anyway.Retry` policy that runs the attempts."""
        return self._retry

    def retries(self, request: httpx.Request) -> bool:
        """Whether *request* may be sent more than once: its method is one of
        ``retry_methods`` and its body can be sent again (a body held in
        memory, or none; a streaming body is consumed by the first try)."""
        return self._attempts > 1 and self.replayable(request)

    def replayable(self, request: httpx.Request) -> bool:
        """Whether *request* may be sent more than once, whatever ``attempts``
        says (what a hedger asks): its method is one of ``retry_methods`` and
        its body is held in memory (or it has none)."""
        return request.method in self._retry_methods and isinstance(
            request.stream, httpx.ByteStream
        )

    def may_retry(self, response: httpx.Response) -> bool:
        """Whether *response* may be retried (its body must be read first)."""
        return response.status_code in self._retry_statuses or self._retry_if_response is not None

    def counts_as_failure(self, response: httpx.Response) -> bool:
        """Whether a breaker counts *response* as a failure: a retryable 5xx."""
        status = response.status_code
        return status >= 500 and status in self._retry_statuses

    def _verdict(self, response: httpx.Response) -> bool | float:
        """``retry_if_result``: is this response retried, and after how long?"""
        if response.status_code not in self._retry_statuses:
            check = self._retry_if_response
            if check is None:
                return False
            verdict = check(response)
            if inspect.isawaitable(verdict):  # e.g. lambda r: is_bad(r) around an async is_bad
                if inspect.iscoroutine(verdict):
                    verdict.close()  # it will never run: no "never awaited" warning
                raise TypeError(
                    f"retry_if_response {name_of(check)} returned {short_repr(verdict, 60)},"
                    " which cannot be awaited here (it is always true): make it a plain"
                    " function, not an async def or a lambda around one; the body is already"
                    " read (response.text, response.json())"
                )
            if not verdict:
                return False
        if not self._respect_retry_after:
            return True  # the backoff's turn
        wait = retry_after(response)
        if wait is None:
            return True
        return min(wait, self._max_retry_after)


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
        if not isinstance(method, str) or not method.isascii() or not method.isalpha():
            raise ValueError(
                f"retry_methods must hold method names such as 'GET', got {method!r} in {value!r}"
            )
        methods.add(method.upper())
    return frozenset(methods)
