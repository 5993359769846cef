"""Type-checked by mypy --strict, never run: pins the retry API's types."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Protocol, assert_type

import anyway
from anyway import Attempt, Backoff, Retry, RetryBudget
from anyway.testing import RetryTestMode, cap_attempts, no_backoff

policy = anyway.retry(on=OSError)
assert_type(policy, Retry)
assert_type(anyway.retry(on=(OSError, TimeoutError), attempts=None, timeout=None), Retry)


def retry_after(exc: BaseException) -> bool | float:
    return getattr(exc, "retry_after", True)


assert_type(anyway.retry(on=retry_after, backoff=Backoff(jitter=None)), Retry)
assert_type(
    anyway.retry(
        on=OSError,
        budget=RetryBudget(ratio=0.2),
        hooks=[anyway.log_event],
        retry_if_result=lambda response: response is None,
        name="db",
    ),
    Retry,
)


@anyway.retry(on=OSError)
async def fetch(url: str, *, retries: int = 1) -> bytes:
    return b""


class FetchLike(Protocol):
    def __call__(self, url: str, *, retries: int = ...) -> Coroutine[Any, Any, bytes]: ...


signature_kept: FetchLike = fetch  # the decorator keeps the exact signature


async def use() -> None:
    assert_type(await fetch("x", retries=2), bytes)
    assert_type(await policy.call(fetch, "x", retries=2), bytes)
    attempts = anyway.retrying(on=OSError, attempts=3)
    assert_type(attempts, AsyncIterator[Attempt])
    async for attempt in attempts:
        with attempt as entered:
            assert_type(entered, Attempt)
            assert_type(attempt.num, int)
            assert_type(attempt.next_wait, float)
    async for attempt in policy.retrying():
        with attempt:
            pass
    with no_backoff(), cap_attempts(2):
        pass


backoff = Backoff(initial=0.5, max=30, multiplier=3, jitter="decorrelated", random=random.Random(1))
assert_type(backoff.delays(), Iterator[float])
assert_type(backoff.delay(0, previous=1.0), float)
assert_type(backoff.ceiling(3), float)
assert_type(RetryBudget().try_withdraw(), bool)
assert_type(no_backoff(attempts=2), RetryTestMode)


@no_backoff()
async def a_test() -> int:
    return 1


a_test_as_callable: Callable[[], Coroutine[Any, Any, int]] = a_test


# --- the options are one TypedDict (RetryOptions): a typo is a type error ---
anyway.retry(on=OSError, attemps=3)  # type: ignore[call-arg]
anyway.retrying(on=OSError, timeout="5")  # type: ignore[arg-type]
anyway.Retry(on=OSError, budget=None, name="db")


async def pinned_issue_17() -> None:
    from anyway.testing import is_testing

    assert_type(is_testing(), bool)
    async for attempt in anyway.retrying(on=OSError):
        async with attempt as entered:
            assert_type(entered, Attempt)
            raise anyway.TryAgain


async def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError)


async def is_503(result: object) -> bool:
    return result == 503


assert_type(anyway.retry(on=is_transient, retry_if_result=is_503), Retry)
assert_type(anyway.retry(on=OSError, wait=lambda attempt, exc: 0.5 * attempt), Retry)
