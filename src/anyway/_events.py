"""Events that policies emit, and the hooks that receive them.

Every policy (retry, breaker, bulkhead, limiter, deadline) reports what it
decides as a small frozen event object. Hooks receive them: the hooks given
to the policy itself, then the global hooks (:func:`add_hook`). The default
global hook, :func:`log_event`, logs to the stdlib logger ``"anyway"``.

Events are only built when something happens (a retry, a rejection, a state
change), never on the happy path.
"""

from __future__ import annotations

import enum
import inspect
import logging
import reprlib
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = [
    "BreakerCallRecorded",
    "BreakerStateChanged",
    "CallRejected",
    "CircuitState",
    "DeadlineExpired",
    "GiveUpKind",
    "Hook",
    "LimitChanged",
    "LoopBlocked",
    "PolicyEvent",
    "RedisFailedOpen",
    "RetryAttemptStarted",
    "RetryGaveUp",
    "RetryScheduled",
    "TransitionKind",
    "add_hook",
    "emit",
    "emit_sync",
    "global_hooks",
    "log_event",
    "remove_hook",
]

logger = logging.getLogger("anyway")
# A library prints nothing unless the application configures logging.
logger.addHandler(logging.NullHandler())


class CircuitState(enum.Enum):
    """The state of a :class:`~anyway.CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


TransitionKind: TypeAlias = Literal[
    "failures",
    "failure_rate",
    "slow_call_rate",
    "probe_failed",
    "probe_slow",
    "recovery_time",
    "probes_succeeded",
    "operator_open",
    "operator_close",
    "operator_reset",
]
"""Why a circuit changed state, machine-readable (for metrics and alerts):
``failures`` (``failure_threshold`` consecutive failures), ``failure_rate`` /
``slow_call_rate`` (over the window), ``probe_failed`` / ``probe_slow`` (a
half-open probe), ``recovery_time`` (open -> half-open), ``probes_succeeded``
(half-open -> closed), ``operator_open`` / ``operator_close`` /
``operator_reset`` (:meth:`~anyway.CircuitBreaker.open`, ``close``,
``reset``)."""

GiveUpKind: TypeAlias = Literal["attempts", "timeout", "deadline", "budget", "other"]
"""Why retrying stopped, machine-readable: no attempts left, the retry's
``timeout``, the enclosing deadline, the :class:`~anyway.RetryBudget`, or
anything else."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyEvent:
    """Base of every event. ``policy`` names the policy object that emitted it
    (the breaker's name, the function's qualified name for retry...)."""

    policy: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(PolicyEvent):
    """A retry will happen after ``delay`` seconds. ``attempt`` is the number
    of the attempt that just failed (1 for the first call). Exactly one of
    ``error`` (the exception) and ``result`` (a result that
    ``retry_if_result`` rejected) is meaningful. ``waited`` is the seconds
    this call already spent in backoff waits (before this one), ``function``
    the retried callable's qualified name (``None`` for a
    :func:`~anyway.retrying` block)."""

    attempt: int
    delay: float
    error: BaseException | None = None
    result: object = None
    waited: float = 0.0
    function: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryGaveUp(PolicyEvent):
    """Retrying stopped after ``attempts`` attempts and ``elapsed`` seconds
    (since the first failure); ``reason`` says why (attempts exhausted,
    timeout, deadline, budget...). ``waited`` is the seconds spent in backoff
    waits, ``function`` the retried callable's qualified name (``None`` for a
    :func:`~anyway.retrying` block)."""

    attempts: int
    elapsed: float
    reason: str
    kind: GiveUpKind = "other"
    error: BaseException | None = None
    result: object = None
    waited: float = 0.0
    function: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryAttemptStarted(PolicyEvent):
    """Attempt number ``attempt`` starts now: ``1`` for the call's first
    attempt, later ones after their backoff wait (tenacity's ``before``,
    stamina's retry hooks). Only the retry's ``before=`` hooks get it, never
    the global hooks, and with no ``before=`` hook it is not built at all (the
    success path emits nothing). ``waited`` is the seconds this call spent in
    backoff waits so far, ``function`` the retried callable's qualified name
    (``None`` for a :func:`~anyway.retrying` block)."""

    attempt: int
    waited: float = 0.0
    function: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStateChanged(PolicyEvent):
    """A circuit breaker moved from ``old`` to ``new``: ``reason`` says why in
    words, ``kind`` in one :data:`TransitionKind` (``None`` when unknown)."""

    old: CircuitState
    new: CircuitState
    reason: str = ""
    kind: TransitionKind | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerCallRecorded(PolicyEvent):
    """A circuit breaker recorded the outcome of a call: ``"failure"`` (with
    its ``error``) or ``"success"``; ``slow`` when it took longer than
    ``slow_call_duration``. Only emitted by breakers made with
    ``outcome_events=True`` (it costs the happy path an event per call).
    Recovery is the :class:`BreakerStateChanged` with
    ``kind="probes_succeeded"``."""

    outcome: Literal["success", "failure"]
    slow: bool = False
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(PolicyEvent):
    """A call was refused without running: ``by`` is ``"breaker"``,
    ``"bulkhead"`` or ``"limiter"``; ``retry_after`` is when trying again may
    succeed (``None`` when unknown)."""

    by: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineExpired(PolicyEvent):
    """A deadline of ``seconds`` (``None`` for an absolute one) expired."""

    seconds: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitChanged(PolicyEvent):
    """An :class:`~anyway.AdaptiveLimiter` moved its limit from ``old`` to
    ``new``; ``reason`` is ``"latency"`` (the window's mean latency rose
    above the baseline), ``"failures"`` or ``"growth"``. ``latency`` is the
    window's mean latency of successful calls (``None`` if none succeeded)
    and ``baseline`` the best window mean remembered, in seconds."""

    old: int
    new: int
    reason: str
    latency: float | None
    baseline: float | None


