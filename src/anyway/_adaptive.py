"""An adaptive concurrency limit: :class:`AdaptiveLimiter`.

The limit follows the dependency instead of being guessed. Completed calls
are grouped into *windows* (about half a limit's worth of calls, at least
:data:`_MIN_WINDOW`); when a window closes, its mean latency is compared with
the *baseline*, the lowest window mean seen recently:

* latency within ``_TOLERANCE`` (1.25x) of the baseline and no failure: the
  dependency keeps up, so the limit grows by ``sqrt(limit)`` (only if the
  window actually used at least half the limit: an idle client learns
  nothing about the dependency's capacity);
* latency above that: requests queue at the dependency, so the limit is cut
  in proportion, ``limit * baseline / latency`` (never below half): the
  limit aims back at the concurrency the dependency served at its best
  latency;
* failures: the limit is cut by half the failure fraction of the window
  (all failed: halved), multiplicative decrease as in AIMD.

This is the gradient idea of Netflix's Gradient2 and Envoy's adaptive
concurrency filter (compare a window's latency with a no-load latency; grow
by a square-root headroom) with AIMD's reaction to failures. The baseline is
the minimum of window *means* (not of single calls), so a steady but noisy
latency compares like with like and never shrinks the limit. It is kept for
:data:`_EPOCH` to twice that many windows, so a dependency that became
slower for good is re-learned, without a background task or a timer.

Only whole calls that ended (returned or raised an exception) are samples;
a cancelled call (or one ended by ``KeyboardInterrupt``...) is no sample and
changes nothing but the count of calls inside.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Final, final

import anyio
from anyio.lowlevel import checkpoint

from ._events import Hook, LimitChanged, check_hooks, emit
from ._util import current_run, is_control_flow
from ._validate import check_count

__all__ = ["AdaptiveLimiter", "AdaptiveLimiterStatistics"]

#: A window closes after this many samples at least (and half the limit).
_MIN_WINDOW: Final = 10
#: Latency within this factor of the baseline counts as "no queueing".
_TOLERANCE: Final = 1.25
#: A shrink never takes more than this fraction away in one window.
_MAX_CUT: Final = 0.5
#: The baseline (best window mean) is remembered for this many to twice this many windows.
_EPOCH: Final = 50
#: Latencies below this many seconds are not told apart (coarse or quantized clocks).
_RESOLUTION: Final = 1e-4

# The calls inside, per task: ((limiter, entry time, generation), ...).
_STARTS: ContextVar[tuple[tuple[object, float, int], ...]] = ContextVar(
    "anyway.adaptive.starts", default=()
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveLimiterStatistics:
    """A snapshot of an :class:`~anyway.AdaptiveLimiter` (see its ``statistics()``)."""

    limit: int
    in_flight: int
    waiting: int
    successes: int
    failures: int
    baseline: float | None
    latency: float | None


class _Slot:
    """A task waiting to enter; ``granted`` once a leaving task handed it a place."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


