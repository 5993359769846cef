"""``RetryBudget``: a budget of retries shared by the callers of a
dependency, so that a failing dependency cannot turn into a retry storm."""

from __future__ import annotations

from typing import Final

import anyio

from ._retry_notes import secs
from ._util import current_run
from ._validate import check_number

__all__ = ["RetryBudget"]

#: A RetryBudget reads the clock once every this many deposits.
_DEPOSITS_PER_CLOCK_READ: Final = 16
#: The shortest window: its time slices (a tenth) must stay numbers of
#: clock time (a subnormal window made every call raise OverflowError).
_MIN_WINDOW: Final = 0.001


class RetryBudget:
    """A budget of retries shared by many calls, so that a failing dependency
    cannot turn into a retry storm (Finagle's ``RetryBudget``).

    Every call that a policy with ``budget=`` starts *deposits* ``ratio``
    retries; every retry *withdraws* one. On top of that a floor of
    ``min_per_second`` retries per second is always allowed (so that a
    service with little traffic can still retry). Deposits and withdrawals
    expire after about ``window`` seconds. When the budget cannot pay for a
    retry, the policy gives up at once and the error gets the note
    ``retry budget exhausted``.

    With the defaults, retries add at most 10 % to the calls of the last
    10 seconds, plus 10 per second.

    Share one budget between all the policies that call the same dependency,
    within one event loop; time comes from :func:`anyio.current_time`. Used
    from a new event loop (a later :func:`anyio.run`), a budget starts afresh
    there, as if newly created (its calls and retries were another loop's),
    except that the new loop's first calls, up to 15, made before the budget
    first reads the clock there may go uncounted (the safe side: never a
    retry paid for by another loop's calls).
    Memory is constant (ten time slices). On the success path a budget adds
    about 0.1 us per call (it reads the clock once every 16 calls).
    """

    __slots__ = (
        "_calls",
        "_countdown",
        "_epoch",
        "_index",
        "_min_per_second",
        "_ratio",
        "_reserve",
        "_retries",
        "_run",
        "_slice",
        "_window",
    )

    _SLICES: Final = 10

    def __init__(
        self, *, ratio: float = 0.1, min_per_second: float = 10.0, window: float = 10.0
    ) -> None:
        self._ratio = check_number(
            "ratio", ratio, hint="; retries allowed per call, e.g. 0.1 for 10 %"
        )
        self._min_per_second = check_number(
            "min_per_second",
            min_per_second,
            hint="; retries per second always allowed, e.g. 10",
        )
        self._window = check_number(
            "window",
            window,
            minimum=_MIN_WINDOW,
            hint="; how many seconds deposits and withdrawals count, e.g. 10",
        )
        if self._ratio == 0 and self._min_per_second == 0:
            raise ValueError(
                "ratio=0 and min_per_second=0 would never allow a retry; raise one of them"
                " (or use attempts=1 to disable retries)"
            )
        self._reserve = self._min_per_second * self._window
        self._slice = self._window / self._SLICES
        self._calls = [0] * self._SLICES
        self._retries = [0] * self._SLICES
        self._epoch: int | None = None  # the time slice of the last clock reading
        self._index = 0  # its index in the lists
        self._countdown = 0  # deposits left before the next clock reading
        self._run: object = None  # the event loop run (anyio.run) the slices belong to

    def __repr__(self) -> str:
        return (
            f"<RetryBudget ratio={secs(self._ratio)} min_per_second={secs(self._min_per_second)}"
            f" window={secs(self._window)} balance={secs(self._available())}"
            f" calls={sum(self._calls)} retries={sum(self._retries)}>"
        )

    @property
    def ratio(self) -> float:
        """Retries allowed per call."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Retries per second allowed whatever the traffic."""
        return self._min_per_second

    @property
    def window(self) -> float:
        """Seconds after which deposits and withdrawals expire."""
        return self._window

    @property
    def balance(self) -> float:
        """How many retries the budget can pay for now (read it in the event loop)."""
        self._now()
        return max(0.0, self._available())

    def deposit(self) -> None:
        """Record a call (policies do it for you at the start of each call).

        To keep the success path cheap the clock is read once every
        16 deposits; the others count in the slice of the last reading, which
        can only make them expire early (the safe side)."""
        countdown = self._countdown
        if countdown:
            self._countdown = countdown - 1
            self._calls[self._index] += 1
        else:
            self._countdown = _DEPOSITS_PER_CLOCK_READ - 1
            self._calls[self._now()] += 1

    def try_withdraw(self) -> bool:
        """Pay for one retry if the budget allows it; ``False`` if exhausted."""
        return self._withdraw() is not None

    def withdraw(self) -> int | None:
        """Pay for one retry: a receipt for :meth:`refund`, or ``None`` if the
        budget is exhausted (what a retry loop of your own would call)."""
        return self._withdraw()

    def refund(self, receipt: int | None = None) -> None:
        """Give back a withdrawal whose retry did not happen (e.g. cancelled
        wait): the one *receipt* names (if it has not expired yet), or without
        one the most recent one that has not expired yet, if any."""
        if receipt is not None:
            self._refund(receipt)
            return
        if self._epoch is None:
            return
        self._now()
        epoch = self._epoch
        assert epoch is not None
        for e in range(epoch, epoch - self._SLICES, -1):
            if self._refund(e):
                return

    def _withdraw(self) -> int | None:
        """Pay for one retry: the time slice it was counted in (for
        :meth:`_refund`), or ``None`` if the budget is exhausted."""
        index = self._now()
        if self._available() < 1.0 - 1e-9:
            return None
        self._retries[index] += 1
        return self._epoch

    def _refund(self, epoch: int) -> bool:
        """Give back a withdrawal counted in the time slice *epoch*, unless it
        has expired already (then it no longer counts, and crediting it would
        allow a retry that was never paid for). Whether anything was given back."""
        self._now()
        current = self._epoch
        assert current is not None
        if not 0 <= current - epoch < self._SLICES:
            return False
        index = epoch % self._SLICES
        if self._retries[index] <= 0:
            return False
        self._retries[index] -= 1
        return True

    def _available(self) -> float:
        return self._reserve + self._ratio * sum(self._calls) - sum(self._retries)

    def _now(self) -> int:
        """Bring the slices up to the current time; the current slice's index.
        First used in a new event loop run, the budget starts afresh: the
        other run's counts (and its clock, which may be a different one) do
        not belong here."""
        run = current_run()
        if run is not self._run:
            self._run = run
            self._epoch = None  # forget every slice (see _rotate)
        epoch = int(anyio.current_time() // self._slice)
        if epoch != self._epoch:
            self._rotate(epoch)
            self._index = epoch % self._SLICES
        return self._index

    def _rotate(self, epoch: int) -> None:
        last = self._epoch
        if last is None or epoch < last or epoch - last >= self._SLICES:
            for i in range(self._SLICES):
                self._calls[i] = self._retries[i] = 0
        else:
            for e in range(last + 1, epoch + 1):
                i = e % self._SLICES
                self._calls[i] = self._retries[i] = 0
        self._epoch = epoch
