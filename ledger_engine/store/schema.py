"""The text of the store's tables (``schema.sql``), read once: what ``init`` creates, what
an upgrade adds, and what the schema check compares a store with."""

from __future__ import annotations

from pathlib import Path

SCHEMA_SQL = Path(__file__).with_name("schema.sql").read_text(encoding="utf-8")
