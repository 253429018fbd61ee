"""Trace (SPEC §7): from any reference to the whole chain an auditor walks.

A reference is a GL summary's link or id (``gl.<day>.<kind>.r<run>``), a subledger transaction id
(``<segment>.<day>.<key>.<seq>``) or link (without the ``.<seq>``), an event id or a
conversation id, tried in that order.  The chain is: GL summary -> the subledger entries it
sums -> for AI usage, the conversations as the posting run classified them -> the raw events
(file, line, the line as read).  Read-only.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit
from ledger_engine.core import accounts
from ledger_engine.core.errors import LedgerError
from ledger_engine.core.model import EntryKind, movement_of_key
from ledger_engine.core.money import format_cents
from ledger_engine.core.planner import gl_link
from ledger_engine.core.wallet import short_hash
from ledger_engine.store import queries
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


class NothingToTrace(LedgerError):
    """No GL summary, transaction, event or conversation has that name."""


class Found(NamedTuple):
    """What a reference named, and the GL summaries (with the entries) the chain runs through."""

    what: str  # gl-summary, transaction, link, event, conversation
    summaries: dict[str, list[TxnRow]]  # GL summary id -> the relevant entries it sums
    events: list[RawEvent]  # events named directly (an event id, or events not posted)


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


def entry_dict(db: sqlite_utils.Database, entry: TxnRow) -> dict:
    """A subledger entry with its postings and what it came from."""
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
    return result


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


def find(db: sqlite_utils.Database, ref: str) -> Found:
    """Resolves a reference (see the module docstring); :class:`NothingToTrace` if none."""
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
    customers = queries.conversation_customers(db, ref)
    if customers:
        links = [link for c in customers for link in _conversation_links(db, c, ref)]
        return Found("conversation", _group(_entries_of_links(db, links)), [])
    raise NothingToTrace(f"nothing in these books is called {ref!r}")


def trace(books_dir: Path, ref: str) -> dict:
    """The chain from ``ref`` to the raw events, as one JSON-ready dict."""
    with commit.store_for_reading(books_dir) as db:
        found = find(db, ref)
        summaries = []
        for link, entries in sorted(found.summaries.items()):
            summary = queries.transaction(db, link)
            summaries.append(
                {
                    "txn": link,
                    "date": summary.effective_day if summary else None,
                    "file": summary.file if summary else None,
                    "postings": [(a, format_cents(c)) for a, c in queries.postings_of(db, link)],
                    "entries": [entry_dict(db, entry) for entry in entries],
                }
            )
        return {
            "ref": ref,
            "found": found.what,
            "events": [_event_dict(e) for e in found.events],
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
    return lines


def trace_lines(chain: dict) -> list[str]:
    """The chain as text, from the GL summary down to the raw events."""
    lines = [f"{chain['ref']}: {chain['found']}"]
    for event in chain["events"]:
        lines += _event_lines(event, "  ")
    if not chain["gl"]:
        lines.append("  (not posted: no GL summary or subledger entry)")
    for summary in chain["gl"]:
        lines.append(f"GL summary {summary['txn']}  {summary['date']}  {summary['file']}")
        lines += _posting_lines(summary["postings"], "    ")
        for entry in summary["entries"]:
            lines += _entry_lines(entry)
    return lines
