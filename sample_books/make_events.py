#!/usr/bin/env python3
"""Writes the sample event log in ``sample_books/events/`` (three nightly exports and a
file of finance's own events).

The JSON Lines files are committed; this script only documents how they were made and
rebuilds them byte for byte (fixed seed, no clock):

    python3 sample_books/make_events.py

The exports are cut by UTC day (the producer's clock), the books by Berlin day, so an event
late on 31 Oct UTC is in October's export but books on 1 Nov.  ``2026-12-late.jsonl`` is
December's export plus events that arrived late for days already posted, and repeats the
tail of November's export (an overlapping export window).

Customers and what each one demonstrates (see also ``README.md`` beside this script):

- ``acme-gmbh``       trial, reaches the 100-unit cap (playground + conversations), 5 more
                      units are rejected, then subscribes to Boost monthly on 2 Nov.
- ``brightdesk``      Essentials monthly: more conversations than the 20 included (repeated
                      events per conversation), an Autopilot attempt (feature_not_in_plan), a
                      conversation started on 31 Oct that continues in November.
- ``delta-logistics`` Pro annual with a 20.00 commitment every billing month (breakage on the
                      next billing-month start), a float payment fixed in the next export.
- ``echo-media``      Enterprise monthly (10 included, 0.20 each), manual top-up; a late
                      Autopilot event reclassifies an included conversation.
- ``fjord-travel``    Essentials monthly anchored on 31 Oct (periods 31 Oct, 30 Nov, 31 Dec);
                      a ``-05:00`` event on 29 Nov local that books on 30 Nov in Berlin.
- ``granite-law``     Essentials annual, automatic top-up disabled: manual top-up, SMS,
                      WhatsApp, Voice; the shortfall goes to the receivable.
- ``harbor-retail``   Boost annual, automatic top-up of 50.00 with a 10.00 threshold; a late
                      Autopilot event on an included conversation (now charged).
- ``iris-clinic``     Pro monthly, cancelled on 20 Nov; later usage is rejected, a later
                      payment is accepted.
- ``kestrel-bank``    Enterprise annual (500 included, 0.18 each), New York timestamps, a
                      payment in USD (currency_mismatch) and one in EUR.
- ``lumen-studio``    Boost monthly whose subscription arrives late: its November usage is
                      first rejected (unknown_customer), then accepted and posted.
- ``ghost-co``        never subscribes (unknown_customer).
"""

from __future__ import annotations

import datetime
import json
import random
from pathlib import Path
from zoneinfo import ZoneInfo

SEED = 20261001
OUT_DIR = Path(__file__).resolve().parent / "events"
OCT, NOV, LATE = "2026-10-night.jsonl", "2026-11-night.jsonl", "2026-12-late.jsonl"
FINANCE = "2026-12-finance.jsonl"  # finance's own events: credit grants and write-offs
FILES = (OCT, NOV, LATE, FINANCE)
UTC = datetime.UTC
ZONES = {
    "berlin": ZoneInfo("Europe/Berlin"),  # written with the local offset (+02:00 / +01:00)
    "utc": ZoneInfo("UTC"),  # written with Z
    "newyork": ZoneInfo("America/New_York"),  # written with -04:00 / -05:00
}

rng = random.Random(SEED)


