"""Rating (SPEC §4) as a pure function: lists of Event records in, a Rating out.

No store, no files: events are the builder dicts run through the schema check of one line.
Prices and allowances come from the default catalogue (0.30 monthly, 0.25 annual; essentials
20 a month, boost 50 a month).
"""

from __future__ import annotations

import datetime
import json
from zoneinfo import ZoneInfo

from builders import money_event, sub, use
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_engine.core.events import check_line
from ledger_engine.core.model import Event, Period
from ledger_engine.core.rating import rate_customer
from ledger_engine.rules import load_rules

RULES = load_rules()
UTC = ZoneInfo("UTC")


def events(*documents: dict) -> list[Event]:
    """Schema-checked Event records of the builder dicts (each must pass the schema)."""
    checked = []
    for number, document in enumerate(documents, 1):
        line = check_line(json.dumps(document).encode(), "t.jsonl", number, "EUR", UTC)
        assert line.event is not None, line.rejection
        checked.append(line.event)
    return checked


def rate(*documents: dict):
    return rate_customer(events(*documents), RULES)


def statuses(rating) -> dict[str, tuple[str, str, int]]:
    """conversation -> (kind, status, price in cents)."""
    return {c.conversation: (c.kind, c.status, c.price) for c in rating.conversations}


def cancel(customer: str, at: str, id="cancel") -> dict:
    return {"id": id, "type": "cancellation", "customer": customer, "at": at}


