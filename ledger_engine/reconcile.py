"""Reconcile (SPEC §6): prove the books consistent without trusting the code that wrote them.

Each check in :data:`CHECKS` returns a list of :class:`Difference` values (errors are values);
:func:`reconcile` runs them all, in that order, and never stops at the first problem.  It
reads only: a torn tail left by an interrupted run is reported, and the next ``post`` moves
it under ``recovered/``.  Numbers read from the journals are parsed, never asserted: a
number finer than a cent is a difference like any other.  Nor is what is read from the store
trusted: a value someone wrote into it that no run writes (a non-integer amount, a record that
is not JSON, a path that is no file) is a difference, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import sqlite3
import stat
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine.books import confined, journals, layout
from ledger_engine.books.files import BooksWalk, locked, walk_books
from ledger_engine.core import accounts, dates
from ledger_engine.core.errors import BooksTampered
from ledger_engine.core.money import exact_cents, format_cents
from ledger_engine.core.seal import GENESIS_SEAL, month_seal
from ledger_engine.store import db as store_db
from ledger_engine.store import queries, runlog
from ledger_engine.store.schema_check import schema_differences


class Difference(NamedTuple):
    check: str
    message: str
    file: str | None = None
    account: str | None = None
    day: str | None = None
    expected: str | None = None
    found: str | None = None


class Pending(NamedTuple):
    """Work a run held back, not a difference: a customer's derived state is ahead of its
    postings because corrections of a closed month wait for a run that posts the first open
    month (``post --through`` a day in it or later posts them)."""

    customer: str
    check: str  # the check that sees it (usage_vs_postings, lots_vs_wallet)
    message: str
    from_day: str  # the first day the corrections can be posted on


class Report(NamedTuple):
    differences: tuple[Difference, ...]
    checked: dict[str, int]
    pending: tuple[Pending, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "differences": [d._asdict() for d in self.differences],
            "pending": [p._asdict() for p in self.pending],
        }


class RunLogEvidence(NamedTuple):
    """What the hash-chained run log says, read once for every check that needs it."""

    last_hash: dict[str, str]  # path -> the last SHA-256 a run recorded for it
    last_length: dict[str, int]  # path -> the last length a run recorded for it (schema 5)
    details: dict[int, dict | None]  # run -> its details (None: recorded before schema 5)
    seals: dict[str, str]  # month -> the seal its close run recorded
    unreadable: list  # Differences: records whose files or counts are not JSON objects


class Context(NamedTuple):
    """What every check reads: the books, the store, a loader of journals, the run log's
    evidence, and the seal an auditor kept outside the books (if given)."""

    books_dir: Path
    db: sqlite_utils.Database
    load: Callable[[journals.RootSpec], tuple[list, list[Difference]]]
    run_log: RunLogEvidence
    walk: BooksWalk  # one walk of the books: journal files, links, odd files
    gl: journals.RootSpec
    kept_seal: str | None = None
    pending: list[Pending] = []  # what the checks found held back (filled as they run)


# The files ``init`` records without a run; every other journal file is in the run log.
INIT_FILES = (layout.LEDGER_NAME, layout.ACCOUNTS_NAME)


def _cents(value) -> str:
    """Cents read from the store as text.  SQLite's sum() is a float once someone has written a
    non-integer amount into the store: that is shown as read (format_cents would raise)."""
    return format_cents(value) if isinstance(value, int) else repr(value)


def _json_object(text) -> dict | None:
    """A JSON object read from the store, or None if someone made it anything else."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _readable_record(relative, recorded) -> bool:
    """A journal_files row as runs write it (a text path, an integer length)."""
    return isinstance(relative, str) and isinstance(recorded.length, int)


