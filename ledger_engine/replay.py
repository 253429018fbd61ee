"""``reconcile --replay`` (SPEC v3 §6): the whole books derived again, compared byte for byte.

The auditor's strongest check: every run of the run log is run again, in order, on empty
books in a scratch folder, from what the store holds as evidence: each input exactly as it
was read (its compressed blocks), the rules text the run recorded, its ``--through``, and
for a ``close`` its month.  Then every journal file of the scratch books must equal the
file on disk, byte for byte, and every derived row of the store (conversations, periods,
lots, verdicts, customers, transactions, postings, the history of classifications,
checkpoints, events, quarantine, journal files, closed months) must equal the row the
replay made ("state = replay").  Rows that only say where an input was read from (its file
name) are compared without it: the replay reads the inputs from scratch files.

The commands it replays are handed in by the command line (``post`` and ``close``), so this
module stands beside ``reconcile`` and imports neither.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ledger_engine import commit
from ledger_engine.books import confined, layout
from ledger_engine.books.files import walk_books
from ledger_engine.store import queries, runlog
from ledger_engine.store.db import open_store

# The derived tables compared, each with the columns compared and its order.
COMPARED_TABLES = {
    "events": ("id, type, customer, at, day, fields, content, block, line, run_id", "id"),
    "quarantine": ("run_id, line, reason, field, detail, event_id, raw, raw_sha", "seq"),
    "verdicts": ("event_id, customer, reason, run_id, event_key", "event_id"),
    "conversations": ("*", "customer, conversation"),
    "conversation_history": ("*", "customer, conversation, run_id"),
    "periods": ("*", "customer, period_start"),
    "lots": ("*", "customer, lot_id"),
    "customers": ("*", "customer"),
    "transactions": ("*", "txn_id"),
    "postings": ("*", "txn_id, account"),
    "checkpoints": ("customer, day, basis, hex(state)", "customer, day"),
    "journal_files": ("*", "path"),
    "closed_months": ("month, run_id, files", "month"),
    "input_files": ("sha256, lines, valid, rejected", "sha256"),
}


class Replayed(NamedTuple):
    """What the replay found: the differences (check, message, file) and how many runs
    it ran again."""

    differences: list[tuple[str, str, str | None]]
    runs: int


class Commands(NamedTuple):
    """The commands a replay runs again (the command line hands them in)."""

    post: Callable  # post(books_dir, paths, through, full, reprice_from)
    close: Callable  # close(books_dir, month)
    init: Callable  # init(books_dir, currency, timezone, rules_text)


def _inputs(db, folder: Path) -> dict[str, Path]:
    """Every input the store holds whole, written to a scratch file, by its SHA-256."""
    files: dict[str, Path] = {}
    streams = {}
    try:
        for sha256, _, data in queries.input_blocks(db):
            if not sha256:
                continue  # lines kept by an upgrade from schema 3: not a whole input
            if sha256 not in streams:
                files[sha256] = folder / f"{sha256}.jsonl"
                streams[sha256] = files[sha256].open("wb")
            streams[sha256].write(zlib.decompress(data))
    finally:
        for stream in streams.values():
            stream.close()
    empty = hashlib.sha256(b"").hexdigest()  # an empty input has no block
    files[empty] = folder / "empty.jsonl"
    files[empty].write_bytes(b"")
    return files


class _Run(NamedTuple):
    run_id: int
    command: str
    through: str | None
    inputs: list[dict]
    details: dict | None


def _runs(db) -> list[_Run]:
    found = []
    for run in runlog.runs(db):
        try:
            inputs = json.loads(run["inputs"])
        except (TypeError, ValueError):
            inputs = None
        found.append(_Run(run["run_id"], run["command"], run["through"], inputs,
                          runlog.details_of(run)))  # fmt: skip
    return found


def _rules_text(db, run: _Run, current: str) -> str:
    sha256 = (run.details or {}).get("rules_sha256")
    return (queries.rules_text(db, sha256) if sha256 else None) or current


def _replay_run(scratch: Path, run: _Run, inputs: dict[str, Path], commands: Commands):
    """Runs one run of the log again on the scratch books; a reason it cannot, or None."""
    if not isinstance(run.command, str):
        return f"run {run.run_id}'s command is not readable"
    if run.command.startswith("close "):
        commands.close(scratch, run.command[6:])
        return None
    if run.command != "post" or not isinstance(run.inputs, list):
        return f"run {run.run_id} ({run.command!r}) is no run the engine records"
    paths = []
    for item in run.inputs:
        sha256 = item.get("sha256") if isinstance(item, dict) else None
        if sha256 not in inputs:
            return f"an input of run {run.run_id} is not held whole in the store"
        paths.append(str(inputs[sha256]))
    options = (run.details or {}).get("options") or {}
    through = datetime.date.fromisoformat(run.through) if run.through else None
    reprice = options.get("reprice_from")
    reprice_from = datetime.date.fromisoformat(reprice) if isinstance(reprice, str) else None
    commands.post(scratch, paths, through, options.get("full") is True, reprice_from)
    return None


def _rows(db, table: str):
    columns, order = COMPARED_TABLES[table]
    return db.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")


def _table_difference(original, replayed, table: str) -> str | None:
    """How a table of the store differs from the replay's, row by row in one order (the
    two cursors are walked side by side: a million-event store is never held in memory)."""
    differing, first, rows = 0, None, 0
    for position, (ours, theirs) in enumerate(
        itertools.zip_longest(_rows(original, table), _rows(replayed, table)), 1
    ):
        rows = position
        if ours != theirs:
            differing += 1
            first = first or position
    if not differing:
        return None
    return (
        f"the store's {table} differ from the replay's: {differing} of {rows} rows, "
        f"the first at row {first} in the table's order"
    )


def _compare_stores(books_dir: Path, scratch: Path) -> list[tuple[str, str, str | None]]:
    differences = []
    original, replayed = open_store(books_dir, read_only=True), open_store(scratch)
    try:
        for table in COMPARED_TABLES:
            message = _table_difference(original, replayed, table)
            if message is not None:
                differences.append(("replay", message, None))
    finally:
        original.close()
        replayed.close()
    return differences


def _compare_journals(books_dir: Path, scratch: Path) -> list[tuple[str, str, str | None]]:
    ours, theirs = walk_books(books_dir).sizes, walk_books(scratch).sizes
    roots = [layout.LEDGER_NAME, layout.ACCOUNTS_NAME]
    differences = []
    for relative in sorted(set(ours) | set(theirs) | set(roots)):
        try:
            found = confined.read_bytes(books_dir, relative)
        except OSError:
            found = None
        try:
            expected = confined.read_bytes(scratch, relative)
        except OSError:
            expected = None
        if found != expected:
            what = (
                "not written by the replay" if expected is None
                else "missing" if found is None
                else "differs from the replay's, byte for byte"
            )  # fmt: skip
            differences.append(("replay", f"journal file {what}", relative))
    return differences


def replay(books_dir: Path, commands: Commands, progress: bool | None = None) -> Replayed:
    """Derives the books again from the store's evidence and compares (module docstring).

    Args:
        books_dir: the books.
        commands: the commands to run again.
        progress: show a progress line on standard error (default: when it is a terminal).
    """
    progress = sys.stderr.isatty() if progress is None else progress
    with commit.reading(books_dir) as db:
        settings = queries.books_settings(db)
        current = confined.read_bytes(books_dir, layout.RULES_NAME).decode("utf-8", "replace")
        runs = _runs(db)
        with tempfile.TemporaryDirectory(prefix="ledger-engine-replay-") as folder:
            scratch = Path(folder) / "books"
            inputs = _inputs(db, Path(folder))
            first_rules = _rules_text(db, runs[0], current) if runs else current
            commands.init(scratch, settings.currency, settings.timezone, first_rules)
            for number, run in enumerate(runs, 1):
                if progress:
                    sys.stderr.write(f"\rreplaying run {number:,} of {len(runs):,}\x1b[K")
                (scratch / layout.RULES_NAME).write_text(_rules_text(db, run, current), "utf-8")
                why = _replay_run(scratch, run, inputs, commands)
                if why is not None:
                    return Replayed([("replay", f"cannot replay the books: {why}", None)],
                                    number - 1)  # fmt: skip
            if progress:
                sys.stderr.write("\n")
            (scratch / layout.RULES_NAME).write_text(current, "utf-8")
            differences = _compare_journals(books_dir, scratch)
            differences += _compare_stores(books_dir, scratch)
    return Replayed(differences, len(runs))
