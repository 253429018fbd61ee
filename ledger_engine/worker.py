"""The run's worker process: both cores for one night.

A run whose inputs are large enough (:func:`use_worker`) starts one worker process, a fresh
interpreter that reads the store through a read-only connection of its own and never writes
it.  It never opens an input: this process reads each input once and hands the worker every
chunk it read (:class:`~ledger_engine.reading.Child`), and both cut them into the same
batches: the worker checks seven batches in eight (:data:`RUN_CHECKS_EVERY`) and sends their
rows, with what earlier runs stored of their ids, and at the input's end the hash of what it
was handed, which must be the run's; this process checks the eighth itself, tells new
events from repeats
(:class:`~ledger_engine.reading.Known`) in the order of the file, and stores them.
Meanwhile each keeps the new events of its *share* of the customers (:func:`in_worker_share`,
a fixed split by the customer id): the worker those of the batches it checked, less the
repeats this process found, plus those of the batches this process checked, which it is
sent.  Then both derive at once, each its own share, each from the events it holds and the
store (the store's rows of earlier runs; the worker cannot see this run's uncommitted rows,
nor needs them).  The worker plans the writes of its derivations
(:class:`~ledger_engine.derive.Planned`) and sends them back as they are ready; this process
applies them in its one transaction, so the commit protocol is the same as without a
worker, and the books come out byte for byte the same (tests/test_reader_process.py,
tests/test_worker.py).

The protocol is pickles on the worker's standard input (commands, each ``read`` followed by
the input's bytes as frames) and framed pickles on its output (results, and a heartbeat every
:data:`~ledger_engine.reading.HEARTBEAT_SECONDS`).  Every wait on the worker is bounded: one
that stops answering (stopped, hung) for :data:`~ledger_engine.reading.CHILD_SILENT_SECONDS_MAX`
is a :class:`WorkerError`, and so is one that read other bytes or cut them otherwise.  The
worker dies with this process (``PR_SET_PDEATHSIG``), and ends at the end of its input.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import pickle
import signal
import sys
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import sqlite_utils

from ledger_engine import derive, reading
from ledger_engine.core import events
from ledger_engine.core.errors import LedgerError
from ledger_engine.core.model import Event, RunEvents
from ledger_engine.reading import (
    Batch,
    Child,
    Done,
    FrameInput,
    FrameOutput,
    InputFile,
    Known,
    NewEvents,
    ReadContext,
    check_batch,
)
from ledger_engine.store import db as store_db
from ledger_engine.store import queries
from ledger_engine.store.queries import INSERT_BATCH_SIZE

# The worker's share of the customers, in hundredths: this process also saves every
# customer's derivation (the worker's too), so it derives fewer itself (measured).
WORKER_SHARE = 70
# This process checks one batch of an input in this many (the first of each run of them);
# the worker checks the others.  This process also stores every batch, so it checks fewer.
RUN_CHECKS_EVERY = 8
DERIVED_PER_FRAME = 50  # customers' derivations sent together
# The events of the worker's share kept for its derivation, at most (like the run's own,
# ingest.MEMORY_EVENTS_MAX).  Past it (an input of unknown size: a pipe, with the worker
# forced) the worker derives nothing and the run derives every customer from the store.
WORKER_EVENTS_MAX = 1_500_000
WORKER_COMMAND = "import sys; from ledger_engine.worker import serve; sys.exit(serve(sys.argv[1]))"


class WorkerError(LedgerError):
    """The run's worker process stopped."""


_shares: dict[str, bool] = {}


def in_worker_share(customer: str) -> bool:
    """Whether the worker derives ``customer`` (a fixed split: the same in every run)."""
    share = _shares.get(customer)
    if share is None:
        if len(_shares) > 1_000_000:
            _shares.clear()
        share = _shares[customer] = zlib.crc32(customer.encode()) % 100 < WORKER_SHARE
    return share


def use_worker(paths: list[str]) -> bool:
    """Whether a run of ``paths`` uses a worker: one input large enough for another process
    (:data:`ledger_engine.reading.PROCESS_MIN_BYTES`, given two cores) and all small enough to
    keep in memory (:data:`ledger_engine.reading.MEMORY_INPUT_BYTES_MAX`), all of them regular
    files (standard input too, if it is one).  ``LEDGER_ENGINE_READER=process`` uses it for
    inputs of any kind and size but the too large (pipes too: the worker is handed what the
    run reads); ``inline`` never."""
    choice = os.environ.get(reading.READER_VARIABLE, "")
    if not paths or choice == "inline":
        return False
    sizes = [reading.input_size(path) for path in paths]
    if sum(size or 0 for size in sizes) > reading.MEMORY_INPUT_BYTES_MAX:
        return False
    if choice == "process":
        return True
    if None in sizes:
        return False  # a pipe, or a missing file (reported when it is read)
    return reading._cores() > 1 and max(sizes) >= reading.PROCESS_MIN_BYTES


