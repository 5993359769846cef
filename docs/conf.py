"""Sphinx configuration: Markdown pages (MyST) plus an API reference from docstrings.

The build is nitpicky (``nox -s docs`` runs ``sphinx-build -n -W``): every
reference must resolve. The hooks at the end keep private names out of the
reference: type parameters are shown by name, class parameters are typed like
function parameters, and private base classes give way to public ones.
"""

from __future__ import annotations

import collections.abc
import enum
import sys
import types
import typing
from typing import Any, ParamSpec, ParamSpecArgs, ParamSpecKwargs, TypeVar, TypeVarTuple

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import inspect as sphinx_inspect
from sphinx.util.typing import stringify_annotation

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
# anyway.otel imports these for type checking only (OpenTelemetry is optional)
autodoc_type_aliases = {
    "Meter": "opentelemetry.metrics.Meter",
    "MeterProvider": "opentelemetry.metrics.MeterProvider",
}

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
    "opentelemetry": (
        "https://opentelemetry-python.readthedocs.io/en/latest",
        "_inventories/opentelemetry.inv",
    ),
}


# -- Type parameters -------------------------------------------------------------
# ``T``, ``P`` and ``Ts`` are defined in the private modules and documented
# nowhere: they are shown by their name, as in the source, and not linked.

_TYPE_PARAMETERS = (TypeVar, ParamSpec, TypeVarTuple)


def _type_parameter_names() -> set[str]:
    names: set[str] = set()
    for modname, module in list(sys.modules.items()):
        if modname != "anyway" and not modname.startswith("anyway."):
            continue
        for name, value in vars(module).items():
            if isinstance(value, _TYPE_PARAMETERS):
                names.update((name, f"{modname}.{name}"))
    return names


def _resolve_more(
    app: Sphinx, env: Any, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    """What Sphinx could not resolve: type parameters, and classes named by
    their defining module (``asyncio.events.AbstractEventLoop``) that their
    package documents under its own name (``asyncio.AbstractEventLoop``)."""
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", ""))
    if target.removesuffix(".args").removesuffix(".kwargs") in _type_parameter_names():
        return contnode
    public = _package_level_name(target)
    if public is None:
        return None
    retry = node.deepcopy()
    retry["reftarget"] = public
    return app.emit_firstresult("missing-reference", env, retry, contnode)


def _package_level_name(target: str) -> str | None:
    modname, _, name = target.rpartition(".")
    package = modname.split(".")[0]
    if modname == package or modname not in sys.modules:
        return None
    value = getattr(sys.modules[modname], name, None)
    if value is None or getattr(sys.modules.get(package), name, None) is not value:
        return None
    return f"{package}.{name}"


def _stringify(annotation: Any) -> str:
    """Sphinx's ``stringify_annotation``, with three corrections.

    Sphinx renders ``Callable[P, T]`` as ``Callable[[~P], T]`` and ``P.args``
    as ``~P``: here they stay as in the source. An ``autodoc_type_aliases``
    name inside a union is written as its target (Sphinx only unwraps it at
    the top). A private "left out" sentinel is not shown (see below).
    """
    if isinstance(annotation, sphinx_inspect.TypeAliasForwardRef):
        return f"~{annotation.name}"
    if isinstance(annotation, ParamSpec):
        return annotation.__name__
    if isinstance(annotation, ParamSpecArgs | ParamSpecKwargs):
        kind = "args" if isinstance(annotation, ParamSpecArgs) else "kwargs"
        return f"{annotation.__origin__.__name__}.{kind}"
    if not _needs_care(annotation):
        return stringify_annotation(annotation, "smart")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_stringify(arg) for arg in args if not _is_private_sentinel(arg))
    name = stringify_annotation(origin, "smart")
    if origin is collections.abc.Callable:
        params, result = args
        if isinstance(params, list):
            params = "[" + ", ".join(_stringify(p) for p in params) + "]"
        else:
            params = _stringify(params)
        return f"{name}[{params}, {_stringify(result)}]"
    return f"{name}[{', '.join(_stringify(arg) for arg in args)}]"


