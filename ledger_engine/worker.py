"""The run's worker process: both cores for one night.

A run whose inputs are large enough (:func:`use_worker`) starts one worker process, a fresh
interpreter that reads the store through a read-only connection of its own and never writes
it.  Both read every input of the run, in the same batches: the worker checks seven batches
in eight (:data:`RUN_CHECKS_EVERY`) and sends their rows, with what earlier runs stored of
their ids; this process checks the eighth itself, tells new events from repeats
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

The protocol is pickles on the worker's standard input (commands) and framed pickles on its
output (results).  The worker dies with this process (``PR_SET_PDEATHSIG``), and ends at
the end of its input.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
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
    Done,
    Known,
    NewEvents,
    ReadContext,
    check_batch,
    pickle_fast,
    write_all,
    write_pickle,
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
FRAME_HEAD = struct.Struct(">Q")  # the length of a frame of the worker's output
FRAMES_AHEAD_MAX = 8  # frames taken off the pipe before this process reads them
DERIVED_PER_FRAME = 50  # customers' derivations sent together
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
    """Whether a run of ``paths`` uses a worker: files only (no stdin), one of them large
    enough for another process (:func:`ledger_engine.reading.use_process`), and all small
    enough to keep in memory (:data:`ledger_engine.reading.MEMORY_INPUT_BYTES_MAX`)."""
    if not paths or "-" in paths:
        return False
    try:
        sizes = [Path(path).stat().st_size for path in paths]
        large = any(reading.use_process(path) for path in paths)
    except OSError:
        return False  # a missing file is reported when it is read
    return large and sum(sizes) <= reading.MEMORY_INPUT_BYTES_MAX


class Worker:
    """This process's side of the worker: a :class:`~ledger_engine.ingest.Source` of new
    events, then the derivation of the worker's share.

    A thread takes the worker's output off the pipe as it comes (framed pickles, read with
    the GIL released), so the worker never waits for this process to be ready for it: while
    this process stores a batch or derives its own share, the worker goes on.
    """

    def __init__(self, books_dir: Path):
        self.books_dir = books_dir
        self.process: subprocess.Popen | None = None  # started with the first input read
        # Bounded: when this process falls behind, the worker waits (a frame is a batch).
        self.frames: queue.Queue[bytes | None] = queue.Queue(FRAMES_AHEAD_MAX)
        self.given: list[Event] = []  # new events of the worker's share it did not check
        self.dropped: list[tuple[int, int]] = []  # (block, line) of repeats it did check

    @property
    def started(self) -> bool:
        """Whether the worker runs (a run whose inputs were all known reads none: then this
        process derives every customer itself)."""
        return self.process is not None

    def _start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER_COMMAND, str(self.books_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.drain = threading.Thread(
            target=_drain, args=(self.process.stdout, self.frames), daemon=True
        )
        self.drain.start()

    def _send(self, command: tuple) -> None:
        try:
            write_pickle(self.process.stdin.fileno(), command)
        except BrokenPipeError:
            self._stopped()

    def _receive(self):
        frame = self.frames.get()
        if frame is None:
            self._stopped()
        return pickle.loads(frame)

    def _stopped(self):
        why = reading.why_stopped(self.process)
        raise WorkerError(f"the run's worker process stopped: {why}") from None

    def batches(self, path: str, context: ReadContext, known: Known) -> Iterator[NewEvents | Done]:
        """The new events of an input: its batches checked here or by the worker, told
        apart from repeats here, in order; notes what the worker's share gains or loses."""
        if not self.started:
            self._start()
        self._send(("read", path, context, RUN_CHECKS_EVERY))
        with Path(path).open("rb") as stream:
            blocks = events.LineBlocks(stream, INSERT_BATCH_SIZE, context.name)
            for index, read in enumerate(blocks):
                block = context.first_block + index
                if index % RUN_CHECKS_EVERY == 0:
                    rows, rejected, checked = check_batch(read.lines, context, block, True,
                                                          read.long_lines)  # fmt: skip
                    earlier = None
                else:
                    item = self._receive()
                    if isinstance(item, str):  # the worker could not read the input
                        raise OSError(item)
                    checked_block, rows, rejected, earlier, ours = item
                    assert checked_block == block, (checked_block, block)
                    new = tuple.__new__
                    checked = [None if fields is None else new(Event, fields) for fields in ours]
                batch = Batch(block, read.first_line, read.data, len(read.lines), rows,
                              rejected, checked)  # fmt: skip
                new = known.new_events(batch, context.name, context.run_id, _not_in_share, earlier)
                self._note(batch, new, index % RUN_CHECKS_EVERY == 0)
                yield new
        yield Done(blocks.sha256)

    def _note(self, batch: Batch, new: NewEvents, checked_here: bool) -> None:
        """What the worker's share gains from a batch checked here (its new events), or
        loses from one the worker checked (the rows that were repeats)."""
        share, line_at, repeated = in_worker_share, queries.ROW_LINE, new.repeated
        if checked_here:
            self.given += [
                event
                for row, event in zip(batch.events, batch.checked, strict=True)
                if share(event.customer) and row[line_at] not in repeated
            ]
        elif repeated:
            self.dropped += [
                (batch.block, row[line_at])
                for row in batch.events
                if row[line_at] in repeated and share(row[queries.ROW_CUSTOMER])
            ]

    def derive(self, customers: list[str], earliest: dict, context: derive.RunContext) -> Derived:
        """Has the worker derive ``customers`` (of its share) from now on; they come back
        in order, while this process derives its own."""
        self._send(("derive", customers, {c: earliest[c] for c in customers}, context,
                    self.given, self.dropped))  # fmt: skip
        self.process.stdin.close()
        return Derived(self)

    def close(self) -> None:
        if not self.started:
            return
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        reading.end_process(self.process)
        self.drain.join(timeout=5)
        self.process.stdout.close()
        self.process.stderr.close()


