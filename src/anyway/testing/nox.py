"""Run a nox session once per loop and with / without each optional dependency.

A library on AnyIO is tested on asyncio, uvloop and Trio, and, when it has
optional dependencies, both with and without them (an import that is not
guarded shows up only without). :func:`variants` lists those combinations,
:func:`parametrize` turns them into the parameters of a nox session::

    import nox
    from anyway.testing.nox import Variant, parametrize, variants

    @nox.session(python=["3.11", "3.13"])
    @parametrize(variants(backends=["asyncio", "trio"], optional={"httpx": ["httpx"]}))
    def tests(session: nox.Session, variant: Variant) -> None:
        session.install(".", "pytest", *variant.install)
        session.run("pytest", *variant.pytest_args, *session.posargs)

Each :class:`Variant` knows what to install (the loops' packages and the
optional dependencies it includes) and the pytest option that runs the tests
on its loops only (``--anyio-backends``, from anyway's pytest plugin).

This module only needs the standard library, and nox for
:func:`parametrize` (imported when called): nox runs the noxfile with its own
Python, so install anyway beside it (``pipx inject nox anyway``, ``uv tool
install nox --with anyway``) or list anyway in the noxfile's inline script
metadata.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["BACKENDS", "DEFAULT_REQUIREMENTS", "Variant", "parametrize", "variants"]

F = TypeVar("F", bound=Callable[..., Any])

#: The loops a variant may run on.
BACKENDS = ("asyncio", "uvloop", "trio")

#: What each loop needs installed (override it with ``requirements=``).
DEFAULT_REQUIREMENTS: Mapping[str, tuple[str, ...]] = {
    "asyncio": (),
    "uvloop": ("uvloop; platform_system != 'Windows'",),
    "trio": ("trio",),
}

# The pytest plugin's test ids: a loop and the foreign clocks that run on it.
_TEST_IDS = {
    "asyncio": ("asyncio", "looptime"),
    "uvloop": ("uvloop",),
    "trio": ("trio", "mockclock"),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One parameter of a session: the loops it runs on and the optional
    dependencies it installs.

    *backends*: the loops (``asyncio``, ``uvloop``, ``trio``). *optional*:
    the names of the optional dependencies installed; *without*: the names
    left out. *install*: the requirements to install, the loops' and the
    optional dependencies'. *python*: the interpreter, when the variant
    chooses it (see :meth:`on`).
    """

    backends: tuple[str, ...]
    optional: tuple[str, ...] = ()
    without: tuple[str, ...] = ()
    install: tuple[str, ...] = ()
    python: str | None = None

    @property
    def id(self) -> str:
        """``asyncio+trio``, then ``with-NAME`` / ``without-NAME`` per optional dependency."""
        parts = ["+".join(self.backends)]
        parts += [f"with-{name}" for name in self.optional]
        parts += [f"without-{name}" for name in self.without]
        return ", ".join(parts)

    @property
    def pytest_args(self) -> tuple[str, ...]:
        """``("--anyio-backends=...",)``: the tests run on these loops only
        (and on the foreign clocks that run on them: looptime on asyncio,
        mockclock on Trio)."""
        ids = [test_id for backend in self.backends for test_id in _TEST_IDS[backend]]
        return (f"--anyio-backends={','.join(ids)}",)

    def on(self, python: str) -> Variant:
        """This variant on *python* only (for :func:`parametrize` to pass as
        the session's interpreter: a session without ``python=``)."""
        if not isinstance(python, str) or not python:  # type: ignore[redundant-expr]
            raise TypeError(f"python must be a version string such as '3.12', got {python!r}")
        return dataclasses.replace(self, python=python)


