"""Ingest: store checked event files, dedupe by id (SPEC §2).

Each input is opened once (:class:`~ledger_engine.reading.InputFile`) and read once; it comes
in bounded batches of new events (:class:`~ledger_engine.reading.NewEvents`) from a *source*:
:class:`LocalSource` checks it in this process (or has a reader process check an input too
large to keep in memory), and the run's worker process (:mod:`ledger_engine.worker`) is
another.  Every input is kept once, as compressed blocks of its lines: the same bytes given
again, by any route, are counted as a repeat of the known input and stored no second time.
The new events of this process's share of customers are kept in memory for the derivation
(``IngestResult.memory``), up to :data:`MEMORY_EVENTS_MAX`; past that the derivation reads
them back from the store.  Writes go into the caller's open transaction,
so an interrupted run leaves no event half-ingested.
"""

from __future__ import annotations

import contextlib
import datetime
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

import sqlite_utils

from ledger_engine.core.errors import InputFileError
from ledger_engine.core.model import ID_CONFLICT, Event, RunEvents
from ledger_engine.reading import (
    MEMORY_INPUT_BYTES_MAX,
    Batch,
    Done,
    InputFile,
    InputIdentity,
    Known,
    NewEvents,
    ReadContext,
    batches_of_process,
    check_unchanged,
    read_batches,
    use_process,
)
from ledger_engine.store import queries, runlog

# A run whose input files hold this many bytes or more (or that reads stdin) keeps its new
# events in memory for its derivation, up to MEMORY_EVENTS_MAX (about 300 bytes each); a
# smaller or larger run reads them back from the store, customer by customer (the reference
# path, which the tests compare the other with).
MEMORY_MIN_BYTES = 4 * 1024 * 1024
MEMORY_EVENTS_MAX = 1_500_000
# A first night dedupes ids in memory up to this many (about 100 bytes each), then asks
# the store, which by then holds every event of the run.
RUN_IDS_IN_MEMORY_MAX = 2_000_000
LINE_BYTES_LEAST = 100  # hardly an event line is shorter: bytes / this >= the lines a run brings


class IngestResult(NamedTuple):
    read: int
    new_events: int
    duplicates: int
    schema_rejected: Counter
    customers: dict[str, datetime.date]  # customer -> the earliest day of its new events
    inputs: tuple[dict, ...]  # {"file", "sha256", "lines"} per input
    memory: RunEvents | None  # this process's share of the new events (None: in the store)
    events_digest: str  # of the events rows stored, by block and line (store.runlog)
    opened: tuple[InputIdentity, ...]  # what each input was (checked again before the commit)


class Source(Protocol):
    """Where the new events of an input come from."""

    def batches(
        self, source: InputFile, context: ReadContext, known: Known
    ) -> Iterator[NewEvents | Done]:
        """The input's batches of new events (told apart by ``known``), then Done: from
        ``source``'s one read (:meth:`~ledger_engine.reading.InputFile.read_ahead`)."""
        ...


def _everyone(customer: str) -> bool:
    return True


def _no_one(customer: str) -> bool:
    return False


class LocalSource:
    """Inputs read, checked and told apart from repeats in this process; for a file too
    large to keep in memory (given two cores) the checks run in a reader process."""

    def __init__(self, keep: bool):
        self.keep = keep  # keep every new event (until the ingester says it holds enough)

    def batches(
        self, source: InputFile, context: ReadContext, known: Known
    ) -> Iterator[NewEvents | Done]:
        checked: Iterator[Batch | Done]
        if (source.size or 0) > MEMORY_INPUT_BYTES_MAX and use_process(source.path):
            self.keep = False
            checked = batches_of_process(source, context)
        else:
            checked = read_batches(source.read_ahead(), context, keep=self.keep)
        for item in checked:
            if isinstance(item, Done):
                yield item
                return
            keep = _everyone if self.keep else _no_one
            yield known.new_events(item, context.name, context.run_id, keep)


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

    def add(self, name: str, batch: NewEvents) -> None:
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


def _bulk_load_drops(db: sqlite_utils.Database, expected: int) -> list[str]:
    """The indexes of ``events`` a run loads its events without (built once at the end, or
    when the store must be asked for ids): both on books without events (a first night);
    the one by customer when the run brings at least half as many events as there are
    (``expected``: about how many it brings); none for a smaller run.  (Dropping the index by
    id too, and asking a second connection for the ids of earlier runs, measured no faster:
    building it again over all the events costs what keeping it up does.)"""
    stored = queries.events_stored(db)
    if stored == 0:
        return [queries.EVENTS_BY_ID, queries.EVENTS_BY_CUSTOMER]
    return [queries.EVENTS_BY_CUSTOMER] if expected >= stored // 2 else []


