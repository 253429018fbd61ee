"""The plan catalogue and wallet policy, read from TOML and validated.

The catalogue is data (``catalogue.toml`` beside this file; the books keep their own copy as
``rules.toml``).  This module turns it into immutable values and refuses a file that is not
complete, so that rating never meets a missing price.
"""

from __future__ import annotations

import datetime
import hashlib
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

from ledger_engine.core.errors import RulesError
from ledger_engine.core.model import PLANS as PLAN_NAMES
from ledger_engine.core.model import RATED_FEATURES as FEATURES

DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("catalogue.toml")
CENT = Decimal("0.01")
__all__ = ["RulesError", "PLAN_NAMES", "FEATURES"]  # re-exported for readers of the rules


class Plan(NamedTuple):
    name: str
    features: frozenset[str]
    included_monthly: int
    included_annual: int
    price_monthly: Decimal
    price_annual: Decimal

    def included(self, interval: str) -> int:
        return self.included_annual if interval == "annual" else self.included_monthly

    def price(self, interval: str) -> Decimal:
        return self.price_annual if interval == "annual" else self.price_monthly


class CatalogueVersion(NamedTuple):
    version: str
    effective_from: datetime.date
    plans: dict[str, Plan]


class AutoTopUpPolicy(NamedTuple):
    enabled: bool
    amount: Decimal
    threshold: Decimal


class Rules(NamedTuple):
    versions: tuple[CatalogueVersion, ...]  # sorted by effective_from
    trial_unit_cap: int
    auto_top_up: AutoTopUpPolicy
    top_up_extra_months: int
    commitment_billing_months: int
    sha256: str

    def version_on(self, day: datetime.date) -> CatalogueVersion:
        """The catalogue version in force on ``day`` (the first one if ``day`` precedes all)."""
        chosen = self.versions[0]
        for version in self.versions:
            if version.effective_from <= day:
                chosen = version
            else:
                break
        return chosen

    def on(self, day: datetime.date) -> Rules:
        """The rules in force on ``day``: one file is in force on every day (a
        :class:`RulesHistory` answers the same question for the books' history)."""
        return self

    def policy(self) -> tuple:
        """What the rules say besides the catalogue (the wallet's policy, the trial cap)."""
        return (self.trial_unit_cap, self.auto_top_up, self.top_up_extra_months,
                self.commitment_billing_months)  # fmt: skip


class RulesHistory(NamedTuple):
    """The rules files in force over the books' days (SPEC v3 §6: the rules are part of the
    history): each from its first day until the next one's.  A change of ``rules.toml``
    applies from the first day not yet posted, or from the day of ``post --reprice-from``;
    the days before keep the rules they were posted under, so a re-derivation (``post
    --full``, ``reconcile --replay``) never re-prices them."""

    entries: tuple[tuple[datetime.date, Rules], ...]  # (first day, rules), by first day

    def on(self, day: datetime.date) -> Rules:
        chosen = self.entries[0][1]
        for first_day, rules in self.entries:
            if first_day <= day:
                chosen = rules
            else:
                break
        return chosen

    def version_on(self, day: datetime.date) -> CatalogueVersion:
        return self.on(day).version_on(day)

    @property
    def sha256(self) -> str:
        """What the history is: its files' SHA-256 and their first days, hashed."""
        text = "".join(f"{day.isoformat()} {rules.sha256}\n" for day, rules in self.entries)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def latest(self) -> Rules:
        return self.entries[-1][1]


def with_change(history: RulesHistory, first_day: datetime.date, rules: Rules) -> RulesHistory:
    """The history with ``rules`` in force from ``first_day`` on (what was to apply from
    that day or later no longer does)."""
    kept = tuple((day, old) for day, old in history.entries if day < first_day)
    return RulesHistory((*kept, (first_day, rules)))


def first_changed_day(old: Rules, new: Rules, since: datetime.date) -> datetime.date | None:
    """The first day from ``since`` on where ``new`` prices, includes or expires anything
    differently from ``old`` (a changed policy changes every day; a version's label is part
    of what it says), or None when the two agree on every such day."""
    if old.policy() != new.policy():
        return since
    days = {since, *(v.effective_from for v in (*old.versions, *new.versions))}
    for day in sorted(d for d in days if d >= since):
        if old.version_on(day) != new.version_on(day):
            return day
    return None


def label_conflicts(new: Rules, recorded: list[Rules]) -> list[str]:
    """The version labels of ``new`` that name another content in a rules file the books
    used (SPEC v3 §6: a version label names one content)."""
    conflicts = []
    for version in new.versions:
        for old in recorded:
            for other in old.versions:
                if other.version == version.version and other != version:
                    conflicts.append(version.version)
    return sorted(set(conflicts))


