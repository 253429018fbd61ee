"""Adjustments (SPEC v3 §2, §3): finance's manual entry for one customer, balanced lines
between its receivable and the chart's bank, bad-debt and income accounts, posted in its
subledger with its reason, reference and approver, and in the GL summary of kind
``adjustment``.  Never the wallet.

Figures are by hand; hashes are the first 12 hex digits of the SHA-256 of the event id.
"""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from builders import (
    D,
    customer_balances,
    gl_balances,
    journal_bytes,
    load_clean,
    money_event,
    read_store,
    replay_clean,
    sub,
    use,
)
from click.testing import CliRunner
from test_finance import check_reports_tie_to_the_gl
from test_worker import Triplets

from ledger_engine.cli import main
from ledger_engine.core import events as ev
from ledger_engine.core.dates import load_zone
from ledger_engine.finance import report
from ledger_engine.post import post
from ledger_engine.reconcile import reconcile
from ledger_engine.reports import list_rejections, wallet_history
from ledger_engine.store import queries
from ledger_engine.trace import trace

UTC = load_zone("UTC")
SR = "Income:AI:Revenue:SuggestedReplies"
RECEIVABLE = "Assets:Receivables:Customers:C-acme"


def adjustment(at: str, lines, id="adj-1", customer="acme", **extra) -> dict:
    return {
        "id": id,
        "type": "adjustment",
        "customer": customer,
        "at": at,
        "lines": [{"account": account, "amount": amount} for account, amount in lines],
        "reason": "October conversations billed outside the engine",
        **extra,
    }


def short_hash(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:12]


REBILL = [("receivable", "12.50"), (SR, "-12.50")]


# ------------------------------------------------------------------------- posting


def test_a_balanced_adjustment_posts_in_the_subledger_and_the_gl_summary_of_its_kind(poster):
    event = adjustment(
        "2026-11-10T09:00:00Z", REBILL, reference="INV-2026-0042", approved_by="cfo@acme.example"
    )
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost"), event], "2026-11-30")
    # The receivable is debited 12.50, suggested-reply revenue credited 12.50: nothing else.
    assert customer_balances(poster.books, "acme") == {RECEIVABLE: D("12.50"), SR: D("-12.50")}
    assert gl_balances(poster.books) == {
        "Assets:Receivables:Customers": D("12.50"),
        SR: D("-12.50"),
    }
    key = f"adjustment.{short_hash('adj-1')}"
    text = (poster.books / "customers/C-acme/2026-11.beancount").read_text()
    assert (
        f'2026-11-10 * "acme" "Adjustment" ^C-acme.2026-11-10.{key} '
        "^gl.2026-11-10.adjustment.r1\n"
        f'  txn: "C-acme.2026-11-10.{key}.1"\n'
        '  customer: "acme"\n'
        '  event: "adj-1"\n'
        '  reason: "October conversations billed outside the engine"\n'
        '  reference: "INV-2026-0042"\n'
        '  approved_by: "cfo@acme.example"\n'
        f"  {RECEIVABLE}  12.50 EUR\n"
        f"  {SR}  -12.50 EUR\n"
    ) in text
    entries, _ = load_clean(poster.books / "ledger.beancount")
    (summary,) = [e for e in entries if getattr(e, "meta", {}).get("kind") == "adjustment"]
    assert summary.date == datetime.date(2026, 11, 10)
    assert summary.narration == "Daily adjustment summary"
    assert {p.account: p.units.number for p in summary.postings} == {
        "Assets:Receivables:Customers": D("12.50"),
        SR: D("-12.50"),
    }
    assert summary.links == {"gl.2026-11-10.adjustment.r1"}
    assert reconcile(poster.books).ok


def test_an_adjustment_without_reference_or_approver_carries_only_its_reason(poster):
    event = adjustment("2026-11-10T09:00:00Z", [("Assets:Bank:Clearing", 3), ("receivable", -3)])
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost"), event], "2026-11-30")
    text = (poster.books / "customers/C-acme/2026-11.beancount").read_text()
    start = text.index('"Adjustment"')
    entry = text[start : text.index("\n\n", start)]
    assert "reason:" in entry and "reference:" not in entry and "approved_by:" not in entry
    # A payment recorded by hand: the bank is debited, the receivable credited (integers).
    assert customer_balances(poster.books, "acme") == {
        "Assets:Bank:Clearing": D("3.00"),
        RECEIVABLE: D("-3.00"),
    }


