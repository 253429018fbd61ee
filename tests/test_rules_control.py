"""The rules are part of the history (SPEC v3 §6): an in-place edit of rules.toml never
re-prices a posted day; a change that alters a posted day refuses, naming the day and the
version, unless ``post --reprice-from DAY`` names a day of an open month; a version
appended for a later day needs no flag; ``post --full`` and ``reconcile --replay`` derive
each day under the rules recorded for it, and a month's seal covers its rules.

The season (hand arithmetic): an essentials customer from Nov 1 with one suggested-reply
conversation a day, c01 on Nov 2 to c25 on Nov 26.  c01..c20 (Nov 2..21) are included, c21..
c25 (Nov 22..26) charged at 0.30; the first charge buys one automatic top-up of 25.00.
"""

from __future__ import annotations

import datetime
import hashlib
import re

import pytest
from builders import D, customer_balances, journal_bytes, replay_clean, sub, use
from click.testing import CliRunner

from ledger_engine.cli import main
from ledger_engine.close import close_month
from ledger_engine.core.errors import RulesChanged
from ledger_engine.post import post
from ledger_engine.reconcile import reconcile

SR = "Income:AI:Revenue:SuggestedReplies"
INCLUDED = "Income:AI:Allowance:Included"
WALLET = "Liabilities:Customers:C-acme:Wallet"
RECEIVABLE = "Assets:Receivables:Customers:C-acme"
NOV_30 = datetime.date(2026, 11, 30)

NEW_VERSION = """
[[versions]]
version = "2026.2"
effective_from = "{day}"

[versions.plans.trial]
features = ["suggested_reply", "autopilot"]
included_monthly = 0
included_annual = 0
price_monthly = "0.30"
price_annual = "0.25"

[versions.plans.essentials]
features = ["suggested_reply"]
included_monthly = 20
included_annual = 240
price_monthly = "{price}"
price_annual = "0.25"

[versions.plans.boost]
features = ["suggested_reply", "autopilot"]
included_monthly = 50
included_annual = 600
price_monthly = "0.30"
price_annual = "0.25"

[versions.plans.pro]
features = ["suggested_reply", "autopilot"]
included_monthly = 100
included_annual = 1200
price_monthly = "0.30"
price_annual = "0.25"

[versions.plans.enterprise]
features = ["suggested_reply", "autopilot"]
included_monthly = 0
included_annual = 0
price_monthly = "0.30"
price_annual = "0.25"
"""


def season():
    events = [sub("acme", "2026-11-01T08:00:00Z", "essentials", id="s")]
    for i in range(1, 26):
        day = datetime.date(2026, 11, 1) + datetime.timedelta(days=i)
        events.append(use("acme", f"{day}T10:00:00Z", f"c{i:02d}", id=f"u{i:02d}"))
    return events


def add_version(books, day: str, price: str = "0.40") -> None:
    with (books / "rules.toml").open("a", encoding="utf-8") as stream:
        stream.write(NEW_VERSION.format(day=day, price=price))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def november(poster, books):
    poster(season(), "2026-11-30")
    assert customer_balances(books, "acme") == {
        SR: D("-7.50"), INCLUDED: D("6.00"), WALLET: D("-23.50"), RECEIVABLE: D("25.00"),
    }  # fmt: skip
    return books


def test_an_in_place_price_edit_under_the_same_label_is_refused(november, poster):
    rules = november / "rules.toml"
    text = rules.read_text()
    rules.write_text(text.replace('price_monthly = "0.30"', 'price_monthly = "0.35"', 2))
    before = journal_bytes(november)
    result = run("post", november, poster.write([]), "--through", "2026-11-30")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "version '2026.1' another content" in result.output
    assert journal_bytes(november) == before
    # --full is a repair, never a repricing: refused the same way.
    result = run("post", november, poster.write([]), "--through", "2026-11-30", "--full")
    assert result.exit_code == 1 and "version '2026.1'" in result.output


def test_a_version_back_dated_onto_posted_days_is_refused_naming_the_day(november, poster):
    add_version(november, "2026-11-10")
    before = journal_bytes(november)
    result = run("post", november, poster.write([]), "--through", "2026-11-30")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "2026-11-10, a day already posted" in result.output
    assert "'2026.2'" in result.output and "--reprice-from" in result.output
    assert journal_bytes(november) == before


