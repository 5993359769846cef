"""ResilientTransport with a Hedger and an AdaptiveLimiter per host, over
``httpx.MockTransport`` on virtual time: waits are exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import anyway
from anyway import AdaptiveLimiter, CircuitBreaker, CircuitOpen, Hedger, PerKey
from anyway.httpx import POLICY_EXTENSION, ResilientTransport

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


class Body(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


class Server:
    """A MockTransport whose answers take the given seconds, per host (in
    turn; the last one from then on). With *shielded*, an answer cannot be
    cancelled: it comes even after its copy lost. *fail* raises that error
    instead of answering."""

    def __init__(
        self,
        latencies: dict[str, list[float]],
        *,
        shielded: bool = False,
        fail: type[httpx.TransportError] | None = None,
        status: int = 200,
    ) -> None:
        self.latencies = {host: list(times) for host, times in latencies.items()}
        self.shielded = shielded
        self.fail = fail
        self.status = status
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []
        self.inside: dict[str, int] = {}
        self.most_inside: dict[str, int] = {}
        self.transport = httpx.MockTransport(self.handler)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        host = request.url.host
        times = self.latencies[host]
        latency = times.pop(0) if len(times) > 1 else times[0]
        self.inside[host] = self.inside.get(host, 0) + 1
        self.most_inside[host] = max(self.most_inside.get(host, 0), self.inside[host])
        try:
            with anyio.CancelScope(shield=self.shielded):
                await anyio.sleep(latency)
        finally:
            self.inside[host] -= 1
        if self.fail is not None:
            raise self.fail(f"failed after {latency}", request=request)
        # A streamed body, as from a network: open until read or closed.
        response = httpx.Response(self.status, stream=Body(f"{host} {latency}".encode()))
        self.responses.append(response)
        return response

    def sent(self, host: str) -> int:
        return sum(1 for r in self.requests if r.url.host == host)


def per_host_hedger(**options: Any) -> PerKey[Hedger]:
    options = {"quantile": 0.5, "max_extra": 1.0, "warmup": 3, **options}
    return PerKey(lambda host: Hedger(**options))


async def warm_up(client: httpx.AsyncClient, host: str, calls: int = 3) -> None:
    for _ in range(calls):
        response = await client.get(f"http://{host}/")
        assert response.status_code == 200


# --- hedging -----------------------------------------------------------------------


async def test_a_slow_answer_is_hedged_after_the_learned_delay(clock: Any) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 10.0, 1.0]})
    hedgers = per_host_hedger()
    transport = ResilientTransport(server.transport, hedger=hedgers)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        assert hedgers["a"].statistics().delay == clock.approx(1.0)
        start = clock.now()
        response = await client.get("http://a/")
    # The first copy (10 s) is hedged after 1 s; the second answers 1 s later.
    assert clock.now() - start == clock.approx(2.0)
    assert response.text == "a 1.0"
    assert len(server.requests) == 5
    stats = hedgers["a"].statistics()
    assert (stats.calls, stats.extra, stats.samples) == (4, 1, 4)
    # It learned the winning copy's own latency (1 s), not the call's (2 s).
    assert stats.delay == clock.approx(1.0)


async def test_each_host_learns_its_own_latency(clock: Any) -> None:
    server = Server({"a": [1.0], "b": [0.25]})
    hedgers = per_host_hedger()
    transport = ResilientTransport(server.transport, hedger=hedgers)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        assert hedgers["a"].statistics().delay == clock.approx(1.0)
        assert "b" not in hedgers
        await warm_up(client, "b", calls=2)  # b still warming up
        assert hedgers["b"].statistics().delay is None
        await warm_up(client, "b", calls=1)
    assert hedgers["b"].statistics().delay == clock.approx(0.25)
    assert hedgers["a"].statistics().delay == clock.approx(1.0)
    assert sorted(hedgers) == ["a", "b"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_requests_are_never_hedged(clock: Any, method: str) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 10.0]})
    hedgers = per_host_hedger()
    transport = ResilientTransport(server.transport, hedger=hedgers)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        start = clock.now()
        response = await client.request(method, "http://a/", content=b"x")
    assert response.status_code == 200
    assert clock.now() - start == clock.approx(10.0)
    assert len(server.requests) == 4
    assert hedgers["a"].statistics().calls == 3  # not even counted


async def test_retry_methods_decide_what_is_hedged(clock: Any) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 10.0, 1.0, 10.0]})
    transport = ResilientTransport(
        server.transport, hedger=per_host_hedger(), retry_methods={"GET", "POST"}
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        start = clock.now()
        await client.post("http://a/", content=b"declared safe to repeat")
        assert clock.now() - start == clock.approx(2.0)
        # One request can opt out through its policy.
        once = transport.policy.replace(retry_methods=())
        start = clock.now()
        await client.get("http://a/", extensions={POLICY_EXTENSION: once})
        assert clock.now() - start == clock.approx(10.0)


async def test_a_streaming_body_is_never_hedged(clock: Any) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 10.0]})
    transport = ResilientTransport(server.transport, hedger=per_host_hedger())

    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        start = clock.now()
        response = await client.put("http://a/", content=body())
    assert response.status_code == 200
    assert clock.now() - start == clock.approx(10.0)
    assert len(server.requests) == 4


async def test_losing_responses_are_closed_before_the_call_returns(clock: Any) -> None:
    # Shielded answers come even after their copy lost: the transport must
    # close them (their connections), and return only once they came.
    server = Server({"a": [1.0, 1.0, 1.0, 3.0, 1.0]}, shielded=True)
    transport = ResilientTransport(server.transport, hedger=per_host_hedger())
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        start = clock.now()
        response = await client.get("http://a/")
        # The second copy won at 2 s; the first answered at 3 s, then closed.
        assert clock.now() - start == clock.approx(3.0)
        assert response.text == "a 1.0"
    assert len(server.responses) == 5
    assert server.responses[3].is_closed  # the loser
    assert all(r.is_closed for r in server.responses)


async def test_cancelling_the_caller_mid_hedge_leaks_nothing(clock: Any) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 10.0, 10.0]})
    hedgers = per_host_hedger()
    limiters: PerKey[AdaptiveLimiter] = PerKey(lambda host: AdaptiveLimiter(name=host))
    transport = ResilientTransport(server.transport, hedger=hedgers, limiter=limiters)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        start = clock.now()
        with anyio.move_on_after(1.5) as scope:
            await client.get("http://a/")
        assert scope.cancelled_caught
        assert clock.now() - start == clock.approx(1.5)
        assert len(server.requests) == 5  # both copies were in flight
        assert server.inside["a"] == 0  # and both were cancelled
        stats = limiters["a"].statistics()
        assert (stats.in_flight, stats.waiting, stats.successes, stats.failures) == (0, 0, 3, 0)
        assert hedgers["a"].statistics().samples == 3  # a cancelled call teaches nothing


async def test_answers_that_come_after_the_caller_left_are_closed(clock: Any) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 2.0, 2.0]}, shielded=True)
    transport = ResilientTransport(server.transport, hedger=per_host_hedger())
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        with anyio.move_on_after(1.5):
            # The caller is cancelled at 1.5 s; whether the answer that came
            # at 2 s (shielded) is still delivered depends on the loop.
            await client.get("http://a/")
    assert len(server.responses) == 5
    assert all(r.is_closed for r in server.responses)


async def test_when_every_copy_fails_the_first_error_is_raised(clock: Any) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 3.0, 1.0]})
    hedgers = per_host_hedger()
    transport = ResilientTransport(server.transport, hedger=hedgers, attempts=1)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        server.fail = httpx.ConnectError
        start = clock.now()
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get("http://a/")
    # The second copy failed first (at 2 s): no third copy (attempts=2).
    assert clock.now() - start == clock.approx(3.0)
    assert str(caught.value) == "failed after 1.0"
    assert caught.value.__notes__ == [
        "Hedger copy #2",
        "another hedged copy also failed: ConnectError('failed after 3.0')",
    ]


async def test_a_failed_copy_is_replaced_at_once_and_errors_are_retried(clock: Any) -> None:
    server = Server({"a": [1.0]})
    transport = ResilientTransport(
        server.transport, hedger=per_host_hedger(), backoff=anyway.Backoff(initial=5.0, jitter=None)
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        server.fail = httpx.ConnectError
        start = clock.now()
        with anyio.move_on_after(1000):
            with pytest.raises(httpx.ConnectError):
                await client.get("http://a/")
    # Each attempt: copies at 0 and 1 s, both fail by 2 s; then 5 s and 10 s
    # of backoff between the 3 attempts.
    assert clock.now() - start == clock.approx(3 * 2.0 + 5.0 + 10.0)
    assert len(server.requests) == 3 + 6


async def test_the_first_response_wins_whatever_its_status(clock: Any) -> None:
    server = Server({"a": [1.0, 1.0, 1.0, 10.0, 1.0, 1.0]})
    transport = ResilientTransport(server.transport, hedger=per_host_hedger(), attempts=1)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        server.status = 503
        response = await client.get("http://a/")
    assert response.status_code == 503
    assert response.text == "a 1.0"


# --- composition -------------------------------------------------------------------


async def test_each_copy_passes_the_hosts_limiter(clock: Any) -> None:
    # A limit of one: the hedged copy waits for the first to finish, so the
    # host never sees more requests at once than its limiter allows.
    server = Server({"a": [1.0, 1.0, 1.0, 10.0, 1.0]})
    limiters: PerKey[AdaptiveLimiter] = PerKey(
        lambda host: AdaptiveLimiter(initial=1, max_limit=1, name=host)
    )
    transport = ResilientTransport(server.transport, hedger=per_host_hedger(), limiter=limiters)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        start = clock.now()
        response = await client.get("http://a/")
    assert clock.now() - start == clock.approx(10.0)
    assert response.text == "a 10.0"
    assert server.most_inside["a"] == 1
    assert limiters["a"].statistics().in_flight == 0


async def test_the_breaker_counts_a_hedged_attempt_once(clock: Any) -> None:
    server = Server({"a": [1.0]})
    transport = ResilientTransport(
        server.transport,
        hedger=per_host_hedger(),
        attempts=1,
        breaker=CircuitBreaker(failure_threshold=2, recovery_time=60.0),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a")
        server.fail = httpx.ConnectError
        with pytest.raises(httpx.ConnectError):
            await client.get("http://a/")  # two copies, one failure
        assert transport.breakers["a"].state is anyway.CircuitState.CLOSED  # type: ignore[attr-defined]
        with pytest.raises(httpx.ConnectError):
            await client.get("http://a/")
        sent = len(server.requests)
        with pytest.raises(CircuitOpen):
            await client.get("http://a/")
    assert len(server.requests) == sent  # refused before any copy was sent


async def test_an_adaptive_limiter_per_host_grows_with_events(clock: Any) -> None:
    changes: list[anyway.LimitChanged] = []
    limiters: PerKey[AdaptiveLimiter] = PerKey(
        lambda host: AdaptiveLimiter(initial=1, name=host, hooks=changes.append)
    )
    server = Server({"a": [0.5], "b": [0.5]})
    transport = ResilientTransport(server.transport, limiter=limiters)
    async with httpx.AsyncClient(transport=transport) as client:
        await warm_up(client, "a", calls=10)  # one full window at a steady latency
        await warm_up(client, "b", calls=9)
    assert [(c.policy, c.old, c.new, c.reason) for c in changes] == [("a", 1, 2, "growth")]
    assert limiters["a"].limit == 2
    assert limiters["b"].limit == 1


# --- arguments ---------------------------------------------------------------------


def test_a_single_hedger_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"per host: hedger=anyway\.PerKey\(lambda host"):
        ResilientTransport(httpx.MockTransport(lambda r: httpx.Response(200)), hedger=Hedger())
    with pytest.raises(TypeError, match="got the class Hedger"):
        ResilientTransport(hedger=Hedger)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got 3 "):
        ResilientTransport(hedger=3)  # type: ignore[arg-type]


def test_the_limiter_class_is_still_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match="got the class AdaptiveLimiter"):
        ResilientTransport(limiter=AdaptiveLimiter)  # type: ignore[arg-type]


async def test_a_hedger_function_must_return_a_hedger(clock: Any) -> None:
    server = Server({"a": [1.0], "b": [1.0]})
    shared = Hedger()
    transport = ResilientTransport(
        server.transport, hedger=lambda host: shared if host == "a" else None
    )
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("http://a/")
        await client.get("http://b/")  # None: not hedged
        assert shared.statistics().calls == 1
    assert "hedger=" in repr(transport)

    wrong = ResilientTransport(server.transport, hedger=lambda host: "nope")  # type: ignore[arg-type,return-value]
    async with httpx.AsyncClient(transport=wrong) as client:
        with pytest.raises(TypeError, match=r"must return an anyway\.Hedger"):
            await client.get("http://a/")
    wrong = ResilientTransport(server.transport, hedger=PerKey(lambda host: 1))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=wrong) as client:
        with pytest.raises(TypeError, match=r"must make anyway\.Hedger objects"):
            await client.get("http://a/")
