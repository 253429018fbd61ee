"""The credit wallet (SPEC §5): a customer's rated history replayed day by day.

:func:`replay_wallet` walks the posting days in order and, on each, posts what the day
brings in the order of :class:`~ledger_engine.core.model.EntryKind`: expiries of lots that
ended yesterday, commitments, manual top-ups, credit grants, the automatic top-up when the
day's charges need it, charges consuming lots soonest-expiry first, payments, adjustments,
write-offs.  The result is what the books *should* hold; the planner compares it with what
they *do* hold.

The only mutable state is the :class:`LotBook`, owned by the day loop; every entry is built
by a small pure function of its inputs.  Same rating in, same result out.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from ledger_engine.core import accounts, dates
from ledger_engine.core.model import (
    CHANNELS,
    EXCEEDS_OPEN_RECEIVABLE,
    Conversation,
    Entry,
    EntryKind,
    Event,
    Lot,
    Period,
    Rating,
    Terms,
    WalletResult,
    WalletState,
    period_order,
)
from ledger_engine.core.money import format_cents
from ledger_engine.rules import Rules

ONE_DAY = datetime.timedelta(days=1)
Postings = tuple[tuple[str, int], ...]
Taken = list[tuple[str, int]]  # (lot id, cents taken from it)


def short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def conversations_digest(conversations: Iterable[Conversation]) -> str:
    """SHA-256 (first 16 hex digits) of the sorted conversation ids, one per line."""
    joined = "\n".join(sorted(c.conversation for c in conversations))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


class LotBook:
    """The lots of one replay, in the order they were credited.

    Lots with a remainder are kept apart, so expiring and charging look only at money that
    is still there.  Charges take from the lot that expires soonest, then the oldest.
    """

    def __init__(self) -> None:
        self._lots: dict[str, Lot] = {}  # every lot, in the order credited
        self._ids: list[str] = []  # the same order, for the lots credited since a count
        self._open: dict[str, int] = {}  # lot id -> position, lots with a remainder

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, lot: Lot) -> None:
        self._open[lot.lot_id] = len(self._ids)
        self._lots[lot.lot_id] = lot
        self._ids.append(lot.lot_id)

    def credited_since(self, count: int) -> list[Lot]:
        """The lots credited after the first ``count``."""
        return [self._lots[lot_id] for lot_id in self._ids[count:]]

    def _take(self, lot_id: str, cents: int) -> None:
        lot = self._lots[lot_id]
        self._lots[lot_id] = lot._replace(remainder=lot.remainder - cents)
        if lot.remainder == cents:
            del self._open[lot_id]

    def available(self, day: datetime.date) -> int:
        """The money in lots still valid on ``day``."""
        return sum(
            self._lots[lot_id].remainder
            for lot_id in self._open
            if self._lots[lot_id].last_valid >= day
        )

    def consume(self, day: datetime.date, amount: int) -> tuple[Taken, int]:
        """Takes ``amount`` from lots valid on ``day``; returns what it took and the shortfall."""
        valid = sorted(
            (lot.last_valid, lot.day, position, lot.lot_id)
            for lot_id, position in self._open.items()
            if (lot := self._lots[lot_id]).last_valid >= day
        )
        taken: Taken = []
        for *_, lot_id in valid:
            if amount == 0:
                break
            take = min(amount, self._lots[lot_id].remainder)
            self._take(lot_id, take)
            amount -= take
            taken.append((lot_id, take))
        return taken, amount

    def expire(self, day: datetime.date) -> Taken:
        """Empties the lots whose last valid day is before ``day``; returns what they held."""
        expired = [
            (lot_id, self._lots[lot_id].remainder)
            for lot_id in self._open
            if self._lots[lot_id].last_valid < day
        ]
        for lot_id, cents in expired:
            self._take(lot_id, cents)
        return expired

    def lots(self) -> tuple[Lot, ...]:
        return tuple(self._lots.values())

    def open_lots(self) -> tuple[Lot, ...]:
        """The lots with a remainder, in the order they were credited."""
        return tuple(self._lots[lot_id] for lot_id in self._open)

    def kind_of(self, lot_id: str) -> str:
        return self._lots[lot_id].kind


class Replay(NamedTuple):
    """What one customer's replay reads (never changes during it)."""

    customer: str
    wallet: str  # the customer's wallet account
    receivable: str  # the customer's receivable account
    rules: Rules
    through: datetime.date
    terms: tuple[Terms, ...]
    term_days: tuple[datetime.date, ...]
    usage: dict[datetime.date, list[Conversation]]
    events: dict[datetime.date, list[Event]]  # wallet events by day, by (at, id)
    periods: dict[str, Period]  # the billing periods of the conversations, by label

    def terms_on(self, day: datetime.date) -> Terms | None:
        index = bisect.bisect_right(self.term_days, day) - 1
        return self.terms[index] if index >= 0 else None


