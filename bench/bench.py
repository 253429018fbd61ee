"""Performance benchmark of ledger-engine: one synthetic night, and a simulated year of books;
or the steady state of many nights (``--nights``) and one customer's long history
(``--long-history``).

Usage (from the repository root, with the project's virtualenv: the script imports
``ledger_engine``)::

    python bench/bench.py                       # full size: 10,000 customers, 1,000,000 events
    python bench/bench.py --small               # CI smoke test: 50 customers, 5,000 events (<1 min)
    python bench/bench.py --customers 10000 --events 200000 --out /tmp/bench
    python bench/bench.py --nights 14           # steady state: 1,000 customers, 30,000 a night
    python bench/bench.py --small --nights 3    # its smoke test: 50 customers, 5,000 a night
    python bench/bench.py --long-history 200000 # 1 customer's year of 200,000 events, a night

Options: ``--customers N`` (10000; 1000 with ``--nights``), ``--events M`` (1000000; 30000 a
night with ``--nights``), ``--out DIR`` scratch directory (``bench/out``; wiped books are
re-created in it), ``--year-days D`` (365) nights in the simulated year, ``--night YYYY-MM-DD``
(2026-11-03) the posted night (the first one with ``--nights``, the one after the year with
``--long-history``), ``--seed S`` (20261103), ``--small`` (= ``--customers 50 --events 5000``),
``--engine`` / ``--bean-check`` commands (default: the ones next to this Python, else on PATH),
``--nights N`` (N >= 2) and ``--late-fraction F`` (0.01), ``--long-history E``.  ``--nights``
and ``--long-history`` replace the default run below (given together, both run, in one table).

What the default run does, printing ONE table at the end (the other modes print one too):

1. Generates ``OUT/night.jsonl``: one ``subscription`` per customer, dated on an earlier day
   (1 to 60 days before the night), then M events of the night, times spread over the day in
   time order: mixed plans (trial, essentials, boost, pro, enterprise with ``included`` and
   ``unit_price``), monthly and annual intervals, commitments and auto top-up settings,
   features suggested_reply / autopilot / playground with several events per conversation
   (essentials customers use autopilot only rarely, which the engine rejects), and some
   top_up, channel_usage and payment events.  Activity per customer is skewed (log-normal);
   customer 0 is a busy pro customer with 2 % of the events.  The seed is fixed, so the file
   is identical from run to run.
2. JSON parse floor: CPython's standard ``json.loads`` on every line of the file, measured
   in-process (reading the file included), the yardstick for the post.
3. ``ledger-engine post BOOKS night.jsonl --through NIGHT --json`` on freshly ``init``-ed books:
   wall time and peak RSS of the child (``os.wait4`` rusage of that one child).
4. The same post again, which must be a no-op (wall time, peak RSS, 0 transactions written).
5. ``bean-check`` of the posted books' ledger.beancount and of the busiest customer's
   subledger (information, and a check that what the engine wrote is valid).
6. A simulated year: the books in ``OUT/year`` are written directly, without ``post``, but
   through the engine's own records and text functions (``NewEntry`` and ``GlSummary`` from
   ``ledger_engine.core.model``, ``ledger_engine.books.text`` and ``.layout``), so they are
   shaped like a ``post``'s, with made-up amounts: the root files as ``init`` writes them,
   gl/YYYY/YYYY-MM.beancount with 4 daily summaries a day (the night's run and 3 later runs),
   and one busy customer's customers/<segment>/YYYY-MM.beancount with about 6 transactions a
   day (credits and AI usage, a correction, a late SMS charge and a late payment), plus the
   include lines in ledger.beancount and customer.beancount.  ``bean-check`` is timed on
   ledger.beancount and on that customer.beancount, with the pickle load cache disabled
   (``BEANCOUNT_DISABLE_LOAD_CACHE=1``).

Steady state (``--nights N``), in ``OUT/steady``:

1. Generates ``OUT/night-1.jsonl`` .. ``night-N.jsonl``, night K dated the night + K - 1 days,
   with the generator above and the same customers: their subscriptions in night 1's file,
   then M events a night of the same mix (AI usage, channel usage, a few top-ups and
   payments).  Event ids are unique across the nights.  From night 2 on, a share F of a
   night's events are late: dated 1 to 5 days before the night (never before night 1, so
   after every subscription) but in that night's file; most conversations are new each night,
   but 20 % of those still open at the end of a night go on in the next one.  Fixed seed.
2. ``ledger-engine init`` once, then ``post BOOKS night-K.jsonl --through NIGHT_K --json`` for
   each night in order: wall time and peak RSS of each post.
3. ``ledger-engine reconcile BOOKS`` after the last night: clean when it exits 0.
4. The table: each night's wall time and peak RSS; the last night's wall time over night 2's
   (the cost of a night must not grow with the history: <= 1.3); the store (``state.sqlite``
   and its ``-wal``, if any) in bytes per accepted event of all nights (<= 400 B); the largest
   peak RSS (<= 1 GiB); whether reconcile was clean (not clean is a failed step).

Long history (``--long-history E``), in ``OUT/history``: one pro customer's year, E events
spread over the 365 days before the night in 12 files of consecutive days
(``OUT/history-NN.jsonl``), posted one file at a time through its last day (information: total
and last post's wall time, largest peak RSS); then ``OUT/history-night.jsonl``, 10 new events
of that customer on the night, posted (wall time, peak RSS), and a no-op post of an empty file
on the same books (wall time: what any run costs); the difference is the customer's own work.
Information only, no targets.

Targets (from the performance issue): post <= 5x floor, no-op post <= 0.5x floor, peak RSS
<= 1 GiB, GL year bean-check <= 2 s, one customer's year <= 0.5 s.  Each row shows PASS/MISS.

Exit status: 0 when every step completed, whatever the timings (no timing assertions, so CI
can run ``--small`` as a smoke test); 1 when a step failed: a command exited non-zero (reconcile
included), a no-op post wrote transactions, or bean-check reported errors.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import functools
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from ledger_engine.books import layout, text
from ledger_engine.core import accounts, dates
from ledger_engine.core.model import CHANNELS, PLANS, EntryKind, GlSummary, NewEntry
from ledger_engine.core.money import format_cents
from ledger_engine.core.planner import plan_gl_summaries
from ledger_engine.core.wallet import short_hash
from ledger_engine.store.db import STORE_NAME

DEFAULT_NIGHT = "2026-11-03"
DEFAULT_SEED = 20261103
GIB = 1024**3
SUBSCRIPTION_DAYS_BEFORE = 60  # subscriptions are dated 1..60 days before the night
BUSY_SHARE = 0.02  # share of the night's events that belong to customer 0

PLAN_WEIGHTS = (8, 30, 25, 27, 10)  # of model.PLANS, in its order
# Event type mix of the night (cumulative thresholds on one random draw).
P_AI = 0.965
P_CHANNEL = P_AI + 0.020
P_TOP_UP = P_CHANNEL + 0.007  # the rest are payments
P_PLAYGROUND = 0.10  # share of AI events that are playground messages
P_NEW_CONVERSATION = 0.30  # chance an AI event starts a conversation (else continues one)
P_AUTOPILOT_CONVERSATION = 0.25
P_AUTOPILOT_ESSENTIALS = 0.001  # essentials has no autopilot: rare, rejected by the engine
P_AUTOPILOT_IN_REPLY = 0.01  # an autopilot event inside a suggested-reply conversation
# Steady state (--nights) and long history (--long-history).
P_CARRY_CONVERSATION = 0.2  # share of a night's open conversations that go on the next night
LATE_DAYS = 5  # a late event is dated 1..5 days before the night whose file holds it
HISTORY_DAYS = 365  # the long-history customer's year, before the night
HISTORY_FILES = 12  # posted one file (about a month of days) at a time
HISTORY_NEW_EVENTS = 10  # that customer's events of the night posted after its year


# --------------------------------------------------------------------------- measuring


class Measure(NamedTuple):
    seconds: float
    max_rss: int  # bytes
    returncode: int
    stdout: str
    stderr: str


# The child is started by a small, freshly exec'd Python: on Linux a process's ru_maxrss keeps
# the high-water mark of the process it was forked from, so a child forked directly from this
# (large) process would report at least this process's RSS.
RUSAGE_WRAPPER = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as stream:
    stream.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_child(command: list[str], env: dict | None = None, scratch: Path | None = None) -> Measure:
    """Runs ``command``: its wall time and the peak RSS of that child (and its waited children)."""
    scratch = scratch or Path("/tmp")
    paths = [scratch / f".bench.{name}" for name in ("stdout", "stderr", "rusage")]
    with paths[0].open("wb") as out, paths[1].open("wb") as err:
        wrapper = [sys.executable, "-c", RUSAGE_WRAPPER, str(paths[2]), *command]
        status = subprocess.run(wrapper, stdout=out, stderr=err, env=env, check=False)
    stdout, stderr = (path.read_text(errors="replace") for path in paths[:2])
    if status.returncode != 0 or not paths[2].exists():
        seconds, max_rss, returncode = 0.0, 0, status.returncode or 1
    else:
        seconds_text, rss_text, code_text = paths[2].read_text().split()
        seconds, max_rss, returncode = float(seconds_text), int(rss_text), int(code_text)
    for path in paths:
        path.unlink(missing_ok=True)
    return Measure(seconds, max_rss * 1024, returncode, stdout, stderr)


class Failures:
    def __init__(self):
        self.messages: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.messages.append(message)
            print(f"FAILED: {message}", file=sys.stderr, flush=True)
        return ok


# --------------------------------------------------------------------------- the night


class Customer(NamedTuple):
    id: str
    plan: str
    interval: str | None
    weight: float


def customer_id(index: int) -> str:
    # Mostly "cus_00042"; some ids with dots and dashes (segments with -XX escapes).
    return f"org-{index}.eu" if index % 7 == 3 else f"cus_{index:05d}"


def make_customers(rng: random.Random, count: int) -> list[Customer]:
    customers = []
    for index in range(count):
        plan = "pro" if index == 0 else rng.choices(PLANS, PLAN_WEIGHTS)[0]
        interval = None if plan == "trial" else rng.choice(("monthly",) * 7 + ("annual",) * 3)
        weight = rng.lognormvariate(0.0, 1.0) * (0.1 if plan == "trial" else 1.0)
        customers.append(Customer(customer_id(index), plan, interval, weight))
    if count > 1:
        others = sum(c.weight for c in customers[1:])
        customers[0] = customers[0]._replace(weight=others * BUSY_SHARE / (1 - BUSY_SHARE))
    return customers


def clock(second: int) -> str:
    return f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


def subscription_line(rng: random.Random, customer: Customer, night: datetime.date) -> str:
    day = night - datetime.timedelta(days=rng.randint(1, SUBSCRIPTION_DAYS_BEFORE))
    event = {
        "id": f"sub-{customer.id}-{day:%Y%m%d}",
        "type": "subscription",
        "customer": customer.id,
        "at": f"{day}T{clock(rng.randrange(86400))}Z",
        "plan": customer.plan,
    }
    if customer.interval:
        event["interval"] = customer.interval
    if customer.plan in ("pro", "enterprise") and rng.random() < 0.3:
        event["commitment"] = rng.choice(("50.00", 100, "250.00"))
    roll = rng.random()
    if roll < 0.1:
        event["auto_top_up"] = {"enabled": False}
    elif roll < 0.2:
        event["auto_top_up"] = {"enabled": True, "amount": "50.00", "threshold": "5.00"}
    if customer.plan == "enterprise":
        event["included"] = rng.randint(500, 20000)
        event["unit_price"] = rng.choice(("0.15", "0.20", "0.25"))
    return json.dumps(event, separators=(",", ":")) + "\n"


class NightWriter:
    """Generates the night's events for the customers, with conversation state per customer."""

    def __init__(self, rng: random.Random, customers: list[Customer], night: datetime.date):
        self.rng = rng
        self.customers = customers
        self.night = night
        self.compact = f"{night:%Y%m%d}"
        self.open: list[list[list]] = [[] for _ in customers]  # [conversation, left, kind]
        self.counters = [0] * len(customers)

    def next_night(self, night: datetime.date, carry: float) -> None:
        """Moves on to ``night``: each open conversation goes on with probability ``carry``
        (its next events are in the new night), the others have ended."""
        self.night = night
        self.compact = f"{night:%Y%m%d}"
        for open_ in self.open:
            open_[:] = [entry for entry in open_ if self.rng.random() < carry]

    def conversation(self, index: int) -> list:
        rng, open_ = self.rng, self.open[index]
        if not open_ or rng.random() < P_NEW_CONVERSATION:
            self.counters[index] += 1
            plan = self.customers[index].plan
            share = P_AUTOPILOT_ESSENTIALS if plan == "essentials" else P_AUTOPILOT_CONVERSATION
            kind = "autopilot" if rng.random() < share else "suggested_reply"
            conv_id = f"cv_{self.compact}_{self.counters[index]:06d}"
            open_.append([conv_id, rng.randint(1, 6), kind])
        slot = rng.randrange(len(open_))
        entry = open_[slot]
        entry[1] -= 1
        if entry[1] <= 0:
            open_[slot] = open_[-1]
            open_.pop()
        return entry

    def ai_fields(self, index: int) -> str:
        rng = self.rng
        if rng.random() < P_PLAYGROUND:
            return '"feature":"playground"'
        conv_id, _, kind = self.conversation(index)
        if kind == "suggested_reply" and rng.random() < P_AUTOPILOT_IN_REPLY:
            if self.customers[index].plan != "essentials":
                kind = "autopilot"
        return f'"feature":"{kind}","conversation":"{conv_id}"'

    def line(self, number: int, index: int, at: str) -> str:
        rng = self.rng
        head = (
            f'{{"id":"{number:08x}{rng.getrandbits(96):024x}",'
            f'"customer":"{self.customers[index].id}","at":"{at}",'
        )
        roll = rng.random()
        if roll < P_AI:
            return f'{head}"type":"ai_usage",{self.ai_fields(index)}}}\n'
        if roll < P_CHANNEL:
            amount = format_cents(rng.randint(5, 500))
            channel = rng.choice(CHANNELS)
            return f'{head}"type":"channel_usage","channel":"{channel}","amount":"{amount}"}}\n'
        if roll < P_TOP_UP:
            amount = rng.choice(('"25.00"', '"50.00"', "100"))
            return f'{head}"type":"top_up","amount":{amount}}}\n'
        return f'{head}"type":"payment","amount":"{format_cents(rng.randint(500, 20000))}"}}\n'


