"""What the retry tests share: errors, a flaky callable, block runners, the
events fixture."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import anyio.lowlevel

import anyway
from anyway import (
    Attempt,
    Backoff,
    PolicyEvent,
)


class Transient(Exception):
    """The error the tests retry."""


class Fatal(Exception):
    """An error the tests do not retry."""


EXACT = Backoff(initial=1, max=8, multiplier=2, jitter=None)  # waits 1, 2, 4, 8, 8...


class Flaky:
    """An async callable that raises the given errors in turn, then returns."""

    def __init__(self, *errors: BaseException, result: object = "ok", duration: float = 0) -> None:
        self.errors = list(errors)
        self.result = result
        self.duration = duration
        self.calls: list[float] = []
        self.raised: list[BaseException] = []

    async def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append(anyio.current_time())
        if self.duration:
            await anyio.sleep(self.duration)
        if self.errors:
            error = self.errors.pop(0)
            self.raised.append(error)
            raise error
        return self.result


async def run_block(
    attempts: AsyncIterator[Attempt], body: Callable[[Attempt], object] | None = None
) -> None:
    """A retrying() loop whose block calls *body(attempt)*, or raises Transient."""
    async for attempt in attempts:
        with attempt:
            if body is None:
                raise Transient()
            body(attempt)


def offsets(times: list[float]) -> list[float]:
    return [t - times[0] for t in times]


def note_numbers(note: str, template: str) -> list[float]:
    """Match *note* against *template*, where ``{}`` stands for a number of
    seconds; return those numbers (exact on virtual time, close on uvloop)."""
    pattern = re.escape(template).replace(r"\{\}", r"([0-9.]+)")
    match = re.fullmatch(pattern, note)
    assert match, f"{note!r} does not match {template!r}"
    return [float(x) for x in match.groups()]


def record_events() -> Iterator[list[PolicyEvent]]:
    seen: list[PolicyEvent] = []
    anyway.add_hook(seen.append)
    try:
        yield seen
    finally:
        anyway.remove_hook(seen.append)


class RetryAfter(Exception):
    def __init__(self, seconds: float | None) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def honour_retry_after(exc: BaseException) -> bool | float:
    if isinstance(exc, RetryAfter):
        return True if exc.seconds is None else exc.seconds
    return False


class Results:
    def __init__(self, *results: object) -> None:
        self.results = list(results)
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        return self.results.pop(0)


async def judged_block(
    attempts: AsyncIterator[Attempt], outcomes: list[object], seen: list[float] | None = None
) -> Attempt:
    """A retrying() loop whose block reports (or raises) the next outcome;
    returns the last attempt."""
    async for attempt in attempts:
        with attempt:
            if seen is not None:
                seen.append(anyio.current_time())
            outcome = outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            assert attempt.set_result(outcome) is outcome
    return attempt
