"""Rating (SPEC §4): a pure function from one customer's events to verdicts and conversations.

Given the same schema-valid events, in any order, :func:`rate_customer` returns the same
result: which events rating rejects (and why), the subscription terms over time, and every
conversation with its billing period, kind, status and price.  Nothing here reads the store or
the clock.
"""

from __future__ import annotations

import bisect
import datetime
from collections.abc import Iterable, Sequence

from ledger_engine.core import dates
from ledger_engine.core.model import (
    FEATURE_NOT_IN_PLAN,
    MONEY_EVENTS,
    NO_ACTIVE_SUBSCRIPTION,
    TRIAL_LIMIT_REACHED,
    UNKNOWN_CUSTOMER,
    Conversation,
    Event,
    Period,
    Rating,
    RatingState,
    Terms,
    period_label,
)
from ledger_engine.core.money import decimal_to_cents
from ledger_engine.rules import Rules

# Events at the same instant (SPEC v3 §2): a cancellation first, then a subscription, then
# the rest, each group by id; so a cancellation and a new subscription sent with one `at`
# are a plan switch, and usage at the instant of a subscription uses the new terms.
TYPE_ORDER = {"cancellation": 0, "subscription": 1}
OTHER_TYPES = 2


def event_order(event: Event) -> tuple:
    return (event.at, TYPE_ORDER.get(event.type, OTHER_TYPES), event.id)


def _periods_begun_on(previous: Terms | None, day: datetime.date) -> int:
    """How many billing periods began on ``day`` under the terms before a new period's
    (all of them are earlier in the day): the periods of the day of a sequence that began
    on it, or the renewal at the day's start of one in force then."""
    if previous is None:
        return 0
    if previous.anchor == day:
        return previous.ordinal
    in_force_at_start = previous.active or previous.day == day  # cancelled later that day
    if not in_force_at_start or previous.plan == "trial":
        return 0
    return int(dates.period_bounds(previous.anchor, previous.interval, day)[0] == day)


def _carried(given, current: Terms | None, name: str, default):
    """A term of a subscription event: as given, else as in the terms in force (a later
    subscription carries omitted terms over, SPEC v3 §2), else the default."""
    if given is not None:
        return given
    return getattr(current, name) if current is not None and current.active else default


def _new_terms(event: Event, current: Terms | None, rules: Rules) -> Terms:
    policy = rules.on(event.day).auto_top_up
    interval = event.interval or "monthly"
    active = current is not None and current.active
    same_period = (
        active
        and current.plan == event.plan
        and current.interval == interval
        and current.included == event.included
        and current.unit_price == event.unit_price
    )
    if same_period:
        anchor, anchor_at, ordinal = current.anchor, current.anchor_at, current.ordinal
    else:
        anchor, anchor_at = event.day, event.at
        ordinal = _periods_begun_on(current, event.day) + 1
    return Terms(
        at=event.at,
        day=event.day,
        plan=event.plan,
        interval=interval,
        anchor=anchor,
        commitment=_carried(event.commitment, current, "commitment", 0),
        auto_enabled=_carried(event.auto_enabled, current, "auto_enabled", policy.enabled),
        auto_amount=_carried(
            event.auto_amount, current, "auto_amount", decimal_to_cents(policy.amount)
        ),
        auto_threshold=_carried(
            event.auto_threshold, current, "auto_threshold", decimal_to_cents(policy.threshold)
        ),
        included=event.included,
        unit_price=event.unit_price,
        active=True,
        anchor_at=anchor_at,
        ordinal=ordinal,
        commitment_anchor=current.commitment_anchor if active else event.day,
    )


def _verdict(event: Event, terms: Terms | None, rules: Rules) -> str | None:
    """The rating verdict of one non-subscription event under the terms in force."""
    if terms is None:
        return UNKNOWN_CUSTOMER
    if event.type in MONEY_EVENTS:
        return None  # money still moves after a cancellation
    if not terms.active:
        return NO_ACTIVE_SUBSCRIPTION
    if event.rated:
        features = rules.on(event.day).version_on(event.day).plans[terms.plan].features
        if event.feature not in features:
            return FEATURE_NOT_IN_PLAN
    return None


