"""Reading: an input, read once, into checked batches, and checked batches into new events.

Every input is read once, by this process (:class:`InputFile`): a thread reads it ahead of the
checks in chunks of :data:`~ledger_engine.core.events.READ_CHUNK` bytes, hashes every byte as
it comes, and hands each chunk on, so a pipe, a FIFO, ``-``, ``/dev/stdin`` and a shell's
process substitution post exactly as a file does.  What the input was when opened (its
device, inode, size and modification time) is checked at its end and again before the run
commits: an input replaced, truncated, appended to or written while it was read fails the
run (:class:`~ledger_engine.core.errors.InputChanged`).

:func:`read_batches` splits what is read into batches of lines; each :class:`Batch` holds the
bytes of its lines (the input's next block, stored by ingest), the store rows of its
schema-valid events and the quarantine rows of the rest, and the last item is :class:`Done`
with the input's SHA-256.  :class:`Known` then tells a new event from a repeat (SPEC §2:
a duplicate, or an id conflict) and :meth:`Known.new_events` turns a batch into what ingest
stores (:class:`NewEvents`).  The checks run in this process, in the run's worker process
(:mod:`ledger_engine.worker`), or, the checks only, for an input too large to keep in
memory, in a reader process (:func:`batches_of_process`): the schema checks then run on
another core while this one writes the store.  A child process never opens the input: this
process hands it the chunks it read (:class:`Child`), the child cuts them into the same
blocks and sends back, with its checks, the hash of what it was handed, which must be the
run's.  So the books do not depend on where the checks ran.  Every wait on a child is
bounded: a child sends a heartbeat every :data:`HEARTBEAT_SECONDS`, and one that sends
nothing for :data:`CHILD_SILENT_SECONDS_MAX` has stopped answering (an error, the run ends).

``LEDGER_ENGINE_READER`` chooses: ``process`` (another process for every input), ``inline``
(never), unset (another process for files of :data:`PROCESS_MIN_BYTES` or more, given 2
cores).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import io
import json
import operator
import os
import pickle
import queue
import select
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple, NoReturn
from zoneinfo import ZoneInfo

from ledger_engine.core import dates, events
from ledger_engine.core.errors import InputChanged, InputFileError, InputTooLarge, LedgerError
from ledger_engine.core.model import ID_CONFLICT, Event, Line, Rejection
from ledger_engine.store import queries
from ledger_engine.store.queries import INSERT_BATCH_SIZE

STDIN_NAME = "<stdin>"
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
# Chunks read ahead of the checks: enough for a child to stay ahead of this process (a chunk
# is about five batches of a night's lines), few enough to bound memory (12 MiB).
READ_AHEAD_CHUNKS = 8
# A child process (the reader, the worker) sends an empty frame this often, from a thread of
# its own, while it lives; one that sends nothing, not even that, for CHILD_SILENT_SECONDS_MAX
# has stopped answering (stopped by a signal, or hung): the run fails instead of waiting.
HEARTBEAT_SECONDS = 0.5
CHILD_SILENT_SECONDS_MAX = 10.0
POLL_SECONDS = 0.1  # how often a bounded wait looks at the clock
FRAME_HEAD = struct.Struct(">Q")  # the length of a frame (an empty frame: a heartbeat)
FRAMES_AHEAD_MAX = 8  # frames taken off a child's pipe before this process reads them
CHILD_ERRORS_KEPT = 4096  # bytes of a child's standard error kept, to say why it stopped


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
    reader: ReadAhead, context: ReadContext, keep: bool = False
) -> Iterator[Batch | Done]:
    """Checks an input as it is read, in batches (with their events, if ``keep``); the last
    item is :class:`Done`."""
    blocks = events.LineBlocks(reader, INSERT_BATCH_SIZE, context.name)
    for block, read in enumerate(blocks, context.first_block):
        valid, rejected, checked = check_batch(read.lines, context, block, keep, read.long_lines)
        yield Batch(block, read.first_line, read.data, len(read.lines), valid, rejected, checked)
    yield Done(reader.sha256)


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


# ------------------------------------------------------------------ an input, read once


class InputIdentity(NamedTuple):
    """What an input was when it was opened: the file a path named (or standard input)."""

    name: str
    path: str | None  # None: standard input, ``descriptor``
    descriptor: int | None
    device: int
    inode: int
    size: int
    mtime_ns: int
    regular: bool


def identity_change(identity: InputIdentity) -> str | None:
    """How the input is no longer what was opened (None: it is the same)."""
    try:
        now = os.stat(identity.path) if identity.path else os.fstat(identity.descriptor)
    except FileNotFoundError:
        return "it was removed"
    except OSError as error:
        return f"it cannot be looked at again: {error.strerror or error}"
    if (now.st_dev, now.st_ino) != (identity.device, identity.inode):
        return "another file was put in its place"
    if identity.regular and now.st_size != identity.size:
        return f"it held {identity.size:,} bytes when opened, {now.st_size:,} now"
    if identity.regular and now.st_mtime_ns != identity.mtime_ns:
        return "it was written to"
    return None


def check_unchanged(identities) -> None:
    """Raises InputChanged if an input is no longer what was read (before a commit)."""
    for identity in identities:
        change = identity_change(identity)
        if change:
            raise InputChanged(f"{identity.name} changed while it was read ({change}); "
                               "nothing was posted")  # fmt: skip


def _descriptor(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None  # a stream without one (a test's stand-in for standard input)


def input_size(path: str) -> int | None:
    """The bytes a regular input holds from where it will be read (None: not a regular file,
    or it cannot be looked at: a missing file is reported when it is read)."""
    try:
        if path == "-":
            descriptor = _descriptor(sys.stdin.buffer)
            if descriptor is None:
                return None
            found, start = os.fstat(descriptor), os.lseek(descriptor, 0, os.SEEK_CUR)
        else:
            found, start = os.stat(path), 0
    except (OSError, AttributeError):
        return None
    return found.st_size - start if stat.S_ISREG(found.st_mode) else None


class InputFile:
    """One input of a run (a path, or ``-`` for standard input), opened once.

    Its bytes are read once, in chunks, hashed as they come (:meth:`read_chunk`), by the read
    that checks them (:meth:`read_ahead`).  For a regular file, :meth:`first_look` reads the
    first chunk first: if a known input has its size and that chunk, :meth:`hash_all` reads
    the rest for its SHA-256 only (the no-op re-post of a known file, which must not parse);
    should it not be known after all, :meth:`rewind` has it read again, and that read must
    hash to the same.

    Raises:
        OSError: the input cannot be opened.
        InputTooLarge: a regular file larger than the limit of one input.
    """

    def __init__(self, path: str):
        self.path = path
        self.name = STDIN_NAME if path == "-" else path
        self.stream: BinaryIO | None = None
        self.reader: ReadAhead | None = None
        if path == "-":  # read, never closed, here
            self.stream = getattr(sys.stdin, "buffer", None)
            if self.stream is None:
                raise OSError(errno.EBADF, "standard input is closed")
            self.descriptor = _descriptor(self.stream)
        else:
            self.descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._opened()
        except BaseException:
            self.close()
            raise
        self.digest = hashlib.sha256()
        self.bytes_read = 0
        self.head_sha256 = ""  # of the first chunk
        self.head: bytes | None = None  # the first chunk, read by first_look, not handed on
        self.expected_sha256: str | None = None  # what a second read must hash to

    def _opened(self) -> None:
        self.identity = None
        self.regular, self.start, self.size = False, 0, None
        if self.descriptor is None:
            return
        found = os.fstat(self.descriptor)
        if stat.S_ISDIR(found.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory")
        self.regular = stat.S_ISREG(found.st_mode)
        if self.regular:
            self.start = os.lseek(self.descriptor, 0, os.SEEK_CUR)
            self.size = found.st_size - self.start
            if self.size > events.INPUT_BYTES_MAX:
                raise self._too_large()
        self.identity = InputIdentity(
            self.name, None if self.path == "-" else self.path, self.descriptor,
            found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, self.regular,
        )  # fmt: skip

    def _too_large(self) -> InputTooLarge:
        return InputTooLarge(f"{self.name} holds more than {events.INPUT_BYTES_MAX:,} bytes "
                             "(the limit of one input); nothing was posted")  # fmt: skip

    def _changed(self, how: str) -> InputChanged:
        return InputChanged(f"{self.name} changed while it was read ({how}); nothing was posted")

    def _fill(self, size: int) -> bytes:
        """Up to ``size`` bytes, fewer only at the end (every chunk is whole: the blocks
        then do not depend on how the bytes arrived)."""
        read = self.stream.read if self.descriptor is None else self._read_descriptor
        parts = []
        while size:
            data = read(size)
            if not data:
                break
            parts.append(data)
            size -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_descriptor(self, size: int) -> bytes:
        return os.read(self.descriptor, size)

    def read_chunk(self) -> bytes:
        """The next chunk, hashed and counted (empty at the end, once the input proved to
        be what was opened).

        Raises:
            InputChanged: it changed while it was read.
            InputTooLarge: it holds more than the limit of one input.
        """
        chunk = self._fill(events.READ_CHUNK)
        if not chunk:
            self._check_end()
            return chunk
        self.digest.update(chunk)  # hashlib lets go of the GIL: a thread's work
        if not self.bytes_read:
            self.head_sha256 = hashlib.sha256(chunk).hexdigest()
        self.bytes_read += len(chunk)
        if self.bytes_read > events.INPUT_BYTES_MAX:
            raise self._too_large()
        if self.regular and self.bytes_read > self.size:
            raise self._changed(f"it grew past the {self.size:,} bytes it held when opened")
        return chunk

    def _check_end(self) -> None:
        if self.regular and self.bytes_read != self.size:
            held = f"{self.size:,} bytes when opened, {self.bytes_read:,} read"
            raise self._changed(f"it held {held}")
        change = self.identity and identity_change(self.identity)
        if change:
            raise self._changed(change)
        if self.expected_sha256 and self.digest.hexdigest() != self.expected_sha256:
            raise self._changed("its bytes differ from those read a moment before")

    def first_look(self) -> tuple[int, str] | None:
        """``(size, SHA-256 of the first chunk)`` of a regular file, reading that chunk now
        (it is handed on by the read that follows); None for any other input."""
        if not self.regular:
            return None
        self.head = self.read_chunk()
        return self.size, self.head_sha256

    def hash_all(self) -> str:
        """The SHA-256 of the whole input, reading what is left without checking it."""
        self.head = None
        while self.read_chunk():
            pass
        return self.digest.hexdigest()

    def rewind(self) -> None:
        """Makes the next read start again at the input's start (a regular file, whole
        read once): that read must hash to what this one did."""
        self.expected_sha256 = self.digest.hexdigest()
        os.lseek(self.descriptor, self.start, os.SEEK_SET)
        self.digest, self.bytes_read, self.head = hashlib.sha256(), 0, None

    def read_ahead(self, tee: Callable[[bytes], None] | None = None) -> ReadAhead:
        """Starts the read whose bytes are checked (``tee``: where each chunk also goes,
        first: the run's worker or reader process; an empty chunk at the end)."""
        head, self.head = self.head, None
        self.reader = ReadAhead(self, head, tee)
        return self.reader

    def close(self) -> None:
        if self.reader is not None and not self.reader.close():
            return  # its thread still waits in a read: the descriptor stays its own
        if self.stream is None and self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _End(NamedTuple):
    sha256: str


class ReadAhead:
    """A thread reading an input ahead of the checks (at most :data:`READ_AHEAD_CHUNKS`
    chunks ahead): the stream the checks read (:meth:`read`), every chunk a whole one."""

    def __init__(self, source: InputFile, head: bytes | None, tee):
        self.source = source
        self.tee = tee
        self.chunks: queue.Queue = queue.Queue(READ_AHEAD_CHUNKS)
        self.stopping = False
        self.sha256 = ""  # once read to the end
        self.thread = threading.Thread(target=self._run, args=(head,), daemon=True,
                                       name="read-ahead")  # fmt: skip
        self.thread.start()

    def _run(self, head: bytes | None) -> None:
        try:
            chunk = head if head is not None else self.source.read_chunk()
            while chunk:
                if self.tee is not None:
                    self.tee(chunk)
                self._put(chunk)
                if self.stopping:
                    return
                chunk = self.source.read_chunk()
            if self.tee is not None:
                self.tee(b"")
            self._put(_End(self.source.digest.hexdigest()))
        except BaseException as error:  # noqa: BLE001 - handed to the reading thread
            self._put(error)

    def _put(self, item) -> None:
        while not self.stopping:
            with contextlib.suppress(queue.Full):
                self.chunks.put(item, timeout=POLL_SECONDS)
                return

    def read(self, size: int = -1) -> bytes:
        """The next chunk; empty at the end (then :attr:`sha256` is the input's)."""
        if self.sha256:
            return b""
        while True:
            with contextlib.suppress(queue.Empty):
                item = self.chunks.get(timeout=POLL_SECONDS)
                break
            if not self.thread.is_alive() and self.chunks.empty():
                raise InputFileError(f"the read of {self.source.name} stopped")
        if isinstance(item, bytes):
            return item
        if isinstance(item, _End):
            self.sha256 = item.sha256
            return b""
        raise item

    def close(self) -> bool:
        """Stops the thread; False if it still waits for the input's next bytes (a pipe
        whose writer neither writes nor closes: it is left to end with the process)."""
        self.stopping = True
        self.thread.join(timeout=1)
        return not self.thread.is_alive()


# ----------------------------------------------------------- the pipes to a child process


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


def _widen(descriptor: int) -> None:
    """Asks Linux for a 1 MiB pipe (F_SETPIPE_SZ) instead of 64 KiB: fewer wake-ups."""
    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(descriptor, 1031, 1024 * 1024)


class Child:
    """A child process of the run (the reader process, the worker) and the pipes to it.

    In: pickled commands, and the bytes of an input as frames (:meth:`send_data`), each write
    bounded in time.  Out: framed pickles, which a thread takes off the pipe as they come
    (so the child never waits for this process, at most :data:`FRAMES_AHEAD_MAX` ahead), and
    the child's heartbeats.  Every wait on the child ends: when it stopped (``error``, with
    the last line it wrote to its standard error) or stopped answering, silent for
    :data:`CHILD_SILENT_SECONDS_MAX` (``error`` too).
    """

    def __init__(self, command: list[str], name: str, error: type[LedgerError]):
        self.name = name
        self.error = error
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.input = self.process.stdin.fileno()
        os.set_blocking(self.input, False)  # writes wait in select, by the clock
        _widen(self.input)
        self.frames: queue.Queue[bytes | None] = queue.Queue(FRAMES_AHEAD_MAX)
        self.waiting_since: float | None = None  # since when the drain waits for a frame
        self.closing = False
        self.unanswered = False
        self.errors: collections.deque[bytes] = collections.deque()
        self.threads = [
            threading.Thread(target=self._drain, daemon=True, name="child-output"),
            threading.Thread(target=self._keep_errors, daemon=True, name="child-errors"),
        ]
        for thread in self.threads:
            thread.start()

    def silence(self) -> float:
        """How long the child has sent nothing while this process waited for it."""
        since = self.waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def _drain(self) -> None:
        """Puts each frame the child writes on ``frames`` (a heartbeat only ends a wait);
        None at the end of its output."""
        stream = self.process.stdout
        with contextlib.suppress(OSError, ValueError):  # closed by close() after a failure
            while True:
                self.waiting_since = time.monotonic()
                head = stream.read(FRAME_HEAD.size)
                if len(head) < FRAME_HEAD.size:
                    break
                (size,) = FRAME_HEAD.unpack(head)
                frame = stream.read(size) if size else b""
                if len(frame) < size:
                    break
                self.waiting_since = None
                if size:
                    self._put(frame)
        self.waiting_since = None
        self._put(None)

    def _put(self, frame: bytes | None) -> None:
        while not self.closing:
            with contextlib.suppress(queue.Full):
                self.frames.put(frame, timeout=POLL_SECONDS)
                return

    def _keep_errors(self) -> None:
        """Drains the child's standard error (so it never waits on it), keeping its end."""
        with contextlib.suppress(OSError, ValueError):
            while data := self.process.stderr.read1(CHILD_ERRORS_KEPT):
                self.errors.append(data)
                while sum(map(len, self.errors)) > 2 * CHILD_ERRORS_KEPT:
                    self.errors.popleft()

    def _check(self) -> None:
        if self.silence() > CHILD_SILENT_SECONDS_MAX:
            self.unanswered = True
            raise self.error(f"{self.name} stopped answering: nothing from it for "
                             f"{CHILD_SILENT_SECONDS_MAX:g} s")  # fmt: skip
        if self.closing:
            raise self.error(f"{self.name} was closed")

    def _write(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            try:
                view = view[os.write(self.input, view) :]
            except BlockingIOError:
                select.select([], [self.input], [], POLL_SECONDS)
                self._check()
            except (BrokenPipeError, ValueError, OSError) as error:
                if self.closing:
                    raise self.error(f"{self.name} was closed") from error
                self.stopped()

    def send(self, item) -> None:
        """Sends a command (a pickle)."""
        self._write(pickle_fast(item))

    def send_data(self, data: bytes) -> None:
        """Sends a chunk of an input (an empty one: its end)."""
        self._write(FRAME_HEAD.pack(len(data)))
        if data:
            self._write(data)

    def end_input(self) -> None:
        """Closes the child's input: it ends when it has done what it was sent."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    def ready(self) -> bool:
        """Whether a frame is here (receiving it does not wait)."""
        return not self.frames.empty()

    def receive(self):
        """The child's next frame, unpickled; waits while the child answers."""
        while True:
            try:
                frame = self.frames.get(timeout=POLL_SECONDS)
            except queue.Empty:
                self._check()
                continue
            if frame is None:
                self.stopped()
            return pickle.loads(frame)

    def stopped(self) -> NoReturn:
        end_process(self.process)
        for thread in self.threads[1:]:
            thread.join(timeout=5)
        lines = b"".join(self.errors).decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit code {self.process.returncode}"
        raise self.error(f"{self.name} stopped: {why}") from None

    def close(self) -> None:
        """Ends the child: at once if it stopped answering, else once it has ended its work
        (a few seconds at most)."""
        self.closing = True
        self.end_input()
        if self.unanswered:
            self.process.kill()
        end_process(self.process)
        for thread in self.threads:
            thread.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                stream.close()


class FrameOutput:
    """A child's output: framed pickles, and a heartbeat (an empty frame) from a thread every
    :data:`HEARTBEAT_SECONDS`, so that the run tells a child at work from a stopped one."""

    def __init__(self, descriptor: int):
        self.descriptor = descriptor
        self.lock = threading.Lock()  # a frame is written whole
        threading.Thread(target=self._beat, daemon=True, name="heartbeat").start()

    def write(self, item) -> None:
        data = pickle_fast(item)
        with self.lock:
            write_all(self.descriptor, FRAME_HEAD.pack(len(data)))
            write_all(self.descriptor, data)

    def _beat(self) -> None:
        empty = FRAME_HEAD.pack(0)
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            try:
                with self.lock:
                    write_all(self.descriptor, empty)
            except OSError:
                return


class FrameInput:
    """An input's bytes as the run hands them to a child: frames until an empty one, hashed
    (the child reports the hash; it must be the run's)."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        if self.ended:
            return b""
        head = self.stream.read(FRAME_HEAD.size)
        data = b""
        if len(head) == FRAME_HEAD.size:
            (length,) = FRAME_HEAD.unpack(head)
            if not length:
                self.ended = True
                return b""
            data = self.stream.read(length)
        if not data or len(data) < length:
            raise InputFileError("the run's process stopped sending the input")
        self.digest.update(data)
        return data


def end_frame(source: FrameInput, blocks: int) -> tuple:
    """What a child sends at the end of an input: the hash of what it was handed, and how
    many blocks it cut it into."""
    return ("end", source.digest.hexdigest(), blocks)


def expect_block(child: Child, item, block: int):
    """The checks of ``block`` from a child's frame (an error it sent is raised)."""
    if isinstance(item, str):
        raise InputFileError(item)
    if not isinstance(item, tuple) or item[0] != block:
        raise child.error(f"{child.name} cut the input otherwise: block {block} expected, "
                          f"{item[0]!r} came")  # fmt: skip
    return item


def expect_end(child: Child, reader: ReadAhead, blocks: int) -> None:
    """The child read what this process read: the same bytes (hash) in the same blocks."""
    item = child.receive()
    if isinstance(item, str):
        raise InputFileError(item)
    if item != ("end", reader.sha256, blocks):
        raise child.error(f"{child.name} checked other bytes of {reader.source.name} than "
                          f"this process read: {item!r} after {blocks} blocks")  # fmt: skip


# ------------------------------------------------------------------- the reader process


def _spec(context: ReadContext) -> str:
    return json.dumps([context.name, context.currency, context.zone.key, context.run_id,
                       context.first_block])  # fmt: skip


def _main(argv: list[str]) -> int:
    """The reader process (:data:`READER_COMMAND` with the context as JSON): checks every
    block of the input it is handed on standard input and writes each block's rows, then
    :func:`end_frame`, to standard output."""
    name, currency, zone, run_id, first_block = json.loads(argv[0])
    context = ReadContext(name, currency, dates.load_zone(zone), run_id, first_block)
    out = FrameOutput(sys.stdout.fileno())
    source = FrameInput(sys.stdin.buffer)
    count = 0
    try:
        for count, read in enumerate(events.LineBlocks(source, INSERT_BATCH_SIZE, name), 1):
            block = first_block + count - 1
            rows, rejected, _ = check_batch(read.lines, context, block, False, read.long_lines)
            out.write((block, rows, rejected))
        out.write(end_frame(source, count))
    except BrokenPipeError:
        return 1  # the run stopped reading (it failed or was interrupted)
    except LedgerError as error:
        out.write(str(error))
        return 1
    return 0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_process(path: str) -> bool:
    """Whether to check ``path`` in another process (see the module docstring)."""
    choice = os.environ.get(READER_VARIABLE, "")
    if choice in ("process", "inline"):
        return choice == "process"
    return _cores() > 1 and (input_size(path) or 0) >= PROCESS_MIN_BYTES


def batches_of_process(source: InputFile, context: ReadContext) -> Iterator[Batch | Done]:
    """The batches of an input whose lines a reader process checks (the same as inline),
    while this process reads the input, hands the reader each chunk, and stores.

    Raises:
        InputFileError: the reader process stopped, or stopped answering.
    """
    command = [sys.executable, "-c", READER_COMMAND, _spec(context)]
    child = Child(command, f"the reader process of {context.name}", InputFileError)
    try:
        reader = source.read_ahead(child.send_data)
        count = 0
        for count, read in enumerate(events.LineBlocks(reader, INSERT_BATCH_SIZE,
                                                       context.name), 1):  # fmt: skip
            block = context.first_block + count - 1
            _, rows, rejected = expect_block(child, child.receive(), block)
            yield Batch(block, read.first_line, read.data, len(read.lines), rows, rejected)
        expect_end(child, reader, count)
        yield Done(reader.sha256)
    finally:
        source.close()  # its read first: it may be sending to the child
        child.close()


def end_process(process: subprocess.Popen) -> None:
    """Waits a few seconds for a child process whose input is closed to end, then kills it."""
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
