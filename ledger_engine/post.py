"""The nightly job (SPEC §6): ingest, rate, plan, write journals and commit the store.

One run is one store transaction.  Journal text is appended and fsynced before the store
commits (see :mod:`ledger_engine.books` for the protocol), so a run that dies at any point
leaves the books as they were before it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import accounts, books, dates, journal, store
from ledger_engine.ingest import ingest_files
from ledger_engine.planner import NewTxn, PostedKey, plan_customer
from ledger_engine.rating import Rating, rate_customer
from ledger_engine.wallet import WalletResult, desired_transactions, next_due_day
from rules import Rules, load_rules


class PostResult(NamedTuple):
    read: int
    accepted: int
    duplicates: int
    rejected: dict[str, int]
    posted_through: str
    transactions_written: int
    run_id: int
    repaired: tuple[str, ...]

    def as_json(self) -> dict:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "posted_through": self.posted_through,
            "transactions_written": self.transactions_written,
            "run": self.run_id,
        }


class Progress(NamedTuple):
    lines: Callable[[int], None]  # called with lines read since the last call
    customers: Callable[[int, int], None]  # called with (customers posted, customers in all)


NO_PROGRESS = Progress(lambda count: None, lambda done, total: None)


def default_through(zone) -> datetime.date:
    """Yesterday in the books' timezone."""
    return datetime.datetime.now(zone).date() - datetime.timedelta(days=1)


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def posted_keys(db: sqlite_utils.Database, customers: list[str]) -> dict[str, dict]:
    """What the books hold per customer and ``(original day, key)``, for a chunk."""
    marks = ",".join("?" * len(customers))
    amounts: dict = defaultdict(dict)
    for customer, day, key, account, cents in db.execute(
        f"SELECT customer, orig_day, key, account, sum(amount) FROM postings "
        f"WHERE customer IN ({marks}) GROUP BY customer, orig_day, key, account",
        customers,
    ):
        amounts[(customer, day, key)][account] = cents
    result: dict[str, dict] = {customer: {} for customer in customers}
    # SQLite returns the bare column txn_id from the row holding max(seq).
    for customer, day, key, seq, txn_id in db.execute(
        f"SELECT customer, orig_day, key, max(seq), txn_id FROM transactions "
        f"WHERE customer IN ({marks}) GROUP BY customer, orig_day, key",
        customers,
    ):
        posted = PostedKey(amounts.get((customer, day, key), {}), seq, txn_id)
        result[customer][(datetime.date.fromisoformat(day), key)] = posted
    return result


def save_rating(
    db: sqlite_utils.Database,
    customer: str,
    rating: Rating,
    wallet: WalletResult,
    next_due: datetime.date | None,
    run_id: int,
) -> None:
    """Replaces the customer's derived state (verdicts, conversations, lots) in the store."""
    for table in ("verdicts", "conversations", "lots", "periods"):
        db.execute(f"DELETE FROM {table} WHERE customer = ?", [customer])
    store.insert_dicts(
        db,
        "periods",
        [
            {
                "customer": customer,
                "period_start": period.start.isoformat(),
                "period_end": period.end.isoformat() if period.end else None,
                "plan": period.plan,
                "interval": period.interval,
                "included": period.included,
            }
            for period in rating.periods
        ],
    )
    store.insert_dicts(
        db,
        "verdicts",
        [
            {"event_id": event_id, "customer": customer, "reason": reason, "run_id": run_id}
            for event_id, reason in rating.verdicts.items()
        ],
    )
    store.insert_dicts(
        db,
        "conversations",
        [
            {
                **c._asdict(),
                "customer": customer,
                "period_start": c.period_start.isoformat(),
                "period_end": c.period_end.isoformat() if c.period_end else None,
                "day": c.day.isoformat(),
            }
            for c in rating.conversations
        ],
    )
    store.insert_dicts(
        db,
        "lots",
        [
            {
                "customer": customer,
                "lot_id": lot.lot_id,
                "kind": lot.kind,
                "day": lot.day.isoformat(),
                "last_valid": lot.last_valid.isoformat(),
                "amount": lot.amount,
                "remainder": lot.remainder,
            }
            for lot in wallet.lots
        ],
    )
    db.execute(
        "INSERT INTO customers (customer, segment, next_due) VALUES (?, ?, ?) "
        "ON CONFLICT (customer) DO UPDATE SET next_due = excluded.next_due",
        [customer, accounts.customer_segment(customer), next_due.isoformat() if next_due else None],
    )