def test_lines_on_one_account_are_merged_and_every_allowed_account_can_be_named(poster):
    lines = [
        ("receivable", "1.00"),
        ("receivable", "-0.40"),  # nets to 0.60
        ("Expenses:BadDebt", "2.00"),
        ("Income:Wallet:Breakage", "-1.10"),
        ("Income:Channels:Sms", "-0.5"),
        ("Income:AI:Allowance:Included", "0"),  # a zero line posts nothing
        ("Assets:Bank:Clearing", -1),
    ]
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost"),
            adjustment("2026-11-10T09:00:00Z", lines)], "2026-11-30")  # fmt: skip
    assert customer_balances(poster.books, "acme") == {
        RECEIVABLE: D("0.60"),
        "Expenses:BadDebt": D("2.00"),
        "Income:Wallet:Breakage": D("-1.10"),
        "Income:Channels:Sms": D("-0.50"),
        "Assets:Bank:Clearing": D("-1.00"),
    }


def test_an_adjustment_before_any_subscription_is_unknown_customer_and_posts_after_a_cancellation(
    poster,
):
    early = adjustment("2026-11-01T07:00:00Z", REBILL, id="early")
    late = adjustment("2026-11-20T09:00:00Z", [("receivable", "-2.00"), (SR, "2.00")], id="late")
    cancel = {"id": "x1", "type": "cancellation", "customer": "acme", "at": "2026-11-15T08:00:00Z"}
    result = poster([early, sub("acme", "2026-11-01T08:00:00Z", "boost"), cancel, late],
                    "2026-11-30")  # fmt: skip
    assert result.rejected == {"unknown_customer": 1}
    (rejected,) = list_rejections(poster.books)
    assert (rejected["event_id"], rejected["kind"]) == ("early", "rating")
    # Only the credit note after the cancellation is posted.
    assert customer_balances(poster.books, "acme") == {RECEIVABLE: D("-2.00"), SR: D("2.00")}


def test_adjustments_come_after_payments_and_before_write_offs_within_a_day(poster):
    """A write-off is checked against what is open after the day's adjustments: here the
    receivable is only what the adjustment re-invoiced (5.00), and it is written off."""
    day = "2026-11-10T"
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "boost"),
        money_event("write_off", "acme", day + "08:00:00Z", "5.00", id="w1"),
        money_event("payment", "acme", day + "10:00:00Z", "1.00", id="p1"),
        adjustment(day + "09:00:00Z", [("receivable", "6.00"), (SR, "-6.00")]),
    ]
    result = poster(events, "2026-11-30")
    assert result.rejected == {}
    text = (poster.books / "customers/C-acme/2026-11.beancount").read_text()
    narrations = [line.split('"')[3] for line in text.splitlines() if ' * "acme" ' in line]
    assert narrations == ["Payment", "Adjustment", "Write-off"]
    # 6.00 re-invoiced, 1.00 paid, 5.00 written off: nothing open.
    assert customer_balances(poster.books, "acme") == {
        "Assets:Bank:Clearing": D("1.00"),
        SR: D("-6.00"),
        "Expenses:BadDebt": D("5.00"),
    }


def test_what_an_adjustment_invoiced_stays_open_for_a_write_off_of_a_later_night(poster):
    """The open receivable a night resumes from (its checkpoint) counts the adjustments of
    earlier nights: 8.00 invoiced by hand on 10 Nov, 3.00 credited on 11 Nov, 5.00 written
    off on 20 Nov, and 0.01 more refused."""
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost"),
            adjustment(AT, [("receivable", "8.00"), (SR, "-8.00")])], "2026-11-10")  # fmt: skip
    poster([adjustment("2026-11-11T09:00:00Z", [("receivable", "-3"), (SR, "3")], id="cn")],
           "2026-11-11")  # fmt: skip
    result = poster(
        [
            money_event("write_off", "acme", "2026-11-20T08:00:00Z", "5.00", id="w1"),
            money_event("write_off", "acme", "2026-11-21T08:00:00Z", "0.01", id="w2"),
        ],
        "2026-11-30",
    )
    assert result.rejected == {"exceeds_open_receivable": 1}
    assert customer_balances(poster.books, "acme") == {
        SR: D("-5.00"),
        "Expenses:BadDebt": D("5.00"),
    }
    assert post(poster.books, [], datetime.date(2026, 11, 30), full=True).transactions_written == 0


