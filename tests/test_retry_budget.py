"""anyway.RetryBudget, alone and under retry() / retrying()."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

from anyway import (
    Backoff,
    PolicyEvent,
    RetryBudget,
    RetryGaveUp,
    RetryScheduled,
    retry,
)
from anyway.testing import Clock, backends
from retry_support import (
    Fatal,
    Flaky,
    Results,
    Transient,
    record_events,
    run_block,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = pytest.fixture(name="events")(record_events)


# --- the retry budget ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ratio": -0.1}, ValueError, r"ratio must be >= 0, got -0.1; retries allowed per call"),
        ({"ratio": math.inf}, ValueError, r"ratio must be finite"),
        ({"min_per_second": -1}, ValueError, r"min_per_second must be >= 0"),
        ({"window": 0}, ValueError, r"window must be >= 0.001, got 0"),
        ({"window": True}, TypeError, r"window must be a number, got True"),
        ({"ratio": 0, "min_per_second": 0}, ValueError, r"would never allow a retry"),
    ],
)
def test_budget_validation(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_budget_repr_and_options() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=1, window=5)
    assert repr(budget) == (
        "<RetryBudget ratio=0.2 min_per_second=1 window=5 balance=5 calls=0 retries=0>"
    )
    assert (budget.ratio, budget.min_per_second, budget.window) == (0.2, 1.0, 5.0)
    budget.refund()  # nothing to refund yet: harmless
    assert not hasattr(budget, "__dict__")


async def test_budget_caps_retries_under_a_flood(clock: Clock, events: list[PolicyEvent]) -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0, window=10)
    policy = retry(on=Transient, attempts=3, budget=budget, backoff=Backoff(initial=0, max=0))
    flakies = [Flaky(*[Transient(i) for i in range(3)]) for _ in range(50)]

    async def call(flaky: Flaky) -> None:
        with pytest.raises(Transient):
            await policy.call(flaky)

    async with anyio.create_task_group() as tg:
        for flaky in flakies:
            tg.start_soon(call, flaky)
    # 50 calls deposit 5 retries; 100 were wanted
    assert sum(len(f.calls) for f in flakies) == 55
    assert sum(isinstance(e, RetryScheduled) for e in events) == 5
    give_ups = [e for e in events if isinstance(e, RetryGaveUp)]
    assert len(give_ups) == 50
    exhausted = [e for e in give_ups if e.reason.startswith("retry budget exhausted (<RetryBudget")]
    assert len(exhausted) >= 50 - 2  # at most two calls used up their 3 attempts
    assert budget.balance == pytest.approx(0, abs=1e-9)
    assert "calls=50 retries=5" in repr(budget)


def test_a_budget_used_from_a_new_event_loop_starts_afresh_there() -> None:
    # issue 18: asyncio's clock runs on from one anyio.run to the next, so the
    # first run's withdrawals used to exhaust the budget of the second run too.
    budget = RetryBudget(ratio=0, min_per_second=0.5, window=10)  # reserve: 5 retries
    policy = retry(on=Transient, attempts=2, budget=budget, backoff=Backoff(initial=0, max=0))

    async def exhaust() -> None:
        assert budget.balance == pytest.approx(5)
        assert all(budget.try_withdraw() for _ in range(4))
        flaky = Flaky(Transient(), Transient())
        with pytest.raises(Transient):
            await policy.call(flaky)  # the last retry the budget pays for
        assert len(flaky.calls) == 2
        assert not budget.try_withdraw()

    for backend, options in [*backends(), *backends()]:  # each loop after the others
        anyio.run(exhaust, backend=backend, backend_options=options)


async def test_budget_floor_and_window(clock: Clock) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.25, window=4)  # reserve: 1 retry
    assert budget.balance == pytest.approx(1)
    budget.deposit()
    budget.deposit()
    assert budget.balance == pytest.approx(2)
    assert budget.try_withdraw()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    await anyio.sleep(1.5)  # within the window: nothing expired yet
    assert not budget.try_withdraw()
    await anyio.sleep(3.5)  # past the window: deposits and withdrawals expired
    assert budget.balance == pytest.approx(1)
    budget.deposit()
    assert budget.balance == pytest.approx(1.5)


async def test_budget_slices_expire_one_by_one(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.0001, window=5)  # slices of 0.5 s
    budget.deposit()  # at 0: expires at 5
    await anyio.sleep(2)
    assert budget.balance == pytest.approx(1.0005)  # reading the balance reads the clock
    budget.deposit()  # at 2: expires at 7
    assert budget.balance == pytest.approx(2.0005)
    await anyio.sleep(4)  # at 6: the first deposit expired, the second not
    assert budget.balance == pytest.approx(1.0005)


async def test_budget_refunds_a_cancelled_wait(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)  # reserve: 1
    policy = retry(on=Transient, budget=budget, backoff=Backoff(initial=5, max=5, jitter=None))
    async with anyio.create_task_group() as tg:
        tg.start_soon(policy.call, Flaky(Transient()))
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)  # withdrawn for the wait
        tg.cancel_scope.cancel()
    assert budget.balance == pytest.approx(2)  # 1 deposit + reserve; the withdrawal refunded


async def test_budget_refunds_when_a_hook_fails() -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)

    def hook(event: PolicyEvent) -> None:
        raise RuntimeError("hook bug")

    with pytest.raises(RuntimeError):
        await retry(on=Transient, budget=budget, hooks=hook).call(Flaky(Transient()))
    assert budget.balance == pytest.approx(2)


async def test_the_clock_can_go_back_for_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)
    now = [100.0]
    monkeypatch.setattr(anyio, "current_time", lambda: now[0])
    budget.deposit()
    now[0] = 50.0  # another loop's clock: start over rather than misplace slices
    assert budget.balance == pytest.approx(1)


# --- retrying() blocks -----------------------------------------------------------------------------


async def test_retrying_with_a_budget_and_a_policy() -> None:
    budget = RetryBudget(ratio=0, min_per_second=0.1, window=10)  # one retry
    policy = retry(on=Transient, budget=budget, backoff=Backoff(initial=0, max=0))
    with pytest.raises(Transient) as info:
        await run_block(policy.retrying(name="loop"))
    assert "retry budget exhausted" in info.value.__notes__[0]
    assert info.value.__notes__[0].startswith("gave up after 2 attempts")


# --- odds and ends ------------------------------------------------------------------------------------


async def test_the_decorator_with_a_budget_and_a_result_check() -> None:
    budget = RetryBudget()
    results = Results(200)

    @retry(on=Transient, budget=budget, retry_if_result=lambda r: r == 503)
    async def fetch(fail: bool) -> object:
        if fail:
            raise Fatal("not retried")
        return await results()

    assert await fetch(False) == 200
    with pytest.raises(Fatal):
        await fetch(True)
    assert "calls=2 retries=0" in repr(budget)
    assert await retry(on=Transient, retry_if_result=lambda r: False).call(Results(1)) == 1


async def test_retrying_refunds_the_budget_when_cancelled_in_a_wait(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)
    policy = retry(on=Transient, budget=budget, backoff=Backoff(initial=5, max=5, jitter=None))

    async def loop() -> None:
        async for attempt in policy.retrying():
            with attempt:
                raise Transient()

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)
        tg.cancel_scope.cancel()
    assert budget.balance == pytest.approx(2)


async def test_budget_deposits_between_clock_readings_only_expire_early(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.2, window=5)  # floor: 1 retry
    budget.deposit()  # reads the clock: slice of t=0
    await anyio.sleep(2)
    for _ in range(15):  # no clock reading: counted in the slice of t=0
        budget.deposit()
    assert budget.balance == pytest.approx(17)
    budget.deposit()  # the 17th reads the clock again: slice of t=2
    await anyio.sleep(4)  # t=6: the slice of t=0 expired, the one of t=2 not
    assert budget.balance == pytest.approx(2)


# --- audit: a refund gives back exactly what was withdrawn ---------------------------------------


@pytest.mark.parametrize("how", ["call", "retrying"])
async def test_budget_refund_after_the_withdrawal_expired_adds_nothing(
    clock: Clock, how: str
) -> None:
    # The wait outlives the window: by the time it is cancelled, the call's
    # deposit and the wait's withdrawal have both expired. Refunding must not
    # then credit a retry that was never paid for in the current window.
    budget = RetryBudget(ratio=1, min_per_second=0.25, window=4)  # reserve: 1, slices of 0.4 s
    policy = retry(
        on=Transient, budget=budget, timeout=None, backoff=Backoff(initial=6, max=6, jitter=None)
    )

    async def block() -> None:
        async for attempt in policy.retrying():
            with attempt:
                raise Transient()

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            policy.call if how == "call" else block,
            *([Flaky(Transient())] if how == "call" else []),
        )
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)  # 1 reserve + 1 deposit - 1 withdrawal
        await anyio.sleep(4)  # at 5: both expired (at 3.6 to 4)
        assert budget.balance == pytest.approx(1)  # the reserve
        tg.cancel_scope.cancel()
    assert budget.balance == pytest.approx(1)  # still the reserve, not 2


async def test_budget_refund_goes_to_the_slice_of_the_withdrawal(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.25, window=4)  # reserve: 1, slices of 0.4 s
    policy = retry(
        on=Transient, budget=budget, timeout=None, backoff=Backoff(initial=5, max=5, jitter=None)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(policy.call, Flaky(Transient()))  # deposit + withdrawal at 0
        await anyio.sleep(2)
        assert budget.balance == pytest.approx(1)  # (reading it reads the clock)
        budget.deposit()  # at 2: expires at 5.6 to 6
        tg.cancel_scope.cancel()  # refund the withdrawal made at 0
    assert budget.balance == pytest.approx(3)  # reserve + 2 deposits
    await anyio.sleep(3)  # at 5: the deposit and withdrawal made at 0 expired together
    assert budget.balance == pytest.approx(2)  # reserve + the deposit made at 2


# --- audit: Retry.call refuses what cannot be awaited, and never retries it ---------------------


async def test_budget_public_refund_gives_back_the_latest_live_withdrawal(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.25, window=4)  # reserve: 1, slices of 0.4 s
    budget.deposit()
    assert budget.try_withdraw()  # at 0
    await anyio.sleep(1)
    assert budget.try_withdraw()  # at 1
    assert budget.balance == pytest.approx(0)
    budget.refund()  # the one made at 1
    budget.refund()  # then the one made at 0
    assert budget.balance == pytest.approx(2)
    budget.refund()  # nothing left to give back: no credit out of thin air
    assert budget.balance == pytest.approx(2)
    assert budget.try_withdraw()  # at 1
    await anyio.sleep(5)  # at 6: everything expired (by 5)
    budget.refund()
    assert budget.balance == pytest.approx(1)  # the reserve only


async def test_withdraw_gives_a_receipt_that_refund_honours() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0)  # one retry in reserve
    receipt = budget.withdraw()
    assert receipt is not None
    assert budget.withdraw() is None  # exhausted
    budget.refund(receipt)
    assert budget.withdraw() is not None  # the refunded retry is available again
