"""Events in: the JSON Lines reader and the schema checks of SPEC §2.

A line becomes either an ``Event`` (schema-valid; rating may still reject it later) or a
``Rejection`` with a stable reason code (both in :mod:`ledger_engine.core.model`).  Checks
run in a fixed, documented order so that one bad line always gets the same reason.  Nothing
here touches the store.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Annotated, BinaryIO, Literal, NamedTuple
from zoneinfo import ZoneInfo

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

from ledger_engine.core import dates
from ledger_engine.core.accounts import ADJUSTMENT_ACCOUNTS
from ledger_engine.core.digests import text_key
from ledger_engine.core.errors import InputTooLarge
from ledger_engine.core.model import (
    ADJUSTMENT_LINES_MAX,
    ADJUSTMENT_LINES_MIN,
    ADJUSTMENT_TEXT_CHARS_MAX,
    AI_FEATURES,
    CHANNELS,
    CURRENCY_MISMATCH,
    EVENT_TYPED_FIELDS,
    EVENT_TYPES,
    INTERVALS,
    INVALID_FIELD,
    MALFORMED_JSON,
    PLANS,
    REASON_CHARS_MAX,
    UNKNOWN_TYPE,
    Event,
    Line,
    Rejection,
)
from ledger_engine.core.money import format_cents

# Named limits (SPEC §2 and the reliability issue): anything longer is quarantined.
LINE_BYTES_MAX = 64 * 1024
EVENT_ID_CHARS_MAX = 128
CONVERSATION_CHARS_MAX = 256
MONEY_CENTS_MAX = 100_000_000_000  # 1,000,000,000.00 in any one money field
INCLUDED_MAX = 100_000_000

# Every pattern matches the whole string (re.fullmatch: ``$`` also matches before a trailing
# newline), with the ASCII digits only (``\d``, ``int()`` and ``str.isdigit()`` take any
# Unicode digit: "١٢.٥٠" and "１００" are not money).
DAY_PATTERN = dates.DAY_PATTERN
CUSTOMER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MONEY_PATTERN = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,2})?")
# A control character (U+0000-U+001F, U+007F) in any string field read is invalid_field.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
# orjson reads a JSON integer beyond 64 bits as a float, an integral one at least this large:
# only for such a float is the line's text asked whether it was written as an integer.
_FLOAT_OF_A_BIG_INTEGER_MIN = 2.0**63
_OUTSIDE_THE_CALENDAR = (
    f"not in the books' calendar ({dates.BOOKING_DAY_MIN} to {dates.BOOKING_DAY_MAX})"
)


class InvalidField(Exception):
    """Raised inside the checks of one line; becomes an ``invalid_field`` rejection."""

    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field = field
        self.detail = detail


class FloatNumber(InvalidField):
    """A float in a field that takes an integer: ``integer_detail`` is the rejection's detail
    instead when the float is orjson's reading of an integer literal beyond 64 bits.
    ``path`` is where the value is in the event (dotted, list items by index), when that is
    not the field itself: the amount of an adjustment's line is ``lines.2.amount``."""

    def __init__(
        self, field: str, value: float, detail: str, integer_detail: str, path: str | None = None
    ):
        super().__init__(field, detail)
        self.value = value
        self.integer_detail = integer_detail
        self.path = path or field


def _written_as_integer(raw: bytes, error: FloatNumber) -> bool:
    """Whether the float of ``error`` is written in ``raw`` as an integer literal.

    Asked only for a float orjson could have made of an integer (integral, at least 2**63 in
    size: a rejection on the slow path), by parsing the line again with the standard
    library's parser, which keeps integers of any size.
    """
    if not error.value.is_integer() or abs(error.value) < _FLOAT_OF_A_BIG_INTEGER_MIN:
        return False
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # over Python's digit limit for an int, or deep
        return False
    for name in error.path.split("."):
        if isinstance(value, dict):
            value = value.get(name)
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            value = None
    return type(value) is int


def _no_control_character(value: str, field: str) -> None:
    if CONTROL_CHARACTER.search(value):
        detail = f"{field}: a control character (U+0000 to U+001F, U+007F) is not allowed"
        raise InvalidField(field, detail)


