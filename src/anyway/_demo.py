"""``python -m anyway demo``: the aggregator scenario, end to end, on one machine.

An embedded HTTP server (on AnyIO, in the same event loop, on 127.0.0.1)
plays several upstream APIs, each on its own port so that each is its own
host: fast ones, a slow one, a flaky one (503 with ``Retry-After``), a rate
limited one (429 when called too often), one that hangs up, and one that is
not there at all (connection refused). The client fans out to all of them
with ``httpx`` over :class:`anyway.httpx.ResilientTransport` and reports, per
endpoint, what happened.

What it shows:

* a batch timeout that keeps what finished
  (:func:`anyway.httpx.fetch_all` with ``timeout=``): the slow API is cut
  off, its row says so, and every other result is kept (an
  ``anyway.deadline`` around the batch would lose them all), with httpx's
  own timeouts capped to it;
* retries with jittered backoff, honouring ``Retry-After`` (capped);
* a per-host rate limit (:class:`anyway.KeyedRateLimiter`) that keeps the
  rate-limited API happy;
* a per-host circuit breaker (:class:`anyway.CircuitBreaker`) that stops
  calling the dead hosts after a few failures;
* bounded fan-out, and a partial-failure report in input order.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import anyio
import anyio.abc
import outcome
from anyio.streams.buffered import BufferedByteReceiveStream

from . import (
    Backoff,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    DeadlineExceeded,
    KeyedRateLimiter,
    add_hook,
    global_hooks,
    log_event,
    remove_hook,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["main"]

#: The batch timeout and fan-out of the demo's client.
BATCH_TIMEOUT = 1.0
MAX_AT_ONCE = 4
#: The rate the client allows itself per host, and the one the rate-limited
#: API enforces (it answers 429 to a request that comes sooner than this).
CLIENT_RATE = 20.0
SERVER_MIN_INTERVAL = 0.04
#: The longest Retry-After the client honours (the APIs ask for 1 s).
MAX_RETRY_AFTER = 0.1
#: How long the slow API takes, and how often the flaky one fails first.
SLOW_SECONDS = 2.0
FLAKY_FAILURES = 2

# What each kind of endpoint does, the host (port) it lives on, and the blurb
# shown in the table.
_KINDS: dict[str, tuple[str, str]] = {
    "fast": ("news", "answers at once"),
    "flaky": ("stocks", f"503 + Retry-After x{FLAKY_FAILURES}, then ok"),
    "slow": ("weather", f"answers after {SLOW_SECONDS:g} s"),
    "limited": ("sports", f"429 if called < {SERVER_MIN_INTERVAL * 1000:g} ms apart"),
    "dead": ("legacy", "connection refused"),
    "broken": ("forum", "hangs up without answering"),
    "missing": ("news", "404 Not Found"),
}
# The order endpoints are made in; --endpoints N takes the first N (cycling).
_PATTERN = (
    "fast",
    "flaky",
    "limited",
    "limited",
    "limited",
    "slow",
    "dead",
    "fast",
    "broken",
    "dead",
    "missing",
    "fast",
    "limited",
    "dead",
    "flaky",
    "slow",
)


@dataclass
class Endpoint:
    """One row of the report."""

    index: int
    kind: str
    host: str
    path: str
    url: str = ""
    result: outcome.Outcome[int] | None = None
    attempts: int = 0
    elapsed: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.host}{self.path}"


@dataclass
class Upstream:
    """The embedded server's state: one listener per host, plus counters."""

    ports: dict[str, int] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    too_many: int = 0
    last_accepted: dict[str, float] = field(default_factory=dict)

    async def respond(self, host: str, path: str) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to ``GET path`` on *host*; ``None`` means: hang up."""
        self.hits[path] += 1
        kind = path.strip("/").split("/", 1)[0]
        articles = [{"title": f"{host} story {n}", "path": path} for n in range(1, 4)]
        ok = json.dumps({"articles": articles}).encode()
        if kind == "fast":
            await anyio.sleep(0.005)
            return 200, {}, ok
        if kind == "flaky":
            if self.hits[path] <= FLAKY_FAILURES:
                return 503, {"Retry-After": "1"}, b'{"error": "busy"}'
            return 200, {}, ok
        if kind == "slow":
            await anyio.sleep(SLOW_SECONDS)
            return 200, {}, ok
        if kind == "limited":
            now = anyio.current_time()
            last = self.last_accepted.get(host)
            # now < last + interval, not now - last < interval: the same sum as
            # a caller's sleep(interval) deadline, so that sleeping the interval
            # is always enough, even on a clock in steps (uvloop's milliseconds)
            if last is not None and now < last + SERVER_MIN_INTERVAL:
                self.too_many += 1
                return 429, {"Retry-After": "1"}, b'{"error": "slow down"}'
            self.last_accepted[host] = now
            return 200, {}, ok
        if kind == "broken":
            return None
        return 404, {}, b'{"error": "not found"}'


_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 503: "Service Unavailable"}
_STREAM_ERRORS = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.DelimiterNotFound,
    OSError,
    ValueError,
)


async def _serve_connection(stream: anyio.abc.SocketStream, host: str, upstream: Upstream) -> None:
    """A minimal HTTP/1.1 server loop: GET only, keep-alive, no request bodies."""
    async with stream:
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                head = await reader.receive_until(b"\r\n\r\n", 16384)
                method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
                answer = await upstream.respond(host, target.split("?", 1)[0])
                if answer is None:
                    return  # hang up without a word
                status, headers, body = answer
                lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
                headers = {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(body) if method != "HEAD" else 0),
                    **headers,
                }
                lines += [f"{name}: {value}" for name, value in headers.items()]
                payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
                await stream.send(payload + (body if method != "HEAD" else b""))
        except _STREAM_ERRORS:
            return  # the client went away (deadline, retry, end of the demo)


async def _serve(
    listener: anyio.abc.Listener[anyio.abc.SocketStream], host: str, upstream: Upstream
) -> None:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        await _serve_connection(stream, host, upstream)

    async with listener, anyio.create_task_group() as connections:
        await listener.serve(handle, connections)


async def _start_upstream(task_group: anyio.abc.TaskGroup) -> Upstream:
    """Listen on one port per host; the "legacy" host gets a port nobody listens on."""
    upstream = Upstream()
    for host in dict.fromkeys(host for host, _ in _KINDS.values()):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        if host == "legacy":
            await listener.aclose()  # now connections to it are refused
        else:
            task_group.start_soon(_serve, listener, host, upstream)
        upstream.ports[host] = port
    return upstream


def _endpoints(count: int, upstream: Upstream) -> list[Endpoint]:
    endpoints = []
    for index in range(count):
        kind = _PATTERN[index % len(_PATTERN)]
        host = _KINDS[kind][0]
        path = f"/{kind}/{index + 1}"
        url = f"http://127.0.0.1:{upstream.ports[host]}{path}"
        endpoints.append(Endpoint(index + 1, kind, host, path, url))
    return endpoints


class _Attempts:
    """Counts each request's attempts and times them, from the first one's
    start to the last one's end (cut short, cancelled or failed: the
    ``finally`` still counts). Fed by :func:`_counting`."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.began: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def elapsed(self, url: str) -> float:
        began = self.began.get(url)
        return 0.0 if began is None else self.ended[url] - began