def _replay_of(customer: str, rating: Rating, rules: Rules, through: datetime.date) -> Replay:
    segment = accounts.customer_segment(customer)
    usage: dict[datetime.date, list[Conversation]] = defaultdict(list)
    for conversation in rating.conversations:
        usage[conversation.day].append(conversation)
    events: dict[datetime.date, list[Event]] = defaultdict(list)
    for event in sorted(rating.wallet_events, key=lambda e: (e.at, e.id)):
        events[event.day].append(event)
    return Replay(
        customer=customer,
        wallet=accounts.wallet_account(segment),
        receivable=accounts.receivable_account(segment),
        rules=rules,
        through=through,
        terms=rating.terms,
        term_days=tuple(terms.day for terms in rating.terms),
        usage=dict(usage),
        events=dict(events),
        periods={period.label: period for period in rating.periods},
    )


# ------------------------------------------------------------------- the builders (pure)


def _entry(
    replay: Replay,
    kind: EntryKind,
    day: datetime.date,
    detail: str | None,
    postings: Iterable[tuple[str, int]],
    meta: Iterable[tuple[str, object]],
) -> Entry | None:
    """An entry with its postings merged per account (zero postings dropped); None if
    nothing is left.  A posting set that does not balance is a bug."""
    merged: dict[str, int] = {}
    for account, cents in postings:
        merged[account] = merged.get(account, 0) + cents
    kept = tuple((account, cents) for account, cents in merged.items() if cents)
    assert sum(cents for _, cents in kept) == 0, f"unbalanced postings {kept}"
    if not kept:
        return None
    return Entry(
        kind, day, kind.key(detail), kind.narration(detail), kept,
        (("customer", replay.customer), *meta),
    )  # fmt: skip


def _lots_meta(taken: Taken) -> tuple[tuple[str, object], ...]:
    """The ``lots`` metadata (lot:amount pairs), left out when no lot was touched."""
    text = " ".join(f"{lot_id}:{format_cents(cents)}" for lot_id, cents in taken)
    return (("lots", text),) if text else ()


def breakage_entry(replay: Replay, day: datetime.date, expired: Taken, book: LotBook):
    """What expired lots held leaves the wallet: paid credit is breakage, granted credit
    goes back to the granted contra account (credit given away and never used is no income)."""
    granted = sum(cents for lot_id, cents in expired if book.kind_of(lot_id) == "grant")
    paid = sum(cents for _, cents in expired) - granted
    postings = [
        (replay.wallet, paid + granted),
        (accounts.BREAKAGE, -paid),
        (accounts.ALLOWANCE_GRANTED, -granted),
    ]
    return _entry(replay, EntryKind.BREAKAGE, day, None, postings, _lots_meta(expired))


def credit_entry(
    replay: Replay,
    kind: EntryKind,
    lot: Lot,
    detail: str | None = None,
    before: tuple[tuple[str, object], ...] = (),
    after: tuple[tuple[str, object], ...] = (),
) -> Entry | None:
    """A credit invoiced to the receivable and added to the wallet as ``lot``."""
    postings = [(replay.receivable, lot.amount), (replay.wallet, -lot.amount)]
    meta = (*before, ("lot", lot.lot_id), ("expires", lot.last_valid), *after)
    return _entry(replay, kind, lot.day, detail, postings, meta)