def _signed_cents(value: object, field: str, path: str | None = None) -> int:
    """Money in cents, a leading ``-`` allowed; ``path`` names the value in the details when
    it is not the field itself (a line of an adjustment)."""
    where = path or field
    if isinstance(value, float):
        detail = f"{where}: money must be a decimal string or integer, not a float"
        limit = f"{where}: larger than the limit {MONEY_CENTS_MAX // 100}"
        raise FloatNumber(field, value, detail, limit, path)
    if isinstance(value, bool) or not isinstance(value, str | int):
        kind = type(value).__name__
        raise InvalidField(field, f"{where}: money must be a decimal string or integer, not {kind}")
    if isinstance(value, int):
        cents = value * 100
    else:
        if not MONEY_PATTERN.fullmatch(value):
            raise InvalidField(field, f"{where}: not a decimal with at most 2 places: {value!r}")
        whole, _, fraction = value.lstrip("-").partition(".")
        cents = int(whole) * 100 + int((fraction + "00")[:2])
        if value.startswith("-"):
            cents = -cents
    if abs(cents) > MONEY_CENTS_MAX:
        raise InvalidField(field, f"{where}: larger than the limit {MONEY_CENTS_MAX // 100}")
    return cents


def _money_cents(value: object, field: str, positive: bool) -> int:
    cents = _signed_cents(value, field)
    if cents < 0 or (positive and cents == 0):
        raise InvalidField(field, f"{field}: must be {'> 0' if positive else '>= 0'}")
    return cents


def _string(document: dict, field: str, allowed: tuple[str, ...] | None = None) -> str:
    value = document.get(field)
    if not isinstance(value, str):
        raise InvalidField(field, f"{field}: required string missing or not a string")
    _no_control_character(value, field)
    if allowed is not None and value not in allowed:
        raise InvalidField(field, f"{field}: must be one of {', '.join(allowed)}")
    return value


def _auto_top_up(value: object) -> dict:
    if not isinstance(value, dict):
        raise InvalidField("auto_top_up", "auto_top_up: must be an object")
    fields: dict = {}
    if "enabled" in value:
        if not isinstance(value["enabled"], bool):
            raise InvalidField("auto_top_up.enabled", "auto_top_up.enabled: must be true or false")
        fields["auto_enabled"] = value["enabled"]
    if "amount" in value:
        fields["auto_amount"] = _money_cents(value["amount"], "auto_top_up.amount", True)
    if "threshold" in value:
        fields["auto_threshold"] = _money_cents(value["threshold"], "auto_top_up.threshold", False)
    return fields


def _subscription_fields(document: dict) -> dict:
    plan = _string(document, "plan", PLANS)
    fields: dict = {"plan": plan}
    if plan != "trial" or "interval" in document:
        fields["interval"] = _string(document, "interval", INTERVALS)
    if "commitment" in document:
        fields["commitment"] = _money_cents(document["commitment"], "commitment", False)
    if "auto_top_up" in document:
        fields.update(_auto_top_up(document["auto_top_up"]))
    if plan == "enterprise":
        fields["included"] = _included(document.get("included"))
        if "unit_price" not in document:
            raise InvalidField("unit_price", "unit_price: required for enterprise")
        fields["unit_price"] = _money_cents(document["unit_price"], "unit_price", False)
    else:
        for field in ("included", "unit_price"):
            if field in document:
                raise InvalidField(field, f"{field}: only allowed on the enterprise plan")
    return fields


def _included(value: object) -> int:
    whole = "included: required whole number for enterprise"
    limit = f"included: must be between 0 and {INCLUDED_MAX}"
    if isinstance(value, float):
        raise FloatNumber("included", value, whole, limit)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField("included", whole)
    if not 0 <= value <= INCLUDED_MAX:
        raise InvalidField("included", limit)
    return value


def _usage_fields(document: dict) -> dict:
    feature = _string(document, "feature", AI_FEATURES)
    fields: dict = {"feature": feature}
    if feature != "playground":
        conversation = _string(document, "conversation")
        if not 1 <= len(conversation) <= CONVERSATION_CHARS_MAX:
            raise InvalidField(
                "conversation", f"conversation: 1 to {CONVERSATION_CHARS_MAX} characters"
            )
        fields["conversation"] = conversation
    return fields


def _type_fields(event_type: str, document: dict) -> dict:
    if event_type == "subscription":
        return _subscription_fields(document)
    if event_type == "ai_usage":
        return _usage_fields(document)
    if event_type == "channel_usage":
        return {
            "channel": _string(document, "channel", CHANNELS),
            "amount": _money_cents(document.get("amount"), "amount", True),
        }
    if event_type in ("top_up", "payment"):
        return {"amount": _money_cents(document.get("amount"), "amount", True)}
    if event_type == "credit_grant":
        return {
            "amount": _money_cents(document.get("amount"), "amount", True),
            **_expires(document),
            **_reason(document),
        }
    if event_type == "write_off":
        return {"amount": _money_cents(document.get("amount"), "amount", True), **_reason(document)}
    if event_type == "adjustment":
        return _adjustment_fields(document)
    return {}