class Worker:
    """This process's side of the worker: a :class:`~ledger_engine.ingest.Source` of new
    events, then the derivation of the worker's share.

    A thread takes the worker's output off the pipe as it comes (framed pickles, read with
    the GIL released), so the worker never waits for this process to be ready for it: while
    this process stores a batch or derives its own share, the worker goes on.
    """

    def __init__(self, books_dir: Path):
        self.books_dir = books_dir
        self.child: Child | None = None  # started with the first input read
        self.given: list[Event] = []  # new events of the worker's share it did not check
        self.dropped: list[tuple[int, int]] = []  # (block, line) of repeats it did check
        self.share_events = 0  # the events of the worker's share read (at most)
        self.overflowed = False  # more than WORKER_EVENTS_MAX: the worker derives nothing

    @property
    def started(self) -> bool:
        """Whether the worker runs (a run whose inputs were all known reads none: then this
        process derives every customer itself)."""
        return self.child is not None

    @property
    def process(self):
        return self.child.process if self.child else None

    def _start(self) -> None:
        command = [sys.executable, "-c", WORKER_COMMAND, str(self.books_dir)]
        self.child = Child(command, "the run's worker process", WorkerError)

    def _receive(self):
        return self.child.receive()

    def batches(
        self, source: InputFile, context: ReadContext, known: Known
    ) -> Iterator[NewEvents | Done]:
        """The new events of an input: its batches checked here or by the worker, told
        apart from repeats here, in order; notes what the worker's share gains or loses.
        The worker is handed every chunk as it is read (before this process splits it)."""
        if not self.started:
            self._start()
        self.child.send(("read", context, RUN_CHECKS_EVERY))
        reader = source.read_ahead(self.child.send_data)
        count = 0
        for count, read in enumerate(events.LineBlocks(reader, INSERT_BATCH_SIZE,
                                                       context.name), 1):  # fmt: skip
            index = count - 1
            batch, earlier = self._checked(read, context, index)
            new = known.new_events(batch, context.name, context.run_id, _not_in_share, earlier)
            self._note(batch, new, index % RUN_CHECKS_EVERY == 0)
            yield new
        reading.expect_end(self.child, reader, count)
        yield Done(reader.sha256)

    def _checked(self, read: events.InputBlock, context: ReadContext, index: int):
        """A batch checked here (one in RUN_CHECKS_EVERY) or by the worker, and what the
        worker found of its ids among earlier runs' (None: not asked)."""
        block = context.first_block + index
        if index % RUN_CHECKS_EVERY == 0:
            rows, rejected, checked = check_batch(read.lines, context, block, True,
                                                  read.long_lines)  # fmt: skip
            earlier = None
        else:
            _, rows, rejected, earlier, ours = reading.expect_block(
                self.child, self._receive(), block
            )
            self.share_events += ours.count(None)
            new = tuple.__new__
            checked = [None if fields is None else new(Event, fields) for fields in ours]
        batch = Batch(block, read.first_line, read.data, len(read.lines), rows, rejected,
                      checked)  # fmt: skip
        return batch, earlier

    def _note(self, batch: Batch, new: NewEvents, checked_here: bool) -> None:
        """What the worker's share gains from a batch checked here (its new events), or
        loses from one the worker checked (the rows that were repeats)."""
        if self.overflowed:
            return
        share, line_at, repeated = in_worker_share, queries.ROW_LINE, new.repeated
        if checked_here:
            given = [
                event
                for row, event in zip(batch.events, batch.checked, strict=True)
                if share(event.customer) and row[line_at] not in repeated
            ]
            self.given += given
            self.share_events += len(given)
        elif repeated:
            self.dropped += [
                (batch.block, row[line_at])
                for row in batch.events
                if row[line_at] in repeated and share(row[queries.ROW_CUSTOMER])
            ]
        if self.share_events > WORKER_EVENTS_MAX:  # bounded memory, on both sides
            self.overflowed, self.given, self.dropped = True, [], []

    def derive(self, customers: list[str], earliest: dict, context: derive.RunContext) -> Derived:
        """Has the worker derive ``customers`` (of its share) from now on; they come back
        in order, while this process derives its own."""
        self.child.send(("derive", customers, {c: earliest[c] for c in customers}, context,
                         self.given, self.dropped))  # fmt: skip
        self.child.end_input()
        return Derived(self)

    def close(self) -> None:
        if self.started:
            self.child.close()


