"""Sphinx configuration: Markdown pages (MyST) plus an API reference from docstrings."""

from __future__ import annotations

import anyway

project = "anyway"
author = "The anyway developers"
copyright = "2026, The anyway developers"
release = anyway.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "_inventories"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_mock_imports: list[str] = []

html_theme = "furo"
html_title = "anyway"

# Cross-references to other projects resolve offline, from the inventories
# committed in _inventories/ (see its README): the build needs no network and
# gives the same result on every machine. The links still point at the
# projects' online documentation.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inventories/python.inv"),
    "anyio": ("https://anyio.readthedocs.io/en/stable", "_inventories/anyio.inv"),
    "trio": ("https://trio.readthedocs.io/en/stable", "_inventories/trio.inv"),
    "outcome": ("https://outcome.readthedocs.io/en/latest", "_inventories/outcome.inv"),
    "httpx": ("https://www.python-httpx.org", "_inventories/httpx.inv"),
    "coredis": ("https://coredis.readthedocs.io/en/latest", "_inventories/coredis.inv"),
}