class Log:
    """Collects the lines of every export: (file, sort instant, order, text)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, datetime.datetime, int, str]] = []
        self.counters: dict[str, int] = {}

    def next_id(self, prefix: str) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"ev-{prefix}-{self.counters[prefix]:04d}"

    def event(self, prefix, customer, event_type, local, zone="berlin", file=None, **fields):
        """Adds one event at ``local`` (naive "YYYY-MM-DDTHH:MM") in ``zone``; returns it."""
        moment = datetime.datetime.fromisoformat(local).replace(tzinfo=ZONES[zone])
        if zone == "utc":
            at = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            at = moment.isoformat(timespec="seconds")
        document = {"id": self.next_id(prefix), "type": event_type, "customer": customer}
        document["at"] = at
        document.update(fields)
        self.raw(json.dumps(document, separators=(",", ":")), moment, file)
        return document

    def raw(self, text: str, moment: datetime.datetime, file: str | None = None) -> None:
        """Adds a line as is (bad lines too); by default in the export of its UTC month."""
        if file is None:
            month = moment.astimezone(UTC).month
            file = {10: OCT, 11: NOV, 12: LATE}[month]
        self.lines.append((file, moment.astimezone(UTC), len(self.lines), text))

    def write(self) -> None:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            rows = sorted(row for row in self.lines if row[0] == name)
            text = "".join(row[3] + "\n" for row in rows)
            (OUT_DIR / name).write_text(text, encoding="utf-8")


def days(first: str, last: str, weekdays_only: bool = True) -> list[datetime.date]:
    day, end = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last)
    out = []
    while day <= end:
        if not weekdays_only or day.weekday() < 5:
            out.append(day)
        day += datetime.timedelta(days=1)
    return out


def spread(count: int, first: str, last: str, start_hour: int = 8, end_hour: int = 18):
    """``count`` ascending local times ("YYYY-MM-DDTHH:MM") on working days in the range."""
    pool = days(first, last)
    picked = sorted(rng.choice(pool) for _ in range(count))
    minutes = sorted(rng.randrange(start_hour * 60, end_hour * 60) for _ in range(count))
    times = []
    for day, minute in zip(picked, minutes, strict=True):
        times.append(f"{day}T{minute // 60:02d}:{minute % 60:02d}")
    return sorted(times)


def later(local: str, minutes: int) -> str:
    moment = datetime.datetime.fromisoformat(local) + datetime.timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M")


def conversations(
    log,
    prefix,
    customer,
    name,
    count,
    first,
    last,
    zone="berlin",
    autopilot=0,
    repeats=(1, 1),
    start=1,
):
    """``count`` conversations with their first events spread over the range.

    The last ``autopilot`` of them (in random positions) get an Autopilot event after a
    suggested reply; each gets between ``repeats`` suggested-reply events in all.
    Returns ``(conversation id, local time of its first event)`` in order of first event.
    """
    times = spread(count, first, last)
    autopilot_indexes = set(rng.sample(range(count), autopilot))
    ids = []
    for index, local in enumerate(times):
        conversation = f"{name}-{start + index:03d}"
        ids.append((conversation, local))
        for repeat in range(rng.randint(*repeats)):
            log.event(
                prefix,
                customer,
                "ai_usage",
                later(local, 7 * repeat),
                zone,
                feature="suggested_reply",
                conversation=conversation,
            )
        if index in autopilot_indexes:
            log.event(
                prefix,
                customer,
                "ai_usage",
                later(local, 23),
                zone,
                feature="autopilot",
                conversation=conversation,
            )
    return ids


def acme(log: Log) -> None:
    """Trial: 62 playground messages and 38 conversations = 100 units, then 5 more units."""
    c = "acme-gmbh"
    log.event("acme", c, "subscription", "2026-10-05T07:45", plan="trial")
    units = ["playground"] * 62 + ["conversation"] * 38
    rng.shuffle(units)
    times = spread(100, "2026-10-05", "2026-10-23")
    number = 0
    for kind, local in zip(units, times, strict=True):
        if kind == "playground":
            log.event("acme", c, "ai_usage", local, feature="playground")
            continue
        number += 1
        conversation = f"acme-t{number:03d}"
        log.event(
            "acme", c, "ai_usage", local, feature="suggested_reply", conversation=conversation
        )
        if number % 6 == 0:  # trial includes Autopilot
            log.event(
                "acme",
                c,
                "ai_usage",
                later(local, 4),
                feature="autopilot",
                conversation=conversation,
            )
        elif number % 5 == 0:
            log.event(
                "acme",
                c,
                "ai_usage",
                later(local, 9),
                feature="suggested_reply",
                conversation=conversation,
            )
    # Units 101-105: rejected (trial_limit_reached).  A conversation that already holds a
    # unit still works.
    log.event("acme", c, "ai_usage", "2026-10-26T09:12", feature="playground")
    log.event(
        "acme",
        c,
        "ai_usage",
        "2026-10-26T09:40",
        feature="suggested_reply",
        conversation="acme-t039",
    )
    log.event(
        "acme",
        c,
        "ai_usage",
        "2026-10-26T10:05",
        feature="suggested_reply",
        conversation="acme-t001",
    )
    log.event("acme", c, "ai_usage", "2026-10-27T14:30", feature="playground")
    log.event(
        "acme", c, "ai_usage", "2026-10-28T11:02", feature="autopilot", conversation="acme-t040"
    )
    log.event("acme", c, "ai_usage", "2026-10-28T11:20", feature="playground")
    # Subscribes to Boost monthly.
    log.event("acme", c, "subscription", "2026-11-02T10:00", plan="boost", interval="monthly")
    conversations(
        log, "acme", c, "acme", 7, "2026-11-03", "2026-11-27", autopilot=2, repeats=(1, 2)
    )
    conversations(log, "acme", c, "acme", 3, "2026-12-02", "2026-12-18", start=8)
    log.event("acme", c, "payment", "2026-12-04T08:00", amount="25.00")


def brightdesk(log: Log) -> list[str]:
    """Essentials monthly, anchored 1 Oct: 25 conversations in October's period."""
    c = "brightdesk"
    first = log.event(
        "bd", c, "subscription", "2026-10-01T08:30", plan="essentials", interval="monthly"
    )
    ids = conversations(log, "bd", c, "bd", 24, "2026-10-01", "2026-10-30", repeats=(1, 4))
    # Started late on 31 Oct (Berlin), continued on 2 Nov: belongs to October's period.
    log.event(
        "bd", c, "ai_usage", "2026-10-31T23:10", feature="suggested_reply", conversation="bd-025"
    )
    log.event(
        "bd", c, "ai_usage", "2026-11-02T09:15", feature="suggested_reply", conversation="bd-025"
    )
    # Essentials has no Autopilot: rejected (feature_not_in_plan); the conversation stays a
    # suggested-reply conversation.
    conversation, local = ids[9]
    log.event("bd", c, "ai_usage", later(local, 31), feature="autopilot", conversation=conversation)
    # A line without an offset in "at": invalid_field (at).
    log.raw(
        '{"id":"ev-bd-x001","type":"ai_usage","customer":"brightdesk",'
        '"at":"2026-10-14T10:00:00","feature":"suggested_reply","conversation":"bd-009"}',
        datetime.datetime(2026, 10, 14, 8, 0, tzinfo=UTC),
    )
    conversations(log, "bd", c, "bd", 8, "2026-11-02", "2026-11-27", repeats=(1, 3), start=26)
    log.event("bd", c, "payment", "2026-11-12T09:00", amount="25.00")
    conversations(log, "bd", c, "bd", 3, "2026-12-01", "2026-12-15", start=34)
    return [first]


