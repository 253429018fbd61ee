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

import functools
import hashlib
import itertools
import json
import os
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from ledger_engine import commit
from ledger_engine.books import layout
from ledger_engine.books.files import journal_files_on_disk, sha256_file
from ledger_engine.core import accounts, dates
from ledger_engine.core.money import exact_cents, format_cents
from ledger_engine.core.seal import GENESIS_SEAL, month_seal
from ledger_engine.store import db as store_db
from ledger_engine.store import queries


class Difference(NamedTuple):
    check: str
    message: str
    file: str | None = None
    account: str | None = None
    day: str | None = None
    expected: str | None = None
    found: str | None = None


class Report(NamedTuple):
    differences: tuple[Difference, ...]
    checked: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.differences

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "differences": [d._asdict() for d in self.differences],
        }


class RunLogEvidence(NamedTuple):
    """What the hash-chained run log says, read once for every check that needs it."""

    last_hash: dict[str, str]  # path -> the last SHA-256 a run recorded for it
    seals: dict[str, str]  # month -> the seal its close run recorded
    unreadable: list  # Differences: records whose files or counts are not JSON objects


class Context(NamedTuple):
    """What every check reads: the books, the store, a loader of journals, the run log's
    evidence, and the seal an auditor kept outside the books (if given)."""

    books_dir: Path
    db: sqlite_utils.Database
    load: Callable[[Path], tuple[list, list[Difference]]]
    run_log: RunLogEvidence
    kept_seal: str | None = None


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
    path = books_dir / relative
    what = "sealed file" if recorded.sealed else "journal file"
    if not path.exists():
        return Difference("files", f"{what} is missing", relative)
    if not path.is_file():  # a directory, a device: hashing it would raise or never end
        return Difference("files", f"{what} is not a regular file", relative)
    size = path.stat().st_size
    if size > recorded.length and sha256_file(path, recorded.length) == recorded.sha256:
        message = (
            "sealed file: bytes past the seal (post and close refuse until they are removed)"
            if recorded.sealed
            else "uncommitted tail left by an interrupted run (the next post moves it to "
            "recovered/)"
        )
        return Difference(
            "files",
            message,
            relative,
            expected=str(recorded.length),
            found=str(size),
        )
    found = sha256_file(path)
    if found != recorded.sha256:
        message = f"{what} changed since it was written"
        return Difference("files", message, relative, expected=recorded.sha256, found=found)
    return None


def check_file_hashes(ctx: Context) -> list[Difference]:
    """Every journal file is byte-for-byte what the store recorded (sealed ones included)."""
    books_dir = ctx.books_dir
    recorded = queries.recorded_files(ctx.db)
    differences = []
    for relative, file in sorted(recorded.items(), key=lambda item: str(item[0])):
        if not _readable_record(relative, file):
            message = "the store's record of the journal file is not readable"
            differences.append(Difference("files", message, str(relative), found=repr(file)))
        elif (difference := _file_difference(books_dir, relative, file)) is not None:
            differences.append(difference)
    for relative in journal_files_on_disk(books_dir):
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
    for run in queries.runs(ctx.db):
        # A blob written into a record cannot be hashed as JSON: a break, not a crash.
        readable = not any(isinstance(value, bytes) for value in run.values())
        if run["prev_hash"] != previous or not readable or queries.run_hash(run) != run["hash"]:
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
    return differences


def _load(path: Path, books_dir: Path) -> tuple[list, list[Difference]]:
    # Imported here, not at the top: every command's start-up would pay for beancount
    # (60 ms, a tenth of a no-op night), and only reconcile loads journals.
    from beancount import loader

    # beancount writes a .picklecache beside a journal that loads slowly; not in the books.
    os.environ.setdefault("BEANCOUNT_DISABLE_LOAD_CACHE", "1")
    try:
        entries, errors, _ = loader.load_file(str(path))
    except OSError as error:  # beancount raises on an include it cannot open (a directory)
        file = _relative(error.filename or str(path), books_dir)
        return [], [Difference("load", f"cannot read the file: {error.strerror}", file)]
    return entries, [
        Difference(
            "load",
            str(error.message).splitlines()[0],
            _relative((error.source or {}).get("filename") or str(path), books_dir),
        )
        for error in errors
    ]


def _relative(filename: str, books_dir: Path) -> str:
    """A file named by beancount, relative to the books (as every other check names it)."""
    try:
        return Path(filename).resolve().relative_to(Path(books_dir).resolve()).as_posix()
    except ValueError:
        return filename  # not under the books (an include pointing elsewhere)


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
        if (books_dir / layout.customer_root_path(segment)).exists()
    ]