def commitment_terms(replay: Replay, day: datetime.date) -> Terms | None:
    """The terms whose commitment is credited on ``day`` (see :func:`terms_of_commitment`)."""
    return terms_of_commitment(replay.terms, replay.term_days, day)


def terms_of_commitment(
    timeline: tuple[Terms, ...], term_days: tuple[datetime.date, ...], day: datetime.date
) -> Terms | None:
    """The terms whose commitment is credited on ``day``, if a commitment month starts
    then: the terms in force at the day's start, or the first (re-)subscription of the day,
    whichever first has a commitment month beginning on ``day`` (SPEC v3 §5: commitment
    months keep their anchor across plan changes; a changed amount waits for the next).

    Args:
        timeline: a rating's terms, in time order.
        term_days: the day of each of them.
        day: the day.

    Returns:
        Those terms, or None when no commitment month of active terms starts on ``day``.
    """
    start = bisect.bisect_left(term_days, day)
    end = bisect.bisect_right(term_days, day)
    for terms in timeline[max(start - 1, 0) : end]:
        anchor = terms.commitment_anchor
        if terms.active and day >= anchor and dates.billing_month_start(anchor, day) == day:
            return terms
    return None


def commitment_lot(replay: Replay, day: datetime.date) -> Lot | None:
    """The commitment credited on ``day``, if ``day`` starts a commitment month of one."""
    terms = commitment_terms(replay, day)
    if terms is None or terms.commitment <= 0:
        return None
    months = replay.rules.on(day).commitment_billing_months
    last_valid = dates.add_months(day, months, terms.commitment_anchor.day) - ONE_DAY
    lot_id = f"commitment-{day.isoformat()}"
    return Lot(lot_id, "commitment", day, last_valid, terms.commitment, terms.commitment)


def top_up_expiry(replay: Replay, day: datetime.date) -> datetime.date:
    return dates.last_day_of_month(day, replay.rules.on(day).top_up_extra_months)


def top_up_lot(replay: Replay, event: Event) -> Lot:
    last_valid = top_up_expiry(replay, event.day)
    lot_id = f"top-up-{short_hash(event.id)}"
    return Lot(lot_id, "top_up", event.day, last_valid, event.amount, event.amount)