def test_an_adjustment_is_no_wallet_movement_and_the_reports_tie_to_the_gl(poster):
    no_auto = {"auto_top_up": {"enabled": False}}
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "essentials", **no_auto),
        money_event("top_up", "acme", "2026-11-02T08:00:00Z", "10.00", id="t1"),
        money_event("payment", "acme", "2026-11-03T08:00:00Z", "4.00", id="p1"),
        *(use("acme", f"2026-11-04T10:0{i}:00Z", f"c{i}") for i in range(3)),
        # A credit note for a service issue (2.00 off suggested replies), and a payment
        # entered by hand (1.00).
        adjustment("2026-11-05T09:00:00Z", [("receivable", "-2.00"), (SR, "2.00")], id="a1"),
        adjustment("2026-11-06T09:00:00Z", [("Assets:Bank:Clearing", "1"), ("receivable", "-1")],
                   id="a2"),
    ]  # fmt: skip
    poster(events, "2026-11-30")
    check_reports_tie_to_the_gl(poster.books)
    # Receivable: 10.00 invoiced, 4.00 paid, 2.00 credited, 1.00 paid by hand: 3.00 open.
    (aging,) = report(poster.books, "receivables-aging").as_dicts()
    assert (aging["0-30"], aging["total"]) == ("3.00", "3.00")
    # Three included conversations (0.90 gross and allowance) less the 2.00 credit note.
    assert report(poster.books, "revenue-by-customer").rows == [
        ("acme", "2026-11", "suggested_reply", "-1.10", "0.90", "-2.00"),
    ]
    (month,) = report(poster.books, "wallet-rollforward").as_dicts()
    assert (month["bought"], month["closing"]) == ("10.00", "10.00")
    history = wallet_history(poster.books, "acme")
    assert [(line["type"], line["amount"]) for line in history] == [("Top-up", "10.00")]


# ------------------------------------------------------------------ schema checks


def checked(document: dict):
    """The line through check_line and through the checks alone (both must agree)."""
    raw = json.dumps(document).encode()
    line = ev.check_line(raw, "f", 1, "EUR", UTC)
    reference = ev.checked_line(raw, "f", 1, "EUR", UTC)
    assert (line.event, line.content, line.rejection) == (
        reference.event,
        reference.content,
        reference.rejection,
    )
    return line


def rejected(document: dict) -> tuple[str, str]:
    rejection = checked(document).rejection
    assert rejection is not None, document
    return rejection.reason, rejection.field


AT = "2026-11-10T09:00:00Z"


def test_a_valid_adjustment_is_an_event_with_its_lines_in_cents():
    event = checked(adjustment(AT, [("receivable", "-7.5"), (SR, 5), ("Expenses:BadDebt", "2.50")],
                               reference="", approved_by="ops"))  # fmt: skip
    event = event.event
    assert event.type == "adjustment"
    assert event.lines == (("receivable", -750), (SR, 500), ("Expenses:BadDebt", 250))
    assert (event.reason, event.reference, event.approved_by) == (
        "October conversations billed outside the engine",
        "",
        "ops",
    )


def with_lines(*lines) -> dict:
    document = adjustment(AT, [])
    document["lines"] = list(lines)
    return document


def line(account, amount) -> dict:
    return {"account": account, "amount": amount}


BALANCED = [line("receivable", "5.00"), line(SR, "-5.00")]


