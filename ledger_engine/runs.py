"""The run log for people (SPEC v3 §7, ``ledger-engine runs``): who ran what, on which inputs,
under which rules and engine, what it wrote, and the chain hash, oldest run first.

Read-only: the store is opened as the other readers open it, so it works on read-only books.
A record written before schema 5 has no details (arguments, engine, user, host, rules): it
shows what it has, the rest ``None`` (``-`` in the table).  The store is input someone else
may have written, so every value is checked for its type before it is shown, and the table
shows control characters escaped (a value must not drive the reader's terminal).

Each run is one object with these keys (:data:`RUN_KEYS`), in this order:

- ``run``: the run id; ``command``: as recorded (``post``, ``close 2026-10``);
  ``arguments``: the command line as a list of words, program first;
- ``started``, ``finished``: UTC timestamps; ``through``: a post's last posted day;
- ``engine``: the engine version; ``rules_sha256``: the SHA-256 of ``rules.toml`` in force;
  ``options``: how it ran (``post``: ``{"full": bool}``); ``user``, ``host``;
- ``inputs``: a list of ``{"file", "sha256", "lines", "already_ingested"}``;
- ``transactions_written`` (post); ``files_sealed``, ``balance_assertions``, ``seal_sha256``
  (close); ``counts``: every count the record holds, as recorded;
- ``files_written``: how many journal files the run wrote; ``prev_hash`` and ``hash``: the
  hash chain (``reconcile`` checks it).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import sqlite_utils

from ledger_engine import commit
from ledger_engine.store import runlog

RUN_KEYS = (
    "run", "command", "arguments", "started", "finished", "through", "engine",
    "rules_sha256", "options", "user", "host", "inputs", "transactions_written",
    "files_sealed", "balance_assertions", "seal_sha256", "counts", "files_written",
    "prev_hash", "hash",
)  # fmt: skip
DETAIL_TEXTS = ("engine", "rules_sha256", "user", "host")
# What each kind of run counts that the table shows, in the order shown.
COUNT_NAMES = ("transactions_written", "files_sealed", "balance_assertions", "seal_sha256")
NOTHING = "-"  # a value the record does not hold, in the table


def _json(text: object, default):
    """A JSON column's value; ``default`` for one that is not readable JSON of its type."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _input(value: object) -> dict:
    found = value if isinstance(value, dict) else {}
    return {
        "file": _text(found.get("file")),
        "sha256": _text(found.get("sha256")),
        "lines": _number(found.get("lines")),
        "already_ingested": found.get("already_ingested") is True,
    }


def _arguments(details: dict) -> list[str] | None:
    words = details.get("arguments")
    if isinstance(words, list) and all(isinstance(word, str) for word in words):
        return words
    return None


def run_of_record(record: dict) -> dict:
    """One record of the run log as the object ``runs --json`` prints (keys: :data:`RUN_KEYS`).

    Args:
        record: a row of the ``runs`` table, as :func:`ledger_engine.store.runlog.runs` gives.

    Returns:
        The run, with ``None`` for what the record does not hold.
    """
    details = runlog.details_of(record) or {}
    counts = _json(record.get("counts"), {})
    options = details.get("options")
    run = {
        "run": record.get("run_id"),
        "command": _text(record.get("command")),
        "arguments": _arguments(details),
        "started": _text(record.get("started")),
        "finished": _text(record.get("finished")),
        "through": _text(record.get("through")),
        **{name: _text(details.get(name)) for name in DETAIL_TEXTS},
        "options": options if isinstance(options, dict) else None,
        "inputs": [_input(value) for value in _json(record.get("inputs"), [])],
        "transactions_written": _number(counts.get("transactions_written")),
        "files_sealed": _number(counts.get("files_sealed")),
        "balance_assertions": _number(counts.get("balance_assertions")),
        "seal_sha256": _text(counts.get("seal_sha256")),
        "counts": counts,
        "files_written": len(_json(record.get("files"), {})),
        "prev_hash": _text(record.get("prev_hash")),
        "hash": _text(record.get("hash")),
    }
    return {key: run[key] for key in RUN_KEYS}


def runs_of_store(db: sqlite_utils.Database) -> list[dict]:
    """Every run of the store's run log, oldest first (see :func:`run_of_record`)."""
    return [run_of_record(record) for record in runlog.runs(db)]


def runs(books_dir: Path) -> list[dict]:
    """The run log of the books, oldest run first, read-only.

    Args:
        books_dir: the books.

    Returns:
        One object per run, keyed by :data:`RUN_KEYS`.

    Raises:
        NoBooks: there are no books at ``books_dir``.
        StoreError: the store cannot be read.
    """
    with commit.store_for_reading(books_dir) as db:
        return runs_of_store(db)


# ------------------------------------------------------------------------- the table


def plain(value: object) -> str:
    """A value as one line of text: ``-`` for nothing, control characters escaped."""
    if value is None:
        return NOTHING
    text = str(value)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _written(run: dict) -> str:
    """What a run wrote, in words (only what its record counts)."""
    parts = []
    if run["transactions_written"] is not None:
        parts.append(f"{run['transactions_written']} transactions")
    if run["files_sealed"] is not None:
        parts.append(f"{run['files_sealed']} files sealed")
    if run["balance_assertions"] is not None:
        parts.append(f"{run['balance_assertions']} balance assertions")
    parts.append(f"{run['files_written']} journal files")
    if run["through"] is not None:
        parts.append(f"posted through {plain(run['through'])}")
    if run["seal_sha256"] is not None:
        parts.append(f"seal {plain(run['seal_sha256'])}")
    return ", ".join(parts)


def _input_line(found: dict) -> str:
    lines = NOTHING if found["lines"] is None else f"{found['lines']} lines"
    again = " (already ingested)" if found["already_ingested"] else ""
    return f"  input: {plain(found['file'])}  sha256 {plain(found['sha256'])}  {lines}{again}"


def run_lines(run: dict) -> list[str]:
    """One run as a block of short lines (the ``runs`` table)."""
    arguments = None if run["arguments"] is None else shlex.join(run["arguments"])
    lines = [
        f"Run {plain(run['run'])}: {plain(run['command'])}, "
        f"{plain(run['started'])} to {plain(run['finished'])}",
        f"  arguments: {plain(arguments)}",
        f"  engine: {plain(run['engine'])}  rules sha256: {plain(run['rules_sha256'])}",
        f"  user: {plain(run['user'])}  host: {plain(run['host'])}",
        *(_input_line(found) for found in run["inputs"]),
        f"  written: {_written(run)}",
        f"  hash: {plain(run['hash'])}",
        f"  previous hash: {plain(run['prev_hash'])}",
    ]
    if not run["inputs"]:
        lines.insert(4, f"  inputs: {NOTHING}")
    return lines


def table_lines(found: list[dict]) -> list[str]:
    """Every run as a block of lines, a blank line between blocks."""
    if not found:
        return ["No runs."]
    lines: list[str] = []
    for run in found:
        if lines:
            lines.append("")
        lines += run_lines(run)
    return lines
