"""The books and the store are hostile input (SPEC v3 §6): one test per attack of the
security red team's review, each asserting the honest outcome.  No code of the books runs,
nothing outside the books is read or written (marker files stay absent, victim files keep
their bytes), ``reconcile`` exits 1 naming the attack, and the writers refuse with one
``Error:`` line and no traceback.

"B" is made as in the review: ``init`` and a post of the sample's October night (built
once per module, copied for each test), with October posted through its end.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import journal_bytes

from ledger_engine.store.views import VIEWS

REPO = Path(__file__).resolve().parents[1]
OCTOBER = REPO / "sample_books" / "events" / "2026-10-night.jsonl"
NOVEMBER = REPO / "sample_books" / "events" / "2026-11-night.jsonl"
CUSTOMER = "customers/C-acme-2Dgmbh"
ROOT = f"{CUSTOMER}/customer.beancount"
MONTH = f"{CUSTOMER}/2026-10.beancount"


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ledger_engine", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "BEANCOUNT_DISABLE_LOAD_CACHE": "1"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    books = tmp_path_factory.mktemp("hostile") / "B"
    assert cli("init", books, "--timezone", "Europe/Berlin").returncode == 0
    result = cli("post", books, OCTOBER, "--through", "2026-10-31")
    assert result.returncode == 0, result.stderr
    return books


@pytest.fixture
def books(built, tmp_path) -> Path:
    copy = tmp_path / "B"
    shutil.copytree(built, copy, symlinks=True)
    return copy


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the books with a victim file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_text("the victim's own bytes\n" * 20)
    return folder


def differences(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("DIFFERENCE [")]


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """One ``Error:`` line naming the refusal, exit 1, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_reported(result: subprocess.CompletedProcess, check: str, fragment: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    found = differences(result)
    assert any(line.startswith(f"DIFFERENCE [{check}]") and fragment in line for line in found), (
        "\n".join(found)
    )


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write(text)


# ---------------------------------------------------------- 1. code planted in the books

PLANTED = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
import ledger_engine.reconcile as r
r.Report.differences = property(lambda self: ())
__plugins__ = ()
"""


@pytest.mark.parametrize("root", ["ledger.beancount", ROOT])
def test_a_planted_plugin_never_runs(books, tmp_path, root):
    marker = tmp_path / "marker"
    (books / "rtpwn.py").write_text(PLANTED.format(marker=str(marker)))
    append(books / root, 'option "insert_pythonpath" "TRUE"\nplugin "rtpwn"\n')
    report = cli("reconcile", books)
    assert not marker.exists()
    assert_reported(report, "directives", root)
    assert "Books reconcile." not in report.stdout
    # Bytes past the committed end are no run's: post moves them to recovered/ unrun.
    result = cli("post", books, NOVEMBER, "--through", "2026-11-30")
    assert (
        result.returncode == 0
        and f"Recovered: moved 49 bytes past the committed end of {root}" in (result.stdout)
    )
    assert not marker.exists()
    assert cli("reconcile", books).returncode == 0 and not marker.exists()


def test_a_planted_plugin_in_place_of_a_comment_never_runs(books, tmp_path):
    """The review's variant: the root's comment line overwritten in place, same length, so
    its size is unchanged; then an ordinary post."""
    marker = tmp_path / "marker"
    (books / "rtpwn.py").write_text(PLANTED.format(marker=str(marker)))
    root = books / "ledger.beancount"
    data = root.read_bytes()
    first, rest = data.split(b"\n", 1)[0], data.split(b"\n", 1)[1]
    second, tail = rest.split(b"\n", 1)
    planted = b'option "insert_pythonpath" "TRUE"\nplugin "rtpwn"'
    planted = planted.ljust(len(first) + 1 + len(second), b" ")
    assert len(planted) == len(first) + 1 + len(second)
    root.write_bytes(planted + b"\n" + tail)
    post = cli("post", books, NOVEMBER, "--through", "2026-11-30")
    assert post.returncode == 1 and "Error: " in post.stderr and "Traceback" not in post.stderr
    assert_reported(cli("reconcile", books), "directives", "ledger.beancount")
    assert not marker.exists()


def test_an_include_of_a_file_outside_the_books_is_never_read(books):
    append(books / "ledger.beancount", 'include "/etc/passwd"\n')
    report = cli("reconcile", books)
    assert_reported(report, "directives", "ledger.beancount")
    assert "root:" not in report.stdout  # no line of /etc/passwd is echoed as an error


@pytest.mark.parametrize("target", ["/dev/zero", "../outside/victim.txt"])
def test_an_include_of_a_device_or_a_file_outside_is_refused_within_seconds(books, target):
    append(books / ROOT, f'include "{target}"\n')
    started = time.monotonic()
    report = cli("reconcile", books, timeout=60)
    assert time.monotonic() - started < 30
    assert_reported(report, "directives", ROOT)


def test_an_option_in_an_included_file_is_refused(books):
    append(books / MONTH, 'option "insert_pythonpath" "TRUE"\n')
    assert_reported(cli("reconcile", books), "directives", MONTH)


# ------------------------------------------------------------- 2. files outside the books


def test_a_path_in_the_store_outside_the_books_is_never_opened(books, outside):
    victim = outside / "victim.txt"
    before = victim.read_bytes()
    relative = os.path.relpath(victim, books)
    with sqlite3.connect(books / "state.sqlite") as db:
        db.execute("INSERT INTO journal_files VALUES (?, 9, 'x', '2026-10', 0)", [relative])
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), "never writes")
    assert victim.read_bytes() == before
    assert not (outside / "victim.txt.tail").exists()
    assert_reported(cli("reconcile", books), "confinement", relative)


def test_a_lock_file_linked_outside_is_never_written(books, outside):
    victim = outside / "victim.txt"
    before = victim.read_bytes()
    (books / ".lock").unlink(missing_ok=True)
    (books / ".lock").symlink_to(victim)
    report = cli("reconcile", books)
    assert victim.read_bytes() == before
    assert "Traceback" not in report.stderr and report.returncode == 1
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), ".lock")
    assert victim.read_bytes() == before


def test_recovered_linked_outside_gets_nothing(books, outside):
    (books / "recovered").symlink_to(outside)
    append(books / MONTH, '2026-10-31 * "hand" "tail"\n')  # a tail recovery would move
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), "symbolic link")
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert_reported(cli("reconcile", books), "confinement", "recovered")


def test_a_customer_folder_linked_outside_gets_no_month_file(books, outside):
    real = books / CUSTOMER
    moved = outside / "acme"
    shutil.move(real, moved)
    real.symlink_to(moved)
    before = sorted(p.name for p in moved.iterdir())
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), "symbolic link")
    assert sorted(p.name for p in moved.iterdir()) == before
    report = cli("reconcile", books)
    assert_reported(report, "confinement", CUSTOMER)
    assert "Books reconcile." not in report.stdout


def test_a_month_file_linked_outside_and_padded_is_never_truncated(books, outside):
    victim = outside / "victim.txt"
    (books / MONTH).rename(victim)
    append(victim, "padding past the committed length\n")
    before = victim.read_bytes()
    (books / MONTH).symlink_to(victim)
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), "symbolic link")
    assert victim.read_bytes() == before
    assert_reported(cli("reconcile", books), "confinement", MONTH)


# ------------------------------------------------------------ 3. in-place edits laundered


def same_length_edit(path: Path, old: bytes, new: bytes) -> None:
    assert len(old) == len(new)
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


def late_top_up(tmp_path: Path) -> Path:
    """An event for acme-gmbh on Oct 31: posting it appends to acme's October file."""
    path = tmp_path / "late.jsonl"
    event = {"id": "x-late", "type": "top_up", "customer": "acme-gmbh",
             "at": "2026-10-31T10:00:00Z", "amount": "5.00"}  # fmt: skip
    path.write_text(json.dumps(event) + "\n")
    return path


def test_an_in_place_edit_of_an_open_month_is_not_laundered_by_post(books, tmp_path):
    path = books / MONTH
    same_length_edit(path, b"  trial: 3\n", b"  trial: 0\n")
    edited = path.read_bytes()
    assert_reported(cli("reconcile", books), "files", MONTH)
    # A post that appends to that file refuses; the edit is neither recorded nor moved.
    assert_refused(cli("post", books, late_top_up(tmp_path), "--through", "2026-10-31"), MONTH)
    assert path.read_bytes() == edited
    assert not (books / "recovered").exists()
    assert_reported(cli("reconcile", books), "files", MONTH)


def test_an_edit_before_the_committed_end_with_a_tail_is_tampering_not_a_torn_tail(books):
    path = books / MONTH
    same_length_edit(path, b"  trial: 3\n", b"  trial: 0\n")
    append(path, '2026-10-31 * "hand" "tail"\n')
    edited = path.read_bytes()
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), "changed")
    assert path.read_bytes() == edited  # nothing moved, nothing truncated
    assert not (books / "recovered").exists()


