"""``python -m anyway demo`` (``anyway._demo.main``): the aggregator scenario
against its embedded server, on every loop, in real time (about a second)."""

from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys

import pytest

from anyway import _demo, global_hooks, log_event

# Trio is optional: the tests_without_trio session runs this file without it.
HAVE_TRIO = importlib.util.find_spec("trio") is not None
BACKENDS = ["asyncio", "trio"] if HAVE_TRIO else ["asyncio"]
if importlib.util.find_spec("uvloop") is not None:
    BACKENDS.append("uvloop")

ROW = re.compile(
    r"^\s*(?P<index>\d+)  (?P<name>\S+)\s+(?P<upstream>.+?)  (?P<outcome>\S.*?)"
    r"\s+(?P<attempts>\d+)\s+(?P<time>\d+\.\d\d) s$"
)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = _demo.main(list(argv), out=out)
    return status, out.getvalue()


def rows(text: str) -> dict[str, re.Match[str]]:
    found = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            found[match["name"]] = match
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_prints_the_partial_failure_report(backend: str) -> None:
    hooks = global_hooks()
    status, text = run("--backend", backend)
    assert status == 0
    assert global_hooks() == hooks  # the default logging hook is back
    lines = text.splitlines()
    assert lines[0].startswith(f"anyway demo on {backend}: 12 endpoints on 6 local hosts")
    assert lines[1].startswith("client: fetch_all(timeout=1) keeps what finished in time")
    assert lines[3].split() == ["#", "endpoint", "upstream", "outcome", "attempts", "time"]
    table = rows(text)
    assert [m["index"] for m in table.values()] == [str(i) for i in range(1, 13)]

    def outcome(name: str) -> str:
        return table[name]["outcome"]

    for fast in ("news/fast/1", "news/fast/8", "news/fast/12"):
        assert outcome(fast) == "ok: 3 articles"
        assert table[fast]["attempts"] == "1"
    # 503 + Retry-After twice: the third attempt gets it.
    assert outcome("stocks/flaky/2") == "ok: 3 articles"
    assert table["stocks/flaky/2"]["attempts"] == "3"
    # The rate limiter spaces them (a late 429 would be retried).
    for limited in ("sports/limited/3", "sports/limited/4", "sports/limited/5"):
        assert outcome(limited) == "ok: 3 articles"
    # Cut off at the batch timeout, every other result kept.
    assert re.fullmatch(r"cut off at the batch timeout \(\d\.\d\d s\)", outcome("weather/slow/6"))
    assert table["weather/slow/6"]["attempts"] == "1"
    assert outcome("forum/broken/9") == "server hung up"
    assert table["forum/broken/9"]["attempts"] == "3"
    assert outcome("news/missing/11") == "HTTP 404 Not Found"
    assert table["news/missing/11"]["attempts"] == "1"
    # The legacy host is down: its breaker opens after 3 failed attempts in
    # all, so at least one of its two endpoints is refused without trying.
    dead = [outcome("legacy/dead/7"), outcome("legacy/dead/10")]
    assert all(
        o in ("connection refused", "circuit open: not called")
        or re.fullmatch(r"circuit open after [12] failed", o)
        for o in dead
    ), dead
    assert any(o.startswith("circuit open") for o in dead)

    summary = next(line for line in lines if line.startswith("summary: "))
    assert re.fullmatch(
        r"summary: 7 ok, 5 failed \(.*1 HTTP 404.*1 timed out\); 21 articles in \d+\.\d\d s"
        r" \(batch timeout 1 s\)",
        summary,
    ), summary
    policies = lines[-1]
    assert re.fullmatch(
        r"policies: \d+ retries; \d+ x 429 from the rate-limited API; circuits opened: .*", policies
    )
    assert "legacy" in policies
    assert "forum" in policies


def test_fewer_endpoints() -> None:
    status, text = run("--endpoints", "3", "--backend", "trio" if HAVE_TRIO else "asyncio")
    assert status == 0
    assert list(rows(text)) == ["news/fast/1", "stocks/flaky/2", "sports/limited/3"]
    assert "summary: 3 ok, 0 failed; 9 articles in " in text
    assert "circuits opened: none" in text


def test_verbose_logs_what_the_policies_do(capsys: pytest.CaptureFixture[str]) -> None:
    status, _ = run("--endpoints", "2", "--verbose")
    assert status == 0
    logged = capsys.readouterr().err
    assert "attempt 1 failed" in logged
    assert "retrying in 0.1 s" in logged
    assert log_event in global_hooks()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--endpoints", "0"], "--endpoints must be between 1 and 200, got 0"),
        (["--backend", "curio"], "invalid choice: 'curio'"),
        (["--endpoints", "many"], "invalid int value: 'many'"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _demo.main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_dependency_is_explained(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "trio" else real_find_spec(name)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert _demo.main(["--backend", "trio"]) == 1
    assert "the demo needs trio: pip install 'anyway[trio]'" in capsys.readouterr().err


def test_runs_as_a_program() -> None:
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "anyway", "demo", "--endpoints", "4"),
            *("--backend", "trio" if HAVE_TRIO else "asyncio"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "summary: 4 ok, 0 failed" in done.stdout


def test_describe_every_kind_of_outcome() -> None:
    import httpx
    import outcome

    from anyway import CircuitOpen, DeadlineExceeded

    def describe(error: Exception, attempts: int = 1) -> tuple[str, str]:
        endpoint = _demo.Endpoint(1, "fast", "news", "/fast/1", attempts=attempts)
        endpoint.result = outcome.Error(error)
        return _demo.describe_outcome(endpoint)

    assert describe(CircuitOpen("open"), attempts=2) == (
        "circuit open",
        "circuit open after 2 failed",
    )
    assert describe(CircuitOpen("open"), attempts=0) == ("circuit open", "circuit open: not called")
    assert describe(httpx.ReadTimeout("slow")) == ("timed out", "timed out (ReadTimeout)")
    assert describe(ValueError("bad json")) == ("ValueError", "ValueError: bad json")
    assert describe(DeadlineExceeded("late"), attempts=0) == (
        "not sent",
        "not sent: the batch timed out first",
    )


@pytest.mark.anyio
async def test_upstream_behaviours(clock: object) -> None:
    import anyio

    upstream = _demo.Upstream()
    first = await upstream.respond("sports", "/limited/1")
    too_soon = await upstream.respond("sports", "/limited/2")
    assert first is not None
    assert first[0] == 200
    assert too_soon == (429, {"Retry-After": "1"}, b'{"error": "slow down"}')
    assert upstream.too_many == 1
    await anyio.sleep(_demo.SERVER_MIN_INTERVAL)
    again = await upstream.respond("sports", "/limited/3")
    assert again is not None
    assert again[0] == 200

    start = anyio.current_time()
    slow = await upstream.respond("weather", "/slow/4")
    assert slow is not None
    assert slow[0] == 200
    assert anyio.current_time() - start >= _demo.SLOW_SECONDS * 0.9
    assert await upstream.respond("forum", "/broken/5") is None
    missing = await upstream.respond("news", "/missing/6")
    assert missing is not None
    assert missing[0] == 404


def test_without_the_default_log_hook() -> None:
    from anyway import add_hook, remove_hook

    remove_hook(log_event)
    try:
        status, text = run("--endpoints", "1")
        assert status == 0
        assert log_event not in global_hooks()  # left as it was
    finally:
        add_hook(log_event)
    assert "summary: 1 ok, 0 failed" in text