def corrections(books) -> list[tuple[str, str]]:
    """(original day, rules-version) of every correction of acme's usage."""
    text = (books / "customers/C-acme/2026-11.beancount").read_text()
    found = []
    for block in text.split("\n\n"):
        if '"Correction: AI usage"' in block:
            day = block.strip()[:10]  # a correction of an open month is dated on its day
            version = re.search(r'rules-version: "([^"]+)"', block).group(1)
            found.append((day, version))
    return found


def test_reprice_from_a_day_of_an_open_month_derives_only_from_that_day(november, poster):
    add_version(november, "2026-11-01")  # 0.40 from Nov 1 on, but posted days keep 0.30
    post(november, [str(poster.write([]))], NOV_30, reprice_from=datetime.date(2026, 11, 16))
    # c15..c25 (Nov 16..26) at 0.40: 6 included, 5 charged; c01..c14 stay at 0.30.
    assert customer_balances(november, "acme") == {
        SR: D("-8.60"),  # 14 x 0.30 + 11 x 0.40
        INCLUDED: D("6.60"),  # 14 x 0.30 + 6 x 0.40
        WALLET: D("-23.00"),  # 25.00 - 5 x 0.40
        RECEIVABLE: D("25.00"),
    }
    days = [f"2026-11-{d}" for d in range(16, 27)]
    assert corrections(november) == [(day, "2026.2") for day in days]
    assert reconcile(november).ok
    # A re-derivation finds nothing to add, and the books are their evidence derived again.
    again = post(november, [str(poster.write([]))], NOV_30, full=True)
    assert again.transactions_written == 0
    replay_clean(november)


def test_reprice_from_a_closed_month_is_refused(poster, books):
    poster(season(), "2026-11-30")
    poster([], "2026-12-01")
    close_month(books, "2026-11")
    add_version(books, "2026-11-01")
    before = journal_bytes(books)
    with pytest.raises(RulesChanged, match="closed month"):
        post(books, [str(poster.write([]))], datetime.date(2026, 12, 1),
             reprice_from=datetime.date(2026, 11, 20))  # fmt: skip
    assert journal_bytes(books) == before


def test_a_version_appended_after_the_last_posted_day_needs_no_flag(november, poster):
    add_version(november, "2026-12-01")
    december = [use("acme", "2026-12-02T10:00:00Z", "d1", id="d1")]
    december += [use("acme", f"2026-12-03T10:{i:02d}:00Z", f"e{i}", id=f"e{i}") for i in range(20)]
    result = poster(december, "2026-12-31")
    assert result.transactions_written > 0
    # November unchanged (no correction); December's new period: 20 included at 0.40, the
    # 21st charged at 0.40; the December commitment-free wallet pays it from the top-up.
    assert corrections(november) == []
    balances = customer_balances(november, "acme")
    assert balances[SR] == D("-15.90")  # 7.50 + 21 x 0.40
    assert balances[INCLUDED] == D("14.00")  # 6.00 + 20 x 0.40
    assert post(november, [], datetime.date(2026, 12, 31), full=True).transactions_written == 0
    replay_clean(november)


def test_nothing_to_reprice_is_refused(november, poster):
    with pytest.raises(RulesChanged, match="nothing to reprice"):
        post(november, [str(poster.write([]))], NOV_30, reprice_from=datetime.date(2026, 11, 20))


def test_close_refuses_a_rules_edit_not_yet_posted_and_seals_the_rules(november, poster):
    poster([], "2026-12-01")
    add_version(november, "2027-01-01")
    result = run("close", november, "2026-11")
    # (reconcile, which the guarded close runs first, already names the edit)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "rules.toml differs from the one the last run recorded" in result.output
    poster([], "2026-12-01")  # the change applies from Dec 2 (nothing to reprice)
    result = run("close", november, "2026-11")
    assert result.exit_code == 0, result.output
    gl = (november / "gl/2026/2026-12.beancount").read_text()
    sha = hashlib.sha256((november / "rules.toml").read_bytes()).hexdigest()
    assert f'rules-sha256: "{sha}"' in gl
    assert reconcile(november).ok
