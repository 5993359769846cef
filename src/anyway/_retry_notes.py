"""The give-up notes of retry: seconds for humans, the earlier attempts, and
the link from the final error to the previous one."""

from __future__ import annotations

from collections import deque
from typing import Final

from ._util import short_repr

__all__ = ["EarlierAttempts", "link", "plural", "secs"]

#: How many earlier attempts the give-up note describes (the most recent ones).
_EARLIER_KEPT: Final = 10


def secs(seconds: float) -> str:
    """``1.6``, ``0.3``, ``45``: seconds for humans, to the millisecond."""
    text = f"{round(seconds, 3):f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _describe(kind: type[BaseException], args: tuple[object, ...]) -> str:
    """``OSError('refused')``: an exception's usual repr, from its type and args."""
    shown = ", ".join(short_repr(arg, 80) for arg in args)
    text = f"{kind.__qualname__}({shown})"
    return text if len(text) <= 120 else text[:117] + "..."


def link(final: BaseException, previous: BaseException) -> None:
    """Make *previous* reachable from *final* as its ``__context__`` when that
    is free and no cycle results."""
    if final.__context__ is not None or previous is final:
        return
    seen = 0
    chain: BaseException | None = previous
    while chain is not None and seen < 100:
        if chain is final:
            return
        chain = chain.__context__
        seen += 1
    final.__context__ = previous


class EarlierAttempts:
    """What the failed attempts of one call did: the exception type and args,
    or the repr of a rejected result. Cheap to keep, and it keeps no
    traceback (no frames) alive."""

    __slots__ = ("count", "kept")

    def __init__(self) -> None:
        self.kept: deque[tuple[int, type[BaseException] | None, tuple[object, ...]]] = deque(
            maxlen=_EARLIER_KEPT
        )
        self.count = 0

    def add(self, num: int, error: BaseException | None, result: object) -> None:
        if error is not None:
            self.kept.append((num, type(error), error.args))
        else:
            self.kept.append((num, None, (short_repr(result),)))
        self.count += 1

    def note(self) -> str | None:
        """``earlier attempts: #1 OSError('refused'); #2 ...``, or ``None``."""
        kept = self.kept
        if not kept:
            return None
        if self.count > len(kept):
            head = f"earlier attempts (the last {len(kept)} of {self.count})"
        else:
            head = "earlier attempts"
        described = "; ".join(
            f"#{num} {_describe(kind, what)}"
            if kind is not None
            else f"#{num} rejected result {what[0]}"
            for num, kind, what in kept
        )
        return f"{head}: {described}"
