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
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_mock_imports: list[str] = []

html_theme = "furo"
html_title = "anyway"
