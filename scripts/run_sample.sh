#!/usr/bin/env bash
# The nightly job on the bundled sample, from a fresh machine with only Python 3.11 and pip:
# creates .venv, installs ledger-engine, makes fresh books in ./books (or $1) and posts the
# sample's three nightly exports (closing October before the late one) and finance's own
# events, then reconciles and prints the wallet roll-forward.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BOOKS="${1:-books}"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet .
rm -rf "$BOOKS"
export PATH="$PWD/.venv/bin:$PATH"
ledger-engine init "$BOOKS" --timezone Europe/Berlin
ledger-engine post "$BOOKS" sample_books/events/2026-10-night.jsonl --through 2026-10-31
ledger-engine post "$BOOKS" sample_books/events/2026-11-night.jsonl --through 2026-11-30
ledger-engine close "$BOOKS" 2026-10
ledger-engine post "$BOOKS" sample_books/events/2026-12-late.jsonl --through 2026-12-31 --allow-future
ledger-engine post "$BOOKS" sample_books/events/2026-12-finance.jsonl --through 2026-12-31 --allow-future
ledger-engine reconcile "$BOOKS"
ledger-engine report "$BOOKS" wallet-rollforward
echo "Books in $BOOKS: try  .venv/bin/bean-query $BOOKS/ledger.beancount '.run revenue_by_month'"
