"""Finance (SPEC v2 §2, §5, §7): credit grants, write-offs, and reports that tie to the GL."""

from __future__ import annotations

import datetime
import json
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from builders import D, customer_balances, init_books, load_clean, money_event, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.core import accounts
from ledger_engine.finance import report
from ledger_engine.post import post
from ledger_engine.reconcile import reconcile
from ledger_engine.reports import list_rejections

SAMPLE = Path(__file__).resolve().parents[1] / "sample_books" / "books"


def grant(customer, at, amount, id, **extra):
    return money_event("credit_grant", customer, at, amount, id=id, **extra)


def write_off(customer, at, amount, id, **extra):
    return money_event("write_off", customer, at, amount, id=id, **extra)


def test_a_grant_pays_for_usage_and_its_unused_rest_goes_back_to_the_granted_account(poster):
    no_auto = {"auto_top_up": {"enabled": False}}
    events = [sub("acme", "2026-11-01T08:00:00Z", "essentials", **no_auto)]
    events.append(grant("acme", "2026-11-02T08:00:00Z", "5.00", "g1", expires="2026-11-10"))
    # 21 conversations: 20 included, the 21st charged 0.30 and paid from the grant.
    events += [use("acme", f"2026-11-03T10:{i:02d}:00Z", f"c{i}") for i in range(21)]
    poster(events, "2026-11-30")
    balances = customer_balances(poster.books, "acme")
    assert balances == {
        "Income:AI:Revenue:SuggestedReplies": D("-6.30"),
        "Income:AI:Allowance:Included": D("6.00"),
        # 5.00 granted, 4.70 unused came back on 11 Nov: 0.30 of free credit was used.
        "Income:AI:Allowance:Granted": D("0.30"),
    }
    history = CliRunner().invoke(main, ["transactions", str(poster.books), "acme", "--json"])
    assert [(line["type"], line["amount"]) for line in json.loads(history.output)] == [
        ("Credit grant", "5.00"),
        ("AI", "-0.30"),
        ("Expiry", "-4.70"),
    ]
    assert "Income:Wallet:Breakage" not in balances  # given away, never income


def test_a_write_off_moves_the_open_receivable_to_bad_debt(poster):
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "essentials"),
        money_event("top_up", "acme", "2026-11-02T08:00:00Z", "10.00", id="t1"),
        money_event("payment", "acme", "2026-11-05T08:00:00Z", "4.00", id="p1"),
        write_off("acme", "2026-11-20T08:00:00Z", "6.00", "w1", reason="insolvent"),
        write_off("acme", "2026-11-21T08:00:00Z", "1.00", "w2"),  # nothing is open any more
    ]
    result = poster(events, "2026-11-30")
    assert result.rejected == {"exceeds_open_receivable": 1}
    assert customer_balances(poster.books, "acme") == {
        "Liabilities:Customers:C-acme:Wallet": D("-10.00"),
        "Assets:Bank:Clearing": D("4.00"),
        "Expenses:BadDebt": D("6.00"),
    }
    (rejected,) = list_rejections(poster.books)
    assert (rejected["event_id"], rejected["reason"]) == ("w2", "exceeds_open_receivable")
    text = (poster.books / "customers/C-acme/2026-11.beancount").read_text()
    assert '2026-11-20 * "acme" "Write-off"' in text and 'reason: "insolvent"' in text


def test_a_write_off_refused_today_is_posted_when_the_invoice_arrives_late(poster):
    poster(
        [sub("acme", "2026-11-01T08:00:00Z", "boost"), write_off("acme", "2026-11-20T08:00:00Z",
                                                                  "10.00", "w1")],
        "2026-11-30",
    )  # fmt: skip
    assert [r["reason"] for r in list_rejections(poster.books)] == ["exceeds_open_receivable"]
    poster([money_event("top_up", "acme", "2026-11-10T08:00:00Z", "10.00", id="t1")], "2026-11-30")
    assert list_rejections(poster.books) == []
    assert customer_balances(poster.books, "acme")["Expenses:BadDebt"] == D("10.00")


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"expires": "2026-02-30"}, "expires"),
        ({"expires": "2026-10-31"}, "expires"),  # before the day of the grant
        ({"reason": "x" * 257}, "reason"),
        ({"amount": 5.0}, "amount"),
    ],
)
def test_a_bad_grant_is_an_invalid_field(poster, extra, field):
    event = {**grant("acme", "2026-11-02T08:00:00Z", "5.00", "g1"), **extra}
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost"), event], "2026-11-30")
    (rejected,) = list_rejections(poster.books)
    assert (rejected["reason"], rejected["field"]) == ("invalid_field", field)


