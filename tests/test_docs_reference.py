"""The API reference documents every public name, and lists every public module.

The nitpicky docs build (``nox -s docs``) checks that every reference
resolves; it cannot notice a public name that no page documents. This test
reads the autodoc directives of the pages instead of building them.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PUBLIC_MODULES = [
    "anyway",
    "anyway.abc",
    "anyway.httpx",
    "anyway.redis",
    "anyway.otel",
    "anyway.testing",
    "anyway.testing.nox",
]
# ".. autoclass:: anyway.X" with its option lines ("   :members: a, b")
_DIRECTIVE = re.compile(r"^\.\. (auto\w+|module|py:module)::[ \t]*(\S+)((?:\n[ \t]+:.*)*)", re.M)


def _directives() -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for page in sorted(DOCS.rglob("*.md")):
        if "_build" in page.parts:
            continue
        for kind, target, options in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            found.append((kind, target.split("(")[0], options))
    return found


def _documented() -> tuple[set[str], set[str]]:
    """Documented names, and modules that have an entry in the module index."""
    names: set[str] = set()
    modules: set[str] = set()
    for kind, target, options in _directives():
        if kind in ("module", "py:module"):
            modules.add(target)
        elif kind == "automodule":
            modules.add(target)
            members = re.search(r":members:(.*)", options)
            listed = [n.strip() for n in members.group(1).split(",")] if members else []
            if any(listed):
                names.update(f"{target}.{name}" for name in listed if name)
            else:  # every member (autodoc_default_options has "members")
                names.add(f"{target}.*")
        else:
            names.add(target)
    return names, modules


@pytest.mark.parametrize("modname", PUBLIC_MODULES)
def test_every_public_name_is_documented(modname: str) -> None:
    module = importlib.import_module(modname) if modname == "anyway" else None
    if module is None:
        module = pytest.importorskip(modname, exc_type=ImportError)
    names, _ = _documented()
    if f"{modname}.*" in names:
        return
    # a class re-exported by two modules (anyway.BreakerConfig is anyway.abc's)
    # is documented once
    elsewhere = {id(obj) for obj in map(_resolve, names) if _is_definition(obj)}
    missing = [
        name
        for name in module.__all__
        if f"{modname}.{name}" not in names
        and not (_is_definition(obj := getattr(module, name)) and id(obj) in elsewhere)
    ]
    assert not missing, f"not in the API reference (docs/api.md): {missing}"


def _resolve(name: str) -> object:
    modname, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(modname), attr, None)
    except ImportError:
        return None


def _is_definition(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isroutine(obj)


def test_every_public_module_is_in_the_module_index() -> None:
    _, modules = _documented()
    assert set(PUBLIC_MODULES) <= modules, sorted(set(PUBLIC_MODULES) - modules)


def test_the_reference_names_no_private_module() -> None:
    private = [target for _, target, _ in _directives() if "._" in target]
    assert not private, f"document the public name instead: {private}"
