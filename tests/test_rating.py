"""One scenario per billing rule of SPEC §4, with balances computed by hand.

Balances are read back from the journals with beancount's own loader.  Income is negative
(credit), the wallet liability is negative when it holds money.
"""

from __future__ import annotations

from builders import D, customer_balances, gl_balances, init_books, read_store, sub, use

from ledger_engine.post import post
from ledger_engine.store import queries


def test_essentials_allowance_then_charges(poster, books):
    events = [sub("acme", "2026-11-01T08:00:00Z", "essentials")]
    events += [use("acme", f"2026-11-02T10:{i:02d}:00Z", f"c{i}") for i in range(22)]
    result = poster(events, "2026-11-30")
    assert result.accepted == 23
    # 22 conversations at 0.30 list; 20 included; 2 charged = 0.60, paid by one 25.00 top-up.
    assert customer_balances(books, "acme") == {
        "Income:AI:Revenue:SuggestedReplies": D("-6.60"),
        "Income:AI:Allowance:Included": D("6.00"),
        "Liabilities:Customers:C-acme:Wallet": D("-24.40"),
        "Assets:Receivables:Customers:C-acme": D("25.00"),
    }


def test_repeated_events_of_a_conversation_count_once(poster, books):
    events = [sub("acme", "2026-11-01T08:00:00Z", "boost")]
    events += [use("acme", f"2026-11-02T10:0{i}:00Z", "same", id=f"e{i}") for i in range(5)]
    poster(events, "2026-11-30")
    assert customer_balances(books, "acme") == {
        "Income:AI:Revenue:SuggestedReplies": D("-0.30"),
        "Income:AI:Allowance:Included": D("0.30"),
    }


def test_conversation_with_both_features_is_charged_once_as_autopilot(poster, books):
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "boost"),
        use("acme", "2026-11-02T10:00:00Z", "c1", "suggested_reply"),
        use("acme", "2026-11-02T10:01:00Z", "c1", "autopilot"),
        use("acme", "2026-11-02T10:02:00Z", "c1", "suggested_reply"),
    ]
    poster(events, "2026-11-30")
    assert customer_balances(books, "acme") == {
        "Income:AI:Revenue:Autopilot": D("-0.30"),
        "Liabilities:Customers:C-acme:Wallet": D("-24.70"),
        "Assets:Receivables:Customers:C-acme": D("25.00"),
    }


def test_autopilot_is_charged_even_with_allowance_left_on_pro(poster, books):
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "pro", "annual", auto_top_up={"enabled": False}),
        use("acme", "2026-11-02T10:00:00Z", "a", "autopilot"),
        use("acme", "2026-11-02T10:05:00Z", "s", "suggested_reply"),
    ]
    poster(events, "2026-11-30")
    # Annual price 0.25; no top-up, so the charge is invoiced to the receivable directly.
    assert customer_balances(books, "acme") == {
        "Income:AI:Revenue:Autopilot": D("-0.25"),
        "Income:AI:Revenue:SuggestedReplies": D("-0.25"),
        "Income:AI:Allowance:Included": D("0.25"),
        "Assets:Receivables:Customers:C-acme": D("0.25"),
    }


def test_essentials_rejects_autopilot(poster, books):
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "essentials"),
        use("acme", "2026-11-02T10:00:00Z", "a", "autopilot", id="ap"),
        use("acme", "2026-11-02T10:05:00Z", "s", "suggested_reply"),
    ]
    result = poster(events, "2026-11-30")
    assert result.rejected == {"feature_not_in_plan": 1}
    assert customer_balances(books, "acme") == {
        "Income:AI:Revenue:SuggestedReplies": D("-0.30"),
        "Income:AI:Allowance:Included": D("0.30"),
    }


def test_annual_allowance_and_price(poster, books):
    events = [sub("acme", "2026-01-15T08:00:00Z", "essentials", "annual")]
    events += [
        use("acme", f"2026-03-{1 + i // 20:02d}T10:{i % 20:02d}:00Z", f"c{i}") for i in range(240)
    ]
    events.append(use("acme", "2027-01-14T23:00:00Z", "last-of-year-1"))
    events.append(use("acme", "2027-01-15T01:00:00Z", "first-of-year-2"))
    poster(events, "2027-01-31")
    balances = customer_balances(books, "acme")
    # 242 conversations at 0.25: 240 + 1 included (the second year's first), 1 charged.
    assert balances["Income:AI:Revenue:SuggestedReplies"] == D("-60.50")
    assert balances["Income:AI:Allowance:Included"] == D("60.25")
    assert balances["Assets:Receivables:Customers:C-acme"] == D("25.00")


