"""Read-only reports from the store: a customer's wallet history (SPEC §5) and the current
verdicts on rejected events (SPEC §2).  The bean-query ``query`` directives finance runs on
the journals are in :mod:`ledger_engine.books.layout`."""

from __future__ import annotations

from pathlib import Path

from ledger_engine import commit
from ledger_engine.core.errors import UnknownCustomer
from ledger_engine.core.model import RATING_DETAILS, EntryKind
from ledger_engine.core.money import format_cents
from ledger_engine.store import queries


def history_label(key: str, corrects: str | None) -> str:
    """The billing-page label of a wallet movement, from its transaction key."""
    kind = EntryKind.of_key(key)
    label = kind[0].history_label(kind[1]) if kind else key
    return f"{label} (correction)" if corrects else label


def wallet_history(books_dir: Path, customer: str, month: str | None = None) -> list[dict]:
    """The customer's wallet movements with the balance after each (SPEC §5).

    Amounts are from the customer's side: money added to the wallet is positive.

    Args:
        books_dir: the books.
        customer: the customer id.
        month: only lines of this ``YYYY-MM`` (balances still count everything before).

    Returns:
        One dict per movement: date, type, amount, balance, txn, corrects.

    Raises:
        UnknownCustomer: the books do not know ``customer``.
    """
    with commit.store_for_reading(books_dir) as db:
        if not queries.customer_known(db, customer):
            raise UnknownCustomer(f"no customer {customer!r} in these books")
        rows = queries.wallet_postings(db, customer)
    lines, balance = [], 0
    for row in rows:
        balance -= row.cents
        if month is None or row.day.startswith(month):
            lines.append(
                {
                    "date": row.day,
                    "type": history_label(row.key, row.corrects),
                    "amount": format_cents(-row.cents),
                    "balance": format_cents(balance),
                    "txn": row.txn_id,
                    "corrects": row.corrects,
                }
            )
    return lines


def list_rejections(books_dir: Path) -> list[dict]:
    """Every rejected event: schema verdicts (final) then current rating verdicts."""
    with commit.store_for_reading(books_dir) as db:
        rows = queries.rejections(db)
    for row in rows:
        if row["kind"] == "rating":
            row["detail"] = RATING_DETAILS.get(row["reason"], "")
    return rows