def _counting(attempts: _Attempts) -> httpx.AsyncBaseTransport:
    """The network transport, wrapped to feed *attempts* (it goes inside the
    retries: it sees every attempt actually sent)."""
    import httpx

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            url = str(request.url)
            attempts.count[url] += 1
            attempts.began.setdefault(url, anyio.current_time())
            try:
                return await super().handle_async_request(request)
            finally:
                attempts.ended[url] = anyio.current_time()

    return Counting()


@dataclass
class Batch:
    """What :func:`aggregate` saw besides the per-endpoint rows."""

    elapsed: float = 0.0
    retries: int = 0
    open_circuits: list[str] = field(default_factory=list)


async def aggregate(
    endpoints: Sequence[Endpoint],
    *,
    batch_timeout: float = BATCH_TIMEOUT,
    max_at_once: int = MAX_AT_ONCE,
) -> Batch:
    """The aggregator: fetch every endpoint's articles through one resilient
    client, filling in each endpoint's outcome, attempts and time."""
    import httpx

    from .httpx import ResilientTransport, fetch_all

    attempts = _Attempts()
    transport = ResilientTransport(
        _counting(attempts),
        attempts=3,
        backoff=Backoff(initial=0.05, max=0.2),
        max_retry_after=MAX_RETRY_AFTER,
        limiter=KeyedRateLimiter(CLIENT_RATE, per=1.0),
        breaker=CircuitBreaker(failure_threshold=3, recovery_time=30.0),  # one per host
    )
    batch = Batch()
    start = anyio.current_time()
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        # One slow source must not define the wall-clock: at the timeout the
        # requests still running are cancelled, those not sent are never
        # sent, and every finished outcome is kept.
        results = await fetch_all(
            client, [e.url for e in endpoints], max_at_once=max_at_once, timeout=batch_timeout
        )
    batch.elapsed = anyio.current_time() - start
    for endpoint, result in zip(endpoints, results, strict=True):
        if isinstance(result, outcome.Error):
            endpoint.result = outcome.Error(result.error)
        else:
            endpoint.result = outcome.Value(len(result.unwrap().json()["articles"]))
        endpoint.attempts = attempts.count[endpoint.url]
        endpoint.elapsed = attempts.elapsed(endpoint.url)
        batch.retries += max(0, endpoint.attempts - 1)
    batch.open_circuits = [
        host
        for host, breaker in transport.breakers.items()
        if getattr(breaker, "state", None) is not CircuitState.CLOSED
    ]
    return batch


