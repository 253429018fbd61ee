"""Strings checked whole (SPEC v3 §2): every pattern matches the whole string, digits are the
ASCII ``0``-``9`` only, and a control character (U+0000-U+001F, U+007F) in any string field
the engine reads is ``invalid_field`` for that field.  A JSON integer too large for a field
is named as one, not as a float.

Each line goes through :func:`check_line` (the fast path where it takes the line) and
through :func:`checked_line` (the checks of SPEC §2 alone); both must reject it the same way.
"""

from __future__ import annotations

import datetime
import json

import pytest
from builders import init_books, read_store

from ledger_engine.core import events as ev
from ledger_engine.core.dates import load_zone
from ledger_engine.post import post
from ledger_engine.store import queries

UTC = load_zone("UTC")
AT = "2026-11-02T10:00:00Z"
COMMON = {"id": "e1", "customer": "acme", "at": AT}
# One valid event of each type, so that every string field the engine reads has a home.
VALID = {
    "ai_usage": {**COMMON, "type": "ai_usage", "feature": "suggested_reply", "conversation": "c1"},
    "top_up": {**COMMON, "type": "top_up", "amount": "7.50", "currency": "EUR"},
    "channel_usage": {**COMMON, "type": "channel_usage", "channel": "sms", "amount": "0.07"},
    "subscription": {**COMMON, "type": "subscription", "plan": "boost", "interval": "monthly"},
    "enterprise": {
        **COMMON,
        "type": "subscription",
        "plan": "enterprise",
        "interval": "monthly",
        "included": 10,
        "unit_price": "0.25",
        "commitment": "20",
        "auto_top_up": {"enabled": True, "amount": "25.00", "threshold": "5"},
    },
    "credit_grant": {
        **COMMON,
        "type": "credit_grant",
        "amount": "5",
        "expires": "2026-12-31",
        "reason": "goodwill",
    },
    "write_off": {**COMMON, "type": "write_off", "amount": "5", "reason": "bankrupt"},
    "adjustment": {
        **COMMON,
        "type": "adjustment",
        "lines": [
            {"account": "receivable", "amount": "-2.50"},
            {"account": "Income:AI:Revenue:SuggestedReplies", "amount": "2.50"},
        ],
        "reason": "credit note",
        "reference": "CN-1",
        "approved_by": "cfo",
    },
}
# Every string field the engine reads, and an event that reads it.
STRING_FIELDS = {
    "id": "ai_usage",
    "type": "ai_usage",
    "customer": "ai_usage",
    "at": "ai_usage",
    "feature": "ai_usage",
    "conversation": "ai_usage",
    "currency": "top_up",
    "channel": "channel_usage",
    "plan": "subscription",
    "interval": "subscription",
    "expires": "credit_grant",
    "reason": "write_off",
    "reference": "adjustment",
    "approved_by": "adjustment",
}
CONTROL_CHARACTERS = {"NUL": "\x00", "BEL": "\x07", "ESC": "\x1b", "US": "\x1f", "DEL": "\x7f"}


def document_with(kind: str, field: str, value) -> dict:
    """The valid event of ``kind`` with ``field`` (a dotted path) set to ``value``."""
    document = json.loads(json.dumps(VALID[kind]))
    *parents, name = field.split(".")
    inner = document
    for parent in parents:
        inner = inner[parent]
    inner[name] = value
    return document


def both_checks(raw: bytes, zone=UTC):
    """The rejection of ``raw`` by check_line, asserted equal to checked_line's."""
    fast = ev.check_line(raw, "f", 1, "EUR", zone)
    reference = ev.checked_line(raw, "f", 1, "EUR", zone)
    assert (fast.event, fast.content, fast.rejection) == (
        reference.event,
        reference.content,
        reference.rejection,
    ), raw
    return fast.rejection


def rejected_field(document: dict, ensure_ascii: bool = True):
    rejection = both_checks(json.dumps(document, ensure_ascii=ensure_ascii).encode())
    assert rejection is not None, document
    return rejection.reason, rejection.field


def test_the_valid_events_pass():
    for kind, document in VALID.items():
        assert both_checks(json.dumps(document).encode()) is None, kind


# ------------------------------------------------------------------- a trailing newline


