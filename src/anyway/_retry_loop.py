"""The retry loop, shared by ``retry()`` and ``retrying()``: the state of one
call that failed at least once, and the step between two attempts (decide,
tell the hooks, check the limits again, wait, or give up).

The two drivers only differ in how they run an attempt: ``Retry`` awaits the
function, ``retrying()`` yields an :class:`~anyway.Attempt` for the user's
block. Both run everything after the first failure under the retry timeout
(an :class:`anyio.CancelScope` whose deadline is ``first failure + timeout``),
so hooks, waits and later attempts are cut when it expires; the caller then
gets the last real error, with a note (see :meth:`RetryLoop.cut`).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterator
from typing import Final, NamedTuple

import anyio
import anyio.lowlevel

from ._config import test_mode
from ._events import (
    GiveUpKind,
    Hook,
    PolicyEvent,
    RetryAttemptStarted,
    RetryGaveUp,
    RetryScheduled,
    emit,
    global_hooks,
    log_event,
)
from ._retry_notes import EarlierAttempts, link, plural, secs
from ._retry_options import Settings
from ._retry_stats import count_attempt, count_wait, current_stats
from ._util import is_control_flow

__all__ = ["RetryLoop", "announce_first"]

#: The logger of the default hook, :func:`anyway.log_event`.
_logger: Final = logging.getLogger("anyway")


class _Stop(NamedTuple):
    """Why retrying stops: a machine-readable kind and the words for the note."""

    kind: GiveUpKind
    words: str


def _listening() -> bool:
    """Whether anyone would see a :class:`RetryScheduled`: a global hook other
    than the default logger, or the logger at INFO. Saves building events
    nobody reads (about 1 us per retry)."""
    hooks = global_hooks()
    return len(hooks) != 1 or hooks[0] is not log_event or _logger.isEnabledFor(logging.INFO)


async def _emit(event: PolicyEvent, hooks: tuple[Hook, ...], error: BaseException | None) -> None:
    """Emit *event*; if a hook raises, the error being retried stays reachable."""
    try:
        await emit(event, hooks)
    except Exception as hook_error:
        if error is not None and hook_error.__context__ is None and hook_error is not error:
            hook_error.__context__ = error
        raise


async def announce(before: tuple[Hook, ...], event: RetryAttemptStarted) -> None:
    """Send *event* to the ``before=`` hooks, and only to them (the global
    hooks would get an event per call, the success path included)."""
    for hook in before:
        answer = hook(event)
        if answer is not None and inspect.isawaitable(answer):  # as emit() does
            await answer


async def announce_first(settings: Settings, name: str, function: str | None) -> None:
    """The first attempt of a call starts: tell the ``before=`` hooks."""
    await announce(settings.before, RetryAttemptStarted(policy=name, attempt=1, function=function))


class RetryLoop:
    """One call's retrying (never shared).

    ``error`` / ``result`` is the last failure (an exception, or a result
    that ``retry_if_result`` rejected), ``attempts`` the number of attempts
    started so far, ``waited`` the seconds spent in backoff waits.
    ``function`` is the retried callable's name (``None`` for a block).
    """

    __slots__ = (
        "attempts",
        "delays",
        "earlier",
        "end",
        "error",
        "function",
        "listening",
        "max_attempts",
        "name",
        "pending",
        "previous",
        "result",
        "running",
        "settings",
        "start",
        "stats",
        "stopped",
        "testing",
        "verdict",
        "waited",
        "waiting_since",
        "withdrawn",
        "zero_waits",
    )

    def __init__(self, settings: Settings, name: str, function: str | None = None) -> None:
        self.settings = settings
        self.name = name
        self.function = function
        self.stats = current_stats()  # (the driver counted the first attempt in it)
        self.waited = 0.0
        self.waiting_since: float | None = None  # a real backoff wait runs since then
        self.attempts = 1
        self.start: float | None = None  # the first failure (set by fail())
        self.running = True  # an attempt runs (False: between two attempts)
        self.end = math.inf  # start + timeout
        self.error: BaseException | None = None
        self.previous: BaseException | None = None
        self.result: object = None
        self.verdict: bool | float = True
        self.delays: Iterator[float] | None = None
        self.pending: float | None = None  # a backoff drawn ahead (Attempt.next_wait)
        self.earlier = EarlierAttempts()
        self.listening: bool | None = None  # snapshot of _listening() for this call
        self.withdrawn = 0  # the budget's time slice of the last withdrawal
        self.stopped = False  # give_up() has annotated the error and told the hooks
        mode = test_mode()
        limit = settings.attempts
        if mode is None:
            self.testing = self.zero_waits = False
        else:
            self.zero_waits = mode.zero_waits
            self.testing = mode.max_attempts is not None
            if mode.max_attempts is not None:
                limit = mode.max_attempts if limit is None else min(limit, mode.max_attempts)
        self.max_attempts = limit

    # --- the outcome of an attempt ---

    def fail(self, error: BaseException | None, result: object, verdict: bool | float) -> None:
        """The running attempt failed retryably (with *error*, or with the
        rejected *result*); *verdict* is ``True`` or a delay."""
        if self.start is None:  # the first failure starts the retry timeout
            start = self.start = anyio.current_time()
            timeout = self.settings.timeout
            if timeout is not None:
                self.end = start + timeout
        self.running = False
        if self.error is not None:
            self.previous = self.error
        self.error = error
        self.result = None if error is not None else result
        self.verdict = verdict

    def failed(self, exc: BaseException) -> bool:
        """The running attempt raised *exc*: whether it is retried. Call it in
        the ``except`` block; a non-retried error after retries gets the notes."""
        return self._judged(exc, self.settings.verdict(exc))

    async def failed_async(self, exc: BaseException) -> bool:
        """:meth:`failed`, with an async ``on`` predicate."""
        try:
            verdict = await self.settings.verdict_async(exc)
        except BaseException as interrupted:
            if is_control_flow(interrupted) and not is_control_flow(exc):
                self.fail(exc, None, True)  # cut while judging: exc is the last failure
            raise
        return self._judged(exc, verdict)

    def _judged(self, exc: BaseException, verdict: bool | float) -> bool:
        if verdict is False:
            if self.attempts > 1 and not is_control_flow(exc):
                self.annotate(
                    exc,
                    f"{type(exc).__qualname__} is not retried (on={self.settings.on_repr()})",
                )
            return False
        self.fail(exc, None, verdict)
        return True

    def rejected(self, result: object) -> bool:
        """The running attempt returned *result*: whether ``retry_if_result``
        rejects it (then it is retried like an error)."""
        verdict = self.settings.result_verdict(result)
        if verdict is False:
            return False
        self.fail(None, result, verdict)
        return True

    async def rejected_async(self, result: object) -> bool:
        """:meth:`rejected`, with an async ``retry_if_result``."""
        verdict = await self.settings.result_verdict_async(result)
        if verdict is False:
            return False
        self.fail(None, result, verdict)
        return True

    # --- between two attempts ---

    def peek_backoff(self) -> float:
        """The backoff wait after the running attempt, drawn ahead (NaN with
        ``wait=``: that wait depends on the failure)."""
        if self.zero_waits or self.settings.never_waits:
            return 0.0
        if self.settings.wait is not None:
            return math.nan
        if self.pending is None:
            self.pending = self._draw()
        return self.pending

    def _draw(self) -> float:
        if self.delays is None:
            self.delays = self.settings.backoff.delays()
        return next(self.delays)

    def _crossing(self, delay: float, now: float) -> _Stop | None:
        """Why a wait of *delay* seconds from *now* must not start, if it must not."""
        end = self.end
        if now + delay >= end:
            timeout = self.settings.timeout
            return _Stop(
                "timeout",
                f"waiting {secs(delay)} s would cross the retry timeout"
                f" (timeout={secs(timeout or 0.0)} s, {secs(max(end - now, 0.0))} s left)",
            )
        deadline = anyio.current_effective_deadline()  # ours (end) is later: the caller's
        if now + delay >= deadline:
            return _Stop(
                "deadline",
                f"waiting {secs(delay)} s would cross the caller's deadline"
                f" in {secs(max(deadline - now, 0.0))} s",
            )
        return None

    def _plan(self) -> tuple[float, _Stop | None]:
        """The delay before the next attempt, or the reason to stop."""
        limit = self.max_attempts
        if limit is not None and self.attempts >= limit:
            capped = (
                " by anyway.testing" if self.testing and limit != self.settings.attempts else ""
            )
            return 0.0, _Stop("attempts", f"no attempts left (attempts={limit}{capped})")
        verdict = self.verdict
        if self.zero_waits:
            delay = 0.0
        elif verdict is not True:
            delay = float(verdict)
        elif self.settings.never_waits:
            delay = 0.0
        else:
            try:
                if self.settings.wait is not None:
                    delay = self.settings.waited(self.attempts, self.error)
                else:
                    delay = self.pending if self.pending is not None else self._draw()
                    self.pending = None
            except Exception as bad:  # (a user's wait= or random=) the error being
                if bad.__context__ is None:  # retried stays reachable
                    bad.__context__ = self.error
                raise
        # A zero wait is only a checkpoint: it crosses no deadline, and the
        # timeout's cancel scope cuts whatever runs past it. So the clock and
        # the caller's deadline are only read before real waits.
        if delay > 0:
            reason = self._crossing(delay, anyio.current_time())
            if reason is not None:
                return delay, reason
        budget = self.settings.budget
        if budget is not None:
            withdrawn = budget.withdraw()
            if withdrawn is None:
                return delay, _Stop("budget", f"retry budget exhausted ({budget!r})")
            self.withdrawn = withdrawn
        return delay, None

    def _refund(self) -> None:
        budget = self.settings.budget
        if budget is not None:
            budget.refund(self.withdrawn)  # the retry will not happen

    def wants_events(self) -> bool:
        """Whether a :class:`RetryScheduled` would reach anyone (checked once
        per call: building events nobody reads costs about 1 us per retry)."""
        listening = self.listening
        if listening is None:
            listening = self.listening = bool(self.settings.hooks) or _listening()
        return listening

    async def pause(self) -> bool:
        """After a retryable failure: tell the hooks, wait, and count the next
        attempt (``True``). When retrying stops: raise the error with the
        give-up notes, or return ``False`` for a rejected result (the caller
        returns ``self.result``). Cancelled, it gives the budget back."""
        delay, reason = self._plan()
        if reason is None:
            try:
                if self.wants_events():
                    await _emit(
                        RetryScheduled(
                            policy=self.name,
                            attempt=self.attempts,
                            delay=delay,
                            error=self.error,
                            result=self.result,
                            waited=self.waited,
                            function=self.function,
                        ),
                        self.settings.hooks,
                        self.error,
                    )
                    # The hooks took time: the wait must still fit (issue 11, defect 4).
                    if delay > 0:
                        reason = self._crossing(delay, anyio.current_time())
                if reason is None:
                    if delay > 0:
                        self.waiting_since = anyio.current_time()
                        await anyio.sleep(delay)
                        self.waiting_since = None
                        self._add_wait(delay)
                    else:
                        await anyio.lowlevel.checkpoint()  # a zero wait
                    if self.settings.before:
                        await self.announce(self.attempts + 1)
            except BaseException:
                self._wait_cut()
                self._refund()
                raise
            if reason is not None:
                self._refund()
        if reason is not None:
            return await self.give_up(reason)
        self.earlier.add(self.attempts, self.error, self.result)
        self.attempts += 1
        self.running = True
        stats = self.stats
        if stats is not None:
            count_attempt(stats)
        return True

    async def announce(self, attempt: int) -> None:
        """Tell the ``before=`` hooks that attempt number *attempt* starts."""
        event = RetryAttemptStarted(
            policy=self.name, attempt=attempt, waited=self.waited, function=self.function
        )
        try:
            await announce(self.settings.before, event)
        except Exception as hook_error:
            error = self.error
            if error is not None and hook_error.__context__ is None and hook_error is not error:
                hook_error.__context__ = error
            raise

    def _add_wait(self, seconds: float) -> None:
        self.waited += seconds
        stats = self.stats
        if stats is not None:
            count_wait(stats, seconds)

    def _wait_cut(self) -> None:
        """A backoff wait was cut (cancelled, or the retry timeout): count
        the part that was waited."""
        since = self.waiting_since
        if since is not None:
            self.waiting_since = None
            self._add_wait(max(0.0, anyio.current_time() - since))

    # --- giving up ---

    def elapsed(self) -> float:
        """Seconds since the first failure."""
        return 0.0 if self.start is None else anyio.current_time() - self.start

    def annotate(self, error: BaseException, reason: str) -> None:
        """Add the give-up note and the earlier attempts to *error*."""
        elapsed = self.elapsed()
        error.add_note(
            f"gave up after {plural(self.attempts, 'attempt')} in {secs(elapsed)} s: {reason}"
        )
        note = self.earlier.note()
        if note is not None:
            error.add_note(note)
        previous = self.previous if error is self.error else self.error
        if previous is not None:
            link(error, previous)

    async def give_up(self, stop: _Stop) -> bool:
        """Stop retrying: annotate the error, tell the hooks, then raise it
        (or return ``False``: the caller returns the rejected result)."""
        error = self.error
        if not self.stopped:  # once: a give-up hook cut by the timeout leads here again
            self.stopped = True
            if error is not None:
                self.annotate(error, stop.words)
            await _emit(
                RetryGaveUp(
                    policy=self.name,
                    attempts=self.attempts,
                    elapsed=self.elapsed(),
                    reason=stop.words,
                    kind=stop.kind,
                    error=error,
                    result=self.result,
                    waited=self.waited,
                    function=self.function,
                ),
                self.settings.hooks,
                error,
            )
        if error is not None:
            self.error = self.previous = None  # the caller holds it now (no cycle)
            raise error
        return False

    async def cut(self) -> bool:
        """The retry timeout's cancel scope expired (during an attempt, a hook
        or a wait): give up with the last real failure."""
        self._wait_cut()
        during = (
            f"attempt {self.attempts} was cut"
            if self.running
            else f"during the wait after attempt {self.attempts}"
        )
        return await self.give_up(
            _Stop(
                "timeout",
                f"the retry timeout (timeout={secs(self.settings.timeout or 0.0)} s) expired:"
                f" {during}",
            )
        )