def describe_outcome(endpoint: Endpoint) -> tuple[str, str]:
    """(short category for the summary, text for the table)."""
    import httpx

    result = endpoint.result
    if isinstance(result, outcome.Value):
        return "ok", f"ok: {result.value} articles"
    assert isinstance(result, outcome.Error)
    error = result.error
    if isinstance(error, DeadlineExceeded):
        if not endpoint.attempts:
            return "not sent", "not sent: the batch timed out first"
        return "timed out", f"cut off at the batch timeout ({endpoint.elapsed:.2f} s)"
    if isinstance(error, CircuitOpen):
        if endpoint.attempts:
            return "circuit open", f"circuit open after {endpoint.attempts} failed"
        return "circuit open", "circuit open: not called"
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return f"HTTP {status}", f"HTTP {status} {error.response.reason_phrase}"
    if isinstance(error, httpx.ConnectError):
        return "refused", "connection refused"
    if isinstance(error, httpx.RemoteProtocolError):
        return "hung up", "server hung up"
    if isinstance(error, httpx.TimeoutException):
        return "timed out", f"timed out ({type(error).__name__})"
    return type(error).__name__, f"{type(error).__name__}: {error}"


def report(endpoints: Sequence[Endpoint], batch: Batch, upstream: Upstream, out: TextIO) -> None:
    """Print the table, the summary line and what the policies did."""
    rows = [(e, *describe_outcome(e)) for e in endpoints]
    name_width = max(len("endpoint"), *(len(e.name) for e in endpoints))
    upstream_width = max(len("upstream"), *(len(_KINDS[e.kind][1]) for e in endpoints))
    outcome_width = max(len("outcome"), *(len(text) for _, _, text in rows))
    header = (
        f"{'#':>3}  {'endpoint':<{name_width}}  {'upstream':<{upstream_width}}"
        f"  {'outcome':<{outcome_width}}  attempts    time"
    )
    rule = "-" * len(header)
    print(header, rule, sep="\n", file=out)
    for endpoint, _, text in rows:
        print(
            f"{endpoint.index:>3}  {endpoint.name:<{name_width}}"
            f"  {_KINDS[endpoint.kind][1]:<{upstream_width}}  {text:<{outcome_width}}"
            f"  {endpoint.attempts:>8}  {endpoint.elapsed:>5.2f} s",
            file=out,
        )
    print(rule, file=out)
    categories = Counter(category for _, category, _ in rows)
    ok = categories.pop("ok", 0)
    articles = sum(e.result.value for e in endpoints if isinstance(e.result, outcome.Value))
    failed = sum(categories.values())
    details = ", ".join(f"{n} {category}" for category, n in sorted(categories.items()))
    print(
        f"summary: {ok} ok, {failed} failed{f' ({details})' if details else ''};"
        f" {articles} articles in {batch.elapsed:.2f} s (batch timeout {BATCH_TIMEOUT:g} s)",
        file=out,
    )
    names = {f"127.0.0.1:{port}": host for host, port in upstream.ports.items()}
    circuits = ", ".join(names.get(key, key) for key in batch.open_circuits) or "none"
    print(
        f"policies: {batch.retries} retries; {upstream.too_many} x 429 from the rate-limited"
        f" API; circuits opened: {circuits}",
        file=out,
    )


