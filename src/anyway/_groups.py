"""Helpers for the code that runs users' calls in a task group (settle, race,
hedge, map): which error a task group's exception group stands for, how to
raise it as itself, and how to tell an error raised by cleanup that was being
cancelled (which must propagate, never become an outcome)."""

from __future__ import annotations

import math
from typing import NoReturn

from anyio import current_effective_deadline, get_cancelled_exc_class

from ._util import NotAwaitableError

__all__ = ["raise_group", "raised_in_cleanup", "reraise", "single_error"]


def raised_in_cleanup(exc: BaseException) -> bool:
    """Was *exc* raised by code that was being cancelled (cleanup that failed)?

    True when the current task is inside a cancelled scope *and* *exc* was
    raised while a cancellation was propagating (it is in the ``__context__``
    chain). Such an error must propagate: capturing it into an outcome, or
    dropping it as a losing racer's failure, would lose it, since the work it
    belongs to is being thrown away.
    """
    if current_effective_deadline() != -math.inf:
        return False
    cancelled = get_cancelled_exc_class()
    context = exc.__context__
    depth = 0
    while context is not None and depth < 64:  # the bound guards against cycles
        if isinstance(context, cancelled):
            return True
        if isinstance(context, BaseExceptionGroup) and context.split(cancelled)[0] is not None:
            return True
        context = context.__context__
        depth += 1
    return False


def reraise(exc: BaseException) -> NoReturn:
    """Raise *exc* as itself, keeping the context and cause it already had."""
    context, cause, suppress = exc.__context__, exc.__cause__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__cause__, exc.__suppress_context__ = context, cause, suppress
        del exc, context, cause


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception a task group's *group* stands for, if there is one.

    Cancellations do not count (the cancelled scope delivers them again at the
    next checkpoint, like trio's ``raise_single_exception_from_group``): one
    other exception is returned as itself. Several
    :class:`~anyway._util.NotAwaitableError` (the same misuse, hit by several
    calls at once) count as the first one, with a note. Otherwise ``None``:
    the group must be raised as it is (several errors: none is lost).
    """
    rest = group.split(get_cancelled_exc_class())[1]
    if rest is None:
        return None
    errors = rest.exceptions
    if len(errors) == 1:
        return errors[0]
    if all(isinstance(exc, NotAwaitableError) for exc in errors):
        first = errors[0]
        first.add_note(f"({len(errors) - 1} other calls made the same mistake at the same time)")
        return first
    return None


def raise_group(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise what a task group's *group* stands for: one error as itself, else
    the group."""
    single = single_error(group)
    if single is None:
        raise group
    reraise(single)
