"""The planner (SPEC §6) as a pure function: desired entries and posted state in, new entries
(originals, corrections, reversals) and GL summaries out."""

from __future__ import annotations

import datetime

from ledger_engine.core.model import Entry, EntryKind, NewEntry, PostedState
from ledger_engine.core.planner import plan_customer, plan_gl_summaries

CUSTOMER, SEGMENT = "acme-1", "C-acme-2D1"
WALLET = "Liabilities:Customers:C-acme-2D1:Wallet"
RECEIVABLE = "Assets:Receivables:Customers:C-acme-2D1"
SUGGESTED = "Income:AI:Revenue:SuggestedReplies"
AUTOPILOT = "Income:AI:Revenue:Autopilot"
INCLUDED = "Income:AI:Allowance:Included"
LINK = "C-acme-2D1.2026-10-20.usage.2026-10-01"


def day(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def entry(kind: EntryKind, on: str, postings, detail=None) -> Entry:
    meta = (("customer", CUSTOMER),)
    return Entry(kind, day(on), kind.key(detail), kind.narration(detail), tuple(postings), meta)


def usage(on="2026-10-20", postings=((SUGGESTED, -30), (INCLUDED, 30))) -> Entry:
    return entry(EntryKind.USAGE, on, postings, "2026-10-01")


def posted(amounts: dict, seq=1, link=LINK) -> PostedState:
    return PostedState(amounts, seq, f"{link}.{seq}")


def held(seq: int = 1) -> dict:
    """The books hold the usage of 20 Oct as one included suggested reply."""
    return {(day("2026-10-20"), "usage.2026-10-01"): posted({SUGGESTED: -30, INCLUDED: 30}, seq)}


def plan(desired, posted_=None, through="2026-11-30", first_open=None, posted_before=None):
    return plan_customer(
        CUSTOMER,
        SEGMENT,
        desired,
        posted_ or {},
        day(through),
        first_open and day(first_open),
        posted_before and day(posted_before),
    )


# ------------------------------------------------------------------------------ originals


def test_the_first_posting_of_a_key_is_sequence_one_and_corrects_nothing():
    (new,), deferred = plan([usage()])
    assert deferred is None
    assert (new.seq, new.corrects, new.kind, new.effective_day) == (
        1, None, EntryKind.USAGE, day("2026-10-20"),
    )  # fmt: skip
    assert (new.moved_from_closed_month, new.for_already_posted_day) == (False, False)
    assert (new.link, new.txn_id) == (LINK, LINK + ".1")
    assert new.postings == ((SUGGESTED, -30), (INCLUDED, 30))
    assert (new.narration, new.meta) == ("AI usage", (("customer", CUSTOMER),))


def test_what_the_books_already_hold_is_not_posted_again():
    assert plan([usage()], held()) == ([], None)


def test_entries_after_through_wait():
    assert plan([usage("2026-12-01")], through="2026-11-30") == ([], None)


# ---------------------------------------------------------------------------- corrections


def reclassified() -> Entry:
    """The desired entry once the conversation turned out to be autopilot (no wallet)."""
    return usage(postings=((AUTOPILOT, -30), (RECEIVABLE, 30)))


def test_a_changed_entry_is_corrected_by_the_difference_only():
    have = held()
    (new,), _ = plan([reclassified()], have)
    assert (new.seq, new.corrects, new.txn_id) == (2, LINK + ".1", LINK + ".2")
    assert new.postings == ((AUTOPILOT, -30), (RECEIVABLE, 30), (SUGGESTED, 30), (INCLUDED, -30))
    assert new.narration == "AI usage" and new.kind is EntryKind.USAGE


def test_accounts_that_did_not_change_are_left_out_of_a_correction():
    have = held(seq=3)
    more = usage(postings=((SUGGESTED, -60), (INCLUDED, 30), (WALLET, 30)))
    (new,), _ = plan([more], have)
    assert new.postings == ((SUGGESTED, -30), (WALLET, 30))
    assert (new.seq, new.corrects) == (4, LINK + ".3")


def test_a_posted_key_no_longer_desired_is_reversed():
    link = "C-acme-2D1.2026-11-03.top-up.abc"
    have = {(day("2026-11-03"), "top-up.abc"): posted({RECEIVABLE: 500, WALLET: -500}, 1, link)}
    (new,), _ = plan([], have)
    assert (new.narration, new.kind, new.seq, new.corrects) == (
        "Reversal", EntryKind.TOP_UP, 2, link + ".1",
    )  # fmt: skip
    assert new.postings == ((RECEIVABLE, -500), (WALLET, 500))
    assert new.meta == (("customer", CUSTOMER),)


def test_a_correction_of_a_closed_month_is_dated_on_the_first_open_day():
    have = held()
    (new,), deferred = plan([reclassified()], have, "2026-11-05", "2026-11-01", "2026-11-04")
    assert (new.orig_day, new.effective_day) == (day("2026-10-20"), day("2026-11-01"))
    assert new.moved_from_closed_month is True and deferred is None
    assert new.for_already_posted_day is False  # a correction, not a new key
    assert new.link == LINK  # the link keeps the original day


def test_a_correction_waits_while_the_first_open_day_is_after_through():
    have = held()
    assert plan([reclassified()], have, "2026-10-31", "2026-11-01") == ([], day("2026-11-01"))


def test_a_new_key_for_an_already_posted_day_is_marked():
    desired = [usage("2026-11-04"), usage("2026-11-05")]
    early, late = plan(desired, through="2026-11-05", posted_before="2026-11-04")[0]
    assert (early.orig_day, early.for_already_posted_day) == (day("2026-11-04"), True)
    assert (late.orig_day, late.for_already_posted_day) == (day("2026-11-05"), False)
    assert not plan(desired, through="2026-11-05")[0][0].for_already_posted_day


# ------------------------------------------------------------------------------- ordering


def test_new_entries_follow_effective_day_original_day_then_entry_kind():
    desired = [
        entry(EntryKind.PAYMENT, "2026-11-01", [("Assets:Bank:Clearing", 5), (RECEIVABLE, -5)]),
        entry(EntryKind.CHANNEL, "2026-11-01", [("Income:Channels:Sms", -5), (WALLET, 5)], "sms"),
        entry(EntryKind.TOP_UP, "2026-11-01", [(RECEIVABLE, 5), (WALLET, -5)], "x"),
        entry(EntryKind.BREAKAGE, "2026-11-02", [(WALLET, 5), ("Income:Wallet:Breakage", -5)]),
        entry(EntryKind.BREAKAGE, "2026-11-01", [(WALLET, 5), ("Income:Wallet:Breakage", -5)]),
        reclassified(),  # a correction of 20 Oct, moved to 1 Nov
    ]
    have = held()
    new, _ = plan(desired, have, first_open="2026-11-01")
    assert [(e.effective_day.day, e.key) for e in new] == [
        (1, "usage.2026-10-01"),
        (1, "breakage"),
        (1, "top-up.x"),
        (1, "channel.sms"),
        (1, "payment"),
        (2, "breakage"),
    ]


def test_a_key_of_no_kind_is_posted_after_every_kind_of_its_day():
    postings = ((WALLET, 1), (RECEIVABLE, -1))
    odd = Entry(EntryKind.USAGE, day("2026-11-01"), "zz-other", "Other", postings, ())
    new, _ = plan([odd, entry(EntryKind.PAYMENT, "2026-11-01", [(WALLET, 2), (RECEIVABLE, -2)])])
    assert [(e.key, e.kind) for e in new] == [("payment", EntryKind.PAYMENT), ("zz-other", None)]


# ---------------------------------------------------------------------------- GL summaries


def new_entry(customer: str, on: str, postings, moved_from=None, kind=EntryKind.USAGE):
    key = {EntryKind.USAGE: "usage.2026-11-01", EntryKind.CHANNEL: "channel.sms"}.get(
        kind, kind.prefix
    )
    return NewEntry(
        customer=customer, segment=f"C-{customer}", kind=kind,
        orig_day=day(moved_from or on), key=key, seq=1, effective_day=day(on),
        moved_from_closed_month=moved_from is not None, corrects=None,
        for_already_posted_day=False, narration="AI usage", postings=tuple(postings), meta=(),
    )  # fmt: skip


def test_gl_summaries_sum_customer_accounts_into_control_accounts_in_chart_order():
    wallet_a, wallet_b = "Liabilities:Customers:C-a:Wallet", "Liabilities:Customers:C-b:Wallet"
    receivable_b = "Assets:Receivables:Customers:C-b"
    entries = [
        new_entry("b", "2026-11-02", [("Income:Channels:Sms", -7), (wallet_b, 7)],
                  kind=EntryKind.CHANNEL),
        new_entry("a", "2026-11-01", [(AUTOPILOT, -25), (wallet_a, 25)]),
        new_entry("b", "2026-11-01", [(receivable_b, 25), (wallet_b, -25)],
                  kind=EntryKind.AUTO_TOP_UP),
        new_entry("a", "2026-11-01", [(SUGGESTED, -30), (INCLUDED, 30)]),
    ]  # fmt: skip
    top_up, usage, channel = plan_gl_summaries(entries, 7)
    # One summary per day and kind of movement, the day's kinds in posting order.
    assert [(s.day, s.movement, s.link, s.run_id) for s in (top_up, usage, channel)] == [
        (day("2026-11-01"), "auto-top-up", "gl.2026-11-01.auto-top-up.r7", 7),
        (day("2026-11-01"), "usage", "gl.2026-11-01.usage.r7", 7),
        (day("2026-11-02"), "channel", "gl.2026-11-02.channel.r7", 7),
    ]
    assert top_up.postings == (
        ("Liabilities:Customers:Wallets", -25),
        ("Assets:Receivables:Customers", 25),
    )
    assert top_up.entries == (entries[2],)
    # Suggested replies come before autopilot, as in the chart.
    assert usage.postings == (
        ("Liabilities:Customers:Wallets", 25),
        (SUGGESTED, -30),
        (AUTOPILOT, -25),
        (INCLUDED, 30),
    )
    assert usage.entries == (entries[1], entries[3])
    assert channel.postings == (("Liabilities:Customers:Wallets", 7), ("Income:Channels:Sms", -7))
    assert channel.entries == (entries[0],)
