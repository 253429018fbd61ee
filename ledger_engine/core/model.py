"""Every record that crosses a stage, and the vocabulary they are written in.

Like beancount's ``core/data.py``: immutable ``NamedTuple`` records with tuple children,
changed with ``_replace``.  The data flows ``Line``/``Event`` (events) -> ``Rating`` (rating)
-> ``WalletResult`` of ``Entry`` values (wallet) -> ``NewEntry`` and ``GlSummary`` (planner)
-> journal text and store rows.  Money is integer cents; ``at`` is a sortable UTC key
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``); days are booking days in the books' timezone.
"""

from __future__ import annotations

import datetime
import enum
from typing import NamedTuple

# ------------------------------------------------------------------ vocabulary (SPEC §2, §4)

EVENT_TYPES = (
    "subscription",
    "cancellation",
    "ai_usage",
    "top_up",
    "channel_usage",
    "payment",
    "credit_grant",
    "write_off",
    "adjustment",
)
# Events that move money and are accepted after a cancellation too (rating's only verdict on
# them is unknown_customer; a write-off can also exceed the open receivable, see the wallet).
MONEY_EVENTS = ("top_up", "payment", "credit_grant", "write_off", "adjustment")
PLANS = ("trial", "essentials", "boost", "pro", "enterprise")
INTERVALS = ("monthly", "annual")
AI_FEATURES = ("suggested_reply", "autopilot", "playground")
RATED_FEATURES = ("suggested_reply", "autopilot")  # playground is never rated
CHANNELS = ("sms", "whatsapp", "voice")
CHANNEL_LABELS = {"sms": "SMS", "whatsapp": "WhatsApp", "voice": "Voice"}
LOT_KINDS = ("commitment", "top_up", "auto_top_up", "grant")
REASON_CHARS_MAX = 256  # the reason of a credit grant or write-off (optional), adjustment
# An adjustment (SPEC v3 §2): 2 to 20 balanced lines, a reference and an approver of at most
# 128 characters each.
ADJUSTMENT_LINES_MIN = 2
ADJUSTMENT_LINES_MAX = 20
ADJUSTMENT_TEXT_CHARS_MAX = 128

# Reason codes (stable: scripts and the README rely on them).
MALFORMED_JSON = "malformed_json"
INVALID_FIELD = "invalid_field"
UNKNOWN_TYPE = "unknown_type"
CURRENCY_MISMATCH = "currency_mismatch"
ID_CONFLICT = "id_conflict"
UNKNOWN_CUSTOMER = "unknown_customer"
NO_ACTIVE_SUBSCRIPTION = "no_active_subscription"
FEATURE_NOT_IN_PLAN = "feature_not_in_plan"
TRIAL_LIMIT_REACHED = "trial_limit_reached"
EXCEEDS_OPEN_RECEIVABLE = "exceeds_open_receivable"
SCHEMA_REASONS = (MALFORMED_JSON, INVALID_FIELD, UNKNOWN_TYPE, CURRENCY_MISMATCH)
RATING_REASONS = (
    UNKNOWN_CUSTOMER,
    NO_ACTIVE_SUBSCRIPTION,
    FEATURE_NOT_IN_PLAN,
    TRIAL_LIMIT_REACHED,
    EXCEEDS_OPEN_RECEIVABLE,
)
ALL_REASONS = SCHEMA_REASONS + (ID_CONFLICT,) + RATING_REASONS
RATING_DETAILS = {
    UNKNOWN_CUSTOMER: "no subscription at the event's time",
    NO_ACTIVE_SUBSCRIPTION: "the subscription was cancelled before the event",
    FEATURE_NOT_IN_PLAN: "the plan in force does not include this feature",
    TRIAL_LIMIT_REACHED: "the trial's unit cap was already used",
    EXCEEDS_OPEN_RECEIVABLE: "the write-off is more than the customer's open receivable",
}


# --------------------------------------------------------------------------- entry kinds


