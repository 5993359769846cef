"""CircuitBreaker stores: the protocol, another store, sharing, derive."""

from __future__ import annotations

import anyio
import pytest

from anyway import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerStateChanged,
    BreakerUpdate,
    CircuitBreaker,
    CircuitOpen,
    CircuitState,
    CountWindow,
    InMemoryBreakerStore,
    PolicyEvent,
    Rejected,
)
from anyway.abc import BreakerStore
from anyway.testing import Clock
from breaker_helpers import (
    Boom,
    Other,
    RemoteStore,
    changes,
    fail,
    fail_inside,
    succeed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.foreign_clocks]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
STORE_TIMEOUT = 5.0  # how long a breaker waits, shielded, to give a slot back


# --- stores ------------------------------------------------------------------------


async def test_a_remote_store_runs_the_same_state_machine(clock: Clock) -> None:
    events: list[PolicyEvent] = []
    store = RemoteStore()
    breaker = CircuitBreaker(
        failure_threshold=2, recovery_time=4, on=Boom, name="api", store=store, hooks=events.append
    )
    await succeed(breaker)
    await fail(breaker, 2)
    t0 = clock.now()
    assert breaker.state is OPEN
    await anyio.sleep(1)
    with pytest.raises(CircuitOpen) as info:
        await succeed(breaker)
    assert info.value.retry_after == clock.approx(4 - (clock.now() - t0))
    # aged locally from the last answer
    assert breaker.statistics().retry_after == clock.approx(4 - (clock.now() - t0))
    await anyio.sleep(4.5)
    assert breaker.state is HALF_OPEN  # last known OPEN, aged past its recovery time
    await fail(breaker, exc=Other)  # ignored: frees the probe slot (release)
    await breaker.call(anyio.sleep, 0)
    assert breaker.state is CLOSED
    snapshot = await breaker.snapshot()
    assert snapshot == BreakerSnapshot(state=CLOSED)
    local = CircuitBreaker()
    await fail(local, exc=Other)
    assert await local.snapshot() == BreakerSnapshot(state=CLOSED, failure_count=1, call_count=1)
    assert changes(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert {"acquire", "record", "release", "snapshot"} <= set(store.calls)
    await breaker.open(seconds=1)
    assert breaker.state is OPEN
    await breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.statistics().failure_count == 0
    assert changes(events)[-2:] == [(CLOSED, OPEN), (OPEN, CLOSED)]


async def test_remote_store_slow_calls_and_decorator(clock: Clock) -> None:
    store = RemoteStore()
    breaker = CircuitBreaker(
        name="api", store=store, window=CountWindow(2), slow_call_duration=1, recovery_time=1
    )

    @breaker
    async def op(seconds: float) -> None:
        await anyio.sleep(seconds)

    await op(2.5)
    async with breaker:
        await anyio.sleep(2.5)
    assert breaker.state is OPEN
    assert breaker.statistics().slow_call_count == 0  # counts start over once open
    await anyio.sleep(2.5)
    with pytest.raises(Boom) as info:
        await fail_inside(breaker)
    assert info.value.__notes__ == ["circuit breaker 'api' opened: a probe failed"]


async def test_cancelled_while_the_store_admits_frees_the_slot(clock: Clock) -> None:
    store = RemoteStore()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, name="api", store=store)
    await fail(breaker)
    await anyio.sleep(2.5)
    store.delay = 2  # each store operation now takes 2 s
    t0 = clock.now()
    with anyio.move_on_after(0.5) as scope:
        async with breaker:
            pytest.fail("cancelled before the body runs")  # pragma: no cover
    assert scope.cancelled_caught
    # the admission honours the caller's deadline; the slot is given back, shielded
    assert clock.now() - t0 == clock.approx(0.5 + 2)
    store.delay = 0
    assert store.calls[-2:] == ["acquire", "release"]
    assert (await breaker.snapshot()).probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_an_admission_whose_answer_is_lost_gives_the_slot_back(clock: Clock) -> None:
    class LateAnswer(RemoteStore):
        """The store admits at once (the script ran), the answer comes late."""

        async def acquire(self, key: str, config: BreakerConfig, call: int) -> BreakerUpdate:
            update = await self.inner.acquire(key, config, call)
            await self._io("acquire")
            return update

    store = LateAnswer(delay=2)
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, name="api", store=store)
    store.delay = 0
    await fail(breaker)
    await anyio.sleep(2.5)
    store.delay = 2
    with anyio.move_on_after(0.5):
        async with breaker:
            pytest.fail("cancelled before the body runs")  # pragma: no cover
    store.delay = 0
    assert (await breaker.snapshot()).probes_in_flight == 0
    await succeed(breaker)
    assert breaker.state is CLOSED


