"""Trace (SPEC §7): from any reference to the whole chain an auditor walks.

A reference is a GL summary's link or id (``gl.<day>.<kind>.r<run>``), a subledger transaction id
(``<segment>.<day>.<key>.<seq>``) or link (without the ``.<seq>``), an event id, a wallet lot
id or a conversation id, tried in that order.  The chain is: GL summary -> the subledger
entries it sums -> for AI usage, the conversations as the posting run classified them -> the
raw events (file, line, the line as read).  Read-only.

*(v3)* Entries derived from terms and lots, not from one event (a commitment, an automatic
top-up, an expiry), lead to their lots, and a lot id is a reference of its own (ids are per
customer: one shared by customers leads to each).  A lot leads to the entries that credited
it, to its origin (a top-up or grant: its event; a commitment: the subscription whose terms
were in force; an automatic top-up: the charges of the day that needed it) and to every
entry that took from it, with the amount.  Which lots an entry took from is what the books
say: its ``lot`` and ``lots`` metadata in the committed journal, read only from files that
hash to what the store recorded (a correction names what its key takes in all, not the
difference).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit
from ledger_engine.books import journals
from ledger_engine.core import accounts
from ledger_engine.core.errors import BooksDamaged, LedgerError
from ledger_engine.core.model import EntryKind, Lot, Terms, movement_of_key
from ledger_engine.core.money import format_cents
from ledger_engine.core.planner import gl_link
from ledger_engine.core.rating import rate_customer
from ledger_engine.core.wallet import short_hash, terms_of_commitment
from ledger_engine.rules import Rules, parse_rules
from ledger_engine.store import queries, runlog
from ledger_engine.store.queries import GONE, RawEvent, TxnRow

RUN_ID_MAX = 1 << 62  # "as of now" for classifications_as_of
# The event type behind each kind of entry that an event causes directly.
EVENT_KINDS = {
    EntryKind.TOP_UP: "top_up",
    EntryKind.GRANT: "credit_grant",
    EntryKind.PAYMENT: "payment",
    EntryKind.WRITE_OFF: "write_off",
    EntryKind.ADJUSTMENT: "adjustment",
    EntryKind.CHANNEL: "channel_usage",
}


# Entries derived from terms and lots: they lead to the lots they name.
LOT_ENTRY_KINDS = frozenset({EntryKind.COMMITMENT, EntryKind.AUTO_TOP_UP, EntryKind.BREAKAGE})
CHARGE_KINDS = frozenset({EntryKind.USAGE, EntryKind.CHANNEL})  # what can need a top-up
# A lot credited by one event: the event's type (the lot id ends with the id's short hash).
LOT_EVENT_TYPES = {"top_up": "top_up", "grant": "credit_grant"}
TERMS_EVENT_TYPES = ("subscription", "cancellation")  # the events the terms come from
# An amount as the engine writes one into metadata; anything else in a journal is no amount.
AMOUNT_TEXT = re.compile(r"(-?)([0-9]{1,16})\.([0-9]{2})")
ONE_DAY = datetime.timedelta(days=1)


class NothingToTrace(LedgerError):
    """No GL summary, transaction, event, lot or conversation has that name."""


class Found(NamedTuple):
    """What a reference named, and the GL summaries (with the entries) the chain runs through."""

    what: str  # gl-summary, transaction, link, event, lot, conversation
    summaries: dict[str, list[TxnRow]]  # GL summary id -> the relevant entries it sums
    events: list[RawEvent]  # events named directly (an event id, or events not posted)
    lots: tuple[tuple[str, Lot], ...] = ()  # lots named directly, with their customer


class Reader:
    """What a trace reads: the store, and the committed metadata of the journal files its
    entries are in (each file read and checked once)."""

    def __init__(self, books_dir: Path, db: sqlite_utils.Database):
        self.books_dir = books_dir
        self.db = db
        self._files: dict[str, dict[str, dict]] = {}
        self._rules: dict[int | None, Rules] = {}

    def meta(self, entry: TxnRow) -> dict:
        """An entry's metadata as its journal file holds it (empty if it holds none)."""
        found = self._files.get(entry.file)
        if found is None:
            recorded = queries.journal_file(self.db, entry.file)
            if recorded is None:
                raise BooksDamaged(f"the store records no journal file {entry.file}")
            found = journals.transaction_meta(self.books_dir, entry.file, recorded)
            self._files[entry.file] = found
        return found.get(entry.txn_id, {})

    def rules_of_run(self, run_id: int | None) -> Rules:
        """The rules a run recorded (the books' rules file for a run that recorded none)."""
        if run_id not in self._rules:
            record = runlog.run_record(self.db, run_id) if run_id is not None else None
            sha256 = (runlog.details_of(record) or {}).get("rules_sha256") if record else None
            text = queries.rules_text(self.db, sha256) if isinstance(sha256, str) else None
            self._rules[run_id] = (
                parse_rules(text) if text is not None else commit.read_rules(self.books_dir)[0]
            )
        return self._rules[run_id]