def _file_difference(books_dir: Path, relative: str, recorded) -> Difference | None:
    what = "sealed file" if recorded.sealed else "journal file"
    try:
        found = confined.lstat(books_dir, relative)
        if found is None:
            return Difference("files", f"{what} is missing", relative)
        if not stat.S_ISREG(found.st_mode):  # a link, a directory, a device: never opened
            return Difference("files", f"{what} is not a regular file", relative)
        size = found.st_size
        if size > recorded.length and confined.sha256(books_dir, relative, recorded.length) == (
            recorded.sha256
        ):
            message = (
                "sealed file: bytes past the seal (post and close refuse until they are removed)"
                if recorded.sealed
                else "uncommitted tail left by an interrupted run (the next post moves it to "
                "recovered/)"
            )
            return Difference("files", message, relative, expected=str(recorded.length),
                              found=str(size))  # fmt: skip
        digest = confined.sha256(books_dir, relative)
    except BooksTampered as error:  # a folder on the way is a link
        return Difference("confinement", str(error), relative)
    if digest != recorded.sha256:
        message = f"{what} changed since it was written"
        return Difference("files", message, relative, expected=recorded.sha256, found=digest)
    if size != recorded.length:
        message = f"{what} is not the length the store records"
        return Difference("files", message, relative, expected=repr(recorded.length),
                          found=str(size))  # fmt: skip
    return None


def _record_difference(relative, recorded) -> Difference | None:
    """A journal_files row that is not what runs write: a path the engine never writes (it
    is never opened), a length that is no length."""
    if not layout.is_journal_path(relative):
        message = "the store records a journal file the engine never writes (not opened)"
        return Difference("confinement", message, str(relative), found=repr(recorded))
    if not isinstance(recorded.length, int) or recorded.length < 0:
        message = "the store's record of the journal file is not readable"
        return Difference("files", message, str(relative), found=repr(recorded))
    if recorded.month != layout.month_of_path(relative):
        message = "the store's month of the journal file is not the month of its name"
        return Difference("files", message, str(relative), found=repr(recorded.month))
    return None


def check_file_hashes(ctx: Context) -> list[Difference]:
    """Every journal file is byte-for-byte what the store recorded (sealed ones included);
    no link and no odd file is in the books (SPEC v3 §6)."""
    books_dir = ctx.books_dir
    recorded = queries.recorded_files(ctx.db)
    differences = []
    for relative, file in sorted(recorded.items(), key=lambda item: str(item[0])):
        difference = _record_difference(relative, file) or _file_difference(
            books_dir, relative, file
        )
        if difference is not None:
            differences.append(difference)
    walk = ctx.walk
    for relative in walk.links:
        message = "symbolic link in the books (never followed; the writers refuse)"
        differences.append(Difference("confinement", message, relative))
    for relative in walk.odd:
        message = "journal name that is no regular file (never opened; the writers refuse)"
        differences.append(Difference("confinement", message, relative))
    for relative in sorted(walk.sizes):
        if relative not in recorded:
            differences.append(
                Difference(
                    "files",
                    "journal file unknown to the store (the next post moves it to recovered/)",
                    relative,
                )
            )
    return differences


def check_run_chain(ctx: Context) -> list[Difference]:
    """The run log's hash chain is intact, its records are readable, and it agrees with the
    store: each journal file's recorded hash is the last one the run log holds for it."""
    differences = []
    previous = "0" * 64
    for run in runlog.runs(ctx.db):
        # A blob written into a record cannot be hashed as JSON: a break, not a crash.
        readable = not any(isinstance(value, bytes) for value in run.values())
        if run["prev_hash"] != previous or not readable or runlog.run_hash(run) != run["hash"]:
            differences.append(
                Difference(
                    "run_log",
                    f"run {run['run_id']} breaks the hash chain",
                    expected=previous,
                    found=run["prev_hash"],
                )
            )
        previous = run["hash"]
    last_hash = ctx.run_log.last_hash
    differences += ctx.run_log.unreadable
    # The chain alone misses its last records being deleted (what is left is still a chain)
    # and a journal file edited together with its hash in the store: compare the two.
    recorded = queries.recorded_files(ctx.db)
    for relative, file in sorted(recorded.items(), key=lambda item: str(item[0])):
        if relative not in last_hash and relative in INIT_FILES:
            continue
        expected = last_hash.get(relative, "missing")
        if expected != file.sha256:
            message = "the store's hash of the journal file is not the last one the run log holds"
            differences.append(
                Difference("run_log", message, str(relative), None, None, expected, file.sha256)
            )
    for relative in sorted(set(last_hash) - set(recorded)):
        message = "journal file in the run log is unknown to the store"
        differences.append(Difference("run_log", message, relative))
    for relative, file in sorted(recorded.items(), key=lambda item: str(item[0])):
        expected = ctx.run_log.last_length.get(relative)
        if expected is not None and expected != file.length:
            message = "the store's length of the journal file is not the last one the run log holds"
            differences.append(Difference("run_log", message, str(relative), None, None,
                                          str(expected), repr(file.length)))  # fmt: skip
    return differences


