"""Opening and creating the store (``state.sqlite``): schema, pragmas, meta, bulk inserts.

Amounts are integer cents.  Every table is written inside the one transaction of a run, so
the store is always as before a run or as after it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from ledger_engine.core.errors import NoBooks, StoreError, StoreSchemaMismatch
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

STORE_NAME = "state.sqlite"
SCHEMA_VERSION = "5"
# Older schemas this engine upgrades in place.  2 -> 3 only adds conversation_history
# (empty: classifications before the upgrade were not kept; trace says so); 3 -> 4 adds the
# checkpoints (empty: the next run of each customer derives from its first event) and moves
# the events' raw lines into input_blocks (see _lean_events); 4 -> 5 adds each input's size
# and first-chunk hash (NULL for inputs before: such an input re-posted is read whole once,
# then recorded with them).
UPGRADABLE = ("2", "3")
# Schemas read as they are, upgraded by the next run that writes (inside its transaction),
# so that books of schema 4 on a read-only disk stay readable: 4 lacks only what writers use.
UPGRADED_BY_WRITERS = ("4",)
SCHEMA_SQL = Path(__file__).with_name("schema.sql").read_text(encoding="utf-8")
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


def open_read_only(books_dir: Path) -> sqlite_utils.Database:
    """A read-only connection to the store: what runs have committed, nothing written by
    one in progress (WAL), for a second reader of the same run (the worker process)."""
    path = require_store(books_dir).resolve()
    return sqlite_utils.Database(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True))


def open_store(books_dir: Path) -> sqlite_utils.Database:
    """Opens the store of the books at ``books_dir``.

    Raises:
        NoBooks: there is no store (``init`` was not run there).
        StoreSchemaMismatch: the store has another schema version.
        StoreError: the file is not a readable store.
    """
    path = require_store(books_dir)
    with store_errors():
        db = sqlite_utils.Database(path)
        version = get_meta(db, "schema_version")
        if version in UPGRADABLE:
            _upgrade(db)
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION and version not in UPGRADED_BY_WRITERS:
            db.close()
            raise StoreSchemaMismatch(
                f"{books_dir} was made with store schema {version}, this ledger-engine reads "
                f"schema {SCHEMA_VERSION}; there is no migration between them"
            )
        _pragmas(db)
    return db


def _upgrade(db: sqlite_utils.Database) -> None:
    """Adds what later schemas add (every statement of schema.sql is IF NOT EXISTS) and
    rebuilds the events table of schema 4, in one transaction."""
    db.conn.executescript(
        "BEGIN;\nDROP INDEX IF EXISTS events_customer;\nDROP VIEW IF EXISTS v_events;\n"
        "ALTER TABLE events RENAME TO events_before_4;\n" + SCHEMA_SQL
    )
    _lean_events(db)
    columns = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
    if "run_id" not in columns:
        db.execute("ALTER TABLE conversations ADD COLUMN run_id INTEGER NOT NULL DEFAULT 0")
    columns = {row[1] for row in db.execute("PRAGMA table_info(verdicts)")}
    if "event_key" not in columns:
        db.execute("ALTER TABLE verdicts ADD COLUMN event_key INTEGER NOT NULL DEFAULT 0")
        db.conn.executemany(
            "UPDATE verdicts SET event_key = ? WHERE event_id = ?",
            [(id_key(row[0]), row[0]) for row in db.execute("SELECT event_id FROM verdicts")],
        )
    _add_input_looks(db)
    views.create_views(db)
    set_meta(db, "schema_version", SCHEMA_VERSION)
    db.conn.commit()


def _add_input_looks(db: sqlite_utils.Database) -> None:
    """Schema 5's columns of input_files (see schema.sql), if the table lacks them."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(input_files)")}
    for column, kind in (("bytes", "INTEGER"), ("head", "TEXT")):
        if column not in columns:
            db.execute(f"ALTER TABLE input_files ADD COLUMN {column} {kind}")


def upgrade_for_writing(db: sqlite_utils.Database) -> None:
    """Brings a store of an older schema that readers take as it is (UPGRADED_BY_WRITERS)
    to this one, inside the writing run's transaction (so a failed run leaves it as it was)."""
    if get_meta(db, "schema_version") in UPGRADED_BY_WRITERS:
        _add_input_looks(db)
        set_meta(db, "schema_version", SCHEMA_VERSION)


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