# ------------------------------------------------------------ reports tie to the GL


def gl_figures(books: Path):
    """From the GL (beancount's loader): per month, the Income:AI sums by account, and the
    wallets and receivables control balances at each month end."""
    entries, _ = load_clean(books / "ledger.beancount")
    income: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    movements: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for entry in entries:
        for posting in getattr(entry, "postings", None) or ():
            month = entry.date.isoformat()[:7]
            movements[month][posting.account] += posting.units.number
            if posting.account.startswith("Income:AI:"):
                income[month][posting.account] += posting.units.number
    closing, running = {}, defaultdict(Decimal)
    for month in sorted(movements):
        for account, amount in movements[month].items():
            running[account] += amount
        closing[month] = dict(running)
    return income, closing


def amounts(rows, column) -> Decimal:
    return sum((Decimal(row[column]) for row in rows), Decimal(0))


def check_reports_tie_to_the_gl(books: Path) -> None:
    income, closing = gl_figures(books)
    revenue = report(books, "revenue-by-customer").as_dicts()
    for month, sums in income.items():
        rows = [row for row in revenue if row["month"] == month]
        gross = -sum(v for a, v in sums.items() if a.startswith(accounts.REVENUE_ROOT))
        allowances = sum(v for a, v in sums.items() if a.startswith(accounts.ALLOWANCE_ROOT))
        assert amounts(rows, "gross") == gross, month
        assert amounts(rows, "allowances") == allowances, month
        assert amounts(rows, "net") == -sum(sums.values()), month
    rollforward = report(books, "wallet-rollforward").as_dicts()
    previous = Decimal(0)
    for row in rollforward:
        assert Decimal(row["opening"]) == previous
        wallets = -closing[row["month"]].get(accounts.WALLETS_CONTROL, Decimal(0))
        assert Decimal(row["closing"]) == wallets, row["month"]
        moved = sum(Decimal(row[c]) for c in ("bought", "granted")) - sum(
            Decimal(row[c]) for c in ("consumed_ai", "consumed_channels", "expired")
        )
        assert Decimal(row["opening"]) + moved == Decimal(row["closing"])
        previous = Decimal(row["closing"])
    last = max(closing)
    lots = report(books, "expiring-credits").as_dicts()
    assert amounts(lots, "remainder") == -closing[last].get(accounts.WALLETS_CONTROL, 0)
    aging = report(books, "receivables-aging").as_dicts()
    receivable = closing[last].get(accounts.RECEIVABLES_CONTROL, Decimal(0))
    assert amounts(aging, "total") == receivable
    assert all(
        sum(Decimal(row[b]) for b in ("0-30", "31-60", "61-90", "90+")) == Decimal(row["total"])
        for row in aging
    )


def test_the_sample_books_reports_tie_to_the_gl():
    check_reports_tie_to_the_gl(SAMPLE)


def generated_events(seed: int) -> list[dict]:
    """Two months of random activity of every kind for five customers (fixed seed)."""
    rng = random.Random(seed)
    start = datetime.datetime(2026, 10, 1, 8, tzinfo=datetime.UTC)
    plans = ["trial", "essentials", "boost", "pro"]
    events = []
    for n in range(5):
        customer = f"cust{n}"
        plan = plans[n % 4]
        extra = {"commitment": "5.00"} if n == 4 else {}
        events.append(sub(customer, "2026-10-01T08:00:00Z", plan, None if plan == "trial" else
                          rng.choice(["monthly", "annual"]), **extra))  # fmt: skip
        for i in range(60):
            at = (start + datetime.timedelta(minutes=rng.randrange(60 * 24 * 61))).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            kind = rng.choice(["sr", "sr", "ap", "top_up", "channel", "payment", "grant", "wo"])
            identity = f"{customer}-{i}"
            if kind in ("sr", "ap"):
                feature = "suggested_reply" if kind == "sr" else "autopilot"
                events.append(use(customer, at, f"c{rng.randrange(30)}", feature, id=identity))
            elif kind == "channel":
                events.append(money_event("channel_usage", customer, at, "0.70", id=identity,
                                          channel=rng.choice(["sms", "voice"])))  # fmt: skip
            else:
                kind = {"grant": "credit_grant", "wo": "write_off"}.get(kind, kind)
                amount = rng.choice(["1.00", "3.00", "20.00"])
                events.append(money_event(kind, customer, at, amount, id=identity))
    return events


