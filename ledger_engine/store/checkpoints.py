"""Checkpoints: each customer's derived state at the start of a day, kept in the store.

A checkpoint is a :class:`~ledger_engine.core.model.Checkpoint` stored as one compact JSON
document (zlib-compressed) per ``(customer, day)``, with the *basis* it was derived under
(the rules file's SHA-256 and the format version).  A checkpoint of another basis is never
used: new rules or a new engine derive from the first event again.  Written in the run's
transaction, like every other derived row.
"""

from __future__ import annotations

import datetime
import zlib
from collections.abc import Iterable

import orjson
import sqlite_utils

from ledger_engine.core.model import (
    Checkpoint,
    Lot,
    Period,
    RatingState,
    Terms,
    WalletState,
)

FORMAT = "3"  # the version of the stored document; another one is never read
# Checkpoints of days that are not a month's first day are kept this long after the last
# day posted (late events reach a few days back; month starts are kept for ever).
KEEP_DAILY = datetime.timedelta(days=7)


def basis(rules_sha256: str) -> str:
    """What a checkpoint is valid for: these rules (their SHA-256, ``Rules.sha256``), this
    format."""
    return f"{FORMAT}:{rules_sha256}"


def _day(text: str | None) -> datetime.date | None:
    return datetime.date.fromisoformat(text) if text else None


def _terms_of(row: list | None) -> Terms | None:
    if row is None:
        return None
    terms = Terms._make(row)
    return terms._replace(
        day=_day(terms.day),
        anchor=_day(terms.anchor),
        commitment_anchor=_day(terms.commitment_anchor),
    )


def _period_of(row: list) -> Period:
    return Period(_day(row[0]), _day(row[1]), *row[2:])


def _lot_of(row: list) -> Lot:
    lot_id, kind, day, last_valid, amount, remainder = row
    return Lot(lot_id, kind, _day(day), _day(last_valid), amount, remainder)


def _as_array(value):
    if isinstance(value, tuple):  # a record (orjson takes only plain tuples)
        return list(value)
    raise TypeError(f"cannot store {value!r} in a checkpoint")


def encode(checkpoint: Checkpoint) -> bytes:
    """The stored document of a checkpoint (dates as ISO text, records as arrays)."""
    document = orjson.dumps([checkpoint.rating[1:], checkpoint.wallet[1:]], default=_as_array)
    return zlib.compress(document)


def decode(day: datetime.date, document: bytes) -> Checkpoint:
    rating, wallet = orjson.loads(zlib.decompress(document))
    current, units, holders, periods, used = rating
    lots, receivable = wallet
    return Checkpoint(
        day,
        RatingState(
            day,
            _terms_of(current),
            units,
            tuple(holders),
            tuple((anchor_at, _period_of(period)) for anchor_at, period in periods),
            tuple((anchor_at, _day(start), count) for anchor_at, start, count in used),
        ),
        WalletState(day, tuple(_lot_of(lot) for lot in lots), receivable),
    )


def latest(
    db: sqlite_utils.Database, customer: str, basis_text: str, on_or_before: datetime.date
) -> Checkpoint | None:
    """The customer's last checkpoint of ``basis_text`` at or before a day (None: none)."""
    row = db.execute(
        "SELECT day, state FROM checkpoints WHERE customer = ? AND basis = ? AND day <= ? "
        "ORDER BY day DESC LIMIT 1",
        [customer, basis_text, on_or_before.isoformat()],
    ).fetchone()
    return None if row is None else decode(_day(row[0]), row[1])


def days(db: sqlite_utils.Database, customer: str, basis_text: str) -> list[datetime.date]:
    """The days of the customer's checkpoints of ``basis_text``."""
    return [
        _day(row[0])
        for row in db.execute(
            "SELECT day FROM checkpoints WHERE customer = ? AND basis = ?", [customer, basis_text]
        )
    ]


def replacing_writes(
    customer: str,
    basis_text: str,
    since: datetime.date | None,
    checkpoints: Iterable[Checkpoint],
    last_posted: datetime.date,
) -> list[tuple[str, list[tuple]]]:
    """The writes that drop the customer's checkpoints after ``since`` (all of them when
    None: they were derived from what has changed), store the new ones and drop daily ones
    long past (statements and their parameters, applied by the run)."""
    if since is None:
        drop = ("DELETE FROM checkpoints WHERE customer = ?", [(customer,)])
    else:
        drop = ("DELETE FROM checkpoints WHERE customer = ? AND day > ?",
                [(customer, since.isoformat())])  # fmt: skip
    return [
        drop,
        ("INSERT OR REPLACE INTO checkpoints (customer, day, basis, state) VALUES (?, ?, ?, ?)",
         [(customer, c.day.isoformat(), basis_text, encode(c)) for c in checkpoints]),
        ("DELETE FROM checkpoints WHERE customer = ? AND day < ? AND substr(day, 9) != '01'",
         [(customer, (last_posted - KEEP_DAILY).isoformat())]),
    ]  # fmt: skip
