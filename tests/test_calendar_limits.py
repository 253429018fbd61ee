"""The books' calendar (SPEC v3 §2): an event whose booking day (its ``at`` in the books'
timezone) is before 1970-01-01 or after 9998-12-31 is ``invalid_field`` (``at``), whatever
the year of ``at`` in its own offset.

Every account is opened on 1970-01-01, so an entry dated before it fails ``bean-check``;
9998-12-31 leaves the day, the month and the billing year after the last booking day inside
Python's calendar (year 9999).
"""

from __future__ import annotations

import datetime
import json

import pytest
from builders import init_books, load_clean, read_store, sub

from ledger_engine.close import close_month
from ledger_engine.core import events as ev
from ledger_engine.core.dates import load_zone
from ledger_engine.post import post
from ledger_engine.store import queries

UTC = load_zone("UTC")
BERLIN = load_zone("Europe/Berlin")


def top_up_at(at: str) -> bytes:
    document = {"id": "t", "type": "top_up", "customer": "acme", "at": at, "amount": "5"}
    return json.dumps(document).encode()


def booking(at: str, zone):
    """The booking day of an event at ``at``, or the field it is rejected for; the fast
    path (check_line) and the reference checks (checked_line) must agree."""
    raw = top_up_at(at)
    line = ev.check_line(raw, "f", 1, "EUR", zone)
    reference = ev.checked_line(raw, "f", 1, "EUR", zone)
    assert (line.event, line.content, line.rejection) == (
        reference.event,
        reference.content,
        reference.rejection,
    )
    if line.rejection:
        return line.rejection.reason, line.rejection.field
    return line.event.day.isoformat()


@pytest.mark.parametrize(
    "at,expected",
    [
        ("1970-01-01T00:00:00Z", "1970-01-01"),
        ("1970-01-01T00:00:00.000001Z", "1970-01-01"),
        ("1969-12-31T23:59:59Z", ("invalid_field", "at")),
        ("1969-12-31T23:59:59.999999Z", ("invalid_field", "at")),
        ("1970-01-01T00:10:00+01:00", ("invalid_field", "at")),  # 1969-12-31T23:10Z
        ("1970-01-01T00:59:59+01:00", ("invalid_field", "at")),
        ("1970-01-01T01:00:00+01:00", "1970-01-01"),
        ("1969-12-31T23:30:00-01:00", "1970-01-01"),  # 1970-01-01T00:30Z
        ("1969-12-31T22:59:59-01:00", ("invalid_field", "at")),
        ("9998-12-31T23:59:59Z", "9998-12-31"),
        ("9998-12-31T23:59:59.999999z", "9998-12-31"),
        ("9999-01-01T00:00:00Z", ("invalid_field", "at")),
        ("9998-12-31T23:30:00-01:00", ("invalid_field", "at")),  # 9999-01-01T00:30Z
        ("9998-12-31T22:59:59-01:00", "9998-12-31"),
        ("9999-01-01T00:30:00+01:00", "9998-12-31"),  # 9998-12-31T23:30Z
        ("9999-01-01T01:00:00+01:00", ("invalid_field", "at")),
        ("9999-12-31T23:30:00-01:00", ("invalid_field", "at")),  # past year 9999 in UTC
        ("0001-01-01T00:00:00+01:00", ("invalid_field", "at")),  # before year 1 in UTC
    ],
)
def test_the_booking_day_limits_in_utc_books(at, expected):
    assert booking(at, UTC) == expected


@pytest.mark.parametrize(
    "at,expected",
    [
        ("1970-01-01T00:30:00Z", "1970-01-01"),
        ("1969-12-31T23:30:00Z", "1970-01-01"),  # 1970-01-01T00:30 in Berlin (CET, +01:00)
        ("1969-12-31T23:00:00Z", "1970-01-01"),
        ("1969-12-31T22:59:59Z", ("invalid_field", "at")),  # 23:59:59 on 1969-12-31 there
        ("1970-01-01T00:30:00+02:00", ("invalid_field", "at")),  # 1969-12-31T23:30 there
        ("1970-01-01T01:00:00+02:00", "1970-01-01"),
        ("9998-12-31T22:59:59Z", "9998-12-31"),
        ("9998-12-31T23:00:00Z", ("invalid_field", "at")),  # 9999-01-01T00:00 there
        ("9998-12-31T23:30:00+01:00", "9998-12-31"),
        ("9999-01-01T00:30:00+02:00", "9998-12-31"),  # 9998-12-31T23:30 there
        ("9999-12-31T23:30:00Z", ("invalid_field", "at")),  # past year 9999 there
    ],
)
def test_the_booking_day_limits_in_berlin_books(at, expected):
    assert booking(at, BERLIN) == expected


@pytest.mark.parametrize(
    "expires,accepted",
    [("9998-12-31", True), ("9999-01-01", False), ("1969-12-31", False), ("1970-01-01", True)],
)
def test_expires_keeps_its_limit(expires, accepted):
    at = "1970-01-01T00:00:00Z"
    document = {"id": "g", "type": "credit_grant", "customer": "acme", "at": at, "amount": "5",
                "expires": expires}  # fmt: skip
    line = ev.check_line(json.dumps(document).encode(), "f", 1, "EUR", UTC)
    assert (line.rejection is None) == accepted
    if not accepted:
        assert line.rejection.field == "expires"


def journals_load_clean(books) -> None:
    load_clean(books / "ledger.beancount")
    roots = list(books.glob("customers/*/customer.beancount"))
    assert roots
    for root in roots:
        load_clean(root)


def test_an_event_booked_before_1970_is_quarantined_and_the_books_load(tmp_path):
    """1970-01-01T00:10:00+01:00 falls on 1969-12-31 in UTC books: it wrote 1969-12 files
    that failed bean-check while post exited 0."""
    books = init_books(tmp_path / "books")
    events = [
        sub("early", "1970-01-01T00:10:00+01:00", "boost", commitment="10", id="early"),
        sub("first", "1970-01-01T00:00:00Z", "boost", commitment="10", id="first"),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    result = post(books, [str(path)], datetime.date(1970, 1, 31))
    assert result.rejected == {"invalid_field": 1}
    with read_store(books) as db:
        [rejection] = [r for r in queries.rejections(db) if r["kind"] == "schema"]
    assert (rejection["event_id"], rejection["field"]) == ("early", "at")
    assert not list(books.rglob("1969-*"))
    assert (books / "customers" / "C-first" / "1970-01.beancount").exists()
    journals_load_clean(books)


def test_the_last_booking_day_posts_and_closes_and_the_books_load(tmp_path):
    books = init_books(tmp_path / "books", timezone="Europe/Berlin")
    events = [
        sub("last", "9998-12-01T08:00:00Z", "boost", commitment="10", id="last"),
        {"id": "t1", "type": "top_up", "customer": "last", "at": "9998-12-31T22:59:59Z",
         "amount": "5"},
        {"id": "t2", "type": "top_up", "customer": "last", "at": "9998-12-31T23:00:00Z",
         "amount": "5"},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    result = post(books, [str(path)], datetime.date(9998, 12, 31))
    assert (result.accepted, result.rejected) == (2, {"invalid_field": 1})
    close_month(books, "9998-12")
    assert (books / "gl" / "9999" / "9999-01.beancount").exists()  # the balance assertions
    journals_load_clean(books)
