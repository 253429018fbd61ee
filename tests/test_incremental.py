"""Incremental nights (checkpoints): books posted night by night, each customer derived from
its last checkpoint, are byte for byte the books of the reference derivation (``post
--full``: every customer from its first event, every night), with late events, continued
conversations, plan changes, trials, credits, month closes and crashes between runs."""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path

import pytest
from builders import (
    Crash,
    add_catalogue_version,
    crash_at,
    init_books,
    journal_bytes,
    read_store,
    replay_clean,
    sub,
    use,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_engine.close import close_month
from ledger_engine.core import dates
from ledger_engine.derive import checkpoint_days
from ledger_engine.post import post
from ledger_engine.reconcile import reconcile

START = datetime.date(2026, 11, 1)
DERIVED_TABLES = {
    "conversations": "customer, conversation",
    "periods": "customer, period_start",
    "lots": "customer, lot_id",
    "verdicts": "event_id",
    "customers": "customer",
    "conversation_history": "customer, conversation, run_id",
    "transactions": "txn_id",
    "postings": "txn_id, account",
    "quarantine": "seq",
}


def stamp(day: int, minute: int) -> str:
    moment = datetime.datetime.combine(START, datetime.time()) + datetime.timedelta(
        days=day, minutes=minute
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def derived_rows(books: Path) -> dict[str, list]:
    with read_store(books) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in DERIVED_TABLES.items()
        }


def crash_fast_run(books: Path, path: Path, through: datetime.date, point: int):
    """Runs ``post`` with a failure injected at write point ``point``; returns None when it
    failed (and rolled back), else the result of a run that had fewer write points."""
    try:
        with crash_at(point):
            return post(books, [str(path)], through)
    except Crash:
        return None


class Twins:
    """The same nights posted to two books: incrementally and with ``full=True``."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.fast = init_books(scratch / "fast")
        self.full = init_books(scratch / "full")
        self.files = itertools.count()

    def night(self, events: list[dict], through: datetime.date, crash_at: int = -1) -> None:
        """Posts a night to both books; with ``crash_at``, the incremental books first see
        the night's run fail at that write point (and roll back) before it runs again."""
        path = self.scratch / f"night-{next(self.files)}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
        fast = crash_fast_run(self.fast, path, through, crash_at) if crash_at >= 0 else None
        if fast is None:
            fast = post(self.fast, [str(path)], through)
        full = post(self.full, [str(path)], through, full=True)
        assert fast.as_json() == full.as_json()

    def close(self, month: str) -> None:
        assert (
            close_month(self.fast, month).seal_sha256 == close_month(self.full, month).seal_sha256
        )

    def assert_same(self) -> None:
        assert journal_bytes(self.fast) == journal_bytes(self.full)
        assert derived_rows(self.fast) == derived_rows(self.full)

    def assert_replayed(self) -> None:
        """reconcile --replay is clean on both: the books are their evidence derived again."""
        replay_clean(self.fast)
        replay_clean(self.full)


PLANS = st.sampled_from(["essentials", "boost", "pro", "enterprise", "trial"])


@st.composite
def subscription(draw, customer: str, day: int, number: int) -> dict:
    plan = draw(PLANS)
    extra: dict = {}
    if plan == "enterprise":
        extra = {"included": draw(st.integers(0, 3)), "unit_price": "1.15"}
    if draw(st.booleans()):
        extra["commitment"] = draw(st.sampled_from(["0", "2.00", "9.10"]))
    extra["auto_top_up"] = {
        "enabled": draw(st.booleans()),
        "amount": draw(st.sampled_from(["1.00", "4.00"])),
        "threshold": draw(st.sampled_from(["0.00", "0.50"])),
    }
    interval = None if plan == "trial" else draw(st.sampled_from(["monthly", "annual"]))
    return sub(customer, stamp(day, 5 + number), plan, interval, id=f"s-{customer}-{number}",
               **extra)  # fmt: skip


# What an adjustment's lines name (SPEC v3 §2): the receivable most often, so that the
# write-offs, payments and aging that read it meet adjustments too.
ADJUSTED = st.sampled_from(
    [
        "receivable",
        "Assets:Bank:Clearing",
        "Expenses:BadDebt",
        "Income:AI:Revenue:SuggestedReplies",
        "Income:AI:Allowance:Included",
        "Income:Wallet:Breakage",
        "Income:Channels:Sms",
    ]
)


@st.composite
def adjustment_lines(draw) -> list[dict]:
    """2 or 3 balanced lines on distinct accounts, the receivable among them in most."""
    accounts = draw(st.lists(ADJUSTED, min_size=2, max_size=3, unique=True))
    if "receivable" not in accounts and draw(st.booleans()):
        accounts[0] = "receivable"
    cents = [draw(st.sampled_from([7, -30, 300, -250, 1000])) for _ in accounts[1:]]
    cents.insert(0, -sum(cents))
    return [
        {"account": account, "amount": f"{amount / 100:.2f}"}
        for account, amount in zip(accounts, cents, strict=True)
    ]


def adjustment(customer: str, at: str, event_id: str, lines: list[dict]) -> dict:
    return {"id": event_id, "type": "adjustment", "customer": customer, "at": at,
            "lines": lines, "reason": "generated", "reference": event_id}  # fmt: skip


@st.composite
def happening(draw, customer: str, number: int) -> dict:
    # Often on a day a period begins (the anchor day, the renewals of Dec 1 and Jan 1), where
    # a change of plan starts a second period that day (SPEC v3 §4).
    day = draw(st.one_of(st.integers(0, 75), st.sampled_from([0, 30, 61])))
    minute = draw(st.integers(10, 1439))
    at = stamp(day, minute)
    kind = draw(st.sampled_from(["sr", "sr", "ap", "pg", "money", "money", "plan", "cancel"]))
    event_id = f"{customer}-{number}"
    if kind in ("sr", "ap", "pg"):
        feature = {"sr": "suggested_reply", "ap": "autopilot", "pg": "playground"}[kind]
        conversation = None if kind == "pg" else f"c{draw(st.integers(0, 8))}"
        return use(customer, at, conversation, feature, id=event_id)
    if kind == "plan":
        return {**draw(subscription(customer, day, number)), "id": event_id}
    if kind == "cancel":
        return {"id": event_id, "type": "cancellation", "customer": customer, "at": at}
    money = draw(
        st.sampled_from(
            ["top_up", "payment", "channel_usage", "credit_grant", "write_off", "adjustment"]
        )
    )
    if money == "adjustment":
        return adjustment(customer, at, event_id, draw(adjustment_lines()))
    event = {"id": event_id, "type": money, "customer": customer, "at": at,
             "amount": draw(st.sampled_from(["0.30", "2.50", "7.00"]))}  # fmt: skip
    if money == "channel_usage":
        event["channel"] = draw(st.sampled_from(["sms", "voice"]))
    return event


@st.composite
def seasons(draw):
    """Events of two customers over about 75 days and the nights that bring them: each
    night posts through a later day; an event arrives on the night after its day or later."""
    events = []
    for customer in ("ann", "bob"):
        events.append(draw(subscription(customer, 0, 0)))
        events += [draw(happening(customer, n)) for n in range(1, draw(st.integers(3, 22)))]
    throughs = sorted(set(draw(st.lists(st.integers(0, 80), min_size=2, max_size=7))))
    delays = [draw(st.sampled_from([0, 0, 0, 1, 3, 30])) for _ in events]
    closes = draw(st.booleans())
    crash = (draw(st.integers(0, len(throughs) - 1)), draw(st.integers(-1, 3)))
    return events, throughs, delays, closes, crash


def arrival(event: dict, delay: int, throughs: list[int]) -> int:
    """The index of the night an event arrives on (len(throughs): never)."""
    day = (datetime.date.fromisoformat(event["at"][:10]) - START).days + delay
    return next((i for i, t in enumerate(throughs) if t >= day), len(throughs))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(season=seasons())
def test_incremental_nights_are_the_full_derivation_byte_for_byte(tmp_path_factory, season):
    events, throughs, delays, closes, (crash_night, crash_at) = season
    twins = Twins(tmp_path_factory.mktemp("twins"))
    nights = [arrival(e, d, throughs) for e, d in zip(events, delays, strict=True)]
    closed: set[str] = set()
    for index, offset in enumerate(throughs):
        through = START + datetime.timedelta(days=offset)
        arriving = [e for e, n in zip(events, nights, strict=True) if n == index]
        twins.night(arriving, through, crash_at if index == crash_night else -1)
        month = dates.month_of(START)
        if closes and through >= datetime.date(2026, 12, 1) and month not in closed:
            twins.close(month)  # later events of November become late corrections
            closed.add(month)
        twins.assert_same()
    twins.assert_replayed()


def test_a_late_autopilot_event_reclassifies_a_conversation_of_an_earlier_night(tmp_path):
    """A conversation first seen before the last checkpoint, continued by a late autopilot
    event: its kind changes, and so does the allowance of the conversations after it."""
    twins = Twins(tmp_path)
    first = [sub("ann", stamp(0, 1), "essentials", included=0)]
    first += [use("ann", stamp(2, 60 + i), f"c{i}") for i in range(3)]
    twins.night(first, START + datetime.timedelta(days=3))
    twins.night(
        [use("ann", stamp(5, 60), "c9"), use("ann", stamp(5, 61), "c0", "autopilot")],
        START + datetime.timedelta(days=5),
    )
    twins.assert_same()
    for day in (10, 40, 70):  # across month starts
        twins.night([use("ann", stamp(day, 60), f"d{day}")], START + datetime.timedelta(day))
        twins.assert_same()


def test_a_night_reads_no_event_before_its_checkpoint(tmp_path, monkeypatch):
    """The second night of a customer with history resumes from the checkpoint of the night
    before: it reads only the new night's events."""
    books = init_books(tmp_path / "books")
    history = [sub("ann", stamp(0, 1), "boost")]
    history += [use("ann", stamp(day, 60), f"c{day}") for day in range(1, 40)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(e) + "\n" for e in history))
    post(books, [str(tmp_path / "a.jsonl")], START + datetime.timedelta(days=39))
    (tmp_path / "b.jsonl").write_text(json.dumps(use("ann", stamp(40, 60), "new")) + "\n")
    read: list[int] = []
    from ledger_engine.store import queries

    since = queries.customer_events_since

    def counting(db, customer, day, run_id):
        found, new = since(db, customer, day, run_id)
        read.append(len(found))
        return found, new

    monkeypatch.setattr(queries, "customer_events_since", counting)
    post(books, [str(tmp_path / "b.jsonl")], START + datetime.timedelta(days=40))
    assert read == [1]
    assert reconcile(books).ok


