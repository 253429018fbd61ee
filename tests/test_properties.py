"""Hypothesis properties of posting (issue 2): balance, idempotency, split invariance,
wallets never negative, GL = sum of subledgers."""

from __future__ import annotations

import datetime
import os
from collections import defaultdict
from decimal import Decimal

from builders import (
    Poster,
    balances,
    init_books,
    journal_bytes,
    lots_match_wallets,
    replay_clean,
    wallets_never_negative,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_incremental import adjustment, adjustment_lines

from ledger_engine.core import accounts
from ledger_engine.post import post

CUSTOMERS = ("alpha", "beta")
START = datetime.datetime(2026, 11, 1, 8, tzinfo=datetime.UTC)
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# Minutes (from START, the first subscription) on the days a period begins: the anchor day
# and the monthly renewal on Dec 1 (SPEC v3 §4: a change there starts another period).
PERIOD_START_MINUTES = st.one_of(st.integers(-480, 959), st.integers(43200 - 480, 43200 + 959))


def at(minutes: int) -> str:
    return (START + datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def subscriptions(draw, customer):
    plan = draw(st.sampled_from(["essentials", "boost", "pro", "enterprise", "trial"]))
    event = {
        "id": f"s-{customer}",
        "type": "subscription",
        "customer": customer,
        "at": at(0),
        "plan": plan,
    }
    if plan != "trial":
        event["interval"] = draw(st.sampled_from(["monthly", "annual"]))
    if plan == "enterprise":
        event["included"] = draw(st.integers(0, 3))
        event["unit_price"] = draw(st.sampled_from(["0.50", "1.00", "2.35"]))
    if draw(st.booleans()):
        event["commitment"] = draw(st.sampled_from(["0", "1.00", "5.55"]))
    event["auto_top_up"] = {
        "enabled": draw(st.booleans()),
        "amount": draw(st.sampled_from(["1.00", "2.50", "25.00"])),
        "threshold": draw(st.sampled_from(["0.00", "0.40"])),
    }
    return event


ACTIVITY_KINDS = (
    "sr", "sr", "ap", "pg", "top_up", "channel", "payment", "credit_grant", "write_off",
    "adjustment",
)  # fmt: skip


@st.composite
def activity(draw, customer, index):
    # Within about 40 days, often on a day a period begins (where changes of terms go too).
    minutes = draw(st.one_of(st.integers(1, 60 * 24 * 40), PERIOD_START_MINUTES))
    kind = draw(st.sampled_from(ACTIVITY_KINDS))
    base = {"id": f"{customer}-{index}", "customer": customer, "at": at(minutes)}
    if kind == "adjustment":
        return adjustment(customer, base["at"], base["id"], draw(adjustment_lines()))
    if kind in ("sr", "ap", "pg"):
        feature = {"sr": "suggested_reply", "ap": "autopilot", "pg": "playground"}[kind]
        event = {**base, "type": "ai_usage", "feature": feature}
        if kind != "pg":
            event["conversation"] = f"c{draw(st.integers(0, 6))}"
        return event
    amount = draw(st.sampled_from(["0.07", "0.30", "3.00"]))
    if kind == "channel":
        channel = draw(st.sampled_from(["sms", "whatsapp", "voice"]))
        return {**base, "type": "channel_usage", "channel": channel, "amount": amount}
    event = {**base, "type": kind, "amount": amount}
    if kind == "credit_grant" and draw(st.booleans()):
        event["expires"] = f"2026-11-{draw(st.integers(10, 30)):02d}"  # may be refused (early)
    return event


@st.composite
def change(draw, customer, index, others: list[dict]):
    """A change of terms (SPEC v3 §4): a subscription to another plan or interval, or a
    cancellation, possibly followed at the same instant by a new subscription; at any
    instant, on a day a period begins, or at the instant of another event."""
    where = draw(st.sampled_from(["any", "period start", "same instant"]))
    if where == "same instant" and others:
        moment = draw(st.sampled_from(others))["at"]
    elif where == "period start":
        moment = at(draw(PERIOD_START_MINUTES))
    else:
        moment = at(draw(st.integers(1, 60 * 24 * 40)))
    subscription = {**draw(subscriptions(customer)), "id": f"{customer}-change-{index}",
                    "at": moment}  # fmt: skip
    if draw(st.booleans()):
        for key in ("commitment", "auto_top_up"):  # omitted terms are carried over
            subscription.pop(key, None)
    kind = draw(st.sampled_from(["subscribe", "cancel", "cancel and subscribe"]))
    cancellation = {"id": f"{customer}-cancel-{index}", "type": "cancellation",
                    "customer": customer, "at": moment}  # fmt: skip
    changed = {
        "subscribe": [subscription],
        "cancel": [cancellation],
        "cancel and subscribe": [cancellation, subscription],
    }[kind]
    # Conversations just before and just after it, the same day (one period each side).
    minute = (datetime.datetime.fromisoformat(moment) - START) // datetime.timedelta(minutes=1)
    around = [
        {"id": f"{customer}-around-{index}-{side}", "type": "ai_usage", "customer": customer,
         "at": at(minute + side), "feature": "suggested_reply",
         "conversation": f"c{draw(st.integers(0, 9))}"}
        for side in (-1, 1) if draw(st.booleans())
    ]  # fmt: skip
    return changed + around


@st.composite
def histories(draw):
    events = []
    for customer in CUSTOMERS[: draw(st.integers(1, 2))]:
        events.append(draw(subscriptions(customer)))
        count = draw(st.integers(0, 14))
        own = [draw(activity(customer, i)) for i in range(count)]
        for index in range(draw(st.integers(0, 3))):
            own += draw(change(customer, index, own))
        events += own
    return events


def gl_equals_subledgers(books_dir):
    gl = balances(books_dir / "ledger.beancount")
    summed: dict[str, Decimal] = defaultdict(Decimal)
    for root in books_dir.glob("customers/*/customer.beancount"):
        for account, value in balances(root).items():
            summed[accounts.control_account(account)] += value
    assert gl == {a: v for a, v in summed.items() if v}


@PROPERTY_SETTINGS
@given(events=histories(), cut=st.integers(0, 100), data=st.data())
def test_posting_properties(tmp_path_factory, events, cut, data):
    scratch = tmp_path_factory.mktemp("prop")
    one = Poster(init_books(scratch / "one"), scratch)
    one(events, "2026-12-15")
    # Every transaction balances exactly and every journal loads without errors.
    gl_equals_subledgers(one.books)
    wallets_never_negative(one.books)
    lots_match_wallets(one.books)
    # Re-running the same events posts nothing and changes no byte.
    before = journal_bytes(one.books)
    again = one(events, "2026-12-15")
    assert again.transactions_written == 0 and journal_bytes(one.books) == before
    # The same events over several runs, shuffled, with late arrivals: same balances.
    shuffled = data.draw(st.permutations(events))
    split = cut * len(shuffled) // 100
    many = Poster(init_books(scratch / "many"), scratch)
    many(shuffled[:split], "2026-11-20")
    many(shuffled[split:], "2026-12-15")
    assert balances(many.books / "ledger.beancount") == balances(one.books / "ledger.beancount")
    for root in one.books.glob("customers/*/customer.beancount"):
        assert balances(many.books / root.relative_to(one.books)) == balances(root)
    gl_equals_subledgers(many.books)
    wallets_never_negative(many.books)
    # The reference derivation (every customer from its first event) finds nothing to add,
    # and the books derived again from the stored evidence are these books (--replay).
    for books in (one.books, many.books):
        assert post(books, [], datetime.date(2026, 12, 15), full=True).transactions_written == 0
        replay_clean(books)
