"""Ingest: read event files, apply the schema checks, dedupe by id, store (SPEC §2).

Streams each file in bounded batches; nothing is held for the whole file.  Writes go into
the caller's open transaction, so an interrupted run leaves no event half-ingested.
"""

from __future__ import annotations

import datetime
import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Iterable
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
    """Wraps a binary stream, hashing every byte read (for the run log)."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.sha = hashlib.sha256()

    def readline(self, limit: int = -1) -> bytes:
        data = self.stream.readline(limit)
        self.sha.update(data)
        return data


class _Ingester:
    def __init__(self, db: sqlite_utils.Database, run_id: int, currency: str, zone: ZoneInfo):
        self.db = db
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

    def flush(self, batch: list[Line]) -> None:
        valid = [line for line in batch if line.event is not None]
        known = queries.known_event_shas(self.db, list({line.event.id for line in valid}))
        rows, quarantined = [], []
        for line in batch:
            if line.event is None:
                quarantined.append(queries.quarantine_row(line, line.rejection, self.run_id))
                self.rejected[line.rejection.reason] += 1
                continue
            sha = known.get(line.event.id)
            if sha == line.content_sha:
                self.duplicates += 1
            elif sha is not None:
                conflict = Rejection(
                    ID_CONFLICT, "id", "id already ingested with other content", line.event.id
                )
                quarantined.append(queries.quarantine_row(line, conflict, self.run_id))
                self.rejected[ID_CONFLICT] += 1
            else:
                known[line.event.id] = line.content_sha
                rows.append(queries.event_row(line, self.run_id))
                self._touch(line.event)
        if rows:
            queries.insert_events(self.db, rows)
            self.new_events += len(rows)
        if quarantined:
            queries.insert_quarantine(self.db, quarantined)

    def ingest_stream(self, stream, name: str, progress: Callable[[int], None]) -> None:
        batch: list[Line] = []
        for number, raw in events.read_lines(stream):
            self.read += 1
            batch.append(events.check_line(raw, name, number, self.currency, self.zone))
            if len(batch) >= INSERT_BATCH_SIZE:
                self.flush(batch)
                progress(len(batch))
                batch = []
        self.flush(batch)
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
    ingester.ingest_stream(reader, name, progress)
    sha256 = reader.sha.hexdigest()
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
    ingester = _Ingester(db, run_id, currency, zone)
    inputs = [_ingest_path(ingester, path, progress) for path in paths]
    return IngestResult(
        read=ingester.read,
        new_events=ingester.new_events,
        duplicates=ingester.duplicates,
        schema_rejected=ingester.rejected,
        customers=ingester.customers,
        inputs=tuple(inputs),
    )