@final
class AdaptiveLimiter:
    """A concurrency limit that finds the dependency's capacity by itself.

    ::

        limiter = anyway.AdaptiveLimiter(initial=10, max_limit=200)

        async with limiter:  # waits (FIFO) while `limiter.limit` calls are inside
            await client.get(url)

        results = await anyway.map_all(fetch, urls, limiter=limiter)

    The limit (:attr:`limit`, always within ``[min_limit, max_limit]``)
    grows while the latency of the calls stays near the best observed, and
    shrinks when it rises (requests queue at the dependency) or calls fail
    (see the module documentation and docs/adaptive.md for the rule). A
    steady latency without failures never shrinks it. A call cancelled
    while waiting or inside is neither a success nor a failure: it changes
    nothing but the count of calls inside.

    Waiters are served in arrival order; a cancelled waiter takes nothing
    (a place handed to it as it was cancelled goes to the next one).
    Entering is always a checkpoint.

    Every change of :attr:`limit` emits :class:`LimitChanged` to *hooks*
    and the global hooks; *name* names the limiter in it. Used from a new
    event loop (a later :func:`anyio.run`), the limiter behaves as newly
    created there.
    """

    __slots__ = (
        "_baseline",
        "_cur_best",
        "_epoch_windows",
        "_failures",
        "_generation",
        "_hooks",
        "_in_flight",
        "_initial",
        "_latency",
        "_limit",
        "_max_limit",
        "_min_limit",
        "_name",
        "_prev_best",
        "_run",
        "_successes",
        "_waiters",
        "_win_busy",
        "_win_failures",
        "_win_successes",
        "_win_sum",
    )

    def __init__(
        self,
        *,
        initial: int = 10,
        min_limit: int = 1,
        max_limit: int = 1000,
        name: str | None = None,
        hooks: Iterable[Hook] | Hook = (),
    ) -> None:
        self._min_limit = check_count(
            "min_limit", min_limit, hint="; it is the fewest calls the limiter lets in at once"
        )
        self._max_limit = check_count(
            "max_limit", max_limit, hint="; it is the most calls the limiter ever lets in at once"
        )
        if self._max_limit < self._min_limit:
            raise ValueError(
                f"max_limit must be >= min_limit, got max_limit={max_limit!r} and"
                f" min_limit={min_limit!r}"
            )
        self._initial = check_count("initial", initial, hint="; it is the limit to start from")
        if not self._min_limit <= self._initial <= self._max_limit:
            raise ValueError(
                f"initial must be within [min_limit, max_limit] = [{min_limit}, {max_limit}],"
                f" got {initial!r}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        self._name = name
        self._hooks = check_hooks(hooks)
        self._run: object = None
        self._reset()

    def _reset(self) -> None:
        self._limit = float(self._initial)
        self._in_flight = 0
        self._waiters: OrderedDict[_Slot, None] = OrderedDict()
        self._successes = 0
        self._failures = 0
        self._baseline: float | None = None
        self._prev_best = math.inf  # best window mean of the previous epoch
        self._cur_best = math.inf  # ... and of this one
        self._epoch_windows = 0
        self._latency: float | None = None  # the last closed window's mean
        self._win_successes = 0
        self._win_failures = 0
        self._win_sum = 0.0
        self._win_busy = 0  # samples taken with at least half the limit inside
        self._generation = 0  # counts changes of the (whole) limit

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name is not None else ""
        return (
            f"<AdaptiveLimiter{name} limit={self.limit} in [{self._min_limit}, {self._max_limit}]"
            f" in_flight={self._in_flight} waiting={len(self._waiters)}>"
        )

    def _check_run(self) -> None:
        """Start afresh on first use in an event loop (nothing outside one)."""
        try:
            run = current_run()
        except RuntimeError:  # no event loop here: the state as it was left
            return
        if run is not self._run:
            self._run = run
            self._reset()

    @property
    def limit(self) -> int:
        """How many calls may be inside at once right now."""
        self._check_run()
        return int(self._limit)

    @property
    def min_limit(self) -> int:
        """The lowest the limit goes."""
        return self._min_limit

    @property
    def max_limit(self) -> int:
        """The highest the limit goes."""
        return self._max_limit

    @property
    def name(self) -> str | None:
        """The name given at construction (used in events), or ``None``."""
        return self._name

    def statistics(self) -> AdaptiveLimiterStatistics:
        """A frozen snapshot: the limit, the calls inside and waiting, the
        successes and failures counted, the baseline latency and the last
        window's mean latency (seconds, ``None`` until known)."""
        self._check_run()
        return AdaptiveLimiterStatistics(
            limit=int(self._limit),
            in_flight=self._in_flight,
            waiting=len(self._waiters),
            successes=self._successes,
            failures=self._failures,
            baseline=self._baseline,
            latency=self._latency,
        )

    # --- entering and leaving ------------------------------------------------

    async def __aenter__(self) -> None:
        await checkpoint()
        self._check_run()  # first use in this event loop: start afresh
        # Nobody waits while there is room: a leaving task hands its place
        # straight to the oldest waiter, so a newcomer never jumps the queue.
        if self._waiters or self._in_flight >= int(self._limit):
            await self._wait()
        else:
            self._in_flight += 1
        _STARTS.set((*_STARTS.get(), (self, anyio.current_time(), self._generation)))

    async def _wait(self) -> None:
        slot = _Slot()
        self._waiters[slot] = None
        try:
            await slot.event.wait()
        except BaseException:
            if slot.granted:
                self._leave()  # handed a place as we were cancelled: pass it on
            else:
                del self._waiters[slot]
            raise

    def _leave(self) -> None:
        self._in_flight -= 1
        self._admit()

    def _admit(self) -> None:
        limit = int(self._limit)
        waiters = self._waiters
        while waiters and self._in_flight < limit:
            slot, _ = waiters.popitem(last=False)
            slot.granted = True
            self._in_flight += 1
            slot.event.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entry = self._pop_start()
        busy = self._in_flight * 2 >= int(self._limit)
        self._leave()
        if entry is None or (exc_value is not None and not isinstance(exc_value, Exception)):
            return  # cancelled (or KeyboardInterrupt...): no sample, nothing learned
        if exc_value is not None and is_control_flow(exc_value):
            return
        start, generation = entry
        ok = exc_value is None
        if ok:
            self._successes += 1
        else:
            self._failures += 1
        if generation != self._generation:
            return  # entered under another limit: it says nothing about this one
        event = self._sample(anyio.current_time() - start, ok, busy)
        if event is not None:
            await emit(event, self._hooks)

    def _pop_start(self) -> tuple[float, int] | None:
        starts = _STARTS.get()
        for i in range(len(starts) - 1, -1, -1):
            if starts[i][0] is self:
                _STARTS.set(starts[:i] + starts[i + 1 :])
                return starts[i][1], starts[i][2]
        return None  # entered in another task: no latency to learn from

    # --- learning --------------------------------------------------------------

    def _sample(self, latency: float, ok: bool, busy: bool) -> LimitChanged | None:
        if ok:
            self._win_successes += 1
            self._win_sum += max(latency, 0.0)
        else:
            self._win_failures += 1
        self._win_busy += busy
        taken = self._win_successes + self._win_failures
        if taken < max(_MIN_WINDOW, int(self._limit) // 2):
            return None
        return self._close_window(taken)

    def _close_window(self, taken: int) -> LimitChanged | None:
        mean = self._win_sum / self._win_successes if self._win_successes else None
        failed = self._win_failures / taken
        busy = self._win_busy * 2 >= taken
        self._win_successes = self._win_failures = self._win_busy = 0
        self._win_sum = 0.0
        self._latency = mean
        if mean is not None:
            self._cur_best = min(self._cur_best, mean)
            self._epoch_windows += 1
            if self._epoch_windows >= _EPOCH:
                self._prev_best, self._cur_best, self._epoch_windows = self._cur_best, math.inf, 0
            self._baseline = min(self._prev_best, self._cur_best)
        baseline = self._baseline
        old = self._limit
        if failed:
            new, reason = old * (1.0 - failed * _MAX_CUT), "failures"
        elif (
            mean is not None
            and baseline is not None
            and mean > _TOLERANCE * max(baseline, _RESOLUTION)
        ):
            new, reason = old * max(_MAX_CUT, max(baseline, _RESOLUTION) / mean), "latency"
        elif busy:
            new, reason = old + math.sqrt(old), "growth"
        else:
            return None  # the dependency keeps up, and the limit was not used: no news
        self._limit = min(max(new, float(self._min_limit)), float(self._max_limit))
        if int(self._limit) == int(old):
            return None
        # Calls inside now entered under the old limit: their latencies do
        # not judge the new one (one decision per round trip, as in TCP).
        self._generation += 1
        self._admit()
        policy = self._name if self._name is not None else "AdaptiveLimiter"
        return LimitChanged(
            policy=policy,
            old=int(old),
            new=int(self._limit),
            reason=reason,
            latency=mean,
            baseline=baseline,
        )
