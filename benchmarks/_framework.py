"""The measuring machinery: backends, cases, variants, the runner and its statistics.

Method (see ``docs/performance.md``):

* A *timing case* compares variants that do the same work; the first variant
  is the baseline. For each backend the whole case runs inside ONE event-loop
  run (``anyio.run``), so every variant sees the same loop.
* Each variant first warms up and calibrates its batch size: batches of
  ``n`` operations are timed with ``time.perf_counter_ns`` and ``n`` grows
  until one batch takes about ``Settings.batch_seconds``.
* Then ``Settings.reps`` repetitions: in each one, every variant times one
  batch, in an order rotated from repetition to repetition (interleaved), with
  a ``gc.collect()`` before each batch (outside the timed region; what existed
  before the case is frozen with ``gc.freeze()``, so this is cheap). A batch
  during which the process got less than 85% of a CPU (another process took
  it) is measured again, at most twice (not for cases that wait on I/O). Nothing is
  subtracted: the figure is ``batch time / n``, loop overhead included, the
  same for every variant.
* Reported: the median time per operation and its spread (interquartile
  range), and the RATIO to the baseline: the median of the per-repetition
  ratios ``variant / baseline``. Absolute times drift on shared machines; a
  ratio of two batches measured back to back drifts much less.
* A *metric case* reports a value that is not a time (grants in the worst
  1-second window, bytes per task, ...), optionally on virtual time.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import math
import statistics
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    nullcontext,
)
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = [
    "BACKENDS",
    "Backend",
    "BatchFn",
    "Case",
    "Env",
    "Result",
    "Settings",
    "Skip",
    "Target",
    "Variant",
    "case_setup",
    "pop_tracebacks",
    "run_case",
]

BatchFn = Callable[[int], Awaitable[None]]
"""Runs ``n`` operations of one variant: ``await fn(n)``."""

BACKENDS: tuple[str, ...] = ("asyncio", "uvloop", "trio")


class Skip(Exception):
    """Raised by a variant's factory when it cannot run here; the message is the reason."""


# --------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    """One of ``asyncio``, ``uvloop`` (asyncio on uvloop) or ``trio``."""

    name: str

    @property
    def anyio_name(self) -> str:
        return "trio" if self.name == "trio" else "asyncio"

    @property
    def is_trio(self) -> bool:
        return self.name == "trio"

    def unavailable(self) -> str | None:
        """Why this backend cannot run here, or ``None``."""
        module = {"uvloop": "uvloop", "trio": "trio"}.get(self.name)
        if module is not None and importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
        return None

    def options(self, *, virtual: bool = False) -> dict[str, Any]:
        """``backend_options`` for ``anyio.run`` (real time unless *virtual*)."""
        if virtual:
            from anyway.testing import virtual_time_options

            return virtual_time_options(self.anyio_name)
        if self.name == "uvloop":
            import uvloop

            return {"loop_factory": uvloop.new_event_loop}
        return {}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure."""

    quick: bool
    reps: int
    batch_seconds: float
    case_timeout: float

    @classmethod
    def for_mode(cls, *, quick: bool, reps: int | None = None) -> Settings:
        if quick:
            return cls(quick=True, reps=reps or 5, batch_seconds=0.008, case_timeout=60.0)
        return cls(quick=False, reps=reps or 15, batch_seconds=0.04, case_timeout=300.0)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


@dataclass
class Env:
    """What a variant's factory gets: the backend, the settings, the case's shared resource."""

    backend: Backend
    settings: Settings
    shared: Any = None
    extra: dict[str, float] = field(default_factory=dict)

    def pick(self, *, asyncio: Any, trio: Any) -> Any:
        """Choose the asyncio or the trio flavour of something."""
        return trio if self.backend.is_trio else asyncio


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A published goal: ``ratio <= x``, ``overhead <= x ns`` or ``value == x``."""

    kind: Literal["ratio", "overhead", "value"]
    limit: float
    exact: bool = False

    def describe(self) -> str:
        if self.kind == "ratio":
            return f"<= {self.limit:g}x"
        if self.kind == "overhead":
            return f"<= +{_fmt_ns(self.limit)}"
        return f"== {self.limit:g}" if self.exact else f"<= {self.limit:g}"

    def met(self, result: Result) -> bool | None:
        if self.kind == "ratio":
            got = result.ratio
        elif self.kind == "overhead":
            got = result.overhead
        else:
            got = result.median
        if got is None or math.isnan(got):
            return None
        if self.exact:
            return got == self.limit
        return got <= self.limit


