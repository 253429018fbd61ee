"""The layout of the books directory (SPEC §3): file names, paths and the root files.

```
DIR/ledger.beancount                        GL root: options, plugins, includes, queries
DIR/accounts.beancount                      open directives of the general ledger
DIR/gl/YYYY/YYYY-MM.beancount               GL summaries of one calendar month
DIR/customers/<segment>/customer.beancount  a customer's subledger root
DIR/customers/<segment>/YYYY-MM.beancount   that customer's entries of one month
DIR/rules.toml, DIR/state.sqlite            the rules in force, the store
DIR/dashboards.tsx                          Fava dashboards of the GL
DIR/recovered/run-N/<path>.tail|.file       what recovery moved out of the journals
```
"""

from __future__ import annotations

import re
from pathlib import Path

from ledger_engine.core.accounts import (
    AI_INCOME_ROOT,
    ALLOWANCE_ROOT,
    BAD_DEBT,
    BREAKAGE,
    CHANNELS_ROOT,
    CUSTOMER_WALLETS_ROOT,
    RECEIVABLES_CONTROL,
    REVENUE_ROOT,
    WALLETS_CONTROL,
)

LEDGER_NAME = "ledger.beancount"
ACCOUNTS_NAME = "accounts.beancount"
RULES_NAME = "rules.toml"
DASHBOARDS_NAME = "dashboards.tsx"  # Fava dashboards of the GL (the fava-dashboards extension)
DASHBOARDS_TEMPLATE = Path(__file__).with_name(DASHBOARDS_NAME)
LOCK_NAME = ".lock"
CUSTOMER_ROOT_NAME = "customer.beancount"
JOURNAL_TOPS = ("gl", "customers")  # the folders that hold month files and subledgers
RECOVERED_DIR = "recovered"  # bytes and files found in the books that no run committed
_MONTH_FILE = re.compile(r"[0-9]{4}-[0-9]{2}\.beancount")
# Every journal path the engine writes (relative to the books); a path read from the store
# that is none of these is refused (SPEC v3 §6: the store is input too).
_JOURNAL_PATH = re.compile(
    r"ledger\.beancount|accounts\.beancount"
    r"|gl/(?P<year>[0-9]{4})/(?P=year)-[0-9]{2}\.beancount"
    r"|customers/C-[A-Za-z0-9-]{1,250}/(customer|[0-9]{4}-[0-9]{2})\.beancount"
)

REVENUE_BY_MONTH = (
    "SELECT year, month, root(account, 4) AS account, neg(sum(position)) AS gross "
    f"WHERE account ~ '^{REVENUE_ROOT}' GROUP BY year, month, account "
    "ORDER BY year, month, account"
)
ALLOWANCES_BY_MONTH = (
    "SELECT year, month, account, sum(position) AS given "
    f"WHERE account ~ '^{ALLOWANCE_ROOT}' GROUP BY year, month, account "
    "ORDER BY year, month, account"
)

