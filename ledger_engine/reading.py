"""Reading: an input stream into checked batches, and checked batches into new events.

:func:`read_batches` reads an input in batches of lines; each :class:`Batch` holds the
bytes of its lines (the input's next block, stored by ingest), the store rows of its
schema-valid events and the quarantine rows of the rest, and the last item is :class:`Done`
with the input's SHA-256.  :class:`Known` then tells a new event from a repeat (SPEC §2:
a duplicate, or an id conflict) and :meth:`Known.new_events` turns a batch into what ingest
stores (:class:`NewEvents`).  The same functions run in this process, in the run's worker
process (:mod:`ledger_engine.worker`), or, the checks only, for an input too large to keep
in memory, in a reader process (:func:`batches_of_file`): the schema checks then run on
another core while this one writes the store.  All give the same batches, so the books do
not depend on where the checks ran.  The reader process touches no store and no books;
ingest's transaction and the crash protocol are the same either way.

``LEDGER_ENGINE_READER`` chooses: ``process`` (another process for every file), ``inline``
(never), unset (another process for files of :data:`PROCESS_MIN_BYTES` or more, given 2
cores).
"""

from __future__ import annotations

import io
import json
import operator
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple
from zoneinfo import ZoneInfo

from ledger_engine.core import dates, events
from ledger_engine.core.errors import InputFileError
from ledger_engine.core.model import ID_CONFLICT, Event, Line, Rejection
from ledger_engine.store import queries
from ledger_engine.store.queries import INSERT_BATCH_SIZE

PROCESS_MIN_BYTES = 4 * 1024 * 1024  # below this a reader process costs more than it saves
# Inputs larger than this are never kept in memory whole: their lines are checked in a
# reader process (given two cores) and their events read back from the store.  Measured
# peak RSS with the events kept: 650 MiB for 1,000,000 events (163 MiB of input), 1.1 GiB
# for 2,000,000; read back, 512 MiB for 2,000,000 (and 13 % more time).
MEMORY_INPUT_BYTES_MAX = 256 * 1024 * 1024
READER_VARIABLE = "LEDGER_ENGINE_READER"
# The reader process's program (the batches it pickles name ledger_engine.reading's records).
READER_COMMAND = (
    "import sys; from ledger_engine.reading import _main; sys.exit(_main(sys.argv[1:]))"
)


class ReadContext(NamedTuple):
    """What checking the lines of one input needs (picklable: sent to a reader process)."""

    name: str  # the input's name as the store records it
    currency: str
    zone: ZoneInfo
    run_id: int
    first_block: int  # the block number of the input's first batch


class Batch(NamedTuple):
    """One batch of lines of an input."""

    block: int  # its block number
    first_line: int  # the line number of its first line
    data: bytes  # the bytes of its lines as read (line ends and blank lines included)
    lines: int  # how many non-blank lines it holds
    events: list[tuple]  # the events row of each schema-valid line
    rejected: list[dict]  # the quarantine row of each line the schema checks rejected
    checked: list[Event] | None = None  # the event of each row (when they are kept)


class NewEvents(NamedTuple):
    """A batch as ingest stores it: its new events, and what the others were."""

    block: int
    first_line: int
    data: bytes
    lines: int
    events: list[tuple]  # the events rows of its new events, by customer and day
    rejected: list[dict]  # quarantine rows: the schema's rejections, then the id conflicts
    duplicates: int  # exact repeats of events ingested before
    touched: dict[str, str]  # customer -> the earliest day (ISO) of its new events here
    kept: list[Event]  # the new events kept for this process's derivation
    repeated: frozenset[int]  # the line numbers of the batch's rows that were not new


class Done(NamedTuple):
    """The end of an input."""

    sha256: str


def line_text(batch: Batch, number: int) -> str:
    """The text of line ``number`` of ``batch`` as the checks read it (for a quarantine row
    of a line that passed them: an id conflict)."""
    raw = batch.data.split(b"\n")[number - batch.first_line]
    if number == 1 and raw.startswith(events.BOM):
        raw = raw[len(events.BOM) :]
    return raw[: events.LINE_BYTES_MAX + 1].rstrip(b"\r\n").decode("utf-8", "backslashreplace")


