""":func:`fetch_all`: a batch of requests, bounded concurrency, one outcome per
request in input order (the seeds' partial-failure report), and a batch
timeout that keeps what finished."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from operator import itemgetter
from typing import Any

import anyio
import httpx
import outcome

from . import DeadlineExceeded, deadline, map_all
from ._http_hosts import LimiterArg, default_key, limiter_resolver
from ._util import short_repr
from ._validate import check_count, check_seconds

__all__ = ["fetch_all"]


def _check_client(client: object) -> httpx.AsyncClient:
    if isinstance(client, httpx.AsyncClient):
        return client
    if isinstance(client, httpx.Client):
        raise TypeError(
            "fetch_all needs an httpx.AsyncClient, got a sync httpx.Client: it would block the"
            " event loop for every request. Use async with httpx.AsyncClient() as client:"
            " await anyway.httpx.fetch_all(client, urls)"
        )
    raise TypeError(
        f"client must be an httpx.AsyncClient, got {short_repr(client, 80)}"
        f" ({type(client).__name__})"
    )


async def fetch_all(
    client: httpx.AsyncClient,
    urls_or_requests: Iterable[str | httpx.URL | httpx.Request],
    *,
    max_at_once: int = 10,
    limiter: LimiterArg = None,
    per_request_timeout: float | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - a batch timeout keeping partial results
) -> list[outcome.Outcome[httpx.Response]]:
    """Fetch every URL (``GET``) or send every ``httpx.Request`` with *client*
    (an ``httpx.AsyncClient``), at most *max_at_once* at a time, and return
    one outcome per item, in input order (the partial-failure report)::

        results = await anyway.httpx.fetch_all(client, urls, max_at_once=20, timeout=10)
        pages = [r.value.json() for r in results if isinstance(r, outcome.Value)]
        failed = [r.error for r in results if isinstance(r, outcome.Error)]

    A success is ``outcome.Value(response)``, its body read. A failure is
    ``outcome.Error(exc)``: an error status (4xx or 5xx, after the client's
    transport stopped retrying) is an ``httpx.HTTPStatusError`` whose
    ``.response`` is read and usable; an unreachable host is the transport's
    error (``httpx.ConnectError``...). Redirects (3xx) that the client did
    not follow are values.

    *timeout* bounds the whole batch, in seconds: one slow host does not
    cost the others' results. When it expires, the requests still running
    are cancelled (their connections cleaned up before ``fetch_all``
    returns) and the requests not sent yet are never sent; both get
    ``Error(`` :class:`anyway.DeadlineExceeded` ``)``. The outcomes that were
    finished are kept, and ``fetch_all`` returns normally. (An
    ``anyway.deadline`` around ``fetch_all`` instead would raise and lose
    every result.)

    *per_request_timeout* is a deadline in seconds for each request (all its
    retries included); one that expires is an ``Error(DeadlineExceeded)``
    too. *limiter* is entered around each request, per host, and accepts
    what :class:`ResilientTransport`'s does.

    Cancellation from outside is never captured: it propagates, after every
    request in flight has been cancelled. Items are pulled lazily, as
    :func:`anyway.map` does; every item gets an outcome, so the iterable must
    be finite.
    """
    _check_client(client)
    max_at_once = check_count("max_at_once", max_at_once)
    if per_request_timeout is not None:
        per_request_timeout = check_seconds(
            "per_request_timeout",
            per_request_timeout,
            allow_zero=False,
            hint="; a deadline in seconds for each request, or None",
        )
    if timeout is not None:
        timeout = check_seconds(
            "timeout",
            timeout,
            allow_zero=False,
            hint="; the seconds the whole batch may take, or None",
        )
    limit_for = limiter_resolver(limiter)
    if isinstance(urls_or_requests, (str, bytes, httpx.URL, httpx.Request)):
        raise TypeError(
            f"urls_or_requests must be an iterable of URLs or requests, got {urls_or_requests!r}"
            " (wrap a single one in a list)"
        )

    async def send(request: httpx.Request) -> httpx.Response:
        limit: AbstractAsyncContextManager[Any] | None = None
        with deadline(per_request_timeout) if per_request_timeout else nullcontext():
            if limit_for is not None:
                limit = limit_for(default_key(request))
            if limit is None:
                response = await client.send(request)
            else:
                async with limit:
                    response = await client.send(request)
        if response.is_error:
            response.raise_for_status()
        return response

    def build(item: str | httpx.URL | httpx.Request) -> httpx.Request:
        return item if isinstance(item, httpx.Request) else client.build_request("GET", item)

    if timeout is None:

        async def fetch(item: str | httpx.URL | httpx.Request) -> httpx.Response:
            return await send(build(item))

    else:
        end = anyio.current_time() + timeout

        def expired(what: str) -> DeadlineExceeded:
            return DeadlineExceeded(
                f"fetch_all(timeout={timeout:g}) expired before this request {what}",
                seconds=timeout,
            )

        async def fetch(item: str | httpx.URL | httpx.Request) -> httpx.Response:
            request = build(item)
            if anyio.current_time() >= end:
                raise expired("was sent")
            with anyio.CancelScope(deadline=end):
                return await send(request)
            raise expired("finished")

    async def fetch_one(
        pair: tuple[int, str | httpx.URL | httpx.Request],
    ) -> tuple[int, outcome.Outcome[httpx.Response]]:
        index, item = pair
        try:
            return index, outcome.Value(await fetch(item))
        except Exception as exc:  # cancellation is not an Exception: it propagates
            return index, outcome.Error(exc)

    # Unordered: a slow request must not hold back the ones behind it (an
    # ordered map starts at most max_at_once items past the oldest unfinished).
    done = await map_all(
        fetch_one, enumerate(urls_or_requests), max_at_once=max_at_once, ordered=False
    )
    done.sort(key=itemgetter(0))
    return [result for _, result in done]
