"""The nightly job (SPEC §6): ingest, derive each customer, write journals, commit.

One run is one store transaction (:func:`ledger_engine.commit.writing`).  Journal text is
appended and fsynced before the store commits, so a run that dies at any point leaves the
books as they were before it.  Each touched or due customer is derived afresh from its
events (rating -> wallet replay -> plan), a pure function; only the difference from what the
books hold is written.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit
from ledger_engine.books import layout
from ledger_engine.books.files import write_point
from ledger_engine.core import accounts, dates
from ledger_engine.core.model import Event, NewEntry, PostedState, Rating, WalletResult
from ledger_engine.core.planner import plan_customer, plan_gl_summaries
from ledger_engine.core.rating import rate_customer
from ledger_engine.core.wallet import next_due_day, replay_wallet
from ledger_engine.ingest import IngestResult, ingest_files
from ledger_engine.rules import Rules, load_rules
from ledger_engine.store import queries


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


class RunContext(NamedTuple):
    """What every customer's derivation in one run shares."""

    rules: Rules
    through: datetime.date
    first_open: datetime.date | None  # first day of the first open month
    posted_before: datetime.date | None  # the last day earlier runs posted
    run_id: int


class Derived(NamedTuple):
    """One customer's derivation: what rating and the wallet made of its events, the new
    entries that bring its books there, and the next day it changes without new events."""

    rating: Rating
    wallet: WalletResult
    new_entries: list[NewEntry]
    next_due: datetime.date | None


def derive_customer(
    customer: str,
    events: list[Event],
    posted: dict[tuple[datetime.date, str], PostedState],
    context: RunContext,
) -> Derived:
    """Rates, replays and plans one customer (pure: no store, no files)."""
    rating = rate_customer(events, context.rules)
    # The derived state (lots, verdicts) must cover every day the books hold, also when this
    # run posts through an earlier day than a run before it did; the replay is causal, so
    # the entries up to `through` are the same either way.
    replay_through = max(context.through, context.posted_before or context.through)
    wallet = replay_wallet(customer, rating, context.rules, replay_through)
    new_entries, deferred_until = plan_customer(
        customer,
        accounts.customer_segment(customer),
        wallet.entries,
        posted,
        context.through,
        context.first_open,
        context.posted_before,
    )
    due = [d for d in (next_due_day(rating, wallet, events, context.through), deferred_until) if d]
    return Derived(rating, wallet, new_entries, min(due) if due else None)


def _derive_customers(
    db: sqlite_utils.Database,
    customers: list[str],
    context: RunContext,
    writer: commit.JournalWriter,
    progress: Progress,
) -> list[NewEntry]:
    """Derives every customer, a chunk of customers per query; saves the derived state."""
    entries: list[NewEntry] = []
    for start in range(0, len(customers), queries.CUSTOMER_CHUNK):
        chunk = customers[start : start + queries.CUSTOMER_CHUNK]
        events = queries.customer_events(db, chunk)
        posted = queries.posted_state(db, chunk)
        for customer in chunk:
            derived = derive_customer(customer, events[customer], posted[customer], context)
            queries.save_derived_state(
                db, customer, derived.rating, derived.wallet, derived.next_due, context.run_id
            )
            if derived.rating.terms:
                writer.ensure_customer(customer)
            entries += derived.new_entries
        progress.customers(start + len(chunk), len(customers))
    return entries


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
    with commit.writing(books_dir, wait_seconds) as run:
        result = _post_run(run, paths, through, progress)
    write_point("after commit")
    return result


def _result(run: commit.Run, ingested: IngestResult, through, written: int) -> PostResult:
    rejected = Counter(ingested.schema_rejected)
    rejected.update(queries.verdict_counts_of_run(run.db, run.run_id))
    return PostResult(
        read=ingested.read,
        accepted=ingested.read - ingested.duplicates - sum(rejected.values()),
        duplicates=ingested.duplicates,
        rejected=dict(sorted(rejected.items())),
        posted_through=through.isoformat(),
        transactions_written=written,
        run_id=run.run_id,
        repaired=run.repaired,
    )


def _post_run(run: commit.Run, paths, through, progress: Progress) -> PostResult:
    db = run.db
    rules = load_rules(run.books_dir / layout.RULES_NAME)
    zone = dates.load_zone(run.timezone)
    through = through or dates.yesterday(datetime.datetime.now(datetime.UTC), zone)
    ingested = ingest_files(db, paths, run.run_id, run.currency, zone, progress.lines)
    posted_before = queries.posted_through(db)
    context = RunContext(rules, through, queries.first_open_day(db), posted_before, run.run_id)
    writer = commit.JournalWriter(run)
    customers = sorted(ingested.customers | queries.due_customers(db, through))
    entries = _derive_customers(db, customers, context, writer, progress)
    written = writer.write_summaries(plan_gl_summaries(entries, run.run_id))
    hashes = writer.write()
    result = _result(run, ingested, through, written)
    queries.set_posted_through(db, max(through, posted_before) if posted_before else through)
    write_point("store commit")
    commit.record_run(
        run,
        "post",
        through.isoformat(),
        json.dumps(list(ingested.inputs)),
        json.dumps(result.as_json(), sort_keys=True),
        hashes,
    )
    return result
