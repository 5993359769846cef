"""Capped exponential backoff with the jitters of the AWS Architecture Blog
post "Exponential Backoff And Jitter" (Marc Brooker, 2015).

With ``temp = min(max, initial * multiplier ** n)`` for the ``n``-th wait
(``n = 0`` for the wait after the first failure):

* ``None`` (no jitter): ``temp``;
* ``"full"``: ``uniform(0, temp)``;
* ``"equal"``: ``temp / 2 + uniform(0, temp / 2)``;
* ``"decorrelated"``: ``min(max, uniform(initial, previous * 3))``, where
  ``previous`` is the wait before (``initial`` at first).

Once ``temp`` has reached ``max`` the jittered waits stay random (peers such
as tenacity and stamina add their jitter *before* capping, so at the cap every
client waits exactly ``max`` again and they retry in lockstep).
"""

from __future__ import annotations

import inspect
import math
import random as _rnd
from collections.abc import Callable, Iterator
from typing import Final, Literal, TypeAlias

from ._util import short_repr
from ._validate import check_number, check_seconds

__all__ = ["Backoff", "Jitter", "random_wait"]

Jitter: TypeAlias = Literal["full", "equal", "decorrelated"] | None

_JITTERS: Final = ("full", "equal", "decorrelated", None)
#: The decorrelated jitter's growth factor, as in the post.
_DECORRELATED_FACTOR: Final = 3.0


def _fmt(value: float) -> str:
    return repr(value) if value != int(value) else repr(int(value))


def _checked_uniform(
    uniform: Callable[[float, float], object], source: object
) -> Callable[[float, float], float]:
    """A user's ``uniform(a, b)``, checked: a NaN, negative or infinite wait
    would only fail later, in ``anyio.sleep``, far from its cause; one outside
    ``[a, b]`` would silently wait the wrong time."""

    def checked(low: float, high: float) -> float:
        value = uniform(low, high)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # (random.uniform may round to a hair past an end)
            slack = 1e-9 * max(1.0, abs(low), abs(high))
            if low - slack <= value <= high + slack and 0.0 <= value < math.inf:
                return value
        raise ValueError(
            f"random={short_repr(source, 60)} returned {short_repr(value, 60)} from"
            f" uniform({low!r}, {high!r}); it must return a finite number between its"
            " arguments, as random.Random(seed).uniform does"
        )

    return checked


def _uniform_of(random: object) -> Callable[[float, float], float]:
    """The checked ``uniform(a, b)`` of a ``random=`` argument (``None``: the
    module's own generator)."""
    if random is None:
        return _rnd.uniform
    candidate: object = getattr(random, "uniform", None)
    if not callable(candidate) or inspect.isclass(random):
        raise TypeError(
            "random must be a random.Random instance (e.g. random.Random(42)) or an"
            f" object with a uniform(a, b) method, got {random!r}"
        )
    return _checked_uniform(candidate, random)


