"""Month close (SPEC §6): seal a month's journal files and assert every balance after it.

After ``close``, the month's files never change again: later corrections for its days are
dated on the first day of the first open month (see :mod:`ledger_engine.core.planner`).  The
month's seal chains its files' SHA-256 to the previous month's seal
(:mod:`ledger_engine.core.seal`); ``reconcile`` recomputes the chain from the files on disk.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit, history
from ledger_engine.books import confined, layout, text
from ledger_engine.books.files import write_point
from ledger_engine.core import accounts, dates
from ledger_engine.core.errors import BooksTampered, NotClosable, RulesChanged
from ledger_engine.core.seal import GENESIS_SEAL, month_seal, seal_chain
from ledger_engine.store import queries


class CloseResult(NamedTuple):
    month: str
    files_sealed: int
    balance_assertions: int
    seal_sha256: str


def check_closable(db: sqlite_utils.Database, month: str) -> None:
    """Raises :class:`NotClosable` unless ``month`` is the next month to close."""
    closed = set(queries.closed_months(db))
    if month in closed:
        raise NotClosable(f"{month} is already closed")
    if closed and month < max(closed):
        raise NotClosable(f"{month} is before the last closed month {max(closed)}")
    open_before = [m for m in queries.months_with_files_before(db, month) if m not in closed]
    if open_before:
        raise NotClosable(f"an earlier month is still open: {open_before[0]}")
    last_day = dates.last_day_of_month(dates.parse_month(month))
    through = queries.posted_through(db)
    if through is None or through < last_day:
        raise NotClosable(
            f"{month} is not fully posted (posted through {through or 'nothing'}); "
            f"post through {last_day} first"
        )


def close_month(
    books_dir: Path, month: str, wait_seconds: float = 0, invocation: tuple[str, ...] = ()
) -> CloseResult:
    """Closes calendar month ``month`` (``YYYY-MM``) of the books at ``books_dir``.

    Raises:
        ValueError: ``month`` is not a month of the books' calendar (the command line
            refuses such a month before it calls this).
    """
    next_day = dates.first_of_next_month(dates.parse_calendar_month(month))
    with commit.writing(books_dir, wait_seconds, invocation) as run:
        check_closable(run.db, month)
        return _close(run, month, next_day)


def _assert_balances(run: commit.Run, writer: commit.JournalWriter, next_day) -> int:
    """Balance assertions for every account of every subledger; returns how many."""
    count = 0
    next_month = dates.month_of(next_day)
    for customer, segment in queries.customers(run.db):
        root = layout.customer_root_path(segment)
        if not writer.appender.exists(root):
            continue
        names = (
            accounts.wallet_account(segment),
            accounts.receivable_account(segment),
            *accounts.SHARED_ACCOUNTS,
        )
        totals = queries.balances(run.db, "sub", customer, next_day)
        writer.append_to_month(
            root,
            layout.customer_month_path(segment, next_month),
            text.balance_assertions(next_day, names, totals, run.currency),
        )
        count += len(names)
    return count


def _check_month_files(run: commit.Run, files: dict[str, str]) -> None:
    """A seal vouches for the files as they are: each must be what its run committed
    (SPEC v3 §6; an in-place edit of an open month is tampering, never sealed)."""
    for relative, recorded in sorted(files.items()):
        if confined.sha256(run.books_dir, relative) != recorded:
            raise BooksTampered(
                f"journal file {relative} changed since it was committed; restore it before "
                "closing (ledger-engine reconcile lists it)"
            )


def _rules_in_force(run: commit.Run) -> tuple:
    """The rules file, which must be the one the books were last posted under: a month is
    sealed with the rules it was posted under, never with an edit not posted yet."""
    rules = history.read_rules(run.books_dir)
    recorded = history.recorded_history(run.db)
    if recorded is not None and recorded.latest.sha256 != rules[0].sha256:
        raise RulesChanged(
            "rules.toml changed since the last post; post first (it decides from which day "
            "the change applies) or restore the file, then close"
        )
    return rules


def _close(run: commit.Run, month: str, next_day: datetime.date) -> CloseResult:
    closed = queries.closed_month_records(run.db)
    chain = seal_chain((record.month, record.files) for record in closed)
    previous = chain[closed[-1].month] if closed else GENESIS_SEAL
    files = queries.seal_month(run.db, month)
    _check_month_files(run, files)
    rules = _rules_in_force(run)
    # The seal covers the rules file the month was posted under too (SPEC v3 §6).
    sealed = {**files, layout.RULES_NAME: rules[0].sha256}
    seal = month_seal(previous, sealed)
    writer = commit.JournalWriter(run)
    gl_totals = queries.balances(run.db, "gl", before=next_day)
    meta = [
        ("files", len(files)),
        ("previous-seal", previous),
        ("seal-sha256", seal),
        ("rules-sha256", rules[0].sha256),
        ("run", run.run_id),
    ]
    writer.append_to_month(
        layout.LEDGER_NAME,
        layout.gl_month_path(dates.month_of(next_day)),
        text.closed_entry(next_day, month, meta)
        + text.balance_assertions(next_day, accounts.GL_ACCOUNTS, gl_totals, run.currency),
    )
    count = len(accounts.GL_ACCOUNTS) + _assert_balances(run, writer, next_day)
    writer.write()
    closed_at = commit.now_text()
    queries.record_closed_month(run.db, month, closed_at, run.run_id, sealed)
    write_point("run log")
    counts = {"files_sealed": len(files), "balance_assertions": count, "seal_sha256": seal,
              "closed_at": closed_at}  # fmt: skip
    commit.record_run(run, commit.RunRecord(f"close {month}", None, [], counts, rules, {}), writer)
    return CloseResult(month, len(files), count, seal)
