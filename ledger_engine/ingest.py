"""Ingest: read event files, apply the schema checks, dedupe by id, store (SPEC §2).

Streams each file in bounded batches; nothing is held for the whole file.  Writes go into
the caller's open transaction, so an interrupted run leaves no event half-ingested.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, NamedTuple
from zoneinfo import ZoneInfo

import orjson
import sqlite_utils

from ledger_engine import events as ev
from ledger_engine import store
from ledger_engine.books import sha256_file as books_sha256_file
from ledger_engine.store import INSERT_BATCH_SIZE

LOOKUP_CHUNK = 900  # ids per "IN (...)" query, under SQLite's parameter limit
STDIN_NAME = "<stdin>"


class IngestResult(NamedTuple):
    read: int
    new_events: int
    duplicates: int
    schema_rejected: Counter
    customers: frozenset[str]
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


EVENT_INSERT = (
    "INSERT INTO events (id, type, customer, at, day, fields, content_sha, raw, file, line, "
    "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TYPED_START = ev.Event._fields.index("day") + 1


def _event_row(event: ev.Event, line: ev.Line, run_id: int) -> tuple:
    fields = orjson.dumps(event[TYPED_START:]).decode()
    return (
        event.id,
        event.type,
        event.customer,
        event.at,
        event.day.isoformat(),
        fields,
        line.content_sha,
        line.raw,
        line.file,
        line.number,
        run_id,
    )


def _quarantine_row(line: ev.Line, rejection: ev.Rejection, run_id: int) -> dict:
    return {
        "run_id": run_id,
        "file": line.file,
        "line": line.number,
        "reason": rejection.reason,
        "field": rejection.field,
        "detail": rejection.detail,
        "event_id": rejection.event_id,
        "raw": line.raw,
        "raw_sha": hashlib.sha256(line.raw.encode("utf-8", "replace")).hexdigest(),
    }


def _known_shas(db: sqlite_utils.Database, ids: list[str]) -> dict[str, str]:
    known: dict[str, str] = {}
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        for event_id, sha in db.execute(
            f"SELECT id, content_sha FROM events WHERE id IN ({marks})", chunk
        ):
            known[event_id] = sha
    return known


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
        self.customers: set[str] = set()

    def flush(self, batch: list[ev.Line]) -> None:
        events = [line for line in batch if line.event is not None]
        known = _known_shas(self.db, list({line.event.id for line in events}))
        rows, quarantined = [], []
        for line in batch:
            if line.event is None:
                quarantined.append(_quarantine_row(line, line.rejection, self.run_id))
                self.rejected[line.rejection.reason] += 1
                continue
            event = line.event
            sha = known.get(event.id)
            if sha == line.content_sha:
                self.duplicates += 1
            elif sha is not None:
                conflict = ev.Rejection(
                    ev.ID_CONFLICT, "id", "id already ingested with other content", event.id
                )
                quarantined.append(_quarantine_row(line, conflict, self.run_id))
                self.rejected[ev.ID_CONFLICT] += 1
            else:
                known[event.id] = line.content_sha
                rows.append(_event_row(event, line, self.run_id))
                self.customers.add(event.customer)
        if rows:
            self.db.conn.executemany(EVENT_INSERT, rows)
            self.new_events += len(rows)
        if quarantined:
            # The same bad line read again (a re-run) is counted again but stored once.
            store.insert_dicts(self.db, "quarantine", quarantined, "OR IGNORE")

    def ingest_stream(self, stream: BinaryIO, name: str, progress: Callable[[int], None]):
        batch: list[ev.Line] = []
        for number, raw in ev.read_lines(stream):
            self.read += 1
            batch.append(ev.check_line(raw, name, number, self.currency, self.zone))
            if len(batch) >= INSERT_BATCH_SIZE:
                self.flush(batch)
                progress(len(batch))
                batch = []
        self.flush(batch)
        progress(len(batch))


def _known_input(db: sqlite_utils.Database, sha256: str) -> tuple | None:
    return db.execute(
        "SELECT sha256, lines, valid, rejected FROM input_files WHERE sha256 = ?", [sha256]
    ).fetchone()


def _replay_known_input(ingester: _Ingester, path: str, known: tuple, progress) -> dict:
    """Counts a file whose exact bytes an earlier run ingested, without parsing it again.

    Every schema-valid line of it is now a duplicate (or the same id conflict as before),
    and every schema-rejected line gets the same verdict again (quarantine keeps one record).
    """
    sha256, lines, valid, rejected = known
    ingester.read += lines
    rejected = Counter(json.loads(rejected))
    ingester.duplicates += valid - rejected.get(ev.ID_CONFLICT, 0)
    ingester.rejected.update(rejected)
    progress(lines)
    return {"file": path, "sha256": sha256, "lines": lines, "already_ingested": True}


def _ingest_one(ingester: _Ingester, stream: BinaryIO, name: str, progress) -> dict:
    read, valid_before = ingester.read, ingester.new_events + ingester.duplicates
    rejected_before = Counter(ingester.rejected)
    reader = _HashingReader(stream)
    ingester.ingest_stream(reader, name, progress)
    sha256 = reader.sha.hexdigest()
    rejected = ingester.rejected - rejected_before
    valid = ingester.new_events + ingester.duplicates - valid_before + rejected[ev.ID_CONFLICT]
    ingester.db.execute(
        "INSERT OR IGNORE INTO input_files (sha256, lines, valid, rejected, first_name) "
        "VALUES (?, ?, ?, ?, ?)",
        [sha256, ingester.read - read, valid, json.dumps(dict(rejected)), name],
    )
    return {"file": name, "sha256": sha256, "lines": ingester.read - read}


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
    """
    ingester = _Ingester(db, run_id, currency, zone)
    inputs = []
    for path in paths:
        if path == "-":
            inputs.append(_ingest_one(ingester, sys.stdin.buffer, STDIN_NAME, progress))
            continue
        known = _known_input(db, books_sha256_file(Path(path)))
        if known is not None:
            inputs.append(_replay_known_input(ingester, path, known, progress))
            continue
        with Path(path).open("rb") as stream:
            inputs.append(_ingest_one(ingester, stream, path, progress))
    return IngestResult(
        read=ingester.read,
        new_events=ingester.new_events,
        duplicates=ingester.duplicates,
        schema_rejected=ingester.rejected,
        customers=frozenset(ingester.customers),
        inputs=tuple(inputs),
    )