@pytest.mark.parametrize(
    "kind,field,value",
    [
        ("top_up", "amount", "7.5\n"),
        ("top_up", "amount", "10\n"),
        ("channel_usage", "amount", "7.5\n"),
        ("enterprise", "unit_price", "7.5\n"),
        ("enterprise", "commitment", "7.5\n"),
        ("enterprise", "auto_top_up.amount", "7.5\n"),
        ("enterprise", "auto_top_up.threshold", "7.5\n"),
        ("ai_usage", "customer", "q1\n"),
        ("ai_usage", "at", AT + "\n"),
        ("credit_grant", "expires", "2026-12-31\n"),
        ("ai_usage", "id", "u1\n"),
        ("ai_usage", "conversation", "c1\n"),
        ("credit_grant", "reason", "goodwill\n"),
        ("write_off", "reason", "bankrupt\n"),
        ("adjustment", "reason", "credit note\n"),
        ("adjustment", "reference", "CN-1\n"),
        ("adjustment", "approved_by", "cfo\n"),
    ],
)
def test_a_trailing_newline_is_invalid_for_its_field(kind, field, value):
    assert rejected_field(document_with(kind, field, value)) == ("invalid_field", field)


def test_money_with_a_trailing_newline_is_never_read_as_other_digits():
    """``"7.5\\n"`` was booked as 7.05: ``$`` matched before the newline, then the fraction
    ``"5\\n"`` went through ``int``."""
    line = ev.check_line(json.dumps(document_with("top_up", "amount", "7.5\n")).encode(), "f", 1,
                         "EUR", UTC)  # fmt: skip
    assert line.event is None
    assert "'7.5\\n'" in line.rejection.detail


# ------------------------------------------------------------------- ASCII digits only

ARABIC_INDIC = "١٢.٥٠"  # 12.50
FULL_WIDTH = "１００"  # 100


@pytest.mark.parametrize(
    "kind,field,value",
    [
        ("top_up", "amount", ARABIC_INDIC),
        ("top_up", "amount", FULL_WIDTH),
        ("top_up", "amount", "1٢.50"),
        ("channel_usage", "amount", ARABIC_INDIC),
        ("enterprise", "unit_price", ARABIC_INDIC),
        ("enterprise", "unit_price", FULL_WIDTH),
        ("enterprise", "commitment", FULL_WIDTH),
        ("enterprise", "commitment", ARABIC_INDIC),
        ("enterprise", "auto_top_up.amount", FULL_WIDTH),
        ("enterprise", "auto_top_up.threshold", ARABIC_INDIC),
        ("enterprise", "included", "١٠"),
        ("enterprise", "included", FULL_WIDTH),
        ("ai_usage", "at", "２０２６-11-02T10:00:00Z"),
        ("ai_usage", "at", "٢٠٢٦-١١-٠٢T١٠:٠٠:٠٠Z"),
        ("ai_usage", "at", "2026-11-02T10:00:00+٠١:٠٠"),
        ("credit_grant", "expires", "٢٠٢٦-١٢-٣١"),
        ("credit_grant", "expires", "２０２６-12-31"),
    ],
)
def test_digits_are_ascii_only(kind, field, value):
    for ensure_ascii in (True, False):  # escaped (\\u0661) and raw UTF-8
        document = document_with(kind, field, value)
        assert rejected_field(document, ensure_ascii) == ("invalid_field", field)


# ------------------------------------------------------------------- control characters


@pytest.mark.parametrize("name", sorted(CONTROL_CHARACTERS))
@pytest.mark.parametrize("field", sorted(STRING_FIELDS))
def test_a_control_character_is_invalid_for_its_field(field, name):
    kind = STRING_FIELDS[field]
    value = VALID[kind][field]
    character = CONTROL_CHARACTERS[name]
    for changed in (value + character, character + value, value[:1] + character + value[1:]):
        document = document_with(kind, field, changed)
        # DEL is legal raw inside a JSON string; json.dumps writes it raw, the others escaped.
        assert rejected_field(document) == ("invalid_field", field), (field, changed)


@pytest.mark.parametrize("name", sorted(CONTROL_CHARACTERS))
def test_a_control_character_in_type_is_checked_before_unknown_type(name):
    character = CONTROL_CHARACTERS[name]
    for value in ("refund" + character, "top_up" + character):
        rejection = both_checks(json.dumps(document_with("top_up", "type", value)).encode())
        assert (rejection.reason, rejection.field) == ("invalid_field", "type")
    assert rejected_field(document_with("top_up", "type", "refund")) == ("unknown_type", "type")


def test_a_control_character_in_currency_is_checked_before_the_mismatch():
    assert rejected_field(document_with("top_up", "currency", "EUR\x1b")) == (
        "invalid_field",
        "currency",
    )
    assert rejected_field(document_with("top_up", "currency", "USD\x00"))[1] == "currency"
    assert rejected_field(document_with("top_up", "currency", "USD"))[0] == "currency_mismatch"


