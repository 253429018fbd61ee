"""The committed sample books: equal to a fresh build, loadable, queryable, reconciled.

Regenerate them (and review the diff) with: ``sample_books/regenerate.sh``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import load_clean

from ledger_engine.books.layout import QUERIES
from ledger_engine.reconcile import reconcile

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_books" / "books"
BEAN_QUERY = Path(sys.executable).with_name("bean-query")


def journal_files(books: Path) -> dict[str, bytes]:
    return {
        p.relative_to(books).as_posix(): p.read_bytes()
        for p in sorted(books.rglob("*"))
        if p.suffix in (".beancount", ".toml", ".tsx")
    }


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("sample") / "books"
    env = {
        **os.environ,
        "LEDGER_ENGINE": f"{sys.executable} -m ledger_engine",
        "SAMPLE_BOOKS_DIR": str(target),
    }
    subprocess.run(
        ["bash", str(ROOT / "sample_books" / "regenerate.sh")],
        env=env,
        check=True,
        capture_output=True,
    )
    return target


def test_committed_sample_books_equal_a_fresh_build(fresh):
    committed, rebuilt = journal_files(SAMPLE), journal_files(fresh)
    assert sorted(committed) == sorted(rebuilt)
    changed = [path for path in committed if committed[path] != rebuilt[path]]
    assert not changed, f"stale sample books, run sample_books/regenerate.sh: {changed}"


def test_every_sample_journal_loads_without_errors():
    roots = [SAMPLE / "ledger.beancount", *sorted(SAMPLE.glob("customers/*/customer.beancount"))]
    assert len(roots) > 5
    for root in roots:
        load_clean(root)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_query_directive_runs_with_bean_query(name):
    result = subprocess.run(
        [str(BEAN_QUERY), str(SAMPLE / "ledger.beancount"), f".run {name}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()
    assert result.stdout.strip()


def test_sample_books_reconcile(tmp_path):
    copy = tmp_path / "books"
    shutil.copytree(SAMPLE, copy)
    report = reconcile(copy)
    assert report.ok, report.differences


def test_sample_books_show_every_kind_of_movement():
    text = "".join(p.read_text() for p in sorted(SAMPLE.glob("customers/*/20*.beancount")))
    for narration in (
        "Commitment",
        "Expiry",
        "Top-up",
        "Automatic top-up",
        "AI usage",
        "SMS usage",
        "WhatsApp usage",
        "Voice usage",
        "Payment",
        "Credit grant",
        "Write-off",
        "Correction: AI usage",
    ):
        assert f'"{narration}"' in text, narration
    assert "late: TRUE" in text and "corrects: " in text and "late-event: TRUE" in text
    assert "Income:AI:Allowance:Trial" in text and "Income:Wallet:Breakage" in text
    assert "Income:AI:Allowance:Granted" in text and "Expenses:BadDebt" in text
    gl = (SAMPLE / "gl/2026/2026-11.beancount").read_text()
    assert '2026-11-01 custom "closed" "2026-10"' in gl
    gl = "".join(p.read_text() for p in sorted(SAMPLE.glob("gl/*/*.beancount")))
    kinds = set(re.findall(r'  kind: "([a-z-]+)"', gl))
    assert kinds == {
        "usage", "channel", "top-up", "auto-top-up", "commitment", "grant", "expiry",
        "payment", "write-off",
    }  # fmt: skip


def _snapshot(books: Path) -> dict[str, bytes]:
    return {
        p.relative_to(books).as_posix(): p.read_bytes()
        for p in sorted(books.rglob("*"))
        if p.is_file() and p.name != ".lock"  # the lock file is ignored by git
    }


def test_reading_the_committed_sample_books_changes_no_byte_and_leaves_no_side_file():
    before = _snapshot(SAMPLE)
    for args in (("transactions", "acme-gmbh"), ("rejections",), ("reconcile",)):
        result = subprocess.run(
            [sys.executable, "-m", "ledger_engine", args[0], str(SAMPLE), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert _snapshot(SAMPLE) == before  # no -wal or -shm file left, the store unchanged
