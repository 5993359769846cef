"""The command line: ``python -m anyway demo``.

``demo`` runs the resilient-HTTP demo against an embedded local server. (The
benchmarks are a tool of the repository, not of the installed package: from
a clone, ``nox -s bench`` or ``python -m benchmarks``.)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

__all__ = ["main"]

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
    # handed to them untouched (so `demo --help` shows the demo's help).
    commands.add_parser(
        "demo",
        help="fetch many flaky local endpoints with deadlines, retries, limits and a breaker"
        " (python -m anyway demo --help)",
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
