"""The journal files on disk: crash-safe appends, recovery, the writer lock, file hashes.

Commit protocol (SPEC §6; the design doc tells it whole):

1. Every journal file is append-only; its committed length and SHA-256 are in the store.
2. A run appends its new text to the journal files and fsyncs them (and new directories;
   a run that writes many files makes the file system durable with one ``syncfs`` instead),
   then records the new lengths and hashes in the same store transaction as everything
   else it did, and commits.  The store commit is the commit point.  A failure before the
   commit takes the appended text back at once.
3. Before anything else, every run moves the bytes past each journal file's committed
   length, and the journal files the store does not know, under ``recovered/``: the
   leftovers of a run that died before its commit, or text someone added.  Nothing is
   deleted.  A file *shorter* than recorded is damage, not a torn run, and a sealed file
   that differs from its seal is tampering: either stops the run.

This module knows files only: what the store recorded is handed to it, and what it wrote is
handed back as rows for the store to record.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ledger_engine.books import confined
from ledger_engine.books.layout import (
    JOURNAL_TOPS,
    LOCK_NAME,
    is_journal_path,
    month_of_path,
    recovered_path,
)
from ledger_engine.core.errors import BooksDamaged, BooksLocked, BooksTampered, BooksWriteError
from ledger_engine.core.model import JournalFile


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


def _load_syncfs():
    """libc's syncfs(2) (Linux): flushes one file system, data and metadata; or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()
SYNCFS_FILES_MIN = 64  # from this many files on, one syncfs beats an fsync each


def _syncfs(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS(descriptor) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
    finally:
        os.close(descriptor)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Appender:
    """Collects the text a run appends to journal files, then writes it durably.

    Before appending to a file it checks the file's whole committed content against the
    SHA-256 the store recorded (SPEC v3 §6): a changed committed byte is tampering, refused
    before anything is written; the new hash then continues from the verified bytes, so a
    file is read once.  Every path is opened inside the books without following a link
    (:mod:`ledger_engine.books.confined`).
    """

    def __init__(self, books_dir: Path, recorded: dict[str, JournalFile]):
        self.books_dir = books_dir
        self.recorded = recorded
        self.known = {path: file.length for path, file in recorded.items()}
        self.sealed = {path for path, file in recorded.items() if file.sealed}
        self.texts: dict[str, list[str]] = {}
        self.written: list[str] = []  # the files this run appended to, in order
        self.made: set[str] = set()  # the folders this run made (removed again on undo)

    def exists(self, relative: str) -> bool:
        return relative in self.known or relative in self.texts

    def append(self, relative: str, text: str) -> None:
        assert relative not in self.sealed, f"attempt to write into sealed file {relative}"
        self.texts.setdefault(relative, []).append(text)

    def undo(self, recorded_now: dict[str, JournalFile] | None = None) -> None:
        """Takes back what this run appended: each file back to its length before the run
        (a new file removed).  With ``recorded_now`` (the store after a failed commit), only
        the files whose committed length is still the one before the run: bytes a commit
        recorded are never taken back.  Truncating needs no free space, so this works on a
        full disk; what it cannot take back, the next run's recovery moves away."""
        for relative in reversed(self.written):
            before = self.known.get(relative)
            if recorded_now is not None:
                now = recorded_now.get(relative)
                if (now.length if now else None) != before:
                    continue  # the store holds this run's bytes: committed
            with contextlib.suppress(OSError, BooksTampered):
                write_point(f"undo {relative}")
                if before is not None:
                    confined.truncate(self.books_dir, relative, before)
                else:
                    confined.unlink(self.books_dir, relative)
        for folder in sorted(self.made, key=lambda f: f.count("/"), reverse=True):
            with contextlib.suppress(OSError, BooksTampered):
                confined.remove_empty_directory(self.books_dir, folder)
        self.written, self.made = [], set()

    def _committed_digest(self, relative: str, descriptor: int):
        """The SHA-256 state of a file's committed bytes, read through ``descriptor``;
        BooksTampered if they are not what the store recorded."""
        recorded = self.recorded[relative]
        if os.fstat(descriptor).st_size != recorded.length:
            raise BooksTampered(
                f"journal file {relative} is not its committed length ({recorded.length} bytes)"
                "; run post again (recovery moves a torn tail) or restore it"
            )
        digest = committed_prefix(descriptor, recorded.length)
        if digest.hexdigest() != recorded.sha256:
            raise BooksTampered(
                f"journal file {relative} changed since it was committed (its SHA-256 is not "
                "the recorded one); restore it before posting (ledger-engine reconcile lists it)"
            )
        return digest

    def _append_one(self, relative: str, fsync: bool) -> tuple[int, str]:
        """Appends to one file (and fsyncs it); returns the file's length and SHA-256."""
        data = "".join(self.texts[relative]).encode("utf-8")
        new = relative not in self.known
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT | os.O_EXCL if new else 0)
        descriptor = confined.open_file(self.books_dir, relative, flags)
        try:
            digest = hashlib.sha256() if new else self._committed_digest(relative, descriptor)
            self.written.append(relative)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            if fsync:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        digest.update(data)
        return self.known.get(relative, 0) + len(data), digest.hexdigest()

    def _append_all(self) -> dict[str, tuple[int, str]]:
        appended = {}
        new_directories = self.made
        present: set[str] = set()  # directories seen to exist (each is looked up once)
        # Many files (a first night writes one per customer): write them all, then make the
        # whole file system durable with one syncfs instead of an fsync per file and folder.
        at_once = _SYNCFS is not None and len(self.texts) >= SYNCFS_FILES_MIN
        for relative in sorted(self.texts):
            parent = relative.rpartition("/")[0]
            while parent and parent not in present:  # this folder and those above it
                if confined.lstat(self.books_dir, parent) is None:
                    new_directories.add(parent)
                present.add(parent)
                parent = parent.rpartition("/")[0]
            write_point(f"append {relative}")
            appended[relative] = self._append_one(relative, fsync=not at_once)
        write_point("sync directories")
        if at_once:
            _syncfs(self.books_dir)
        else:
            parents = {folder.rpartition("/")[0] for folder in new_directories}
            for folder in sorted(new_directories | parents):
                confined.fsync_directory(self.books_dir, folder)
        return appended

    def write(self) -> dict[str, JournalFile]:
        """Appends everything durably; returns each written file's new length and hash.

        Raises:
            BooksWriteError: the disk refused (the appended text is taken back first).
            BooksTampered: a file's committed bytes changed (nothing is written to it).
        """
        try:
            appended = self._append_all()
        except OSError as error:
            self.undo()
            raise BooksWriteError(str(error)) from error
        except BaseException:
            self.undo()
            raise
        return {
            relative: JournalFile(*appended[relative], month_of_path(relative))
            for relative in sorted(self.texts)
        }