def variants(
    *,
    backends: Iterable[str | Sequence[str]] = (BACKENDS,),
    optional: Mapping[str, Sequence[str]] | None = None,
    requirements: Mapping[str, Sequence[str]] | None = None,
) -> list[Variant]:
    """Every combination of a group of loops with each optional dependency in or out.

    *backends*: the groups of loops, one session each: ``[("asyncio",
    "uvloop", "trio")]`` (the default) runs all three in one session,
    ``["asyncio", "trio"]`` makes a session per loop. *optional*: name ->
    requirements, e.g. ``{"httpx": ["httpx>=0.27"]}``; each name doubles the
    variants (with it, without it). *requirements*: what a loop needs
    installed, over :data:`DEFAULT_REQUIREMENTS` (e.g. ``{"trio": ["trio>=0.30",
    "pytest-trio"]}``).

    ``variants(backends=["asyncio", "trio"], optional={"httpx": ["httpx"]})``
    gives four: ``asyncio, with-httpx``, ``asyncio, without-httpx``,
    ``trio, with-httpx``, ``trio, without-httpx``.
    """
    groups = [_backend_group(group) for group in _as_list("backends", backends)]
    if not groups:
        raise ValueError("backends must name at least one group of loops, e.g. ['asyncio', 'trio']")
    extras = _requirement_map("optional", optional or {}, allowed=None)
    needs = {**DEFAULT_REQUIREMENTS, **_requirement_map("requirements", requirements or {})}
    result: list[Variant] = []
    for group in groups:
        loop_install = [req for backend in group for req in needs[backend]]
        for chosen in itertools.product((True, False), repeat=len(extras)):
            included = tuple(name for name, on in zip(extras, chosen, strict=True) if on)
            left_out = tuple(name for name, on in zip(extras, chosen, strict=True) if not on)
            install = [*loop_install, *(req for name in included for req in extras[name])]
            result.append(Variant(group, included, left_out, tuple(dict.fromkeys(install))))
    return result


def parametrize(variants: Iterable[Variant], *, name: str = "variant") -> Callable[[F], F]:
    """``nox.parametrize`` over *variants*, with their ids; the session
    receives each one as its argument *name*.

    When the variants choose their interpreter (:meth:`Variant.on`), every
    one must, and the session is declared without ``python=``: nox then takes
    the interpreter from the parameter. That gives a matrix that is not a
    full product, e.g. every Python with all the loops and one Python
    without Trio::

        @nox.session
        @parametrize([
            *(v.on(py) for py in ["3.11", "3.12"] for v in variants()),
            *(v.on("3.11") for v in variants(backends=[("asyncio", "uvloop")])),
        ])
        def tests(session, variant): ...
    """
    chosen = list(variants)
    if not chosen:
        raise ValueError("variants is empty: give at least one, e.g. variants()")
    for variant in chosen:
        if not isinstance(variant, Variant):
            raise TypeError(
                f"variants must hold Variant objects (from variants()), got {variant!r}"
            )
    ids = [
        variant.id if variant.python is None else f"{variant.python}, {variant.id}"
        for variant in chosen
    ]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"variants has the same variant twice: {duplicate!r}")
    pythons = {variant.python is None for variant in chosen}
    if len(pythons) > 1:
        raise ValueError(
            "variants mixes variants with and without a python: call .on(python) on all or none"
        )
    nox = _import_nox()
    if None in (variant.python for variant in chosen):
        return nox.parametrize(name, chosen, ids=ids)  # type: ignore[no-any-return]
    values = [(variant.python, variant) for variant in chosen]
    return nox.parametrize(["python", name], values, ids=ids)  # type: ignore[no-any-return]


def _import_nox() -> Any:
    try:
        import nox
    except ImportError as missing:
        raise ImportError(
            "anyway.testing.nox.parametrize needs nox, which runs the noxfile:"
            " pip install nox (a tool, not a dependency of anyway)"
        ) from missing
    return nox


def _as_list(name: str, value: object) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list, got {value!r} (e.g. {name}=['asyncio', 'trio'])")
    return list(value)


def _backend_group(group: object) -> tuple[str, ...]:
    names = (group,) if isinstance(group, str) else tuple(_as_list("a group of backends", group))
    if not names:
        raise ValueError("backends: a group of loops is empty; name at least one loop")
    for backend in names:
        if backend not in BACKENDS:
            raise ValueError(
                f"backends: unknown loop {backend!r}; use names from {', '.join(BACKENDS)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"backends: {names!r} names a loop twice")
    return names


def _requirement_map(
    name: str, value: object, *, allowed: tuple[str, ...] | None = BACKENDS
) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of name -> requirements, got {value!r}")
    result: dict[str, tuple[str, ...]] = {}
    for key, requirements in value.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name}: the names must be non-empty strings, got {key!r}")
        if allowed is not None and key not in allowed:
            raise ValueError(f"{name}: unknown loop {key!r}; use names from {', '.join(allowed)}")
        if isinstance(requirements, str) or not all(
            isinstance(r, str) for r in _as_list(f"{name}[{key!r}]", requirements)
        ):
            raise TypeError(
                f"{name}[{key!r}] must be a list of requirement strings, got {requirements!r}"
                f" (e.g. {{{key!r}: [{key!r}]}})"
            )
        result[key] = tuple(requirements)
    return result
