"""Task-group helpers over a fixed set of calls: :func:`settle`, :func:`race`
and :func:`hedge` (:func:`~anyway.map` and :func:`~anyway.map_all`, over an
iterable, are in ``_map``).

Each runs its calls in an AnyIO task group that lives exactly as long as the
call: nothing outlives it, losers are cancelled *and finished* before a
result is returned, and cancellation from outside always propagates.

What AnyIO (>= 4.16) already offers is reused, not repeated: ``anyio.gather``
is the fail-fast "run these and give me all results", ``anyio.as_completed``
iterates a fixed set of awaitables in completion order. The helpers here
cover what those do not: collect-all outcomes (with a batch timeout that
keeps what finished), first-success races and hedged requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, TypeVarTuple, Unpack

from anyio import CancelScope, create_task_group, move_on_after, sleep
from outcome import Error, Outcome, Value

from ._errors import DeadlineExceeded
from ._events import DeadlineExpired, emit_sync
from ._groups import raise_group, raised_in_cleanup
from ._util import (
    NotAwaitableError,
    call_async,
    check_callable_arg,
    check_late_binding,
    name_of,
)
from ._validate import check_count, check_seconds

__all__ = ["hedge", "race", "settle"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def _keep(exc: Exception) -> bool:
    """May a call's error become its outcome? Not a misuse of ours (a sync
    function: a bug at the call site), nor cleanup failing under
    cancellation: those propagate."""
    return not isinstance(exc, NotAwaitableError) and not raised_in_cleanup(exc)


# --- settle --------------------------------------------------------------------


async def _settle_one(
    fn: Callable[[], Awaitable[T]], results: list[Outcome[T] | None], index: int
) -> None:
    try:
        results[index] = Value(await call_async(f"settle() argument {index + 1}", fn))
    except Exception as exc:
        if not _keep(exc):
            raise
        results[index] = Error(exc)


async def settle(
    *fns: Callable[[], Awaitable[T]],
    timeout: float | None = None,  # noqa: ASYNC109 - the contract's name; enforced inside
) -> list[Outcome[T]]:
    """Run every ``fn()`` concurrently, wait for all of them, and return their
    outcomes in argument order: :class:`outcome.Value` for a result,
    :class:`outcome.Error` for an exception (collect-all, partial failure).

    A failure does not cancel the others. With *timeout* (seconds), calls
    still running when it has passed are cancelled (their cleanup has run
    before ``settle`` returns) and their outcome is
    ``Error(DeadlineExceeded)``; the finished outcomes are kept and
    ``settle`` returns normally: one slow call does not cost the others'
    results.

    Only cancellation from outside propagates (and exceptions that are not
    :class:`Exception`, like :exc:`KeyboardInterrupt`): every call is then
    cancelled and finished before the cancellation leaves ``settle``. An
    error raised by a call *while it was being cancelled* (failing cleanup)
    is not captured either: it propagates, so it cannot be lost with the
    discarded outcomes. A function that returns something that cannot be
    awaited (a sync function) raises :class:`TypeError` at once.

    Pass functions, not coroutine objects, and bind arguments with
    :func:`functools.partial` (a ``lambda`` in a loop sees the loop
    variable's *last* value)::

        user, orders = await anyway.settle(
            partial(fetch_user, uid), partial(fetch_orders, uid), timeout=2.0
        )
        if isinstance(orders, outcome.Error):
            log.warning("no orders: %r", orders.error)
    """
    for i, fn in enumerate(fns):
        check_callable_arg(f"settle() argument {i + 1}", fn)
    check_late_binding("settle()", fns)
    if timeout is not None:
        timeout = check_seconds("timeout", timeout, allow_inf=True, hint=" (or None)")
    results: list[Outcome[T] | None] = [None] * len(fns)
    with CancelScope() if timeout is None else move_on_after(timeout) as scope:
        try:
            async with create_task_group() as tg:
                for index, fn in enumerate(fns):
                    tg.start_soon(_settle_one, fn, results, index, name=name_of(fn))
        except BaseExceptionGroup as group:
            raise_group(group)
    if scope.cancelled_caught:  # our timeout, not an outer cancellation
        emit_sync(DeadlineExpired(policy="settle", seconds=timeout))
        for index, result in enumerate(results):
            if result is None:
                results[index] = Error(
                    DeadlineExceeded(
                        f"settle() argument {index + 1} ({name_of(fns[index])}) did not"
                        f" finish within the timeout of {timeout:g} s",
                        seconds=timeout,
                    )
                )
    return results  # type: ignore[return-value]  # every slot is filled


# --- race and hedge ------------------------------------------------------------


class _Contest(Generic[T]):
    """Shared state of the tasks of one :func:`race` or :func:`hedge`."""

    __slots__ = ("errors", "scope", "unreplaced", "value", "waiter", "where", "won")

    def __init__(self, scope: CancelScope, size: int, where: str) -> None:
        self.scope = scope
        self.where = where
        self.won = False
        self.value: T | None = None
        self.errors: list[BaseException | None] = [None] * size
        self.unreplaced = 0  # hedge: failed copies not yet replaced
        self.waiter: CancelScope | None = None  # hedge: the starter's wait, cut short by a failure


async def _contender(
    contest: _Contest[T], index: int, fn: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts
) -> None:
    try:
        value = await call_async(contest.where.format(index + 1), fn, *args)
    except Exception as exc:
        if not _keep(exc):
            raise
        contest.errors[index] = exc
        contest.unreplaced += 1
        waiter = contest.waiter
        if waiter is not None:  # hedge: start a replacement now
            contest.waiter = None
            waiter.cancel()
        return
    if not contest.won:
        contest.won = True
        contest.value = value
        contest.scope.cancel()


def _all_failed(
    message: str, errors: list[BaseException | None], what: str
) -> ExceptionGroup[Exception]:
    excs: list[Exception] = []
    for index, exc in enumerate(errors):
        assert isinstance(exc, Exception)
        exc.add_note(f"{what} #{index + 1}")
        excs.append(exc)
    return ExceptionGroup(message, excs)


async def race(*fns: Callable[[], Awaitable[T]]) -> T:
    """Run every ``fn()`` concurrently and return the first *successful*
    result.

    As soon as one call succeeds the others are cancelled, and ``race``
    returns only once they have finished (their cleanup has run). Failures
    do not end the race; if every call fails, an :class:`ExceptionGroup` of
    their exceptions (in argument order, each with a note saying which
    argument raised it) is raised. A loser that raises while being cancelled
    (failing cleanup) makes ``race`` raise that error, and a function that
    returns something that cannot be awaited (a sync function) raises
    :class:`TypeError`: a mistake is never hidden by another racer's win.
    Cancellation from outside propagates. At least one function is required.

    Example::

        body = await anyway.race(
            partial(fetch, PRIMARY, path), partial(fetch, MIRROR, path)
        )
    """
    if not fns:
        raise ValueError("race() needs at least one async function to run")
    for i, fn in enumerate(fns):
        check_callable_arg(f"race() argument {i + 1}", fn)
    check_late_binding("race()", fns)
    try:
        async with create_task_group() as tg:
            contest: _Contest[T] = _Contest(tg.cancel_scope, len(fns), "race() argument {}")
            for index, fn in enumerate(fns):
                tg.start_soon(_contender, contest, index, fn, name=name_of(fn))
    except BaseExceptionGroup as group:
        raise_group(group)
    if contest.won:
        return contest.value  # type: ignore[return-value]
    raise _all_failed(f"all {len(fns)} racers failed", contest.errors, "raised by race() argument")


async def hedge(
    fn: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    delay: float,
    attempts: int = 2,
) -> T:
    """Call ``fn(*args)``, and start backup copies of the call if it is slow
    or fails; return the first successful result.

    A new copy starts when *delay* seconds have passed since the last copy
    started and none has succeeded yet, or at once when a running copy
    fails; at most *attempts* copies are started in total. The first success
    wins: the other copies are cancelled and have finished before ``hedge``
    returns. If every copy fails, an :class:`ExceptionGroup` of their
    exceptions (in start order) is raised. A *fn* that returns something that
    cannot be awaited raises :class:`TypeError`. Cancellation from outside
    propagates.

    ``delay=0`` starts all copies at once (a race of identical calls);
    ``delay=math.inf`` only starts a copy when one fails (immediate retries).
    Use it for idempotent calls whose latency has a long tail.

    Example::

        row = await anyway.hedge(replica.fetch, key, delay=0.05, attempts=3)
    """
    check_callable_arg("fn", fn)
    delay = check_seconds("delay", delay, allow_inf=True)
    attempts = check_count("attempts", attempts)
    name = name_of(fn)
    try:
        async with create_task_group() as tg:
            contest: _Contest[T] = _Contest(tg.cancel_scope, attempts, "hedge() fn (copy {})")
            tg.start_soon(_contender, contest, 0, fn, *args, name=name)
            started = 1
            while started < attempts:
                if not contest.unreplaced:  # wait for the delay, or for a copy to fail
                    with CancelScope() as waiter:
                        contest.waiter = waiter
                        await sleep(delay)
                    contest.waiter = None
                # No need to check for a win here: a win cancels this task group,
                # so the wait above raised instead of returning.
                if contest.unreplaced:
                    contest.unreplaced -= 1
                tg.start_soon(_contender, contest, started, fn, *args, name=name)
                started += 1
    except BaseExceptionGroup as group:
        raise_group(group)
    if contest.won:
        return contest.value  # type: ignore[return-value]
    raise _all_failed(f"all {attempts} copies of {name} failed", contest.errors, "hedge() copy")