def delta(log: Log) -> None:
    """Pro annual with a 20.00 commitment; timestamps in UTC (Z)."""
    c = "delta-logistics"
    log.event(
        "dl",
        c,
        "subscription",
        "2026-10-10T07:00",
        "utc",
        plan="pro",
        interval="annual",
        commitment="20.00",
    )
    conversations(
        log, "dl", c, "dl", 16, "2026-10-12", "2026-10-30", "utc", autopilot=10, repeats=(1, 2)
    )
    # 23:30 UTC on 31 Oct is 00:30 on 1 Nov in Berlin: in October's export, posted in
    # November's run.
    log.event(
        "dl", c, "ai_usage", "2026-10-31T23:30", "utc", feature="autopilot", conversation="dl-017"
    )
    # A float amount: invalid_field (amount).  The id stays free; November's export sends the
    # corrected line with the same id.
    log.raw(
        '{"id":"ev-dl-pay-1","type":"payment","customer":"delta-logistics",'
        '"at":"2026-10-20T09:00:00Z","amount":20.0}',
        datetime.datetime(2026, 10, 20, 9, 0, tzinfo=UTC),
    )
    log.raw(
        '{"id":"ev-dl-pay-1","type":"payment","customer":"delta-logistics",'
        '"at":"2026-11-02T09:00:00Z","amount":"20.00","note":"re-sent: amount as string"}',
        datetime.datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
    )
    conversations(log, "dl", c, "dl", 12, "2026-11-02", "2026-11-27", "utc", autopilot=7, start=18)
    log.event("dl", c, "payment", "2026-11-16T09:00", "utc", amount="20.00")
    conversations(log, "dl", c, "dl", 5, "2026-12-01", "2026-12-18", "utc", autopilot=3, start=30)
    # More than the commitment: the automatic top-up (default 25.00) covers the rest.
    log.event("dl", c, "channel_usage", "2026-12-15T16:20", "utc", channel="voice", amount="30.00")
    log.event("dl", c, "payment", "2026-12-14T09:00", "utc", amount="20.00")


