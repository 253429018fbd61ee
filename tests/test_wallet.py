"""The credit wallet of SPEC §5: lots, expiry and breakage, commitments, top-ups, channels,
payments and the transaction history."""

from __future__ import annotations

import json

from builders import D, customer_balances, money_event, read_store, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.core.wallet import short_hash
from ledger_engine.store import queries

NO_AUTO = {"enabled": False}


def lots(books, customer):
    with read_store(books) as db:
        return {
            lot.lot_id: (lot.kind, lot.last_valid.isoformat(), lot.amount, lot.remainder)
            for lot in queries.lots(db, customer)
        }


def test_commitment_is_credited_each_billing_month_and_expires(poster, books):
    events = [
        sub("c", "2026-01-31T08:00:00Z", "boost", commitment="10.00", auto_top_up=NO_AUTO),
        use("c", "2026-02-01T10:00:00Z", "ap", "autopilot"),
    ]
    poster(events, "2026-03-05")
    # Billing months from the 31st: 31 Jan - 27 Feb, 28 Feb - 30 Mar.
    assert lots(poster.books, "c") == {
        "commitment-2026-01-31": ("commitment", "2026-02-27", 1000, 0),
        "commitment-2026-02-28": ("commitment", "2026-03-30", 1000, 1000),
    }
    assert customer_balances(books, "c") == {
        "Assets:Receivables:Customers:C-c": D("20.00"),
        "Liabilities:Customers:C-c:Wallet": D("-10.00"),
        "Income:AI:Revenue:Autopilot": D("-0.30"),
        "Income:Wallet:Breakage": D("-9.70"),
    }
    february = (books / "customers/C-c/2026-02.beancount").read_text()
    assert '2026-02-28 * "c" "Expiry"' in february  # the day after the last valid day


def test_annual_customers_get_monthly_commitments(poster, books):
    poster([sub("c", "2026-11-15T08:00:00Z", "pro", "annual", commitment="5.00")], "2027-01-20")
    assert sorted(lots(books, "c")) == [
        "commitment-2026-11-15",
        "commitment-2026-12-15",
        "commitment-2027-01-15",
    ]


def test_top_up_carries_over_one_calendar_month(poster, books):
    events = [
        sub("c", "2026-11-01T08:00:00Z", "boost", auto_top_up=NO_AUTO),
        money_event("top_up", "c", "2026-11-30T23:59:59Z", "5.00", id="nov"),
        money_event("top_up", "c", "2026-12-01T00:00:00Z", "7.00", id="dec"),
    ]
    poster(events, "2026-12-31")
    assert "Income:Wallet:Breakage" not in customer_balances(books, "c")  # valid through 31 Dec
    poster([], "2027-01-01")
    assert customer_balances(books, "c")["Income:Wallet:Breakage"] == D("-5.00")
    poster([], "2027-02-01")
    assert customer_balances(books, "c")["Income:Wallet:Breakage"] == D("-12.00")


def test_charges_take_the_soonest_expiry_first_then_the_oldest(poster, books):
    events = [
        sub("c", "2026-11-01T08:00:00Z", "boost", commitment="1.00", auto_top_up=NO_AUTO),
        money_event("top_up", "c", "2026-11-02T08:00:00Z", "1.00", id="old"),
        money_event("top_up", "c", "2026-11-25T08:00:00Z", "1.00", id="new"),
    ]
    events += [use("c", f"2026-11-26T10:0{i}:00Z", f"c{i}", "autopilot") for i in range(4)]
    poster(events, "2026-11-29")
    # 1.20 of charges: the commitment (valid to 30 Nov) first, then the top-ups (both valid
    # to 31 Dec), the older one first.
    assert lots(books, "c") == {
        "commitment-2026-11-01": ("commitment", "2026-11-30", 100, 0),
        f"top-up-{short_hash('old')}": ("top_up", "2026-12-31", 100, 80),
        f"top-up-{short_hash('new')}": ("top_up", "2026-12-31", 100, 100),
    }
    usage = (books / "customers/C-c/2026-11.beancount").read_text()
    assert f'lots: "commitment-2026-11-01:1.00 top-up-{short_hash("old")}:0.20"' in usage


def test_auto_top_up_is_sized_by_amount_and_threshold(poster, books):
    events = [
        sub(
            "c",
            "2026-11-01T08:00:00Z",
            "enterprise",
            included=0,
            unit_price="12.00",
            auto_top_up={"enabled": True, "amount": "10.00", "threshold": "5.00"},
        ),
        use("c", "2026-11-02T10:00:00Z", "a"),
    ]
    poster(events, "2026-11-30")
    # Charges 12.00 + threshold 5.00 - balance 0 = 17.00: two top-ups of 10.00.
    assert customer_balances(books, "c") == {
        "Income:AI:Revenue:SuggestedReplies": D("-12.00"),
        "Liabilities:Customers:C-c:Wallet": D("-8.00"),
        "Assets:Receivables:Customers:C-c": D("20.00"),
    }
    assert "top-ups: 2" in (books / "customers/C-c/2026-11.beancount").read_text()


