"""anyway.testing.nox: the variants a session is parametrized over, what each
installs and passes to pytest, and the nox parametrization itself."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import anyway.testing
from anyway.testing.nox import DEFAULT_REQUIREMENTS, Variant, parametrize, variants

HAVE_NOX = importlib.util.find_spec("nox") is not None
SOURCE = str(Path(anyway.testing.__file__).parents[2])


def test_default_is_one_session_on_every_loop() -> None:
    (variant,) = variants()
    assert variant.backends == ("asyncio", "uvloop", "trio")
    assert variant.install == (*DEFAULT_REQUIREMENTS["uvloop"], *DEFAULT_REQUIREMENTS["trio"])
    assert variant.id == "asyncio+uvloop+trio"
    # the pytest plugin's ids, foreign clocks included
    assert variant.pytest_args == ("--anyio-backends=asyncio,looptime,uvloop,trio,mockclock",)


def test_one_session_per_loop_with_and_without_an_optional_dependency() -> None:
    result = variants(backends=["asyncio", "trio"], optional={"httpx": ["httpx>=0.27"]})
    assert [v.id for v in result] == [
        "asyncio, with-httpx",
        "asyncio, without-httpx",
        "trio, with-httpx",
        "trio, without-httpx",
    ]
    assert [v.install for v in result] == [
        ("httpx>=0.27",),
        (),
        ("trio", "httpx>=0.27"),
        ("trio",),
    ]
    assert result[1].without == ("httpx",)
    assert result[2].pytest_args == ("--anyio-backends=trio,mockclock",)


def test_each_optional_dependency_doubles_the_variants() -> None:
    result = variants(
        backends=[("asyncio", "uvloop")],
        optional={"httpx": ["httpx"], "otel": ["opentelemetry-api", "opentelemetry-sdk"]},
    )
    assert [(v.optional, v.without) for v in result] == [
        (("httpx", "otel"), ()),
        (("httpx",), ("otel",)),
        (("otel",), ("httpx",)),
        ((), ("httpx", "otel")),
    ]
    assert result[2].install == (
        DEFAULT_REQUIREMENTS["uvloop"][0],
        "opentelemetry-api",
        "opentelemetry-sdk",
    )


def test_requirements_replace_a_loops_defaults() -> None:
    (variant,) = variants(
        backends=[("asyncio", "trio")], requirements={"trio": ["trio>=0.30", "pytest-trio"]}
    )
    assert variant.install == ("trio>=0.30", "pytest-trio")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"backends": ["tokio"]}, ValueError, "unknown loop 'tokio'; use names from asyncio"),
        ({"backends": [()]}, ValueError, "a group of loops is empty"),
        ({"backends": []}, ValueError, "at least one group"),
        ({"backends": "asyncio"}, TypeError, "backends must be a list"),
        ({"backends": [("trio", "trio")]}, ValueError, "names a loop twice"),
        ({"optional": {"httpx": "httpx"}}, TypeError, r"optional\['httpx'\] must be a list"),
        ({"optional": ["httpx"]}, TypeError, "optional must be a dict"),
        ({"requirements": {"tokio": []}}, ValueError, "requirements: unknown loop 'tokio'"),
    ],
)
def test_bad_input_names_the_parameter_and_the_fix(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        variants(**kwargs)


class FakeNox:
    """Records nox.parametrize's arguments; its decorator marks the function."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, Any]] = []

    def parametrize(self, names: Any, values: Any, ids: Any = None) -> Any:
        self.calls.append((names, values, ids))
        return lambda fn: fn


@pytest.fixture
def fake_nox(monkeypatch: pytest.MonkeyPatch) -> FakeNox:
    fake = FakeNox()
    monkeypatch.setitem(sys.modules, "nox", types.SimpleNamespace(parametrize=fake.parametrize))
    return fake


def test_parametrize_passes_the_variants_and_their_ids(fake_nox: FakeNox) -> None:
    chosen = variants(backends=["asyncio", "trio"])
    parametrize(chosen)(lambda session, variant: None)
    assert fake_nox.calls == [("variant", chosen, ["asyncio", "trio"])]