def echo(log: Log) -> None:
    """Enterprise monthly, 10 included at 0.20; a late Autopilot event on ec-003."""
    c = "echo-media"
    log.event(
        "ec",
        c,
        "subscription",
        "2026-10-15T11:00",
        plan="enterprise",
        interval="monthly",
        included=10,
        unit_price="0.20",
    )
    log.event("ec", c, "top_up", "2026-10-15T11:05", amount="20.00")
    conversations(log, "ec", c, "ec", 8, "2026-10-16", "2026-10-30", repeats=(1, 3))
    conversations(log, "ec", c, "ec", 4, "2026-11-02", "2026-11-13", repeats=(1, 2), start=9)
    conversations(log, "ec", c, "ec", 5, "2026-11-16", "2026-12-11", start=13)
    # Late: exported in December, happened on 3 Nov.  ec-003 was included; it becomes an
    # Autopilot conversation (charged) and its allowance unit goes to ec-011.
    log.event(
        "ec",
        c,
        "ai_usage",
        "2026-11-03T10:12",
        file=LATE,
        feature="autopilot",
        conversation="ec-003",
    )


def fjord(log: Log) -> None:
    """Essentials monthly anchored on 31 Oct; a support desk in New York."""
    c = "fjord-travel"
    log.event("fj", c, "subscription", "2026-10-31T10:15", plan="essentials", interval="monthly")
    ids = conversations(log, "fj", c, "fj", 21, "2026-11-02", "2026-11-27", repeats=(1, 2))
    # 18:40 in New York on 29 Nov is 00:40 on 30 Nov in Berlin: the first day of the second
    # period (30 Nov - 31 Dec), so it is included again.
    log.event(
        "fj",
        c,
        "ai_usage",
        "2026-11-29T18:40",
        "newyork",
        feature="suggested_reply",
        conversation="fj-022",
    )
    log.event(
        "fj", c, "ai_usage", "2026-11-30T09:30", feature="suggested_reply", conversation="fj-023"
    )
    log.event(
        "fj", c, "ai_usage", "2026-11-30T10:02", feature="suggested_reply", conversation=ids[-1][0]
    )  # a conversation of the first period: no new unit
    log.event(
        "fj",
        c,
        "ai_usage",
        "2026-12-10T11:00",
        "newyork",
        feature="suggested_reply",
        conversation="fj-024",
    )
    log.event(
        "fj", c, "ai_usage", "2026-12-30T16:45", feature="suggested_reply", conversation="fj-025"
    )
    # 31 Dec starts the third period.
    log.event(
        "fj",
        c,
        "ai_usage",
        "2026-12-31T08:05",
        "utc",
        feature="suggested_reply",
        conversation="fj-026",
    )
    log.event("fj", c, "payment", "2026-12-07T10:00", amount="25.00")


def granite(log: Log) -> None:
    """Essentials annual, automatic top-up disabled."""
    c = "granite-law"
    log.event(
        "gl",
        c,
        "subscription",
        "2026-10-06T09:30",
        plan="essentials",
        interval="annual",
        auto_top_up={"enabled": False},
    )
    log.event("gl", c, "top_up", "2026-10-12T10:00", amount="10.00")
    log.event("gl", c, "channel_usage", "2026-10-16T14:10", channel="sms", amount="4.50")
    conversations(log, "gl", c, "gl", 5, "2026-10-07", "2026-10-30")
    # 8.00 with 5.50 left: 2.50 goes to the receivable.
    log.event("gl", c, "channel_usage", "2026-11-14T11:00", channel="whatsapp", amount="8.00")
    conversations(log, "gl", c, "gl", 3, "2026-11-02", "2026-11-27", start=6)
    log.event("gl", c, "payment", "2026-11-20T09:00", amount="12.50")
    log.event("gl", c, "channel_usage", "2026-12-03T15:30", channel="voice", amount="3.00")
    # Late: an SMS charge of 14 Nov that the SMS gateway delivered only in December.
    log.event("gl", c, "channel_usage", "2026-11-14T16:45", file=LATE, channel="sms", amount="1.20")
    log.event("gl", c, "payment", "2026-12-18T09:00", amount="4.20")


