"""Cases, variants and the runner: interleaved batches, ratios to a baseline of the same run.

Method (``docs/performance.md`` says why):

* A *timing case* compares variants that do the same work; the first is the
  baseline. On each backend the whole case runs in ONE ``anyio.run``, so all
  variants share the loop.
* Calibration doubles as warm-up, as in :meth:`timeit.Timer.autorange`: a
  variant times batches of 1, 2, 5, 10, 20, 50... operations (times the
  case's ``step``) until one batch lasts ``Settings.batch_seconds``.
* Then the repetitions: in each one every variant times one batch, in an
  order rotated from one repetition to the next, with a ``gc.collect()``
  before each batch (outside the timed region; what existed before the case
  is frozen with ``gc.freeze()``, so it is cheap).
* CPU-bound batches are timed on the process's CPU clock, as ``timeit -p``
  does (time while another process had the CPU is not counted); cases whose
  variants may wait (I/O, timers) on ``time.perf_counter_ns``.
* Reported: the median time per operation and its quartiles
  (:mod:`statistics`), and the ratio to the baseline: the median of the
  per-repetition ratios. Ratios of batches measured back to back drift much
  less than absolute times on a shared machine. An overhead target (ns over
  the baseline) compares the best batches, as :mod:`timeit` advises.
* A *metric case* reports a value that is not a time (grants in the worst
  1-second window, bytes per task, ...), optionally on virtual time.

pyperf is not used: it runs each benchmark in its own worker processes, one
after the other, so it cannot interleave variants inside one event loop run,
which is what makes the ratios trustworthy on a noisy 2-core machine. The
standard library gives the rest (``time.perf_counter_ns``, ``statistics``).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

__all__ = [
    "BACKENDS",
    "BatchFn",
    "Case",
    "Env",
    "Result",
    "Settings",
    "Skip",
    "Target",
    "Variant",
    "run_case",
]

BatchFn = Callable[[int], Awaitable[None]]
"""Runs ``n`` operations of one variant: ``await fn(n)``."""

BACKENDS: tuple[str, ...] = ("asyncio", "uvloop", "trio")

# CPU-bound cases are timed on the process's CPU clock (``timeit -p``) where
# it is precise: time during which another process had the CPU is not
# counted, which is what makes a shared 2-core machine usable. Cases whose
# variants may wait (I/O, timers), and machines whose CPU clock is coarse
# (Windows: 15.6 ms), use ``perf_counter``.
CPU_CLOCK_OK = time.get_clock_info("process_time").resolution <= 1e-6


class Skip(Exception):
    """Raised by a variant's factory when it cannot run here; the message says why."""


@dataclass(frozen=True)
class Settings:
    quick: bool
    reps: int
    batch_seconds: float

    @classmethod
    def for_mode(cls, *, quick: bool, reps: int | None = None) -> Settings:
        if quick:
            return cls(quick=True, reps=reps or 7, batch_seconds=0.01)
        return cls(quick=False, reps=reps or 15, batch_seconds=0.04)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


@dataclass
class Env:
    """What a variant's factory gets: the backend, the settings, the case's shared resource."""

    backend: str
    settings: Settings
    shared: Any = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def is_trio(self) -> bool:
        return self.backend == "trio"

    def pick(self, *, asyncio: Any, trio: Any) -> Any:
        """The asyncio (also uvloop) or the Trio flavour of something."""
        return trio if self.is_trio else asyncio

    def asyncio_only(self, what: str) -> None:
        if self.is_trio:
            raise Skip(f"{what} runs on asyncio only")


@dataclass(frozen=True)
class Target:
    """A published goal: ``ratio <= x``, ``overhead <= x ns`` or ``value == / <= x``."""

    kind: Literal["ratio", "overhead", "value"]
    limit: float
    exact: bool = False
    trio_limit: float | None = None  # a different limit on Trio

    def limit_on(self, backend: str) -> float:
        return self.trio_limit if backend == "trio" and self.trio_limit is not None else self.limit

    def describe(self, backend: str) -> str:
        limit = self.limit_on(backend)
        if self.kind == "ratio":
            return f"<= {limit:g}x"
        if self.kind == "overhead":
            return f"<= +{limit:g} ns"
        return f"== {limit:g}" if self.exact else f"<= {limit:g}"

    def met(self, result: Result) -> bool | None:
        got = {"ratio": result.ratio, "overhead": result.overhead, "value": result.median}
        value = got[self.kind]
        if value is None or math.isnan(value):
            return None
        limit = self.limit_on(result.backend)
        return value == limit if self.exact else value <= limit