async def test_a_store_that_does_not_answer(clock: Clock) -> None:
    class Stuck(RemoteStore):
        async def _io(self, op: str) -> None:
            self.calls.append(op)
            if op != "snapshot":
                await anyio.sleep_forever()

    store = Stuck()
    breaker = CircuitBreaker(name="api", store=store)
    t0 = clock.now()
    with anyio.move_on_after(1) as scope:
        await succeed(breaker)
    assert scope.cancelled_caught
    # the admission ends at the caller's deadline; giving the slot back is
    # shielded but bounded, and never raises in place of the cancellation
    assert clock.now() - t0 == clock.approx(1 + STORE_TIMEOUT)
    assert store.calls == ["acquire", "release"]


async def test_breakers_sharing_a_store_and_a_name_share_the_circuit() -> None:
    store = InMemoryBreakerStore()
    a = CircuitBreaker(failure_threshold=2, name="db", store=store)
    b = CircuitBreaker(failure_threshold=2, name="db", store=store)
    other = CircuitBreaker(failure_threshold=2, name="cache", store=store)
    await fail(a)
    await fail(b)
    assert a.state is b.state is OPEN
    assert other.state is CLOSED
    with pytest.raises(ValueError, match="the circuit 'db' in this store was configured with"):
        CircuitBreaker(failure_threshold=3, name="db", store=store)


async def test_in_memory_store_protocol_directly(clock: Clock) -> None:
    store = InMemoryBreakerStore()
    assert isinstance(store, BreakerStore)
    config = BreakerConfig(failure_threshold=1, recovery_time=1, half_open_max_calls=1)
    admitted = await store.acquire("k", config, 1)
    assert admitted.snapshot == BreakerSnapshot(state=CLOSED)
    assert admitted.ticket is not None
    first = admitted.ticket
    opened = await store.record("k", config, 1, first, failure=True, slow=False)
    assert (opened.previous, opened.snapshot.state, opened.reason, opened.kind) == (
        CLOSED,
        OPEN,
        "1 consecutive failure",
        "failures",
    )
    refused = await store.acquire("k", config, 2)
    assert refused.ticket is None
    assert refused.snapshot.retry_after == clock.approx(1)
    await anyio.sleep(2.5)
    probe = await store.acquire("k", config, 3)
    assert (probe.previous, probe.kind, probe.snapshot.probes_in_flight) == (
        OPEN,
        "recovery_time",
        1,
    )
    assert probe.ticket is not None
    assert (await store.acquire("k", config, 4)).ticket is None  # the one slot is taken
    released = await store.release("k", config, 3)
    assert released.snapshot.probes_in_flight == 0
    assert (await store.release("k", config, 3)).snapshot.probes_in_flight == 0  # idempotent
    assert (await store.release("k", config, 99)).previous is None  # unknown call: nothing
    stale = await store.record("k", config, 1, first, failure=True, slow=False)
    assert stale.previous is None
    assert stale.snapshot.state is HALF_OPEN
    # an outcome of a call that holds no slot is no probe
    assert (
        await store.record("k", config, 4, probe.ticket, failure=True, slow=False)
    ).previous is None
    with pytest.raises(
        ValueError, match=r"state must be CircuitState\.OPEN or CircuitState\.CLOSED"
    ):
        await store.force("k", config, HALF_OPEN)
    closed = await store.force("k", config, CLOSED)
    assert (closed.previous, closed.kind) == (HALF_OPEN, "operator_close")
    opened = await store.force("k", config, OPEN, seconds=5)
    again = await store.force("k", config, OPEN, seconds=50)  # already open, no reset: kept
    assert (opened.previous, opened.kind, again.previous) == (CLOSED, "operator_open", None)
    assert again.snapshot.retry_after == clock.approx(5)
    reset = await store.force("k", config, CLOSED, reset=True)
    assert (reset.previous, reset.kind) == (OPEN, "operator_reset")
    assert (await store.snapshot("k", config)).state is CLOSED


# --- derive: one breaker's settings, another name -----------------------------------


