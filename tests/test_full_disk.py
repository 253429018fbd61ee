"""Any full disk, at any write (SPEC v3 §6): the books and the store as before the run, one
``Error:`` line, and the next run, given space, completes the work.

Two ways: faults injected at every write point of a real run and then again at every point
of its rollback; and a real small file system (a tmpfs of a few MiB, where this machine
lets the tests mount one), filled to every level from "the journals do not fit" to "only
the store's commit does not fit", the store's commit included.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from builders import init_books, journal_bytes, sub, use

from ledger_engine.books import files as books_module
from ledger_engine.post import post
from ledger_engine.reconcile import reconcile

THROUGH = datetime.date(2026, 11, 30)


def night(path: Path, customers: int = 3, events: int = 8) -> Path:
    lines = [sub(f"c{c}", "2026-11-01T08:00:00Z", "boost") for c in range(customers)]
    lines += [
        use(f"c{c}", f"2026-11-0{2 + i % 3}T10:{i:02d}:00Z", f"k{i % 4}", id=f"c{c}-{i}")
        for c in range(customers)
        for i in range(events)
    ]
    path.write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    return path


def store_rows(books: Path) -> dict[str, list]:
    """Every table of the store, every row (the store's content, not its pages)."""
    with contextlib.closing(sqlite3.connect(books / "state.sqlite")) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in tables}


def without_recovered(books: Path) -> dict[str, bytes]:
    return {p: b for p, b in journal_bytes(books).items() if not p.startswith("recovered/")}


class Fault(Exception):
    pass


def points_of(books: Path, path: Path) -> list[str]:
    seen: list[str] = []
    books_module.WRITE_POINT_HOOK = seen.append
    try:
        post(books, [str(path)], THROUGH)
    finally:
        books_module.WRITE_POINT_HOOK = None
    return seen


def faults_at(first: int, then: str | None):
    """Raises at write point number ``first``, and again at the first point labelled
    ``then`` after it (a fault in the rollback)."""
    state = {"count": 0, "failed": False}

    def hook(label):
        index = state["count"]
        state["count"] += 1
        if index == first:
            state["failed"] = True
            raise Fault(label)
        if state["failed"] and then is not None and label.startswith(then):
            then_done = then
            state["failed"] = False
            raise Fault(f"again at {then_done}")

    return hook


@pytest.mark.parametrize("then", [None, "rollback", "undo"])
def test_a_fault_at_any_write_point_and_again_in_its_rollback(tmp_path, then):
    path = night(tmp_path / "night.jsonl")
    reference = init_books(tmp_path / "reference")
    post(reference, [str(path)], THROUGH)
    expected = journal_bytes(reference)
    points = points_of(init_books(tmp_path / "count"), path)
    assert "store commit" in points
    for index, label in enumerate(points):
        if label == "after commit":
            continue
        books = init_books(tmp_path / f"books-{index}")
        before, rows = journal_bytes(books), store_rows(books)
        books_module.WRITE_POINT_HOOK = faults_at(index, then)
        try:
            with pytest.raises(Fault):
                post(books, [str(path)], THROUGH)
        finally:
            books_module.WRITE_POINT_HOOK = None
        assert store_rows(books) == rows, f"the store changed after a fault at {label}"
        if then is None:
            assert journal_bytes(books) == before, f"half-written at {label}"
        # The next run moves what a failed rollback left and completes the work.
        post(books, [str(path)], THROUGH)
        assert without_recovered(books) == expected, f"differs after a fault at {label}"
        assert reconcile(books).ok


# --------------------------------------------------------------- a real small file system


@contextlib.contextmanager
def small_disk(where: Path, size: str):
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True, text=True,
        )  # fmt: skip
    except OSError as error:
        pytest.skip(f"cannot mount a small file system here: {error}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ledger_engine", *map(str, args)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def fill(disk: Path, leave: int) -> Path:
    """Fills the disk up to ``leave`` bytes free (about)."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as stream:
        with contextlib.suppress(OSError):
            stream.write(b"\0" * max(free - leave, 0))
    return filler


def test_a_full_disk_at_every_level_leaves_the_books_as_before(tmp_path):
    path = night(tmp_path / "night.jsonl", customers=40, events=30)
    first = night(tmp_path / "first.jsonl", customers=2, events=2)
    reference = init_books(tmp_path / "reference")
    post(reference, [str(first)], THROUGH)
    post(reference, [str(path)], THROUGH)
    expected = journal_bytes(reference)
    with small_disk(tmp_path / "disk", "16m") as disk:
        refused = 0
        for leave in (8_000, 40_000, 120_000, 300_000, 600_000, 1_200_000):
            books = disk / "books"
            if books.exists():
                shutil.rmtree(books)
            init_books(books)
            post(books, [str(first)], THROUGH)
            before, rows = journal_bytes(books), store_rows(books)
            filler = fill(disk, leave)
            result = cli("post", books, path, "--through", "2026-11-30")
            if result.returncode != 0:
                refused += 1
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
                assert "Traceback" not in result.stderr
                assert journal_bytes(books) == before, f"half-written with {leave} bytes free"
            filler.unlink()  # (reading a store in WAL mode may need a little space too)
            if result.returncode != 0:
                assert store_rows(books) == rows, f"the store changed with {leave} bytes free"
            again = cli("post", books, path, "--through", "2026-11-30")
            assert again.returncode == 0, again.stderr
            assert without_recovered(books) == expected
            assert reconcile(books).ok
        assert refused >= 3  # most levels really ran out of space


def test_recovery_that_cannot_keep_a_tail_refuses_and_changes_nothing(tmp_path):
    path = night(tmp_path / "night.jsonl")
    with small_disk(tmp_path / "disk", "4m") as disk:
        books = init_books(disk / "books")
        post(books, [str(path)], THROUGH)
        month = books / "customers/C-c0/2026-11.beancount"
        with month.open("a") as stream:  # a tail no run wrote, larger than the space left
            stream.write('2026-11-30 * "added" "by hand"\n' * 10_000)
        before = journal_bytes(books)
        filler = fill(disk, 100_000)
        result = cli("post", books, path, "--through", "2026-11-30")
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: recovery cannot keep"), lines
        assert journal_bytes(books) == before  # nothing moved, nothing truncated
        filler.unlink()
        result = cli("post", books, path, "--through", "2026-11-30")
        assert result.returncode == 0 and "Recovered: moved" in result.stdout, result.stderr
        assert reconcile(books).ok
