"""The books' calendar (SPEC v3 §2, §6): an event whose booking day (its ``at`` in the books'
timezone) is before 1970-01-01 or after 9998-12-31 is ``invalid_field`` (``at``), whatever
the year of ``at`` in its own offset; a day or month past the calendar on the command line
is one ``Error:`` line, never a traceback.

Every account is opened on 1970-01-01, so an entry dated before it fails ``bean-check``;
9998-12-31 leaves the day, the month and the billing year after the last booking day inside
Python's calendar (year 9999).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest
from builders import init_books, load_clean, read_store, sub
from click.testing import CliRunner

from ledger_engine.cli import main
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


# ------------------------------------------------------------------- the command line


def one_error_line(result) -> str:
    """The one ``Error:`` line of a click result, asserting there is no traceback."""
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture
def cli_books(tmp_path):
    books = init_books(tmp_path / "books")
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(sub("acme", "2026-11-01T08:00:00Z", "boost")) + "\n")
    return books, path


@pytest.mark.parametrize("day", ["9999-12-31", "9999-12-30", "9999-01-01", "1969-12-31"])
def test_post_through_a_day_past_the_calendar_is_one_usage_error(cli_books, day):
    books, path = cli_books
    result = CliRunner().invoke(main, ["post", str(books), str(path), "--through", day])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert day in line and "1970-01-01" in line and "9998-12-31" in line, line
    with read_store(books) as db:
        assert queries.event_ids(db) == set()  # refused before anything was read


@pytest.mark.parametrize("day", ["9998-12-31", "1970-01-01"])
def test_post_through_the_calendars_first_and_last_day_works(cli_books, day):
    books, path = cli_books
    words = ["post", str(books), str(path), "--through", day, "--allow-future"]
    result = CliRunner().invoke(main, words)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text", ["20261130", "2026-W48-1", "2026-11-30\n", "２０２６-11-30"])
def test_post_through_takes_yyyy_mm_dd_only(cli_books, text):
    books, path = cli_books
    result = CliRunner().invoke(main, ["post", str(books), str(path), "--through", text])
    assert result.exit_code == 2
    one_error_line(result)


@pytest.mark.parametrize("month", ["9999-12", "9999-01", "10000-01", "1969-12", "2026-11\n"])
def test_close_a_month_past_the_calendar_is_one_usage_error(cli_books, month):
    books, _ = cli_books
    result = CliRunner().invoke(main, ["close", str(books), month])
    assert result.exit_code == 2
    one_error_line(result)


@pytest.mark.parametrize(
    "command",
    [["report", "wallet-rollforward", "--month", "9999-12"],
     ["transactions", "acme", "--month", "1969-12"]],
)  # fmt: skip
def test_a_report_month_past_the_calendar_is_one_usage_error(cli_books, command):
    books, _ = cli_books
    result = CliRunner().invoke(main, [command[0], str(books), *command[1:]])
    assert result.exit_code == 2
    one_error_line(result)


def test_the_library_refuses_days_past_the_calendar_too(cli_books):
    books, path = cli_books
    with pytest.raises(ValueError, match="9998-12-31"):
        post(books, [str(path)], datetime.date(9999, 12, 31))
    with pytest.raises(ValueError, match="9998-12"):
        close_month(books, "9999-12")


def test_close_9999_12_in_a_real_process_is_one_line_on_stderr(cli_books):
    books, _ = cli_books
    result = subprocess.run(
        [sys.executable, "-m", "ledger_engine", "close", str(books), "9999-12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: Invalid value for 'YYYY-MM': 9999-12 is not in the books' calendar "
        "(1970-01 to 9998-12)"
    ]
