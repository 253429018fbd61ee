"""Plan postings: the difference between what the books should hold and what they hold.

Desired entries (:mod:`ledger_engine.core.wallet`) and posted ones are both keyed by
``(original day, key)``.  Where the amounts per account differ, a new entry carries the
difference: the first one for a key is the original entry, later ones are corrections that
point at the entry they correct.  A correction whose original day lies in a closed month is
dated on the first open day instead, marked ``late``.  Nothing is ever edited.

The general ledger is planned here too: one summary per day and kind of movement of the
control-account totals of the subledger entries (:func:`plan_gl_summaries`).
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable

from ledger_engine.core import accounts
from ledger_engine.core.model import (
    OTHER_MOVEMENT,
    Entry,
    EntryKind,
    GlSummary,
    NewEntry,
    PostedState,
)

REVERSAL_NARRATION = "Reversal"  # a key the books hold that is no longer wanted at all


def _rank(entry: NewEntry) -> tuple:
    """Posting order: effective day, original day, kind (a day's order), key."""
    rank = entry.kind.rank if entry.kind is not None else len(EntryKind)
    return (entry.effective_day, entry.orig_day, rank, entry.key)


def _difference(wanted: Entry | None, have: PostedState | None) -> tuple[tuple[str, int], ...]:
    delta = dict(wanted.postings) if wanted else {}
    for account, cents in have.amounts.items() if have else ():
        delta[account] = delta.get(account, 0) - cents
    return tuple((account, cents) for account, cents in delta.items() if cents)


def plan_customer(
    customer: str,
    segment: str,
    desired: Iterable[Entry],
    posted: dict[tuple[datetime.date, str], PostedState],
    through: datetime.date,
    first_open_day: datetime.date | None,
    posted_before: datetime.date | None = None,
) -> tuple[list[NewEntry], datetime.date | None]:
    """The new entries that bring the posted entries of a customer to the desired ones.

    Args:
        customer: the customer id.
        segment: its account segment.
        desired: what the books should hold (every day, also after ``through``).
        posted: what they hold, per ``(original day, key)``.
        through: the last day to post.
        first_open_day: the first day of the first open month (None: no month is closed).
        posted_before: the last day posted by earlier runs (None: nothing posted yet).

    Returns:
        New entries in posting order (by effective day, then original day, then kind and
        key), and the day from which a deferred difference can be posted (None if none
        waits).
    """
    wanted = {(entry.day, entry.key): entry for entry in desired if entry.day <= through}
    plan = []
    deferred_until = None
    for day, key in sorted(set(wanted) | set(posted)):
        if day > through:
            continue
        entry, have = wanted.get((day, key)), posted.get((day, key))
        postings = _difference(entry, have)
        if not postings:
            continue
        moved = first_open_day is not None and day < first_open_day
        effective = first_open_day if moved else day
        if effective > through:
            deferred_until = effective  # the first open month is not being posted yet
            continue
        kind_of_key = EntryKind.of_key(key)
        plan.append(
            NewEntry(
                customer=customer,
                segment=segment,
                kind=kind_of_key[0] if kind_of_key else None,
                orig_day=day,
                key=key,
                seq=have.last_seq + 1 if have else 1,
                effective_day=effective,
                moved_from_closed_month=moved,
                corrects=have.last_txn_id if have else None,
                for_already_posted_day=(
                    have is None and posted_before is not None and day <= posted_before
                ),
                narration=entry.narration if entry else REVERSAL_NARRATION,
                postings=postings,
                meta=entry.meta if entry else (("customer", customer),),
            )
        )
    plan.sort(key=_rank)
    return plan, deferred_until


def gl_link(day: datetime.date, movement: str, run_id: int) -> str:
    """The link (and transaction id) of a run's GL summary of one day and kind of movement."""
    return f"gl.{day.isoformat()}.{movement}.r{run_id}"


def movement_of(entry: NewEntry) -> str:
    """The kind of movement of an entry (a correction has the kind of what it corrects)."""
    return entry.kind.movement if entry.kind is not None else OTHER_MOVEMENT


def plan_gl_summaries(entries: Iterable[NewEntry], run_id: int) -> list[GlSummary]:
    """One GL summary per effective day and kind of movement of ``entries``: their postings
    with customer accounts mapped to the control accounts, in the chart's account order.
    Within a day the summaries follow the posting order of the kinds."""
    groups: dict[tuple, list[NewEntry]] = defaultdict(list)
    for entry in entries:
        rank = entry.kind.rank if entry.kind is not None else len(EntryKind)
        groups[(entry.effective_day, rank, movement_of(entry))].append(entry)
    summaries = []
    for day, _, movement in sorted(groups):
        group = groups[(day, _, movement)]
        totals: dict[str, int] = defaultdict(int)
        for entry in group:
            for account, cents in entry.postings:
                totals[accounts.control_account(account)] += cents
        postings = tuple((a, totals[a]) for a in accounts.GL_ACCOUNTS if totals.get(a))
        link = gl_link(day, movement, run_id)
        summaries.append(GlSummary(day, movement, link, run_id, tuple(group), postings))
    return summaries
