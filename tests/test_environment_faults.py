"""Read-only books can be inspected, and every fault of the machine or the books is one
``Error:`` line (SPEC v3 §6, §7).

On a read-only copy (a read-only mount; folders and files without write permission) every
command that only reads works and writes nothing; the writers refuse with one ``Error:``
line.  Then a table of faults of the environment the security review met, each run through
the real command line: the exit code, exactly one ``Error:`` line on stderr, no traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from builders import journal_bytes

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_books" / "books"
EVENTS = REPO / "sample_books" / "events"
READERS = [
    ("reconcile",),
    ("reconcile", "--replay"),
    ("rejections",),
    ("trace", "gl.2026-10-27.usage.r1"),
    ("trace", "auto-top-up-2026-11-17"),
    ("report", "wallet-rollforward"),
    ("report", "receivables-aging", "--format", "json"),
    ("transactions", "acme-gmbh"),
    ("runs",),
    ("runs", "--json"),
]
WRITERS = [
    ("post", str(EVENTS / "2026-12-late.jsonl"), "--through", "2026-12-31", "--allow-future"),
    ("close", "2026-11"),
]


def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ledger_engine", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess, exit_code: int = 1) -> str:
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def snapshot(books: Path) -> dict[str, bytes]:
    """Every file of the books, journals and store alike."""
    return {p.relative_to(books).as_posix(): p.read_bytes()
            for p in sorted(books.rglob("*")) if p.is_file()}  # fmt: skip


@contextlib.contextmanager
def read_only_mount(source: Path, where: Path):
    where.mkdir()
    for command in (["mount", "--bind", str(source), str(where)],
                    ["mount", "-o", "remount,ro,bind", str(where)]):  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            pytest.skip(f"cannot mount read-only here: {error}")
        if done.returncode != 0:
            subprocess.run(["umount", str(where)], capture_output=True)
            pytest.skip(f"cannot mount read-only here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def copy(tmp_path) -> Path:
    books = tmp_path / "source" / "B"
    shutil.copytree(SAMPLE, books)
    (books / ".lock").unlink(missing_ok=True)  # an archive copy has no lock file
    return books


def assert_inspectable(books: Path) -> None:
    before = snapshot(books)
    for reader in READERS:
        result = cli(reader[0], books, *reader[1:])
        assert result.returncode == 0, (reader, result.stderr)
        assert "Traceback" not in result.stderr
    for writer in WRITERS:
        line = one_error_line(cli(writer[0], books, *writer[1:]))
        assert "read-only" in line, line
    assert snapshot(books) == before  # nothing written, no lock file made


def test_books_on_a_read_only_mount_can_be_inspected(copy, tmp_path):
    with read_only_mount(copy.parent, tmp_path / "mounted") as mounted:
        assert_inspectable(mounted / "B")


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root")
def test_books_without_write_permission_can_be_inspected(copy):
    for path in [copy, *copy.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        assert_inspectable(copy)
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


# ------------------------------------------------------------------ faults of the machine


def lock_is_a_directory(books: Path) -> None:
    (books / ".lock").unlink(missing_ok=True)
    (books / ".lock").mkdir()


def lock_is_a_fifo(books: Path) -> None:
    (books / ".lock").unlink(missing_ok=True)
    os.mkfifo(books / ".lock")


def rules_not_utf8(books: Path) -> None:
    with (books / "rules.toml").open("ab") as stream:
        stream.write(b"\n# \xff\xfe not text\n")


def rules_absurd_months(books: Path) -> None:
    rules = books / "rules.toml"
    rules.write_text(
        rules.read_text().replace("top_up_extra_months = 1", "top_up_extra_months = 100000")
    )


def rules_absurd_money(books: Path) -> None:
    rules = books / "rules.toml"
    rules.write_text(rules.read_text().replace('amount = "25.00"', 'amount = "1e400"'))


def store_is_a_directory(books: Path) -> None:
    (books / "state.sqlite").unlink()
    (books / "state.sqlite").mkdir()


def store_is_garbage(books: Path) -> None:
    (books / "state.sqlite").write_bytes(b"not a database" * 100)


FAULTS = [
    pytest.param(lock_is_a_directory, ["post", "close", "reconcile"], "lock", id="lock-dir"),
    pytest.param(lock_is_a_fifo, ["post", "close", "reconcile"], ".lock", id="lock-fifo"),
    pytest.param(rules_not_utf8, ["post", "close"], "rules.toml", id="rules-utf8"),
    pytest.param(rules_absurd_months, ["post"], "top_up_extra_months", id="rules-months"),
    pytest.param(rules_absurd_money, ["post"], "auto_top_up.amount", id="rules-money"),
    pytest.param(store_is_a_directory, ["post", "reconcile", "rejections"], "", id="store-dir"),
    pytest.param(store_is_garbage, ["post", "reconcile", "report"], "the store", id="store-junk"),
]
COMMANDS = {
    "post": WRITERS[0],
    "close": WRITERS[1],
    "reconcile": ("reconcile",),
    "rejections": ("rejections",),
    "report": ("report", "wallet-rollforward"),
}


@pytest.mark.parametrize(("fault", "commands", "fragment"), FAULTS)
def test_every_fault_of_the_environment_is_one_error_line(copy, fault, commands, fragment):
    fault(copy)
    journals = journal_bytes(copy)
    for command in commands:
        words = COMMANDS[command]
        line = one_error_line(cli(words[0], copy, *words[1:]))
        assert fragment in line, (command, line)
    assert journal_bytes(copy) == journals


@pytest.mark.parametrize(
    "words",
    [
        ("post", str(EVENTS / "2026-12-late.jsonl"), "--through", "9999-12-31"),
        ("close", "9999-12"),
        ("report", "wallet-rollforward", "--month", "10000-01"),
    ],
)
def test_days_past_the_calendar_are_one_error_line(copy, words):
    result = cli(words[0], copy, *words[1:])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
