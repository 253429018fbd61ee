"""Both cores: the schema checks of a large file run in a reader process while the main
process writes the store.  The books (journals, every stored row, the input blocks) come out
byte for byte as when every line is checked inline, hostile lines and conflicts included."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest
from builders import init_books, journal_bytes, read_store, sub, use
from test_hostile_input import HOSTILE_LINES

from ledger_engine import ingest, reading
from ledger_engine.core.dates import load_zone
from ledger_engine.core.errors import InputFileError
from ledger_engine.post import post
from ledger_engine.reading import READER_VARIABLE, InputFile, ReadContext

TABLES = ("events", "input_blocks", "input_files", "quarantine", "verdicts", "conversations",
          "transactions", "postings")  # fmt: skip
SAMPLE = Path(__file__).resolve().parents[1] / "sample_books" / "events"


def nights(tmp_path: Path) -> list[tuple[Path, str]]:
    """The sample nights, then a file of more than one batch with hostile lines, a
    duplicate and an id conflict."""
    lines = [json.dumps(sub("big", "2026-11-01T00:00:00Z", "boost", id="big-sub"))]
    lines += [json.dumps(use("big", f"2026-11-02T{i // 3600:02d}:{i // 60 % 60:02d}:"
                              f"{i % 60:02d}Z", f"c{i % 900}")) for i in range(11_000)]  # fmt: skip
    lines[7000:7000] = [line.decode("utf-8", "replace") for line in HOSTILE_LINES]
    lines.append(lines[5])  # a duplicate
    lines.append(json.dumps({**json.loads(lines[6]), "feature": "autopilot"}))  # a conflict
    big = tmp_path / "big.jsonl"
    big.write_bytes(("\r\n".join(lines) + "\n\n").encode())
    return [
        (SAMPLE / "2026-10-night.jsonl", "2026-10-31"),
        (SAMPLE / "2026-11-night.jsonl", "2026-11-30"),
        (big, "2026-11-30"),
        (SAMPLE / "2026-12-late.jsonl", "2026-12-31"),
    ]


def stored_rows(books: Path) -> dict[str, list]:
    with read_store(books) as db:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in TABLES}  # fmt: skip


def test_a_reader_process_gives_the_books_of_inline_checks(tmp_path, monkeypatch):
    books = {}
    for mode in ("inline", "process"):
        monkeypatch.setenv(READER_VARIABLE, mode)
        books[mode] = init_books(tmp_path / mode)
        for path, through in nights(tmp_path):
            post(books[mode], [str(path)], datetime.date.fromisoformat(through))
    assert journal_bytes(books["inline"]) == journal_bytes(books["process"])
    assert stored_rows(books["inline"]) == stored_rows(books["process"])


def test_auto_uses_a_process_only_for_a_large_file_on_more_than_one_core(tmp_path, monkeypatch):
    small = tmp_path / "small.jsonl"
    small.write_text("{}\n")
    monkeypatch.delenv(READER_VARIABLE, raising=False)
    assert not reading.use_process(str(small))
    monkeypatch.setattr(reading, "PROCESS_MIN_BYTES", 1)
    monkeypatch.setattr(reading.os, "sched_getaffinity", lambda pid: {0, 1})
    assert reading.use_process(str(small))
    monkeypatch.setattr(reading.os, "sched_getaffinity", lambda pid: {0})
    assert not reading.use_process(str(small))
    monkeypatch.setenv(READER_VARIABLE, "process")
    assert reading.use_process(str(small))


def test_an_input_that_cannot_be_read_is_a_clear_error(tmp_path):
    with pytest.raises(IsADirectoryError):
        InputFile(str(tmp_path))  # a folder, not a file
    books = init_books(tmp_path / "books")
    with pytest.raises(InputFileError, match="cannot read .*: Is a directory"):
        post(books, [str(tmp_path)], datetime.date(2026, 11, 30))


def test_the_reader_process_is_handed_the_bytes_and_gives_the_batches_of_inline_checks(tmp_path):
    """The reader process never opens the input: it checks the chunks this process read."""
    big, _ = nights(tmp_path)[2]
    context = ReadContext(str(big), "EUR", load_zone("UTC"), 1, 1)
    with InputFile(str(big)) as source:
        inline = list(reading.read_batches(source.read_ahead(), context))
    with InputFile(str(big)) as source:
        handed = list(reading.batches_of_process(source, context))
    assert handed == inline and len(inline) > 2


def test_an_input_too_large_for_memory_posts_through_the_reader_process(tmp_path, monkeypatch):
    """Past the memory bound (lowered here) an input is checked by the reader process and its
    events read back: the books are those of inline checks, every stored row too."""
    checked_by_process = []

    def counted(source, context):
        checked_by_process.append(context.name)
        return reading.batches_of_process(source, context)

    monkeypatch.setattr(reading, "MEMORY_INPUT_BYTES_MAX", 1000)  # too large for a worker
    monkeypatch.setattr(ingest, "MEMORY_INPUT_BYTES_MAX", 1000)
    monkeypatch.setattr(ingest, "batches_of_process", counted)
    books = {}
    for mode in ("inline", "process"):
        monkeypatch.setenv(READER_VARIABLE, mode)
        books[mode] = init_books(tmp_path / mode)
        for path, through in nights(tmp_path):
            post(books[mode], [str(path)], datetime.date.fromisoformat(through))
        assert len(checked_by_process) == (4 if mode == "process" else 0)
    assert journal_bytes(books["inline"]) == journal_bytes(books["process"])
    assert stored_rows(books["inline"]) == stored_rows(books["process"])


def test_a_reader_process_that_never_answers_is_an_error_within_seconds(tmp_path, monkeypatch):
    big, _ = nights(tmp_path)[2]
    monkeypatch.setattr(reading, "READER_COMMAND", "import sys; sys.stdin.buffer.read()")
    context = ReadContext(str(big), "EUR", load_zone("UTC"), 1, 1)
    started = time.monotonic()
    with InputFile(str(big)) as source, pytest.raises(InputFileError, match="stopped answering"):
        list(reading.batches_of_process(source, context))
    assert time.monotonic() - started < reading.CHILD_SILENT_SECONDS_MAX + 10
