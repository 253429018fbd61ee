"""The command-line contract of SPEC §7: commands, JSON output, exit codes, progress."""

from __future__ import annotations

import json
import subprocess
import sys

from builders import sub, use
from click.testing import CliRunner

from ledger_engine.cli import TerminalProgress, main


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_init_creates_books_and_refuses_a_non_empty_directory(tmp_path):
    result = run("init", tmp_path / "b", "--currency", "EUR", "--timezone", "Europe/Berlin")
    assert result.exit_code == 0, result.output
    for name in ("ledger.beancount", "accounts.beancount", "rules.toml", "state.sqlite"):
        assert (tmp_path / "b" / name).exists()
    again = run("init", tmp_path / "b")
    assert again.exit_code == 1 and "not empty" in again.output
    assert run("init", tmp_path / "c", "--timezone", "Mars/Olympus").exit_code == 1
    assert run("init", tmp_path / "d", "--currency", "euro").exit_code == 2


def test_post_json_counts_and_strict(tmp_path):
    assert run("init", tmp_path / "b").exit_code == 0
    events = tmp_path / "e.jsonl"
    events.write_text(
        "\n".join(
            json.dumps(e)
            for e in [
                sub("acme", "2026-11-01T08:00:00Z", "boost"),
                use("acme", "2026-11-02T10:00:00Z", "c1"),
            ]
        )
        + "\n{oops\n"
    )
    result = run("post", tmp_path / "b", events, "--through", "2026-11-30", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts == {
        "read": 3,
        "accepted": 2,
        "duplicates": 0,
        "rejected": {"malformed_json": 1},
        "posted_through": "2026-11-30",
        "transactions_written": 2,
        "run": 1,
    }
    strict = run("post", tmp_path / "b", events, "--through", "2026-11-30", "--strict")
    assert strict.exit_code == 3
    assert "rejected malformed_json: 1" in strict.output


def test_post_reads_stdin(tmp_path):
    assert run("init", tmp_path / "b").exit_code == 0
    line = json.dumps(sub("acme", "2026-11-01T08:00:00Z", "boost")) + "\n"
    result = run("post", tmp_path / "b", "-", "--through", "2026-11-30", "--json", input=line)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accepted"] == 1


def test_usage_errors_exit_2(tmp_path):
    assert run("init", tmp_path / "b").exit_code == 0
    assert run("post", tmp_path / "b").exit_code == 2  # no files
    assert run("post", tmp_path / "b", "x.jsonl", "--through", "30/11/2026").exit_code == 2
    assert run("close", tmp_path / "b", "2026-13-01").exit_code == 2
    assert run("transactions", tmp_path / "b", "acme", "--month", "nov").exit_code == 2


def test_post_on_missing_books_is_one_error_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ledger_engine", "post", str(tmp_path / "none"), "-"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")


def test_no_progress_output_when_not_a_terminal(tmp_path):
    assert run("init", tmp_path / "b").exit_code == 0
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps(sub("acme", "2026-11-01T08:00:00Z", "boost")) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger_engine",
            "post",
            str(tmp_path / "b"),
            str(events),
            "--through",
            "2026-11-30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Run 1: read 1, accepted 1")


def test_terminal_progress_shows_events_then_customers(capsys):
    display = TerminalProgress()
    display.lines(5000)
    display.customers(1, 2)
    display.customers(2, 2)
    display.close()
    err = capsys.readouterr().err
    assert "events read: 5,000" in err
    assert "customers posted: [" in err and "2/2" in err


def test_rejections_lists_schema_and_rating_verdicts(tmp_path):
    assert run("init", tmp_path / "b").exit_code == 0
    events = tmp_path / "e.jsonl"
    events.write_text(
        "\n".join([json.dumps(use("ghost", "2026-11-02T10:00:00Z", "c1", id="g")), "not json"])
        + "\n"
    )
    assert run("post", tmp_path / "b", events, "--through", "2026-11-30").exit_code == 0
    result = run("rejections", tmp_path / "b", "--json")
    rows = json.loads(result.output)
    assert {(r["reason"], r["kind"], r["line"]) for r in rows} == {
        ("malformed_json", "schema", 2),
        ("unknown_customer", "rating", 1),
    }
    text = run("rejections", tmp_path / "b").output
    assert "unknown_customer" in text and "e.jsonl:2" in text


def test_python_dash_m_works():
    result = subprocess.run(
        [sys.executable, "-m", "ledger_engine", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for command in ("init", "post", "reconcile", "close", "transactions", "rejections"):
        assert command in result.stdout
