"""Hedger: the learned delay, the warm-up, the token budget (hypothesis),
losers finished before the call returns, errors as hedge(), cancellation at
each await point, bad input, a fresh start in a new event loop. Every test
runs on every loop and on the foreign clocks."""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyway
from anyway import Hedger, HedgerStatistics
from anyway.testing import backends, virtual_time_options

#: asyncio, and trio where installed (the suite also runs without Trio)
LOOPS = [name for name, _ in backends(uvloop=False)]

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]


class Boom(Exception):
    pass


class Service:
    """Each attempt takes the next scripted (seconds, fails) or *default*;
    records when attempts start and when they finish (cleanup included)."""

    def __init__(
        self, *script: tuple[float, bool], default: tuple[float, bool] = (1.0, False)
    ) -> None:
        self.script = deque(script)
        self.default = default
        self.started: list[float] = []
        self.finished: list[float] = []
        self.cancelled = 0

    async def __call__(self, tag: str = "ok") -> str:
        seconds, fails = self.script.popleft() if self.script else self.default
        self.started.append(anyio.current_time())
        number = len(self.started)
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.finished.append(anyio.current_time())
        if fails:
            raise Boom(f"attempt {number}")
        return tag

    @property
    def attempts(self) -> int:
        return len(self.started)


async def warm(hedger: Hedger, n: int = 20, seconds: float = 1.0) -> None:
    service = Service(default=(seconds, False))
    for _ in range(n):
        assert await hedger(service) == "ok"


# --- construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"quantile": 0}, ValueError, "quantile must be > 0, got 0"),
        ({"quantile": 1.5}, ValueError, "quantile must be <= 1, got 1.5"),
        ({"quantile": float("nan")}, ValueError, "quantile must be a number, got NaN"),
        ({"quantile": "0.9"}, TypeError, "quantile must be a number, got '0.9'"),
        ({"max_extra": 0}, ValueError, "max_extra must be > 0, got 0"),
        ({"max_extra": 1.01}, ValueError, "max_extra must be <= 1, got 1.01"),
        ({"max_extra": True}, TypeError, "max_extra must be a number, got True"),
        ({"attempts": 1}, ValueError, "attempts must be >= 2, got 1"),
        ({"attempts": 2.0}, TypeError, "attempts must be a whole number, got 2.0"),
        ({"warmup": -1}, ValueError, "warmup must be >= 0, got -1"),
        ({"warmup": None}, TypeError, "warmup must be a whole number, got None"),
    ],
)
def test_bad_arguments_name_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Hedger(**kwargs)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Hedger(0.9)  # type: ignore[call-arg]


async def test_a_function_that_is_not_async_is_refused_at_the_call() -> None:
    hedger = Hedger()
    with pytest.raises(TypeError, match="fn must be an async function, not a coroutine object"):
        await hedger(Service()())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"returned 3, which cannot be awaited"):
        await hedger(lambda: 3)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="fn must be an async function, got 5"):
        await hedger(5)  # type: ignore[arg-type]
    assert hedger.statistics().calls == 0