def _line_of_row(row: tuple) -> int:
    return row[queries.ROW_LINE]


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
        self.memory: RunEvents | None = defaultdict(list)
        self.kept = 0
        self.events_digest = runlog.RowDigest()
        self.dropped_indexes: list[str] | None = None  # decided at the first new input
        self.known = Known(db, True, self.finish, RUN_IDS_IN_MEMORY_MAX, run_id)
        self.opened: list[InputIdentity] = []

    def start_input(self, expected: int) -> None:
        """Before the run's first input that is read (not known already): a bulk load drops
        indexes (``expected``: about how many events this input and the later ones bring)."""
        if self.dropped_indexes is None:
            drops = _bulk_load_drops(self.db, expected)
            self.dropped_indexes = queries.drop_event_indexes(self.db, drops)

    def finish(self) -> None:
        """Builds the indexes a bulk load went without."""
        queries.create_indexes(self.db, self.dropped_indexes or [])
        self.dropped_indexes = []

    def close(self) -> None:
        """Builds the indexes and lets go of the run's ids (they refer back to the ingester:
        no cycle outlives ingest, the cyclic GC is paused)."""
        self.finish()
        self.known = None

    def flush(self, name: str, batch: NewEvents) -> None:
        """Stores a batch: its block, its new events, its rejections and id conflicts."""
        self.blocks.add(name, batch)
        self.read += batch.lines
        self.duplicates += batch.duplicates
        for row in batch.rejected:
            self.rejected[row["reason"]] += 1
        for customer, day in batch.touched.items():
            if day < self.customers.get(customer, "~"):
                self.customers[customer] = day
        if batch.events:
            queries.insert_events(self.db, batch.events)
            self.new_events += len(batch.events)
            self.events_digest.add(sorted(batch.events, key=_line_of_row))
        if batch.rejected:
            queries.insert_quarantine(self.db, batch.rejected)
        self._keep(batch.kept)

    def _keep(self, kept: list[Event]) -> None:
        if self.memory is None:
            return
        self.kept += len(kept)
        if self.kept > MEMORY_EVENTS_MAX:
            self.memory = None  # bounded memory: the derivation reads them from the store
            return
        memory = self.memory
        for event in kept:
            memory[event.customer].append(event)

    def counts(self) -> tuple:
        """What the ingester has counted and built so far (see :meth:`forget`)."""
        return (self.read, self.new_events, self.duplicates, Counter(self.rejected),
                list(self.dropped_indexes or []), self.events_digest.copy())  # fmt: skip

    def forget(self, before: tuple) -> None:
        """Undoes what was stored of an input since :meth:`counts` gave ``before`` (and
        :func:`queries.begin_input`): its bytes are those of a known input, so every event
        of it was a repeat and nothing else of it is kept."""
        self.blocks.flush()
        queries.forget_input(self.db)
        (self.read, self.new_events, self.duplicates, self.rejected, dropped,
         self.events_digest) = before  # fmt: skip
        if dropped and not self.dropped_indexes:  # built meanwhile, and that undone too
            queries.create_indexes(self.db, dropped)

    def ingest_batches(self, batches: Iterable[NewEvents | Done], name: str) -> str:
        """Stores every batch of one input; returns its SHA-256."""
        for item in batches:
            if isinstance(item, Done):
                return item.sha256
            self.flush(name, item)
            self.progress(item.lines)
        raise AssertionError("an input's batches end with Done")


def _replay_known_input(
    ingester: _Ingester, name: str, known: queries.KnownInput, progress: bool = True
) -> dict:
    """Counts an input whose exact bytes an earlier run (or this one) ingested, without
    storing it again.

    Every schema-valid line of it is now a duplicate (or the same id conflict as before),
    and every schema-rejected line gets the same verdict again (quarantine keeps one record).
    """
    ingester.read += known.lines
    rejected = Counter(known.rejected)
    ingester.duplicates += known.valid - rejected.get(ID_CONFLICT, 0)
    ingester.rejected.update(rejected)
    if progress:
        ingester.progress(known.lines)
    return {"file": name, "sha256": known.sha256, "lines": known.lines, "already_ingested": True}


def _known_at_first_look(db: sqlite_utils.Database, source: InputFile):
    """The known input a regular file is, found without checking a line of it.

    Only a file with the size and the first chunk of a known input is read to its end for
    its hash alone (the no-op re-post of a known file costs the hash, not the checks); if it
    is not known after all, it is read again, from its start, and that read must hash to the
    same.  Any other file is read once, the first chunk handed on to its checks."""
    look = source.first_look()
    if look is None or not queries.inputs_like(db, *look):
        return None
    known = queries.known_input(db, source.hash_all())
    if known is None:
        source.rewind()
    return known


