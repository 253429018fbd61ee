"""reconcile (SPEC §6): clean books pass; every kind of tampering is found and named."""

from __future__ import annotations

import json
import re
import sqlite3

from builders import sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.reconcile import reconcile


def build(poster):
    poster(
        [
            sub("acme", "2026-11-01T08:00:00Z", "boost"),
            use("acme", "2026-11-02T10:00:00Z", "a", "autopilot"),
            use("acme", "2026-11-02T11:00:00Z", "b"),
            sub("beta", "2026-11-01T08:00:00Z", "essentials", commitment="3.00"),
            use("beta", "2026-11-03T10:00:00Z", "c"),
        ],
        "2026-11-30",
    )


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_clean_books_reconcile(poster, books):
    build(poster)
    result = run_cli("reconcile", books, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["differences"] == []
    assert report["checked"]["subledgers"] == 2


def test_an_edited_amount_is_found_and_its_file_named(poster, books):
    build(poster)
    path = books / "customers/C-acme/2026-11.beancount"
    text = path.read_text()
    # Move 0.10 from the autopilot revenue to the wallet: still balanced, still loads.
    text = text.replace(
        "Income:AI:Revenue:Autopilot  -0.30 EUR", "Income:AI:Revenue:Autopilot  -0.40 EUR", 1
    )
    text = re.sub(
        r"(Liabilities:Customers:C-acme:Wallet  )0\.30 EUR", r"\g<1>0.40 EUR", text, count=1
    )
    path.write_text(text)
    result = run_cli("reconcile", books)
    assert result.exit_code == 1
    assert "customers/C-acme/2026-11.beancount" in result.output
    report = reconcile(books)
    checks = {d.check for d in report.differences}
    assert {"files", "subledger_vs_store", "gl_vs_subledgers"} <= checks
    amounts = [
        d
        for d in report.differences
        if d.account == "Income:AI:Revenue:Autopilot" and d.check == "subledger_vs_store"
    ]
    assert [(a.expected, a.found, a.day) for a in amounts] == [("-0.30", "-0.40", "2026-11-02")]


def test_an_unbalanced_edit_fails_the_load_check(poster, books):
    build(poster)
    path = books / "customers/C-beta/2026-11.beancount"
    path.write_text(path.read_text().replace("3.00 EUR", "3.01 EUR", 1))
    report = reconcile(books)
    assert any(d.check == "load" for d in report.differences)


def test_a_broken_run_log_is_found(poster, books):
    build(poster)
    con = sqlite3.connect(books / "state.sqlite")
    con.execute("UPDATE runs SET counts = '{}' WHERE run_id = 1")
    con.commit()
    report = reconcile(books)
    assert [d.check for d in report.differences] == ["run_log"]


def test_lots_not_matching_the_wallet_are_found(poster, books):
    build(poster)
    con = sqlite3.connect(books / "state.sqlite")
    con.execute("UPDATE lots SET remainder = remainder + 1 WHERE customer = 'beta'")
    con.commit()
    # The edited row is not what the last run left (its digest), and lots no longer sum
    # to the wallet.
    assert [d.check for d in reconcile(books).differences] == ["rows", "lots_vs_wallet"]


def test_unposted_rating_is_found(poster, books):
    build(poster)
    con = sqlite3.connect(books / "state.sqlite")
    con.execute("UPDATE conversations SET status = 'charged' WHERE conversation = 'b'")
    con.commit()
    assert [d.check for d in reconcile(books).differences] == ["usage_vs_postings"]


def test_a_torn_tail_is_reported_and_repaired_by_the_next_post(poster, books):
    build(poster)
    path = books / "gl/2026/2026-11.beancount"
    with path.open("a") as stream:
        stream.write('2026-11-30 * "half a transac')
    report = reconcile(books)
    assert report.differences[0].check == "files"
    assert "interrupted run" in report.differences[0].message
    assert {d.check for d in report.differences} == {"files", "load"}  # the torn text
    poster([], "2026-11-30")
    assert reconcile(books).ok


def test_reconcile_of_missing_books_is_an_error(tmp_path):
    result = run_cli("reconcile", tmp_path / "nothing")
    assert result.exit_code == 1 and result.output.startswith("Error:")