def _fmt_ns(ns: float) -> str:
    if abs(ns) < 1_000:
        return f"{ns:.0f} ns"
    if abs(ns) < 1_000_000:
        return f"{ns / 1_000:.2f} us"
    return f"{ns / 1_000_000:.2f} ms"


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Variant:
    """One way of doing a case's work.

    Timing cases use *make*: ``make(env)`` returns the batch function (or an
    async context manager yielding it, for variants that hold resources) and
    may raise :class:`Skip`. Metric cases use *measure*: ``await measure(env)``
    returns the value.

    *requires* lists what must be importable: ``"module"`` or
    ``"module:attribute"`` (e.g. ``"anyway:settle"``, ``"tenacity"``); when
    something is missing the variant is reported as skipped with the reason.
    *backends* limits where it runs (``None``: everywhere); elsewhere it is
    skipped with *only_reason*. A *peer* variant that fails at run time is
    reported as skipped with the error (peers may not support a loop); a
    failing anyway or native variant is an error.
    """

    name: str
    make: Callable[[Env], Any] | None = None
    measure: Callable[[Env], Awaitable[float]] | None = None
    requires: tuple[str, ...] = ()
    backends: frozenset[str] | None = None
    only_reason: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    target: Target | None = None
    peer: bool = False

    def label(self, backend: Backend) -> str:
        """The name shown in the table: *labels* may give one per loop (``asyncio``/``trio``)."""
        key = "trio" if backend.is_trio else "asyncio"
        return self.labels.get(backend.name, self.labels.get(key, self.name))


@dataclass
class Case:
    """A comparison of variants (the first is the baseline) on every backend.

    ``kind="timing"``: time per *unit* (``n_min``/``n_step`` shape the batch
    sizes; ``fixed_n`` disables calibration; ``batch_scale`` lengthens the
    batches, ``reps_scale`` multiplies the repetitions, ``max_reps`` caps
    them, per mode). ``kind="metric"``: each
    variant's ``measure`` gives a value in *unit*, ``reps`` times; on virtual
    time when *virtual*. A metric case may compare against a fixed
    ``baseline_value`` (e.g. the configured limit) instead of a variant.
    *setup* is a sync context manager around all backends (e.g. an HTTP
    server); its value is ``env.shared``.
    """

    family: str
    name: str
    variants: list[Variant]
    description: str = ""
    kind: Literal["timing", "metric"] = "timing"
    unit: str = "op"
    n_min: int = 100
    n_step: int = 1
    n_max: int = 10_000_000
    fixed_n: int | None = None
    batch_scale: float = 1.0
    io: bool = False
    reps_scale: float = 1.0
    max_reps: Mapping[str, int] = field(default_factory=dict)
    modes: frozenset[str] = frozenset({"quick", "full"})
    backends: tuple[str, ...] | None = None
    backend_reason: str = ""
    virtual: bool = False
    metric_reps: Mapping[str, int] = field(default_factory=lambda: {"quick": 1, "full": 3})
    baseline_value: float | None = None
    baseline_label: str = ""
    setup: Callable[[], AbstractContextManager[Any]] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"

    def applies(self, backend: str) -> bool:
        return self.backends is None or backend in self.backends


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """One row: one variant of one case on one backend."""

    family: str
    case: str
    variant: str
    label: str
    backend: str
    unit: str
    kind: str
    status: Literal["ok", "skipped", "error"] = "ok"
    reason: str = ""
    values: list[float] = field(default_factory=list)
    n: int = 0
    median: float = math.nan
    q1: float = math.nan
    q3: float = math.nan
    min: float = math.nan
    max: float = math.nan
    baseline: str | None = None
    baseline_median: float | None = None
    fixed_baseline: bool = False  # the baseline is a constant (e.g. the limit), not a variant
    ratio: float | None = None
    ratio_q1: float | None = None
    ratio_q3: float | None = None
    overhead: float | None = None
    target: str | None = None
    met: bool | None = None
    extra: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the whole case on this backend
    redone: int = 0  # batches measured again because another process took the CPU

    def summarize(self) -> None:
        if not self.values:
            return
        self.median = statistics.median(self.values)
        self.q1, self.q3 = _quartiles(self.values)
        self.min, self.max = min(self.values), max(self.values)


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


