"""anyway.httpx.retry_after: RFC 9110's ``Retry-After`` (delay seconds in ASCII
digits, or an HTTP date), and nothing else."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anyway.httpx import retry_after

# Only sync tests here: parsing needs no event loop.

DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
WHEN = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))


def _response(**headers: str) -> httpx.Response:
    # Header values as UTF-8 bytes, as a server could send them (httpx
    # refuses non-ASCII str values, but decodes received bytes).
    return httpx.Response(
        503, headers=[(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    )


def _http_date(when: datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("\t5\t", 5.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("007", 7.0),
        ("9" * 400, math.inf),
        ("9" * 5000, math.inf),  # beyond int()'s digit limit: no error
        ("-1", None),
        ("+1", None),
        ("1.", None),
        (".5", None),
        ("1 2", None),
        ("soon", None),
        ("", None),
        ("1e3", None),
        ("0x10", None),
        ("1_000", None),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("Infinity", None),
        ("-inf", None),
        ("\u0665\u0660", None),  # Arabic-Indic "50"
        ("\uff15\uff10", None),  # fullwidth "50"
        ("\u0969", None),  # Devanagari 3
        ("5\u0660", None),
        ("\u00a05", None),  # a non-breaking space is not optional whitespace
        ("5\u2003", None),
        ("Mon, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_delay_seconds(value: str, expected: float | None) -> None:
    assert retry_after(_response(retry_after=value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
        (" Wed, 21 Oct 2015 07:30:00 GMT\t", 120.0),
        ("Wed, 21 Oct 2015 07:29:00 -0000", 60.0),  # UTC, without saying so
        ("Wed, 21 Oct 2015 09:29:00 +0200", 60.0),
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),  # RFC 850, obsolete
        ("Wed Oct 21 07:29:00 2015", 60.0),  # asctime, obsolete
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # the past means now
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        (
            "Fri, 31 Dec 9999 23:59:59 GMT",
            (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - WHEN).total_seconds(),
        ),
        ("Fri, 31 Dec 9999 23:59:59 -2359", (LAST - WHEN).total_seconds()),  # year 10000 in UTC
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),
        ("Wed, 21 Oct 2015 07:28:00 +9999", None),
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
        ("Wed, 21 Oct 2015 25:28:00 GMT", None),
        ("21 Oct 2015 07:30:00 GMT", None),  # no day name: not an HTTP date
        ("Wed, \u0662\u0661 Oct 2015 07:30:00 GMT", None),  # Arabic-Indic 21
        ("Wed, 21 Oct \uff12\uff10\uff11\uff15 07:30:00 GMT", None),  # fullwidth 2015
        ("Wed, 21 Oct 2015 07:30:00 GMT" + " " * 100, 120.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT" + "x" * 100, None),
    ],
)
def test_http_date(value: str, expected: float | None) -> None:
    assert retry_after(_response(retry_after=value, date=DATE)) == expected


def test_no_header_or_no_usable_date_header() -> None:
    assert retry_after(_response()) is None
    assert retry_after(_response(date=DATE)) is None
    # Without a usable Date header, a date is measured from now=.
    for headers in ({}, {"date": "yesterday"}, {"date": "Wed, \u0662\u0661 Oct 2015 07:28:00 GMT"}):
        response = _response(retry_after="Wed, 21 Oct 2015 07:28:30 GMT", **headers)
        assert retry_after(response, now=WHEN) == 30.0
    # and from the wall clock by default
    soon = _http_date(datetime.now(UTC) + timedelta(hours=1))
    wait = retry_after(_response(retry_after=soon))
    assert wait is not None
    assert 3500 < wait <= 3600
    assert retry_after(_response(retry_after=DATE)) == 0.0
    # The Date header wins over now=; delay seconds need neither.
    later = _response(
        retry_after="Wed, 21 Oct 2015 07:28:30 GMT", date="Wed, 21 Oct 2015 07:28:10 GMT"
    )
    assert retry_after(later, now=WHEN) == 20.0
    assert retry_after(_response(retry_after="12"), now=WHEN) == 12.0


# --- properties -------------------------------------------------------------------

OWS = st.text(alphabet=" \t", max_size=3)
NON_ASCII_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@given(n=st.integers(min_value=0, max_value=10**30), before=OWS, after=OWS)
def test_any_ascii_delay_seconds_is_that_many_seconds(n: int, before: str, after: str) -> None:
    assert retry_after(_response(retry_after=f"{before}{n}{after}")) == float(n)


@given(
    digits=st.lists(st.one_of(NON_ASCII_DIGITS, st.sampled_from("0123456789")), min_size=1),
    foreign=NON_ASCII_DIGITS,
    at=st.integers(min_value=0),
)
def test_a_non_ascii_digit_is_never_a_delay(digits: list[str], foreign: str, at: int) -> None:
    digits.insert(at % (len(digits) + 1), foreign)
    value = "".join(digits)
    assert retry_after(_response(retry_after=value)) is None
    assert retry_after(_response(retry_after=value, date=DATE)) is None


@given(value=st.text(max_size=80))
def test_any_text_is_no_advice_or_a_wait_of_zero_or_more(value: str) -> None:
    wait = retry_after(_response(retry_after=value, date=DATE))
    assert wait is None or (isinstance(wait, float) and wait >= 0 and not math.isnan(wait))
    if wait is not None:
        assert value.isascii()  # RFC 9110's forms are ASCII only


@given(
    when=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31)),
    sent=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31)),
)
def test_any_http_date_is_measured_from_the_date_header(when: datetime, sent: datetime) -> None:
    when, sent = (d.replace(microsecond=0, tzinfo=UTC) for d in (when, sent))
    response = _response(retry_after=_http_date(when), date=_http_date(sent))
    assert retry_after(response) == max(0.0, (when - sent).total_seconds())


@given(
    when=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31)),
    at=st.integers(min_value=0),
    foreign=st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),
)
def test_an_http_date_with_a_non_ascii_character_is_malformed(
    when: datetime, at: int, foreign: str
) -> None:
    value = _http_date(when.replace(tzinfo=UTC))
    at %= len(value) + 1
    value = value[:at] + foreign + value[at:]
    assert retry_after(_response(retry_after=value, date=DATE)) is None
