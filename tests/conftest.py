"""Fixtures only (as sqlite-utils' conftest does): fresh books, a poster on them, and an
empty store in memory.  Builders and readers are in builders.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils
from builders import Poster, init_books

from ledger_engine.store import views
from ledger_engine.store.schema import SCHEMA_SQL


@pytest.fixture
def books(tmp_path) -> Path:
    return init_books(tmp_path / "books")


@pytest.fixture
def poster(books, tmp_path) -> Poster:
    scratch = tmp_path / "events"
    scratch.mkdir()
    return Poster(books, scratch)


@pytest.fixture
def fresh_store() -> sqlite_utils.Database:
    """An empty store in memory, with the engine's schema and views."""
    db = sqlite_utils.Database(memory=True)
    db.conn.executescript(SCHEMA_SQL)
    views.create_views(db)
    return db
