"""trace (SPEC §7): from a GL summary, a transaction, an event, a lot or a conversation to
the whole chain, with conversations classified as each posting run saw them, and entries
derived from terms and lots through their lots to the origin and every use of the money."""

from __future__ import annotations

import json

from builders import money_event, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.core.accounts import control_account
from ledger_engine.core.wallet import short_hash
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


# ------------------------------------------------------------------------------ lots

NO_AUTO = {"enabled": False}


def wallet_history(poster, expire: bool = True):
    """Run 1 (through 30 Nov): on 3 Nov acme's commitment (1.00) and top-up (1.00) cannot
    cover 2.40 of autopilot and 0.50 of SMS, so an automatic top-up of 5.00 does; beta has a
    commitment (2.00) and a top-up (3.00) it never uses.  Run 2 (through 1 Jan): what is left
    expires."""
    first = [
        sub("acme", "2026-11-01T08:00:00Z", "boost", id="s-acme", commitment="1.00",
            auto_top_up={"enabled": True, "amount": "5.00", "threshold": "0.00"}),
        sub("beta", "2026-11-01T09:00:00Z", "boost", id="s-beta", commitment="2.00",
            auto_top_up=NO_AUTO),
        money_event("top_up", "acme", "2026-11-02T08:00:00Z", "1.00", id="t-acme"),
        money_event("top_up", "beta", "2026-11-02T08:00:00Z", "3.00", id="t-beta"),
        *[use("acme", f"2026-11-03T10:0{i}:00Z", f"a{i}", "autopilot") for i in range(8)],
        money_event("channel_usage", "acme", "2026-11-03T11:00:00Z", "0.50", id="sms",
                    channel="sms"),
        *[use("acme", f"2026-11-10T10:0{i}:00Z", f"b{i}", "autopilot") for i in range(2)],
    ]  # fmt: skip
    poster(first, "2026-11-30")
    if expire:
        poster([], "2027-01-01")
    return poster.scratch / "events-1.jsonl"


def briefs(entries) -> list[tuple[str, str]]:
    return [(entry["txn"], entry["amount"]) for entry in entries]


def test_an_automatic_top_up_leads_to_its_lot_the_charges_that_needed_it_and_what_it_paid(
    poster, books
):
    wallet_history(poster)
    chain = trace(books, "C-acme.2026-11-03.auto-top-up.1")
    (entry,) = chain["gl"][0]["entries"]
    (lot,) = entry["lots"]
    assert (lot["lot"], lot["kind"], lot["amount"], lot["remainder"], lot["last_valid"]) == (
        "auto-top-up-2026-11-03", "auto_top_up", "5.00", "0.00", "2026-12-31"
    )  # fmt: skip
    assert lot["credited_by"] == ["C-acme.2026-11-03.auto-top-up.1"]
    assert lot["origin"]["what"] == "charges" and lot["origin"]["events"] == []
    assert briefs(lot["origin"]["charges"]) == [
        ("C-acme.2026-11-03.usage.2026-11-01.1", "2.40"),
        ("C-acme.2026-11-03.channel.sms.1", "0.50"),
    ]
    assert briefs(lot["consumptions"]) == [
        ("C-acme.2026-11-03.usage.2026-11-01.1", "0.40"),  # after the commitment and top-up
        ("C-acme.2026-11-03.channel.sms.1", "0.50"),
        ("C-acme.2026-11-10.usage.2026-11-01.1", "0.60"),
        ("C-acme.2027-01-01.breakage.1", "3.50"),
    ]
    assert lot["taken_as_posted"] == "5.00"
    by_summary = trace(books, "gl.2026-11-03.auto-top-up.r1")["gl"][0]["entries"][0]["lots"]
    assert by_summary == [lot]


def test_an_expiry_leads_to_the_lots_it_expired_and_a_commitment_to_its_subscription(poster, books):
    night = wallet_history(poster)
    (summary,) = trace(books, "gl.2027-01-01.expiry.r2")["gl"]
    entries = {entry["customer"]: entry for entry in summary["entries"]}
    expired = {customer: [(lot["lot"], lot["kind"]) for lot in entry["lots"]]
               for customer, entry in entries.items()}  # fmt: skip
    december = ("commitment-2026-12-01", "commitment")
    assert expired == {
        "acme": [("auto-top-up-2026-11-03", "auto_top_up"), december],
        "beta": [(f"top-up-{short_hash('t-beta')}", "top_up"), december],
    }
    commitment = entries["acme"]["lots"][1]
    assert briefs(commitment["consumptions"]) == [("C-acme.2027-01-01.breakage.1", "1.00")]
    assert commitment["credited_by"] == ["C-acme.2026-12-01.commitment.1"]
    origin = commitment["origin"]
    assert origin["what"] == "subscription"
    assert origin["terms"] == {"subscription": "s-acme", "plan": "boost", "interval": "monthly",
                               "commitment": "1.00", "commitment_anchor": "2026-11-01"}  # fmt: skip
    (event,) = origin["events"]
    assert (event["id"], event["line"], event["read_in_run"]) == ("s-acme", 1, 1)
    assert event["raw"] == night.read_text().splitlines()[0]
    (top_up_event,) = entries["beta"]["lots"][0]["origin"]["events"]
    assert top_up_event["id"] == "t-beta"


