"""The write stage and its commit protocol, shared by every command that writes the books.

:func:`writing` takes the lock, opens the store, rolls the journals back to their committed
state (the leftovers of a run that died), and opens the one store transaction of the run;
on any failure it rolls the store back and takes the journals back again, so an error
leaves nothing half-written.  :class:`JournalWriter` turns planned entries into journal text
and store rows.  The protocol itself is described in :mod:`ledger_engine.books.files`.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import __version__
from ledger_engine.books import layout, text
from ledger_engine.books.files import (
    Appender,
    locked,
    recover,
    recovery_plan,
    sha256_file,
    write_point,
)
from ledger_engine.core import accounts, dates
from ledger_engine.core.errors import BooksNotEmpty, NotClosable
from ledger_engine.core.model import GlSummary, JournalFile
from ledger_engine.rules import Rules
from ledger_engine.store import db as store_db
from ledger_engine.store import queries, runlog


def now_text() -> str:
    """The clock, for the run log (the only place the engine reads it besides ``post``'s
    default last day)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def create_books(books_dir: Path, currency: str, timezone: str, rules_text: str) -> None:
    """Creates empty books in ``books_dir`` (which must not exist or be empty)."""
    if books_dir.exists() and any(books_dir.iterdir()):
        raise BooksNotEmpty(f"{books_dir} is not empty; init refuses to touch it")
    books_dir.mkdir(parents=True, exist_ok=True)
    (books_dir / layout.RULES_NAME).write_text(rules_text, encoding="utf-8")
    (books_dir / layout.ACCOUNTS_NAME).write_text(text.gl_accounts_text(currency), "utf-8")
    (books_dir / layout.LEDGER_NAME).write_text(text.ledger_root(currency), "utf-8")
    (books_dir / layout.DASHBOARDS_NAME).write_bytes(layout.DASHBOARDS_TEMPLATE.read_bytes())
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with store_db.store_errors():
        db = store_db.create_store(
            books_dir, {"currency": currency, "timezone": timezone, "created": created}
        )
        with db.atomic():
            queries.record_files(
                db,
                {
                    relative: JournalFile(
                        (books_dir / relative).stat().st_size,
                        sha256_file(books_dir / relative),
                        None,
                    )
                    for relative in (layout.LEDGER_NAME, layout.ACCOUNTS_NAME)
                },
            )
        db.close()


class Run(NamedTuple):
    """An open run: the books, the store with its transaction open, what recovery did, and
    the appenders whose text a failure takes back."""

    books_dir: Path
    db: sqlite_utils.Database
    run_id: int
    started: str
    currency: str
    timezone: str
    repaired: tuple[str, ...]
    appenders: list[Appender]
    invocation: tuple[str, ...] = ()  # the command line, for the run log


@contextlib.contextmanager
def writing(
    books_dir: Path,
    wait_seconds: float = 0,
    invocation: tuple[str, ...] = (),
    refuse_recovery: str | None = None,
) -> Iterator[Run]:
    """Holds the books for one writing run; commits the store when the block ends.

    On any failure before the commit point (the store's COMMIT, a full disk included) the
    store is rolled back and the run's own appended bytes are truncated away: truncating
    needs no free space, and those bytes are the run's, not someone else's.  What a crash
    leaves, the next run's recovery moves to ``recovered/``.

    Raises:
        NoBooks: there are no books at ``books_dir``.
        BooksLocked: another run holds them past ``wait_seconds``.
        BooksDamaged: a journal file is missing or shorter than recorded.
        BooksTampered: a sealed file differs from its seal, a committed byte changed, the
            store is not the engine's own, or a link is in the books.
        NotClosable: ``refuse_recovery`` (the command's name) is given and recovery would
            move something (``close`` never seals books with bytes no run committed).
    """
    store_db.require_store(books_dir)
    with locked(books_dir, wait_seconds), store_db.store_errors():
        db = store_db.open_store(books_dir)
        try:
            run_id = runlog.next_run_id(db)
            if refuse_recovery is not None:
                _refuse_recovery(books_dir, db, refuse_recovery)
            repaired = tuple(recover(books_dir, queries.recorded_files(db), run_id))
            settings = queries.books_settings(db)
            run = Run(books_dir, db, run_id, now_text(), *settings, repaired, [], invocation)
            try:
                with db.atomic():
                    yield run
                    write_point("store commit")
            except BaseException:
                _roll_back(run)
                raise
        finally:
            db.close()


def _refuse_recovery(books_dir: Path, db: sqlite_utils.Database, command: str) -> None:
    moves = recovery_plan(books_dir, queries.recorded_files(db)).lines()
    if moves:
        more = f" (and {len(moves) - 1} more)" if len(moves) > 1 else ""
        raise NotClosable(
            f"{command} refuses while recovery would move {moves[0]}{more}: post first (it "
            "moves them to recovered/ and says so) or remove them (reconcile lists them)"
        )


