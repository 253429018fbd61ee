"""The plan catalogue (rules/): the defaults of SPEC §4 and clear errors for bad files."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from ledger_engine.rules import DEFAULT_CATALOGUE_PATH, RulesError, load_rules, parse_rules

TEXT = DEFAULT_CATALOGUE_PATH.read_text()


def test_defaults_match_the_article():
    rules = load_rules()
    plans = rules.version_on(datetime.date(2026, 11, 1)).plans
    assert {
        name: (p.included_monthly, p.included_annual)
        for name, p in plans.items()
        if name in ("essentials", "boost", "pro")
    } == {"essentials": (20, 240), "boost": (50, 600), "pro": (100, 1200)}
    assert all(
        p.price("monthly") == Decimal("0.30") and p.price("annual") == Decimal("0.25")
        for p in plans.values()
    )
    assert "autopilot" not in plans["essentials"].features
    assert rules.trial_unit_cap == 100
    assert (rules.auto_top_up.enabled, rules.auto_top_up.amount, rules.auto_top_up.threshold) == (
        True,
        Decimal("25.00"),
        Decimal("0.00"),
    )


def test_versions_are_effective_dated():
    later = (
        TEXT[TEXT.index("\n[[versions]]") :]
        .replace('"2026.1"', '"2027.1"')
        .replace('"2000-01-01"', '"2027-01-01"')
    )
    rules = parse_rules(TEXT + later)
    assert rules.version_on(datetime.date(2026, 12, 31)).version == "2026.1"
    assert rules.version_on(datetime.date(2027, 1, 1)).version == "2027.1"


@pytest.mark.parametrize(
    "change,message",
    [
        (("included_monthly = 20", "included_monthly = -1"), "whole number"),
        (('price_monthly = "0.30"', "price_monthly = 0.3"), "money must be"),
        (('price_monthly = "0.30"', 'price_monthly = "0.305"'), "2 decimal places"),
        (("[versions.plans.pro]", "[versions.plans.gold]"), "missing plans ['pro']"),
        (('amount = "25.00"', 'amount = "0"'), "auto_top_up.amount"),
        (("unit_cap = 100", ""), "missing key 'unit_cap'"),
        (('features = ["suggested_reply"]', 'features = ["telepathy"]'), "features"),
        (("[trial]", "[trial"), "not valid TOML"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(change, message):
    old, new = change
    with pytest.raises(RulesError, match=None) as error:
        parse_rules(TEXT.replace(old, new, 1))
    assert message in str(error.value)


def test_two_versions_on_one_day_are_refused():
    with pytest.raises(RulesError, match="share an effective_from"):
        parse_rules(TEXT + TEXT[TEXT.index("\n[[versions]]") :])


def test_a_broken_rules_file_in_the_books_stops_post_with_one_line(tmp_path):
    from click.testing import CliRunner

    from ledger_engine.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "b")]).exit_code == 0
    (tmp_path / "b" / "rules.toml").write_text("[[versions]]\n")
    events = tmp_path / "e.jsonl"
    events.write_text("")
    result = runner.invoke(main, ["post", str(tmp_path / "b"), str(events)])
    assert result.exit_code == 1 and "Error: versions[0]: missing key" in result.output
