"""The ``--through`` guard (SPEC v3 §6): a day later than today in the books' timezone is
refused with one ``Error:`` line unless ``--allow-future`` is given (a future commitment
or expiry, once posted, cannot be taken back), and the summary of a plain ``post`` says
the day the books are actually posted through."""

from __future__ import annotations

import datetime
import json
import zoneinfo

from builders import init_books, journal_bytes, sub
from click.testing import CliRunner

from ledger_engine.cli import main


def today(zone: str = "UTC") -> datetime.date:
    return datetime.datetime.now(zoneinfo.ZoneInfo(zone)).date()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def events_file(tmp_path):
    path = tmp_path / "e.jsonl"
    start = today() - datetime.timedelta(days=40)
    event = sub("acme", f"{start}T08:00:00Z", "essentials", commitment="20.00")
    path.write_text(json.dumps(event) + "\n")
    return path


def test_a_through_later_than_today_is_refused_without_allow_future(tmp_path):
    books = init_books(tmp_path / "books")
    path = events_file(tmp_path)
    tomorrow = today() + datetime.timedelta(days=1)
    before = journal_bytes(books)
    refused = run("post", books, path, "--through", tomorrow)
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: --through ") and "--allow-future" in refused.output
    assert refused.output.count("\n") == 1
    assert journal_bytes(books) == before
    assert run("post", books, path, "--through", today()).exit_code == 0  # today is fine


def test_allow_future_posts_it_and_a_plain_post_then_says_the_day_posted(tmp_path):
    books = init_books(tmp_path / "books")
    path = events_file(tmp_path)
    ahead = today() + datetime.timedelta(days=20)
    result = run("post", books, path, "--through", ahead, "--allow-future")
    assert result.exit_code == 0, result.output
    assert f"posted through {ahead}," in result.output
    # A plain post (through yesterday) on books posted ahead says where the books are.
    plain = run("post", books, path)
    assert plain.exit_code == 0, plain.output
    assert f"posted through {ahead}," in plain.output
    assert json.loads(run("post", books, path, "--json").output)["posted_through"] == str(ahead)
