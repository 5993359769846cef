"""anyway.retrying / Attempt: retrying a block, on every backend."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from anyway import (
    Attempt,
    Backoff,
    PolicyEvent,
    Retry,
    RetryBudget,
    RetryGaveUp,
    RetryScheduled,
    TryAgain,
    retry,
    retrying,
)
from anyway.testing import Clock, no_backoff
from retry_support import (
    EXACT,
    Fatal,
    Results,
    RetryAfter,
    Transient,
    honour_retry_after,
    judged_block,
    note_numbers,
    offsets,
    record_events,
    run_block,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

events = pytest.fixture(name="events")(record_events)


# --- retrying() blocks -----------------------------------------------------------------------------


async def test_retrying_succeeds_after_failures(clock: Clock) -> None:
    seen: list[tuple[int, float, float]] = []
    t0 = clock.now()
    async for attempt in retrying(on=Transient, backoff=EXACT):
        with attempt:
            seen.append((attempt.num, attempt.next_wait, clock.now() - t0))
            if attempt.num < 3:
                raise Transient(attempt.num)
    assert seen == [(1, 1.0, clock.approx(0)), (2, 2.0, clock.approx(1)), (3, 4.0, clock.approx(3))]


async def test_next_wait_is_the_wait_that_is_used(clock: Clock) -> None:
    backoff = Backoff(initial=1, max=4, jitter="full", random=random.Random(3))
    previous = clock.now()
    promised: list[float] = []
    waited: list[float] = []
    async for attempt in retrying(on=Transient, backoff=backoff):
        with attempt:
            now = clock.now()
            if promised:
                waited.append(now - previous)
            previous = now
            promised.append(attempt.next_wait)
            if attempt.num < 4:
                raise Transient()
    assert waited == [clock.approx(x) for x in promised[:3]]
    assert len(set(promised)) == 4


async def test_attempt_repr_and_slots() -> None:
    async for attempt in retrying(on=Transient, backoff=Backoff(initial=0.4, max=1, jitter=None)):
        with attempt as entered:
            assert entered is attempt
            assert isinstance(attempt, Attempt)
            assert (
                repr(attempt)
                == f"<Attempt num={attempt.num} next_wait={0.4 * 2 ** (attempt.num - 1):g}>"
            )
            assert not hasattr(attempt, "__dict__")
            assert attempt.next_wait == 0.4 * 2 ** (attempt.num - 1)  # drawn once, kept
            if attempt.num == 1:
                raise Transient()
    with no_backoff():
        async for attempt in retrying(on=Transient):
            with attempt:
                assert repr(attempt) == "<Attempt num=1 next_wait=0>"


async def test_retrying_gives_up_with_the_notes(clock: Clock, events: list[PolicyEvent]) -> None:
    raised: list[Transient] = []
    iterator = retrying(on=Transient, attempts=3, backoff=EXACT, name="block")

    def body(attempt: Attempt) -> None:
        raised.append(Transient(attempt.num))
        raise raised[-1]

    with pytest.raises(Transient) as info:
        await run_block(iterator, body)
    assert info.value is raised[-1]
    assert info.value.__notes__[0].startswith("gave up after 3 attempts in ")
    assert info.value.__notes__[1] == "earlier attempts: #1 Transient(1); #2 Transient(2)"
    assert [e.policy for e in events] == ["block", "block", "block"]
    assert "state=done" in repr(iterator)
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()


async def test_retrying_lets_other_errors_through(clock: Clock) -> None:
    def fatal(attempt: Attempt) -> None:
        raise Fatal("bad")

    def transient_then_fatal(attempt: Attempt) -> None:
        raise Transient() if attempt.num == 1 else Fatal("bad")

    with pytest.raises(Fatal) as info:
        await run_block(retrying(on=Transient, backoff=EXACT), fatal)
    assert not hasattr(info.value, "__notes__")
    with pytest.raises(Fatal) as info:
        await run_block(retrying(on=Transient, backoff=EXACT), transient_then_fatal)
    assert info.value.__notes__[0].endswith("Fatal is not retried (on=Transient)")


async def test_retrying_never_retries_cancellation(clock: Clock) -> None:
    attempts = 0
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        async for attempt in retrying(on=BaseException):
            with attempt:
                attempts += 1
                await anyio.sleep(10)
    assert scope.cancelled_caught
    assert attempts == 1
    assert clock.now() - t0 == clock.approx(1)


async def test_retrying_cancelled_in_a_wait(clock: Clock) -> None:
    attempts = 0
    t0 = clock.now()

    async def loop() -> None:
        nonlocal attempts
        async for attempt in retrying(
            on=BaseException, backoff=Backoff(initial=5, max=5, jitter=None)
        ):
            with attempt:
                attempts += 1
                raise Transient()

    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await anyio.sleep(1)
        tg.cancel_scope.cancel()
    assert attempts == 1
    assert clock.now() - t0 == clock.approx(1)


async def test_retrying_is_deadline_aware(clock: Clock) -> None:
    with pytest.raises(Transient) as info, anyio.fail_after(2.5):
        await run_block(retrying(on=Transient, backoff=EXACT))
    assert "would cross the caller's deadline" in info.value.__notes__[0]


async def test_retrying_needs_with_attempt() -> None:
    iterator = retrying(on=Transient)
    await iterator.__anext__()
    with pytest.raises(RuntimeError, match="must run its code in 'with attempt:'"):
        await iterator.__anext__()


async def test_a_stale_attempt_changes_nothing() -> None:
    iterator = retrying(on=Transient, backoff=Backoff(initial=0, max=0))
    first = await iterator.__anext__()
    with first:
        raise Transient()
    second = await iterator.__anext__()
    with pytest.raises(Transient), first:  # the old one does not swallow errors any more
        raise Transient()
    with second:
        pass
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()


# --- retrying() with retry_if_result: the block reports its result ---------------------------


async def test_retrying_retry_if_result_retries_until_accepted(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    seen: list[float] = []
    t0 = clock.now()
    outcomes: list[object] = [503, 503, 200]
    loop = retrying(on=Transient, retry_if_result=lambda r: r == 503, backoff=EXACT, name="blk")
    last = await judged_block(loop, outcomes, seen)
    assert (last.num, last.result) == (3, 200)
    assert offsets(seen) == [clock.approx(x) for x in (0, 1, 3)]
    assert clock.now() - t0 == clock.approx(3)
    assert [(type(e), e.attempt, e.delay, e.result, e.error) for e in events] == [  # type: ignore[attr-defined]
        (RetryScheduled, 1, 1.0, 503, None),
        (RetryScheduled, 2, 2.0, 503, None),
    ]
    assert not outcomes
    with pytest.raises(StopAsyncIteration):
        await loop.__anext__()


async def test_retrying_gives_up_on_a_rejected_result_like_retry(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    # The same rejected results through retry().call and through retrying():
    # same waits, same events; the loop ends without an error and the last
    # (rejected) result stays on the attempt, as call() returns it.
    def policy() -> Retry:
        return retry(on=Transient, attempts=3, retry_if_result=lambda r: r >= 500, backoff=EXACT)

    def steps(events: list[PolicyEvent]) -> list[tuple[str, int, object]]:
        return [
            ("retry", e.attempt, e.result)
            if isinstance(e, RetryScheduled)
            else ("gave up", e.attempts, e.result)
            for e in events
            if isinstance(e, (RetryScheduled, RetryGaveUp))
        ]

    t0 = clock.now()
    assert await policy().call(Results(503, 502, 504)) == 504
    assert clock.now() - t0 == clock.approx(3)
    by_call = steps(events)
    events.clear()

    t0 = clock.now()
    loop = policy().retrying()
    last = await judged_block(loop, [503, 502, 504])
    assert clock.now() - t0 == clock.approx(3)
    assert (last.num, last.result) == (3, 504)
    assert steps(events) == by_call == [("retry", 1, 503), ("retry", 2, 502), ("gave up", 3, 504)]
    (gave_up,) = [e for e in events if isinstance(e, RetryGaveUp)]
    assert (gave_up.error, gave_up.reason) == (None, "no attempts left (attempts=3)")
    assert gave_up.elapsed == clock.approx(3)
    assert "state=done" in repr(loop)
    with pytest.raises(StopAsyncIteration):
        await loop.__anext__()


async def test_retrying_a_rejected_result_respects_timeout_and_deadline(
    clock: Clock, events: list[PolicyEvent]
) -> None:
    # timeout=2.5 from the first rejection: waits 1 (to 1), then 2 would end at 3.
    t0 = clock.now()
    loop = retrying(on=Transient, timeout=2.5, retry_if_result=lambda r: True, backoff=EXACT)
    last = await judged_block(loop, ["busy"] * 5)
    assert (last.num, last.result) == (2, "busy")
    assert clock.now() - t0 == clock.approx(1)
    assert events[-1].reason.startswith("waiting 2 s would cross the retry timeout")  # type: ignore[attr-defined]
    # the caller's deadline at 2.5 s: the same stop, at the same time
    t0 = clock.now()
    with anyio.fail_after(2.5):
        last = await judged_block(
            retrying(on=Transient, retry_if_result=lambda r: True, backoff=EXACT), ["busy"] * 5
        )
    assert (last.num, last.result) == (2, "busy")
    assert clock.now() - t0 == clock.approx(1)
    assert "would cross the caller's deadline" in events[-1].reason  # type: ignore[attr-defined]


async def test_retrying_a_result_delay_and_mixed_outcomes(clock: Clock) -> None:
    # Transient (backoff 1), a result asking for 4 s, then an accepted result.
    seen: list[float] = []
    loop = retrying(
        on=Transient,
        backoff=EXACT,
        retry_if_result=lambda r: 4.0 if r == "retry-after-4" else False,
    )
    last = await judged_block(loop, [Transient("down"), "retry-after-4", "fine"], seen)
    assert last.result == "fine"
    assert offsets(seen) == [clock.approx(x) for x in (0, 1, 5)]


async def test_retrying_lists_a_rejected_result_among_earlier_attempts(clock: Clock) -> None:
    loop = retrying(on=Transient, attempts=2, retry_if_result=lambda r: r == "busy", backoff=EXACT)
    with pytest.raises(Transient) as info:
        await judged_block(loop, ["busy", Transient("down")])
    assert note_numbers(
        info.value.__notes__[0], "gave up after 2 attempts in {} s: no attempts left (attempts=2)"
    ) == [clock.approx(1)]
    assert info.value.__notes__[1] == "earlier attempts: #1 rejected result 'busy'"
    # a non-retryable error after a rejected result keeps it listed too
    loop = retrying(on=Transient, retry_if_result=lambda r: r == "busy", backoff=EXACT)
    with pytest.raises(Fatal) as fatal:
        await judged_block(loop, ["busy", Fatal("bad")])
    assert fatal.value.__notes__[1] == "earlier attempts: #1 rejected result 'busy'"


async def test_retrying_judges_only_reported_results(clock: Clock) -> None:
    judged: list[object] = []

    def reject_everything(result: object) -> bool:
        judged.append(result)
        return True

    t0 = clock.now()
    async for attempt in retrying(on=Transient, retry_if_result=reject_everything, backoff=EXACT):
        with attempt:
            pass  # no result reported: not judged, the loop ends
    assert (attempt.num, judged) == (1, [])
    assert clock.now() - t0 == clock.approx(0)
    with pytest.raises(AttributeError, match=r"attempt 1 reported no result: call attempt\.set"):
        attempt.result  # noqa: B018

    def reject_one(result: object) -> bool:
        judged.append(result)
        return result == 1

    # an error after set_result() is what counts: it is retried as an error
    async for attempt in retrying(on=Transient, retry_if_result=reject_one, backoff=EXACT):
        with attempt:
            attempt.result = attempt.num  # the setter is set_result()
            if attempt.num == 1:
                raise Transient()  # 1 would be rejected, but the error counts
            attempt.set_result("second")  # replaces 2
    assert (attempt.num, attempt.result, judged) == (2, "second", ["second"])
    assert clock.now() - t0 == clock.approx(1)


async def test_retrying_keeps_a_result_without_retry_if_result() -> None:
    async for attempt in retrying(on=Transient):
        with attempt:
            attempt.set_result([1, 2])
    assert attempt.result == [1, 2]
    assert repr(attempt).endswith(" result=[1, 2]>")


async def test_set_result_outside_the_block_is_an_error() -> None:
    loop = retrying(on=Transient, retry_if_result=lambda r: r == "busy")
    async for attempt in loop:
        with attempt:
            pass
    match = r"attempt 1 is over: call it inside 'with attempt:'"
    with pytest.raises(RuntimeError, match=match):
        attempt.set_result("busy")  # too late to be judged
    with pytest.raises(RuntimeError, match=match):
        attempt.result = "busy"
    with no_backoff():
        stale = await (loop := retrying(on=Transient)).__anext__()
        with stale:
            raise Transient()
        await loop.__anext__()
    with pytest.raises(RuntimeError, match="attempt 1 is over"):
        stale.set_result(1)  # a stale attempt


async def test_retrying_a_failing_result_check_propagates_from_the_block() -> None:
    def broken(result: object) -> bool:
        raise LookupError("bug in the predicate")

    loop = retrying(on=Transient, retry_if_result=broken)
    with pytest.raises(LookupError, match="bug in the predicate"):
        await judged_block(loop, [1])
    with pytest.raises(StopAsyncIteration):
        await loop.__anext__()
    with pytest.raises(TypeError, match=r"retry_if_result .* returned 'x'"):
        await judged_block(
            retrying(on=Transient, retry_if_result=lambda r: "x"),  # type: ignore[arg-type,return-value]
            [1],
        )


async def test_retrying_cancelled_in_the_wait_after_a_rejected_result(clock: Clock) -> None:
    budget = RetryBudget(ratio=1, min_per_second=0.1, window=10)
    policy = retry(
        on=Transient,
        budget=budget,
        retry_if_result=lambda r: True,
        backoff=Backoff(initial=5, max=5, jitter=None),
    )
    blocks = 0

    async def loop() -> None:
        nonlocal blocks
        async for attempt in policy.retrying():
            with attempt:
                blocks += 1
                attempt.set_result("busy")

    t0 = clock.now()
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop)
        await anyio.sleep(1)
        assert budget.balance == pytest.approx(1)  # the retry is paid for
        tg.cancel_scope.cancel()
    assert blocks == 1
    assert clock.now() - t0 == clock.approx(1)
    assert budget.balance == pytest.approx(2)  # and refunded


async def test_retrying_rejected_results_under_no_backoff(clock: Clock) -> None:
    t0 = clock.now()
    with no_backoff():
        last = await judged_block(
            retrying(on=Transient, attempts=4, retry_if_result=lambda r: r < 3), [0, 1, 2, 3]
        )
    assert (last.num, last.result) == (4, 3)
    assert clock.now() - t0 == clock.approx(0)


def test_a_policy_with_retry_if_result_gives_a_retrying_loop() -> None:
    policy = retry(on=Transient, retry_if_result=bool)
    assert "state=fresh" in repr(policy.retrying())
    assert "state=fresh" in repr(retrying(on=Transient, retry_if_result=bool))
    with pytest.raises(TypeError, match="retry_if_result must be callable"):
        retrying(on=Transient, retry_if_result=3)  # type: ignore[arg-type]


# --- odds and ends ------------------------------------------------------------------------------------


async def test_next_wait_after_a_delay_from_the_predicate(clock: Clock) -> None:
    """A delay from ``on`` does not use up the backoff draw shown by next_wait."""
    seen: list[float] = []
    backoff = Backoff(initial=1, max=4, jitter=None)
    async for attempt in retrying(on=honour_retry_after, backoff=backoff):
        with attempt:
            seen.append(attempt.next_wait)
            if attempt.num == 1:
                raise RetryAfter(0.5)
            if attempt.num == 2:
                raise RetryAfter(None)
    assert seen == [1.0, 1.0, 2.0]


# --- issue 17: async with attempt, TryAgain -------------------------------------------------------


async def async_block(attempts: AsyncIterator[Attempt], fail_until: int, error: type) -> int:
    """An ``async with attempt:`` loop that raises *error* until attempt
    *fail_until*; returns the number of the attempt that succeeded."""
    async for attempt in attempts:
        async with attempt as entered:
            assert entered is attempt
            if attempt.num < fail_until:
                raise error(attempt.num)
            return attempt.num
    raise AssertionError("the loop ended without a result")


async def test_async_with_attempt(clock: Clock) -> None:
    assert await async_block(retrying(on=Transient, backoff=EXACT), 3, Transient) == 3
    assert clock.now() == clock.approx(3)
    with pytest.raises(Transient) as info:
        await async_block(retrying(on=Transient, attempts=2, backoff=EXACT), 9, Transient)
    assert info.value.__notes__[0].endswith("no attempts left (attempts=2)")
    with pytest.raises(Fatal):
        await async_block(retrying(on=Transient), 9, Fatal)


async def hangs_after_the_first(attempts: AsyncIterator[Attempt]) -> None:
    async for attempt in attempts:
        async with attempt:
            if attempt.num == 1:
                raise Transient(1)
            await anyio.sleep(10)


async def test_async_with_attempt_is_cut_at_the_timeout(clock: Clock) -> None:
    with pytest.raises(Transient) as info:
        await hangs_after_the_first(retrying(on=Transient, timeout=1, backoff=Backoff(initial=0)))
    assert clock.now() == clock.approx(1)
    assert info.value.__notes__[0].endswith("expired: attempt 2 was cut")


async def test_try_again_in_a_block(clock: Clock) -> None:
    seen: list[int] = []
    async for attempt in retrying(on=Fatal, backoff=EXACT):
        with attempt:
            seen.append(attempt.num)
            if attempt.num < 3:
                raise TryAgain()
    assert seen == [1, 2, 3]
    assert clock.now() == clock.approx(3)


async def test_next_wait_with_a_wait_function_is_nan() -> None:
    async for attempt in retrying(on=Transient, wait=lambda n, e: 1.0):
        with attempt:
            assert math.isnan(attempt.next_wait)
            assert repr(attempt) == "<Attempt num=1 next_wait=nan>"


async def async_predicate_block(
    attempts: AsyncIterator[Attempt], outcomes: list[object]
) -> Attempt:
    async for attempt in attempts:
        async with attempt:
            outcome = outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            attempt.set_result(outcome)
    return attempt


async def test_async_predicates_in_a_block(clock: Clock) -> None:
    async def transient(exc: BaseException) -> bool:
        await anyio.sleep(0.5)
        return isinstance(exc, Transient)

    async def is_503(result: object) -> bool:
        return result == 503

    attempts = retrying(on=transient, retry_if_result=is_503, backoff=EXACT)
    last = await async_predicate_block(attempts, [Transient(), 503, 200])
    assert (last.num, last.result) == (3, 200)
    assert clock.now() == clock.approx(0.5 + 1 + 2)
    with pytest.raises(Fatal):
        await async_predicate_block(retrying(on=transient), [Fatal()])


async def test_with_attempt_and_an_async_predicate_names_the_fix() -> None:
    async def transient(exc: BaseException) -> bool:
        return True

    with pytest.raises(TypeError, match="use 'async with attempt:'"):
        await run_block(retrying(on=transient))
