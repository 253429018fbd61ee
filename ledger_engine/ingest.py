"""Ingest: store checked event files, dedupe by id (SPEC §2).

Each input comes in bounded batches from :mod:`ledger_engine.reading` (checked inline or in
a reader process); nothing is held for the whole file.  Every input is kept once, as
compressed blocks of its lines.  Writes go into the caller's open transaction, so an
interrupted run leaves no event half-ingested.
"""

from __future__ import annotations

import datetime
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import sqlite_utils

from ledger_engine.books.files import sha256_file
from ledger_engine.core.errors import InputFileError
from ledger_engine.core.model import ID_CONFLICT, Line, Rejection
from ledger_engine.reading import (
    Batch,
    Done,
    ReadContext,
    batches_of_file,
    line_text,
    read_batches,
    use_process,
)
from ledger_engine.store import queries

STDIN_NAME = "<stdin>"
# A first night dedupes ids in memory up to this many (about 100 bytes each), then asks
# the store, which by then holds every event of the run.
RUN_IDS_IN_MEMORY_MAX = 2_000_000


class IngestResult(NamedTuple):
    read: int
    new_events: int
    duplicates: int
    schema_rejected: Counter
    customers: dict[str, datetime.date]  # customer -> the earliest day of its new events
    inputs: tuple[dict, ...]  # {"file", "sha256", "lines"} per input


class _Blocks:
    """Stores an input file in compressed blocks of whole lines.  zlib releases the GIL, so
    a thread compresses a block while the main thread stores the next lines."""

    def __init__(self, db: sqlite_utils.Database, pool: ThreadPoolExecutor):
        self.db = db
        self.pool = pool
        self.waiting: list[tuple[int, str, int, Future]] = []

    def next(self) -> int:
        """The number the next input's first block gets."""
        self.flush()
        return queries.next_block(self.db)

    def add(self, name: str, batch: Batch) -> None:
        future = self.pool.submit(zlib.compress, batch.data, queries.BLOCK_LEVEL)
        self.waiting.append((batch.block, name, batch.first_line, future))
        if len(self.waiting) > 2:  # bounded: at most two blocks wait in memory
            self._store(self.waiting.pop(0))

    def _store(self, item: tuple[int, str, int, Future]) -> None:
        block, name, first_line, future = item
        queries.insert_block(self.db, block, name, first_line, future.result())

    def flush(self) -> None:
        for item in self.waiting:
            self._store(item)
        self.waiting = []

    def finish(self, first_block: int, sha256: str) -> None:
        """Stores the blocks still waiting and names the input they all belong to."""
        self.flush()
        queries.set_block_input(self.db, first_block, sha256)


def _customer_and_day(row: tuple) -> tuple[str, str]:
    return row[queries.ROW_CUSTOMER], row[queries.ROW_DAY]


class _Ingester:
    def __init__(
        self,
        db: sqlite_utils.Database,
        run_id: int,
        currency: str,
        zone: ZoneInfo,
        blocks: _Blocks,
        progress: Callable[[int], None],
    ):
        self.db = db
        self.blocks = blocks
        self.progress = progress
        self.run_id = run_id
        self.currency = currency
        self.zone = zone
        self.read = 0
        self.new_events = 0
        self.duplicates = 0
        self.rejected: Counter = Counter()
        self.customers: dict[str, str] = {}  # customer -> the earliest day (ISO) of new events
        # On books without events (a first night) ids are only looked up among this run's.
        self.this_run: dict[str, int] | None = None if queries.has_events(db) else {}

    def _touch(self, customer: str, day: str) -> None:
        earliest = self.customers.get(customer)
        if earliest is None or day < earliest:
            self.customers[customer] = day

    def flush(self, name: str, batch: Batch) -> None:
        """Stores a batch: its block, its new events, its rejections and id conflicts."""
        self.blocks.add(name, batch)
        self.read += batch.lines
        if self.this_run is not None and len(self.this_run) > RUN_IDS_IN_MEMORY_MAX:
            self.this_run = None  # bounded memory: from here on the store (it has them all)
        if self.this_run is not None:  # the store held no event: only this run's can repeat
            known = self.this_run
        else:
            keyed = {(row[queries.ROW_ID], row[queries.ROW_ID_KEY]) for row in batch.events}
            known = queries.known_event_contents(self.db, list(keyed))
        rows, quarantined = [], list(batch.rejected)
        for row in batch.rejected:
            self.rejected[row["reason"]] += 1
        for row in batch.events:
            event_id, customer = row[queries.ROW_ID], row[queries.ROW_CUSTOMER]
            day, content = row[queries.ROW_DAY], row[queries.ROW_CONTENT]
            stored = known.get(event_id)
            if stored == content:
                self.duplicates += 1
            elif stored is not None:
                conflict = Rejection(
                    ID_CONFLICT, "id", "id already ingested with other content", event_id
                )
                number = row[queries.ROW_LINE]
                line = Line(name, number, line_text(batch, number), None, None, None)
                quarantined.append(queries.quarantine_row(line, conflict, self.run_id))
                self.rejected[ID_CONFLICT] += 1
            else:
                known[event_id] = content
                rows.append(row)
                self._touch(customer, day)
        if rows:
            # A customer's events of a batch side by side: a later night reads them together.
            rows.sort(key=_customer_and_day)
            queries.insert_events(self.db, rows)
            self.new_events += len(rows)
        if quarantined:
            queries.insert_quarantine(self.db, quarantined)

    def ingest_batches(self, batches: Iterable[Batch | Done], name: str, progress) -> str:
        """Stores every batch of one input; returns its SHA-256."""
        for item in batches:
            if isinstance(item, Done):
                return item.sha256
            self.flush(name, item)
            progress(item.lines)
        raise AssertionError("an input's batches end with Done")


