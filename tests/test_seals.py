"""Chained seals checked against the files (SPEC §6): a month's seal covers its files and
the previous seal; reconcile recomputes the chain from disk and compares it with the GL's
closed entries, the store and the run log, and with a seal the auditor kept."""

from __future__ import annotations

import sqlite3
import subprocess

from builders import sub, use
from click.testing import CliRunner

from ledger_engine.books.files import sha256_file
from ledger_engine.cli import main
from ledger_engine.reconcile import reconcile

# The recipe of docs/design.md, with standard tools only.
RECIPE = r"""
seal=0000000000000000000000000000000000000000000000000000000000000000
for month in $MONTHS; do
  rules=$(grep -rh -A8 "custom \"closed\" \"$month\"" gl | grep rules-sha256 | cut -d'"' -f2)
  seal=$( { echo "previous $seal"
            find gl customers -name "$month.beancount" | LC_ALL=C sort |
              while read -r f; do echo "$f $(sha256sum "$f" | cut -d' ' -f1)"; done
            echo "rules.toml $rules"
          } | sha256sum | cut -d' ' -f1 )
  echo "$month $seal"
done
"""


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def two_closed_months(poster, books) -> dict[str, str]:
    poster(
        [
            sub("acme", "2026-10-05T08:00:00Z", "boost"),
            use("acme", "2026-10-06T10:00:00Z", "a"),
            use("acme", "2026-11-06T10:00:00Z", "b", "autopilot"),
            sub("beta", "2026-11-02T08:00:00Z", "pro", commitment="5.00"),
        ],
        "2026-11-30",
    )
    seals = {}
    for month in ("2026-10", "2026-11"):
        result = run_cli("close", books, month)
        assert result.exit_code == 0, result.output
        seals[month] = result.output.splitlines()[-1].removeprefix("Seal: ")
    return seals


def test_close_prints_the_seal_that_standard_tools_recompute(poster, books):
    seals = two_closed_months(poster, books)
    result = subprocess.run(
        ["bash", "-c", RECIPE],
        cwd=books,
        env={"MONTHS": "2026-10 2026-11", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "".join(f"{m} {s}\n" for m, s in seals.items())
    gl = (books / "gl/2026/2026-12.beancount").read_text()
    assert f'previous-seal: "{seals["2026-10"]}"\n  seal-sha256: "{seals["2026-11"]}"' in gl
    assert reconcile(books, seals["2026-11"]).ok
    assert reconcile(books, seals["2026-10"]).ok


def test_a_sealed_file_changed_with_its_store_hash_is_still_caught(poster, books):
    two_closed_months(poster, books)
    path = books / "customers/C-acme/2026-10.beancount"
    path.write_text(path.read_text().replace("0.30 EUR", "0.20 EUR"))
    con = sqlite3.connect(books / "state.sqlite")
    con.execute(
        "UPDATE journal_files SET sha256 = ?, length = ? WHERE path = ?",
        [sha256_file(path), path.stat().st_size, "customers/C-acme/2026-10.beancount"],
    )
    con.commit()
    con.close()
    report = reconcile(books)
    seals = [d for d in report.differences if d.check == "seals"]
    assert {d.message for d in seals} >= {
        "sealed file of 2026-10 differs from the store's record of the seal",
        "sealed file of 2026-10 differs from the run log",
        "seal of 2026-10 recomputed from the files differs from the GL's closed entry",
        "seal of 2026-11 recomputed from the files differs from the GL's closed entry",
    }
    assert not [d for d in report.differences if d.check == "files"]  # the store was fooled


def test_editing_the_seal_records_in_the_store_too_is_still_caught(poster, books):
    seals = two_closed_months(poster, books)
    path = books / "gl/2026/2026-10.beancount"
    path.write_text(path.read_text() + "; a note\n")
    con = sqlite3.connect(books / "state.sqlite")
    relative = "gl/2026/2026-10.beancount"
    sha, size = sha256_file(path), path.stat().st_size
    con.execute(
        "UPDATE journal_files SET sha256 = ?, length = ? WHERE path = ?", [sha, size, relative]
    )
    con.execute(
        "UPDATE closed_months SET files = json_set(files, '$.\"' || ? || '\"', ?) "
        "WHERE month = '2026-10'",
        [relative, sha],
    )
    con.commit()
    con.close()
    report = reconcile(books)
    messages = {d.message for d in report.differences}
    assert "sealed file of 2026-10 differs from the run log" in messages
    gl_entry = "seal of 2026-10 recomputed from the files differs from the GL's closed entry"
    assert gl_entry in messages
    assert "seal of 2026-11 recomputed from the files differs from the run log" in messages
    result = run_cli("reconcile", books, "--seal", seals["2026-11"])
    assert result.exit_code == 1
    assert "the kept seal matches no closed month's seal" in result.output


def test_a_seal_that_was_never_printed_is_a_difference(poster, books):
    two_closed_months(poster, books)
    report = reconcile(books, "f" * 64)
    assert [d.message for d in report.differences] == [
        "the kept seal matches no closed month's seal recomputed from the files"
    ]
