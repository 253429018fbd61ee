"""Tampering (SPEC §6): whatever is edited in the books or the store, ``ledger-engine reconcile``
exits 1 and lists a difference naming the edit (the check and the file), never a traceback and
never exit 0.

The books are built once per module (two customers, usage, top-ups, a payment, October closed
and November open, so sealed and open files both exist); each test edits a fresh copy and runs
the real command line in a subprocess."""

from __future__ import annotations

import datetime
import json
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import Poster, init_books, money_event, sub, use

from ledger_engine.books.files import sha256_file
from ledger_engine.close import close_month
from ledger_engine.post import post

ACME_NOV = "customers/C-acme/2026-11.beancount"
ACME_OCT = "customers/C-acme/2026-10.beancount"  # sealed
ACME_ROOT = "customers/C-acme/customer.beancount"
BETA_NOV = "customers/C-beta/2026-11.beancount"
BETA_ROOT = "customers/C-beta/customer.beancount"
GL_NOV = "gl/2026/2026-11.beancount"
GL_OCT = "gl/2026/2026-10.beancount"  # sealed
LEDGER = "ledger.beancount"

GARBAGE = bytes(random.Random(20261130).randrange(256) for _ in range(400))
BAD_UTF8 = b'2026-11-09 * "caf\xe9 \xff\xfe" "\xc3\x28"\n  Assets:Bank:Clearing  1.00 EUR\n'


def build_books(path: Path) -> Path:
    books = init_books(path / "books")
    scratch = path / "events"
    scratch.mkdir()
    poster = Poster(books, scratch)
    poster(
        [
            sub("acme", "2026-10-05T08:00:00Z", "boost"),
            use("acme", "2026-10-06T10:00:00Z", "a"),
            use("acme", "2026-10-06T11:00:00Z", "b", "autopilot"),
            money_event("top_up", "acme", "2026-10-07T09:00:00Z", "5.00"),
            sub("beta", "2026-10-02T08:00:00Z", "pro", commitment="5.00"),
            use("beta", "2026-10-03T10:00:00Z", "c"),
            money_event("payment", "beta", "2026-10-20T09:00:00Z", "5.00"),
        ],
        "2026-10-31",
    )
    close_month(books, "2026-10")
    events = [
        use("acme", "2026-11-03T10:00:00Z", "d", "autopilot"),
        use("beta", "2026-11-04T10:00:00Z", "e"),
        money_event("top_up", "beta", "2026-11-05T09:00:00Z", "3.00"),
    ]
    post(books, [str(poster.write(events))], datetime.date(2026, 11, 10))
    return books


@pytest.fixture(scope="module")
def base_books(tmp_path_factory) -> Path:
    books = build_books(tmp_path_factory.mktemp("base"))
    for relative in (ACME_NOV, ACME_OCT, BETA_NOV, GL_NOV, GL_OCT):
        assert (books / relative).is_file(), relative
    return books


@pytest.fixture
def books(base_books, tmp_path) -> Path:
    copy = tmp_path / "books"
    shutil.copytree(base_books, copy)
    return copy


