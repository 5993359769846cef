"""The single entry point: ``nox`` runs tests, lint, typing, docs and coverage.

``nox -s tests`` runs the suite on every Python from the classifiers that
exists on this machine (missing ones are left out, so ``CI=true`` never
fails on an interpreter this machine does not have). uv is used when
present, else virtualenv.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_external_run = True
nox.options.sessions = ["tests", "tests_without_trio", "lint", "typing", "docs", "coverage"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
CLASSIFIER_PYTHONS = [
    c.rsplit(" ", 1)[1]
    for c in PYPROJECT["project"]["classifiers"]
    if c.startswith("Programming Language :: Python :: 3.")
]


def _why_not(version: str) -> str | None:
    """Why pythonX.Y cannot run the tests here, or None when it can."""
    exe = shutil.which(f"python{version}")
    if exe is None:
        return "not on PATH"
    probe = subprocess.run([exe, "-c", "import sys"], capture_output=True, check=False)
    if probe.returncode != 0:  # e.g. a pyenv shim for a version that is not active
        first = (probe.stderr.decode(errors="replace").strip().splitlines() or ["it fails"])[0]
        return f"{exe} does not run ({first[:80]})"
    return None


SKIPPED = {v: why for v in CLASSIFIER_PYTHONS if (why := _why_not(v)) is not None}
PYTHONS = [v for v in CLASSIFIER_PYTHONS if v not in SKIPPED] or CLASSIFIER_PYTHONS[:1]
DEFAULT_PYTHON = PYTHONS[0]


def group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


def _needs_trio(requirement: str) -> bool:
    """Trio itself, or a package that depends on it (pytest-trio)."""
    return requirement.startswith(("trio", "pytest-trio"))


def _load_nox_helper() -> types.ModuleType:
    """anyway.testing.nox from this clone. nox runs this file with its own
    Python, where anyway (and AnyIO) need not be installed: the module needs
    only the standard library, so it is loaded from its file."""
    spec = importlib.util.spec_from_file_location(
        "anyway_testing_nox", ROOT / "src" / "anyway" / "testing" / "nox.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


anyway_nox = _load_nox_helper()
TEST_DEPS = group("test")
# what each loop needs, from the test group; the rest is installed everywhere
LOOP_DEPS = {
    "trio": [dep for dep in TEST_DEPS if _needs_trio(dep)],
    "uvloop": [dep for dep in TEST_DEPS if dep.startswith("uvloop")],
}
BASE_TEST_DEPS = [dep for dep in TEST_DEPS if not any(dep in deps for deps in LOOP_DEPS.values())]
# Every Python on every loop (`tests`), and one Python without Trio installed
# (`tests_without_trio`): not a full product, so CI runs the suite once per Python, plus once.
(ALL_LOOPS,) = anyway_nox.variants(requirements=LOOP_DEPS)
(WITHOUT_TRIO,) = anyway_nox.variants(backends=[("asyncio", "uvloop")], requirements=LOOP_DEPS)


def _pytest(session: nox.Session, *extra: str) -> None:
    # Hypothesis' "ci" profile (tests/conftest.py): derandomized, no example
    # database, so that a run never replays a failure from an earlier one.
    env = {
        "COVERAGE_FILE": str(ROOT / f".coverage.{re.sub(r'[^A-Za-z0-9.]+', '-', session.name)}"),
        "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
    }
    session.run("coverage", "erase", env=env)
    # Two workers (pytest-xdist) on the machine's cores; coverage measures them
    # as subprocesses (`patch = ["subprocess"]`), and the main process from the
    # start, so modules the pytest plugin imports early count too.
    workers = os.environ.get("ANYWAY_TEST_WORKERS", "auto")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        *(["-n", workers] if workers != "0" else []),
        *extra,
        *session.posargs,
        env=env,
    )
    session.run("coverage", "combine", "--quiet", env=env)
    session.run("coverage", "report", "--skip-covered", env=env)


def _tests(session: nox.Session, variant: anyway_nox.Variant) -> None:
    session.install(".", *BASE_TEST_DEPS, *variant.install)
    if "trio" not in variant.backends:
        session.run(
            "python", "-c", "import importlib.util as u; assert u.find_spec('trio') is None"
        )
    _pytest(session, *variant.pytest_args)


def tests(session: nox.Session, variant: anyway_nox.Variant) -> None:
    """The whole suite on asyncio, asyncio+uvloop and trio, with branch coverage."""
    _tests(session, variant)


# `nox -l` shows which of the classifiers' Pythons this machine cannot run, and why
# (under pyenv, a version that is installed but not active fails through its shim:
# .ci/run activates every installed 3.11-3.13).
if SKIPPED:
    tests.__doc__ = f"{tests.__doc__} Skipped here: " + "; ".join(
        f"{version}: {why}" for version, why in SKIPPED.items()
    )
tests = nox.session(anyway_nox.parametrize(ALL_LOOPS.on(python) for python in PYTHONS)(tests))


@nox.session
@anyway_nox.parametrize([WITHOUT_TRIO.on(DEFAULT_PYTHON)])
def tests_without_trio(session: nox.Session, variant: anyway_nox.Variant) -> None:
    """The suite without Trio installed (on asyncio and uvloop): proves Trio is optional."""
    _tests(session, variant)


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict on the package and on tests/typing (the pinned API types),
    pyright on tests/typing too (both checkers must agree with the pins), and
    pyright's type completeness of the public API (must be 100 %)."""
    session.install(".", *group("typing"))
    session.run("mypy", "--strict")
    session.run("pyright", "tests/typing")
    session.run("pyright", "--verifytypes", "anyway", "--ignoreexternal")


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the docs nitpicky (every reference must resolve), warnings as errors.

    ``-E`` rereads every page: an incremental build reports the warnings of the
    pages it rewrites only, so a second run could pass with warnings left.
    """
    session.install(".", *group("docs"))
    out = ROOT / "docs" / "_build" / "html"
    session.run("sphinx-build", "-n", "-W", "--keep-going", "-E", "-b", "html", "docs", str(out))


@nox.session(python=DEFAULT_PYTHON)
def coverage(session: nox.Session) -> None:
    """Combine the coverage of every tests session and report it (branches included)."""
    session.install("coverage[toml]")
    files = sorted(str(p) for p in ROOT.glob(".coverage.*"))
    if not files:
        session.skip("no coverage data: run the tests sessions first")
    session.run("coverage", "combine", "--keep", *files, env={"COVERAGE_FILE": ".coverage"})
    session.run("coverage", "report", env={"COVERAGE_FILE": ".coverage"})


@nox.session(python=DEFAULT_PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks, quick mode (a few minutes): ``nox -s bench -- --full``, ``-- --help``.

    ``python -m benchmarks`` from the root of the clone: the suite is a tool of
    the repository, not part of the installed package.
    """
    session.install(".", *group("bench"))
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def demo(session: nox.Session) -> None:
    """The demo (``python -m anyway demo``) from a fresh clone; options after --, e.g. ``-- --backend trio``."""
    session.install(".[httpx,trio]")
    session.run("python", "-m", "anyway", "demo", *session.posargs)
