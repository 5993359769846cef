"""The benchmark families; each module has ``TITLE`` and ``cases() -> list[Case]``.

Family modules import only AnyIO and anyway at import time; loops, peers and
anyway features that may be missing are imported inside the variants, which
are then reported as skipped with the reason.
"""

from __future__ import annotations

import importlib

from .._framework import Case

__all__ = ["FAMILIES", "FAMILY_TITLES", "all_cases"]

FAMILIES = ("anyio", "helpers", "retry", "limits", "breaker", "httpx", "scaling")
_MODULES = {
    "anyio": "native",
    "helpers": "helpers",
    "retry": "retry",
    "limits": "limits",
    "breaker": "breaker",
    "httpx": "transport",
    "scaling": "scaling",
}


def _module(family: str) -> object:
    return importlib.import_module(f"{__name__}.{_MODULES[family]}")


FAMILY_TITLES: dict[str, str] = {f: str(getattr(_module(f), "TITLE", f)) for f in FAMILIES}


def all_cases() -> list[Case]:
    """Every case of every family, in the order they run."""
    cases: list[Case] = []
    for family in FAMILIES:
        cases.extend(getattr(_module(family), "cases")())  # noqa: B009
    return cases
