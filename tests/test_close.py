"""Month close (SPEC §6): sealed files, balance assertions, late events after a close."""

from __future__ import annotations

from builders import D, customer_balances, journal_bytes, load_clean, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.reconcile import reconcile


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def november(poster):
    poster(
        [
            sub("big", "2026-11-01T08:00:00Z", "enterprise", included=1, unit_price="1.00"),
            use("big", "2026-11-02T10:00:00Z", "a"),
            use("big", "2026-11-03T10:00:00Z", "b"),
        ],
        "2026-11-30",
    )


def test_close_refuses_a_month_not_fully_posted(poster, books):
    poster([sub("big", "2026-11-01T08:00:00Z", "boost")], "2026-11-20")
    result = run_cli("close", books, "2026-11")
    assert result.exit_code == 1 and "not fully posted" in result.output


def test_close_refuses_when_an_earlier_month_is_open(poster, books):
    poster(
        [sub("big", "2026-10-20T08:00:00Z", "boost"), use("big", "2026-10-21T08:00:00Z", "x")],
        "2026-11-30",
    )
    result = run_cli("close", books, "2026-11")
    assert result.exit_code == 1 and "earlier month is still open: 2026-10" in result.output
    assert run_cli("close", books, "2026-10").exit_code == 0
    assert run_cli("close", books, "2026-10").exit_code == 1  # already closed
    assert run_cli("close", books, "2026-11").exit_code == 0


def test_close_seals_and_asserts_balances(poster, books):
    november(poster)
    result = run_cli("close", books, "2026-11")
    assert result.exit_code == 0, result.output
    gl_december = (books / "gl/2026/2026-12.beancount").read_text()
    assert '2026-12-01 custom "closed" "2026-11"' in gl_december
    assert "2026-12-01 balance Income:AI:Revenue:SuggestedReplies  -2.00 EUR" in gl_december
    sub_december = (books / "customers/C-big/2026-12.beancount").read_text()
    assert "2026-12-01 balance Liabilities:Customers:C-big:Wallet  -24.00 EUR" in sub_december
    entries, _ = load_clean(books / "ledger.beancount")  # the assertions hold
    assert sum(type(e).__name__ == "Balance" for e in entries) == 13  # every GL account
    assert reconcile(books).ok


def test_late_events_for_a_closed_month_go_to_the_first_open_day(poster, books):
    november(poster)
    assert run_cli("close", books, "2026-11").exit_code == 0
    sealed = {p: b for p, b in journal_bytes(books).items() if "2026-11" in p}
    # A late autopilot event for "a" (2 Nov) and a late new conversation on 5 Nov.
    poster(
        [
            use("big", "2026-11-04T10:00:00Z", "a", "autopilot"),
            use("big", "2026-11-05T10:00:00Z", "c", id="late-c"),
        ],
        "2026-12-05",
    )
    assert {p: b for p, b in journal_bytes(books).items() if "2026-11" in p} == sealed
    december = (books / "customers/C-big/2026-12.beancount").read_text()
    assert '2026-12-01 * "big" "Correction: AI usage"' in december
    assert "late: TRUE\n  original-day: 2026-11-02" in december
    assert "original-day: 2026-11-05" in december
    gl = (books / "gl/2026/2026-12.beancount").read_text()
    assert "late-transactions: " in gl
    assert customer_balances(books, "big")["Income:AI:Revenue:Autopilot"] == D("-1.00")
    assert reconcile(books).ok


def test_a_changed_sealed_file_is_named_by_reconcile(poster, books):
    november(poster)
    assert run_cli("close", books, "2026-11").exit_code == 0
    path = books / "gl/2026/2026-11.beancount"
    path.write_text(path.read_text().replace(' summary"', ' summary (edited)"'))
    result = run_cli("reconcile", books)
    assert result.exit_code == 1
    assert "gl/2026/2026-11.beancount" in result.output and "sealed file" in result.output


def test_a_late_correction_waits_until_the_open_month_is_posted(poster, books):
    november(poster)
    assert run_cli("close", books, "2026-11").exit_code == 0
    # Posting only through 30 Nov: the correction belongs on 1 Dec, which is not posted yet.
    waiting = poster([use("big", "2026-11-04T10:00:00Z", "a", "autopilot")], "2026-11-30")
    assert waiting.transactions_written == 0
    later = poster([], "2026-12-01")  # no new events: the customer is due all the same
    assert later.transactions_written > 0
    assert "late: TRUE" in (books / "customers/C-big/2026-12.beancount").read_text()
    assert reconcile(books).ok
