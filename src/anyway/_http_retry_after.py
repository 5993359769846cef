"""Parsing the ``Retry-After`` header (RFC 9110, section 10.2.3).

Pure functions, no I/O, no httpx: ``Retry-After`` is either delay seconds
(``1*DIGIT``, ASCII digits only) or an HTTP date. Anything else is malformed
and means "no advice" (``None``): the caller falls back to its backoff.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime
from typing import Final

__all__ = ["parse_retry_after", "wall_clock"]

# RFC 9110 delay-seconds is 1*DIGIT, and DIGIT is %x30-39: never the
# Arabic-Indic "50" (U+0665 U+0660) or fullwidth digits, which \d and
# str.isdigit() accept. A decimal fraction ("1.5") is a
# harmless extension some servers send; it is accepted, in ASCII only.
_DELAY_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Optional whitespace around a field value (RFC 9110, section 5.6.3): SP and HTAB only.
_OWS: Final = " \t"
# An HTTP date is at most 29 characters (IMF-fixdate); 64 leaves room for the
# obsolete forms and a stray space, and bounds the work spent on garbage.
_MAX_DATE_LENGTH: Final = 64


def wall_clock() -> datetime:
    """The current UTC date and time: the library's only wall-clock read
    (everything else uses :func:`anyio.current_time`). An HTTP-date
    ``Retry-After`` from a response without a usable ``Date`` header can only
    be measured against it: the event loop's clock has no epoch. Virtual
    time does not move it."""
    return datetime.now(UTC)


def parse_retry_after(value: str, date: str | None, now: datetime | None = None) -> float | None:
    """The seconds that a ``Retry-After`` *value* asks to wait, or ``None``
    when it is malformed.

    An HTTP date is measured from *date* (the response's ``Date`` header) when
    it is a valid HTTP date, else from *now* (default: the wall clock); a date
    in the past means ``0.0``. The result is never negative nor NaN, and may
    be ``inf`` (400 digits): the caller caps it.
    """
    value = value.strip(_OWS)
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)  # float("9" * 5000) is inf, never an error
    when = parse_http_date(value)
    if when is None:
        return None
    sent = parse_http_date(date) if date is not None else None
    if sent is None:
        sent = wall_clock() if now is None else now
    try:
        return max(0.0, (when - sent).total_seconds())
    except (OverflowError, TypeError):  # a naive *now*, or beyond datetime's range
        return None


def parse_http_date(value: str) -> datetime | None:
    """An HTTP date (IMF-fixdate, or the obsolete RFC 850 and asctime forms
    that RFC 9110 asks recipients to accept) as an aware datetime, or
    ``None``. Only ASCII: ``email.utils`` alone would read other scripts'
    digits."""
    value = value.strip(_OWS)
    if not value.isascii() or len(value) > _MAX_DATE_LENGTH or not value[:1].isalpha():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, without saying so
        return when.replace(tzinfo=UTC)
    return when
