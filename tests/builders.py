"""Shared test builders: events as dicts, a poster that writes them to files and posts them,
readers of the books through beancount's own loader, the store opened for its query
functions, and invariants of the books shared by the property tests.  Fixtures are in
conftest.py."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import sqlite_utils
from beancount import loader

from ledger_engine.books import files as books_module
from ledger_engine.commit import create_books
from ledger_engine.core.accounts import customer_segment, wallet_account
from ledger_engine.post import post
from ledger_engine.rules import DEFAULT_CATALOGUE_PATH
from ledger_engine.store import queries
from ledger_engine.store.db import open_store

os.environ.setdefault("BEANCOUNT_DISABLE_LOAD_CACHE", "1")


def init_books(path: Path, timezone: str = "UTC", currency: str = "EUR") -> Path:
    rules_text = DEFAULT_CATALOGUE_PATH.read_text(encoding="utf-8")
    create_books(path, currency, timezone, rules_text)
    return path


class Poster:
    """Writes events to numbered JSONL files and posts them."""

    def __init__(self, books_dir: Path, scratch: Path):
        self.books = books_dir
        self.scratch = scratch
        self.count = 0

    def write(self, events) -> Path:
        self.count += 1
        path = self.scratch / f"events-{self.count}.jsonl"
        lines = [e if isinstance(e, str) else json.dumps(e) for e in events]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def __call__(self, events, through: str):
        return post(self.books, [str(self.write(events))], datetime.date.fromisoformat(through))


def load_clean(path: Path):
    entries, errors, options = loader.load_file(str(path))
    assert not errors, [str(error.message) for error in errors]
    return entries, options


def balances(path: Path) -> dict[str, Decimal]:
    """Account -> balance (EUR) of a journal, loaded with beancount's loader (no errors)."""
    entries, _ = load_clean(path)
    totals: dict[str, Decimal] = {}
    for entry in entries:
        for posting in getattr(entry, "postings", None) or ():
            totals[posting.account] = totals.get(posting.account, Decimal(0)) + posting.units.number
    return {account: value for account, value in totals.items() if value}


def customer_root(books_dir: Path, customer: str) -> Path:
    return books_dir / "customers" / customer_segment(customer) / "customer.beancount"


def gl_balances(books_dir: Path) -> dict[str, Decimal]:
    return balances(books_dir / "ledger.beancount")


def customer_balances(books_dir: Path, customer: str) -> dict[str, Decimal]:
    return balances(customer_root(books_dir, customer))


def D(text: str) -> Decimal:
    return Decimal(text)


def read_store(books_dir: Path) -> contextlib.closing[sqlite_utils.Database]:
    """The store of the books, for ``with``: read it through
    :mod:`ledger_engine.store.queries`; it is closed when the block ends."""
    return contextlib.closing(open_store(books_dir))


def wallets_never_negative(books_dir: Path) -> None:
    """No customer's wallet holds less than nothing at the end of any day of its journal."""
    for root in books_dir.glob("customers/*/customer.beancount"):
        entries, _ = load_clean(root)
        by_day: dict[datetime.date, Decimal] = defaultdict(Decimal)
        for entry in entries:
            for posting in getattr(entry, "postings", None) or ():
                if posting.account.endswith(":Wallet"):
                    by_day[entry.date] += posting.units.number
        running = Decimal(0)
        for day in sorted(by_day):
            running += by_day[day]
            assert running <= 0, f"{root}: wallet overdrawn by {running} on {day}"


def lots_match_wallets(books_dir: Path) -> None:
    """Lots sum to each wallet's balance; breakage only after a lot's last valid day;
    wallet movements = credits - charges - breakage."""
    with read_store(books_dir) as db:
        for customer, segment in queries.customers(db):
            root = books_dir / "customers" / segment / "customer.beancount"
            wallet = balances(root).get(wallet_account(segment), Decimal(0))
            lots = queries.lots(db, customer)
            assert -wallet == Decimal(sum(lot.remainder for lot in lots)) / 100
            last_valid = {lot.lot_id: lot.last_valid for lot in lots}
            entries, _ = load_clean(root)
            for entry in entries:
                if getattr(entry, "narration", None) == "Expiry":
                    for item in entry.meta["lots"].split():
                        lot_id = item.rsplit(":", 1)[0]
                        assert last_valid[lot_id] < entry.date, (lot_id, entry.date)
            moves = queries.wallet_postings(db, customer)
            credits = sum(-m.cents for m in moves if m.cents < 0 and m.key != "breakage")
            charges = sum(m.cents for m in moves if m.cents > 0 and m.key != "breakage")
            breakage = sum(m.cents for m in moves if m.key == "breakage")
            assert Decimal(credits - charges - breakage) / 100 == -wallet