def test_a_lot_id_from_expiring_credits_is_traced_to_its_origin_events_raw_line(poster, books):
    night = wallet_history(poster, expire=False)
    report = run_cli("report", books, "expiring-credits", "--format", "json")
    (row,) = [row for row in json.loads(report.output) if row["kind"] == "top_up"]
    traced = run_cli("trace", books, row["lot"], "--json")
    assert traced.exit_code == 0, traced.output
    chain = json.loads(traced.output)
    assert chain["found"] == "lot"
    (lot,) = chain["lots"]
    assert (lot["customer"], lot["remainder"]) == (row["customer"], row["remainder"])
    (event,) = lot["origin"]["events"]
    assert (event["id"], event["line"]) == ("t-beta", 4)
    assert event["raw"] == night.read_text().splitlines()[3]
    assert lot["consumptions"] == [] and lot["taken_as_posted"] == "0.00"
    (summary,) = chain["gl"]  # the entry that credited it, under its GL summary
    assert [e["txn"] for e in summary["entries"]] == [
        f"C-beta.2026-11-02.top-up.{lot['lot'][7:]}.1"
    ]


def test_a_lot_id_of_two_customers_leads_to_both(poster, books):
    wallet_history(poster)
    chain = trace(books, "commitment-2026-11-01")
    assert [(lot["customer"], lot["amount"], lot["remainder"]) for lot in chain["lots"]] == [
        ("acme", "1.00", "0.00"),
        ("beta", "2.00", "0.00"),
    ]
    acme, beta = chain["lots"]
    assert briefs(acme["consumptions"]) == [("C-acme.2026-11-03.usage.2026-11-01.1", "1.00")]
    assert briefs(beta["consumptions"]) == [("C-beta.2026-12-01.breakage.1", "2.00")]
    assert [lot["origin"]["events"][0]["id"] for lot in chain["lots"]] == ["s-acme", "s-beta"]
    entries = [entry for summary in chain["gl"] for entry in summary["entries"]]
    assert [entry["txn"] for entry in entries] == [
        "C-acme.2026-11-01.commitment.1",
        "C-beta.2026-11-01.commitment.1",
    ]
    assert all("lots" not in entry for entry in entries)  # each lot is shown once, on top


def test_the_cli_prints_a_lot_chain_and_an_unknown_ref_stays_one_error_line(poster, books):
    wallet_history(poster)
    text = run_cli("trace", books, "auto-top-up-2026-11-03")
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[:5] == [
        "auto-top-up-2026-11-03: lot",
        "  lot auto-top-up-2026-11-03 of customer acme: auto_top_up, 5.00 credited 2026-11-03, "
        "valid through 2026-12-31, 0.00 left",
        "    credited by C-acme.2026-11-03.auto-top-up.1",
        "    origin: the charges of 2026-11-03 that needed it",
        "      2026-11-03  C-acme.2026-11-03.usage.2026-11-01.1  'AI usage'        2.40",
    ]
    assert "    taken by:" in lines
    assert "      2027-01-01  C-acme.2027-01-01.breakage.1  'Expiry'        3.50" in lines
    expiry = run_cli("trace", books, "C-acme.2027-01-01.breakage.1").output
    assert "    lot commitment-2026-12-01 of customer acme: commitment, 1.00 credited " in expiry
    assert "      origin: the subscription in force (plan boost, monthly; commitment 1.00 a " in (
        expiry
    )
    for ref in ("auto-top-up-2026-11-04", "commitment-2026-11-02"):
        missing = run_cli("trace", books, ref)
        assert missing.exit_code == 1
        assert missing.output == f"Error: nothing in these books is called {ref!r}\n"


def test_lots_are_read_only_from_journal_bytes_the_store_recorded(poster, books):
    wallet_history(poster)
    january = books / "customers" / "C-acme" / "2027-01.beancount"
    with january.open("ab") as stream:  # a torn tail is no run's: it is not read
        stream.write(b'2027-01-01 * "acme" "Expiry"\n  lots: "auto-top-up-2026-11-03:9.99"\n')
    chain = trace(books, "auto-top-up-2026-11-03")
    assert briefs(chain["lots"][0]["consumptions"])[-1] == ("C-acme.2027-01-01.breakage.1", "3.50")
    january.write_bytes(january.read_bytes().replace(b"03:3.50", b"03:3.60"))
    edited = run_cli("trace", books, "auto-top-up-2026-11-03")
    assert edited.exit_code == 1
    assert edited.output == (
        "Error: customers/C-acme/2027-01.beancount differs from what the store recorded; "
        "run reconcile\n"
    )


def test_a_lot_says_when_the_lots_its_entries_name_no_longer_add_up_to_the_store(poster, books):
    poster([sub("c", "2026-11-01T08:00:00Z", "boost", auto_top_up=NO_AUTO),
            money_event("top_up", "c", "2026-11-02T08:00:00Z", "1.00", id="x"),
            use("c", "2026-11-10T10:00:00Z", "a", "autopilot")], "2026-11-30")  # fmt: skip
    # A late, older top-up pays the 10 Nov charge now (oldest first), but the wallet pays the
    # same amount, so no correction is written: the entry's lots are as it was posted.
    poster([money_event("top_up", "c", "2026-11-01T09:00:00Z", "1.00", id="y")], "2026-11-30")
    later, earlier = (trace(books, f"top-up-{short_hash(i)}")["lots"][0] for i in ("x", "y"))
    assert briefs(later["consumptions"]) == [("C-c.2026-11-10.usage.2026-11-01.1", "0.30")]
    assert (later["taken_as_posted"], later["remainder"]) == ("0.30", "1.00")
    assert (earlier["consumptions"], earlier["taken_as_posted"]) == ([], "0.00")
    assert earlier["remainder"] == "0.70"
    text = run_cli("trace", books, f"top-up-{short_hash('x')}").output
    assert (
        "    note: the latest entry of each link says 0.30 was taken; the store's amount less "
        "remainder is 0.00 (an entry's lots are as it was posted)"
    ) in text.splitlines()
    assert "note:" not in run_cli("trace", books, "C-c.2026-11-10.usage.2026-11-01.1").output