def test_month_end_anchor_periods(poster, books):
    events = [sub("big", "2026-01-31T08:00:00Z", "enterprise", included=1, unit_price="0.50")]
    for conversation, day in [
        ("a", "02-01"),
        ("b", "02-27"),
        ("c", "02-28"),
        ("d", "03-30"),
        ("e", "03-31"),
    ]:
        events.append(use("big", f"2026-{day}T12:00:00Z", conversation))
    poster(events, "2026-04-30")
    with read_store(books) as db:
        rows = {
            c.conversation: f"{c.period_start.isoformat()} {c.status}"
            for customer, _ in queries.customers(db)
            for c in queries.conversations(db, customer)
        }
    # Periods: 31 Jan -> 28 Feb -> 31 Mar (the anchor day clamped, then restored).
    assert rows == {
        "a": "2026-01-31 included",
        "b": "2026-01-31 charged",
        "c": "2026-02-28 included",
        "d": "2026-02-28 charged",
        "e": "2026-03-31 included",
    }
    balances = customer_balances(books, "big")
    assert balances["Income:AI:Allowance:Included"] == D("1.50")
    assert balances["Income:AI:Revenue:SuggestedReplies"] == D("-2.50")


def test_trial_cap_and_units(poster, books):
    events = [sub("t", "2026-11-01T08:00:00Z", "trial", None)]
    events += [
        use(
            "t",
            f"2026-11-02T08:{i // 60:02d}:{i % 60:02d}Z".replace("Z", "Z"),
            None,
            "playground",
            id=f"pg{i}",
        )
        for i in range(60)
    ]
    events += [use("t", f"2026-11-02T10:00:{i:02d}Z", f"c{i}") for i in range(40)]
    events.append(use("t", "2026-11-02T11:00:00Z", "c-over", id="over"))
    events.append(use("t", "2026-11-02T11:00:01Z", None, "playground", id="pg-over"))
    events.append(use("t", "2026-11-02T12:00:00Z", "c0", "autopilot", id="c0-again"))
    result = poster(events, "2026-11-30")
    assert result.rejected == {"trial_limit_reached": 2}
    # 40 conversations at the monthly list price 0.30, all against the trial allowance;
    # c0's later autopilot event needs no new unit, so c0 is posted as autopilot.
    assert customer_balances(books, "t") == {
        "Income:AI:Revenue:SuggestedReplies": D("-11.70"),
        "Income:AI:Revenue:Autopilot": D("-0.30"),
        "Income:AI:Allowance:Trial": D("12.00"),
    }


def test_playground_is_free_on_paid_plans(poster, books):
    events = [sub("acme", "2026-11-01T08:00:00Z", "boost")]
    events += [
        use("acme", f"2026-11-02T10:0{i}:00Z", None, "playground", id=f"p{i}") for i in range(5)
    ]
    result = poster(events, "2026-11-30")
    assert result.accepted == 6
    assert customer_balances(books, "acme") == {}


def test_plan_change_starts_a_new_period(poster, books):
    events = [sub("acme", "2026-11-01T08:00:00Z", "essentials")]
    events += [use("acme", f"2026-11-02T10:{i:02d}:00Z", f"c{i}") for i in range(20)]
    events.append(sub("acme", "2026-11-10T08:00:00Z", "boost"))
    events.append(use("acme", "2026-11-11T10:00:00Z", "after-upgrade"))
    poster(events, "2026-11-30")
    balances = customer_balances(books, "acme")
    assert balances["Income:AI:Allowance:Included"] == D("6.30")  # 21 included
    assert "Liabilities:Customers:C-acme:Wallet" not in balances


def test_commitment_change_keeps_the_period(poster, books):
    events = [sub("acme", "2026-11-01T08:00:00Z", "essentials", auto_top_up={"enabled": False})]
    events += [use("acme", f"2026-11-02T10:{i:02d}:00Z", f"c{i}") for i in range(20)]
    events.append(
        sub(
            "acme",
            "2026-11-10T08:00:00Z",
            "essentials",
            commitment="0",
            auto_top_up={"enabled": False},
            id="commitment-change",
        )
    )
    events.append(use("acme", "2026-11-11T10:00:00Z", "after-change"))
    poster(events, "2026-11-30")
    balances = customer_balances(books, "acme")
    assert balances["Income:AI:Allowance:Included"] == D("6.00")  # the 21st is charged
    assert balances["Assets:Receivables:Customers:C-acme"] == D("0.30")


