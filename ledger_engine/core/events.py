"""Events in: the JSON Lines reader and the schema checks of SPEC §2.

A line becomes either an ``Event`` (schema-valid; rating may still reject it later) or a
``Rejection`` with a stable reason code (both in :mod:`ledger_engine.core.model`).  Checks
run in a fixed, documented order so that one bad line always gets the same reason.  Nothing
here touches the store.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from typing import BinaryIO
from zoneinfo import ZoneInfo

import orjson

from ledger_engine.core import dates
from ledger_engine.core.digests import text_key
from ledger_engine.core.model import (
    AI_FEATURES,
    CHANNELS,
    CURRENCY_MISMATCH,
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

# Named limits (SPEC §2 and the reliability issue): anything longer is quarantined.
LINE_BYTES_MAX = 64 * 1024
EVENT_ID_CHARS_MAX = 128
CONVERSATION_CHARS_MAX = 256
MONEY_CENTS_MAX = 100_000_000_000  # 1,000,000,000.00 in any one money field
INCLUDED_MAX = 100_000_000
AT_YEAR_MIN = 1970
AT_YEAR_MAX = 9998

DAY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CUSTOMER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MONEY_PATTERN = re.compile(r"^-?\d{1,15}(\.\d{1,2})?$")


class InvalidField(Exception):
    """Raised inside the checks of one line; becomes an ``invalid_field`` rejection."""

    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field = field
        self.detail = detail


def _money_cents(value: object, field: str, positive: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        kind = "a float" if isinstance(value, float) else type(value).__name__
        raise InvalidField(field, f"{field}: money must be a decimal string or integer, not {kind}")
    if isinstance(value, int):
        cents = value * 100
    else:
        if not MONEY_PATTERN.match(value):
            raise InvalidField(field, f"{field}: not a decimal with at most 2 places: {value!r}")
        whole, _, fraction = value.lstrip("-").partition(".")
        cents = int(whole) * 100 + int((fraction + "00")[:2])
        if value.startswith("-"):
            cents = -cents
    if abs(cents) > MONEY_CENTS_MAX:
        raise InvalidField(field, f"{field}: larger than the limit {MONEY_CENTS_MAX // 100}")
    if cents < 0 or (positive and cents == 0):
        raise InvalidField(field, f"{field}: must be {'> 0' if positive else '>= 0'}")
    return cents


def _string(document: dict, field: str, allowed: tuple[str, ...] | None = None) -> str:
    value = document.get(field)
    if not isinstance(value, str):
        raise InvalidField(field, f"{field}: required string missing or not a string")
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
        included = document.get("included")
        if isinstance(included, bool) or not isinstance(included, int):
            raise InvalidField("included", "included: required whole number for enterprise")
        if not 0 <= included <= INCLUDED_MAX:
            raise InvalidField("included", f"included: must be between 0 and {INCLUDED_MAX}")
        fields["included"] = included
        if "unit_price" not in document:
            raise InvalidField("unit_price", "unit_price: required for enterprise")
        fields["unit_price"] = _money_cents(document["unit_price"], "unit_price", False)
    else:
        for field in ("included", "unit_price"):
            if field in document:
                raise InvalidField(field, f"{field}: only allowed on the enterprise plan")
    return fields


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
    return {}


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
    if not isinstance(value, str) or not DAY_PATTERN.match(value):
        raise InvalidField("expires", "expires: must be a YYYY-MM-DD day")
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise InvalidField("expires", f"expires: not a calendar day: {value!r}") from None
    if not AT_YEAR_MIN <= day.year <= AT_YEAR_MAX:
        years = f"{AT_YEAR_MIN} and {AT_YEAR_MAX}"
        raise InvalidField("expires", f"expires: the year must be between {years}")
    return {"expires": value}


def _reason(document: dict) -> dict:
    if "reason" not in document:
        return {}
    value = document["reason"]
    if not isinstance(value, str) or len(value) > REASON_CHARS_MAX:
        raise InvalidField("reason", f"reason: a string of at most {REASON_CHARS_MAX} characters")
    return {"reason": value}


def _check_common(
    document: dict, currency: str, zone: ZoneInfo
) -> tuple[Event, None] | tuple[None, Rejection]:
    event_id = document.get("id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= EVENT_ID_CHARS_MAX:
        raise InvalidField("id", f"id: required string of 1 to {EVENT_ID_CHARS_MAX} characters")
    event_type = document.get("type")
    if not isinstance(event_type, str):
        raise InvalidField("type", "type: required string missing or not a string")
    if event_type not in EVENT_TYPES:
        return None, Rejection(UNKNOWN_TYPE, "type", f"unknown type {event_type[:64]!r}", event_id)
    customer = document.get("customer")
    if not isinstance(customer, str) or not CUSTOMER_PATTERN.match(customer):
        raise InvalidField("customer", "customer: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    at_text = document.get("at")
    moment = dates.parse_timestamp(at_text) if isinstance(at_text, str) else None
    if moment is None:
        raise InvalidField("at", "at: must be an RFC 3339 timestamp with offset")
    if not AT_YEAR_MIN <= moment.year <= AT_YEAR_MAX:
        # Accounts are opened on 1970-01-01; the upper bound keeps day arithmetic in range.
        raise InvalidField("at", f"at: the year must be between {AT_YEAR_MIN} and {AT_YEAR_MAX}")
    if "currency" in document:
        if not isinstance(document["currency"], str):
            raise InvalidField("currency", "currency: must be a string")
        if document["currency"] != currency:
            return None, Rejection(
                CURRENCY_MISMATCH,
                "currency",
                f"currency {document['currency'][:16]!r} is not the books' {currency}",
                event_id,
            )
    day = dates.booking_day(moment, zone)
    fields = _fields_on(day, event_type, document)
    event = Event(
        id=event_id,
        type=event_type,
        customer=customer,
        at=dates.utc_key_of_text(at_text, moment),
        day=day,
        **fields,
    )
    return event, None


def check_document(
    document: object, currency: str, zone: ZoneInfo
) -> tuple[Event | None, Rejection | None]:
    """Applies the schema checks of SPEC §2, in order, to one parsed JSON value.

    Args:
        document: the parsed JSON value of one line.
        currency: the books' currency.
        zone: the books' timezone (for the booking day).

    Returns:
        ``(event, None)`` for a schema-valid event, else ``(None, rejection)``.
    """
    if not isinstance(document, dict):
        return None, Rejection(MALFORMED_JSON, None, "a line must hold one JSON object")
    try:
        return _check_common(document, currency, zone)
    except InvalidField as error:
        event_id = document.get("id") if isinstance(document.get("id"), str) else None
        return None, Rejection(INVALID_FIELD, error.field, error.detail, event_id)


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
    text = raw.decode("utf-8", errors="backslashreplace")
    if len(raw) > LINE_BYTES_MAX:
        rejection = Rejection(MALFORMED_JSON, None, f"line longer than {LINE_BYTES_MAX} bytes")
        return Line(file, number, text[:LINE_BYTES_MAX], None, None, rejection)
    try:
        document, canonical = _parse(raw)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError) as error:
        rejection = Rejection(MALFORMED_JSON, None, f"not valid JSON: {str(error)[:200]}")
        return Line(file, number, text, None, None, rejection)
    event, rejection = check_document(document, currency, zone)
    content = content_key(canonical) if event else None
    return Line(file, number, text, event, content, rejection)


def read_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yields ``(line number, raw bytes)`` for each non-blank line, without line ends.

    A byte-order mark at the start is dropped, CRLF ends are accepted, a line longer than
    :data:`LINE_BYTES_MAX` is cut there (and then rejected) without reading it whole.
    """
    number = 0
    while True:
        raw = stream.readline(LINE_BYTES_MAX + 1)
        if not raw:
            return
        number += 1
        if len(raw) > LINE_BYTES_MAX and not raw.endswith(b"\n"):
            while True:  # skip the rest of an overlong line in bounded pieces
                rest = stream.readline(LINE_BYTES_MAX)
                if not rest or rest.endswith(b"\n"):
                    break
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        raw = raw.rstrip(b"\r\n")
        if raw.strip():
            yield number, raw
