-- The store's tables (schema version 5).  Amounts are integer cents; days are ISO dates
-- in the books' timezone; `at` is a sortable UTC key.  The views are in views.py.
-- Run as one script inside the transaction that creates the store (db.create_store).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- An event's raw line is in input_blocks (`block`, the file's line number `line`); `content`
-- is the first 8 bytes of the SHA-256 of its canonical JSON, as a signed integer (a re-sent
-- id with other content is an id conflict); `fields` holds the typed fields as a JSON array
-- without its trailing nulls.  Events are found by id through `id_key`, the first 8 bytes of
-- the SHA-256 of the id (an index of 8-byte keys instead of a second copy of every id;
-- ingest keeps ids unique), and a customer's events from a day on through
-- events_customer_day (a derivation resumed from a checkpoint reads those).
CREATE TABLE IF NOT EXISTS events (
    id TEXT NOT NULL, id_key INTEGER NOT NULL, customer TEXT NOT NULL, type TEXT NOT NULL,
    at TEXT NOT NULL, day TEXT NOT NULL, fields TEXT NOT NULL, content INTEGER NOT NULL,
    block INTEGER NOT NULL, line INTEGER NOT NULL, run_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_id_key ON events (id_key);
CREATE INDEX IF NOT EXISTS events_customer_day ON events (customer, day);
-- Every input file as read, once: zlib-compressed blocks of whole lines, lines `first_line`
-- on, of the file read under the name `file`.  The blocks of one input, in order, are its
-- bytes exactly (reconcile checks them against `input`, its SHA-256); `input` is '' for the
-- lines kept by a store upgraded from schema 3, which kept events' lines only.  A line longer
-- than the line limit is stored in pieces across blocks (each block holds at most about
-- 3 MiB): a block may then start inside that line, whose number is its `first_line`.
CREATE TABLE IF NOT EXISTS input_blocks (
    block INTEGER PRIMARY KEY, input TEXT NOT NULL, file TEXT NOT NULL,
    first_line INTEGER NOT NULL, data BLOB NOT NULL
);
-- Every input read (its SHA-256, counts, the name it was first read under).  Schema 5: its
-- size in bytes and the SHA-256 of its first chunk (1 MiB), the first look that tells a
-- re-posted file before it is read whole; NULL for inputs recorded before.
CREATE TABLE IF NOT EXISTS input_files (
    sha256 TEXT PRIMARY KEY, lines INTEGER NOT NULL, valid INTEGER NOT NULL,
    rejected TEXT NOT NULL, first_name TEXT NOT NULL,
    bytes INTEGER, head TEXT
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, file TEXT NOT NULL,
    line INTEGER NOT NULL, reason TEXT NOT NULL, field TEXT, detail TEXT NOT NULL,
    event_id TEXT, raw TEXT NOT NULL, raw_sha TEXT NOT NULL,
    UNIQUE (file, line, raw_sha, reason)
);
CREATE TABLE IF NOT EXISTS verdicts (
    event_id TEXT PRIMARY KEY, customer TEXT NOT NULL, reason TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    event_key INTEGER NOT NULL DEFAULT 0  -- the event's id_key (schema 4)
);
CREATE INDEX IF NOT EXISTS verdicts_customer ON verdicts (customer);
CREATE TABLE IF NOT EXISTS conversations (
    customer TEXT NOT NULL, conversation TEXT NOT NULL, period_start TEXT NOT NULL,
    period_end TEXT, day TEXT NOT NULL, first_at TEXT NOT NULL, first_event TEXT NOT NULL,
    kind TEXT NOT NULL, status TEXT NOT NULL, price INTEGER NOT NULL,
    rules_version TEXT NOT NULL, events INTEGER NOT NULL,
    run_id INTEGER NOT NULL DEFAULT 0,  -- the run that classified it so (schema 4)
    PRIMARY KEY (customer, conversation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS periods (
    customer TEXT NOT NULL, period_start TEXT NOT NULL, period_end TEXT, plan TEXT NOT NULL,
    interval TEXT NOT NULL, included INTEGER NOT NULL, PRIMARY KEY (customer, period_start)
);
CREATE TABLE IF NOT EXISTS lots (
    customer TEXT NOT NULL, lot_id TEXT NOT NULL, kind TEXT NOT NULL, day TEXT NOT NULL,
    last_valid TEXT NOT NULL, amount INTEGER NOT NULL, remainder INTEGER NOT NULL,
    PRIMARY KEY (customer, lot_id)
);
-- next_due: the day its books change without new events; pending_from (schema 5): the
-- first open day, while a derivation holds back corrections of a closed month for it.
CREATE TABLE IF NOT EXISTS customers (
    customer TEXT PRIMARY KEY, segment TEXT NOT NULL UNIQUE, next_due TEXT, pending_from TEXT
);
CREATE TABLE IF NOT EXISTS transactions (
    txn_id TEXT PRIMARY KEY, ledger TEXT NOT NULL, customer TEXT, orig_day TEXT NOT NULL,
    key TEXT NOT NULL, seq INTEGER NOT NULL, effective_day TEXT NOT NULL,
    late INTEGER NOT NULL, corrects TEXT, file TEXT NOT NULL, run_id INTEGER NOT NULL,
    position INTEGER NOT NULL, narration TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_customer ON transactions (customer, orig_day, key);
CREATE TABLE IF NOT EXISTS postings (
    txn_id TEXT NOT NULL, ledger TEXT NOT NULL, customer TEXT, orig_day TEXT NOT NULL,
    key TEXT NOT NULL, effective_day TEXT NOT NULL, account TEXT NOT NULL,
    amount INTEGER NOT NULL, run_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_customer ON postings (customer, orig_day, key);
CREATE TABLE IF NOT EXISTS journal_files (
    path TEXT PRIMARY KEY, length INTEGER NOT NULL, sha256 TEXT NOT NULL, month TEXT,
    sealed INTEGER NOT NULL DEFAULT 0
);
-- The hash-chained run log (store/runlog.py).  details (schema 5): who ran what, the rules
-- file's SHA-256, the journal files' lengths and the digests of the rows the run wrote
-- (JSON); '{}' for runs recorded before.
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, command TEXT NOT NULL, started TEXT NOT NULL,
    finished TEXT NOT NULL, through TEXT, inputs TEXT NOT NULL, counts TEXT NOT NULL,
    files TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
-- Schema 5: every rules file a run used, by its SHA-256 (the rules are part of the history:
-- a replay derives each run under the rules it recorded).
CREATE TABLE IF NOT EXISTS rules_texts (sha256 TEXT PRIMARY KEY, text TEXT NOT NULL);
-- Schema 5: from which day each rules file is in force, as each run that changed it said
-- (rules.RulesHistory: a change applies from first_day on, replacing what was to apply
-- from that day or later).
CREATE TABLE IF NOT EXISTS rules_history (
    run_id INTEGER PRIMARY KEY, first_day TEXT NOT NULL, sha256 TEXT NOT NULL
);
-- Schema 5: the digest of each customer's derived state after each run that derived it;
-- the run's record covers the list (store/runlog.py).
CREATE TABLE IF NOT EXISTS state_digests (
    customer TEXT NOT NULL, run_id INTEGER NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (customer, run_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS closed_months (
    month TEXT PRIMARY KEY, closed_at TEXT NOT NULL, run_id INTEGER NOT NULL,
    files TEXT NOT NULL
);
-- Schema 3: how each run classified each conversation, so an auditor can see a posting's
-- conversations as the run that posted it saw them.  Schema 4: rows only for conversations
-- whose classification changed (from the first classification on); one classified once
-- has its run in conversations.run_id.
CREATE TABLE IF NOT EXISTS conversation_history (
    customer TEXT NOT NULL, conversation TEXT NOT NULL, run_id INTEGER NOT NULL,
    day TEXT NOT NULL, period_start TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    price INTEGER NOT NULL, rules_version TEXT NOT NULL,
    PRIMARY KEY (customer, conversation, run_id)
) WITHOUT ROWID;
-- Schema 4: each customer's derived state at the start of a day (store/checkpoints.py);
-- events without their raw line (it is in input_blocks).
CREATE TABLE IF NOT EXISTS checkpoints (
    customer TEXT NOT NULL, day TEXT NOT NULL, basis TEXT NOT NULL, state BLOB NOT NULL,
    PRIMARY KEY (customer, day)
) WITHOUT ROWID;
