"""Expected failures are one LedgerError family with exit codes; the CLI turns only those
into one ``Error:`` line, so a real bug keeps its traceback; reconcile reports what it
cannot parse instead of crashing on it."""

from __future__ import annotations

import inspect
import sqlite3
import subprocess
import sys

import pytest
from builders import sub, use
from click.testing import CliRunner

from ledger_engine import cli
from ledger_engine.core import errors
from ledger_engine.core.errors import BooksLocked, LedgerError
from ledger_engine.reconcile import reconcile

FAMILY = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, Exception) and cls.__module__ == errors.__name__
]


def test_every_error_of_the_engine_is_a_ledger_error_with_an_exit_code():
    assert len(FAMILY) > 10
    for cls in FAMILY:
        assert issubclass(cls, LedgerError), cls
        assert cls.exit_code == (4 if cls is BooksLocked else 1), cls


def test_the_cli_prints_a_ledger_error_as_one_line_with_its_exit_code(monkeypatch, tmp_path):
    def locked(*args, **kwargs):
        raise BooksLocked("the books are locked by another run\nsecond line")

    monkeypatch.setattr(cli.post_command, "post", locked)
    result = CliRunner().invoke(cli.main, ["post", str(tmp_path), "-"])
    assert result.exit_code == 4
    assert result.output == "Error: the books are locked by another run\n"


def test_a_bug_is_not_dressed_as_an_expected_error(monkeypatch, tmp_path):
    def buggy(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(cli.post_command, "post", buggy)
    result = CliRunner().invoke(cli.main, ["post", str(tmp_path), "-"])
    assert isinstance(result.exception, ValueError)
    assert "Error:" not in result.output


def _three_decimal_edit(poster, books):
    poster(
        [
            sub("acme", "2026-11-01T08:00:00Z", "boost"),
            use("acme", "2026-11-02T10:00:00Z", "a"),
        ],
        "2026-11-30",
    )
    path = books / "customers/C-acme/2026-11.beancount"
    text = path.read_text()
    # Still balanced, still loads: -0.305 + 0.305.
    text = text.replace(
        "Income:AI:Revenue:SuggestedReplies  -0.30 EUR",
        "Income:AI:Revenue:SuggestedReplies  -0.305 EUR",
    ).replace("Income:AI:Allowance:Included  0.30 EUR", "Income:AI:Allowance:Included  0.305 EUR")
    path.write_text(text)


def test_a_balanced_three_decimal_edit_is_a_difference_not_a_crash(poster, books):
    _three_decimal_edit(poster, books)
    report = reconcile(books)
    assert not report.ok
    amounts = [d for d in report.differences if d.check == "amounts"]
    assert {d.account for d in amounts} == {
        "Income:AI:Revenue:SuggestedReplies",
        "Income:AI:Allowance:Included",
    }
    assert all(d.file == "customers/C-acme/customer.beancount" for d in amounts)


@pytest.mark.parametrize("optimize", [[], ["-O"]])
def test_reconcile_reports_the_edit_under_python_dash_o_too(poster, books, optimize):
    _three_decimal_edit(poster, books)
    result = subprocess.run(
        [sys.executable, *optimize, "-m", "ledger_engine", "reconcile", str(books)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "is not a whole number of cents" in result.stdout


def test_a_damaged_store_is_one_error_line(books):
    (books / "state.sqlite").write_bytes(b"this is not a database" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "ledger_engine", "reconcile", str(books)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: the store: ") and result.stderr.count("\n") == 1


def test_a_store_with_a_dropped_table_is_one_error_line(poster, books):
    poster([sub("acme", "2026-11-01T08:00:00Z", "boost")], "2026-11-30")
    con = sqlite3.connect(books / "state.sqlite")
    con.execute("DROP TABLE lots")
    con.commit()
    con.close()
    for command in ("reconcile", "rejections"):
        result = subprocess.run(
            [sys.executable, "-m", "ledger_engine", command, str(books)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if command == "rejections":  # SPEC v3 §6: a store that is not the engine's own
            assert result.returncode == 1
            assert result.stderr.startswith("Error: the store's schema is not the engine's own")
            assert result.stderr.count("\n") == 1 and "table lots is missing" in result.stderr
            continue
        # reconcile lists it (the schema, and the check that could not read the table)
        assert result.returncode == 1 and result.stderr == "", result.stderr
        assert "DIFFERENCE [store_schema] : the store's table lots is missing" in result.stdout
        assert "Traceback" not in result.stdout
