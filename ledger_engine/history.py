"""The rules are part of the history (SPEC v3 §6): which rules file is in force on each day.

Every run reads ``rules.toml`` and compares it with the rules the books were posted under
(the store keeps every rules text a run used, and from which day each is in force).  A
change that alters nothing on a day already posted (a version appended for a later day,
a comment) applies from the first day not yet posted, without a flag.  A change that alters
what is in force on a posted day (an edited price, a version back-dated) refuses, naming the
first such day and the version there, unless ``post --reprice-from DAY`` names a day of an
open month: the days from DAY on are then derived again under the new rules, as corrections
labelled with the new version; closed months never are.  A version's label names one
content, in one file and across the files the books used.

So a re-derivation (``post --full``, ``reconcile --replay``) derives each day under the
rules recorded for it, and never re-prices.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine.books import confined, layout
from ledger_engine.core.errors import RulesChanged
from ledger_engine.rules import (
    Rules,
    RulesError,
    RulesHistory,
    first_changed_day,
    label_conflicts,
    parse_rules,
    with_change,
)
from ledger_engine.store import queries

FIRST_DAY = datetime.date.min  # the first rules of the books are in force from the start
ONE_DAY = datetime.timedelta(days=1)


def read_rules(books_dir: Path) -> tuple[Rules, str]:
    """The books' rules file and its text, read inside the books without following a link;
    a file that is not UTF-8 is a :class:`RulesError` like any other bad rules file."""
    try:
        data = confined.read_bytes(books_dir, layout.RULES_NAME)
    except OSError as error:
        raise RulesError(f"cannot read {layout.RULES_NAME}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RulesError(f"{layout.RULES_NAME} is not UTF-8 text: {error.reason}") from None
    return parse_rules(text), text


def recorded_history(db: sqlite_utils.Database) -> RulesHistory | None:
    """The rules in force over the books' days, as the runs that changed them recorded
    (None: no run recorded any, books made before schema 5 or never posted)."""
    texts = dict(queries.rules_texts(db))
    history: RulesHistory | None = None
    for _, first_day, sha256 in queries.rules_changes(db):
        rules = parse_rules(texts[sha256])
        day = datetime.date.fromisoformat(first_day)
        history = with_change(history, day, rules) if history else RulesHistory(((day, rules),))
    return history


class InForce(NamedTuple):
    """The rules of one run: the history it derives under, the file it read, and the change
    it records (None: the file is the one in force)."""

    history: RulesHistory
    file: tuple[Rules, str]  # the rules file read and its text
    change_from: datetime.date | None  # the first day the file's rules are in force from
    reprices: bool  # posted days are derived again (--reprice-from)


def _first_unposted(posted: datetime.date | None) -> datetime.date:
    return posted + ONE_DAY if posted else FIRST_DAY


def rules_in_force(
    db: sqlite_utils.Database,
    books_dir: Path,
    reprice_from: datetime.date | None = None,
) -> InForce:
    """The rules a run derives under (module docstring).

    Raises:
        RulesChanged: the file alters a posted day and no (acceptable) ``reprice_from`` is
            given, a version label names another content than in a file the books used, or
            ``reprice_from`` is given with nothing to reprice.
    """
    rules, text = read_rules(books_dir)
    _refuse_label_conflicts(db, rules)
    history = recorded_history(db)
    posted = queries.posted_through(db)
    if history is None:  # the first run of these rules, or books made before schema 5
        if reprice_from is not None:
            raise RulesChanged("nothing to reprice: no run recorded the rules yet")
        return InForce(RulesHistory(((FIRST_DAY, rules),)), (rules, text), FIRST_DAY, False)
    if history.latest.sha256 == rules.sha256:
        if reprice_from is not None:
            raise RulesChanged("nothing to reprice: rules.toml is the rules file in force")
        return InForce(history, (rules, text), None, False)
    changed = first_changed(history, rules)
    if changed is None or posted is None or changed > posted:
        if reprice_from is not None:
            raise RulesChanged("nothing to reprice: the change alters no day already posted")
        first_day = _first_unposted(posted)
        return InForce(with_change(history, first_day, rules), (rules, text), first_day, False)
    if reprice_from is None:
        where = (
            "every day posted (the trial cap, automatic top-up or expiry changed)"
            if changed == FIRST_DAY
            else f"{changed}, a day already posted"
        )
        raise RulesChanged(
            f"rules.toml changes what is in force on {where} (version "
            f"{rules.version_on(changed).version!r} there); post --reprice-from DAY derives "
            "the days from DAY on again under it, or restore the file"
        )
    first_open = queries.first_open_day(db)
    if first_open is not None and reprice_from < first_open:
        raise RulesChanged(
            f"--reprice-from {reprice_from} is in a closed month (the first open day is "
            f"{first_open}): closed months are never repriced"
        )
    return InForce(with_change(history, reprice_from, rules), (rules, text), reprice_from, True)


def first_changed(history: RulesHistory, rules: Rules) -> datetime.date | None:
    """The first day on which ``rules`` say anything else than the rules in force then."""
    found = []
    ends = [day for day, _ in history.entries[1:]] + [None]
    for (start, old), end in zip(history.entries, ends, strict=True):
        day = first_changed_day(old, rules, start)
        if day is not None and (end is None or day < end):
            found.append(day)
    return min(found, default=None)


def _refuse_label_conflicts(db: sqlite_utils.Database, rules: Rules) -> None:
    used = [parse_rules(text) for sha256, text in queries.rules_texts(db) if sha256 != rules.sha256]
    conflicts = label_conflicts(rules, used)
    if conflicts:
        raise RulesChanged(
            f"rules.toml gives version {conflicts[0]!r} another content than the books used "
            "under that label; a changed catalogue needs a new version label"
        )


def record_change(db: sqlite_utils.Database, run_id: int, in_force: InForce) -> None:
    """Records the run's change of the rules in force, if it made one."""
    if in_force.change_from is not None:
        queries.record_rules_change(db, run_id, in_force.change_from, in_force.file[0].sha256)
