"""Is the store the engine's own?  Its schema compared with the engine's (SPEC v3 §6).

Someone who can write the store can redefine a view so that a check sees nothing, or add
a trigger that deletes rows as a run inserts them.  So every command compares the store's
``sqlite_master`` with the schema the engine would create: the tables with their columns,
the indexes with their columns, the views with their SQL, and no trigger at all.  Anything
extra, missing or different is a difference; the writers refuse, ``reconcile`` lists it.
SQLite's own statistics tables (``ANALYZE``) are allowed: they change no result.

The comparison is structural (columns as ``PRAGMA table_info`` gives them), so a store that
an upgrade brought to this schema with ``ALTER TABLE`` matches one made new.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable

import sqlite_utils

from ledger_engine.store import views
from ledger_engine.store.schema import SCHEMA_SQL

_INTERNAL = ("sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_of(conn: sqlite3.Connection) -> dict[tuple[str, str], object]:
    """Every object of a database by (type, name): a table's columns, an index's table,
    uniqueness and columns, a view's or trigger's SQL."""
    found: dict[tuple[str, str], object] = {}
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    for kind, name, table, sql in rows:
        if name in _INTERNAL:
            continue
        if kind == "table":
            columns = conn.execute(f"PRAGMA table_info({_quoted(name)})").fetchall()
            found[(kind, name)] = tuple(tuple(column[1:]) for column in columns)
        elif kind == "index":
            unique = [row[2] for row in conn.execute(f"PRAGMA index_list({_quoted(table)})")
                      if row[1] == name]  # fmt: skip
            columns = tuple(c[2] for c in conn.execute(f"PRAGMA index_info({_quoted(name)})"))
            if name.startswith("sqlite_autoindex_") and columns == _primary_key(conn, table):
                continue  # the primary key's own index (a table of an older schema has rowid)
            found[(kind, name)] = (table, tuple(unique), columns)
        else:  # a view or a trigger: its text is what it does
            found[(kind, name)] = " ".join((sql or "").split())
    return found


def _primary_key(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    columns = [row for row in conn.execute(f"PRAGMA table_info({_quoted(table)})") if row[5]]
    return tuple(row[1] for row in sorted(columns, key=lambda row: row[5]))


@functools.lru_cache(maxsize=1)
def expected_schema() -> dict[tuple[str, str], object]:
    """The schema the engine creates: its tables and views in a database in memory."""
    db = sqlite_utils.Database(memory=True)
    db.conn.executescript(SCHEMA_SQL)
    views.create_views(db)
    try:
        return schema_of(db.conn)
    finally:
        db.close()


def schema_differences(conn: sqlite3.Connection) -> list[str]:
    """How the store's schema differs from the engine's, one line each (empty: it is the
    engine's own)."""
    found, expected = schema_of(conn), expected_schema()
    lines = []
    for kind, name in sorted(set(found) | set(expected)):
        if (kind, name) not in expected:
            lines.append(f"{kind} {name} is not the engine's")
        elif (kind, name) not in found:
            lines.append(f"{kind} {name} is missing")
        elif found[(kind, name)] != expected[(kind, name)]:
            lines.append(f"{kind} {name} is not defined as the engine defines it")
    return lines


def first_lines(lines: Iterable[str], count: int = 3) -> str:
    lines = list(lines)
    more = f" (and {len(lines) - count} more)" if len(lines) > count else ""
    return "; ".join(lines[:count]) + more
