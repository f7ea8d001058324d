-- Stripe's Reporting API: report runs and the files they produce. A run is
-- created 'pending' and finished by the ticker a moment later, which writes
-- its file from balance_transactions (as the settlement report does) and
-- moves it to 'succeeded', or to 'failed' with an error (a report too large).

-- The files a report run produces (Stripe's purpose 'finance_report_run').
-- Contents are the CSV text itself: the sandbox makes no other files.
CREATE TABLE files (
    id       TEXT PRIMARY KEY,                   -- file_…
    purpose  TEXT NOT NULL CHECK (purpose = 'finance_report_run'),
    type     TEXT NOT NULL CHECK (type = 'csv'),
    filename TEXT NOT NULL,
    title    TEXT NOT NULL,
    size     INTEGER NOT NULL CHECK (size >= 0), -- bytes of contents
    contents TEXT NOT NULL,
    created  INTEGER NOT NULL
) STRICT;

CREATE TABLE report_runs (
    id             TEXT PRIMARY KEY,             -- frr_…
    report_type    TEXT NOT NULL,
    interval_start INTEGER NOT NULL,             -- unix seconds, inclusive
    interval_end   INTEGER NOT NULL,             -- unix seconds, exclusive
    columns        TEXT,                         -- JSON array as requested; NULL = every column
    status         TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    result_file    TEXT UNIQUE REFERENCES files (id),
    error          TEXT,
    run_at_ms      INTEGER NOT NULL,             -- when the ticker finishes it
    created        INTEGER NOT NULL,
    succeeded_at   INTEGER,
    CHECK (interval_end > interval_start),
    CHECK ((status = 'succeeded') = (result_file IS NOT NULL AND succeeded_at IS NOT NULL)),
    CHECK ((status = 'failed') = (error IS NOT NULL))
) STRICT;
CREATE INDEX report_runs_pending ON report_runs (run_at_ms) WHERE status = 'pending';
