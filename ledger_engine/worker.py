"""The run's worker process: both cores for one night.

A run whose inputs are large enough (:func:`use_worker`) starts one worker process, a fresh
interpreter that reads the store through a read-only connection of its own and never writes
it.  It reads every input of the run in turn: checks the lines, tells new events from
repeats (:class:`~ledger_engine.reading.Known`, over what earlier runs committed plus this
run's ids) and sends each batch of new events to this process, which stores it.  Meanwhile
it keeps the new events of its *share* of the customers (:func:`in_worker_share`, a fixed
split by the customer id) and sends this process the events of the others.  Then both derive
at once, each its own share, each from the events it holds and the store (the store's rows
of earlier runs; the worker cannot see this run's uncommitted rows, nor needs them).  The
worker plans the writes of its derivations (:class:`~ledger_engine.derive.Planned`) and
sends them back; this process applies them in its one transaction, so the commit protocol
is the same as without a worker, and the books come out byte for byte the same
(tests/test_reader_process.py, tests/test_worker.py).

The protocol is pickles on the worker's standard input (commands) and output (results).
The worker dies with this process (``PR_SET_PDEATHSIG``), and ends at the end of its input.
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
import sqlite3
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
from ledger_engine.core.errors import LedgerError
from ledger_engine.core.model import Event
from ledger_engine.reading import (
    Done,
    Known,
    NewEvents,
    ReadContext,
    pickle_fast,
    read_batches,
    write_all,
    write_pickle,
)
from ledger_engine.store import db as store_db
from ledger_engine.store import queries

# The worker's share of the customers, in hundredths (measured: it derives about as fast as
# this process derives and saves its own, then this process saves the worker's).
WORKER_SHARE = 50
FRAME_HEAD = struct.Struct(">Q")  # the length of a frame of the worker's output
WORKER_COMMAND = (
    "import sys; from ledger_engine.worker import serve; sys.exit(serve(sys.argv[1]))"
)


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
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER_COMMAND, str(books_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.frames: queue.Queue[bytes | None] = queue.Queue()
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
        self.process.wait()
        error = self.process.stderr.read().decode(errors="replace").strip().splitlines()
        why = error[-1] if error else f"exit code {self.process.returncode}"
        raise WorkerError(f"the run's worker process stopped: {why}") from None

    def batches(self, path: str, context: ReadContext) -> Iterator[NewEvents | Done]:
        """The new events of an input, read, checked and deduped by the worker (which keeps
        those of its share; this process's share is made of the rows it stores)."""
        self._send(("read", path, context))
        while True:
            item = self._receive()
            if isinstance(item, str):  # the input could not be read
                raise OSError(item)
            if isinstance(item, Done):
                yield item
                return
            share = in_worker_share
            ours = [row for row in item.events if not share(row[queries.ROW_CUSTOMER])]
            yield item._replace(kept=queries.events_of_event_rows(ours))

    def derive(
        self, customers: list[str], earliest: dict, context: derive.RunContext
    ) -> Iterator[derive.Planned]:
        """Has the worker derive ``customers`` (of its share) from now on; they come back
        in order (meanwhile this process derives its own)."""
        self._send(("derive", customers, {c: earliest[c] for c in customers}, context))
        self.process.stdin.close()
        return self._derived()

    def _derived(self) -> Iterator[derive.Planned]:
        while True:
            planned = self._receive()
            if planned is None:
                return
            yield from planned

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.drain.join(timeout=5)
        self.process.stdout.close()
        self.process.stderr.close()


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


def _read_only_store(books_dir: str) -> sqlite_utils.Database:
    path = Path(books_dir) / store_db.STORE_NAME
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    return sqlite_utils.Database(connection)


class _Serving:
    """The worker's side: the events of its share, kept between the commands of a run."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self.known = Known(db, sees_run=False)
        self.memory: dict[str, list[Event]] = defaultdict(list)  # the share's new events

    def read(self, path: str, context: ReadContext, out) -> None:
        name, run_id = context.name, context.run_id
        try:
            stream = Path(path).open("rb")
        except OSError as error:
            write_frame(out, error.strerror or str(error))
            return
        with stream:
            for item in read_batches(stream, context, keep=True):
                if not isinstance(item, Done):
                    new = self.known.new_events(item, name, run_id, in_worker_share)
                    memory = self.memory
                    for event in new.kept:
                        memory[event.customer].append(event)
                    item = new._replace(kept=[])
                write_frame(out, item)

    def derive(self, customers: list[str], earliest: dict, context, out) -> None:
        planned = list(derive.derive_customers(self.db, customers, earliest, context, self.memory))
        for start in range(0, len(planned), 500):
            write_frame(out, planned[start : start + 500])
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
    serving = _Serving(_read_only_store(books_dir))
    try:
        for command in _commands(sys.stdin.buffer):
            if command[0] == "read":
                serving.read(*command[1:], out)
            else:
                serving.derive(*command[1:], out)
    except BrokenPipeError:
        return 1  # the run stopped reading (it failed or was interrupted)
    return 0