def generate_night(
    path: Path,
    customers: int,
    events: int,
    night: datetime.date,
    seed: int,
    subscriptions: bool = True,
):
    """Writes the night's JSONL; returns (customer list, events per customer).

    The customers depend on the seed only, so a second night (``subscriptions=False``, another
    ``night`` and seed) is more activity of the same customers on books that already hold them.
    """
    rng = random.Random(seed)
    people = make_customers(rng, customers)
    if not subscriptions:
        rng = random.Random(seed + 7)
    writer = NightWriter(rng, people, night)
    cumulative = list(itertools.accumulate(c.weight for c in people))
    picks = rng.choices(range(customers), cum_weights=cumulative, k=events)
    seconds = sorted(rng.randrange(86400) for _ in range(events))
    stamps = [f"{night}T{clock(s)}Z" for s in range(86400)]
    per_customer = [0] * customers
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        if subscriptions:
            stream.write("".join(subscription_line(rng, c, night) for c in people))
        chunk: list[str] = []
        for number in range(events):
            index = picks[number]
            per_customer[index] += 1
            chunk.append(writer.line(number, index, stamps[seconds[number]]))
            if len(chunk) == 100_000:
                stream.write("".join(chunk))
                chunk.clear()
        stream.write("".join(chunk))
    return people, per_customer


