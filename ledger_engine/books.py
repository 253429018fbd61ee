"""The books directory: layout, init, the writer lock, and crash-safe appends.

Commit protocol (SPEC §6; documented in the README):

1. Every journal file is append-only and its committed length and SHA-256 are in the store
   (``journal_files``).
2. A run appends its new text to the journal files and fsyncs them (and new directories),
   then records the new lengths and hashes in the same store
   transaction as everything else it did, and commits.  The store commit is the commit point.
   A failure before the commit takes the appended text back at once.
3. Before anything else, every run (and ``reconcile``) truncates each journal file back to
   its committed length and deletes journal files the store does not know: the leftovers of
   a run that died before its commit.  A file *shorter* than recorded is damage, not a torn
   run, and stops the run.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from ledger_engine import journal, reports, store

LEDGER_NAME = "ledger.beancount"
ACCOUNTS_NAME = "accounts.beancount"
RULES_NAME = "rules.toml"
LOCK_NAME = ".lock"
CUSTOMER_ROOT_NAME = "customer.beancount"


class BooksError(Exception):
    """An expected failure with a one-line message (the CLI prints ``Error: ...``)."""


class BooksLocked(BooksError):
    """Another run holds the books."""


def gl_month_path(month: str) -> str:
    return f"gl/{month[:4]}/{month}.beancount"


def customer_dir(segment: str) -> str:
    return f"customers/{segment}"


def customer_root_path(segment: str) -> str:
    return f"{customer_dir(segment)}/{CUSTOMER_ROOT_NAME}"


def customer_month_path(segment: str, month: str) -> str:
    return f"{customer_dir(segment)}/{month}.beancount"


def sha256_file(path: Path, length: int | None = None) -> str:
    """SHA-256 of a file, or of its first ``length`` bytes."""
    digest = hashlib.sha256()
    remaining = length
    with path.open("rb") as stream:
        while remaining is None or remaining > 0:
            block = stream.read(1 << 20 if remaining is None else min(remaining, 1 << 20))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


# Fault injection for the reliability tests: a callable run at every write point, or None.
WRITE_POINT_HOOK = None
# For kill -9 tests of a real process: the number of the write point at which this process
# kills itself (counted from 1).  Unset in production.
KILL_AT_ENV = "LEDGER_ENGINE_TEST_KILL_AT_WRITE_POINT"
_write_points_seen = 0


def write_point(label: str) -> None:
    """Marks a place where a crash may happen (tests inject faults here)."""
    global _write_points_seen
    _write_points_seen += 1
    if WRITE_POINT_HOOK is not None:
        WRITE_POINT_HOOK(label)
    kill_at = os.environ.get(KILL_AT_ENV)
    if kill_at and int(kill_at) == _write_points_seen:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Appender:
    """Collects the text a run appends to journal files, then writes it durably."""

    def __init__(self, books: Path, db: sqlite_utils.Database):
        self.books = books
        self.db = db
        self.texts: dict[str, list[str]] = {}
        rows = db.execute("SELECT path, length, sealed FROM journal_files").fetchall()
        self.known = {path: length for path, length, _ in rows}
        self.sealed = {path for path, _, sealed in rows if sealed}

    def exists(self, relative: str) -> bool:
        return relative in self.known or relative in self.texts

    def append(self, relative: str, text: str) -> None:
        assert relative not in self.sealed, f"attempt to write into sealed file {relative}"
        self.texts.setdefault(relative, []).append(text)

    def _undo(self, written: list[str]) -> None:
        """Best effort: takes back what this run appended (recover() finishes the job)."""
        for relative in written:
            path = self.books / relative
            with contextlib.suppress(OSError):
                if relative in self.known:
                    os.truncate(path, self.known[relative])
                else:
                    path.unlink()

    def _append_all(self, written: list[str]) -> dict[str, str]:
        """Appends and fsyncs every file; returns the SHA-256 of each whole file."""
        hashes = {}
        new_directories = set()
        for relative in sorted(self.texts):
            path = self.books / relative
            if not path.parent.exists():
                path.parent.mkdir(parents=True)
                new_directories.add(path.parent)
            data = "".join(self.texts[relative]).encode("utf-8")
            write_point(f"append {relative}")
            written.append(relative)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            # A new file's hash is its data's; an old one is read back whole.
            new = relative not in self.known
            hashes[relative] = hashlib.sha256(data).hexdigest() if new else sha256_file(path)
        write_point("sync directories")
        for directory in sorted(new_directories | {d.parent for d in new_directories}):
            _fsync_directory(directory)
        return hashes

    def write(self) -> dict[str, str]:
        """Appends everything durably, records lengths in the store; returns path -> sha256."""
        written: list[str] = []
        try:
            hashes = self._append_all(written)
        except BaseException:
            self._undo(written)
            raise
        rows = []
        for relative in sorted(self.texts):
            month = relative.rsplit("/", 1)[-1].removesuffix(".beancount")
            is_month = len(month) == 7 and month[4] == "-"
            size = (self.books / relative).stat().st_size
            rows.append((relative, size, hashes[relative], month if is_month else None))
        self.db.conn.executemany(
            "INSERT OR REPLACE INTO journal_files (path, length, sha256, month, sealed) "
            "VALUES (?, ?, ?, ?, 0)",
            rows,
        )
        return hashes


def _walk_journals(books: Path) -> tuple[dict[str, int], list[str]]:
    """Size of every journal file under ``gl/`` and ``customers/`` by relative path, and the
    empty directories there.

    One ``scandir`` walk: a night's books hold tens of thousands of files, and ``pathlib``
    globbing with a ``stat`` per file took longer than a whole no-op run.
    """
    sizes: dict[str, int] = {}
    empty: list[str] = []
    pending = [top for top in ("gl", "customers") if (books / top).is_dir()]
    while pending:
        relative_dir = pending.pop()
        seen = False
        with os.scandir(books / relative_dir) as entries:
            for entry in entries:
                seen = True
                relative = f"{relative_dir}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    pending.append(relative)
                elif entry.name.endswith(".beancount"):
                    sizes[relative] = entry.stat(follow_symlinks=False).st_size
        if not seen and "/" in relative_dir:
            empty.append(relative_dir)
    return sizes, empty


def journal_files_on_disk(books: Path) -> list[str]:
    return sorted(_walk_journals(books)[0])


def _truncate(path: Path, length: int) -> None:
    with path.open("r+b") as stream:
        stream.truncate(length)
        os.fsync(stream.fileno())


def recover(books: Path, db: sqlite_utils.Database) -> list[str]:
    """Rolls journal files back to their committed state; returns what it repaired."""
    repaired = []
    recorded = {row[0]: row[1] for row in db.execute("SELECT path, length FROM journal_files")}
    on_disk, empty_directories = _walk_journals(books)
    for relative, length in recorded.items():
        size = on_disk.get(relative)
        if size is None:  # a root file, or missing
            path = books / relative
            if not path.exists():
                raise BooksError(f"journal file {relative} is missing (recorded in the store)")
            size = path.stat().st_size
        if size > length:
            _truncate(books / relative, length)
            repaired.append(f"truncated {relative} from {size} to {length} bytes")
        elif size < length:
            raise BooksError(
                f"journal file {relative} is shorter than recorded ({size} < {length} bytes)"
            )
    for relative in sorted(set(on_disk) - set(recorded)):
        (books / relative).unlink()
        repaired.append(f"removed {relative} (left by an interrupted run)")
    # Directories made by an interrupted run for a customer the store does not know.
    removed_parents = {relative.rsplit("/", 1)[0] for relative in set(on_disk) - set(recorded)}
    for relative in sorted(set(empty_directories) | removed_parents, reverse=True):
        directory = books / relative
        if relative.count("/") == 1 and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return repaired


@contextlib.contextmanager
def rolled_back_on_failure(books: Path, db: sqlite_utils.Database) -> Iterator[None]:
    """On any failure inside (the store transaction already rolled back), takes the journal
    files back to their committed state, so that an error leaves nothing half-written."""
    try:
        yield
    except BaseException:
        db.rollback()
        with contextlib.suppress(Exception):
            recover(books, db)
        raise


@contextlib.contextmanager
def locked(books: Path, wait_seconds: float = 0) -> Iterator[None]:
    """Holds the books' writer lock; raises :class:`BooksLocked` after ``wait_seconds``.

    ``flock`` locks die with their process, so a killed run never leaves a stale lock.
    """
    descriptor = os.open(books / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip()
                    raise BooksLocked(
                        f"the books at {books} are locked by another run"
                        + (f" (pid {holder})" if holder else "")
                    ) from None
                time.sleep(0.1)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)


def init_books(books: Path, currency: str, timezone: str, rules_text: str) -> None:
    """Creates empty books in ``books`` (which must not exist or be empty)."""
    if books.exists() and any(books.iterdir()):
        raise BooksError(f"{books} is not empty; init refuses to touch it")
    books.mkdir(parents=True, exist_ok=True)
    (books / RULES_NAME).write_text(rules_text, encoding="utf-8")
    ledger_text = journal.root_header(
        "General ledger (ledger-engine)", currency
    ) + journal.include_line(ACCOUNTS_NAME)
    (books / ACCOUNTS_NAME).write_text(journal.gl_accounts_text(currency), encoding="utf-8")
    (books / LEDGER_NAME).write_text(
        ledger_text + "\n" + reports.query_directives(), encoding="utf-8"
    )
    db = store.create_store(
        books,
        {
            "currency": currency,
            "timezone": timezone,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )
    with db.atomic():
        for relative in (LEDGER_NAME, ACCOUNTS_NAME):
            path = books / relative
            db["journal_files"].insert(
                {
                    "path": relative,
                    "length": path.stat().st_size,
                    "sha256": sha256_file(path),
                    "month": None,
                    "sealed": 0,
                }
            )
    db.close()
