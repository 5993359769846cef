"""The pytest plugin's side of pytest-trio: who runs which async test.

With pytest-trio's ``trio_mode = true`` two plugins want the async tests:
pytest-trio marks *every* coroutine test ``trio`` and runs it with
``trio.run``; AnyIO runs the tests marked ``anyio`` on their
``anyio_backend``. Left alone, an AnyIO test's asyncio and uvloop legs run
on Trio (pytest-trio wraps them first), an AnyIO async fixture meets a
nested ``trio.run``, and a Trio test that asks for ``clock`` is split into
one copy per ``anyio_backend`` parameter, every copy on Trio.

The rule here: a test AnyIO takes (marked ``anyio``, or every async test
with ``anyio_mode = auto``) belongs to AnyIO, and pytest-trio's automatic
mark is taken off it again; every other coroutine test in trio mode (and any
test marked ``trio``) belongs to pytest-trio, runs once, and counts as
``trio`` in the ``backends:`` line.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

__all__ = [
    "is_anyio_test",
    "is_pytest_trio_test",
    "keep_one_trio_leg",
    "trio_mode",
    "untake_anyio_tests",
]

_TRIO_OWN_ID = "trio"


def trio_mode(config: pytest.Config) -> bool:
    """Whether pytest-trio takes every async test: ``trio_mode = true`` in
    the configuration, or a conftest that does
    ``from pytest_trio.enable_trio_mode import *``."""
    if not config.pluginmanager.hasplugin("trio"):
        return False
    try:
        if config.getini("trio_mode"):
            return True
    except ValueError:  # pytest-trio not loaded after all: no such ini option
        return False
    return any(
        getattr(getattr(plugin, "pytest_collection_modifyitems", None), "__module__", None)
        == "pytest_trio.enable_trio_mode"
        for plugin in config.pluginmanager.get_plugins()
    )


def _is_coroutine_test(item: pytest.Item) -> bool:
    obj = getattr(item, "obj", None)
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", obj)
    return inspect.iscoroutinefunction(inner)


def is_anyio_test(item: pytest.Item) -> bool:
    """An async test that AnyIO's plugin runs on its ``anyio_backend``."""
    if not _is_coroutine_test(item):
        return False
    if item.get_closest_marker("anyio") is not None:
        return True
    try:
        return bool(item.config.getini("anyio_mode") == "auto")
    except ValueError:  # AnyIO's plugin not loaded
        return False


def is_pytest_trio_test(item: pytest.Item, *, in_trio_mode: bool) -> bool:
    """An async test pytest-trio runs (and AnyIO does not)."""
    if not item.config.pluginmanager.hasplugin("trio"):
        return False  # (a `trio` mark of somebody else's means nothing here)
    if not _is_coroutine_test(item) or is_anyio_test(item):
        return False
    return in_trio_mode or item.get_closest_marker("trio") is not None


def untake_anyio_tests(items: list[pytest.Item], marked_before: set[int]) -> None:
    """Take pytest-trio's automatic ``trio`` mark off the tests AnyIO runs.

    *marked_before*: the ids of the items that carried a ``trio`` mark before
    pytest-trio's automark (a user's own mark is left alone).
    """
    for item in items:
        if id(item) in marked_before or not is_anyio_test(item):
            continue
        item.own_markers[:] = [mark for mark in item.own_markers if mark.name != "trio"]


def keep_one_trio_leg(
    items: list[pytest.Item], *, in_trio_mode: bool, param_of: Any
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, dropped): a pytest-trio test parametrized over ``anyio_backend``
    (it asked for that fixture, or for one that needs it, like ``clock``)
    keeps only its ``trio`` leg (or its first one, when no leg is ``trio``):
    pytest-trio would run every leg on Trio.

    *param_of(item)*: the item's ``anyio_backend`` test id, or None.
    """
    legs: dict[str, list[pytest.Item]] = {}
    for item in items:
        if param_of(item) is not None and is_pytest_trio_test(item, in_trio_mode=in_trio_mode):
            legs.setdefault(_without_backend(item), []).append(item)
    dropped: list[pytest.Item] = []
    for group in legs.values():
        # the trio leg (its id says what runs it), else the first one
        keep = next((item for item in group if param_of(item) == _TRIO_OWN_ID), group[0])
        dropped += [item for item in group if item is not keep]
    if not dropped:
        return items, []
    gone = {id(item) for item in dropped}
    return [item for item in items if id(item) not in gone], dropped


def _without_backend(item: pytest.Item) -> str:
    """The item's identity apart from its ``anyio_backend`` parameter."""
    callspec = getattr(item, "callspec", None)
    params = {} if callspec is None else dict(callspec.params)
    params.pop("anyio_backend", None)
    return f"{item.nodeid.split('[', 1)[0]}|{sorted((k, repr(v)) for k, v in params.items())}"
