"""The fast path of the schema checks (typed decoding with msgspec) only ever accepts, and
what it accepts the checks of SPEC §2 accept with the same event and content key.

Lines are generated near the plain shapes the fast path takes (usage, top-up, payment,
channel usage), with every kind of deviation: wrong types, missing and unknown fields, big
and negative numbers, floats, escapes, non-ASCII text, repeated keys, odd whitespace,
timestamps of every form and books in other timezones.  A second generator starts from a
valid plain line and makes one hostile change to one string (SPEC v3 §2): a control
character (DEL raw, the others escaped or raw), a trailing newline, a non-ASCII digit, or a
timestamp near the first or last booking day, in UTC and in other zones.
"""

from __future__ import annotations

import datetime
import functools
import json
import re

from hypothesis import example, find, given, settings
from hypothesis import strategies as st

from ledger_engine.core import events as ev
from ledger_engine.core.dates import load_zone

ZONES = [load_zone(name) for name in ("UTC", "Europe/Berlin", "Asia/Kolkata", "Pacific/Apia")]

CONTROL_CHARACTERS = ["\x00", "\x07", "\x1b", "\x1f", "\x7f", "\n", "\r", "\t"]
texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=12),
    st.sampled_from(["", "a", "acme", "c1", "x" * 128, "x" * 129, "y" * 257, 'q"uote', "é"]),
    st.sampled_from(["acme\n", "c1\n", "e1\x7f", "\x7fc1", "c\x001", "c1\x1b", "١٢", "１"]),
)


def edge_timestamp(edge: datetime.datetime, seconds: int, offset_minutes: int, z: bool) -> str:
    """An RFC 3339 text of the instant ``seconds`` after ``edge`` (UTC), written in an offset."""
    local = edge + datetime.timedelta(seconds=seconds, minutes=offset_minutes)
    if offset_minutes == 0 and z:
        return local.strftime("%Y-%m-%dT%H:%M:%SZ")
    sign, minutes = ("-" if offset_minutes < 0 else "+"), abs(offset_minutes)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# Instants within two days of the first booking day's start and the last one's end, in
# offsets that move the local date across them (the books' zones move the booking day too).
edge_timestamps = st.builds(
    edge_timestamp,
    st.sampled_from([datetime.datetime(1970, 1, 1), datetime.datetime(9999, 1, 1)]),
    st.one_of(st.integers(-2 * 86400, 2 * 86400), st.integers(-3600 * 15, 3600 * 15),
              st.sampled_from([-1, 0, 1, -3600, 3600, -1800, 1800])),
    st.sampled_from([0, 0, 60, -60, 120, -120, 330, -690, 840, -1439, 1439]),
    st.booleans(),
)  # fmt: skip
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
            "1970-01-01T00:10:00+01:00",
            "1969-12-31T23:30:00-01:00",
            "1969-12-31T23:30:00Z",
            "1969-12-31T22:59:59Z",
            "9998-12-31T23:30:00-01:00",
            "9998-12-31T23:00:00Z",
            "9999-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
            "٢٠٢٦-١١-٠٢T١٠:٠٠:٠٠Z",
            "２０２６-11-02T10:00:00Z",
            "2026-11-02T10:00:00Z\x7f",
        ]
    ),
    edge_timestamps,
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
                     "999999999.99", "1000000000.00", "1000000000.01", "99999999999999.99",
                     "7.5\n", "10\n", "١٢.٥٠", "１００", "5\x7f", "\x005"]),
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


PLAIN = [
    {"id": "e1", "type": "ai_usage", "customer": "acme", "at": "2026-11-02T10:00:00Z",
     "feature": "suggested_reply", "conversation": "c1"},
    {"id": "e2", "type": "ai_usage", "customer": "acme", "at": "2026-11-02T10:00:00Z",
     "feature": "playground"},
    {"id": "e3", "type": "top_up", "customer": "cus_1", "at": "2026-11-02T10:00:00+01:00",
     "amount": "25.00"},
    {"id": "e4", "type": "payment", "customer": "acme", "at": "2026-11-02T10:00:00Z",
     "amount": 30},
    {"id": "e5", "type": "channel_usage", "customer": "acme", "at": "2026-11-02T10:00:00Z",
     "channel": "sms", "amount": "0.07"},
]  # fmt: skip
# The other digits Python's \d, int() and str.isdigit() take: Arabic-Indic, full-width.
FOREIGN_DIGIT_ZEROS = [0x0660, 0xFF10, 0x06F0, 0x0966]
_CONTROL_ESCAPE = re.compile(rb"\\(?:u00([01][0-9a-fA-F]|7[fF])|([nrt]))")


