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
from collections.abc import Callable, Iterable, Sequence
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
    since: datetime.date | None,
    through: datetime.date,
    events: list[Event],
    kept: Iterable[datetime.date] = (),
) -> list[datetime.date]:
    """The days a derivation keeps its state at: the day after ``through``, every first of
    a month after ``since`` (or after the first event) up to it, and the days of the
    checkpoints it replaces (``kept``: late events of later nights resume from those)."""
    end = through + ONE_DAY
    day = since or min((event.day for event in events), default=end)
    days = {end, *(d for d in kept if d <= end)}
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
    kept: Iterable[datetime.date] = (),
) -> Derived:
    """Rates, replays and plans one customer (pure: no store, no files).

    Args:
        customer: the customer id.
        events: its schema-valid events (from ``start.day`` on, when resumed).
        posted: what the books hold for it (original days from ``start.day`` on).
        context: what the run shares.
        start: the checkpoint to resume from (None: derive from the first event).
        seen: when resumed, the conversations first seen before ``start.day``.
        kept: the days of the customer's checkpoints (those after ``start`` are replaced).
    """
    marks = checkpoint_days(start.day if start else None, context.through, events, kept)
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


class Window(NamedTuple):
    """What one customer's derivation reads: from a checkpoint on, or everything."""

    start: Checkpoint | None
    events: list[Event]  # its events from the checkpoint's day on (or all)
    posted: dict[tuple[datetime.date, str], PostedState]  # original days from there on
    seen: dict[str, queries.SeenConversation]  # conversations of `events` seen before


def _rated_conversations(events: list[Event]) -> set[str]:
    return {e.conversation for e in events if e.type == "ai_usage" and e.feature in RATED_FEATURES}


def _window_from(db, customer: str, start: Checkpoint) -> Window:
    events = queries.customer_events_since(db, customer, start.day)
    seen = queries.seen_conversations(db, customer, _rated_conversations(events))
    return Window(
        start,
        events,
        queries.posted_state_since(db, customer, start.day),
        {c: s for c, s in seen.items() if s.day < start.day},
    )


def _windows_of_chunk(db, chunk: list[str], touched: dict[str, Touched], context: RunContext):
    """Each customer's window: from its last checkpoint at or before the earliest day its
    new events touch (and at most the day after ``through``), or all it has (one query for
    the customers of the chunk without a checkpoint)."""
    starts = {
        customer: checkpoint_store.latest(
            db, customer, context.basis, min(touched[customer].earliest, context.through + ONE_DAY)
        )
        if context.resume
        else None
        for customer in chunk
    }
    whole = [customer for customer in chunk if starts[customer] is None]
    events = queries.customer_events(db, whole) if whole else {}
    posted = queries.posted_state(db, whole) if whole else {}
    return {
        customer: _window_from(db, customer, start)
        if start is not None
        else Window(None, events[customer], posted[customer], {})
        for customer, start in starts.items()
    }


def _earlier_window(db, customer: str, day: datetime.date, context: RunContext) -> Window:
    start = checkpoint_store.latest(db, customer, context.basis, day)
    if start is not None:
        return _window_from(db, customer, start)
    events = queries.customer_events(db, [customer])[customer]
    return Window(None, events, queries.posted_state(db, [customer])[customer], {})


class _WindowCounts(NamedTuple):
    events: Counter  # conversation -> accepted events in the window, as rated before
    autopilot: Counter  # the same, autopilot events only


def _counted_before(db, customer: str, window: Window, run_id: int) -> _WindowCounts:
    """How the last rating counted the window's events of conversations seen before it (the
    events this run ingested were not rated then; the rejected ones were not counted)."""
    new, rejected = queries.window_state(db, customer, window.start.day, run_id)
    events, autopilot = Counter(), Counter()
    for event in window.events:
        if (
            event.conversation in window.seen
            and event.type == "ai_usage"
            and event.feature in RATED_FEATURES
            and event.id not in new
            and event.id not in rejected
        ):
            events[event.conversation] += 1
            autopilot[event.conversation] += event.feature == "autopilot"
    return _WindowCounts(events, autopilot)


def _kinds_changed(window: Window, before: _WindowCounts, rating: Rating) -> list[datetime.date]:
    """The first days of the conversations seen before the window whose kind its events
    change: autopilot accepted on a suggested reply, or the autopilot events that made one
    an autopilot conversation now all rejected (it may have had none before the window)."""
    days = []
    for conversation, seen in window.seen.items():
        autopilot_now = rating.continued.get(conversation, (0, 0))[1]
        if seen.kind != "autopilot" and autopilot_now:
            days.append(seen.day)
        elif seen.kind == "autopilot" and before.autopilot[conversation] and not autopilot_now:
            days.append(seen.day)
    return days


def _derive_one(db, customer: str, window: Window, context: RunContext):
    """Derives a customer from its window; when the window's events change the kind of a
    conversation first seen before it, derives again from a checkpoint before that day.

    Returns the derivation, the window it used and how the events counts of conversations
    first seen before that window change."""
    kept = checkpoint_store.days(db, customer, context.basis) if context.keep else ()
    while True:
        derived = derive_customer(
            customer, window.events, window.posted, context, window.start,
            frozenset(window.seen), kept,
        )  # fmt: skip
        if not window.seen:
            return derived, window, {}
        before = _counted_before(db, customer, window, context.run_id)
        changed = _kinds_changed(window, before, derived.rating)
        if not changed:
            deltas = {
                conversation: derived.rating.continued.get(conversation, (0, 0))[0]
                - before.events[conversation]
                for conversation in window.seen
            }
            return derived, window, deltas
        window = _earlier_window(db, customer, min(changed), context)


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
        windows = _windows_of_chunk(db, chunk, touched, context)
        for customer in chunk:
            derived, window, deltas = _derive_one(db, customer, windows[customer], context)
            since = window.start.day if window.start else None
            queries.save_derived_state(
                db, customer, derived.rating, derived.wallet, derived.next_due,
                context.run_id, since,
            )  # fmt: skip
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
    touched = {customer: Touched(day) for customer, day in ingested.customers.items()}
    for customer, day in due.items():
        old = touched.get(customer)
        touched[customer] = Touched(min(day, old.earliest) if old else day)
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