def _ingest_one(ingester: _Ingester, source: InputFile, reads: Source, expected: int) -> dict:
    """Ingests one input read from ``source`` by ``reads`` and records it; an input whose
    bytes turn out, at its end, to be a known input's (a pipe cannot be looked at first) is
    undone and counted as a repeat of it."""
    ingester.start_input(expected)
    before = ingester.counts()
    queries.begin_input(ingester.db)
    name, first_block = source.name, ingester.blocks.next()
    context = ReadContext(name, ingester.currency, ingester.zone, ingester.run_id, first_block)
    sha256 = ingester.ingest_batches(reads.batches(source, context, ingester.known), name)
    known = queries.known_input(ingester.db, sha256)
    if known is not None:
        ingester.forget(before)
        queries.note_input_look(ingester.db, sha256, source.bytes_read, source.head_sha256)
        return _replay_known_input(ingester, name, known, progress=False)
    queries.end_input(ingester.db)
    ingester.blocks.finish(first_block, sha256)
    read, valid_before, rejected_before = before[0], before[1] + before[2], before[3]
    rejected = ingester.rejected - rejected_before
    valid = ingester.new_events + ingester.duplicates - valid_before + rejected[ID_CONFLICT]
    queries.record_input(ingester.db, sha256, ingester.read - read, valid, dict(rejected), name,
                         source.bytes_read, source.head_sha256)  # fmt: skip
    return {"file": name, "sha256": sha256, "lines": ingester.read - read}


def _ingest_path(ingester: _Ingester, path: str, reads: Source, expected: int) -> dict:
    try:
        with InputFile(path) as source:
            if source.identity is not None:
                ingester.opened.append(source.identity)
            known = _known_at_first_look(ingester.db, source)
            if known is not None:
                return _replay_known_input(ingester, source.name, known)
            return _ingest_one(ingester, source, reads, expected)
    except OSError as error:
        raise InputFileError(f"cannot read {path}: {error.strerror or error}") from error


def check_inputs_unchanged(ingested: IngestResult) -> None:
    """Raises InputChanged if an input is no longer what the run read (just before the
    commit: a run never records what a path no longer holds)."""
    check_unchanged(ingested.opened)


def _input_bytes(paths: Iterable[str]) -> int | None:
    """How many bytes the input files hold (None with stdin: unknown)."""
    size = 0
    for path in paths:
        if path == "-":
            return None
        with contextlib.suppress(OSError):  # a missing file is reported when it is read
            size += Path(path).stat().st_size
    return size


def keeps_in_memory(paths: Iterable[str]) -> bool:
    """Whether a run of ``paths`` keeps its new events in memory (see MEMORY_MIN_BYTES)."""
    size = _input_bytes(paths)
    return size is None or size >= MEMORY_MIN_BYTES


def ingest_files(
    db: sqlite_utils.Database,
    paths: Iterable[str],
    run_id: int,
    currency: str,
    zone: ZoneInfo,
    progress: Callable[[int], None] = lambda count: None,
    source: Source | None = None,
) -> IngestResult:
    """Reads every file (``-`` is stdin) into the store, inside the caller's transaction.

    Args:
        db: the store, with a transaction open.
        paths: the input files, in order.
        run_id: the id of the run, stamped on every row written.
        currency: the books' currency.
        zone: the books' timezone.
        progress: called with the number of lines read since the last call.
        source: where the new events come from (default: a :class:`LocalSource`).

    Returns:
        Counts, the customers whose events changed, the inputs' SHA-256 and the new events
        kept in memory.

    Raises:
        InputFileError: an input file cannot be read, or it changed while it was read
            (InputChanged), or it is larger than the limits of one input (InputTooLarge).
    """
    paths = list(paths)
    with ThreadPoolExecutor(1, thread_name_prefix="compress") as pool:
        ingester = _Ingester(db, run_id, currency, zone, _Blocks(db, pool), progress)
        local = source is None
        source = source or LocalSource(keeps_in_memory(paths))
        inputs = []
        for index, path in enumerate(paths):
            expected = (_input_bytes(paths[index:]) or 0) // LINE_BYTES_LEAST
            inputs.append(_ingest_path(ingester, path, source, expected))
            if local and ingester.memory is None:
                source.keep = False
        ingester.close()
    if local and not source.keep:
        ingester.memory = None  # an input was too large to keep (or the run's events were)
    return IngestResult(
        read=ingester.read,
        new_events=ingester.new_events,
        duplicates=ingester.duplicates,
        schema_rejected=ingester.rejected,
        customers={c: datetime.date.fromisoformat(d) for c, d in ingester.customers.items()},
        inputs=tuple(inputs),
        memory=ingester.memory,
        events_digest=ingester.events_digest.hexdigest(),
        opened=tuple(ingester.opened),
    )