async def test_derive_copies_the_settings_not_the_state(clock: Clock) -> None:
    events: list[PolicyEvent] = []

    def predicate(exc: Exception) -> bool:
        return isinstance(exc, Boom)

    template = CircuitBreaker(
        window=CountWindow(4),
        minimum_calls=2,
        failure_rate_threshold=0.5,
        slow_call_duration=1,
        slow_call_rate_threshold=0.75,
        recovery_time=7,
        half_open_max_calls=2,
        on=predicate,
        name="api",
        hooks=events.append,
    )
    await fail(template, 2)
    assert template.state is OPEN
    child = template.derive(name="api:one")
    assert (child.name, child.state, child.statistics().call_count) == ("api:one", CLOSED, 0)
    assert child.config == template.config
    assert child.hooks == template.hooks
    assert isinstance(child.store, InMemoryBreakerStore)
    assert child.store is not template.store  # its own private store
    await fail(child, exc=Other)  # the predicate is copied: ignored
    assert child.statistics().call_count == 0

    async def slow() -> None:
        async with child:
            await anyio.sleep(1.5)

    t0 = clock.now()
    async with anyio.create_task_group() as tg:  # slow calls are tracked too
        tg.start_soon(slow)
        tg.start_soon(slow)
    assert clock.now() - t0 == clock.approx(1.5)
    assert child.state is OPEN
    assert [(e.policy, e.reason) for e in events if isinstance(e, BreakerStateChanged)] == [
        ("api", "failure rate 100% >= 50% over 2 calls"),
        ("api:one", "slow call rate 100% >= 75% over 2 calls"),
    ]


async def test_derive_in_consecutive_mode_with_exception_types() -> None:
    template = CircuitBreaker(failure_threshold=2, recovery_time=3, on=(Boom, KeyError))
    child = template.derive(name="child")
    assert child.config == template.config
    await fail(child, exc=Other)
    await fail(child, exc=KeyError)
    await fail(child)
    assert child.state is OPEN
    assert template.state is CLOSED


async def test_derive_shares_a_given_store_under_the_new_name() -> None:
    store = InMemoryBreakerStore()
    template = CircuitBreaker(failure_threshold=1, name="api", store=store)
    child = template.derive(name="api:host")
    assert child.store is store
    await fail(child)
    again = template.derive(name="api:host")  # the same name: the same circuit
    assert again.state is OPEN
    assert template.state is CLOSED
    assert repr(store) == "<InMemoryBreakerStore circuits=2>"

    remote = RemoteStore()
    shared = CircuitBreaker(failure_threshold=1, name="api", store=remote).derive(name="api:x")
    assert shared.store is remote
    await fail(shared)
    assert remote.calls == ["acquire", "record"]


@pytest.mark.parametrize("name", ["", None, 5])
def test_derive_needs_a_name(name: object) -> None:
    with pytest.raises(
        TypeError, match=r"name must be a non-empty string, got .*a derived breaker"
    ):
        CircuitBreaker().derive(name=name)  # type: ignore[arg-type]


# --- a store that fails -------------------------------------------------------------


class StoreDown(Rejected):
    """What a shared store raises when its backend is unreachable."""


class FailingStore(RemoteStore):
    """A remote store whose chosen operations raise StoreDown."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()

    async def _io(self, op: str) -> None:
        await super()._io(op)
        if op in self.down:
            raise StoreDown(f"{op}: store unreachable")


async def test_a_store_that_cannot_admit_raises_its_error_uncounted() -> None:
    store = FailingStore()
    breaker = CircuitBreaker(failure_threshold=1, name="api", store=store)
    store.down = {"acquire"}
    with pytest.raises(StoreDown, match="acquire: store unreachable"):
        await succeed(breaker)
    assert store.calls == ["acquire", "release"]  # the slot it may have taken goes back
    store.down = set()
    assert (await breaker.snapshot()).state is CLOSED  # a store error is no failure


async def test_the_calls_error_wins_over_a_store_that_cannot_record_it() -> None:
    store = FailingStore()
    breaker = CircuitBreaker(failure_threshold=1, name="api", store=store)
    store.down = {"record"}
    with pytest.raises(Boom) as info:
        await fail_inside(breaker)
    assert info.value.__notes__ == [
        "circuit breaker 'api' could not record this failure: StoreDown('record: store unreachable')"
    ]
    with pytest.raises(StoreDown, match="record"):  # a success: the store's error is reported
        await succeed(breaker)


async def test_a_cancellation_wins_over_a_store_that_cannot_take_the_slot_back() -> None:
    store = FailingStore()
    breaker = CircuitBreaker(failure_threshold=1, recovery_time=1, on=Boom, name="api", store=store)
    await fail(breaker)
    await anyio.sleep(1.5)
    store.down = {"release"}
    with anyio.move_on_after(1) as scope:
        async with breaker:
            await anyio.sleep_forever()
    assert scope.cancelled_caught  # the cancellation propagated, as itself
    store.down = set()
    with pytest.raises(CircuitOpen):  # the slot is still taken (a shared store's lease frees it)
        await succeed(breaker)
    await breaker.reset()
    await fail(breaker)
    await anyio.sleep(1.5)
    store.down = {"release"}
    with pytest.raises(Other) as info:
        async with breaker:  # an error the breaker ignores: its slot should go back
            raise Other
    assert info.value.__notes__ == [
        "circuit breaker 'api' could not give back the call's probe slot:"
        " StoreDown('release: store unreachable')"
    ]
