"""Reading: an input stream into checked batches, in this process or in a reader process.

:func:`read_batches` reads an input in batches of lines; each :class:`Batch` holds the
bytes of its lines (the input's next block, stored by ingest), the store rows of its
schema-valid events and the quarantine rows of the rest, and the last item is :class:`Done`
with the input's SHA-256.  The same function runs inline or, for a large file on a machine
with more than one core, in a reader process (:func:`batches_of_file`): the schema checks
then run on another core while this one writes the store.  Both give the same batches, so
the books do not depend on where the checks ran.  The reader process touches no store and
no books; ingest's transaction and the crash protocol are the same either way.

``LEDGER_ENGINE_READER`` chooses: ``process`` (a reader process for every file), ``inline``
(never), unset (a process for files of :data:`PROCESS_MIN_BYTES` or more, given 2 cores).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple
from zoneinfo import ZoneInfo

from ledger_engine.core import dates, events
from ledger_engine.core.errors import InputFileError
from ledger_engine.store import queries
from ledger_engine.store.queries import INSERT_BATCH_SIZE

PROCESS_MIN_BYTES = 4 * 1024 * 1024  # below this a reader process costs more than it saves
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
    numbered: list[tuple[int, bytes]], context: ReadContext, block: int
) -> tuple[list[tuple], list[dict]]:
    """The schema checks of a batch of ``(line number, raw bytes)``: the events rows of the
    valid lines, the quarantine rows of the others."""
    valid, rejected = [], []
    check, row = events.check_line, queries.event_row
    name, currency, zone, run_id = context.name, context.currency, context.zone, context.run_id
    for number, raw in numbered:
        line = check(raw, name, number, currency, zone)
        if line.event is None:
            rejected.append(queries.quarantine_row(line, line.rejection, run_id))
        else:
            valid.append(row(line.event, line.content, block, number, run_id))
    return valid, rejected


def read_batches(stream: BinaryIO, context: ReadContext) -> Iterator[Batch | Done]:
    """Reads and checks an input in batches; the last item is :class:`Done`."""
    blocks = events.LineBlocks(stream, INSERT_BATCH_SIZE)
    for block, read in enumerate(blocks, context.first_block):
        valid, rejected = check_batch(read.lines, context, block)
        yield Batch(block, read.first_line, read.data, len(read.lines), valid, rejected)
    yield Done(blocks.sha256)


def _main(argv: list[str]) -> int:
    """The reader process (:data:`READER_COMMAND` with FILE and the context as JSON):
    writes every batch of FILE to standard output as a pickle, then Done."""
    path, spec = argv
    name, currency, zone, run_id, first_block = json.loads(spec)
    context = ReadContext(name, currency, dates.load_zone(zone), run_id, first_block)
    out = sys.stdout.buffer
    try:
        with Path(path).open("rb") as stream:
            for item in read_batches(stream, context):
                pickle.dump(item, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
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
                process.wait()
                error = process.stderr.read().decode(errors="replace").strip().splitlines()
                why = error[-1] if error else f"exit code {process.returncode}"
                raise InputFileError(f"the reader process of {path} stopped: {why}") from None
            yield item
            if isinstance(item, Done):
                return
    finally:
        process.stdout.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()
