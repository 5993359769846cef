"""Hedged attempts of :class:`anyway.httpx.ResilientTransport`: the copies of
one attempt race through an :class:`anyway.Hedger`; the responses of the
losers are closed before the attempt returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import httpx

from . import Hedger, Rejected

__all__ = ["close_response", "send_hedged"]

# Closing a response is shielded from cancellation, within this bound.
_CLOSE_TIMEOUT: Final = 1.0
#: The errors of a copy that another copy may beat: failures on the way.
_RACED: Final = (httpx.TransportError, Rejected)


async def close_response(response: httpx.Response) -> None:
    """Close *response* (its connection goes back to the pool or is closed),
    shielded from cancellation within a bound."""
    if not response.is_closed:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await response.aclose()


async def send_hedged(
    hedger: Hedger, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """``await hedger(send)``, with every response but the winner's closed
    before returning (two copies may both answer before the loser is
    cancelled). When every copy fails, the first copy's error is raised as
    itself (an ``httpx`` error, so the retry loop and the caller see what an
    unhedged request raises), with a note per other copy's error.

    Only a failure on the way (an ``httpx.TransportError``, or a limiter's
    :class:`~anyway.Rejected`) lets another copy win. Any other error of a
    copy (a bug: a hook or a wrapped transport raising, a sync
    ``handle_async_request``) ends the attempt at once, the other copies
    cancelled, and is raised as itself, as it would be without hedging: it
    is never dropped because another copy answered."""
    got: list[httpx.Response] = []
    errors: list[Exception] = []  # every copy's error, in the order they failed
    bug: Exception | None = None  # the first error that is not a failure on the way
    scope = anyio.CancelScope()

    async def copy() -> httpx.Response:
        nonlocal bug
        try:
            response = await send()
        except Exception as exc:
            errors.append(exc)
            if bug is None and not isinstance(exc, _RACED):
                bug = exc
                scope.cancel()  # the other copies: this attempt is over
            raise
        got.append(response)  # no checkpoint in between: never lost
        return response

    winner: httpx.Response | None = None
    try:
        with scope:
            winner = await hedger(copy)
    except ExceptionGroup:  # every copy failed: their errors are in `errors`
        pass
    finally:
        for response in got:
            if response is not winner or bug is not None:
                await close_response(response)
    if winner is not None and bug is None:
        return winner
    first = errors[0] if bug is None else bug
    for other in errors:
        if other is not first:
            first.add_note(f"another hedged copy also failed: {other!r}")
    errors.clear()  # no cycle through this frame
    bug = None
    raise first
