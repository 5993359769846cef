"""anyway.PerKey: one object per key, made on first use, least recently used
keys dropped past max_keys, keys in use never dropped."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anyway
from anyway import AdaptiveLimiter, PerKey
from anyway.testing import backends

pytestmark = [pytest.mark.anyio]


class Thing:
    def __init__(self, key: str) -> None:
        self.key = key


def test_one_object_per_key_made_on_first_use() -> None:
    made: list[str] = []

    def factory(key: str) -> Thing:
        made.append(key)
        return Thing(key)

    per_key = PerKey(factory)
    a = per_key["a"]
    assert per_key["a"] is a
    assert per_key["b"].key == "b"
    assert made == ["a", "b"]
    assert len(per_key) == 2
    assert "a" in per_key
    assert "c" not in per_key
    assert list(per_key) == ["a", "b"]
    assert per_key.max_keys == 1000
    assert (
        repr(per_key)
        == "<PerKey test_one_object_per_key_made_on_first_use.<locals>.factory keys=2 max_keys=1000>"
    )


def test_the_least_recently_used_key_is_dropped() -> None:
    per_key = PerKey(lambda key: Thing(key), max_keys=2)
    a = per_key["a"]
    per_key["b"]
    assert per_key["a"] is a  # a is now the most recently used
    per_key["c"]
    assert list(per_key) == ["a", "c"]  # b was dropped
    assert per_key["b"] is not None
    assert list(per_key) == ["c", "b"]


def test_no_bound() -> None:
    per_key = PerKey(lambda k: Thing(k), max_keys=None)
    for i in range(3000):
        per_key[str(i)]
    assert len(per_key) == 3000


@given(st.lists(st.integers(0, 20), max_size=200), st.integers(1, 5))
def test_lru_invariants(keys: list[int], max_keys: int) -> None:
    per_key: PerKey[list[int]] = PerKey(lambda key: [key], max_keys=max_keys)
    recent: list[int] = []
    for key in keys:
        item = per_key[key]
        assert item == [key]
        assert per_key[key] is item  # kept while it is the most recent
        if key in recent:
            recent.remove(key)
        recent.append(key)
        assert list(per_key) == recent[-max_keys:]


def test_misuse_is_refused_with_the_fix() -> None:
    with pytest.raises(
        TypeError, match=r"got the class AdaptiveLimiter; e\.g\. PerKey\(lambda key"
    ):
        PerKey(AdaptiveLimiter)
    with pytest.raises(TypeError, match="factory must be callable"):
        PerKey(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_keys must be >= 1"):
        PerKey(Thing.__new__, max_keys=0)
    with pytest.raises(TypeError, match="max_keys must be a whole number"):
        PerKey(Thing.__new__, max_keys=1.5)  # type: ignore[arg-type]

    async def make(key: str) -> Thing:
        return Thing(key)

    with pytest.raises(TypeError, match="got the async function"):
        PerKey(make)
    per_key = PerKey(lambda key: make(key))
    with pytest.raises(TypeError, match="returned a coroutine"):
        per_key["a"]
    assert len(per_key) == 0


async def test_limit_enters_the_keys_object() -> None:
    per_key = PerKey(lambda key: AdaptiveLimiter(initial=1, name=key))
    async with per_key.limit("a"):
        assert per_key["a"].statistics().in_flight == 1
        assert per_key["b"].statistics().in_flight == 0
    assert per_key["a"].statistics().in_flight == 0


async def test_a_key_in_use_is_never_dropped() -> None:
    per_key = PerKey(lambda key: AdaptiveLimiter(initial=1, name=key), max_keys=1)
    async with per_key.limit("busy"):
        busy = per_key["busy"]
        for key in ("x", "y", "z"):
            per_key[key]
        assert per_key["busy"] is busy  # kept: a call is inside
        assert sorted(per_key) == ["busy", "z"]
    per_key["w"]
    assert "busy" not in per_key  # free again, and least recently used


async def test_a_key_is_released_when_entering_fails_or_is_cancelled() -> None:
    per_key = PerKey(lambda key: AdaptiveLimiter(initial=1, name=key), max_keys=1)
    async with per_key.limit("a"):
        with anyio.move_on_after(0.01) as scope:
            async with per_key.limit("a"):  # waits: the limit is 1
                pytest.fail("entered")
        assert scope.cancelled_caught
    assert per_key["a"].statistics().waiting == 0
    per_key["b"]
    assert list(per_key) == ["b"]  # a was not kept in use

    things = PerKey(lambda key: Thing(key))
    with pytest.raises(TypeError, match="must be an async context manager"):
        async with things.limit("a"):
            pass  # pragma: no cover


async def test_an_error_inside_is_given_to_the_object() -> None:
    per_key = PerKey(lambda key: AdaptiveLimiter(initial=1, name=key))
    with pytest.raises(KeyError):
        async with per_key.limit("a"):
            raise KeyError("boom")
    assert per_key["a"].statistics().failures == 1


def test_a_new_event_loop_starts_afresh() -> None:
    per_key: PerKey[Thing] = PerKey(lambda key: Thing(key))
    per_key["outside"]  # no event loop: kept as it is
    assert list(per_key) == ["outside"]
    seen: list[list[object]] = []

    async def use() -> None:
        seen.append(list(per_key))
        per_key["new"]

    for backend, options in backends():
        anyio.run(use, backend=backend, backend_options=options)
    assert seen == [[]] * len(backends())
    assert list(per_key) == ["new"]  # outside a loop: as it was left


def test_it_is_public() -> None:
    assert anyway.PerKey is PerKey
    assert PerKey.__module__ == "anyway"


async def test_a_call_cancelled_inside_releases_its_key() -> None:
    per_key = PerKey(lambda key: AdaptiveLimiter(initial=1, name=key), max_keys=1)
    with anyio.CancelScope() as scope:
        async with per_key.limit("a"):
            scope.cancel()
            await anyio.sleep(1)
    assert scope.cancelled_caught
    stats = per_key["a"].statistics()
    assert (stats.in_flight, stats.successes, stats.failures) == (0, 0, 0)
    per_key["b"]
    assert list(per_key) == ["b"]  # a was released, then dropped


async def test_many_keys_in_use_exceed_the_bound_for_now() -> None:
    per_key = PerKey(lambda key: AdaptiveLimiter(initial=1, name=key), max_keys=1)
    entered = anyio.Event()
    release = anyio.Event()
    inside = 0

    async def hold(key: str) -> None:
        nonlocal inside
        async with per_key.limit(key):
            inside += 1
            if inside == 10:
                entered.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(hold, f"busy{i}")
        await entered.wait()
        for i in range(100):
            per_key[f"new{i}"]
            assert {f"busy{j}" for j in range(10)} <= set(per_key)
            assert len(per_key) <= 10 + 2  # the keys in use, and a recent one or two
        release.set()
    per_key["last"]
    assert list(per_key) == ["last"]
