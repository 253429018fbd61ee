"""Month close (SPEC §6): seal a month's journal files and assert every balance after it.

After ``close``, the month's files never change again: later corrections for its days are
dated on the first day of the first open month (see :mod:`ledger_engine.core.planner`).  The
month's seal chains its files' SHA-256 to the previous month's seal
(:mod:`ledger_engine.core.seal`); ``reconcile`` recomputes the chain from the files on disk.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit, history
from ledger_engine import reconcile as reconciling
from ledger_engine.books import confined, layout, text
from ledger_engine.books.files import recovery_plan, write_point
from ledger_engine.core import accounts, dates
from ledger_engine.core.errors import BooksTampered, NotClosable, RulesChanged
from ledger_engine.core.money import format_cents
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

    A guarded close (SPEC v3 §6): it refuses, writing nothing, when recovery would move
    anything (bytes or files no run committed: a hand entry is never moved away without a
    word) or ``reconcile`` is not clean; :func:`check_month` prints the whole checklist.

    Raises:
        NotClosable: not the next month to close, not posted to its end, recovery would
            move something, or reconcile finds differences.
        ValueError: ``month`` is not a month of the books' calendar (the command line
            refuses such a month before it calls this).
    """
    next_day = dates.first_of_next_month(dates.parse_calendar_month(month))
    with commit.writing(books_dir, wait_seconds, invocation, refuse_recovery="close") as run:
        check_closable(run.db, month)
        _refuse_unless_reconciled(books_dir)
        return _close(run, month, next_day)


def _refuse_unless_reconciled(books_dir: Path) -> None:
    report = reconciling.reconcile(books_dir, lock=False)  # this run holds the lock
    if not report.ok:
        first = report.differences[0]
        where = " ".join(part for part in (first.file, first.account, first.day) if part)
        raise NotClosable(
            f"reconcile is not clean ({len(report.differences)} differences; the first: "
            f"[{first.check}] {where}: {first.message}); close refuses until it is"
        )


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


# ------------------------------------------------------------------ the month's checklist


class Check(NamedTuple):
    """One item of the month-end checklist: whether it holds, a line for people, the data
    for ``--json``."""

    name: str
    ok: bool
    line: str
    data: dict


class Checklist(NamedTuple):
    """``close MONTH --check``: every item, whether ``close`` would close, and the seal it
    would print."""

    month: str
    checks: tuple[Check, ...]
    closable: bool
    seal: str | None

    def as_json(self) -> dict:
        return {
            "month": self.month,
            "closable": self.closable,
            "seal_sha256": self.seal,
            "checks": [{"name": c.name, "ok": c.ok, "line": c.line, **c.data} for c in self.checks],
        }


def check_month(books_dir: Path, month: str) -> Checklist:
    """The month-end checklist of SPEC v3 §6, written nothing: posted through the month's
    end, reconcile clean, nothing for recovery to move and nothing new in ``recovered/``
    since the last close, the rejections and late events since then, the roll-forward and
    the receivables tying to the GL, and the seal ``close`` would print."""
    next_day = dates.first_of_next_month(dates.parse_calendar_month(month))
    with commit.reading(books_dir) as db:
        since_run = _last_close_run(db)
        checks = [
            _order_check(db, month),
            _reconcile_check(books_dir),
            _recovery_check(books_dir, db, since_run),
            _rejections_check(db, since_run),
            _late_events_check(db, since_run),
            _ties_check(db, next_day),
        ]
        closable = all(c.ok for c in checks if c.name in GUARDS)
        seal = _seal_it_would_print(books_dir, db, month) if checks[0].ok else None
    return Checklist(month, tuple(checks), closable, seal)


# The items ``close`` itself refuses on; the others are for the people who sign.
GUARDS = ("order", "reconcile", "recovery")


def _last_close_run(db: sqlite_utils.Database) -> int:
    closed = queries.closed_month_records(db)
    return closed[-1].run_id if closed else 0


def _order_check(db: sqlite_utils.Database, month: str) -> Check:
    through = queries.posted_through(db)
    data = {"posted_through": through and through.isoformat()}
    try:
        check_closable(db, month)
    except NotClosable as why:
        return Check("order", False, str(why), data)
    return Check("order", True, f"posted through {through}, the earlier months closed", data)


