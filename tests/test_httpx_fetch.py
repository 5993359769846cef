"""anyway.httpx.fetch_all over ``httpx.MockTransport``, on virtual time:
durations are exact. (Against a real server: tests/test_httpx_real.py.)"""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import outcome
import pytest

from anyway import Backoff, DeadlineExceeded, KeyedRateLimiter
from anyway.httpx import ResilientTransport, fetch_all
from httpx_support import client_for, mock

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


# --- MockTransport, virtual time ----------------------------------------------------


async def test_fetch_all_bad_input() -> None:
    async with client_for(mock([200])) as client:
        with pytest.raises(ValueError, match="max_at_once must be >= 1"):
            await fetch_all(client, ["/"], max_at_once=0)
        with pytest.raises(ValueError, match="per_request_timeout must be > 0"):
            await fetch_all(client, ["/"], per_request_timeout=0)
        with pytest.raises(TypeError, match="wrap a single one in a list"):
            await fetch_all(client, "http://api.test/")
        with pytest.raises(TypeError, match="limiter must be a keyed limiter"):
            await fetch_all(client, ["/"], limiter=3)  # type: ignore[arg-type]


# --- fetch_all on MockTransport --------------------------------------------------


async def test_fetch_all_takes_requests_urls_and_a_limiter(clock: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"Location": "/"})
        return httpx.Response(
            200, json={"method": request.method, "body": request.content.decode()}
        )

    limiter = KeyedRateLimiter(1, per=1.0)
    async with client_for(httpx.MockTransport(handler)) as client:
        items: list[str | httpx.URL | httpx.Request] = [
            client.build_request("POST", "/", content=b"hello"),
            "http://api.test/a",
            httpx.URL("http://other.test/"),
            "http://api.test/moved",
        ]
        start = clock.now()
        results = await fetch_all(client, iter(items), limiter=limiter, max_at_once=4)
        elapsed = clock.now() - start
    post, first, other, moved = (r.unwrap() for r in results)
    assert json.loads(post.content) == {"method": "POST", "body": "hello"}
    assert first.json()["method"] == "GET"
    assert other.status_code == 200
    assert moved.status_code == 302  # a redirect is not an error
    # Three requests to api.test at 1 per second, other.test in parallel.
    assert elapsed == clock.approx(2.0)


async def test_fetch_all_captures_errors_but_not_cancellation(clock: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/boom":
            raise ValueError("not an HTTP error")
        await anyio.sleep(10)
        return httpx.Response(200)

    async with client_for(httpx.MockTransport(handler)) as client:
        with anyio.move_on_after(1) as scope:
            await fetch_all(client, ["/boom", "/slow"])
        assert scope.cancelled_caught
        (boom,) = await fetch_all(client, ["/boom"])
    assert isinstance(boom, outcome.Error)
    assert isinstance(boom.error, ValueError)


def sleepy(cleaned: list[str]) -> httpx.MockTransport:
    """/sleep/S answers after S seconds; a cancelled one records its cleanup."""

    async def handler(request: httpx.Request) -> httpx.Response:
        try:
            await anyio.sleep(float(request.url.path.rsplit("/", 1)[1]))
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # cleanup that awaits
                cleaned.append(request.url.path)
            raise
        return httpx.Response(200, text=request.url.path)

    return httpx.MockTransport(handler)


async def test_fetch_all_timeout_exact(clock: Any) -> None:
    cleaned: list[str] = []
    paths = ["/sleep/1", "/sleep/10", "/sleep/2", "/sleep/4", "/sleep/1"]
    async with client_for(sleepy(cleaned)) as client:
        start = clock.now()
        results = await fetch_all(client, paths, max_at_once=2, timeout=5)
        assert clock.now() - start == clock.approx(5.0)
        # Both cancelled requests had cleaned up when fetch_all returned.
        assert sorted(cleaned) == ["/sleep/10", "/sleep/4"]
    # 0-1: /1 and /10; 1-3: /2; 3-7: /4 (cut at 5); the last /1 never starts.
    first, slow, second, cut, unsent = results
    assert first.unwrap().text == "/sleep/1"
    assert second.unwrap().text == "/sleep/2"
    for result, what in ((slow, "finished"), (cut, "finished"), (unsent, "was sent")):
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, DeadlineExceeded)
        assert str(result.error).endswith(f"before this request {what}")


async def test_a_slow_request_does_not_hold_back_the_others(clock: Any) -> None:
    paths = ["/sleep/10", "/sleep/1", "/sleep/1", "/sleep/1"]
    async with client_for(sleepy([])) as client:
        slow, *fast = await fetch_all(client, paths, max_at_once=2, timeout=3.5)
        assert clock.now() == clock.approx(3.5)
    # One slot stays busy with the slow one; the other serves the rest in turn.
    assert [r.unwrap().text for r in fast] == ["/sleep/1"] * 3
    assert isinstance(slow, outcome.Error)
    assert isinstance(slow.error, DeadlineExceeded)


async def test_fetch_all_timeout_cancels_waits_for_the_limiter(clock: Any) -> None:
    calls: list[httpx.Request] = []
    limiter = KeyedRateLimiter(1, per=10.0)
    async with client_for(mock([200], calls=calls)) as client:
        start = clock.now()
        results = await fetch_all(client, ["/a", "/b", "/c"], limiter=limiter, timeout=3)
        assert clock.now() - start == clock.approx(3.0)
    # One request got the limiter's only token (which one is up to the
    # scheduler: Trio randomizes); the others waited, and were never sent.
    (sent,) = [r.unwrap() for r in results if isinstance(r, outcome.Value)]
    assert sent.status_code == 200
    errors = [r.error for r in results if isinstance(r, outcome.Error)]
    assert len(errors) == 2
    assert all(isinstance(error, DeadlineExceeded) for error in errors)
    assert len(calls) == 1  # the others were never sent


async def test_fetch_all_timeout_bounds_the_transport_retries(clock: Any) -> None:
    calls: list[httpx.Request] = []
    transport = ResilientTransport(
        mock([503], calls=calls), attempts=10, backoff=Backoff(initial=1.0, max=1.0, jitter=None)
    )
    async with client_for(transport) as client:
        start = clock.now()
        (result,) = await fetch_all(client, ["/"], timeout=2.5)
        # Attempts at 0, 1 and 2; a third wait of 1 s would cross 2.5: the
        # transport stops at once, with the last response.
        assert clock.now() - start == clock.approx(2.0)
    assert len(calls) == 3
    assert isinstance(result, outcome.Error)
    assert isinstance(result.error, httpx.HTTPStatusError)
    assert result.error.response.status_code == 503


async def test_fetch_all_timeout_bad_input() -> None:
    async with client_for(mock([200])) as client:
        for bad, error in (
            (0, ValueError),
            (-1, ValueError),
            (float("nan"), ValueError),
            ("5", TypeError),
        ):
            with pytest.raises(error, match="timeout must be"):
                await fetch_all(client, ["/"], timeout=bad)  # type: ignore[arg-type]