def harbor(log: Log) -> None:
    """Boost annual, automatic top-up of 50.00 whenever the balance would fall under 10.00."""
    c = "harbor-retail"
    log.event(
        "hr",
        c,
        "subscription",
        "2026-10-08T08:00",
        plan="boost",
        interval="annual",
        auto_top_up={"enabled": True, "amount": "50.00", "threshold": "10.00"},
    )
    log.event("hr", c, "ai_usage", "2026-10-08T08:40", feature="autopilot", conversation="hr-000")
    log.event(
        "hr", c, "ai_usage", "2026-10-09T10:20", feature="suggested_reply", conversation="hr-001"
    )
    conversations(
        log, "hr", c, "hr", 16, "2026-10-12", "2026-10-30", autopilot=5, repeats=(1, 2), start=2
    )
    # 45.00 of Voice with about 48.00 left: under 45.00 + the 10.00 threshold, so one more
    # automatic top-up of 50.00.
    log.event("hr", c, "channel_usage", "2026-11-05T13:00", channel="voice", amount="45.00")
    conversations(log, "hr", c, "hr", 6, "2026-11-02", "2026-11-27", autopilot=2, start=18)
    log.event("hr", c, "payment", "2026-11-25T09:00", amount="50.00")
    log.event("hr", c, "payment", "2026-12-09T09:00", amount="50.00")
    conversations(log, "hr", c, "hr", 3, "2026-12-01", "2026-12-18", autopilot=1, start=24)
    # Late: an Autopilot event of 10 Nov on hr-001, included so far: now charged.
    log.event(
        "hr",
        c,
        "ai_usage",
        "2026-11-10T12:30",
        file=LATE,
        feature="autopilot",
        conversation="hr-001",
    )


def iris(log: Log) -> None:
    """Pro monthly, cancelled on 20 Nov."""
    c = "iris-clinic"
    log.event("ic", c, "subscription", "2026-10-03T09:00", plan="pro", interval="monthly")
    conversations(log, "ic", c, "ic", 13, "2026-10-05", "2026-10-30", autopilot=3, repeats=(1, 2))
    log.event("ic", c, "channel_usage", "2026-10-22T17:00", channel="whatsapp", amount="6.00")
    conversations(log, "ic", c, "ic", 6, "2026-11-02", "2026-11-18", autopilot=1, start=14)
    log.event("ic", c, "cancellation", "2026-11-20T14:00")
    # After the cancellation: rejected (no_active_subscription).
    log.event(
        "ic", c, "ai_usage", "2026-11-25T10:30", feature="suggested_reply", conversation="ic-020"
    )
    # An unknown type: unknown_type.
    log.event("ic", c, "refund_request", "2026-11-26T09:00", amount="17.80")
    # Money still moves after the cancellation: accepted.
    log.event("ic", c, "payment", "2026-11-28T10:00", amount="25.00")


def kestrel(log: Log) -> None:
    """Enterprise annual, 500 included at 0.18; timestamps from New York."""
    c = "kestrel-bank"
    log.event(
        "kb",
        c,
        "subscription",
        "2026-10-19T07:30",
        "newyork",
        plan="enterprise",
        interval="annual",
        included=500,
        unit_price="0.18",
    )
    conversations(
        log, "kb", c, "kb", 11, "2026-10-19", "2026-10-30", "newyork", autopilot=3, repeats=(1, 3)
    )
    conversations(
        log, "kb", c, "kb", 8, "2026-11-02", "2026-11-25", "newyork", autopilot=2, start=12
    )
    log.event(
        "kb", c, "payment", "2026-11-18T10:00", "newyork", amount="25.00", currency="USD"
    )  # currency_mismatch
    log.event("kb", c, "payment", "2026-11-19T10:00", "newyork", amount="25.00", currency="EUR")
    conversations(
        log, "kb", c, "kb", 4, "2026-12-01", "2026-12-17", "newyork", autopilot=1, start=20
    )