def day(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def enterprise(included: int, price: str = "1.00", at="2026-11-01T08:00:00Z") -> dict:
    return sub("e", at, "enterprise", included=included, unit_price=price)


# ------------------------------------------------------------------------------ allowance


def test_allowance_goes_to_conversations_in_order_of_their_first_event():
    rating = rate(
        enterprise(included=2),
        use("e", "2026-11-02T10:02:00Z", "a"),  # id order is not what counts
        use("e", "2026-11-02T10:00:00Z", "z"),
        use("e", "2026-11-02T10:01:00Z", "m"),
        use("e", "2026-11-02T09:00:00Z", "a", id="a-earlier"),  # a's first event
    )
    assert statuses(rating) == {
        "a": ("suggested_reply", "included", 100),
        "z": ("suggested_reply", "included", 100),
        "m": ("suggested_reply", "charged", 100),
    }
    assert [c.conversation for c in rating.conversations] == ["a", "z", "m"]
    assert rating.conversations[0].first_event == "a-earlier"
    assert rating.conversations[0].events == 2


def test_first_events_at_the_same_instant_are_ordered_by_event_id():
    rating = rate(
        enterprise(included=1),
        use("e", "2026-11-02T10:00:00Z", "first-by-time-tie", id="e2"),
        use("e", "2026-11-02T10:00:00Z", "wins-by-id", id="e1"),
    )
    assert statuses(rating)["wins-by-id"][1] == "included"
    assert statuses(rating)["first-by-time-tie"][1] == "charged"


def test_essentials_monthly_includes_twenty_then_charges_thirty_cents():
    docs = [sub("e", "2026-11-01T08:00:00Z", "essentials")]
    docs += [use("e", f"2026-11-02T10:{i:02d}:00Z", f"c{i:02d}") for i in range(21)]
    rating = rate(*docs)
    status = statuses(rating)
    assert [status[f"c{i:02d}"][1] for i in range(21)] == ["included"] * 20 + ["charged"]
    assert {price for _, _, price in status.values()} == {30}
    assert rating.periods == (
        Period(day("2026-11-01"), day("2026-12-01"), "essentials", "monthly", 20, "2026-11-01"),
    )


def test_autopilot_is_always_charged_and_never_uses_allowance():
    rating = rate(
        sub("e", "2026-11-01T08:00:00Z", "pro"),
        use("e", "2026-11-02T10:00:00Z", "ap", "autopilot"),
        use("e", "2026-11-02T10:01:00Z", "mixed", "suggested_reply"),
        use("e", "2026-11-02T10:02:00Z", "mixed", "autopilot"),
        use("e", "2026-11-02T10:03:00Z", "sr", "suggested_reply"),
    )
    assert statuses(rating) == {
        "ap": ("autopilot", "charged", 30),
        "mixed": ("autopilot", "charged", 30),
        "sr": ("suggested_reply", "included", 30),
    }


def test_playground_is_neither_rated_nor_a_conversation():
    rating = rate(
        sub("e", "2026-11-01T08:00:00Z", "boost"),
        use("e", "2026-11-02T10:00:00Z", None, "playground", id="p1"),
    )
    assert rating.conversations == () and rating.verdicts == {}


# ------------------------------------------------------------------------ reclassification


def test_late_autopilot_event_moves_the_allowance_unit_to_the_next_conversation():
    before = [
        enterprise(included=1),
        use("e", "2026-11-02T10:00:00Z", "a"),
        use("e", "2026-11-03T10:00:00Z", "b"),
    ]
    assert statuses(rate(*before)) == {
        "a": ("suggested_reply", "included", 100),
        "b": ("suggested_reply", "charged", 100),
    }
    after = rate(*before, use("e", "2026-11-04T10:00:00Z", "a", "autopilot"))
    assert statuses(after) == {
        "a": ("autopilot", "charged", 100),
        "b": ("suggested_reply", "included", 100),
    }
    # "a" keeps the day (and period) of its first event.
    assert after.conversations[0].day == day("2026-11-02")


MIXED = [
    sub("e", "2026-11-01T08:00:00Z", "boost", auto_top_up={"enabled": False}),
    use("e", "2026-10-30T10:00:00Z", "too-early", id="early"),
    use("e", "2026-11-02T10:00:00Z", "a"),
    use("e", "2026-11-02T10:00:00Z", "b", id="same-instant"),
    use("e", "2026-11-03T10:00:00Z", "a", "autopilot"),
    use("e", "2026-11-04T10:00:00Z", None, "playground", id="pg"),
    money_event("top_up", "e", "2026-11-02T09:00:00Z", "5.00"),
    money_event("channel_usage", "e", "2026-11-02T09:30:00Z", "0.07", channel="sms"),
    sub("e", "2026-11-10T08:00:00Z", "essentials", "annual", id="change"),
    use("e", "2026-11-11T10:00:00Z", "c", "autopilot", id="not-in-plan"),
    use("e", "2026-11-11T10:00:00Z", "c"),
    cancel("e", "2026-11-20T00:00:00Z"),
    use("e", "2026-11-21T10:00:00Z", "d", id="after-cancel"),
    money_event("payment", "e", "2026-11-22T00:00:00Z", "5.00"),
]


@settings(max_examples=50, deadline=None)
@given(st.permutations(MIXED))
def test_the_same_events_in_any_order_give_the_same_rating(shuffled):
    assert rate(*shuffled) == rate(*MIXED)


def test_the_mixed_history_is_rated_by_hand():
    rating = rate(*MIXED)
    assert rating.verdicts == {
        "early": "unknown_customer",
        "not-in-plan": "feature_not_in_plan",
        "after-cancel": "no_active_subscription",
    }
    assert statuses(rating) == {
        "a": ("autopilot", "charged", 30),
        "b": ("suggested_reply", "included", 30),
        "c": ("suggested_reply", "included", 25),
    }
    assert [e.type for e in rating.wallet_events] == ["top_up", "channel_usage", "payment"]


# ----------------------------------------------------------------------------- periods


def test_plan_change_starts_a_new_period_with_a_fresh_allowance():
    docs = [sub("e", "2026-11-01T08:00:00Z", "essentials")]
    docs += [use("e", f"2026-11-02T10:{i:02d}:00Z", f"c{i:02d}") for i in range(20)]
    docs += [sub("e", "2026-11-10T08:00:00Z", "boost"), use("e", "2026-11-11T10:00:00Z", "new")]
    rating = rate(*docs)
    assert statuses(rating)["new"] == ("suggested_reply", "included", 30)
    assert rating.conversations[-1].period_start == day("2026-11-10")
    assert rating.conversations[-1].period_end == day("2026-12-10")
    assert rating.periods == (
        Period(day("2026-11-01"), day("2026-12-01"), "essentials", "monthly", 20, "2026-11-01"),
        Period(day("2026-11-10"), day("2026-12-10"), "boost", "monthly", 50, "2026-11-10"),
    )


def test_plan_change_on_the_anchor_day_also_starts_a_fresh_period():
    docs = [sub("e", "2026-11-01T08:00:00Z", "essentials")]
    docs += [use("e", f"2026-11-01T08:30:{i:02d}Z", f"a{i:02d}") for i in range(20)]
    docs += [sub("e", "2026-11-01T09:00:00Z", "boost", id="upgrade")]
    docs += [use("e", "2026-11-01T10:00:00Z", "after-upgrade")]
    # The upgrade starts a boost period at its day with 50 included, none used yet.
    assert statuses(rate(*docs))["after-upgrade"] == ("suggested_reply", "included", 30)


def test_a_commitment_change_keeps_the_period_and_its_used_allowance():
    docs = [sub("e", "2026-11-01T08:00:00Z", "essentials")]
    docs += [use("e", f"2026-11-02T10:{i:02d}:00Z", f"c{i:02d}") for i in range(20)]
    docs += [
        sub("e", "2026-11-10T08:00:00Z", "essentials", commitment="5.00", id="more"),
        use("e", "2026-11-11T10:00:00Z", "new"),
    ]
    rating = rate(*docs)
    assert statuses(rating)["new"] == ("suggested_reply", "charged", 30)
    assert rating.conversations[-1].period_start == day("2026-11-01")
    assert [t.anchor for t in rating.terms] == [day("2026-11-01")] * 2
    assert rating.terms[-1].commitment == 500


def test_month_end_anchor_clamps_then_restores_the_period_day():
    rating = rate(
        sub("e", "2026-01-31T08:00:00Z", "boost"),
        use("e", "2026-02-27T12:00:00Z", "feb"),
        use("e", "2026-02-28T12:00:00Z", "march-period"),
    )
    bounds = [(c.period_start, c.period_end) for c in rating.conversations]
    assert bounds == [
        (day("2026-01-31"), day("2026-02-28")),
        (day("2026-02-28"), day("2026-03-31")),
    ]


# ---------------------------------------------------------------------------- verdicts


def test_trial_cap_rejects_unit_101_and_the_holder_of_a_unit_needs_no_new_one():
    docs = [sub("t", "2026-11-01T08:00:00Z", "trial", None)]
    docs += [
        use("t", f"2026-11-02T08:{i // 60:02d}:{i % 60:02d}Z", None, "playground", id=f"pg{i}")
        for i in range(60)
    ]
    docs += [use("t", f"2026-11-02T10:00:{i:02d}Z", f"c{i}") for i in range(40)]
    docs += [
        use("t", "2026-11-02T11:00:00Z", "c-101", id="over"),
        use("t", "2026-11-02T11:00:01Z", None, "playground", id="pg-over"),
        use("t", "2026-11-02T12:00:00Z", "c0", "autopilot", id="c0-again"),
    ]
    rating = rate(*docs)
    assert rating.verdicts == {"over": "trial_limit_reached", "pg-over": "trial_limit_reached"}
    status = statuses(rating)
    assert len(status) == 40 and "c-101" not in status
    assert status["c0"] == ("autopilot", "trial", 30)  # trial units cost the monthly price
    assert {s for _, s, _ in status.values()} == {"trial"}
    assert rating.periods == ()  # a trial has no allowance period


def test_essentials_rejects_autopilot_as_feature_not_in_plan():
    rating = rate(
        sub("e", "2026-11-01T08:00:00Z", "essentials"),
        use("e", "2026-11-02T10:00:00Z", "a", "autopilot", id="ap"),
        use("e", "2026-11-02T10:05:00Z", "s"),
    )
    assert rating.verdicts == {"ap": "feature_not_in_plan"}
    assert statuses(rating) == {"s": ("suggested_reply", "included", 30)}


def test_events_before_any_subscription_are_unknown_customer():
    rating = rate(
        use("e", "2026-11-01T07:59:59Z", "early", id="u"),
        money_event("top_up", "e", "2026-11-01T07:00:00Z", "5.00", id="t"),
        sub("e", "2026-11-01T08:00:00Z", "boost"),
        use("e", "2026-11-01T08:00:00Z", "same-instant"),
    )
    assert rating.verdicts == {"u": "unknown_customer", "t": "unknown_customer"}
    assert list(statuses(rating)) == ["same-instant"]
    assert rating.wallet_events == ()


def test_after_cancellation_usage_is_rejected_but_money_still_moves():
    rating = rate(
        sub("e", "2026-11-01T08:00:00Z", "boost"),
        use("e", "2026-11-04T23:59:59Z", "before"),
        cancel("e", "2026-11-05T00:00:00Z"),
        # SPEC v3 §2: at one instant the cancellation comes first, so this is after it.
        use("e", "2026-11-05T00:00:00Z", "same-instant", id="same"),
        use("e", "2026-11-06T10:00:00Z", "late", id="after"),
        money_event("channel_usage", "e", "2026-11-06T00:00:00Z", "0.07", channel="sms", id="ch"),
        money_event("top_up", "e", "2026-11-07T00:00:00Z", "3.00", id="t"),
        money_event("payment", "e", "2026-11-08T00:00:00Z", "3.00", id="p"),
    )
    assert rating.verdicts == {
        "same": "no_active_subscription",
        "after": "no_active_subscription",
        "ch": "no_active_subscription",
    }
    assert list(statuses(rating)) == ["before"]
    assert [e.id for e in rating.wallet_events] == ["t", "p"]
    assert [t.active for t in rating.terms] == [True, False]


def test_a_new_subscription_after_cancellation_accepts_usage_again():
    rating = rate(
        sub("e", "2026-11-01T08:00:00Z", "boost"),
        cancel("e", "2026-11-05T00:00:00Z"),
        sub("e", "2026-11-09T00:00:00Z", "boost", id="again"),
        use("e", "2026-11-10T00:00:00Z", "back"),
    )
    assert rating.verdicts == {}
    assert rating.conversations[0].period_start == day("2026-11-09")  # a new anchor


# ------------------------------------------------------------------------------- price


def test_price_is_thirty_cents_monthly_and_twenty_five_annual():
    def autopilot_price(interval: str) -> int:
        rating = rate(
            sub("e", "2026-11-01T08:00:00Z", "boost", interval),
            use("e", "2026-11-02T10:00:00Z", "a", "autopilot"),
        )
        return statuses(rating)["a"][2]

    assert (autopilot_price("monthly"), autopilot_price("annual")) == (30, 25)


def test_price_follows_the_interval_in_force_on_the_first_event():
    rating = rate(
        sub("e", "2026-11-01T08:00:00Z", "boost", "monthly"),
        use("e", "2026-11-02T10:00:00Z", "m", "autopilot"),
        sub("e", "2026-11-05T08:00:00Z", "boost", "annual", id="to-annual"),
        use("e", "2026-11-06T10:00:00Z", "a", "autopilot"),
        use("e", "2026-11-07T10:00:00Z", "m", "autopilot", id="m-again"),
    )
    assert statuses(rating) == {
        "m": ("autopilot", "charged", 30),
        "a": ("autopilot", "charged", 25),
    }
    assert rating.periods[-1] == Period(
        day("2026-11-05"), day("2027-11-05"), "boost", "annual", 600, "2026-11-05"
    )


def test_enterprise_price_and_allowance_come_from_the_subscription():
    rating = rate(
        enterprise(included=1, price="2.35"),
        use("e", "2026-11-02T10:00:00Z", "a"),
        use("e", "2026-11-02T10:01:00Z", "b"),
    )
    assert statuses(rating) == {
        "a": ("suggested_reply", "included", 235),
        "b": ("suggested_reply", "charged", 235),
    }
