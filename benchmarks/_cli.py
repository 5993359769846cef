"""``python -m anyway bench``: choose the cases, run them, print and save the results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._framework import BACKENDS, Case, Result, Settings, case_setup, pop_tracebacks, run_case
from ._report import Progress, format_markdown, format_table, write_json, write_plots
from .families import FAMILY_TITLES, all_cases

__all__ = ["build_parser", "main", "select_cases"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser(prog: str = "python -m anyway bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Benchmarks for anyway: AnyIO against the native loops, anyway's helpers"
            " against raw AnyIO, and the peers (tenacity, stamina, backoff, aiolimiter,"
            " aiometer, purgatory, httpx). Every figure is also given as a ratio to a"
            " baseline measured in the same run. Missing peers are reported as skipped."
        ),
        epilog="Example: python -m anyway bench --quick --backend trio --filter helpers/",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short run (5 repetitions, small batches, < 1 min)"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="loop to measure on; repeatable (default: all three)",
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="SUBSTRING",
        help="only the cases whose id (family/case, see --list) contains SUBSTRING; repeatable",
    )
    parser.add_argument("--list", action="store_true", help="list the case ids and exit")
    parser.add_argument(
        "--load",
        type=Path,
        default=None,
        metavar="JSON",
        help="do not measure: print the table (and --plots) of a saved results file",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5 / 15)")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help="folder for the JSON results (default: benchmarks/results)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the results as Markdown tables to FILE (for the docs)",
    )
    parser.add_argument(
        "--plots", type=Path, default=None, metavar="DIR", help="write one PNG per family to DIR"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when not a TTY)"
    )
    parser.add_argument("--verbose", action="store_true", help="print the traceback of every error")
    return parser


def select_cases(cases: Sequence[Case], *, quick: bool, filters: Sequence[str]) -> list[Case]:
    mode = "quick" if quick else "full"
    wanted = [f.lower() for f in filters]
    return [
        case
        for case in cases
        if mode in case.modes and (not wanted or any(f in case.id.lower() for f in wanted))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when everything ran (skips allowed), 1 on errors, 2 on bad use."""
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[2:] if argv is None else argv)
    if args.reps is not None and args.reps < 1:
        print("--reps must be at least 1", file=sys.stderr)
        return 2
    if args.load is not None:
        return _replay(args.load, args.plots, args.markdown)
    settings = Settings.for_mode(quick=args.quick, reps=args.reps)
    backends = list(dict.fromkeys(args.backend or BACKENDS))
    cases = select_cases(all_cases(), quick=args.quick, filters=args.filter)
    if args.list:
        for case in cases:
            print(f"{case.id:45} {case.description}")
        return 0
    if not cases:
        print(
            f"no case matches {args.filter!r} in {settings.mode} mode; see --list",
            file=sys.stderr,
        )
        return 2

    progress = Progress(len(cases) * len(backends), enabled=not args.no_progress)
    results: list[Result] = []
    started = time.monotonic()
    try:
        for case in cases:
            with case_setup(case) as shared:
                for backend in backends:
                    progress.show(f"{case.id} on {backend}")
                    results.extend(run_case(case, backend, settings, shared))
                    progress.step(f"{case.id} on {backend}")
    finally:
        progress.close()
    elapsed = time.monotonic() - started

    print(format_table(results, FAMILY_TITLES))
    print(
        f"\n{len(cases)} case(s) on {', '.join(backends)} in {elapsed:.0f} s"
        f" ({settings.mode} mode, {settings.reps} repetitions)"
    )
    if args.verbose:
        for text in pop_tracebacks():
            print(text, file=sys.stderr)
    if not args.no_save:
        path = write_json(
            results,
            args.results,
            settings={
                "mode": settings.mode,
                "reps": settings.reps,
                "batch_seconds": settings.batch_seconds,
                "backends": backends,
                "filters": args.filter,
            },
            argv=argv,
        )
        print(f"results: {_shown(path)}")
    if args.plots is not None:
        _plots(results, args.plots)
    if args.markdown is not None:
        _markdown(results, args.markdown)
    return 1 if any(r.status == "error" for r in results) else 0


def _markdown(results: list[Result], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_markdown(results, FAMILY_TITLES), encoding="utf-8")
    print(f"markdown: {_shown(path)}")


def _plots(results: list[Result], folder: Path) -> None:
    try:
        written = write_plots(results, folder, FAMILY_TITLES)
    except ImportError:
        print("plots skipped: matplotlib is not installed", file=sys.stderr)
    else:
        print(f"plots: {', '.join(_shown(p) for p in written)}")


def _replay(path: Path, plots: Path | None, markdown: Path | None) -> int:
    document = json.loads(path.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Result)}
    results = [
        Result(**{k: v for k, v in row.items() if k in fields}) for row in document["results"]
    ]
    for result in results:
        for name in ("median", "q1", "q3", "min", "max"):
            if getattr(result, name) is None:
                setattr(result, name, math.nan)
    print(format_table(results, FAMILY_TITLES))
    settings = document.get("settings", {})
    machine = document.get("machine", {})
    print(
        f"\nfrom {_shown(path)}: {settings.get('mode', '?')} mode, {settings.get('reps', '?')}"
        f" repetitions, {machine.get('cpus', '?')} CPUs {machine.get('machine', '')},"
        f" {machine.get('implementation', '')} {machine.get('python', '')}"
    )
    if plots is not None:
        _plots(results, plots)
    if markdown is not None:
        _markdown(results, markdown)
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