def _is_private_sentinel(annotation: Any) -> bool:
    """``Literal[_NotGiven.NOT_GIVEN]``: "left out", a default that has no
    public name (the signature shows it as ``=NOT_GIVEN``)."""
    if typing.get_origin(annotation) is not typing.Literal:
        return False
    return all(
        isinstance(value, enum.Enum) and type(value).__name__.startswith("_")
        for value in typing.get_args(annotation)
    )


def _needs_care(annotation: Any) -> bool:
    if isinstance(
        annotation,
        ParamSpec | ParamSpecArgs | ParamSpecKwargs | sphinx_inspect.TypeAliasForwardRef,
    ):
        return True
    if isinstance(annotation, list):
        return any(_needs_care(arg) for arg in annotation)
    if _is_private_sentinel(annotation):
        return True
    return any(_needs_care(arg) for arg in typing.get_args(annotation))


# -- Parameter types -----------------------------------------------------------
# With ``autodoc_typehints = "description"``, Sphinx records the types of a
# class's parameters from the class, where the annotations of ``__init__`` stay
# unevaluated strings: private aliases (``ExceptionFilter``) then leak by name.
# They are recorded here from ``__init__``, evaluated like a function's.


def _record_typehints(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> None:
    if not callable(obj) or not name.startswith("anyway"):
        return
    if what in ("class", "exception"):
        init = getattr(obj, "__init__", None)
        if init is None or not isinstance(init, types.FunctionType):
            return
        if signature in ("", "()"):  # given in the directive: no constructor to show
            app.env.current_document.autodoc_annotations.pop(name, None)
            return
        subject, bound = init, True
    else:
        subject, bound = obj, False
    try:
        sig = sphinx_inspect.signature(
            subject, bound_method=bound, type_aliases=app.config.autodoc_type_aliases
        )
    except (TypeError, ValueError):
        return
    recorded = app.env.current_document.autodoc_annotations.setdefault(name, {})
    for param in sig.parameters.values():
        if param.annotation is not param.empty:
            recorded[param.name] = _stringify(param.annotation)
    if what not in ("class", "exception") and sig.return_annotation is not sig.empty:
        recorded["return"] = _stringify(sig.return_annotation)


# -- Base classes ----------------------------------------------------------------
# A private base class (``anyway._gcra.Gcra``, asyncio's ``_UnixSelectorEventLoop``)
# is shown under its public name if its package exports it, else replaced by
# its own bases.


def _public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    public: list[Any] = []
    for base in bases:
        public.extend(_public(base))
    bases[:] = list(dict.fromkeys(public)) or [object]


def _public(base: Any) -> list[Any]:
    if not isinstance(base, type):
        return [base]
    path = f"{base.__module__}.{base.__qualname__}"
    if not any(part.startswith("_") for part in path.split(".")):
        return [base]
    package = sys.modules.get(base.__module__.split(".")[0])
    for public_name, value in vars(package or object()).items():
        if value is base and not public_name.startswith("_"):
            return [f":py:class:`{package.__name__}.{public_name}`"]
    return [b for inner in base.__bases__ if inner is not object for b in _public(inner)]


# -- Re-exported constants ----------------------------------------------------------
# ``anyway.NO_FALLBACK`` is imported into ``anyway``; its docstring is where it
# is defined, in ``anyway._compose``. Autodoc looks for it in ``anyway`` only
# and falls back on the docstring of the value's type ("The type of
# NO_FALLBACK."): the docstring of the definition is used instead.


def _definition_docstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if what != "data" or not name.startswith("anyway."):
        return
    modname, _, attr = name.rpartition(".")
    if _attribute_docs(modname).get(("", attr)):
        return
    for other, module in sorted(sys.modules.items()):
        if other == modname or not other.startswith("anyway."):
            continue
        if attr in vars(module) and vars(module)[attr] is obj:
            docs = _attribute_docs(other).get(("", attr))
            if docs:
                lines[:] = list(docs)
                return


def _attribute_docs(modname: str) -> dict[tuple[str, str], list[str]]:
    try:
        return ModuleAnalyzer.for_module(modname).find_attr_docs()
    except PycodeError:
        return {}


def setup(app: Sphinx) -> None:
    app.connect("missing-reference", _resolve_more)
    # autodoc records the types just before this event; the handler corrects them
    app.connect("autodoc-process-signature", _record_typehints, priority=600)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-docstring", _definition_docstring)
