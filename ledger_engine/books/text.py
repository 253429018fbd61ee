"""All Beancount syntax the engine writes, one function per directive, with f-strings.

Root headers, ``open``, ``include``, transactions (subledger entries and GL summaries),
``balance`` assertions, the ``custom "closed"`` entry and ``query`` directives: no other
module writes Beancount text.  Names are validated once here (metadata keys, links) instead
of going through beancount's ``format_entry`` for every entry, which measured ten times
slower.  Tests re-parse what this module writes with beancount's own loader.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

from ledger_engine.books.layout import (
    ACCOUNTS_NAME,
    CUSTOMER_QUERIES,
    FAVA_EXTENSION,
    FAVA_INVERT_OPTION,
    FAVA_SIDEBAR_QUERIES_OPTION,
    QUERIES,
)
from ledger_engine.core import accounts
from ledger_engine.core.errors import BooksWriteError
from ledger_engine.core.model import GlSummary, NewEntry
from ledger_engine.core.money import format_cents

OPEN_DATE = datetime.date(1970, 1, 1)  # every account is open before any event can be
META_KEY_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_-]+$")
LINK_PATTERN = re.compile(r"^[A-Za-z0-9_/.-]+$")
ROOT_PLUGINS = ("beancount.plugins.check_commodity", "beancount.plugins.leafonly")


# The control characters beancount's lexer unescapes: \n \r \t \f \b.  It has no escape for
# the others (NUL, BEL, ESC, DEL, ...): they would have to be written raw, and a journal never
# holds one (a terminal showing the file, or a tool reading it, would act on them).
_STRING_ESCAPES = str.maketrans(
    {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "\b": "\\b"}
)
_UNESCAPABLE = re.compile(r"[\x00-\x07\x0b\x0e-\x1f\x7f]")


def quote(text: str) -> str:
    """A Beancount string literal on one line: backslashes, double quotes and the control
    characters beancount unescapes are escaped.

    Raises:
        BooksWriteError: ``text`` holds a control character beancount cannot escape.  The
            schema checks reject control characters in events, so only a store or books
            written by something else can bring one; the run is then undone.
    """
    if text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'  # nearly every string: nothing to escape
    unescapable = _UNESCAPABLE.search(text)
    if unescapable:
        code = f"U+{ord(unescapable.group()):04X}"
        raise BooksWriteError(
            f"a journal string cannot hold the control character {code}: {text[:64]!r}"
        )
    return '"' + text.translate(_STRING_ESCAPES) + '"'


def meta_value(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return quote(str(value))


def meta_lines(meta: Iterable[tuple[str, object]], indent: str = "  ") -> list[str]:
    lines = []
    for key, value in meta:
        assert META_KEY_PATTERN.match(key), f"bad metadata key {key!r}"
        lines.append(f"{indent}{key}: {meta_value(value)}")
    return lines


def root_header(title: str, currency: str) -> str:
    lines = [
        f"; {title}",
        "; Written by ledger-engine. Append-only: never edit by hand (reconcile detects it).",
        f'option "title" {quote(title)}',
        f'option "operating_currency" "{currency}"',
        'option "tolerance_multiplier" "0"',
        *(f'plugin "{plugin}"' for plugin in ROOT_PLUGINS),
        "",
        f"{OPEN_DATE} commodity {currency}",
        "",
    ]
    return "\n".join(lines) + "\n"


def fava_options(queries: dict[str, str]) -> str:
    """Fava's options of a root: revenue positive, all of its queries in the sidebar."""
    options = [FAVA_INVERT_OPTION, (FAVA_SIDEBAR_QUERIES_OPTION, str(len(queries)))]
    return "".join(
        f'{OPEN_DATE} custom "fava-option" {quote(name)} {quote(value)}\n'
        for name, value in options
    )


def queries_text(queries: dict[str, str]) -> str:
    return "".join(query_directive(name, sql) for name, sql in queries.items())


GL_TITLE = "General ledger (ledger-engine)"


def customer_title(customer: str) -> str:
    return f"Subledger of customer {customer}"


def ledger_root(currency: str) -> str:
    """The GL root as ``init`` writes it: options, the accounts file, Fava, the queries."""
    return (
        root_header(GL_TITLE, currency)
        + include_line(ACCOUNTS_NAME)
        + "\n"
        + fava_options(QUERIES)
        + f'{OPEN_DATE} custom "fava-extension" {quote(FAVA_EXTENSION)}\n'
        + queries_text(QUERIES)
    )


