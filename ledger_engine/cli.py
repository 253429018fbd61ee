"""The command line (SPEC §7).  Thin: parse options, call one command, print, exit.

Expected failures arrive as :class:`~ledger_engine.core.errors.LedgerError` and leave as one
``Error: ...`` line with the error's exit code; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

from ledger_engine import close as close_command
from ledger_engine import commit, finance, reports
from ledger_engine import post as post_command
from ledger_engine import reconcile as reconcile_command
from ledger_engine import replay as replay_command
from ledger_engine import runs as runs_command
from ledger_engine import trace as trace_command
from ledger_engine.core import dates
from ledger_engine.core.errors import LedgerError
from ledger_engine.rules import DEFAULT_CATALOGUE_PATH, parse_rules

EXIT_DIFFERENCES = 1
# What reconcile --replay runs again: the commands themselves, quietly, on scratch books.
REPLAY_COMMANDS = replay_command.Commands(
    post=lambda books, paths, through, full, reprice_from: post_command.post(
        books, paths, through, full=full, reprice_from=reprice_from
    ),
    close=close_command.close_month,
    init=commit.create_books,
)


def invocation() -> tuple[str, ...]:
    """The command line of this process (for the run log): the program, then its words."""
    return ("ledger-engine", *sys.argv[1:])


EXIT_STRICT_REJECTIONS = 3


# A day or month outside the books' calendar (1970-01-01 to 9998-12-31) is a bad value of
# its option, like one that is no day at all: click's usage error (exit 2), known before the
# books are opened, as every other option value the command line cannot take.


def _day(ctx, param, value):
    if value is None:
        return None
    try:
        return dates.parse_calendar_day(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _month(ctx, param, value):
    if value is None:
        return None
    try:
        dates.parse_calendar_month(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value


@contextlib.contextmanager
def expected_errors() -> Iterator[None]:
    """Turns a :class:`LedgerError` into click's one-line ``Error:`` with its exit code."""
    try:
        yield
    except LedgerError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        exception = click.ClickException(message)
        exception.exit_code = error.exit_code
        raise exception from error


books_argument = click.argument(
    "books_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path)
)

wait_option = click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for another run's lock (then exit 4).",
)


@click.group()
@click.version_option(package_name="ledger-engine")
def main():
    """Double-entry books (Beancount) for usage-based AI billing."""


@main.command()
@books_argument
@click.option("--currency", default="EUR", show_default=True, help="The books' currency.")
@click.option(
    "--timezone",
    "timezone",
    default="UTC",
    show_default=True,
    help="Timezone of booking days and months (IANA name).",
)
def init(books_dir: Path, currency: str, timezone: str):
    """Create empty books in DIR (which must be empty or not exist)."""
    if not currency.isalpha() or not currency.isupper() or not 2 <= len(currency) <= 10:
        raise click.BadParameter("must be an upper-case code like EUR", param_hint="--currency")
    with expected_errors():
        dates.load_zone(timezone)
        rules_text = DEFAULT_CATALOGUE_PATH.read_text(encoding="utf-8")
        parse_rules(rules_text)
        commit.create_books(books_dir, currency, timezone, rules_text)
    click.echo(f"Created books in {books_dir} ({currency}, {timezone}).")


class TerminalProgress:
    """A one-line progress display on stderr: events read, then customers posted."""

    REFRESH_SECONDS = 0.2

    def __init__(self) -> None:
        self.read = 0
        self.shown_at = 0.0
        self.phase = "read"

    def _show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.shown_at >= self.REFRESH_SECONDS:
            self.shown_at = now
            click.echo(f"\r{text}\x1b[K", nl=False, err=True)

    def lines(self, count: int) -> None:
        self.read += count
        self._show(f"events read: {self.read:,}")

    def customers(self, done: int, total: int) -> None:
        if self.phase == "read":
            self.phase = "customers"
            self._show(f"events read: {self.read:,}", force=True)
            click.echo("", err=True)
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        self._show(f"customers posted: [{bar}] {done:,}/{total:,}", force=done == total)

    def close(self) -> None:
        click.echo("", err=True)


def _progress(enabled: bool):
    if not enabled:
        return post_command.NO_PROGRESS, None
    display = TerminalProgress()
    return post_command.Progress(display.lines, display.customers), display


