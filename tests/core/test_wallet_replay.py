"""The credit wallet (SPEC §5) as a pure replay: Rating records in, entries and lots out.

Ratings are built by hand here (terms, charged conversations, wallet events), so these tests
depend on nothing but :func:`replay_wallet` and the catalogue's wallet policy (top-ups valid
to the end of the next calendar month, commitments for one billing month).
"""

from __future__ import annotations

import datetime
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_engine.core.model import Conversation, EntryKind, Event, Lot, Period, Rating, Terms
from ledger_engine.core.wallet import LotBook, replay_wallet
from ledger_engine.rules import load_rules

RULES = load_rules()
CUSTOMER = "w"
WALLET = "Liabilities:Customers:C-w:Wallet"
RECEIVABLE = "Assets:Receivables:Customers:C-w"
AUTOPILOT = "Income:AI:Revenue:Autopilot"


def day(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def terms(on="2026-11-01", commitment=0, auto=False, amount=2500, threshold=0) -> Terms:
    return Terms(
        at=f"{on}T00:00:00.000000Z", day=day(on), plan="boost", interval="monthly",
        anchor=day(on), commitment=commitment, auto_enabled=auto, auto_amount=amount,
        auto_threshold=threshold, included=None, unit_price=None, active=True,
        anchor_at=f"{on}T00:00:00.000000Z", ordinal=1, commitment_anchor=day(on),
    )  # fmt: skip


def charged(name: str, on: str, price=30, period="2026-11-01") -> Conversation:
    """A charged autopilot conversation first seen at noon of ``on``."""
    return Conversation(
        conversation=name, period=period, period_end=None, day=day(on),
        first_at=f"{on}T12:00:00.000000Z", first_event=f"u-{name}", kind="autopilot",
        status="charged", price=price, rules_version="2026.1", events=1,
    )  # fmt: skip


def money(kind: str, id: str, on: str, cents: int, hour=9, channel=None) -> Event:
    at = f"{on}T{hour:02d}:00:00.000000Z"
    return Event(id, kind, CUSTOMER, at, day(on), amount=cents, channel=channel)


def rating(terms_=(), conversations=(), wallet_events=()) -> Rating:
    """A rating of boost-monthly terms: each conversation's period has no allowance."""
    periods = {
        c.period: Period(c.period_start, None, "boost", "monthly", 0, c.period)
        for c in conversations
    }
    return Rating(
        {}, tuple(terms_), tuple(conversations), tuple(periods.values()), tuple(wallet_events)
    )


def replay(rating_: Rating, through: str):
    return replay_wallet(CUSTOMER, rating_, RULES, day(through))


def lot_id(event_id: str) -> str:
    return "top-up-" + hashlib.sha256(event_id.encode()).hexdigest()[:12]


def remainders(result) -> dict[str, int]:
    return {lot.lot_id: lot.remainder for lot in result.lots}


def of_kind(result, kind: EntryKind):
    return [entry for entry in result.entries if entry.kind is kind]


# ------------------------------------------------------------------------------ LotBook


def lot(lot_id: str, credited: str, last_valid: str, cents: int) -> Lot:
    return Lot(lot_id, "top_up", day(credited), day(last_valid), cents, cents)


def test_lotbook_takes_soonest_expiry_then_oldest_then_first_credited():
    book = LotBook()
    book.add(lot("late-expiry", "2026-11-01", "2026-12-31", 100))
    book.add(lot("newer", "2026-11-05", "2026-11-30", 100))
    book.add(lot("older", "2026-11-03", "2026-11-30", 100))
    book.add(lot("older-twin", "2026-11-03", "2026-11-30", 100))
    taken, shortfall = book.consume(day("2026-11-10"), 250)
    assert (taken, shortfall) == ([("older", 100), ("older-twin", 100), ("newer", 50)], 0)
    assert book.available(day("2026-11-10")) == 150
    assert book.available(day("2026-12-01")) == 100  # "newer" is no longer valid


def test_lotbook_reports_the_shortfall_and_skips_expired_lots():
    book = LotBook()
    book.add(lot("gone", "2026-10-01", "2026-10-31", 500))
    book.add(lot("left", "2026-11-01", "2026-12-31", 40))
    assert book.consume(day("2026-11-01"), 100) == ([("left", 40)], 60)
    assert book.consume(day("2026-11-01"), 10) == ([], 10)
    assert book.expire(day("2026-11-01")) == [("gone", 500)]
    assert book.expire(day("2026-11-02")) == []  # emptied lots do not expire again
    assert [(x.lot_id, x.remainder) for x in book.lots()] == [("gone", 0), ("left", 0)]


def test_lotbook_lists_the_lots_credited_since_a_count():
    book = LotBook()
    book.add(lot("a", "2026-11-01", "2026-12-31", 1))
    count = len(book)
    book.add(lot("b", "2026-11-02", "2026-12-31", 2))
    assert [x.lot_id for x in book.credited_since(count)] == ["b"] and len(book) == 2


# ------------------------------------------------------------------------ consumption order


def test_charges_take_the_soonest_expiring_lot_even_when_it_is_newer():
    # Billing months from the 20th.  The top-up of 2 Nov (valid to 31 Dec) is older than the
    # commitment of 20 Nov (valid to 19 Dec); 1.20 of charges take the commitment first.
    result = replay(
        rating(
            [terms("2026-10-20", commitment=100)],
            [charged(f"c{i}", "2026-11-25", period="2026-11-20") for i in range(4)],
            [money("top_up", "t1", "2026-11-02", 300)],
        ),
        "2026-11-30",
    )
    assert remainders(result) == {
        "commitment-2026-10-20": 0,  # expired unused on 20 Nov
        lot_id("t1"): 280,
        "commitment-2026-11-20": 0,
    }
    (usage,) = of_kind(result, EntryKind.USAGE)
    assert dict(usage.meta)["lots"] == f"commitment-2026-11-20:1.00 {lot_id('t1')}:0.20"


def test_equal_expiry_takes_the_older_top_up_first():
    result = replay(
        rating(
            [terms()],
            [charged("a", "2026-11-26"), charged("b", "2026-11-26")],
            [money("top_up", "new", "2026-11-25", 100), money("top_up", "old", "2026-11-02", 50)],
        ),
        "2026-11-30",
    )
    assert remainders(result) == {lot_id("old"): 0, lot_id("new"): 90}


# ------------------------------------------------------------------------ expiry, breakage


def top_up_history(through: str):
    return replay(
        rating(
            [terms()],
            wallet_events=[
                money("top_up", "nov", "2026-11-30", 500, hour=23),
                money("top_up", "dec", "2026-12-01", 700, hour=0),
                money("top_up", "jan", "2027-01-31", 900),
            ],
        ),
        through,
    )


def test_a_top_up_is_valid_to_the_end_of_the_next_calendar_month():
    last_valid = {x.lot_id: x.last_valid for x in top_up_history("2027-01-31").lots}
    assert last_valid == {
        lot_id("nov"): day("2026-12-31"),
        lot_id("dec"): day("2027-01-31"),
        lot_id("jan"): day("2027-02-28"),
    }


def test_breakage_is_posted_the_day_after_the_last_valid_day():
    assert of_kind(top_up_history("2026-12-31"), EntryKind.BREAKAGE) == []
    breakages = of_kind(top_up_history("2027-03-01"), EntryKind.BREAKAGE)
    assert [(e.day.isoformat(), dict(e.meta)["lots"]) for e in breakages] == [
        ("2027-01-01", f"{lot_id('nov')}:5.00"),
        ("2027-02-01", f"{lot_id('dec')}:7.00"),
        ("2027-03-01", f"{lot_id('jan')}:9.00"),
    ]
    assert [e.postings for e in breakages] == [
        ((WALLET, cents), ("Income:Wallet:Breakage", -cents)) for cents in (500, 700, 900)
    ]


# --------------------------------------------------------------------------- commitment


def test_commitment_is_credited_each_billing_month_and_expires_at_its_end():
    result = replay(
        rating(
            [terms("2026-01-31", commitment=1000)],
            [charged("ap", "2026-02-01", period="2026-01-31")],
        ),
        "2026-03-05",
    )
    # Billing months from the 31st: 31 Jan - 27 Feb, 28 Feb - 30 Mar.
    assert [(x.lot_id, x.last_valid, x.amount, x.remainder) for x in result.lots] == [
        ("commitment-2026-01-31", day("2026-02-27"), 1000, 0),
        ("commitment-2026-02-28", day("2026-03-30"), 1000, 1000),
    ]
    feb_28 = [(e.kind, e.postings) for e in result.entries if e.day == day("2026-02-28")]
    assert feb_28 == [
        (EntryKind.BREAKAGE, ((WALLET, 970), ("Income:Wallet:Breakage", -970))),
        (EntryKind.COMMITMENT, ((RECEIVABLE, 1000), (WALLET, -1000))),
    ]


def test_no_commitment_after_cancellation():
    cancelled = terms(commitment=100)._replace(day=day("2026-11-15"), active=False)
    result = replay(rating([terms(commitment=100), cancelled]), "2027-01-31")
    assert [x.lot_id for x in result.lots] == ["commitment-2026-11-01"]


# ------------------------------------------------------------------------ automatic top-up


def one_charge(price: int, auto_terms: Terms, top_up: int = 0):
    events = [money("top_up", "t", "2026-11-01", top_up)] if top_up else []
    return replay(rating([auto_terms], [charged("a", "2026-11-02", price)], events), "2026-11-30")


def test_auto_top_up_posts_the_fewest_top_ups_covering_charges_and_threshold():
    result = one_charge(1200, terms(auto=True, amount=1000, threshold=500))
    # 12.00 charged + 5.00 threshold - 0 available = 17.00: two top-ups of 10.00.
    auto, usage = result.entries
    assert (auto.kind, auto.day, auto.postings) == (
        EntryKind.AUTO_TOP_UP, day("2026-11-02"), ((RECEIVABLE, 2000), (WALLET, -2000)),
    )  # fmt: skip
    assert dict(auto.meta)["top-ups"] == 2 and dict(auto.meta)["threshold"] == "5.00"
    assert usage.postings == ((AUTOPILOT, -1200), (WALLET, 1200))
    assert dict(usage.meta)["lots"] == "auto-top-up-2026-11-02:12.00"
    assert remainders(result) == {"auto-top-up-2026-11-02": 800}


def test_no_auto_top_up_while_the_balance_covers_charges_and_threshold():
    exact = one_charge(30, terms(auto=True, amount=1000, threshold=70), top_up=100)
    assert of_kind(exact, EntryKind.AUTO_TOP_UP) == []
    short = one_charge(30, terms(auto=True, amount=1000, threshold=71), top_up=100)
    (auto,) = of_kind(short, EntryKind.AUTO_TOP_UP)
    assert auto.postings == ((RECEIVABLE, 1000), (WALLET, -1000))


def test_channel_charges_count_towards_the_auto_top_up():
    result = replay(
        rating(
            [terms(auto=True, amount=100)],
            [charged("a", "2026-11-02")],
            [money("channel_usage", "v", "2026-11-02", 250, channel="voice")],
        ),
        "2026-11-30",
    )
    (auto,) = of_kind(result, EntryKind.AUTO_TOP_UP)
    assert dict(auto.meta)["top-ups"] == 3  # 0.30 + 2.50 = 2.80 -> 3 x 1.00
    (channel,) = of_kind(result, EntryKind.CHANNEL)
    assert channel.key == "channel.voice" and channel.narration == "Voice usage"
    assert channel.postings == (("Income:Channels:Voice", -250), (WALLET, 250))


def test_without_auto_top_up_the_shortfall_is_invoiced_and_the_wallet_stays_at_zero():
    result = one_charge(235, terms(auto=False), top_up=100)
    usage = of_kind(result, EntryKind.USAGE)[0]
    assert usage.postings == ((AUTOPILOT, -235), (WALLET, 100), (RECEIVABLE, 135))
    assert sum(c for e in result.entries for a, c in e.postings if a == WALLET) == 0
    assert remainders(result) == {lot_id("t"): 0}


def test_nothing_in_the_wallet_means_no_lots_metadata():
    usage = one_charge(30, terms(auto=False)).entries[0]
    assert usage.postings == ((AUTOPILOT, -30), (RECEIVABLE, 30))
    assert "lots" not in dict(usage.meta)


# -------------------------------------------------------------------------- day order


def busy_day_rating() -> Rating:
    """On 1 Nov: last month's commitment expires, this month's is credited, a top-up, charges
    that need an automatic top-up, a channel charge and a payment (posted first in time)."""
    return rating(
        [terms("2026-10-01", commitment=100, auto=True, amount=100)],
        [charged("a", "2026-11-01"), charged("b", "2026-11-01")],
        [
            money("payment", "pay", "2026-11-01", 500, hour=0),
            money("channel_usage", "sms", "2026-11-01", 100, hour=1, channel="sms"),
            money("top_up", "tu", "2026-11-01", 50, hour=2),
        ],
    )


def test_a_days_entries_follow_the_entry_kind_order():
    result = replay(busy_day_rating(), "2026-11-01")
    assert [(e.day.isoformat(), e.kind) for e in result.entries] == [
        ("2026-10-01", EntryKind.COMMITMENT),
        ("2026-11-01", EntryKind.BREAKAGE),
        ("2026-11-01", EntryKind.COMMITMENT),
        ("2026-11-01", EntryKind.TOP_UP),
        ("2026-11-01", EntryKind.AUTO_TOP_UP),
        ("2026-11-01", EntryKind.USAGE),
        ("2026-11-01", EntryKind.CHANNEL),
        ("2026-11-01", EntryKind.PAYMENT),
    ]
    ranks = [e.kind.rank for e in result.entries[1:]]
    assert ranks == sorted(set(ranks))  # strictly in EntryKind order


def test_the_busy_day_consumes_and_leaves_what_was_computed_by_hand():
    result = replay(busy_day_rating(), "2026-11-01")
    # Available 1.00 + 0.50 < 0.60 + 1.00 of charges: one automatic top-up of 1.00.
    usage, channel = of_kind(result, EntryKind.USAGE)[0], of_kind(result, EntryKind.CHANNEL)[0]
    assert dict(usage.meta)["lots"] == "commitment-2026-11-01:0.60"
    assert dict(channel.meta)["lots"] == (
        f"commitment-2026-11-01:0.40 {lot_id('tu')}:0.50 auto-top-up-2026-11-01:0.10"
    )
    assert remainders(result)["auto-top-up-2026-11-01"] == 90
    assert sum(c for e in result.entries for a, c in e.postings if a == WALLET) == -90


# ---------------------------------------------------------------------------- property

START = datetime.date(2026, 11, 1)


@st.composite
def histories(draw):
    auto = draw(st.booleans())
    wallet_terms = terms(
        commitment=draw(st.sampled_from([0, 0, 100, 555])),
        auto=auto,
        amount=draw(st.sampled_from([100, 250, 2500])),
        threshold=draw(st.sampled_from([0, 40])),
    )
    conversations, events = [], []
    for index in range(draw(st.integers(0, 25))):
        on = (START + datetime.timedelta(days=draw(st.integers(0, 90)))).isoformat()
        what = draw(st.sampled_from(["top_up", "channel_usage", "ai", "payment"]))
        cents = draw(st.integers(1, 3000))
        if what == "ai":
            conversations.append(charged(f"c{index}", on, price=cents))
        else:
            channel = "sms" if what == "channel_usage" else None
            events.append(money(what, f"e{index}", on, cents, hour=index % 24, channel=channel))
    conversations.sort(key=lambda c: c.first_at)
    return auto, rating([wallet_terms], conversations, events)


@settings(max_examples=150, deadline=None)
@given(histories())
def test_the_wallet_is_never_overdrawn_and_its_lots_hold_its_balance(history):
    auto, rating_ = history
    result = replay(rating_, "2027-03-31")
    balance = 0
    for entry in result.entries:
        assert sum(cents for _, cents in entry.postings) == 0, entry
        balance += sum(cents for account, cents in entry.postings if account == WALLET)
        assert balance <= 0, entry  # a debit balance would be an overdrawn wallet
        if auto and entry.kind in (EntryKind.USAGE, EntryKind.CHANNEL):
            assert RECEIVABLE not in dict(entry.postings), entry  # top-ups cover charges
    assert all(0 <= x.remainder <= x.amount for x in result.lots)
    assert sum(x.remainder for x in result.lots) == -balance
    order = [(e.day, e.kind.rank) for e in result.entries]
    assert order == sorted(order)