def _adjustment_fields(document: dict) -> dict:
    """An adjustment's fields, checked in this order: ``lines``, ``reason`` (required),
    ``reference``, ``approved_by``."""
    return {
        "lines": _adjustment_lines(document.get("lines")),
        **_reason(document, required=True),
        **_optional_text(document, "reference", ADJUSTMENT_TEXT_CHARS_MAX),
        **_optional_text(document, "approved_by", ADJUSTMENT_TEXT_CHARS_MAX),
    }


def _adjustment_line(line: object, index: int) -> tuple[str, int]:
    """One line: an object of exactly ``account`` and ``amount`` (a key the engine would not
    post, a memo or a currency, is refused rather than dropped from a manual entry)."""
    where = f"lines.{index}"
    if not isinstance(line, dict) or line.keys() != {"account", "amount"}:
        raise InvalidField("lines", f"{where}: must be an object of account and amount only")
    account = line["account"]
    if not isinstance(account, str):
        raise InvalidField("lines", f"{where}.account: must be a string")
    _no_control_character(account, "lines")
    if account not in ADJUSTMENT_ACCOUNTS:
        raise InvalidField(
            "lines",
            f"{where}.account: {account[:64]!r} is not receivable, Assets:Bank:Clearing, "
            "Expenses:BadDebt or an Income: account of the chart",
        )
    return account, _signed_cents(line["amount"], "lines", f"{where}.amount")


def _adjustment_lines(value: object) -> tuple[tuple[str, int], ...]:
    """The lines as (account, signed cents): balanced, and moving something (lines that net
    to zero on every account, all-zero ones included, would post no entry)."""
    if not isinstance(value, list) or not (
        ADJUSTMENT_LINES_MIN <= len(value) <= ADJUSTMENT_LINES_MAX
    ):
        detail = f"lines: required list of {ADJUSTMENT_LINES_MIN} to {ADJUSTMENT_LINES_MAX} lines"
        raise InvalidField("lines", detail)
    lines = tuple(_adjustment_line(line, index) for index, line in enumerate(value))
    total = sum(cents for _, cents in lines)
    if total:
        detail = f"lines: the amounts do not sum to zero (they sum to {format_cents(total)})"
        raise InvalidField("lines", detail)
    net: dict[str, int] = {}
    for account, cents in lines:
        net[account] = net.get(account, 0) + cents
    if not any(net.values()):
        raise InvalidField("lines", "lines: every account nets to zero: nothing would move")
    return lines


def _fields_on(day, event_type: str, document: dict) -> dict:
    """The type's fields of an event booked on ``day`` (a grant cannot expire before it)."""
    fields = _type_fields(event_type, document)
    if fields.get("expires") and fields["expires"] < day.isoformat():
        raise InvalidField("expires", "expires: before the day the credit is granted")
    return fields


def _expires(document: dict) -> dict:
    if "expires" not in document:
        return {}
    value = document["expires"]
    if not isinstance(value, str) or not DAY_PATTERN.fullmatch(value):
        raise InvalidField("expires", "expires: must be a YYYY-MM-DD day")
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise InvalidField("expires", f"expires: not a calendar day: {value!r}") from None
    if not dates.BOOKING_DAY_MIN <= day <= dates.BOOKING_DAY_MAX:
        raise InvalidField("expires", f"expires: {_OUTSIDE_THE_CALENDAR}")
    return {"expires": value}


def _reason(document: dict, required: bool = False) -> dict:
    """``reason``: optional (a grant, a write-off), or ``required`` (an adjustment), then of
    at least one character."""
    if not required:
        return _optional_text(document, "reason", REASON_CHARS_MAX)
    value = document.get("reason")
    if not isinstance(value, str) or not 1 <= len(value) <= REASON_CHARS_MAX:
        detail = f"reason: required string of 1 to {REASON_CHARS_MAX} characters"
        raise InvalidField("reason", detail)
    _no_control_character(value, "reason")
    return {"reason": value}


def _optional_text(document: dict, field: str, chars_max: int) -> dict:
    if field not in document:
        return {}
    value = document[field]
    if not isinstance(value, str) or len(value) > chars_max:
        raise InvalidField(field, f"{field}: a string of at most {chars_max} characters")
    _no_control_character(value, field)
    return {field: value}


