"""Month close (SPEC §6): seal a month's journal files and assert every balance after it.

After ``close``, the month's files never change again: later corrections for its days are
dated on the first day of the first open month (see :mod:`ledger_engine.planner`), and
``reconcile`` compares every sealed file with the SHA-256 recorded here.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import accounts, books, dates, journal, store
from ledger_engine.money import format_cents
from ledger_engine.post import JournalWriter, now_text, record_run


class CloseResult(NamedTuple):
    month: str
    files_sealed: int
    balance_assertions: int
    seal_sha256: str


def _check_closable(db: sqlite_utils.Database, month: str) -> None:
    closed = {row[0] for row in db.execute("SELECT month FROM closed_months")}
    if month in closed:
        raise books.BooksError(f"{month} is already closed")
    if closed and month < max(closed):
        raise books.BooksError(f"{month} is before the last closed month {max(closed)}")
    open_before = [
        row[0]
        for row in db.execute(
            "SELECT DISTINCT month FROM journal_files WHERE month IS NOT NULL AND month < ? "
            "ORDER BY month",
            [month],
        )
        if row[0] not in closed
    ]
    if open_before:
        raise books.BooksError(f"an earlier month is still open: {open_before[0]}")
    last_day = dates.last_day_of_month(dates.parse_month(month))
    through = store.posted_through(db)
    if through is None or through < last_day:
        raise books.BooksError(
            f"{month} is not fully posted (posted through {through or 'nothing'}); "
            f"post through {last_day} first"
        )


def _balances(db, where: str, params, before: str) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for account, cents in db.execute(
        f"SELECT account, sum(amount) FROM postings WHERE {where} AND effective_day < ? "
        "GROUP BY account",
        [*params, before],
    ):
        totals[account] += cents
    return totals


def _assertions(day: datetime.date, names, totals: dict[str, int], currency: str) -> str:
    return (
        "".join(
            f"{day} balance {name}  {format_cents(totals.get(name, 0))} {currency}\n"
            for name in names
        )
        + "\n"
    )


def _seal(db: sqlite_utils.Database, month: str) -> dict[str, str]:
    files = dict(
        db.execute("SELECT path, sha256 FROM journal_files WHERE month = ? ORDER BY path", [month])
    )
    db.execute("UPDATE journal_files SET sealed = 1 WHERE month = ?", [month])
    return files


def close_month(books_dir: Path, month: str, wait_seconds: float = 0) -> CloseResult:
    """Closes calendar month ``month`` (``YYYY-MM``) of the books at ``books_dir``."""
    next_day = dates.first_of_next_month(dates.parse_month(month))
    with books.locked(books_dir, wait_seconds):
        db = store.open_store(books_dir)
        try:
            books.recover(books_dir, db)
            _check_closable(db, month)
            with books.rolled_back_on_failure(books_dir, db), db.atomic():
                return _close_locked(books_dir, db, month, next_day)
        finally:
            db.close()


def _close_locked(books_dir, db, month: str, next_day: datetime.date) -> CloseResult:
    currency = store.get_meta(db, "currency")
    started = now_text()
    run_id = store.next_run_id(db)
    files = _seal(db, month)
    seal_sha = hashlib.sha256(
        "".join(f"{path} {sha}\n" for path, sha in files.items()).encode()
    ).hexdigest()
    writer = JournalWriter(books_dir, db, run_id, currency)
    next_month = dates.month_of(next_day)
    closed_entry = (
        "\n".join(
            [
                f'{next_day} custom "closed" {journal.quote(month)}',
                *journal.meta_lines(
                    [("files", len(files)), ("seal-sha256", seal_sha), ("run", run_id)]
                ),
            ]
        )
        + "\n\n"
    )
    gl_totals = _balances(db, "ledger = 'gl'", [], next_day.isoformat())
    writer.append_to_month(
        books.LEDGER_NAME,
        books.gl_month_path(next_month),
        closed_entry + _assertions(next_day, accounts.GL_ACCOUNTS, gl_totals, currency),
    )
    count = len(accounts.GL_ACCOUNTS)
    for customer, segment in db.execute("SELECT customer, segment FROM customers").fetchall():
        root = books.customer_root_path(segment)
        if not writer.appender.exists(root):
            continue
        names = (
            accounts.wallet_account(segment),
            accounts.receivable_account(segment),
            *accounts.SHARED_ACCOUNTS,
        )
        totals = _balances(db, "ledger = 'sub' AND customer = ?", [customer], next_day.isoformat())
        writer.append_to_month(
            root,
            books.customer_month_path(segment, next_month),
            _assertions(next_day, names, totals, currency),
        )
        count += len(names)
    hashes = writer.appender.write()
    db["closed_months"].insert(
        {
            "month": month,
            "closed_at": now_text(),
            "run_id": run_id,
            "files": json.dumps(files, sort_keys=True),
        }
    )
    books.write_point("store commit")
    record_run(
        db,
        {
            "run_id": run_id,
            "command": f"close {month}",
            "started": started,
            "finished": now_text(),
            "through": None,
            "inputs": "[]",
            "counts": json.dumps({"files_sealed": len(files), "balance_assertions": count}),
            "files": json.dumps(hashes, sort_keys=True),
        },
    )
    return CloseResult(month, len(files), count, seal_sha)