def _walk(events: list[Event], rules: Rules, current: Terms | None):
    """Applies subscriptions in time order; returns verdicts, terms and accepted events."""
    verdicts: dict[str, str] = {}
    timeline: list[Terms] = [current] if current is not None else []
    usage: list[tuple[Event, Terms]] = []
    wallet_events: list[Event] = []
    for event in events:
        if event.type == "subscription":
            current = _new_terms(event, current, rules)
            timeline.append(current)
            continue
        reason = _verdict(event, current, rules)
        if reason is not None:
            verdicts[event.id] = reason
        elif event.type == "cancellation":
            current = current._replace(at=event.at, day=event.day, active=False)
            timeline.append(current)
        elif event.type == "ai_usage":
            usage.append((event, current))
        else:
            wallet_events.append(event)
    return verdicts, timeline, usage, wallet_events


class _Marks:
    """The days at whose start a pass keeps a copy of its state (in order).  ``upcoming`` is
    the next of them (``date.max`` when none is left), so a pass asks for :meth:`due` only
    on the few events that reach it."""

    def __init__(self, days: Sequence[datetime.date]):
        self.days = sorted(days)
        self.next = 0
        self.upcoming = self.days[0] if self.days else datetime.date.max

    def due(self, day: datetime.date) -> list[datetime.date]:
        """The marks up to ``day`` not yet passed (a state is taken before the day)."""
        start = self.next
        while self.next < len(self.days) and self.days[self.next] <= day:
            self.next += 1
        self.upcoming = self.days[self.next] if self.next < len(self.days) else datetime.date.max
        return self.days[start : self.next]

    def rest(self) -> list[datetime.date]:
        start, self.next = self.next, len(self.days)
        self.upcoming = datetime.date.max
        return self.days[start:]


def _apply_trial_cap(
    usage: list[tuple[Event, Terms]],
    rules: Rules,
    verdicts: dict[str, str],
    units: int,
    holders: set[str],
    marks: _Marks,
):
    """Drops trial events that would need unit ``cap + 1`` or later (SPEC §4, Trial)."""
    states: dict[datetime.date, tuple[int, tuple[str, ...]]] = {}
    kept = []
    for event, terms in usage:
        if event.day >= marks.upcoming:
            for day in marks.due(event.day):
                states[day] = (units, tuple(sorted(holders)))
        if terms.plan == "trial":
            needs_unit = event.feature == "playground" or event.conversation not in holders
            if needs_unit:
                if units >= rules.on(event.day).trial_unit_cap:
                    verdicts[event.id] = TRIAL_LIMIT_REACHED
                    continue
                units += 1
                if event.conversation is not None:
                    holders.add(event.conversation)
        kept.append((event, terms))
    for day in marks.rest():
        states[day] = (units, tuple(sorted(holders)))
    return kept, states


def _price(terms: Terms, day: datetime.date, rules: Rules) -> tuple[int, str]:
    version = rules.on(day).version_on(day)
    if terms.plan == "enterprise":
        return terms.unit_price or 0, version.version
    interval = "monthly" if terms.plan == "trial" else terms.interval
    return decimal_to_cents(version.plans[terms.plan].price(interval)), version.version


def _allowance(terms: Terms, period_start: datetime.date, rules: Rules) -> int:
    if terms.plan == "enterprise":
        return terms.included or 0
    if terms.plan == "trial":
        return 0
    return (
        rules.on(period_start).version_on(period_start).plans[terms.plan].included(terms.interval)
    )


# A period is told apart by the instant its sequence began and its first day: several may
# begin on one day (a plan change on a renewal day, or on the anchor day itself).
PeriodKey = tuple[str, datetime.date]  # (anchor instant, start)


def _open_on(day, periods: dict[PeriodKey, Period], used: dict[PeriodKey, int]):
    """The periods (and their allowance use) that conversations from ``day`` on can join."""
    keys = [key for key, period in periods.items() if period.end is None or period.end > day]
    return (
        tuple((key[0], periods[key]) for key in keys),
        tuple((*key, used[key]) for key in keys if used.get(key)),
    )


def _period_of(terms: Terms, day: datetime.date):
    """The first day, the end (None: a trial's) and the label of the billing period of
    ``terms`` that holds ``day``."""
    if terms.plan == "trial":
        start, end = terms.anchor, None
    else:
        start, end = dates.period_bounds(terms.anchor, terms.interval, day)
    return start, end, period_label(start, terms.ordinal if start == terms.anchor else 1)