#: How many of the innermost frames a LoopBlocked message shows.
_SHOWN_FRAMES: Final = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopBlocked(PolicyEvent):
    """The event loop did not reach a checkpoint for ``seconds`` real seconds.

    ``stack`` is the loop thread's stack when the stall was noticed (outermost
    first, as :func:`traceback.extract_stack` gives it); ``frame`` is its
    innermost entry, normally the blocking call's file and line.
    """

    seconds: float
    threshold: float
    stack: tuple[traceback.FrameSummary, ...]

    @property
    def frame(self) -> traceback.FrameSummary | None:
        """The innermost frame: where the loop thread was stuck."""
        return self.stack[-1] if self.stack else None

    def __str__(self) -> str:
        where = "".join(traceback.format_list(list(self.stack[-_SHOWN_FRAMES:]))).rstrip()
        return (
            f"the event loop was blocked for {self.seconds:.3f} s"
            f" (threshold {self.threshold:g} s), in:\n{where}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisFailedOpen(PolicyEvent):
    """Redis was unavailable and an object created with
    ``on_unavailable="fail_open"`` let the call through unchecked.

    ``operation`` says what was let through (``"acquire"``, ``"try_acquire"``,
    a breaker store method...), ``error`` is why (a coredis error or a
    :exc:`TimeoutError` for a round trip that took longer than
    ``redis_timeout``)."""

    operation: str
    error: BaseException


Hook: TypeAlias = Callable[[PolicyEvent], Awaitable[None] | None]
"""A hook: a sync or async callable taking a :class:`PolicyEvent`."""


def log_event(event: PolicyEvent) -> None:
    """The default global hook: log *event* on the ``"anyway"`` logger.

    Retries and rejections are ``INFO``, give-ups and breaker opening
    ``WARNING``, other state changes and expired deadlines ``INFO``.
    """
    match event:
        case RetryScheduled():
            if logger.isEnabledFor(logging.INFO):
                what = (
                    f"{type(event.error).__name__}: {event.error}"
                    if event.error is not None
                    else f"result {reprlib.repr(event.result)}"
                )
                logger.info(
                    "%s: attempt %d failed (%s); retrying in %.3g s",
                    event.policy,
                    event.attempt,
                    what,
                    event.delay,
                )
        case RetryAttemptStarted():
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s: attempt %d starts (%.3g s waited so far)",
                    event.policy,
                    event.attempt,
                    event.waited,
                )
        case RetryGaveUp():
            logger.warning(
                "%s: gave up after %d attempt%s in %.3g s: %s",
                event.policy,
                event.attempts,
                "" if event.attempts == 1 else "s",
                event.elapsed,
                event.reason,
            )
        case BreakerStateChanged():
            level = logging.WARNING if event.new is CircuitState.OPEN else logging.INFO
            logger.log(
                level,
                "%s: circuit %s -> %s%s",
                event.policy,
                event.old.value,
                event.new.value,
                f" ({event.reason})" if event.reason else "",
            )
        case BreakerCallRecorded():
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s: %s%s recorded%s",
                    event.policy,
                    "slow " if event.slow else "",
                    event.outcome,
                    f" ({type(event.error).__name__}: {event.error})" if event.error else "",
                )
        case CallRejected():
            logger.info(
                "%s: call rejected by %s%s",
                event.policy,
                event.by,
                f", retry after {event.retry_after:.3g} s" if event.retry_after is not None else "",
            )
        case DeadlineExpired():
            if event.seconds is None:
                logger.info("%s: deadline expired", event.policy)
            else:
                logger.info("%s: deadline of %g s expired", event.policy, event.seconds)
        case LoopBlocked():
            logger.warning("%s", event)
        case LimitChanged():
            logger.log(
                logging.DEBUG if event.reason == "growth" else logging.INFO,
                "%s: concurrency limit %d -> %d (%s: window latency %s, baseline %s)",
                event.policy,
                event.old,
                event.new,
                event.reason,
                "n/a" if event.latency is None else f"{event.latency:.3g} s",
                "n/a" if event.baseline is None else f"{event.baseline:.3g} s",
            )
        case RedisFailedOpen():
            logger.warning(
                "%s: Redis unavailable, %s let through unchecked (fail_open): %r",
                event.policy,
                event.operation,
                event.error,
            )
        case _:
            logger.debug("%s", event)


