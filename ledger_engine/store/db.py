"""Opening and creating the store (``state.sqlite``): schema, pragmas, meta, bulk inserts.

Amounts are integer cents.  Every table is written inside the one transaction of a run, so
the store is always as before a run or as after it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import sqlite_utils

from ledger_engine.core.errors import NoBooks, StoreError, StoreSchemaMismatch, StoreTampered
from ledger_engine.core.model import EVENT_TYPED_FIELDS
from ledger_engine.store import queries as queries_module
from ledger_engine.store import views
from ledger_engine.store.queries import (
    BLOCK_LEVEL,
    EVENT_INSERT,
    content_key_of_hex,
    get_meta,
    id_key,
    insert_block,
    set_meta,
)
from ledger_engine.store.runlog import next_run_id
from ledger_engine.store.schema import SCHEMA_SQL
from ledger_engine.store.schema_check import first_lines, schema_differences

STORE_NAME = "state.sqlite"
SCHEMA_VERSION = "5"
# Older schemas this engine upgrades in place.  2 -> 3 only adds conversation_history
# (empty: classifications before the upgrade were not kept; trace says so); 3 -> 4 adds the
# checkpoints (empty: the next run of each customer derives from its first event) and moves
# the events' raw lines into input_blocks (see _lean_events); 4 -> 5 tells a subscription's
# omitted commitment from a commitment of 0 (SPEC v3: a later subscription carries omitted
# terms over; see _subscription_commitments), adds customers.pending_from, the run log's
# details, the rules texts and the state digests, and each input's size and first-chunk hash
# (NULL for inputs before: such an input re-posted is read whole once, then recorded with
# them).  A reader never upgrades (it may be on a read-only copy): it names the older schema.
UPGRADABLE = ("2", "3", "4")
# SQLite errors that come from the machine, not from the engine's SQL: a full disk, an I/O
# error, a damaged or foreign file, no permission.  These are expected failures.
ENVIRONMENT_ERRORS = frozenset(
    {
        "SQLITE_FULL",
        "SQLITE_IOERR",
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
        "SQLITE_READONLY",
        "SQLITE_CANTOPEN",
        "SQLITE_PERM",
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
    }
)


# A store of the right schema version that lacks a table or column was damaged by hand.
MISSING_SCHEMA = ("no such table", "no such column")


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Turns SQLite errors caused by the machine into :class:`StoreError`; a SQLite error
    caused by the engine's own SQL stays what it is (a bug, with its traceback)."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        name = getattr(error, "sqlite_errorname", None) or ""
        if "_".join(name.split("_")[:2]) in ENVIRONMENT_ERRORS:  # SQLITE_IOERR_WRITE too
            raise StoreError(f"the store: {error}") from error
        if str(error).startswith(MISSING_SCHEMA):  # a table or column dropped by hand
            raise StoreError(f"the store is damaged: {error}") from error
        raise


def _pragmas(db: sqlite_utils.Database) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    # WAL with synchronous=NORMAL: a killed process never loses a committed run; a power
    # cut can undo the last committed run as a whole (its journal tails are then truncated
    # and the next run posts it again), never half of it.  FULL made a million-event night
    # wait for hundreds of MB of WAL to reach the disk.
    db.execute("PRAGMA synchronous=NORMAL")
    # A run is one transaction; a large page cache keeps index pages of a big night in
    # memory instead of spilling them to the WAL again and again (bounded: 128 MiB; a first
    # night loads its events without indexes, and 256 MiB measured no faster).
    db.execute("PRAGMA cache_size=-131072")


def require_store(books_dir: Path) -> Path:
    """The path of the store of ``books_dir``; :class:`NoBooks` if there is none."""
    path = Path(books_dir) / STORE_NAME
    if not path.is_file():
        raise NoBooks(f"{books_dir} holds no books (no {STORE_NAME}); run init first")
    return path


def _defend(conn: sqlite3.Connection) -> None:
    """SQLite's advice for a file someone else may have written: no function a schema
    object names runs unless it is safe (``trusted_schema``)."""
    conn.execute("PRAGMA trusted_schema=OFF")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``); on a copy whose folder cannot be written (a
    read-only mount, an archive), ``immutable=1``: nothing can change it there, and SQLite
    then needs no shared-memory file beside it."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(
            f"the store of a read-only copy has a write-ahead log ({wal.name}) a reader "
            "cannot apply; copy the books to writable storage to read them"
        )
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)


def open_read_only(books_dir: Path) -> sqlite_utils.Database:
    """A read-only connection to the store: what runs have committed, nothing written by
    one in progress (WAL), for a second reader of the same run (the worker process)."""
    path = require_store(books_dir)
    conn = _connect_read_only(path)
    _defend(conn)
    return sqlite_utils.Database(conn)


def open_store(
    books_dir: Path, read_only: bool = False, check_schema: bool = True
) -> sqlite_utils.Database:
    """Opens the store of the books at ``books_dir``.

    Args:
        books_dir: the books.
        read_only: for a command that only reads: never writes the store (an older
            schema is then refused, not upgraded) and works on a read-only copy.
        check_schema: refuse a store whose schema is not the engine's (``reconcile``
            reports the differences instead, :func:`schema_differences`).

    Raises:
        NoBooks: there is no store (``init`` was not run there).
        StoreSchemaMismatch: the store has another schema version.
        StoreTampered: the store's schema is not the engine's own.
        StoreError: the file is not a readable store.
    """
    path = require_store(books_dir)
    _refuse_links_beside(path)
    with store_errors():
        if read_only:
            db = sqlite_utils.Database(_connect_read_only(path))
        else:
            db = sqlite_utils.Database(path)
        _defend(db.conn)
        version = get_meta(db, "schema_version")
        if version in UPGRADABLE and not read_only:
            _upgrade(db, version)
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            db.close()
            raise StoreSchemaMismatch(
                f"{books_dir} was made with store schema {version}, this ledger-engine reads "
                f"schema {SCHEMA_VERSION}"
                + (
                    "; a post upgrades it (a read-only copy cannot be)"
                    if version in UPGRADABLE
                    else "; there is no migration between them"
                )
            )
        if check_schema and (found := schema_differences(db.conn)):
            db.close()
            raise StoreTampered(
                f"the store's schema is not the engine's own: {first_lines(found)}; "
                "ledger-engine reconcile lists the differences"
            )
        if not read_only:
            _pragmas(db)
    return db


def _refuse_links_beside(path: Path) -> None:
    """The store and SQLite's files beside it must be files of the books, not links: SQLite
    follows a link, and would write its log into whatever a planted ``-wal`` link names."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.is_symlink():
            raise StoreTampered(
                f"{candidate.name} in the books is a symbolic link; the engine never opens "
                "the store through one (remove it)"
            )