def auto_top_up_lot(replay: Replay, day: datetime.date, need: int, terms: Terms) -> Lot:
    """The fewest automatic top-ups of the customer's amount that cover ``need``."""
    amount = -(-need // terms.auto_amount) * terms.auto_amount
    last_valid = top_up_expiry(replay, day)
    return Lot(f"auto-top-up-{day.isoformat()}", "auto_top_up", day, last_valid, amount, amount)


def grant_lot(replay: Replay, event: Event) -> Lot:
    """Free credit: valid through its ``expires`` day, or as long as a top-up bought that day."""
    if event.expires is not None:
        last_valid = datetime.date.fromisoformat(event.expires)
    else:
        last_valid = top_up_expiry(replay, event.day)
    lot_id = f"grant-{short_hash(event.id)}"
    return Lot(lot_id, "grant", event.day, last_valid, event.amount, event.amount)


def grant_entry(replay: Replay, event: Event, lot: Lot) -> Entry | None:
    """Granted credit into the wallet, against the granted contra account."""
    postings = [(accounts.ALLOWANCE_GRANTED, lot.amount), (replay.wallet, -lot.amount)]
    meta = (
        ("event", event.id),
        ("lot", lot.lot_id),
        ("expires", lot.last_valid),
        *((("reason", event.reason),) if event.reason else ()),
    )
    return _entry(replay, EntryKind.GRANT, event.day, short_hash(event.id), postings, meta)


def write_off_entry(replay: Replay, event: Event) -> Entry | None:
    """An unpaid receivable written off to bad debt."""
    postings = [(accounts.BAD_DEBT, event.amount), (replay.receivable, -event.amount)]
    meta = (("event", event.id), *((("reason", event.reason),) if event.reason else ()))
    return _entry(replay, EntryKind.WRITE_OFF, event.day, short_hash(event.id), postings, meta)


def adjustment_entry(replay: Replay, event: Event) -> Entry | None:
    """Finance's manual entry: its lines as postings, ``receivable`` being the customer's
    (lines on one account are merged; the checks made sure something moves)."""
    postings = [
        (replay.receivable if account == accounts.ADJUSTMENT_RECEIVABLE else account, cents)
        for account, cents in event.lines
    ]
    meta = (
        ("event", event.id),
        ("reason", event.reason),
        *((("reference", event.reference),) if event.reference else ()),
        *((("approved_by", event.approved_by),) if event.approved_by else ()),
    )
    return _entry(replay, EntryKind.ADJUSTMENT, event.day, short_hash(event.id), postings, meta)


def payment_entry(replay: Replay, event: Event) -> Entry | None:
    postings = [(accounts.BANK_CLEARING, event.amount), (replay.receivable, -event.amount)]
    meta = (("event", event.id),)
    return _entry(replay, EntryKind.PAYMENT, event.day, short_hash(event.id), postings, meta)


def paid_postings(replay: Replay, amount: int, taken: Taken) -> list[tuple[str, int]]:
    """What the wallet paid of ``amount`` (the lots ``taken``) and the shortfall invoiced."""
    paid = sum(cents for _, cents in taken)
    return [(replay.wallet, paid), (replay.receivable, amount - paid)]


def usage_entry(replay: Replay, day, conversations: list[Conversation], taken: Taken) -> Entry:
    """One day's conversations of one billing period: gross at list price, the contra
    entry of what was included or trial, the charged part paid from the wallet."""
    gross: dict[str, int] = defaultdict(int)
    contra: dict[str, int] = defaultdict(int)
    for conversation in conversations:
        gross[accounts.REVENUE_BY_KIND[conversation.kind]] -= conversation.price
        if conversation.status == "included":
            contra[accounts.ALLOWANCE_INCLUDED] += conversation.price
        elif conversation.status == "trial":
            contra[accounts.ALLOWANCE_TRIAL] += conversation.price
    charged = [c for c in conversations if c.status == "charged"]
    payment = paid_postings(replay, sum(c.price for c in charged), taken)
    first = conversations[0]
    counts = (
        ("conversations", len(conversations)),
        ("included", sum(c.status == "included" for c in conversations)),
        ("charged", len(charged)),
    )
    # Counts that are zero on most days are left out (every line costs load time).
    rare = (
        ("trial", sum(c.status == "trial" for c in conversations)),
        ("autopilot", sum(c.kind == "autopilot" for c in conversations)),
    )
    meta = (
        ("period", f"{first.period}/{first.period_end or ''}"),
        *_plan_meta(replay, first),
        *counts,
        *((key, count) for key, count in rare if count),
        ("rules-version", first.rules_version),
        ("conversations-digest", conversations_digest(conversations)),
        *_lots_meta(taken),
    )
    postings = [*gross.items(), *contra.items(), *payment]
    return _entry(replay, EntryKind.USAGE, day, first.period, postings, meta)


def _plan_meta(replay: Replay, conversation: Conversation) -> tuple[tuple[str, str], ...]:
    """The ``plan`` and ``interval`` of a conversation's period (a trial has no interval)."""
    if conversation.status == "trial":  # a trial is no billing period: no Period record
        return (("plan", "trial"),)
    period = replay.periods[conversation.period]
    return (("plan", period.plan), ("interval", period.interval))


def channel_entry(replay: Replay, day, channel: str, events: list[Event], taken: Taken):
    """One channel's charges of one day, as the billing page lists them."""
    total = sum(event.amount for event in events)
    postings = [(accounts.CHANNEL_INCOME[channel], -total), *paid_postings(replay, total, taken)]
    meta = (("events", len(events)), *_lots_meta(taken))
    return _entry(replay, EntryKind.CHANNEL, day, channel, postings, meta)


# ----------------------------------------------------------------------- the day loop


def _charges(replay: Replay, book: LotBook, day: datetime.date) -> list[Entry | None]:
    """The day's automatic top-up (if the charges need one), then the charges."""
    conversations = replay.usage.get(day, [])
    channel_events = [e for e in replay.events.get(day, ()) if e.type == "channel_usage"]
    charged = sum(c.price for c in conversations if c.status == "charged")
    total = charged + sum(e.amount for e in channel_events)
    entries: list[Entry | None] = []
    terms = replay.terms_on(day)
    if total and terms is not None and terms.auto_enabled:
        need = total + terms.auto_threshold - book.available(day)
        if need > 0:
            lot = auto_top_up_lot(replay, day, need, terms)
            book.add(lot)
            count = lot.amount // terms.auto_amount
            meta = (("top-ups", count), ("threshold", format_cents(terms.auto_threshold)))
            entries.append(credit_entry(replay, EntryKind.AUTO_TOP_UP, lot, after=meta))
    by_period: dict[str, list[Conversation]] = defaultdict(list)
    for conversation in conversations:
        by_period[conversation.period].append(conversation)
    for label in sorted(by_period, key=period_order):
        group = by_period[label]
        amount = sum(c.price for c in group if c.status == "charged")
        entries.append(usage_entry(replay, day, group, book.consume(day, amount)[0]))
    for channel in CHANNELS:
        events = [e for e in channel_events if e.channel == channel]
        if events:
            taken = book.consume(day, sum(e.amount for e in events))[0]
            entries.append(channel_entry(replay, day, channel, events, taken))
    return entries


def _credits(replay: Replay, book: LotBook, day: datetime.date) -> list[Entry | None]:
    """The day's credits before its charges: commitment, manual top-ups, grants."""
    entries: list[Entry | None] = []
    lot = commitment_lot(replay, day)
    if lot is not None:
        book.add(lot)
        entries.append(credit_entry(replay, EntryKind.COMMITMENT, lot))
    day_events = replay.events.get(day, ())
    for event in day_events:
        if event.type == "top_up":
            lot = top_up_lot(replay, event)
            book.add(lot)
            before = (("event", event.id),)
            entries.append(
                credit_entry(replay, EntryKind.TOP_UP, lot, short_hash(event.id), before)
            )
    for event in day_events:
        if event.type == "credit_grant":
            lot = grant_lot(replay, event)
            book.add(lot)
            entries.append(grant_entry(replay, event, lot))
    return entries


def _receivable_in(replay: Replay, entries: Iterable[Entry | None]) -> int:
    return sum(
        cents
        for entry in entries
        if entry is not None
        for account, cents in entry.postings
        if account == replay.receivable
    )


def post_day(
    replay: Replay,
    book: LotBook,
    day: datetime.date,
    receivable_open: int,
    verdicts: dict[str, str],
) -> list[Entry]:
    """Everything one day brings, in the order of :class:`EntryKind`.

    Args:
        replay: what the replay reads.
        book: the lots (changed as the day credits and charges them).
        day: the day.
        receivable_open: the customer's open receivable (cents) before the day.
        verdicts: where a write-off over the open receivable is recorded.
    """
    entries: list[Entry | None] = []
    expired = book.expire(day)
    if expired:
        entries.append(breakage_entry(replay, day, expired, book))
    entries += _credits(replay, book, day)
    entries += _charges(replay, book, day)
    day_events = replay.events.get(day, ())
    entries += [payment_entry(replay, e) for e in day_events if e.type == "payment"]
    entries += [adjustment_entry(replay, e) for e in day_events if e.type == "adjustment"]
    for event in day_events:
        if event.type != "write_off":
            continue
        if event.amount > receivable_open + _receivable_in(replay, entries):
            verdicts[event.id] = EXCEEDS_OPEN_RECEIVABLE
        else:
            entries.append(write_off_entry(replay, event))
    return [entry for entry in entries if entry is not None]


def commitment_days(terms: tuple[Terms, ...], through: datetime.date) -> list[datetime.date]:
    """Every day up to ``through`` on which a commitment month of active terms with a
    commitment starts (:func:`commitment_lot` tells which are credited)."""
    days = set()
    for index, term in enumerate(terms):
        if not term.active or term.commitment <= 0:
            continue
        end = min(terms[index + 1].day if index + 1 < len(terms) else through, through)
        anchor = term.commitment_anchor
        start = dates.billing_month_start(anchor, max(term.day, anchor))
        months = 0
        while (day := dates.add_months(start, months, anchor.day)) <= end:
            if day >= term.day:
                days.add(day)
            months += 1
    return sorted(days)


def replay_wallet(
    customer: str,
    rating: Rating,
    rules: Rules,
    through: datetime.date,
    start: WalletState | None = None,
    marks: Iterable[datetime.date] = (),
) -> WalletResult:
    """Replays one customer's wallet up to and including ``through``: from its first day,
    or from the day of a state kept by an earlier replay.

    Args:
        customer: the customer id.
        rating: the customer's rating (:func:`ledger_engine.core.rating.rate_customer`),
            resumed from the same day as ``start`` when that is given.
        rules: the catalogue and wallet policy.
        through: the last day to post.
        start: the state to resume from (None: from the first day).
        marks: days (after ``start.day``, at most the day after ``through``) at whose start
            to keep the state.

    Returns:
        The entries the books should hold from the first (or ``start``'s) day on, the lots
        with their remainders, and the states at ``marks``.
    """
    replay = _replay_of(customer, rating, rules, through)
    book = LotBook()
    first_day = start.day if start else datetime.date.min
    for lot in start.lots if start else ():
        book.add(lot)
    # A sorted list is a heap; days of expiry join it as lots are credited.
    queue = sorted(
        {
            *replay.usage,
            *replay.events,
            *commitment_days(rating.terms, through),
            *(lot.last_valid + ONE_DAY for lot in book.open_lots()),
        }
    )
    pending = sorted(marks, reverse=True)
    states: list[WalletState] = []
    seen: set[datetime.date] = set()
    entries: list[Entry] = []
    verdicts: dict[str, str] = {}
    receivable = start.receivable if start else 0
    while queue:
        day = heapq.heappop(queue)
        if day in seen or day > through or day < first_day:
            continue
        while pending and pending[-1] <= day:
            states.append(WalletState(pending.pop(), book.open_lots(), receivable))
        seen.add(day)
        known = len(book)
        day_entries = post_day(replay, book, day, receivable, verdicts)
        receivable += _receivable_in(replay, day_entries)
        entries += day_entries
        for lot in book.credited_since(known):  # due again on the day after it expires
            heapq.heappush(queue, lot.last_valid + ONE_DAY)
    states += [WalletState(day, book.open_lots(), receivable) for day in reversed(pending)]
    return WalletResult(tuple(entries), book.lots(), verdicts, tuple(states))


def next_due_day(
    rating: Rating, result: WalletResult, events: list[Event], through: datetime.date
) -> datetime.date | None:
    """The first day after ``through`` on which this customer's books change without new
    events (a lot expires, a commitment is credited, a stored future event falls due)."""
    candidates = [event.day for event in events if event.day > through]
    candidates += [
        lot.last_valid + ONE_DAY
        for lot in result.lots
        if lot.remainder > 0 and lot.last_valid >= through
    ]
    if rating.terms and rating.terms[-1].active and rating.terms[-1].commitment > 0:
        anchor = rating.terms[-1].commitment_anchor
        start = dates.billing_month_start(anchor, max(through, anchor))
        candidates.append(dates.add_months(start, 1, anchor.day))
    return min(candidates) if candidates else None