def reconcile_cli(books: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ledger_engine", "reconcile", str(books), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )


def difference_lines(stdout: str) -> list[tuple[str, str]]:
    """``(check, rest of the line)`` of every ``DIFFERENCE [check] ...`` line."""
    return re.findall(r"^DIFFERENCE \[(\w+)\] (.*)$", stdout, flags=re.M)


# --------------------------------------------------------------------------- the edits


def substitute(books: Path, relative: str, pattern: str, replacement: str) -> None:
    """Replaces the one match of ``pattern`` (a multi-line regex) in a journal file."""
    path = books / relative
    text, count = re.subn(pattern, replacement, path.read_text(encoding="utf-8"), flags=re.M)
    assert count == 1, (relative, pattern, count)
    path.write_text(text, encoding="utf-8")


def edit_block(books: Path, relative: str, starts: str, edit: Callable[[str], str]) -> None:
    """Applies ``edit`` to the one transaction (blank-line separated) starting with ``starts``."""
    path = books / relative
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    hits = [i for i, block in enumerate(blocks) if block.lstrip("\n").startswith(starts)]
    assert len(hits) == 1, (relative, starts, hits)
    edited = edit(blocks[hits[0]])
    assert edited != blocks[hits[0]]
    blocks[hits[0]] = edited
    path.write_text("\n\n".join(blocks), encoding="utf-8")


def store(books: Path, *statements: str, params=()) -> None:
    con = sqlite3.connect(books / "state.sqlite")
    try:
        for statement in statements:
            changed = con.execute(statement, params).rowcount
            assert changed != 0, statement
        con.commit()
    finally:
        con.close()


def balanced_amount_edit(books):
    # 0.10 moved from the autopilot revenue to acme's wallet: still balanced, still loads.
    substitute(books, ACME_NOV, r"^(  Income:AI:Revenue:Autopilot  )-0\.30 EUR$", r"\g<1>-0.40 EUR")
    substitute(
        books, ACME_NOV, r"^(  Liabilities:Customers:C-acme:Wallet  )0\.30 EUR$", r"\g<1>0.40 EUR"
    )


def balanced_amount_edit_in_a_sealed_file(books):
    substitute(books, ACME_OCT, r"^(  Income:AI:Revenue:Autopilot  )-0\.30 EUR$", r"\g<1>-0.20 EUR")
    substitute(
        books, ACME_OCT, r"^(  Liabilities:Customers:C-acme:Wallet  )0\.30 EUR$", r"\g<1>0.20 EUR"
    )


def unbalanced_amount_edit(books):
    substitute(
        books, BETA_NOV, r"^(  Assets:Receivables:Customers:C-beta  )3\.00 EUR$", r"\g<1>3.01 EUR"
    )


def three_decimal_amount(books):
    # Balanced (-0.305 + 0.305) and loads: only the whole-cents check can see it.
    def edit(block):
        block = block.replace("SuggestedReplies  -0.30 EUR", "SuggestedReplies  -0.305 EUR")
        return block.replace("Allowance:Included  0.30 EUR", "Allowance:Included  0.305 EUR")

    edit_block(books, BETA_NOV, '2026-11-04 * "beta" "AI usage"', edit)


def deleted_entry(books):
    edit_block(books, BETA_NOV, '2026-11-05 * "beta" "Top-up"', lambda block: "")


def entry_moved_to_another_date(books):
    edit_block(
        books,
        BETA_NOV,
        '2026-11-05 * "beta" "Top-up"',
        lambda block: block.replace("2026-11-05 *", "2026-11-07 *", 1),
    )


def gl_month_edit(books):
    # The GL summary of beta's 3.00 top-up becomes 4.00, balanced.
    def edit(block):
        block = block.replace("  -3.00 EUR", "  -4.00 EUR").replace("  3.00 EUR", "  4.00 EUR")
        return block

    edit_block(books, GL_NOV, '2026-11-05 * "General ledger"', edit)


def sealed_gl_month_edit(books):
    substitute(books, GL_OCT, r"^(  Assets:Bank:Clearing  )5\.00 EUR$", r"\g<1>6.00 EUR")
    substitute(books, GL_OCT, r"^(  Assets:Receivables:Customers  )-5\.00 EUR$", r"\g<1>-6.00 EUR")


def dropped_include_in_a_customer_root(books):
    substitute(books, ACME_ROOT, r'^include "2026-11\.beancount"\n', "")


def dropped_include_in_the_ledger(books):
    substitute(books, LEDGER, r'^include "gl/2026/2026-11\.beancount"\n', "")


def deleted_open_month_file(books):
    (books / BETA_NOV).unlink()


def deleted_sealed_month_file(books):
    (books / ACME_OCT).unlink()


def deleted_gl_month_file(books):
    (books / GL_NOV).unlink()


def deleted_customer_root(books):
    (books / ACME_ROOT).unlink()


def changed_customer_metadata(books):
    edit_block(
        books,
        BETA_NOV,
        '2026-11-05 * "beta" "Top-up"',
        lambda block: block.replace('customer: "beta"', 'customer: "acme"'),
    )


def changed_txn_metadata(books):
    substitute(books, ACME_NOV, r'^(  txn: "C-acme\.2026-11-03\.usage\.[^"]*)\.1"$', r'\1.2"')


def store_subledger_posting_amount(books):
    store(
        books,
        "UPDATE postings SET amount = amount + 100 WHERE ledger = 'sub' AND customer = 'beta' "
        "AND effective_day = '2026-11-05' AND account = 'Assets:Receivables:Customers:C-beta'",
    )


def store_gl_posting_amount(books):
    store(
        books,
        "UPDATE postings SET amount = amount - 1 WHERE ledger = 'gl' "
        "AND effective_day = '2026-11-04' AND account = 'Income:AI:Revenue:SuggestedReplies'",
    )


def store_posting_amount_not_an_integer(books):
    store(
        books,
        "UPDATE postings SET amount = 12.5 WHERE ledger = 'sub' AND customer = 'beta' "
        "AND effective_day = '2026-11-05' AND account = 'Assets:Receivables:Customers:C-beta'",
    )


def store_lot_remainder(books):
    store(
        books,
        "UPDATE lots SET remainder = remainder - 50 WHERE customer = 'beta' "
        "AND lot_id LIKE 'top-up-%'",
    )


def store_lot_remainder_not_a_number(books):
    store(
        books, "UPDATE lots SET remainder = 'x' WHERE customer = 'beta' AND lot_id LIKE 'top-up-%'"
    )


def store_deleted_close_run(books):
    store(books, "DELETE FROM runs WHERE command = 'close 2026-10'")


def store_deleted_last_run(books):
    # What is left is still an intact chain: only the store's file hashes betray it.
    store(books, "DELETE FROM runs WHERE run_id = (SELECT max(run_id) FROM runs)")


def store_run_files_not_json(books):
    store(books, "UPDATE runs SET files = 'not json' WHERE run_id = (SELECT max(run_id) FROM runs)")


def store_run_counts_not_an_object(books):
    store(books, "UPDATE runs SET counts = '[1]' WHERE command = 'close 2026-10'")


def store_deleted_closed_month(books):
    store(books, "DELETE FROM closed_months WHERE month = '2026-10'")


def store_closed_month_files_not_json(books):
    store(books, "UPDATE closed_months SET files = '{' WHERE month = '2026-10'")


def store_sealed_flags_cleared(books):
    store(books, "UPDATE journal_files SET sealed = 0 WHERE sealed = 1")


def store_file_length_not_a_number(books):
    store(books, "UPDATE journal_files SET length = 'x' WHERE path = ?", params=[BETA_NOV])


def open_file_edited_with_its_hash_in_the_store(books):
    changed_customer_metadata(books)
    path = books / BETA_NOV
    store(
        books,
        "UPDATE journal_files SET sha256 = ?, length = ? WHERE path = ?",
        params=[sha256_file(path), path.stat().st_size, BETA_NOV],
    )


def sealed_file_edited_with_its_hash_in_the_store(books):
    balanced_amount_edit_in_a_sealed_file(books)
    path = books / ACME_OCT
    store(
        books,
        "UPDATE journal_files SET sha256 = ?, length = ? WHERE path = ?",
        params=[sha256_file(path), path.stat().st_size, ACME_OCT],
    )


def append_bytes(relative: str, data: bytes):
    def tamper(books):
        with (books / relative).open("ab") as stream:
            stream.write(data)

    tamper.__name__ = f"append_to_{relative}"
    return tamper


def replace_bytes(relative: str, data: bytes):
    def tamper(books):
        (books / relative).write_bytes(data)

    tamper.__name__ = f"replace_{relative}"
    return tamper


def journal_file_replaced_by_a_directory(books):
    (books / BETA_NOV).unlink()
    (books / BETA_NOV).mkdir()


# (tamper, [(check, a fragment of its line: the file edited, or what the message names)])
CASES = [
    pytest.param(
        balanced_amount_edit,
        [("files", ACME_NOV), ("subledger_vs_store", ACME_NOV), ("gl_vs_subledgers", GL_NOV)],
        id="balanced-amount-edit",
    ),
    pytest.param(
        balanced_amount_edit_in_a_sealed_file,
        [("files", ACME_OCT), ("seals", ACME_OCT), ("subledger_vs_store", ACME_OCT)],
        id="balanced-amount-edit-sealed",
    ),
    pytest.param(
        unbalanced_amount_edit,
        [("files", BETA_NOV), ("load", BETA_NOV), ("subledger_vs_store", BETA_NOV)],
        id="unbalanced-amount-edit",
    ),
    pytest.param(
        three_decimal_amount,
        [("files", BETA_NOV), ("amounts", "Income:AI:Revenue:SuggestedReplies 2026-11-04")],
        id="three-decimal-amount",
    ),
    pytest.param(
        deleted_entry,
        [("files", BETA_NOV), ("subledger_vs_store", BETA_NOV), ("gl_vs_subledgers", GL_NOV)],
        id="deleted-entry",
    ),
    pytest.param(
        entry_moved_to_another_date,
        [
            ("files", BETA_NOV),
            ("subledger_vs_store", f"{BETA_NOV} Assets:Receivables:Customers:C-beta 2026-11-05"),
            ("subledger_vs_store", f"{BETA_NOV} Assets:Receivables:Customers:C-beta 2026-11-07"),
        ],
        id="entry-moved-to-another-date",
    ),
    pytest.param(
        gl_month_edit,
        [("files", GL_NOV), ("gl_vs_store", GL_NOV), ("gl_vs_subledgers", GL_NOV)],
        id="gl-month-edit",
    ),
    pytest.param(
        sealed_gl_month_edit,
        [("files", GL_OCT), ("seals", GL_OCT), ("gl_vs_store", GL_OCT)],
        id="sealed-gl-month-edit",
    ),
    pytest.param(
        dropped_include_in_a_customer_root,
        [("files", ACME_ROOT), ("subledger_vs_store", ACME_NOV)],
        id="dropped-include-customer-root",
    ),
    pytest.param(
        dropped_include_in_the_ledger,
        [("files", LEDGER), ("gl_vs_store", GL_NOV), ("seals", "the GL's closed entry")],
        id="dropped-include-ledger",
    ),
    pytest.param(
        deleted_open_month_file,
        [
            ("files", f"{BETA_NOV}: journal file is missing"),
            ("load", "2026-11.beancount"),
            ("subledger_vs_store", BETA_NOV),
        ],
        id="deleted-open-month-file",
    ),
    pytest.param(
        deleted_sealed_month_file,
        [
            ("files", f"{ACME_OCT}: sealed file is missing"),
            ("seals", ACME_OCT),
            ("subledger_vs_store", ACME_OCT),
        ],
        id="deleted-sealed-month-file",
    ),
    pytest.param(
        deleted_gl_month_file,
        [
            ("files", f"{GL_NOV}: journal file is missing"),
            ("gl_vs_store", GL_NOV),
            ("seals", "the GL's closed entry"),
        ],
        id="deleted-gl-month-file",
    ),
    pytest.param(
        deleted_customer_root,
        [("files", f"{ACME_ROOT}: journal file is missing"), ("gl_vs_subledgers", GL_NOV)],
        id="deleted-customer-root",
    ),
    pytest.param(
        changed_customer_metadata,
        [("files", f"{BETA_NOV}: journal file changed since it was written")],
        id="metadata-customer",
    ),
    pytest.param(
        changed_txn_metadata,
        [("files", f"{ACME_NOV}: journal file changed since it was written")],
        id="metadata-txn",
    ),
    pytest.param(
        store_subledger_posting_amount,
        [("subledger_vs_store", f"{BETA_NOV} Assets:Receivables:Customers:C-beta 2026-11-05")],
        id="store-subledger-posting-amount",
    ),
    pytest.param(
        store_gl_posting_amount,
        [("gl_vs_store", f"{GL_NOV} Income:AI:Revenue:SuggestedReplies 2026-11-04")],
        id="store-gl-posting-amount",
    ),
    pytest.param(
        store_posting_amount_not_an_integer,
        [("subledger_vs_store", "(expected 12.5, found 3.00)")],
        id="store-posting-amount-not-an-integer",
    ),
    pytest.param(
        store_lot_remainder,
        [("lots_vs_wallet", "lots of beta do not sum to its wallet")],
        id="store-lot-remainder",
    ),
    pytest.param(
        store_lot_remainder_not_a_number,
        [("lots_vs_wallet", "lots of beta do not sum to its wallet")],
        id="store-lot-remainder-not-a-number",
    ),
    pytest.param(
        store_deleted_close_run,
        [("run_log", "breaks the hash chain"), ("seals", "differs from the run log")],
        id="store-deleted-close-run",
    ),
    pytest.param(
        store_deleted_last_run,
        [("run_log", f"{BETA_NOV}: the store's hash of the journal file is not the last one")],
        id="store-deleted-last-run",
    ),
    pytest.param(
        store_run_files_not_json,
        [("run_log", "breaks the hash chain"), ("run_log", "is not readable")],
        id="store-run-files-not-json",
    ),
    pytest.param(
        store_run_counts_not_an_object,
        [("run_log", "is not readable"), ("seals", "differs from the run log")],
        id="store-run-counts-not-an-object",
    ),
    pytest.param(
        store_deleted_closed_month,
        [
            ("seals", "2026-10 is closed in the GL's closed entries but not in the store"),
            ("seals", f"{ACME_OCT}: file marked sealed in the store"),
        ],
        id="store-deleted-closed-month",
    ),
    pytest.param(
        store_closed_month_files_not_json,
        [("seals", "the store's record of the closed months is not readable")],
        id="store-closed-month-files-not-json",
    ),
    pytest.param(
        store_sealed_flags_cleared,
        [("seals", f"{GL_OCT}: file of a closed month is not marked sealed in the store")],
        id="store-sealed-flags-cleared",
    ),
    pytest.param(
        store_file_length_not_a_number,
        [("files", f"{BETA_NOV}: the store's record of the journal file is not readable")],
        id="store-file-length-not-a-number",
    ),
    pytest.param(
        open_file_edited_with_its_hash_in_the_store,
        [("run_log", f"{BETA_NOV}: the store's hash of the journal file is not the last one")],
        id="open-file-and-its-store-hash",
    ),
    pytest.param(
        sealed_file_edited_with_its_hash_in_the_store,
        [
            ("seals", f"{ACME_OCT}: sealed file of 2026-10 differs from the store's record"),
            ("seals", f"{ACME_OCT}: sealed file of 2026-10 differs from the run log"),
            ("seals", "seal of 2026-10 recomputed from the files differs from the GL's"),
            ("run_log", ACME_OCT),
        ],
        id="sealed-file-and-its-store-hash",
    ),
    pytest.param(
        append_bytes(ACME_NOV, GARBAGE),
        [("files", f"{ACME_NOV}: uncommitted tail"), ("load", ACME_NOV)],
        id="binary-appended",
    ),
    pytest.param(
        append_bytes(GL_NOV, BAD_UTF8),
        [("files", f"{GL_NOV}: uncommitted tail"), ("load", GL_NOV)],
        id="invalid-utf8-appended",
    ),
    pytest.param(
        append_bytes(ACME_OCT, BAD_UTF8),
        [("files", ACME_OCT), ("seals", ACME_OCT), ("load", ACME_OCT)],
        id="invalid-utf8-appended-to-a-sealed-file",
    ),
    pytest.param(
        replace_bytes(BETA_NOV, GARBAGE),
        [
            ("files", f"{BETA_NOV}: journal file changed"),
            ("load", BETA_NOV),
            ("subledger_vs_store", BETA_NOV),
        ],
        id="binary-replaces-month-file",
    ),
    pytest.param(
        replace_bytes(GL_OCT, GARBAGE),
        [("files", f"{GL_OCT}: sealed file changed"), ("seals", GL_OCT), ("load", GL_OCT)],
        id="binary-replaces-sealed-file",
    ),
    pytest.param(
        replace_bytes(BETA_ROOT, BAD_UTF8),
        [("files", BETA_ROOT), ("load", BETA_ROOT), ("gl_vs_subledgers", GL_NOV)],
        id="invalid-utf8-replaces-customer-root",
    ),
    pytest.param(
        replace_bytes(LEDGER, b"\xff\xfe\x00option \xc3\x28\n" + GARBAGE),
        [("files", LEDGER), ("load", LEDGER), ("gl_vs_store", GL_NOV)],
        id="garbage-replaces-ledger",
    ),
    pytest.param(
        journal_file_replaced_by_a_directory,
        # Never opened (SPEC v3 §6): named as no regular file, and the subledger that
        # includes it is parsed only, nothing of beancount's loading run on it.
        [
            ("files", f"{BETA_NOV}: journal file is not a regular file"),
            ("confinement", BETA_NOV),
            ("directives", BETA_NOV),
        ],
        id="journal-file-replaced-by-a-directory",
    ),
]


def test_the_untouched_books_reconcile(books):
    result = reconcile_cli(books)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith("Books reconcile.\n")
    assert "sealed files" in result.stdout and " 0 sealed files" not in result.stdout


@pytest.mark.parametrize(("tamper", "expected"), CASES)
def test_every_edit_is_a_listed_difference(books, tamper, expected):
    tamper(books)
    result = reconcile_cli(books)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    found = difference_lines(result.stdout)
    assert found and result.stdout.endswith(f"{len(found)} differences found.\n"), result.stdout
    for check, fragment in expected:
        assert any(c == check and fragment in rest for c, rest in found), (
            f"no DIFFERENCE [{check}] naming {fragment!r} in:\n{result.stdout}"
        )


@pytest.mark.parametrize(
    "tamper",
    [
        balanced_amount_edit,
        three_decimal_amount,
        deleted_gl_month_file,
        store_deleted_last_run,
        store_closed_month_files_not_json,
        replace_bytes(BETA_NOV, GARBAGE),
    ],
    ids=lambda tamper: tamper.__name__,
)
def test_json_output_stays_valid_with_ok_false(books, tamper):
    tamper(books)
    result = reconcile_cli(books, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["differences"]
    fields = {"check", "message", "file", "account", "day", "expected", "found"}
    assert all(set(difference) == fields for difference in report["differences"])
    assert all(isinstance(difference["check"], str) for difference in report["differences"])