def _upgrade(db: sqlite_utils.Database, version: str) -> None:
    """Brings a store of an older schema to this one, in one transaction (every statement
    of schema.sql is IF NOT EXISTS: it adds the tables a later schema adds)."""
    before_4 = version in ("2", "3")
    rename = (
        "DROP INDEX IF EXISTS events_customer;\nDROP VIEW IF EXISTS v_events;\n"
        "ALTER TABLE events RENAME TO events_before_4;\n"
    )
    # executescript commits first: the script opens the upgrade's transaction itself.
    db.conn.executescript("BEGIN;\n" + (rename if before_4 else "") + SCHEMA_SQL)
    if before_4:
        _upgrade_to_4(db)
    _add_column(db, "customers", "pending_from", "TEXT")
    _add_column(db, "runs", "details", "TEXT NOT NULL DEFAULT '{}'")
    _add_column(db, "input_files", "bytes", "INTEGER")  # the first look (store.queries)
    _add_column(db, "input_files", "head", "TEXT")
    _subscription_commitments(db)
    # Runs before this one recorded no row digests, and customers derived before it have
    # no state digest until a run derives them again (reconcile allows that).
    set_meta(db, "upgraded_to_5", str(next_run_id(db)))
    views.create_views(db)
    set_meta(db, "schema_version", SCHEMA_VERSION)
    db.conn.commit()