@main.command()
@books_argument
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--through",
    callback=_day,
    metavar="YYYY-MM-DD",
    help="Post every day up to and including this one (default: yesterday).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the counts.")
@click.option("--strict", is_flag=True, help="Exit 3 when any event was rejected.")
@click.option(
    "--full",
    is_flag=True,
    help="Derive every customer from its first event, not from its last checkpoint "
    "(the reference derivation; a repair). The books come out the same.",
)
@click.option(
    "--reprice-from",
    callback=_day,
    metavar="YYYY-MM-DD",
    help="Apply a changed rules.toml from this day (in an open month) on: those days are "
    "derived again under it, as corrections labelled with the new version.",
)
@click.option(
    "--allow-future",
    is_flag=True,
    help="Post a --through later than today (a future commitment or expiry, once posted, "
    "cannot be taken back).",
)
@wait_option
def post(
    books_dir: Path,
    files,
    through,
    as_json: bool,
    strict: bool,
    full: bool,
    reprice_from,
    allow_future: bool,
    wait_seconds: float,
):
    """Ingest event FILES (- for stdin) and post every day up to --through."""
    progress, display = _progress(not as_json and sys.stdout.isatty())
    try:
        with expected_errors():
            result = post_command.post(
                books_dir, files, through, progress, wait_seconds, full, invocation(),
                refuse_future=not allow_future, reprice_from=reprice_from,
            )  # fmt: skip
    finally:
        if display is not None:
            display.close()
    if as_json:
        click.echo(json.dumps(result.as_json(), sort_keys=True))
    else:
        for line in result.repaired:
            click.echo(f"Recovered: {line}")
        rejected = sum(result.rejected.values())
        click.echo(
            f"Run {result.run_id}: read {result.read}, accepted {result.accepted}, "
            f"duplicates {result.duplicates}, rejected {rejected}; posted through "
            f"{result.posted_through}, {result.transactions_written} transactions written."
        )
        for reason, count in result.rejected.items():
            click.echo(f"  rejected {reason}: {count}")
    if strict and result.rejected:
        sys.exit(EXIT_STRICT_REJECTIONS)


@main.command()
@books_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def rejections(books_dir: Path, as_json: bool):
    """Show the quarantined events and their reasons."""
    with expected_errors():
        rows = reports.list_rejections(books_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("No rejected events.")
    for row in rows:
        field = f" ({row['field']})" if row.get("field") else ""
        click.echo(
            f"{row['file']}:{row['line']}  {row['reason']}{field}  "
            f"{row['event_id'] or '-'}  {row['detail']}"
        )


@main.command()
@books_argument
@click.argument("customer")
@click.option("--month", callback=_month, metavar="YYYY-MM", help="Only this calendar month.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def transactions(books_dir: Path, customer: str, month: str | None, as_json: bool):
    """Show CUSTOMER's wallet history with the balance after each line."""
    with expected_errors():
        lines = reports.wallet_history(books_dir, customer, month)
    if as_json:
        click.echo(json.dumps(lines, indent=1))
        return
    if not lines:
        click.echo("No wallet movements.")
        return
    click.echo(f"{'date':<10}  {'type':<28}  {'amount':>10}  {'balance':>10}")
    for line in lines:
        click.echo(
            f"{line['date']:<10}  {line['type']:<28}  {line['amount']:>10}  {line['balance']:>10}"
        )


@main.command()
@books_argument
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--seal",
    "kept_seal",
    metavar="SHA256",
    help="A seal printed by close and kept outside the books: check the chain against it.",
)
@click.option(
    "--replay",
    is_flag=True,
    help="Also derive the whole books again from the stored inputs and rules, and compare "
    "them byte for byte with the journals and the store (slow: a run of every run).",
)
def reconcile(books_dir: Path, as_json: bool, kept_seal: str | None, replay: bool):
    """Check the books; exit 1 listing every difference found."""
    with expected_errors():
        report = reconcile_command.reconcile(books_dir, kept_seal)
        if replay:
            report = reconcile_command.with_replay(
                report, replay_command.replay(books_dir, REPLAY_COMMANDS)
            )
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=1))
    else:
        checked = ", ".join(
            f"{count} {name.replace('_', ' ')}" for name, count in report.checked.items()
        )
        click.echo(f"Checked {checked}.")
        for difference in report.differences:
            where = " ".join(
                part for part in (difference.file, difference.account, difference.day) if part
            )
            numbers = (
                f" (expected {difference.expected}, found {difference.found})"
                if difference.expected is not None
                else ""
            )
            click.echo(f"DIFFERENCE [{difference.check}] {where}: {difference.message}{numbers}")
        for pending in report.pending:
            click.echo(
                f"PENDING [{pending.check}] {pending.message}: corrections held back for "
                f"{pending.from_day} (a post through that day or later posts them)"
            )
        click.echo(
            "Books reconcile." if report.ok else f"{len(report.differences)} differences found."
        )
    if not report.ok:
        sys.exit(EXIT_DIFFERENCES)