class Derived:
    """The worker's derivations as they come: all of them in order (iterating), or those
    already here (:meth:`ready`, which never waits)."""

    def __init__(self, helper: Worker):
        self.helper = helper
        self.done = False

    def ready(self) -> Iterator[derive.Planned]:
        while not self.done and self.helper.child.ready():
            yield from self._next()

    def __iter__(self) -> Iterator[derive.Planned]:
        while not self.done:
            yield from self._next()

    def _next(self) -> list[derive.Planned]:
        planned = self.helper._receive()
        if planned is None:
            self.done = True
            return []
        return planned


@contextlib.contextmanager
def no_cycle_collector() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector for one run.

    A night builds millions of long-lived tuples (events, rows) and no reference cycles of
    note; the collector's full passes over them, triggered again and again as they pile up,
    took a quarter of the checks' time.  Reference counting still frees everything else.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _die_with_parent() -> None:
    """Asks Linux to kill this process when its parent dies (no orphan reads on)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the request
            os._exit(1)


def _not_in_share(customer: str) -> bool:
    return not in_worker_share(customer)


class _Serving:
    """The worker's side: the events of its share, kept between the commands of a run."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        # The events of the share in the batches it checked, by (block, line): some may
        # turn out to be repeats (the run tells which when it asks for the derivation).
        self.checked: list[tuple[int, int, Event]] = []

    def read(self, context: ReadContext, every: int, out: FrameOutput) -> bool:
        """Checks the batches of an input the run hands it (on standard input, as frames),
        but for one in ``every`` (the run checks those), and sends their rows, then the
        hash of what it was handed; False after an error it sent (the input ends here)."""
        source = FrameInput(sys.stdin.buffer)
        known = Known(self.db, sees_run=False, run_id=context.run_id)
        count = 0
        try:
            for count, read in enumerate(events.LineBlocks(source, INSERT_BATCH_SIZE,
                                                           context.name), 1):  # fmt: skip
                if (count - 1) % every:  # else the run checks this one
                    block = context.first_block + count - 1
                    rows, rejected, theirs = self._check(read, context, block)
                    out.write((block, rows, rejected, known.earlier(rows), theirs))
        except LedgerError as error:
            out.write(str(error))
            return False
        out.write(reading.end_frame(source, count))
        return True

    def _check(self, read: events.InputBlock, context: ReadContext, block: int):
        """The checks of one batch; keeps the events of its share, and gives the run the
        others (as plain tuples, None in the place of each event it keeps)."""
        rows, rejected, checked = check_batch(read.lines, context, block, True, read.long_lines)
        share, line_at, kept = in_worker_share, queries.ROW_LINE, self.checked
        theirs = []
        for row, event in zip(rows, checked, strict=True):
            if share(event.customer):
                kept.append((block, row[line_at], event))
                theirs.append(None)
            else:
                theirs.append(tuple(event))
        if len(kept) > WORKER_EVENTS_MAX:  # the run, which counts them too, derives all
            kept.clear()
        return rows, rejected, theirs

    def derive(self, customers, earliest, context, given, dropped, out) -> None:
        memory: RunEvents = defaultdict(list)
        repeats = set(dropped)
        for block, line, event in self.checked:
            if (block, line) not in repeats:
                memory[event.customer].append(event)
        for event in given:
            memory[event.customer].append(event)
        self.checked = []
        planned = []
        for one in derive.derive_customers(self.db, customers, earliest, context, memory):
            planned.append(one)
            if len(planned) == DERIVED_PER_FRAME:
                out.write(planned)
                planned = []
        out.write(planned)
        out.write(None)


def _commands(stream) -> Iterable[tuple]:
    while True:
        try:
            yield pickle.load(stream)
        except EOFError:
            return


def serve(books_dir: str) -> int:
    """The worker process (:data:`WORKER_COMMAND`): runs the commands of its input."""
    _die_with_parent()
    gc.disable()  # see no_cycle_collector
    out = FrameOutput(sys.stdout.fileno())
    serving = _Serving(store_db.open_read_only(Path(books_dir)))
    try:
        for command in _commands(sys.stdin.buffer):
            if command[0] != "read":
                serving.derive(*command[1:], out)
            elif not serving.read(*command[1:], out):
                return 1
    except BrokenPipeError:
        return 1  # the run stopped reading (it failed or was interrupted)
    return 0
