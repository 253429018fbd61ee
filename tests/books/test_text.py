"""The exact Beancount text of each kind of entry, pinned like beancount's own ``load_doc``
tests: the expected journal text is the test's docstring, the written text must equal it, and
beancount's parser must read it back without an error.

The entries come from the real stages (events -> rating -> wallet replay -> planner) on small
histories, so the pins also cover each builder's metadata and posting order.  Customer
``a-1`` has the account segment ``C-a-2D1``; hashes are SHA-256 prefixes (event ids for
top-up and payment keys, sorted conversation ids joined by newlines for the digest).
"""

from __future__ import annotations

import datetime
import functools
import json
import textwrap
from decimal import Decimal
from zoneinfo import ZoneInfo

from beancount import loader
from beancount.parser import parser
from builders import money_event, sub, use

from ledger_engine.books import text
from ledger_engine.core import accounts
from ledger_engine.core.errors import BooksWriteError
from ledger_engine.core.events import check_line
from ledger_engine.core.model import EntryKind, PostedState
from ledger_engine.core.planner import plan_customer, plan_gl_summaries
from ledger_engine.core.rating import rate_customer
from ledger_engine.core.wallet import replay_wallet
from ledger_engine.rules import load_rules

RULES = load_rules()
NOV_1 = datetime.date(2026, 11, 1)
GL_LINK = "gl.2026-11-01.r4"


def journal_doc(test):
    """Calls ``test`` with its own docstring, dedented, as the expected journal text."""
    expected = textwrap.dedent(test.__doc__).strip("\n") + "\n\n"

    def run():
        test(expected)

    run.__name__ = run.__qualname__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def parsed(written: str, expected: str):
    """Asserts the text, re-parses it with beancount and returns the entries."""
    assert written == expected
    entries, errors, _ = parser.parse_string(written)
    assert errors == []
    return entries


def balanced(entry) -> bool:
    return sum(posting.units.number for posting in entry.postings) == 0


# ------------------------------------------------------------------------ the histories


def derive(customer: str, documents, through, posted=None, first_open=None, posted_before=None):
    """Events (builder dicts) -> rating -> replay -> plan, all pure."""
    zone = ZoneInfo("UTC")
    events = [
        check_line(json.dumps(document).encode(), "t.jsonl", number, "EUR", zone).event
        for number, document in enumerate(documents, 1)
    ]
    rating = rate_customer(events, RULES)
    assert rating.verdicts == {}
    wallet = replay_wallet(customer, rating, RULES, through)
    segment = accounts.customer_segment(customer)
    return plan_customer(
        customer, segment, wallet.entries, posted or {}, through, first_open, posted_before
    )[0]


def busy_day_documents() -> list[dict]:
    """A boost customer with a 1.00 commitment from 1 Oct and automatic top-ups of 1.00.
    On 1 Nov: October's commitment expires unused, November's is credited, a 0.50 top-up,
    one included and two autopilot conversations (0.60) and 1.00 of SMS: 1.60 of charges
    against 1.50 available, so one automatic top-up; then a payment of 5.00."""
    return [
        sub(
            "a-1",
            "2026-10-01T08:00:00Z",
            "boost",
            commitment="1.00",
            auto_top_up={"amount": "1.00"},
        ),
        money_event("payment", "a-1", "2026-11-01T00:00:00Z", "5.00", id="pay-1"),
        money_event("top_up", "a-1", "2026-11-01T06:00:00Z", "0.50", id="tu-1"),
        use("a-1", "2026-11-01T09:00:00Z", "c1"),
        use("a-1", "2026-11-01T09:05:00Z", "c2", "autopilot"),
        use("a-1", "2026-11-01T09:10:00Z", "c3", "autopilot"),
        money_event("channel_usage", "a-1", "2026-11-01T10:00:00Z", "1.00", channel="sms"),
    ]


@functools.cache
def busy_day() -> tuple:
    return tuple(derive("a-1", busy_day_documents(), NOV_1))


def of_kind(kind: EntryKind):
    (entry,) = [e for e in busy_day() if e.kind is kind and e.effective_day == NOV_1]
    return entry


def subledger(kind: EntryKind) -> str:
    return text.subledger_text(of_kind(kind), GL_LINK, "EUR")


def posted_state(entries) -> dict:
    return {(e.orig_day, e.key): PostedState(dict(e.postings), e.seq, e.txn_id) for e in entries}


