"""Re-runs, late events and reclassification (SPEC §4 Reclassification, §6)."""

from __future__ import annotations

import datetime

from builders import D, customer_balances, gl_balances, journal_bytes, read_store, sub, use

from ledger_engine.post import post
from ledger_engine.store import queries


def enterprise(customer="big", **extra):
    return sub(
        customer, "2026-11-01T08:00:00Z", "enterprise", included=1, unit_price="1.00", **extra
    )


def test_rerun_posts_nothing_and_changes_no_byte(poster, books):
    events = [
        enterprise(),
        use("big", "2026-11-02T10:00:00Z", "a"),
        use("big", "2026-11-03T10:00:00Z", "b"),
    ]
    path = poster.write(events)
    first = post(books, [str(path)], datetime.date(2026, 11, 30))
    before = journal_bytes(books)
    second = post(books, [str(path)], datetime.date(2026, 11, 30))
    assert first.transactions_written > 0
    assert (second.transactions_written, second.duplicates, second.accepted) == (0, 3, 0)
    assert journal_bytes(books) == before


def test_reclassification_is_a_correction_not_an_edit(poster, books):
    poster(
        [
            enterprise(),
            use("big", "2026-11-02T10:00:00Z", "a"),
            use("big", "2026-11-03T10:00:00Z", "b"),
        ],
        "2026-11-05",
    )
    november = books / "customers/C-big/2026-11.beancount"
    first_text = november.read_text()
    # Late autopilot event for "a": a becomes charged, its allowance unit goes to "b".
    late = poster([use("big", "2026-11-04T10:00:00Z", "a", "autopilot")], "2026-11-05")
    assert late.transactions_written > 0
    text = november.read_text()
    assert text.startswith(first_text)  # append-only
    added = text[len(first_text) :]
    assert 'corrects: "C-big.2026-11-02.usage.2026-11-01.1"' in added
    assert "^C-big.2026-11-02.usage.2026-11-01 " in added
    assert 'corrects: "C-big.2026-11-03.usage.2026-11-01.1"' in added
    assert customer_balances(books, "big") == {
        "Income:AI:Revenue:SuggestedReplies": D("-1.00"),
        "Income:AI:Revenue:Autopilot": D("-1.00"),
        "Income:AI:Allowance:Included": D("1.00"),
        "Liabilities:Customers:C-big:Wallet": D("-24.00"),
        "Assets:Receivables:Customers:C-big": D("25.00"),
    }
    with read_store(books) as db:
        statuses = {
            c.conversation: c.status
            for customer, _ in queries.customers(db)
            for c in queries.conversations(db, customer)
        }
    assert statuses == {"a": "charged", "b": "included"}


def test_split_runs_give_the_same_balances_as_one_run(tmp_path):
    from builders import Poster, init_books

    events = [enterprise(auto_top_up={"amount": "2.00"})]
    events += [
        use(
            "big",
            f"2026-11-{2 + i % 5:02d}T1{i % 10}:00:00Z",
            f"c{i % 7}",
            "autopilot" if i % 4 == 0 else "suggested_reply",
            id=f"e{i}",
        )
        for i in range(30)
    ]
    one = Poster(init_books(tmp_path / "one"), tmp_path)
    one(events, "2026-11-30")
    many = Poster(init_books(tmp_path / "many"), tmp_path)
    for chunk, through in [
        (events[20:], "2026-11-04"),
        (events[5:20], "2026-11-06"),
        (events[:5], "2026-11-30"),
    ]:
        many(chunk, through)
    for customer in ("big",):
        assert customer_balances(many.books, customer) == customer_balances(one.books, customer)
    assert gl_balances(many.books) == gl_balances(one.books)


def test_events_after_through_wait(poster, books):
    result = poster([enterprise(), use("big", "2026-11-10T10:00:00Z", "later")], "2026-11-05")
    assert result.transactions_written == 0
    assert not (books / "customers/C-big/2026-11.beancount").exists()
    # A later run with no new events posts the waiting one once its day is reached.
    later = poster([], "2026-11-10")
    assert later.transactions_written == 2  # the GL summary and the customer's usage
    assert customer_balances(books, "big")["Income:AI:Allowance:Included"] == D("1.00")
