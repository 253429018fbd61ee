"""Deriving one customer: from its last checkpoint (or its first event) to new entries.

:func:`derive_customer` is the pure heart of a night: rating -> wallet replay -> plan, from
a checkpoint or from the first event, keeping the state at :func:`checkpoint_days`.  The
rest reads what a derivation needs from the store: a customer's *window* (its checkpoint,
its events and postings from that day on, the conversations it saw before), and derives
again from an earlier checkpoint when the window's events change the kind of a conversation
first seen before it.  Nothing here writes.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ledger_engine.core import accounts, dates
from ledger_engine.core.model import (
    Checkpoint,
    Event,
    NewEntry,
    PostedState,
    Rating,
    RunEvents,
    WalletResult,
)
from ledger_engine.core.planner import plan_customer
from ledger_engine.core.rating import rate_customer
from ledger_engine.core.wallet import next_due_day, replay_wallet
from ledger_engine.rules import Rules
from ledger_engine.store import checkpoints as checkpoint_store
from ledger_engine.store import queries

ONE_DAY = datetime.timedelta(days=1)


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
    pending_from: datetime.date | None = None  # corrections held back until this day


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
    return Derived(
        rating, wallet, new_entries, min(due) if due else None, checkpoints, deferred_until
    )


class Window(NamedTuple):
    """What one customer's derivation reads: from a checkpoint on, or everything."""

    start: Checkpoint | None
    events: list[Event]  # its events from the checkpoint's day on (or all)
    posted: dict[tuple[datetime.date, str], PostedState]  # original days from there on
    seen: dict[str, queries.SeenConversation]  # conversations of `events` seen before
    new: frozenset[str] = frozenset()  # the ids of `events` this run ingested (when resumed)


def _rated_conversations(events: list[Event]) -> set[str]:
    return {event.conversation for event in events if event.rated}


def _window_from(
    db, customer: str, start: Checkpoint, run_id: int, memory: RunEvents | None
) -> Window:
    if memory is None:
        events, new = queries.customer_events_since(db, customer, start.day, run_id)
    else:
        events, _ = queries.customer_events_since(db, customer, start.day, run_id, True)
        own = [event for event in memory.get(customer, ()) if event.day >= start.day]
        events, new = events + own, {event.id for event in own}
    seen = queries.seen_conversations(db, customer, _rated_conversations(events))
    return Window(
        start,
        events,
        queries.posted_state(db, [customer], start.day)[customer],
        {c: s for c, s in seen.items() if s.day < start.day},
        frozenset(new),
    )


def windows_of_chunk(
    db,
    chunk: list[str],
    earliest: dict[str, datetime.date],
    context: RunContext,
    memory: RunEvents | None = None,
):
    """Each customer's window: from its last checkpoint at or before ``earliest`` (the
    earliest day its new events touch, or the day it falls due) and at most the day after
    ``through``, or all it has (one query for the customers of the chunk without one).

    ``memory``: this run's new events of the chunk's customers, when this process holds
    them (the store is then asked only for those of earlier runs); None to read them from
    the store, which this process wrote them to.
    """
    starts = {
        customer: checkpoint_store.latest(
            db, customer, context.basis, min(earliest[customer], context.through + ONE_DAY)
        )
        if context.resume
        else None
        for customer in chunk
    }
    whole = [customer for customer in chunk if starts[customer] is None]
    before_run = None if memory is None else context.run_id
    events = queries.customer_events(db, whole, before_run) if whole else {}
    if memory is not None:
        for customer in whole:
            events[customer] += memory.get(customer, ())
    posted = queries.posted_state(db, whole) if whole else {}
    return {
        customer: _window_from(db, customer, start, context.run_id, memory)
        if start is not None
        else Window(None, events[customer], posted[customer], {})
        for customer, start in starts.items()
    }


class _WindowCounts(NamedTuple):
    events: Counter  # conversation -> accepted events in the window, as rated before
    autopilot: Counter  # the same, autopilot events only


def _counted_before(db, customer: str, window: Window) -> _WindowCounts:
    """How the last rating counted the window's events of conversations seen before it (the
    events this run ingested were not rated then; the rejected ones were not counted)."""
    new, rejected = window.new, queries.rejected_event_ids(db, customer)
    events, autopilot = Counter(), Counter()
    for event in window.events:
        if (
            event.conversation in window.seen
            and event.rated
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


def derive_one(
    db, customer: str, window: Window, context: RunContext, memory: RunEvents | None = None
):
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
        before = _counted_before(db, customer, window)
        changed = _kinds_changed(window, before, derived.rating)
        if not changed:
            deltas = {
                conversation: derived.rating.continued.get(conversation, (0, 0))[0]
                - before.events[conversation]
                for conversation in window.seen
            }
            return derived, window, deltas
        # A window from before the first of those days (the derivation resumes, so it has
        # checkpoints; without one earlier, the window is all the customer has).
        earliest = {customer: min(changed)}
        window = windows_of_chunk(db, [customer], earliest, context, memory)[customer]


class Planned(NamedTuple):
    """One customer's derivation as the run applies it: the store writes that save it
    (planned by the process that derived it, which reads but never writes the store), and
    what the journals get."""

    customer: str
    writes: list[queries.Write]
    has_terms: bool  # it has a subscription (its subledger root must exist)
    new_entries: list[NewEntry]


def derive_and_plan(
    db, customer: str, window: Window, context: RunContext, memory: RunEvents | None = None
) -> Planned:
    """Derives one customer (:func:`derive_one`) and plans the writes that save its derived
    state, the event counts of conversations it continued and its checkpoints."""
    derived, window, deltas = derive_one(db, customer, window, context, memory)
    since = window.start.day if window.start else None
    writes = queries.derived_state_writes(
        db, customer, derived.rating, derived.wallet,
        queries.Due(derived.next_due, derived.pending_from), context.run_id, since,
    )  # fmt: skip
    writes += queries.conversation_events_writes(customer, deltas)
    writes += checkpoint_store.replacing_writes(
        customer, context.basis, since,
        derived.checkpoints if context.keep else (), context.through,
    )  # fmt: skip
    return Planned(customer, writes, bool(derived.rating.terms), derived.new_entries)


def derive_customers(
    db,
    customers: list[str],
    earliest: dict[str, datetime.date],
    context: RunContext,
    memory: RunEvents | None = None,
) -> Iterator[Planned]:
    """Derives and plans each of ``customers`` (sorted), a chunk of customers per query."""
    for first in range(0, len(customers), queries.CUSTOMER_CHUNK):
        chunk = customers[first : first + queries.CUSTOMER_CHUNK]
        windows = windows_of_chunk(db, chunk, earliest, context, memory)
        for customer in chunk:
            yield derive_and_plan(db, customer, windows[customer], context, memory)
