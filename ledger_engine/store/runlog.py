"""The hash-chained run log, and the digests of the rows each run wrote (SPEC v3 §6).

Each run's record holds the hash of the record before it, the SHA-256 of every journal file
it wrote (with the file's length), and in ``details`` who ran what (command line, engine
version, user, host, the rules file's SHA-256) and the digests of the rows it wrote:

- ``events``, ``quarantine``, ``transactions``, ``postings``: rows a run writes once and
  no run changes, each digest over the run's rows in a fixed order (events by block and
  line, quarantine by ``seq``, transactions by id, postings by transaction and account);
- ``state``: for each customer the run derived, a digest of its derived state after the
  run (lots, verdicts, periods, checkpoints, its ``customers`` row), kept in
  ``state_digests``; the record holds the digest of the run's list of them.

``reconcile`` recomputes every digest from the rows, so a deleted, added or edited row is a
difference.  Records of runs made before schema 5 have no ``details`` (``'{}'``): they show
what they have, and their hash is computed without the column, as it was written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

import orjson
import sqlite_utils

NO_DETAILS = "{}"  # the details of a run recorded before schema 5
CUSTOMER_CHUNK = 500

# The columns each digest covers, in the order written, and the order of the rows.
EVENT_COLUMNS = "id, id_key, type, customer, at, day, fields, content, block, line, run_id"
QUARANTINE_COLUMNS = "run_id, file, line, reason, field, detail, event_id, raw, raw_sha"
TRANSACTION_COLUMNS = (
    "txn_id, ledger, customer, orig_day, key, seq, effective_day, late, corrects, file, "
    "run_id, position, narration"
)
POSTING_COLUMNS = "txn_id, ledger, customer, orig_day, key, effective_day, account, amount, run_id"


class RowDigest:
    """A SHA-256 of rows given in their fixed order (each row as its JSON array)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.rows = 0

    def add(self, rows: Iterable[tuple]) -> None:
        dumps, update = orjson.dumps, self.digest.update
        for row in rows:
            update(dumps(row))
            update(b"\n")
            self.rows += 1

    def hexdigest(self) -> str:
        return self.digest.hexdigest()

    def copy(self) -> RowDigest:
        other = RowDigest()
        other.digest, other.rows = self.digest.copy(), self.rows
        return other


def digest_of(rows: Iterable[tuple]) -> str:
    digest = RowDigest()
    digest.add(rows)
    return digest.hexdigest()


def quarantine_digest(db: sqlite_utils.Database, run_id: int) -> str:
    """The digest of the quarantine rows a run stored (a repeat of a stored bad line is
    not stored again, so these are read back; the table is small)."""
    return digest_of(
        db.execute(
            f"SELECT {QUARANTINE_COLUMNS} FROM quarantine WHERE run_id = ? ORDER BY seq", [run_id]
        )
    )


def transaction_digests(transactions: list[dict], postings: list[dict]) -> dict[str, str]:
    """The digests of the transactions and postings rows a run writes (as dicts)."""
    txn_columns, posting_columns = TRANSACTION_COLUMNS.split(", "), POSTING_COLUMNS.split(", ")
    return {
        "transactions": digest_of(
            tuple(row[c] for c in txn_columns)
            for row in sorted(transactions, key=lambda row: row["txn_id"])
        ),
        "postings": digest_of(
            tuple(row[c] for c in posting_columns)
            for row in sorted(postings, key=lambda row: (row["txn_id"], row["account"]))
        ),
    }


# A customer's derived state: the rows of each table, in a fixed order.
STATE_QUERIES = (
    ("lots", "customer, lot_id, kind, day, last_valid, amount, remainder", "lot_id"),
    ("verdicts", "event_id, customer, reason, run_id, event_key", "event_id"),
    ("periods", "customer, period_start, period_end, plan, interval, included", "period_start"),
    ("checkpoints", "customer, day, basis, hex(state)", "day"),
    ("customers", "customer, segment, next_due, pending_from", "customer"),
)


def state_digests(db: sqlite_utils.Database, customers: list[str]) -> dict[str, str]:
    """The digest of each customer's derived state as the store holds it now."""
    result: dict[str, RowDigest] = {customer: RowDigest() for customer in customers}
    for start in range(0, len(customers), CUSTOMER_CHUNK):
        chunk = customers[start : start + CUSTOMER_CHUNK]
        marks = ",".join("?" * len(chunk))
        for table, columns, order in STATE_QUERIES:
            for row in db.execute(
                f"SELECT {columns} FROM {table} WHERE customer IN ({marks}) "
                f"ORDER BY customer, {order}",
                chunk,
            ):
                result[row[0] if table != "verdicts" else row[1]].add((table, *row))
    return {customer: digest.hexdigest() for customer, digest in result.items()}


