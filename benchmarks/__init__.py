"""The anyway benchmark suite, a tool of the repository (not of the installed package).

Run it from the root of a clone: ``nox -s bench`` (quick mode, in a fresh
environment with every peer) or ``python -m benchmarks``. See
``docs/performance.md`` for the method and the published results.
"""