@main.command()
@books_argument
@click.argument("name", type=click.Choice(sorted(finance.REPORTS)), metavar="NAME")
@click.option("--month", callback=_month, metavar="YYYY-MM", help="Only this calendar month.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def report(books_dir: Path, name: str, month: str | None, output_format: str):
    """Print the finance report NAME, in currency units.

    NAME is revenue-by-customer, wallet-rollforward, expiring-credits or receivables-aging.
    """
    with expected_errors():
        table = finance.report(books_dir, name, month)
    if output_format == "json":
        click.echo(json.dumps(table.as_dicts(), indent=1))
    elif output_format == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([table.columns, *table.rows])
        click.echo(buffer.getvalue(), nl=False)
    else:
        click.echo("\n".join(_table_lines(table.columns, table.rows)))


def _table_lines(columns, rows) -> list[str]:
    """Columns aligned: text left, amounts right."""
    widths = [
        max(len(str(value)) for value in (column, *(row[i] for row in rows)))
        for i, column in enumerate(columns)
    ]
    numeric = [bool(rows) and all(_is_amount(row[i]) for row in rows) for i in range(len(columns))]

    def line(values) -> str:
        cells = [
            str(v).rjust(w) if right else str(v).ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [line(columns), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def _is_amount(value) -> bool:
    return isinstance(value, str) and value.lstrip("-").replace(".", "", 1).isdigit()


@main.command()
@books_argument
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def runs(books_dir: Path, as_json: bool):
    """Show the run log, oldest run first: who ran what, on which inputs and rules."""
    with expected_errors():
        found = runs_command.runs(books_dir)
    if as_json:
        click.echo(json.dumps(found, indent=1))
    else:
        click.echo("\n".join(runs_command.table_lines(found)))


@main.command()
@books_argument
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def trace(books_dir: Path, ref: str, as_json: bool):
    """Show the chain from REF to the raw events.

    REF is a GL summary (gl.DAY.KIND.rRUN), a subledger transaction id or link, an event id
    or a conversation id.
    """
    with expected_errors():
        chain = trace_command.trace(books_dir, ref)
    if as_json:
        click.echo(json.dumps(chain, indent=1))
    else:
        click.echo("\n".join(trace_command.trace_lines(chain)))


def _checklist_lines(checklist) -> list[str]:
    lines = [f"Month-end checklist of {checklist.month}:"]
    lines += [f"  [{'x' if c.ok else ' '}] {c.line}" for c in checklist.checks]
    verdict = "close would close it" if checklist.closable else "close would refuse"
    lines.append(f"{verdict}; the seal it would print: {checklist.seal or '-'}")
    return lines


@main.command()
@books_argument
@click.argument("month", callback=_month, metavar="YYYY-MM")
@click.option(
    "--check",
    is_flag=True,
    help="Print the month-end checklist and the seal close would print; write nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="With --check: print it as JSON.")
@wait_option
def close(books_dir: Path, month: str, check: bool, as_json: bool, wait_seconds: float):
    """Close calendar MONTH: seal its files and assert every balance after it.

    It refuses (one Error: line, nothing written) unless MONTH is posted through its end,
    reconcile is clean and recovery would move nothing; --check shows why.
    """
    if check:
        with expected_errors():
            checklist = close_command.check_month(books_dir, month)
        if as_json:
            click.echo(json.dumps(checklist.as_json(), indent=1))
        else:
            click.echo("\n".join(_checklist_lines(checklist)))
        return
    with expected_errors():
        result = close_command.close_month(books_dir, month, wait_seconds, invocation())
    click.echo(
        f"Closed {result.month}: {result.files_sealed} files sealed, "
        f"{result.balance_assertions} balance assertions written."
    )
    click.echo(f"Seal: {result.seal_sha256}")