@dataclass(frozen=True)
class Variant:
    """One way of doing a case's work.

    Timing cases: ``make(env)`` returns the batch function, or an async context
    manager that yields it (for variants that hold resources). Metric cases:
    ``await measure(env)`` returns the value. Either may raise :class:`Skip`;
    an ``ImportError`` (a peer that is not installed) is a skip too. A *peer*
    that fails at run time is reported as skipped with the error; a failing
    anyway or native variant is an error. *labels* may name the variant per
    loop (keys ``asyncio``, ``uvloop``, ``trio``; ``asyncio`` covers uvloop).
    """

    name: str
    make: Callable[[Env], Any] | None = None
    measure: Callable[[Env], Awaitable[float]] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    target: Target | None = None
    peer: bool = False

    def label(self, backend: str) -> str:
        fallback = self.labels.get("trio" if backend == "trio" else "asyncio", self.name)
        return self.labels.get(backend, fallback)


@dataclass
class Case:
    """Variants compared on every backend (the first one is the baseline).

    ``step``: operations per call of the work (a batch is a multiple of it);
    ``fixed_n`` disables calibration, and ``warmup=False`` the warm-up batch
    that then replaces it (for batches long enough to warm up by themselves).
    ``max_reps`` caps the repetitions per mode (long cases). ``wall_clock``:
    a variant may wait (I/O, timers), so the case is timed on the wall clock.
    ``virtual``: a metric case on virtual time. ``baseline_value``: a metric
    compared with a constant (e.g. the configured limit) instead of a variant.
    ``setup``: a sync context manager around all backends (e.g. an HTTP
    server); its value is ``env.shared``. ``params``: ``series``/``x``/
    ``xlabel`` put the case on a line plot with the others of its series.
    """

    family: str
    name: str
    variants: list[Variant]
    description: str = ""
    kind: Literal["timing", "metric"] = "timing"
    unit: str = "op"
    step: int = 1
    fixed_n: int | None = None
    warmup: bool = True
    batch_scale: float = 1.0
    reps_scale: float = 1.0
    max_reps: Mapping[str, int] = field(default_factory=dict)
    wall_clock: bool = False
    modes: frozenset[str] = frozenset({"quick", "full"})
    backends: tuple[str, ...] = BACKENDS
    virtual: bool = False
    baseline_value: float | None = None
    baseline_label: str = ""
    setup: Callable[[], AbstractContextManager[Any]] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"

    def reps(self, settings: Settings) -> int:
        if self.kind == "metric":
            return 1 if settings.quick or self.virtual else 3
        reps = math.ceil(settings.reps * self.reps_scale)
        return min(reps, self.max_reps.get(settings.mode, reps))


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
    best: float = math.nan
    baseline: str | None = None
    baseline_median: float | None = None
    fixed_baseline: bool = False
    ratio: float | None = None
    overhead: float | None = None
    target: str | None = None
    met: bool | None = None
    extra: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    clock: str = ""  # "cpu" (process time) or "wall" (perf_counter)
    seconds: float = 0.0  # wall time of the whole case on this backend
    traceback: str = ""


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def _short_error(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Failed(Exception):
    def __init__(self, variant: str, exc: BaseException) -> None:
        super().__init__(variant)
        self.variant, self.exc = variant, exc


def _clock(case: Case) -> Callable[[], int]:
    return time.process_time_ns if CPU_CLOCK_OK and not case.wall_clock else time.perf_counter_ns


async def _timed(fn: BatchFn, n: int, clock: Callable[[], int]) -> int:
    """The time of one batch, in ns."""
    gc.collect()
    start = clock()
    await fn(n)
    return clock() - start


async def _calibrate(case: Case, fn: BatchFn, settings: Settings) -> int:
    """The batch size, as :meth:`timeit.Timer.autorange` finds it (also the warm-up)."""
    if case.fixed_n is not None:
        if case.warmup:
            await _timed(fn, case.fixed_n, _clock(case))
        return case.fixed_n
    target = settings.batch_seconds * case.batch_scale * 1e9
    base = case.step
    while True:
        for factor in (1, 2, 5):
            n = base * factor
            if await _timed(fn, n, _clock(case)) >= target:
                return n
        base *= 10


def _skip_or_fail(
    variant: Variant, exc: Exception, failures: dict[str, str]
) -> None:  # a skip, or an error that aborts the case
    if isinstance(exc, Skip | ImportError):
        failures[variant.name] = str(exc) or type(exc).__name__
    elif variant.peer:
        failures[variant.name] = f"fails here: {_short_error(exc)}"
    else:
        raise _Failed(variant.name, exc) from exc


async def _run_timing(
    case: Case, env: Env, variants: list[Variant], out: dict[str, Result], failures: dict[str, str]
) -> None:
    async with AsyncExitStack() as stack:
        fns: dict[str, tuple[BatchFn, int]] = {}
        for variant in variants:
            try:
                made = variant.make(env)  # type: ignore[misc]
                if isinstance(made, AbstractAsyncContextManager):
                    made = await stack.enter_async_context(made)
                fns[variant.name] = made, await _calibrate(case, made, env.settings)
            except Exception as exc:
                _skip_or_fail(variant, exc, failures)
        names = list(fns)
        for rep in range(case.reps(env.settings)):
            shift = rep % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
                fn, n = fns[name]
                try:
                    elapsed = await _timed(fn, n, _clock(case))
                except Exception as exc:
                    raise _Failed(name, exc) from exc
                out[name].values.append(elapsed / n)
                out[name].n = n
                out[name].clock = "cpu" if _clock(case) is time.process_time_ns else "wall"


async def _run_metric(
    case: Case, env: Env, variants: list[Variant], out: dict[str, Result], failures: dict[str, str]
) -> None:
    for _ in range(case.reps(env.settings)):
        for variant in variants:
            if variant.name in failures:
                continue
            own = Env(env.backend, env.settings, env.shared)
            try:
                value = await variant.measure(own)  # type: ignore[misc]
            except Exception as exc:
                _skip_or_fail(variant, exc, failures)
                continue
            out[variant.name].values.append(float(value))
            out[variant.name].extra.update(own.extra)


def _backend_options(backend: str, *, virtual: bool) -> dict[str, Any]:
    if backend == "trio":
        import trio  # noqa: F401 - a missing loop is a skip, not an error
    if virtual:
        from anyway.testing import virtual_time_options

        return virtual_time_options("trio" if backend == "trio" else "asyncio")
    if backend == "uvloop":
        import uvloop

        return {"loop_factory": uvloop.new_event_loop}
    return {}


def run_case(case: Case, backend: str, settings: Settings, shared: Any = None) -> list[Result]:
    """Measure every variant of *case* on one backend, in one ``anyio.run``."""
    results = {
        v.name: Result(
            case.family,
            case.name,
            v.name,
            v.label(backend),
            backend,
            case.unit,
            case.kind,
            params=dict(case.params),
        )
        for v in case.variants
    }
    rows = list(results.values())
    if backend not in case.backends:
        for row in rows:
            row.status, row.reason = "skipped", f"not run on {backend}"
        return rows
    failures: dict[str, str] = {}
    env = Env(backend, settings, shared)
    started = time.perf_counter()
    run = _run_timing if case.kind == "timing" else _run_metric
    gc.collect()
    gc.freeze()
    try:
        options = _backend_options(backend, virtual=case.virtual)
        anyio.run(
            run,
            case,
            env,
            case.variants,
            results,
            failures,
            backend="trio" if backend == "trio" else "asyncio",
            backend_options=options,
        )
    except Exception as exc:
        failed = exc.variant if isinstance(exc, _Failed) else None
        cause = exc.exc if isinstance(exc, _Failed) else exc
        if isinstance(cause, ImportError) and failed is None:  # uvloop or trio missing
            for row in rows:
                row.status, row.reason = "skipped", str(cause)
            return rows
        for row in rows:
            row.status = "error"
            row.reason = (
                _short_error(cause)
                if failed in (None, row.variant)
                else f"case aborted by {failed}"
            )
            if failed in (None, row.variant):
                row.traceback = "".join(traceback.format_exception(cause))
        return rows
    finally:
        gc.unfreeze()
        for row in rows:
            row.seconds = round(time.perf_counter() - started, 2)
    for name, why in failures.items():
        results[name].status, results[name].reason = "skipped", why
        results[name].values.clear()
    _compare(case, rows)
    return rows


def _compare(case: Case, rows: list[Result]) -> None:
    """Medians, quartiles, ratios, overheads and targets of the measured rows."""
    measured = [r for r in rows if r.status == "ok" and r.values]
    for row in measured:
        row.q1, row.median, row.q3 = _quartiles(row.values)
        row.best = min(row.values)
    base = rows[0] if rows[0] in measured else None
    for row in measured:
        if case.baseline_value is not None:
            row.baseline, row.fixed_baseline = case.baseline_label, True
            row.baseline_median = case.baseline_value
            row.ratio = row.median / case.baseline_value
            row.overhead = row.median - case.baseline_value
        elif base is not None:
            row.baseline, row.baseline_median = base.label, base.median
            # An absolute cost is best against best, as timeit advises: higher
            # times come from other processes, not from the code measured.
            row.overhead = row.best - base.best
            if len(row.values) == len(base.values):  # the median of per-repetition ratios
                row.ratio = statistics.median(
                    v / b for v, b in zip(row.values, base.values, strict=True)
                )
            else:
                row.ratio = row.median / base.median
    targets = {v.name: v.target for v in case.variants}
    for row in rows:
        target = targets[row.variant]
        if target is not None:
            row.target = target.describe(row.backend)
            row.met = target.met(row) if row in measured else None
