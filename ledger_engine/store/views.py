"""Reconciliation views (SPEC §6): plain SQL, readable with ``sqlite3`` by anyone.

Account names, the control-account mapping and the usage key prefix come from
:mod:`ledger_engine.core` so the views cannot drift from the chart.  Amounts in the views are
integer cents (``_cents`` columns) or counts.
"""

from __future__ import annotations

import sqlite_utils

from ledger_engine.core import accounts
from ledger_engine.core.model import EVENT_TYPED_FIELDS, EntryKind

WALLET_PREFIX = accounts.CUSTOMER_WALLETS_ROOT + ":"
RECEIVABLE_PREFIX = accounts.RECEIVABLES_CONTROL + ":"


def _sum_of(account: str) -> str:
    return f"sum(CASE WHEN account = '{account}' THEN amount ELSE 0 END)"


# The typed fields v_events shows as columns: those up to ``reason``.  An adjustment's
# ``lines``, ``reference`` and ``approved_by`` (SPEC v3) are not columns: a view's SQL is part
# of the schema every command compares with the engine's, so a new column would make every
# store of schema 5 (the sample books' included) "not the engine's own" until a schema
# version upgraded it.  They are in the event's raw line (trace) and its entry.
VIEW_TYPED_FIELDS = EVENT_TYPED_FIELDS[: EVENT_TYPED_FIELDS.index("reason") + 1]
_TYPED_COLUMNS = ",\n               ".join(
    f"json_extract(fields, '$[{i}]') AS {name}" for i, name in enumerate(VIEW_TYPED_FIELDS)
)