def parse_floor(path: Path) -> tuple[float, int]:
    """Seconds for the standard json module to parse every line (in-process), lines."""
    start = time.perf_counter()
    count = 0
    loads = json.loads
    with path.open("r", encoding="utf-8") as stream:
        for line in stream:
            loads(line)
            count += 1
    return time.perf_counter() - start, count


# --------------------------------------------------------------------------- steady state


class NightFile(NamedTuple):
    path: Path
    night: datetime.date  # the --through of its post
    events: int
    late: int  # events dated before the night


def event_lines(
    writer: NightWriter,
    picks: list[int],
    seconds: list[int],
    first_number: int,
    days: list[datetime.date | None],
) -> Iterator[str]:
    """The lines of events number ``first_number``, ... (ids unique across files): customer
    ``picks[i]`` at ``seconds[i]`` of ``days[i]``, or of the writer's night when that is None."""
    night = writer.night
    for offset, (index, second, day) in enumerate(zip(picks, seconds, days, strict=True)):
        yield writer.line(first_number + offset, index, f"{day or night}T{clock(second)}Z")


def write_events(path: Path, head: str, lines: Iterator[str]) -> None:
    """Writes ``head`` (subscriptions) then the event ``lines`` to ``path``."""
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        stream.write(head)
        stream.writelines(lines)