class BooksWalk(NamedTuple):
    """What one walk of the books directory found."""

    sizes: dict[str, int]  # every regular journal file under gl/ and customers/ -> its size
    links: list[str]  # symbolic links anywhere in the books (never followed)
    odd: list[str]  # journal names that are no regular file (a FIFO, a device, a folder)
    empty: list[str]  # empty folders under gl/ and customers/


def walk_books(books_dir: Path) -> BooksWalk:
    """One ``scandir`` walk of the whole books directory, following no link: the journal
    files with their sizes, and every symbolic link or odd file (SPEC v3 §6: a link anywhere
    in the books is a difference and a refusal).

    (A night's books hold tens of thousands of files, and ``pathlib`` globbing with a
    ``stat`` per file took longer than a whole no-op run.)
    """
    found = BooksWalk({}, [], [], [])
    pending = [""]
    while pending:
        relative_dir = pending.pop()
        seen = False
        with os.scandir(books_dir / relative_dir if relative_dir else books_dir) as entries:
            for entry in entries:
                seen = True
                _walked(entry, f"{relative_dir}/{entry.name}" if relative_dir else entry.name,
                        found, pending)  # fmt: skip
        if not seen and "/" in relative_dir and relative_dir.split("/")[0] in JOURNAL_TOPS:
            found.empty.append(relative_dir)
    found.links.sort()
    found.odd.sort()
    return found


def _walked(entry: os.DirEntry, relative: str, found: BooksWalk, pending: list[str]) -> None:
    if entry.is_symlink():
        found.links.append(relative)
        return
    journal = relative.split("/")[0] in JOURNAL_TOPS and relative.endswith(".beancount")
    if entry.is_dir(follow_symlinks=False):
        if journal:
            found.odd.append(relative)
        pending.append(relative)
    elif journal:
        if entry.is_file(follow_symlinks=False):
            found.sizes[relative] = entry.stat(follow_symlinks=False).st_size
        else:
            found.odd.append(relative)


def journal_files_on_disk(books_dir: Path) -> list[str]:
    return sorted(walk_books(books_dir).sizes)


def _free_path(books_dir: Path, relative: str) -> str:
    """``relative`` under the books, or with ``-2``, ``-3``... added if that is taken."""
    candidate, number = relative, 1
    while confined.lstat(books_dir, candidate) is not None:
        number += 1
        candidate = f"{relative}-{number}"
    return candidate