# name -> bean-query statement; written into ledger.beancount, run with `.run NAME` and
# listed in Fava's sidebar.  Income is negative in Beancount: `neg` shows revenue positive.
QUERIES = {
    "revenue_by_month": REVENUE_BY_MONTH,
    "allowances_by_month": ALLOWANCES_BY_MONTH,
    "net_ai_revenue_by_month": (
        "SELECT year, month, neg(sum(position)) AS net "
        f"WHERE account ~ '^{AI_INCOME_ROOT}:' GROUP BY year, month ORDER BY year, month"
    ),
    "wallet_rollforward": (
        "SELECT year, month, entry_meta('kind') AS kind, neg(sum(position)) AS movement "
        f"WHERE account = '{WALLETS_CONTROL}' GROUP BY year, month, kind "
        "ORDER BY year, month, kind"
    ),
    "wallet_liability": (
        "SELECT year, month, neg(last(balance)) AS owed WHERE account = "
        f"'{WALLETS_CONTROL}' GROUP BY year, month ORDER BY year, month"
    ),
    "breakage_by_month": (
        "SELECT year, month, neg(sum(position)) AS breakage "
        f"WHERE account = '{BREAKAGE}' GROUP BY year, month ORDER BY year, month"
    ),
    "channels_by_month": (
        "SELECT year, month, account, neg(sum(position)) AS amount "
        f"WHERE account ~ '^{CHANNELS_ROOT}' GROUP BY year, month, account "
        "ORDER BY year, month, account"
    ),
    "receivables_open": (
        "SELECT year, month, last(balance) AS open "
        f"WHERE account = '{RECEIVABLES_CONTROL}' GROUP BY year, month ORDER BY year, month"
    ),
    "bad_debt_by_month": (
        "SELECT year, month, sum(position) AS written_off "
        f"WHERE account = '{BAD_DEBT}' GROUP BY year, month ORDER BY year, month"
    ),
}

# The queries of every customer's subledger root (its own numbers only).
CUSTOMER_QUERIES = {
    "ai_revenue_by_month": REVENUE_BY_MONTH,
    "allowances_by_month": ALLOWANCES_BY_MONTH,
    "wallet_by_month": (
        "SELECT year, month, narration, neg(sum(position)) AS movement "
        f"WHERE account ~ '^{CUSTOMER_WALLETS_ROOT}:' GROUP BY year, month, narration "
        "ORDER BY year, month, narration"
    ),
    "wallet_balance_by_month": (
        "SELECT year, month, neg(last(balance)) AS balance "
        f"WHERE account ~ '^{CUSTOMER_WALLETS_ROOT}:' GROUP BY year, month "
        "ORDER BY year, month"
    ),
    "receivable_by_month": (
        "SELECT year, month, narration, sum(position) AS movement "
        f"WHERE account ~ '^{RECEIVABLES_CONTROL}:' GROUP BY year, month, narration "
        "ORDER BY year, month, narration"
    ),
}
# Fava's options, in every root: revenue shows positive; every query is in the sidebar.
# The GL root also loads the dashboards extension (installed by the `fava` extra).
FAVA_EXTENSION = "fava_dashboards"
FAVA_INVERT_OPTION = ("invert-income-liabilities-equity", "TRUE")
FAVA_SIDEBAR_QUERIES_OPTION = "sidebar-show-queries"


def gl_month_path(month: str) -> str:
    return f"gl/{month[:4]}/{month}.beancount"


def customer_dir(segment: str) -> str:
    return f"customers/{segment}"


def customer_root_path(segment: str) -> str:
    return f"{customer_dir(segment)}/{CUSTOMER_ROOT_NAME}"


def customer_month_path(segment: str, month: str) -> str:
    return f"{customer_dir(segment)}/{month}.beancount"


def recovered_path(run_id: int, relative: str, what: str) -> str:
    """Where recovery keeps ``what`` (``tail``: bytes past the committed end; ``file``: a
    file no run wrote) of the journal file ``relative``, found by run ``run_id``."""
    return f"{RECOVERED_DIR}/run-{run_id}/{relative}.{what}"


def month_of_path(relative: str) -> str | None:
    """The ``YYYY-MM`` of a month file (None for a root or any other file)."""
    name = relative.rsplit("/", 1)[-1]
    return name.removesuffix(".beancount") if _MONTH_FILE.fullmatch(name) else None


def is_journal_path(relative: object) -> bool:
    """Whether ``relative`` is a journal path the engine writes (see :data:`_JOURNAL_PATH`)."""
    return isinstance(relative, str) and _JOURNAL_PATH.fullmatch(relative) is not None


def include_path(root: str, month_path: str) -> str:
    """How ``root`` names ``month_path`` in its include (relative to the root's folder)."""
    return month_path if root == LEDGER_NAME else month_path.rsplit("/", 1)[-1]
