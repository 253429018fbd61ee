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

from ledger_engine.books.layout import JOURNAL_TOPS, LOCK_NAME, month_of_path, recovered_path
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
    """Collects the text a run appends to journal files, then writes it durably."""

    def __init__(self, books_dir: Path, recorded: dict[str, JournalFile]):
        self.books_dir = books_dir
        self.known = {path: file.length for path, file in recorded.items()}
        self.sealed = {path for path, file in recorded.items() if file.sealed}
        self.texts: dict[str, list[str]] = {}

    def exists(self, relative: str) -> bool:
        return relative in self.known or relative in self.texts

    def append(self, relative: str, text: str) -> None:
        assert relative not in self.sealed, f"attempt to write into sealed file {relative}"
        self.texts.setdefault(relative, []).append(text)

    def _undo(self, written: list[str]) -> None:
        """Best effort: takes back what this run appended (recover() finishes the job)."""
        for relative in written:
            path = self.books_dir / relative
            with contextlib.suppress(OSError):
                if relative in self.known:
                    os.truncate(path, self.known[relative])
                else:
                    path.unlink()

    def _append_one(self, relative: str, fsync: bool) -> tuple[int, str]:
        """Appends to one file (and fsyncs it); returns the file's length and SHA-256."""
        path = self.books_dir / relative
        data = "".join(self.texts[relative]).encode("utf-8")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            if fsync:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if relative not in self.known:  # a new file: its length and hash are its data's
            return len(data), hashlib.sha256(data).hexdigest()
        return self.known[relative] + len(data), sha256_file(path)

    def _append_all(self, written: list[str]) -> dict[str, tuple[int, str]]:
        appended = {}
        new_directories: set[Path] = set()
        present: set[Path] = set()  # directories seen to exist (each is looked up once)
        # Many files (a first night writes one per customer): write them all, then make the
        # whole file system durable with one syncfs instead of an fsync per file and folder.
        at_once = _SYNCFS is not None and len(self.texts) >= SYNCFS_FILES_MIN
        for relative in sorted(self.texts):
            parent = (self.books_dir / relative).parent
            if parent not in present:
                if not parent.exists():
                    parent.mkdir(parents=True)
                    new_directories.add(parent)
                present.add(parent)
            write_point(f"append {relative}")
            written.append(relative)
            appended[relative] = self._append_one(relative, fsync=not at_once)
        write_point("sync directories")
        if at_once:
            _syncfs(self.books_dir)
        else:
            for directory in sorted(new_directories | {d.parent for d in new_directories}):
                _fsync_directory(directory)
        return appended

    def write(self) -> dict[str, JournalFile]:
        """Appends everything durably; returns each written file's new length and hash.

        Raises:
            BooksWriteError: the disk refused (the appended text is taken back first).
        """
        written: list[str] = []
        try:
            appended = self._append_all(written)
        except OSError as error:
            self._undo(written)
            raise BooksWriteError(str(error)) from error
        except BaseException:
            self._undo(written)
            raise
        return {
            relative: JournalFile(*appended[relative], month_of_path(relative))
            for relative in sorted(self.texts)
        }


def _walk_journals(books_dir: Path) -> tuple[dict[str, int], list[str]]:
    """Size of every journal file under ``gl/`` and ``customers/`` by relative path, and the
    empty directories there.

    One ``scandir`` walk: a night's books hold tens of thousands of files, and ``pathlib``
    globbing with a ``stat`` per file took longer than a whole no-op run.
    """
    sizes: dict[str, int] = {}
    empty: list[str] = []
    pending = [top for top in JOURNAL_TOPS if (books_dir / top).is_dir()]
    while pending:
        relative_dir = pending.pop()
        seen = False
        with os.scandir(books_dir / relative_dir) as entries:
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


def journal_files_on_disk(books_dir: Path) -> list[str]:
    return sorted(_walk_journals(books_dir)[0])