def lumen(log: Log) -> None:
    """Boost monthly; the subscription of 18 Nov arrives only in December's export."""
    c = "lumen-studio"
    conversations(log, "lu", c, "lu", 5, "2026-11-20", "2026-11-27", autopilot=1)
    log.event(
        "lu", c, "subscription", "2026-11-18T09:00", file=LATE, plan="boost", interval="monthly"
    )
    conversations(log, "lu", c, "lu", 3, "2026-12-01", "2026-12-18", start=6)


def finance(log: Log) -> None:
    """Events finance enters itself, in a file of their own: goodwill and promotional credit,
    a write-off, one more than the customer owes, one with an impossible expiry day."""
    # Goodwill for echo-media in November (open month): partly used by its charges, the
    # rest goes back to Income:AI:Allowance:Granted when it expires on 21 Nov.
    log.event(
        "fin", "echo-media", "credit_grant", "2026-11-05T09:00", file=FINANCE,
        amount="5.00", expires="2026-11-20", reason="Goodwill: outage on 4 Nov",
    )  # fmt: skip
    # A December promotion without an expiry day: valid like a top-up bought that day.
    log.event(
        "fin", "brightdesk", "credit_grant", "2026-12-10T10:00", file=FINANCE,
        amount="3.00", reason="Promotion: December",
    )  # fmt: skip
    # Part of delta-logistics' unpaid commitments written off to Expenses:BadDebt.
    log.event(
        "fin", "delta-logistics", "write_off", "2026-12-28T16:00", file=FINANCE,
        amount="10.00", reason="Disputed December commitment",
    )  # fmt: skip
    # More than iris-clinic owes: exceeds_open_receivable.
    log.event(
        "fin", "iris-clinic", "write_off", "2026-12-29T16:00", file=FINANCE,
        amount="500.00", reason="Closing the account",
    )  # fmt: skip
    # 30 February: invalid_field (expires).
    log.event(
        "fin", "kestrel-bank", "credit_grant", "2026-12-30T09:00", file=FINANCE,
        amount="2.00", expires="2027-02-30",
    )  # fmt: skip


def bad_lines(log: Log, first_brightdesk: dict) -> None:
    """Lines the engine must quarantine (or count as duplicates) without failing the run."""
    # Truncated by the exporter: malformed_json.
    log.raw(
        '{"id":"ev-kb-x001","type":"ai_usage","customer":"kestrel-bank",'
        '"at":"2026-10-21T10:00:00-04:00","feature":"sugg',
        datetime.datetime(2026, 10, 21, 14, 0, tzinfo=UTC),
    )
    # No subscription for this customer, ever: unknown_customer.
    log.event(
        "gc",
        "ghost-co",
        "ai_usage",
        "2026-10-22T13:00",
        feature="suggested_reply",
        conversation="gc-001",
    )
    # November's export repeats October's subscription line of brightdesk byte for byte
    # (duplicate) and re-uses the id of October's line ev-acme-0002 for other content
    # (id_conflict).
    log.raw(
        json.dumps(first_brightdesk, separators=(",", ":")),
        datetime.datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
        NOV,
    )
    log.raw(
        '{"id":"ev-acme-0002","type":"ai_usage","customer":"acme-gmbh",'
        '"at":"2026-11-03T09:00:00+01:00","feature":"playground"}',
        datetime.datetime(2026, 11, 3, 8, 0, tzinfo=UTC),
        NOV,
    )


def overlap(log: Log, count: int) -> None:
    """December's export starts with the last ``count`` lines of November's (duplicates)."""
    november = sorted(row for row in log.lines if row[0] == NOV)[-count:]
    for _, moment, _, text in november:
        log.raw(text, moment, LATE)


def main() -> None:
    log = Log()
    acme(log)
    first_brightdesk = brightdesk(log)[0]
    for scenario in (delta, echo, fjord, granite, harbor, iris, kestrel, lumen):
        scenario(log)
    bad_lines(log, first_brightdesk)
    overlap(log, 2)
    finance(log)
    log.write()
    for name in FILES:
        lines = (OUT_DIR / name).read_text(encoding="utf-8").count("\n")
        print(f"{OUT_DIR / name}: {lines} lines")


if __name__ == "__main__":
    main()