def check_batch(
    numbered: list[tuple[int, bytes]],
    context: ReadContext,
    block: int,
    keep: bool = False,
    long_lines: dict[int, int] | None = None,
) -> tuple[list[tuple], list[dict], list[Event] | None]:
    """The schema checks of a batch of ``(line number, raw bytes)``: the events rows of the
    valid lines, the quarantine rows of the others, and (``keep``) the valid events.  A
    line of a plain shape takes the fast path; every other one gets :func:`check_line`.
    ``long_lines``: the lengths of the lines longer than the limit (cut, so rejected)."""
    valid, rejected, checked = [], [], []
    fast, check, row = events.fast_check, events.check_line, queries.event_row
    name, currency, zone, run_id = context.name, context.currency, context.zone, context.run_id
    for number, raw in numbered:
        found = fast(raw, currency, zone)
        if found is None:
            line = check(raw, name, number, currency, zone)
            if line.event is None:
                rejection = line.rejection
                if long_lines and number in long_lines:
                    rejection = events.long_line_rejection(long_lines[number])
                rejected.append(queries.quarantine_row(line, rejection, run_id))
                continue
            found = line.event, line.content
        valid.append(row(found[0], found[1], block, number, run_id))
        checked.append(found[0])
    return valid, rejected, checked if keep else None


def read_batches(
    stream: BinaryIO, context: ReadContext, keep: bool = False
) -> Iterator[Batch | Done]:
    """Reads and checks an input in batches (with their events, if ``keep``); the last item
    is :class:`Done`."""
    blocks = events.LineBlocks(stream, INSERT_BATCH_SIZE, context.name)
    for block, read in enumerate(blocks, context.first_block):
        valid, rejected, checked = check_batch(read.lines, context, block, keep, read.long_lines)
        yield Batch(block, read.first_line, read.data, len(read.lines), valid, rejected, checked)
    yield Done(blocks.sha256)


_customer_and_day = operator.itemgetter(queries.ROW_CUSTOMER, queries.ROW_DAY)


def _keyed(rows: list[tuple]) -> list[tuple[str, int]]:
    """The distinct ``(id, id key)`` pairs of events rows, to look up in the store."""
    return list({(row[queries.ROW_ID], row[queries.ROW_ID_KEY]) for row in rows})


class Known:
    """The content key of every event id ingested before this run (asked of the store) or
    earlier in it (kept here), to tell a new event from a repeat (SPEC §2).

    The store is asked for the ids of earlier runs only (``run_id``: this run), the run's own
    ids are kept here: up to ``run_ids_max`` of them when ``sees_run`` (this process writes
    the run's rows, so past that bound the store is asked for them too, once
    ``before_store`` has run: ingest builds the indexes a bulk load went without), all of
    them otherwise (a worker process sees only what earlier runs committed).  For a batch
    the worker checked, the worker asks the store (``earlier``).
    """

    def __init__(
        self,
        db,
        sees_run: bool,
        before_store: Callable[[], None] = lambda: None,
        run_ids_max: int = 0,
        run_id: int = 0,
    ):
        self.db = db
        self.store_has_events = queries.has_events(db)
        self.sees_run = sees_run
        self.before_store = before_store
        self.run_ids_max = run_ids_max
        self.run_id = run_id
        self.run: dict[str, int] | None = {}

    def earlier(self, rows: list[tuple]) -> dict[str, int] | None:
        """What earlier runs stored of the ids of ``rows`` (None: the store has no event)."""
        if not self.store_has_events:
            return None
        return queries.known_event_contents(self.db, _keyed(rows), self.run_id)

    def _known(self, rows: list[tuple], earlier: dict[str, int] | None) -> tuple[dict, dict]:
        """Where to look up the ids of ``rows``: first one dict, then the other (which also
        records the new ids)."""
        if self.sees_run and self.run is not None and len(self.run) > self.run_ids_max:
            self.run = None  # bounded memory: from here on the store (it has them all)
            self.before_store()
            self.store_has_events = True
        if self.run is None:
            found = queries.known_event_contents(self.db, _keyed(rows))  # this run's rows too
            return found, found
        if not self.store_has_events:
            return self.run, self.run  # only this run's ids can repeat
        return (self.earlier(rows) if earlier is None else earlier), self.run

    def new_events(
        self, batch: Batch, name: str, run_id: int, keep, earlier: dict[str, int] | None = None
    ) -> NewEvents:
        """The new events of a checked batch (and the conflicts); ``keep(customer)`` tells
        whose new events this process keeps for its derivation (the batch's own events, or
        made from its rows); ``earlier``: what :meth:`earlier` found of its ids, if asked
        elsewhere."""
        before, run = self._known(batch.events, earlier)
        rows, quarantined, kept, touched, duplicates = [], list(batch.rejected), [], {}, 0
        repeated: set[int] = set()
        checked = batch.checked or [None] * len(batch.events)
        get_before, get_run, earliest = before.get, run.get, touched.get
        for row, event in zip(batch.events, checked, strict=True):
            event_id, customer, day, content = row[0], row[3], row[5], row[7]
            stored = get_before(event_id)
            if stored is None:
                stored = get_run(event_id)
            if stored is None:
                run[event_id] = content
                rows.append(row)
                if day < earliest(customer, "~"):
                    touched[customer] = day
                if keep(customer):
                    kept.append(row if event is None else event)
                continue
            repeated.add(row[queries.ROW_LINE])
            if stored == content:
                duplicates += 1
            else:
                number = row[queries.ROW_LINE]
                conflict = Rejection(
                    ID_CONFLICT, "id", "id already ingested with other content", event_id
                )
                line = Line(name, number, line_text(batch, number), None, None, None)
                quarantined.append(queries.quarantine_row(line, conflict, run_id))
        if batch.checked is None and kept:
            kept = queries.events_of_event_rows(kept)
        # A customer's events of a batch side by side: a later night reads them together.
        rows.sort(key=_customer_and_day)
        return NewEvents(batch.block, batch.first_line, batch.data, batch.lines, rows,
                         quarantined, duplicates, touched, kept, frozenset(repeated))  # fmt: skip