async def test_defaults_repr_and_frozen_statistics() -> None:
    hedger = Hedger()
    assert repr(hedger) == "<Hedger quantile=0.9 delay=none calls=0 extra=0 tokens=0.00>"
    snapshot = hedger.statistics()
    assert snapshot == HedgerStatistics(calls=0, extra=0, tokens=0.0, delay=None, samples=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.calls = 1  # type: ignore[misc]


# --- the delay, the warm-up --------------------------------------------------------------


async def test_no_hedging_during_the_warmup(clock: Any) -> None:
    hedger = Hedger(warmup=5, max_extra=1.0)
    service = Service(default=(3.0, False))
    for _ in range(5):
        t0 = clock.now()
        assert await hedger(service) == "ok"
        assert clock.now() - t0 == clock.approx(3.0)
    assert service.attempts == 5
    stats = hedger.statistics()
    assert (stats.calls, stats.extra, stats.tokens, stats.samples) == (5, 0, 5.0, 5)
    assert stats.delay == clock.approx(3.0)


async def test_hedges_after_the_learned_quantile_and_finishes_the_loser(clock: Any) -> None:
    hedger = Hedger()
    await warm(hedger)  # 20 calls of 1 s: 2 tokens, delay 1 s
    assert hedger.statistics().delay == clock.approx(1.0)
    service = Service((10.0, False), (0.5, False))
    t0 = clock.now()
    assert await hedger(service) == "ok"
    assert clock.now() - t0 == clock.approx(1.5, ticks=2)  # the copy started at 1 s won
    assert [s - t0 for s in service.started] == [clock.approx(0), clock.approx(1.0)]
    assert service.cancelled == 1
    assert len(service.finished) == 2  # the loser's cleanup ran before the call returned
    stats = hedger.statistics()
    assert (stats.calls, stats.extra, stats.samples) == (21, 1, 21)


async def test_learns_the_latency_of_the_copy_that_answered(clock: Any) -> None:
    hedger = Hedger(quantile=0.5, warmup=0, max_extra=1.0)
    await warm(hedger, 3, seconds=2.0)  # 3 tokens; delay 2 s
    # the first copy takes 10 s, the backup (started at 2 s) 1 s: 1 s is learned, not 3 s
    assert await hedger(Service((10.0, False), (1.0, False))) == "ok"
    assert await hedger(Service((10.0, False), (1.0, False))) == "ok"
    assert hedger.statistics().delay == clock.approx(2.0)  # median of 1, 1, 2, 2, 2
    assert await hedger(Service((10.0, False), (1.0, False))) == "ok"
    assert hedger.statistics().delay == clock.approx(1.0)  # median of 1, 1, 1, 2, 2, 2


async def test_quantile_is_nearest_rank(clock: Any) -> None:
    hedger = Hedger(quantile=0.75, warmup=0)
    for seconds in (4.0, 1.0, 3.0, 2.0):
        assert await hedger(Service(default=(seconds, False))) == "ok"
    assert hedger.statistics().delay == clock.approx(3.0)  # the 3rd of 4


# --- the budget ----------------------------------------------------------------------------


async def test_without_a_token_no_copy_starts(clock: Any) -> None:
    hedger = Hedger(warmup=1, max_extra=0.5)
    await warm(hedger, 1)  # 0.5 token
    service = Service((5.0, False))
    t0 = clock.now()
    assert await hedger(service) == "ok"  # 1 token now: hedged at 1 s, the backup wins at 2 s
    assert clock.now() - t0 == clock.approx(2.0, ticks=2)
    service = Service((5.0, False))
    t0 = clock.now()
    assert await hedger(service) == "ok"  # 0.5 token: not hedged
    assert clock.now() - t0 == clock.approx(5.0)
    assert service.attempts == 1
    assert hedger.statistics().extra == 1


SETTINGS = settings(
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(
    max_extra=st.sampled_from([0.05, 0.1, 0.3, 1.0]),
    attempts=st.integers(2, 4),
    warmup=st.integers(0, 5),
    calls=st.lists(
        st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.2, 0.8]), st.booleans()), max_size=4),
        min_size=1,
        max_size=40,
    ),
)
async def test_extra_copies_stay_within_the_budget(
    max_extra: float, attempts: int, warmup: int, calls: list[list[tuple[float, bool]]]
) -> None:
    hedger = Hedger(max_extra=max_extra, attempts=attempts, warmup=warmup)
    total = 0
    for script in calls:
        service = Service(*script, default=(0.1, False))
        failures: list[BaseException] = []
        try:
            await hedger(service)
        except ExceptionGroup as group:
            failures = list(group.exceptions)
        if failures:
            assert all(isinstance(e, Boom) for e in failures)
            assert len(failures) == service.attempts
        assert service.attempts <= attempts
        assert len(service.finished) == service.attempts  # nothing left running
        total += service.attempts
    stats = hedger.statistics()
    assert stats.calls == len(calls)
    assert stats.extra == total - len(calls)
    assert stats.extra <= max_extra * len(calls) + 10  # plus the burst
    assert 0 <= stats.tokens <= 10


async def test_when_everything_slows_down_hedging_stays_within_budget() -> None:
    hedger = Hedger(max_extra=0.1)
    await warm(hedger, 20, seconds=0.1)
    service = Service(default=(2.0, False))  # every attempt now 20x slower

    async def one() -> None:
        assert await hedger(service) == "ok"

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(one)
            await anyio.sleep(0.05)
    extra = service.attempts - 200
    assert extra <= 0.1 * 220 + 10  # far from one extra copy per call
    assert hedger.statistics().extra == extra


# --- errors ----------------------------------------------------------------------------------