def _check_subledger(ctx: Context, customer: str, segment: str, summed: Sums):
    db = ctx.db
    entries, differences = ctx.load(ctx.books_dir / layout.customer_root_path(segment))
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
    gl_entries, differences = ctx.load(ctx.books_dir / layout.LEDGER_NAME)
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
    """Accepted usage is rated, rated conversations are posted once, lots match wallets."""
    db = ctx.db
    differences = [
        Difference("rating", f"accepted usage event {event_id} is not rated")
        for event_id in queries.unrated_usage_events(db)
    ]
    for row in queries.usage_vs_postings(db):
        differences.append(
            Difference(
                "usage_vs_postings",
                f"rated and posted usage of {row[0]} on {row[1]} differ",
                day=row[1],
                expected=json.dumps(row[2::2]),
                found=json.dumps(row[3::2]),
            )
        )
    for customer, wallet, lots, _ in queries.wallet_balances(db):
        if wallet != lots:
            differences.append(
                Difference(
                    "lots_vs_wallet",
                    f"lots of {customer} do not sum to its wallet",
                    expected=_cents(wallet),
                    found=_cents(lots),
                )
            )
    return differences


def _closed_entries(ctx: Context) -> dict[str, str]:
    """Month -> the seal in its ``custom "closed"`` entry of the GL."""
    entries, _ = ctx.load(ctx.books_dir / layout.LEDGER_NAME)
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
    seals: dict[str, str] = {}
    unreadable = []
    for run in queries.runs(db):
        files, counts = _json_object(run["files"]), _json_object(run["counts"])
        if files is None or counts is None:
            message = f"run {run['run_id']}'s record of its files and counts is not readable"
            unreadable.append(Difference("run_log", message))
        last_hash.update(files or {})
        command = run["command"]
        if isinstance(command, str) and command.startswith("close ") and counts is not None:
            seals[command[6:]] = counts.get("seal_sha256", "")
    return RunLogEvidence(last_hash, seals, unreadable)


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
    in_records = {path for record in records for path in record.files}
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
            if expected != found:
                message = f"sealed file of {record.month} differs from {source}"
                differences.append(Difference("seals", message, path, None, None, expected, found))
    return differences


def check_seals(ctx: Context) -> list[Difference]:
    """Every closed month's seal, recomputed from the files on disk and chained, equals the
    GL's ``closed`` entry, the store and the run log; and the kept seal, if given."""
    records, differences = _closed_month_records(ctx)
    last_hash, run_seals = ctx.run_log.last_hash, ctx.run_log.seals
    gl_seals = _closed_entries(ctx)
    disk = journal_files_on_disk(ctx.books_dir)
    previous, recomputed = GENESIS_SEAL, []
    for record in records:
        on_disk = {
            path: sha256_file(ctx.books_dir / path)
            if (ctx.books_dir / path).is_file()
            else "not a regular file"
            for path in disk
            if layout.month_of_path(path) == record.month
        }
        differences += _sealed_file_differences(record, on_disk, last_hash)
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


# The checks, in the order they run and report.
CHECKS = (
    check_file_hashes,
    check_run_chain,
    check_seals,
    check_inputs,
    check_journals,
    check_rating,
)


def reconcile(books_dir: Path, kept_seal: str | None = None) -> Report:
    """Runs every check of SPEC §6 on the books (holding their lock); never modifies them.

    Args:
        books_dir: the books.
        kept_seal: a month's seal an auditor kept outside the books (``close`` prints it);
            it must be one of the seals recomputed from the files.
    """
    with commit.reading(books_dir) as db:
        store_db.ensure_views(db)
        # The GL is loaded by two checks; keep one journal in memory, never all subledgers.
        load = functools.lru_cache(maxsize=1)(functools.partial(_load, books_dir=books_dir))
        ctx = Context(books_dir, db, load, _run_log_evidence(db), kept_seal)
        differences = [difference for check in CHECKS for difference in check(ctx)]
        counts = queries.counts(db)
        checked = {
            "journal_files": counts["journal_files"],
            "subledgers": len(subledger_roots(books_dir, db)),
            "runs": counts["runs"],
            "conversations": counts["conversations"],
            "sealed_files": counts["sealed_files"],
        }
    return Report(tuple(differences), checked)
