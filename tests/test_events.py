"""Schema checks and idempotency of SPEC §2: every reason code, duplicates, conflicts."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from builders import read_store, sub, use

from ledger_engine.core import events as ev
from ledger_engine.core.dates import load_zone
from ledger_engine.core.model import Rejection
from ledger_engine.store import queries

UTC = load_zone("UTC")
GOOD = {
    "id": "u1",
    "type": "ai_usage",
    "customer": "acme",
    "at": "2026-11-02T10:00:00+01:00",
    "feature": "suggested_reply",
    "conversation": "c1",
}


def check(document) -> Rejection | None:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return ev.check_line(raw, "f.jsonl", 1, "EUR", UTC).rejection


def with_(**changes):
    document = dict(GOOD, **changes)
    return {k: v for k, v in document.items() if v is not None}


def test_a_good_event_passes_and_keeps_its_booking_day():
    line = ev.check_line(json.dumps(GOOD).encode(), "f", 1, "EUR", load_zone("Asia/Tokyo"))
    assert line.rejection is None
    assert line.event.at == "2026-11-02T09:00:00.000000Z"
    assert str(line.event.day) == "2026-11-02"


@pytest.mark.parametrize(
    "raw",
    [b"not json", b'{"id": ', b"[1, 2]", b'"text"', b'{"a": NaN}', b'{"a": 1e400}', b"\xff\xfe{}"],
)
def test_malformed_json(raw):
    assert check(raw).reason == "malformed_json"


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"id": None}, "id"),
        ({"id": ""}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"id": 7}, "id"),
        ({"type": None}, "type"),
        ({"customer": "-bad"}, "customer"),
        ({"customer": "a" * 65}, "customer"),
        ({"customer": "has space"}, "customer"),
        ({"at": "2026-11-02T10:00:00"}, "at"),
        ({"at": "2026-11-02"}, "at"),
        ({"at": "yesterday"}, "at"),
        ({"at": 1700000000}, "at"),
        ({"feature": "telepathy"}, "feature"),
        ({"conversation": None}, "conversation"),
        ({"currency": 5}, "currency"),
    ],
)
def test_invalid_field_names_the_field(changes, field):
    rejection = check(with_(**changes))
    assert (rejection.reason, rejection.field) == ("invalid_field", field)


@pytest.mark.parametrize(
    "document,field",
    [
        ({"type": "top_up", "amount": 1.5}, "amount"),
        ({"type": "top_up", "amount": "1.505"}, "amount"),
        ({"type": "top_up", "amount": "0"}, "amount"),
        ({"type": "top_up", "amount": "-5"}, "amount"),
        ({"type": "top_up", "amount": True}, "amount"),
        ({"type": "top_up", "amount": "1e3"}, "amount"),
        ({"type": "payment"}, "amount"),
        ({"type": "channel_usage", "channel": "fax", "amount": "1"}, "channel"),
        ({"type": "subscription", "plan": "gold", "interval": "monthly"}, "plan"),
        ({"type": "subscription", "plan": "boost"}, "interval"),
        (
            {"type": "subscription", "plan": "boost", "interval": "monthly", "included": 5},
            "included",
        ),
        (
            {
                "type": "subscription",
                "plan": "enterprise",
                "interval": "monthly",
                "unit_price": "1",
            },
            "included",
        ),
        (
            {"type": "subscription", "plan": "enterprise", "interval": "monthly", "included": 5},
            "unit_price",
        ),
        (
            {"type": "subscription", "plan": "boost", "interval": "monthly", "commitment": 2.5},
            "commitment",
        ),
        (
            {
                "type": "subscription",
                "plan": "boost",
                "interval": "monthly",
                "auto_top_up": {"enabled": "yes"},
            },
            "auto_top_up.enabled",
        ),
        (
            {
                "type": "subscription",
                "plan": "boost",
                "interval": "monthly",
                "auto_top_up": {"amount": "0"},
            },
            "auto_top_up.amount",
        ),
    ],
)
def test_type_specific_fields(document, field):
    base = {"id": "e", "customer": "acme", "at": "2026-11-02T10:00:00Z"}
    rejection = check({**base, **document})
    assert (rejection.reason, rejection.field) == ("invalid_field", field)


def test_money_forms_accepted():
    base = {"id": "e", "type": "top_up", "customer": "acme", "at": "2026-11-02T10:00:00Z"}
    for amount, cents in [("25.00", 2500), ("7.5", 750), (3, 300), ("0.01", 1)]:
        line = ev.check_line(json.dumps({**base, "amount": amount}).encode(), "f", 1, "EUR", UTC)
        assert line.event.amount == cents


def test_unknown_type():
    assert check(with_(type="refund_request")).reason == "unknown_type"


def test_currency_mismatch():
    assert check(with_(currency="USD")).reason == "currency_mismatch"
    assert check(with_(currency="EUR")) is None


def test_extra_fields_are_kept_and_ignored():
    line = ev.check_line(json.dumps(with_(agent="bot-7")).encode(), "f", 1, "EUR", UTC)
    assert line.rejection is None and "bot-7" in line.raw


def test_reader_handles_bom_crlf_blank_lines_and_long_lines():
    data = (
        b"\xef\xbb\xbf"
        + json.dumps(GOOD).encode()
        + b"\r\n\r\n   \n"
        + b"x" * (ev.LINE_BYTES_MAX + 10)
        + b"\n"
        + b'{"id": "tail"'
    )
    lines = list(ev.read_lines(io.BytesIO(data)))
    assert [number for number, _ in lines] == [1, 4, 5]
    assert json.loads(lines[0][1])["id"] == "u1"
    assert check(lines[1][1]).reason == "malformed_json"  # the over-long line, cut
    assert check(lines[2][1]).reason == "malformed_json"  # the truncated last line


def test_duplicates_and_id_conflicts(poster, books):
    subscription = sub("acme", "2026-11-01T08:00:00Z", "boost", id="s")
    usage = use("acme", "2026-11-02T10:00:00Z", "c1", id="u")
    first = poster([subscription, usage], "2026-11-30")
    assert (first.read, first.accepted, first.duplicates) == (2, 2, 0)
    reordered = json.dumps(dict(reversed(list(usage.items()))))  # same content, other order
    changed = dict(usage, conversation="c2")
    second = poster([reordered, changed, subscription], "2026-11-30")
    assert (second.read, second.accepted, second.duplicates) == (3, 0, 2)
    assert second.rejected == {"id_conflict": 1}
    with read_store(books) as db:
        assert queries.event(db, "u").conversation == "c1"
        quarantined = [r for r in queries.rejections(db) if r["kind"] == "schema"]
    assert [(r["reason"], r["event_id"], r["line"]) for r in quarantined] == [
        ("id_conflict", "u", 2)
    ]


def test_schema_rejected_id_stays_free(poster, books):
    bad = use("acme", "2026-11-02T10:00:00", "c1", id="u")  # no offset
    first = poster([sub("acme", "2026-11-01T08:00:00Z", "boost"), bad], "2026-11-30")
    assert first.rejected == {"invalid_field": 1}
    good = use("acme", "2026-11-02T10:00:00Z", "c1", id="u")
    second = poster([good], "2026-11-30")
    assert second.accepted == 1 and second.rejected == {}


def test_bad_lines_do_not_stop_good_ones(poster, books):
    result = poster(
        [
            sub("acme", "2026-11-01T08:00:00Z", "boost"),
            "{broken",
            use("acme", "2026-11-02T10:00:00Z", "c1"),
        ],
        "2026-11-30",
    )
    assert (result.read, result.accepted, result.rejected) == (3, 2, {"malformed_json": 1})
    with read_store(books) as db:
        quarantined = [r for r in queries.rejections(db) if r["kind"] == "schema"]
    assert [(r["file"].endswith("events-1.jsonl"), r["line"], r["raw"]) for r in quarantined] == [
        (True, 2, "{broken")
    ]


def test_a_file_already_ingested_is_counted_without_parsing_and_the_same(poster, books):
    from ledger_engine.core import events as events_module

    lines = [
        sub("acme", "2026-11-01T08:00:00Z", "boost", id="s"),
        use("acme", "2026-11-02T10:00:00Z", "c1", id="u"),
        use("acme", "2026-11-02T10:00:00Z", "c1", id="u"),  # repeat within the file
        dict(use("acme", "2026-11-02T10:00:00Z", "c2", id="u")),  # conflict within the file
        "{broken",
        use("acme", "2026-11-02T10:00:00+01:00", "c3", id="unknown", feature="telepathy"),
    ]
    path = poster.write(lines)
    from ledger_engine.post import post

    day = datetime.date(2026, 11, 30)
    first = post(books, [str(path)], day)
    assert (first.read, first.duplicates) == (6, 1)
    # A byte-different copy is parsed; the identical file is recognised by its SHA-256.
    copy = path.with_name("copy.jsonl")
    copy.write_bytes(path.read_bytes() + b"\n")
    parsed = post(books, [str(copy)], day)
    calls = []
    real = events_module.check_line
    events_module.check_line = lambda *args: calls.append(args) or real(*args)
    try:
        replayed = post(books, [str(path)], day)
    finally:
        events_module.check_line = real
    assert calls == []
    assert replayed._replace(run_id=0) == parsed._replace(run_id=0)
    assert (replayed.duplicates, replayed.rejected) == (
        3,
        {"id_conflict": 1, "invalid_field": 1, "malformed_json": 1},
    )


def test_the_fast_utc_key_equals_the_general_one():
    from hypothesis import given
    from hypothesis import strategies as st

    from ledger_engine.core import dates

    @given(
        moment=st.datetimes(
            min_value=__import__("datetime").datetime(1970, 1, 2),
            max_value=__import__("datetime").datetime(9998, 12, 30),
        ),
        digits=st.integers(0, 9),
        lower=st.booleans(),
        offset=st.sampled_from(["Z", "+00:00", "+05:30", "-11:00"]),
    )
    def check(moment, digits, lower, offset):
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if digits:
            text += "." + f"{moment.microsecond:06d}{'123'}"[:digits]
        text += offset
        if lower:
            text = text.replace("T", "t").replace("Z", "z")
        parsed = dates.parse_timestamp(text)
        assert parsed is not None, text
        assert dates.utc_key_of_text(text, parsed) == dates.utc_key(parsed)

    check()
