"""Reconcile (SPEC §6): prove the books consistent without trusting the code that wrote them.

Each check returns a list of :class:`Difference` values (errors are values); ``reconcile``
runs them all, in a fixed order, and never stops at the first problem.  It reads only: a
torn tail left by an interrupted run is reported, and repaired by the next ``post``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import sqlite_utils
from beancount import loader

from ledger_engine import accounts, books, post, store
from ledger_engine.money import decimal_to_cents, format_cents

os.environ.setdefault("BEANCOUNT_DISABLE_LOAD_CACHE", "1")  # no .picklecache in the books


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


def check_file_hashes(books_dir: Path, db: sqlite_utils.Database) -> list[Difference]:
    """Every journal file is byte-for-byte what the store recorded (sealed ones included)."""
    differences = []
    recorded = {
        row[0]: row[1:]
        for row in db.execute("SELECT path, length, sha256, sealed FROM journal_files")
    }
    for relative, (length, sha, sealed) in sorted(recorded.items()):
        path = books_dir / relative
        what = "sealed file" if sealed else "journal file"
        if not path.exists():
            differences.append(Difference("files", f"{what} is missing", relative))
            continue
        size = path.stat().st_size
        if size > length and books.sha256_file(path, length) == sha:
            differences.append(
                Difference(
                    "files",
                    "uncommitted tail left by an interrupted run (the next post removes it)",
                    relative,
                    expected=str(length),
                    found=str(size),
                )
            )
        elif books.sha256_file(path) != sha:
            differences.append(
                Difference(
                    "files",
                    f"{what} changed since it was written",
                    relative,
                    expected=sha,
                    found=books.sha256_file(path),
                )
            )
    for relative in books.journal_files_on_disk(books_dir):
        if relative not in recorded:
            differences.append(Difference("files", "journal file unknown to the store", relative))
    return differences


def check_run_chain(db: sqlite_utils.Database) -> list[Difference]:
    """The run log's hash chain is intact."""
    differences = []
    previous = "0" * 64
    for row in db.execute("SELECT * FROM runs ORDER BY run_id").fetchall():
        run = dict(
            zip(
                [c[0] for c in db.execute("SELECT * FROM runs LIMIT 0").description],
                row,
                strict=True,
            )
        )
        if run["prev_hash"] != previous or post.run_hash(run) != run["hash"]:
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
    entries, errors, _ = loader.load_file(str(path))
    relative = path.name
    return entries, [
        Difference(
            "load",
            str(error.message).splitlines()[0],
            (error.source or {}).get("filename", str(relative)),
        )
        for error in errors
    ]


def _sums(entries: Iterable, mapper=lambda account: account) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        for posting in getattr(entry, "postings", None) or ():
            key = (entry.date.isoformat(), mapper(posting.account))
            totals[key] += decimal_to_cents(posting.units.number)
    return totals


def _store_sums(db, where: str, params, mapper=lambda a: a) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for day, account, cents in db.execute(
        f"SELECT effective_day, account, sum(amount) FROM postings WHERE {where} "
        "GROUP BY effective_day, account",
        params,
    ):
        totals[(day, mapper(account))] += cents
    return totals


def _compare(check: str, expected: dict, found: dict, file_of, label: str) -> list[Difference]:
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


def check_journals(books_dir: Path, db: sqlite_utils.Database) -> tuple[list[Difference], int]:
    """Every journal loads cleanly; GL = sum of subledgers = store, per account and day."""
    differences = []
    gl_entries, errors = _load(books_dir / books.LEDGER_NAME)
    differences += errors
    gl = _sums(gl_entries)
    differences += _compare(
        "gl_vs_store",
        _store_sums(db, "ledger = 'gl'", []),
        gl,
        lambda day: books.gl_month_path(day[:7]),
        "general ledger vs store",
    )
    summed: dict[tuple[str, str], int] = defaultdict(int)
    customers = db.execute("SELECT customer, segment FROM customers").fetchall()
    loaded = 0
    for customer, segment in customers:
        root = books_dir / books.customer_root_path(segment)
        if not root.exists():
            continue
        loaded += 1
        entries, errors = _load(root)
        differences += errors
        sub = _sums(entries)
        differences += _compare(
            "subledger_vs_store",
            _store_sums(db, "customer = ? AND ledger = 'sub'", [customer]),
            sub,
            lambda day, s=segment: books.customer_month_path(s, day[:7]),
            f"subledger of {customer} vs store",
        )
        for (day, account), cents in sub.items():
            summed[(day, accounts.control_account(account))] += cents
    differences += _compare(
        "gl_vs_subledgers",
        gl,
        summed,
        lambda day: books.gl_month_path(day[:7]),
        "general ledger vs sum of subledgers",
    )
    return differences, loaded


def check_rating(db: sqlite_utils.Database) -> list[Difference]:
    """Accepted usage is rated, rated conversations are posted once, lots match wallets."""
    differences = []
    for (event_id,) in db.execute(
        "SELECT e.id FROM v_events e LEFT JOIN verdicts v ON v.event_id = e.id "
        "LEFT JOIN conversations c ON c.customer = e.customer "
        "AND c.conversation = e.conversation WHERE e.type = 'ai_usage' "
        "AND e.feature != 'playground' AND v.event_id IS NULL AND c.conversation IS NULL"
    ):
        differences.append(Difference("rating", f"accepted usage event {event_id} is not rated"))
    for row in db.execute("SELECT * FROM v_usage_vs_postings"):
        differences.append(
            Difference(
                "usage_vs_postings",
                f"rated and posted usage of {row[0]} on {row[1]} differ",
                day=row[1],
                expected=json.dumps(row[2::2]),
                found=json.dumps(row[3::2]),
            )
        )
    for customer, wallet, lots, _ in db.execute("SELECT * FROM v_wallet_balances"):
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


def reconcile(books_dir: Path) -> Report:
    """Runs every check of SPEC §6 on the books; never modifies them."""
    db = store.open_store(books_dir)
    try:
        if set(store.VIEWS) - set(db.view_names()):
            store.create_views(db)  # books made before a view existed
        differences = check_file_hashes(books_dir, db)
        differences += check_run_chain(db)
        journal_differences, loaded = check_journals(books_dir, db)
        differences += journal_differences
        differences += check_rating(db)
        checked = {
            "journal_files": db.execute("SELECT count(*) FROM journal_files").fetchone()[0],
            "subledgers": loaded,
            "runs": db.execute("SELECT count(*) FROM runs").fetchone()[0],
            "conversations": db.execute("SELECT count(*) FROM conversations").fetchone()[0],
            "sealed_files": db.execute(
                "SELECT count(*) FROM journal_files WHERE sealed = 1"
            ).fetchone()[0],
        }
        return Report(tuple(differences), checked)
    finally:
        db.close()
