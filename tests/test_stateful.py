"""A stateful property test (reliability issue): ingest, duplicates, late events, top-ups,
plan changes, re-runs and crashes in any order; after every step the books reconcile, no
wallet is overdrawn, and every balance equals that of one clean run over the same events
(the model)."""

from __future__ import annotations

import datetime
import itertools
import shutil
import tempfile
from pathlib import Path

from builders import (
    Crash,
    Poster,
    balances,
    crash_at,
    init_books,
    sub,
    wallets_never_negative,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger_engine.reconcile import reconcile

CUSTOMERS = ("ann", "bob")
FIRST_DAY = datetime.date(2026, 11, 1)


def timestamp(day_offset: int, minute: int) -> str:
    day = FIRST_DAY + datetime.timedelta(days=day_offset)
    return f"{day.isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00Z"


class BooksMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.scratch = Path(tempfile.mkdtemp(prefix="ledger-stateful-"))
        self.poster = Poster(init_books(self.scratch / "books"), self.scratch)
        self.events: list[dict] = []
        self.batches: list[list[dict]] = []
        self.through = FIRST_DAY + datetime.timedelta(days=3)
        self.ids = itertools.count()
        self.send(
            [sub(c, timestamp(0, 1), "boost", auto_top_up={"amount": "1.00"}) for c in CUSTOMERS]
        )

    def teardown(self):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def send(self, batch: list[dict]) -> None:
        self.poster(batch, self.through.isoformat())
        known = {e["id"] for e in self.events}
        self.events += [e for e in batch if e["id"] not in known]
        self.batches.append(batch)

    def new_id(self) -> str:
        return f"e{next(self.ids)}"

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        days=st.integers(0, 12),
        minute=st.integers(0, 1439),
        conversation=st.integers(0, 5),
        feature=st.sampled_from(["suggested_reply", "autopilot", "playground"]),
    )
    def usage(self, customer, days, minute, conversation, feature):
        event = {
            "id": self.new_id(),
            "type": "ai_usage",
            "customer": customer,
            "at": timestamp(days, minute),
            "feature": feature,
        }
        if feature != "playground":
            event["conversation"] = f"k{conversation}"
        self.send([event])  # days before `through` arrive late; later ones wait

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        days=st.integers(0, 12),
        kind=st.sampled_from(["top_up", "payment", "channel_usage"]),
        amount=st.sampled_from(["0.40", "1.10", "2.00"]),
    )
    def money(self, customer, days, kind, amount):
        event = {
            "id": self.new_id(),
            "type": kind,
            "customer": customer,
            "at": timestamp(days, 600),
            "amount": amount,
        }
        if kind == "channel_usage":
            event["channel"] = "sms"
        self.send([event])

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        days=st.integers(1, 12),
        plan=st.sampled_from(["essentials", "pro", "boost"]),
        interval=st.sampled_from(["monthly", "annual"]),
    )
    def plan_change(self, customer, days, plan, interval):
        self.send([sub(customer, timestamp(days, 30), plan, interval, id=self.new_id())])

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def duplicate_batch(self, data):
        self.send(data.draw(st.sampled_from(self.batches)))

    @rule(days=st.integers(1, 4))
    def advance(self, days):
        self.through += datetime.timedelta(days=days)
        self.send([])

    @rule()
    def rerun(self):
        result = self.poster([], self.through.isoformat())
        assert result.transactions_written == 0

    @rule(days=st.integers(0, 12), point=st.integers(0, 30))
    def crash(self, days, point):
        event = {
            "id": self.new_id(),
            "type": "ai_usage",
            "customer": "ann",
            "at": timestamp(days, 700),
            "feature": "autopilot",
            "conversation": "crash",
        }
        try:
            with crash_at(point):
                self.send([event])
        except Crash:
            pass  # the event was not ingested: the model must not have it either

    @invariant()
    def books_are_consistent(self):
        report = reconcile(self.poster.books)
        assert report.ok, report.differences
        wallets_never_negative(self.poster.books)

    @invariant()
    def books_equal_the_model(self):
        model_dir = self.scratch / f"model-{next(self.ids)}"
        model = Poster(init_books(model_dir), self.scratch)
        model(self.events, self.through.isoformat())
        for root in [
            Path("ledger.beancount"),
            *(p.relative_to(model_dir) for p in model_dir.glob("customers/*/customer.beancount")),
        ]:
            assert balances(self.poster.books / root) == balances(model_dir / root), root
        shutil.rmtree(model_dir)


BooksMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBooks = BooksMachine.TestCase
