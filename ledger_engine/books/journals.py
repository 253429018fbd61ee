"""Loading journals someone else may have written, without running their code (SPEC v3 §6).

``beancount.loader.load_file`` runs every ``plugin`` line of a root (any module on the path,
``option "insert_pythonpath"`` puts the books on it) and follows every ``include`` (a device,
a FIFO, a file outside the books).  So no journal reaches beancount's loading stages before
its directives are checked here: every file is read once, inside the books, without
following a link (:mod:`ledger_engine.books.confined`), and parsed with
``beancount.parser`` alone, which runs nothing and follows nothing.  The root's ``option``
and ``plugin`` lines must give exactly the options the engine writes, its ``include`` lines
must name the engine's own files that exist in the books, and an included file may hold no
``option``, ``plugin`` or ``include`` line at all.  Then beancount's own booking, the
engine's two plugins and beancount's validation run on the parsed entries, as
``load_file`` would run them.  When anything is refused, nothing runs: the parsed entries
come back as they are, with what was refused, so a report can still be made of them.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import NamedTuple

from ledger_engine.books import confined, layout, text
from ledger_engine.core.errors import BooksDamaged, BooksTampered
from ledger_engine.core.model import JournalFile

# Options the parser fills in from what it read rather than from an option line.
_PARSED_KEYS = frozenset({"filename", "include", "input_hash", "dcontext", "commodities"})
_GL_INCLUDE = re.compile(r"accounts\.beancount|gl/(?P<year>[0-9]{4})/(?P=year)-[0-9]{2}\.beancount")
_CUSTOMER_INCLUDE = re.compile(r"[0-9]{4}-[0-9]{2}\.beancount")


class Loaded(NamedTuple):
    """A journal as loaded: its entries, beancount's errors (file relative to the books,
    message), and what was refused before anything ran (file, why; empty when it loaded)."""

    entries: list
    errors: list[tuple[str, str]]
    refused: list[tuple[str, str]]


class RootSpec(NamedTuple):
    """What a root the engine wrote holds: its title and currency (so its options), and
    the include lines it may have."""

    relative: str  # the root's path in the books
    title: str
    currency: str
    includes: re.Pattern  # an include the engine writes (relative to the root's folder)


def gl_root(currency: str) -> RootSpec:
    return RootSpec(layout.LEDGER_NAME, text.GL_TITLE, currency, _GL_INCLUDE)


def customer_root(customer: str, segment: str, currency: str) -> RootSpec:
    return RootSpec(
        layout.customer_root_path(segment), text.customer_title(customer), currency,
        _CUSTOMER_INCLUDE,
    )  # fmt: skip


def _parse(data: bytes, filename: str):
    from beancount.parser import parser

    return parser.parse_string(data, report_filename=filename)


@functools.lru_cache(maxsize=64)
def _options_of(header: bytes) -> dict:
    """The options of a text the engine writes (read only: shared between calls)."""
    return _parse(header, "<expected>")[2]


def _option_differences(found: dict, expected: dict) -> list[str]:
    keys = (set(found) | set(expected)) - _PARSED_KEYS
    return sorted(key for key in keys if found.get(key) != expected.get(key))


def _root_refusals(spec: RootSpec, options: dict) -> list[str]:
    """Why a root's directives are not the engine's (empty: they are)."""
    expected = _options_of(text.root_header(spec.title, spec.currency).encode())
    why = [f"option {key!r} is not the engine's" for key in _option_differences(options, expected)]
    if options["plugin"] != expected["plugin"]:
        names = ", ".join(name for name, _ in options["plugin"])
        why.append(f"plugins are not the engine's: {names}")
    includes = options["include"]
    for include in includes:
        if not isinstance(include, str) or not spec.includes.fullmatch(include):
            why.append(f"include {include!r} is not a journal file the engine writes")
    if len(set(includes)) != len(includes):
        why.append("a file is included twice")
    return why


def _included_refusals(options: dict) -> list[str]:
    empty = _options_of(b"")
    why = [f"option {key!r} in an included file" for key in _option_differences(options, empty)]
    if options["plugin"]:
        why.append("plugin in an included file")
    if options["include"]:
        why.append(f"include {options['include'][0]!r} in an included file")
    return why


def _read(books_dir: Path, relative: str, refused: list, missing: list) -> bytes | None:
    """A file's bytes; None when it is refused (a link, no regular file) or cannot be read
    (an error of the load, as beancount's loader reports a missing include)."""
    try:
        return confined.read_bytes(books_dir, relative)
    except BooksTampered as error:
        refused.append((relative, str(error)))
    except OSError as error:
        missing.append((relative, f"cannot read {relative}: {error.strerror or error}"))
    return None


def load(books_dir: Path, spec: RootSpec) -> Loaded:
    """Loads the journal of one root the engine wrote (see the module docstring).

    Args:
        books_dir: the books.
        spec: the root and what it may hold.

    Returns:
        Its entries and errors, or, when its directives are not the engine's, its parsed
        entries and what was refused (nothing of beancount's loading ran then).
    """
    refused: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []
    data = _read(books_dir, spec.relative, refused, missing)
    if data is None:
        return Loaded([], missing, refused)
    folder = spec.relative.rpartition("/")[0]
    entries, errors, options = _parse(data, str(books_dir / spec.relative))
    refused += [(spec.relative, why) for why in _root_refusals(spec, options)]
    others = []
    for include in options["include"] if not refused else ():
        relative = f"{folder}/{include}" if folder else include
        data = _read(books_dir, relative, refused, missing)
        if data is None:
            continue
        more, more_errors, more_options = _parse(data, str(books_dir / relative))
        refused += [(relative, why) for why in _included_refusals(more_options)]
        entries += more
        errors += more_errors
        others.append(more_options)
    if refused:
        return Loaded(entries, missing + _errors(errors, books_dir), refused)
    entries, errors = _book_and_validate(entries, errors, options, others)
    return Loaded(entries, missing + _errors(errors, books_dir), [])


def _book_and_validate(entries: list, errors: list, options: dict, others: list):
    """What ``beancount.loader`` does after parsing: sort, book, the root's plugins (the
    engine's two, checked above), validate."""
    from beancount import loader
    from beancount.core import data
    from beancount.ops import validation
    from beancount.parser import booking

    options = loader.aggregate_options_map(options, others)
    entries.sort(key=data.entry_sortkey)
    entries, balance_errors = booking.book(entries, options)
    entries, errors = loader.run_transformations(entries, [*errors, *balance_errors], options, None)
    errors = [*errors, *validation.validate(entries, options, None, None)]
    return entries, errors


def _errors(errors: list, books_dir: Path) -> list[tuple[str, str]]:
    return [
        (
            relative_name((error.source or {}).get("filename") or "", books_dir),
            str(error.message).splitlines()[0] if str(error.message) else type(error).__name__,
        )
        for error in errors
    ]


def relative_name(filename: str, books_dir: Path) -> str:
    """A file named by beancount, relative to the books (as every other check names it)."""
    try:
        return Path(filename).relative_to(books_dir).as_posix()
    except ValueError:
        return filename


def transaction_meta(books_dir: Path, relative: str, recorded: JournalFile) -> dict[str, dict]:
    """The metadata of every transaction in a journal file's committed bytes, by its ``txn``.

    Only the bytes a run committed are read (a torn tail is no run's), and only once they
    hash to the SHA-256 the store recorded: metadata read from a file edited by hand would
    vouch for what no run wrote.  Parsed with ``beancount.parser`` alone (nothing runs).

    Args:
        books_dir: the books.
        relative: the file, relative to the books.
        recorded: what the store recorded of it.

    Returns:
        Transaction id -> its metadata (beancount's values: text, numbers, days).

    Raises:
        BooksDamaged: the file is missing or shorter than recorded.
        BooksTampered: its committed bytes are not what the store recorded (or it is a link).
    """
    try:
        data = confined.read_bytes(books_dir, relative)[: recorded.length]
    except OSError as error:
        raise BooksDamaged(f"cannot read {relative}: {error.strerror or error}") from None
    if len(data) < recorded.length:
        raise BooksDamaged(f"{relative} is shorter than the store recorded; run reconcile")
    if hashlib.sha256(data).hexdigest() != recorded.sha256:
        raise BooksTampered(f"{relative} differs from what the store recorded; run reconcile")
    entries, _, _ = _parse(data, relative)
    return {
        entry.meta["txn"]: entry.meta
        for entry in entries
        if hasattr(entry, "postings") and isinstance(entry.meta.get("txn"), str)
    }
