"""The engine's store (``state.sqlite``): schema, views and the queries the stages share.

Amounts are integer cents.  Every table is written inside the one transaction of a run
(``db.atomic()``), so the store is always as before a run or as after it.
"""

from __future__ import annotations

import datetime
import operator
from pathlib import Path

import orjson
import sqlite_utils

from ledger_engine.events import Event

STORE_NAME = "state.sqlite"
SCHEMA_VERSION = "2"
INSERT_BATCH_SIZE = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, customer TEXT NOT NULL, type TEXT NOT NULL, at TEXT NOT NULL,
    day TEXT NOT NULL, fields TEXT NOT NULL, content_sha TEXT NOT NULL, raw TEXT NOT NULL,
    file TEXT NOT NULL, line INTEGER NOT NULL, run_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_customer ON events (customer);
CREATE TABLE IF NOT EXISTS input_files (
    sha256 TEXT PRIMARY KEY, lines INTEGER NOT NULL, valid INTEGER NOT NULL,
    rejected TEXT NOT NULL, first_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, file TEXT NOT NULL,
    line INTEGER NOT NULL, reason TEXT NOT NULL, field TEXT, detail TEXT NOT NULL,
    event_id TEXT, raw TEXT NOT NULL, raw_sha TEXT NOT NULL,
    UNIQUE (file, line, raw_sha, reason)
);
CREATE TABLE IF NOT EXISTS verdicts (
    event_id TEXT PRIMARY KEY, customer TEXT NOT NULL, reason TEXT NOT NULL,
    run_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_customer ON verdicts (customer);
CREATE TABLE IF NOT EXISTS conversations (
    customer TEXT NOT NULL, conversation TEXT NOT NULL, period_start TEXT NOT NULL,
    period_end TEXT, day TEXT NOT NULL, first_at TEXT NOT NULL, first_event TEXT NOT NULL,
    kind TEXT NOT NULL, status TEXT NOT NULL, price INTEGER NOT NULL,
    rules_version TEXT NOT NULL, events INTEGER NOT NULL,
    PRIMARY KEY (customer, conversation)
);
CREATE TABLE IF NOT EXISTS periods (
    customer TEXT NOT NULL, period_start TEXT NOT NULL, period_end TEXT, plan TEXT NOT NULL,
    interval TEXT NOT NULL, included INTEGER NOT NULL, PRIMARY KEY (customer, period_start)
);
CREATE TABLE IF NOT EXISTS lots (
    customer TEXT NOT NULL, lot_id TEXT NOT NULL, kind TEXT NOT NULL, day TEXT NOT NULL,
    last_valid TEXT NOT NULL, amount INTEGER NOT NULL, remainder INTEGER NOT NULL,
    PRIMARY KEY (customer, lot_id)
);
CREATE TABLE IF NOT EXISTS customers (
    customer TEXT PRIMARY KEY, segment TEXT NOT NULL UNIQUE, next_due TEXT
);
CREATE TABLE IF NOT EXISTS transactions (
    txn_id TEXT PRIMARY KEY, ledger TEXT NOT NULL, customer TEXT, orig_day TEXT NOT NULL,
    key TEXT NOT NULL, seq INTEGER NOT NULL, effective_day TEXT NOT NULL,
    late INTEGER NOT NULL, corrects TEXT, file TEXT NOT NULL, run_id INTEGER NOT NULL,
    position INTEGER NOT NULL, narration TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_customer ON transactions (customer, orig_day, key);
CREATE TABLE IF NOT EXISTS postings (
    txn_id TEXT NOT NULL, ledger TEXT NOT NULL, customer TEXT, orig_day TEXT NOT NULL,
    key TEXT NOT NULL, effective_day TEXT NOT NULL, account TEXT NOT NULL,
    amount INTEGER NOT NULL, run_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_customer ON postings (customer, orig_day, key);
CREATE TABLE IF NOT EXISTS journal_files (
    path TEXT PRIMARY KEY, length INTEGER NOT NULL, sha256 TEXT NOT NULL, month TEXT,
    sealed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, command TEXT NOT NULL, started TEXT NOT NULL,
    finished TEXT NOT NULL, through TEXT, inputs TEXT NOT NULL, counts TEXT NOT NULL,
    files TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS closed_months (
    month TEXT PRIMARY KEY, closed_at TEXT NOT NULL, run_id INTEGER NOT NULL,
    files TEXT NOT NULL
);
"""


# The typed fields of an event after `day` (feature ... channel) are stored as one JSON array
# in `fields`: a row with 22 columns cost three times as much to insert as one with 11, and a
# million-event night is mostly inserts.  The view `v_events` shows them as columns.
TYPED_FIELDS = Event._fields[Event._fields.index("day") + 1 :]


# Reconciliation views (SPEC §6): plain SQL, readable with sqlite3 by anyone.
# Amounts in the views are in currency units (REAL division of integer cents is exact for
# display at 2 places); the `_cents` columns keep the exact integers.
VIEWS = {
    "v_events": """
        SELECT id, customer, type, at, day, """
    + ",\n               ".join(
        f"json_extract(fields, '$[{i}]') AS {name}" for i, name in enumerate(TYPED_FIELDS)
    )
    + """,
               content_sha, raw, file, line, run_id
        FROM events""",
    "v_usage_daily": """
        SELECT customer, day, count(*) AS conversations,
               sum(status = 'included') AS included, sum(status = 'charged') AS charged,
               sum(status = 'trial') AS trial, sum(kind = 'autopilot') AS autopilot,
               sum(price) AS gross_cents,
               sum(CASE WHEN status = 'charged' THEN price ELSE 0 END) AS charged_cents
        FROM conversations GROUP BY customer, day""",
    "v_postings_daily": """
        SELECT ledger, customer, effective_day AS day, account, sum(amount) AS amount_cents,
               count(*) AS postings
        FROM postings GROUP BY ledger, customer, effective_day, account""",
    "v_usage_vs_postings": """
        WITH rated AS (
            SELECT customer, day,
                   -sum(CASE WHEN kind = 'suggested_reply' THEN price ELSE 0 END) AS sr,
                   -sum(CASE WHEN kind = 'autopilot' THEN price ELSE 0 END) AS ap,
                   sum(CASE WHEN status = 'included' THEN price ELSE 0 END) AS included,
                   sum(CASE WHEN status = 'trial' THEN price ELSE 0 END) AS trial
            FROM conversations
            WHERE day <= (SELECT value FROM meta WHERE key = 'posted_through')
            GROUP BY customer, day),
        posted AS (
            SELECT customer, orig_day AS day,
                sum(CASE WHEN account = 'Income:AI:Revenue:SuggestedReplies' THEN amount
                    ELSE 0 END) AS sr,
                sum(CASE WHEN account = 'Income:AI:Revenue:Autopilot' THEN amount
                    ELSE 0 END) AS ap,
                sum(CASE WHEN account = 'Income:AI:Allowance:Included' THEN amount
                    ELSE 0 END) AS included,
                sum(CASE WHEN account = 'Income:AI:Allowance:Trial' THEN amount
                    ELSE 0 END) AS trial
            FROM postings WHERE ledger = 'sub' AND key LIKE 'usage.%'
            GROUP BY customer, orig_day),
        joined AS (
            SELECT r.customer, r.day, r.sr AS rated_sr, p.sr AS posted_sr, r.ap AS rated_ap,
                   p.ap AS posted_ap, r.included AS rated_included,
                   p.included AS posted_included, r.trial AS rated_trial, p.trial AS posted_trial
            FROM rated r LEFT JOIN posted p USING (customer, day)
            UNION ALL
            SELECT p.customer, p.day, NULL, p.sr, NULL, p.ap, NULL, p.included, NULL, p.trial
            FROM posted p LEFT JOIN rated r USING (customer, day) WHERE r.customer IS NULL)
        SELECT * FROM joined
        WHERE coalesce(rated_sr, 0) != coalesce(posted_sr, 0)
           OR coalesce(rated_ap, 0) != coalesce(posted_ap, 0)
           OR coalesce(rated_included, 0) != coalesce(posted_included, 0)
           OR coalesce(rated_trial, 0) != coalesce(posted_trial, 0)""",
    "v_wallet_balances": """
        SELECT c.customer,
               coalesce((SELECT -sum(amount) FROM postings p WHERE p.customer = c.customer
                         AND p.account = 'Liabilities:Customers:' || c.segment || ':Wallet'),
                        0) AS wallet_cents,
               coalesce((SELECT sum(remainder) FROM lots l WHERE l.customer = c.customer), 0)
                   AS lots_cents,
               coalesce((SELECT sum(amount) FROM postings p WHERE p.customer = c.customer
                         AND p.account = 'Assets:Receivables:Customers:' || c.segment), 0)
                   AS receivable_cents
        FROM customers c""",
    "v_lots": """
        SELECT customer, lot_id, kind, day, last_valid, amount AS amount_cents,
               remainder AS remainder_cents FROM lots""",
    "v_allowance_usage": """
        SELECT p.customer, p.period_start, p.period_end, p.plan, p.interval,
               p.included, count(c.conversation) AS used,
               max(p.included - count(c.conversation), 0) AS remaining
        FROM periods p LEFT JOIN conversations c ON c.customer = p.customer
             AND c.period_start = p.period_start AND c.status = 'included'
        GROUP BY p.customer, p.period_start""",
    "v_ai_spend_by_customer": """
        SELECT customer, -sum(CASE WHEN account LIKE 'Income:AI:Revenue:%' THEN amount
                                   ELSE 0 END) AS gross_cents,
               -sum(CASE WHEN account LIKE 'Income:AI:Revenue:%'
                           OR account LIKE 'Income:AI:Allowance:%' THEN amount ELSE 0 END)
                   AS net_cents
        FROM postings WHERE ledger = 'sub' GROUP BY customer ORDER BY net_cents DESC""",
    "v_rejections_by_reason": """
        SELECT reason, count(*) AS events FROM (
            SELECT reason FROM quarantine UNION ALL SELECT reason FROM verdicts)
        GROUP BY reason""",
    "v_gl_vs_subledgers": """
        WITH sub AS (
            SELECT effective_day AS day,
                   CASE WHEN account LIKE 'Liabilities:Customers:%' THEN
                            'Liabilities:Customers:Wallets'
                        WHEN account LIKE 'Assets:Receivables:Customers:%' THEN
                            'Assets:Receivables:Customers'
                        ELSE account END AS account,
                   sum(amount) AS amount
            FROM postings WHERE ledger = 'sub' GROUP BY 1, 2),
        gl AS (
            SELECT effective_day AS day, account, sum(amount) AS amount
            FROM postings WHERE ledger = 'gl' GROUP BY 1, 2),
        keys AS (SELECT day, account FROM sub UNION SELECT day, account FROM gl)
        SELECT k.day, k.account, gl.amount AS gl_cents, sub.amount AS subledgers_cents
        FROM keys k LEFT JOIN gl USING (day, account) LEFT JOIN sub USING (day, account)
        WHERE coalesce(gl.amount, 0) != coalesce(sub.amount, 0)""",
}


def create_views(db: sqlite_utils.Database) -> None:
    for name, sql in VIEWS.items():
        db.create_view(name, sql.strip(), replace=True)


def open_store(books: Path) -> sqlite_utils.Database:
    """Opens the store of the books at ``books`` (which must exist)."""
    path = Path(books) / STORE_NAME
    if not path.exists():
        raise FileNotFoundError(f"{books} holds no books (no {STORE_NAME}); run init first")
    db = sqlite_utils.Database(path)
    version = get_meta(db, "schema_version")
    if version != SCHEMA_VERSION:
        db.close()
        raise ValueError(
            f"{books} was made with store schema {version}, this ledger-engine reads schema "
            f"{SCHEMA_VERSION}; there is no migration between them"
        )
    db.execute("PRAGMA journal_mode=WAL")
    # WAL with synchronous=NORMAL: a killed process never loses a committed run; a power
    # cut can undo the last committed run as a whole (its journal tails are then truncated
    # and the next run posts it again), never half of it.  FULL made a million-event night
    # wait for hundreds of MB of WAL to reach the disk.
    db.execute("PRAGMA synchronous=NORMAL")
    # A run is one transaction; a large page cache keeps index pages of a big night in
    # memory instead of spilling them to the WAL again and again (bounded: 256 MiB).
    db.execute("PRAGMA cache_size=-262144")
    return db


def create_store(books: Path, meta: dict[str, str]) -> sqlite_utils.Database:
    db = sqlite_utils.Database(Path(books) / STORE_NAME)
    db.execute("PRAGMA journal_mode=WAL")
    with db.atomic():
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        create_views(db)
        for key, value in {"schema_version": SCHEMA_VERSION, **meta}.items():
            db["meta"].insert({"key": key, "value": value}, replace=True)
    return db


def get_meta(db: sqlite_utils.Database, key: str, default: str | None = None) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])


def posted_through(db: sqlite_utils.Database) -> datetime.date | None:
    value = get_meta(db, "posted_through")
    return datetime.date.fromisoformat(value) if value else None


def next_run_id(db: sqlite_utils.Database) -> int:
    return (db.execute("SELECT max(run_id) FROM runs").fetchone()[0] or 0) + 1


def first_open_day(db: sqlite_utils.Database) -> datetime.date | None:
    """The first day of the month after the last closed month (None if none is closed)."""
    row = db.execute("SELECT max(month) FROM closed_months").fetchone()
    if not row or row[0] is None:
        return None
    year, month = int(row[0][:4]), int(row[0][5:])
    return datetime.date(year + month // 12, month % 12 + 1, 1)


CUSTOMER_CHUNK = 500  # customers whose rows one query fetches


def customer_events(db: sqlite_utils.Database, customers: list[str]) -> dict[str, list]:
    """Every schema-valid event of each customer, as :class:`ledger_engine.events.Event`;
    one query for the whole chunk of customers."""
    result: dict[str, list] = {customer: [] for customer in customers}
    marks = ",".join("?" * len(customers))
    days: dict[str, datetime.date] = {}
    make, loads = Event._make, orjson.loads
    for event_id, event_type, customer, at, day_text, fields in db.conn.execute(
        # In insertion order per customer; rating sorts by (at, type, id) itself.
        f"SELECT id, type, customer, at, day, fields FROM events WHERE customer IN ({marks}) "
        "ORDER BY customer",
        customers,
    ):
        day = days.get(day_text)
        if day is None:
            day = days[day_text] = datetime.date.fromisoformat(day_text)
        result[customer].append(make((event_id, event_type, customer, at, day, *loads(fields))))
    return result


def insert_dicts(db: sqlite_utils.Database, table: str, rows, conflict: str = "") -> int:
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
