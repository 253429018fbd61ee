"""Plan postings: the difference between what the books should hold and what they hold.

Desired transactions (:mod:`ledger_engine.wallet`) and posted ones are both keyed by
``(original day, key)``.  Where the amounts per account differ, a new transaction carries the
difference: the first one for a key is the original entry, later ones are corrections that
point at the entry they correct.  A correction whose original day lies in a closed month is
dated on the first open day instead, marked ``late``.  Nothing is ever edited.
"""

from __future__ import annotations

import datetime
from typing import NamedTuple

from ledger_engine.wallet import STEP_ORDER, DesiredTxn


class PostedKey(NamedTuple):
    amounts: dict[str, int]  # account -> cents, summed over every posted entry of the key
    last_seq: int
    last_txn_id: str


class NewTxn(NamedTuple):
    customer: str
    segment: str
    orig_day: datetime.date
    key: str
    seq: int
    effective_day: datetime.date
    late: bool
    corrects: str | None
    late_event: bool  # a new entry for a day that an earlier run had already posted
    narration: str
    postings: tuple[tuple[str, int], ...]
    meta: tuple[tuple[str, object], ...]

    @property
    def link(self) -> str:
        return f"{self.segment}.{self.orig_day.isoformat()}.{self.key}"

    @property
    def txn_id(self) -> str:
        return f"{self.link}.{self.seq}"


def plan_customer(
    customer: str,
    segment: str,
    desired: tuple[DesiredTxn, ...],
    posted: dict[tuple[datetime.date, str], PostedKey],
    through: datetime.date,
    first_open_day: datetime.date | None,
    posted_before: datetime.date | None = None,
) -> tuple[list[NewTxn], datetime.date | None]:
    """The new transactions that bring the posted entries of a customer to the desired ones.

    Args:
        customer: the customer id.
        segment: its account segment.
        desired: what the books should hold (every day, also after ``through``).
        posted: what they hold, per ``(original day, key)``.
        through: the last day to post.
        first_open_day: the first day of the first open month (None: no month is closed).
        posted_before: the last day posted by earlier runs (None: nothing posted yet).

    Returns:
        New transactions in posting order (by effective day, then original day, then key),
        and the day from which a deferred difference can be posted (None if none waits).
    """
    wanted = {(txn.day, txn.key): txn for txn in desired if txn.day <= through}
    plan = []
    deferred_until = None
    for day, key in sorted(set(wanted) | set(posted)):
        if day > through:
            continue
        txn = wanted.get((day, key))
        have = posted.get((day, key))
        delta = dict(txn.postings) if txn else {}
        for account, cents in have.amounts.items() if have else ():
            delta[account] = delta.get(account, 0) - cents
        postings = tuple((account, cents) for account, cents in delta.items() if cents)
        if not postings:
            continue
        late = first_open_day is not None and day < first_open_day
        effective = first_open_day if late else day
        if effective > through:
            deferred_until = effective  # the first open month is not being posted yet
            continue
        if txn is not None:
            narration, meta = txn.narration, txn.meta
        else:
            narration, meta = "Reversal", (("customer", customer),)
        plan.append(
            NewTxn(
                customer=customer,
                segment=segment,
                orig_day=day,
                key=key,
                seq=have.last_seq + 1 if have else 1,
                effective_day=effective,
                late=late,
                corrects=have.last_txn_id if have else None,
                late_event=have is None and posted_before is not None and day <= posted_before,
                narration=narration,
                postings=postings,
                meta=meta,
            )
        )
    plan.sort(key=lambda t: (t.effective_day, t.orig_day, _step(t.key), t.key))
    return plan, deferred_until


def _step(key: str) -> int:
    prefix = key.split(".")[0]
    return STEP_ORDER.index(prefix) if prefix in STEP_ORDER else len(STEP_ORDER)
