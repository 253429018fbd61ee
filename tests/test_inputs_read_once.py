"""Inputs are read once (SPEC v3 §6, the issue "A night is never lost", items 1, 2, 4, 5).

Each input is hashed while it is read, so a pipe, a FIFO, ``-``, ``/dev/stdin`` and a shell's
process substitution post exactly what a file does, with the worker process too; an input that
changes while it is read (replaced, truncated, appended) fails the run with one ``Error:`` line
and nothing committed, never a hang, and so does a worker that stops answering; a line longer
than the line limit is quarantined without being held whole, and an endless input ends in a
clear error; the same bytes given twice, by any route, are one input.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from builders import init_books, journal_bytes, read_store, sub, use
from test_incremental import derived_rows

from ledger_engine import ingest, worker
from ledger_engine.books import files
from ledger_engine.core import events
from ledger_engine.core.errors import InputFileError, StoreSchemaMismatch
from ledger_engine.post import post
from ledger_engine.reading import READER_VARIABLE
from ledger_engine.reconcile import reconcile
from ledger_engine.store import queries

ENGINE = Path(sys.executable).with_name("ledger-engine")
SAMPLE = Path(__file__).resolve().parents[1] / "sample_books" / "events"
SEASON = (
    ("2026-10-night.jsonl", "2026-10-31"),
    ("2026-11-night.jsonl", "2026-11-30"),
    ("2026-12-late.jsonl", "2026-12-31"),
    ("2026-12-finance.jsonl", "2026-12-31"),
)
ROUTES = ("file", "stdin-file", "stdin-pipe", "dev-stdin", "fifo", "process-substitution")
RUN_SECONDS_MAX = 60  # a run that fails must end within this (the bound of the contract)
WORKER_SIZED = 4 * 1024 * 1024  # the worker starts for inputs of this size (2 cores)


# ------------------------------------------------------------------------------ helpers


def big_night(path: Path, customers: int = 700, per_customer: int = 44) -> Path:
    """A night of at least 4 MiB (worker-sized), with a duplicate, an id conflict and bad
    lines among the good ones."""
    lines = [json.dumps(sub(f"k{c}", "2026-11-01T00:00:00Z", "boost")) for c in range(customers)]
    lines += [json.dumps(use(f"k{c}", f"2026-11-02T{i % 24:02d}:{i % 60:02d}:00Z", f"v{i % 9}",
                             id=f"k{c}-{i}"))
              for i in range(per_customer) for c in range(customers)]  # fmt: skip
    lines[9000:9000] = ["{not json", '{"id": "x", "type": "nope"}', ""]
    lines.append(lines[customers + 5])
    lines.append(json.dumps({**json.loads(lines[customers + 6]), "feature": "autopilot"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def command(books: Path, source: str, through: str) -> list[str]:
    return [
        str(ENGINE),
        "post",
        str(books),
        source,
        "--through",
        through,
        "--allow-future",
        "--json",
    ]


def feed(path: Path, data: bytes) -> threading.Thread:
    """A thread that opens ``path`` (a FIFO) for writing and writes ``data`` into it."""

    def write():
        with contextlib.suppress(BrokenPipeError), path.open("wb") as fifo:
            fifo.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def post_by(route: str, books: Path, path: Path, through: str, env: dict):
    """Posts ``path`` to ``books`` through the real command line, by ``route``."""
    data = path.read_bytes()
    run = {"env": {**os.environ, **env}, "capture_output": True, "timeout": 300}
    if route == "file":
        return subprocess.run(command(books, str(path), through), **run)
    if route == "stdin-file":
        with path.open("rb") as stdin:
            return subprocess.run(command(books, "-", through), stdin=stdin, **run)
    if route == "stdin-pipe":
        return subprocess.run(command(books, "-", through), input=data, **run)
    if route == "dev-stdin":
        return subprocess.run(command(books, "/dev/stdin", through), input=data, **run)
    if route == "fifo":
        fifo = path.with_suffix(".fifo")
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()
        os.mkfifo(fifo)
        writer = feed(fifo, data)
        try:
            return subprocess.run(command(books, str(fifo), through), **run)
        finally:
            if writer.is_alive():  # nothing opened the FIFO: let the writer go
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            writer.join(timeout=10)
    assert route == "process-substitution"
    script = '"$0" post "$1" <(cat "$2") --through "$3" --allow-future --json'
    return subprocess.run(["bash", "-c", script, ENGINE, books, path, through], **run)


def stored_inputs(books: Path) -> dict[str, bytes]:
    """Each stored input's bytes, its blocks decompressed in order, by SHA-256."""
    found: dict[str, bytes] = {}
    with read_store(books) as db:
        for sha256, _, data in queries.input_blocks(db):
            found[sha256] = found.get(sha256, b"") + zlib.decompress(data)
    return found


