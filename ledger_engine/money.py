"""Money as integer cents inside the engine, two-place decimals at the edges."""

from __future__ import annotations

from decimal import Decimal


def format_cents(cents: int) -> str:
    """``1234`` -> ``"12.34"``, ``-5`` -> ``"-0.05"``."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def decimal_to_cents(amount: Decimal) -> int:
    """An exact two-place Decimal as cents (asserts there is nothing finer)."""
    cents = amount * 100
    assert cents == cents.to_integral_value(), f"{amount} has more than two places"
    return int(cents)
