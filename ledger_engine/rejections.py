"""The current verdicts on quarantined events: schema verdicts and rating verdicts."""

from __future__ import annotations

from pathlib import Path

from ledger_engine import store

RATING_DETAILS = {
    "unknown_customer": "no subscription at the event's time",
    "no_active_subscription": "the subscription was cancelled before the event",
    "feature_not_in_plan": "the plan in force does not include this feature",
    "trial_limit_reached": "the trial's unit cap was already used",
}
COLUMNS = ("kind", "file", "line", "reason", "field", "detail", "event_id", "raw")
REJECTIONS_SQL = """
SELECT 'schema', file, line, reason, field, detail, event_id, raw FROM quarantine
UNION ALL
SELECT 'rating', e.file, e.line, v.reason, NULL, '', v.event_id, e.raw
FROM verdicts v JOIN events e ON e.id = v.event_id
ORDER BY 1 DESC, 2, 3
"""


def list_rejections(books_dir: Path) -> list[dict]:
    """Every rejected event: schema verdicts (final) then current rating verdicts."""
    db = store.open_store(books_dir)
    try:
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in db.execute(REJECTIONS_SQL)]
    finally:
        db.close()
    for row in rows:
        if row["kind"] == "rating":
            row["detail"] = RATING_DETAILS.get(row["reason"], "")
    return rows