def _checked_id(document: dict) -> str:
    event_id = document.get("id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= EVENT_ID_CHARS_MAX:
        raise InvalidField("id", f"id: required string of 1 to {EVENT_ID_CHARS_MAX} characters")
    _no_control_character(event_id, "id")
    return event_id


def _event_id(document: dict) -> str | None:
    """The id a rejection names: None unless the id passes its check (so that no control
    character reaches the store's rejections or the terminal that lists them)."""
    try:
        return _checked_id(document)
    except InvalidField:
        return None


def _moment_and_day(document: dict, zone: ZoneInfo) -> tuple[datetime.datetime, datetime.date]:
    """The instant of ``at`` and its booking day, which must be in the books' calendar."""
    at_text = document.get("at")
    moment = dates.parse_timestamp(at_text) if isinstance(at_text, str) else None
    if moment is None:
        raise InvalidField("at", "at: must be an RFC 3339 timestamp with offset")
    # Accounts are opened on 1970-01-01, and the last day keeps a run's day arithmetic in
    # range: the limit is on the booking day, whatever the year of ``at`` in its own offset.
    day = dates.booking_day_in_calendar(moment, zone)
    if day is None:
        raise InvalidField("at", f"at: the booking day is {_OUTSIDE_THE_CALENDAR}")
    return moment, day


def _check_common(
    document: dict, currency: str, zone: ZoneInfo
) -> tuple[Event, None] | tuple[None, Rejection]:
    event_id = _checked_id(document)
    event_type = _string(document, "type")  # a control character: invalid_field, not unknown
    if event_type not in EVENT_TYPES:
        return None, Rejection(UNKNOWN_TYPE, "type", f"unknown type {event_type[:64]!r}", event_id)
    customer = document.get("customer")
    if not isinstance(customer, str) or not CUSTOMER_PATTERN.fullmatch(customer):
        raise InvalidField("customer", "customer: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    moment, day = _moment_and_day(document, zone)
    if "currency" in document:
        given = document["currency"]
        if not isinstance(given, str):
            raise InvalidField("currency", "currency: must be a string")
        _no_control_character(given, "currency")  # invalid_field, not currency_mismatch
        if given != currency:
            detail = f"currency {given[:16]!r} is not the books' {currency}"
            return None, Rejection(CURRENCY_MISMATCH, "currency", detail, event_id)
    fields = _fields_on(day, event_type, document)
    event = Event(
        id=event_id,
        type=event_type,
        customer=customer,
        at=dates.utc_key_of_text(document["at"], moment),
        day=day,
        **fields,
    )
    return event, None


def check_document(
    document: object, currency: str, zone: ZoneInfo, raw: bytes | None = None
) -> tuple[Event | None, Rejection | None]:
    """Applies the schema checks of SPEC §2, in order, to one parsed JSON value.

    The order (the first check that fails decides the reason): ``id`` (a string of 1 to 128
    characters without a control character), ``type`` (a string without a control character,
    else ``invalid_field``; then one of the types, else ``unknown_type``), ``customer``,
    ``at`` (an RFC 3339 timestamp whose booking day is in the books' calendar), ``currency``
    if given (a string without a control character, else ``invalid_field``; then the books'
    currency, else ``currency_mismatch``), then the fields of the type.  A rejection names the
    event's id only when the id passed its check.

    Args:
        document: the parsed JSON value of one line.
        currency: the books' currency.
        zone: the books' timezone (for the booking day).
        raw: the line the value was parsed from, if known: an integer too large for a field
            is then told from a float (orjson reads an integer beyond 64 bits as a float).

    Returns:
        ``(event, None)`` for a schema-valid event, else ``(None, rejection)``.
    """
    if not isinstance(document, dict):
        return None, Rejection(MALFORMED_JSON, None, "a line must hold one JSON object")
    try:
        return _check_common(document, currency, zone)
    except InvalidField as error:
        detail = error.detail
        if isinstance(error, FloatNumber) and raw is not None and _written_as_integer(raw, error):
            detail = error.integer_detail
        return None, Rejection(INVALID_FIELD, error.field, detail, _event_id(document))


def content_key(canonical: bytes) -> int:
    """What identifies an event's content: the key of the SHA-256 of its canonical JSON (a
    re-sent id with another key is a conflict)."""
    return text_key(canonical)


def _parse(raw: bytes) -> tuple[object, bytes]:
    """The parsed value and the canonical text whose SHA-256 identifies the content.

    orjson refuses what is not strict JSON and valid Unicode: NaN and Infinity, numbers out
    of a double's range, invalid UTF-8 and lone surrogate escapes.  All are malformed here.
    """
    document = orjson.loads(raw)
    return document, orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def check_line(raw: bytes, file: str, number: int, currency: str, zone: ZoneInfo) -> Line:
    """Parses and checks one raw line (without its line end)."""
    fast = fast_check(raw, currency, zone)
    if fast is not None:
        return Line(file, number, raw.decode("ascii"), fast[0], fast[1], None)
    return checked_line(raw, file, number, currency, zone)


def checked_line(raw: bytes, file: str, number: int, currency: str, zone: ZoneInfo) -> Line:
    """:func:`check_line` by the checks of SPEC §2 alone (the reference the fast path is
    tested against)."""
    if len(raw) > LINE_BYTES_MAX:  # its first bytes are kept, at most the limit's
        text = raw[:LINE_BYTES_MAX].decode("utf-8", errors="backslashreplace")
        text = text.encode()[:LINE_BYTES_MAX].decode("utf-8", errors="ignore")
        return Line(file, number, text, None, None, long_line_rejection(len(raw)))
    text = raw.decode("utf-8", errors="backslashreplace")
    try:
        document, canonical = _parse(raw)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError) as error:
        rejection = Rejection(MALFORMED_JSON, None, f"not valid JSON: {str(error)[:200]}")
        return Line(file, number, text, None, None, rejection)
    event, rejection = check_document(document, currency, zone, raw)
    content = content_key(canonical) if event else None
    return Line(file, number, text, event, content, rejection)


BOM = b"\xef\xbb\xbf"
# Bytes read at a time.  Every reader of the engine hands LineBlocks whole chunks (fewer bytes
# only at the end), so the same bytes are cut into the same blocks however they arrive (a
# file, a pipe, the run's worker).
READ_CHUNK = 1024 * 1024
# A block (a batch of lines, stored as one compressed row) ends after its `size`-th non-blank
# line or at the first chunk end past this many bytes, also inside a line longer than the line
# limit: such a line is stored in pieces, never held whole.
BLOCK_BYTES_MAX = 2 * 1024 * 1024
# Named limits of one input: an endless one (`/dev/zero`, `yes`) ends in a clear error, not in
# a full disk.  The largest night measured is 2,000,000 events in 326 MiB.
INPUT_BYTES_MAX = 4 * 1024 * 1024 * 1024
INPUT_LINES_MAX = 20_000_000
# What is kept of a line longer than the limit: enough to drop a byte-order mark and a CR
# and still hold more than LINE_BYTES_MAX bytes (so that every check rejects it).
_LONG_HEAD_BYTES = LINE_BYTES_MAX + len(BOM) + 2


def long_line_rejection(length: int) -> Rejection:
    """The verdict on a line of ``length`` bytes, longer than :data:`LINE_BYTES_MAX`."""
    detail = f"line longer than {LINE_BYTES_MAX} bytes ({length:,} bytes)"
    return Rejection(MALFORMED_JSON, None, detail)


class InputBlock(NamedTuple):
    """Consecutive bytes of an input: its non-blank lines and all of its bytes."""

    first_line: int  # the number of the line its first byte belongs to
    lines: list[tuple[int, bytes]]  # (line number, raw bytes without the line end)
    data: bytes  # every byte, as read: line ends and blank lines included
    long_lines: dict[int, int]  # line number -> length, of its lines longer than the limit


class _LongLine:
    """A line longer than the line limit, while it is read: its first bytes and its length."""

    def __init__(self, number: int, start: bytes):
        self.number = number
        self.head = start[:_LONG_HEAD_BYTES]
        self.length = len(start)
        self.blank = _without_bom(start, number).isspace()
        self.last = start[-1:]

    def add(self, part: bytes) -> None:
        if part:
            self.length += len(part)
            self.blank = self.blank and part.isspace()
            self.last = part[-1:]

    def line(self) -> tuple[int, bytes, int] | None:
        """``(number, raw, length)`` of the line as the checks see it; None when blank."""
        if self.blank:
            return None
        head = _without_bom(self.head, self.number)
        length = self.length - (len(self.head) - len(head)) - (self.last == b"\r")
        return self.number, head[: LINE_BYTES_MAX + 1], length


def _without_bom(raw: bytes, number: int) -> bytes:
    return raw[len(BOM) :] if number == 1 and raw.startswith(BOM) else raw


class _Blocking:
    """The state of :class:`LineBlocks` between chunks."""

    def __init__(self, size: int, name: str):
        self.size = size
        self.name = name
        self.number = 0  # the number of the last line begun
        self.first_line = 1
        self.lines: list[tuple[int, bytes]] = []
        self.long_lines: dict[int, int] = {}
        self.parts: list[bytes] = []  # the block's bytes so far
        self.held = 0  # how many
        self.carry: list[bytes] = []  # the start of a line not ended yet (short so far)
        self.carried = 0
        self.long: _LongLine | None = None  # the line being read, once longer than the limit

    def feed(self, chunk: bytes) -> Iterator[InputBlock]:
        if self.long is not None:
            chunk = yield from self._long_part(chunk)
        end = chunk.rfind(b"\n") + 1
        if end:
            complete = b"".join([*self.carry, chunk[:end]]) if self.carry else chunk[:end]
            self.carry, self.carried = [], 0
            pieces = complete.split(b"\n")
            pieces.pop()  # what follows the last line end (nothing)
            yield from self._lines(complete, pieces)
        self._carry(chunk[end:])
        self._check_lines(self.number)
        if self.held >= BLOCK_BYTES_MAX:  # inside a long line, the next block goes on with it
            yield self._emit(self.number if self.long else self.number + 1)

    def end(self) -> Iterator[InputBlock]:
        if self.long is not None:
            yield from self._end_long()
        elif self.carry:  # the last line, without a line end
            complete, self.carry = b"".join(self.carry), []
            yield from self._lines(complete, [complete])
        if self.lines or self.held:
            yield self._emit(self.number + 1)

    def _lines(self, complete: bytes, pieces: list[bytes]) -> Iterator[InputBlock]:
        size, line_max, limit = self.size, LINE_BYTES_MAX, LINE_BYTES_MAX + 1
        number, lines = self.number, self.lines
        start = offset = 0  # where the block's bytes start in `complete`, and a line
        for piece in pieces:
            number += 1
            offset += len(piece) + 1
            raw = piece.rstrip(b"\r") if number > 1 else _without_bom(piece, 1).rstrip(b"\r")
            if not raw or raw.isspace():
                continue
            if len(raw) > line_max:
                self.long_lines[number] = len(raw)
                raw = raw[:limit]
            lines.append((number, raw))
            if len(lines) >= size:
                self._check_lines(number)
                self.parts.append(complete[start:offset])
                yield self._emit(number + 1)
                start, lines = offset, self.lines
        self.number = number
        self.parts.append(complete[start:])
        self.held += len(complete) - start

    def _check_lines(self, number: int) -> None:
        if number > INPUT_LINES_MAX:
            raise InputTooLarge(f"{self.name} holds more than {INPUT_LINES_MAX:,} lines "
                                "(the limit of one input); nothing was posted")  # fmt: skip

    def _carry(self, rest: bytes) -> None:
        """Keeps the start of a line not ended yet; once it is longer than the line limit,
        only its first bytes and its length (its bytes go to the block)."""
        if not rest:
            return
        self.carry.append(rest)
        self.carried += len(rest)
        if self.carried > _LONG_HEAD_BYTES:
            start, self.carry, self.carried = b"".join(self.carry), [], 0
            self.number += 1
            self.long = _LongLine(self.number, start)
            self.parts.append(start)
            self.held += len(start)

    def _long_part(self, chunk: bytes) -> Iterator[InputBlock]:
        """Takes the bytes of a long line from ``chunk`` into the block (up to its line end,
        if the chunk holds it); returns the rest of the chunk."""
        cut = chunk.find(b"\n")
        taken = len(chunk) if cut < 0 else cut + 1
        self.long.add(chunk[:cut] if cut >= 0 else chunk)
        self.parts.append(chunk[:taken])
        self.held += taken
        if cut >= 0:
            yield from self._end_long()
        return chunk[taken:]

    def _end_long(self) -> Iterator[InputBlock]:
        line, self.long = self.long.line(), None
        if line is not None:
            number, raw, length = line
            self.long_lines[number] = length
            self.lines.append((number, raw))
            if len(self.lines) >= self.size:
                yield self._emit(number + 1)

    def _emit(self, next_first_line: int) -> InputBlock:
        block = InputBlock(self.first_line, self.lines, b"".join(self.parts), self.long_lines)
        self.first_line, self.lines, self.long_lines = next_first_line, [], {}
        self.parts, self.held = [], 0
        return block


class LineBlocks:
    """Reads a binary stream in blocks of ``size`` non-blank lines (the last block may hold
    fewer, or only blank lines; a block ends early past :data:`BLOCK_BYTES_MAX` bytes).

    A byte-order mark at the start is dropped, CRLF ends are accepted.  A line longer than
    :data:`LINE_BYTES_MAX` is handed on cut there (so the checks reject it), with its length
    in ``long_lines``; its bytes go into the blocks as they are read, so no line is ever
    held whole.  The stream is read in chunks of :data:`READ_CHUNK` bytes and split at line
    ends, not a line at a time; the blocks of an input, in order, are its bytes exactly.
    Hashing is the reader's (:mod:`ledger_engine.reading`), which sees every byte first.

    Raises:
        InputTooLarge: the stream holds more than :data:`INPUT_LINES_MAX` lines.
    """

    def __init__(self, stream: BinaryIO, size: int, name: str = "the input"):
        self.stream = stream
        self.size = size
        self.name = name

    def __iter__(self) -> Iterator[InputBlock]:
        blocking = _Blocking(self.size, self.name)
        while chunk := self.stream.read(READ_CHUNK):
            yield from blocking.feed(chunk)
        yield from blocking.end()


def read_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yields ``(line number, raw bytes)`` for each non-blank line, without line ends (see
    :class:`LineBlocks`)."""
    for block in LineBlocks(stream, 1 << 16):
        yield from block.lines


# ------------------------------------------------------------------------------ fast path
#
# Nearly every line of a night is a usage or money event of a few plain shapes.  For those,
# msgspec decodes the line into a typed struct, checking in C the types, the allowed values
# and the lengths; the customer and the timestamp are checked here, the common forms without
# a regular expression.  The fast path only ever *accepts*: a line it does not take (another
# type, an unknown field, anything escaped or not ASCII, any value it is unsure of) goes
# through the checks above, which decide.  A line it accepts gives the same event and the
# same content key as those checks would (tests/test_fast_checks.py compares the two on
# valid, near-valid and hostile lines).  ASCII without a backslash means every string is the
# bytes between its quotes under any JSON parser, so msgspec reads the line as orjson does
# (both keep the last of repeated keys), and the canonical JSON of the values is written
# directly: sorted keys, no spaces, strings between quotes, integers in decimal.
#
# No string it accepts holds a control character: U+0000-U+001F can reach a string only
# escaped (a backslash: declined) or raw (invalid JSON, which msgspec refuses too), and DEL,
# legal raw inside a JSON string, is declined wherever it is.  The booking day is checked
# against the books' calendar on both of its paths (the UTC shortcut and the general one).

_Id = Annotated[str, Meta(min_length=1, max_length=EVENT_ID_CHARS_MAX)]
_Conversation = Annotated[str, Meta(min_length=1, max_length=CONVERSATION_CHARS_MAX)]


class _Usage(Struct, tag_field="type", tag="ai_usage", forbid_unknown_fields=True):
    id: _Id
    customer: str
    at: str
    feature: Literal[AI_FEATURES]
    conversation: _Conversation | UnsetType = UNSET
    currency: str | UnsetType = UNSET


class _Money(Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    id: _Id
    customer: str
    at: str
    amount: str | int
    currency: str | UnsetType = UNSET


class _TopUp(_Money, tag="top_up"):
    pass


class _Payment(_Money, tag="payment"):
    pass


class _Channel(_Money, tag="channel_usage"):
    channel: Literal[CHANNELS]


_DECODER = msgspec.json.Decoder(_Usage | _TopUp | _Payment | _Channel)
_CACHE_MAX = 65536  # distinct customers, money texts and days remembered (cleared when full)
_customers: dict[str, str] = {}  # each valid customer id, once (its events share the text)
_money: dict[str, int | None] = {}
_days: dict[str, datetime.date | None] = {}


def _typed(**fields) -> tuple:
    """The typed fields of an event (``EVENT_TYPED_FIELDS`` order) with their defaults."""
    values = {**dict.fromkeys(EVENT_TYPED_FIELDS), **fields}
    return tuple(values[name] for name in EVENT_TYPED_FIELDS)


_NO_TYPED = _typed()  # feature and conversation come first
_AMOUNT_AT = EVENT_TYPED_FIELDS.index("amount")
_CHANNEL_AT = EVENT_TYPED_FIELDS.index("channel")


def _customer(text: str) -> str | None:
    """The customer id ``text`` (one shared object per id), or None if it is not one."""
    customer = _customers.get(text)
    if customer is None and CUSTOMER_PATTERN.fullmatch(text):
        if len(_customers) >= _CACHE_MAX:
            _customers.clear()
        customer = _customers[text] = text
    return customer


def _cents(value: str | int) -> int | None:
    """A money amount > 0 in cents, as the checks above read it; None if they would not."""
    if type(value) is int:
        return value * 100 if 0 < value <= MONEY_CENTS_MAX // 100 else None
    cents = _money.get(value, -1)
    if cents == -1:
        try:
            cents = _money_cents(value, "amount", True)
        except InvalidField:
            cents = None
        if len(_money) >= _CACHE_MAX:
            _money.clear()
        _money[value] = cents
    return cents


def _utc_day(text: str) -> datetime.date | None:
    """The date of a ``YYYY-MM-DD`` text (ASCII digits) in the books' calendar, else None."""
    day = _days.get(text, False)
    if day is False:
        try:
            day = datetime.date.fromisoformat(text)
        except ValueError:
            day = None
        if day is not None and not dates.BOOKING_DAY_MIN <= day <= dates.BOOKING_DAY_MAX:
            day = None
        if len(_days) >= _CACHE_MAX:
            _days.clear()
        _days[text] = day
    return day


# YYYY-MM-DDTHH:MM:SSZ with a time that exists: in UTC books its booking day is its date.
_UTC_SECOND = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z")


def _moment(text: str, zone: ZoneInfo) -> tuple[str, datetime.date] | None:
    """The UTC key and booking day of a timestamp as :func:`_check_common` makes them, or
    None where it would reject it (or where this is not sure: the checks above decide)."""
    if zone.key == "UTC" and _UTC_SECOND.fullmatch(text):
        day = _utc_day(text[:10])
        return None if day is None else (text[:19] + ".000000Z", day)
    moment = dates.parse_timestamp(text)
    day = None if moment is None else dates.booking_day_in_calendar(moment, zone)
    if day is None:
        return None
    return dates.utc_key_of_text(text, moment), day


# The typed fields of a usage event after its conversation (all defaults), and of a money
# event after its amount and channel.
_AFTER_CONVERSATION = _NO_TYPED[2:]
assert _CHANNEL_AT == _AMOUNT_AT + 1
_AFTER_CHANNEL = _NO_TYPED[_CHANNEL_AT + 1 :]
_BEFORE_AMOUNT = _NO_TYPED[:_AMOUNT_AT]


# The canonical JSON has its keys in order: amount, at, channel, conversation, currency,
# customer, feature, id, type.  ``given`` is the currency's part of it ('' without one).


def _usage_event(
    document: _Usage, customer: str, given: str, moment: tuple
) -> tuple[tuple, str] | None:
    """The Event fields and canonical JSON of a plain usage event."""
    at, event_id = document.at, document.id
    feature, conversation = document.feature, document.conversation
    if conversation is UNSET:
        if feature != "playground":
            return None
        canonical = (
            f'{{"at":"{at}"{given},"customer":"{customer}","feature":"{feature}",'
            f'"id":"{event_id}","type":"ai_usage"}}'
        )
        conversation = None
    else:
        canonical = (
            f'{{"at":"{at}","conversation":"{conversation}"{given},"customer":"{customer}",'
            f'"feature":"{feature}","id":"{event_id}","type":"ai_usage"}}'
        )
        if feature == "playground":
            conversation = None
    fields = (event_id, "ai_usage", customer, *moment, feature, conversation)
    return fields + _AFTER_CONVERSATION, canonical


def _money_event(
    document: _Money, customer: str, given: str, moment: tuple
) -> tuple[tuple, str] | None:
    """The Event fields and canonical JSON of a plain top-up, payment or channel usage."""
    amount = document.amount
    cents = _cents(amount)
    if cents is None:
        return None
    at, event_id = document.at, document.id
    amount_text = amount if type(amount) is int else f'"{amount}"'
    kind = type(document)
    if kind is _Channel:
        event_type, channel = "channel_usage", document.channel
        middle = f',"channel":"{channel}"'
    else:
        event_type, channel, middle = ("top_up" if kind is _TopUp else "payment"), None, ""
    canonical = (
        f'{{"amount":{amount_text},"at":"{at}"{middle}{given},"customer":"{customer}",'
        f'"id":"{event_id}","type":"{event_type}"}}'
    )
    fields = (event_id, event_type, customer, *moment, *_BEFORE_AMOUNT, cents, channel)
    return fields + _AFTER_CHANNEL, canonical


def fast_check(raw: bytes, currency: str, zone: ZoneInfo) -> tuple[Event, int] | None:
    """The event and content key of a line of one of the plain shapes above, or None (the
    line must then go through :func:`checked_line`, which decides)."""
    # 0x5C is a backslash, 0x7F a DEL: looking for an int is a plain memchr, measured several
    # times faster than looking for the one-byte substring b"\\".
    if len(raw) > LINE_BYTES_MAX or not raw.isascii() or 0x5C in raw or 0x7F in raw:
        return None
    try:
        document = _DECODER.decode(raw)
    except Exception:  # noqa: BLE001 - not a plain line (RecursionError too): checked above
        return None
    customer, given = _customer(document.customer), document.currency
    if customer is None:
        return None
    if given is UNSET:
        given = ""
    elif given == currency:
        given = f',"currency":"{given}"'
    else:
        return None
    moment = _moment(document.at, zone)
    if moment is None:
        return None
    made = (_usage_event if type(document) is _Usage else _money_event)(
        document, customer, given, moment
    )
    if made is None:
        return None
    fields, canonical = made
    content = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big", signed=True)
    return tuple.__new__(Event, fields), content
