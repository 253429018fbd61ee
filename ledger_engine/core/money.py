"""Money as integer cents inside the engine, two-place decimals at the edges."""

from __future__ import annotations

from decimal import Decimal


def format_cents(cents: int) -> str:
    """``1234`` -> ``"12.34"``, ``-5`` -> ``"-0.05"``."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def decimal_to_cents(amount: Decimal) -> int:
    """An exact two-place Decimal of the engine's own as cents (asserts there is nothing
    finer: for numbers read from outside, use :func:`exact_cents`)."""
    cents = amount * 100
    assert cents == cents.to_integral_value(), f"{amount} has more than two places"
    return int(cents)


def exact_cents(amount: Decimal) -> int | None:
    """A Decimal read from outside (a journal) as cents, or None if it is finer than a cent."""
    cents = amount * 100
    if not cents.is_finite() or cents != cents.to_integral_value():
        return None
    return int(cents)
