#!/usr/bin/env bash
# Rebuilds the sample books from scratch out of the committed event files.
#
#   sample_books/regenerate.sh            (from the repository root, or from anywhere)
#   LEDGER_ENGINE=/path/to/ledger-engine sample_books/regenerate.sh
#
# Four runs, one per file, each with an explicit --through so that the result
# does not depend on today's date.  Prints each run's JSON summary.
set -euo pipefail

LEDGER_ENGINE="${LEDGER_ENGINE:-ledger-engine}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BOOKS="${SAMPLE_BOOKS_DIR:-sample_books/books}"  # the golden-file test builds elsewhere
EVENTS=sample_books/events

rm -rf "$BOOKS"
$LEDGER_ENGINE init "$BOOKS" --timezone Europe/Berlin

post() {  # post FILE THROUGH
    echo "== $1 (through $2)" >&2
    $LEDGER_ENGINE post "$BOOKS" "$1" --through "$2" --allow-future --json
}

post "$EVENTS/2026-10-night.jsonl" 2026-10-31
post "$EVENTS/2026-11-night.jsonl" 2026-11-30
# October is closed before the late events arrive: its corrections land on 1 Nov, late: TRUE.
echo "== close 2026-10" >&2
$LEDGER_ENGINE close "$BOOKS" 2026-10 >&2
post "$EVENTS/2026-12-late.jsonl" 2026-12-31
# Finance's own events: credit grants (one back-dated into open November) and write-offs.
post "$EVENTS/2026-12-finance.jsonl" 2026-12-31

# beancount's loader may leave caches beside the journals; they are not part of the books.
find "$BOOKS" -name '*.picklecache' -delete
