"""The fast path of the schema checks (typed decoding with msgspec) only ever accepts, and
what it accepts the checks of SPEC §2 accept with the same event and content key.

Lines are generated near the plain shapes the fast path takes (usage, top-up, payment,
channel usage), with every kind of deviation: wrong types, missing and unknown fields, big
and negative numbers, floats, escapes, non-ASCII text, repeated keys, odd whitespace,
timestamps of every form and books in other timezones.
"""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger_engine.core import events as ev
from ledger_engine.core.dates import load_zone

ZONES = [load_zone(name) for name in ("UTC", "Europe/Berlin", "Asia/Kolkata", "Pacific/Apia")]

texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=12),
    st.sampled_from(["", "a", "acme", "c1", "x" * 128, "x" * 129, "y" * 257, 'q"uote', "é"]),
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2026-11-02T10:00:00Z",
            "2026-11-02t10:00:00z",
            "2026-11-02T10:00:00.5Z",
            "2026-11-02T10:00:00.123456789Z",
            "2026-11-02T23:59:59+01:00",
            "2026-11-02T00:00:00-12:00",
            "2026-02-29T10:00:00Z",
            "2028-02-29T10:00:00Z",
            "2026-11-02T24:00:00Z",
            "2026-11-02T10:60:00Z",
            "2026-11-02T10:00:60Z",
            "2026-13-02T10:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "9998-12-31T23:59:59Z",
            "9999-01-01T00:00:00Z",
            "2026-11-02 10:00:00Z",
            "2026-11-02T10:00:00",
            "20261102T100000Z",
            "2026-11-02T10:00:00Z\n",
            "0001-01-01T00:00:00Z",
            "2026-11-02T10:00Z",
        ]
    ),
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
        st.integers(1960, 10000),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["Z", "z", "+00:00", "+05:30", "-11:00", ".1Z", ".000001+14:00", ""]),
    ),  # fmt: skip
    texts,
)
money = st.one_of(
    st.sampled_from(["25.00", "7.5", "0", "0.00", "-1", "1.234", "1e3", " 1", "01.50",
                     "999999999.99", "1000000000.00", "1000000000.01", "99999999999999.99"]),
    st.integers(-(10**20), 10**20),
    st.integers(-2, 10**9 + 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    texts,
)  # fmt: skip
values = {
    "id": texts,
    "type": st.sampled_from(
        ["ai_usage", "top_up", "payment", "channel_usage", "subscription", "AI_USAGE", ""]
    ),  # fmt: skip
    "customer": st.one_of(
        st.sampled_from(["acme", "cus_00001", "a.b-c_d", "-x", "A" * 64, "A" * 65, "ä"]), texts
    ),  # fmt: skip
    "at": timestamps,
    "feature": st.sampled_from(["suggested_reply", "autopilot", "playground", "chat", 3]),
    "conversation": st.one_of(texts, st.integers(), st.none()),
    "amount": money,
    "channel": st.sampled_from(["sms", "whatsapp", "voice", "fax", None]),
    "currency": st.sampled_from(["EUR", "USD", "eur", 1, None]),
    "agent": st.one_of(texts, st.integers(), st.floats()),  # an unknown field
}
SHAPES = {
    "ai_usage": ["id", "type", "customer", "at", "feature", "conversation"],
    "top_up": ["id", "type", "customer", "at", "amount"],
    "payment": ["id", "type", "customer", "at", "amount"],
    "channel_usage": ["id", "type", "customer", "at", "channel", "amount"],
}


@st.composite
def lines(draw) -> bytes:
    """A JSON line near one of the plain shapes, written with random whitespace, key order,
    escapes and repeated keys."""
    kind = draw(st.sampled_from(sorted(SHAPES)))
    keys = list(SHAPES[kind])
    keys = [key for key in keys if key == "type" or not draw(st.integers(0, 15)) == 0]
    keys += draw(st.lists(st.sampled_from(sorted(values)), max_size=2))
    keys = draw(st.permutations(keys))
    pairs = []
    for key in keys:
        if key == "type" and draw(st.integers(0, 7)):
            value = kind
        elif draw(st.integers(0, 2)) or key not in SHAPES[kind]:
            value = draw(values[key])
        else:
            value = {"id": "e1", "customer": "acme", "at": "2026-11-02T10:00:00Z",
                     "feature": "suggested_reply", "conversation": "c1", "amount": "5.00",
                     "channel": "sms"}.get(key)  # fmt: skip
        pairs.append((key, value))
    space = draw(st.sampled_from(["", " ", "\t", "  ", "\r"]))
    ascii_only = draw(st.booleans())
    body = f",{space}".join(
        f"{json.dumps(key)}:{space}{json.dumps(value, ensure_ascii=ascii_only)}"
        for key, value in pairs
    )
    line = f"{space}{{{body}}}{space}".encode()
    suffix = draw(st.sampled_from([b"", b"", b"", b" x", b"}", b",", b" " * ev.LINE_BYTES_MAX]))
    return line + suffix


def agrees(raw: bytes, zone) -> bool:
    """The fast path either declines the line, or gives what the checks give."""
    fast = ev.fast_check(raw, "EUR", zone)
    if fast is None:
        return True
    line = ev.checked_line(raw, "f", 1, "EUR", zone)
    assert line.rejection is None, (raw, line.rejection)
    assert (line.event, line.content) == fast, raw
    return True


@settings(max_examples=3000, deadline=None)
@given(raw=lines(), zone=st.sampled_from(ZONES))
@example(raw=b'{"id":"a","id":"b","type":"top_up","customer":"c","at":"2026-11-02T10:00:00Z",'
         b'"amount":5}', zone=ZONES[0])  # fmt: skip
@example(raw=b'{"id":"a","type":"top_up","customer":"c","at":"2026-11-02T10:00:00Z",'
         b'"amount":123456789012345678901234567890}', zone=ZONES[0])  # fmt: skip
@example(raw=b'{"id":"a","type":"ai_usage","customer":"c","at":"2026-11-02T10:00:00Z",'
         b'"feature":"playground","conversation":"x"}', zone=ZONES[1])  # fmt: skip
def test_the_fast_path_accepts_only_what_the_checks_accept_and_the_same_way(raw, zone):
    assert agrees(raw, zone)


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=300))
def test_any_bytes_are_declined_or_agreed_on(raw):
    assert agrees(raw, ZONES[0])


