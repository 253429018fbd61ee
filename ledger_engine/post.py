"""The nightly job (SPEC §6): ingest, derive each customer, write journals, commit.

One run is one store transaction (:func:`ledger_engine.commit.writing`).  Journal text is
appended and fsynced before the store commits, so a run that dies at any point leaves the
books as they were before it.  Each touched or due customer is derived (rating -> wallet
replay -> plan), a pure function; only the difference from what the books hold is written.

A customer is derived from its last checkpoint before the earliest day its new events
touch (:mod:`ledger_engine.derive`), reading only the events and postings from there on;
``full=True`` derives every customer from its first event instead, the reference the
checkpoints are tested against (the books come out byte for byte the same).
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit, derive, history, worker
from ledger_engine.books.files import write_point
from ledger_engine.core import dates
from ledger_engine.core.errors import FutureDay
from ledger_engine.core.model import NewEntry, RunEvents
from ledger_engine.core.planner import plan_gl_summaries
from ledger_engine.ingest import IngestResult, check_inputs_unchanged, ingest_files
from ledger_engine.store import checkpoints as checkpoint_store
from ledger_engine.store import queries, runlog


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


def _derive_customers(
    db: sqlite_utils.Database,
    touched: dict[str, datetime.date],  # customer -> the earliest day to derive
    context: derive.RunContext,
    writer: commit.JournalWriter,
    progress: Progress,
    memory: RunEvents | None,
    helper: worker.Worker | None,
) -> list[NewEntry]:
    """Derives every touched customer (the worker's share in the worker, at the same time)
    and saves the derived state and the checkpoints; returns the new entries, in customer
    order."""
    customers = sorted(touched)
    share = worker.in_worker_share
    theirs = helper.derive([c for c in customers if share(c)], touched, context) if helper else None
    mine = [c for c in customers if not share(c)] if helper else customers
    entries: dict[str, list[NewEntry]] = {}

    def save(planned: derive.Planned) -> None:
        queries.apply_writes(db, planned.writes)
        if planned.has_terms:
            writer.ensure_customer(planned.customer)
        entries[planned.customer] = planned.new_entries
        if len(entries) % queries.CUSTOMER_CHUNK == 0 or len(entries) == len(customers):
            progress.customers(len(entries), len(customers))

    for done, planned in enumerate(derive.derive_customers(db, mine, touched, context, memory)):
        save(planned)
        if theirs and done % 100 == 0:
            for ready in theirs.ready():  # what the worker derived meanwhile
                save(ready)
    for planned in theirs or ():
        save(planned)
    return [entry for customer in customers for entry in entries[customer]]


def _touched(ingested: IngestResult, due: dict[str, datetime.date]) -> dict[str, datetime.date]:
    """Every customer the run derives (those with new events and those falling due), with
    the earliest day its derivation must cover."""
    touched = dict(ingested.customers)
    for customer, day in due.items():
        touched[customer] = min(day, touched.get(customer, day))
    return touched


def post(
    books_dir: Path,
    paths: Sequence[str],
    through: datetime.date | None = None,
    progress: Progress = NO_PROGRESS,
    wait_seconds: float = 0,
    full: bool = False,
    invocation: tuple[str, ...] = (),
    refuse_future: bool = False,
    reprice_from: datetime.date | None = None,
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
        invocation: the command line, for the run log.
        reprice_from: a changed rules file is in force from this day (of an open month) on,
            and the days from it on are derived again under it (SPEC v3 §6; ``history``).
        refuse_future: refuse a ``through`` later than today in the books' timezone (the
            command line's guard, SPEC v3 §6: a future commitment or expiry, once posted,
            cannot be taken back; ``--allow-future`` lifts it).

    Returns:
        The counts of the run.

    Raises:
        ValueError: ``through`` is outside the books' calendar (the command line refuses
            such a day before it calls this; the days after it must stay in range).
    """
    if through is not None and not dates.BOOKING_DAY_MIN <= through <= dates.BOOKING_DAY_MAX:
        calendar = f"{dates.BOOKING_DAY_MIN} to {dates.BOOKING_DAY_MAX}"
        raise ValueError(f"{through} is not in the books' calendar ({calendar})")
    with commit.writing(books_dir, wait_seconds, invocation) as run, worker.no_cycle_collector():
        helper = worker.Worker(books_dir) if worker.use_worker(list(paths)) else None
        try:
            if refuse_future:
                _refuse_future(run, through)
            result = _post_run(run, paths, through, progress, full, helper, reprice_from)
        finally:
            if helper:
                helper.close()
    write_point("after commit")
    return result


def _refuse_future(run: commit.Run, through: datetime.date | None) -> None:
    today = datetime.datetime.now(datetime.UTC).astimezone(dates.load_zone(run.timezone)).date()
    if through is not None and through > today:
        raise FutureDay(
            f"--through {through} is later than today ({today} in the books' timezone "
            f"{run.timezone}): a future commitment or expiry, once posted, cannot be taken "
            "back; give --allow-future to post it anyway"
        )


def _result(run: commit.Run, ingested: IngestResult, through, written: int) -> PostResult:
    rejected = Counter(ingested.schema_rejected)
    rejected.update(queries.verdict_counts_of_run(run.db, run.run_id))
    return PostResult(
        read=ingested.read,
        accepted=ingested.read - ingested.duplicates - sum(rejected.values()),
        duplicates=ingested.duplicates,
        rejected=dict(sorted(rejected.items())),
        posted_through=queries.posted_through(run.db).isoformat(),
        transactions_written=written,
        run_id=run.run_id,
        repaired=run.repaired,
    )


def _post_run(
    run: commit.Run, paths, through, progress: Progress, full: bool, helper, reprice_from=None
) -> PostResult:
    db = run.db
    in_force = history.rules_in_force(db, run.books_dir, reprice_from)
    rules = in_force.history
    zone = dates.load_zone(run.timezone)
    through = through or dates.yesterday(datetime.datetime.now(datetime.UTC), zone)
    ingested = ingest_files(db, paths, run.run_id, run.currency, zone, progress.lines, helper)
    if helper and (not helper.started or helper.overflowed):
        # No input was read (all known), or the worker's share outgrew its memory: this
        # process derives every customer, those of an overflow from the store.
        ingested = ingested._replace(memory=None) if helper.overflowed else ingested
        helper = None
    posted_before = queries.posted_through(db)
    first_open = queries.first_open_day(db)
    # A run through a day before the first open month defers corrections of closed days;
    # the days before a checkpoint must all be posted, so such a run neither reads nor keeps
    # checkpoints.
    keep = first_open is None or first_open <= through
    context = derive.RunContext(
        rules, through, first_open, posted_before, run.run_id,
        checkpoint_store.basis(rules.sha256), resume=keep and not full, keep=keep,
    )  # fmt: skip
    writer = commit.JournalWriter(run)
    due = queries.due_customers(db, through)
    if full or in_force.reprices:  # every customer, derived under the rules of each day
        day = in_force.change_from if in_force.reprices else through
        due = {customer: day for customer, _ in queries.customers(db)} | due
    derived = _touched(ingested, due)
    entries = _derive_customers(db, derived, context, writer, progress, ingested.memory, helper)
    written = writer.write_summaries(plan_gl_summaries(entries, run.run_id))
    writer.write()
    queries.set_posted_through(db, max(through, posted_before) if posted_before else through)
    result = _result(run, ingested, through, written)
    state = runlog.record_state_digests(db, run.run_id, list(derived))
    write_point("run log")
    check_inputs_unchanged(ingested)  # what is recorded is what the paths still hold
    history.record_change(db, run.run_id, in_force)
    digests = {"events": ingested.events_digest, "state": state}
    options = {"full": full, "reprice_from": reprice_from and reprice_from.isoformat()}
    record = commit.RunRecord("post", through.isoformat(), list(ingested.inputs),
                              result.as_json(), in_force.file, digests, options)  # fmt: skip
    commit.record_run(run, record, writer)
    return result
