"""One object per key, made on first use, with bounded memory: :class:`PerKey`.

The spelling for "each host gets its own :class:`~anyway.AdaptiveLimiter`
(or :class:`~anyway.Hedger`)": a factory called once per key, and a least
recently used bound so that a crawler meeting thousands of hosts keeps
bounded memory. Keys in use (inside :meth:`PerKey.limit`) are never dropped.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, final

from ._util import current_run, name_of, short_repr
from ._validate import check_count, check_sync_function

__all__ = ["PerKey"]

T = TypeVar("T")

#: How many keys in use an eviction steps over before it gives up for now.
_SKIP: Final = 8
_FACTORY_EXAMPLE: Final = "PerKey(lambda key: anyway.AdaptiveLimiter(name=key))"
#: No key (for an eviction that keeps none in particular).
_NO_KEY: Final = object()


@final
class PerKey(Generic[T]):
    """One object per key (a host, a user, a tenant), made by
    ``factory(key)`` the first time the key is used::

        per_host = anyway.PerKey(lambda host: anyway.AdaptiveLimiter(name=host))

        async with per_host.limit(url.host):  # that host's own limiter
            await client.get(url)

        transport = anyway.httpx.ResilientTransport(
            limiter=anyway.PerKey(lambda host: anyway.AdaptiveLimiter(name=host)),
            hedger=anyway.PerKey(lambda host: anyway.Hedger()),
        )

    ``per_key[key]`` is *key*'s object (made now if it has none).
    :meth:`limit` enters it as an async context manager, so a ``PerKey`` of
    limiters is a keyed limiter, accepted wherever one is (e.g. the
    ``limiter=`` of :class:`anyway.httpx.ResilientTransport`).

    Memory is bounded: past *max_keys* keys, the least recently used key is
    dropped (its object forgotten: a later use of the key makes a new one).
    A key with a call inside :meth:`limit` is never dropped, so a limiter is
    never replaced while it holds calls; the keys kept are at most
    *max_keys* plus those in use. ``max_keys=None`` keeps every key.

    Used from a new event loop (a later :func:`anyio.run`), it behaves as
    newly created there: it forgets every key.
    """

    __slots__ = ("_factory", "_items", "_max", "_run", "_used")

    def __init__(self, factory: Callable[[Any], T], *, max_keys: int | None = 1000) -> None:
        if isinstance(factory, type):
            raise TypeError(
                f"factory is called with the key, got the class {factory.__qualname__};"
                f" e.g. PerKey(lambda key: {factory.__qualname__}(...))"
            )
        self._factory: Callable[[Any], T] = check_sync_function(
            "factory", factory, argument="the key", example=_FACTORY_EXAMPLE
        )
        self._max = (
            None
            if max_keys is None
            else check_count("max_keys", max_keys, hint="; or max_keys=None to keep every key")
        )
        # Least recently used first.
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._used: dict[Hashable, int] = {}  # calls inside limit(key), by key
        self._run: object = None

    def __repr__(self) -> str:
        return f"<PerKey {name_of(self._factory)} keys={len(self._items)} max_keys={self._max}>"

    @property
    def max_keys(self) -> int | None:
        """The most keys kept while not in use (``None``: no bound)."""
        return self._max

    def _check_run(self) -> None:
        try:
            run = current_run()
        except RuntimeError:  # no event loop here: the keys as they were left
            return
        if run is not self._run:
            self._run = run
            self._items.clear()
            self._used.clear()

    def __getitem__(self, key: Hashable) -> T:
        """*key*'s object, made by ``factory(key)`` if it has none."""
        self._check_run()
        items = self._items
        try:
            item = items[key]
        except KeyError:
            item = self._factory(key)
            if inspect.iscoroutine(item):
                item.close()  # never awaited: no warning on top of the error
                raise TypeError(
                    f"factory must be a plain function key -> object, but"
                    f" {name_of(self._factory)} returned a coroutine (an async def?); e.g."
                    " PerKey(lambda key: anyway.AdaptiveLimiter(name=key))"
                ) from None
            items[key] = item
            if self._max is not None and len(items) > self._max:
                self._evict(key)
            return item
        items.move_to_end(key)
        return item

    def _evict(self, keep: Hashable) -> None:
        """Drop least recently used keys down to the bound, stepping over (and
        renewing) a few in use and *keep* (the key just made); if too many are
        in use, exceed the bound for now."""
        items, used = self._items, self._used
        assert self._max is not None
        skipped = 0
        while len(items) > self._max and skipped < _SKIP:
            key = next(iter(items))
            if key in used or key == keep:
                items.move_to_end(key)
                skipped += 1
            else:
                del items[key]

    def __contains__(self, key: object) -> bool:
        self._check_run()
        return key in self._items

    def __len__(self) -> int:
        """How many keys have an object now."""
        self._check_run()
        return len(self._items)

    def __iter__(self) -> Iterator[Hashable]:
        """The keys, least recently used first (a snapshot)."""
        self._check_run()
        return iter(list(self._items))

    def limit(self, key: Hashable) -> AbstractAsyncContextManager[Any]:
        """``async with per_key.limit(key):`` enters *key*'s object (an async
        context manager such as :class:`~anyway.AdaptiveLimiter`); the key is
        not dropped while a call is inside."""
        return _Limit(self, key)  # type: ignore[arg-type]


class _Limit:
    """``PerKey.limit(key)``: enter the key's object, keeping the key meanwhile.
    Holds no state of its own, so one may be entered by many tasks at once
    (as a keyed limiter's ``limit(key)`` may): a key in use keeps its object,
    so leaving finds the object that was entered."""

    __slots__ = ("_key", "_owner")

    def __init__(self, owner: PerKey[AbstractAsyncContextManager[Any]], key: Hashable) -> None:
        self._owner = owner
        self._key = key

    async def __aenter__(self) -> Any:
        owner, key = self._owner, self._key
        cm = owner[key]
        if not (hasattr(cm, "__aenter__") and hasattr(cm, "__aexit__")):
            raise TypeError(
                f"PerKey.limit() enters the object its factory made, which must be an async"
                f" context manager such as anyway.AdaptiveLimiter; {name_of(owner._factory)}"
                f" made {short_repr(cm, 80)} for {key!r}"
            )
        used = owner._used
        used[key] = used.get(key, 0) + 1
        try:
            return await cm.__aenter__()
        except BaseException:
            _release(owner, key)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        owner, key = self._owner, self._key
        cm = owner._items[key]  # in use since __aenter__: neither dropped nor replaced
        try:
            return await cm.__aexit__(exc_type, exc_value, traceback)
        finally:
            _release(owner, key)


def _release(owner: PerKey[Any], key: Hashable) -> None:
    """A call left *key*'s object; the last one out lets the bound apply again
    (keys kept over it while in use are dropped now, not at the next new key)."""
    used = owner._used
    left = used.get(key, 0) - 1
    if left > 0:
        used[key] = left
        return
    used.pop(key, None)
    bound = owner._max
    if bound is not None and len(owner._items) > bound:
        owner._evict(_NO_KEY)