def _reconcile_check(books_dir: Path) -> Check:
    report = reconciling.reconcile(books_dir, lock=False)  # the shared lock is held
    differences = [f"[{d.check}] {d.file or ''} {d.message}".strip() for d in report.differences]
    line = "reconcile clean" if report.ok else f"reconcile: {len(differences)} differences"
    if report.pending:
        line += f" ({len(report.pending)} corrections held back: pending, not differences)"
    return Check("reconcile", report.ok, line, {"differences": differences[:20],
                                                 "pending": len(report.pending)})  # fmt: skip


def _recovery_check(books_dir: Path, db: sqlite_utils.Database, since_run: int) -> Check:
    moves = recovery_plan(books_dir, queries.recorded_files(db)).lines()
    recovered = [
        name for name in _recovered_runs(books_dir) if int(name.removeprefix("run-")) > since_run
    ]
    if moves:
        line = f"recovery would move {len(moves)}: {moves[0]}"
    elif recovered:
        line = f"recovered/ holds {', '.join(recovered)} since the last close: look at it"
    else:
        line = "nothing for recovery to move, nothing new in recovered/"
    # A move refuses the close; what earlier runs moved is for people to look at.
    return Check("recovery", not moves, line, {"would_move": moves, "recovered_runs": recovered})


def _recovered_runs(books_dir: Path) -> list[str]:
    found = confined.lstat(books_dir, layout.RECOVERED_DIR)
    if found is None or not stat.S_ISDIR(found.st_mode):
        return []
    with os.scandir(books_dir / layout.RECOVERED_DIR) as entries:
        names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    return sorted((n for n in names if re.fullmatch(r"run-[0-9]+", n)), key=lambda n: int(n[4:]))


def _rejections_check(db: sqlite_utils.Database, since_run: int) -> Check:
    """The rejections since the last close, by reason, with the money they would have
    posted where the event says (a money event's amount)."""
    by_reason: dict[str, list[int]] = {}
    for reason, amount in queries.rejections_since(db, since_run):
        counted = by_reason.setdefault(reason, [0, 0])
        counted[0] += 1
        counted[1] += amount or 0
    parts = [
        f"{reason} {count}" + (f" ({format_cents(cents)})" if cents else "")
        for reason, (count, cents) in sorted(by_reason.items())
    ]
    line = "rejections since the last close: " + (", ".join(parts) if parts else "none")
    data = {reason: {"events": count, "amount": format_cents(cents)}
            for reason, (count, cents) in sorted(by_reason.items())}  # fmt: skip
    return Check("rejections", True, line, {"by_reason": data})


def _late_events_check(db: sqlite_utils.Database, since_run: int) -> Check:
    late = queries.late_events_since(db, since_run)
    months = sorted({day[:7] for _, day in late})
    line = f"late events since the last close: {len(late)}" + (
        f" (for {', '.join(months)})" if late else ""
    )
    return Check("late_events", True, line, {"events": len(late), "months": months})


def _ties_check(db: sqlite_utils.Database, next_day: datetime.date) -> Check:
    """The wallets' closing (the roll-forward's) and the open receivables (the aging's
    total), summed over the subledgers at the month's end, against the GL's control
    accounts."""
    gl = queries.balances(db, "gl", before=next_day)
    sub: dict[str, int] = {}
    for account, cents in queries.balances(db, "sub", before=next_day).items():
        control = accounts.control_account(account)
        sub[control] = sub.get(control, 0) + cents
    ties = {}
    for name, account in (("wallets", accounts.WALLETS_CONTROL),
                          ("receivables", accounts.RECEIVABLES_CONTROL)):  # fmt: skip
        ties[name] = {"gl": format_cents(gl.get(account, 0)),
                      "subledgers": format_cents(sub.get(account, 0))}  # fmt: skip
    ok = all(tie["gl"] == tie["subledgers"] for tie in ties.values())
    owed = format_cents(-gl.get(accounts.WALLETS_CONTROL, 0))  # a liability: owed shows plus
    receivables = ties["receivables"]["gl"]
    line = (
        f"wallets owed {owed} (the roll-forward's closing) and receivables {receivables} "
        "tie to the GL"
        if ok
        else f"the subledgers do not tie to the GL: {ties}"
    )
    return Check("ties", ok, line, ties)


def _seal_it_would_print(books_dir: Path, db: sqlite_utils.Database, month: str) -> str:
    closed = queries.closed_month_records(db)
    chain = seal_chain((record.month, record.files) for record in closed)
    previous = chain[closed[-1].month] if closed else GENESIS_SEAL
    rules = history.read_rules(books_dir)[0]
    return month_seal(previous, {**queries.month_files(db, month), layout.RULES_NAME: rules.sha256})