def _event_dict(event: RawEvent) -> dict:
    return {"id": event.id, "type": event.type, "file": event.file, "line": event.line,
            "read_in_run": event.run_id, "raw": event.raw}  # fmt: skip


def _usage_conversations(db, entry: TxnRow) -> list[dict]:
    period_start = entry.key.partition(".")[2]
    seen = queries.classifications_as_of(db, entry.customer, entry.run_id)
    chosen = [
        c
        for c in seen.values()
        if c.day == entry.orig_day and c.period_start == period_start and c.status != GONE
    ]
    return [
        {
            "conversation": c.conversation,
            "kind": c.kind,
            "status": c.status,
            "price": format_cents(c.price),
            "rules_version": c.rules_version,
            "classified_in_run": c.run_id,
            "events": [
                _event_dict(e)
                for e in queries.raw_events_of_conversation(db, entry.customer, c.conversation)
            ],
        }  # fmt: skip
        for c in sorted(chosen, key=lambda c: c.conversation)
    ]


def _entry_events(db, entry: TxnRow, kind: EntryKind, detail: str | None) -> list[dict]:
    event_type = EVENT_KINDS.get(kind)
    if event_type is None:
        return []  # derived from terms and lots (commitment, automatic top-up, expiry)
    events = queries.raw_events_of_day(db, entry.customer, entry.orig_day, event_type)
    if kind is EntryKind.CHANNEL:
        return [_event_dict(raw) for raw, event in events if event.channel == detail]
    return [_event_dict(raw) for raw, _ in events if short_hash(raw.id) == detail]


def entry_dict(reader: Reader, entry: TxnRow, with_lots: bool = True) -> dict:
    """A subledger entry with its postings and what it came from (``with_lots``: a
    commitment, automatic top-up or expiry with the chain of each lot it names)."""
    db = reader.db
    of_key = EntryKind.of_key(entry.key)
    kind, detail = of_key if of_key else (None, None)
    result = {
        "txn": entry.txn_id, "customer": entry.customer, "date": entry.effective_day,
        "original_day": entry.orig_day, "kind": kind.prefix if kind else entry.key,
        "narration": entry.narration, "corrects": entry.corrects, "file": entry.file,
        "run": entry.run_id, "gl": gl_link_of(entry),
        "postings": [(a, format_cents(c)) for a, c in queries.postings_of(db, entry.txn_id)],
    }  # fmt: skip
    if kind is EntryKind.USAGE:
        result["conversations"] = _usage_conversations(db, entry)
    else:
        result["events"] = _entry_events(db, entry, kind, detail) if kind else []
    if with_lots and kind in LOT_ENTRY_KINDS:
        names = lot_ids_named(reader.meta(entry))
        result["lots"] = [lot_dict(reader, entry.customer, lot_id) for lot_id in names]
    return result


# ----------------------------------------------------------------------------- lots


