"""Every read and write of the store, grouped by table.  Amounts are integer cents.

The stages hand records in and get records or plain values back; no SQL lives anywhere
else in the engine (the views are in :mod:`ledger_engine.store.views`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import operator
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import orjson
import sqlite_utils

from ledger_engine.core import accounts
from ledger_engine.core.digests import digest_key
from ledger_engine.core.model import (
    EVENT_TYPED_FIELDS,
    Conversation,
    Event,
    GlSummary,
    JournalFile,
    Line,
    Lot,
    NewEntry,
    PostedState,
    Rating,
    Rejection,
    WalletResult,
)
from ledger_engine.store import runlog
from ledger_engine.store.views import VIEWS

INSERT_BATCH_SIZE = 5000  # event lines checked and inserted per batch
LOOKUP_CHUNK = 900  # ids per "IN (...)" query, under SQLite's parameter limit
CUSTOMER_CHUNK = 500  # customers whose rows one query fetches
_TYPED_START = len(Event._fields) - len(EVENT_TYPED_FIELDS)


def _marks(values: list) -> str:
    return ",".join("?" * len(values))


# ------------------------------------------------------------------------------ meta


class BooksSettings(NamedTuple):
    currency: str
    timezone: str


def books_settings(db: sqlite_utils.Database) -> BooksSettings:
    return BooksSettings(get_meta(db, "currency"), get_meta(db, "timezone"))


def posted_through(db: sqlite_utils.Database) -> datetime.date | None:
    value = get_meta(db, "posted_through")
    return datetime.date.fromisoformat(value) if value else None


def set_posted_through(db: sqlite_utils.Database, day: datetime.date) -> None:
    set_meta(db, "posted_through", day.isoformat())


def get_meta(db: sqlite_utils.Database, key: str, default: str | None = None) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])


def keep_rules_text(db: sqlite_utils.Database, sha256: str, text: str) -> None:
    """Keeps a rules file a run used (once per content)."""
    db.execute("INSERT OR IGNORE INTO rules_texts (sha256, text) VALUES (?, ?)", [sha256, text])


def rules_text(db: sqlite_utils.Database, sha256: str) -> str | None:
    row = db.execute("SELECT text FROM rules_texts WHERE sha256 = ?", [sha256]).fetchone()
    return row[0] if row else None


def rules_texts(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    return db.execute("SELECT sha256, text FROM rules_texts ORDER BY sha256").fetchall()


def rules_changes(db: sqlite_utils.Database) -> list[tuple[int, str, str]]:
    """Every change of the rules in force: ``(run, first day, SHA-256)``, oldest first."""
    return db.execute(
        "SELECT run_id, first_day, sha256 FROM rules_history ORDER BY run_id"
    ).fetchall()


def record_rules_change(db, run_id: int, first_day: datetime.date, sha256: str) -> None:
    db.execute(
        "INSERT INTO rules_history (run_id, first_day, sha256) VALUES (?, ?, ?)",
        [run_id, first_day.isoformat(), sha256],
    )


def insert_dicts(db: sqlite_utils.Database, table: str, rows: Iterable[dict], conflict="") -> int:
    """Bulk-inserts dicts that share their keys, with one prepared statement.

    sqlite-utils' ``insert_all`` inspects every value (for JSON columns) and dominated the
    profile of a million-event night; our rows are plain scalars, so ``executemany`` does.

    Args:
        db: the store.
        table: the table name.
        rows: dicts with the same keys.
        conflict: e.g. ``"OR IGNORE"``.

    Returns:
        The number of rows given.
    """
    rows = list(rows)
    if not rows:
        return 0
    columns = list(rows[0])
    sql = (
        f"INSERT {conflict} INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    getter = operator.itemgetter(*columns)
    db.conn.executemany(
        sql, map(getter, rows) if len(columns) > 1 else ((getter(r),) for r in rows)
    )
    return len(rows)


# ---------------------------------------------------------------- events and inputs

EVENT_INSERT = (
    "INSERT INTO events (id, id_key, type, customer, at, day, fields, content, block, line, "
    "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Where an events row (EVENT_INSERT's order) holds what ingest reads of it.
ROW_ID, ROW_ID_KEY, ROW_CUSTOMER, ROW_DAY, ROW_CONTENT, ROW_LINE = 0, 1, 3, 5, 7, 9


_sha256 = hashlib.sha256


def id_key(event_id: str) -> int:
    """The key events are found by: the key of the SHA-256 of the id (``text_key`` of it,
    written out: this runs for every event)."""
    return int.from_bytes(_sha256(event_id.encode()).digest()[:8], "big", signed=True)


def _by_id(ids: list[str]) -> tuple[str, list]:
    """The WHERE clause (and its parameters) that finds the events of ``ids``."""
    keys = [id_key(event_id) for event_id in ids]
    return f"id_key IN ({_marks(keys)}) AND id IN ({_marks(ids)})", [*keys, *ids]


def content_key_of_hex(content_sha: str) -> int:
    """The content key (:func:`ledger_engine.core.events.content_key`) of a SHA-256 in hex
    (the form stores before schema 4 kept)."""
    return digest_key(bytes.fromhex(content_sha))


def known_event_contents(
    db: sqlite_utils.Database, keyed: list[tuple[str, int]], before_run: int | None = None
) -> dict[str, int]:
    """The content key (:func:`content_key`) of each event already stored, of ``keyed``:
    ``(id, id key)`` pairs (only those of runs before ``before_run``, when given)."""
    known: dict[str, int] = {}
    step = LOOKUP_CHUNK // 2
    earlier = "" if before_run is None else " AND run_id < ?"
    for start in range(0, len(keyed), step):
        chunk = keyed[start : start + step]
        ids, keys = [event_id for event_id, _ in chunk], [key for _, key in chunk]
        for event_id, content in db.execute(
            f"SELECT id, content FROM events WHERE id_key IN ({_marks(keys)}) "
            f"AND id IN ({_marks(ids)}){earlier}",
            [*keys, *ids, *([] if before_run is None else [before_run])],
        ):
            known[event_id] = content
    return known


def has_events(db: sqlite_utils.Database) -> bool:
    return db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None


def events_stored(db: sqlite_utils.Database) -> int:
    """About how many events the store holds (the largest rowid: no count of the table)."""
    return db.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0


# Most events have no typed field after commitment (usage, and most money events after it
# only amount and channel): their stored fields end there, found with one comparison.
_COMMITMENT_END = EVENT_TYPED_FIELDS.index("commitment") + 1
_NOTHING_AFTER_COMMITMENT = (None,) * (len(EVENT_TYPED_FIELDS) - _COMMITMENT_END)
_day_texts: dict[datetime.date, str] = {}


def stored_fields(typed: tuple) -> str:
    """The typed fields as stored: a JSON array without its trailing nulls."""
    if typed[_COMMITMENT_END:] == _NOTHING_AFTER_COMMITMENT:
        end = _COMMITMENT_END
        while end and typed[end - 1] is None:
            end -= 1
    else:
        end = len(typed)
        while typed[end - 1] is None:
            end -= 1
    return orjson.dumps(typed[:end]).decode()


def event_row(event: Event, content: int, block: int, number: int, run_id: int) -> tuple:
    """The ``events`` row of a schema-valid event read from line ``number`` of block
    ``block`` (typed fields as one JSON array, without its trailing nulls)."""
    day = _day_texts.get(event.day)
    if day is None:
        if len(_day_texts) > 4096:
            _day_texts.clear()
        day = _day_texts[event.day] = event.day.isoformat()
    event_id = event.id
    return (
        event_id, id_key(event_id), event.type, event.customer, event.at, day,
        stored_fields(event[_TYPED_START:]), content, block, number, run_id,
    )  # fmt: skip


def insert_events(db: sqlite_utils.Database, rows: list[tuple]) -> None:
    db.conn.executemany(EVENT_INSERT, rows)


EVENTS_BY_ID = "events_id_key"  # the index ids are looked up by
EVENTS_BY_CUSTOMER = "events_customer_day"  # the index a customer's events are read by


def drop_event_indexes(db: sqlite_utils.Database, names: Iterable[str]) -> list[str]:
    """Drops indexes of ``events`` (inside the run's transaction) for a bulk load; returns
    their SQL for :func:`create_indexes` once the rows are in.  An index built once over a
    million rows costs a third to a half of one kept up row by row."""
    names = list(names)
    indexes = db.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
        f"AND name IN ({_marks(names)}) ORDER BY name",
        names,
    ).fetchall()
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    return [sql for _, sql in indexes]


def create_indexes(db: sqlite_utils.Database, indexes: list[str]) -> None:
    for sql in indexes:
        db.execute(sql)


# ------------------------------------------------------------------- input blocks

BLOCK_LEVEL = 6  # zlib level of the input blocks (compressed in a thread, off the GIL)


def next_block(db: sqlite_utils.Database) -> int:
    return (db.execute("SELECT max(block) FROM input_blocks").fetchone()[0] or 0) + 1


def insert_block(db, block: int, file: str, first_line: int, data: bytes) -> None:
    """Stores one compressed block of an input file (its SHA-256 is set when it is read)."""
    db.execute(
        "INSERT INTO input_blocks (block, input, file, first_line, data) VALUES (?, '', ?, ?, ?)",
        [block, file, first_line, data],
    )


def set_block_input(db: sqlite_utils.Database, first_block: int, sha256: str) -> None:
    """Names the input whose blocks are ``first_block`` on (the file just read)."""
    db.execute("UPDATE input_blocks SET input = ? WHERE block >= ?", [sha256, first_block])


def input_blocks(db: sqlite_utils.Database) -> Iterator[tuple[str, str, bytes]]:
    """Every block as ``(input SHA-256, file, compressed data)``, by input, then in order."""
    yield from db.execute("SELECT input, file, data FROM input_blocks ORDER BY input, block")


def _first_column(db: sqlite_utils.Database, sql: str) -> list:
    return [row[0] for row in db.execute(sql)]


def events_without_lines(db: sqlite_utils.Database) -> list[str]:
    """Events whose block is missing or starts after their line (a damaged store)."""
    return _first_column(
        db,
        "SELECT e.id FROM events e LEFT JOIN input_blocks b ON b.block = e.block "
        "WHERE b.block IS NULL OR e.line < b.first_line ORDER BY e.id LIMIT 100",
    )


def inputs_without_blocks(db: sqlite_utils.Database) -> list[str]:
    """Input files read (with lines) whose bytes the store does not hold, by SHA-256: none,
    unless the store was upgraded from schema 3 (see :func:`store.db._lean_events`)."""
    return _first_column(
        db,
        "SELECT sha256 FROM input_files WHERE lines > 0 AND sha256 NOT IN "
        "(SELECT input FROM input_blocks) ORDER BY sha256",
    )


class _BlockReader:
    """Raw lines of events, each block decompressed once per reader."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self.lines: dict[int, tuple[int, list[bytes]]] = {}

    def __call__(self, block: int, line: int) -> tuple[str, str]:
        """The file name and the raw text of line ``line`` of block ``block``."""
        if block not in self.lines:
            file, first_line, data = self.db.execute(
                "SELECT file, first_line, data FROM input_blocks WHERE block = ?", [block]
            ).fetchone()
            self.lines[block] = (file, first_line, zlib.decompress(data).split(b"\n"))
        file, first_line, lines = self.lines[block]
        raw = lines[line - first_line]
        if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        return file, raw.rstrip(b"\r").decode("utf-8", errors="backslashreplace")


def quarantine_row(line: Line, rejection: Rejection, run_id: int) -> dict:
    return {
        "run_id": run_id,
        "file": line.file,
        "line": line.number,
        "reason": rejection.reason,
        "field": rejection.field,
        "detail": rejection.detail,
        "event_id": rejection.event_id,
        "raw": line.raw,
        "raw_sha": hashlib.sha256(line.raw.encode("utf-8", "replace")).hexdigest(),
    }


def insert_quarantine(db: sqlite_utils.Database, rows: list[dict]) -> None:
    # The same bad line read again (a re-run) is counted again but stored once.
    insert_dicts(db, "quarantine", rows, "OR IGNORE")


class KnownInput(NamedTuple):
    sha256: str
    lines: int
    valid: int
    rejected: dict[str, int]


def known_input(db: sqlite_utils.Database, sha256: str) -> KnownInput | None:
    row = db.execute(
        "SELECT sha256, lines, valid, rejected FROM input_files WHERE sha256 = ?", [sha256]
    ).fetchone()
    return None if row is None else KnownInput(row[0], row[1], row[2], json.loads(row[3]))


def record_input(
    db, sha256: str, lines: int, valid: int, rejected: dict, name: str, size: int, head: str
) -> None:
    """Records an input read whole: its counts, its size and the SHA-256 of its first chunk
    (the first look at a file, :func:`inputs_like`)."""
    db.execute(
        "INSERT OR IGNORE INTO input_files (sha256, lines, valid, rejected, first_name, bytes, "
        "head) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [sha256, lines, valid, json.dumps(rejected), name, size, head],
    )


def inputs_like(db: sqlite_utils.Database, size: int, head: str) -> bool:
    """Whether a known input has this size and this SHA-256 of its first chunk."""
    found = db.execute(
        "SELECT 1 FROM input_files WHERE bytes = ? AND head = ? LIMIT 1", [size, head]
    ).fetchone()
    return found is not None


def note_input_look(db: sqlite_utils.Database, sha256: str, size: int, head: str) -> None:
    """Adds the size and first-chunk hash to an input recorded without them (before schema
    5), so that the next re-post of it is found at a first look."""
    db.execute(
        "UPDATE input_files SET bytes = ?, head = ? WHERE sha256 = ? AND bytes IS NULL",
        [size, head, sha256],
    )


# What ingest stores of one input is undone, if the input turns out to be a known one, by
# rolling back to this savepoint (inside the run's transaction).
_INPUT_SAVEPOINT = "one_input"


def begin_input(db: sqlite_utils.Database) -> None:
    db.execute(f"SAVEPOINT {_INPUT_SAVEPOINT}")


def end_input(db: sqlite_utils.Database) -> None:
    """Keeps what was stored of the input (the run's transaction still decides)."""
    db.execute(f"RELEASE {_INPUT_SAVEPOINT}")


def forget_input(db: sqlite_utils.Database) -> None:
    """Undoes every write since :func:`begin_input`."""
    db.execute(f"ROLLBACK TO {_INPUT_SAVEPOINT}")
    db.execute(f"RELEASE {_INPUT_SAVEPOINT}")


# The typed fields are stored without their trailing nulls: the nulls that complete each length.
_PADDING = [(None,) * (len(EVENT_TYPED_FIELDS) - n) for n in range(len(EVENT_TYPED_FIELDS) + 1)]


# An adjustment's lines are a tuple of (account, cents) pairs, stored as a JSON array of
# arrays: read back, they are made tuples again, so that an event read back equals the event
# that was checked, whichever path brings a derivation its events (kept in memory, read
# back, sent to the worker).  Only an adjustment stores anything from ``lines`` on, so other
# rows pay one length comparison.
_LINES_AT = EVENT_TYPED_FIELDS.index("lines")


def _with_lines(typed: list) -> list:
    """``typed`` (stored fields reaching ``lines``) with its lines as tuples."""
    lines = typed[_LINES_AT]
    if isinstance(lines, list):
        typed[_LINES_AT] = tuple(tuple(line) if isinstance(line, list) else line for line in lines)
    return typed


def _padded(typed: list) -> list:
    """The typed fields as stored, completed with the trailing nulls left out."""
    if len(typed) > _LINES_AT:
        typed = _with_lines(typed)
    return [*typed, *_PADDING[len(typed)]]


def _events_of_rows(rows, result: dict[str, list[Event]], run_id: int = 0) -> set[str]:
    """Appends an Event per ``(id, type, customer, at, day, fields, run)`` row to its
    customer's list (the hot path of a night: dates parsed once per day, no per-row helper
    calls); returns the ids of the rows of run ``run_id``."""
    days: dict[str, datetime.date] = {}
    of_run: set[str] = set()
    new, loads, padding, lines_at = tuple.__new__, orjson.loads, _PADDING, _LINES_AT
    for event_id, event_type, customer, at, day_text, fields, run in rows:
        day = days.get(day_text)
        if day is None:
            day = days[day_text] = datetime.date.fromisoformat(day_text)
        typed = loads(fields)
        if len(typed) > lines_at:
            typed = _with_lines(typed)
        result[customer].append(
            new(Event, (event_id, event_type, customer, at, day, *typed, *padding[len(typed)]))
        )
        if run == run_id:
            of_run.add(event_id)
    return of_run


def events_of_event_rows(rows: Iterable[tuple]) -> list[Event]:
    """The events of ``events`` rows as :func:`event_row` makes them (not read back)."""
    days: dict[str, datetime.date] = {}
    new, loads, padding, result = tuple.__new__, orjson.loads, _PADDING, []
    for event_id, _, event_type, customer, at, day_text, fields, *_ in rows:
        day = days.get(day_text)
        if day is None:
            day = days[day_text] = datetime.date.fromisoformat(day_text)
        typed = loads(fields)
        if len(typed) > _LINES_AT:
            typed = _with_lines(typed)
        result.append(
            new(Event, (event_id, event_type, customer, at, day, *typed, *padding[len(typed)]))
        )
    return result


def customer_events(
    db: sqlite_utils.Database, customers: list[str], before_run: int | None = None
) -> dict[str, list[Event]]:
    """Every schema-valid event of each customer (only those of runs before ``before_run``,
    when given); one query for the whole chunk."""
    result: dict[str, list[Event]] = {customer: [] for customer in customers}
    earlier = "" if before_run is None else " AND run_id < ?"
    _events_of_rows(
        db.conn.execute(
            f"SELECT id, type, customer, at, day, fields, run_id FROM events "
            f"WHERE customer IN ({_marks(customers)}){earlier} ORDER BY customer",
            [*customers, *([] if before_run is None else [before_run])],
        ),
        result,
    )
    return result


def customer_events_of_types(
    db: sqlite_utils.Database, customer: str, types: Iterable[str]
) -> list[Event]:
    """The schema-valid events of one customer of the given types (e.g. those its terms
    come from), in no particular order."""
    types = list(types)
    result: dict[str, list[Event]] = {customer: []}
    _events_of_rows(
        db.conn.execute(
            "SELECT id, type, customer, at, day, fields, run_id FROM events "
            f"WHERE customer = ? AND type IN ({_marks(types)})",
            [customer, *types],
        ),
        result,
    )
    return result[customer]


def customer_events_since(
    db: sqlite_utils.Database,
    customer: str,
    day: datetime.date,
    run_id: int,
    earlier_only: bool = False,
) -> tuple[list[Event], set[str]]:
    """The schema-valid events of one customer from ``day`` on (only those of runs before
    ``run_id``, if ``earlier_only``), and the ids of those that run ``run_id`` ingested."""
    result: dict[str, list[Event]] = {customer: []}
    of_run = _events_of_rows(
        db.conn.execute(
            "SELECT id, type, customer, at, day, fields, run_id FROM events "
            "WHERE customer = ? AND day >= ?" + (" AND run_id < ?" if earlier_only else ""),
            [customer, day.isoformat(), *([run_id] if earlier_only else [])],
        ),
        result,
        run_id,
    )
    return result[customer], of_run


def event(db: sqlite_utils.Database, event_id: str) -> Event | None:
    """One stored (schema-valid) event.

    Args:
        db: the store.
        event_id: the event's ``id``.

    Returns:
        The event with its typed fields, or None if no event with that id is stored.
    """
    where, parameters = _by_id([event_id])
    row = db.execute(
        f"SELECT id, type, customer, at, day, fields FROM events WHERE {where}", parameters
    ).fetchone()
    if row is None:
        return None
    return _event_of(*row)


def _event_of(event_id, event_type, customer, at, day: str, fields: str) -> Event:
    """An ``events`` row's columns as an Event (the hot path, customer_events, inlines it)."""
    typed = _padded(orjson.loads(fields))
    return Event._make((event_id, event_type, customer, at, _date(day), *typed))


def event_ids(db: sqlite_utils.Database) -> set[str]:
    """The ids of every stored (schema-valid) event; quarantined lines are not events.

    Args:
        db: the store.

    Returns:
        The set of event ids.
    """
    return {row[0] for row in db.execute("SELECT id FROM events")}


def verdict_counts_of_run(db: sqlite_utils.Database, run_id: int) -> dict[str, int]:
    """Rating verdicts on the events a run ingested, by reason."""
    return dict(
        db.execute(
            # Driven from this run's verdicts (few) so no scan of the events table.
            "SELECT reason, count(*) FROM verdicts v WHERE v.run_id = ? AND (SELECT run_id "
            "FROM events e WHERE e.id_key = v.event_key AND e.id = v.event_id) = ? "
            "GROUP BY reason",
            [run_id, run_id],
        ).fetchall()
    )


# ------------------------------------------------------------------- derived state


def _iso(day: datetime.date | None) -> str | None:
    return day.isoformat() if day else None


def _date(text: str | None) -> datetime.date | None:
    return datetime.date.fromisoformat(text) if text else None


# The verdicts of a customer on its events from a day on: driven from its verdicts (few),
# each joined to its event by the id key, never from a scan of its events.
def _verdict_runs(db, customer: str, since: datetime.date | None) -> dict[tuple, int]:
    """The run that first gave each current verdict a derivation replaces (those on events
    from ``since`` on: found from the customer's verdicts, few, each joined to its event by
    the id key, never from a scan of its events)."""
    if since is None:
        rows = db.execute(
            "SELECT event_id, reason, run_id FROM verdicts WHERE customer = ?", [customer]
        )
    else:
        rows = db.execute(
            "SELECT v.event_id, v.reason, v.run_id FROM verdicts v JOIN events e "
            "ON e.id_key = v.event_key AND e.id = v.event_id WHERE v.customer = ? "
            "AND e.day >= ?",
            [customer, since.isoformat()],
        )
    return {(event_id, reason): run_id for event_id, reason, run_id in rows}


# A write to the store: a statement and the parameters of each time it runs.  A
# derivation's writes are planned where it ran (this process or the run's worker, which
# reads the store but never writes it) and applied here, in the run's transaction.
Write = tuple[str, list[tuple]]


def apply_writes(db: sqlite_utils.Database, writes: Iterable[Write]) -> None:
    for sql, rows in writes:
        db.conn.executemany(sql, rows)


def _deletes_since(customer: str, since: datetime.date, verdicts: Iterable[str]) -> list[Write]:
    """What a derivation resumed at ``since`` derives again: the ``verdicts`` (on events
    from that day), conversations first seen from it, periods still open on it, lots
    credited from it (the lots holding money on it are stored again, replaced)."""
    day = since.isoformat()
    return [
        ("DELETE FROM verdicts WHERE event_id = ?", [(v,) for v in verdicts]),
        ("DELETE FROM conversations WHERE customer = ? AND day >= ?", [(customer, day)]),
        (
            "DELETE FROM periods WHERE customer = ? AND (period_end IS NULL OR period_end > ?)",
            [(customer, day)],
        ),  # fmt: skip
        ("DELETE FROM lots WHERE customer = ? AND day >= ?", [(customer, day)]),
    ]


_CONVERSATION_INSERT = (
    "INSERT INTO conversations (customer, conversation, period_start, period_end, day, "
    "first_at, first_event, kind, status, price, rules_version, events, run_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PERIOD_INSERT = (
    "INSERT INTO periods (customer, period_start, period_end, plan, interval, included) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_VERDICT_INSERT = (
    "INSERT INTO verdicts (event_id, customer, reason, run_id, event_key) VALUES (?, ?, ?, ?, ?)"
)
_LOT_INSERT = (
    "INSERT OR REPLACE INTO lots (customer, lot_id, kind, day, last_valid, amount, remainder) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_CUSTOMER_UPSERT = (
    "INSERT INTO customers (customer, segment, next_due, pending_from) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (customer) DO UPDATE SET next_due = excluded.next_due, "
    "pending_from = excluded.pending_from"
)


class Due(NamedTuple):
    """When a customer's books change next without new events, and since when a
    derivation holds back differences (corrections of a closed month waiting for a run
    that posts the first open month: SPEC v3, pending work, not a difference)."""

    next_due: datetime.date | None
    pending_from: datetime.date | None = None


def derived_state_writes(
    db: sqlite_utils.Database,
    customer: str,
    rating: Rating,
    wallet: WalletResult,
    due: Due,
    run_id: int,
    since: datetime.date | None = None,
) -> list[Write]:
    """The writes that replace the customer's derived state (verdicts, periods,
    conversations, lots) and record in ``conversation_history`` every conversation whose
    classification changed; it reads what they replace, and writes nothing.

    ``since``: the day a resumed derivation started at (it replaces only what it derived);
    None for a derivation from the first event (it replaces everything).
    """
    classified_in, history = _classification_changes(db, customer, rating, run_id, since)
    verdict_runs = _verdict_runs(db, customer, since)
    if since is None:
        writes = [(f"DELETE FROM {table} WHERE customer = ?", [(customer,)])
                  for table in ("verdicts", "conversations", "lots", "periods")]  # fmt: skip
    else:
        writes = _deletes_since(customer, since, {event_id for event_id, _ in verdict_runs})
    iso, verdict_of = _iso, {**rating.verdicts, **wallet.verdicts}
    periods = [
        (customer, p.label, iso(p.end), p.plan, p.interval, p.included) for p in rating.periods
    ]
    verdict_rows = [
        (event_id, customer, reason, verdict_runs.get((event_id, reason), run_id), id_key(event_id))
        for event_id, reason in verdict_of.items()
    ]
    conversations = [
        (customer, c.conversation, c.period, iso(c.period_end),
         c.day.isoformat(), c.first_at, c.first_event, c.kind, c.status, c.price,
         c.rules_version, c.events, classified_in[c.conversation])
        for c in rating.conversations
    ]  # fmt: skip
    lots = [
        (customer, lot.lot_id, lot.kind, lot.day.isoformat(), lot.last_valid.isoformat(),
         lot.amount, lot.remainder)
        for lot in wallet.lots
    ]  # fmt: skip
    return [
        history,
        *writes,
        (_PERIOD_INSERT, periods),
        (_VERDICT_INSERT, verdict_rows),
        (_CONVERSATION_INSERT, conversations),
        (_LOT_INSERT, lots),
        (
            _CUSTOMER_UPSERT,
            [
                (
                    customer,
                    accounts.customer_segment(customer),
                    iso(due.next_due),
                    iso(due.pending_from),
                )
            ],
        ),  # fmt: skip
    ]


_CLASSIFICATION = "day, period_start, kind, status, price, rules_version"
GONE = "gone"  # the status of a conversation no longer rated (its events were rejected)


def _classification_changes(
    db, customer: str, rating: Rating, run_id: int, since: datetime.date | None
) -> tuple[dict[str, int], Write]:
    """How this run's classification of each conversation differs from the last one: the
    run each conversation's classification is from, and the ``conversation_history`` rows
    that record the changes.

    A conversation classified once has no history rows (its ``conversations`` row holds
    the run that classified it); at its first change, the earlier classification is
    written to ``conversation_history`` too, so the history is whole from then on.
    """
    old = {
        row[0]: (row[1], tuple(row[2:]))
        for row in db.execute(
            f"SELECT conversation, run_id, {_CLASSIFICATION} FROM conversations "
            "WHERE customer = ? AND day >= ?",
            [customer, _iso(since) or ""],
        )
    }
    runs: dict[str, int] = {}
    changes: list[tuple[str, int, tuple, tuple]] = []  # conversation, old run, old, new
    for c in rating.conversations:
        new = (c.day.isoformat(), c.period, c.kind, c.status, c.price,
               c.rules_version)  # fmt: skip
        old_run, old_classification = old.pop(c.conversation, (None, None))
        if old_classification == new:
            runs[c.conversation] = old_run
            continue
        runs[c.conversation] = run_id
        if old_classification is not None:
            changes.append((c.conversation, old_run, old_classification, new))
    for conversation, (old_run, classification) in old.items():
        day, period_start, kind, _, _, version = classification
        changes.append((conversation, old_run, classification,
                        (day, period_start, kind, GONE, 0, version)))  # fmt: skip
    rows = []
    for conversation, old_run, old_classification, new in changes:
        has_history = db.execute(
            "SELECT 1 FROM conversation_history WHERE customer = ? AND conversation = ? LIMIT 1",
            [customer, conversation],
        ).fetchone()
        if has_history is None:
            rows.append((customer, conversation, old_run, *old_classification))
        rows.append((customer, conversation, run_id, *new))
    sql = (
        f"INSERT OR REPLACE INTO conversation_history (customer, conversation, run_id, "
        f"{_CLASSIFICATION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    return runs, (sql, rows)


def verdicts(db: sqlite_utils.Database) -> dict[str, str]:
    """The current rating verdicts of every customer (replaced by each rating).

    Args:
        db: the store.

    Returns:
        Event id -> rating reason code, as in :attr:`Rating.verdicts`.
    """
    return dict(db.execute("SELECT event_id, reason FROM verdicts").fetchall())


def conversations(db: sqlite_utils.Database, customer: str) -> list[Conversation]:
    """The rated conversations of a customer, as its last rating saved them.

    Args:
        db: the store.
        customer: the customer id.

    Returns:
        Its conversations, by first event time, then conversation id.
    """
    columns = ", ".join("period_start" if f == "period" else f for f in Conversation._fields)
    rows = db.execute(
        f"SELECT {columns} FROM conversations WHERE customer = ? ORDER BY first_at, conversation",
        [customer],
    )
    return [
        c._replace(period_end=_date(c.period_end), day=_date(c.day))
        for c in map(Conversation._make, rows)
    ]


def lots(db: sqlite_utils.Database, customer: str) -> list[Lot]:
    """The wallet lots of a customer, as its last rating saved them.

    Args:
        db: the store.
        customer: the customer id.

    Returns:
        Its lots (amounts and remainders in cents), by lot id.
    """
    rows = db.execute(
        f"SELECT {', '.join(Lot._fields)} FROM lots WHERE customer = ? ORDER BY lot_id",
        [customer],
    )
    return [
        lot._replace(day=_date(lot.day), last_valid=_date(lot.last_valid))
        for lot in map(Lot._make, rows)
    ]


def due_customers(db: sqlite_utils.Database, through: datetime.date) -> dict[str, datetime.date]:
    """Customers whose books change by ``through`` without new events, with the day."""
    return {
        customer: datetime.date.fromisoformat(day)
        for customer, day in db.execute(
            "SELECT customer, next_due FROM customers WHERE next_due IS NOT NULL AND next_due <= ?",
            [through.isoformat()],
        )
    }


class SeenConversation(NamedTuple):
    day: datetime.date  # the day of its first event
    first_at: str
    kind: str


def seen_conversations(
    db: sqlite_utils.Database, customer: str, conversations: Iterable[str]
) -> dict[str, SeenConversation]:
    """How the last rating saw each of ``conversations`` of a customer (those it rated)."""
    ids = list(conversations)
    found: dict[str, SeenConversation] = {}
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        for conversation, day, first_at, kind in db.execute(
            f"SELECT conversation, day, first_at, kind FROM conversations WHERE customer = ? "
            f"AND conversation IN ({_marks(chunk)})",
            [customer, *chunk],
        ):
            found[conversation] = SeenConversation(_date(day), first_at, kind)
    return found


def rejected_event_ids(db: sqlite_utils.Database, customer: str) -> set[str]:
    """The ids of the customer's events its last rating rejected."""
    return {
        row[0] for row in db.execute("SELECT event_id FROM verdicts WHERE customer = ?", [customer])
    }


def conversation_events_writes(customer: str, deltas: dict[str, int]) -> list[Write]:
    """The writes that add to the event counts of conversations a resumed rating did not
    rate again."""
    return [(
        "UPDATE conversations SET events = events + ? WHERE customer = ? AND conversation = ?",
        [(delta, customer, conversation) for conversation, delta in deltas.items() if delta],
    )]  # fmt: skip


def pending_customers(db: sqlite_utils.Database) -> dict[str, str]:
    """Customers whose last derivation held back corrections, with the first day they can
    be posted on (see :class:`Due`)."""
    return dict(
        db.execute("SELECT customer, pending_from FROM customers WHERE pending_from IS NOT NULL")
    )


def customers_without_row(db: sqlite_utils.Database) -> list[str]:
    """Customers that derived rows name (lots, verdicts, periods, checkpoints) but the
    ``customers`` table does not: rows no derivation wrote."""
    return _first_column(
        db,
        "SELECT customer FROM lots UNION SELECT customer FROM verdicts UNION "
        "SELECT customer FROM periods UNION SELECT customer FROM checkpoints "
        "EXCEPT SELECT customer FROM customers ORDER BY 1",
    )


def customers(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    """Every known customer with its segment."""
    return db.execute("SELECT customer, segment FROM customers").fetchall()


def customer_known(db: sqlite_utils.Database, customer: str) -> bool:
    row = db.execute("SELECT 1 FROM customers WHERE customer = ?", [customer]).fetchone()
    return row is not None


# ------------------------------------------------------------ transactions, postings


def posted_state(
    db: sqlite_utils.Database, customers: list[str], since: datetime.date | None = None
) -> dict[str, dict[tuple[datetime.date, str], PostedState]]:
    """What the books hold per customer and ``(original day, key)``, for a chunk (original
    days from ``since`` on, when given)."""
    where = f"customer IN ({_marks(customers)})" + (" AND orig_day >= ?" if since else "")
    parameters = [*customers, *([since.isoformat()] if since else [])]
    amounts: dict = defaultdict(dict)
    for customer, day, key, account, cents in db.execute(
        f"SELECT customer, orig_day, key, account, sum(amount) FROM postings "
        f"WHERE {where} GROUP BY customer, orig_day, key, account",
        parameters,
    ):
        amounts[(customer, day, key)][account] = cents
    result: dict[str, dict] = {customer: {} for customer in customers}
    # SQLite returns the bare column txn_id from the row holding max(seq).
    for customer, day, key, seq, txn_id in db.execute(
        f"SELECT customer, orig_day, key, max(seq), txn_id FROM transactions "
        f"WHERE {where} GROUP BY customer, orig_day, key",
        parameters,
    ):
        posted = PostedState(amounts.get((customer, day, key), {}), seq, txn_id)
        result[customer][(datetime.date.fromisoformat(day), key)] = posted
    return result


class Placed(NamedTuple):
    """A GL summary and the journal files it and each of its entries were written to."""

    summary: GlSummary
    gl_file: str
    entry_files: tuple[str, ...]  # one per summary.entries


def _entry_rows(entry: NewEntry, file: str, position: int, run_id: int):
    base = {
        "txn_id": entry.txn_id, "ledger": "sub", "customer": entry.customer,
        "orig_day": entry.orig_day.isoformat(), "key": entry.key,
        "effective_day": entry.effective_day.isoformat(), "run_id": run_id,
    }  # fmt: skip
    row = {
        **base, "seq": entry.seq, "late": int(entry.moved_from_closed_month),
        "corrects": entry.corrects, "file": file, "position": position,
        "narration": entry.narration,
    }  # fmt: skip
    return row, [{**base, "account": a, "amount": c} for a, c in entry.postings]


def _summary_rows(placed: Placed, position: int):
    summary = placed.summary
    day = summary.day.isoformat()
    base = {
        "txn_id": summary.link, "ledger": "gl", "customer": None, "orig_day": day,
        "key": f"gl.{summary.movement}", "effective_day": day, "run_id": summary.run_id,
    }  # fmt: skip
    row = {
        **base, "seq": summary.run_id, "late": 0, "corrects": None, "file": placed.gl_file,
        "position": position, "narration": "Daily summary",
    }  # fmt: skip
    return row, [{**base, "account": a, "amount": c} for a, c in summary.postings]


def record_postings(db: sqlite_utils.Database, placed: Iterable[Placed]) -> tuple[int, dict]:
    """Records a run's GL summaries and subledger entries; returns how many, and the
    digests of the rows (for the run's record, :mod:`ledger_engine.store.runlog`)."""
    txn_rows: list[dict] = []
    posting_rows: list[dict] = []
    for item in placed:
        row, rows = _summary_rows(item, len(txn_rows))
        txn_rows.append(row)
        posting_rows += rows
        for entry, file in zip(item.summary.entries, item.entry_files, strict=True):
            row, rows = _entry_rows(entry, file, len(txn_rows), item.summary.run_id)
            txn_rows.append(row)
            posting_rows += rows
    insert_dicts(db, "transactions", txn_rows)
    insert_dicts(db, "postings", posting_rows)
    return len(txn_rows), runlog.transaction_digests(txn_rows, posting_rows)


def posting_sums(
    db: sqlite_utils.Database,
    ledger: str,
    customer: str | None = None,
    before: datetime.date | None = None,
) -> dict[tuple[str, str], int]:
    """Sums of postings per ``(effective day, account)`` of the GL (``ledger="gl"``) or the
    subledgers (``"sub"``, optionally one customer's), optionally only before a day."""
    where, params = ["ledger = ?"], [ledger]
    if customer is not None:
        where.append("customer = ?")
        params.append(customer)
    if before is not None:
        where.append("effective_day < ?")
        params.append(before.isoformat())
    return {
        (day, account): cents
        for day, account, cents in db.execute(
            f"SELECT effective_day, account, sum(amount) FROM postings "
            f"WHERE {' AND '.join(where)} GROUP BY effective_day, account",
            params,
        )
    }


def balances(db, ledger: str, customer: str | None = None, before=None) -> dict[str, int]:
    """Account balances (cents) of the GL or a customer's subledger before a day."""
    totals: dict[str, int] = defaultdict(int)
    for (_, account), cents in posting_sums(db, ledger, customer, before).items():
        totals[account] += cents
    return totals


class HistoryRow(NamedTuple):
    day: str
    key: str
    corrects: str | None
    txn_id: str
    cents: int  # the wallet posting (negative: money added to the wallet)


def wallet_postings(db: sqlite_utils.Database, customer: str) -> list[HistoryRow]:
    """Every posting to the customer's wallet, in the order of its history."""
    wallet = accounts.wallet_account(accounts.customer_segment(customer))
    rows = db.execute(
        "SELECT t.effective_day, t.key, t.corrects, t.txn_id, p.amount "
        "FROM postings p JOIN transactions t ON t.txn_id = p.txn_id "
        # Within a day, money added comes before money spent: the day's charges were
        # covered by that day's credits (corrections included), so no line shows a
        # balance below zero that the wallet never had at the end of a posting day.
        "WHERE p.customer = ? AND p.account = ? "
        "ORDER BY t.effective_day, p.amount > 0, t.run_id, t.position",
        [customer, wallet],
    ).fetchall()
    return [HistoryRow(*row) for row in rows]


class PostingRow(NamedTuple):
    customer: str
    day: str  # the effective day
    txn_id: str
    key: str
    account: str
    cents: int


def subledger_postings(db: sqlite_utils.Database, through: str | None = None):
    """Every subledger posting (up to a day), in posting order: for the finance reports."""
    where, params = ("AND p.effective_day <= ?", [through]) if through else ("", [])
    rows = db.execute(
        "SELECT p.customer, p.effective_day, p.txn_id, p.key, p.account, p.amount "
        "FROM postings p JOIN transactions t ON t.txn_id = p.txn_id "
        f"WHERE p.ledger = 'sub' {where} ORDER BY p.effective_day, t.run_id, t.position",
        params,
    )
    return [PostingRow(*row) for row in rows]


def open_lots(db: sqlite_utils.Database) -> list[tuple[str, Lot]]:
    """Every lot with money left, by last valid day, customer and lot."""
    rows = db.execute(
        "SELECT customer, lot_id, kind, day, last_valid, amount, remainder FROM lots "
        "WHERE remainder > 0 ORDER BY last_valid, customer, lot_id"
    )
    return [
        (row[0], Lot(row[1], row[2], _date(row[3]), _date(row[4]), row[5], row[6])) for row in rows
    ]


# -------------------------------------------------------------------- journal files


def recorded_files(db: sqlite_utils.Database) -> dict[str, JournalFile]:
    """Every journal file the store knows, as recorded at the last commit."""
    return {
        path: JournalFile(length, sha, month, bool(sealed))
        for path, length, sha, month, sealed in db.execute(
            "SELECT path, length, sha256, month, sealed FROM journal_files"
        )
    }


def record_files(db: sqlite_utils.Database, files: dict[str, JournalFile]) -> None:
    """Records journal files after a run's appends (new ones, or longer, never sealed)."""
    db.conn.executemany(
        "INSERT OR REPLACE INTO journal_files (path, length, sha256, month, sealed) "
        "VALUES (?, ?, ?, ?, 0)",
        [(path, f.length, f.sha256, f.month) for path, f in sorted(files.items())],
    )


def months_with_files_before(db: sqlite_utils.Database, month: str) -> list[str]:
    return [
        row[0]
        for row in db.execute(
            "SELECT DISTINCT month FROM journal_files WHERE month IS NOT NULL AND month < ? "
            "ORDER BY month",
            [month],
        )
    ]


def month_files(db: sqlite_utils.Database, month: str) -> dict[str, str]:
    """A month's journal files with their recorded SHA-256, by path."""
    return dict(
        db.execute("SELECT path, sha256 FROM journal_files WHERE month = ? ORDER BY path", [month])
    )


def seal_month(db: sqlite_utils.Database, month: str) -> dict[str, str]:
    """Marks a month's files sealed; returns their recorded SHA-256 by path."""
    files = month_files(db, month)
    db.execute("UPDATE journal_files SET sealed = 1 WHERE month = ?", [month])
    return files


def rejections_since(db: sqlite_utils.Database, since_run: int) -> list[tuple[str, int | None]]:
    """``(reason, cents)`` of each rejection given by a run after ``since_run``: the
    schema's (the money of its line, where the line says one) and rating's (the event's)."""
    found: list[tuple[str, int | None]] = []
    for reason, raw in db.execute(
        "SELECT reason, raw FROM quarantine WHERE run_id > ?", [since_run]
    ):
        found.append((reason, _amount_of_raw(raw)))
    amount_at = EVENT_TYPED_FIELDS.index("amount")
    for reason, fields in db.execute(
        "SELECT v.reason, e.fields FROM verdicts v JOIN events e ON e.id_key = v.event_key "
        "AND e.id = v.event_id WHERE v.run_id > ?",
        [since_run],
    ):
        typed = _padded(orjson.loads(fields))
        found.append((reason, typed[amount_at]))
    return found


def _amount_of_raw(raw: str) -> int | None:
    """The money a rejected line names as ``amount``, when it is plain money; else None."""
    try:
        amount = orjson.loads(raw).get("amount")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None
    text = str(amount) if isinstance(amount, int | str) and not isinstance(amount, bool) else ""
    match = re.fullmatch(r"([0-9]{1,12})(?:\.([0-9]{1,2}))?", text)
    if not match:
        return None
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def late_events_since(db: sqlite_utils.Database, since_run: int) -> list[tuple[str, str]]:
    """``(event id, day)`` of each event a post after ``since_run`` ingested for a day an
    earlier post had already posted."""
    throughs = [
        (run_id, through)
        for run_id, through in db.execute(
            "SELECT run_id, through FROM runs WHERE command = 'post' ORDER BY run_id"
        )
    ]
    posted_before: dict[int, str] = {}  # post run -> the last day posted before it
    last = None
    for run_id, through in throughs:
        if last is not None:
            posted_before[run_id] = last
        last = max(last or through, through) if through else last
    late = [
        (event_id, day)
        for event_id, day, run_id in db.execute(  # one pass over the events since then
            "SELECT id, day, run_id FROM events WHERE run_id > ?", [since_run]
        )
        if run_id in posted_before and day <= posted_before[run_id]
    ]
    return sorted(late, key=lambda item: (item[1], item[0]))


# ------------------------------------------------------------------- closed months


def closed_months(db: sqlite_utils.Database) -> list[str]:
    return [row[0] for row in db.execute("SELECT month FROM closed_months ORDER BY month")]


class ClosedMonth(NamedTuple):
    month: str
    files: dict[str, str]  # path -> SHA-256 recorded when the month was sealed
    run_id: int


def closed_month_records(db: sqlite_utils.Database) -> list[ClosedMonth]:
    """Every closed month with the file hashes its seal covers, in the order closed."""
    return [
        ClosedMonth(month, json.loads(files), run_id)
        for month, files, run_id in db.execute(
            "SELECT month, files, run_id FROM closed_months ORDER BY month"
        )
    ]


def closed_month_times(db: sqlite_utils.Database) -> list[tuple]:
    """``(month, closed_at, run_id)`` of every closed month."""
    return db.execute(
        "SELECT month, closed_at, run_id FROM closed_months ORDER BY month"
    ).fetchall()


def first_open_day(db: sqlite_utils.Database) -> datetime.date | None:
    """The first day of the month after the last closed month (None if none is closed)."""
    row = db.execute("SELECT max(month) FROM closed_months").fetchone()
    if not row or row[0] is None:
        return None
    year, month = int(row[0][:4]), int(row[0][5:])
    return datetime.date(year + month // 12, month % 12 + 1, 1)


def record_closed_month(db, month: str, closed_at: str, run_id: int, files: dict) -> None:
    db["closed_months"].insert(
        {
            "month": month,
            "closed_at": closed_at,
            "run_id": run_id,
            "files": json.dumps(files, sort_keys=True),
        }
    )


# --------------------------------------------------------------------------- trace


class TxnRow(NamedTuple):
    """A posted transaction (a GL summary or a subledger entry) as the store holds it."""

    txn_id: str
    ledger: str  # "gl" or "sub"
    customer: str | None
    orig_day: str
    key: str
    seq: int
    effective_day: str
    late: int
    corrects: str | None
    file: str
    run_id: int
    position: int
    narration: str


_TXN_COLUMNS = ", ".join(TxnRow._fields)


def transaction(db: sqlite_utils.Database, txn_id: str) -> TxnRow | None:
    row = db.execute(f"SELECT {_TXN_COLUMNS} FROM transactions WHERE txn_id = ?", [txn_id])
    found = row.fetchone()
    return TxnRow(*found) if found else None


def transactions_of_link(db: sqlite_utils.Database, link: str) -> list[TxnRow]:
    """Every subledger entry of a link (``<segment>.<day>.<key>``): original and corrections."""
    # Ids are ``<link>.<seq>``: a range of the primary key ('/' sorts right after '.').
    rows = db.execute(
        f"SELECT {_TXN_COLUMNS} FROM transactions WHERE txn_id > ? AND txn_id < ? "
        "AND ledger = 'sub' ORDER BY seq",
        [link + ".", link + "/"],
    )
    return [TxnRow(*row) for row in rows if row[0].rsplit(".", 1)[0] == link]


def entries_of_day(db: sqlite_utils.Database, summary: TxnRow) -> list[TxnRow]:
    """The subledger entries of a GL summary's run and day (of every kind of movement)."""
    rows = db.execute(
        f"SELECT {_TXN_COLUMNS} FROM transactions WHERE ledger = 'sub' AND run_id = ? "
        "AND effective_day = ? ORDER BY position",
        [summary.run_id, summary.effective_day],
    )
    return [TxnRow(*row) for row in rows]


def postings_of(db: sqlite_utils.Database, txn_id: str) -> list[tuple[str, int]]:
    return db.execute(
        "SELECT account, amount FROM postings WHERE txn_id = ? ORDER BY rowid", [txn_id]
    ).fetchall()


_LOT_COLUMNS = "customer, lot_id, kind, day, last_valid, amount, remainder"


def _lot_of_row(row) -> tuple[str, Lot]:
    return row[0], Lot(row[1], row[2], _date(row[3]), _date(row[4]), row[5], row[6])


def lots_named(db: sqlite_utils.Database, lot_id: str) -> list[tuple[str, Lot]]:
    """Every customer's lot of this id (lot ids are per customer), by customer."""
    rows = db.execute(
        f"SELECT {_LOT_COLUMNS} FROM lots WHERE lot_id = ? ORDER BY customer", [lot_id]
    )
    return [_lot_of_row(row) for row in rows]


def lot_of(db: sqlite_utils.Database, customer: str, lot_id: str) -> Lot | None:
    row = db.execute(
        f"SELECT {_LOT_COLUMNS} FROM lots WHERE customer = ? AND lot_id = ?", [customer, lot_id]
    ).fetchone()
    return _lot_of_row(row)[1] if row else None


def entries_between(db: sqlite_utils.Database, customer: str, first: str, last: str):
    """A customer's subledger entries whose original day is from ``first`` to ``last``
    (corrections included), in posting order."""
    rows = db.execute(
        f"SELECT {_TXN_COLUMNS} FROM transactions WHERE customer = ? AND orig_day >= ? "
        "AND orig_day <= ? AND ledger = 'sub' ORDER BY effective_day, run_id, position",
        [customer, first, last],
    )
    return [TxnRow(*row) for row in rows]


def journal_file(db: sqlite_utils.Database, path: str) -> JournalFile | None:
    """What the store recorded of one journal file at the last commit."""
    row = db.execute(
        "SELECT length, sha256, month, sealed FROM journal_files WHERE path = ?", [path]
    ).fetchone()
    return JournalFile(row[0], row[1], row[2], bool(row[3])) if row else None


class Classification(NamedTuple):
    """A conversation as one run classified it."""

    conversation: str
    run_id: int  # the run that classified it so (0: before history was kept)
    day: str
    period_start: str
    kind: str
    status: str
    price: int
    rules_version: str


def classifications_as_of(
    db: sqlite_utils.Database, customer: str, run_id: int
) -> dict[str, Classification]:
    """Each conversation of a customer as run ``run_id`` saw it: its latest classification
    at or before that run, from its history rows and its current row (which holds the run
    that classified it so; run 0: books from before schema 3)."""
    seen: dict[str, Classification] = {}
    for row in db.execute(
        f"SELECT conversation, run_id, {_CLASSIFICATION} FROM conversation_history "
        "WHERE customer = ? AND run_id <= ? ORDER BY run_id",
        [customer, run_id],
    ):
        seen[row[0]] = Classification(*row)
    for row in db.execute(
        f"SELECT conversation, run_id, {_CLASSIFICATION} FROM conversations "
        "WHERE customer = ? AND run_id <= ?",
        [customer, run_id],
    ):
        if row[0] not in seen or row[1] >= seen[row[0]].run_id:
            seen[row[0]] = Classification(*row)
    return seen


def conversation_customers(db: sqlite_utils.Database, conversation: str) -> list[str]:
    """The customers that have a conversation of this id (ids are per customer)."""
    rows = db.execute(
        "SELECT DISTINCT customer FROM conversation_history WHERE conversation = ? UNION "
        "SELECT customer FROM conversations WHERE conversation = ? ORDER BY 1",
        [conversation, conversation],
    )
    return [row[0] for row in rows]


def conversation_history(
    db: sqlite_utils.Database, customer: str, conversation: str
) -> list[Classification]:
    """Every classification of a conversation, by run (one if it never changed)."""
    history = [
        Classification(*row)
        for row in db.execute(
            f"SELECT conversation, run_id, {_CLASSIFICATION} FROM conversation_history "
            "WHERE customer = ? AND conversation = ? ORDER BY run_id",
            [customer, conversation],
        )
    ]
    current = db.execute(
        f"SELECT conversation, run_id, {_CLASSIFICATION} FROM conversations "
        "WHERE customer = ? AND conversation = ?",
        [customer, conversation],
    ).fetchone()
    if current is not None and (not history or current[1] > history[-1].run_id):
        history.append(Classification(*current))
    return history


class RawEvent(NamedTuple):
    """A stored event with its evidence: where it was read and the line as read."""

    id: str
    type: str
    customer: str
    day: str
    file: str
    line: int
    raw: str
    run_id: int  # the run that read it


_RAW_COLUMNS = "id, type, customer, day, block, line, run_id"


def _raw_events(db, rows) -> list[RawEvent]:
    read = _BlockReader(db)
    result = []
    for event_id, event_type, customer, day, block, line, run_id in rows:
        file, raw = read(block, line)
        result.append(RawEvent(event_id, event_type, customer, day, file, line, raw, run_id))
    return result


def raw_event(db: sqlite_utils.Database, event_id: str) -> RawEvent | None:
    where, parameters = _by_id([event_id])
    rows = db.execute(f"SELECT {_RAW_COLUMNS} FROM events WHERE {where}", parameters).fetchall()
    return _raw_events(db, rows)[0] if rows else None


def raw_events_of_conversation(db, customer: str, conversation: str) -> list[RawEvent]:
    rows = db.execute(
        f"SELECT {_RAW_COLUMNS} FROM ({own_view('v_events')}) WHERE customer = ? "
        "AND conversation = ? "
        "ORDER BY at, id",
        [customer, conversation],
    ).fetchall()
    return _raw_events(db, rows)


def raw_events_of_day(db, customer: str, day: str, event_type: str) -> list[tuple[RawEvent, Event]]:
    """A customer's events of one type and booking day: the evidence and the typed event."""
    rows = db.execute(
        f"SELECT {_RAW_COLUMNS}, at, fields FROM events WHERE customer = ? AND day = ? "
        "AND type = ? ORDER BY at, id",
        [customer, day, event_type],
    ).fetchall()
    raws = _raw_events(db, [row[:-2] for row in rows])
    return [
        (raw, _event_of(raw.id, raw.type, customer, row[-2], day, row[-1]))
        for raw, row in zip(raws, rows, strict=True)
    ]


# ------------------------------------------------------------ rejections, checks


REJECTION_COLUMNS = ("kind", "file", "line", "reason", "field", "detail", "event_id", "raw")


def rejections(db: sqlite_utils.Database) -> list[dict]:
    """Schema verdicts (final), then the current rating verdicts, by file and line."""
    schema = db.execute(
        "SELECT 'schema', file, line, reason, field, detail, event_id, raw FROM quarantine "
        "ORDER BY file, line"
    ).fetchall()
    read = _BlockReader(db)
    rating = []
    for block, line, reason, event_id in db.execute(
        "SELECT e.block, e.line, v.reason, v.event_id FROM verdicts v "
        "JOIN events e ON e.id_key = v.event_key AND e.id = v.event_id"
    ):
        file, raw = read(block, line)
        rating.append(("rating", file, line, reason, None, "", event_id, raw))
    rating.sort(key=lambda row: (row[1], row[2]))
    return [dict(zip(REJECTION_COLUMNS, row, strict=True)) for row in schema + rating]


def own_view(name: str) -> str:
    """The SQL of one of the engine's views, to run as a query of its own: the engine never
    reads a view of the store, which someone may have redefined (SPEC v3 §6)."""
    return VIEWS[name].strip()


def unrated_usage_events(db: sqlite_utils.Database) -> list[str]:
    """Accepted suggested-reply or autopilot events with no rated conversation."""
    return _first_column(
        db,
        f"SELECT e.id FROM ({own_view('v_events')}) e LEFT JOIN verdicts v ON v.event_id = e.id "
        "LEFT JOIN conversations c ON c.customer = e.customer "
        "AND c.conversation = e.conversation WHERE e.type = 'ai_usage' "
        "AND e.feature != 'playground' AND v.event_id IS NULL AND c.conversation IS NULL",
    )


def usage_vs_postings(db: sqlite_utils.Database) -> list[tuple]:
    return db.execute(own_view("v_usage_vs_postings")).fetchall()


def wallet_balances(db: sqlite_utils.Database) -> list[tuple[str, int, int, int]]:
    """``(customer, wallet, lots, receivable)`` in cents for every customer."""
    return db.execute(own_view("v_wallet_balances")).fetchall()


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """What reconcile checked: journal files, runs, conversations, sealed files."""
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "journal_files": one("SELECT count(*) FROM journal_files"),
        "runs": one("SELECT count(*) FROM runs"),
        "conversations": one("SELECT count(*) FROM conversations"),
        "sealed_files": one("SELECT count(*) FROM journal_files WHERE sealed = 1"),
    }
