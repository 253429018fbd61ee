"""Any edit is caught (SPEC v3 §6), as a property: a random single-byte edit anywhere in a
committed journal file, or a random edit of one value of one row of the store, makes
``reconcile`` find a difference.  The books are the sample's (four runs, October closed, so
sealed and open files, corrections, grants and write-offs), copied for each example.

Rows ``reconcile`` alone proves: those the run log's digests cover (events, quarantine,
transactions, postings, each customer's lots, verdicts, periods, checkpoints and row), the
journal files, runs, closed months, state digests and rules texts.  The rows of the derived
conversations and the inputs' counts are proved by ``reconcile --replay``, which derives
them again.  Not covered (documented in the README): the sequence numbers of quarantine
rows, the file names inputs were read under, and the history of classifications (the
evidence ``trace`` shows, which no derivation can recompute).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from builders import replay_clean
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_engine.cli import REPLAY_COMMANDS
from ledger_engine.core.errors import LedgerError
from ledger_engine.reconcile import reconcile, with_replay
from ledger_engine.replay import replay

SAMPLE = Path(__file__).resolve().parents[1] / "sample_books" / "books"
SETTINGS = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# table -> the columns an edit may change (every column but a rowid-like sequence number)
PROVED_BY_RECONCILE = {
    "events": "id id_key type customer at day fields content block line run_id",
    "quarantine": "run_id file line reason field detail event_id raw raw_sha",
    "transactions": "txn_id ledger customer orig_day key seq effective_day late corrects "
    "file run_id position narration",
    "postings": "txn_id ledger customer orig_day key effective_day account amount run_id",
    "lots": "customer lot_id kind day last_valid amount remainder",
    "verdicts": "event_id customer reason run_id event_key",
    "periods": "customer period_start period_end plan interval included",
    "checkpoints": "customer day basis state",
    "customers": "customer segment next_due pending_from",
    "journal_files": "path length sha256 month sealed",
    "runs": "command started finished through inputs counts files prev_hash hash details",
    "closed_months": "month closed_at run_id files",
    "state_digests": "customer run_id digest",
    "rules_texts": "sha256 text",
}
PROVED_BY_REPLAY = {
    "conversations": "customer conversation period_start period_end day first_at first_event "
    "kind status price rules_version events run_id",
    "input_files": "lines valid rejected",
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    books = tmp_path_factory.mktemp("tamper") / "books"
    shutil.copytree(SAMPLE, books)
    report = reconcile(books)
    assert report.ok, report.differences
    replay_clean(books)
    return books


def fresh_copy(sample: Path, scratch: Path) -> Path:
    books = scratch / "books"
    if books.exists():
        shutil.rmtree(books)
    shutil.copytree(sample, books)
    return books


def committed_files(books: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(books / "state.sqlite") as db:
        return db.execute("SELECT path, length FROM journal_files ORDER BY path").fetchall()


@SETTINGS
@given(data=st.data())
def test_a_single_byte_edit_of_a_committed_journal_is_found(sample, tmp_path_factory, data):
    books = fresh_copy(sample, tmp_path_factory.mktemp("byte"))
    path, length = data.draw(st.sampled_from(committed_files(books)))
    position = data.draw(st.integers(0, length - 1))
    target = books / path
    content = bytearray(target.read_bytes())
    content[position] = data.draw(st.integers(0, 255).filter(lambda b: b != content[position]))
    target.write_bytes(bytes(content))
    report = reconcile(books)
    assert not report.ok, (path, position)


def changed(value, data):
    """A value of the same column that differs from ``value``."""
    if isinstance(value, bytes):
        return bytes([value[0] ^ 0x01]) + value[1:] if value else b"x"
    if isinstance(value, int):
        return value + data.draw(st.sampled_from([1, -1, 100]))
    if isinstance(value, str):
        if value and data.draw(st.booleans()):
            at = data.draw(st.integers(0, len(value) - 1))
            replacement = "x" if value[at] != "x" else "y"
            return value[:at] + replacement + value[at + 1 :]
        return value + "x"
    return "x"  # NULL


def edit_a_row(books: Path, tables: dict[str, str], data) -> str:
    with sqlite3.connect(books / "state.sqlite") as db:
        table = data.draw(st.sampled_from(sorted(tables)))
        count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if count == 0:
            return f"{table} (empty)"
        offset = data.draw(st.integers(0, count - 1))
        column = data.draw(st.sampled_from(tables[table].split()))
        key = db.execute(f"SELECT * FROM {table} LIMIT 1 OFFSET ?", [offset]).fetchone()
        names = [d[1] for d in db.execute(f"PRAGMA table_info({table})")]
        old = key[names.index(column)]
        new = changed(old, data)
        pk = [d[1] for d in db.execute(f"PRAGMA table_info({table})") if d[5]] or names
        conditions = " AND ".join(f"{c} IS ?" for c in pk)
        values = [key[names.index(c)] for c in pk]
        try:
            db.execute(f"UPDATE {table} SET {column} = ? WHERE {conditions}", [new, *values])
        except sqlite3.IntegrityError:
            return f"{table} (empty)"  # the new value would break a key: no such edit
        return f"{table}.{column}: {old!r} -> {new!r}"


@SETTINGS
@given(data=st.data())
def test_an_edited_row_is_found_by_reconcile(sample, tmp_path_factory, data):
    books = fresh_copy(sample, tmp_path_factory.mktemp("row"))
    edit = edit_a_row(books, PROVED_BY_RECONCILE, data)
    if edit.endswith("(empty)"):
        return
    try:
        report = reconcile(books)
    except LedgerError:  # a store so damaged it cannot be read: one Error: line
        return
    assert not report.ok, edit


@settings(SETTINGS, max_examples=12)
@given(data=st.data())
def test_an_edited_derived_row_is_found_by_the_replay(sample, tmp_path_factory, data):
    books = fresh_copy(sample, tmp_path_factory.mktemp("replay"))
    edit = edit_a_row(books, PROVED_BY_REPLAY, data)
    report = with_replay(reconcile(books), replay(books, REPLAY_COMMANDS, progress=False))
    assert not report.ok, edit