def test_the_busy_day_is_planned_in_entry_kind_order():
    kinds = [e.kind for e in busy_day() if e.effective_day == NOV_1]
    # Every kind but the grant, the adjustment and the write-off.
    left_out = (EntryKind.GRANT, EntryKind.ADJUSTMENT, EntryKind.WRITE_OFF)
    assert kinds == [k for k in EntryKind if k not in left_out]


# ----------------------------------------------------------------- one entry of each kind


@journal_doc
def test_breakage_entry(expected):
    """
    2026-11-01 * "a-1" "Expiry" ^C-a-2D1.2026-11-01.breakage ^gl.2026-11-01.r4
      txn: "C-a-2D1.2026-11-01.breakage.1"
      customer: "a-1"
      lots: "commitment-2026-10-01:1.00"
      Liabilities:Customers:C-a-2D1:Wallet  1.00 EUR
      Income:Wallet:Breakage  -1.00 EUR
    """
    (entry,) = parsed(subledger(EntryKind.BREAKAGE), expected)
    assert balanced(entry) and entry.links == {"C-a-2D1.2026-11-01.breakage", "gl.2026-11-01.r4"}


@journal_doc
def test_commitment_entry(expected):
    """
    2026-11-01 * "a-1" "Commitment" ^C-a-2D1.2026-11-01.commitment ^gl.2026-11-01.r4
      txn: "C-a-2D1.2026-11-01.commitment.1"
      customer: "a-1"
      lot: "commitment-2026-11-01"
      expires: 2026-11-30
      Assets:Receivables:Customers:C-a-2D1  1.00 EUR
      Liabilities:Customers:C-a-2D1:Wallet  -1.00 EUR
    """
    (entry,) = parsed(subledger(EntryKind.COMMITMENT), expected)
    assert balanced(entry) and entry.meta["expires"] == datetime.date(2026, 11, 30)


@journal_doc
def test_top_up_entry(expected):
    """
    2026-11-01 * "a-1" "Top-up" ^C-a-2D1.2026-11-01.top-up.82f0e228ad39 ^gl.2026-11-01.r4
      txn: "C-a-2D1.2026-11-01.top-up.82f0e228ad39.1"
      customer: "a-1"
      event: "tu-1"
      lot: "top-up-82f0e228ad39"
      expires: 2026-12-31
      Assets:Receivables:Customers:C-a-2D1  0.50 EUR
      Liabilities:Customers:C-a-2D1:Wallet  -0.50 EUR
    """
    (entry,) = parsed(subledger(EntryKind.TOP_UP), expected)
    assert balanced(entry)


@journal_doc
def test_automatic_top_up_entry(expected):
    """
    2026-11-01 * "a-1" "Automatic top-up" ^C-a-2D1.2026-11-01.auto-top-up ^gl.2026-11-01.r4
      txn: "C-a-2D1.2026-11-01.auto-top-up.1"
      customer: "a-1"
      lot: "auto-top-up-2026-11-01"
      expires: 2026-12-31
      top-ups: 1
      threshold: "0.00"
      Assets:Receivables:Customers:C-a-2D1  1.00 EUR
      Liabilities:Customers:C-a-2D1:Wallet  -1.00 EUR
    """
    (entry,) = parsed(subledger(EntryKind.AUTO_TOP_UP), expected)
    assert balanced(entry) and entry.meta["top-ups"] == Decimal(1)


@journal_doc
def test_usage_entry(expected):
    """
    2026-11-01 * "a-1" "AI usage" ^C-a-2D1.2026-11-01.usage.2026-11-01 ^gl.2026-11-01.r4
      txn: "C-a-2D1.2026-11-01.usage.2026-11-01.1"
      customer: "a-1"
      period: "2026-11-01/2026-12-01"
      plan: "boost"
      interval: "monthly"
      conversations: 3
      included: 1
      charged: 2
      autopilot: 2
      rules-version: "2026.1"
      conversations-digest: "389ebf709589e5d6"
      lots: "commitment-2026-11-01:0.60"
      Income:AI:Revenue:SuggestedReplies  -0.30 EUR
      Income:AI:Revenue:Autopilot  -0.60 EUR
      Income:AI:Allowance:Included  0.30 EUR
      Liabilities:Customers:C-a-2D1:Wallet  0.60 EUR
    """
    (entry,) = parsed(subledger(EntryKind.USAGE), expected)
    assert balanced(entry) and (entry.meta["plan"], entry.meta["interval"]) == ("boost", "monthly")


