"""Paths inside the books, opened without following a link (SPEC v3 §6).

The books directory and its store may have been written by someone else, so a path is
never trusted: every path the engine opens in the books is relative to the books, checked
(no ``..``, not absolute, no empty part), and opened one component at a time from a
descriptor of the books directory with ``O_NOFOLLOW`` (the way ``shutil.rmtree`` resists
symlink races).  A symbolic link anywhere on the way, or a file that is not a regular file
(a FIFO, a device, a directory), is refused with :class:`~ledger_engine.core.errors.
BooksTampered`; a FIFO is opened with ``O_NONBLOCK`` so looking at it never waits.  The
books directory itself may be reached through a link: that is the caller's choice.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ledger_engine.core.errors import BooksTampered

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_BLOCK = 1 << 20


def parts_of(relative: str) -> list[str]:
    """The components of a path relative to the books; :class:`BooksTampered` for one that
    could leave them (absolute, ``..``, ``.``, empty parts, a NUL or a backslash)."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or "\\" in relative:
        raise BooksTampered(f"not a path inside the books: {relative!r}")
    parts = relative.split("/")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise BooksTampered(f"not a path inside the books: {relative!r}")
    return parts


def _refuse_link(relative: str) -> BooksTampered:
    return BooksTampered(
        f"{relative} in the books is a symbolic link or not a regular file; the engine "
        "never follows one (remove it; ledger-engine reconcile lists them)"
    )


@contextlib.contextmanager
def directory(books_dir: Path, parts: list[str], create: bool = False) -> Iterator[int]:
    """A descriptor of the directory ``parts`` under the books (each component opened
    without following a link; made when ``create``)."""
    descriptor = os.open(books_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked: list[str] = []
    try:
        for part in parts:
            walked.append(part)
            try:
                child = os.open(part, _DIRECTORY, dir_fd=descriptor)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):  # made durable by the run's sync
                    os.mkdir(part, 0o755, dir_fd=descriptor)
                child = _open_directory(part, descriptor, "/".join(walked))
            except OSError as error:
                if _is_link_error(error):
                    raise _refuse_link("/".join(walked)) from None
                raise
            os.close(descriptor)
            descriptor = child
        yield descriptor
    finally:
        os.close(descriptor)


def _open_directory(part: str, parent: int, relative: str) -> int:
    try:
        return os.open(part, _DIRECTORY, dir_fd=parent)
    except OSError as error:
        if _is_link_error(error):
            raise _refuse_link(relative) from None
        raise


def _is_link_error(error: OSError) -> bool:
    """The error of opening a symbolic link with O_NOFOLLOW (ELOOP) or a file that is no
    directory where one was wanted (ENOTDIR)."""
    return error.errno in (errno.ELOOP, errno.ENOTDIR)


def open_file(books_dir: Path, relative: str, flags: int, mode: int = 0o644) -> int:
    """A descriptor of the regular file ``relative`` under the books (``flags`` as for
    ``os.open``; with ``O_CREAT`` the parent directories are made too).

    Raises:
        BooksTampered: a component is a symbolic link, or the file is not a regular file.
        OSError: the file cannot be opened (missing, no permission, a full disk).
    """
    parts = parts_of(relative)
    create = bool(flags & os.O_CREAT)
    with directory(books_dir, parts[:-1], create) as parent:
        try:
            descriptor = os.open(
                parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode,
                dir_fd=parent,
            )  # fmt: skip
        except OSError as error:
            if _is_link_error(error):
                raise _refuse_link(relative) from None
            raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise _refuse_link(relative)
    return descriptor


def lstat(books_dir: Path, relative: str) -> os.stat_result | None:
    """The status of ``relative`` itself (a link is not followed); None if it is missing."""
    parts = parts_of(relative)
    try:
        with directory(books_dir, parts[:-1]) as parent:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_regular_file(books_dir: Path, relative: str) -> bool:
    found = lstat(books_dir, relative)
    return found is not None and stat.S_ISREG(found.st_mode)


def read_bytes(books_dir: Path, relative: str) -> bytes:
    """Every byte of a regular file under the books."""
    descriptor = open_file(books_dir, relative, os.O_RDONLY)
    with os.fdopen(descriptor, "rb") as stream:
        return stream.read()


def sha256(books_dir: Path, relative: str, length: int | None = None) -> str:
    """The SHA-256 of a regular file under the books, or of its first ``length`` bytes."""
    descriptor = open_file(books_dir, relative, os.O_RDONLY)
    digest = hashlib.sha256()
    with os.fdopen(descriptor, "rb") as stream:
        remaining = length
        while remaining is None or remaining > 0:
            block = stream.read(READ_BLOCK if remaining is None else min(remaining, READ_BLOCK))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


def truncate(books_dir: Path, relative: str, length: int) -> None:
    descriptor = open_file(books_dir, relative, os.O_WRONLY)
    try:
        os.ftruncate(descriptor, length)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def unlink(books_dir: Path, relative: str) -> None:
    parts = parts_of(relative)
    with directory(books_dir, parts[:-1]) as parent:
        os.unlink(parts[-1], dir_fd=parent)


def rename(books_dir: Path, source: str, target: str) -> None:
    """Moves ``source`` to ``target`` inside the books (the target's folders are made)."""
    source_parts, target_parts = parts_of(source), parts_of(target)
    with (
        directory(books_dir, source_parts[:-1]) as source_dir,
        directory(books_dir, target_parts[:-1], create=True) as target_dir,
    ):
        os.rename(source_parts[-1], target_parts[-1], src_dir_fd=source_dir,
                  dst_dir_fd=target_dir)  # fmt: skip
        os.fsync(target_dir)


def fsync_directory(books_dir: Path, relative_dir: str) -> None:
    parts = parts_of(relative_dir) if relative_dir else []
    with directory(books_dir, parts) as descriptor:
        os.fsync(descriptor)


def remove_empty_directory(books_dir: Path, relative_dir: str) -> None:
    parts = parts_of(relative_dir)
    with directory(books_dir, parts[:-1]) as parent:
        with contextlib.suppress(OSError):  # not empty, or gone: nothing to do
            os.rmdir(parts[-1], dir_fd=parent)