class JournalWriter:
    """Turns planned transactions into journal text, GL summaries and store rows."""

    def __init__(self, books_dir: Path, db: sqlite_utils.Database, run_id: int, currency: str):
        self.db = db
        self.run_id = run_id
        self.currency = currency
        self.appender = books.Appender(books_dir, db)
        self.planned: list[NewTxn] = []

    def add(self, plan: list[NewTxn]) -> None:
        self.planned.extend(plan)

    def append_to_month(self, root: str, month_path: str, text: str) -> None:
        """Appends ``text`` to a month file, including it from ``root`` when it is new."""
        self._include(root, month_path)
        self.appender.append(month_path, text)

    def _include(self, root: str, month_path: str) -> None:
        if not self.appender.exists(month_path):
            relative = month_path.rsplit("/", 1)[-1] if root != books.LEDGER_NAME else month_path
            self.appender.append(root, journal.include_line(relative))

    def ensure_customer(self, customer: str) -> None:
        """Gives a customer its subledger root (open directives) on first sight."""
        segment = accounts.customer_segment(customer)
        root = books.customer_root_path(segment)
        if not self.appender.exists(root):
            self.appender.append(root, journal.customer_root(customer, segment, self.currency))

    def _subledger(self, txn: NewTxn, gl_link: str, position: int) -> tuple[dict, list[dict]]:
        root = books.customer_root_path(txn.segment)
        self.ensure_customer(txn.customer)
        path = books.customer_month_path(txn.segment, dates.month_of(txn.effective_day))
        self.append_to_month(root, path, journal.subledger_text(txn, gl_link, self.currency))
        base = {
            "txn_id": txn.txn_id,
            "ledger": "sub",
            "customer": txn.customer,
            "orig_day": txn.orig_day.isoformat(),
            "key": txn.key,
            "effective_day": txn.effective_day.isoformat(),
            "run_id": self.run_id,
        }
        row = {
            **base,
            "seq": txn.seq,
            "late": int(txn.late),
            "corrects": txn.corrects,
            "file": path,
            "position": position,
            "narration": txn.narration,
        }
        return row, [{**base, "account": a, "amount": c} for a, c in txn.postings]

    def _gl(self, day: datetime.date, txns: list[NewTxn], position: int):
        totals: dict[str, int] = defaultdict(int)
        for txn in txns:
            for account, cents in txn.postings:
                totals[accounts.control_account(account)] += cents
        postings = [(a, totals[a]) for a in accounts.GL_ACCOUNTS if totals.get(a)]
        link = f"gl.{day.isoformat()}.r{self.run_id}"
        path = books.gl_month_path(dates.month_of(day))
        meta = [
            ("txn", link),
            ("run", self.run_id),
            ("subledger-transactions", len(txns)),
            ("customers", len({t.customer for t in txns})),
        ]
        late = [t for t in txns if t.late]
        if late:
            # Corrections of closed months, dated here; their own days are in the subledger.
            meta.append(("late-transactions", len(late)))
            meta.append(("original-days", " ".join(sorted({str(t.orig_day) for t in late}))))
        self.append_to_month(
            books.LEDGER_NAME,
            path,
            journal.transaction_text(
                day,
                "General ledger",
                "Daily summary of the customer subledgers",
                [link],
                meta,
                postings,
                self.currency,
            ),
        )
        base = {
            "txn_id": link,
            "ledger": "gl",
            "customer": None,
            "orig_day": day.isoformat(),
            "key": "gl",
            "effective_day": day.isoformat(),
            "run_id": self.run_id,
        }
        row = {
            **base,
            "seq": self.run_id,
            "late": 0,
            "corrects": None,
            "file": path,
            "position": position,
            "narration": "Daily summary",
        }
        return row, [{**base, "account": a, "amount": c} for a, c in postings], link

    def finish(self) -> tuple[int, dict[str, str]]:
        """Writes everything planned; returns (transactions written, file hashes)."""
        by_day: dict[datetime.date, list[NewTxn]] = defaultdict(list)
        for txn in self.planned:
            by_day[txn.effective_day].append(txn)
        txn_rows, posting_rows = [], []
        for day in sorted(by_day):
            row, rows, link = self._gl(day, by_day[day], len(txn_rows))
            txn_rows.append(row)
            posting_rows.extend(rows)
            for txn in by_day[day]:
                row, rows = self._subledger(txn, link, len(txn_rows))
                txn_rows.append(row)
                posting_rows.extend(rows)
        store.insert_dicts(self.db, "transactions", txn_rows)
        store.insert_dicts(self.db, "postings", posting_rows)
        return len(txn_rows), self.appender.write()


def due_customers(db: sqlite_utils.Database, through: datetime.date) -> set[str]:
    return {
        row[0]
        for row in db.execute(
            "SELECT customer FROM customers WHERE next_due IS NOT NULL AND next_due <= ?",
            [through.isoformat()],
        )
    }