@journal_doc
def test_channel_entry(expected):
    """
    2026-11-01 * "a-1" "SMS usage" ^C-a-2D1.2026-11-01.channel.sms ^gl.2026-11-01.r4
      txn: "C-a-2D1.2026-11-01.channel.sms.1"
      customer: "a-1"
      events: 1
      lots: "commitment-2026-11-01:0.40 top-up-82f0e228ad39:0.50 auto-top-up-2026-11-01:0.10"
      Income:Channels:Sms  -1.00 EUR
      Liabilities:Customers:C-a-2D1:Wallet  1.00 EUR
    """
    (entry,) = parsed(subledger(EntryKind.CHANNEL), expected)
    assert balanced(entry)


@journal_doc
def test_payment_entry(expected):
    """
    2026-11-01 * "a-1" "Payment" ^C-a-2D1.2026-11-01.payment.0da3174c441a ^gl.2026-11-01.r4
      txn: "C-a-2D1.2026-11-01.payment.0da3174c441a.1"
      customer: "a-1"
      event: "pay-1"
      Assets:Bank:Clearing  5.00 EUR
      Assets:Receivables:Customers:C-a-2D1  -5.00 EUR
    """
    (entry,) = parsed(subledger(EntryKind.PAYMENT), expected)
    assert balanced(entry)


@journal_doc
def test_trial_usage_entry_has_an_open_period_and_the_rare_counts_in_order(expected):
    """
    2026-11-02 * "t-1" "AI usage" ^C-t-2D1.2026-11-02.usage.2026-11-01 ^gl.2026-11-02.r4
      txn: "C-t-2D1.2026-11-02.usage.2026-11-01.1"
      customer: "t-1"
      period: "2026-11-01/"
      plan: "trial"
      conversations: 2
      included: 0
      charged: 0
      trial: 2
      autopilot: 1
      rules-version: "2026.1"
      conversations-digest: "62863b3073ab1b58"
      Income:AI:Revenue:SuggestedReplies  -0.30 EUR
      Income:AI:Revenue:Autopilot  -0.30 EUR
      Income:AI:Allowance:Trial  0.60 EUR
    """
    documents = [
        sub("t-1", "2026-11-01T08:00:00Z", "trial", None),
        use("t-1", "2026-11-02T10:00:00Z", "c2", "autopilot"),
        use("t-1", "2026-11-02T09:00:00Z", "c1"),
    ]
    (usage,) = derive("t-1", documents, datetime.date(2026, 11, 2))
    (entry,) = parsed(text.subledger_text(usage, "gl.2026-11-02.r4", "EUR"), expected)
    assert balanced(entry)


@journal_doc
def test_adjustment_entry(expected):
    """
    2026-11-03 * "a-1" "Adjustment" ^C-a-2D1.2026-11-03.adjustment.0c9af09d0143 ^gl.2026-11-03.r4
      txn: "C-a-2D1.2026-11-03.adjustment.0c9af09d0143.1"
      customer: "a-1"
      event: "adj-1"
      reason: "Credit note: \\"outage\\" of 2 Nov"
      reference: "CN-7"
      approved_by: "ops@example.com"
      Assets:Receivables:Customers:C-a-2D1  -2.50 EUR
      Income:AI:Revenue:SuggestedReplies  2.00 EUR
      Income:Channels:Sms  0.50 EUR
    """
    lines = [("receivable", "-3.00"), (accounts.REVENUE_SUGGESTED, "2"),
             (accounts.CHANNEL_INCOME["sms"], "0.50"), ("receivable", "0.50")]  # fmt: skip
    documents = [
        sub("a-1", "2026-11-01T08:00:00Z", "boost"),
        {
            "id": "adj-1", "type": "adjustment", "customer": "a-1", "at": "2026-11-03T09:00:00Z",
            "lines": [{"account": account, "amount": amount} for account, amount in lines],
            "reason": 'Credit note: "outage" of 2 Nov', "reference": "CN-7",
            "approved_by": "ops@example.com",
        },
    ]  # fmt: skip
    (adjustment,) = derive("a-1", documents, datetime.date(2026, 11, 3))
    (entry,) = parsed(text.subledger_text(adjustment, "gl.2026-11-03.r4", "EUR"), expected)
    assert balanced(entry)
    assert entry.meta["approved_by"] == "ops@example.com"


# ---------------------------------------------------------------------------- corrections