def test_no_top_up_when_the_balance_covers_charges_and_threshold(poster, books):
    events = [
        sub(
            "c",
            "2026-11-01T08:00:00Z",
            "boost",
            auto_top_up={"enabled": True, "amount": "10.00", "threshold": "0.70"},
        ),
        money_event("top_up", "c", "2026-11-01T09:00:00Z", "1.00"),
        use("c", "2026-11-02T10:00:00Z", "a", "autopilot"),
    ]
    poster(events, "2026-11-30")
    assert customer_balances(books, "c")["Liabilities:Customers:C-c:Wallet"] == D("-0.70")


def test_shortfall_with_auto_top_up_disabled_goes_to_the_receivable(poster, books):
    events = [
        sub(
            "c",
            "2026-11-01T08:00:00Z",
            "enterprise",
            included=0,
            unit_price="2.35",
            auto_top_up=NO_AUTO,
        ),
        money_event("top_up", "c", "2026-11-01T09:00:00Z", "1.00"),
        use("c", "2026-11-02T10:00:00Z", "a"),
    ]
    poster(events, "2026-11-30")
    assert customer_balances(books, "c") == {
        "Income:AI:Revenue:SuggestedReplies": D("-2.35"),
        "Assets:Receivables:Customers:C-c": D("2.35"),  # 1.00 top-up + 1.35 shortfall
    }


def test_channel_charges_come_from_the_wallet(poster, books):
    events = [
        sub("c", "2026-11-01T08:00:00Z", "essentials"),
        money_event("channel_usage", "c", "2026-11-02T10:00:00Z", "0.07", channel="sms"),
        money_event("channel_usage", "c", "2026-11-02T11:00:00Z", "0.10", channel="whatsapp"),
        money_event("channel_usage", "c", "2026-11-02T12:00:00Z", "1.00", channel="voice"),
    ]
    poster(events, "2026-11-30")
    assert customer_balances(books, "c") == {
        "Income:Channels:Sms": D("-0.07"),
        "Income:Channels:Whatsapp": D("-0.10"),
        "Income:Channels:Voice": D("-1.00"),
        "Liabilities:Customers:C-c:Wallet": D("-23.83"),
        "Assets:Receivables:Customers:C-c": D("25.00"),
    }


def test_payments_and_top_ups_after_cancellation(poster, books):
    events = [
        sub("c", "2026-11-01T08:00:00Z", "boost", auto_top_up=NO_AUTO),
        {"id": "x", "type": "cancellation", "customer": "c", "at": "2026-11-10T00:00:00Z"},
        money_event("top_up", "c", "2026-11-11T00:00:00Z", "3.00"),
        money_event("payment", "c", "2026-11-12T00:00:00Z", "3.00"),
        money_event("channel_usage", "c", "2026-11-12T00:00:00Z", "0.07", channel="sms"),
    ]
    result = poster(events, "2026-11-30")
    assert result.rejected == {"no_active_subscription": 1}
    assert customer_balances(books, "c") == {
        "Liabilities:Customers:C-c:Wallet": D("-3.00"),
        "Assets:Bank:Clearing": D("3.00"),
    }


def test_transaction_history(poster, books):
    events = [
        sub("c", "2026-11-01T08:00:00Z", "boost", auto_top_up={"amount": "1.00"}),
        money_event("top_up", "c", "2026-11-01T09:00:00Z", "0.50"),
        use("c", "2026-11-02T10:00:00Z", "a", "autopilot"),
        money_event("channel_usage", "c", "2026-11-02T10:00:00Z", "0.40", channel="sms"),
    ]
    poster(events, "2026-12-31")
    runner = CliRunner()
    result = runner.invoke(main, ["transactions", str(books), "c", "--json"])
    assert result.exit_code == 0, result.output
    lines = [(x["date"], x["type"], x["amount"], x["balance"]) for x in json.loads(result.output)]
    assert lines == [
        ("2026-11-01", "Top-up", "0.50", "0.50"),
        ("2026-11-02", "Automatic top-up", "1.00", "1.50"),
        ("2026-11-02", "AI", "-0.30", "1.20"),
        ("2026-11-02", "SMS", "-0.40", "0.80"),
    ]
    text = runner.invoke(main, ["transactions", str(books), "c", "--month", "2026-11"])
    assert "Automatic top-up" in text.output and "0.80" in text.output
    missing = runner.invoke(main, ["transactions", str(books), "nobody"])
    assert missing.exit_code == 1 and "Error: no customer 'nobody'" in missing.output