def _replay_known_input(ingester: _Ingester, path: str, known: queries.KnownInput, progress):
    """Counts a file whose exact bytes an earlier run ingested, without parsing it again.

    Every schema-valid line of it is now a duplicate (or the same id conflict as before),
    and every schema-rejected line gets the same verdict again (quarantine keeps one record).
    """
    ingester.read += known.lines
    rejected = Counter(known.rejected)
    ingester.duplicates += known.valid - rejected.get(ID_CONFLICT, 0)
    ingester.rejected.update(rejected)
    progress(known.lines)
    return {"file": path, "sha256": known.sha256, "lines": known.lines, "already_ingested": True}


def _ingest_one(ingester: _Ingester, name: str, batches_of) -> dict:
    """Ingests one input from ``batches_of(context)`` (its batches, inline or from a reader
    process) and records it."""
    read, valid_before = ingester.read, ingester.new_events + ingester.duplicates
    rejected_before = Counter(ingester.rejected)
    first_block = ingester.blocks.next()
    context = ReadContext(name, ingester.currency, ingester.zone, ingester.run_id, first_block)
    sha256 = ingester.ingest_batches(batches_of(context), name, ingester.progress)
    ingester.blocks.finish(first_block, sha256)
    rejected = ingester.rejected - rejected_before
    valid = ingester.new_events + ingester.duplicates - valid_before + rejected[ID_CONFLICT]
    queries.record_input(ingester.db, sha256, ingester.read - read, valid, dict(rejected), name)
    return {"file": name, "sha256": sha256, "lines": ingester.read - read}


def _ingest_path(ingester: _Ingester, path: str) -> dict:
    if path == "-":
        stream = sys.stdin.buffer
        return _ingest_one(ingester, STDIN_NAME, lambda context: read_batches(stream, context))
    try:
        known = queries.known_input(ingester.db, sha256_file(Path(path)))
        if known is not None:
            return _replay_known_input(ingester, path, known, ingester.progress)
        if use_process(path):
            return _ingest_one(ingester, path, lambda context: batches_of_file(path, context))
        with Path(path).open("rb") as stream:
            return _ingest_one(ingester, path, lambda context: read_batches(stream, context))
    except OSError as error:
        raise InputFileError(f"cannot read {path}: {error.strerror or error}") from error


def ingest_files(
    db: sqlite_utils.Database,
    paths: Iterable[str],
    run_id: int,
    currency: str,
    zone: ZoneInfo,
    progress: Callable[[int], None] = lambda count: None,
) -> IngestResult:
    """Reads every file (``-`` is stdin) into the store, inside the caller's transaction.

    Args:
        db: the store, with a transaction open.
        paths: the input files, in order.
        run_id: the id of the run, stamped on every row written.
        currency: the books' currency.
        zone: the books' timezone.
        progress: called with the number of lines read since the last call.

    Returns:
        Counts, the customers whose events changed, and the inputs' SHA-256.

    Raises:
        InputFileError: an input file cannot be read.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="compress") as pool:
        ingester = _Ingester(db, run_id, currency, zone, _Blocks(db, pool), progress)
        inputs = [_ingest_path(ingester, path) for path in paths]
    return IngestResult(
        read=ingester.read,
        new_events=ingester.new_events,
        duplicates=ingester.duplicates,
        schema_rejected=ingester.rejected,
        customers={c: datetime.date.fromisoformat(d) for c, d in ingester.customers.items()},
        inputs=tuple(inputs),
    )
