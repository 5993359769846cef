"""The exceptions anyway raises. All are re-exported from :mod:`anyway`."""

from __future__ import annotations

__all__ = [
    "BulkheadFull",
    "CircuitOpen",
    "DeadlineExceeded",
    "RateLimitExceeded",
    "Rejected",
]


class DeadlineExceeded(TimeoutError):
    """A deadline set by :func:`anyway.deadline`, :class:`anyway.Budget` and
    friends expired. A :class:`TimeoutError`, so ``except TimeoutError`` works.

    ``seconds`` is the budget the deadline was given (``None`` when it was an
    absolute time).
    """

    def __init__(self, message: str | None = None, *, seconds: float | None = None) -> None:
        if message is None:
            message = (
                "deadline exceeded" if seconds is None else f"deadline of {seconds:g} s exceeded"
            )
        super().__init__(message)
        self.seconds = seconds

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_deadline_exceeded, (str(self), self.seconds))


def _rebuild_deadline_exceeded(message: str, seconds: float | None) -> DeadlineExceeded:
    return DeadlineExceeded(message, seconds=seconds)


class Rejected(Exception):
    """A call was refused without being run (circuit open, bulkhead full, rate
    limit that cannot be met in time). Retrying it later may succeed.

    ``retry_after`` is the number of seconds after which trying again may
    succeed, or ``None`` when unknown.
    """

    _default_message = "call rejected"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        if message is None:
            message = self._default_message
            if retry_after is not None:
                message += f"; retry after {retry_after:g} s"
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), self.__dict__.copy()))


def _rebuild(cls: type[Rejected], message: str, state: dict[str, object]) -> Rejected:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class CircuitOpen(Rejected):
    """The circuit breaker is open (or half-open with every probe slot taken):
    the call was not run. ``name`` is the breaker's name.

    ``retry_after`` is the number of seconds until the breaker lets a probe
    through, while the circuit is open after a trip (or after
    ``breaker.open(seconds=...)``). It is ``None`` when no such time exists:

    * **half-open, every probe slot taken**: the next call may be let through
      as soon as a probe ends, at once if the probes close the circuit, or
      after a fresh ``recovery_time`` if one fails, and a probe may run for
      any time;
    * **held open** by ``breaker.open()`` without ``seconds``: until an
      operator calls ``close()`` or ``reset()``.

    ``None`` means "unknown: use your own backoff", never "now" nor "never".
    """

    _default_message = "circuit open"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        name: str | None = None,
    ) -> None:
        if message is None and name is not None:
            message = f"circuit {name!r} is open"
            if retry_after is not None:
                message += f"; retry after {retry_after:g} s"
        super().__init__(message, retry_after=retry_after)
        self.name = name


class BulkheadFull(Rejected):
    """Every slot of a :class:`anyway.Bulkhead` is busy and its queue is full."""

    _default_message = "bulkhead full"


class RateLimitExceeded(Rejected):
    """A rate limiter cannot grant the request within the given ``timeout``;
    ``retry_after`` is how long the caller would have had to wait."""

    _default_message = "rate limit exceeded"
