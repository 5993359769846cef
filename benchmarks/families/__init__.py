"""The benchmark families: each module has ``TITLE`` and ``cases() -> list[Case]``.

Family modules import AnyIO and anyway at import time; loops and peers are
imported inside the variants, so that what is missing is reported as skipped.
"""

from __future__ import annotations

import importlib

from .._core import Case

__all__ = ["FAMILIES", "TITLES", "all_cases"]

#: family id -> module, in the order they run.
FAMILIES = {
    "anyio": "native",
    "idiom": "idiom",
    "helpers": "helpers",
    "retry": "retry",
    "limits": "limits",
    "breaker": "breaker",
    "httpx": "transport",
    "scaling": "scaling",
}
_MODULES = {f: importlib.import_module(f"{__name__}.{m}") for f, m in FAMILIES.items()}
TITLES: dict[str, str] = {f: str(m.TITLE) for f, m in _MODULES.items()}


def all_cases() -> list[Case]:
    """Every case of every family, in the order they run."""
    return [case for module in _MODULES.values() for case in module.cases()]