def open_directive(account: str, currency: str, meta: Iterable[tuple[str, object]] = ()) -> str:
    return "\n".join([f"{OPEN_DATE} open {account} {currency}", *meta_lines(meta)]) + "\n"


def customer_root(customer: str, segment: str, currency: str) -> str:
    """The root of one customer's subledger: options, plugins, its open directives."""
    parts = [root_header(customer_title(customer), currency)]
    parts.append(
        open_directive(
            accounts.wallet_account(segment), currency, [("customer", customer), ("role", "wallet")]
        )
    )
    parts.append(
        open_directive(
            accounts.receivable_account(segment),
            currency,
            [("customer", customer), ("role", "receivable")],
        )
    )
    parts.extend(open_directive(account, currency) for account in accounts.SHARED_ACCOUNTS)
    parts.append("\n" + fava_options(CUSTOMER_QUERIES) + queries_text(CUSTOMER_QUERIES))
    return "".join(parts) + "\n"


def include_line(relative_path: str) -> str:
    return f"include {quote(relative_path)}\n"


def posting_line(account: str, cents: int, currency: str) -> str:
    return f"  {account}  {format_cents(cents)} {currency}"


def transaction_text(
    day: datetime.date,
    payee: str,
    narration: str,
    links: Iterable[str],
    meta: Iterable[tuple[str, object]],
    postings: Iterable[tuple[str, int]],
    currency: str,
) -> str:
    links = list(links)
    for link in links:
        assert LINK_PATTERN.match(link), f"bad link {link!r}"
    link_text = "".join(f" ^{link}" for link in links)
    lines = [f"{day} * {quote(payee)} {quote(narration)}{link_text}", *meta_lines(meta)]
    lines.extend(posting_line(account, cents, currency) for account, cents in postings)
    return "\n".join(lines) + "\n\n"


def subledger_text(entry: NewEntry, gl_link: str | None, currency: str) -> str:
    """A customer's transaction: its id, what it corrects, why it is late, its own meta."""
    meta: list[tuple[str, object]] = [("txn", entry.txn_id)]
    if entry.corrects:
        meta.append(("corrects", entry.corrects))
    if entry.moved_from_closed_month:
        meta.extend([("late", True), ("original-day", entry.orig_day)])
    elif entry.for_already_posted_day:
        meta.append(("late-event", True))
    meta.extend(entry.meta)
    links = [entry.link] + ([gl_link] if gl_link else [])
    narration = entry.narration if entry.corrects is None else f"Correction: {entry.narration}"
    return transaction_text(
        entry.effective_day, entry.customer, narration, links, meta, entry.postings, currency
    )


GL_PAYEE = "General ledger"


def gl_summary_text(summary: GlSummary, currency: str) -> str:
    """A day's GL summary of one kind of movement, linked to every entry it sums."""
    entries = summary.entries
    meta: list[tuple[str, object]] = [
        ("txn", summary.link),
        ("kind", summary.movement),
        ("run", summary.run_id),
        ("subledger-transactions", len(entries)),
        ("customers", len({entry.customer for entry in entries})),
    ]
    moved = [entry for entry in entries if entry.moved_from_closed_month]
    if moved:
        # Corrections of closed months, dated here; their own days are in the subledger.
        meta.append(("late-transactions", len(moved)))
        meta.append(("original-days", " ".join(sorted({str(e.orig_day) for e in moved}))))
    narration = f"Daily {summary.movement} summary"
    return transaction_text(
        summary.day, GL_PAYEE, narration, [summary.link], meta, summary.postings, currency
    )


def gl_accounts_text(currency: str) -> str:
    return "".join(open_directive(account, currency) for account in accounts.GL_ACCOUNTS)


def balance_assertions(
    day: datetime.date, names: Iterable[str], totals: dict[str, int], currency: str
) -> str:
    """``balance`` directives for ``names`` on ``day`` (an account not in totals is zero)."""
    lines = [
        f"{day} balance {name}  {format_cents(totals.get(name, 0))} {currency}\n" for name in names
    ]
    return "".join(lines) + "\n"


def closed_entry(day: datetime.date, month: str, meta: Iterable[tuple[str, object]]) -> str:
    """The ``custom "closed"`` entry that records a month's seal in the GL."""
    return "\n".join([f'{day} custom "closed" {quote(month)}', *meta_lines(meta)]) + "\n\n"


def query_directive(name: str, sql: str) -> str:
    return f"{OPEN_DATE} query {quote(name)} {quote(sql)}\n"