def _row_digest_differences(ctx: Context) -> list[Difference]:
    """Each run's rows (events, quarantine, transactions, postings) digest to what its
    record holds; no row belongs to a run the log does not hold."""
    db, details = ctx.db, ctx.run_log.details
    empty = runlog.digest_of(())
    recomputed = {
        "events": runlog.events_digests_by_run(db),
        "quarantine": runlog.quarantine_digests_by_run(db),
        **runlog.transaction_digests_by_run(db),
    }
    differences = []
    for table, by_run in recomputed.items():
        for run_id in sorted(set(by_run) - set(details), key=str):
            message = (
                f"{by_run[run_id][1]} {table} rows of run {run_id}, which the run log does not hold"
            )
            differences.append(Difference("rows", message))
        for run_id, found in sorted(details.items()):
            expected = ((found or {}).get("digests") or {}).get(table)
            digest = by_run.get(run_id, (empty, 0))[0]
            if found is not None and expected != digest:
                message = f"the {table} rows of run {run_id} are not the rows it wrote"
                differences.append(Difference("rows", message, expected=str(expected),
                                              found=digest))  # fmt: skip
    return differences


def _state_differences(ctx: Context) -> list[Difference]:
    """Each customer's derived state (lots, verdicts, periods, checkpoints, its row) is
    what the last run that derived it left, as its record's digests say."""
    db, details = ctx.db, ctx.run_log.details
    empty = runlog.digest_of(())
    differences = []
    by_run = runlog.state_digests_of_runs(db)
    for run_id, found in sorted(details.items()):
        expected = ((found or {}).get("digests") or {}).get("state")
        if found is not None and expected != by_run.get(run_id, empty):
            message = f"the state digests of run {run_id} are not those it recorded"
            differences.append(Difference("rows", message))
    customers = sorted({customer for customer, _ in queries.customers(db)})
    latest, current = runlog.latest_state_digests(db), runlog.state_digests(db, customers)
    upgraded = queries.get_meta(db, "upgraded_to_5") is not None
    for customer in customers:
        if customer not in latest:
            if not upgraded:
                message = f"the derived state of {customer} has no digest of the run that made it"
                differences.append(Difference("rows", message))
        elif latest[customer][1] != current[customer]:
            message = (
                f"the derived state of {customer} (lots, verdicts, periods, checkpoints) is "
                f"not what run {latest[customer][0]} left"
            )
            differences.append(Difference("rows", message))
    for customer in queries.customers_without_row(db):
        message = f"derived rows of {customer!r}, a customer the store does not list"
        differences.append(Difference("rows", message))
    return differences


