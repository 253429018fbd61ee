"""Billing on every edge (SPEC v3 §2, §4, §5): plan changes at an instant, on the anchor day
and on a renewal day; the order of events at one instant; terms carried over by a later
subscription; commitments that keep their anchor.  One scenario per defect of the billing
red team's review, the figures worked out by hand in each test (essentials 20 a month or
240 a year, boost 50 / 600, pro 100 / 1,200; 0.30 a conversation monthly, 0.25 annual;
automatic top-ups of 25.00 at threshold 0.00 unless the subscription says otherwise).

Income is negative in Beancount, the wallet liability negative when it holds money.
"""

from __future__ import annotations

import datetime

import pytest
from builders import D, customer_balances, read_store, sub, use

from ledger_engine.reconcile import reconcile
from ledger_engine.store import queries

SR = "Income:AI:Revenue:SuggestedReplies"
INCLUDED = "Income:AI:Allowance:Included"
TRIAL = "Income:AI:Allowance:Trial"
BREAKAGE = "Income:Wallet:Breakage"


def wallet(customer: str) -> str:
    return f"Liabilities:Customers:C-{customer}:Wallet"


def receivable(customer: str) -> str:
    return f"Assets:Receivables:Customers:C-{customer}"


def conversations(customer: str, first: datetime.datetime, count: int, prefix: str):
    """``count`` suggested-reply conversations, one a second from ``first``."""
    return [
        use(customer, (first + datetime.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            f"{prefix}{i}")
        for i in range(count)
    ]  # fmt: skip


def cancel(customer: str, at: str, id: str | None = None) -> dict:
    return {"id": id or f"cancel-{customer}-{at}", "type": "cancellation", "customer": customer,
            "at": at}  # fmt: skip


def usage_entries(books, customer: str) -> list[dict]:
    """The usage transactions of a customer's subledger: their key detail, period, plan,
    interval and counts, from beancount's own loader."""
    from builders import customer_root, load_clean

    entries, _ = load_clean(customer_root(books, customer))
    found = []
    for entry in entries:
        if getattr(entry, "narration", None) not in ("AI usage", "Correction: AI usage"):
            continue
        meta = entry.meta
        found.append(
            {
                "day": entry.date.isoformat(),
                "period": meta["period"],
                "plan": meta.get("plan"),
                "interval": meta.get("interval"),
                "included": meta["included"],
                "charged": meta["charged"],
                "trial": meta.get("trial", 0),
            }
        )
    return found


ANCHOR = datetime.datetime(2026, 3, 2, 7, tzinfo=datetime.UTC)  # 2026-03-02T07:00Z


def five_then_change(customer: str, first: tuple, second: tuple, after: int):
    """Five conversations under the first subscription, a change of plan or interval two
    hours later on the anchor day itself, then ``after`` conversations under the second."""
    events = [sub(customer, "2026-03-02T07:00:00Z", *first, id=f"{customer}-s1")]
    events += conversations(customer, ANCHOR + datetime.timedelta(minutes=10), 5, "before")
    events.append(sub(customer, "2026-03-02T09:00:00Z", *second, id=f"{customer}-s2"))
    events += conversations(customer, ANCHOR + datetime.timedelta(hours=3), after, "after")
    return events


# ------------------------------------------------------------- defect 2: the anchor day


def test_upgrade_on_the_anchor_day_gets_the_new_plans_whole_allowance(poster, books):
    poster(five_then_change("up", ("essentials",), ("pro",), 30), "2026-03-31")
    # 5 essentials + 30 pro, all included: 35 x 0.30 = 10.50 gross and allowance.
    assert customer_balances(books, "up") == {SR: D("-10.50"), INCLUDED: D("10.50")}
    assert [(e["period"], e["plan"], e["included"]) for e in usage_entries(books, "up")] == [
        ("2026-03-02/2026-04-02", "essentials", 5),
        ("2026-03-02.2/2026-04-02", "pro", 30),
    ]


def test_downgrade_on_the_anchor_day_gets_only_the_new_plans_allowance(poster, books):
    poster(five_then_change("down", ("pro",), ("essentials",), 30), "2026-03-31")
    # 5 pro included; essentials: 20 included, 10 charged = 3.00, paid by one 25.00 top-up.
    assert customer_balances(books, "down") == {
        SR: D("-10.50"),
        INCLUDED: D("7.50"),
        wallet("down"): D("-22.00"),
        receivable("down"): D("25.00"),
    }


def test_monthly_to_annual_on_the_anchor_day(poster, books):
    events = five_then_change("ann", ("essentials", "monthly"), ("essentials", "annual"), 250)
    poster(events, "2026-03-31")
    # 5 monthly at 0.30 included (1.50); annual: 240 included and 10 charged at 0.25:
    # gross 1.50 + 62.50 = 64.00, included 1.50 + 60.00 = 61.50, charged 2.50 (one top-up).
    assert customer_balances(books, "ann") == {
        SR: D("-64.00"),
        INCLUDED: D("61.50"),
        wallet("ann"): D("-22.50"),
        receivable("ann"): D("25.00"),
    }


def test_annual_to_monthly_on_the_anchor_day(poster, books):
    events = five_then_change("mon", ("essentials", "annual"), ("essentials", "monthly"), 100)
    poster(events, "2026-03-31")
    # 5 annual at 0.25 included (1.25); monthly: 20 included, 80 charged at 0.30 = 24.00
    # (one top-up of 25.00): gross 1.25 + 30.00 = 31.25, included 1.25 + 6.00 = 7.25.
    assert customer_balances(books, "mon") == {
        SR: D("-31.25"),
        INCLUDED: D("7.25"),
        wallet("mon"): D("-1.00"),
        receivable("mon"): D("25.00"),
    }


def test_pro_monthly_to_annual_on_the_anchor_day_includes_the_year(poster, books):
    events = five_then_change("year", ("pro", "monthly"), ("pro", "annual"), 0)
    start = datetime.datetime(2026, 3, 3, 9, tzinfo=datetime.UTC)
    for week in range(50):  # 1,200 conversations over the annual period, 24 a week
        first = start + datetime.timedelta(weeks=week)
        events += conversations("year", first, 24, f"w{week}-")
    poster(events, "2027-03-01")
    # 5 monthly (1.50) + 1,200 annual at 0.25 (300.00), every one included.
    assert customer_balances(books, "year") == {SR: D("-301.50"), INCLUDED: D("301.50")}


def test_cancel_and_subscribe_again_on_the_anchor_day_starts_a_fresh_period(poster, books):
    events = [sub("re", "2026-03-02T07:00:00Z", "essentials", id="re-s1")]
    events += conversations("re", ANCHOR + datetime.timedelta(minutes=10), 5, "before")
    events.append(cancel("re", "2026-03-02T08:00:00Z"))
    events.append(sub("re", "2026-03-02T09:00:00Z", "essentials", id="re-s2"))
    events += conversations("re", ANCHOR + datetime.timedelta(hours=3), 20, "after")
    poster(events, "2026-03-31")
    # 5 in the first period, 20 in the second: all 25 included (7.50), nothing invoiced.
    assert customer_balances(books, "re") == {SR: D("-7.50"), INCLUDED: D("7.50")}


# ----------------------------------------------------------- defect 1: a renewal day

RENEWAL_DAY = [
    sub("w1", "2026-01-10T07:00:00Z", "essentials", id="w-s1"),
    use("w1", "2026-02-10T08:00:00Z", "before", id="w-u1"),
    sub("w1", "2026-02-10T09:00:00Z", "pro", id="w-s2"),
    use("w1", "2026-02-10T10:00:00Z", "after", id="w-u2"),
]
BYSTANDER = [
    sub("other", "2026-01-05T07:00:00Z", "boost", id="o-s1"),
    use("other", "2026-02-11T08:00:00Z", "x", id="o-u1"),
]


def test_a_plan_change_on_a_renewal_day_in_one_run(poster, books):
    poster(RENEWAL_DAY + BYSTANDER, "2026-02-28")
    # "before" is in the renewed essentials period, "after" in the new pro period: both
    # included; the other customer is posted too.
    assert customer_balances(books, "w1") == {SR: D("-0.60"), INCLUDED: D("0.60")}
    assert customer_balances(books, "other") == {SR: D("-0.30"), INCLUDED: D("0.30")}
    assert [(e["period"], e["plan"]) for e in usage_entries(books, "w1")] == [
        ("2026-02-10/2026-03-10", "essentials"),
        ("2026-02-10.2/2026-03-10", "pro"),
    ]
    with read_store(books) as db:
        periods = db.execute(
            "SELECT period_start, period_end, plan, included FROM periods WHERE customer = 'w1' "
            "ORDER BY period_start"
        ).fetchall()
    assert periods == [
        ("2026-02-10", "2026-03-10", "essentials", 20),
        ("2026-02-10.2", "2026-03-10", "pro", 100),
    ]
    assert reconcile(books).ok


def test_a_plan_change_on_a_renewal_day_in_two_runs(poster, books):
    poster(RENEWAL_DAY[:2] + BYSTANDER, "2026-02-10")
    poster(RENEWAL_DAY[2:], "2026-02-28")  # the change and the later conversation arrive late
    assert customer_balances(books, "w1") == {SR: D("-0.60"), INCLUDED: D("0.60")}
    assert reconcile(books).ok


def test_annual_to_monthly_on_the_annual_renewal_date(poster, books):
    poster(
        [
            sub("a", "2025-03-01T07:00:00Z", "essentials", "annual", id="a-s1"),
            use("a", "2026-03-01T08:00:00Z", "before"),
            sub("a", "2026-03-01T09:00:00Z", "essentials", "monthly", id="a-s2"),
            use("a", "2026-03-01T10:00:00Z", "after"),
        ],
        "2026-03-31",
    )
    # The renewed annual period (0.25) and the new monthly one (0.30): both included.
    assert customer_balances(books, "a") == {SR: D("-0.55"), INCLUDED: D("0.55")}


def test_a_jan_31_anchor_changing_plan_on_feb_28(poster, books):
    poster(
        [
            sub("j", "2026-01-31T07:00:00Z", "essentials", id="j-s1"),
            use("j", "2026-02-28T08:00:00Z", "before"),
            sub("j", "2026-02-28T09:00:00Z", "boost", id="j-s2"),
            use("j", "2026-02-28T10:00:00Z", "after"),
        ],
        "2026-03-31",
    )
    assert customer_balances(books, "j") == {SR: D("-0.60"), INCLUDED: D("0.60")}
    # The essentials period renewed on Feb 28 (clamped) runs to Mar 31; boost to Mar 28.
    assert [(e["period"], e["plan"]) for e in usage_entries(books, "j")] == [
        ("2026-02-28/2026-03-31", "essentials"),
        ("2026-02-28.2/2026-03-28", "boost"),
    ]


def test_trial_and_paid_periods_starting_on_one_day_get_their_own_entries(poster, books):
    events = [sub("t", "2026-03-02T07:00:00Z", "trial", None, id="t-s1")]
    events += conversations("t", ANCHOR + datetime.timedelta(minutes=5), 3, "trial")
    events.append(sub("t", "2026-03-02T12:00:00Z", "essentials", id="t-s2"))
    events += conversations("t", ANCHOR + datetime.timedelta(hours=6), 2, "paid")
    poster(events, "2026-03-31")
    # 3 trial conversations (0.90 against Trial), 2 included on essentials (0.60).
    assert customer_balances(books, "t") == {SR: D("-1.50"), TRIAL: D("0.90"), INCLUDED: D("0.60")}
    assert usage_entries(books, "t") == [
        {"day": "2026-03-02", "period": "2026-03-02/", "plan": "trial", "interval": None,
         "included": 0, "charged": 0, "trial": 3},
        {"day": "2026-03-02", "period": "2026-03-02.2/2026-04-02", "plan": "essentials",
         "interval": "monthly", "included": 2, "charged": 0, "trial": 0},
    ]  # fmt: skip


# -------------------------------------------------- defect 4: events at the same instant


def test_a_cancellation_and_a_subscription_at_one_instant_are_a_plan_switch(poster, books):
    result = poster(
        [
            sub("s", "2026-03-01T07:00:00Z", "essentials", id="s-1"),
            # "a-switch" sorts before "z-cancel" by id; the cancellation still comes first.
            cancel("s", "2026-03-10T09:00:00Z", id="z-cancel"),
            sub("s", "2026-03-10T09:00:00Z", "boost", id="a-switch"),
            use("s", "2026-03-11T10:00:00Z", "later", id="s-u1"),
        ],
        "2026-03-31",
    )
    assert result.rejected == {}
    assert customer_balances(books, "s") == {SR: D("-0.30"), INCLUDED: D("0.30")}
    assert [e["plan"] for e in usage_entries(books, "s")] == ["boost"]


# ------------------------------------------------------------ points SPEC v3 decides


def test_a_later_subscription_keeps_automatic_top_up_off(poster, books):
    events = [sub("off", "2026-03-01T07:00:00Z", "essentials", auto_top_up={"enabled": False})]
    events.append(sub("off", "2026-03-05T07:00:00Z", "boost", id="off-upgrade"))  # says nothing
    events += conversations("off", datetime.datetime(2026, 3, 6, 9, tzinfo=datetime.UTC), 60, "c")
    poster(events, "2026-03-31")
    # Boost: 50 included, 10 charged = 3.00 invoiced directly (top-up still off).
    assert customer_balances(books, "off") == {
        SR: D("-18.00"),
        INCLUDED: D("15.00"),
        receivable("off"): D("3.00"),
    }


def test_a_later_subscription_that_changes_only_the_top_up_amount_keeps_the_commitment(
    poster, books
):
    poster(
        [
            sub("k", "2026-03-01T08:00:00Z", "essentials", commitment="30.00", id="k-1"),
            sub("k", "2026-03-15T08:00:00Z", "essentials", auto_top_up={"amount": "10.00"},
                id="k-2"),
        ],
        "2026-04-30",
    )  # fmt: skip
    # Commitments of 30.00 on Mar 1 and Apr 1; March's expires unused on Apr 1 (breakage).
    assert customer_balances(books, "k") == {
        receivable("k"): D("60.00"),
        BREAKAGE: D("-30.00"),
        wallet("k"): D("-30.00"),
    }


def test_a_partial_auto_top_up_object_keeps_the_other_settings(poster, books):
    events = [
        sub("p", "2026-03-01T07:00:00Z", "essentials",
            auto_top_up={"enabled": True, "amount": "5.00", "threshold": "20.00"}, id="p-1"),
        sub("p", "2026-03-02T07:00:00Z", "essentials", auto_top_up={"amount": "10.00"}, id="p-2"),
    ]  # fmt: skip
    events += conversations("p", datetime.datetime(2026, 3, 3, 9, tzinfo=datetime.UTC), 21, "c")
    poster(events, "2026-03-31")
    # One conversation charged (0.30) + the threshold 20.00 kept from p-1 = 20.30 needed:
    # three top-ups of the new amount 10.00.
    assert customer_balances(books, "p")[receivable("p")] == D("30.00")


def test_a_re_subscription_after_a_cancellation_takes_the_defaults(poster, books):
    events = [
        sub("r", "2026-03-01T07:00:00Z", "essentials", commitment="10.00",
            auto_top_up={"enabled": False}, id="r-1"),
        cancel("r", "2026-03-03T07:00:00Z"),
        sub("r", "2026-03-05T07:00:00Z", "essentials", id="r-2"),
    ]  # fmt: skip
    events += conversations("r", datetime.datetime(2026, 3, 6, 9, tzinfo=datetime.UTC), 21, "c")
    poster(events, "2026-03-31")
    # 10.00 committed on Mar 1 only (the new terms have none); the 21st conversation is
    # charged from an automatic top-up of 25.00 (on again by default); March 1's lot pays
    # for it first (it expires sooner).
    balances = customer_balances(books, "r")
    assert balances[receivable("r")] == D("10.00")
    assert balances[wallet("r")] == D("-9.70")


def test_an_upgrade_mid_month_keeps_the_commitment_anchor(poster, books):
    poster(
        [
            sub("m", "2026-01-01T08:00:00Z", "essentials", commitment="20.00", id="m-1"),
            sub("m", "2026-01-25T08:00:00Z", "pro", id="m-2"),  # commitment carried over
        ],
        "2026-02-28",
    )
    # Commitment months from Jan 1: Jan 1 and Feb 1 only (no second one on Jan 25).
    # January's 20.00 expires unused on Feb 1.
    assert customer_balances(books, "m") == {
        receivable("m"): D("40.00"),
        BREAKAGE: D("-20.00"),
        wallet("m"): D("-20.00"),
    }
    with read_store(books) as db:
        assert sorted(lot.lot_id for lot in queries.lots(db, "m")) == [
            "commitment-2026-01-01",
            "commitment-2026-02-01",
        ]


def test_a_changed_commitment_applies_from_the_next_commitment_month(poster, books):
    poster(
        [
            sub("n", "2026-01-01T08:00:00Z", "essentials", commitment="20.00", id="n-1"),
            sub("n", "2026-01-25T08:00:00Z", "pro", commitment="50.00", id="n-2"),
            sub("n", "2026-03-01T10:00:00Z", "pro", commitment="5.00", id="n-3"),
        ],
        "2026-03-31",
    )
    # Jan 1: 20.00; Feb 1: 50.00; Mar 1: still 50.00 (the change came after that commitment
    # month began at the day's start; 5.00 applies from Apr 1).
    with read_store(books) as db:
        assert {lot.lot_id: lot.amount for lot in queries.lots(db, "n")} == {
            "commitment-2026-01-01": 2000,
            "commitment-2026-02-01": 5000,
            "commitment-2026-03-01": 5000,
        }


# ------------------------------------------- defect 5: a held-back correction is pending


def test_a_correction_held_back_for_the_next_open_month_is_pending_not_a_difference(poster, books):
    from ledger_engine.close import close_month

    poster([sub("h", "2026-04-01T08:00:00Z", "essentials", id="h-1")], "2026-04-30")
    poster(
        conversations("h", datetime.datetime(2026, 4, 10, 9, tzinfo=datetime.UTC), 21, "c"),
        "2026-04-30",
    )
    close_month(books, "2026-04")
    # A conversation before the others: it takes an included unit, so one more is charged.
    late = use("h", "2026-04-05T09:00:00Z", "late-one", id="h-late")
    result = poster([late], "2026-04-30")
    assert result.transactions_written == 0  # the correction waits for May
    report = reconcile(books)
    assert report.ok, report.differences
    # Listed as information: the new conversation's day, the day of the conversation that
    # is now charged, and the wallet the extra charge will take from; all wait for May 1.
    assert sorted((p.customer, p.check, p.from_day) for p in report.pending) == [
        ("h", "lots_vs_wallet", "2026-05-01"),
        ("h", "usage_vs_postings", "2026-05-01"),
        ("h", "usage_vs_postings", "2026-05-01"),
    ]
    # The next run posts it on May 1 (late: TRUE), and nothing is pending any more.
    poster([], "2026-05-01")
    after = reconcile(books)
    assert after.ok and not after.pending
    may = (books / "customers/C-h/2026-05.beancount").read_text()
    assert "late: TRUE" in may and "original-day: 2026-04-05" in may


@pytest.mark.parametrize("through", ["2026-03-01", "2026-03-02"])
def test_an_anchor_day_change_posted_across_two_nights_gives_the_same_books(tmp_path, through):
    from builders import Poster, init_books

    events = five_then_change("two", ("essentials",), ("pro",), 30)
    one = Poster(init_books(tmp_path / "one"), tmp_path)
    one(events, "2026-03-31")
    many = Poster(init_books(tmp_path / "many"), tmp_path)
    many(events[:3], through)
    many(events[3:], "2026-03-31")
    # The corrections differ in bytes from one run's entries; the balances must agree, and
    # be the hand-computed ones (35 included, as in the upgrade test above).
    expected = {SR: D("-10.50"), INCLUDED: D("10.50")}
    assert customer_balances(many.books, "two") == customer_balances(one.books, "two") == expected