def test_the_hostile_lines_are_declined_or_agreed_on():
    from test_hostile_input import HOSTILE_LINES

    for raw in HOSTILE_LINES:
        for zone in ZONES:
            assert agrees(raw, zone)


def test_the_plain_lines_of_a_night_take_the_fast_path():
    at = "2026-11-02T10:00:00Z"
    plain = [
        {"id": "u1", "type": "ai_usage", "customer": "acme", "at": at,
         "feature": "suggested_reply", "conversation": "c1"},
        {"id": "u2", "customer": "acme", "at": at, "type": "ai_usage", "feature": "playground"},
        {"id": "u3", "type": "ai_usage", "customer": "acme", "at": "2026-11-02T10:00:00+01:00",
         "feature": "autopilot", "conversation": "c2", "currency": "EUR"},
        {"id": "t1", "type": "top_up", "customer": "acme", "at": at, "amount": "25.00"},
        {"id": "p1", "type": "payment", "customer": "acme", "at": at, "amount": 30},
        {"id": "s1", "type": "channel_usage", "customer": "acme", "at": at, "channel": "sms",
         "amount": "0.07"},
    ]  # fmt: skip
    for document in plain:
        for zone in ZONES:
            for raw in (json.dumps(document).encode(), json.dumps(document, indent=1).encode()):
                raw = raw.replace(b"\n", b" ")
                assert ev.fast_check(raw, "EUR", zone) is not None, raw
                assert agrees(raw, zone)
