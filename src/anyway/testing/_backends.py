"""Ready-made ``backend_options`` and ``anyio_backend`` parameters."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from .._validate import check_seconds
from ._foreign import foreign_clock, fresh_foreign
from ._threads import install

__all__ = [
    "DEFAULT_UVLOOP_SPEEDUP",
    "backend_id",
    "backends",
    "clock_id",
    "fresh_backend",
    "is_virtual",
    "virtual_time_options",
]

#: How much faster than real time uvloop runs in :func:`backends` with
#: ``virtual_time=True``: a 1 s timeout fires after 50 ms of wall time.
DEFAULT_UVLOOP_SPEEDUP = 20.0

Backend = tuple[str, dict[str, Any]]


def virtual_time_options(
    backend: Literal["asyncio", "trio"] | str, *, autojump_threshold: float = 0.0
) -> dict[str, Any]:
    """The ``backend_options`` that put ``anyio.run`` on virtual time.

    ::

        anyio.run(main, backend="trio", backend_options=virtual_time_options("trio"))

    Virtual time starts at 0.0 and only advances when every task is blocked
    and no worker thread started by ``anyio.to_thread`` is running; then it
    jumps to the next deadline, so an hour of ``anyio.sleep`` takes
    microseconds. *autojump_threshold* is how many real seconds everything
    must stay idle before the jump (0: at once).

    On asyncio this is a ``loop_factory`` for :class:`VirtualTimeEventLoop`;
    on Trio a ``trio.testing.MockClock`` whose autojump pauses while a worker thread runs. uvloop
    cannot be put on virtual time: see :func:`backends`.
    """
    threshold = check_seconds(
        "autojump_threshold",
        autojump_threshold,
        hint="; use 0 to jump as soon as everything is idle",
    )
    if backend == "asyncio":
        from ._asyncio import VirtualTimeEventLoop

        install("asyncio")

        def loop_factory() -> VirtualTimeEventLoop:
            return VirtualTimeEventLoop(autojump_threshold=threshold)

        loop_factory.__qualname__ = loop_factory.__name__ = "VirtualTimeEventLoop"
        loop_factory._anyway_kind = "virtual"  # type: ignore[attr-defined]
        return {"loop_factory": loop_factory}
    if backend == "trio":
        from ._trio import virtual_clock

        install("trio")
        return {"clock": virtual_clock(autojump_threshold=threshold)}
    raise ValueError(
        f"backend must be 'asyncio' or 'trio', got {backend!r}"
        " (uvloop cannot run on virtual time; use backends() for its real-time options)"
    )


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def backends(
    *,
    virtual_time: bool = False,
    uvloop: bool = True,
    uvloop_speedup: float | None = None,
) -> list[Backend]:
    """``anyio_backend`` parameters for every loop that is installed.

    Returns ``("asyncio", {...})``, ``("asyncio", {"loop_factory": <uvloop>})``
    when uvloop is installed and *uvloop* is true, and ``("trio", {...})`` when
    Trio is installed. With *virtual_time*, asyncio and Trio run on virtual
    time (:func:`virtual_time_options`).

    uvloop always runs on real time: its timers and its idle phase live in
    libuv's C code, so nothing can tell when all of its tasks are blocked.
    With *virtual_time* it runs on *accelerated* real time instead
    (``uvloop_speedup`` times faster, default :data:`DEFAULT_UVLOOP_SPEEDUP`),
    so time-based tests still run on it in a fraction of the wall time, with
    approximate durations (see the ``clock`` fixture). A conftest::

        import pytest
        from anyway.testing import backend_id, backends, fresh_backend

        @pytest.fixture(params=backends(virtual_time=True), ids=backend_id)
        def anyio_backend(request):
            return fresh_backend(request)
    """
    result: list[Backend] = []
    if virtual_time:
        result.append(("asyncio", virtual_time_options("asyncio")))
    else:
        result.append(("asyncio", {}))
    if uvloop and _have("uvloop"):
        from ._asyncio import accelerated_uvloop_factory

        speedup = uvloop_speedup
        if speedup is None:
            speedup = DEFAULT_UVLOOP_SPEEDUP if virtual_time else 1.0
        result.append(("asyncio", {"loop_factory": accelerated_uvloop_factory(speedup)}))
    if _have("trio"):
        result.append(("trio", virtual_time_options("trio") if virtual_time else {}))
    return result


def backend_id(backend: object) -> str:
    """A short test id for an ``anyio_backend`` value: asyncio, uvloop or trio."""
    if isinstance(backend, str):
        return backend
    if isinstance(backend, tuple) and len(backend) == 2:
        name, options = backend
        factory = options.get("loop_factory")
        if name == "asyncio" and (
            options.get("use_uvloop")
            or getattr(factory, "_anyway_kind", None) == "uvloop"
            or getattr(factory, "__module__", "").startswith("uvloop")
        ):
            return "uvloop"
        return str(name)
    raise TypeError(f"not an anyio_backend value: {backend!r}")


def clock_id(backend: object) -> str:
    """A test id naming the clock: asyncio, uvloop, trio, looptime or mockclock.

    Like :func:`backend_id`, except that the parameters of
    :func:`foreign_clocks` get their own names.
    """
    foreign = foreign_clock(backend)
    return backend_id(backend) if foreign is None else foreign.name


def is_virtual(backend: object) -> bool:
    """Whether an ``anyio_backend`` value runs on virtual time."""
    if not isinstance(backend, tuple):
        return False
    name, options = backend
    if name == "trio":
        from ._trio import is_mock_clock

        return is_mock_clock(options.get("clock"))
    return getattr(options.get("loop_factory"), "_anyway_kind", None) in ("virtual", "foreign")


def _is_ours(backend: tuple[str, dict[str, Any]]) -> bool:
    from ._trio import is_virtual_clock

    return is_virtual_clock(backend[1].get("clock"))


def fresh_backend(request: Any) -> Backend | str:
    """The parametrized ``anyio_backend`` value for this test, made fresh.

    A Trio clock carries its time; a fresh one per test makes every test start
    at 0.0. Tests marked ``@pytest.mark.real_time`` (e.g. ones that talk to a
    real server) get the same loop on real time.
    """
    param = request.param
    if not isinstance(param, tuple):
        return param  # type: ignore[no-any-return]
    name, options = param
    real = request.node.get_closest_marker("real_time") is not None
    if foreign_clock(param) is not None:
        return (name, {}) if real else fresh_foreign(param)
    if name == "trio" and is_virtual(param) and not _is_ours(param):
        # somebody's own MockClock: a fresh one, same settings
        from ._trio import fresh_mock_clock

        return (name, {**options, "clock": fresh_mock_clock(options["clock"])})
    if is_virtual(param):
        return (name, {}) if real else (name, virtual_time_options(name))
    if real and name == "asyncio" and "loop_factory" in options:
        from ._asyncio import accelerated_uvloop_factory

        return (name, {"loop_factory": accelerated_uvloop_factory(1.0)})
    return (name, dict(options))
