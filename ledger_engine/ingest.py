"""Ingest: read event files, apply the schema checks, dedupe by id, store (SPEC §2).

Streams each file in bounded batches; nothing is held for the whole file.  Writes go into
the caller's open transaction, so an interrupted run leaves no event half-ingested.
"""

from __future__ import annotations

import datetime
import hashlib
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, NamedTuple
from zoneinfo import ZoneInfo

import sqlite_utils

from ledger_engine.books.files import sha256_file
from ledger_engine.core import events
from ledger_engine.core.errors import InputFileError
from ledger_engine.core.model import ID_CONFLICT, Line, Rejection
from ledger_engine.store import queries
from ledger_engine.store.queries import INSERT_BATCH_SIZE

STDIN_NAME = "<stdin>"


class IngestResult(NamedTuple):
    read: int
    new_events: int
    duplicates: int
    schema_rejected: Counter
    customers: dict[str, datetime.date]  # customer -> the earliest day of its new events
    inputs: tuple[dict, ...]  # {"file", "sha256", "lines"} per input


class _HashingReader:
    """Wraps a binary stream, hashing every byte read (for the run log) and keeping the
    bytes read since the last :meth:`take` (the input's next block)."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.sha = hashlib.sha256()
        self.pending: list[bytes] = []

    def readline(self, limit: int = -1) -> bytes:
        data = self.stream.readline(limit)
        self.sha.update(data)
        self.pending.append(data)
        return data

    def take(self) -> bytes:
        data, self.pending = b"".join(self.pending), []
        return data


class _Blocks:
    """Stores an input file in compressed blocks of whole lines.  zlib releases the GIL, so
    a thread compresses a block while the main thread checks the next lines."""

    def __init__(self, db: sqlite_utils.Database, pool: ThreadPoolExecutor):
        self.db = db
        self.pool = pool
        self.next = queries.next_block(db)
        self.waiting: list[tuple[int, str, int, Future]] = []

    def add(self, name: str, first_line: int, data: bytes) -> int:
        """Queues the block of lines ``first_line`` on; returns its number."""
        block, self.next = self.next, self.next + 1
        future = self.pool.submit(zlib.compress, data, queries.BLOCK_LEVEL)
        self.waiting.append((block, name, first_line, future))
        if len(self.waiting) > 2:  # bounded: at most two blocks wait in memory
            self.store(self.waiting.pop(0))
        return block

    def store(self, item: tuple[int, str, int, Future]) -> None:
        block, name, first_line, future = item
        queries.insert_block(self.db, block, name, first_line, future.result())

    def finish(self, first_block: int, sha256: str) -> None:
        """Stores the blocks still waiting and names the input they all belong to."""
        for item in self.waiting:
            self.store(item)
        self.waiting = []
        queries.set_block_input(self.db, first_block, sha256)


class _Ingester:
    def __init__(
        self,
        db: sqlite_utils.Database,
        run_id: int,
        currency: str,
        zone: ZoneInfo,
        blocks: _Blocks,
    ):
        self.db = db
        self.blocks = blocks
        self.run_id = run_id
        self.currency = currency
        self.zone = zone
        self.read = 0
        self.new_events = 0
        self.duplicates = 0
        self.rejected: Counter = Counter()
        self.customers: dict[str, datetime.date] = {}

    def _touch(self, event) -> None:
        earliest = self.customers.get(event.customer)
        if earliest is None or event.day < earliest:
            self.customers[event.customer] = event.day

    def flush(self, batch: list[Line], block: int) -> None:
        valid = [line for line in batch if line.event is not None]
        known = queries.known_event_contents(self.db, list({line.event.id for line in valid}))
        rows, quarantined = [], []
        for line in batch:
            if line.event is None:
                quarantined.append(queries.quarantine_row(line, line.rejection, self.run_id))
                self.rejected[line.rejection.reason] += 1
                continue
            content = queries.content_key(line.content_sha)
            stored = known.get(line.event.id)
            if stored == content:
                self.duplicates += 1
            elif stored is not None:
                conflict = Rejection(
                    ID_CONFLICT, "id", "id already ingested with other content", line.event.id
                )
                quarantined.append(queries.quarantine_row(line, conflict, self.run_id))
                self.rejected[ID_CONFLICT] += 1
            else:
                known[line.event.id] = content
                rows.append(queries.event_row(line, block, self.run_id))
                self._touch(line.event)
        if rows:
            queries.insert_events(self.db, rows)
            self.new_events += len(rows)
        if quarantined:
            queries.insert_quarantine(self.db, quarantined)

    def ingest_stream(
        self, stream: _HashingReader, name: str, progress: Callable[[int], None]
    ) -> None:
        batch: list[Line] = []
        first_line = 1
        for number, raw in events.read_lines(stream):
            self.read += 1
            batch.append(events.check_line(raw, name, number, self.currency, self.zone))
            if len(batch) >= INSERT_BATCH_SIZE:
                self.flush(batch, self.blocks.add(name, first_line, stream.take()))
                first_line = number + 1
                progress(len(batch))
                batch = []
        rest = stream.take()
        if batch or rest:
            self.flush(batch, self.blocks.add(name, first_line, rest))
        progress(len(batch))


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


def _ingest_one(ingester: _Ingester, stream: BinaryIO, name: str, progress) -> dict:
    read, valid_before = ingester.read, ingester.new_events + ingester.duplicates
    rejected_before = Counter(ingester.rejected)
    reader = _HashingReader(stream)
    first_block = ingester.blocks.next
    ingester.ingest_stream(reader, name, progress)
    sha256 = reader.sha.hexdigest()
    ingester.blocks.finish(first_block, sha256)
    rejected = ingester.rejected - rejected_before
    valid = ingester.new_events + ingester.duplicates - valid_before + rejected[ID_CONFLICT]
    queries.record_input(ingester.db, sha256, ingester.read - read, valid, dict(rejected), name)
    return {"file": name, "sha256": sha256, "lines": ingester.read - read}


def _ingest_path(ingester: _Ingester, path: str, progress) -> dict:
    if path == "-":
        return _ingest_one(ingester, sys.stdin.buffer, STDIN_NAME, progress)
    try:
        known = queries.known_input(ingester.db, sha256_file(Path(path)))
        if known is not None:
            return _replay_known_input(ingester, path, known, progress)
        with Path(path).open("rb") as stream:
            return _ingest_one(ingester, stream, path, progress)
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
        ingester = _Ingester(db, run_id, currency, zone, _Blocks(db, pool))
        inputs = [_ingest_path(ingester, path, progress) for path in paths]
    return IngestResult(
        read=ingester.read,
        new_events=ingester.new_events,
        duplicates=ingester.duplicates,
        schema_rejected=ingester.rejected,
        customers=ingester.customers,
        inputs=tuple(inputs),
    )