def unescaped(line: bytes) -> bytes:
    """``line`` with JSON escapes of control characters written as the raw bytes."""
    named = {b"n": b"\n", b"r": b"\r", b"t": b"\t"}
    return _CONTROL_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]) if m[1] else named[m[2]], line)


@st.composite
def hostile_plain_lines(draw) -> bytes:
    """A valid plain line (maybe with its currency) with one hostile change to one string."""
    document = dict(draw(st.sampled_from(PLAIN)))
    if draw(st.booleans()):
        document["currency"] = "EUR"
    change = draw(st.sampled_from(["control", "control", "newline", "digit", "edge", "edge"]))
    strings = sorted(key for key, value in document.items() if isinstance(value, str))
    field = "at" if change == "edge" else draw(st.sampled_from(strings))
    value = document[field]
    if change == "control":
        where = draw(st.integers(0, len(value)))
        value = value[:where] + draw(st.sampled_from(CONTROL_CHARACTERS)) + value[where:]
    elif change == "newline":
        value += "\n"
    elif change == "digit":
        digits = [i for i, ch in enumerate(value) if ch in "0123456789"] or [len(value)]
        where = draw(st.sampled_from(digits))
        digit = int(value[where]) if where < len(value) else 1
        foreign = chr(draw(st.sampled_from(FOREIGN_DIGIT_ZEROS)) + digit)
        value = value[:where] + foreign + value[where + 1 :]
    else:
        value = draw(edge_timestamps)
    document[field] = value
    written = draw(st.sampled_from(["escaped", "utf-8", "raw"]))
    line = json.dumps(document, ensure_ascii=written == "escaped").encode()
    return unescaped(line) if written == "raw" else line


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


@settings(max_examples=3000, deadline=None)
@given(raw=hostile_plain_lines(), zone=st.sampled_from(ZONES))
@example(raw=b'{"id":"e\x7f","type":"top_up","customer":"acme","at":"2026-11-02T10:00:00Z",'
         b'"amount":"5"}', zone=ZONES[0])  # fmt: skip
@example(raw=b'{"id":"e","type":"top_up","customer":"acme","at":"1970-01-01T00:10:00+01:00",'
         b'"amount":"5"}', zone=ZONES[0])  # fmt: skip
@example(raw=b'{"id":"e","type":"top_up","customer":"acme","at":"1969-12-31T23:30:00Z",'
         b'"amount":"5"}', zone=ZONES[1])  # fmt: skip
def test_one_hostile_change_to_a_plain_line_is_declined_or_agreed_on(raw, zone):
    assert agrees(raw, zone)


def test_the_hostile_changes_reach_the_fast_path():
    """The lines above are plain enough for the fast path to decide: changes it must not
    accept (a raw DEL, a booking day past the calendar) come in ASCII lines without a
    backslash, which the checks of SPEC §2 reject, in UTC and in Berlin books."""

    def plain_and_rejected(raw: bytes, zone, wanted: bytes) -> bool:
        if wanted not in raw.replace(b" ", b"") or not raw.isascii() or b"\\" in raw:
            return False
        return ev.checked_line(raw, "f", 1, "EUR", zone).rejection is not None

    for zone in (ZONES[0], ZONES[1]):
        for wanted in (b"\x7f", b'"at":"1969', b'"at":"9999'):
            find(
                hostile_plain_lines(),
                functools.partial(plain_and_rejected, zone=zone, wanted=wanted),
                settings=settings(max_examples=5000, database=None),
            )


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