def reclassified_in_a_closed_month():
    """c9 was posted in October as included; an autopilot event for it arrives in November,
    after October was closed.  Automatic top-up is off, so the charge is invoiced."""
    documents = [
        sub("a-1", "2026-10-01T08:00:00Z", "boost", auto_top_up={"enabled": False}),
        use("a-1", "2026-10-20T10:00:00Z", "c9"),
    ]
    october = derive("a-1", documents, datetime.date(2026, 10, 31))
    documents.append(use("a-1", "2026-11-01T09:00:00Z", "c9", "autopilot"))
    return derive("a-1", documents, NOV_1, posted_state(october), NOV_1, october[-1].orig_day)


@journal_doc
def test_correction_moved_from_a_closed_month(expected):
    """
    2026-11-01 * "a-1" "Correction: AI usage" ^C-a-2D1.2026-10-20.usage.2026-10-01 ^gl.2026-11-01.r5
      txn: "C-a-2D1.2026-10-20.usage.2026-10-01.2"
      corrects: "C-a-2D1.2026-10-20.usage.2026-10-01.1"
      late: TRUE
      original-day: 2026-10-20
      customer: "a-1"
      period: "2026-10-01/2026-11-01"
      plan: "boost"
      interval: "monthly"
      conversations: 1
      included: 0
      charged: 1
      autopilot: 1
      rules-version: "2026.1"
      conversations-digest: "95144b44f2a5ff5a"
      Income:AI:Revenue:Autopilot  -0.30 EUR
      Assets:Receivables:Customers:C-a-2D1  0.30 EUR
      Income:AI:Revenue:SuggestedReplies  0.30 EUR
      Income:AI:Allowance:Included  -0.30 EUR
    """
    (correction,) = reclassified_in_a_closed_month()
    written = text.subledger_text(correction, "gl.2026-11-01.r5", "EUR")
    (entry,) = parsed(written, expected)
    assert balanced(entry) and entry.meta["late"] is True


@journal_doc
def test_new_entry_for_an_already_posted_day(expected):
    """
    2026-11-01 * "a-1" "Payment" ^C-a-2D1.2026-11-01.payment.0da3174c441a ^gl.2026-11-01.r5
      txn: "C-a-2D1.2026-11-01.payment.0da3174c441a.1"
      late-event: TRUE
      customer: "a-1"
      event: "pay-1"
      Assets:Bank:Clearing  5.00 EUR
      Assets:Receivables:Customers:C-a-2D1  -5.00 EUR
    """
    held = posted_state(e for e in busy_day() if e.kind is not EntryKind.PAYMENT)
    (late,) = derive("a-1", busy_day_documents(), NOV_1, held, posted_before=NOV_1)
    parsed(text.subledger_text(late, "gl.2026-11-01.r5", "EUR"), expected)


# --------------------------------------------------------------------------- general ledger


@journal_doc
def test_gl_summary(expected):
    """
    2026-11-01 * "General ledger" "Daily usage summary" ^gl.2026-11-01.usage.r4
      txn: "gl.2026-11-01.usage.r4"
      kind: "usage"
      run: 4
      subledger-transactions: 1
      customers: 1
      Liabilities:Customers:Wallets  0.60 EUR
      Income:AI:Revenue:SuggestedReplies  -0.30 EUR
      Income:AI:Revenue:Autopilot  -0.60 EUR
      Income:AI:Allowance:Included  0.30 EUR
    """
    november = [e for e in busy_day() if e.effective_day == NOV_1]
    summaries = plan_gl_summaries(november, 4)
    # One summary per kind of movement, in the day's posting order.
    assert [s.movement for s in summaries] == [
        "expiry", "commitment", "top-up", "auto-top-up", "usage", "channel", "payment",
    ]  # fmt: skip
    (usage,) = [s for s in summaries if s.movement == "usage"]
    (entry,) = parsed(text.gl_summary_text(usage, "EUR"), expected)
    assert balanced(entry)


@journal_doc
def test_gl_summary_of_a_correction_from_a_closed_month(expected):
    """
    2026-11-01 * "General ledger" "Daily usage summary" ^gl.2026-11-01.usage.r5
      txn: "gl.2026-11-01.usage.r5"
      kind: "usage"
      run: 5
      subledger-transactions: 1
      customers: 1
      late-transactions: 1
      original-days: "2026-10-20"
      Assets:Receivables:Customers  0.30 EUR
      Income:AI:Revenue:SuggestedReplies  0.30 EUR
      Income:AI:Revenue:Autopilot  -0.30 EUR
      Income:AI:Allowance:Included  -0.30 EUR
    """
    (summary,) = plan_gl_summaries(reclassified_in_a_closed_month(), 5)
    (entry,) = parsed(text.gl_summary_text(summary, "EUR"), expected)
    assert balanced(entry)