def _copy_tail(books_dir: Path, source: int, start: int, target: str) -> int:
    """Copies the bytes of ``source`` from ``start`` on to a new file ``target`` under the
    books, durably, a block at a time; returns how many.  On a failure (a full disk) it
    removes what it made and raises :class:`BooksWriteError`: nothing changed."""
    try:
        descriptor = confined.open_file(books_dir, target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError as error:
        raise _cannot_recover(target, error) from error
    copied = 0
    try:
        while block := os.pread(source, confined.READ_BLOCK, start + copied):
            view = memoryview(block)
            while view:
                view = view[os.write(descriptor, view) :]
            copied += len(block)
        os.fsync(descriptor)
    except OSError as error:
        os.close(descriptor)
        with contextlib.suppress(OSError):
            confined.unlink(books_dir, target)
        raise _cannot_recover(target, error) from error
    os.close(descriptor)
    confined.fsync_directory(books_dir, target.rpartition("/")[0])
    return copied


def _cannot_recover(relative: str, error: OSError) -> BooksWriteError:
    return BooksWriteError(
        f"recovery cannot keep bytes no run committed as {relative}: "
        f"{error.strerror or error}; nothing was changed (free space and run again)"
    )


def committed_prefix(descriptor: int, length: int):
    """A SHA-256 object fed with the first ``length`` bytes of an open file (to compare
    with a recorded hash, or to go on with what is appended after them)."""
    digest, done = hashlib.sha256(), 0
    while done < length:
        block = os.pread(descriptor, min(confined.READ_BLOCK, length - done), done)
        if not block:
            break
        digest.update(block)
        done += len(block)
    return digest


def _move_tail(books_dir: Path, relative: str, file: JournalFile, run_id: int) -> str:
    """Copies the bytes past the committed length to ``recovered/`` (durably), then
    truncates; refuses (moving nothing) when a committed byte changed (SPEC v3 §6: only
    bytes past the committed length are a torn tail)."""
    descriptor = confined.open_file(books_dir, relative, os.O_RDWR)
    try:
        if committed_prefix(descriptor, file.length).hexdigest() != file.sha256:
            raise BooksTampered(
                f"journal file {relative} changed before its committed end; restore it before "
                "posting or closing (ledger-engine reconcile lists it)"
            )
        target = _free_path(books_dir, recovered_path(run_id, relative, "tail"))
        moved = _copy_tail(books_dir, descriptor, file.length, target)
        write_point(f"recover {relative}")
        os.ftruncate(descriptor, file.length)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return f"moved {moved} bytes past the committed end of {relative} to {target}"


def _move_file(books_dir: Path, relative: str, run_id: int) -> str:
    target = _free_path(books_dir, recovered_path(run_id, relative, "file"))
    try:
        confined.rename(books_dir, relative, target)
    except OSError as error:
        raise _cannot_recover(relative, error) from error
    return f"moved {relative} (no run wrote it) to {target}"


def check_sealed(books_dir: Path, recorded: dict[str, JournalFile]) -> list[str]:
    """The sealed files that are missing or differ from the hash recorded at the seal."""
    changed = []
    for relative, file in sorted(recorded.items()):
        if not file.sealed:
            continue
        found = confined.lstat(books_dir, relative)
        if found is None or found.st_size != file.length:
            changed.append(relative)
        elif confined.sha256(books_dir, relative) != file.sha256:
            changed.append(relative)
    return changed


def _remove_empty_customer_dirs(books_dir: Path, candidates: set[str]) -> None:
    # Directories made by an interrupted run for a customer the store does not know.
    for relative in sorted(candidates, reverse=True):
        if relative.count("/") == 1:
            confined.remove_empty_directory(books_dir, relative)


def check_paths(books_dir: Path, recorded: dict[str, JournalFile], walk: BooksWalk) -> None:
    """Refuses books a writer must not touch (SPEC v3 §6): a path in the store that is no
    path the engine writes, a length that is no length, a symbolic link or an odd file
    anywhere in the books."""
    for relative, file in sorted(recorded.items(), key=lambda item: str(item[0])):
        if not is_journal_path(relative):
            raise BooksTampered(
                f"the store records a journal file the engine never writes: {relative!r}; "
                "the store was edited (ledger-engine reconcile lists it)"
            )
        if not isinstance(file.length, int) or file.length < 0 or not isinstance(file.sha256, str):
            raise BooksTampered(
                f"the store's record of {relative} is not readable (length {file.length!r}); "
                "the store was edited (ledger-engine reconcile lists it)"
            )
    for what, paths in (("symbolic link", walk.links), ("file that is no regular file", walk.odd)):
        if paths:
            more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
            raise BooksTampered(
                f"{what} in the books: {paths[0]}{more}; the engine never follows or writes "
                "one (remove it; ledger-engine reconcile lists them)"
            )


class RecoveryPlan(NamedTuple):
    """What recovery would move: the files with bytes past their committed end, and the
    journal files no run wrote."""

    tails: list[tuple[str, JournalFile]]
    unknown: list[str]
    empty: list[str]  # empty folders an interrupted run left (removed, nothing moved)

    def lines(self) -> list[str]:
        return [f"bytes past the committed end of {relative}" for relative, _ in self.tails] + [
            f"{relative} (no run wrote it)" for relative in self.unknown
        ]


def recovery_plan(books_dir: Path, recorded: dict[str, JournalFile]) -> RecoveryPlan:
    """What :func:`recover` would move, without moving anything.

    Raises:
        BooksTampered: a sealed file differs from its seal, a path of the store is no
            journal path, a symbolic link or an odd file is in the books.
        BooksDamaged: a recorded file is missing or shorter than recorded.
    """
    walk = walk_books(books_dir)
    check_paths(books_dir, recorded, walk)
    tampered = check_sealed(books_dir, recorded)
    if tampered:
        raise BooksTampered(
            f"sealed file {tampered[0]} differs from its seal"
            + (f" (and {len(tampered) - 1} more)" if len(tampered) > 1 else "")
            + "; restore it before posting or closing (ledger-engine reconcile lists them)"
        )
    tails = []
    for relative, file in sorted(recorded.items()):
        size = walk.sizes.get(relative)
        if size is None:  # a root file, or missing
            found = confined.lstat(books_dir, relative)
            if found is None:
                raise BooksDamaged(f"journal file {relative} is missing (recorded in the store)")
            size = found.st_size
        if size > file.length:
            tails.append((relative, file))
        elif size < file.length:
            raise BooksDamaged(
                f"journal file {relative} is shorter than recorded ({size} < {file.length} bytes)"
            )
    return RecoveryPlan(tails, sorted(set(walk.sizes) - set(recorded)), walk.empty)


def recover(books_dir: Path, recorded: dict[str, JournalFile], run_id: int) -> list[str]:
    """Brings the journal files back to their committed state without destroying anything.

    Bytes past a file's committed length and journal files the store does not know (what
    a run that died before its commit left, or what someone added) are moved under
    ``recovered/run-<run_id>/`` with their original path.

    Args:
        books_dir: the books.
        recorded: every journal file as the store recorded it at the last commit.
        run_id: the run that recovers (names the folder under ``recovered/``).

    Returns:
        One line per thing moved.

    Raises:
        BooksTampered: a sealed file differs from its seal, a committed byte changed, a
            path of the store is no journal path, a symbolic link is in the books (nothing
            is moved then).
        BooksDamaged: a recorded file is missing or shorter than recorded.
        BooksWriteError: a move needs space the disk does not have (nothing is moved).
    """
    plan = recovery_plan(books_dir, recorded)
    repaired = [_move_tail(books_dir, relative, file, run_id) for relative, file in plan.tails]
    repaired += [_move_file(books_dir, relative, run_id) for relative in plan.unknown]
    parents = {relative.rsplit("/", 1)[0] for relative in plan.unknown}
    _remove_empty_customer_dirs(books_dir, set(plan.empty) | parents)
    return repaired


def _lock_descriptor(books_dir: Path, shared: bool) -> int | None:
    """The descriptor of ``.lock`` (made if missing), opened without following a link; for
    a reader of books it may not write (a read-only copy), None: no writer can run there."""
    try:
        return confined.open_file(books_dir, LOCK_NAME, os.O_RDWR | os.O_CREAT)
    except OSError as error:
        if shared and error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT):
            try:
                return confined.open_file(books_dir, LOCK_NAME, os.O_RDONLY)
            except FileNotFoundError:
                return None
            except OSError:
                pass
        refused = error.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        what = "read-only" if refused else "unusable"
        raise BooksWriteError(
            f"the books at {books_dir} are {what}: cannot open their lock file {LOCK_NAME} "
            f"({error.strerror or error})"
        ) from None


@contextlib.contextmanager
def locked(books_dir: Path, wait_seconds: float = 0, shared: bool = False) -> Iterator[None]:
    """Holds the books' lock: exclusive for a writer, shared for a reader (readers never
    wait for each other); raises :class:`BooksLocked` after ``wait_seconds``.

    ``flock`` locks die with their process, so a killed run never leaves a stale lock.
    ``.lock`` is opened inside the books without following a link (SPEC v3 §6).
    """
    descriptor = _lock_descriptor(books_dir, shared)
    if descriptor is None:
        yield  # read-only books without a lock file: nothing can write them
        return
    deadline = time.monotonic() + wait_seconds
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        while True:
            try:
                fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip()
                    raise BooksLocked(
                        f"the books at {books_dir} are locked by another run"
                        + (f" (pid {holder})" if holder.isdigit() else "")
                    ) from None
                time.sleep(0.1)
        if not shared:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)
