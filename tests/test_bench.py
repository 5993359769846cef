"""Smoke tests of ``python -m anyway``: the benchmark suite runs and reports.

Timings are never asserted: only that a tiny case runs, that the table and
the JSON file appear with the expected shape, and that what cannot run is
reported as skipped rather than faked.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from anyway.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--filter", "anyio/checkpoint", "--backend", "asyncio", "--no-progress"]


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The repository's ``benchmarks`` package (the tests run from a clone)."""
    if not (ROOT / "benchmarks" / "__init__.py").is_file():
        pytest.skip("benchmarks/ is not next to tests/ (not a clone)")
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks

    return benchmarks


def test_quick_run_prints_table_and_writes_json(
    suite: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *TINY, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== anyio: AnyIO against the native loop" in out
    header = next(line for line in out.splitlines() if line.startswith("case "))
    assert header.split() == [
        "case",
        "variant",
        "backend",
        "median",
        "spread",
        "baseline",
        "ratio",
        "target",
    ]
    assert "asyncio.sleep(0)" in out
    assert "anyio checkpoint()" in out
    assert "results: " in out

    (path,) = tmp_path.glob("*.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["command"][:4] == ["python", "-m", "anyway", "bench"]
    assert document["settings"]["mode"] == "quick"
    assert document["machine"]["cpus"] >= 1
    assert "node" not in document["machine"]
    rows = document["results"]
    assert [(r["variant"], r["label"], r["backend"], r["status"]) for r in rows] == [
        ("native", "asyncio.sleep(0)", "asyncio", "ok"),
        ("anyio checkpoint()", "anyio checkpoint()", "asyncio", "ok"),
    ]
    baseline, anyio_row = rows
    for row in rows:
        assert len(row["values"]) == document["settings"]["reps"] == 5
        assert row["q1"] <= row["median"] <= row["q3"]
        assert row["n"] >= 1000
        assert row["unit"] == "checkpoint"
    assert baseline["ratio"] == 1.0
    assert anyio_row["baseline"] == "asyncio.sleep(0)"
    assert anyio_row["ratio"] > 0


def test_missing_requirement_is_skipped_not_faked(suite: types.ModuleType) -> None:
    from benchmarks._framework import Case, Settings, Variant, run_case
    from benchmarks._report import format_table

    async def run(n: int) -> None:
        for _ in range(n):
            pass

    case = Case(
        "demo",
        "needs a peer",
        [
            Variant("baseline", lambda env: run),
            Variant("peer", lambda env: run, requires=("no_such_peer_module",), peer=True),
            Variant("future", lambda env: run, requires=("anyway:no_such_feature",)),
        ],
        fixed_n=10,
    )
    settings = Settings(quick=True, reps=2, batch_seconds=0.0001, case_timeout=10)
    baseline, peer, future = run_case(case, "asyncio", settings)
    assert baseline.status == "ok"
    assert len(baseline.values) == 2
    assert (peer.status, peer.values, peer.ratio) == ("skipped", [], None)
    assert "no_such_peer_module is not importable" in peer.reason
    assert (future.status, future.reason) == (
        "skipped",
        "anyway.no_such_feature does not exist yet",
    )
    table = format_table([baseline, peer, future])
    assert "peer on asyncio: skipped: no_such_peer_module is not importable" in table
    assert "future on asyncio: skipped: anyway.no_such_feature does not exist yet" in table


def test_failing_variant_is_an_error(suite: types.ModuleType) -> None:
    from benchmarks._framework import Case, Settings, Variant, run_case

    async def ok(n: int) -> None:
        return None

    async def broken(n: int) -> None:
        raise RuntimeError("boom")

    case = Case(
        "demo",
        "broken",
        [Variant("baseline", lambda env: ok), Variant("x", lambda env: broken)],
        fixed_n=1,
    )
    settings = Settings(quick=True, reps=1, batch_seconds=0.0001, case_timeout=10)
    baseline, failed = run_case(case, "asyncio", settings)
    assert (failed.status, failed.reason) == ("error", "RuntimeError: boom")
    assert baseline.status == "error"


def test_list_and_no_match(suite: types.ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--list"]) == 0
    listed = capsys.readouterr().out
    for family in ("anyio/", "helpers/", "retry/", "limits/", "breaker/", "httpx/", "scaling/"):
        assert family in listed
    assert "scaling/100,000 concurrent tasks" not in listed  # full mode only
    assert main(["bench", "--quick", "--filter", "no such case"]) == 2
    assert "no case matches" in capsys.readouterr().err


def test_bench_without_the_suite(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "benchmarks", None)
    assert main(["bench", "--quick"]) == 2
    assert "the benchmark suite was not found" in capsys.readouterr().err


def test_bench_with_someone_elses_benchmarks_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    impostor = types.ModuleType("benchmarks")
    impostor.main = lambda argv: 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks", impostor)
    assert main(["bench"]) == 2
    assert "Run it from the root of a clone" in capsys.readouterr().err


def test_other_import_errors_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    import anyway.__main__ as cli

    def import_module(name: str) -> types.ModuleType:
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(cli.importlib, "import_module", import_module)
    with pytest.raises(ModuleNotFoundError, match="matplotlib"):
        main(["bench"])


def test_demo_without_httpx(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import anyway.__main__ as cli

    def import_module(name: str) -> types.ModuleType:
        raise ModuleNotFoundError("No module named 'httpx'", name="httpx")

    monkeypatch.setattr(cli.importlib, "import_module", import_module)
    assert main(["demo"]) == 2
    assert "needs the 'httpx' package" in capsys.readouterr().err


def test_demo_is_delegated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    demo = types.ModuleType("anyway._demo")
    demo.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "anyway._demo", demo)
    assert main(["demo", "--backend", "trio"]) == 0
    assert seen == [["--backend", "trio"]]


def test_demo_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "anyway._demo", None)
    assert main(["demo"]) == 2
    assert "the demo is not available" in capsys.readouterr().err
    demo = types.ModuleType("anyway._demo")  # a module without main()
    monkeypatch.setitem(sys.modules, "anyway._demo", demo)
    assert main(["demo"]) == 2


def test_no_command_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "bench" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_argv_defaults_to_sys_argv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["python -m anyway"])
    assert main() == 2
    assert "usage: python -m anyway" in capsys.readouterr().err