def _kept_differences(ctx: Context) -> list[Difference]:
    """What the store keeps besides rows: each rules text under its own SHA-256, and the
    last day posted as the post runs of the log say."""
    differences = [
        Difference(
            "rules", f"the store's rules text {sha256[:12]}... is not what its SHA-256 names"
        )
        for sha256, text_ in queries.rules_texts(ctx.db)
        if hashlib.sha256(text_.encode()).hexdigest() != sha256
    ]
    posted = [
        run["through"] for run in runlog.runs(ctx.db)
        if run["command"] == "post" and isinstance(run["through"], str)
    ]  # fmt: skip
    closes = {
        run["run_id"]: (run["command"], _json_object(run["counts"]) or {})
        for run in runlog.runs(ctx.db)
    }
    for month, closed_at, run_id in queries.closed_month_times(ctx.db):
        command, counts = closes.get(run_id, (None, {}))
        if command != f"close {month}" or counts.get("closed_at", closed_at) != closed_at:
            message = f"the store's record of closing {month} is not what its close run wrote"
            differences.append(Difference("seals", message, found=f"run {run_id!r}, {closed_at!r}"))
    last = queries.get_meta(ctx.db, "posted_through")
    if posted and last != max(posted):
        message = "the store's last posted day is not the last day a post run posted"
        differences.append(Difference("run_log", message, None, None, None, max(posted), last))
    return differences


def check_rows(ctx: Context) -> list[Difference]:
    """Every row a run wrote is as it wrote it (SPEC v3 §6: a deleted, added or edited row
    is a difference); the rules file is the one the last run used."""
    differences = _row_digest_differences(ctx) + _state_differences(ctx)
    differences += _kept_differences(ctx)
    recorded = [d.get("rules_sha256") for d in ctx.run_log.details.values() if d]
    if recorded and recorded[-1]:
        try:
            found = confined.sha256(ctx.books_dir, layout.RULES_NAME)
        except (OSError, BooksTampered) as error:
            found = f"unreadable: {error}"
        if found != recorded[-1]:
            message = "rules.toml differs from the one the last run recorded (edited since)"
            differences.append(Difference("rules", message, layout.RULES_NAME, None, None,
                                          recorded[-1], found))  # fmt: skip
    return differences


def _load(spec: journals.RootSpec, books_dir: Path) -> tuple[list, list[Difference]]:
    """A root's journal, loaded only once its directives are the engine's
    (:mod:`ledger_engine.books.journals`); its errors and refusals as differences."""
    loaded = journals.load(books_dir, spec)
    differences = [Difference("load", message, file) for file, message in loaded.errors]
    differences += [
        Difference("directives", f"{why}; loaded without running anything (parsed only)", file)
        for file, why in loaded.refused
    ]
    return loaded.entries, differences


Sums = dict[tuple[str, str], int]  # (day, account) -> cents


def _sums(entries: Iterable, file: str) -> tuple[Sums, list[Difference]]:
    """Posting sums per day and account of loaded entries; a number finer than a cent is
    a difference (and left out of the sums)."""
    totals: Sums = defaultdict(int)
    differences = []
    for entry in entries:
        for posting in getattr(entry, "postings", None) or ():
            cents = exact_cents(posting.units.number) if posting.units else None
            day = entry.date.isoformat()
            if cents is None:
                differences.append(
                    Difference(
                        "amounts",
                        f"amount {posting.units} is not a whole number of cents",
                        file,
                        posting.account,
                        day,
                    )  # fmt: skip
                )
                continue
            totals[(day, posting.account)] += cents
    return totals, differences


def _compare(check: str, expected: Sums, found: Sums, file_of: Callable, label: str):
    differences = []
    for key in sorted(set(expected) | set(found)):
        want, have = expected.get(key, 0), found.get(key, 0)
        if want != have:
            day, account = key
            differences.append(
                Difference(
                    check,
                    f"{label}: {account} on {day} differs",
                    file_of(day),
                    account,
                    day,
                    _cents(want),
                    _cents(have),
                )
            )
    return differences


def subledger_roots(books_dir: Path, db: sqlite_utils.Database) -> list[tuple[str, str]]:
    """``(customer, segment)`` of every customer whose subledger root exists."""
    return [
        (customer, segment)
        for customer, segment in queries.customers(db)
        if _exists(books_dir, layout.customer_root_path(segment))
    ]