# ------------------------------------------------------------------------- closing a month


@journal_doc
def test_balance_assertions(expected):
    """
    2026-11-02 balance Liabilities:Customers:C-a-2D1:Wallet  -0.90 EUR
    2026-11-02 balance Assets:Receivables:Customers:C-a-2D1  -1.50 EUR
    2026-11-02 balance Assets:Bank:Clearing  5.00 EUR
    2026-11-02 balance Income:AI:Revenue:SuggestedReplies  -0.30 EUR
    2026-11-02 balance Income:AI:Revenue:Autopilot  -0.60 EUR
    2026-11-02 balance Income:AI:Allowance:Included  0.30 EUR
    2026-11-02 balance Income:AI:Allowance:Trial  0.00 EUR
    2026-11-02 balance Income:AI:Allowance:Granted  0.00 EUR
    2026-11-02 balance Income:Wallet:Breakage  -1.00 EUR
    2026-11-02 balance Income:Channels:Sms  -1.00 EUR
    2026-11-02 balance Income:Channels:Whatsapp  0.00 EUR
    2026-11-02 balance Income:Channels:Voice  0.00 EUR
    2026-11-02 balance Expenses:BadDebt  0.00 EUR
    """
    wallet, receivable = (
        "Liabilities:Customers:C-a-2D1:Wallet",
        "Assets:Receivables:Customers:C-a-2D1",
    )
    totals = {wallet: -90, receivable: -150, "Assets:Bank:Clearing": 500}
    totals |= {"Income:AI:Revenue:SuggestedReplies": -30, "Income:AI:Revenue:Autopilot": -60}
    totals |= {"Income:AI:Allowance:Included": 30, "Income:Wallet:Breakage": -100}
    totals |= {"Income:Channels:Sms": -100}
    names = (wallet, receivable, *accounts.SHARED_ACCOUNTS)
    written = text.balance_assertions(datetime.date(2026, 11, 2), names, totals, "EUR")
    assert len(parsed(written, expected)) == 13
    # The whole subledger of the busy day, with the assertions, loads without an error.
    journal = text.customer_root("a-1", "C-a-2D1", "EUR")
    journal += "".join(text.subledger_text(e, None, "EUR") for e in busy_day()) + written
    assert loader.load_string(journal)[1] == []


@journal_doc
def test_closed_entry(expected):
    """
    2026-11-01 custom "closed" "2026-10"
      files: 9
      seal-sha256: "3c8fce7fbcf30ba66ca69507d5f7ee6259b9a90aef66ecfab8661b46038954d2"
      run: 3
    """
    seal = "3c8fce7fbcf30ba66ca69507d5f7ee6259b9a90aef66ecfab8661b46038954d2"
    meta = [("files", 9), ("seal-sha256", seal), ("run", 3)]
    (entry,) = parsed(text.closed_entry(NOV_1, "2026-10", meta), expected)
    assert (entry.type, entry.values[0].value) == ("closed", "2026-10")


# ------------------------------------------------------------------------ string literals

CONTROL_CHARACTERS = [chr(code) for code in (*range(0x20), 0x7F)]
BEANCOUNT_ESCAPES = "\n\r\t\f\b"  # the control characters beancount's lexer unescapes


def test_quote_never_writes_a_control_character_raw():
    """Every control character is escaped the way beancount's lexer reads it back, or refused
    (beancount's strings have no escape for NUL, ESC, BEL, DEL and the others), never
    written raw; backslashes and quotes round-trip."""
    refused = []
    for character in CONTROL_CHARACTERS:
        value = f'a{character}b \\ "c" \\n'
        try:
            written = text.quote(value)
        except BooksWriteError as error:
            assert f"U+{ord(character):04X}" in str(error)
            refused.append(character)
            continue
        assert not any(ch in written for ch in CONTROL_CHARACTERS), repr(written)
        journal = f"2026-11-01 * {written} {written}\n  Assets:A  1 EUR\n  Assets:B  -1 EUR\n"
        (entry,), errors, _ = parser.parse_string(journal)
        assert errors == [] and entry.payee == entry.narration == value, repr(character)
    assert "".join(refused) == "".join(c for c in CONTROL_CHARACTERS if c not in BEANCOUNT_ESCAPES)