def record_state_digests(db: sqlite_utils.Database, run_id: int, customers: list[str]) -> str:
    """Stores the digest of each derived customer's state after the run; returns the
    digest of the run's list of them (what its record holds)."""
    found = state_digests(db, sorted(customers))
    db.conn.executemany(
        "INSERT OR REPLACE INTO state_digests (customer, run_id, digest) VALUES (?, ?, ?)",
        [(customer, run_id, digest) for customer, digest in found.items()],
    )
    return digest_of(sorted(found.items()))


# ------------------------------------------------------------------------ the run log


def next_run_id(db: sqlite_utils.Database) -> int:
    return (db.execute("SELECT max(run_id) FROM runs").fetchone()[0] or 0) + 1


def run_hash(run: dict) -> str:
    """The SHA-256 of a run record without its own hash (it covers ``prev_hash``); a record
    of before schema 5 is hashed without its empty ``details``, as it was written."""
    fields = {
        k: v for k, v in run.items() if k != "hash" and not (k == "details" and v == NO_DETAILS)
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def record_run(db: sqlite_utils.Database, run: dict) -> str:
    """Appends a run to the hash-chained run log; returns its hash."""
    row = db.execute("SELECT hash FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    run = {**run, "prev_hash": row[0] if row else "0" * 64}
    run["hash"] = run_hash(run)
    db["runs"].insert(run)
    return run["hash"]


def runs(db: sqlite_utils.Database) -> Iterator[dict]:
    """The run log, oldest first, as dicts of its columns."""
    cursor = db.execute("SELECT * FROM runs ORDER BY run_id")
    columns = [column[0] for column in cursor.description]
    for row in cursor.fetchall():
        yield dict(zip(columns, row, strict=True))


def run_record(db: sqlite_utils.Database, run_id: int) -> dict | None:
    """One record of the run log, as a dict of its columns (None: no such run)."""
    cursor = db.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    row = cursor.fetchone()
    columns = [column[0] for column in cursor.description]
    return dict(zip(columns, row, strict=True)) if row else None


def details_of(run: dict) -> dict | None:
    """A run's details, or None for a record that has none (or none readable)."""
    try:
        details = json.loads(run.get("details") or NO_DETAILS)
    except (TypeError, ValueError):
        return None
    return details if isinstance(details, dict) and details else None


# ------------------------------------------------------------------ recomputed by reconcile


def events_digests_by_run(db: sqlite_utils.Database) -> dict[int, tuple[str, int]]:
    """Each run's events digest and row count, recomputed from the table."""
    return _by_run(db, f"SELECT {EVENT_COLUMNS} FROM events ORDER BY run_id, block, line", -1)


def quarantine_digests_by_run(db: sqlite_utils.Database) -> dict[int, tuple[str, int]]:
    return _by_run(db, f"SELECT {QUARANTINE_COLUMNS} FROM quarantine ORDER BY run_id, seq", 0)


def transaction_digests_by_run(db: sqlite_utils.Database) -> dict[str, dict[int, tuple]]:
    return {
        "transactions": _by_run(
            db, f"SELECT {TRANSACTION_COLUMNS} FROM transactions ORDER BY run_id, txn_id", 10
        ),
        "postings": _by_run(
            db, f"SELECT {POSTING_COLUMNS} FROM postings ORDER BY run_id, txn_id, account", -1
        ),
    }


def _by_run(db: sqlite_utils.Database, sql: str, run_at: int) -> dict[int, tuple[str, int]]:
    digests: dict[int, RowDigest] = {}
    for row in db.execute(sql):
        run_id = row[run_at]
        digest = digests.get(run_id)
        if digest is None:
            digest = digests[run_id] = RowDigest()
        digest.add((row,))
    return {run_id: (digest.hexdigest(), digest.rows) for run_id, digest in digests.items()}


def latest_state_digests(db: sqlite_utils.Database) -> dict[str, tuple[int, str]]:
    """Each customer's state digest recorded by the last run that derived it."""
    return {
        customer: (run_id, digest)
        for customer, run_id, digest in db.execute(
            "SELECT customer, max(run_id), digest FROM state_digests GROUP BY customer"
        )
    }


def state_digests_of_runs(db: sqlite_utils.Database) -> dict[int, str]:
    """Each run's digest of its list of customer state digests, recomputed."""
    rows: dict[int, list[tuple[str, str]]] = {}
    for run_id, customer, digest in db.execute(
        "SELECT run_id, customer, digest FROM state_digests ORDER BY run_id, customer"
    ):
        rows.setdefault(run_id, []).append((customer, digest))
    return {run_id: digest_of(found) for run_id, found in rows.items()}
