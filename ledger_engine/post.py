"""The nightly job (SPEC §6): ingest, derive each customer, write journals, commit.

One run is one store transaction (:func:`ledger_engine.commit.writing`).  Journal text is
appended and fsynced before the store commits, so a run that dies at any point leaves the
books as they were before it.  Each touched or due customer is derived (rating -> wallet
replay -> plan), a pure function; only the difference from what the books hold is written.

A customer is derived from its last checkpoint before the earliest day its new events
touch (:mod:`ledger_engine.store.checkpoints`), reading only the events and postings from
there on; ``full=True`` derives every customer from its first event instead, the reference
the checkpoints are tested against (the books come out byte for byte the same).
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
from ledger_engine.core.model import (
    RATED_FEATURES,
    Checkpoint,
    Event,
    NewEntry,
    PostedState,
    Rating,
    WalletResult,
)
from ledger_engine.core.planner import plan_customer, plan_gl_summaries
from ledger_engine.core.rating import rate_customer
from ledger_engine.core.wallet import next_due_day, replay_wallet
from ledger_engine.ingest import IngestResult, ingest_files
from ledger_engine.rules import Rules, load_rules
from ledger_engine.store import checkpoints as checkpoint_store
from ledger_engine.store import queries

ONE_DAY = datetime.timedelta(days=1)


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
    basis: str  # what checkpoints are valid for (store.checkpoints.basis)
    resume: bool  # derive from checkpoints (False: every customer from its first event)
    keep: bool  # store the checkpoints derived (False: drop the customers' checkpoints)


class Derived(NamedTuple):
    """One customer's derivation: what rating and the wallet made of its events, the new
    entries that bring its books there, and the next day it changes without new events."""

    rating: Rating
    wallet: WalletResult
    new_entries: list[NewEntry]
    next_due: datetime.date | None
    checkpoints: tuple[Checkpoint, ...]  # the state at the start of each of checkpoint_days


def checkpoint_days(
    since: datetime.date | None, through: datetime.date, events: list[Event]
) -> list[datetime.date]:
    """The days a derivation keeps its state at: the day after ``through`` and every first
    of a month after ``since`` (or after the first event) up to it."""
    end = through + ONE_DAY
    day = since or min((event.day for event in events), default=end)
    days = {end}
    while (day := dates.first_of_next_month(day)) < end:
        days.add(day)
    return sorted(d for d in days if since is None or d > since)


def derive_customer(
    customer: str,
    events: list[Event],
    posted: dict[tuple[datetime.date, str], PostedState],
    context: RunContext,
    start: Checkpoint | None = None,
    seen: frozenset[str] = frozenset(),
) -> Derived:
    """Rates, replays and plans one customer (pure: no store, no files).

    Args:
        customer: the customer id.
        events: its schema-valid events (from ``start.day`` on, when resumed).
        posted: what the books hold for it (original days from ``start.day`` on).
        context: what the run shares.
        start: the checkpoint to resume from (None: derive from the first event).
        seen: when resumed, the conversations first seen before ``start.day``.
    """
    marks = checkpoint_days(start.day if start else None, context.through, events)
    rating = rate_customer(events, context.rules, start and start.rating, seen, marks)
    # The derived state (lots, verdicts) must cover every day the books hold, also when this
    # run posts through an earlier day than a run before it did; the replay is causal, so
    # the entries up to `through` are the same either way.
    replay_through = max(context.through, context.posted_before or context.through)
    wallet = replay_wallet(
        customer, rating, context.rules, replay_through, start and start.wallet, marks
    )
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
    checkpoints = tuple(
        Checkpoint(state.day, state, wallet_state)
        for state, wallet_state in zip(rating.states, wallet.states, strict=True)
    )
    return Derived(rating, wallet, new_entries, min(due) if due else None, checkpoints)


class Touched(NamedTuple):
    """What a run's new events touch of one customer."""

    earliest: datetime.date  # the earliest day of its new events, or the day it falls due
    # rated conversation of its new events -> (their earliest `at`, whether one is autopilot)
    conversations: dict[str, tuple[str, bool]]


def _reaches_back(new: tuple[str, bool], seen: queries.SeenConversation) -> bool:
    """Whether new events of a conversation rated before change how it is rated: one comes
    before its first event, or autopilot touches a suggested-reply conversation."""
    first_at, autopilot = new
    return first_at < seen.first_at or (autopilot and seen.kind != "autopilot")


def _start_of(db, customer: str, touched: Touched, context: RunContext) -> Checkpoint | None:
    """The checkpoint a customer's derivation resumes from: the last one at or before the
    earliest day its new events touch (a conversation they rate differently reaches back to
    the day it was first seen), and at most the day after ``through``."""
    latest = min(touched.earliest, context.through + ONE_DAY)
    start = checkpoint_store.latest(db, customer, context.basis, latest)
    if start is None or not touched.conversations:
        return start
    seen = queries.seen_conversations(db, customer, touched.conversations)
    earliest = min(
        (s.day for c, s in seen.items() if _reaches_back(touched.conversations[c], s)),
        default=latest,
    )
    if earliest < start.day:
        start = checkpoint_store.latest(db, customer, context.basis, earliest)
    return start


def _seen_before(db, customer: str, events: list[Event], day: datetime.date) -> frozenset[str]:
    """The conversations of ``events`` first seen before ``day``."""
    ids = {e.conversation for e in events if e.type == "ai_usage" and e.feature in RATED_FEATURES}
    seen = queries.seen_conversations(db, customer, ids)
    return frozenset(c for c, s in seen.items() if s.day < day)