def test_close_never_seals_an_edited_open_month(books):
    path = books / MONTH
    same_length_edit(path, b"  trial: 3\n", b"  trial: 0\n")
    assert_refused(cli("close", books, "2026-10"), MONTH, "changed")
    with sqlite3.connect(books / "state.sqlite") as db:
        assert db.execute("SELECT count(*) FROM closed_months").fetchone()[0] == 0


def test_the_honest_books_still_reconcile_and_post(books):
    before = journal_bytes(books)
    report = cli("reconcile", books)
    assert report.returncode == 0 and report.stdout.endswith("Books reconcile.\n"), report.stdout
    assert journal_bytes(books) == before
    result = cli("post", books, NOVEMBER, "--through", "2026-11-30", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["transactions_written"] > 0
    assert cli("reconcile", books).returncode == 0


# ------------------------------------------------------------------- 4. store tampering


def store(books: Path) -> sqlite3.Connection:
    return sqlite3.connect(books / "state.sqlite")


@pytest.mark.parametrize("view", ["v_usage_vs_postings", "v_wallet_balances", "v_events"])
def test_a_redefined_view_hides_nothing(books, view):
    with store(books) as db:
        db.execute("UPDATE conversations SET price = 9999 WHERE conversation = "
                   "(SELECT min(conversation) FROM conversations)")  # fmt: skip
        db.execute(f"DROP VIEW {view}")
        db.execute(f"CREATE VIEW {view} AS SELECT * FROM ({VIEWS[view]}) WHERE 0")
    report = cli("reconcile", books)
    assert_reported(report, "store_schema", view)
    assert_reported(report, "usage_vs_postings", "differ")  # computed with its own SQL
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), "schema")
    assert_refused(cli("rejections", books), "schema")


