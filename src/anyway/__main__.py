"""The command line: ``python -m anyway demo`` and ``python -m anyway bench``.

``demo`` runs the resilient-HTTP demo against an embedded local server.
``bench`` runs the benchmark suite, which lives in the repository's
``benchmarks/`` folder rather than in the installed package: run it from a
clone (``python -m`` puts the current directory on ``sys.path``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

__all__ = ["main"]

_BENCH_MISSING = """\
python -m anyway bench: the benchmark suite was not found.

It lives in the benchmarks/ folder of the anyway repository, not in the
installed package. Run it from the root of a clone of the repository:

    cd anyway              # the clone: the folder that holds benchmarks/
    nox -s bench -- --quick
    # or, in an environment with anyway and the `bench` dependency group:
    python -m anyway bench --quick
"""

_DEMO_MISSING = """\
python -m anyway demo: the demo is not available in this version of anyway
(anyway._demo is missing). Update anyway, or run it from a clone.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m anyway",
        description="anyway: structured-concurrency and resilience helpers for asyncio,"
        " uvloop and Trio.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The subcommands own their options: everything after the command name is
    # handed to them untouched (so `bench --help` shows the benchmark's help).
    commands.add_parser(
        "demo",
        help="fetch many flaky local endpoints with deadlines, retries, limits and a breaker"
        " (python -m anyway demo --help)",
        add_help=False,
    )
    commands.add_parser(
        "bench",
        help="run the benchmark suite from a clone of the repository"
        " (python -m anyway bench --help)",
        add_help=False,
    )
    return parser


def _load(module: str, attribute: str) -> Callable[[list[str]], int] | None:
    """``module.attribute``, or ``None`` when *module* itself is missing."""
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise
    function = getattr(imported, attribute, None)
    if function is None:
        return None
    return cast("Callable[[list[str]], int]", function)


def _bench(argv: list[str]) -> int:
    main = _load("benchmarks", "main")
    if main is None or not getattr(sys.modules.get("benchmarks"), "ANYWAY_BENCHMARKS", False):
        print(_BENCH_MISSING, file=sys.stderr, end="")
        return 2
    return int(main(argv))


def _demo(argv: list[str]) -> int:
    try:
        main = _load("anyway._demo", "main")
    except ModuleNotFoundError as exc:
        # The demo talks HTTP through httpx, an optional dependency.
        print(
            f"python -m anyway demo needs the {exc.name!r} package, which is not installed:"
            " pip install 'anyway[httpx]'",
            file=sys.stderr,
        )
        return 2
    if main is None:
        print(_DEMO_MISSING, file=sys.stderr, end="")
        return 2
    return int(main(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m anyway`` with *argv* (default: ``sys.argv[1:]``); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "bench":
        return _bench(args[1:])
    if args and args[0] == "demo":
        return _demo(args[1:])
    # No command, an unknown one, or --help: argparse prints the help or the
    # error (and exits); with nothing to do, print the help and fail.
    parser = _parser()
    parser.parse_args(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - exercised by `python -m anyway`
    sys.exit(main())