def test_generated_books_reports_tie_to_the_gl_every_month(tmp_path):
    books = init_books(tmp_path / "books")
    events = generated_events(7)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    post(books, [str(path)], datetime.date(2026, 11, 30))
    assert reconcile(books).ok
    check_reports_tie_to_the_gl(books)
    for month in ("2026-10", "2026-11"):
        one = report(books, "revenue-by-customer", month).as_dicts()
        assert {row["month"] for row in one} == {month}


def test_the_report_command_prints_table_csv_and_json():
    run = CliRunner().invoke
    table = run(main, ["report", str(SAMPLE), "wallet-rollforward"])
    assert table.exit_code == 0 and table.output.startswith("month    opening")
    csv = run(main, ["report", str(SAMPLE), "receivables-aging", "--format", "csv"])
    assert csv.output.splitlines()[0] == "customer,0-30,31-60,61-90,90+,total"
    as_json = run(main, ["report", str(SAMPLE), "expiring-credits", "--format", "json"])
    assert all("." in row["remainder"] for row in json.loads(as_json.output))  # units, not cents
    assert run(main, ["report", str(SAMPLE), "no-such-report"]).exit_code == 2


def test_reports_still_tie_when_a_late_cancellation_empties_a_period(poster):
    poster(
        [sub("acme", "2026-11-01T08:00:00Z", "boost"), use("acme", "2026-11-05T10:00:00Z", "c1")],
        "2026-11-30",
    )
    assert CliRunner().invoke(main, ["close", str(poster.books), "2026-11"]).exit_code == 0
    # Cancelled before the usage: the conversation is rejected and its entry reversed, on
    # 1 Dec since November is closed.  November still shows the revenue, December takes it back.
    poster([money_event("cancellation", "acme", "2026-11-03T08:00:00Z", "0", id="x")], "2026-12-01")
    assert [r["reason"] for r in list_rejections(poster.books)] == ["no_active_subscription"]
    check_reports_tie_to_the_gl(poster.books)
    rows = report(poster.books, "revenue-by-customer").rows
    assert rows == [
        ("acme", "2026-11", "suggested_reply", "0.30", "0.30", "0.00"),
        ("acme", "2026-12", "suggested_reply", "-0.30", "-0.30", "0.00"),
    ]


def test_a_trial_and_a_paid_period_starting_the_same_day_tie_to_the_gl(poster):
    """A trial and the paid plan that follows it on the same day share one usage entry."""
    events = [
        sub("c3", "2026-11-02T08:00:00Z", "trial", interval=None),
        use("c3", "2026-11-02T09:00:00Z", "t1"),
        sub("c3", "2026-11-02T11:00:00Z", "essentials", id="upgrade"),
    ]
    events += [use("c3", "2026-11-02T12:00:00Z", f"p{i}") for i in range(22)]
    events += [use("c3", "2026-11-05T12:00:00Z", f"q{i}") for i in range(2)]
    poster(events, "2026-11-30")
    check_reports_tie_to_the_gl(poster.books)
    # 25 conversations at 0.30: one trial, 20 included, 4 charged.
    assert report(poster.books, "revenue-by-customer").rows == [
        ("c3", "2026-11", "suggested_reply", "7.50", "6.00", "1.50"),
        ("c3", "2026-11", "trial_allowance", "0.00", "0.30", "-0.30"),
    ]


def test_posting_through_an_earlier_day_keeps_the_derived_state_of_later_days(poster):
    poster(
        [
            sub("ca", "2026-11-01T08:00:00Z", "pro"),
            money_event("top_up", "ca", "2026-11-02T08:00:00Z", "10.00", id="t1"),
            use("ca", "2026-11-20T08:00:00Z", "k1", "autopilot"),
        ],
        "2026-11-30",
    )
    poster([money_event("payment", "ca", "2026-11-05T08:00:00Z", "10.00", id="p1")], "2026-11-10")
    assert reconcile(poster.books).ok  # the lot still shows the 0.30 spent on 20 Nov
    (lot,) = report(poster.books, "expiring-credits").as_dicts()
    assert lot["remainder"] == "9.70"
