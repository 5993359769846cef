"""``python -m benchmarks``: choose the cases, run them, print and save the results."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from ._core import BACKENDS, Case, Result, Settings, run_case
from ._report import format_table, load_json, write_json, write_plots
from .families import TITLES, all_cases

RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="anyway against the native loops, raw AnyIO and the peers (tenacity,"
        " stamina, backoff, aiolimiter, aiometer, purgatory, httpx); every figure is also"
        " a ratio to a baseline measured in the same run. Quick mode unless --full.",
    )
    parser.add_argument("--full", action="store_true", help="15 repetitions, longer batches")
    parser.add_argument("--quick", action="store_true", help="the default: 7 repetitions")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable")
    parser.add_argument(
        "--filter", action="append", default=[], metavar="TEXT", help="case ids containing TEXT"
    )
    parser.add_argument("--list", action="store_true", help="list the case ids and exit")
    parser.add_argument("--reps", type=int, help="repetitions (default 7, full 15)")
    parser.add_argument("--load", type=Path, metavar="JSON", help="report a saved run")
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="DIR")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write Markdown")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="one PNG per family")
    parser.add_argument("--verbose", action="store_true", help="print error tracebacks")
    return parser


def select(cases: Sequence[Case], *, mode: str, filters: Sequence[str]) -> list[Case]:
    wanted = [f.lower() for f in filters]
    return [
        c
        for c in cases
        if mode in c.modes and (not wanted or any(f in c.id.lower() for f in wanted))
    ]


def shown(path: Path) -> str:
    """*path* relative to the current folder when inside it: no local path in the output."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def main(argv: Sequence[str] | None = None) -> int:
    """0 when everything ran (skips allowed), 1 on errors, 2 on bad use."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.load is not None:
        document, results = load_json(args.load)
        print(format_table(results, TITLES))
        print(f"\nfrom {shown(args.load)}: {' '.join(document['command'])}")
        _outputs(results, args)
        return 0
    if args.reps is not None and args.reps < 1:
        print("--reps must be at least 1", file=sys.stderr)
        return 2
    settings = Settings.for_mode(quick=not args.full, reps=args.reps)
    backends = list(dict.fromkeys(args.backend or BACKENDS))
    cases = select(all_cases(), mode=settings.mode, filters=args.filter)
    if args.list or not cases:
        for case in cases:
            print(f"{case.id:48} {case.description}")
        if not cases:
            print(f"no {settings.mode} case matches {args.filter}", file=sys.stderr)
        return 0 if cases else 2

    results: list[Result] = []
    started = time.monotonic()
    for i, case in enumerate(cases, 1):
        with case.setup() if case.setup is not None else nullcontext() as shared:
            for backend in backends:
                print(f"[{i}/{len(cases)}] {case.id} on {backend}", file=sys.stderr, flush=True)
                results += run_case(case, backend, settings, shared)
    elapsed = time.monotonic() - started

    print(format_table(results, TITLES))
    print(
        f"\n{len(cases)} cases on {', '.join(backends)} in {elapsed:.0f} s ({settings.mode} mode)"
    )
    if args.verbose:
        for row in results:
            if row.traceback:
                print(row.traceback, file=sys.stderr)
    if not args.no_save:
        # The published command holds no local path: an absolute one is reduced to its name.
        command = ["python", "-m", "benchmarks"] + [
            Path(a).name if Path(a).is_absolute() else a for a in argv
        ]
        saved = {"mode": settings.mode, "reps": settings.reps, "backends": backends}
        path = write_json(results, args.results, settings=saved, command=command)
        print(f"results: {shown(path)}")
    _outputs(results, args)
    return 1 if any(r.status == "error" for r in results) else 0


def _outputs(results: list[Result], args: argparse.Namespace) -> None:
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_table(results, TITLES, markdown=True), encoding="utf-8")
        print(f"markdown: {shown(args.markdown)}")
    if args.plots is not None:
        try:
            written = write_plots(results, args.plots, TITLES)
        except ImportError:
            print("plots skipped: matplotlib is not installed", file=sys.stderr)
        else:
            print(f"plots: {', '.join(shown(p) for p in written)}")


if __name__ == "__main__":
    sys.exit(main())