def _add_column(db: sqlite_utils.Database, table: str, column: str, definition: str) -> bool:
    """Adds a column a later schema has; returns whether it was missing."""
    if column in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
        return False
    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    return True


def _upgrade_to_4(db: sqlite_utils.Database) -> None:
    """Schema 4: the lean events table, the run of a conversation's classification, the
    id key of a verdict's event."""
    _lean_events(db)
    _add_column(db, "conversations", "run_id", "INTEGER NOT NULL DEFAULT 0")
    if _add_column(db, "verdicts", "event_key", "INTEGER NOT NULL DEFAULT 0"):
        db.conn.executemany(
            "UPDATE verdicts SET event_key = ? WHERE event_id = ?",
            [(id_key(row[0]), row[0]) for row in db.execute("SELECT event_id FROM verdicts")],
        )


def _subscription_commitments(db: sqlite_utils.Database) -> None:
    """Stores before schema 5 kept an omitted ``commitment`` as 0: each subscription's raw
    line says whether it had one (subscriptions are few; their lines are in input_blocks)."""
    read = queries_module._BlockReader(db)
    at = EVENT_TYPED_FIELDS.index("commitment")
    changed = []
    for rowid, block, line, fields in db.execute(
        "SELECT rowid, block, line, fields FROM events WHERE type = 'subscription'"
    ).fetchall():
        document = orjson.loads(read(block, line)[1])
        typed = list(orjson.loads(fields))
        if "commitment" not in document and len(typed) > at and typed[at] is not None:
            typed[at] = None
            changed.append((queries_module.stored_fields(tuple(typed)), rowid))
    db.conn.executemany("UPDATE events SET fields = ? WHERE rowid = ?", changed)


def _lean_events(db: sqlite_utils.Database) -> None:
    """Moves the events of a store before schema 4 into the lean table.  Their raw lines go
    into one block per file name and run, lines numbered as read (the lines that were no
    event, which that schema did not keep, are empty); such blocks have no input hash."""
    groups: dict[tuple[str, int], dict[int, str]] = {}
    for file, run_id, line, raw in db.execute(
        "SELECT file, run_id, line, raw FROM events_before_4 ORDER BY file, run_id, line"
    ):
        groups.setdefault((file, run_id), {})[line] = raw
    blocks = {}
    for block, ((file, run_id), lines) in enumerate(sorted(groups.items()), start=1):
        first = min(lines)
        text = "\n".join(lines.get(n, "") for n in range(first, max(lines) + 1))
        data = zlib.compress(text.encode("utf-8"), BLOCK_LEVEL)
        insert_block(db, block, file, first, data)  # no input hash: not a whole file
        blocks[(file, run_id)] = block
    db.conn.executemany(
        EVENT_INSERT,
        (
            (id_, id_key(id_), type_, customer, at, day, fields, content_key_of_hex(sha),
             blocks[(file, run)], line, run)
            for id_, type_, customer, at, day, fields, sha, file, line, run in db.execute(
                "SELECT id, type, customer, at, day, fields, content_sha, file, line, run_id "
                "FROM events_before_4"
            )
        ),
    )  # fmt: skip
    db.execute("DROP TABLE events_before_4")
    set_meta(db, "upgraded_from_3", "input files before the upgrade are kept as event lines")


def create_store(books_dir: Path, meta: dict[str, str]) -> sqlite_utils.Database:
    """Creates the store of new books: tables, views and meta, in one transaction."""
    db = sqlite_utils.Database(Path(books_dir) / STORE_NAME)
    db.execute("PRAGMA journal_mode=WAL")
    db.conn.executescript("BEGIN;\n" + SCHEMA_SQL)
    views.create_views(db)
    for key, value in {"schema_version": SCHEMA_VERSION, **meta}.items():
        set_meta(db, key, value)
    db.conn.commit()
    return db


def ensure_views(db: sqlite_utils.Database) -> None:
    """Creates the views that books made by an older engine lack."""
    if set(views.VIEWS) - set(db.view_names()):
        views.create_views(db)