VIEWS = {
    # The typed fields of an event are stored as one JSON array; this shows them as columns,
    # with the file and line it was read from (its raw line: `ledger-engine trace`).
    "v_events": f"""
        SELECT id, customer, type, at, day, {_TYPED_COLUMNS},
               (SELECT file FROM input_blocks b WHERE b.block = events.block) AS file, line,
               block, run_id
        FROM events""",
    "v_usage_daily": """
        SELECT customer, day, count(*) AS conversations,
               sum(status = 'included') AS included, sum(status = 'charged') AS charged,
               sum(status = 'trial') AS trial, sum(kind = 'autopilot') AS autopilot,
               sum(price) AS gross_cents,
               sum(CASE WHEN status = 'charged' THEN price ELSE 0 END) AS charged_cents
        FROM conversations GROUP BY customer, day""",
    "v_postings_daily": """
        SELECT ledger, customer, effective_day AS day, account, sum(amount) AS amount_cents,
               count(*) AS postings
        FROM postings GROUP BY ledger, customer, effective_day, account""",
    "v_usage_vs_postings": f"""
        WITH rated AS (
            SELECT customer, day,
                   -sum(CASE WHEN kind = 'suggested_reply' THEN price ELSE 0 END) AS sr,
                   -sum(CASE WHEN kind = 'autopilot' THEN price ELSE 0 END) AS ap,
                   sum(CASE WHEN status = 'included' THEN price ELSE 0 END) AS included,
                   sum(CASE WHEN status = 'trial' THEN price ELSE 0 END) AS trial
            FROM conversations
            WHERE day <= (SELECT value FROM meta WHERE key = 'posted_through')
            GROUP BY customer, day),
        posted AS (
            SELECT customer, orig_day AS day,
                {_sum_of(accounts.REVENUE_SUGGESTED)} AS sr,
                {_sum_of(accounts.REVENUE_AUTOPILOT)} AS ap,
                {_sum_of(accounts.ALLOWANCE_INCLUDED)} AS included,
                {_sum_of(accounts.ALLOWANCE_TRIAL)} AS trial
            FROM postings WHERE ledger = 'sub' AND key LIKE '{EntryKind.USAGE.prefix}.%'
            GROUP BY customer, orig_day),
        joined AS (
            SELECT r.customer, r.day, r.sr AS rated_sr, p.sr AS posted_sr, r.ap AS rated_ap,
                   p.ap AS posted_ap, r.included AS rated_included,
                   p.included AS posted_included, r.trial AS rated_trial, p.trial AS posted_trial
            FROM rated r LEFT JOIN posted p USING (customer, day)
            UNION ALL
            SELECT p.customer, p.day, NULL, p.sr, NULL, p.ap, NULL, p.included, NULL, p.trial
            FROM posted p LEFT JOIN rated r USING (customer, day) WHERE r.customer IS NULL)
        SELECT * FROM joined
        WHERE coalesce(rated_sr, 0) != coalesce(posted_sr, 0)
           OR coalesce(rated_ap, 0) != coalesce(posted_ap, 0)
           OR coalesce(rated_included, 0) != coalesce(posted_included, 0)
           OR coalesce(rated_trial, 0) != coalesce(posted_trial, 0)""",
    "v_wallet_balances": f"""
        SELECT c.customer,
               coalesce((SELECT -sum(amount) FROM postings p WHERE p.customer = c.customer
                         AND p.account = '{WALLET_PREFIX}' || c.segment || ':Wallet'),
                        0) AS wallet_cents,
               coalesce((SELECT sum(remainder) FROM lots l WHERE l.customer = c.customer), 0)
                   AS lots_cents,
               coalesce((SELECT sum(amount) FROM postings p WHERE p.customer = c.customer
                         AND p.account = '{RECEIVABLE_PREFIX}' || c.segment), 0)
                   AS receivable_cents
        FROM customers c""",
    "v_lots": """
        SELECT customer, lot_id, kind, day, last_valid, amount AS amount_cents,
               remainder AS remainder_cents FROM lots""",
    "v_allowance_usage": """
        SELECT p.customer, p.period_start, p.period_end, p.plan, p.interval,
               p.included, count(c.conversation) AS used,
               max(p.included - count(c.conversation), 0) AS remaining
        FROM periods p LEFT JOIN conversations c ON c.customer = p.customer
             AND c.period_start = p.period_start AND c.status = 'included'
        GROUP BY p.customer, p.period_start""",
    "v_ai_spend_by_customer": f"""
        SELECT customer, -sum(CASE WHEN account LIKE '{accounts.REVENUE_ROOT}:%' THEN amount
                                   ELSE 0 END) AS gross_cents,
               -sum(CASE WHEN account LIKE '{accounts.REVENUE_ROOT}:%'
                           OR account LIKE '{accounts.ALLOWANCE_ROOT}:%' THEN amount ELSE 0 END)
                   AS net_cents
        FROM postings WHERE ledger = 'sub' GROUP BY customer ORDER BY net_cents DESC""",
    "v_rejections_by_reason": """
        SELECT reason, count(*) AS events FROM (
            SELECT reason FROM quarantine UNION ALL SELECT reason FROM verdicts)
        GROUP BY reason""",
    "v_gl_vs_subledgers": f"""
        WITH sub AS (
            SELECT effective_day AS day,
                   CASE WHEN account LIKE '{WALLET_PREFIX}%' THEN
                            '{accounts.WALLETS_CONTROL}'
                        WHEN account LIKE '{RECEIVABLE_PREFIX}%' THEN
                            '{accounts.RECEIVABLES_CONTROL}'
                        ELSE account END AS account,
                   sum(amount) AS amount
            FROM postings WHERE ledger = 'sub' GROUP BY 1, 2),
        gl AS (
            SELECT effective_day AS day, account, sum(amount) AS amount
            FROM postings WHERE ledger = 'gl' GROUP BY 1, 2),
        keys AS (SELECT day, account FROM sub UNION SELECT day, account FROM gl)
        SELECT k.day, k.account, gl.amount AS gl_cents, sub.amount AS subledgers_cents
        FROM keys k LEFT JOIN gl USING (day, account) LEFT JOIN sub USING (day, account)
        WHERE coalesce(gl.amount, 0) != coalesce(sub.amount, 0)""",
}


def create_views(db: sqlite_utils.Database) -> None:
    """Creates (or replaces) every view; idempotent."""
    for name, sql in VIEWS.items():
        db.create_view(name, sql.strip(), replace=True)