def _cents_of_text(text: str) -> int | None:
    found = AMOUNT_TEXT.fullmatch(text)
    if found is None:
        return None
    sign, units, cents = found.groups()
    return (-1 if sign else 1) * (int(units) * 100 + int(cents))


def lots_taken(meta: dict) -> list[tuple[str, int | None]]:
    """An entry's ``lots`` metadata (``<lot>:<amount> ...``) as (lot id, cents); None for
    an amount that is not a whole number of cents (the books are read, never trusted)."""
    text = meta.get("lots")
    if not isinstance(text, str):
        return []
    pairs = [item.rpartition(":") for item in text.split()]
    return [(lot_id, _cents_of_text(amount)) for lot_id, _, amount in pairs]


def lot_ids_named(meta: dict) -> list[str]:
    """The lots an entry names: the one it credits (``lot``) and those it took from."""
    credited = [meta["lot"]] if isinstance(meta.get("lot"), str) else []
    return [*credited, *(lot_id for lot_id, _ in lots_taken(meta) if lot_id not in credited)]


def _kind_of(key: str) -> EntryKind | None:
    of_key = EntryKind.of_key(key)
    return of_key[0] if of_key else None


def _kind_name(key: str) -> str:
    kind = _kind_of(key)
    return kind.prefix if kind else key


def _brief(entry: TxnRow, cents: int | None) -> dict:
    """An entry in a lot's chain: where it is and one amount (trace its id for the rest)."""
    return {
        "txn": entry.txn_id, "date": entry.effective_day, "original_day": entry.orig_day,
        "kind": _kind_name(entry.key), "narration": entry.narration, "corrects": entry.corrects,
        "amount": None if cents is None else format_cents(cents),
    }  # fmt: skip


def _charged(db, entry: TxnRow) -> int:
    """What a charge cost the customer: paid from the wallet plus invoiced directly."""
    segment = accounts.customer_segment(entry.customer)
    own = {accounts.wallet_account(segment), accounts.receivable_account(segment)}
    return sum(cents for account, cents in queries.postings_of(db, entry.txn_id) if account in own)


def _terms_dict(terms: Terms, event: RawEvent | None) -> dict:
    return {
        "subscription": event.id if event else None, "plan": terms.plan,
        "interval": terms.interval, "commitment": format_cents(terms.commitment),
        "commitment_anchor": terms.commitment_anchor.isoformat(),
    }  # fmt: skip


def _commitment_origin(reader: Reader, customer: str, lot: Lot, run_id: int | None) -> dict:
    """The subscription whose terms credited a commitment, found as the wallet finds them:
    the customer's terms rated again from its subscriptions and cancellations, under the
    rules of the run that credited it."""
    events = queries.customer_events_of_types(reader.db, customer, TERMS_EVENT_TYPES)
    rating = rate_customer(events, reader.rules_of_run(run_id))
    terms = terms_of_commitment(rating.terms, tuple(t.day for t in rating.terms), lot.day)
    if terms is None:
        return {"events": [], "terms": None}
    subscriptions = [
        raw
        for raw, event in queries.raw_events_of_day(
            reader.db, customer, terms.day.isoformat(), "subscription"
        )
        if event.at == terms.at
    ]  # the last of one instant is the one in force (events of an instant go by id)
    event = subscriptions[-1] if subscriptions else None
    return {"events": [_event_dict(event)] if event else [], "terms": _terms_dict(terms, event)}