def _exists(books_dir: Path, relative: str) -> bool:
    try:
        return confined.lstat(books_dir, relative) is not None
    except BooksTampered:
        return True  # a folder on the way is a link: loading it is refused and reported


def _check_subledger(ctx: Context, customer: str, segment: str, summed: Sums):
    db = ctx.db
    currency = queries.books_settings(db).currency
    entries, differences = ctx.load(journals.customer_root(customer, segment, currency))
    differences = list(differences)
    sub, amount_differences = _sums(entries, layout.customer_root_path(segment))
    differences += amount_differences
    differences += _compare(
        "subledger_vs_store",
        queries.posting_sums(db, "sub", customer),
        sub,
        lambda day: layout.customer_month_path(segment, day[:7]),
        f"subledger of {customer} vs store",
    )
    for (day, account), cents in sub.items():
        summed[(day, accounts.control_account(account))] += cents
    return differences


def check_journals(ctx: Context) -> list[Difference]:
    """Every journal loads cleanly; GL = sum of subledgers = store, per account and day."""
    db = ctx.db
    gl_entries, differences = ctx.load(ctx.gl)
    differences = list(differences)
    gl, amount_differences = _sums(gl_entries, layout.LEDGER_NAME)
    differences += amount_differences

    def gl_file(day: str) -> str:
        return layout.gl_month_path(day[:7])

    store_gl = queries.posting_sums(db, "gl")
    differences += _compare("gl_vs_store", store_gl, gl, gl_file, "general ledger vs store")
    summed: Sums = defaultdict(int)
    for customer, segment in subledger_roots(ctx.books_dir, db):
        differences += _check_subledger(ctx, customer, segment, summed)
    differences += _compare(
        "gl_vs_subledgers", gl, summed, gl_file, "general ledger vs sum of subledgers"
    )
    return differences


def check_rating(ctx: Context) -> list[Difference]:
    """Accepted usage is rated, rated conversations are posted once, lots match wallets;
    a customer whose corrections are held back for the first open month is pending."""
    db = ctx.db
    held_back = queries.pending_customers(db)
    differences = [
        Difference("rating", f"accepted usage event {event_id} is not rated")
        for event_id in queries.unrated_usage_events(db)
    ]
    for row in queries.usage_vs_postings(db):
        message = f"rated and posted usage of {row[0]} on {row[1]} differ"
        if row[0] in held_back:
            ctx.pending.append(Pending(row[0], "usage_vs_postings", message, held_back[row[0]]))
            continue
        differences.append(
            Difference(
                "usage_vs_postings",
                message,
                day=row[1],
                expected=json.dumps(row[2::2]),
                found=json.dumps(row[3::2]),
            )
        )
    for customer, wallet, lots, _ in queries.wallet_balances(db):
        if wallet == lots:
            continue
        message = f"lots of {customer} do not sum to its wallet"
        if customer in held_back:
            ctx.pending.append(Pending(customer, "lots_vs_wallet", message, held_back[customer]))
            continue
        differences.append(
            Difference("lots_vs_wallet", message, expected=_cents(wallet), found=_cents(lots))
        )
    return differences


def _closed_entries(ctx: Context) -> dict[str, str]:
    """Month -> the seal in its ``custom "closed"`` entry of the GL."""
    entries, _ = ctx.load(ctx.gl)
    return {
        str(entry.values[0].value): str(entry.meta.get("seal-sha256"))
        for entry in entries
        if type(entry).__name__ == "Custom" and entry.type == "closed" and entry.values
    }