def late_days(
    rng: random.Random, count: int, night: datetime.date, fraction: float, most: int
) -> list[datetime.date | None]:
    """For each of ``count`` events: None (dated on the night) or, with probability
    ``fraction``, a day 1 to ``most`` days before the night (a late event)."""
    if most < 1 or fraction <= 0:
        return [None] * count
    return [
        night - datetime.timedelta(days=rng.randint(1, most)) if rng.random() < fraction else None
        for _ in range(count)
    ]


def generate_nights(
    out: Path, customers: int, events: int, nights: list[datetime.date], late: float, seed: int
) -> list[NightFile]:
    """Writes ``OUT/night-K.jsonl`` for K = 1.. of the consecutive ``nights``: the customers of
    ``generate_night`` (same seed), their subscriptions in night 1's file, then ``events`` events
    a night of the same mix.  From night 2 on, a share ``late`` of a night's events is dated 1 to
    LATE_DAYS days earlier (never before night 1, so never before a subscription), and a share
    P_CARRY_CONVERSATION of the conversations still open goes on in the next night."""
    rng = random.Random(seed)
    people = make_customers(rng, customers)
    cumulative = list(itertools.accumulate(c.weight for c in people))
    writer = NightWriter(rng, people, nights[0])
    files = []
    for number, night in enumerate(nights, start=1):
        if number > 1:
            writer.next_night(night, P_CARRY_CONVERSATION)
        head = "".join(subscription_line(rng, c, night) for c in people) if number == 1 else ""
        picks = rng.choices(range(customers), cum_weights=cumulative, k=events)
        seconds = sorted(rng.randrange(86400) for _ in range(events))
        days = late_days(rng, events, night, late, min(LATE_DAYS, number - 1))
        path = out / f"night-{number}.jsonl"
        write_events(path, head, event_lines(writer, picks, seconds, (number - 1) * events, days))
        late_count = sum(day is not None for day in days)
        files.append(NightFile(path, night, events, late_count))
    return files


def store_size(books: Path) -> int:
    """Bytes of the books' SQLite store: the database file and its write-ahead log, if any."""
    store = books / STORE_NAME
    return sum(path.stat().st_size for path in (store, Path(f"{store}-wal")) if path.exists())


# --------------------------------------------------------------------------- long history