def _origin(reader: Reader, customer: str, lot: Lot, entries: list[TxnRow], credited) -> dict:
    """Where a lot's money came from (see the module docstring)."""
    origin: dict = {"what": None, "events": [], "terms": None, "charges": []}
    day = lot.day.isoformat()
    if lot.kind in LOT_EVENT_TYPES:
        digest = lot.lot_id.rpartition("-")[2]
        found = queries.raw_events_of_day(reader.db, customer, day, LOT_EVENT_TYPES[lot.kind])
        events = [_event_dict(raw) for raw, _ in found if short_hash(raw.id) == digest]
        return {**origin, "what": "event", "events": events}
    if lot.kind == "commitment":
        run_id = credited[0].run_id if credited else None
        return {
            **origin,
            "what": "subscription",
            **_commitment_origin(reader, customer, lot, run_id),
        }
    if lot.kind == "auto_top_up":
        charges = [
            _brief(entry, _charged(reader.db, entry))
            for entry in entries
            if entry.orig_day == day and _kind_of(entry.key) in CHARGE_KINDS
        ]
        return {**origin, "what": "charges", "charges": charges}
    return origin


def lot_dict(reader: Reader, customer: str, lot_id: str) -> dict:
    """A lot of a customer as the store holds it, the entries that credited it, its origin
    and every entry that took from it (with the amount the entry's metadata names)."""
    lot = queries.lot_of(reader.db, customer, lot_id)
    result = {
        "customer": customer, "lot": lot_id, "kind": None, "day": None, "last_valid": None,
        "amount": None, "remainder": None, "credited_by": [], "origin": None,
        "consumptions": [], "taken_as_posted": None,
    }  # fmt: skip
    if lot is None:
        return result  # named by the books, unknown to the store (reconcile says more)
    # A lot is credited on its day and taken from until it expires, the day after its last
    # valid day; corrections keep the day they correct, so they are in this range too.
    entries = queries.entries_between(
        reader.db, customer, lot.day.isoformat(), (lot.last_valid + ONE_DAY).isoformat()
    )
    credited, consumptions = [], []
    latest: dict[str, tuple[int, int]] = {}  # link -> (seq, cents) of its latest entry
    for entry in entries:
        meta = reader.meta(entry)
        if meta.get("lot") == lot_id:
            credited.append(entry)
        taken = [(name, cents) for name, cents in lots_taken(meta) if name == lot_id]
        consumptions += [_brief(entry, cents) for _, cents in taken]
        link = entry.txn_id.rpartition(".")[0]
        if entry.seq > latest.get(link, (0, 0))[0]:
            latest[link] = (entry.seq, sum(cents or 0 for _, cents in taken))
    return {
        **result, "kind": lot.kind, "day": lot.day.isoformat(),
        "last_valid": lot.last_valid.isoformat(), "amount": format_cents(lot.amount),
        "remainder": format_cents(lot.remainder),
        "credited_by": [entry.txn_id for entry in credited],
        "origin": _origin(reader, customer, lot, entries, credited),
        "consumptions": consumptions,
        "taken_as_posted": format_cents(sum(cents for _, cents in latest.values())),
    }  # fmt: skip


def _credit_entries(reader: Reader, customer: str, lot: Lot) -> list[TxnRow]:
    day = lot.day.isoformat()
    entries = queries.entries_between(reader.db, customer, day, day)
    return [entry for entry in entries if reader.meta(entry).get("lot") == lot.lot_id]


def gl_link_of(entry: TxnRow) -> str:
    """The GL summary that sums an entry: its run's summary of its effective day and kind."""
    day = datetime.date.fromisoformat(entry.effective_day)
    return gl_link(day, movement_of_key(entry.key), entry.run_id)


def _conversation_links(db, customer: str, conversation: str) -> list[str]:
    """The usage links a conversation was ever posted under (a late event can move its
    first day, and with it its entry)."""
    segment = accounts.customer_segment(customer)
    history = queries.conversation_history(db, customer, conversation)
    current = [
        c
        for c in queries.classifications_as_of(db, customer, RUN_ID_MAX).values()
        if c.conversation == conversation
    ]
    places = {(c.day, c.period_start) for c in [*history, *current]}
    return [f"{segment}.{day}.{EntryKind.USAGE.key(start)}" for day, start in sorted(places)]


