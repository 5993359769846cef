"""The docs' runnable examples run, on every loop.

Each ```python block of the pages below that ends with ``anyio.run(main)``
is written to a file (so tracebacks and ``linecache`` see its lines) and run
with ``anyio.run`` bound to the test's backend, on virtual time where the
suite uses it.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import anyio
import pytest

DOCS = Path(__file__).parent.parent / "docs"
TUTORIAL = [
    "timeouts",
    "task-groups",
    "partial-failure",
    "retry",
    "rate-limiting",
    "circuit-breakers",
    "cancellation",
    "producer-consumer",
    "async-generators",
    "testing",
    "measuring",
]
PAGES = [
    "patterns.md",
    "getting-started.md",
    *(f"tutorial/{chapter}.md" for chapter in TUTORIAL),
]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _examples() -> list[Any]:
    found = []
    for page in PAGES:
        blocks = _BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))
        runnable = [code for code in blocks if "anyio.run(main)" in code]
        found += [pytest.param(code, id=f"{page}-{n}") for n, code in enumerate(runnable, 1)]
    return found


@pytest.mark.parametrize("code", _examples())
def test_example_runs(
    code: str, anyio_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, options = anyio_backend
    real_run = anyio.run

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return real_run(fn, *args, backend=name, backend_options=options)

    monkeypatch.setattr(anyio, "run", run)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    runpy.run_path(str(script), run_name="__main__")


def test_every_page_listed_has_examples() -> None:
    for page in PAGES:
        code = (DOCS / page).read_text(encoding="utf-8")
        assert any("anyio.run(main)" in block for block in _BLOCK.findall(code)), page


def test_every_tutorial_chapter_is_listed() -> None:
    chapters = {path.stem for path in (DOCS / "tutorial").glob("*.md")} - {"index"}
    assert chapters == set(TUTORIAL)