@pytest.mark.parametrize(
    "document,field",
    [
        (with_lines(line("receivable", "5.00"), line(SR, "-4.99")), "lines"),  # unbalanced
        (with_lines(line("receivable", "5.00")), "lines"),  # one line
        (with_lines(*[line("receivable", "1")] * 10, *[line(SR, "-1")] * 11), "lines"),  # 21
        (with_lines(), "lines"),
        (with_lines(line("Liabilities:Customers:C-acme:Wallet", "5"), line(SR, "-5")), "lines"),
        (with_lines(line("wallet", "5"), line(SR, "-5")), "lines"),
        (with_lines(line("Liabilities:Customers:Wallets", "5"), line(SR, "-5")), "lines"),
        (with_lines(line("Income:AI:Revenue:Playground", "5"), line(SR, "-5")), "lines"),
        (with_lines(line(RECEIVABLE, "5"), line(SR, "-5")), "lines"),  # only `receivable`
        (with_lines(line("Receivable", "5"), line(SR, "-5")), "lines"),
        (with_lines(line("receivable", 5.0), line(SR, -5.0)), "lines"),  # floats
        (with_lines(line("receivable", "5.005"), line(SR, "-5.005")), "lines"),
        (with_lines(line("receivable", "5.00\n"), line(SR, "-5.00")), "lines"),
        (with_lines(line("receivable", "٥"), line(SR, "-5")), "lines"),
        (with_lines(line("receivable", True), line(SR, "-5")), "lines"),
        (with_lines(line("receivable", "0"), line(SR, "0.00")), "lines"),  # all zero
        (with_lines(line("receivable", "5"), line("receivable", "-5")), "lines"),  # no move
        (with_lines(line("receivable\x1b", "5"), line(SR, "-5")), "lines"),
        (with_lines(line(7, "5"), line(SR, "-5")), "lines"),
        (with_lines({"account": "receivable"}, line(SR, "-5")), "lines"),
        (with_lines({**line("receivable", "5"), "memo": "x"}, line(SR, "-5")), "lines"),
        (with_lines(["receivable", "5"], line(SR, "-5")), "lines"),
        ({**adjustment(AT, []), "lines": {"receivable": "5"}}, "lines"),
        ({k: v for k, v in with_lines(*BALANCED).items() if k != "lines"}, "lines"),
        ({k: v for k, v in with_lines(*BALANCED).items() if k != "reason"}, "reason"),
        ({**with_lines(*BALANCED), "reason": ""}, "reason"),
        ({**with_lines(*BALANCED), "reason": "x" * 257}, "reason"),
        ({**with_lines(*BALANCED), "reason": None}, "reason"),
        ({**with_lines(*BALANCED), "reason": "typo\x07"}, "reason"),
        ({**with_lines(*BALANCED), "reason": "typo\n"}, "reason"),
        ({**with_lines(*BALANCED), "reference": "INV\x1b[2J"}, "reference"),
        ({**with_lines(*BALANCED), "reference": "x" * 129}, "reference"),
        ({**with_lines(*BALANCED), "reference": 42}, "reference"),
        ({**with_lines(*BALANCED), "approved_by": "cfo\x7f"}, "approved_by"),
        ({**with_lines(*BALANCED), "approved_by": "x" * 129}, "approved_by"),
    ],
)
def test_a_bad_adjustment_is_an_invalid_field(document, field):
    assert rejected(document) == ("invalid_field", field)


def test_twenty_lines_and_the_longest_strings_are_accepted():
    document = with_lines(*[line("receivable", "1")] * 10, *[line(SR, "-1")] * 10)
    document.update(reason="r" * 256, reference="f" * 128, approved_by="a" * 128)
    assert checked(document).rejection is None


def test_lines_are_checked_before_the_reason():
    document = {k: v for k, v in with_lines(line("receivable", "5")).items() if k != "reason"}
    assert rejected(document) == ("invalid_field", "lines")


def test_a_30_digit_integer_amount_is_larger_than_the_limit_not_a_float():
    huge = "123456789012345678901234567890"
    raw = json.dumps(with_lines(line("receivable", "@"), line(SR, "-5"))).replace('"@"', huge)
    rejection = ev.checked_line(raw.encode(), "f", 1, "EUR", UTC).rejection
    assert (rejection.field, "larger than the limit" in rejection.detail) == ("lines", True)
    raw = json.dumps(with_lines(line("receivable", "@"), line(SR, "-5"))).replace('"@"', "1.5")
    assert "not a float" in ev.checked_line(raw.encode(), "f", 1, "EUR", UTC).rejection.detail


def test_a_bad_adjustment_is_quarantined_and_its_id_stays_free(poster):
    unbalanced = adjustment(AT, [("receivable", "5.00"), (SR, "-4.00")])
    result = poster([sub("acme", "2026-11-01T08:00:00Z", "boost"), unbalanced], "2026-11-30")
    assert result.rejected == {"invalid_field": 1}
    (quarantined,) = list_rejections(poster.books)
    assert (quarantined["kind"], quarantined["field"]) == ("schema", "lines")
    assert "do not sum to zero" in quarantined["detail"]
    # Corrected with the same id, it is accepted.
    poster([adjustment(AT, [("receivable", "5.00"), (SR, "-5.00")])], "2026-11-30")
    assert customer_balances(poster.books, "acme") == {RECEIVABLE: D("5.00"), SR: D("-5.00")}


# ------------------------------------------------------------ store, trace, re-runs