class EntryKind(enum.Enum):
    """The kinds of transaction in a customer's subledger.

    The member order is the posting order within a day: lots that expired yesterday go
    first (their money is gone before anything is charged), then the day's credits, then
    the charges that consume them, then payments (which touch only the receivable).

    Each kind owns its transaction-key prefix, the narration it is posted with, the label of
    the customer's wallet history, and the kind of movement its GL summary is (the ``kind``
    metadata finance reads a wallet roll-forward from).  A key is ``prefix`` or
    ``prefix.detail``.  A grant comes before the automatic top-up (granted credit counts
    as available); a write-off comes last (after the day's payments).  An adjustment comes
    after the payments and before the write-offs: it never touches the wallet, so no place
    can show a wallet balance it did not hold, and a write-off is checked against what is
    open after everything else of its day, finance's own entries included (a credit note
    lowers what can be written off, an amount invoiced again can be written off that day).
    """

    BREAKAGE = ("breakage", "Expiry", "Expiry", "expiry")
    COMMITMENT = ("commitment", "Commitment", "Commitment", "commitment")
    TOP_UP = ("top-up", "Top-up", "Top-up", "top-up")
    GRANT = ("grant", "Credit grant", "Credit grant", "grant")
    AUTO_TOP_UP = ("auto-top-up", "Automatic top-up", "Automatic top-up", "auto-top-up")
    USAGE = ("usage", "AI usage", "AI", "usage")
    CHANNEL = ("channel", "{label} usage", "{label}", "channel")  # detail: the channel
    PAYMENT = ("payment", "Payment", "Payment", "payment")
    ADJUSTMENT = ("adjustment", "Adjustment", "Adjustment", "adjustment")
    WRITE_OFF = ("write-off", "Write-off", "Write-off", "write-off")

    def __init__(self, prefix: str, narration: str, history_label: str, movement: str):
        self.prefix = prefix
        self._narration = narration
        self._history_label = history_label
        self.movement = movement

    @property
    def rank(self) -> int:
        """The position of this kind in a day's posting order."""
        return _RANK[self]

    def key(self, detail: str | None = None) -> str:
        """The transaction key of an entry of this kind (``detail`` tells entries apart)."""
        return self.prefix if detail is None else f"{self.prefix}.{detail}"

    def narration(self, detail: str | None = None) -> str:
        return self._narration.format(label=CHANNEL_LABELS.get(detail or "", ""))

    def history_label(self, detail: str | None = None) -> str:
        return self._history_label.format(label=CHANNEL_LABELS.get(detail or "", ""))

    @classmethod
    def of_key(cls, key: str) -> tuple[EntryKind, str | None] | None:
        """The kind and detail of a transaction key (None for a key of no kind)."""
        prefix, _, detail = key.partition(".")
        kind = _BY_PREFIX.get(prefix)
        return None if kind is None else (kind, detail or None)


_RANK = {kind: index for index, kind in enumerate(EntryKind)}
_BY_PREFIX = {kind.prefix: kind for kind in EntryKind}
OTHER_MOVEMENT = "other"  # the movement of a key of no kind (the engine writes none)


def movement_of_key(key: str) -> str:
    """The kind of movement of a transaction key: the GL summary it belongs to."""
    found = EntryKind.of_key(key)
    return found[0].movement if found else OTHER_MOVEMENT


# ------------------------------------------------------------------------- events (§2)


class Event(NamedTuple):
    """A schema-valid event.  Money is in integer cents; ``at`` is a sortable UTC key."""

    id: str
    type: str
    customer: str
    at: str
    day: datetime.date
    feature: str | None = None
    conversation: str | None = None
    plan: str | None = None
    interval: str | None = None
    commitment: int | None = None  # None: not given (a later subscription carries it over)
    auto_enabled: bool | None = None
    auto_amount: int | None = None
    auto_threshold: int | None = None
    included: int | None = None
    unit_price: int | None = None
    amount: int | None = None
    channel: str | None = None
    expires: str | None = None  # credit_grant: the last valid day, YYYY-MM-DD
    reason: str | None = None  # credit_grant, write_off, adjustment: why (for the auditor)
    # adjustment: its lines as given, (account, signed cents), where the account is
    # ``receivable`` (the customer's) or an account of the chart; and who approved it under
    # which reference.  Last, so that no other event stores them (nor their nulls).
    lines: tuple[tuple[str, int], ...] | None = None
    reference: str | None = None
    approved_by: str | None = None

    @property
    def rated(self) -> bool:
        """Usage of a rated feature: it belongs to a conversation rating classifies."""
        return self.type == "ai_usage" and self.feature in RATED_FEATURES