def generate_history(out: Path, events: int, night: datetime.date, seed: int) -> list[NightFile]:
    """Writes one busy pro customer's year before ``night``: its subscription, then ``events``
    events spread over the HISTORY_DAYS days before the night, in HISTORY_FILES files of
    consecutive days (``OUT/history-NN.jsonl``, each to be posted through its last day); then
    ``OUT/history-night.jsonl``: HISTORY_NEW_EVENTS new events of the customer on ``night``."""
    rng = random.Random(seed + 3)
    customer = Customer(customer_id(0), "pro", "monthly", 1.0)
    start = night - datetime.timedelta(days=HISTORY_DAYS)
    writer = NightWriter(rng, [customer], start)
    instants = sorted(rng.randrange(HISTORY_DAYS * 86400) for _ in range(events))
    files = []
    for part in range(HISTORY_FILES):
        first_day, end_day = (HISTORY_DAYS * p // HISTORY_FILES for p in (part, part + 1))
        low, high = (bisect.bisect_left(instants, day * 86400) for day in (first_day, end_day))
        chunk = instants[low:high]
        writer.next_night(start + datetime.timedelta(days=first_day), 1.0)
        days = [start + datetime.timedelta(days=s // 86400) for s in chunk]
        lines = event_lines(writer, [0] * len(chunk), [s % 86400 for s in chunk], low, days)
        head = subscription_line(rng, customer, start) if part == 0 else ""
        path = out / f"history-{part + 1:02d}.jsonl"
        write_events(path, head, lines)
        last_day = start + datetime.timedelta(days=end_day - 1)
        files.append(NightFile(path, last_day, len(chunk), 0))
    writer.next_night(night, 1.0)
    seconds = sorted(rng.randrange(86400) for _ in range(HISTORY_NEW_EVENTS))
    path = out / "history-night.jsonl"
    zeros = [0] * HISTORY_NEW_EVENTS
    write_events(path, "", event_lines(writer, zeros, seconds, events, [None] * len(zeros)))
    files.append(NightFile(path, night, HISTORY_NEW_EVENTS, 0))
    return files


# --------------------------------------------------------------------------- the year

# The simulated year goes through the engine's own records (NewEntry, GlSummary) and text
# functions (ledger_engine.books.text, .layout): its journals are shaped exactly like those
# `post` writes; only the amounts and counts are made up.
CURRENCY = "EUR"  # the currency `ledger-engine init` gives books by default
RULES_VERSION = "2026.1"
ONE_DAY = datetime.timedelta(days=1)
# The GL stands for a full-size book: cents of every GL account in the night's summary (the
# wallets control account balances it); later runs post 3 of them.
GL_NIGHT_RANGES = {
    accounts.RECEIVABLES_CONTROL: (100_000, 900_000),
    accounts.BANK_CLEARING: (50_000, 500_000),
    accounts.REVENUE_SUGGESTED: (-900_000, -100_000),
    accounts.REVENUE_AUTOPILOT: (-900_000, -100_000),
    accounts.ALLOWANCE_INCLUDED: (50_000, 400_000),
    accounts.ALLOWANCE_TRIAL: (1_000, 9_000),
    accounts.BREAKAGE: (-90_000, -1_000),
    **{account: (-90_000, -1_000) for account in accounts.CHANNEL_INCOME.values()},
}


def new_entry(
    customer: str,
    segment: str,
    day: datetime.date,
    kind: EntryKind,
    detail: str | None,
    postings: list[tuple[str, int]],
    meta: list[tuple[str, object]],
) -> NewEntry:
    """A first entry of ``kind`` on ``day`` as the planner hands it to the writer: the kind's
    key and narration, the customer first in the metadata (as the wallet puts it), and the
    last posting balancing the others."""
    *others, (last, _) = postings
    return NewEntry(
        customer=customer,
        segment=segment,
        kind=kind,
        orig_day=day,
        key=kind.key(detail),
        seq=1,
        effective_day=day,
        moved_from_closed_month=False,
        corrects=None,
        for_already_posted_day=False,
        narration=kind.narration(detail),
        postings=(*others, (last, -sum(cents for _, cents in others))),
        meta=(("customer", customer), *meta),
    )


def customer_day(
    rng: random.Random, customer: str, segment: str, day: datetime.date
) -> list[list[NewEntry]]:
    """The busy customer's entries of one day, by run (4 runs a day, one GL summary each):
    the night's run posts the credits (a commitment on the 1st) and the AI usage, the 2nd
    run corrects the usage, the 3rd and 4th post late events (an SMS charge, a payment)."""
    wallet = accounts.wallet_account(segment)
    receivable = accounts.receivable_account(segment)
    entry = functools.partial(new_entry, customer, segment, day)
    night = []
    if day.day == 1:
        meta = [("lot", f"commitment-{day}"), ("expires", dates.add_months(day, 1) - ONE_DAY)]
        night.append(entry(EntryKind.COMMITMENT, None, [(receivable, 10000), (wallet, 0)], meta))
    top_up = f"auto-top-up-{day}"
    meta = [("lot", top_up), ("expires", dates.last_day_of_month(day, 1))]
    meta += [("top-ups", 2), ("threshold", "0.00")]
    night.append(entry(EntryKind.AUTO_TOP_UP, None, [(receivable, 5000), (wallet, 0)], meta))
    period_start = day.replace(day=1)
    period = f"{period_start}/{dates.add_months(period_start, 1)}"
    digest = f"{rng.getrandbits(64):016x}"
    usage = []
    for _ in range(2):  # what the night's run posts, then what a later run makes of it
        gross = [
            (accounts.REVENUE_SUGGESTED, -rng.randint(1000, 9000)),
            (accounts.REVENUE_AUTOPILOT, -rng.randint(300, 3000)),
            (accounts.ALLOWANCE_INCLUDED, rng.randint(0, 900)),
        ]
        paid = -sum(cents for _, cents in gross)
        meta = [("period", period), ("conversations", rng.randint(50, 400)), ("included", 0)]
        meta += [("charged", 120), ("autopilot", 30), ("rules-version", RULES_VERSION)]
        meta += [("conversations-digest", digest), ("lots", f"{top_up}:{format_cents(paid)}")]
        usage.append(entry(EntryKind.USAGE, str(period_start), [*gross, (wallet, 0)], meta))
    night.append(usage[0])
    correction = usage[1]._replace(seq=2, corrects=usage[0].txn_id)
    amount = rng.randint(10, 900)
    meta = [("events", 12), ("lots", f"{top_up}:{format_cents(amount)}")]
    postings = [(accounts.CHANNEL_INCOME["sms"], -amount), (wallet, 0)]
    channel = entry(EntryKind.CHANNEL, "sms", postings, meta)
    event = f"pay-{day}"
    postings = [(accounts.BANK_CLEARING, rng.randint(1000, 9000)), (receivable, 0)]
    payment = entry(EntryKind.PAYMENT, short_hash(event), postings, [("event", event)])
    late = [e._replace(for_already_posted_day=True) for e in (channel, payment)]
    return [night, [correction], [late[0]], [late[1]]]


def gl_summaries(
    rng: random.Random, day: datetime.date, runs: list[list[NewEntry]]
) -> list[GlSummary]:
    """The day's GL summaries of each run, one per kind of movement of the entries that run
    posts (``runs``), as ``plan_gl_summaries`` groups them.  The night's usage summary has
    the postings of a full-size book (GL_NIGHT_RANGES); the others a few small ones."""
    summaries = []
    for run_id, entries in enumerate(runs, start=1):
        for planned in plan_gl_summaries(entries, run_id):
            totals = {account: rng.randint(*bounds) for account, bounds in GL_NIGHT_RANGES.items()}
            if run_id > 1 or planned.movement != "usage":
                totals = dict(rng.sample(list(totals.items()), 2))
            totals[accounts.WALLETS_CONTROL] = -sum(totals.values())
            postings = tuple((a, totals[a]) for a in accounts.GL_ACCOUNTS if totals.get(a))
            summaries.append(planned._replace(postings=postings))
    return summaries


def write_year(books: Path, customer: str, night: datetime.date, days: int, seed: int):
    """Writes new books in ``books``: the ``days`` nights up to ``night`` of the GL and of
    ``customer``'s subledger, every text appended where and in the order a run appends it
    (as ``JournalWriter.write_summaries``).  Returns (customer root, GL txns, customer txns)."""
    rng = random.Random(seed + 1)
    segment = accounts.customer_segment(customer)
    customer_root = layout.customer_root_path(segment)
    files = {  # relative path -> texts; the roots as `init` and a first post write them
        layout.ACCOUNTS_NAME: [text.gl_accounts_text(CURRENCY)],
        layout.LEDGER_NAME: [text.ledger_root(CURRENCY)],
        customer_root: [text.customer_root(customer, segment, CURRENCY)],
    }

    def append_to_month(root: str, month_path: str, entry_text: str) -> None:
        if month_path not in files:  # a new month file is included from its root first
            files[root].append(text.include_line(layout.include_path(root, month_path)))
            files[month_path] = []
        files[month_path].append(entry_text)

    gl_txns = customer_txns = 0
    for offset in range(days - 1, -1, -1):
        day = night - datetime.timedelta(days=offset)
        gl_file = layout.gl_month_path(dates.month_of(day))
        customer_file = layout.customer_month_path(segment, dates.month_of(day))
        for summary in gl_summaries(rng, day, customer_day(rng, customer, segment, day)):
            append_to_month(layout.LEDGER_NAME, gl_file, text.gl_summary_text(summary, CURRENCY))
            gl_txns += 1
            for entry in summary.entries:
                entry_text = text.subledger_text(entry, summary.link, CURRENCY)
                append_to_month(customer_root, customer_file, entry_text)
                customer_txns += 1
    shutil.rmtree(books, ignore_errors=True)
    for relative, texts in files.items():
        path = books / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(texts), encoding="utf-8")
    return books / customer_root, gl_txns, customer_txns


# --------------------------------------------------------------------------- the run


class Row(NamedTuple):
    label: str
    value: str
    ratio: str = ""
    target: str = ""
    verdict: str = ""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        beancount = metadata.version("beancount")
    except metadata.PackageNotFoundError:
        beancount = "?"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: nproc {cores}, {model}; Python {platform.python_version()} "
        f"({platform.python_implementation()}), beancount {beancount}, {platform.platform()}"
    )


def tool(name: str, given: str | None) -> str:
    if given:
        return given
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.exists() else (shutil.which(name) or name)


def print_table(rows: list[Row]) -> None:
    header = Row("measure", "value", "ratio", "target", "result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    for number, row in enumerate([header, *rows]):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            print("  ".join("-" * width for width in widths))


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out: Path = args.out
        self.night = datetime.date.fromisoformat(args.night)
        self.engine = tool("ledger-engine", args.engine)
        self.bean_check = tool("bean-check", args.bean_check)
        self.failures = Failures()
        self.rows: list[Row] = []
        self.floor = 0.0
        self.env = dict(os.environ, BEANCOUNT_DISABLE_LOAD_CACHE="1")

    def step(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def fresh_books(self, name: str) -> Path | None:
        books = self.out / name
        shutil.rmtree(books, ignore_errors=True)
        result = run_child([self.engine, "init", str(books)], scratch=self.out)
        ok = self.failures.check(result.returncode == 0, f"init {books}: {result.stderr.strip()}")
        return books if ok else None

    def night_file(self) -> tuple[Path, str]:
        args = self.args
        path = self.out / "night.jsonl"
        self.step(f"generating {args.events:,} events for {args.customers:,} customers")
        start = time.perf_counter()
        people, per_customer = generate_night(
            path, args.customers, args.events, self.night, args.seed
        )
        seconds = time.perf_counter() - start
        size = path.stat().st_size
        label = f"generate {args.events:,} events + {args.customers:,} subscriptions"
        self.rows.append(Row(label, f"{seconds:.2f} s", f"{size / 2**20:,.0f} MiB file"))
        busiest = max(range(len(people)), key=per_customer.__getitem__)
        return path, people[busiest].id

    def measure_floor(self, path: Path) -> None:
        self.step("JSON parse floor (json.loads per line, in-process)")
        self.floor, lines = parse_floor(path)
        label = f"JSON parse floor: json.loads x {lines:,} lines (in-process)"
        self.rows.append(Row(label, f"{self.floor:.2f} s", "1.00x"))

    def post_child(
        self, books: Path, path: Path, label: str, night: datetime.date
    ) -> tuple[Measure, dict | None]:
        """Runs ``post BOOKS PATH --through NIGHT --json``: its measure and, when it succeeded,
        the counts it printed (printed too)."""
        self.step(f"{label}: ledger-engine post")
        command = [self.engine, "post", str(books), str(path)]
        command += ["--through", night.isoformat(), "--allow-future", "--json"]
        result = run_child(command, scratch=self.out)
        ok = self.failures.check(
            result.returncode == 0,
            f"{label} exited {result.returncode}: {result.stderr.strip()[-500:]}",
        )
        if not ok:
            return result, None
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"  {json.dumps(summary, sort_keys=True)}", flush=True)
        return result, summary

    def post(self, books: Path, path: Path, label: str, target: float, night=None) -> dict | None:
        result, summary = self.post_child(books, path, label, night or self.night)
        ratio = result.seconds / self.floor if self.floor else float("inf")
        self.rows.append(
            Row(
                f"{label}: wall",
                f"{result.seconds:.2f} s",
                f"{ratio:.2f}x floor",
                f"<= {target}x floor",
                verdict(ratio <= target),
            )
        )
        self.rows.append(
            Row(
                f"{label}: peak RSS",
                mib(result.max_rss),
                "",
                "<= 1,024 MiB",
                verdict(result.max_rss <= GIB),
            )
        )
        return summary

    def bean_check_file(self, path: Path, label: str, limit: float | None) -> None:
        self.step(f"bean-check {path}")
        result = run_child([self.bean_check, str(path)], env=self.env, scratch=self.out)
        output = (result.stdout + result.stderr).strip()
        self.failures.check(
            result.returncode == 0 and not output,
            f"bean-check {path} exited {result.returncode}: {output[:1000]}",
        )
        value = f"{result.seconds:.2f} s"
        if limit is None:
            self.rows.append(Row(label, value, mib(result.max_rss), "(info)"))
        else:
            self.rows.append(
                Row(
                    label,
                    value,
                    mib(result.max_rss),
                    f"<= {limit} s",
                    verdict(result.seconds <= limit),
                )
            )

    def night_runs(self) -> None:
        path, busiest = self.night_file()
        self.measure_floor(path)
        books = self.fresh_books("books")
        if books is None:
            return
        first = self.post(books, path, "post (fresh books)", 5)
        if first is None:
            return
        again = self.post(books, path, "no-op post (same file)", 0.5)
        if again is not None:
            written = again.get("transactions_written")
            self.failures.check(written == 0, f"the no-op post wrote {written} transactions")
        self.second_night(books)
        self.bean_check_file(books / layout.LEDGER_NAME, "bean-check posted GL (2 nights)", None)
        root = books / layout.customer_root_path(accounts.customer_segment(busiest))
        label = f"bean-check posted busiest customer {busiest}"
        self.bean_check_file(root, label, None)

    def second_night(self, books: Path) -> None:
        """The next night of the same customers: the steady state, where every touched
        customer is re-derived from its whole history (information, no target)."""
        args = self.args
        night = self.night + datetime.timedelta(days=1)
        path = self.out / "night2.jsonl"
        self.step(f"generating the second night ({night})")
        generate_night(path, args.customers, args.events, night, args.seed, subscriptions=False)
        self.post(books, path, "post (second night, same customers)", 5, night)

    def year_runs(self) -> None:
        days = self.args.year_days
        books = self.out / "year"
        self.step(f"writing a simulated year of {days} nights in {books}")
        root, gl_txns, customer_txns = write_year(
            books, customer_id(0), self.night, days, self.args.seed
        )
        label = f"bean-check GL, {days} nights ({gl_txns:,} txns)"
        self.bean_check_file(books / layout.LEDGER_NAME, label, 2.0)
        label = f"bean-check 1 customer, {days} nights ({customer_txns:,} txns)"
        self.bean_check_file(root, label, 0.5)

    def timed(self, label: str, generate, *args) -> list[NightFile]:
        """Runs the generator ``generate(*args)``; a row with its time and the files' size."""
        self.step(f"generating {label}")
        start = time.perf_counter()
        files = generate(*args)
        seconds = time.perf_counter() - start
        size = sum(file.path.stat().st_size for file in files)
        self.rows.append(Row(f"generate {label}", f"{seconds:.2f} s", f"{mib(size)} of files"))
        return files

    def steady_runs(self) -> None:
        """--nights N: N consecutive nights of the same customers posted on the same books, one
        post a night; then the steady-state ratio, the store size, reconcile."""
        args = self.args
        nights = [self.night + ONE_DAY * offset for offset in range(args.nights)]
        label = (
            f"{args.nights} nights x {args.events:,} events, {args.customers:,} customers, "
            f"{args.late_fraction:.1%} late"
        )
        generate = functools.partial(generate_nights, self.out, args.customers, args.events)
        files = self.timed(label, generate, nights, args.late_fraction, args.seed)
        books = self.fresh_books("steady")
        if books is None:
            return
        posts: list[tuple[Measure, dict]] = []
        for number, file in enumerate(files, start=1):
            result, summary = self.post_child(books, file.path, f"night {number}", file.night)
            if summary is None:
                return
            posts.append((result, summary))
            self.night_row(number, file, result, summary)
        self.steady_rows(books, posts)
        self.reconcile(books, f"reconcile after night {len(files)}")

    def night_row(self, number: int, file: NightFile, result: Measure, summary: dict) -> None:
        label = (
            f"post night {number} ({file.night}): {summary['accepted']:,} accepted "
            f"({file.late:,} late), {summary['transactions_written']:,} txns"
        )
        self.rows.append(Row(label, f"{result.seconds:.2f} s", f"{mib(result.max_rss)} peak RSS"))

    def steady_rows(self, books: Path, posts: list[tuple[Measure, dict]]) -> None:
        """The targets of the steady state: last night's wall against night 2's, the store's
        bytes per accepted event, the largest peak RSS."""
        second, last = posts[1][0].seconds, posts[-1][0].seconds
        ratio = last / second if second else float("inf")
        label = f"wall: night {len(posts)} / night 2"
        value = f"{last:.2f} s / {second:.2f} s"
        self.rows.append(Row(label, value, f"{ratio:.2f}x", "<= 1.3x", verdict(ratio <= 1.3)))
        size = store_size(books)
        accepted = sum(summary["accepted"] for _, summary in posts)
        per_event = size / accepted if accepted else float("inf")
        self.rows.append(
            Row(
                f"store size per accepted event ({STORE_NAME}[-wal])",
                f"{per_event:,.0f} B",
                f"{mib(size)} / {accepted:,}",
                "<= 400 B",
                verdict(per_event <= 400),
            )
        )
        peak, night = max((result.max_rss, n) for n, (result, _) in enumerate(posts, start=1))
        self.rows.append(
            Row(
                f"max peak RSS of the {len(posts)} posts (night {night})",
                mib(peak),
                "",
                "<= 1,024 MiB",
                verdict(peak <= GIB),
            )
        )

    def reconcile(self, books: Path, label: str) -> None:
        """``ledger-engine reconcile BOOKS``: clean when it exits 0 (else a failed step)."""
        self.step(f"{label}: ledger-engine reconcile")
        result = run_child([self.engine, "reconcile", str(books)], scratch=self.out)
        clean = result.returncode == 0
        output = (result.stdout + result.stderr).strip()
        self.failures.check(clean, f"{label} exited {result.returncode}: {output[-1000:]}")
        value = f"clean: {'yes' if clean else 'no'}"
        self.rows.append(Row(label, value, f"{result.seconds:.2f} s", "clean", verdict(clean)))

    def long_history_runs(self) -> None:
        """--long-history E: one customer's year of E events posted file by file, then 10 new
        events of that customer, and a no-op post (an empty file) on the same books."""
        events = self.args.long_history
        label = f"1 customer's year: {events:,} events in {HISTORY_FILES} files + the night"
        files = self.timed(label, generate_history, self.out, events, self.night, self.args.seed)
        books = self.fresh_books("history")
        if books is None:
            return
        *year, new = files
        measures = []
        for number, file in enumerate(year, start=1):
            result, summary = self.post_child(books, file.path, f"history {number}", file.night)
            if summary is None:
                return
            measures.append(result)
        total = sum(result.seconds for result in measures)
        peak = max(result.max_rss for result in measures)
        label = f"post the year: {len(year)} posts, total (last {measures[-1].seconds:.2f} s)"
        self.rows.append(Row(label, f"{total:.2f} s", f"{mib(peak)} max peak RSS"))
        self.history_night(books, new)

    def history_night(self, books: Path, new: NightFile) -> None:
        """The night's post of the long-history customer against a no-op post (an empty file)
        on the same books: the difference is that customer's own work."""
        label = f"post {new.events} new events of that customer ({new.night})"
        result, summary = self.post_child(books, new.path, label, new.night)
        if summary is None:
            return
        self.rows.append(Row(label, f"{result.seconds:.2f} s", f"{mib(result.max_rss)} peak RSS"))
        empty = self.out / "empty.jsonl"
        empty.write_bytes(b"")
        label = "no-op post (empty file), same books"
        noop, summary = self.post_child(books, empty, label, new.night)
        if summary is None:
            return
        written = summary["transactions_written"]
        self.failures.check(written == 0, f"the empty post wrote {written} transactions")
        self.rows.append(Row(label, f"{noop.seconds:.2f} s", f"{mib(noop.max_rss)} peak RSS"))
        own = result.seconds - noop.seconds
        label = "the customer's own work (difference)"
        self.rows.append(Row(label, f"{own:.2f} s", f"{own / result.seconds:.0%} of its post"))

    def description(self) -> str:
        """The line above the table: what was run, on what sizes."""
        args = self.args
        if not (args.nights or args.long_history):
            return (
                f"night {self.night}, {args.customers:,} customers, {args.events:,} "
                f"events, seed {args.seed}; bean-check without the pickle cache"
            )
        parts = []
        if args.nights:
            parts.append(
                f"steady state: {args.nights} nights from {self.night}, {args.customers:,} "
                f"customers, {args.events:,} events a night, {args.late_fraction:.1%} late"
            )
        if args.long_history:
            parts.append(
                f"long history: 1 customer, {args.long_history:,} events over {HISTORY_DAYS} "
                f"days in {HISTORY_FILES} posts, then {HISTORY_NEW_EVENTS} events on {self.night}"
            )
        return "; ".join(parts) + f"; seed {args.seed}"

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        print(machine(), flush=True)
        print(f"engine: {self.engine}; bean-check: {self.bean_check}; out: {self.out}")
        if self.args.nights:
            self.steady_runs()
        if self.args.long_history:
            self.long_history_runs()
        if not (self.args.nights or self.args.long_history):
            self.night_runs()
            self.year_runs()
        print()
        print(machine())
        print(self.description())
        print_table(self.rows)
        if self.failures.messages:
            print(f"\n{len(self.failures.messages)} step(s) FAILED:")
            for message in self.failures.messages:
                print(f"  - {message}")
            return 1
        return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ledger-engine post and bean-check (see the module docstring)."
    )
    parser.add_argument("--customers", type=int, help="10,000 (1,000 with --nights)")
    parser.add_argument("--events", type=int, help="1,000,000 (30,000 a night with --nights)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--year-days", type=int, default=365)
    parser.add_argument("--night", default=DEFAULT_NIGHT, help="the night posted (YYYY-MM-DD)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--small", action="store_true", help="smoke test: 50 customers, 5,000 events"
    )
    parser.add_argument("--engine", help="the ledger-engine command")
    parser.add_argument("--bean-check", help="the bean-check command")
    parser.add_argument(
        "--nights", type=int, help="steady state: post N >= 2 consecutive nights (one each)"
    )
    parser.add_argument(
        "--late-fraction",
        type=float,
        default=0.01,
        help="with --nights: share of a night's events dated 1-5 days earlier (0.01)",
    )
    parser.add_argument(
        "--long-history", type=int, metavar="E", help="one customer's year of E events"
    )
    args = parser.parse_args(argv)
    new_modes = args.nights is not None or args.long_history is not None
    if args.small:
        args.customers, args.events = 50, 5_000
    if args.customers is None:
        args.customers = 1_000 if new_modes else 10_000
    if args.events is None:
        args.events = 30_000 if new_modes else 1_000_000
    if args.customers < 1 or args.events < 0 or args.year_days < 1:
        parser.error("--customers and --year-days must be >= 1, --events >= 0")
    if args.nights is not None and args.nights < 2:
        parser.error("--nights must be >= 2")
    if not 0 <= args.late_fraction <= 1:
        parser.error("--late-fraction must be between 0 and 1")
    if args.long_history is not None and args.long_history < 1:
        parser.error("--long-history must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return Bench(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