_global_hooks: list[Hook] = [log_event]


def add_hook(hook: Hook) -> None:
    """Add a global hook that receives every event of every policy.

    Global hooks must be synchronous (they are also called from synchronous
    code); async hooks go to a policy's own ``hooks=``.
    """
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {hook!r}")
    if inspect.iscoroutinefunction(hook):
        raise TypeError(
            f"global hooks must be synchronous, got the async function {hook!r}: they also"
            " receive events from synchronous code (deadlines, try_acquire); pass async"
            " hooks to a policy's hooks= instead, or hand the event to a task from a sync hook"
        )
    if hook not in _global_hooks:
        _global_hooks.append(hook)


def remove_hook(hook: Hook) -> None:
    """Remove a global hook (``remove_hook(log_event)`` silences the default logging)."""
    try:
        _global_hooks.remove(hook)
    except ValueError:
        raise ValueError(f"{hook!r} is not a registered global hook") from None


def global_hooks() -> tuple[Hook, ...]:
    """The global hooks, in calling order."""
    return tuple(_global_hooks)


def check_hooks(hooks: Iterable[Hook] | Hook) -> tuple[Hook, ...]:
    """Normalise a policy's ``hooks=`` argument (one hook or an iterable)."""
    if callable(hooks):
        return (hooks,)
    try:
        result = tuple(hooks)
    except TypeError:
        raise TypeError(
            f"hooks must be a callable taking an event, or an iterable of them, got {hooks!r}"
        ) from None
    for hook in result:
        if not callable(hook):
            raise TypeError(f"hooks must be callables taking an event, got {hook!r}")
    return result


async def emit(event: PolicyEvent, hooks: tuple[Hook, ...] = ()) -> None:
    """Send *event* to *hooks*, then to the global hooks; await async ones."""
    for hook in (*hooks, *_global_hooks):
        result = hook(event)
        if inspect.isawaitable(result):
            await result


def emit_sync(event: PolicyEvent, hooks: tuple[Hook, ...] = ()) -> None:
    """Like :func:`emit`, for places that cannot await (async hooks are an error there)."""
    for hook in (*hooks, *_global_hooks):
        result = hook(event)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"hook {hook!r} is async, but {type(event).__name__} is emitted from"
                " synchronous code; use a sync hook here"
            )