def test_a_raw_del_byte_is_rejected_on_the_fast_path_shapes():
    """DEL (0x7F) is the one control character JSON allows raw inside a string: these lines
    are ASCII without a backslash, the shapes the fast path takes."""
    lines = [
        b'{"id":"u\x7f1","type":"ai_usage","customer":"acme","at":"2026-11-02T10:00:00Z",'
        b'"feature":"suggested_reply","conversation":"c1"}',
        b'{"id":"u1","type":"ai_usage","customer":"acme","at":"2026-11-02T10:00:00Z",'
        b'"feature":"suggested_reply","conversation":"c\x7f1"}',
        b'{"id":"t1","type":"top_up","customer":"acme","at":"2026-11-02T10:00:00Z",'
        b'"amount":"5","currency":"EUR\x7f"}',
    ]
    for raw, field in zip(lines, ["id", "conversation", "currency"], strict=True):
        rejection = both_checks(raw)
        assert (rejection.reason, rejection.field) == ("invalid_field", field)
        assert ev.fast_check(raw, "EUR", UTC) is None


def test_a_rejected_id_is_not_recorded_as_the_events_id():
    """The rejection names an event by its id only when the id itself passed its check (an
    id holding ESC would reach the terminal of whoever lists the rejections)."""
    rejection = both_checks(json.dumps(document_with("ai_usage", "id", "u\x1b[2J")).encode())
    assert (rejection.field, rejection.event_id) == ("id", None)
    rejection = both_checks(json.dumps(document_with("top_up", "amount", "7.5\n")).encode())
    assert (rejection.field, rejection.event_id) == ("amount", "e1")


def test_a_playground_conversation_is_not_read_and_not_checked():
    """SPEC §2: ``conversation`` is ignored for playground; a field not read is not checked."""
    document = dict(VALID["ai_usage"], feature="playground", conversation="x\x1b")
    assert both_checks(json.dumps(document).encode()) is None


def test_control_characters_are_rejected_at_post_and_never_reach_a_journal(tmp_path):
    books = init_books(tmp_path / "books")
    lines = [
        {**COMMON, "id": "s1", "type": "subscription", "plan": "boost", "interval": "monthly",
         "at": "2026-11-01T08:00:00Z"},
        {**COMMON, "id": "w\u0000", "type": "write_off", "amount": "1"},
        {**COMMON, "id": "g1", "type": "credit_grant", "amount": "5", "reason": "\x1b]0;x\x07"},
        {**COMMON, "id": "q1", "type": "top_up", "amount": "5", "customer": "q1\n"},
        {**COMMON, "id": "t1", "type": "top_up", "amount": "7.5\n"},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = post(books, [str(path)], datetime.date(2026, 11, 30))
    assert (result.accepted, result.rejected) == (1, {"invalid_field": 4})
    with read_store(books) as db:
        fields = sorted(r["field"] for r in queries.rejections(db) if r["kind"] == "schema")
        assert queries.event_ids(db) == {"s1"}
    assert fields == ["amount", "customer", "id", "reason"]
    for journal in books.rglob("*.beancount"):
        text = journal.read_text(encoding="utf-8")
        assert not any(ord(ch) < 0x20 and ch != "\n" or ord(ch) == 0x7F for ch in text), journal
    assert not (books / "customers" / "C-q1-0A").exists()


# ------------------------------------------------------------------- too large an integer

HUGE = "123456789012345678901234567890"  # 30 digits: orjson reads it as a float


@pytest.mark.parametrize(
    "kind,field",
    [
        ("top_up", "amount"),
        ("channel_usage", "amount"),
        ("enterprise", "unit_price"),
        ("enterprise", "commitment"),
        ("enterprise", "auto_top_up.amount"),
        ("enterprise", "auto_top_up.threshold"),
    ],
)
def test_a_30_digit_integer_is_larger_than_the_limit_not_a_float(kind, field):
    for literal in (HUGE, "-" + HUGE, "1" + "0" * 25):
        raw = json.dumps(document_with(kind, field, "@")).replace('"@"', literal).encode()
        rejection = both_checks(raw)
        assert (rejection.reason, rejection.field) == ("invalid_field", field)
        assert "larger than the limit" in rejection.detail, rejection.detail
        assert "float" not in rejection.detail
    for literal in ("1e30", "1.5", HUGE + ".0", "1E+25"):  # float literals stay floats
        raw = json.dumps(document_with(kind, field, "@")).replace('"@"', literal).encode()
        assert "not a float" in both_checks(raw).detail, literal


def test_a_30_digit_included_is_out_of_range_not_a_float():
    raw = json.dumps(document_with("enterprise", "included", "@")).replace('"@"', HUGE).encode()
    rejection = both_checks(raw)
    assert (rejection.field, rejection.detail) == (
        "included",
        f"included: must be between 0 and {ev.INCLUDED_MAX}",
    )
    raw = json.dumps(document_with("enterprise", "included", 2.5)).encode()
    assert both_checks(raw).detail == "included: required whole number for enterprise"
