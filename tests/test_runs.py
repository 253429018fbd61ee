"""runs (SPEC v3 §7): the run log without SQL: who ran what, on which inputs (their SHA-256
and line counts), under which rules file and engine, what each run wrote, and the chain."""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from builders import init_books, sub, use
from click.testing import CliRunner

from ledger_engine import __version__
from ledger_engine.cli import main
from ledger_engine.post import post
from ledger_engine.runs import RUN_KEYS

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE_EVENTS = Path(__file__).resolve().parents[1] / "sample_books" / "events"


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def command_line(*args) -> subprocess.CompletedProcess:
    """The real command line, so the run log records real arguments."""
    result = subprocess.run([sys.executable, "-m", "ledger_engine", *map(str, args)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runs_json(books: Path) -> list[dict]:
    result = run_cli("runs", books, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def two_runs(tmp_path: Path) -> tuple[Path, Path, dict, str]:
    """A post through the real command line, then a close of the month it posted."""
    books = init_books(tmp_path / "books")
    events = tmp_path / "night.jsonl"
    lines = [sub("acme", "2026-11-01T08:00:00Z", "boost"),
             use("acme", "2026-11-02T10:00:00Z", "c1"), "not json"]  # fmt: skip
    events.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    posted = json.loads(command_line("post", books, events, "--through", "2026-11-30", "--json")
                        .stdout)  # fmt: skip
    seal = command_line("close", books, "2026-11").stdout.split("Seal: ")[1].strip()
    return books, events, posted, seal


def test_a_post_shows_its_command_line_rules_engine_who_and_inputs(tmp_path):
    books, events, posted, _ = two_runs(tmp_path)
    first, _ = runs_json(books)
    assert list(first) == list(RUN_KEYS)
    assert first["run"] == 1 and first["command"] == "post"
    assert first["arguments"] == ["ledger-engine", "post", str(books), str(events),
                                  "--through", "2026-11-30", "--json"]  # fmt: skip
    assert first["rules_sha256"] == sha256_of(books / "rules.toml")
    assert first["engine"] == __version__
    assert first["user"] == getpass.getuser() and first["host"] == socket.gethostname()
    assert first["inputs"] == [
        {"file": str(events), "sha256": sha256_of(events), "lines": 3, "already_ingested": False}
    ]
    assert first["transactions_written"] == posted["transactions_written"] > 0
    assert first["through"] == "2026-11-30"
    assert first["options"] == {"full": False, "reprice_from": None}
    assert first["files_sealed"] is None and first["seal_sha256"] is None
    assert first["prev_hash"] == "0" * 64 and len(first["hash"]) == 64


def test_a_close_shows_what_it_sealed_and_the_chain_runs_through_every_record(tmp_path):
    books, _, _, seal = two_runs(tmp_path)
    first, close = runs_json(books)
    assert close["command"] == "close 2026-11"
    assert close["arguments"] == ["ledger-engine", "close", str(books), "2026-11"]
    assert close["seal_sha256"] == seal and close["files_sealed"] > 0
    assert close["balance_assertions"] > 0 and close["transactions_written"] is None
    assert close["inputs"] == [] and close["through"] is None
    assert close["prev_hash"] == first["hash"]
    with sqlite3.connect(books / "state.sqlite") as db:
        hashes = [row[0] for row in db.execute("SELECT hash FROM runs ORDER BY run_id")]
    assert [first["hash"], close["hash"]] == hashes


def test_an_input_read_again_is_marked_already_ingested(tmp_path):
    books, events, _, _ = two_runs(tmp_path)
    post(books, [str(events)], datetime.date(2026, 12, 31))
    again = runs_json(books)[-1]
    assert again["arguments"] == [] and again["transactions_written"] == 0
    assert again["inputs"] == [
        {"file": str(events), "sha256": sha256_of(events), "lines": 3, "already_ingested": True}
    ]


def test_runs_of_a_store_upgraded_from_schema_3_show_what_they_have(tmp_path):
    books = tmp_path / "books"
    shutil.copytree(FIXTURES / "books-schema-3", books)
    late = SAMPLE_EVENTS / "2026-12-late.jsonl"
    post(books, [str(late)], datetime.date(2026, 12, 31))  # upgrades the store, then runs
    found = runs_json(books)
    assert [run["command"] for run in found] == ["post", "post", "close 2026-10", "post"]
    for old in found[:3]:
        for key in ("arguments", "engine", "rules_sha256", "options", "user", "host"):
            assert old[key] is None, (old["run"], key)
    october = found[0]
    assert october["inputs"] == [{
        "file": "sample_books/events/2026-10-night.jsonl", "lines": 324,
        "sha256": sha256_of(SAMPLE_EVENTS / "2026-10-night.jsonl"), "already_ingested": False,
    }]  # fmt: skip
    assert october["transactions_written"] == 123 and october["started"].startswith("2026-11-29")
    assert found[2]["files_sealed"] == 9 and found[2]["balance_assertions"] == 130
    assert found[2]["seal_sha256"].startswith("0b222c1a")
    newest = found[3]
    assert newest["rules_sha256"] == sha256_of(books / "rules.toml")
    assert newest["engine"] == __version__ and newest["inputs"][0]["sha256"] == sha256_of(late)
    assert [run["prev_hash"] for run in found[1:]] == [run["hash"] for run in found[:-1]]


def test_the_table_has_a_block_per_run_and_a_dash_for_what_an_old_run_lacks(tmp_path):
    books = tmp_path / "books"
    shutil.copytree(FIXTURES / "books-schema-3", books)
    post(books, [str(SAMPLE_EVENTS / "2026-12-late.jsonl")], datetime.date(2026, 12, 31))
    result = run_cli("runs", books)
    assert result.exit_code == 0, result.output
    blocks = result.output.rstrip("\n").split("\n\n")
    assert [block.splitlines()[0].split(",")[0] for block in blocks] == [
        "Run 1: post", "Run 2: post", "Run 3: close 2026-10", "Run 4: post"
    ]  # fmt: skip
    october = blocks[0].splitlines()
    assert october[1:4] == ["  arguments: -", "  engine: -  rules sha256: -",
                            "  user: -  host: -"]  # fmt: skip
    assert october[4] == (
        "  input: sample_books/events/2026-10-night.jsonl  sha256 "
        f"{sha256_of(SAMPLE_EVENTS / '2026-10-night.jsonl')}  324 lines"
    )
    assert october[5] == "  written: 123 transactions, 19 journal files, posted through 2026-10-31"
    close = blocks[2].splitlines()
    assert close[4] == "  inputs: -"
    assert close[5].startswith("  written: 9 files sealed, 130 balance assertions, ")
    newest = blocks[3].splitlines()
    assert newest[2] == f"  engine: {__version__}  rules sha256: {sha256_of(books / 'rules.toml')}"
    assert newest[3] == f"  user: {getpass.getuser()}  host: {socket.gethostname()}"


def test_the_table_escapes_control_characters_from_the_store(tmp_path):
    books = init_books(tmp_path / "books")
    post(books, [], datetime.date(2026, 11, 30))
    with sqlite3.connect(books / "state.sqlite") as db:  # a store someone else wrote
        db.execute(
            "UPDATE runs SET details = json_set(details, '$.user', ?, '$.arguments', json(?))",
            ["mallory\x1b[2J", json.dumps(["ledger-engine", "post", "a\nb"])],
        )
    result = run_cli("runs", books)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "  user: mallory\\x1b[2J  host: " in result.output
    assert "  arguments: ledger-engine post 'a\\nb'" in result.output
    assert run_cli("runs", tmp_path / "none").output.startswith("Error: ")


def test_books_with_no_run_say_so(tmp_path):
    books = init_books(tmp_path / "books")
    assert run_cli("runs", books).output == "No runs.\n"
    assert runs_json(books) == []