# The fields after ``day`` depend on the event's type (the store keeps them as one JSON array).
EVENT_TYPED_FIELDS = Event._fields[Event._fields.index("day") + 1 :]
# A run's new events kept in memory for its derivation: customer -> its new events (in
# the order they were read); a run that keeps none reads them back from the store.
RunEvents = dict[str, list[Event]]


class Rejection(NamedTuple):
    """Why an event is quarantined: a stable reason code and, for invalid_field, the field."""

    reason: str
    field: str | None
    detail: str
    event_id: str | None = None


class Line(NamedTuple):
    """One input line and what the schema checks made of it."""

    file: str
    number: int
    raw: str
    event: Event | None
    content: int | None  # the content key: the first 8 bytes of SHA-256(canonical JSON)
    rejection: Rejection | None


# ------------------------------------------------------------------------- rating (§4)


class Terms(NamedTuple):
    """The subscription in force from ``at`` (a UTC key) on.

    Its billing periods run from ``anchor``, the booking day of the subscription that
    started them, whose instant is ``anchor_at``; ``ordinal`` is the place of that first
    period among the periods that began on the anchor day (1: the first; a plan change on
    the day a period starts makes a second).  Commitment months run from
    ``commitment_anchor``, the day of the customer's first subscription or of its
    re-subscription after a cancellation (SPEC v3 §5).
    """

    at: str
    day: datetime.date
    plan: str
    interval: str
    anchor: datetime.date
    commitment: int
    auto_enabled: bool
    auto_amount: int
    auto_threshold: int
    included: int | None
    unit_price: int | None
    active: bool
    anchor_at: str
    ordinal: int
    commitment_anchor: datetime.date


def period_label(start: datetime.date, ordinal: int = 1) -> str:
    """The name of a billing period in the books and the store: its first day, and for a
    second (third...) period that began on that day, ``.2`` (``.3``...).  It is the detail
    of its usage entries' key (``usage.<label>``) and their ``period`` metadata."""
    return start.isoformat() if ordinal == 1 else f"{start.isoformat()}.{ordinal}"


def period_order(label: str) -> tuple[str, int]:
    """A sort key of period labels: by first day, then by their order within that day."""
    day, _, ordinal = label.partition(".")
    return day, int(ordinal or 1)


class Conversation(NamedTuple):
    """A rated conversation: its period, whether autopilot touched it, and its status."""

    conversation: str
    period: str  # the label of its billing period (period_label)
    period_end: datetime.date | None
    day: datetime.date
    first_at: str
    first_event: str
    kind: str  # "autopilot" or "suggested_reply"
    status: str  # "included", "charged" or "trial"
    price: int  # list price in cents
    rules_version: str
    events: int

    @property
    def period_start(self) -> datetime.date:
        """The first day of its billing period."""
        return datetime.date.fromisoformat(self.period[:10])


class Period(NamedTuple):
    """A billing period that has conversations, with its included allowance."""

    start: datetime.date
    end: datetime.date | None
    plan: str
    interval: str
    included: int
    label: str  # period_label: its first day, and its order among the periods of that day


class RatingState(NamedTuple):
    """What rating carries across the start of ``day``: all it needs of the events before it.

    Rating resumed from it with the events from ``day`` on (and the ids of the conversations
    first seen before it) gives what rating from the first event gives for those events.
    """

    day: datetime.date
    current: Terms | None  # the terms in force at the start of the day
    trial_units: int  # trial units used before the day
    trial_holders: tuple[str, ...]  # trial conversations holding a unit (at most the cap)
    periods: tuple[tuple[str, Period], ...]  # (anchor instant, period) still open on the day
    used: tuple[tuple[str, datetime.date, int], ...]  # (anchor instant, start, included)