def test_a_trigger_that_drops_usage_never_fires(books):
    with store(books) as db:
        db.execute(
            "CREATE TRIGGER drop_usage AFTER INSERT ON events BEGIN "
            "DELETE FROM events WHERE rowid = new.rowid; END"
        )
    before = journal_bytes(books)
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), "trigger drop_usage")
    assert journal_bytes(books) == before
    with store(books) as db:  # nothing was inserted for the trigger to act on
        assert db.execute("SELECT max(run_id) FROM events").fetchone()[0] == 1
    assert_reported(cli("reconcile", books), "store_schema", "drop_usage")


def test_a_deleted_event_row_and_its_quarantine_are_found(books):
    with store(books) as db:
        db.execute("DELETE FROM events WHERE type = 'top_up' AND rowid = "
                   "(SELECT min(rowid) FROM events WHERE type = 'top_up')")  # fmt: skip
        db.execute("DELETE FROM quarantine")
    report = cli("reconcile", books)
    assert_reported(report, "rows", "the events rows of run 1 are not the rows it wrote")
    assert_reported(report, "rows", "the quarantine rows of run 1 are not the rows it wrote")


def test_an_edited_lot_and_an_added_verdict_are_found(books):
    with store(books) as db:
        db.execute("UPDATE lots SET remainder = remainder + 100000 WHERE rowid = 1")
        customer = db.execute("SELECT customer FROM lots WHERE rowid = 1").fetchone()[0]
        db.execute("INSERT INTO verdicts VALUES ('made-up', ?, 'unknown_customer', 1, 0)",
                   [customer])  # fmt: skip
    report = cli("reconcile", books)
    assert_reported(report, "rows", f"the derived state of {customer}")
    assert_reported(report, "lots_vs_wallet", customer)


def test_a_deleted_run_record_is_found(books):
    with store(books) as db:
        db.execute("DELETE FROM runs")
    report = cli("reconcile", books)
    assert_reported(report, "rows", "which the run log does not hold")
    assert_reported(report, "run_log", MONTH)


def test_a_lowered_length_moves_no_committed_entry(books):
    with store(books) as db:
        db.execute("UPDATE journal_files SET length = length - 400 WHERE path = ?", [MONTH])
    before = journal_bytes(books)
    assert_reported(cli("reconcile", books), "run_log", MONTH)
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), MONTH)
    assert journal_bytes(books) == before
    assert not (books / "recovered").exists()


def test_a_negative_length_is_one_error_line(books):
    with store(books) as db:
        db.execute("UPDATE journal_files SET length = -5 WHERE path = ?", [MONTH])
    assert_refused(cli("post", books, NOVEMBER, "--through", "2026-11-30"), MONTH)
    assert_reported(cli("reconcile", books), "files", MONTH)


def test_rules_edited_in_place_are_reported(books):
    rules = books / "rules.toml"
    rules.write_text(rules.read_text().replace('price_monthly = "0.30"', 'price_monthly = "3.00"'))
    assert_reported(cli("reconcile", books), "rules", "rules.toml")