def _run_log_evidence(db) -> RunLogEvidence:
    """From the hash-chained run log: the last hash written of every file, the seal each
    ``close`` run recorded, by month, and the records whose files or counts are not JSON
    objects (their evidence is left out)."""
    last_hash: dict[str, str] = {}
    last_length: dict[str, int] = {}
    details: dict[int, dict | None] = {}
    seals: dict[str, str] = {}
    unreadable = []
    for run in runlog.runs(db):
        files, counts = _json_object(run["files"]), _json_object(run["counts"])
        if files is None or counts is None:
            message = f"run {run['run_id']}'s record of its files and counts is not readable"
            unreadable.append(Difference("run_log", message))
        last_hash.update(files or {})
        details[run["run_id"]] = runlog.details_of(run)
        lengths = (details[run["run_id"]] or {}).get("lengths")
        last_length.update(lengths if isinstance(lengths, dict) else {})
        command = run["command"]
        if isinstance(command, str) and command.startswith("close ") and counts is not None:
            seals[command[6:]] = counts.get("seal_sha256", "")
    return RunLogEvidence(last_hash, last_length, details, seals, unreadable)


def _closed_month_records(ctx: Context) -> tuple[list, list[Difference]]:
    """The store's closed months; a record whose files are not a JSON object is reported
    and kept with no files (so each of its sealed files differs from it)."""
    try:
        records = queries.closed_month_records(ctx.db)
    except (TypeError, ValueError) as error:
        message = f"the store's record of the closed months is not readable: {error}"
        months = queries.closed_months(ctx.db)
        return [queries.ClosedMonth(month, {}, None) for month in months], [
            Difference("seals", message)
        ]
    differences = []
    for index, record in enumerate(records):
        if not isinstance(record.files, dict):
            message = f"the store's record of the files of {record.month} is not readable"
            differences.append(Difference("seals", message, found=repr(record.files)))
            records[index] = record._replace(files={})
    return records, differences


def _closed_entry_file(month) -> str | None:
    """The GL file that holds the ``closed`` entry of ``month`` (None if it is no month)."""
    try:
        return layout.gl_month_path(dates.month_of(dates.first_day_after_month(month)))
    except (TypeError, ValueError):
        return None


def _sealed_flag_differences(ctx: Context, records) -> list[Difference]:
    """The files the store marks sealed are exactly those of its closed months' records."""
    recorded = queries.recorded_files(ctx.db)
    in_records = {path for record in records for path in record.files} - {layout.RULES_NAME}
    marked = {path for path, file in recorded.items() if file.sealed}
    differences = []
    for path in sorted(in_records - marked, key=str):
        message = "file of a closed month is not marked sealed in the store"
        differences.append(Difference("seals", message, str(path)))
    for path in sorted(marked - in_records, key=str):
        message = "file marked sealed in the store is in no closed month's record"
        differences.append(Difference("seals", message, str(path)))
    return differences


def _sealed_file_differences(record, on_disk: dict[str, str], last_hash: dict[str, str]):
    differences = []
    for path in sorted(set(record.files) | set(on_disk)):
        found = on_disk.get(path, "missing")
        for source, expected in (
            ("the store's record of the seal", record.files.get(path, "missing")),
            ("the run log", last_hash.get(path, "missing")),
        ):
            if path == layout.RULES_NAME:
                continue  # the rules file of the month: checked against its close run
            if expected != found:
                message = f"sealed file of {record.month} differs from {source}"
                differences.append(Difference("seals", message, path, None, None, expected, found))
    return differences


def _sealed_rules_differences(ctx: Context, record, on_disk: dict[str, str]) -> list[Difference]:
    """A month closed by version 3 or later is sealed with the rules file it was posted
    under: the one its close run recorded, a text the store keeps (the file on disk may
    have changed since, by a later post's rules change)."""
    sealed = record.files.get(layout.RULES_NAME)
    if sealed is None:
        return []  # closed before seals covered the rules
    on_disk[layout.RULES_NAME] = sealed
    details = ctx.run_log.details.get(record.run_id) or {}
    differences = []
    if details.get("rules_sha256") != sealed:
        message = f"the rules sealed with {record.month} are not those its close run recorded"
        differences.append(Difference("seals", message, layout.RULES_NAME, None, None,
                                      str(details.get("rules_sha256")), sealed))  # fmt: skip
    if queries.rules_text(ctx.db, sealed) is None:
        message = f"the rules sealed with {record.month} are not kept in the store"
        differences.append(Difference("seals", message, layout.RULES_NAME))
    return differences