def test_an_adjustment_read_back_from_the_store_is_the_event_that_was_checked(poster):
    document = adjustment(AT, [("receivable", "1.25"), (SR, "-1.25")], reference="R-1")
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost"), document], "2026-11-30")
    in_memory = checked(document).event
    with read_store(poster.books) as db:
        assert queries.event(db, "adj-1") == in_memory
        (read_back,) = [e for e in queries.customer_events(db, ["acme"])["acme"]
                        if e.type == "adjustment"]  # fmt: skip
    assert read_back == in_memory
    assert type(read_back.lines) is tuple and type(read_back.lines[0]) is tuple


def test_the_trace_of_an_adjustment_entry_reaches_its_raw_event_line(poster):
    events = [sub("acme", "2026-11-01T08:00:00Z", "boost"), adjustment(AT, REBILL)]
    poster(events, "2026-11-30")
    lines = (poster.scratch / "events-1.jsonl").read_text().splitlines()
    txn = f"C-acme.2026-11-10.adjustment.{short_hash('adj-1')}.1"
    chain = trace(poster.books, txn)
    (summary,) = chain["gl"]
    assert summary["txn"] == "gl.2026-11-10.adjustment.r1"
    (entry,) = summary["entries"]
    assert (entry["kind"], entry["narration"]) == ("adjustment", "Adjustment")
    (event,) = entry["events"]
    assert (event["id"], event["type"], event["line"]) == ("adj-1", "adjustment", 2)
    assert event["raw"] == lines[1]
    # From the event id to the entry it caused.
    by_event = trace(poster.books, "adj-1")
    assert [e["txn"] for s in by_event["gl"] for e in s["entries"]] == [txn]
    output = CliRunner().invoke(main, ["trace", str(poster.books), "gl.2026-11-10.adjustment.r1"])
    assert output.exit_code == 0 and lines[1] in output.output


def test_reposting_changes_nothing_and_the_books_reconcile(poster):
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "boost"),
        adjustment(AT, REBILL),
        adjustment("2026-11-12T09:00:00Z", [("Assets:Bank:Clearing", "12.50"),
                                            ("receivable", "-12.50")], id="adj-2"),
    ]  # fmt: skip
    poster(events, "2026-11-30")
    before = journal_bytes(poster.books)
    again = poster(events, "2026-11-30")
    assert (again.transactions_written, again.duplicates) == (0, 3)
    assert journal_bytes(poster.books) == before
    full = post(poster.books, [], datetime.date(2026, 11, 30), full=True)
    assert full.transactions_written == 0 and journal_bytes(poster.books) == before
    result = CliRunner().invoke(main, ["reconcile", str(poster.books), "--json"])
    assert result.exit_code == 0, result.output
    replay_clean(poster.books)


def test_a_late_adjustment_for_a_closed_month_posts_in_the_first_open_one(poster):
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost")], "2026-11-30")
    assert CliRunner().invoke(main, ["close", str(poster.books), "2026-11"]).exit_code == 0
    poster([adjustment(AT, REBILL)], "2026-12-02")
    text = (poster.books / "customers/C-acme/2026-12.beancount").read_text()
    assert '2026-12-01 * "acme" "Adjustment"' in text and "original-day: 2026-11-10" in text
    assert customer_balances(poster.books, "acme") == {RECEIVABLE: D("12.50"), SR: D("-12.50")}
    assert reconcile(poster.books).ok


def test_the_three_paths_of_a_night_write_the_same_adjustments(tmp_path):
    """In memory, read back from the store, or in the worker: the same bytes."""
    triplets = Triplets(tmp_path)
    night = [sub("acme", "2026-11-01T08:00:00Z", "boost"), adjustment(AT, REBILL)]
    night += [
        adjustment("2026-11-11T09:00:00Z", [("receivable", -1), (SR, "0.40"),
                                            ("Income:AI:Revenue:Autopilot", "0.60")],
                   id=f"adj-{n}", customer=f"c{n}", reference=f"R{n}")
        for n in range(6)
    ]  # fmt: skip
    night += [sub(f"c{n}", "2026-11-01T08:00:00Z", "pro", id=f"s-c{n}") for n in range(6)]
    triplets.night(night, datetime.date(2026, 11, 30))
    triplets.assert_same()
    for books in triplets.books.values():
        assert customer_balances(books, "c5") == {
            "Assets:Receivables:Customers:C-c5": D("-1.00"),
            SR: D("0.40"),
            "Income:AI:Revenue:Autopilot": D("0.60"),
        }
