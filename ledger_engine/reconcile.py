"""Reconcile (SPEC §6): prove the books consistent without trusting the code that wrote them.

Each check in :data:`CHECKS` returns a list of :class:`Difference` values (errors are values);
:func:`reconcile` runs them all, in that order, and never stops at the first problem.  It
reads only: a torn tail left by an interrupted run is reported, and the next ``post`` moves
it under ``recovered/``.  Numbers read from the journals are parsed, never asserted: a
number finer than a cent is a difference like any other.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import sqlite_utils
from beancount import loader

from ledger_engine import commit
from ledger_engine.books import layout
from ledger_engine.books.files import journal_files_on_disk, sha256_file
from ledger_engine.core import accounts
from ledger_engine.core.money import exact_cents, format_cents
from ledger_engine.store import db as store_db
from ledger_engine.store import queries


class Difference(NamedTuple):
    check: str
    message: str
    file: str | None = None
    account: str | None = None
    day: str | None = None
    expected: str | None = None
    found: str | None = None


class Report(NamedTuple):
    differences: tuple[Difference, ...]
    checked: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "differences": [d._asdict() for d in self.differences],
        }


def _file_difference(books_dir: Path, relative: str, recorded) -> Difference | None:
    path = books_dir / relative
    what = "sealed file" if recorded.sealed else "journal file"
    if not path.exists():
        return Difference("files", f"{what} is missing", relative)
    size = path.stat().st_size
    if size > recorded.length and sha256_file(path, recorded.length) == recorded.sha256:
        return Difference(
            "files",
            "uncommitted tail left by an interrupted run (the next post moves it to recovered/)",
            relative,
            expected=str(recorded.length),
            found=str(size),
        )
    found = sha256_file(path)
    if found != recorded.sha256:
        message = f"{what} changed since it was written"
        return Difference("files", message, relative, expected=recorded.sha256, found=found)
    return None


def check_file_hashes(books_dir: Path, db: sqlite_utils.Database) -> list[Difference]:
    """Every journal file is byte-for-byte what the store recorded (sealed ones included)."""
    recorded = queries.recorded_files(db)
    differences = [
        difference
        for relative, file in sorted(recorded.items())
        if (difference := _file_difference(books_dir, relative, file)) is not None
    ]
    for relative in journal_files_on_disk(books_dir):
        if relative not in recorded:
            differences.append(
                Difference(
                    "files",
                    "journal file unknown to the store (the next post moves it to recovered/)",
                    relative,
                )
            )
    return differences


def check_run_chain(books_dir: Path, db: sqlite_utils.Database) -> list[Difference]:
    """The run log's hash chain is intact."""
    differences = []
    previous = "0" * 64
    for run in queries.runs(db):
        if run["prev_hash"] != previous or queries.run_hash(run) != run["hash"]:
            differences.append(
                Difference(
                    "run_log",
                    f"run {run['run_id']} breaks the hash chain",
                    expected=previous,
                    found=run["prev_hash"],
                )
            )
        previous = run["hash"]
    return differences


def _load(path: Path) -> tuple[list, list[Difference]]:
    # beancount writes a .picklecache beside a journal that loads slowly; not in the books.
    os.environ.setdefault("BEANCOUNT_DISABLE_LOAD_CACHE", "1")
    entries, errors, _ = loader.load_file(str(path))
    return entries, [
        Difference(
            "load",
            str(error.message).splitlines()[0],
            (error.source or {}).get("filename", path.name),
        )
        for error in errors
    ]


Sums = dict[tuple[str, str], int]  # (day, account) -> cents


def _sums(entries: Iterable, file: str) -> tuple[Sums, list[Difference]]:
    """Posting sums per day and account of loaded entries; a number finer than a cent is
    a difference (and left out of the sums)."""
    totals: Sums = defaultdict(int)
    differences = []
    for entry in entries:
        for posting in getattr(entry, "postings", None) or ():
            cents = exact_cents(posting.units.number) if posting.units else None
            day = entry.date.isoformat()
            if cents is None:
                differences.append(
                    Difference(
                        "amounts",
                        f"amount {posting.units} is not a whole number of cents",
                        file, posting.account, day,
                    )  # fmt: skip
                )
                continue
            totals[(day, posting.account)] += cents
    return totals, differences