def check_seals(ctx: Context) -> list[Difference]:
    """Every closed month's seal, recomputed from the files on disk and chained, equals the
    GL's ``closed`` entry, the store and the run log; and the kept seal, if given."""
    records, differences = _closed_month_records(ctx)
    last_hash, run_seals = ctx.run_log.last_hash, ctx.run_log.seals
    gl_seals = _closed_entries(ctx)
    disk = sorted(ctx.walk.sizes)
    previous, recomputed = GENESIS_SEAL, []
    for record in records:
        on_disk = {
            path: confined.sha256(ctx.books_dir, path)
            for path in disk
            if layout.month_of_path(path) == record.month
        }
        differences += _sealed_file_differences(record, on_disk, last_hash)
        differences += _sealed_rules_differences(ctx, record, on_disk)
        previous = seal = month_seal(previous, on_disk)
        recomputed.append(seal)
        where = _closed_entry_file(record.month)
        for source, expected in (
            ("the GL's closed entry", gl_seals.get(record.month, "missing")),
            ("the run log", run_seals.get(record.month, "missing")),
        ):
            if expected != seal:
                message = f"seal of {record.month} recomputed from the files differs from {source}"
                differences.append(Difference("seals", message, where, None, None, expected, seal))
    # A month the GL or the run log says is closed but the store does not (its record was
    # deleted): the loop above never sees it.
    closed_in_store = {record.month for record in records}
    for source, seals in (("the GL's closed entries", gl_seals), ("the run log", run_seals)):
        for month in sorted(set(seals) - closed_in_store):
            message = f"{month} is closed in {source} but not in the store"
            where = _closed_entry_file(month)
            found = "missing"
            differences.append(Difference("seals", message, where, None, None, seals[month], found))
    differences += _sealed_flag_differences(ctx, records)
    if ctx.kept_seal is not None and ctx.kept_seal not in recomputed:
        message = "the kept seal matches no closed month's seal recomputed from the files"
        latest = recomputed[-1] if recomputed else "no month closed"
        differences.append(Difference("seals", message, None, None, None, ctx.kept_seal, latest))
    return differences


def _whole_copies(blocks, sha256: str) -> str | None:
    """None if the blocks, decompressed in order, are the input whose SHA-256 is ``sha256``
    (or several whole copies of it, one after the other: an engine before the one that made
    an input read once stored the same bytes again when they came by another route); else
    the hash of what is left over."""
    digest, whole = hashlib.sha256(), False
    for _, _, data in blocks:
        digest.update(zlib.decompress(data))
        whole = digest.hexdigest() == sha256
        if whole:
            digest = hashlib.sha256()
    return None if whole else digest.hexdigest()


def check_inputs(ctx: Context) -> list[Difference]:
    """The store holds every input file it read, byte for byte: its blocks, decompressed in
    order, hash to the input's SHA-256 (the run log's), and every event points into them."""
    differences = []
    for sha256, blocks in itertools.groupby(queries.input_blocks(ctx.db), key=lambda b: b[0]):
        if not sha256:
            continue  # lines kept by a store upgraded from schema 3: no whole file to hash
        try:
            found = _whole_copies(blocks, sha256)
        except zlib.error as error:
            message = f"an input file's stored block does not decompress: {error}"
            differences.append(Difference("inputs", message, expected=sha256))
            continue
        if found is not None:
            message = "the input file's stored bytes do not hash to its SHA-256"
            differences.append(Difference("inputs", message, None, None, None, sha256, found))
    if queries.get_meta(ctx.db, "upgraded_from_3") is None:
        for sha256 in queries.inputs_without_blocks(ctx.db):
            message = "an input file read by a run is not in the store"
            differences.append(Difference("inputs", message, expected=sha256))
    for event_id in queries.events_without_lines(ctx.db):
        message = f"event {event_id}: its line is not in the stored input"
        differences.append(Difference("inputs", message))
    return differences


