"""Deadlines: :func:`deadline`, :func:`deadline_at`, :func:`remaining`,
:class:`Budget`, :func:`shield` and :func:`fallback`.

Everything here is a thin layer over AnyIO cancel scopes, so deadlines nest
the AnyIO way (the earliest one wins) and cost little more than the scope
itself. What they add: a :class:`~anyway.DeadlineExceeded` that says how long
the budget was, raised only when *our own* deadline expired (never for a
cancellation that came from an outer scope), a
:class:`~anyway.DeadlineExpired` event, and budgets that several stages and
tasks can share.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from types import TracebackType
from typing import TypeAlias, TypeVar, TypeVarTuple, Unpack, cast

from anyio import CancelScope, current_effective_deadline, current_time, move_on_after

from ._errors import DeadlineExceeded
from ._events import DeadlineExpired, emit_sync
from ._util import call_async, check_callable_arg, name_of
from ._validate import check_number, check_seconds

__all__ = ["Budget", "deadline", "deadline_at", "fallback", "remaining", "shield"]

T = TypeVar("T")
D = TypeVar("D")

_NUMBERS = (float, int)  # exact types: bool (an int subclass) takes the checked path
Ts = TypeVarTuple("Ts")


def _expired(
    policy: str, message: str, seconds: float | None, cause: BaseException | None
) -> DeadlineExceeded:
    """Report an expired deadline and build the exception to raise."""
    emit_sync(DeadlineExpired(policy=policy, seconds=seconds))
    exc = DeadlineExceeded(message, seconds=seconds)
    exc.__cause__ = cause  # like asyncio.timeout: the traceback shows where it waited
    return exc


class _Deadline:
    """What :func:`deadline` and :func:`deadline_at` return: a reusable (not
    re-entrant) context manager around one AnyIO cancel scope per block."""

    __slots__ = ("_entered", "_scope", "_seconds", "_shield", "_when")

    def __init__(self, seconds: float | None, when: float | None, shield: bool) -> None:
        self._seconds = seconds
        self._when = when
        self._shield = shield
        self._scope: CancelScope | None = None
        self._entered = 0.0

    def __repr__(self) -> str:
        scope = self._scope
        what = (
            f"deadline({self._seconds:g} s)"
            if self._seconds is not None
            else f"deadline_at({self._when:g})"
        )
        if scope is None:
            return f"<anyway.{what} idle>"
        try:
            left = max(scope.deadline - current_time(), 0.0)
        except RuntimeError:  # no event loop: show what we know without failing
            return f"<anyway.{what} active deadline={scope.deadline:g}>"
        return f"<anyway.{what} active remaining={left:.3g} s>"

    def __enter__(self) -> CancelScope:
        if self._scope is not None:
            raise RuntimeError(
                "this anyway.deadline() block is already active; call anyway.deadline()"
                " again for each concurrent or nested block"
            )
        when = self._when
        if when is None:
            self._entered = now = current_time()
            when = now + self._seconds  # type: ignore[operator]
        else:
            self._entered = current_time()
        scope = CancelScope(deadline=when, shield=self._shield)
        self._scope = scope.__enter__()
        return scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        scope = self._scope
        assert scope is not None, "__exit__ without __enter__"
        self._scope = None
        suppress = scope.__exit__(exc_type, exc, tb)
        # cancelled_caught is only True when *this* scope caught its own
        # cancellation; the time check tells its deadline from scope.cancel().
        if scope.cancelled_caught and current_time() >= scope.deadline:
            seconds = self._seconds
            if seconds is not None:
                if scope.deadline != self._entered + seconds:  # moved inside the block
                    seconds = scope.deadline - self._entered
                message = f"deadline of {seconds:g} s exceeded"
                policy = "deadline"
            else:
                message = (
                    f"deadline at clock time {scope.deadline:g} exceeded"
                    f" ({scope.deadline - self._entered:g} s after the block was entered)"
                )
                policy = "deadline_at"
            raise _expired(policy, message, seconds, exc)
        return suppress


def deadline(seconds: float, *, shield: bool = False) -> AbstractContextManager[CancelScope]:
    """Fail with :class:`~anyway.DeadlineExceeded` if the block takes longer
    than *seconds*.

    Like :func:`anyio.fail_after`, and yields the same
    :class:`anyio.CancelScope`, but the error says how long the budget was
    (``deadline of 2.5 s exceeded``, with ``.seconds == 2.5``) and a
    :class:`~anyway.DeadlineExpired` event is emitted. The clock starts when
    the block is entered, so one ``deadline(2.5)`` object can be used for
    several blocks one after the other.

    Deadlines nest the AnyIO way: the earliest one wins. An inner deadline
    never reports a cancellation that came from outside it (an outer
    deadline, a cancelled task group): that cancellation propagates
    untouched, and only the scope whose deadline expired raises.

    ``seconds`` may be ``0`` (expire at the first checkpoint) or
    :data:`math.inf` (no deadline). ``shield=True`` also protects the block
    from outer cancellation (see :func:`shield` for cleanup code).

    Example::

        with anyway.deadline(2.5):
            await fetch_profile(user_id)
    """
    if not (type(seconds) in _NUMBERS and seconds >= 0.0):  # fast path; NaN fails it too
        seconds = check_seconds(
            "seconds", seconds, allow_inf=True, hint=" (use math.inf for no deadline)"
        )
    if shield is not False and shield is not True:
        raise TypeError(f"shield must be True or False, got {shield!r}")
    return _Deadline(seconds, None, shield)


def deadline_at(when: float, *, shield: bool = False) -> AbstractContextManager[CancelScope]:
    """Like :func:`deadline`, with an absolute deadline: a value of the event
    loop clock (:func:`anyio.current_time`), like :func:`anyio.fail_at`.

    A time in the past expires at the first checkpoint; :data:`math.inf`
    means no deadline. The raised :class:`~anyway.DeadlineExceeded` has
    ``.seconds = None`` (the budget was a point in time); its message gives
    the deadline and how long after entering the block it was.
    """
    when = check_number("when", when, minimum=-math.inf, allow_inf=True)
    if shield is not False and shield is not True:
        raise TypeError(f"shield must be True or False, got {shield!r}")
    return _Deadline(None, when, shield)


def remaining() -> float:
    """Seconds left until the current task's effective deadline.

    That is :func:`anyio.current_effective_deadline` minus
    :func:`anyio.current_time`: the nearest deadline of every enclosing cancel
    scope (up to the nearest shield). :data:`math.inf` when there is no
    deadline, ``0.0`` (never negative) when it has passed or the scope is
    already cancelled. Use it to size timeouts of APIs that take seconds
    (``sock.settimeout``, an HTTP client's timeout...).
    """
    left = current_effective_deadline() - current_time()
    return left if left > 0.0 else 0.0


# The cancel scopes of the `with budget:` blocks active in this context, as a
# linked list of (budget, scope, rest). Each task has its own copy (tasks copy
# the context), so one Budget can be entered by many tasks at once.
_Blocks: TypeAlias = "tuple[Budget, CancelScope, _Blocks | None]"
_budget_blocks: ContextVar[_Blocks | None] = ContextVar("anyway_budget_blocks", default=None)


class Budget:
    """An absolute deadline fixed when the budget is created, to share
    between stages and tasks.

    ``Budget(5.0)`` reads :func:`anyio.current_time` once, so create it inside
    async code (it raises :exc:`RuntimeError` outside an event loop). From
    then on the deadline does not move: every stage that runs under the
    budget gets what is left of it, not a fresh five seconds.

    ``with budget:`` runs a block under the budget's deadline (an
    :class:`anyio.CancelScope`, yielded) and raises
    :class:`~anyway.DeadlineExceeded` (``budget of 5 s exceeded``) if the
    budget runs out inside it. The same budget can be entered any number of
    times, nested, and from several tasks at once. It nests with other
    deadlines the AnyIO way: the earliest wins.

    Example::

        budget = anyway.Budget(5.0)
        with budget:
            user = await fetch_user(user_id)
        log.info("user fetched, %.1f s left", budget.remaining())
        with budget:
            await fetch_orders(user)
    """

    __slots__ = ("__weakref__", "_deadline", "_seconds")

    def __init__(self, seconds: float) -> None:
        seconds = check_seconds(
            "seconds", seconds, allow_inf=True, hint=" (use math.inf for an unlimited budget)"
        )
        try:
            now = current_time()
        except RuntimeError as exc:  # anyio.NoEventLoopError
            raise RuntimeError(
                "Budget() reads the event loop clock when it is created: create it"
                " inside async code (e.g. at the start of the request handler)"
            ) from exc
        self._seconds = seconds
        self._deadline = now + seconds

    @property
    def seconds(self) -> float:
        """The budget's length, as given at creation."""
        return self._seconds

    @property
    def deadline(self) -> float:
        """The absolute deadline: a value of :func:`anyio.current_time`."""
        return self._deadline

    @property
    def expired(self) -> bool:
        """``True`` once the deadline has passed."""
        return current_time() >= self._deadline

    def remaining(self) -> float:
        """Seconds left (``0.0`` once expired, :data:`math.inf` if unlimited)."""
        left = self._deadline - current_time()
        return left if left > 0.0 else 0.0

    def __repr__(self) -> str:
        try:
            left = self._deadline - current_time()
        except RuntimeError:
            state = f"deadline={self._deadline:g}"
        else:
            state = f"remaining={left:.3g}" if left > 0.0 else "expired"
        return f"<Budget seconds={self._seconds:g} {state}>"

    def __enter__(self) -> CancelScope:
        scope = CancelScope(deadline=self._deadline).__enter__()
        _budget_blocks.set((self, scope, _budget_blocks.get()))
        return scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        top = _budget_blocks.get()
        if top is None or top[0] is not self:
            raise RuntimeError(
                "Budget blocks must be exited in the task and order they were entered"
            )
        _, scope, rest = top
        _budget_blocks.set(rest)
        suppress = scope.__exit__(exc_type, exc, tb)
        if scope.cancelled_caught and current_time() >= scope.deadline:
            raise _expired("Budget", f"budget of {self._seconds:g} s exceeded", self._seconds, exc)
        return suppress