def books_content(books: Path) -> dict:
    """Everything a route could change: every journal byte, the derived rows (the name an
    input was read under aside), the events, and the inputs' bytes and records."""
    rows = derived_rows(books)
    rows["quarantine"] = [row[:2] + row[3:] for row in rows["quarantine"]]  # no file name
    with read_store(books) as db:
        stored = db.execute("SELECT * FROM events ORDER BY id").fetchall()
        files = db.execute("SELECT sha256, lines, valid, rejected FROM input_files "
                           "ORDER BY sha256").fetchall()  # fmt: skip
    return {"journals": journal_bytes(books), "rows": rows, "events": stored,
            "inputs": stored_inputs(books), "input_files": files}  # fmt: skip


def store_dump(books: Path) -> list[str]:
    """The store's whole content, as SQL text (read-only: changes nothing)."""
    uri = (books / "state.sqlite").resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return list(db.iterdump())


def counts(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    summary = json.loads(result.stdout)
    summary.pop("run")
    return summary


def one_error_line(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    return lines[0]


# ------------------------------------------------------------ every route, the same books


@pytest.fixture(scope="module")
def season_by_file(tmp_path_factory):
    """The sample season posted file by file, with its JSON summaries."""
    scratch = tmp_path_factory.mktemp("season")
    books = init_books(scratch / "books")
    summaries = [counts(post_by("file", books, SAMPLE / name, through, {}))
                 for name, through in SEASON]  # fmt: skip
    return books_content(books), summaries


@pytest.mark.parametrize("route", ROUTES[1:])
def test_every_route_posts_the_season_a_file_posts(tmp_path, season_by_file, route):
    expected, summaries = season_by_file
    books = init_books(tmp_path / "books")
    for (name, through), summary in zip(SEASON, summaries, strict=True):
        copy = tmp_path / name
        copy.write_bytes((SAMPLE / name).read_bytes())
        assert counts(post_by(route, books, copy, through, {})) == summary, name
    assert books_content(books) == expected
    assert reconcile(books).ok


@pytest.fixture(scope="module")
def big_by_file(tmp_path_factory):
    """A worker-sized night posted from a file (the worker starts: 4 MiB on 2 cores)."""
    scratch = tmp_path_factory.mktemp("big")
    path = big_night(scratch / "night.jsonl")
    assert path.stat().st_size >= WORKER_SIZED
    books = init_books(scratch / "books")
    summary = counts(post_by("file", books, path, "2026-11-02", {}))
    return path, books_content(books), summary


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_with_the_worker_posts_what_a_file_posts(tmp_path, big_by_file, route):
    """``LEDGER_ENGINE_READER=process``: the worker (or the reader process) for every input,
    whatever it is."""
    path, expected, summary = big_by_file
    books = init_books(tmp_path / "books")
    copy = tmp_path / "night.jsonl"
    copy.write_bytes(path.read_bytes())
    result = post_by(route, books, copy, "2026-11-02", {READER_VARIABLE: "process"})
    assert counts(result) == summary
    assert books_content(books) == expected
    assert reconcile(books).ok


# ------------------------------------------------------ inputs that change while read


def input_descriptor(pid: int, path: Path) -> int | None:
    """The descriptor by which process ``pid`` holds ``path`` open, if it does."""
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    return int(fd)
    return None


def when_read_to(process: subprocess.Popen, path: Path, offset: int) -> bool:
    """Waits until ``process`` has read ``path`` up to ``offset`` bytes (its position in the
    file, from /proc); False if it ended first."""
    while process.poll() is None:
        fd = input_descriptor(process.pid, path)
        if fd is not None:
            with contextlib.suppress(OSError):
                info = Path(f"/proc/{process.pid}/fdinfo/{fd}").read_text()
                if int(info.split()[1]) >= offset:
                    return True
        time.sleep(0.001)
    return False


def padded_night(path: Path) -> Path:
    """A worker-sized night of long lines (an extra field): many bytes, few lines, so the
    run reads for a while but checks quickly."""
    note = "n" * 1200
    lines = [json.dumps(sub(f"p{c}", "2026-11-01T00:00:00Z", "pro")) for c in range(50)]
    lines += [json.dumps({**use(f"p{i % 50}", f"2026-11-02T{i % 24:02d}:00:00Z", f"w{i % 7}",
                                id=f"p-{i}"), "note": note})
              for i in range(30_000)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def change(path: Path, how: str, rng: random.Random) -> None:
    size = path.stat().st_size
    if how == "replaced":  # another file renamed over it
        other = path.with_name("other.jsonl")
        other.write_text(json.dumps(use("p1", "2026-11-02T05:00:00Z", "zz", id="intruder")) + "\n")
        os.replace(other, path)
    elif how == "truncated":
        os.truncate(path, rng.randrange(size // 4, size - 1))
    elif how == "appended":
        with path.open("ab") as stream:
            stream.write(json.dumps(use("p2", "2026-11-02T06:00:00Z", "zy", id="late")).encode()
                         + b"\n")  # fmt: skip
    else:
        assert how == "rewritten"  # same size, other bytes, in place
        with path.open("r+b") as stream:
            stream.seek(rng.randrange(size // 2, size - 100))
            stream.write(b" " * 50)


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("padded")
    path = padded_night(scratch / "night.jsonl")
    books = init_books(scratch / "books")
    counts(post_by("file", books, SAMPLE / "2026-10-night.jsonl", "2026-10-31", {}))
    counts(post_by("file", books, path, "2026-11-02", {READER_VARIABLE: "process"}))
    return path.read_bytes(), journal_bytes(books)


@pytest.mark.parametrize(("how", "seed"), [("replaced", 1), ("truncated", 2), ("appended", 3),
                                           ("rewritten", 4), ("truncated", 5)])  # fmt: skip
def test_an_input_changed_while_read_fails_the_run_and_commits_nothing(tmp_path, padded, how, seed):
    data, expected = padded
    rng = random.Random(seed)
    books = init_books(tmp_path / "books")
    counts(post_by("file", books, SAMPLE / "2026-10-night.jsonl", "2026-10-31", {}))
    journals, store = journal_bytes(books), store_dump(books)
    path = tmp_path / "night.jsonl"
    path.write_bytes(data)
    started = time.monotonic()
    process = subprocess.Popen(command(books, str(path), "2026-11-02"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, READER_VARIABLE: "process"})  # fmt: skip
    try:
        assert when_read_to(process, path, int(len(data) * rng.uniform(0.05, 0.6)))
        change(path, how, rng)
        out, err = process.communicate(timeout=RUN_SECONDS_MAX)
    finally:
        process.kill()
        process.wait()
    assert time.monotonic() - started < RUN_SECONDS_MAX
    assert process.returncode == 1, (out, err)
    assert "while it was read" in one_error_line(err)
    assert journal_bytes(books) == journals and store_dump(books) == store
    path.write_bytes(data)  # the intact input posts normally
    counts(post_by("file", books, path, "2026-11-02", {READER_VARIABLE: "process"}))
    assert journal_bytes(books) == expected
    assert reconcile(books).ok


def test_an_input_replaced_after_it_was_read_fails_before_the_commit(tmp_path, padded):
    """Replaced at the run's first write point: read whole, journals being written, the
    store not yet committed."""
    data, _ = padded
    books = init_books(tmp_path / "books")
    path = tmp_path / "night.jsonl"
    path.write_bytes(data)
    journals, store = journal_bytes(books), store_dump(books)
    replaced = []

    def replace_at_first_write_point(label):
        if not replaced:
            replaced.append(label)
            change(path, "replaced", random.Random(0))

    files.WRITE_POINT_HOOK = replace_at_first_write_point
    try:
        with pytest.raises(InputFileError, match="while it was read"):
            post(books, [str(path)], datetime.date(2026, 11, 2))
    finally:
        files.WRITE_POINT_HOOK = None
    assert replaced and journal_bytes(books) == journals and store_dump(books) == store


# ------------------------------------------------------- a worker that stops answering


def children(pid: int) -> list[int]:
    """The run's worker processes (not the short-lived helpers Python's start-up may run,
    such as ctypes' ldconfig, which would be gone before they could be stopped)."""
    found = subprocess.run(["pgrep", "-P", str(pid), "-f", "ledger_engine"],
                           capture_output=True, text=True)  # fmt: skip
    return [int(child) for child in found.stdout.split()]


def gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    return False


def test_a_stopped_worker_is_an_error_within_the_bound_and_the_lock_is_released(tmp_path):
    path = big_night(tmp_path / "night.jsonl")
    books = init_books(tmp_path / "books")
    journals, store = journal_bytes(books), store_dump(books)
    started = time.monotonic()
    process = subprocess.Popen(command(books, str(path), "2026-11-02"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, READER_VARIABLE: "process"})  # fmt: skip
    helpers: list[int] = []
    try:
        while not helpers:
            assert process.poll() is None and time.monotonic() - started < 30
            helpers = children(process.pid)
            time.sleep(0.005)
        os.kill(helpers[0], signal.SIGSTOP)
        out, err = process.communicate(timeout=RUN_SECONDS_MAX)
    finally:
        if process.poll() is None:  # it hangs: end it and its worker
            process.kill()
            for helper in helpers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(helper, signal.SIGKILL)
        process.wait()
    assert time.monotonic() - started < RUN_SECONDS_MAX
    assert process.returncode == 1
    assert "worker process stopped answering" in one_error_line(err)
    assert gone(helpers[0]), "the run left its stopped worker behind"
    assert journal_bytes(books) == journals and store_dump(books) == store
    assert counts(post_by("file", books, path, "2026-11-02", {}))["accepted"] > 0  # not locked


FAULTY_WORKER = """
import os, signal, sys
from ledger_engine import ingest, worker
from ledger_engine.core import events
fault = os.environ["LEDGER_ENGINE_TEST_WORKER_FAULT"]
if fault == "stops-when-deriving":
    def derive(*args):
        os.kill(os.getpid(), signal.SIGSTOP)
    worker._Serving.derive = derive
elif fault == "input-ends-early":
    blocks = events.LineBlocks.__iter__
    def fewer(self):
        for number, block in enumerate(blocks(self)):
            if number == 3:
                return
            yield block
    events.LineBlocks.__iter__ = fewer
else:
    assert fault == "never-sends"
    sys.stdin.buffer.read()
    sys.exit(0)
sys.exit(worker.serve(sys.argv[1]))
"""


@pytest.mark.parametrize("fault", ["stops-when-deriving", "input-ends-early", "never-sends"])
def test_a_worker_that_fails_to_answer_is_an_error_not_a_hang(tmp_path, monkeypatch, fault):
    """The real worker with a fault injected: it stops itself (SIGSTOP) when asked to
    derive; its input ends before the run's does; or it reads its input and never sends."""
    path = big_night(tmp_path / "night.jsonl")
    books = init_books(tmp_path / "books")
    monkeypatch.setattr(worker, "WORKER_COMMAND", FAULTY_WORKER)
    monkeypatch.setenv("LEDGER_ENGINE_TEST_WORKER_FAULT", fault)
    monkeypatch.setenv(READER_VARIABLE, "process")
    journals, store = journal_bytes(books), store_dump(books)
    result: list = []

    def run():
        try:
            result.append(post(books, [str(path)], datetime.date(2026, 11, 2)))
        except Exception as error:  # noqa: BLE001 - the outcome is examined below
            result.append(error)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(RUN_SECONDS_MAX)
    assert not thread.is_alive(), "the run hangs"
    assert time.monotonic() - started < RUN_SECONDS_MAX
    assert isinstance(result[0], worker.WorkerError), result
    assert journal_bytes(books) == journals and store_dump(books) == store
    monkeypatch.undo()
    assert post(books, [str(path)], datetime.date(2026, 11, 2)).accepted > 0  # not locked


# -------------------------------------------------------------- bounded memory, limits


def test_a_100_mb_line_is_quarantined_while_streaming_and_the_rest_is_posted(tmp_path):
    good = [sub("acme", "2026-11-01T08:00:00Z", "boost"), use("acme", "2026-11-02T10:00:00Z", "c1")]
    long_line = b'{"id": "huge", "pad": "' + b"x" * (100 * 1024 * 1024) + b'"}'
    data = b"".join([json.dumps(good[0]).encode(), b"\n", long_line, b"\n",
                     json.dumps(good[1]).encode(), b"\n"])  # fmt: skip
    path = tmp_path / "e.jsonl"
    path.write_bytes(data)
    books = init_books(tmp_path / "books")
    result = post(books, [str(path)], datetime.date(2026, 11, 30))
    assert (result.read, result.accepted, result.rejected) == (3, 2, {"malformed_json": 1})
    with read_store(books) as db:
        (row,) = [r for r in queries.rejections(db) if r["reason"] == "malformed_json"]
        blocks = [len(zlib.decompress(data)) for _, _, data in queries.input_blocks(db)]
    assert row["line"] == 2 and len(row["raw"].encode()) <= events.LINE_BYTES_MAX
    assert f"{len(long_line):,}" in row["detail"]  # its length is kept, not its bytes
    assert max(blocks) <= events.BLOCK_BYTES_MAX + events.READ_CHUNK
    assert stored_inputs(books) == {hashlib.sha256(data).hexdigest(): data}
    assert reconcile(books).ok


LIMITED_CLI = """
import sys
from ledger_engine.core import events
events.INPUT_BYTES_MAX = 64 * 1024 * 1024
events.INPUT_LINES_MAX = 100_000
from ledger_engine.cli import main
sys.exit(main())
"""


def limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("source", ["/dev/zero", "yes"])
def test_an_endless_input_is_a_clear_error_and_posts_nothing(tmp_path, source):
    """Run with smaller limits (64 MiB, 100,000 lines) to be quick; the limits' names are
    the contract's."""
    books = init_books(tmp_path / "books")
    journals, store = journal_bytes(books), store_dump(books)
    argv = [sys.executable, "-c", LIMITED_CLI, "post", str(books)]
    run = {"capture_output": True, "timeout": RUN_SECONDS_MAX, "preexec_fn": limited_memory}
    if source == "yes":
        producer = subprocess.Popen(["yes", "{}"], stdout=subprocess.PIPE)
        try:
            result = subprocess.run([*argv, "-"], stdin=producer.stdout, **run)
        finally:
            producer.kill()
            producer.wait()
        assert "100,000 lines" in one_error_line(result.stderr)
    else:
        result = subprocess.run([*argv, "-"], stdin=open(source, "rb"), **run)  # noqa: SIM115
        assert "67,108,864 bytes" in one_error_line(result.stderr)
    assert result.returncode == 1
    assert journal_bytes(books) == journals and store_dump(books) == store


# ------------------------------------------------------------- one input, one identity


def stdin_of(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def copies_stored(books: Path, sha256: str) -> int:
    """How many blocks hold the input ``sha256`` (one copy: its blocks, once)."""
    with read_store(books) as db:
        return db.execute("SELECT count(*) FROM input_blocks WHERE input = ?",
                          [sha256]).fetchone()[0]  # fmt: skip


def test_the_same_bytes_by_path_then_by_stdin_are_one_input(tmp_path, monkeypatch):
    path = big_night(tmp_path / "night.jsonl", customers=50, per_customer=120)
    data, sha256 = path.read_bytes(), hashlib.sha256(path.read_bytes()).hexdigest()
    books = init_books(tmp_path / "books")
    through = datetime.date(2026, 11, 2)
    post(books, [str(path)], through)
    blocks = copies_stored(books, sha256)
    again = post(books, [str(path)], through).as_json()  # the no-op re-post of a known file
    stdin_of(monkeypatch, data)
    piped = post(books, ["-"], through).as_json()
    stdin_of(monkeypatch, data)
    twice = post(books, ["-"], through).as_json()
    for summary in (again, piped, twice):
        summary.pop("run")
    assert piped == again == twice and again["duplicates"] > 0 and again["accepted"] == 0
    assert copies_stored(books, sha256) == blocks
    with read_store(books) as db:
        inputs = [json.loads(row[0]) for row in db.execute("SELECT inputs FROM runs")]
    repeats = [entry[0].get("already_ingested", False) for entry in inputs]
    assert repeats == [False, True, True, True]
    assert reconcile(books).ok


def test_the_same_bytes_twice_in_one_run_are_one_input(tmp_path, monkeypatch):
    path = big_night(tmp_path / "night.jsonl", customers=50, per_customer=120)
    data = path.read_bytes()
    books = init_books(tmp_path / "books")
    reference = init_books(tmp_path / "reference")
    once = post(reference, [str(path), str(path)], datetime.date(2026, 11, 2)).as_json()
    stdin_of(monkeypatch, data)
    mixed = post(books, [str(path), "-"], datetime.date(2026, 11, 2)).as_json()
    assert {**mixed, "run": 0} == {**once, "run": 0}
    assert stored_inputs(books) == stored_inputs(reference)
    assert copies_stored(books, hashlib.sha256(data).hexdigest()) == copies_stored(
        reference, hashlib.sha256(data).hexdigest()
    )
    assert reconcile(books).ok


def test_stdin_then_the_file_through_the_command_line_are_one_input(tmp_path):
    path = big_night(tmp_path / "night.jsonl", customers=50, per_customer=120)
    books = init_books(tmp_path / "books")
    first = counts(post_by("stdin-pipe", books, path, "2026-11-02", {}))
    by_path = counts(post_by("file", books, path, "2026-11-02", {}))
    by_stdin_file = counts(post_by("stdin-file", books, path, "2026-11-02", {}))
    assert by_path == by_stdin_file and first["accepted"] > 0
    assert (by_path["accepted"], by_path["transactions_written"]) == (0, 0)
    assert copies_stored(books, hashlib.sha256(path.read_bytes()).hexdigest()) > 0
    assert reconcile(books).ok


def test_a_file_like_a_known_one_up_to_its_end_is_read_and_posted(tmp_path):
    """The same size and the same first bytes as a known input, other bytes after: the first
    look says "maybe known", the whole hash says no; it is posted, read again."""
    head = [json.dumps(sub(f"h{c}", "2026-11-01T00:00:00Z", "boost")) for c in range(100)]
    head += [json.dumps(use(f"h{i % 100}", "2026-11-02T01:00:00Z", f"a{i:06d}", id=f"a{i:06d}"))
             for i in range(40_000)]  # fmt: skip
    first = "\n".join([*head, json.dumps(use("h1", "2026-11-02T02:00:00Z", "t1", id="tail-1"))])
    second = "\n".join([*head, json.dumps(use("h1", "2026-11-02T02:00:00Z", "t2", id="tail-2"))])
    assert len(first) == len(second) and len(first) > events.READ_CHUNK
    books = init_books(tmp_path / "books")
    (tmp_path / "a.jsonl").write_text(first)
    (tmp_path / "b.jsonl").write_text(second)
    post(books, [str(tmp_path / "a.jsonl")], datetime.date(2026, 11, 2))
    result = post(books, [str(tmp_path / "b.jsonl")], datetime.date(2026, 11, 2))
    assert (result.accepted, result.duplicates) == (1, 40_100)
    with read_store(books) as db:
        assert queries.event(db, "tail-2").conversation == "t2"
    assert reconcile(books).ok


def test_an_input_stored_twice_by_an_earlier_version_reconciles(tmp_path):
    """Before this version, the same bytes by path and by ``-`` were stored twice under one
    SHA-256: each copy is whole, and reconcile checks each."""
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(sub("acme", "2026-11-01T08:00:00Z", "boost")) + "\n")
    books = init_books(tmp_path / "books")
    post(books, [str(path)], datetime.date(2026, 11, 30))
    with contextlib.closing(sqlite3.connect(books / "state.sqlite")) as db, db:
        db.execute(
            "INSERT INTO input_blocks (block, input, file, first_line, data) "
            "SELECT block + 100, input, '<stdin>', first_line, data FROM input_blocks"
        )
    assert reconcile(books).ok
    with contextlib.closing(sqlite3.connect(books / "state.sqlite")) as db, db:
        db.execute("UPDATE input_blocks SET data = ? WHERE block > 100", [zlib.compress(b"{}")])
    assert [d.check for d in reconcile(books).differences] == ["inputs"]


def as_schema_4(books: Path) -> None:
    """The store as an engine of schema 4 left it: no size and first-chunk hash of inputs."""
    with contextlib.closing(sqlite3.connect(books / "state.sqlite")) as db, db:
        db.execute("ALTER TABLE input_files DROP COLUMN bytes")
        db.execute("ALTER TABLE input_files DROP COLUMN head")
        db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def test_books_of_schema_4_are_upgraded_by_the_next_post_and_never_by_a_reader(
    tmp_path, monkeypatch
):
    path = big_night(tmp_path / "night.jsonl", customers=50, per_customer=120)
    books = init_books(tmp_path / "books")
    through = datetime.date(2026, 11, 2)
    first = post(books, [str(path)], through)
    as_schema_4(books)
    store = store_dump(books)
    # A reader never upgrades (it may stand on a read-only copy): it says what to do.
    with pytest.raises(StoreSchemaMismatch, match="a post upgrades it"):
        reconcile(books)
    assert store_dump(books) == store
    again = post(books, [str(path)], through)  # read whole (no first look yet), a repeat
    assert (again.read, again.duplicates, again.accepted) == (first.read, first.accepted + 1, 0)
    with read_store(books) as db:
        assert queries.get_meta(db, "schema_version") == "5"
        assert db.execute("SELECT count(*) FROM input_files WHERE bytes IS NULL").fetchone() == (0,)
    monkeypatch.setattr(ingest, "_ingest_one", None)  # from now on found at the first look
    assert post(books, [str(path)], through).as_json() | {"run": 0} == again.as_json() | {"run": 0}
    assert reconcile(books).ok


def test_a_worker_whose_share_outgrows_its_memory_leaves_the_derivation_to_the_run(
    tmp_path, monkeypatch
):
    """A pipe with the worker forced has no size to decide by: past WORKER_EVENTS_MAX events
    of its share (lowered here) the worker derives nothing and the run derives every customer
    from the store; the books are those of one process."""
    path = big_night(tmp_path / "night.jsonl", customers=60, per_customer=50)
    reference = init_books(tmp_path / "reference")
    monkeypatch.setenv(READER_VARIABLE, "inline")
    expected = post(reference, [str(path)], datetime.date(2026, 11, 2)).as_json()
    books = init_books(tmp_path / "books")
    monkeypatch.setenv(READER_VARIABLE, "process")
    monkeypatch.setattr(worker, "WORKER_EVENTS_MAX", 100)
    derived_by_worker, start = [], worker.Worker._start
    monkeypatch.setattr(worker.Worker, "derive", lambda *args: derived_by_worker.append(1))
    monkeypatch.setattr(worker.Worker, "_start", lambda self: derived_by_worker.append(0) or
                        start(self))  # fmt: skip
    stdin_of(monkeypatch, path.read_bytes())
    assert post(books, ["-"], datetime.date(2026, 11, 2)).as_json() == expected
    assert derived_by_worker == [0]  # it read (checked most batches), and derived nothing
    assert books_content(books) == books_content(reference)
