"""The credit wallet (SPEC §5) and the desired transactions of one customer.

:func:`desired_transactions` replays a customer's rated history day by day: commitments,
top-ups (manual and automatic), charges consuming lots soonest-expiry first, breakage of
expired lots, payments.  The result is what the books *should* hold; the posting planner
compares it with what they *do* hold.  A pure function: same rating in, same result out.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import heapq
from collections import defaultdict
from typing import NamedTuple

from ledger_engine import accounts, dates
from ledger_engine.events import Event
from ledger_engine.money import format_cents
from ledger_engine.rating import Conversation, Rating, Terms
from rules import Rules

ONE_DAY = datetime.timedelta(days=1)
# Within a day: expiries first (yesterday's lots are gone), then credits, then charges.
STEP_ORDER = ("breakage", "commitment", "top-up", "auto-top-up", "usage", "channel", "payment")
CHANNEL_LABELS = {"sms": "SMS", "whatsapp": "WhatsApp", "voice": "Voice"}


class Lot(NamedTuple):
    lot_id: str
    kind: str  # commitment, top_up, auto_top_up
    day: datetime.date
    last_valid: datetime.date
    amount: int
    remainder: int


class DesiredTxn(NamedTuple):
    """A transaction the books should hold, identified by ``(day, key)``."""

    day: datetime.date
    key: str
    narration: str
    postings: tuple[tuple[str, int], ...]  # (account, cents), zero postings left out
    meta: tuple[tuple[str, object], ...]


class WalletResult(NamedTuple):
    transactions: tuple[DesiredTxn, ...]
    lots: tuple[Lot, ...]


def short_hash(text: str, length: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def conversations_digest(conversations) -> str:
    """SHA-256 (first 16 hex digits) of the sorted conversation ids, one per line."""
    joined = "\n".join(sorted(c.conversation for c in conversations))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _postings(*pairs: tuple[str, int]) -> tuple[tuple[str, int], ...]:
    merged: dict[str, int] = {}
    for account, cents in pairs:
        merged[account] = merged.get(account, 0) + cents
    result = tuple((account, cents) for account, cents in merged.items() if cents)
    assert sum(cents for _, cents in result) == 0, f"unbalanced postings {result}"
    return result


class _Wallet:
    """Mutable lot book-keeping inside one replay (never escapes the pure function)."""

    def __init__(self) -> None:
        self.lots: dict[str, list] = {}  # lot_id -> [kind, day, last_valid, amount, remainder]
        self.order: list[str] = []

    def add(self, lot_id: str, kind: str, day, last_valid, amount: int) -> None:
        self.lots[lot_id] = [kind, day, last_valid, amount, amount]
        self.order.append(lot_id)

    def available(self, day) -> int:
        return sum(lot[4] for lot in self.lots.values() if lot[2] >= day and lot[4] > 0)

    def consume(self, day, amount: int) -> tuple[list[tuple[str, int]], int]:
        """Takes ``amount`` from valid lots, soonest expiry then oldest; returns the shortfall."""
        valid = [
            (self.lots[lot_id][2], self.lots[lot_id][1], position, lot_id)
            for position, lot_id in enumerate(self.order)
            if self.lots[lot_id][2] >= day and self.lots[lot_id][4] > 0
        ]
        valid.sort()
        taken = []
        for *_, lot_id in valid:
            if amount == 0:
                break
            take = min(amount, self.lots[lot_id][4])
            self.lots[lot_id][4] -= take
            amount -= take
            taken.append((lot_id, take))
        return taken, amount

    def expire(self, day) -> list[tuple[str, int]]:
        expired = []
        for lot_id in self.order:
            lot = self.lots[lot_id]
            if lot[2] < day and lot[4] > 0:
                expired.append((lot_id, lot[4]))
                lot[4] = 0
        return expired

    def result(self) -> tuple[Lot, ...]:
        return tuple(Lot(i, *self.lots[i]) for i in self.order)


def _nonzero(**counts: int) -> dict[str, int]:
    return {key: count for key, count in counts.items() if count}


def _lots_meta(taken: list[tuple[str, int]]) -> str:
    return " ".join(f"{lot_id}:{format_cents(cents)}" for lot_id, cents in taken)


class _Replay:
    def __init__(self, customer: str, rating: Rating, rules: Rules, through: datetime.date):
        self.customer = customer
        segment = accounts.customer_segment(customer)
        self.wallet_account = accounts.wallet_account(segment)
        self.receivable = accounts.receivable_account(segment)
        self.rules = rules
        self.through = through
        self.terms = rating.terms
        self.term_days = [terms.day for terms in rating.terms]
        self.wallet = _Wallet()
        self.out: list[DesiredTxn] = []
        self.usage: dict[datetime.date, list[Conversation]] = defaultdict(list)
        for conversation in rating.conversations:
            self.usage[conversation.day].append(conversation)
        self.events: dict[datetime.date, list[Event]] = defaultdict(list)
        for event in rating.wallet_events:
            self.events[event.day].append(event)

    def terms_on(self, day) -> Terms | None:
        index = bisect.bisect_right(self.term_days, day) - 1
        return self.terms[index] if index >= 0 else None

    def emit(self, day, key, narration, postings, **meta) -> None:
        postings = _postings(*postings)
        if postings:
            meta = {"customer": self.customer, **{k: v for k, v in meta.items() if v != ""}}
            self.out.append(DesiredTxn(day, key, narration, postings, tuple(meta.items())))

    def commitment_days(self) -> list[datetime.date]:
        days = set()
        for index, terms in enumerate(self.terms):
            if not terms.active or terms.commitment <= 0:
                continue
            end = self.terms[index + 1].day if index + 1 < len(self.terms) else self.through
            start = dates.billing_month_start(terms.anchor, terms.day)
            k = 0
            while (day := dates.add_months(start, k, terms.anchor.day)) <= min(end, self.through):
                if day >= terms.day:
                    days.add(day)
                k += 1
        return sorted(days)

    def run(self) -> WalletResult:
        queue = sorted(set(self.usage) | set(self.events) | set(self.commitment_days()))
        heapq.heapify(queue)
        seen = set()
        while queue:
            day = heapq.heappop(queue)
            if day in seen or day > self.through:
                continue
            seen.add(day)
            for expiry in self.day(day):
                heapq.heappush(queue, expiry)
        return WalletResult(tuple(self.out), self.wallet.result())

    def day(self, day) -> list[datetime.date]:
        """Posts one day; returns the days on which lots created today expire."""
        before = set(self.wallet.order)
        expired = self.wallet.expire(day)
        if expired:
            total = sum(cents for _, cents in expired)
            self.emit(
                day,
                "breakage",
                "Expiry",
                [(self.wallet_account, total), (accounts.BREAKAGE, -total)],
                lots=_lots_meta(expired),
            )
        self.commitment(day)
        for event in sorted(self.events.get(day, ()), key=lambda e: (e.at, e.id)):
            if event.type == "top_up":
                self.top_up(day, event)
        self.charges(day)
        for event in sorted(self.events.get(day, ()), key=lambda e: (e.at, e.id)):
            if event.type == "payment":
                self.emit(
                    day,
                    f"payment.{short_hash(event.id)}",
                    "Payment",
                    [(accounts.BANK_CLEARING, event.amount), (self.receivable, -event.amount)],
                    event=event.id,
                )
        new = [i for i in self.wallet.order if i not in before]
        return [self.wallet.lots[i][2] + ONE_DAY for i in new]

    def commitment(self, day) -> None:
        terms = self.terms_on(day)
        if terms is None or not terms.active or terms.commitment <= 0:
            return
        if dates.billing_month_start(terms.anchor, day) != day or day < terms.anchor:
            return
        months = self.rules.commitment_billing_months
        last_valid = dates.add_months(day, months, terms.anchor.day) - ONE_DAY
        lot_id = f"commitment-{day.isoformat()}"
        self.wallet.add(lot_id, "commitment", day, last_valid, terms.commitment)
        self.emit(
            day,
            "commitment",
            "Commitment",
            [(self.receivable, terms.commitment), (self.wallet_account, -terms.commitment)],
            lot=lot_id,
            expires=last_valid,
        )

    def top_up_expiry(self, day) -> datetime.date:
        return dates.last_day_of_month(day, self.rules.top_up_extra_months)

    def top_up(self, day, event: Event) -> None:
        lot_id = f"top-up-{short_hash(event.id)}"
        last_valid = self.top_up_expiry(day)
        self.wallet.add(lot_id, "top_up", day, last_valid, event.amount)
        self.emit(
            day,
            f"top-up.{short_hash(event.id)}",
            "Top-up",
            [(self.receivable, event.amount), (self.wallet_account, -event.amount)],
            event=event.id,
            lot=lot_id,
            expires=last_valid,
        )

    def charges(self, day) -> None:
        conversations = self.usage.get(day, [])
        channel_events = [e for e in self.events.get(day, ()) if e.type == "channel_usage"]
        charged = sum(c.price for c in conversations if c.status == "charged")
        total = charged + sum(e.amount for e in channel_events)
        if total == 0 and not conversations:
            return
        self.auto_top_up(day, total)
        by_period: dict[datetime.date, list[Conversation]] = defaultdict(list)
        for conversation in conversations:
            by_period[conversation.period_start].append(conversation)
        for period_start in sorted(by_period):
            self.usage_txn(day, by_period[period_start])
        if channel_events:
            self.channels_txn(day, channel_events)

    def auto_top_up(self, day, total: int) -> None:
        terms = self.terms_on(day)
        if terms is None or not terms.auto_enabled or total == 0:
            return
        available = self.wallet.available(day)
        need = total + terms.auto_threshold - available
        if need <= 0:
            return
        count = -(-need // terms.auto_amount)
        amount = count * terms.auto_amount
        lot_id = f"auto-top-up-{day.isoformat()}"
        last_valid = self.top_up_expiry(day)
        self.wallet.add(lot_id, "auto_top_up", day, last_valid, amount)
        self.emit(
            day,
            "auto-top-up",
            "Automatic top-up",
            [(self.receivable, amount), (self.wallet_account, -amount)],
            lot=lot_id,
            expires=last_valid,
            **{"top-ups": count},
            threshold=format_cents(terms.auto_threshold),
        )

    def pay(self, day, amount: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Wallet and receivable postings paying ``amount``; lots taken."""
        taken, shortfall = self.wallet.consume(day, amount)
        paid = amount - shortfall
        return [(self.wallet_account, paid), (self.receivable, shortfall)], taken

    def usage_txn(self, day, conversations: list[Conversation]) -> None:
        first = conversations[0]
        gross = defaultdict(int)
        contra = defaultdict(int)
        for c in conversations:
            gross[accounts.REVENUE_BY_KIND[c.kind]] -= c.price
            if c.status == "included":
                contra[accounts.ALLOWANCE_INCLUDED] += c.price
            elif c.status == "trial":
                contra[accounts.ALLOWANCE_TRIAL] += c.price
        charged = [c for c in conversations if c.status == "charged"]
        payment, taken = self.pay(day, sum(c.price for c in charged))
        period = f"{first.period_start.isoformat()}/{first.period_end or ''}"
        self.emit(
            day,
            f"usage.{first.period_start.isoformat()}",
            "AI usage",
            [*gross.items(), *contra.items(), *payment],
            period=period,
            conversations=len(conversations),
            included=sum(c.status == "included" for c in conversations),
            charged=len(charged),
            # Counts that are zero on most days are left out (every line costs load time).
            **_nonzero(
                trial=sum(c.status == "trial" for c in conversations),
                autopilot=sum(c.kind == "autopilot" for c in conversations),
            ),
            **{
                "rules-version": first.rules_version,
                "conversations-digest": conversations_digest(conversations),
            },
            lots=_lots_meta(taken),
        )

    def channels_txn(self, day, channel_events: list[Event]) -> None:
        """One transaction per channel and day, as the billing page lists them."""
        for channel, label in CHANNEL_LABELS.items():
            events = [e for e in channel_events if e.channel == channel]
            if not events:
                continue
            total = sum(e.amount for e in events)
            payment, taken = self.pay(day, total)
            self.emit(
                day,
                f"channel.{channel}",
                f"{label} usage",
                [(accounts.CHANNEL_INCOME[channel], -total), *payment],
                events=len(events),
                lots=_lots_meta(taken),
            )


def desired_transactions(
    customer: str, rating: Rating, rules: Rules, through: datetime.date
) -> WalletResult:
    """Replays one customer's wallet up to and including ``through``.

    Args:
        customer: the customer id.
        rating: the customer's rating (:func:`ledger_engine.rating.rate_customer`).
        rules: the catalogue and wallet policy.
        through: the last day to post.

    Returns:
        The transactions the books should hold and the lots with their remainders.
    """
    return _Replay(customer, rating, rules, through).run()


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
        terms = rating.terms[-1]
        start = dates.billing_month_start(terms.anchor, max(through, terms.anchor))
        candidates.append(dates.add_months(start, 1, terms.anchor.day))
    return min(candidates) if candidates else None
