"""Hostile input (reliability issue): no input line, however broken, crashes a run or loses a
good event; each bad line becomes a quarantine record with a stable reason."""

from __future__ import annotations

import json
import subprocess
import sys

from builders import init_books, read_store, sub, use
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_engine.core import events as ev
from ledger_engine.core.dates import load_zone
from ledger_engine.core.model import ALL_REASONS
from ledger_engine.store import queries

UTC = load_zone("UTC")
KEYS = [
    "id",
    "type",
    "customer",
    "at",
    "feature",
    "conversation",
    "plan",
    "interval",
    "amount",
    "channel",
    "currency",
    "commitment",
    "auto_top_up",
    "included",
    "unit_price",
    "enabled",
    "threshold",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "subscription",
            "ai_usage",
            "top_up",
            "payment",
            "channel_usage",
            "cancellation",
            "2026-11-02T10:00:00Z",
            "boost",
            "monthly",
            "EUR",
            "suggested_reply",
            "autopilot",
            "playground",
            "sms",
            "1.00",
            "acme",
        ]
    ),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(KEYS), children, max_size=8)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=300))
def test_any_bytes_become_an_event_or_a_rejection(raw):
    line = ev.check_line(raw, "f", 1, "EUR", UTC)
    assert (line.event is None) != (line.rejection is None)
    if line.rejection:
        assert line.rejection.reason in ALL_REASONS


@settings(max_examples=400, deadline=None)
@given(document=documents)
def test_any_json_document_becomes_an_event_or_a_rejection(document):
    raw = json.dumps(document).encode()
    line = ev.check_line(raw, "f", 1, "EUR", UTC)
    assert (line.event is None) != (line.rejection is None)
    if line.event is not None:
        assert 1 <= len(line.event.id) <= ev.EVENT_ID_CHARS_MAX


HOSTILE_LINES = [
    b'{"id": "nan", "type": "top_up", "customer": "acme", "at": "2026-11-02T10:00:00Z", '
    b'"amount": NaN}',
    b'{"id": "inf", "type": "top_up", "customer": "acme", "at": "2026-11-02T10:00:00Z", '
    b'"amount": 1e400}',
    b'{"id": "huge", "type": "top_up", "customer": "acme", "at": "2026-11-02T10:00:00Z", '
    b'"amount": 123456789012345678901234567890}',
    b'{"id": "bigstr", "type": "top_up", "customer": "acme", "at": "2026-11-02T10:00:00Z", '
    b'"amount": "99999999999999.99"}',
    json.dumps({"id": "x" * 5000, "type": "top_up"}).encode(),
    json.dumps(
        {
            "id": "long",
            "type": "ai_usage",
            "customer": "acme",
            "at": "2026-11-02T10:00:00Z",
            "feature": "suggested_reply",
            "conversation": "c" * 100000,
        }
    ).encode(),
    b'{"id": "bad-utf8", "type": "top_up", "customer": "\xff\xfe"}',
    b'{"id": "year0", "type": "top_up", "customer": "acme", "at": "0001-01-01T00:00:00Z", '
    b'"amount": "1"}',
    b'{"id": "year9999", "type": "top_up", "customer": "acme", '
    b'"at": "9999-12-31T23:59:59-12:00", "amount": "1"}',
    b'{"id": "deep", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"id": "nested", "type": {"a": [1, {"b": null}]}}',
    b"\x00\x01\x02",
    b'{"id": "dup-key", "id": "dup-key-2", "type": "payment"}',
    b"[]",
    b"null",
    b'{"id": "esc\\ud800", "type": "top_up", "customer": "acme", '
    b'"at": "2026-11-02T10:00:00Z", "amount": "1"}',
]


def test_hostile_file_through_the_cli(tmp_path):
    books = init_books(tmp_path / "books")
    good = [
        sub("acme", "2026-11-01T08:00:00Z", "boost", id="good-sub"),
        use("acme", "2026-11-02T10:00:00Z", "c1", id="good-use"),
    ]
    content = (
        b"\xef\xbb\xbf"
        + json.dumps(good[0]).encode()
        + b"\r\n\r\n"
        + b"\n".join(HOSTILE_LINES)
        + b"\n   \n"
        + json.dumps(good[1]).encode()
        + b"\r\n"
        + b'{"id": "truncated", "type": "ai_us'
    )
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(content)
    result = post_cli(books, path, "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    counts = json.loads(result.stdout)
    assert counts["read"] == len(HOSTILE_LINES) + 3
    with read_store(books) as db:
        stored = queries.event_ids(db)
        quarantined = sum(r["kind"] == "schema" for r in queries.rejections(db))
    assert stored == {"good-sub", "good-use"}  # nothing hostile got in, nothing good was lost
    assert quarantined == counts["read"] - 2  # every bad line is on record
    assert post_cli(books, path, "--strict").returncode == 3


def post_cli(books, path, *options):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger_engine",
            "post",
            str(books),
            str(path),
            "--through",
            "2026-11-30",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_file_is_a_clear_error(tmp_path):
    books = init_books(tmp_path / "books")
    result = subprocess.run(
        [sys.executable, "-m", "ledger_engine", "post", str(books), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