def _compare(check: str, expected: Sums, found: Sums, file_of: Callable, label: str):
    differences = []
    for key in sorted(set(expected) | set(found)):
        want, have = expected.get(key, 0), found.get(key, 0)
        if want != have:
            day, account = key
            differences.append(
                Difference(
                    check,
                    f"{label}: {account} on {day} differs",
                    file_of(day),
                    account,
                    day,
                    format_cents(want),
                    format_cents(have),
                )
            )
    return differences


def subledger_roots(books_dir: Path, db: sqlite_utils.Database) -> list[tuple[str, str]]:
    """``(customer, segment)`` of every customer whose subledger root exists."""
    return [
        (customer, segment)
        for customer, segment in queries.customers(db)
        if (books_dir / layout.customer_root_path(segment)).exists()
    ]


def _check_subledger(books_dir: Path, db, customer: str, segment: str, summed: Sums):
    entries, differences = _load(books_dir / layout.customer_root_path(segment))
    sub, amount_differences = _sums(entries, layout.customer_root_path(segment))
    differences += amount_differences
    differences += _compare(
        "subledger_vs_store",
        queries.posting_sums(db, "sub", customer),
        sub,
        lambda day: layout.customer_month_path(segment, day[:7]),
        f"subledger of {customer} vs store",
    )
    for (day, account), cents in sub.items():
        summed[(day, accounts.control_account(account))] += cents
    return differences


def check_journals(books_dir: Path, db: sqlite_utils.Database) -> list[Difference]:
    """Every journal loads cleanly; GL = sum of subledgers = store, per account and day."""
    gl_entries, differences = _load(books_dir / layout.LEDGER_NAME)
    gl, amount_differences = _sums(gl_entries, layout.LEDGER_NAME)
    differences += amount_differences

    def gl_file(day: str) -> str:
        return layout.gl_month_path(day[:7])

    store_gl = queries.posting_sums(db, "gl")
    differences += _compare("gl_vs_store", store_gl, gl, gl_file, "general ledger vs store")
    summed: Sums = defaultdict(int)
    for customer, segment in subledger_roots(books_dir, db):
        differences += _check_subledger(books_dir, db, customer, segment, summed)
    differences += _compare(
        "gl_vs_subledgers", gl, summed, gl_file, "general ledger vs sum of subledgers"
    )
    return differences


def check_rating(books_dir: Path, db: sqlite_utils.Database) -> list[Difference]:
    """Accepted usage is rated, rated conversations are posted once, lots match wallets."""
    differences = [
        Difference("rating", f"accepted usage event {event_id} is not rated")
        for event_id in queries.unrated_usage_events(db)
    ]
    for row in queries.usage_vs_postings(db):
        differences.append(
            Difference(
                "usage_vs_postings",
                f"rated and posted usage of {row[0]} on {row[1]} differ",
                day=row[1],
                expected=json.dumps(row[2::2]),
                found=json.dumps(row[3::2]),
            )
        )
    for customer, wallet, lots, _ in queries.wallet_balances(db):
        if wallet != lots:
            differences.append(
                Difference(
                    "lots_vs_wallet",
                    f"lots of {customer} do not sum to its wallet",
                    expected=format_cents(wallet),
                    found=format_cents(lots),
                )
            )
    return differences


# The checks, in the order they run and report.
CHECKS = (check_file_hashes, check_run_chain, check_journals, check_rating)


def reconcile(books_dir: Path) -> Report:
    """Runs every check of SPEC §6 on the books (holding their lock); never modifies them."""
    with commit.reading(books_dir) as db:
        store_db.ensure_views(db)
        differences = [difference for check in CHECKS for difference in check(books_dir, db)]
        counts = queries.counts(db)
        checked = {
            "journal_files": counts["journal_files"],
            "subledgers": len(subledger_roots(books_dir, db)),
            "runs": counts["runs"],
            "conversations": counts["conversations"],
            "sealed_files": counts["sealed_files"],
        }
    return Report(tuple(differences), checked)