# Named limits: a rules file past them is refused (every day the engine computes from them
# must stay inside the calendar; SPEC v3 §2 keeps booking days in 1970-01-01 .. 9998-12-31).
MONEY_MAX = Decimal("1000000000.00")
COUNT_MAX = 100_000_000  # included conversations, the trial's unit cap
# A top-up bought on the last booking day (9998-12-31) then expires in 9999-11 at the
# latest, and is expired on a day of the calendar; a commitment lasts a year at most.
TOP_UP_EXTRA_MONTHS_MAX = 11
COMMITMENT_BILLING_MONTHS_MAX = 12


def _money(value: object, where: str) -> Decimal:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise RulesError(f'{where}: money must be a string like "0.30" or an integer')
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise RulesError(f"{where}: not a decimal: {value!r}") from None
    if amount.is_finite() and amount > MONEY_MAX:
        raise RulesError(f"{where}: larger than the limit {MONEY_MAX}: {value!r}")
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(CENT):
        raise RulesError(f"{where}: must be >= 0 with at most 2 decimal places: {value!r}")
    return amount.quantize(CENT)


def _count(value: object, where: str, most: int = COUNT_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise RulesError(f"{where}: must be a whole number from 0 to {most}")
    return value


def _require(table: dict, key: str, where: str) -> object:
    if key not in table:
        raise RulesError(f"{where}: missing key {key!r}")
    return table[key]


def _plan(name: str, table: dict, where: str) -> Plan:
    features = _require(table, "features", where)
    if not isinstance(features, list) or not set(features) <= set(FEATURES):
        raise RulesError(f"{where}.features: must be a list drawn from {FEATURES}")
    return Plan(
        name=name,
        features=frozenset(features),
        included_monthly=_count(_require(table, "included_monthly", where), where),
        included_annual=_count(_require(table, "included_annual", where), where),
        price_monthly=_money(_require(table, "price_monthly", where), where + ".price_monthly"),
        price_annual=_money(_require(table, "price_annual", where), where + ".price_annual"),
    )


def _version(table: dict, index: int) -> CatalogueVersion:
    where = f"versions[{index}]"
    effective_from = _require(table, "effective_from", where)
    try:
        day = datetime.date.fromisoformat(str(effective_from))
    except ValueError:
        raise RulesError(f"{where}.effective_from: not a YYYY-MM-DD day") from None
    plans_table = _require(table, "plans", where)
    missing = [name for name in PLAN_NAMES if name not in plans_table]
    if missing:
        raise RulesError(f"{where}.plans: missing plans {missing}")
    plans = {name: _plan(name, plans_table[name], f"{where}.plans.{name}") for name in PLAN_NAMES}
    version = str(_require(table, "version", where))
    return CatalogueVersion(version=version, effective_from=day, plans=plans)


def parse_rules(text: str) -> Rules:
    """Parses and validates the TOML text of a rules file.

    Args:
        text: the TOML document.

    Returns:
        The validated rules.

    Raises:
        RulesError: naming the first key that is missing or wrong.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"rules file is not valid TOML: {error}") from None
    raw_versions = _require(document, "versions", "rules")
    if not isinstance(raw_versions, list) or not raw_versions:
        raise RulesError("rules: [[versions]] must hold at least one catalogue")
    versions = sorted(
        (_version(table, index) for index, table in enumerate(raw_versions)),
        key=lambda version: version.effective_from,
    )
    days = [version.effective_from for version in versions]
    if len(set(days)) != len(days):
        raise RulesError("rules: two catalogue versions share an effective_from day")
    labels = [version.version for version in versions]
    if len(set(labels)) != len(labels):
        raise RulesError(
            "rules: two catalogue versions share a version label (a label names one content)"
        )
    trial = _require(document, "trial", "rules")
    auto = _require(document, "auto_top_up", "rules")
    expiry = _require(document, "expiry", "rules")
    policy = AutoTopUpPolicy(
        enabled=bool(_require(auto, "enabled", "auto_top_up")),
        amount=_money(_require(auto, "amount", "auto_top_up"), "auto_top_up.amount"),
        threshold=_money(_require(auto, "threshold", "auto_top_up"), "auto_top_up.threshold"),
    )
    if policy.amount <= 0:
        raise RulesError("auto_top_up.amount: must be > 0")
    return Rules(
        versions=tuple(versions),
        trial_unit_cap=_count(_require(trial, "unit_cap", "trial"), "trial.unit_cap"),
        auto_top_up=policy,
        top_up_extra_months=_count(
            _require(expiry, "top_up_extra_months", "expiry"),
            "expiry.top_up_extra_months",
            TOP_UP_EXTRA_MONTHS_MAX,
        ),
        commitment_billing_months=max(
            1,
            _count(
                _require(expiry, "commitment_billing_months", "expiry"),
                "expiry.commitment_billing_months",
                COMMITMENT_BILLING_MONTHS_MAX,
            ),
        ),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def load_rules(path: Path | str = DEFAULT_CATALOGUE_PATH) -> Rules:
    """Reads and validates a rules file (see :func:`parse_rules`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise RulesError(f"cannot read rules file {path}: {error.strerror}") from None
    return parse_rules(text)
