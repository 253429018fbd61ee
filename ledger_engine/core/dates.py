"""Time in one place: RFC 3339 parsing, booking days, months and billing periods.

Every calendar question (which day, which month, which billing period) is answered here in
the books' timezone, so no other module does date arithmetic of its own.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger_engine.core.errors import InvalidSetting

# Patterns match the whole text (re.fullmatch: ``$`` would also match before a trailing
# newline) with the ASCII digits only (``\d`` takes any Unicode digit).
RFC3339_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
DAY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MONTH_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}")
UTC = datetime.UTC

# The books' calendar: the booking days an event may have and the days a run may post
# through.  Every account is opened on the first day; the last one leaves the day, the month
# and the billing year after it inside Python's calendar (which ends with the year 9999), so
# the day arithmetic of a run (checkpoints, period ends, balance assertions) stays in range.
BOOKING_DAY_MIN = datetime.date(1970, 1, 1)
BOOKING_DAY_MAX = datetime.date(9998, 12, 31)


def load_zone(name: str) -> ZoneInfo:
    """The timezone called ``name``; :class:`InvalidSetting` if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSetting(f"unknown timezone {name!r}") from None


def parse_timestamp(text: str) -> datetime.datetime | None:
    """An aware datetime from an RFC 3339 timestamp with offset, or None if it is not one."""
    match = RFC3339_PATTERN.fullmatch(text)
    if not match:
        return None
    normalised = text.upper()
    if match.group(1) and len(match.group(1)) > 7:  # Python keeps microseconds
        normalised = normalised.replace(match.group(1), match.group(1)[:7], 1)
    try:
        return datetime.datetime.fromisoformat(normalised)
    except ValueError:
        return None


def utc_key_of_text(text: str, moment: datetime.datetime) -> str:
    """:func:`utc_key` of a parsed RFC 3339 ``text``, without date arithmetic for the common
    ``...Z`` form (a third of the cost of checking an event went into the conversion)."""
    if text[-1] in "Zz":
        fraction = text[20:-1] if text[19] == "." else ""
        return f"{text[:10]}T{text[11:19]}.{(fraction + '000000')[:6]}Z"
    return utc_key(moment)


def utc_key(moment: datetime.datetime) -> str:
    """A sortable UTC text form of an aware datetime (fixed width, microseconds)."""
    # isoformat with fixed microseconds is several times faster than strftime.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def booking_day(moment: datetime.datetime, zone: ZoneInfo) -> datetime.date:
    """The calendar day of ``moment`` in the books' timezone."""
    return moment.astimezone(zone).date()


def booking_day_in_calendar(moment: datetime.datetime, zone: ZoneInfo) -> datetime.date | None:
    """:func:`booking_day` of ``moment`` if it is in the books' calendar
    (:data:`BOOKING_DAY_MIN` to :data:`BOOKING_DAY_MAX`), else None.

    The limit is on the day in the books' timezone, not on the year of the text: in UTC books
    ``1970-01-01T00:10:00+01:00`` falls on 1969-12-31, and in Europe/Berlin books
    ``1969-12-31T23:30:00Z`` falls on 1970-01-01.
    """
    try:
        day = moment.astimezone(zone).date()
    except OverflowError:  # before the year 1 or after 9999 in the books' timezone
        return None
    return day if BOOKING_DAY_MIN <= day <= BOOKING_DAY_MAX else None


def parse_calendar_day(text: str) -> datetime.date:
    """A ``YYYY-MM-DD`` day of the books' calendar (a day given on the command line).

    Raises:
        ValueError: ``text`` is not such a day (with a one-line reason).
    """
    if not DAY_PATTERN.fullmatch(text):
        raise ValueError(f"not a YYYY-MM-DD day: {text!r}")
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a calendar day: {text!r}") from None
    if not BOOKING_DAY_MIN <= day <= BOOKING_DAY_MAX:
        raise ValueError(
            f"{text} is not in the books' calendar ({BOOKING_DAY_MIN} to {BOOKING_DAY_MAX})"
        )
    return day


def month_of(day: datetime.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def parse_month(text: str) -> datetime.date:
    """The first day of a ``YYYY-MM`` month; ValueError otherwise."""
    if not MONTH_PATTERN.fullmatch(text):
        raise ValueError(f"not a YYYY-MM month: {text!r}")
    return datetime.date(int(text[:4]), int(text[5:]), 1)


def parse_calendar_month(text: str) -> datetime.date:
    """The first day of a ``YYYY-MM`` month of the books' calendar (a month given on the
    command line: its last day and the day after it are then in range).

    Raises:
        ValueError: ``text`` is not such a month (with a one-line reason).
    """
    first = parse_month(text)
    if not BOOKING_DAY_MIN <= first <= BOOKING_DAY_MAX:
        raise ValueError(
            f"{text} is not in the books' calendar "
            f"({month_of(BOOKING_DAY_MIN)} to {month_of(BOOKING_DAY_MAX)})"
        )
    return first


@functools.lru_cache(maxsize=4096)
def add_months(day: datetime.date, months: int, anchor_day: int | None = None) -> datetime.date:
    """``day`` moved by whole months, the day of month clamped to the month's end.

    Args:
        day: the starting day.
        months: how many months to move (may be negative).
        anchor_day: the day of month to aim for (default: ``day.day``), so that an anchor of
            the 31st gives 28/29 Feb and then 31 Mar again.
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    wanted = anchor_day if anchor_day is not None else day.day
    return datetime.date(year, month, min(wanted, calendar.monthrange(year, month)[1]))


def first_of_next_month(day: datetime.date) -> datetime.date:
    return add_months(day.replace(day=1), 1)


def first_day_after_month(month: str) -> datetime.date:
    """The first day of the month after ``YYYY-MM``."""
    return first_of_next_month(parse_month(month))


def yesterday(now: datetime.datetime, zone: ZoneInfo) -> datetime.date:
    """The day before ``now`` in the books' timezone (the default last day to post)."""
    return now.astimezone(zone).date() - datetime.timedelta(days=1)


def last_day_of_month(day: datetime.date, months_after: int = 0) -> datetime.date:
    """The last day of the calendar month ``months_after`` months after ``day``'s month."""
    return add_months(day.replace(day=1), months_after + 1) - datetime.timedelta(days=1)


def billing_month_start(anchor: datetime.date, day: datetime.date) -> datetime.date:
    """The start of the monthly billing month (anchored at ``anchor``) that contains ``day``."""
    months = (day.year - anchor.year) * 12 + (day.month - anchor.month)
    start = add_months(anchor, months, anchor.day)
    if start > day:
        start = add_months(anchor, months - 1, anchor.day)
    return start


@functools.lru_cache(maxsize=4096)  # many conversations share an anchor and a day
def period_bounds(
    anchor: datetime.date, interval: str, day: datetime.date
) -> tuple[datetime.date, datetime.date]:
    """The billing period ``[start, end)`` containing ``day`` (``day >= anchor``).

    Monthly periods run from the anchor day to the same day next month, clamped to month
    ends; annual ones from the anchor date to the same date next year.
    """
    step = 12 if interval == "annual" else 1
    months = (day.year - anchor.year) * 12 + (day.month - anchor.month)
    count = months // step
    start = add_months(anchor, count * step, anchor.day)
    if start > day:
        count -= 1
        start = add_months(anchor, count * step, anchor.day)
    return start, add_months(anchor, (count + 1) * step, anchor.day)