def record_run(db: sqlite_utils.Database, run: dict) -> str:
    """Appends a run to the hash-chained run log; returns its hash."""
    row = db.execute("SELECT hash FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    run = {**run, "prev_hash": row[0] if row else "0" * 64}
    run["hash"] = run_hash(run)
    db["runs"].insert(run)
    return run["hash"]


def run_hash(run: dict) -> str:
    fields = {k: v for k, v in run.items() if k != "hash"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class RunContext(NamedTuple):
    rules: Rules
    through: datetime.date
    first_open: datetime.date | None
    posted_before: datetime.date | None
    run_id: int


def _rate_and_plan(db, customer: str, events: list, posted: dict, context: RunContext):
    rating = rate_customer(events, context.rules)
    wallet = desired_transactions(customer, rating, context.rules, context.through)
    plan, deferred_until = plan_customer(
        customer,
        accounts.customer_segment(customer),
        wallet.transactions,
        posted,
        context.through,
        context.first_open,
        context.posted_before,
    )
    due = [d for d in (next_due_day(rating, wallet, events, context.through), deferred_until) if d]
    save_rating(db, customer, rating, wallet, min(due) if due else None, context.run_id)
    return plan, bool(rating.terms)


def _post_customers(db, customers: list[str], context: RunContext, writer, progress) -> None:
    """Re-derives and plans every customer, a chunk of customers per query."""
    for start in range(0, len(customers), store.CUSTOMER_CHUNK):
        chunk = customers[start : start + store.CUSTOMER_CHUNK]
        events = store.customer_events(db, chunk)
        posted = posted_keys(db, chunk)
        for customer in chunk:
            plan, known = _rate_and_plan(db, customer, events[customer], posted[customer], context)
            if known:
                writer.ensure_customer(customer)
            writer.add(plan)
        progress.customers(start + len(chunk), len(customers))


def post(
    books_dir: Path,
    paths: Sequence[str],
    through: datetime.date | None = None,
    progress: Progress = NO_PROGRESS,
    wait_seconds: float = 0,
) -> PostResult:
    """Runs the nightly job on the books at ``books_dir``.

    Args:
        books_dir: the books (made by ``init``).
        paths: event files (``-`` for stdin).
        through: the last day to post (default: yesterday in the books' timezone).
        progress: callbacks for lines read and customers posted.
        wait_seconds: how long to wait for another run's lock.

    Returns:
        The counts of the run.
    """
    with books.locked(books_dir, wait_seconds):
        db = store.open_store(books_dir)
        try:
            repaired = books.recover(books_dir, db)
            with books.rolled_back_on_failure(books_dir, db):
                result = _post_locked(books_dir, db, paths, through, progress, tuple(repaired))
            books.write_point("after commit")
            return result
        finally:
            db.close()


def _post_locked(books_dir, db, paths, through, progress, repaired) -> PostResult:
    rules = load_rules(books_dir / books.RULES_NAME)
    currency = store.get_meta(db, "currency")
    zone = dates.load_zone(store.get_meta(db, "timezone"))
    through = through or default_through(zone)
    started = now_text()
    with db.atomic():
        run_id = store.next_run_id(db)
        ingested = ingest_files(db, paths, run_id, currency, zone, progress.lines)
        first_open = store.first_open_day(db)
        writer = JournalWriter(books_dir, db, run_id, currency)
        context = RunContext(rules, through, first_open, store.posted_through(db), run_id)
        customers = sorted(ingested.customers | due_customers(db, through))
        _post_customers(db, customers, context, writer, progress)
        written, hashes = writer.finish()
        rejected = Counter(ingested.schema_rejected)
        for reason, count in db.execute(
            # Driven from this run's verdicts (few) so no scan of the events table.
            "SELECT reason, count(*) FROM verdicts v WHERE v.run_id = ? AND "
            "(SELECT run_id FROM events WHERE id = v.event_id) = ? GROUP BY reason",
            [run_id, run_id],
        ):
            rejected[reason] += count
        old_through = store.posted_through(db)
        new_through = max(through, old_through) if old_through else through
        store.set_meta(db, "posted_through", new_through.isoformat())
        result = PostResult(
            read=ingested.read,
            accepted=ingested.read - ingested.duplicates - sum(rejected.values()),
            duplicates=ingested.duplicates,
            rejected=dict(sorted(rejected.items())),
            posted_through=through.isoformat(),
            transactions_written=written,
            run_id=run_id,
            repaired=repaired,
        )
        books.write_point("store commit")
        record_run(
            db,
            {
                "run_id": run_id,
                "command": "post",
                "started": started,
                "finished": now_text(),
                "through": through.isoformat(),
                "inputs": json.dumps(list(ingested.inputs)),
                "counts": json.dumps(result.as_json(), sort_keys=True),
                "files": json.dumps(hashes, sort_keys=True),
            },
        )
    return result