def _inputs_of_chunk(db, chunk: list[str], touched: dict[str, Touched], context: RunContext):
    """Each customer's checkpoint (or None), events, postings and conversations seen."""
    starts = {
        customer: _start_of(db, customer, touched[customer], context) if context.resume else None
        for customer in chunk
    }
    whole = [customer for customer in chunk if starts[customer] is None]
    events = queries.customer_events(db, whole) if whole else {}
    posted = queries.posted_state(db, whole) if whole else {}
    seen: dict[str, frozenset[str]] = {}
    for customer, start in starts.items():
        if start is not None:
            events[customer] = queries.customer_events_since(db, customer, start.day)
            posted[customer] = queries.posted_state_since(db, customer, start.day)
            seen[customer] = _seen_before(db, customer, events[customer], start.day)
    return starts, events, posted, seen


def _count_changes(db, customer, events, seen, start: Checkpoint, run_id: int, derived):
    """How the event counts of conversations rated before the checkpoint change: their
    accepted events from its day on, now less before (the earlier rating counted them)."""
    new, rejected = queries.window_state(db, customer, start.day, run_id)
    deltas = dict(derived.rating.continued)
    for event in events:
        if (
            event.conversation in seen
            and event.type == "ai_usage"
            and event.feature in RATED_FEATURES
            and event.id not in new
            and event.id not in rejected
        ):
            deltas[event.conversation] = deltas.get(event.conversation, 0) - 1
    return deltas


def _derive_customers(
    db: sqlite_utils.Database,
    touched: dict[str, Touched],
    context: RunContext,
    writer: commit.JournalWriter,
    progress: Progress,
) -> list[NewEntry]:
    """Derives every touched customer, a chunk of customers per query; saves the derived
    state and the checkpoints."""
    customers = sorted(touched)
    entries: list[NewEntry] = []
    for first in range(0, len(customers), queries.CUSTOMER_CHUNK):
        chunk = customers[first : first + queries.CUSTOMER_CHUNK]
        starts, events, posted, seen = _inputs_of_chunk(db, chunk, touched, context)
        for customer in chunk:
            start = starts[customer]
            derived = derive_customer(
                customer, events[customer], posted[customer], context, start,
                seen.get(customer, frozenset()),
            )  # fmt: skip
            since = start.day if start else None
            if seen.get(customer):
                deltas = _count_changes(
                    db, customer, events[customer], seen[customer], start, context.run_id, derived
                )
            queries.save_derived_state(
                db, customer, derived.rating, derived.wallet, derived.next_due,
                context.run_id, since,
            )  # fmt: skip
            if seen.get(customer):
                queries.add_conversation_events(db, customer, deltas)
            checkpoint_store.replace_after(
                db, customer, context.basis, since,
                derived.checkpoints if context.keep else (), context.through,
            )  # fmt: skip
            if derived.rating.terms:
                writer.ensure_customer(customer)
            entries += derived.new_entries
        progress.customers(first + len(chunk), len(customers))
    return entries


def _touched(ingested: IngestResult, due: dict[str, datetime.date]) -> dict[str, Touched]:
    """Every customer the run derives: those with new events and those falling due."""
    touched = {
        customer: Touched(day, ingested.conversations.get(customer, {}))
        for customer, day in ingested.customers.items()
    }
    for customer, day in due.items():
        old = touched.get(customer)
        touched[customer] = Touched(
            min(day, old.earliest) if old else day, old.conversations if old else {}
        )
    return touched


def post(
    books_dir: Path,
    paths: Sequence[str],
    through: datetime.date | None = None,
    progress: Progress = NO_PROGRESS,
    wait_seconds: float = 0,
    full: bool = False,
) -> PostResult:
    """Runs the nightly job on the books at ``books_dir``.

    Args:
        books_dir: the books (made by ``init``).
        paths: event files (``-`` for stdin).
        through: the last day to post (default: yesterday in the books' timezone).
        progress: callbacks for lines read and customers posted.
        wait_seconds: how long to wait for another run's lock.
        full: derive every known customer from its first event (no checkpoint is read;
            all are written afresh): the reference derivation, and a repair.

    Returns:
        The counts of the run.
    """
    with commit.writing(books_dir, wait_seconds) as run:
        result = _post_run(run, paths, through, progress, full)
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


def _post_run(run: commit.Run, paths, through, progress: Progress, full: bool) -> PostResult:
    db = run.db
    rules_path = run.books_dir / layout.RULES_NAME
    rules = load_rules(rules_path)
    zone = dates.load_zone(run.timezone)
    through = through or dates.yesterday(datetime.datetime.now(datetime.UTC), zone)
    ingested = ingest_files(db, paths, run.run_id, run.currency, zone, progress.lines)
    posted_before = queries.posted_through(db)
    first_open = queries.first_open_day(db)
    # A run through a day before the first open month defers corrections of closed days;
    # the days before a checkpoint must all be posted, so such a run neither reads nor keeps
    # checkpoints.
    keep = first_open is None or first_open <= through
    context = RunContext(
        rules, through, first_open, posted_before, run.run_id,
        checkpoint_store.basis(rules_path.read_bytes()), resume=keep and not full, keep=keep,
    )  # fmt: skip
    writer = commit.JournalWriter(run)
    due = queries.due_customers(db, through)
    if full:
        due = {customer: through for customer, _ in queries.customers(db)} | due
    entries = _derive_customers(db, _touched(ingested, due), context, writer, progress)
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
