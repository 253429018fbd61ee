"""Finance reports (SPEC §7, ``ledger-engine report``): read from the store, in currency units.

Every report is built from the subledger postings the books hold (by effective day, so a
correction counts in the month it was posted in, as in the GL), and ties to the GL:

- ``revenue-by-customer``: customer x month x line: suggested replies and autopilot (gross at
  list price, the included allowance, net), the trial allowance and the granted credit used;
  summed over customers, each month's gross, allowances and net equal the GL's
  ``Income:AI`` accounts.  An adjustment's line on an ``Income:AI`` account counts in the
  line of that account, as the GL has it (a credit note on suggested replies lowers their
  gross).
- ``wallet-rollforward``: per month: opening, bought, granted, consumed by AI, consumed by
  channels, expired, closing; closing equals the GL's wallets control account at month end,
  and each opening the previous closing.  Adjustments never touch a wallet (SPEC v3 §2), so
  they have no line: a wallet posting of no known kind is an error, not a line.
- ``expiring-credits``: the remainders of the wallet lots by customer and last valid day;
  they sum to the wallet liability.
- ``receivables-aging``: open invoices by customer, payments, write-offs and the credits of
  adjustments applied oldest invoice first, in 0-30 / 31-60 / 61-90 / 90+ days; an
  adjustment's debit of the receivable is an invoice of its day; the total is the open
  receivable.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit
from ledger_engine.core import accounts, dates
from ledger_engine.core.errors import LedgerError
from ledger_engine.core.model import OTHER_MOVEMENT, movement_of_key
from ledger_engine.core.money import format_cents
from ledger_engine.store import queries
from ledger_engine.store.queries import PostingRow

AGING_BUCKETS = (("0-30", 30), ("31-60", 60), ("61-90", 90), ("90+", None))
TRIAL_LINE = "trial_allowance"  # revenue-by-customer: the value of trial conversations
GRANTED_LINE = "granted_credit"  # revenue-by-customer: granted credit used


class UnknownReport(LedgerError):
    """No report has that name."""


class ReportError(LedgerError):
    """The store holds something a report cannot place."""


class Table(NamedTuple):
    """A report: column names and rows of plain values (amounts as two-place text)."""

    columns: tuple[str, ...]
    rows: list[tuple]

    def as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _month(day: str) -> str:
    return day[:7]


# --------------------------------------------------------------- revenue by customer

# Where each Income:AI posting goes: (line, gross or allowance).  Included allowance is
# only ever used by suggested replies.  A trial's contra entry is one posting for both
# features (and a trial and a paid period starting on the same day share an entry), so
# trial allowance and granted credit are lines of their own: every line is read straight
# off the postings, and the lines of a month sum to the GL exactly.
REVENUE_LINES = {
    accounts.REVENUE_SUGGESTED: ("suggested_reply", "gross"),
    accounts.REVENUE_AUTOPILOT: ("autopilot", "gross"),
    accounts.ALLOWANCE_INCLUDED: ("suggested_reply", "allowance"),
    accounts.ALLOWANCE_TRIAL: (TRIAL_LINE, "allowance"),
    accounts.ALLOWANCE_GRANTED: (GRANTED_LINE, "allowance"),
}


def revenue_by_customer(db: sqlite_utils.Database, month: str | None) -> Table:
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for posting in queries.subledger_postings(db):
        line = REVENUE_LINES.get(posting.account)
        if line is None or (month and _month(posting.day) != month):
            continue
        name, column = line
        amounts = totals[(posting.customer, _month(posting.day), name)]
        if column == "gross":
            amounts[0] -= posting.cents  # income is a credit: revenue shows positive
        else:
            amounts[1] += posting.cents
    rows = [
        (customer, line_month, name, format_cents(gross), format_cents(allowance),
         format_cents(gross - allowance))
        for (customer, line_month, name), (gross, allowance) in sorted(
            totals.items(), key=lambda item: (item[0][1], item[0][0], item[0][2])
        )
        if gross or allowance
    ]  # fmt: skip
    return Table(("customer", "month", "feature", "gross", "allowances", "net"), rows)


# ---------------------------------------------------------------- wallet roll-forward

_ROLLFORWARD_LINE = {
    "top-up": "bought",
    "auto-top-up": "bought",
    "commitment": "bought",
    "grant": "granted",
    "usage": "consumed_ai",
    "channel": "consumed_channels",
    "expiry": "expired",
}
_ROLLFORWARD_COLUMNS = ("bought", "granted", "consumed_ai", "consumed_channels", "expired")


def _wallet_movements(db) -> dict[str, dict[str, int]]:
    """month -> roll-forward line -> cents added to the wallets (negative: taken out)."""
    movements: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for posting in queries.subledger_postings(db):
        if not posting.account.startswith(accounts.CUSTOMER_WALLETS_ROOT + ":"):
            continue
        line = _ROLLFORWARD_LINE.get(movement_of_key(posting.key), OTHER_MOVEMENT)
        movements[_month(posting.day)][line] -= posting.cents
    return movements


def _months_between(first: str, last: str) -> list[str]:
    months, day = [], dates.parse_month(first)
    while dates.month_of(day) <= last:
        months.append(dates.month_of(day))
        day = dates.first_of_next_month(day)
    return months


def wallet_rollforward(db: sqlite_utils.Database, month: str | None) -> Table:
    movements = _wallet_movements(db)
    rows, closing = [], 0
    for each in _months_between(min(movements), max(movements)) if movements else []:
        lines = movements.get(each, {})
        opening = closing
        closing = opening + sum(lines.values())
        added = (lines.get("bought", 0), lines.get("granted", 0))
        taken = [-lines.get(name, 0) for name in _ROLLFORWARD_COLUMNS[2:]]
        if lines.get(OTHER_MOVEMENT, 0):  # a store edited by hand: reconcile says where
            raise ReportError(f"a wallet movement of no known kind in {each}; run reconcile")
        if month is None or each == month:
            amounts = (opening, *added, *taken, closing)
            rows.append((each, *(format_cents(cents) for cents in amounts)))
    columns = ("month", "opening", *_ROLLFORWARD_COLUMNS, "closing")
    return Table(columns, rows)


# ------------------------------------------------------------------ expiring credits


def expiring_credits(db: sqlite_utils.Database, month: str | None) -> Table:
    rows = [
        (customer, lot.lot_id, lot.kind, lot.last_valid.isoformat(), format_cents(lot.remainder))
        for customer, lot in queries.open_lots(db)
        if month is None or dates.month_of(lot.last_valid) == month
    ]
    return Table(("customer", "lot", "kind", "last_valid", "remainder"), rows)


# ---------------------------------------------------------------- receivables aging


def _open_invoices(postings: list[PostingRow]) -> list[list]:
    """[day, cents open] of a customer's invoices (every debit of its receivable, an
    adjustment's too) after applying its credits (payments, write-offs, adjustments,
    reversals) to the oldest open invoice first; an unapplied credit last."""
    invoices: list[list] = []
    credit, oldest = 0, 0
    for posting in postings:
        if posting.cents > 0:
            invoices.append([posting.day, posting.cents])
        else:
            credit -= posting.cents
        while credit and oldest < len(invoices):
            applied = min(credit, invoices[oldest][1])
            invoices[oldest][1] -= applied
            credit -= applied
            if invoices[oldest][1] == 0:
                oldest += 1
    return invoices[oldest:] + ([["credit", -credit]] if credit else [])


def _bucket(as_of: datetime.date, day: str) -> str:
    if day == "credit":
        return AGING_BUCKETS[0][0]  # an overpayment: shown as a negative in the newest bucket
    age = (as_of - datetime.date.fromisoformat(day)).days
    return next(name for name, limit in AGING_BUCKETS if limit is None or age <= limit)


def receivables_aging(db: sqlite_utils.Database, month: str | None) -> Table:
    through = queries.posted_through(db)
    as_of = dates.last_day_of_month(dates.parse_month(month)) if month else through
    by_customer: dict[str, list[PostingRow]] = defaultdict(list)
    for posting in queries.subledger_postings(db, as_of.isoformat() if as_of else None):
        if posting.account.startswith(accounts.RECEIVABLES_CONTROL + ":"):
            by_customer[posting.customer].append(posting)
    rows = []
    for customer in sorted(by_customer):
        buckets = dict.fromkeys((name for name, _ in AGING_BUCKETS), 0)
        for day, cents in _open_invoices(by_customer[customer]):
            buckets[_bucket(as_of, day)] += cents
        if any(buckets.values()):
            amounts = (*buckets.values(), sum(buckets.values()))
            rows.append((customer, *(format_cents(cents) for cents in amounts)))
    names = tuple(name for name, _ in AGING_BUCKETS)
    return Table(("customer", *names, "total"), rows)


REPORTS: dict[str, Callable[[sqlite_utils.Database, str | None], Table]] = {
    "revenue-by-customer": revenue_by_customer,
    "wallet-rollforward": wallet_rollforward,
    "expiring-credits": expiring_credits,
    "receivables-aging": receivables_aging,
}


def report(books_dir: Path, name: str, month: str | None = None) -> Table:
    """Runs the report ``name`` (one of :data:`REPORTS`) on the books, optionally one month.

    Raises:
        UnknownReport: no report has that name.
    """
    if name not in REPORTS:
        raise UnknownReport(f"no report {name!r}; the reports are {', '.join(REPORTS)}")
    with commit.store_for_reading(books_dir) as db:
        return REPORTS[name](db, month)