def _links_of_event(db, event: RawEvent) -> list[str]:
    """The links of the entries an event can have caused."""
    stored = queries.event(db, event.id)
    segment = accounts.customer_segment(event.customer)
    if stored.type == "ai_usage" and stored.conversation is not None:
        return _conversation_links(db, stored.customer, stored.conversation)
    detail = {
        "top_up": (EntryKind.TOP_UP, short_hash(stored.id)),
        "credit_grant": (EntryKind.GRANT, short_hash(stored.id)),
        "payment": (EntryKind.PAYMENT, short_hash(stored.id)),
        "write_off": (EntryKind.WRITE_OFF, short_hash(stored.id)),
        "adjustment": (EntryKind.ADJUSTMENT, short_hash(stored.id)),
        "channel_usage": (EntryKind.CHANNEL, stored.channel),
    }.get(stored.type)
    if detail is None:
        return []  # subscriptions and cancellations shape entries but cause none alone
    kind, name = detail
    return [f"{segment}.{event.day}.{kind.key(name)}"]


def _group(entries: list[TxnRow]) -> dict[str, list[TxnRow]]:
    summaries: dict[str, list[TxnRow]] = {}
    for entry in entries:
        summaries.setdefault(gl_link_of(entry), []).append(entry)
    return summaries


def _entries_of_links(db, links: list[str]) -> list[TxnRow]:
    return [entry for link in links for entry in queries.transactions_of_link(db, link)]


def find(reader: Reader, ref: str) -> Found:
    """Resolves a reference (see the module docstring); :class:`NothingToTrace` if none."""
    db = reader.db
    row = queries.transaction(db, ref)
    if row is not None and row.ledger == "gl":
        entries = [e for e in queries.entries_of_day(db, row) if gl_link_of(e) == ref]
        return Found("gl-summary", {ref: entries}, [])
    if row is not None:
        return Found("transaction", _group([row]), [])
    entries = queries.transactions_of_link(db, ref)
    if entries:
        return Found("link", _group(entries), [])
    event = queries.raw_event(db, ref)
    if event is not None:
        return Found("event", _group(_entries_of_links(db, _links_of_event(db, event))), [event])
    lots = queries.lots_named(db, ref)
    if lots:
        credits = [
            entry for customer, lot in lots for entry in _credit_entries(reader, customer, lot)
        ]
        return Found("lot", _group(credits), [], tuple(lots))
    customers = queries.conversation_customers(db, ref)
    if customers:
        links = [link for c in customers for link in _conversation_links(db, c, ref)]
        return Found("conversation", _group(_entries_of_links(db, links)), [])
    raise NothingToTrace(f"nothing in these books is called {ref!r}")


def trace(books_dir: Path, ref: str) -> dict:
    """The chain from ``ref`` to the raw events, as one JSON-ready dict."""
    with commit.store_for_reading(books_dir) as db:
        reader = Reader(books_dir, db)
        found = find(reader, ref)
        # A lot named directly is shown once, at the top, not again under its credit entry.
        with_lots = found.what != "lot"
        summaries = []
        for link, entries in sorted(found.summaries.items()):
            summary = queries.transaction(db, link)
            summaries.append(
                {
                    "txn": link,
                    "date": summary.effective_day if summary else None,
                    "file": summary.file if summary else None,
                    "postings": [(a, format_cents(c)) for a, c in queries.postings_of(db, link)],
                    "entries": [entry_dict(reader, entry, with_lots) for entry in entries],
                }
            )
        return {
            "ref": ref,
            "found": found.what,
            "events": [_event_dict(e) for e in found.events],
            "lots": [lot_dict(reader, customer, lot.lot_id) for customer, lot in found.lots],
            "gl": summaries,
        }


def _posting_lines(postings, indent: str) -> list[str]:
    return [f"{indent}{account:<48} {amount:>10}" for account, amount in postings]


def _event_lines(event: dict, indent: str) -> list[str]:
    return [
        f"{indent}event {event['id']} ({event['type']}) at {event['file']}:{event['line']}, "
        f"read in run {event['read_in_run']}",
        f"{indent}  {event['raw']}",
    ]