def test_enterprise_terms_come_from_the_subscription(poster, books):
    events = [
        sub(
            "big",
            "2026-11-01T08:00:00Z",
            "enterprise",
            "annual",
            included=2,
            unit_price="1.20",
            auto_top_up={"enabled": False},
        )
    ]
    events += [use("big", f"2026-11-02T10:0{i}:00Z", f"c{i}") for i in range(3)]
    events.append(use("big", "2026-11-02T11:00:00Z", "ap", "autopilot"))
    poster(events, "2026-11-30")
    assert customer_balances(books, "big") == {
        "Income:AI:Revenue:SuggestedReplies": D("-3.60"),
        "Income:AI:Revenue:Autopilot": D("-1.20"),
        "Income:AI:Allowance:Included": D("2.40"),
        "Assets:Receivables:Customers:C-big": D("2.40"),
    }


def test_price_follows_the_interval_in_force_on_the_first_event(poster, books):
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "boost", "monthly", auto_top_up={"enabled": False}),
        use("acme", "2026-11-02T10:00:00Z", "m", "autopilot"),
        sub("acme", "2026-11-05T08:00:00Z", "boost", "annual", auto_top_up={"enabled": False}),
        use("acme", "2026-11-06T10:00:00Z", "a", "autopilot"),
        use("acme", "2026-11-07T10:00:00Z", "m", "autopilot", id="m-again"),
    ]
    poster(events, "2026-11-30")
    assert customer_balances(books, "acme")["Income:AI:Revenue:Autopilot"] == D("-0.55")


def test_cancellation_rejects_later_usage(poster, books):
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "boost"),
        use("acme", "2026-11-04T23:59:59Z", "before"),
        {"id": "cancel", "type": "cancellation", "customer": "acme", "at": "2026-11-05T00:00:00Z"},
        # SPEC v3 §2: at one instant the cancellation applies first, so this is after it.
        use("acme", "2026-11-05T00:00:00Z", "same-instant"),
        use("acme", "2026-11-06T10:00:00Z", "late", id="after-cancel"),
    ]
    result = poster(events, "2026-11-30")
    assert result.rejected == {"no_active_subscription": 2}
    assert customer_balances(books, "acme")["Income:AI:Allowance:Included"] == D("0.30")


def test_unknown_customer_is_accepted_once_its_subscription_arrives(poster, books):
    first = poster([use("late-sub", "2026-11-03T10:00:00Z", "c1", id="u1")], "2026-11-30")
    assert first.rejected == {"unknown_customer": 1}
    second = poster([sub("late-sub", "2026-11-01T08:00:00Z", "boost")], "2026-11-30")
    assert second.rejected == {}
    with read_store(books) as db:
        assert queries.verdicts(db) == {}
    assert customer_balances(books, "late-sub")["Income:AI:Allowance:Included"] == D("0.30")


def test_booking_day_is_in_the_books_timezone(tmp_path):
    books_dir = init_books(tmp_path / "books", timezone="Europe/Berlin")
    events = tmp_path / "e.jsonl"
    events.write_text(
        "\n".join(
            [
                '{"id":"s","type":"subscription","customer":"b","at":"2026-11-01T08:00:00Z",'
                '"plan":"boost","interval":"monthly"}',
                '{"id":"u","type":"ai_usage","customer":"b","at":"2026-11-30T23:30:00Z",'
                '"feature":"autopilot","conversation":"x"}',
            ]
        )
        + "\n"
    )
    import datetime

    post(books_dir, [str(events)], datetime.date(2026, 12, 1))
    assert (books_dir / "customers/C-b/2026-12.beancount").exists()
    assert not (books_dir / "customers/C-b/2026-11.beancount").exists()
    assert gl_balances(books_dir)["Income:AI:Revenue:Autopilot"] == D("-0.30")


def test_a_price_change_starts_on_its_day(poster, books):
    rules_path = books / "rules.toml"
    text = rules_path.read_text()
    new_version = (
        text[text.index("\n[[versions]]") :]
        .replace('"2026.1"', '"2026.2"')
        .replace('"2000-01-01"', '"2026-12-01"')
        .replace('price_monthly = "0.30"', 'price_monthly = "0.40"')
    )
    rules_path.write_text(text + "\n" + new_version)
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "boost", auto_top_up={"enabled": False}),
        use("acme", "2026-11-30T10:00:00Z", "before", "autopilot"),
        use("acme", "2026-12-01T10:00:00Z", "after", "autopilot"),
    ]
    poster(events, "2026-12-31")
    assert customer_balances(books, "acme")["Income:AI:Revenue:Autopilot"] == D("-0.70")
    december = (books / "customers/C-acme/2026-12.beancount").read_text()
    assert 'rules-version: "2026.2"' in december
