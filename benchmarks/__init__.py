"""The anyway benchmark suite: ``python -m anyway bench`` (or ``python -m benchmarks``).

It lives in the repository, not in the installed package: run it from a clone.
See ``docs/performance.md`` for the method and the latest results.
"""

from __future__ import annotations

from ._cli import main as main

#: Lets ``python -m anyway bench`` check that it imported this suite and not
#: some other ``benchmarks`` package that happens to be on ``sys.path``.
ANYWAY_BENCHMARKS = True

__all__ = ["ANYWAY_BENCHMARKS", "main"]