def add_catalogue_version(books_dir: Path, label: str, effective_from: str, **prices) -> None:
    """Appends to the books' rules.toml a copy of their first catalogue version under a new
    label, in force from ``effective_from``, with ``plan_field="value"`` changes (e.g.
    ``essentials_price_monthly="0.45"``): a price change as SPEC v3 §6 wants it made."""
    rules = books_dir / "rules.toml"
    text = rules.read_text(encoding="utf-8")
    block = text[text.index("\n[[versions]]") + 1 :]  # the first version (not a comment)
    block = "[[versions]]" + block[len("[[versions]]") :].split("\n[[versions]]")[0]
    block = re.sub(r'version = "[^"]*"', f'version = "{label}"', block, count=1)
    block = re.sub(r'effective_from = "[^"]*"', f'effective_from = "{effective_from}"', block)
    for key, value in prices.items():
        plan, field = key.split("_", 1)
        section = f"[versions.plans.{plan}]"
        head, tail = block.split(section, 1)
        tail = re.sub(rf'{field} = [^\n]*', f'{field} = "{value}"' if not value.isdigit()
                      else f"{field} = {value}", tail, count=1)  # fmt: skip
        block = head + section + tail
    rules.write_text(text.rstrip("\n") + "\n\n" + block.strip("\n") + "\n", encoding="utf-8")


def replay_clean(books_dir: Path) -> None:
    """``reconcile --replay`` finds nothing: the books derived again from the stored inputs
    and rules are these books, byte for byte, and so are the derived store rows."""
    from ledger_engine.cli import REPLAY_COMMANDS
    from ledger_engine.replay import replay

    replayed = replay(books_dir, REPLAY_COMMANDS, progress=False)
    assert replayed.differences == [], replayed.differences


def journal_bytes(books_dir: Path) -> dict[str, bytes]:
    """Every journal file's bytes, by relative path."""
    return {
        p.relative_to(books_dir).as_posix(): p.read_bytes()
        for p in sorted(books_dir.rglob("*.beancount"))
    }


def sub(customer: str, at: str, plan: str, interval: str | None = "monthly", id=None, **extra):
    event = {
        "id": id or f"sub-{customer}-{at}",
        "type": "subscription",
        "customer": customer,
        "at": at,
        "plan": plan,
        **extra,
    }
    if interval:
        event["interval"] = interval
    return event


def use(customer: str, at: str, conversation: str | None, feature="suggested_reply", id=None):
    event = {
        "id": id or f"use-{customer}-{at}-{conversation}-{feature}",
        "type": "ai_usage",
        "customer": customer,
        "at": at,
        "feature": feature,
    }
    if conversation is not None:
        event["conversation"] = conversation
    return event


def money_event(kind: str, customer: str, at: str, amount: str, id=None, **extra):
    return {
        "id": id or f"{kind}-{customer}-{at}",
        "type": kind,
        "customer": customer,
        "at": at,
        "amount": amount,
        **extra,
    }


class Crash(Exception):
    """The failure :func:`crash_at` injects."""


@contextlib.contextmanager
def crash_at(point: int):
    """Within the block, the run's write point number ``point`` (counted from 0, the
    commit's aftermath excluded) raises :class:`Crash`; the caller catches it."""
    counter = itertools.count()

    def hook(label):
        if next(counter) == point and label != "after commit":
            raise Crash(label)

    books_module.WRITE_POINT_HOOK = hook
    try:
        yield
    finally:
        books_module.WRITE_POINT_HOOK = None
