"""Smoke tests of the benchmark suite (``python -m benchmarks``, a tool of the clone)
and of ``python -m anyway`` (the demo; the bench subcommand is gone).

Timings are never asserted: only that a tiny case runs end to end, that the
table and the JSON file appear with the expected shape, and that what cannot
run is reported as skipped or as an error rather than faked.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from anyway.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--filter", "anyio/checkpoint", "--backend", "asyncio", "--reps", "2"]


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The repository's ``benchmarks`` package (the tests run from a clone)."""
    if not (ROOT / "benchmarks" / "__main__.py").is_file():
        pytest.skip("benchmarks/ is not next to tests/ (not a clone)")
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.__main__

    return benchmarks.__main__


def test_quick_run_prints_table_and_writes_json(
    suite: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plots, markdown = tmp_path / "plots", tmp_path / "results.md"
    argv = [*TINY, "--results", str(tmp_path), "--plots", str(plots), "--markdown", str(markdown)]
    assert suite.main(argv) == 0
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
    assert "(quick mode)" in out

    (path,) = tmp_path.glob("*.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    # the published command holds no local path
    assert document["command"] == ["python", "-m", "benchmarks", *TINY, "--results",
                                   tmp_path.name, "--plots", "plots", "--markdown", "results.md"]  # fmt: skip
    assert str(tmp_path) not in path.read_text(encoding="utf-8")
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
        assert len(row["values"]) == 2
        assert row["q1"] <= row["median"] <= row["q3"]
        assert row["n"] >= 1
        assert row["unit"] == "checkpoint"
    assert baseline["ratio"] == 1.0
    assert anyio_row["baseline"] == "asyncio.sleep(0)"
    assert anyio_row["ratio"] > 0
    assert "| checkpoint (per checkpoint) | asyncio.sleep(0) | asyncio |" in markdown.read_text()
    if (plots / "anyio.png").exists():  # matplotlib is optional
        assert (plots / "anyio.png").read_bytes()[:4] == b"\x89PNG"

    # --load reports the saved run again
    assert suite.main(["--load", str(path)]) == 0
    assert "anyio checkpoint()" in capsys.readouterr().out


def test_idiom_cases_run_on_every_backend(
    suite: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue-15 rows (native idiom as the baseline) run end to end on the three loops."""
    from benchmarks._core import Settings, run_case
    from benchmarks.families import idiom

    settings = Settings(quick=True, reps=1, batch_seconds=0.0)
    backends = ["asyncio"] + [b for b in ("uvloop", "trio") if importlib.util.find_spec(b)]
    for case in idiom.cases():
        for backend in backends:
            native, ours = run_case(case, backend, settings)
            assert (native.status, ours.status) == ("ok", "ok"), (native.reason, ours.reason)
            assert native.ratio == 1.0
            assert ours.ratio is not None
            assert ours.ratio > 0
            assert native.n == ours.n == case.step  # one call of the work per batch


def test_skips_and_errors_are_reported_not_faked(suite: types.ModuleType) -> None:
    from benchmarks._core import Case, Settings, Skip, Variant, run_case
    from benchmarks._report import format_table

    async def ok(n: int) -> None:
        return None

    async def broken(n: int) -> None:
        raise RuntimeError("boom")

    def missing_peer(env: object) -> None:
        import no_such_peer_module  # type: ignore[import-not-found]  # noqa: F401

    def not_here(env: object) -> None:
        raise Skip("not on this loop")

    settings = Settings(quick=True, reps=2, batch_seconds=0.0)
    case = Case(
        "demo",
        "skips",
        [
            Variant("baseline", lambda env: ok),
            Variant("peer", missing_peer, peer=True),
            Variant("elsewhere", not_here),
            Variant("flaky peer", lambda env: broken, peer=True),
        ],
        fixed_n=10,
    )
    baseline, peer, elsewhere, flaky = run_case(case, "asyncio", settings)
    assert (baseline.status, len(baseline.values)) == ("ok", 2)
    assert (peer.status, peer.values, peer.ratio) == ("skipped", [], None)
    assert "no_such_peer_module" in peer.reason
    assert (elsewhere.status, elsewhere.reason) == ("skipped", "not on this loop")
    assert (flaky.status, flaky.reason) == ("skipped", "fails here: RuntimeError: boom")
    table = format_table([baseline, peer, elsewhere, flaky], {})
    assert "demo/skips: elsewhere on asyncio: not on this loop" in table

    case = Case(
        "demo",
        "broken",
        [Variant("baseline", lambda env: ok), Variant("x", lambda env: broken)],
        fixed_n=1,
    )
    baseline, failed = run_case(case, "asyncio", settings)
    assert (failed.status, failed.reason) == ("error", "RuntimeError: boom")
    assert "RuntimeError: boom" in failed.traceback
    assert (baseline.status, baseline.reason) == ("error", "case aborted by x")


def test_list_and_no_match(suite: types.ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert suite.main(["--list"]) == 0
    listed = capsys.readouterr().out
    for family in ("anyio/", "idiom/", "helpers/", "retry/", "limits/", "breaker/", "httpx/"):
        assert family in listed
    assert "scaling/map_all, 100,000 items" in listed
    assert "scaling/100,000 concurrent tasks" not in listed  # full mode only
    assert "scaling/100,000 concurrent tasks" in (suite.main(["--list", "--full"]) or
                                                  capsys.readouterr().out)  # fmt: skip
    assert suite.main(["--filter", "no such case"]) == 2
    assert "no quick case matches" in capsys.readouterr().err


def test_bench_is_not_a_subcommand_of_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


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
    assert "demo" in capsys.readouterr().err
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
