"""Reports: bean-query ``query`` directives for finance, and the customer's wallet history."""

from __future__ import annotations

from ledger_engine import accounts, store
from ledger_engine.journal import OPEN_DATE, quote
from ledger_engine.money import format_cents

# name -> bean-query statement; written into ledger.beancount, run with `.run NAME`.
QUERIES = {
    "revenue_by_month": (
        "SELECT year, month, root(account, 4) AS account, neg(sum(position)) AS gross "
        "WHERE account ~ '^Income:AI:Revenue' GROUP BY year, month, account "
        "ORDER BY year, month, account"
    ),
    "allowances_by_month": (
        "SELECT year, month, account, sum(position) AS given "
        "WHERE account ~ '^Income:AI:Allowance' GROUP BY year, month, account "
        "ORDER BY year, month, account"
    ),
    "net_ai_revenue_by_month": (
        "SELECT year, month, neg(sum(position)) AS net "
        "WHERE account ~ '^Income:AI:' GROUP BY year, month ORDER BY year, month"
    ),
    "wallet_liability": (
        "SELECT year, month, neg(last(balance)) AS owed WHERE account = "
        "'Liabilities:Customers:Wallets' GROUP BY year, month ORDER BY year, month"
    ),
    "breakage_by_month": (
        "SELECT year, month, neg(sum(position)) AS breakage "
        "WHERE account = 'Income:AI:Breakage' GROUP BY year, month ORDER BY year, month"
    ),
    "channels_by_month": (
        "SELECT year, month, account, neg(sum(position)) AS amount "
        "WHERE account ~ '^Income:Channels' GROUP BY year, month, account "
        "ORDER BY year, month, account"
    ),
    "receivables_open": (
        "SELECT sum(position) AS open WHERE account = 'Assets:Receivables:Customers'"
    ),
    # The GL holds daily summaries only; per-customer figures are in the subledgers and
    # the store, so these two say where to look instead of answering wrongly.
    "top_customers_by_ai_spend": (
        "SELECT 'Per customer: sqlite3 DIR/state.sqlite \"SELECT * FROM "
        "v_ai_spend_by_customer LIMIT 20\"' AS where_to_look LIMIT 1"
    ),
    "rejected_events": (
        "SELECT 'Rejected events are not in the books: ledger-engine rejections DIR' "
        "AS where_to_look LIMIT 1"
    ),
}


def query_directives() -> str:
    return "".join(
        f"{OPEN_DATE} query {quote(name)} {quote(sql)}\n" for name, sql in QUERIES.items()
    )


HISTORY_LABELS = {
    "usage": "AI",
    "channel.sms": "SMS",
    "channel.whatsapp": "WhatsApp",
    "channel.voice": "Voice",
    "top-up": "Top-up",
    "auto-top-up": "Automatic top-up",
    "commitment": "Commitment",
    "breakage": "Expiry",
    "refund": "Refund",
}


def history_label(key: str, corrects: str | None) -> str:
    """The billing-page label of a wallet movement, from its transaction key."""
    label = next(
        (
            text
            for prefix, text in HISTORY_LABELS.items()
            if key == prefix or key.startswith(prefix + ".")
        ),
        key,
    )
    return f"{label} (correction)" if corrects else label


def wallet_history(books_dir, customer: str, month: str | None = None) -> list[dict]:
    """The customer's wallet movements with the balance after each (SPEC §5).

    Amounts are from the customer's side: money added to the wallet is positive.

    Args:
        books_dir: the books.
        customer: the customer id.
        month: only lines of this ``YYYY-MM`` (balances still count everything before).

    Returns:
        One dict per movement: date, type, amount, balance, txn, corrects, lots.
    """
    db = store.open_store(books_dir)
    try:
        if db.execute("SELECT 1 FROM customers WHERE customer = ?", [customer]).fetchone() is None:
            raise LookupError(f"no customer {customer!r} in these books")
        wallet = accounts.wallet_account(accounts.customer_segment(customer))
        rows = db.execute(
            "SELECT t.effective_day, t.key, t.corrects, t.txn_id, p.amount "
            "FROM postings p JOIN transactions t ON t.txn_id = p.txn_id "
            # Within a day, money added comes before money spent: the day's charges were
            # covered by that day's credits (corrections included), so no line shows a
            # balance below zero that the wallet never had at the end of a posting day.
            "WHERE p.customer = ? AND p.account = ? "
            "ORDER BY t.effective_day, p.amount > 0, t.run_id, t.position",
            [customer, wallet],
        ).fetchall()
    finally:
        db.close()
    lines, balance = [], 0
    for day, key, corrects, txn_id, cents in rows:
        balance -= cents
        if month is None or day.startswith(month):
            lines.append(
                {
                    "date": day,
                    "type": history_label(key, corrects),
                    "amount": format_cents(-cents),
                    "balance": format_cents(balance),
                    "txn": txn_id,
                    "corrects": corrects,
                }
            )
    return lines
