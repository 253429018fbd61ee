"""trace (SPEC §7): from a GL summary, a transaction, an event or a conversation to the
whole chain, with conversations classified as each posting run saw them."""

from __future__ import annotations

import json

from builders import money_event, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.core.accounts import control_account
from ledger_engine.trace import trace


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def history(poster):
    """Run 1: two included conversations; run 2: a late autopilot event reclassifies one."""
    first = [
        sub("acme", "2026-11-01T08:00:00Z", "boost"),
        use("acme", "2026-11-02T10:00:00Z", "c1", id="u1"),
        use("acme", "2026-11-02T11:00:00Z", "c2", id="u2"),
        money_event("top_up", "acme", "2026-11-02T12:00:00Z", "10.00", id="t1"),
    ]
    poster(first, "2026-11-30")
    poster([use("acme", "2026-11-20T10:00:00Z", "c1", "autopilot", id="u3")], "2026-11-30")
    return poster.scratch / "events-1.jsonl", poster.scratch / "events-2.jsonl"


def test_a_gl_summary_leads_to_the_entries_it_sums(poster, books):
    history(poster)
    chain = trace(books, "gl.2026-11-02.usage.r1")
    assert chain["found"] == "gl-summary"
    (summary,) = chain["gl"]
    totals: dict[str, str] = {}
    for entry in summary["entries"]:
        assert entry["gl"] == "gl.2026-11-02.usage.r1" and entry["date"] == "2026-11-02"
        for account, amount in entry["postings"]:
            key = control_account(account)
            totals[key] = f"{float(totals.get(key, 0)) + float(amount):.2f}"
    assert {a: f"{float(v):.2f}" for a, v in summary["postings"]} == totals
    assert {e["kind"] for e in summary["entries"]} == {"usage"}
    top_up = trace(books, "gl.2026-11-02.top-up.r1")["gl"][0]["entries"]
    assert [e["kind"] for e in top_up] == ["top-up"]


def test_an_entry_shows_its_conversations_as_its_run_saw_them_and_the_raw_lines(poster, books):
    night_file, _ = history(poster)
    chain = trace(books, "C-acme.2026-11-02.usage.2026-11-01.1")
    (summary,) = chain["gl"]
    (entry,) = summary["entries"]
    statuses = {c["conversation"]: c["status"] for c in entry["conversations"]}
    assert statuses == {"c1": "included", "c2": "included"}  # as run 1 saw them
    c1 = next(c for c in entry["conversations"] if c["conversation"] == "c1")
    first = c1["events"][0]
    lines = night_file.read_text().splitlines()
    assert (first["id"], first["line"]) == ("u1", 2)
    assert first["raw"] == lines[1] and first["file"] == str(night_file)


def test_an_event_leads_to_the_original_and_its_correction(poster, books):
    history(poster)
    chain = trace(books, "u3")
    assert chain["found"] == "event" and chain["events"][0]["read_in_run"] == 2
    entries = [e for s in chain["gl"] for e in s["entries"]]
    assert [e["txn"] for e in entries] == [
        "C-acme.2026-11-02.usage.2026-11-01.1",
        "C-acme.2026-11-02.usage.2026-11-01.2",
    ]
    seen = [
        {c["conversation"]: (c["status"], c["classified_in_run"]) for c in e["conversations"]}
        for e in entries
    ]
    assert seen == [
        {"c1": ("included", 1), "c2": ("included", 1)},
        {"c1": ("charged", 2), "c2": ("included", 1)},
    ]
    assert entries[1]["corrects"] == entries[0]["txn"]


def test_a_conversation_and_a_top_up_event_are_traced_too(poster, books):
    history(poster)
    by_conversation = trace(books, "c2")
    assert by_conversation["found"] == "conversation"
    assert [e["run"] for s in by_conversation["gl"] for e in s["entries"]] == [1, 2]
    top_up = trace(books, "t1")
    (summary,) = top_up["gl"]
    (entry,) = summary["entries"]
    assert entry["kind"] == "top-up" and [e["id"] for e in entry["events"]] == ["t1"]


def test_the_cli_prints_the_chain_or_one_error_line(poster, books):
    history(poster)
    text = run_cli("trace", books, "gl.2026-11-02.usage.r1")
    assert text.exit_code == 0
    assert "GL summary gl.2026-11-02.usage.r1" in text.output
    assert "conversation c1: suggested_reply, included, 0.30 (as run 1 classified it)" in (
        text.output
    )
    as_json = run_cli("trace", books, "u1", "--json")
    assert json.loads(as_json.output)["found"] == "event"
    missing = run_cli("trace", books, "no-such-thing")
    assert missing.exit_code == 1
    assert missing.output == "Error: nothing in these books is called 'no-such-thing'\n"


def test_a_channel_entry_lists_the_channel_events_of_its_day(poster, books):
    poster(
        [
            sub("acme", "2026-11-01T08:00:00Z", "boost"),
            money_event("channel_usage", "acme", "2026-11-02T09:00:00Z", "1.00", id="s1",
                        channel="sms"),
            money_event("channel_usage", "acme", "2026-11-02T10:00:00Z", "2.00", id="v1",
                        channel="voice"),
            money_event("channel_usage", "acme", "2026-11-02T11:00:00Z", "0.50", id="s2",
                        channel="sms"),
        ],
        "2026-11-30",
    )  # fmt: skip
    (summary,) = trace(books, "s2")["gl"]
    (entry,) = summary["entries"]
    assert entry["txn"] == "C-acme.2026-11-02.channel.sms.1"
    assert [e["id"] for e in entry["events"]] == ["s1", "s2"]