def check_store(ctx: Context) -> list[Difference]:
    """The store is the engine's own: its pages are sound (``quick_check``) and its schema is
    the engine's (every check below reads base tables with the engine's own SQL)."""
    differences = [
        Difference("store_schema", f"the store's {line}")
        for line in schema_differences(ctx.db.conn)
    ]
    problems = [row[0] for row in ctx.db.execute("PRAGMA quick_check(20)")]
    if problems != ["ok"]:
        differences += [Difference("store_pages", f"the store is damaged: {p}") for p in problems]
    return differences


# The checks, in the order they run and report.
CHECKS = (
    check_store,
    check_file_hashes,
    check_run_chain,
    check_rows,
    check_seals,
    check_inputs,
    check_journals,
    check_rating,
)


# What a check meets when someone wrote into the store what no run writes (a value its SQL
# cannot read, JSON that is none, a block that does not decompress).
UNREADABLE = (sqlite3.DatabaseError, ValueError, zlib.error)


def _run(check: Callable[[Context], list[Difference]], ctx: Context) -> list[Difference]:
    """One check's differences; a store it cannot read is a difference of its own, so the
    other checks still run and reconcile never ends in a traceback over hostile rows."""
    try:
        return check(ctx)
    except UNREADABLE as error:
        name = check.__name__.removeprefix("check_")
        return [Difference(name, f"the store holds what the check cannot read: {error}")]


def with_replay(report: Report, replayed) -> Report:
    """A report with what ``reconcile --replay`` found (:mod:`ledger_engine.replay`)."""
    found = tuple(Difference(check, message, file) for check, message, file in replayed.differences)
    checked = {**report.checked, "replayed_runs": replayed.runs}
    return report._replace(differences=report.differences + found, checked=checked)


@contextlib.contextmanager
def _store(books_dir: Path, lock: bool) -> Iterator[sqlite_utils.Database]:
    """The store, read-only, schema unchecked (the checks report it), under the books'
    shared lock unless the caller holds their lock already (``close``)."""
    store_db.require_store(books_dir)
    holding = locked(books_dir, shared=True) if lock else contextlib.nullcontext()
    with holding, store_db.store_errors():
        db = store_db.open_store(books_dir, read_only=True, check_schema=False)
        try:
            yield db
        finally:
            db.close()


def reconcile(books_dir: Path, kept_seal: str | None = None, lock: bool = True) -> Report:
    """Runs every check of SPEC §6 on the books (holding their lock); never modifies them.

    Args:
        books_dir: the books.
        kept_seal: a month's seal an auditor kept outside the books (``close`` prints it);
            it must be one of the seals recomputed from the files.
        lock: take the books' shared lock (False: the caller holds their lock, as ``close``
            does while it checks).
    """
    with _store(books_dir, lock) as db:
        # The GL is loaded by two checks; keep one journal in memory, never all subledgers.
        load = functools.lru_cache(maxsize=1)(functools.partial(_load, books_dir=books_dir))
        gl = journals.gl_root(queries.books_settings(db).currency)
        ctx = Context(books_dir, db, load, _run_log_evidence(db), walk_books(books_dir), gl,
                      kept_seal, [])  # fmt: skip
        differences = [difference for check in CHECKS for difference in _run(check, ctx)]
        counts = queries.counts(db)
        checked = {
            "journal_files": counts["journal_files"],
            "subledgers": len(subledger_roots(books_dir, db)),
            "runs": counts["runs"],
            "conversations": counts["conversations"],
            "sealed_files": counts["sealed_files"],
        }
    return Report(tuple(differences), checked, tuple(ctx.pending))