# --------------------------------------------------------------------------- runner


def _missing(requirement: str) -> str | None:
    module, _, attribute = requirement.partition(":")
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        return f"{module} is not importable ({exc})"
    except Exception as exc:  # a half-written module must not stop the suite
        return f"{module} failed to import ({type(exc).__name__}: {exc})"
    if attribute and not hasattr(imported, attribute):
        return f"{module}.{attribute} does not exist yet"
    return None


def _skip_reason(case: Case, variant: Variant, backend: Backend) -> str | None:
    if not case.applies(backend.name):
        return case.backend_reason or f"not run on {backend.name}"
    if variant.backends is not None and backend.name not in variant.backends:
        return variant.only_reason or f"not run on {backend.name}"
    for requirement in variant.requires:
        reason = _missing(requirement)
        if reason is not None:
            return reason
    return None


def _blank(case: Case, variant: Variant, backend: Backend) -> Result:
    return Result(
        family=case.family,
        case=case.name,
        variant=variant.name,
        label=variant.label(backend),
        backend=backend.name,
        unit=case.unit,
        kind=case.kind,
        params=dict(case.params),
    )


def _short_error(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _timed(fn: BatchFn, n: int) -> int:
    return (await _timed_cpu(fn, n))[0]


async def _timed_cpu(fn: BatchFn, n: int) -> tuple[int, int]:
    """Wall time and this process's CPU time of one batch, in ns."""
    gc.collect()
    cpu = time.process_time_ns()
    start = time.perf_counter_ns()
    await fn(n)
    wall = time.perf_counter_ns() - start
    return wall, time.process_time_ns() - cpu


# A CPU-bound batch during which this process got less than this share of a
# CPU was slowed down by another process: it is measured again (at most
# REDO_LIMIT times; the JSON records how often). Cases that wait for I/O
# (``Case.io``) are exempt.
MIN_CPU_SHARE = 0.85
REDO_LIMIT = 2


def _round_up(n: float, step: int) -> int:
    return max(step, math.ceil(n / step) * step)


class _Failure(Exception):
    def __init__(self, name: str, exc: BaseException) -> None:
        super().__init__(name)
        self.name = name
        self.exc = exc


async def _calibrate(case: Case, fn: BatchFn, settings: Settings) -> int:
    if case.fixed_n is not None:
        await _timed(fn, case.fixed_n)  # warm-up
        return case.fixed_n
    target = settings.batch_seconds * case.batch_scale * 1e9
    n = _round_up(case.n_min, case.n_step)
    # Warm-up: the first calls fill caches and free lists. When one batch of
    # the smallest size already lasts long enough, it is all the warm-up done.
    elapsed = await _timed(fn, n)
    if elapsed >= target or n >= case.n_max:
        return n
    for _ in range(12):
        grow = min(20.0, max(1.5, target / max(elapsed, 1) * 1.05))
        n = min(case.n_max, _round_up(n * grow, case.n_step))
        elapsed = await _timed(fn, n)
        if elapsed >= target * 0.8 or n >= case.n_max:
            break
    return n


async def _run_timing(
    case: Case, backend: Backend, settings: Settings, runnable: list[Variant], shared: Any
) -> tuple[dict[str, list[float]], dict[str, int], dict[str, str], dict[str, int]]:
    """Inside the loop: set up, calibrate, then interleave the repetitions."""
    per_op: dict[str, list[float]] = {v.name: [] for v in runnable}
    redone: dict[str, int] = {v.name: 0 for v in runnable}
    sizes: dict[str, int] = {}
    failures: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        fns: dict[str, BatchFn] = {}
        for variant in runnable:
            assert variant.make is not None
            env = Env(backend=backend, settings=settings, shared=shared)
            try:
                made = variant.make(env)
                if isinstance(made, AbstractAsyncContextManager):
                    made = await stack.enter_async_context(made)
                fns[variant.name] = made
                sizes[variant.name] = await _calibrate(case, made, settings)
            except Skip as exc:
                failures[variant.name] = f"skip:{exc}"
                fns.pop(variant.name, None)
            except Exception as exc:
                if not variant.peer:
                    raise _Failure(variant.name, exc) from exc
                failures[variant.name] = f"skip:fails here: {_short_error(exc)}"
                fns.pop(variant.name, None)
        names = list(fns)
        reps = math.ceil(settings.reps * case.reps_scale)
        for rep in range(min(reps, case.max_reps.get(settings.mode, reps))):
            shift = rep % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
                for attempt in range(REDO_LIMIT + 1):
                    try:
                        elapsed, cpu = await _timed_cpu(fns[name], sizes[name])
                    except Exception as exc:
                        raise _Failure(name, exc) from exc
                    if case.io or cpu >= MIN_CPU_SHARE * elapsed or attempt == REDO_LIMIT:
                        break
                    redone[name] += 1
                per_op[name].append(elapsed / sizes[name])
    return per_op, sizes, failures, redone


async def _run_metric(
    case: Case, backend: Backend, settings: Settings, runnable: list[Variant], shared: Any
) -> tuple[dict[str, list[float]], dict[str, dict[str, float]], dict[str, str]]:
    values: dict[str, list[float]] = {v.name: [] for v in runnable}
    extras: dict[str, dict[str, float]] = {v.name: {} for v in runnable}
    failures: dict[str, str] = {}
    reps = case.metric_reps.get(settings.mode, 1)
    for rep in range(reps):
        for variant in runnable:
            if variant.name in failures:
                continue
            assert variant.measure is not None
            env = Env(backend=backend, settings=settings, shared=shared)
            try:
                value = await variant.measure(env)
            except Skip as exc:
                failures[variant.name] = f"skip:{exc}"
                continue
            except Exception as exc:
                if not variant.peer:
                    raise _Failure(variant.name, exc) from exc
                failures[variant.name] = f"skip:fails here: {_short_error(exc)}"
                continue
            values[variant.name].append(float(value))
            if rep == 0:
                extras[variant.name].update(env.extra)
    return values, extras, failures


def run_case(case: Case, backend_name: str, settings: Settings, shared: Any = None) -> list[Result]:
    """Measure every variant of *case* on one backend; one ``anyio.run`` for all of them."""
    started = time.perf_counter()
    # Objects that exist before the case are frozen out of the collector, so
    # the gc.collect() before each batch only walks what the case created.
    gc.collect()
    gc.freeze()
    try:
        results = _run_case(case, backend_name, settings, shared)
    finally:
        gc.unfreeze()
    for result in results:
        result.seconds = round(time.perf_counter() - started, 3)
    return results


class _Watchdog:
    """Cancels *scope* from a timer thread after *seconds* of real time."""

    def __init__(self, seconds: float, scope: anyio.CancelScope) -> None:
        self._scope = scope
        self._token = anyio.lowlevel.current_token()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with contextlib.suppress(Exception):  # the run may have just finished
            anyio.from_thread.run_sync(self._scope.cancel, token=self._token)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _run_case(case: Case, backend_name: str, settings: Settings, shared: Any) -> list[Result]:
    backend = Backend(backend_name)
    results = [_blank(case, v, backend) for v in case.variants]
    by_name = {r.variant: r for r in results}
    unavailable = backend.unavailable()
    runnable: list[Variant] = []
    for variant, result in zip(case.variants, results, strict=True):
        reason = unavailable or _skip_reason(case, variant, backend)
        if reason is not None:
            result.status, result.reason = "skipped", reason
        else:
            runnable.append(variant)
    if not runnable:
        return results

    extras: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    try:
        options = backend.options(virtual=case.virtual)

        async def main() -> Any:
            # A guard against a variant that hangs, on REAL time even when the
            # case runs on virtual time (where a livelock may stop the clock).
            with anyio.CancelScope() as scope, _Watchdog(settings.case_timeout, scope):
                if case.kind == "timing":
                    return await _run_timing(case, backend, settings, runnable, shared)
                return await _run_metric(case, backend, settings, runnable, shared)
            raise TimeoutError(f"still running after {settings.case_timeout:g} s: stopped")

        outcome = anyio.run(main, backend=backend.anyio_name, backend_options=options)
    except _Failure as failure:
        result = by_name[failure.name]
        result.status, result.reason = "error", _short_error(failure.exc)
        _remember_traceback(failure.exc)
        for other in results:
            if other.status == "ok":
                other.status, other.reason = "error", f"case aborted by {failure.name}"
        return results
    except Exception as exc:
        _remember_traceback(exc)
        for result in results:
            if result.status == "ok":
                result.status, result.reason = "error", _short_error(exc)
        return results

    redone: dict[str, int] = {}
    if case.kind == "timing":
        values, sizes, failures, redone = outcome
    else:
        values, extras, failures = outcome
    for name, why in failures.items():
        by_name[name].status = "skipped"
        by_name[name].reason = why.removeprefix("skip:")
    for result in results:
        if result.status != "ok":
            continue
        result.values = values.get(result.variant, [])
        result.n = sizes.get(result.variant, 0)
        result.redone = redone.get(result.variant, 0)
        result.extra.update(extras.get(result.variant, {}))
        result.summarize()
    _compare(case, results)
    return results


def _compare(case: Case, results: list[Result]) -> None:
    """Fill in ratio, overhead and target for every measured row."""
    targets = {v.name: v.target for v in case.variants}
    if case.baseline_value is not None:
        for result in results:
            if result.status != "ok":
                continue
            result.baseline = case.baseline_label or f"{case.baseline_value:g}"
            result.baseline_median = case.baseline_value
            result.fixed_baseline = True
            result.ratio = result.median / case.baseline_value
            result.overhead = result.median - case.baseline_value
        base = None
    else:
        base = results[0]
    if base is not None and base.status == "ok":
        for result in results:
            if result.status != "ok":
                continue
            result.baseline = base.label
            result.baseline_median = base.median
            result.overhead = result.median - base.median
            if result is base:
                result.ratio = 1.0
                result.ratio_q1 = result.ratio_q3 = 1.0
                continue
            if case.kind == "timing" and len(result.values) == len(base.values):
                ratios = [v / b for v, b in zip(result.values, base.values, strict=True) if b > 0]
            else:
                ratios = [result.median / base.median] if base.median else []
            if ratios:
                result.ratio = statistics.median(ratios)
                result.ratio_q1, result.ratio_q3 = _quartiles(ratios)
    for result in results:
        target = targets.get(result.variant)
        if target is not None:
            result.target = target.describe()
            if result.status == "ok":
                result.met = target.met(result)


_tracebacks: list[str] = []


def _remember_traceback(exc: BaseException) -> None:
    _tracebacks.append("".join(traceback.format_exception(exc)))


def pop_tracebacks() -> list[str]:
    """Tracebacks of the errors seen since the last call (printed with ``--verbose``)."""
    out = list(_tracebacks)
    _tracebacks.clear()
    return out


def case_setup(case: Case) -> AbstractContextManager[Any]:
    return case.setup() if case.setup is not None else nullcontext()