def _roll_back(run: Run) -> None:
    """The store rolled back, then each file the run appended to taken back to the length
    the store records now (only bytes the store did not commit are taken back)."""
    write_point("rollback")
    with contextlib.suppress(sqlite3.Error):
        run.db.conn.rollback()
    try:
        recorded_now = queries.recorded_files(run.db)
    except sqlite3.Error:
        return  # the store cannot say what it holds: the next run's recovery decides
    for appender in run.appenders:
        appender.undo(recorded_now)


@contextlib.contextmanager
def store_for_reading(
    books_dir: Path, check_schema: bool = True
) -> Iterator[sqlite_utils.Database]:
    """The store, read-only, for a report that needs no lock (it reads committed rows
    only); it works on a read-only copy of the books."""
    with store_db.store_errors():
        db = store_db.open_store(books_dir, read_only=True, check_schema=check_schema)
        try:
            yield db
        finally:
            db.close()


@contextlib.contextmanager
def reading(books_dir: Path, check_schema: bool = True) -> Iterator[sqlite_utils.Database]:
    """The store, read-only, while holding the books' lock, shared (so no run is half-way
    through, and readers never wait for each other)."""
    store_db.require_store(books_dir)
    with locked(books_dir, shared=True), store_for_reading(books_dir, check_schema) as db:
        yield db


class JournalWriter:
    """Turns planned entries into journal text (appended at the end) and store rows."""

    def __init__(self, run: Run):
        self.run = run
        self.appender = Appender(run.books_dir, queries.recorded_files(run.db))
        run.appenders.append(self.appender)
        self.digests: dict[str, str] = {}  # of the transactions and postings rows written
        self.written: dict[str, JournalFile] = {}

    def append_to_month(self, root: str, month_path: str, entry_text: str) -> None:
        """Appends ``entry_text`` to a month file, including it from ``root`` when new."""
        if not self.appender.exists(month_path):
            include = layout.include_path(root, month_path)
            self.appender.append(root, text.include_line(include))
        self.appender.append(month_path, entry_text)

    def ensure_customer(self, customer: str) -> None:
        """Gives a customer its subledger root (open directives) on first sight."""
        segment = accounts.customer_segment(customer)
        root = layout.customer_root_path(segment)
        if not self.appender.exists(root):
            self.appender.append(root, text.customer_root(customer, segment, self.run.currency))

    def write_summaries(self, summaries: Iterable[GlSummary]) -> int:
        """Writes each GL summary and the subledger entries it sums; records their rows.

        Returns:
            The number of transactions written (summaries and entries).
        """
        placed = []
        for summary in summaries:
            gl_file = layout.gl_month_path(dates.month_of(summary.day))
            self.append_to_month(
                layout.LEDGER_NAME, gl_file, text.gl_summary_text(summary, self.run.currency)
            )
            entry_files = []
            for entry in summary.entries:
                self.ensure_customer(entry.customer)
                month = dates.month_of(entry.effective_day)
                path = layout.customer_month_path(entry.segment, month)
                root = layout.customer_root_path(entry.segment)
                entry_text = text.subledger_text(entry, summary.link, self.run.currency)
                self.append_to_month(root, path, entry_text)
                entry_files.append(path)
            placed.append(queries.Placed(summary, gl_file, tuple(entry_files)))
        written, self.digests = queries.record_postings(self.run.db, placed)
        return written

    def write(self) -> dict[str, str]:
        """Appends everything durably and records the files; returns path -> SHA-256."""
        self.written = self.appender.write()
        queries.record_files(self.run.db, self.written)
        return {path: file.sha256 for path, file in self.written.items()}


class RunRecord(NamedTuple):
    """What a run's record in the run log says besides its times and chain."""

    command: str
    through: str | None
    inputs: list[dict]
    counts: dict
    rules: tuple[Rules, str]  # the rules file in force for the run, and its text
    digests: dict[str, str]  # of the rows it wrote (store.runlog)
    options: dict = {}  # how it ran, as a replay must run it again (post: "full")


def _who() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname()}


def record_run(run: Run, record: RunRecord, writer: JournalWriter) -> str:
    """Appends the run to the hash-chained run log (and keeps its rules text); returns its
    hash."""
    written = writer.written
    rules, rules_text = record.rules
    queries.keep_rules_text(run.db, rules.sha256, rules_text)
    digests = {
        "events": runlog.digest_of(()),
        "transactions": runlog.digest_of(()),
        "postings": runlog.digest_of(()),
        "state": runlog.digest_of(()),
        **writer.digests,
        **record.digests,
        "quarantine": runlog.quarantine_digest(run.db, run.run_id),
    }
    details = {
        "arguments": list(run.invocation),
        "engine": __version__,
        **_who(),
        "rules_sha256": rules.sha256,
        "lengths": {path: file.length for path, file in sorted(written.items())},
        "options": record.options,
        "digests": dict(sorted(digests.items())),
    }
    return runlog.record_run(
        run.db,
        {
            "run_id": run.run_id,
            "command": record.command,
            "started": run.started,
            "finished": now_text(),
            "through": record.through,
            "inputs": json.dumps(record.inputs),
            "counts": json.dumps(record.counts, sort_keys=True),
            "files": json.dumps({p: f.sha256 for p, f in written.items()}, sort_keys=True),
            "details": json.dumps(details, sort_keys=True),
        },
    )