@pytest.mark.parametrize("point", [0, 1, 2])
def test_a_crash_in_an_incremental_night_leaves_the_checkpoints_as_they_were(tmp_path, point):
    twins = Twins(tmp_path)
    twins.night(
        [sub("ann", stamp(0, 1), "pro", auto_top_up={"enabled": True, "amount": "5.00"})]
        + [use("ann", stamp(1, 60 + i), f"c{i}", "autopilot") for i in range(4)],
        START + datetime.timedelta(days=2),
    )
    crashing = [use("ann", stamp(3, 60), "c1"), use("ann", stamp(3, 61), "x", "autopilot")]
    path = tmp_path / "crashing.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in crashing))
    assert crash_fast_run(twins.fast, path, START + datetime.timedelta(days=3), point) is None
    twins.night(crashing, START + datetime.timedelta(days=3))
    twins.assert_same()


def test_checkpoint_days_are_the_day_after_the_night_and_each_month_start():
    day = datetime.date
    assert checkpoint_days(None, day(2026, 12, 2), []) == [day(2026, 12, 3)]
    assert checkpoint_days(day(2026, 10, 20), day(2026, 12, 2), []) == [
        day(2026, 11, 1), day(2026, 12, 1), day(2026, 12, 3),
    ]  # fmt: skip
    assert checkpoint_days(day(2026, 12, 3), day(2026, 12, 2), []) == []


def test_new_rules_are_not_read_through_old_checkpoints(tmp_path):
    """A checkpoint holds what was derived under the rules of its day; after the rules in
    force change (a version appended from a day not yet posted: SPEC v3 §6), a night derives
    from the first event, as the full derivation does, and the new price applies."""
    twins = Twins(tmp_path)
    twins.night(
        [sub("ann", stamp(0, 1), "essentials")]
        + [use("ann", stamp(1, 60 + i), f"c{i}") for i in range(3)],
        START + datetime.timedelta(days=1),
    )
    later = (START + datetime.timedelta(days=2)).isoformat()
    for books in (twins.fast, twins.full):
        add_catalogue_version(books, "2026.2", later, essentials_price_monthly="0.45")
    twins.night([use("ann", stamp(2, 60), "later")], START + datetime.timedelta(days=2))
    twins.assert_same()
    text = (twins.fast / "customers/C-ann/2026-11.beancount").read_text()
    assert 'rules-version: "2026.2"' in text and "-0.45 EUR" in text
