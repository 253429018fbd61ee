"""Opening and creating the store (``state.sqlite``): schema, pragmas, meta, bulk inserts.

Amounts are integer cents.  Every table is written inside the one transaction of a run, so
the store is always as before a run or as after it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from ledger_engine.core.errors import NoBooks, StoreError, StoreSchemaMismatch
from ledger_engine.store import views
from ledger_engine.store.queries import get_meta, set_meta

STORE_NAME = "state.sqlite"
SCHEMA_VERSION = "4"
# Older schemas this engine upgrades in place.  2 -> 3 only adds conversation_history
# (empty: classifications before the upgrade were not kept; trace says so); 3 -> 4 adds the
# checkpoints (empty: the next run of each customer derives from its first event) and
# indexes events by (customer, day) instead of customer.
UPGRADABLE = ("2", "3")
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
    # memory instead of spilling them to the WAL again and again (bounded: 256 MiB).
    db.execute("PRAGMA cache_size=-262144")


def require_store(books_dir: Path) -> Path:
    """The path of the store of ``books_dir``; :class:`NoBooks` if there is none."""
    path = Path(books_dir) / STORE_NAME
    if not path.is_file():
        raise NoBooks(f"{books_dir} holds no books (no {STORE_NAME}); run init first")
    return path


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
        if version != SCHEMA_VERSION:
            db.close()
            raise StoreSchemaMismatch(
                f"{books_dir} was made with store schema {version}, this ledger-engine reads "
                f"schema {SCHEMA_VERSION}; there is no migration between them"
            )
        _pragmas(db)
    return db


def _upgrade(db: sqlite_utils.Database) -> None:
    """Adds what later schemas add (every statement of schema.sql is IF NOT EXISTS)."""
    db.conn.executescript("BEGIN;\n" + SCHEMA_SQL + "DROP INDEX IF EXISTS events_customer;\n")
    views.create_views(db)
    set_meta(db, "schema_version", SCHEMA_VERSION)
    db.conn.commit()


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