def _tally(usage: list[tuple[Event, Terms]], seen: frozenset[str]):
    """Each conversation's first event, event count and whether autopilot touched it; the
    events of conversations ``seen`` before are only counted."""
    first: dict[str, tuple[Event, Terms]] = {}
    counts: dict[str, int] = {}
    continued: dict[str, tuple[int, int]] = {}
    autopilot: set[str] = set()
    for event, terms in usage:
        if not event.rated:
            continue
        if event.conversation in seen:
            count, autopilot_count = continued.get(event.conversation, (0, 0))
            is_autopilot = event.feature == "autopilot"
            continued[event.conversation] = (count + 1, autopilot_count + is_autopilot)
            continue
        first.setdefault(event.conversation, (event, terms))
        counts[event.conversation] = counts.get(event.conversation, 0) + 1
        if event.feature == "autopilot":
            autopilot.add(event.conversation)
    return first, counts, continued, autopilot


def _conversations(
    usage: list[tuple[Event, Terms]],
    rules: Rules,
    seen: frozenset[str],
    periods: dict[PeriodKey, Period],
    used: dict[PeriodKey, int],
    marks: _Marks,
):
    first, counts, continued, autopilot = _tally(usage, seen)
    states = {}
    rated = []
    for conversation, (event, terms) in first.items():  # in order of first event
        if event.day >= marks.upcoming:
            for day in marks.due(event.day):
                states[day] = _open_on(day, periods, used)
        start, end, label = _period_of(terms, event.day)
        kind = "autopilot" if conversation in autopilot else "suggested_reply"
        key = (terms.anchor_at, start)
        if terms.plan != "trial" and key not in periods:
            allowance = _allowance(terms, start, rules)
            periods[key] = Period(start, end, terms.plan, terms.interval, allowance, label)
        if terms.plan == "trial":
            status = "trial"
        elif kind == "autopilot":
            status = "charged"
        else:
            status = "included" if used.get(key, 0) < periods[key].included else "charged"
            if status == "included":
                used[key] = used.get(key, 0) + 1
        price, version = _price(terms, event.day, rules)
        rated.append(
            Conversation(
                conversation=conversation,
                period=label,
                period_end=end,
                day=event.day,
                first_at=event.at,
                first_event=event.id,
                kind=kind,
                status=status,
                price=price,
                rules_version=version,
                events=counts[conversation],
            )
        )
    for day in marks.rest():
        states[day] = _open_on(day, periods, used)
    return tuple(rated), tuple(periods.values()), states, continued


def _terms_before(timeline: list[Terms], day: datetime.date) -> Terms | None:
    index = bisect.bisect_left([terms.day for terms in timeline], day) - 1
    return timeline[index] if index >= 0 else None


def rate_customer(
    events: Iterable[Event],
    rules: Rules,
    start: RatingState | None = None,
    seen: Iterable[str] = (),
    marks: Sequence[datetime.date] = (),
) -> Rating:
    """Rates the schema-valid events of one customer: all of them, or those from the day
    of a state kept by an earlier rating on.

    Args:
        events: every schema-valid event of the customer (from ``start.day`` on, when
            resumed), in any order.
        rules: the plan catalogue.
        start: the state to resume from (None: rate from the first event).
        seen: when resumed, the conversations first seen before ``start.day`` (their later
            events count toward nothing new).
        marks: days (after ``start.day``) at whose start to keep the state.

    Returns:
        The verdicts, terms timeline, rated conversations and accepted wallet events, and
        the states at ``marks``.
    """
    ordered = sorted(events, key=event_order)
    verdicts, timeline, usage, wallet_events = _walk(
        ordered, rules, start.current if start else None
    )
    usage, trial_states = _apply_trial_cap(
        usage,
        rules,
        verdicts,
        start.trial_units if start else 0,
        set(start.trial_holders) if start else set(),
        _Marks(marks),
    )
    periods = {(anchor, period.start): period for anchor, period in start.periods} if start else {}
    used = {(anchor, begin): count for anchor, begin, count in start.used} if start else {}
    conversations, all_periods, period_states, continued = _conversations(
        usage, rules, frozenset(seen), periods, used, _Marks(marks)
    )
    states = tuple(
        RatingState(day, _terms_before(timeline, day), *trial_states[day], *period_states[day])
        for day in sorted(marks)
    )
    return Rating(
        verdicts=verdicts,
        terms=tuple(timeline),
        conversations=conversations,
        periods=all_periods,
        wallet_events=tuple(wallet_events),
        states=states,
        continued=continued,
    )
