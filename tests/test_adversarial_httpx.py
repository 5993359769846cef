"""Adversarial probes of anyway.httpx: predicates that return coroutines,
hooks and predicates that raise, a Retry-After wait under a deadline, a
wrapped transport that raises a BaseException."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import anyio
import httpx
import outcome
import pytest

import anyway
import httpx_support
from anyway.httpx import ResilientTransport, fetch_all
from httpx_support import Events, client_for, mock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = httpx_support.events  # a fixture


class Stop(BaseException):
    """A KeyboardInterrupt-like BaseException raised by user code."""


async def _is_bad(response: httpx.Response) -> bool:
    return False


async def test_a_retry_if_response_returning_a_coroutine_is_a_type_error() -> None:
    # lambda r: is_bad(r) around an async is_bad: the coroutine is truthy, so
    # every response looked retryable, and it was never awaited.
    calls: list[httpx.Request] = []
    transport = ResilientTransport(mock([200], calls=calls), retry_if_response=lambda r: _is_bad(r))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with client_for(transport) as client:
            with pytest.raises(TypeError, match="plain function"):
                await client.get("/")
        gc.collect()
    assert len(calls) == 1


async def test_a_retry_if_response_error_propagates_after_one_attempt() -> None:
    calls: list[httpx.Request] = []

    def broken(response: httpx.Response) -> bool:
        raise ValueError("predicate bug")

    transport = ResilientTransport(mock([200], calls=calls), retry_if_response=broken)
    async with client_for(transport) as client:
        with pytest.raises(ValueError, match="predicate bug"):
            await client.get("/")
    assert len(calls) == 1


async def test_a_hook_error_during_a_retry_after_wait_keeps_the_response_closed(
    clock: Any,
) -> None:
    responses: list[httpx.Response] = []

    def handler(request: httpx.Request) -> httpx.Response:
        response = httpx.Response(503, headers={"Retry-After": "1"}, content=b"busy")
        responses.append(response)
        return response

    def broken_hook(event: anyway.PolicyEvent) -> None:
        raise ValueError("hook bug")

    transport = ResilientTransport(httpx.MockTransport(handler), hooks=broken_hook)
    async with client_for(transport) as client:
        with pytest.raises(ValueError, match="hook bug"):
            await client.get("/")
    assert len(responses) == 1
    assert responses[0].is_closed


async def test_a_retry_after_beyond_the_deadline_returns_the_response_at_once(
    clock: Any, events: Events
) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([503], headers={"Retry-After": "30"}, calls=calls), hooks=events
    )
    start = clock.now()
    async with client_for(transport) as client:
        with anyway.deadline(5):
            response = await client.get("/")
    assert response.status_code == 503
    assert response.content == b"body"  # read, and still usable
    assert len(calls) == 1
    assert clock.now() - start == clock.approx(0)
    [gave_up] = events.gave_up
    assert "caller's deadline" in gave_up.reason


async def test_fetch_all_with_a_base_exception_from_the_transport_propagates() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/stop":
            raise Stop()
        return httpx.Response(200)

    async with client_for(httpx.MockTransport(handler)) as client:
        with pytest.raises((Stop, BaseExceptionGroup)) as info:
            await fetch_all(client, ["/a", "/stop", "/b"])
    if isinstance(info.value, BaseExceptionGroup):
        assert info.value.subgroup(Stop) is not None


async def test_fetch_all_under_a_deadline_loses_no_request_and_sends_nothing_late(
    clock: Any,
) -> None:
    sent: list[float] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        sent.append(anyio.current_time())
        await anyio.sleep(1)
        return httpx.Response(200)

    start = clock.now()
    async with client_for(httpx.MockTransport(slow)) as client:
        results = await fetch_all(client, [f"/{n}" for n in range(10)], max_at_once=2, timeout=2.5)
    assert clock.now() - start == clock.approx(2.5)
    assert len(results) == 10
    expired = [r for r in results if isinstance(r, outcome.Error)]
    assert all(isinstance(r.error, anyway.DeadlineExceeded) for r in expired)
    assert len(expired) == 6
    assert len(sent) == 6  # 2 at 0, 2 at 1, 2 at 2: none after the timeout


@pytest.mark.parametrize("cls", [anyway.RateLimiter, anyway.KeyedRateLimiter, anyway.Bulkhead])
async def test_a_limiter_class_instead_of_an_instance_fails_at_the_call(cls: type) -> None:
    # Was accepted, then every request failed (as an Error outcome in fetch_all).
    with pytest.raises(TypeError, match="must be an instance, got the class"):
        ResilientTransport(mock([200]), limiter=cls)
    async with client_for(mock([200])) as client:
        with pytest.raises(TypeError, match="must be an instance, got the class"):
            await fetch_all(client, ["/"], limiter=cls)