class Backoff:
    """How long to wait before each retry: capped exponential growth plus jitter.

    The ``n``-th wait (``n = 0`` after the first failure) is drawn from
    ``temp = min(max, initial * multiplier ** n)`` as the AWS Architecture
    Blog post "Exponential Backoff And Jitter" (2015) defines it:

    ``jitter=None``
        ``temp``: exactly ``initial``, ``initial * multiplier``, ... up to
        ``max``. Clients that failed together retry together: use it only in
        tests or when a single client retries.
    ``jitter="full"`` (the default)
        ``uniform(0, temp)``: the least total work when many clients contend.
    ``jitter="equal"``
        ``temp / 2 + uniform(0, temp / 2)``: never less than half of ``temp``.
    ``jitter="decorrelated"``
        ``min(max, uniform(initial, 3 * previous))``, with ``previous`` the
        wait before (``initial`` for the first). ``multiplier`` does not apply:
        the growth factor is the post's ``3``.

    At the cap the waits stay random (``uniform(0, max)`` for full jitter,
    ``[max / 2, max]`` for equal jitter), unlike jitter that is added before
    capping and so vanishes there.

    *random* is the source of randomness: a :class:`random.Random` (or any
    object with a ``uniform(a, b)`` method), e.g. ``random.Random(42)`` for
    reproducible waits; the default is the :mod:`random` module's shared
    generator. A ``Backoff`` holds no per-call state and can be shared by any
    number of concurrent calls: each call gets its own sequence from
    :meth:`delays`.

    All times are in seconds; *initial* and *max* may be ``0`` (no wait).
    An *initial* above *max* is capped like every wait: ``Backoff(initial=1,
    max=0)`` never waits (stamina's ``wait_max=0``, common in tests).
    """

    __slots__ = ("_initial", "_jitter", "_max", "_multiplier", "_random", "_uniform")

    _initial: float
    _max: float
    _multiplier: float
    _jitter: Jitter
    _random: object
    _uniform: Callable[[float, float], float]

    def __init__(
        self,
        *,
        initial: float = 0.1,
        max: float = 10.0,
        multiplier: float = 2.0,
        jitter: Jitter = "full",
        random: _rnd.Random | None = None,
    ) -> None:
        initial = check_seconds("initial", initial, hint="; the first wait in seconds, e.g. 0.1")
        cap = check_seconds(
            "max",
            max,
            hint="; the longest wait in seconds (an unbounded wait is never what you want)",
        )
        multiplier = check_number(
            "multiplier",
            multiplier,
            minimum=1.0,
            hint="; waits must not shrink (use 1 for a constant wait, 2 to double)",
        )
        if jitter not in _JITTERS or isinstance(jitter, bool):
            if not isinstance(jitter, str):
                raise TypeError(
                    f"jitter must be 'full', 'equal', 'decorrelated' or None, got {jitter!r}"
                    f" ({type(jitter).__name__})"
                )
            raise ValueError(
                f"jitter must be 'full', 'equal', 'decorrelated' or None, got {jitter!r}"
            )
        uniform = _uniform_of(random)
        object.__setattr__(self, "_initial", initial)
        object.__setattr__(self, "_max", cap)
        object.__setattr__(self, "_multiplier", multiplier)
        object.__setattr__(self, "_jitter", jitter)
        object.__setattr__(self, "_random", random)
        object.__setattr__(self, "_uniform", uniform)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"Backoff objects are immutable (they are shared by concurrent calls); create a"
            f" new Backoff instead of setting {name!r}"
        )

    def __repr__(self) -> str:
        random = "" if self._random is None else f", random={self._random!r}"
        return (
            f"Backoff(initial={_fmt(self._initial)}, max={_fmt(self._max)},"
            f" multiplier={_fmt(self._multiplier)}, jitter={self._jitter!r}{random})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backoff):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        return (self._initial, self._max, self._multiplier, self._jitter, id(self._random))

    @property
    def initial(self) -> float:
        """The first wait (before jitter), in seconds."""
        return self._initial

    @property
    def max(self) -> float:
        """The longest wait, in seconds."""
        return self._max

    @property
    def multiplier(self) -> float:
        """How much the un-jittered wait grows after each retry."""
        return self._multiplier

    @property
    def jitter(self) -> Jitter:
        """``"full"``, ``"equal"``, ``"decorrelated"`` or ``None``."""
        return self._jitter

    def ceiling(self, n: int) -> float:
        """The un-jittered wait ``min(max, initial * multiplier ** n)`` for the
        ``n``-th wait (``n = 0`` after the first failure): the exact wait with
        ``jitter=None``, the upper bound with full and equal jitter."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        if self._initial == 0:
            return 0.0  # (0 * an overflowing power is still no wait)
        try:
            temp = self._initial * self._multiplier**n
        except OverflowError:
            return self._max
        return min(self._max, temp)

    def delay(self, n: int, *, previous: float | None = None) -> float:
        """One draw of the ``n``-th wait (``n = 0`` after the first failure).

        Decorrelated jitter depends on the wait before instead of on ``n``:
        pass it as *previous* (default ``initial``, which gives the first
        wait). To draw a whole sequence, use :meth:`delays`.
        """
        if self._jitter == "decorrelated":
            prev = self._initial if previous is None else previous
            return min(self._max, self._uniform(self._initial, prev * _DECORRELATED_FACTOR))
        return self._jitter_of(self.ceiling(n))

    def _jitter_of(self, temp: float) -> float:
        jitter = self._jitter
        if jitter is None:
            return temp
        if jitter == "full":
            return self._uniform(0.0, temp)
        half = temp / 2
        # min(): with a subnormal temp, temp / 2 rounds up and the sum could
        # pass temp (and max) by one unit in the last place.
        return min(temp, half + self._uniform(0.0, half))

    def delays(self) -> Iterator[float]:
        """A fresh, endless iterator of waits for one call: the state that
        decorrelated jitter needs lives in the iterator, never in the shared
        ``Backoff``."""
        if self._jitter == "decorrelated":
            return self._decorrelated()
        return self._exponential()

    def _exponential(self) -> Iterator[float]:
        # The same temp as ceiling(n) (not a running product, which rounds
        # differently), so that delays() and ceiling() always agree.
        cap = self._max
        ceiling = self.ceiling
        jitter_of = self._jitter_of
        n = 0
        while True:
            temp = ceiling(n)
            yield jitter_of(temp)
            if temp < cap:
                n += 1

    def _decorrelated(self) -> Iterator[float]:
        base = self._initial
        cap = self._max
        uniform = self._uniform
        sleep = base
        while True:
            sleep = min(cap, uniform(base, sleep * _DECORRELATED_FACTOR))
            yield sleep


class _RandomWait:
    """What :func:`random_wait` returns: a ``wait=`` function."""

    __slots__ = ("_high", "_low", "_random", "_uniform")

    def __init__(self, low: float, high: float, random: object, uniform: Callable[..., float]):
        self._low = low
        self._high = high
        self._random = random
        self._uniform = uniform

    def __call__(self, attempt: int, exc: BaseException | None, /) -> float:
        return self._uniform(self._low, self._high)

    def __repr__(self) -> str:
        random = "" if self._random is None else f", random={self._random!r}"
        return f"random_wait({_fmt(self._low)}, {_fmt(self._high)}{random})"


def random_wait(
    min: float, max: float, *, random: _rnd.Random | None = None
) -> Callable[[int, BaseException | None], float]:
    """A ``wait=`` function for :func:`anyway.retry`: each wait is drawn
    uniformly between *min* and *max* seconds, whatever the attempt
    (tenacity's ``wait_random(min, max)``)::

        @anyway.retry(on=OSError, wait=anyway.random_wait(0.5, 2.0))
        async def connect() -> None: ...

    Unlike :class:`Backoff` the waits do not grow; prefer a ``Backoff`` when
    many clients may fail together (its full jitter spreads them better as
    the waits grow). *random* is the source of randomness, as for
    :class:`Backoff` (e.g. ``random.Random(42)`` for reproducible waits).
    """
    low = check_seconds("min", min, hint="; the shortest wait in seconds, e.g. 0.5")
    high = check_seconds("max", max, hint="; the longest wait in seconds, e.g. 2.0")
    if high < low:
        raise ValueError(
            f"max must be >= min, got min={min!r} and max={max!r}; swap them, or use"
            " min=max for a constant wait"
        )
    uniform = _uniform_of(random)
    return _RandomWait(low, high, random, uniform)