def _entry_lines(entry: dict) -> list[str]:
    corrects = f", corrects {entry['corrects']}" if entry["corrects"] else ""
    lines = [
        f"  entry {entry['txn']}  {entry['date']}  {entry['narration']!r}  "
        f"customer {entry['customer']}",
        f"    in {entry['file']} (run {entry['run']}{corrects})",
        *_posting_lines(entry["postings"], "      "),
    ]
    for conversation in entry.get("conversations", ()):
        seen = conversation["classified_in_run"]
        lines.append(
            f"    conversation {conversation['conversation']}: {conversation['kind']}, "
            f"{conversation['status']}, {conversation['price']} "
            + (f"(as run {seen} classified it)" if seen else "(classification before history)")
        )
        for event in conversation["events"]:
            lines += _event_lines(event, "      ")
    for event in entry.get("events", ()):
        lines += _event_lines(event, "    ")
    for lot in entry.get("lots", ()):
        lines += lot_lines(lot, "    ")
    return lines


def _brief_line(brief: dict, indent: str) -> str:
    amount = brief["amount"] if brief["amount"] is not None else "-"
    return f"{indent}{brief['date']}  {brief['txn']}  {brief['narration']!r}  {amount:>10}"


def _origin_lines(lot: dict, indent: str) -> list[str]:
    origin = lot["origin"]
    lines = []
    if origin["what"] == "event":
        lines.append(f"{indent}origin: its event")
    elif origin["what"] == "subscription":
        terms = origin["terms"]
        lines.append(
            f"{indent}origin: the subscription in force (plan {terms['plan']}, "
            f"{terms['interval']}; commitment {terms['commitment']} a month from "
            f"{terms['commitment_anchor']})"
            if terms
            else f"{indent}origin: no subscription in force credits it now"
        )
    elif origin["what"] == "charges":
        lines.append(f"{indent}origin: the charges of {lot['day']} that needed it")
        lines += [_brief_line(charge, indent + "  ") for charge in origin["charges"]]
    for event in origin["events"]:
        lines += _event_lines(event, indent + "  ")
    return lines


def lot_lines(lot: dict, indent: str) -> list[str]:
    """One lot's chain as text: the lot, what credited it, its origin, what took from it."""
    head = f"{indent}lot {lot['lot']} of customer {lot['customer']}"
    if lot["kind"] is None:
        return [f"{head}: not in the store's lots (run reconcile)"]
    lines = [
        f"{head}: {lot['kind']}, {lot['amount']} credited {lot['day']}, valid through "
        f"{lot['last_valid']}, {lot['remainder']} left",
        f"{indent}  credited by {', '.join(lot['credited_by']) or 'no entry'}",
        *_origin_lines(lot, indent + "  "),
        f"{indent}  taken by:" if lot["consumptions"] else f"{indent}  taken by: nothing",
        *(_brief_line(taken, indent + "    ") for taken in lot["consumptions"]),
    ]
    used = format_cents(_cents_of_text(lot["amount"]) - _cents_of_text(lot["remainder"]))
    if lot["taken_as_posted"] != used:
        lines.append(
            f"{indent}  note: the latest entry of each link says {lot['taken_as_posted']} was "
            f"taken; the store's amount less remainder is {used} (an entry's lots are as it "
            "was posted)"
        )
    return lines


def trace_lines(chain: dict) -> list[str]:
    """The chain as text, from the GL summary down to the raw events."""
    lines = [f"{chain['ref']}: {chain['found']}"]
    for event in chain["events"]:
        lines += _event_lines(event, "  ")
    for lot in chain["lots"]:
        lines += lot_lines(lot, "  ")
    if not chain["gl"]:
        lines.append("  (not posted: no GL summary or subledger entry)")
    for summary in chain["gl"]:
        lines.append(f"GL summary {summary['txn']}  {summary['date']}  {summary['file']}")
        lines += _posting_lines(summary["postings"], "    ")
        for entry in summary["entries"]:
            lines += _entry_lines(entry)
    return lines
