"""Reports: bean-query ``query`` directives for finance, and the customer's wallet history."""

from __future__ import annotations

from ledger_engine.journal import OPEN_DATE, quote

# name -> bean-query statement; written into ledger.beancount, run with `.run NAME`.
QUERIES = {
    "revenue_by_month": (
        "SELECT year, month, root(account, 4) AS account, neg(sum(position)) AS amount "
        "WHERE account ~ '^Income:AI:Revenue' GROUP BY year, month, account "
        "ORDER BY year, month, account"
    ),
    "allowances_by_month": (
        "SELECT year, month, account, sum(position) AS value_given "
        "WHERE account ~ '^Income:AI:Allowance' GROUP BY year, month, account "
        "ORDER BY year, month, account"
    ),
    "net_ai_revenue_by_month": (
        "SELECT year, month, neg(sum(position)) AS net_ai_revenue "
        "WHERE account ~ '^Income:AI:' GROUP BY year, month ORDER BY year, month"
    ),
    "wallet_liability": (
        "SELECT year, month, last(balance) AS wallets WHERE account = "
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
        "SELECT sum(position) AS open_receivables WHERE account = 'Assets:Receivables:Customers'"
    ),
}


def query_directives() -> str:
    return "".join(
        f"{OPEN_DATE} query {quote(name)} {quote(sql)}\n" for name, sql in QUERIES.items()
    )