async def _demo(count: int, backend: str, out: TextIO) -> None:
    async with anyio.create_task_group() as task_group:
        upstream = await _start_upstream(task_group)
        endpoints = _endpoints(count, upstream)
        print(
            f"anyway demo on {backend}: {count} endpoints on {len(upstream.ports)} local hosts"
            " (an embedded server on 127.0.0.1)",
            f"client: fetch_all(timeout={BATCH_TIMEOUT:g}) keeps what finished in time,"
            f" {MAX_AT_ONCE} at once, {CLIENT_RATE:g} requests/s per host, 3 attempts,"
            " a breaker per host",
            "",
            sep="\n",
            file=out,
        )
        batch = await aggregate(endpoints)
        task_group.cancel_scope.cancel()  # stop the embedded server
    report(endpoints, batch, upstream, out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m anyway demo",
        description=(
            "Fan out to many flaky, slow, rate-limited and dead HTTP endpoints of an"
            " embedded local server with a batch timeout, retries, a per-host rate limit and"
            " circuit breaker, and print a partial-failure report."
        ),
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "uvloop", "trio"),
        default="asyncio",
        help="the event loop to run on (default: asyncio)",
    )
    parser.add_argument(
        "--endpoints",
        type=int,
        default=12,
        metavar="N",
        help="how many endpoints to fetch (1-200, default: 12)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also log every retry, give-up and breaker change (logger 'anyway')",
    )
    return parser


def main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the demo (``python -m anyway demo [--backend ...] [--endpoints N]``).

    Returns the exit status: 0 when the demo ran (whatever the endpoints
    did: partial failure is the point), 1 when something it needs is missing.
    """
    args = _parser().parse_args(argv)
    out = sys.stdout if out is None else out
    if not 1 <= args.endpoints <= 200:
        _parser().error(f"--endpoints must be between 1 and 200, got {args.endpoints}")
    missing = [
        (module, extra)
        for module, extra, needed in (
            ("httpx", "httpx", True),
            ("trio", "trio", args.backend == "trio"),
            ("uvloop", "uvloop", args.backend == "uvloop"),
        )
        if needed and importlib.util.find_spec(module) is None
    ]
    if missing:
        module, extra = missing[0]
        print(f"the demo needs {module}: pip install 'anyway[{extra}]'", file=sys.stderr)
        return 1
    backend, options = args.backend, {}
    if backend == "uvloop":
        backend, options = "asyncio", {"use_uvloop": True}
    logger = logging.getLogger("anyway")
    handler: logging.Handler | None = None
    quiet = not args.verbose and log_event in global_hooks()
    if quiet:
        remove_hook(log_event)  # the table says it all
    elif args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(relativeCreated)6.0f ms  %(message)s"))
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
    try:
        anyio.run(
            _demo, args.endpoints, args.backend, out, backend=backend, backend_options=options
        )
    finally:
        if quiet:
            add_hook(log_event)
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)
    return 0
