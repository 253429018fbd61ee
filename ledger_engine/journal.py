"""Beancount text: root files, open directives and transactions, written with f-strings.

Names are validated once here (accounts, metadata keys, links) instead of going through
``format_entry`` for every entry, which is ten times slower (BEANCOUNT_NOTES.md).  Tests
re-parse what this module writes with beancount's own loader.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

from ledger_engine import accounts
from ledger_engine.money import format_cents
from ledger_engine.planner import NewTxn

OPEN_DATE = datetime.date(1970, 1, 1)  # every account is open before any event can be
META_KEY_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_-]+$")
LINK_PATTERN = re.compile(r"^[A-Za-z0-9_/.-]+$")
ROOT_PLUGINS = ("beancount.plugins.check_commodity", "beancount.plugins.leafonly")


def quote(text: str) -> str:
    """A Beancount string literal (backslash and double quote escaped, one line)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def meta_value(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return quote(str(value))


def meta_lines(meta: Iterable[tuple[str, object]], indent: str = "  ") -> list[str]:
    lines = []
    for key, value in meta:
        assert META_KEY_PATTERN.match(key), f"bad metadata key {key!r}"
        lines.append(f"{indent}{key}: {meta_value(value)}")
    return lines


def root_header(title: str, currency: str) -> str:
    lines = [
        f"; {title}",
        "; Written by ledger-engine. Append-only: never edit by hand (reconcile detects it).",
        f'option "title" {quote(title)}',
        f'option "operating_currency" "{currency}"',
        'option "tolerance_multiplier" "0"',
        *(f'plugin "{plugin}"' for plugin in ROOT_PLUGINS),
        "",
        f"{OPEN_DATE} commodity {currency}",
        "",
    ]
    return "\n".join(lines) + "\n"


def open_directive(account: str, currency: str, meta: Iterable[tuple[str, object]] = ()) -> str:
    return "\n".join([f"{OPEN_DATE} open {account} {currency}", *meta_lines(meta)]) + "\n"


def customer_root(customer: str, segment: str, currency: str) -> str:
    """The root of one customer's subledger: options, plugins, its open directives."""
    parts = [root_header(f"Subledger of customer {customer}", currency)]
    parts.append(
        open_directive(
            accounts.wallet_account(segment), currency, [("customer", customer), ("role", "wallet")]
        )
    )
    parts.append(
        open_directive(
            accounts.receivable_account(segment),
            currency,
            [("customer", customer), ("role", "receivable")],
        )
    )
    parts.extend(open_directive(account, currency) for account in accounts.SHARED_ACCOUNTS)
    return "".join(parts) + "\n"


def include_line(relative_path: str) -> str:
    return f"include {quote(relative_path)}\n"


def posting_line(account: str, cents: int, currency: str) -> str:
    return f"  {account}  {format_cents(cents)} {currency}"


def transaction_text(
    day: datetime.date,
    payee: str,
    narration: str,
    links: Iterable[str],
    meta: Iterable[tuple[str, object]],
    postings: Iterable[tuple[str, int]],
    currency: str,
) -> str:
    links = list(links)
    for link in links:
        assert LINK_PATTERN.match(link), f"bad link {link!r}"
    link_text = "".join(f" ^{link}" for link in links)
    lines = [f"{day} * {quote(payee)} {quote(narration)}{link_text}", *meta_lines(meta)]
    lines.extend(posting_line(account, cents, currency) for account, cents in postings)
    return "\n".join(lines) + "\n\n"


def subledger_text(txn: NewTxn, gl_link: str | None, currency: str) -> str:
    meta: list[tuple[str, object]] = [("txn", txn.txn_id)]
    if txn.corrects:
        meta.append(("corrects", txn.corrects))
    if txn.late:
        meta.extend([("late", True), ("original-day", txn.orig_day)])
    elif txn.late_event:
        meta.append(("late-event", True))
    meta.extend(txn.meta)
    links = [txn.link] + ([gl_link] if gl_link else [])
    narration = txn.narration if txn.corrects is None else f"Correction: {txn.narration}"
    return transaction_text(
        txn.effective_day, txn.customer, narration, links, meta, txn.postings, currency
    )


def gl_accounts_text(currency: str) -> str:
    return "".join(open_directive(account, currency) for account in accounts.GL_ACCOUNTS)
