"""A guarded close (SPEC v3 §6): ``close MONTH --check`` prints the month-end checklist and
writes nothing; ``close`` refuses, with one ``Error:`` line and nothing written, when
reconcile is not clean or recovery would move anything (a hand entry is never moved away
without a word, as it was before)."""

from __future__ import annotations

import json
import sqlite3

from builders import journal_bytes, money_event, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def store_rows(books) -> dict:
    with sqlite3.connect(books / "state.sqlite") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in tables}


def october_and_november(poster, books):
    """October posted and closed; November posted through its end, with a rejected top-up
    of 7.50 (before any subscription of its customer) and one late event for Nov 10."""
    poster([sub("acme", "2026-10-01T08:00:00Z", "boost", commitment="10.00"),
            use("acme", "2026-10-02T10:00:00Z", "c1")], "2026-10-31")  # fmt: skip
    run("close", books, "2026-10")
    poster([use("acme", "2026-11-05T10:00:00Z", "c2"),
            money_event("top_up", "ghost", "2026-11-06T10:00:00Z", "7.50", id="ghost-1"),
            {"id": "bad", "type": "top_up", "customer": "acme", "at": "2026-11-07T10:00:00Z",
             "amount": 2.5}], "2026-11-20")  # fmt: skip
    poster([use("acme", "2026-11-10T10:00:00Z", "late")], "2026-11-30")


def test_the_checklist_writes_nothing_and_says_what_close_would_do(poster, books):
    october_and_november(poster, books)
    before, rows = journal_bytes(books), store_rows(books)
    result = run("close", books, "2026-11", "--check")
    assert result.exit_code == 0, result.output
    assert journal_bytes(books) == before and store_rows(books) == rows
    lines = result.output.splitlines()
    assert lines[0] == "Month-end checklist of 2026-11:"
    assert "[x] posted through 2026-11-30, the earlier months closed" in lines[1]
    assert "[x] reconcile clean" in lines[2]
    # The rejections of November's runs: the top-up of an unknown customer (7.50, its
    # amount) and the float amount (no money it could have posted).
    assert "unknown_customer 1 (7.50)" in result.output and "invalid_field 1" in result.output
    assert "late events since the last close: 1 (for 2026-11)" in result.output
    # acme's wallet: 10.00 committed Oct 1 (expired Nov 1) and Nov 1; nothing charged.
    assert "wallets owed 10.00" in result.output and "receivables 20.00" in result.output
    assert lines[-1].startswith("close would close it; the seal it would print: ")
    seal = lines[-1].rsplit(" ", 1)[1]
    data = json.loads(run("close", books, "2026-11", "--check", "--json").output)
    assert data["closable"] is True and data["seal_sha256"] == seal
    assert [c["name"] for c in data["checks"]] == [
        "order", "reconcile", "recovery", "rejections", "late_events", "ties",
    ]  # fmt: skip
    closed = run("close", books, "2026-11")
    assert closed.exit_code == 0 and f"Seal: {seal}" in closed.output


def test_close_refuses_a_hand_entry_and_moves_nothing(poster, books):
    october_and_november(poster, books)
    gl = books / "gl/2026/2026-11.beancount"
    with gl.open("a") as stream:
        stream.write('2026-11-30 * "by hand" "an entry"\n  Assets:Bank:Clearing  1.00 EUR\n'
                     "  Income:Channels:Sms  -1.00 EUR\n\n")  # fmt: skip
    before, rows = journal_bytes(books), store_rows(books)
    result = run("close", books, "2026-11")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "recovery would move bytes past the committed end of gl/2026/2026-11" in result.output
    assert journal_bytes(books) == before and store_rows(books) == rows
    assert not (books / "recovered").exists()
    check = json.loads(run("close", books, "2026-11", "--check", "--json").output)
    assert check["closable"] is False and check["seal_sha256"]
    assert check["checks"][2]["would_move"] == [
        "bytes past the committed end of gl/2026/2026-11.beancount"
    ]


def test_close_refuses_books_that_do_not_reconcile(poster, books):
    october_and_november(poster, books)
    month = books / "customers/C-acme/2026-11.beancount"
    data = month.read_bytes()
    assert b"  included: 1\n" in data
    month.write_bytes(data.replace(b"  included: 1\n", b"  included: 0\n", 1))  # same length
    before = journal_bytes(books)
    result = run("close", books, "2026-11")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "reconcile is not clean" in result.output and "customers/C-acme/2026-11" in result.output
    assert journal_bytes(books) == before
