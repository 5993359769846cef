# pyright: strict
"""Type-checked by mypy --strict and pyright --strict, never run:
``resilient(fallback=...)`` returns the function's type or the fallback's.

A fallback of the function's own type leaves the type unchanged; one of
another type widens it (``int`` with a ``str`` fallback returns ``int | str``),
so using the result as the function's type is a type error. The
``# type: ignore[...]`` lines are those expected errors: mypy runs with
``warn_unused_ignores`` (``--strict``) and pyright with
``reportUnnecessaryTypeIgnoreComment``, so an error that disappears fails the
check.

mypy types a *lambda* fallback as ``Any`` (the lambda also fits the
overload for plain values), so the result of ``fallback=lambda exc: "none"``
on an ``int`` function is ``int | Any`` there; pyright says ``int | str``.
A ``def`` fallback is checked by both.
"""

from __future__ import annotations

from typing import assert_type

import anyway


class Profile:
    pass


# --- the function's type: unchanged ---------------------------------------------


@anyway.resilient(timeout=1.0)
async def plain(x: int) -> int:
    return x


@anyway.resilient(timeout=1.0, fallback=None)
async def maybe_profile(user_id: str) -> Profile | None:
    return Profile()


def no_profile(exc: Exception) -> None:
    return None


@anyway.resilient(fallback=no_profile)
async def maybe_profile_from_callable(user_id: str) -> Profile | None:
    return None


@anyway.resilient(fallback=lambda exc: 0)
async def count(x: int) -> int:
    return x


@anyway.resilient(fallback=True)  # bool is an int
async def count_from_bool(x: int) -> int:
    return x


async def async_default(exc: Exception) -> str:
    return str(exc)


@anyway.resilient(fallback=async_default)  # awaited: its result is a str
async def text(x: int) -> str:
    return str(x)


def sync_default(exc: Exception) -> bytes:
    return b""


@anyway.resilient(retry=anyway.retry(on=OSError), fallback=sync_default)
async def body(url: str, *, retries: int = 1) -> bytes:
    return url.encode()


async def use() -> None:
    assert_type(await plain(1), int)
    assert_type(await maybe_profile("u"), Profile | None)
    assert_type(await maybe_profile_from_callable("u"), Profile | None)
    counted: int = await count(1)  # a lambda: int (pyright), int | Any (mypy)
    from_bool: int = await count_from_bool(1)  # int (mypy), int | bool (pyright)
    print(counted, from_bool)
    assert_type(await text(1), str)
    assert_type(await body("u", retries=2), bytes)
    await plain("x")  # type: ignore[arg-type]  # the parameters are kept
    await body("u", retry=2)  # type: ignore[call-arg]


# --- another type: the result is the union, not the function's type ------------


@anyway.resilient(fallback="none")
async def value_of_another_type(x: int) -> int:
    return x


def none_text(exc: Exception) -> str:
    return "none"


@anyway.resilient(fallback=none_text)
async def callable_of_another_type(x: int) -> int:
    return x


@anyway.resilient(fallback=async_default)
async def async_callable_of_another_type(x: int) -> int:
    return x


@anyway.resilient(fallback=None)
async def none_for_an_int(x: int) -> int:
    return x


async def use_widened() -> None:
    assert_type(await value_of_another_type(1), int | str)
    assert_type(await callable_of_another_type(1), int | str)
    assert_type(await async_callable_of_another_type(1), int | str)
    assert_type(await none_for_an_int(1), int | None)
    n: int = await value_of_another_type(1)  # type: ignore[assignment]
    m: int = await callable_of_another_type(1)  # type: ignore[assignment]
    k: int = await async_callable_of_another_type(1)  # type: ignore[assignment]
    j: int = await none_for_an_int(1)  # type: ignore[assignment]
    print(n, m, k, j)