def _free_path(books_dir: Path, relative: str) -> Path:
    """``relative`` under the books, or with ``-2``, ``-3``... added if that is taken."""
    path, number = books_dir / relative, 1
    while path.exists():
        number += 1
        path = books_dir / f"{relative}-{number}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _move_tail(books_dir: Path, relative: str, length: int, run_id: int) -> str:
    """Copies the bytes past ``length`` to ``recovered/`` (durably), then truncates."""
    path = books_dir / relative
    with path.open("r+b") as stream:
        stream.seek(length)
        tail = stream.read()
        target = _free_path(books_dir, recovered_path(run_id, relative, "tail"))
        with target.open("wb") as kept:
            kept.write(tail)
            os.fsync(kept.fileno())
        _fsync_directory(target.parent)
        stream.truncate(length)
        os.fsync(stream.fileno())
    return (
        f"moved {len(tail)} bytes past the committed end of {relative} to "
        f"{target.relative_to(books_dir).as_posix()}"
    )


def _move_file(books_dir: Path, relative: str, run_id: int) -> str:
    target = _free_path(books_dir, recovered_path(run_id, relative, "file"))
    os.rename(books_dir / relative, target)
    _fsync_directory(target.parent)
    return f"moved {relative} (no run wrote it) to {target.relative_to(books_dir).as_posix()}"


def check_sealed(books_dir: Path, recorded: dict[str, JournalFile]) -> list[str]:
    """The sealed files that are missing or differ from the hash recorded at the seal."""
    changed = []
    for relative, file in sorted(recorded.items()):
        if not file.sealed:
            continue
        path = books_dir / relative
        same_size = path.is_file() and path.stat().st_size == file.length
        if not same_size or sha256_file(path) != file.sha256:
            changed.append(relative)
    return changed


def _remove_empty_customer_dirs(books_dir: Path, candidates: set[str]) -> None:
    # Directories made by an interrupted run for a customer the store does not know.
    for relative in sorted(candidates, reverse=True):
        directory = books_dir / relative
        if relative.count("/") == 1 and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


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
        BooksTampered: a sealed file differs from its seal (nothing is moved then).
        BooksDamaged: a recorded file is missing or shorter than recorded.
    """
    tampered = check_sealed(books_dir, recorded)
    if tampered:
        raise BooksTampered(
            f"sealed file {tampered[0]} differs from its seal"
            + (f" (and {len(tampered) - 1} more)" if len(tampered) > 1 else "")
            + "; restore it before posting or closing (ledger-engine reconcile lists them)"
        )
    on_disk, empty_directories = _walk_journals(books_dir)
    repaired = []
    for relative, file in recorded.items():
        size = on_disk.get(relative)
        if size is None:  # a root file, or missing
            path = books_dir / relative
            if not path.exists():
                raise BooksDamaged(f"journal file {relative} is missing (recorded in the store)")
            size = path.stat().st_size
        if size > file.length:
            repaired.append(_move_tail(books_dir, relative, file.length, run_id))
        elif size < file.length:
            raise BooksDamaged(
                f"journal file {relative} is shorter than recorded ({size} < {file.length} bytes)"
            )
    unknown = sorted(set(on_disk) - set(recorded))
    repaired += [_move_file(books_dir, relative, run_id) for relative in unknown]
    parents = {relative.rsplit("/", 1)[0] for relative in unknown}
    _remove_empty_customer_dirs(books_dir, set(empty_directories) | parents)
    return repaired


@contextlib.contextmanager
def locked(books_dir: Path, wait_seconds: float = 0) -> Iterator[None]:
    """Holds the books' writer lock; raises :class:`BooksLocked` after ``wait_seconds``.

    ``flock`` locks die with their process, so a killed run never leaves a stale lock.
    """
    descriptor = os.open(books_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
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
                        f"the books at {books_dir} are locked by another run"
                        + (f" (pid {holder})" if holder else "")
                    ) from None
                time.sleep(0.1)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)