class Derived:
    """The worker's derivations as they come: all of them in order (iterating), or those
    already here (:meth:`ready`, which never waits)."""

    def __init__(self, helper: Worker):
        self.helper = helper
        self.done = False

    def ready(self) -> Iterator[derive.Planned]:
        while not self.done and not self.helper.frames.empty():
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


def _drain(stream, frames: queue.Queue) -> None:
    """Puts each frame the worker writes on ``frames``; None at the end of its output."""
    try:
        while len(head := stream.read(FRAME_HEAD.size)) == FRAME_HEAD.size:
            (size,) = FRAME_HEAD.unpack(head)
            frame = stream.read(size)
            if len(frame) < size:
                break
            frames.put(frame)
    except (OSError, ValueError):  # closed by close() after a failure
        pass
    frames.put(None)


def write_frame(descriptor: int, item) -> None:
    """Writes ``item`` as one framed pickle (its length, then :func:`write_pickle`)."""
    data = pickle_fast(item)
    write_all(descriptor, FRAME_HEAD.pack(len(data)))
    write_all(descriptor, data)


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

    def read(self, path: str, context: ReadContext, every: int, out) -> None:
        try:
            stream = Path(path).open("rb")
        except OSError as error:
            write_frame(out, error.strerror or str(error))
            return
        share, line_at, kept = in_worker_share, queries.ROW_LINE, self.checked
        known = Known(self.db, sees_run=False, run_id=context.run_id)
        with stream:
            blocks = events.LineBlocks(stream, INSERT_BATCH_SIZE, context.name)
            for index, read in enumerate(blocks):
                if index % every == 0:
                    continue  # the run checks this one
                block = context.first_block + index
                rows, rejected, checked = check_batch(read.lines, context, block, True,
                                                      read.long_lines)  # fmt: skip
                theirs = []  # the run's share: the events it keeps (as plain tuples)
                for row, event in zip(rows, checked, strict=True):
                    if share(event.customer):
                        kept.append((block, row[line_at], event))
                        theirs.append(None)
                    else:
                        theirs.append(tuple(event))
                write_frame(out, (block, rows, rejected, known.earlier(rows), theirs))

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
                write_frame(out, planned)
                planned = []
        write_frame(out, planned)
        write_frame(out, None)


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
    out = sys.stdout.fileno()
    serving = _Serving(store_db.open_read_only(Path(books_dir)))
    try:
        for command in _commands(sys.stdin.buffer):
            if command[0] == "read":
                serving.read(*command[1:], out)
            else:
                serving.derive(*command[1:], out)
    except BrokenPipeError:
        return 1  # the run stopped reading (it failed or was interrupted)
    return 0
