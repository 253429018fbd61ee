"""The chart of accounts (SPEC §3) and the customer-id-to-account-segment mapping."""

from __future__ import annotations

import re

# Roots that group accounts (queries and views select by them).
CUSTOMER_WALLETS_ROOT = "Liabilities:Customers"
AI_INCOME_ROOT = "Income:AI"
REVENUE_ROOT = "Income:AI:Revenue"
ALLOWANCE_ROOT = "Income:AI:Allowance"
CHANNELS_ROOT = "Income:Channels"

WALLETS_CONTROL = "Liabilities:Customers:Wallets"
RECEIVABLES_CONTROL = "Assets:Receivables:Customers"
BANK_CLEARING = "Assets:Bank:Clearing"
REVENUE_SUGGESTED = "Income:AI:Revenue:SuggestedReplies"
REVENUE_AUTOPILOT = "Income:AI:Revenue:Autopilot"
ALLOWANCE_INCLUDED = "Income:AI:Allowance:Included"
ALLOWANCE_TRIAL = "Income:AI:Allowance:Trial"
ALLOWANCE_GRANTED = "Income:AI:Allowance:Granted"  # contra revenue: free credit granted
# Expired, unused paid balance: income of the wallet, not AI revenue.
BREAKAGE = "Income:Wallet:Breakage"
BAD_DEBT = "Expenses:BadDebt"  # receivables written off
CHANNEL_INCOME = {
    "sms": "Income:Channels:Sms",
    "whatsapp": "Income:Channels:Whatsapp",
    "voice": "Income:Channels:Voice",
}
REVENUE_BY_KIND = {"suggested_reply": REVENUE_SUGGESTED, "autopilot": REVENUE_AUTOPILOT}

# Accounts every journal (the GL and each subledger) opens besides the customer accounts.
SHARED_ACCOUNTS = (
    BANK_CLEARING,
    REVENUE_SUGGESTED,
    REVENUE_AUTOPILOT,
    ALLOWANCE_INCLUDED,
    ALLOWANCE_TRIAL,
    ALLOWANCE_GRANTED,
    BREAKAGE,
    *CHANNEL_INCOME.values(),
    BAD_DEBT,
)
GL_ACCOUNTS = (WALLETS_CONTROL, RECEIVABLES_CONTROL, *SHARED_ACCOUNTS)

# What the lines of an adjustment may name (SPEC v3 §2): the customer's receivable, by this
# word (the event names no segment), and the bank, bad debt and every income account of the
# chart, read from it so that an income account the chart gains can be adjusted too.  Never
# a wallet: only lots move it, and lots sum to it (reconcile).
ADJUSTMENT_RECEIVABLE = "receivable"
ADJUSTMENT_ACCOUNTS = (
    ADJUSTMENT_RECEIVABLE,
    BANK_CLEARING,
    BAD_DEBT,
    *(account for account in SHARED_ACCOUNTS if account.startswith("Income:")),
)

_PLAIN = re.compile(r"[A-Za-z0-9]")


def customer_segment(customer: str) -> str:
    """A Beancount account component, unique per (case-sensitive) customer id.

    Letters and digits stay; every other character becomes ``-XX`` (its hex code), so the
    mapping is reversible and two ids never share a segment.  The ``C-`` prefix makes the
    component start with a capital letter as Beancount requires.
    """
    return "C-" + "".join(ch if _PLAIN.match(ch) else f"-{ord(ch):02X}" for ch in customer)


def wallet_account(segment: str) -> str:
    return f"{CUSTOMER_WALLETS_ROOT}:{segment}:Wallet"


def receivable_account(segment: str) -> str:
    return f"{RECEIVABLES_CONTROL}:{segment}"


def control_account(account: str) -> str:
    """The general-ledger account a subledger account is summed into."""
    if account.startswith(CUSTOMER_WALLETS_ROOT + ":"):
        return WALLETS_CONTROL
    if account.startswith(RECEIVABLES_CONTROL + ":"):
        return RECEIVABLES_CONTROL
    return account
