-- Reconciliation against the PSP's settlement files (SPEC §7).

-- Every settlement file as received, byte for byte, for audit. A file is
-- identified by the SHA-256 of its content: importing it again changes nothing.
CREATE TABLE settlement_files (
    id           INTEGER PRIMARY KEY,
    sha256       TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,                -- file name, or "settlement report YYYY-MM-DD"
    source       TEXT NOT NULL CHECK (source IN ('cli', 'upload', 'scheduled')),
    raw          BLOB NOT NULL,
    size_bytes   INTEGER NOT NULL,
    row_count    INTEGER NOT NULL,
    imported_at  TEXT NOT NULL
) STRICT;

-- Every data line of every file, parsed (amounts in signed minor units of
-- the row's currency). A balance transaction id may appear on several
-- lines (a duplicate, or the same report fetched twice); the first line
-- that was classified is the one that counts.
CREATE TABLE settlement_rows (
    id                     INTEGER PRIMARY KEY,
    file_id                INTEGER NOT NULL REFERENCES settlement_files(id),
    line                   INTEGER NOT NULL,   -- 1-based line of the file; the header is line 1
    balance_transaction_id TEXT NOT NULL,
    created_utc            TEXT NOT NULL,      -- RFC 3339 with milliseconds, like till's own times
    available_on_utc       TEXT,
    currency               TEXT NOT NULL,      -- ISO 4217, upper case
    gross_minor            INTEGER NOT NULL,
    fee_minor              INTEGER NOT NULL,
    net_minor              INTEGER NOT NULL CHECK (net_minor = gross_minor - fee_minor),
    reporting_category     TEXT NOT NULL,
    source_id              TEXT,
    payment_intent_id      TEXT,
    description            TEXT,
    checkout_id            TEXT,               -- payment_metadata[checkout_id]
    payment_order_id       TEXT,               -- payment_metadata[payment_order_id]
    UNIQUE (file_id, line)
) STRICT;
CREATE INDEX settlement_rows_bt ON settlement_rows(balance_transaction_id, id);
CREATE INDEX settlement_rows_source ON settlement_rows(reporting_category, source_id, id);

-- The UTC days some file has reported on: till records of these days that no
-- file mentions are missing_in_psp once reconciliation.grace_days have passed.
CREATE TABLE reconciled_days (
    day      TEXT PRIMARY KEY,                 -- YYYY-MM-DD
    file_id  INTEGER NOT NULL REFERENCES settlement_files(id)
) STRICT, WITHOUT ROWID;

-- One run per imported file (the CLI, an upload, or the nightly job).
CREATE TABLE reconciliation_runs (
    id              INTEGER PRIMARY KEY,
    file_id         INTEGER NOT NULL UNIQUE REFERENCES settlement_files(id),
    source          TEXT NOT NULL CHECK (source IN ('cli', 'upload', 'scheduled')),
    status          TEXT NOT NULL CHECK (status IN ('running', 'done')),
    rows_total      INTEGER NOT NULL,
    rows_skipped    INTEGER NOT NULL DEFAULT 0,   -- already imported from an earlier file, identical
    classified_through INTEGER NOT NULL DEFAULT 0, -- the last settlement_rows.id classified (batches resume here)
    counts          TEXT NOT NULL DEFAULT '{}',   -- JSON {class: n}, written when the run ends
    auto_fixed      INTEGER NOT NULL DEFAULT 0,
    fees_booked     INTEGER NOT NULL DEFAULT 0,
    payouts_booked  INTEGER NOT NULL DEFAULT 0,
    started_at      TEXT NOT NULL,
    finished_at     TEXT
) STRICT;

-- One decision per classified line (row_id) or per till record missing from
-- the files (row_id NULL), with the rule that made it. What needs a person
-- stays 'open' until resolved with a note.
CREATE TABLE reconciliation_items (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER REFERENCES reconciliation_runs(id),
    row_id            INTEGER UNIQUE REFERENCES settlement_rows(id),
    class             TEXT NOT NULL CHECK (class IN ('matched', 'amount_mismatch', 'currency_mismatch',
                          'missing_in_till', 'missing_in_psp', 'duplicate_in_file', 'unclassified')),
    first_class       TEXT NOT NULL,           -- the first decision, before any automatic fix …
    first_rule        TEXT NOT NULL,           -- … and its rule
    rule              TEXT NOT NULL,           -- the rule that made the decision standing now
    record_type       TEXT CHECK (record_type IN ('checkout', 'payment_order', 'refund', 'payout',
                          'bank_payout', 'psp_fee')),
    record_id         TEXT,
    till_amount_minor INTEGER,
    till_currency     TEXT,
    till_status       TEXT,
    duplicate_of      INTEGER REFERENCES reconciliation_items(id),
    fix               TEXT,                    -- what the automatic fix did or why it could not
    status            TEXT NOT NULL CHECK (status IN ('none', 'open', 'resolved')),
    note              TEXT,
    resolved_by       TEXT,
    resolved_at       TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    CHECK ((row_id IS NULL) = (class = 'missing_in_psp')),
    CHECK ((status = 'none') = (class = 'matched')),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL AND note IS NOT NULL))
) STRICT;
-- Each till record is matched by at most one line of all files.
CREATE UNIQUE INDEX reconciliation_items_one_match ON reconciliation_items(record_type, record_id)
    WHERE record_id IS NOT NULL
      AND class IN ('matched', 'amount_mismatch', 'currency_mismatch', 'missing_in_till');
-- …and reported missing at most once while that is open.
CREATE UNIQUE INDEX reconciliation_items_one_missing ON reconciliation_items(record_type, record_id)
    WHERE class = 'missing_in_psp' AND status = 'open';
CREATE INDEX reconciliation_items_status ON reconciliation_items(status, id);
CREATE INDEX reconciliation_items_run ON reconciliation_items(run_id);