def pickle_fast(item) -> memoryview:
    """``item`` pickled without a memo (several times faster for rows of scalars; no
    shared or cyclic references in what is sent)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(item)
    return buffer.getbuffer()


def write_all(descriptor: int, data) -> None:
    """Writes every byte of ``data`` to a pipe with ``os.write``: a buffered writer's large
    write lost bytes when the process was stopped and continued mid-write (SIGSTOP and
    SIGCONT: job control, a profiler)."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def write_pickle(descriptor: int, item) -> None:
    """Writes ``item`` as one pickle to a pipe, every byte of it."""
    write_all(descriptor, pickle_fast(item))


def _main(argv: list[str]) -> int:
    """The reader process (:data:`READER_COMMAND` with FILE and the context as JSON):
    writes every batch of FILE to standard output as a pickle, then Done."""
    path, spec = argv
    name, currency, zone, run_id, first_block = json.loads(spec)
    context = ReadContext(name, currency, dates.load_zone(zone), run_id, first_block)
    out = sys.stdout.fileno()
    try:
        with Path(path).open("rb") as stream:
            for item in read_batches(stream, context):
                write_pickle(out, item)
    except BrokenPipeError:
        return 1  # the run stopped reading (it failed or was interrupted)
    except OSError as error:
        sys.stderr.write(f"cannot read {path}: {error.strerror or error}\n")
        return 1
    return 0


def use_process(path: str) -> bool:
    """Whether to check ``path`` in a reader process (see the module docstring)."""
    choice = os.environ.get(READER_VARIABLE, "")
    if choice in ("process", "inline"):
        return choice == "process"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores > 1 and Path(path).stat().st_size >= PROCESS_MIN_BYTES


def batches_of_file(path: str, context: ReadContext) -> Iterator[Batch | Done]:
    """The batches of a file read and checked by a reader process (same as inline).

    Raises:
        InputFileError: the file cannot be read, or the reader process died.
    """
    spec = json.dumps([context.name, context.currency, context.zone.key, context.run_id,
                       context.first_block])  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", READER_COMMAND, path, spec],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        while True:
            try:
                item = pickle.load(process.stdout)
            except EOFError:
                why = why_stopped(process)
                raise InputFileError(f"the reader process of {path} stopped: {why}") from None
            yield item
            if isinstance(item, Done):
                return
    finally:
        process.stdout.close()
        end_process(process)
        process.stderr.close()


def why_stopped(process: subprocess.Popen) -> str:
    """Why a child process (the reader, the worker) stopped, once it has: the last line of
    its standard error, or its exit code."""
    process.wait()
    error = process.stderr.read().decode(errors="replace").strip().splitlines()
    return error[-1] if error else f"exit code {process.returncode}"


def end_process(process: subprocess.Popen) -> None:
    """Waits a few seconds for a child process whose input is closed to end, then kills it."""
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