def test_parametrize_can_choose_the_python_per_variant(fake_nox: FakeNox) -> None:
    (everything,) = variants()
    (no_trio,) = variants(backends=[("asyncio", "uvloop")])
    chosen = [everything.on("3.11"), everything.on("3.13"), no_trio.on("3.11")]
    parametrize(chosen, name="loops")(lambda session, loops: None)
    ((names, values, ids),) = fake_nox.calls
    assert names == ["python", "loops"]
    assert values == [("3.11", chosen[0]), ("3.13", chosen[1]), ("3.11", chosen[2])]
    assert ids == [
        "3.11, asyncio+uvloop+trio",
        "3.13, asyncio+uvloop+trio",
        "3.11, asyncio+uvloop",
    ]


@pytest.mark.parametrize(
    ("chosen", "error", "message"),
    [
        ([], ValueError, "variants is empty"),
        (["asyncio"], TypeError, "must hold Variant objects"),
        ([Variant(("trio",)), Variant(("trio",))], ValueError, "the same variant twice"),
        ([Variant(("trio",)).on("3.12"), Variant(("asyncio",))], ValueError, "on all or none"),
    ],
)
def test_parametrize_refuses_bad_variants(
    fake_nox: FakeNox, chosen: list[Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parametrize(chosen)
    assert not fake_nox.calls


def test_on_refuses_a_python_that_is_not_a_version_string() -> None:
    with pytest.raises(TypeError, match=r"version string such as '3\.12'"):
        Variant(("asyncio",)).on(3.12)  # type: ignore[arg-type]


def test_parametrize_without_nox_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nox", None)  # import nox raises ImportError
    with pytest.raises(ImportError, match="needs nox, which runs the noxfile: pip install nox"):
        parametrize(variants())


class FakeSession:
    """What the session function uses of nox.Session."""

    def __init__(self) -> None:
        self.posargs: list[str] = ["-x"]
        self.commands: list[tuple[str, ...]] = []

    def install(self, *args: str) -> None:
        self.commands.append(("install", *args))

    def run(self, *args: str) -> None:
        self.commands.append(("run", *args))


def _documented_noxfile() -> str:
    """The noxfile example of docs/testing.md (the block that starts ``# noxfile.py``)."""
    page = Path(__file__).parent.parent / "docs" / "testing.md"
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    (noxfile,) = [block for block in blocks if block.startswith("# noxfile.py")]
    return str(noxfile)


EXAMPLE_NOXFILE = _documented_noxfile()


def test_the_documented_session_installs_and_runs_per_variant() -> None:
    namespace: dict[str, Any] = {}
    fake = FakeNox()
    nox_module = types.SimpleNamespace(
        parametrize=fake.parametrize, session=lambda **kw: lambda fn: fn, Session=object
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "nox", nox_module)
        exec(compile(EXAMPLE_NOXFILE, "noxfile.py", "exec"), namespace)
    ((_, values, _),) = fake.calls
    sessions = []
    for variant in values:
        session = FakeSession()
        namespace["tests"](session, variant)
        sessions.append(session.commands)
    assert sessions[0] == [
        ("install", ".", "pytest", "httpx"),
        ("run", "pytest", "--anyio-backends=asyncio,looptime", "-x"),
    ]
    assert sessions[3] == [
        ("install", ".", "pytest", "trio"),
        ("run", "pytest", "--anyio-backends=trio,mockclock", "-x"),
    ]


@pytest.mark.skipif(not HAVE_NOX, reason="nox not installed")
def test_the_documented_noxfile_lists_its_sessions_under_real_nox(tmp_path: Path) -> None:
    (tmp_path / "noxfile.py").write_text(EXAMPLE_NOXFILE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    names = [session["session"] for session in json.loads(listed.stdout)]
    assert names == [
        f"tests-{python}({variant})"
        for python in ("3.11", "3.13")
        for variant in (
            "asyncio, with-httpx",
            "asyncio, without-httpx",
            "trio, with-httpx",
            "trio, without-httpx",
        )
    ]