class Rating(NamedTuple):
    """Everything rating derives from one customer's events (from a state's day on, when
    resumed: then ``terms`` starts with the terms in force that day)."""

    verdicts: dict[str, str]  # event id -> rating reason code
    terms: tuple[Terms, ...]
    conversations: tuple[Conversation, ...]
    periods: tuple[Period, ...]
    wallet_events: tuple[Event, ...]  # accepted money and channel events (not usage)
    states: tuple[RatingState, ...] = ()  # at the days asked for
    # When resumed: conversations first seen before the state's day -> their accepted events
    # from that day on, and how many of those are autopilot (they are not rated again).
    continued: dict[str, tuple[int, int]] = {}


# ------------------------------------------------------------------------- wallet (§5)


class Lot(NamedTuple):
    """Credit in the wallet: where it came from, when it expires, what is left of it."""

    lot_id: str
    kind: str  # one of LOT_KINDS
    day: datetime.date
    last_valid: datetime.date
    amount: int
    remainder: int


class Entry(NamedTuple):
    """A transaction the books should hold, identified by ``(day, key)``."""

    kind: EntryKind
    day: datetime.date
    key: str
    narration: str
    postings: tuple[tuple[str, int], ...]  # (account, cents), zero postings left out
    meta: tuple[tuple[str, object], ...]


class WalletState(NamedTuple):
    """What the wallet carries across the start of ``day``."""

    day: datetime.date
    lots: tuple[Lot, ...]  # the lots with a remainder, in the order they were credited
    receivable: int  # the open receivable (cents)


class WalletResult(NamedTuple):
    entries: tuple[Entry, ...]
    lots: tuple[Lot, ...]  # every lot (when resumed: the state's lots and later ones)
    verdicts: dict[str, str]  # event id -> reason: write-offs over the open receivable
    states: tuple[WalletState, ...] = ()  # at the days asked for


class Checkpoint(NamedTuple):
    """One customer's derived state at the start of ``day``: a derivation can resume there."""

    day: datetime.date
    rating: RatingState
    wallet: WalletState


# ------------------------------------------------------------------------ planner (§6)


class PostedState(NamedTuple):
    """What the books already hold for one ``(original day, key)`` of a customer."""

    amounts: dict[str, int]  # account -> cents, summed over every posted entry of the key
    last_seq: int
    last_txn_id: str


class NewEntry(NamedTuple):
    """A transaction to append to a customer's subledger (an original or a correction)."""

    customer: str
    segment: str
    kind: EntryKind | None
    orig_day: datetime.date
    key: str
    seq: int
    effective_day: datetime.date
    moved_from_closed_month: bool  # its own day is in a closed month (metadata ``late``)
    corrects: str | None
    for_already_posted_day: bool  # a day an earlier run had posted (metadata ``late-event``)
    narration: str
    postings: tuple[tuple[str, int], ...]
    meta: tuple[tuple[str, object], ...]

    @property
    def link(self) -> str:
        return f"{self.segment}.{self.orig_day.isoformat()}.{self.key}"

    @property
    def txn_id(self) -> str:
        return f"{self.link}.{self.seq}"


class GlSummary(NamedTuple):
    """One day's general-ledger summary of one kind of movement: the control-account totals
    of the entries it sums."""

    day: datetime.date
    movement: str  # the EntryKind.movement of the entries it sums
    link: str  # also its transaction id; every summed entry carries it
    run_id: int
    entries: tuple[NewEntry, ...]
    postings: tuple[tuple[str, int], ...]


# ------------------------------------------------------------------------ the books (§3)


class JournalFile(NamedTuple):
    """A journal file as the store records it at a commit."""

    length: int
    sha256: str
    month: str | None  # YYYY-MM of a month file; None for a root
    sealed: bool = False