class _Shield:
    """What :func:`shield` returns."""

    __slots__ = ("_scope", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._scope: CancelScope | None = None

    def __repr__(self) -> str:
        state = "active" if self._scope is not None else "idle"
        return f"<anyway.shield({self._seconds:g} s) {state}>"

    def __enter__(self) -> CancelScope:
        if self._scope is not None:
            raise RuntimeError("this anyway.shield() block is already active")
        scope = move_on_after(self._seconds, shield=True)
        self._scope = scope.__enter__()
        return scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        scope = self._scope
        assert scope is not None, "__exit__ without __enter__"
        self._scope = None
        suppress = scope.__exit__(exc_type, exc, tb)
        if scope.cancelled_caught:
            emit_sync(DeadlineExpired(policy="shield", seconds=self._seconds))
        return suppress


def shield(seconds: float) -> AbstractContextManager[CancelScope]:
    """Protect cleanup from cancellation, for at most *seconds*.

    A shielded :class:`anyio.CancelScope` (yielded) with its own deadline:
    outer cancellation (a timeout, a cancelled task group) does not interrupt
    the block, but the block cannot hang forever either. When the *seconds*
    run out the block is abandoned and execution **moves on** after it (no
    exception: ``scope.cancelled_caught`` tells, and a
    :class:`~anyway.DeadlineExpired` event is emitted). Cleanup runs while
    some other exception or cancellation is propagating; raising a timeout
    there would replace it, so moving on is the right default. The clock
    starts when the block is entered.

    This is the seeds' ``asyncio.shield`` pattern done right: the work runs
    in the current task (nothing is left behind) and it is bounded.

    Example::

        try:
            await conn.execute(query)
        finally:
            with anyway.shield(2.0):
                await conn.rollback()
    """
    if not (type(seconds) in _NUMBERS and 0.0 < seconds < math.inf):  # fast path
        seconds = check_seconds(
            "seconds",
            seconds,
            allow_zero=False,
            hint=" (a shield must be bounded; use anyio.CancelScope(shield=True) for an unbounded one)",
        )
    return _Shield(seconds)


async def fallback(
    fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    timeout: float,  # noqa: ASYNC109 - the contract's name; it is enforced inside
    default: D,
) -> T | D:
    """Return ``await fn(*args)``, or *default* if it does not finish within
    *timeout* seconds.

    Only the timeout is absorbed: an exception raised by *fn* propagates (a
    *fn* that returns something that cannot be awaited, a sync function, is a
    :class:`TypeError`), and so does a cancellation from outside (an outer
    deadline, a cancelled task group), even one that fires at the same
    moment. When the default is used a :class:`~anyway.DeadlineExpired` event
    is emitted (``policy`` is *fn*'s qualified name).

    ``timeout`` may be ``0`` (use *fn*'s result only if it finishes without
    waiting) or :data:`math.inf`.

    Example::

        recommendations = await anyway.fallback(
            personalised, user_id, timeout=0.2, default=POPULAR_ITEMS
        )
    """
    if not callable(fn_object := cast(object, fn)):  # e.g. a coroutine object: explained
        check_callable_arg("fn", fn_object)
    if not (type(timeout) in _NUMBERS and timeout >= 0.0):  # fast path; NaN fails it too
        timeout = check_seconds("timeout", timeout, allow_inf=True)
    with move_on_after(timeout):
        return await call_async("fallback() fn", fn, *args)
    # Only reached when our own scope caught its cancellation: an outer one
    # would have propagated through it.
    emit_sync(DeadlineExpired(policy=name_of(fn), seconds=timeout))
    return default