async def test_a_failed_copy_is_replaced_at_once(clock: Any) -> None:
    hedger = Hedger(warmup=2, max_extra=1.0)
    await warm(hedger, 2, seconds=5.0)
    service = Service((1.0, True), (2.0, False))
    t0 = clock.now()
    assert await hedger(service) == "ok"
    assert clock.now() - t0 == clock.approx(3.0, ticks=2)
    assert [s - t0 for s in service.started] == [clock.approx(0), clock.approx(1.0)]


async def test_every_copy_failing_raises_a_group_in_failure_order() -> None:
    hedger = Hedger(warmup=1, max_extra=1.0, attempts=3)
    await warm(hedger, 1)
    service = Service((5.0, True), (0.5, True), (0.5, True))
    with pytest.raises(ExceptionGroup) as info:
        await hedger(service)
    group = info.value
    assert group.message == "all 3 copies of Service failed"
    assert [str(e) for e in group.exceptions] == ["attempt 2", "attempt 3", "attempt 1"]
    assert [e.__notes__ for e in group.exceptions] == [
        ["Hedger copy #2"],
        ["Hedger copy #3"],
        ["Hedger copy #1"],
    ]
    assert hedger.statistics().samples == 1  # failures teach nothing


async def test_an_unhedged_failure_is_a_group_of_one() -> None:
    hedger = Hedger()
    with pytest.raises(ExceptionGroup) as info:
        await hedger(Service((1.0, True)))
    assert [str(e) for e in info.value.exceptions] == ["attempt 1"]


class Halt(BaseException):
    """Not an Exception (like KeyboardInterrupt, which pytest itself would catch)."""


async def test_a_base_exception_propagates_as_itself() -> None:
    async def halted() -> None:
        raise Halt

    with pytest.raises(Halt):
        await Hedger()(halted)


# --- cancellation at each await point ------------------------------------------------------


async def test_cancelled_while_the_first_copy_runs() -> None:
    hedger = Hedger()
    await warm(hedger)
    before = hedger.statistics()
    service = Service((10.0, False))
    with anyio.move_on_after(0.5) as scope:
        await hedger(service)
    assert scope.cancelled_caught
    assert (service.attempts, service.cancelled, len(service.finished)) == (1, 1, 1)
    after = hedger.statistics()
    assert (after.samples, after.extra) == (before.samples, before.extra)  # nothing learned


async def test_cancelled_while_the_copies_run(clock: Any) -> None:
    hedger = Hedger()
    await warm(hedger)
    service = Service((10.0, False), (10.0, False))
    t0 = clock.now()
    with anyio.move_on_after(3) as scope:
        await hedger(service)
    assert scope.cancelled_caught
    assert clock.now() - t0 == clock.approx(3.0)
    assert (service.attempts, service.cancelled, len(service.finished)) == (2, 2, 2)
    assert hedger.statistics().samples == 20


async def test_cancelled_during_the_warmup() -> None:
    hedger = Hedger()
    service = Service((10.0, False))
    with anyio.move_on_after(1):
        await hedger(service)
    assert (service.cancelled, len(service.finished)) == (1, 1)
    assert hedger.statistics().samples == 0


async def test_a_cancelled_caller_leaves_nothing_running() -> None:
    hedger = Hedger()
    service = Service()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await hedger(service)
    assert len(service.finished) == service.attempts  # started or not, nothing runs on


# --- new event loops, composition --------------------------------------------------------


def test_a_hedger_made_before_the_loop_starts_afresh_in_each_run() -> None:
    hedger = Hedger(warmup=2)

    async def use() -> None:
        assert hedger.statistics() == HedgerStatistics(
            calls=0, extra=0, tokens=0.0, delay=None, samples=0
        )
        await warm(hedger, 3)
        assert hedger.statistics().samples == 3

    for backend in ("asyncio", *LOOPS[1:], "asyncio"):  # via Trio when installed
        anyio.run(use, backend=backend, backend_options=virtual_time_options(backend))


async def test_arguments_are_passed_to_every_copy() -> None:
    hedger = Hedger(warmup=0, max_extra=1.0)
    await warm(hedger, 2, seconds=0.1)
    service = Service((5.0, False), (0.1, False))
    assert await hedger(service, "tagged") == "tagged"
    assert service.attempts == 2


async def test_composes_with_map() -> None:
    hedger = Hedger(warmup=0)

    async def fetch(i: int) -> int:
        return int(await hedger(Service(default=(0.1, False)), str(i)))

    assert await anyway.map_all(fetch, range(10)) == list(range(10))
    assert hedger.statistics().calls == 10
