"""The lean store: each input file is kept once, compressed in blocks of whole lines, and is
its bytes exactly; events keep a reference to their line, not a copy.  The raw line of every
event stays retrievable (rejections, trace), reconcile checks the blocks against the input
files' SHA-256, and a store of schema 3 is upgraded in place with every raw line kept."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import re
import shutil
import sqlite3
import sys
import zlib
from pathlib import Path

import pytest
from builders import Poster, init_books, journal_bytes, read_store, sub, use

from ledger_engine import ingest
from ledger_engine.post import post
from ledger_engine.reconcile import reconcile
from ledger_engine.store import queries
from ledger_engine.store.db import SCHEMA_VERSION, open_store

FIXTURES = Path(__file__).parent / "fixtures"
THROUGH = datetime.date(2026, 11, 30)


def stored_input(books: Path, sha256: str) -> bytes:
    with read_store(books) as db:
        blocks = [data for input_, _, data in queries.input_blocks(db) if input_ == sha256]
    return b"".join(map(zlib.decompress, blocks))


def awkward_file(path: Path) -> bytes:
    """A BOM, CRLF ends, blank lines, a bad line, non-ASCII text, no final line end."""
    lines = [
        json.dumps(sub("acme", "2026-11-01T08:00:00Z", "boost")),
        "",
        json.dumps({**use("acme", "2026-11-02T10:00:00Z", "c1"), "note": "Grüße"}),
        "{not json",
        "   ",
        json.dumps(use("acme", "2026-11-03T10:00:00Z", "c2", "autopilot")),
    ]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8")
    path.write_bytes(data)
    return data


def test_an_input_file_is_stored_once_byte_for_byte(tmp_path):
    books = init_books(tmp_path / "books")
    data = awkward_file(tmp_path / "e.jsonl")
    post(books, [str(tmp_path / "e.jsonl")], THROUGH)
    assert stored_input(books, hashlib.sha256(data).hexdigest()) == data
    with read_store(books) as db:
        event = queries.raw_event(db, "use-acme-2026-11-02T10:00:00Z-c1-suggested_reply")
        first = queries.raw_event(db, "sub-acme-2026-11-01T08:00:00Z")
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    assert event.raw == data.split(b"\r\n")[2].decode("utf-8") and event.line == 3
    assert first.raw == data[3:].split(b"\r\n")[0].decode() and first.file.endswith("e.jsonl")
    assert "raw" not in columns  # the line is kept once, in the input's blocks
    assert reconcile(books).ok


def test_blocks_of_a_large_file_and_of_stdin(tmp_path, monkeypatch):
    books = init_books(tmp_path / "books")
    events = [sub("big", "2026-11-01T00:00:00Z", "pro")]
    events += [use("big", f"2026-11-02T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                   f"c{i}") for i in range(12_000)]  # fmt: skip
    data = "".join(json.dumps(e) + "\n" for e in events).encode()
    (tmp_path / "big.jsonl").write_bytes(data)
    post(books, [str(tmp_path / "big.jsonl")], THROUGH)
    assert stored_input(books, hashlib.sha256(data).hexdigest()) == data
    with read_store(books) as db:
        assert db.execute("SELECT count(*) FROM input_blocks").fetchone()[0] == 3
        last = queries.raw_event(db, "use-big-2026-11-02T03:19:59Z-c11999-suggested_reply")
    assert last.raw == json.dumps(events[-1]) and last.line == 12_001
    piped = (json.dumps(use("big", "2026-11-03T00:00:00Z", "p")) + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped)))
    post(books, ["-"], THROUGH)
    assert stored_input(books, hashlib.sha256(piped).hexdigest()) == piped
    assert reconcile(books).ok


def test_rejections_show_the_raw_line_of_rating_verdicts(tmp_path):
    books = init_books(tmp_path / "books")
    line = json.dumps(use("ghost", "2026-11-02T10:00:00Z", "c1"))
    (tmp_path / "e.jsonl").write_text(line + "\n")
    post(books, [str(tmp_path / "e.jsonl")], THROUGH)
    with read_store(books) as db:
        (row,) = queries.rejections(db)
    assert (row["kind"], row["reason"], row["raw"], row["line"]) == (
        "rating", "unknown_customer", line, 1,
    )  # fmt: skip


def test_reconcile_finds_a_changed_block(tmp_path):
    books = init_books(tmp_path / "books")
    awkward_file(tmp_path / "e.jsonl")
    post(books, [str(tmp_path / "e.jsonl")], THROUGH)
    with sqlite3.connect(books / "state.sqlite") as db:
        db.execute("UPDATE input_blocks SET data = ?", [zlib.compress(b"{}\n")])
    report = reconcile(books)
    assert [d.check for d in report.differences] == ["inputs"]
    assert "do not hash" in report.differences[0].message


def test_a_schema_3_store_is_upgraded_with_every_raw_line(tmp_path):
    books = tmp_path / "books"
    shutil.copytree(FIXTURES / "books-schema-3", books)
    with sqlite3.connect(books / "state.sqlite") as old:
        before = old.execute(
            "SELECT id, customer, type, at, day, file, line, raw, run_id FROM events ORDER BY id"
        ).fetchall()
        rejected = old.execute(
            "SELECT (SELECT count(*) FROM verdicts) + (SELECT count(*) FROM quarantine)"
        ).fetchone()[0]
    db = open_store(books)
    try:
        assert queries.get_meta(db, "schema_version") == SCHEMA_VERSION
        after = []
        for event_id, *_ in before:
            raw = queries.raw_event(db, event_id)
            stored = queries.event(db, event_id)
            after.append((raw.id, raw.customer, raw.type, stored.at, raw.day, raw.file,
                          raw.line, raw.raw, raw.run_id))  # fmt: skip
        assert after == before
        assert queries.events_without_lines(db) == []
        assert len(queries.rejections(db)) == rejected
    finally:
        db.close()


# What this version writes that the engine of schema 3 did not: the plan and interval of a
# usage entry (SPEC v3 §3), and October's seal (which covers October's files) with them and
# the rules October was posted under (SPEC v3 §6).
ADDED_SINCE_SCHEMA_3 = re.compile(
    rb"^  (plan|interval|seal-sha256|rules-sha256): .*\n", re.MULTILINE
)


def test_the_upgrade_tells_an_omitted_commitment_from_a_commitment_of_zero(tmp_path):
    """Stores before schema 5 kept an omitted ``commitment`` as 0; a later subscription now
    carries an omitted one over (SPEC v3 §2), so the upgrade reads each subscription's raw
    line again: omitted becomes null, a given 0 stays 0."""
    books = init_books(tmp_path / "books")
    Poster(books, tmp_path)(
        [
            sub("k", "2026-03-01T08:00:00Z", "essentials", commitment="30.00", id="k-1"),
            sub("k", "2026-03-15T08:00:00Z", "essentials", auto_top_up={"amount": "10.00"},
                id="k-omits"),
            sub("z", "2026-03-01T08:00:00Z", "essentials", commitment="0", id="z-zero"),
        ],
        "2026-03-31",
    )  # fmt: skip
    with sqlite3.connect(books / "state.sqlite") as db:  # as schema 4 stored them
        for event_id in ("k-omits", "z-zero"):
            (fields,) = db.execute("SELECT fields FROM events WHERE id = ?", [event_id]).fetchone()
            typed = json.loads(fields)
            typed[2:] = [typed[2], typed[3], 0, *typed[5:]]
            db.execute("UPDATE events SET fields = ? WHERE id = ?", [json.dumps(typed), event_id])
        db.execute("ALTER TABLE customers DROP COLUMN pending_from")
        db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    db = open_store(books)
    try:
        assert queries.get_meta(db, "schema_version") == SCHEMA_VERSION
        assert queries.event(db, "k-omits").commitment is None
        assert queries.event(db, "z-zero").commitment == 0
        assert queries.event(db, "k-1").commitment == 3000
    finally:
        db.close()
    # The next month's commitment is k-1's 30.00, carried over by k-omits.
    post(books, [], datetime.date(2026, 4, 1), full=True)  # derived from the events again
    with read_store(books) as db:
        assert {lot.lot_id: lot.amount for lot in queries.lots(db, "k")}[
            "commitment-2026-04-01"
        ] == 3000


def test_upgraded_books_post_on_as_books_made_by_this_version(tmp_path):
    """Books of schema 3 (the sample's October and November, made by the engine before
    schema 4) post December byte for byte as the sample books do, and reconcile; what the
    older engine wrote stays as it wrote it (append-only)."""
    books = tmp_path / "books"
    shutil.copytree(FIXTURES / "books-schema-3", books)
    events = Path(__file__).resolve().parents[1] / "sample_books" / "events"
    for name in ("2026-12-late.jsonl", "2026-12-finance.jsonl"):
        post(books, [str(events / name)], datetime.date(2026, 12, 31))
    sample = Path(__file__).resolve().parents[1] / "sample_books" / "books"
    upgraded, fresh = journal_bytes(books), journal_bytes(sample)
    assert sorted(upgraded) == sorted(fresh)
    for path in fresh:
        if "2026-12" in path or path.endswith("customer.beancount"):
            assert upgraded[path] == fresh[path], path
        else:
            # (November also holds entries this version appended: filtered alike)
            assert ADDED_SINCE_SCHEMA_3.sub(b"", upgraded[path]) == ADDED_SINCE_SCHEMA_3.sub(
                b"", fresh[path]
            ), path
    report = reconcile(books)
    assert report.ok, report.differences


def test_a_conversation_classified_once_has_no_history_rows_until_it_changes(tmp_path):
    books = init_books(tmp_path / "books")
    poster = Poster(books, tmp_path)
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost"),
            use("acme", "2026-11-02T10:00:00Z", "c1")], "2026-11-02")  # fmt: skip
    poster([use("acme", "2026-11-03T10:00:00Z", "c2")], "2026-11-03")
    with read_store(books) as db:
        assert db.execute("SELECT count(*) FROM conversation_history").fetchone()[0] == 0
        assert [c.run_id for c in queries.conversation_history(db, "acme", "c1")] == [1]
        assert set(queries.classifications_as_of(db, "acme", 1)) == {"c1"}
    poster([use("acme", "2026-11-04T10:00:00Z", "c1", "autopilot")], "2026-11-04")
    # a cancellation before c2's first event: c2 is no longer rated
    poster([{"id": "x", "type": "cancellation", "customer": "acme",
             "at": "2026-11-02T12:00:00Z"}], "2026-11-04")  # fmt: skip
    with read_store(books) as db:
        c1 = queries.conversation_history(db, "acme", "c1")
        c2 = queries.conversation_history(db, "acme", "c2")
        as_of_2 = queries.classifications_as_of(db, "acme", 2)
        as_of_4 = queries.classifications_as_of(db, "acme", 4)
    # the cancellation also rejects c1's autopilot event: it is a suggested reply again
    kinds = [(1, "suggested_reply"), (3, "autopilot"), (4, "suggested_reply")]
    assert [(c.run_id, c.kind) for c in c1] == kinds
    assert [(c.run_id, c.status) for c in c2] == [(2, "included"), (4, "gone")]
    assert as_of_2["c1"].kind == "suggested_reply" and as_of_2["c2"].status == "included"
    assert as_of_4["c1"].kind == "suggested_reply" and as_of_4["c2"].status == "gone"


def test_events_are_found_by_id_even_when_their_id_keys_collide(tmp_path, monkeypatch):
    """Every id gets the same 8-byte key: lookups still tell the events apart by id."""
    monkeypatch.setattr(queries, "id_key", lambda event_id: 7)
    books = init_books(tmp_path / "books")
    poster = Poster(books, tmp_path)
    events = [
        sub("acme", "2026-11-01T08:00:00Z", "boost"),
        use("acme", "2026-11-02T10:00:00Z", "c1"),
        use("ghost", "2026-11-02T11:00:00Z", "g"),
    ]
    poster(events, "2026-11-02")
    again = poster([events[1], {**events[2], "feature": "autopilot"}], "2026-11-02")
    assert (again.duplicates, again.rejected) == (1, {"id_conflict": 1})
    with read_store(books) as db:
        assert queries.raw_event(db, events[1]["id"]).raw == json.dumps(events[1])
        assert queries.event(db, events[2]["id"]).customer == "ghost"
        rating = [r for r in queries.rejections(db) if r["kind"] == "rating"]
    assert [(r["event_id"], r["reason"]) for r in rating] == [(events[2]["id"], "unknown_customer")]
    assert reconcile(books).ok


@pytest.mark.parametrize("in_memory_max", [2_000_000, 10])
def test_a_first_night_finds_repeated_ids_across_batches(tmp_path, monkeypatch, in_memory_max):
    """On books without events ids are looked up among the run's own (then, past a bound,
    in the store): a duplicate and a conflicting id more than a batch apart are found."""
    monkeypatch.setattr(ingest, "RUN_IDS_IN_MEMORY_MAX", in_memory_max)
    books = init_books(tmp_path / "books")
    events = [sub("big", "2026-11-01T00:00:00Z", "pro")]
    events += [use("big", f"2026-11-02T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                   f"c{i}") for i in range(6_000)]  # fmt: skip
    events += [events[3], {**events[4], "feature": "autopilot"}]
    result = Poster(books, tmp_path)(events, "2026-11-30")
    assert (result.duplicates, result.rejected) == (1, {"id_conflict": 1})
    assert result.accepted == 6_001
